//! OIDC/JWT bearer tokens from a company's identity provider (Keycloak, Entra ID, Okta,
//! Auth0, Dex, ...).
//!
//! A token is accepted when its header names an asymmetric algorithm the config allows
//! (never `none`, never an HMAC secret), its `kid` names a key of the JWKS (read from a file,
//! re-read when it changes, or fetched from a URL, fetched again at most every 30 s when a
//! token names a key it does not know, as providers rotate keys), its signature verifies
//! with that key, and its claims pass: `exp` in the future, `nbf` (if any) in the past,
//! `iss` the configured issuer, `aud` containing the configured audience (60 s of leeway for
//! clocks). A configured claim (`veritrace_role` by default; a string or a list, such as
//! groups, mapped through `[auth.oidc.roles]` or naming a role directly) gives the role, and
//! another (`veritrace_participant`) the participant.
//!
//! Reason codes of refusals: `alg_not_allowed`, `unknown_key`, `bad_signature`,
//! `token_expired`, `token_not_yet_valid`, `wrong_issuer`, `wrong_audience`, `no_role`,
//! `invalid_token`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::{Identity, Method, Role};
use crate::Error;

/// Where the provider's public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWKS file (re-read when it changes).
    File(PathBuf),
    /// The provider's `jwks_uri`.
    Url(String),
}

/// `[auth.oidc]`.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The audience every token must name in `aud`.
    pub audience: String,
    /// The keys.
    pub jwks: JwksSource,
    /// The claim that gives the role.
    pub role_claim: String,
    /// The claim that gives the participant.
    pub participant_claim: String,
    /// Claim values mapped to roles (e.g. a group name to `analyst`); a value that is a
    /// role's own name maps to it too.
    pub roles: BTreeMap<String, Role>,
    /// The algorithms accepted.
    pub algorithms: Vec<Algorithm>,
}

/// The asymmetric algorithms accepted by default.
pub const DEFAULT_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Parses an algorithm name of the config; HMAC algorithms are refused (a JWKS holds
/// public keys, and a shared secret would let every relying party mint tokens).
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    let alg: Algorithm = name
        .parse()
        .map_err(|_| format!("unknown JWT algorithm {name:?}"))?;
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return Err(format!(
            "{name} uses a shared secret; only public-key algorithms are accepted"
        ));
    }
    Ok(alg)
}

struct Keys {
    set: Vec<(Option<String>, Jwk)>,
    stamp: Option<std::time::SystemTime>,
    fetched: Instant,
}

/// The verifier of one identity provider's tokens.
pub struct Oidc {
    cfg: OidcConfig,
    keys: Mutex<Keys>,
    refresh: tokio::sync::Mutex<()>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.cfg.issuer)
            .finish_non_exhaustive()
    }
}

fn refused(code: &'static str, detail: impl Into<String>) -> Error {
    Error::Unauthenticated {
        code,
        detail: detail.into(),
    }
}

/// The keys of a JWKS document; keys this build cannot use (encryption keys, unknown
/// types) are skipped, not fatal.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<(Option<String>, Jwk)>, String> {
    #[derive(serde::Deserialize)]
    struct Raw {
        keys: Vec<serde_json::Value>,
    }
    let raw: Raw =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut out = Vec::new();
    for k in raw.keys {
        match serde_json::from_value::<Jwk>(k.clone()) {
            Ok(j)
                if j.common.public_key_use != Some(jsonwebtoken::jwk::PublicKeyUse::Encryption) =>
            {
                out.push((j.common.key_id.clone(), j));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(key = %k.get("kid").unwrap_or(&serde_json::Value::Null), error = %e, "skipping a JWKS key this server cannot use")
            }
        }
    }
    if out.is_empty() {
        return Err("the JWKS has no usable signing key".into());
    }
    Ok(out)
}

impl Oidc {
    /// Loads the keys once (a provider that cannot be reached at start is an error: the
    /// server would refuse every token).
    pub async fn new(cfg: OidcConfig) -> Result<Self, String> {
        if cfg.issuer.is_empty() || cfg.audience.is_empty() {
            return Err("auth.oidc needs issuer and audience".into());
        }
        if cfg.algorithms.is_empty() {
            return Err("auth.oidc.algorithms is empty".into());
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let oidc = Oidc {
            cfg,
            keys: Mutex::new(Keys {
                set: Vec::new(),
                stamp: None,
                fetched: Instant::now(),
            }),
            refresh: tokio::sync::Mutex::new(()),
            http,
        };
        let (set, stamp) = oidc.fetch().await?;
        *oidc.keys.lock().unwrap_or_else(|p| p.into_inner()) = Keys {
            set,
            stamp,
            fetched: Instant::now(),
        };
        Ok(oidc)
    }

    async fn fetch(
        &self,
    ) -> Result<(Vec<(Option<String>, Jwk)>, Option<std::time::SystemTime>), String> {
        match &self.cfg.jwks {
            JwksSource::File(p) => {
                let stamp = std::fs::metadata(p).and_then(|m| m.modified()).ok();
                let bytes =
                    std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
                Ok((
                    parse_jwks(&bytes).map_err(|e| format!("{}: {e}", p.display()))?,
                    stamp,
                ))
            }
            JwksSource::Url(u) => {
                let resp = self
                    .http
                    .get(u)
                    .send()
                    .await
                    .map_err(|e| format!("fetching {u}: {e}"))?;
                if !resp.status().is_success() {
                    return Err(format!("fetching {u}: HTTP {}", resp.status()));
                }
                if resp.content_length().is_some_and(|n| n > 1 << 20) {
                    return Err(format!("{u}: a JWKS over 1 MiB"));
                }
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|e| format!("fetching {u}: {e}"))?;
                if bytes.len() > 1 << 20 {
                    return Err(format!("{u}: a JWKS over 1 MiB"));
                }
                Ok((parse_jwks(&bytes).map_err(|e| format!("{u}: {e}"))?, None))
            }
        }
    }

    fn find(&self, kid: Option<&str>) -> Option<Jwk> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        match kid {
            Some(k) => keys
                .set
                .iter()
                .find(|(id, _)| id.as_deref() == Some(k))
                .map(|(_, j)| j.clone()),
            // No kid: only a provider with one key is unambiguous.
            None if keys.set.len() == 1 => Some(keys.set[0].1.clone()),
            None => None,
        }
    }

    /// Re-reads the keys if the file changed, or re-fetches them from the URL at most
    /// every 30 s.
    async fn refresh(&self) {
        let _one = self.refresh.lock().await;
        let due = {
            let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            match &self.cfg.jwks {
                JwksSource::File(p) => {
                    std::fs::metadata(p).and_then(|m| m.modified()).ok() != keys.stamp
                }
                JwksSource::Url(_) => keys.fetched.elapsed() >= Duration::from_secs(30),
            }
        };
        if !due {
            return;
        }
        match self.fetch().await {
            Ok((set, stamp)) => {
                *self.keys.lock().unwrap_or_else(|p| p.into_inner()) = Keys {
                    set,
                    stamp,
                    fetched: Instant::now(),
                };
            }
            Err(e) => {
                tracing::warn!(error = %e, "refreshing the identity provider's keys failed; keeping the old ones");
                self.keys.lock().unwrap_or_else(|p| p.into_inner()).fetched = Instant::now();
            }
        }
    }

    /// The identity `token` authenticates, or why not (reason codes above).
    pub async fn verify(&self, token: &str) -> Result<Identity, Error> {
        let header = token
            .split('.')
            .next()
            .and_then(|h| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(h)
                    .ok()
            })
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .ok_or_else(|| refused("invalid_token", "the bearer token is not a JWT"))?;
        let alg_name = header.get("alg").and_then(|a| a.as_str()).unwrap_or("");
        let alg = alg_name
            .parse::<Algorithm>()
            .ok()
            .filter(|a| self.cfg.algorithms.contains(a))
            .ok_or_else(|| {
                refused(
                    "alg_not_allowed",
                    format!("JWT algorithm {alg_name:?} is not accepted"),
                )
            })?;
        let kid = header.get("kid").and_then(|k| k.as_str());
        let jwk = match self.find(kid) {
            Some(j) => j,
            None => {
                self.refresh().await;
                self.find(kid).ok_or_else(|| {
                    refused(
                        "unknown_key",
                        format!("the identity provider has no key {:?}", kid.unwrap_or("")),
                    )
                })?
            }
        };
        if let Some(ka) = jwk.common.key_algorithm
            && ka.to_string() != alg_name
        {
            return Err(refused(
                "alg_not_allowed",
                format!(
                    "key {:?} is for {ka}, the token says {alg_name}",
                    kid.unwrap_or("")
                ),
            ));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| {
            refused(
                "unknown_key",
                format!("the provider's key is unusable: {e}"),
            )
        })?;
        let mut v = Validation::new(alg);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[&self.cfg.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.validate_nbf = true;
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &v)
                .map_err(|e| match e.kind() {
                    ErrorKind::ExpiredSignature => refused("token_expired", "the JWT has expired"),
                    ErrorKind::ImmatureSignature => {
                        refused("token_not_yet_valid", "the JWT is not valid yet (nbf)")
                    }
                    ErrorKind::InvalidIssuer => refused(
                        "wrong_issuer",
                        format!("the JWT was not issued by {}", self.cfg.issuer),
                    ),
                    ErrorKind::InvalidAudience => refused(
                        "wrong_audience",
                        format!("the JWT is not for audience {}", self.cfg.audience),
                    ),
                    ErrorKind::InvalidSignature => {
                        refused("bad_signature", "the JWT signature does not verify")
                    }
                    ErrorKind::InvalidAlgorithm => {
                        refused("alg_not_allowed", "the JWT algorithm does not fit its key")
                    }
                    ErrorKind::MissingRequiredClaim(c) => {
                        refused("invalid_token", format!("the JWT has no {c} claim"))
                    }
                    _ => refused("invalid_token", format!("the JWT is not valid: {e}")),
                })?;
        let claims = data.claims;
        let subject = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .unwrap_or("")
            .to_owned();
        let values: Vec<&str> = match claims.get(&self.cfg.role_claim) {
            Some(serde_json::Value::String(s)) => vec![s.as_str()],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => Vec::new(),
        };
        // The most powerful role a value maps to would be a surprise; the first one wins,
        // in the order the provider lists them.
        let role = values
            .iter()
            .find_map(|v| {
                self.cfg
                    .roles
                    .get(*v)
                    .copied()
                    .or_else(|| v.parse::<Role>().ok())
            })
            .ok_or_else(|| {
                refused(
                    "no_role",
                    format!(
                        "the JWT's {} claim names no role this server knows",
                        self.cfg.role_claim
                    ),
                )
            })?;
        let participant = claims
            .get(&self.cfg.participant_claim)
            .and_then(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .map(str::to_owned);
        if role == Role::Participant && participant.is_none() {
            return Err(refused(
                "no_role",
                format!(
                    "a participant JWT needs the {} claim",
                    self.cfg.participant_claim
                ),
            ));
        }
        Ok(Identity {
            subject: format!("jwt:{subject}"),
            role,
            participant: if role == Role::Participant {
                participant
            } else {
                None
            },
            method: Method::Jwt,
        })
    }
}
