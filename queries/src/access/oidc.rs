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
    /// Fetch the keys from the URL again at most this often when a token names an
    /// unknown key (30 s by default).
    pub refresh_interval: Duration,
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
                JwksSource::Url(_) => keys.fetched.elapsed() >= self.cfg.refresh_interval,
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
            limits: super::Limits::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
    use serde_json::json;

    const ISS: &str = "https://idp.example.test/realms/supply";
    const AUD: &str = "veritrace";

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    /// An Ed25519 and a P-256 key of the "provider", with their JWKs.
    struct Provider {
        ed: (EncodingKey, serde_json::Value, Vec<u8>),
        ec: (EncodingKey, serde_json::Value),
    }

    fn provider() -> Provider {
        let rng = ring::rand::SystemRandom::new();
        let ed_der = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed25519");
        let ed = Ed25519KeyPair::from_pkcs8(ed_der.as_ref()).expect("ed25519");
        let ed_pub = ed.public_key().as_ref().to_vec();
        let ec_der =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("p256");
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec_der.as_ref(), &rng)
            .expect("p256");
        let point = ec.public_key().as_ref();
        Provider {
            ed: (
                EncodingKey::from_ed_der(ed_der.as_ref()),
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&ed_pub), "kid": "ed-1", "alg": "EdDSA", "use": "sig"}),
                ed_pub,
            ),
            ec: (
                EncodingKey::from_ec_der(ec_der.as_ref()),
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]), "kid": "ec-1"}),
            ),
        }
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn claims(extra: serde_json::Value) -> serde_json::Value {
        let mut c = json!({"iss": ISS, "aud": AUD, "sub": "alice", "exp": now() + 600,
            "veritrace_role": "participant", "veritrace_participant": "plant-1"});
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                if v.is_null() {
                    c.remove(k);
                } else {
                    c.insert(k.clone(), v.clone());
                }
            }
        }
        c
    }

    fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, c: &serde_json::Value) -> String {
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, c, key).expect("sign")
    }

    async fn oidc(jwks: JwksSource) -> Oidc {
        Oidc::new(OidcConfig {
            issuer: ISS.into(),
            audience: AUD.into(),
            jwks,
            role_claim: "veritrace_role".into(),
            participant_claim: "veritrace_participant".into(),
            roles: BTreeMap::from([("sc-analysts".to_owned(), Role::Analyst)]),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            refresh_interval: Duration::ZERO,
        })
        .await
        .expect("oidc")
    }

    fn code(r: Result<Identity, Error>) -> &'static str {
        match r {
            Err(Error::Unauthenticated { code, .. }) => code,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn provider_tokens_are_checked_and_every_bad_one_is_refused_with_its_reason() {
        let p = provider();
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("jwks.json");
        std::fs::write(&file, json!({"keys": [p.ed.1, p.ec.1, {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB", "kid": "enc"}]}).to_string())
            .expect("jwks");
        let o = oidc(JwksSource::File(file.clone())).await;

        let id = o
            .verify(&sign(Algorithm::EdDSA, "ed-1", &p.ed.0, &claims(json!({}))))
            .await
            .expect("valid EdDSA");
        assert_eq!(id.role, Role::Participant);
        assert_eq!(id.participant.as_deref(), Some("plant-1"));
        assert_eq!(id.subject, "jwt:alice");
        let id = o
            .verify(&sign(
                Algorithm::ES256,
                "ec-1",
                &p.ec.0,
                &claims(json!({"veritrace_role": ["staff", "sc-analysts"]})),
            ))
            .await
            .expect("valid ES256, role from a group");
        assert_eq!((id.role, id.participant), (Role::Analyst, None));

        let ed = |c: serde_json::Value| sign(Algorithm::EdDSA, "ed-1", &p.ed.0, &claims(c));
        assert_eq!(
            code(o.verify(&ed(json!({"exp": now() - 3600}))).await),
            "token_expired"
        );
        assert_eq!(
            code(o.verify(&ed(json!({"aud": "another-app"}))).await),
            "wrong_audience"
        );
        assert_eq!(
            code(o.verify(&ed(json!({"iss": "https://evil.test"}))).await),
            "wrong_issuer"
        );
        assert_eq!(
            code(o.verify(&ed(json!({"nbf": now() + 3600}))).await),
            "token_not_yet_valid"
        );
        assert_eq!(
            code(o.verify(&ed(json!({"exp": null}))).await),
            "invalid_token"
        );
        assert_eq!(
            code(o.verify(&ed(json!({"veritrace_role": "root"}))).await),
            "no_role"
        );
        assert_eq!(
            code(o.verify(&ed(json!({"veritrace_role": null}))).await),
            "no_role"
        );
        assert_eq!(
            code(o.verify(&ed(json!({"veritrace_participant": null}))).await),
            "no_role"
        );
        // Unknown key id.
        assert_eq!(
            code(
                o.verify(&sign(Algorithm::EdDSA, "ed-9", &p.ed.0, &claims(json!({}))))
                    .await
            ),
            "unknown_key"
        );
        // A key of the set used for another algorithm than its own.
        assert_eq!(
            code(
                o.verify(&sign(Algorithm::ES256, "ed-1", &p.ec.0, &claims(json!({}))))
                    .await
            ),
            "alg_not_allowed"
        );
        // Signed by a stranger under a known kid.
        let stranger = provider();
        assert_eq!(
            code(
                o.verify(&sign(
                    Algorithm::EdDSA,
                    "ed-1",
                    &stranger.ed.0,
                    &claims(json!({}))
                ))
                .await
            ),
            "bad_signature"
        );
        // The payload changed after signing.
        let t = ed(json!({}));
        let parts: Vec<&str> = t.split('.').collect();
        let forged = b64(claims(json!({"veritrace_participant": "shop-1"}))
            .to_string()
            .as_bytes());
        assert_eq!(
            code(
                o.verify(&format!("{}.{forged}.{}", parts[0], parts[2]))
                    .await
            ),
            "bad_signature"
        );
        // alg none, and HMAC with the public key as the secret (algorithm confusion).
        let none = format!(
            "{}.{}.",
            b64(json!({"alg": "none", "kid": "ed-1"}).to_string().as_bytes()),
            b64(claims(json!({})).to_string().as_bytes())
        );
        assert_eq!(code(o.verify(&none).await), "alg_not_allowed");
        let hs = sign(
            Algorithm::HS256,
            "ed-1",
            &EncodingKey::from_secret(&p.ed.2).expect("hmac"),
            &claims(json!({})),
        );
        assert_eq!(code(o.verify(&hs).await), "alg_not_allowed");
        assert_eq!(code(o.verify("not.a.jwt").await), "invalid_token");
        assert_eq!(code(o.verify("").await), "invalid_token");

        // A rotated key set is read when a token names the new key.
        let next = provider();
        let mut k = next.ed.1.clone();
        k["kid"] = json!("ed-2");
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&file, json!({"keys": [k]}).to_string()).expect("rotate");
        let t = sign(Algorithm::EdDSA, "ed-2", &next.ed.0, &claims(json!({})));
        assert!(
            o.verify(&t).await.is_ok(),
            "the new key is used after rotation"
        );
    }

    #[tokio::test]
    async fn keys_are_fetched_from_the_providers_url_and_config_refuses_shared_secrets() {
        let p = provider();
        let jwks = json!({"keys": [p.ed.1]}).to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let served = jwks.clone();
        let server = tokio::spawn(async move {
            // A minimal HTTP/1.1 server: every request gets the JWKS.
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let body = served.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        let o = oidc(JwksSource::Url(format!("http://127.0.0.1:{port}/jwks"))).await;
        let t = sign(Algorithm::EdDSA, "ed-1", &p.ed.0, &claims(json!({})));
        assert!(o.verify(&t).await.is_ok());
        server.abort();

        assert!(parse_algorithm("HS256").is_err());
        assert!(parse_algorithm("none").is_err());
        assert_eq!(parse_algorithm("ES256"), Ok(Algorithm::ES256));
        let bad = Oidc::new(OidcConfig {
            issuer: ISS.into(),
            audience: AUD.into(),
            jwks: JwksSource::Url("http://127.0.0.1:9/nothing".into()),
            role_claim: "r".into(),
            participant_claim: "p".into(),
            roles: BTreeMap::new(),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            refresh_interval: Duration::ZERO,
        })
        .await;
        assert!(bad.is_err(), "an unreachable provider fails the start");
    }
}
