//! One authenticator for every server of the node: API tokens, OIDC/JWT bearer tokens and
//! the anonymous role.

use std::path::PathBuf;

use base64::Engine;

use super::oidc::{Oidc, OidcConfig};
use super::tokens::TokenStore;
use std::sync::Arc;

use super::{Identity, Limits, Quota, Role};
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
    /// Limits per role (a token's own limits come first).
    pub role_limits: std::collections::BTreeMap<Role, Limits>,
}

/// Turns a request's `Authorization` header into an [`Identity`].
#[derive(Debug)]
pub struct Authenticator {
    tokens: TokenStore,
    oidc: Option<Oidc>,
    anonymous: Option<Role>,
    role_limits: std::collections::BTreeMap<Role, Limits>,
    quotas: std::sync::Mutex<std::collections::HashMap<String, Arc<Quota>>>,
}

fn refused(code: &'static str, detail: impl Into<String>) -> Error {
    Error::Unauthenticated {
        code,
        detail: detail.into(),
    }
}

/// The password of basic credentials (`base64(user:password)`, padded or not: Go's Flight
/// client sends it unpadded); without a colon, the whole text.
pub(crate) fn basic_password(b64: &str) -> Option<String> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let text = String::from_utf8(LENIENT.decode(b64.trim()).ok()?).ok()?;
    Some(match text.split_once(':') {
        Some((_, p)) => p.to_owned(),
        None => text,
    })
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
            role_limits: cfg.role_limits,
            quotas: Default::default(),
        })
    }

    /// The shared quota `id`'s queries run under: its token's own limits if it has any
    /// (one quota per token), else its role's (one per role, or per role and participant
    /// for participants, so one participant cannot take another's share); `None` when
    /// nothing limits it.
    pub fn quota(&self, id: &Identity) -> Option<Arc<Quota>> {
        let role = self.role_limits.get(&id.role).copied().unwrap_or_default();
        let (name, limits) = if id.limits.is_none() {
            let name = match &id.participant {
                Some(p) => format!("role:{}:{p}", id.role),
                None => format!("role:{}", id.role),
            };
            (name, role)
        } else {
            (id.subject.clone(), id.limits.or(role))
        };
        if limits.is_none() {
            return None;
        }
        let mut q = self.quotas.lock().unwrap_or_else(|p| p.into_inner());
        let entry = q
            .entry(name.clone())
            .or_insert_with(|| Arc::new(Quota::new(name, limits)));
        if entry.limits != limits {
            // The token's limits changed (re-read file): a new quota from now on.
            *entry = Arc::new(Quota::new(entry.name.clone(), limits));
        }
        Some(entry.clone())
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
            basic_password(rest)
                .ok_or_else(|| refused("invalid_token", "the basic credentials are not base64"))?
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn credentials_come_as_bearer_or_basic_and_anonymous_is_configured() {
        assert_eq!(basic_password("dTpwdw==").as_deref(), Some("pw"));
        assert_eq!(
            basic_password("dTpwdw").as_deref(),
            Some("pw"),
            "unpadded, as Go sends it"
        );
        assert_eq!(basic_password("cHc").as_deref(), Some("pw"), "no user part");
        assert_eq!(basic_password("%%%"), None);
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = |anonymous| AuthConfig {
            tokens_file: dir.path().join("tokens.json"),
            oidc: None,
            anonymous,
            role_limits: Default::default(),
        };
        let open = Authenticator::new(cfg(Some(Role::Public)))
            .await
            .expect("auth");
        assert_eq!(
            open.authenticate(None).await.expect("anonymous").role,
            Role::Public
        );
        let closed = Authenticator::new(cfg(None)).await.expect("auth");
        let code = |r: Result<Identity, Error>| match r {
            Err(Error::Unauthenticated { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(closed.authenticate(None).await), "missing_credentials");
        assert_eq!(
            code(closed.authenticate(Some("  ")).await),
            "missing_credentials"
        );
        assert_eq!(
            code(closed.authenticate(Some("Bearer ")).await),
            "invalid_token"
        );
        assert_eq!(
            code(closed.authenticate(Some("Digest abc")).await),
            "invalid_token"
        );
        assert_eq!(
            code(closed.authenticate(Some("Basic ***")).await),
            "invalid_token"
        );
        assert_eq!(
            code(closed.authenticate(Some("Bearer a.b.c")).await),
            "invalid_token"
        );
        let (t, _) = super::super::tokens::create(
            &dir.path().join("tokens.json"),
            &super::super::tokens::NewToken {
                role: Role::Auditor,
                participant: None,
                expires_in: None,
                name: String::new(),
                limits: Default::default(),
            },
        )
        .expect("token");
        let b = base64::engine::general_purpose::STANDARD.encode(format!("me:{t}"));
        for h in [
            format!("Bearer {t}"),
            format!("bearer  {t}"),
            format!("Basic {b}"),
        ] {
            assert_eq!(
                closed.authenticate(Some(&h)).await.expect(&h).role,
                Role::Auditor
            );
        }
    }
}
