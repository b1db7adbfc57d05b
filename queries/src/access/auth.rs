//! One authenticator for every server of the node: API tokens, OIDC/JWT bearer tokens and
//! the anonymous role.

use std::path::PathBuf;

use base64::Engine;

use super::oidc::{Oidc, OidcConfig};
use super::tokens::TokenStore;
use super::{Identity, Role};
use crate::Error;

/// What the servers accept.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The API token file.
    pub tokens_file: PathBuf,
    /// An identity provider's bearer tokens, if configured.
    pub oidc: Option<OidcConfig>,
    /// The role of requests without credentials; `None` refuses them
    /// (`missing_credentials`).
    pub anonymous: Option<Role>,
}

/// Turns a request's `Authorization` header into an [`Identity`].
#[derive(Debug)]
pub struct Authenticator {
    tokens: TokenStore,
    oidc: Option<Oidc>,
    anonymous: Option<Role>,
}

fn refused(code: &'static str, detail: impl Into<String>) -> Error {
    Error::Unauthenticated {
        code,
        detail: detail.into(),
    }
}

impl Authenticator {
    /// Opens the token file and loads the identity provider's keys.
    pub async fn new(cfg: AuthConfig) -> Result<Self, String> {
        let tokens = TokenStore::open(&cfg.tokens_file)?;
        let oidc = match cfg.oidc {
            Some(o) => Some(Oidc::new(o).await?),
            None => None,
        };
        Ok(Authenticator {
            tokens,
            oidc,
            anonymous: cfg.anonymous,
        })
    }

    /// The role of requests without credentials.
    pub fn anonymous(&self) -> Option<Role> {
        self.anonymous
    }

    /// The identity behind `authorization` (the header's value): `Bearer <token>` with an
    /// API token or a JWT, or `Basic` with the token as the password (for clients that only
    /// speak basic authentication, such as Flight SQL handshakes). Without the header, the
    /// anonymous role if there is one, else `missing_credentials`.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Identity, Error> {
        let Some(value) = authorization.map(str::trim).filter(|v| !v.is_empty()) else {
            return self.anonymous.map(Identity::anonymous).ok_or_else(|| {
                refused(
                    "missing_credentials",
                    "this server needs `Authorization: Bearer <token>` (an API token or a JWT)",
                )
            });
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let token = if scheme.eq_ignore_ascii_case("bearer") {
            rest.trim().to_owned()
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| refused("invalid_token", "the basic credentials are not base64"))?;
            decoded
                .split_once(':')
                .map(|(_, p)| p.to_owned())
                .unwrap_or(decoded)
        } else {
            return Err(refused(
                "invalid_token",
                format!("authorization scheme {scheme:?} is not Bearer or Basic"),
            ));
        };
        if token.is_empty() {
            return Err(refused("invalid_token", "the bearer token is empty"));
        }
        if TokenStore::is_api_token(&token) {
            return self.tokens.verify(&token);
        }
        match &self.oidc {
            Some(o) => o.verify(&token).await,
            None => Err(refused(
                "invalid_token",
                "not an API token, and no identity provider is configured for JWTs",
            )),
        }
    }
}
