//! Configuration: built-in defaults, then `veritrace.toml` (or `--config FILE`), then
//! `VERITRACE__SECTION__KEY` environment variables, then command-line flags. A key that does
//! not exist is an error naming it, never a silent default.
//!
//! ```toml
//! data-dir = "veritrace-data"
//!
//! [pipeline]
//! stream = "erp"
//! partitions = 4
//! batch-max-records = 10000
//! batch-max-age = "1s"
//! epoch-interval = "10s"
//! max-payload-bytes = 65536
//! max-future = "24h"
//! dedupe-memory-ids = 917504
//! dedupe-dir = ""
//!
//! [http]
//! listen = "127.0.0.1:8080"
//!
//! [kafka]
//! brokers = "kafka-1:9093,kafka-2:9093"
//! group = "veritrace-processors"
//!
//! [kafka.properties]
//! "security.protocol" = "SASL_SSL"
//! "sasl.mechanism" = "SCRAM-SHA-512"
//! "sasl.username" = "veritrace"
//! "sasl.password" = "${file:/run/secrets/kafka-password}"
//! "ssl.ca.location" = "/etc/veritrace/ca.pem"
//!
//! [anchor]
//! backend = "evm"
//!
//! [anchor.evm]
//! rpc = "https://rpc.example.net"
//! contract = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
//! key-file = "/run/secrets/anchor-key"
//! confirmations = 12
//! ```
//!
//! Environment example: `VERITRACE__PIPELINE__BATCH_MAX_RECORDS=50000`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use veritrace_processors::kafka::{ClientSettings, Properties, RAW_TOPIC, REJECTED_TOPIC};
use veritrace_processors::runtime::RuntimeConfig;

use veritrace_processors::signed::{Policy, REGISTRY_STREAM, SignaturePolicy, SignatureSettings};
use veritrace_processors::{BatchPolicy, EventType, Limits};
use veritrace_verify::signature::PublicKey;

/// Default config file looked up in the working directory.
pub const DEFAULT_FILE: &str = "veritrace.toml";

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// Data directory: events, rejected records, batches, epochs, ledger, keys.
    pub data_dir: PathBuf,
    /// Processing settings.
    pub pipeline: PipelineConfig,
    /// HTTP API settings.
    pub http: HttpConfig,
    /// Kafka: the production path (`veritrace process`, `ingest file --kafka`).
    pub kafka: KafkaConfig,
    /// Who anchors epoch roots: the local ledger or an EVM chain.
    pub anchor: AnchorConfig,
    /// What one query may cost (`veritrace serve`, `veritrace sql`).
    pub query: QueryConfig,
    /// Signed statements: the operator's root key and the signature policy.
    pub signatures: SignaturesConfig,
    /// `veritrace gateway`: HTTP ingest into the raw topic.
    pub gateway: GatewayConfig,
    /// `veritrace mqtt-bridge`: an MQTT broker's messages into Kafka.
    pub mqtt: MqttConfig,
    /// Who may use `veritrace serve` (HTTP and Flight SQL): API tokens, an OIDC provider,
    /// the anonymous role.
    pub auth: AuthConfig,
    /// Private fields: committed in the leaf, values kept apart, erasable.
    pub privacy: PrivacyConfig,
    /// How to reach an object store, for an `s3://bucket/prefix` data directory.
    pub storage: StorageConfig,
    /// GS1 EPCIS documents in (`ingest file`, the gateway's capture binding).
    pub epcis: EpcisConfig,
    /// Serialised codes that prove themselves: the brand keys the resolver checks.
    pub codes: CodesConfig,
    /// Business types of this deployment's own: `[types.NAME]` with its versions
    /// ([`veritrace_processors::types`]).
    pub types: BTreeMap<String, TypeConfig>,
    /// The directory of the config file read (relative schema paths start there).
    #[serde(skip)]
    pub config_dir: Option<PathBuf>,
}

/// `[codes]`: the GS1 Digital Link resolver of `veritrace serve` (`GET /01/{gtin}/21/{serial}`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CodesConfig {
    /// The brands' public keys (`ALG:HEX`) by GTIN prefix: a code's AI 8030 signature is
    /// checked with the key of the longest prefix its GTIN starts with.
    pub brand_keys: BTreeMap<String, String>,
}

impl CodesConfig {
    /// The keys, checked.
    pub fn keys(&self) -> anyhow::Result<veritrace_queries::resolver::BrandKeys> {
        veritrace_queries::resolver::BrandKeys::parse(
            self.brand_keys
                .iter()
                .map(|(p, k)| (p.as_str(), k.as_str())),
        )
        .map_err(|e| anyhow::anyhow!("codes.brand-keys: {e}"))
    }
}

/// `[types.NAME]`: a business type of the deployment's own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TypeConfig {
    /// What it records.
    #[serde(default)]
    pub description: String,
    /// Its versions, oldest first (`[[types.NAME.versions]]`); each is in force from its
    /// `from` time until the next one's.
    #[serde(default)]
    pub versions: Vec<TypeVersionConfig>,
}

/// `[[types.NAME.versions]]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TypeVersionConfig {
    /// In force from (RFC 3339).
    pub from: String,
    /// A built-in type whose requirements and trace-graph meaning it takes.
    #[serde(default)]
    pub like: Option<String>,
    /// Top-level fields it requires (`trace_code`, `site`, `device_id`, ...).
    #[serde(default)]
    pub required: Vec<String>,
    /// Trace code kinds it takes (`sgtin`, `lgtin`, `sscc`); none listed: any.
    #[serde(default)]
    pub trace_codes: Vec<String>,
    /// A JSON Schema (draft 7) file its `attributes` must satisfy; a relative path is from
    /// the config file's directory.
    #[serde(default)]
    pub attributes: String,
}

impl Config {
    /// The business types, compiled (schemas read and checked).
    pub fn business_types(&self) -> anyhow::Result<veritrace_processors::types::BusinessTypes> {
        let mut decls = BTreeMap::new();
        for (name, t) in &self.types {
            let mut versions = Vec::new();
            for (i, v) in t.versions.iter().enumerate() {
                let attributes = if v.attributes.is_empty() {
                    None
                } else {
                    let path = match &self.config_dir {
                        Some(d) if Path::new(&v.attributes).is_relative() => d.join(&v.attributes),
                        _ => PathBuf::from(&v.attributes),
                    };
                    let bytes = std::fs::read(&path).with_context(|| {
                        format!(
                            "types.{name} version {}: attributes {}",
                            i + 1,
                            v.attributes
                        )
                    })?;
                    Some(serde_json::from_slice(&bytes).with_context(|| {
                        format!(
                            "types.{name} version {}: attributes {} is not JSON",
                            i + 1,
                            v.attributes
                        )
                    })?)
                };
                versions.push(veritrace_processors::types::VersionDef {
                    from: v.from.clone(),
                    like: v.like.clone(),
                    required: v.required.clone(),
                    trace_codes: v.trace_codes.clone(),
                    attributes,
                });
            }
            decls.insert(name.clone(), (t.description.clone(), versions));
        }
        veritrace_processors::types::BusinessTypes::new(&decls)
            .map_err(|e| anyhow::anyhow!("types.{e}"))
    }
}

/// `[epcis]`: how EPCIS documents are checked before their events are taken.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EpcisConfig {
    /// The operator's copy of GS1's EPCIS 2.0 JSON schema (`EPCIS-JSON-Schema.json`, from
    /// <https://ref.gs1.org/standards/epcis/artefacts>). A document that fails it is refused
    /// whole, with where it failed. Empty: documents are not checked against a schema (their
    /// events are still checked one by one as they are mapped).
    pub schema: String,
}

impl EpcisConfig {
    /// The compiled schema, or `None` when none is configured.
    pub fn schema(&self) -> anyhow::Result<Option<veritrace_ingest::epcis::Schema>> {
        if self.schema.is_empty() {
            return Ok(None);
        }
        veritrace_ingest::epcis::Schema::load(Path::new(&self.schema))
            .map(Some)
            .map_err(anyhow::Error::msg)
            .context("[epcis] schema")
    }
}

/// `[storage]`: the object store of an `s3://bucket/prefix` data directory. Every empty
/// field falls back to the usual AWS variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
/// `AWS_ACCESS_KEY_ID`, ...; then IRSA or instance credentials). The secret may be an
/// indirection, `"${file:/run/secrets/s3/secret-access-key}"` or `"${env:NAME}"`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StorageConfig {
    /// An S3-compatible store's URL (`http://minio.minio.svc:9000`); empty: AWS.
    pub endpoint: String,
    /// The bucket's region.
    pub region: String,
    /// Plain HTTP to the endpoint (a store inside the cluster).
    pub allow_http: bool,
    /// The access key id (or an indirection).
    pub access_key_id: String,
    /// The secret access key (or an indirection); never printed.
    pub secret_access_key: String,
}

impl StorageConfig {
    /// The object-store options, indirections resolved.
    pub fn options(&self) -> anyhow::Result<veritrace_anchor::store::S3Options> {
        let resolve = |name: &str, v: &str| -> anyhow::Result<String> {
            let Some(inner) = v.strip_prefix("${").and_then(|v| v.strip_suffix('}')) else {
                return Ok(v.to_owned());
            };
            if let Some(var) = inner.strip_prefix("env:") {
                std::env::var(var).map_err(|_| {
                    anyhow::anyhow!("storage.{name}: environment variable {var} is not set")
                })
            } else if let Some(path) = inner.strip_prefix("file:") {
                std::fs::read_to_string(path)
                    .map(|s| s.trim().to_owned())
                    .map_err(|e| anyhow::anyhow!("storage.{name}: cannot read {path}: {e}"))
            } else {
                anyhow::bail!(
                    "storage.{name}: unknown indirection (use ${{env:NAME}} or ${{file:PATH}})"
                )
            }
        };
        let access_key_id = resolve("access-key-id", &self.access_key_id)?;
        let secret_access_key = resolve("secret-access-key", &self.secret_access_key)?;
        anyhow::ensure!(
            access_key_id.is_empty() == secret_access_key.is_empty(),
            "storage.access-key-id and storage.secret-access-key go together"
        );
        Ok(veritrace_anchor::store::S3Options {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key_id,
            secret_access_key,
            allow_http: self.allow_http,
        })
    }
}

/// `[privacy]`: see `veritrace_processors::privacy`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PrivacyConfig {
    /// `[privacy.fields]`: event type -> its private fields (`operator`, `site`,
    /// `participant.name`, `counterparty.name`, `attributes.KEY`).
    pub fields: BTreeMap<String, Vec<String>>,
}

/// `[auth]`: authentication of `veritrace serve` (see `veritrace_queries::access`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AuthConfig {
    /// The API token file (`veritrace tokens create` writes it); empty:
    /// `<data-dir>/access/tokens.json`.
    pub tokens_file: String,
    /// The role of requests without credentials: `auto` (admin when both listeners are on
    /// loopback and neither tokens nor an identity provider are configured, else none),
    /// `none` (refused with 401 `missing_credentials`), or a role name.
    pub anonymous: String,
    /// `[auth.oidc]`: bearer JWTs from an identity provider (off while `issuer` is empty).
    pub oidc: OidcSection,
    /// `[auth.limits.ROLE]`: what one role's queries may cost together, within `[query]`
    /// (a participant role's limit is per participant).
    pub limits: BTreeMap<String, RoleLimits>,
    /// Write every request of `veritrace serve` (but `/healthz`) to the audit log: the
    /// `veritrace.audit` stream of the data directory, sealed and anchored like events
    /// (the server then writes to the data directory).
    pub audit: bool,
}

/// `[auth.limits.ROLE]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RoleLimits {
    /// Queries of the role (of each participant, for `participant`) running at once; 0:
    /// only the server's limit.
    #[serde(default)]
    pub max_concurrent: usize,
    /// Deadline of one of its queries, e.g. `"5s"`, if shorter than `[query] timeout`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Memory its running queries may hold together, in MiB (a pool of its own); 0: the
    /// server's pool.
    #[serde(default)]
    pub memory_limit_mib: usize,
}

/// `[auth.oidc]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct OidcSection {
    /// The `iss` tokens must carry; empty turns OIDC off.
    pub issuer: String,
    /// The audience tokens must name.
    pub audience: String,
    /// The provider's keys: a JWKS file, or its `https://` (or `http://`) `jwks_uri`.
    pub jwks: String,
    /// The claim naming the role (a string, or a list such as groups).
    pub role_claim: String,
    /// The claim naming the participant (for the participant role).
    pub participant_claim: String,
    /// Accepted algorithms (public-key ones only).
    pub algorithms: Vec<String>,
    /// Claim values mapped to roles, e.g. `"supply-chain-analysts" = "analyst"`.
    pub roles: BTreeMap<String, String>,
}

impl AuthConfig {
    /// The token file for `data_dir`.
    pub fn tokens_path(&self, data_dir: &Path) -> PathBuf {
        if self.tokens_file.is_empty() {
            veritrace_queries::access::tokens::default_path(data_dir)
        } else {
            PathBuf::from(&self.tokens_file)
        }
    }

    /// The authenticator's settings; `loopback` says whether every listener is on loopback
    /// (for `anonymous = "auto"`).
    pub fn settings(
        &self,
        data_dir: &Path,
        loopback: bool,
    ) -> anyhow::Result<veritrace_queries::access::AuthConfig> {
        use veritrace_queries::access::Role;
        use veritrace_queries::access::oidc::{JwksSource, OidcConfig, parse_algorithm};
        let tokens_file = self.tokens_path(data_dir);
        let o = &self.oidc;
        let oidc = if o.issuer.is_empty() {
            None
        } else {
            anyhow::ensure!(
                !o.audience.is_empty() && !o.jwks.is_empty(),
                "auth.oidc needs audience and jwks besides issuer"
            );
            let roles = o
                .roles
                .iter()
                .map(|(k, v)| {
                    v.parse::<Role>()
                        .map(|r| (k.clone(), r))
                        .map_err(|e| anyhow::anyhow!("auth.oidc.roles.{k}: {e}"))
                })
                .collect::<anyhow::Result<_>>()?;
            let algorithms = o
                .algorithms
                .iter()
                .map(|a| {
                    parse_algorithm(a).map_err(|e| anyhow::anyhow!("auth.oidc.algorithms: {e}"))
                })
                .collect::<anyhow::Result<_>>()?;
            let jwks = if o.jwks.starts_with("https://") || o.jwks.starts_with("http://") {
                JwksSource::Url(o.jwks.clone())
            } else {
                JwksSource::File(o.jwks.clone().into())
            };
            Some(OidcConfig {
                issuer: o.issuer.clone(),
                audience: o.audience.clone(),
                jwks,
                role_claim: o.role_claim.clone(),
                participant_claim: o.participant_claim.clone(),
                roles,
                algorithms,
                refresh_interval: std::time::Duration::from_secs(30),
            })
        };
        let anonymous = match self.anonymous.as_str() {
            "auto" => {
                let has_tokens = veritrace_queries::access::tokens::list(&tokens_file)
                    .map_err(anyhow::Error::msg)?
                    .iter()
                    .any(|t| t.revoked.is_none());
                (loopback && !has_tokens && oidc.is_none()).then_some(Role::Admin)
            }
            "none" | "" => None,
            r => Some(
                r.parse::<Role>()
                    .map_err(|e| anyhow::anyhow!("auth.anonymous: {e}"))?,
            ),
        };
        let role_limits = self
            .limits
            .iter()
            .map(|(role, l)| {
                let r = role
                    .parse::<Role>()
                    .map_err(|e| anyhow::anyhow!("auth.limits.{role}: {e}"))?;
                Ok((
                    r,
                    veritrace_queries::access::Limits {
                        max_concurrent: (l.max_concurrent > 0).then_some(l.max_concurrent),
                        timeout: l.timeout,
                        memory_limit: (l.memory_limit_mib > 0)
                            .then(|| l.memory_limit_mib.saturating_mul(1 << 20)),
                    },
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(veritrace_queries::access::AuthConfig {
            tokens_file,
            oidc,
            anonymous,
            role_limits,
        })
    }
}

/// `[mqtt]`: the MQTT bridge (see `veritrace_ingest::mqtt`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MqttConfig {
    /// The MQTT broker, `host:port`.
    pub broker: String,
    /// Client id of the bridge's persistent session: fixed, so the broker keeps the
    /// messages the bridge has not acknowledged while it is away.
    pub client_id: String,
    /// Topic filter -> Kafka topic.
    pub routes: BTreeMap<String, String>,
    /// Messages received and not yet acknowledged, at most.
    pub max_in_flight: u16,
    /// Largest message taken from the broker.
    pub max_message_bytes: usize,
    /// Where /metrics and /healthz are served.
    pub metrics_listen: SocketAddr,
    /// `"3.1.1"` or `"5"` (a bare `5`, as an environment variable gives it, also reads).
    #[serde(deserialize_with = "string_or_number")]
    pub protocol: String,
    /// MQTT 5: how long the broker keeps the bridge's session while it is away.
    #[serde(with = "humantime_serde")]
    pub session_expiry: Duration,
    /// `[mqtt.tls]`: TLS to the broker.
    pub tls: MqttTlsConfig,
    /// `[mqtt.devices]`: topic filter -> the device that publishes on it (`{N}`: the
    /// topic's N-th level, a `+` of the filter).
    pub devices: BTreeMap<String, String>,
}

/// A string setting that may be written as a number (`5` for `"5"`).
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum V {
        S(String),
        U(u64),
        F(f64),
    }
    Ok(match V::deserialize(d)? {
        V::S(s) => s,
        V::U(u) => u.to_string(),
        V::F(f) => f.to_string(),
    })
}

/// `[mqtt.tls]`: TLS to the MQTT broker. Empty `ca`: plain TCP.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MqttTlsConfig {
    /// CA certificates (PEM) the broker's certificate must chain to.
    pub ca: String,
    /// The bridge's client certificate (PEM), for brokers that require one.
    pub cert: String,
    /// Its private key (PEM).
    pub key: String,
}

impl MqttConfig {
    /// `[mqtt.devices]`, parsed: each topic filter bound to the device id it names.
    pub fn device_bindings(&self) -> anyhow::Result<Vec<veritrace_ingest::devices::TopicBinding>> {
        self.devices
            .iter()
            .map(|(filter, id)| {
                veritrace_ingest::devices::TopicBinding::parse(filter, id)
                    .map_err(|e| anyhow::anyhow!("mqtt.devices: {e}"))
            })
            .collect()
    }

    /// The protocol version.
    pub fn protocol(&self) -> anyhow::Result<veritrace_ingest::mqtt::Protocol> {
        veritrace_ingest::mqtt::Protocol::parse(&self.protocol).with_context(|| {
            format!(
                "mqtt.protocol is {:?}; expected \"3.1.1\" or \"5\"",
                self.protocol
            )
        })
    }

    /// TLS to the broker, or `None`.
    pub fn tls(&self) -> anyhow::Result<Option<veritrace_ingest::mqtt::BridgeTls>> {
        let t = &self.tls;
        anyhow::ensure!(
            t.cert.is_empty() == t.key.is_empty(),
            "mqtt.tls.cert and mqtt.tls.key go together: set both or neither"
        );
        if t.ca.is_empty() {
            anyhow::ensure!(
                t.cert.is_empty(),
                "mqtt.tls.cert needs TLS: set mqtt.tls.ca (the broker's CA)"
            );
            return Ok(None);
        }
        Ok(Some(veritrace_ingest::mqtt::BridgeTls {
            ca: t.ca.clone().into(),
            client: (!t.cert.is_empty()).then(|| (t.cert.clone().into(), t.key.clone().into())),
        }))
    }
}

/// `[gateway]`: what one gateway accepts and how fast (see `veritrace_ingest::gateway`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest request body; larger ones are answered 413.
    pub max_body_bytes: usize,
    /// Most records in one request.
    pub max_records: usize,
    /// Records per second per signer (unsigned: per client address); 0 turns it off.
    pub rate: f64,
    /// Records a signer may send at once above the rate.
    pub burst: f64,
    /// How long a request waits for Kafka's acknowledgements before 503.
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// On SIGTERM, how long running requests may take to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Connections served at once; more are closed when accepted.
    pub max_connections: usize,
    /// Plain HTTP on an address other than loopback (a proxy in front terminates TLS).
    pub allow_plaintext: bool,
    /// No Kafka: process the records into the data directory (`--embedded`).
    pub embedded: bool,
    /// `[gateway.tls]`: TLS and client certificates.
    pub tls: TlsConfig,
}

/// `[*.tls]`: a server's TLS (rustls). Empty `cert` and `key`: plain TCP, allowed on
/// loopback only unless the server's `allow-plaintext` is set. The files are re-read when
/// they change (at most once a second), so a renewed certificate needs no restart.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain (PEM, leaf first).
    pub cert: String,
    /// Its private key (PEM).
    pub key: String,
    /// CA certificates (PEM) that client certificates must chain to.
    pub client_ca: String,
    /// `off`, `optional` (checked when presented) or `required` (no certificate, no
    /// connection).
    pub client_certs: String,
}

impl TlsConfig {
    /// The TLS files, or `None` for plain TCP; `what` names the section in errors.
    pub fn files(&self, what: &str) -> anyhow::Result<Option<veritrace_net::TlsFiles>> {
        let mode = veritrace_net::ClientCerts::parse(&self.client_certs).with_context(|| {
            format!(
                "{what}.client-certs is {:?}; expected off, optional or required",
                self.client_certs
            )
        })?;
        match (self.cert.is_empty(), self.key.is_empty()) {
            (true, true) => {
                anyhow::ensure!(
                    mode == veritrace_net::ClientCerts::Off,
                    "{what}.client-certs needs TLS: set {what}.cert and {what}.key"
                );
                Ok(None)
            }
            (false, false) => {
                anyhow::ensure!(
                    mode == veritrace_net::ClientCerts::Off || !self.client_ca.is_empty(),
                    "{what}.client-certs = {:?} needs {what}.client-ca",
                    self.client_certs
                );
                Ok(Some(veritrace_net::TlsFiles {
                    cert: self.cert.clone().into(),
                    key: self.key.clone().into(),
                    client_ca: (!self.client_ca.is_empty()).then(|| self.client_ca.clone().into()),
                    client_certs: mode,
                }))
            }
            _ => anyhow::bail!("{what}.cert and {what}.key go together: set both or neither"),
        }
    }
}

/// `[signatures]`: who may speak for devices and participants (see
/// `veritrace_processors::signed`). Policies are `off`, `record` or `enforce`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SignaturesConfig {
    /// The operator's root public key, which signs participant registrations: its text
    /// (`EdDSA:HEX`, as `veritrace keys generate` prints it) or a file holding it (a key
    /// file's `public`, or the text). Empty: no identity registry.
    pub root_key: String,
    /// The policy of streams and event types not named below.
    pub policy: Policy,
    /// Per event type, e.g. `{ production = "enforce" }`.
    pub event_types: BTreeMap<String, Policy>,
    /// Per stream (Kafka topic or pipeline stream), overriding the two above.
    pub streams: BTreeMap<String, StreamSignatures>,
    /// Signatures older than this are `stale_signature`, e.g. `"7d"`.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Signatures dated further ahead than this are `stale_signature` (clock skew).
    #[serde(with = "humantime_serde")]
    pub max_future: Duration,
}

/// `[signatures.streams.NAME]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StreamSignatures {
    /// The stream's policy (default: `[signatures] policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// Per event type on this stream (default: `[signatures] event-types`).
    #[serde(default)]
    pub event_types: BTreeMap<String, Policy>,
}

impl SignaturesConfig {
    /// The root key, read from the text or the file named.
    pub fn root(&self) -> anyhow::Result<Option<PublicKey>> {
        let v = self.root_key.trim();
        if v.is_empty() {
            return Ok(None);
        }
        crate::registry_cmd::read_public_key(v)
            .map(Some)
            .with_context(|| "signatures.root-key")
    }

    /// The settings the processors take.
    pub fn settings(&self) -> anyhow::Result<SignatureSettings> {
        for t in self
            .event_types
            .keys()
            .chain(self.streams.values().flat_map(|s| s.event_types.keys()))
        {
            anyhow::ensure!(
                EventType::ALL.iter().any(|e| e.as_str() == t) || self_types_has(t),
                "signatures.event-types: {t:?} is not an event type"
            );
        }
        let default = SignaturePolicy {
            default: self.policy,
            event_types: self.event_types.clone(),
            max_age: self.max_age,
            max_future: self.max_future,
        };
        let streams = self
            .streams
            .iter()
            .map(|(name, s)| {
                let mut p = default.clone();
                if let Some(d) = s.policy {
                    p.default = d;
                }
                p.event_types.extend(s.event_types.clone());
                (name.clone(), p)
            })
            .collect();
        Ok(SignatureSettings {
            root: self.root()?,
            privacy: Default::default(),
            default,
            streams,
        })
    }
}

/// `[query]`: bounds on one query and on the query stage (see `veritrace_queries::limits`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct QueryConfig {
    /// Longest SQL statement accepted, in bytes; longer ones are `statement_too_complex`.
    pub max_statement_bytes: usize,
    /// Deepest expression nesting accepted (`1+1+1` is 3 deep); deeper statements are
    /// `statement_too_complex`.
    pub max_expression_depth: usize,
    /// Most query blocks (SELECTs, subqueries, UNION arms) in one statement.
    pub max_query_blocks: usize,
    /// Most table references in one statement.
    pub max_table_references: usize,
    /// Deadline of one query, planning to last row, e.g. `"60s"` (`query_timeout` after).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Memory all running queries may hold together, in MiB; sorts and aggregates spill to
    /// disk beyond it, other queries fail with `query_memory_exceeded`.
    pub memory_limit_mib: usize,
    /// Queries (SQL, traces, certificates) running at once; more wait in line.
    pub max_concurrent: usize,
    /// How long a query waits for a slot before it is refused as `server_busy`, e.g. `"10s"`.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Threads of the query runtime; 0 is one per CPU.
    pub threads: usize,
    /// After SIGTERM or Ctrl-C, how long `veritrace serve` lets running requests finish
    /// before it cancels them and exits, e.g. `"10s"`.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl QueryConfig {
    /// The engine's limits.
    pub fn limits(&self) -> veritrace_queries::QueryLimits {
        veritrace_queries::QueryLimits {
            max_statement_bytes: self.max_statement_bytes,
            max_expression_depth: self.max_expression_depth,
            max_query_blocks: self.max_query_blocks,
            max_table_references: self.max_table_references,
            timeout: self.timeout,
            memory_limit: self.memory_limit_mib.saturating_mul(1 << 20),
            max_concurrent: self.max_concurrent,
            queue_timeout: self.queue_timeout,
            threads: self.threads,
        }
    }

    /// The engine's options: these limits, other settings from the environment.
    pub fn options(&self) -> veritrace_queries::QueryOptions {
        veritrace_queries::QueryOptions {
            limits: self.limits(),
            ..veritrace_queries::QueryOptions::from_env()
        }
    }
}

/// Anchor backend choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The embedded local ledger (signed, hash-chained file).
    Local,
    /// An EVM chain over JSON-RPC.
    Evm,
}

/// `[anchor]`: the backend, and the EVM settings used when it is `evm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AnchorConfig {
    /// `local` or `evm`.
    pub backend: BackendKind,
    /// `[anchor.evm]`.
    pub evm: EvmConfig,
}

/// `[anchor.evm]`: how epochs are anchored on an EVM chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EvmConfig {
    /// JSON-RPC URL of the chain (HTTP). Only its scheme, host and port are ever logged.
    pub rpc: String,
    /// The VeritraceAnchor contract (`veritrace anchor deploy` prints it). Required.
    pub contract: String,
    /// File holding the writer's private key (hex). Empty: the VERITRACE_EVM_KEY variable.
    pub key_file: String,
    /// Blocks (the anchoring block included) before an epoch counts as anchored.
    pub confirmations: u64,
    /// How often the chain is polled for receipts and new blocks.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Gas limit per anchoring transaction (one anchor uses about 50,000).
    pub gas_limit: u64,
    /// Highest fee per gas ever offered, in gwei (EIP-1559 max fee or legacy gas price).
    pub max_fee_per_gas_gwei: f64,
    /// Highest EIP-1559 priority fee (tip) per gas, in gwei.
    pub max_priority_fee_per_gas_gwei: f64,
    /// Anchoring transactions in flight at once (catching up after an outage).
    pub max_in_flight: usize,
    /// Deadline of one JSON-RPC request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest pause between retries while the chain is failing (doubles from 1 s).
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Anchored epochs this many blocks deep or less are re-checked for reorgs.
    pub reorg_depth: u64,
    /// A transaction pending this long is replaced (same nonce, fees +25%, within the
    /// limits).
    #[serde(with = "humantime_serde")]
    pub resubmit_after: Duration,
    /// At the end of `ingest file` (and the demo), how long to wait for the last epochs'
    /// anchors; epochs still waiting stay sealed and the next run anchors them.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl EvmConfig {
    /// The backend settings, loading the key (from `key-file` or VERITRACE_EVM_KEY).
    pub fn settings(&self) -> anyhow::Result<veritrace_anchor::evm::EvmSettings> {
        use veritrace_anchor::evm;
        anyhow::ensure!(
            !self.contract.is_empty(),
            "anchor.evm.contract is not set: deploy the contract with `veritrace anchor deploy --rpc URL` and put its address there"
        );
        let contract = self.contract.parse().map_err(|_| {
            anyhow::anyhow!(
                "anchor.evm.contract {:?} is not an address (0x and 40 hex digits)",
                self.contract
            )
        })?;
        let key_file = (!self.key_file.is_empty()).then(|| PathBuf::from(&self.key_file));
        let key = evm::load_key(key_file.as_deref())?;
        Ok(self.settings_with(contract, key))
    }

    /// The backend settings for a given contract and key.
    pub fn settings_with(
        &self,
        contract: veritrace_anchor::evm::Address,
        key: veritrace_anchor::evm::PrivateKeySigner,
    ) -> veritrace_anchor::evm::EvmSettings {
        let wei = |gwei: f64| (gwei * 1e9) as u128;
        veritrace_anchor::evm::EvmSettings {
            rpc: self.rpc.clone(),
            contract,
            key,
            confirmations: self.confirmations,
            poll_interval: self.poll_interval,
            gas_limit: self.gas_limit,
            max_fee_per_gas: wei(self.max_fee_per_gas_gwei),
            max_priority_fee_per_gas: wei(self.max_priority_fee_per_gas_gwei),
            max_in_flight: self.max_in_flight,
            request_timeout: self.request_timeout,
            retry_max: self.retry_max,
            reorg_depth: self.reorg_depth,
            resubmit_after: self.resubmit_after,
        }
    }
}

/// Kafka settings. Properties are passed to librdkafka unchanged, so any cluster setup
/// works (`security.protocol`, `sasl.mechanism`, `sasl.username`, `ssl.ca.location`, ...).
/// Secret values can be indirections, `"${env:NAME}"` or `"${file:/run/secrets/x}"`, and
/// are never printed (`***`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Consumer group of the processors.
    pub group: String,
    /// Topics the processors consume.
    pub topics: Vec<String>,
    /// Topic producers write raw events to (`ingest file --kafka`, the load generator).
    pub raw_topic: String,
    /// Topic rejected records are published to (original bytes, reason in headers).
    pub rejected_topic: String,
    /// Static membership id (`group.instance.id`), unique per processor; a restarted
    /// processor then takes its partitions back at once. Empty: dynamic membership.
    pub group_instance_id: String,
    /// Idempotent producers (no duplicates from retries). Turn off only for brokers
    /// without support.
    pub idempotent: bool,
    /// librdkafka properties for every client.
    pub properties: Properties,
    /// librdkafka properties for consumers only.
    pub consumer_properties: Properties,
    /// librdkafka properties for producers only.
    pub producer_properties: Properties,
    /// Where `veritrace process` serves /metrics and /healthz.
    pub metrics_listen: SocketAddr,
    /// Records re-read before a partition's resume offset, for brokers that cannot fetch
    /// from inside a record batch (tansu 0.6). 0 on Apache Kafka or Redpanda.
    pub resume_rewind: u64,
}

impl KafkaConfig {
    /// The client settings for librdkafka.
    pub fn client(&self) -> ClientSettings {
        ClientSettings {
            brokers: self.brokers.clone(),
            properties: self.properties.clone(),
            consumer: self.consumer_properties.clone(),
            producer: self.producer_properties.clone(),
            idempotent: self.idempotent,
        }
    }
}

/// How records are processed, batched and anchored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PipelineConfig {
    /// Stream name recorded in batch ids (the Kafka topic, or a name for file imports).
    pub stream: String,
    /// Partitions: processor threads, and how records are spread by trace code.
    pub partitions: u32,
    /// Seal a batch after this many records (accepted + rejected) of one partition, or as
    /// many rows (a signed bundle is one record holding many events, each its own row).
    pub batch_max_records: usize,
    /// Seal a batch when its oldest record is this old, e.g. `"1s"`, `"250ms"`.
    #[serde(with = "humantime_serde")]
    pub batch_max_age: Duration,
    /// Seal and anchor an epoch this often, e.g. `"10s"`.
    #[serde(with = "humantime_serde")]
    pub epoch_interval: Duration,
    /// Largest accepted record; larger ones are rejected as `payload_too_large`.
    pub max_payload_bytes: usize,
    /// How far in the future an event time may be (clock skew), e.g. `"24h"`.
    #[serde(with = "humantime_serde")]
    pub max_future: Duration,
    /// Event ids each partition keeps in memory for deduplication (about 20 bytes each);
    /// older ones are in sorted runs on local disk, with 2 bytes an id left in memory.
    pub dedupe_memory_ids: usize,
    /// Where those runs go: empty for `dedupe/` under a local data directory. A data
    /// directory on an object store needs a local path here for runs (one per data
    /// directory; lost runs are rebuilt from the events files); without one, every id stays
    /// in memory.
    pub dedupe_dir: PathBuf,
}

/// HTTP API settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where `veritrace serve` also answers Arrow Flight SQL (gRPC).
    pub flight_listen: SocketAddr,
    /// Plain HTTP and gRPC on an address other than loopback (a proxy in front terminates
    /// TLS).
    pub allow_plaintext: bool,
    /// `[http.tls]`: TLS for both listeners (HTTP and Flight SQL).
    pub tls: TlsConfig,
}

impl Default for Config {
    fn default() -> Self {
        let policy = BatchPolicy::default();
        Config {
            data_dir: PathBuf::from("veritrace-data"),
            pipeline: PipelineConfig {
                stream: "file".into(),
                partitions: 1,
                batch_max_records: policy.max_records,
                batch_max_age: policy.max_age,
                epoch_interval: Duration::from_secs(10),
                max_payload_bytes: policy.limits.max_payload,
                max_future: Duration::from_millis(policy.limits.max_future_ms as u64),
                dedupe_memory_ids: policy.dedupe_memory_ids,
                dedupe_dir: PathBuf::new(),
            },
            http: HttpConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                flight_listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
                allow_plaintext: false,
                tls: TlsConfig {
                    client_certs: "off".into(),
                    ..TlsConfig::default()
                },
            },
            kafka: KafkaConfig {
                brokers: "127.0.0.1:9092".into(),
                group: "veritrace-processors".into(),
                topics: vec![RAW_TOPIC.into()],
                raw_topic: RAW_TOPIC.into(),
                rejected_topic: REJECTED_TOPIC.into(),
                group_instance_id: String::new(),
                idempotent: true,
                properties: Properties::default(),
                consumer_properties: Properties::default(),
                producer_properties: Properties::default(),
                metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
                resume_rewind: veritrace_processors::kafka::DEFAULT_RESUME_REWIND,
            },
            query: {
                let l = veritrace_queries::QueryLimits::default();
                QueryConfig {
                    max_statement_bytes: l.max_statement_bytes,
                    max_expression_depth: l.max_expression_depth,
                    max_query_blocks: l.max_query_blocks,
                    max_table_references: l.max_table_references,
                    timeout: l.timeout,
                    memory_limit_mib: l.memory_limit >> 20,
                    max_concurrent: l.max_concurrent,
                    queue_timeout: l.queue_timeout,
                    threads: l.threads,
                    shutdown_grace: Duration::from_secs(10),
                }
            },
            mqtt: MqttConfig {
                broker: "127.0.0.1:1883".into(),
                client_id: "veritrace-bridge".into(),
                routes: BTreeMap::from([("veritrace/#".to_owned(), RAW_TOPIC.to_owned())]),
                devices: BTreeMap::new(),
                max_in_flight: 100,
                max_message_bytes: 1 << 20,
                metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9465)),
                protocol: "3.1.1".into(),
                session_expiry: Duration::from_secs(7 * 24 * 3600),
                tls: MqttTlsConfig::default(),
            },
            gateway: {
                let d = veritrace_ingest::gateway::GatewayConfig::default();
                GatewayConfig {
                    listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
                    max_body_bytes: d.max_body_bytes,
                    max_records: d.max_records,
                    rate: d.rate,
                    burst: d.burst,
                    delivery_timeout: d.delivery_timeout,
                    shutdown_grace: Duration::from_secs(10),
                    max_connections: veritrace_net::ServeOptions::default().max_connections,
                    allow_plaintext: false,
                    embedded: false,
                    tls: TlsConfig {
                        client_certs: "off".into(),
                        ..TlsConfig::default()
                    },
                }
            },
            privacy: PrivacyConfig::default(),
            storage: StorageConfig::default(),
            epcis: EpcisConfig::default(),
            codes: CodesConfig::default(),
            types: BTreeMap::new(),
            config_dir: None,
            auth: AuthConfig {
                tokens_file: String::new(),
                anonymous: "auto".into(),
                oidc: OidcSection {
                    issuer: String::new(),
                    audience: String::new(),
                    jwks: String::new(),
                    role_claim: "veritrace_role".into(),
                    participant_claim: "veritrace_participant".into(),
                    algorithms: veritrace_queries::access::oidc::DEFAULT_ALGORITHMS
                        .iter()
                        .map(|a| format!("{a:?}"))
                        .collect(),
                    roles: BTreeMap::new(),
                },
                limits: BTreeMap::new(),
                audit: true,
            },
            signatures: {
                let d = SignaturePolicy::default();
                SignaturesConfig {
                    root_key: String::new(),
                    policy: d.default,
                    event_types: BTreeMap::new(),
                    streams: BTreeMap::new(),
                    max_age: d.max_age,
                    max_future: d.max_future,
                }
            },
            anchor: AnchorConfig {
                backend: BackendKind::Local,
                evm: EvmConfig {
                    rpc: "http://127.0.0.1:8545".into(),
                    contract: String::new(),
                    key_file: String::new(),
                    confirmations: 3,
                    poll_interval: Duration::from_secs(1),
                    gas_limit: 200_000,
                    max_fee_per_gas_gwei: 200.0,
                    max_priority_fee_per_gas_gwei: 2.0,
                    max_in_flight: 16,
                    request_timeout: Duration::from_secs(10),
                    retry_max: Duration::from_secs(60),
                    reorg_depth: 64,
                    resubmit_after: Duration::from_secs(180),
                    drain_timeout: Duration::from_secs(120),
                },
            },
        }
    }
}

impl Config {
    /// Loads defaults, then `file` (or `veritrace.toml` if present), then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(p) => {
                anyhow::ensure!(p.is_file(), "config file {} does not exist", p.display());
                fig = fig.merge(Toml::file(p));
            }
            None if Path::new(DEFAULT_FILE).is_file() => fig = fig.merge(Toml::file(DEFAULT_FILE)),
            None => {}
        }
        fig = fig.merge(env_provider());
        let mut cfg: Config = fig
            .extract()
            .map_err(|e| anyhow::anyhow!(describe(e)))
            .context("invalid configuration")?;
        cfg.config_dir = match file {
            Some(p) => p.parent().map(Path::to_path_buf),
            None if Path::new(DEFAULT_FILE).is_file() => Some(PathBuf::new()),
            None => None,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let p = &self.pipeline;
        anyhow::ensure!(p.partitions >= 1, "pipeline.partitions must be at least 1");
        anyhow::ensure!(
            p.batch_max_records >= 1,
            "pipeline.batch-max-records must be at least 1"
        );
        anyhow::ensure!(
            !p.batch_max_age.is_zero(),
            "pipeline.batch-max-age must be positive"
        );
        anyhow::ensure!(
            !p.epoch_interval.is_zero(),
            "pipeline.epoch-interval must be positive"
        );
        anyhow::ensure!(
            p.max_payload_bytes >= 256,
            "pipeline.max-payload-bytes must be at least 256"
        );
        anyhow::ensure!(
            p.stream != REGISTRY_STREAM,
            "pipeline.stream must not be {REGISTRY_STREAM:?}: that stream holds the identity registry"
        );
        let g = &self.gateway;
        anyhow::ensure!(
            g.max_body_bytes >= 1024 && g.max_records >= 1,
            "gateway.max-body-bytes must be at least 1024 and gateway.max-records at least 1"
        );
        anyhow::ensure!(
            g.rate >= 0.0 && g.burst >= 1.0 && g.rate.is_finite() && g.burst.is_finite(),
            "gateway.rate must be 0 (off) or positive, gateway.burst at least 1"
        );
        anyhow::ensure!(
            g.max_connections >= 1,
            "gateway.max-connections must be at least 1"
        );
        g.tls.files("gateway.tls")?;
        self.codes.keys()?;
        let m = &self.mqtt;
        anyhow::ensure!(
            !m.client_id.is_empty() && !m.routes.is_empty() && m.max_in_flight >= 1,
            "mqtt.client-id and mqtt.routes must not be empty, mqtt.max-in-flight at least 1"
        );
        m.protocol()?;
        m.tls()?;
        m.device_bindings()?;
        let k = &self.kafka;
        anyhow::ensure!(!k.group.is_empty(), "kafka.group must not be empty");
        anyhow::ensure!(
            !k.topics.is_empty() && k.topics.iter().all(|t| !t.is_empty()),
            "kafka.topics must name at least one topic"
        );
        anyhow::ensure!(
            !k.topics.contains(&k.rejected_topic),
            "kafka.rejected-topic must not be one of kafka.topics (rejections would be re-read)"
        );
        let q = &self.query;
        anyhow::ensure!(
            q.max_statement_bytes >= 64 && q.max_expression_depth >= 8,
            "query.max-statement-bytes must be at least 64 and query.max-expression-depth at least 8"
        );
        anyhow::ensure!(
            q.max_query_blocks >= 1 && q.max_table_references >= 1 && q.max_concurrent >= 1,
            "query.max-query-blocks, max-table-references and max-concurrent must be at least 1"
        );
        anyhow::ensure!(
            !q.timeout.is_zero() && q.memory_limit_mib >= 16,
            "query.timeout must be positive and query.memory-limit-mib at least 16"
        );
        let e = &self.anchor.evm;
        anyhow::ensure!(
            e.confirmations >= 1,
            "anchor.evm.confirmations must be at least 1"
        );
        anyhow::ensure!(
            !e.poll_interval.is_zero() && !e.request_timeout.is_zero(),
            "anchor.evm.poll-interval and request-timeout must be positive"
        );
        anyhow::ensure!(
            e.max_in_flight >= 1,
            "anchor.evm.max-in-flight must be at least 1"
        );
        anyhow::ensure!(
            e.max_fee_per_gas_gwei >= 0.0
                && e.max_priority_fee_per_gas_gwei >= 0.0
                && e.max_priority_fee_per_gas_gwei <= e.max_fee_per_gas_gwei,
            "anchor.evm fee limits must be non-negative, the priority fee at most the max fee"
        );
        anyhow::ensure!(
            e.gas_limit >= 30_000,
            "anchor.evm.gas-limit below 30000 cannot anchor"
        );
        Ok(())
    }

    /// The anchor backend (loads the EVM key when the backend is `evm`).
    pub fn backend(&self) -> anyhow::Result<veritrace_anchor::Backend> {
        Ok(match self.anchor.backend {
            BackendKind::Local => veritrace_anchor::Backend::Local,
            BackendKind::Evm => {
                veritrace_anchor::Backend::Evm(Box::new(self.anchor.evm.settings()?))
            }
        })
    }

    /// The processors' runtime settings (loads the EVM key when the backend is `evm`).
    pub fn runtime(&self) -> anyhow::Result<RuntimeConfig> {
        let p = &self.pipeline;
        Ok(RuntimeConfig {
            stream: p.stream.clone(),
            partitions: p.partitions,
            policy: BatchPolicy {
                max_records: p.batch_max_records,
                max_age: p.batch_max_age,
                limits: Limits {
                    max_payload: p.max_payload_bytes,
                    max_future_ms: p.max_future.as_millis().min(i64::MAX as u128) as i64,
                },
                dedupe_memory_ids: p.dedupe_memory_ids,
            },
            epoch_interval: p.epoch_interval,
            backend: self.backend()?,
            anchor_drain: self.anchor.evm.drain_timeout,
            signatures: SignatureSettings {
                privacy: std::sync::Arc::new(
                    veritrace_processors::privacy::Privacy::new(&self.privacy.fields)
                        .map_err(|e| anyhow::anyhow!("privacy.fields: {e}"))?,
                ),
                ..self.signatures.settings()?
            },
        })
    }
}

/// `VERITRACE__PIPELINE__BATCH_MAX_RECORDS` -> `pipeline.batch-max-records`.
fn env_provider() -> Env {
    Env::prefixed("VERITRACE__")
        .split("__")
        .map(|k| k.as_str().replace('_', "-").into())
}

/// True when `name` is an installed business type.
fn self_types_has(name: &str) -> bool {
    veritrace_processors::types::current().has(name)
}

fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's error type, not ours
mod tests {
    use super::*;

    #[test]
    fn defaults_load_without_a_file() {
        figment::Jail::expect_with(|_| {
            assert_eq!(
                Config::load(None).map_err(|e| e.to_string())?,
                Config::default()
            );
            Ok(())
        });
    }

    #[test]
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "veritrace.toml",
                "data-dir = \"/srv/vt\"\n[pipeline]\nbatch-max-age = \"250ms\"\nepoch-interval = \"2s\"\n",
            )?;
            jail.set_env("VERITRACE__PIPELINE__BATCH_MAX_RECORDS", "50000");
            let c = Config::load(None).map_err(|e| format!("{e:#}"))?;
            assert_eq!(c.data_dir, PathBuf::from("/srv/vt"));
            assert_eq!(c.pipeline.batch_max_age, Duration::from_millis(250));
            assert_eq!(c.pipeline.epoch_interval, Duration::from_secs(2));
            assert_eq!(c.pipeline.batch_max_records, 50_000);
            assert_eq!(
                c.runtime().map_err(|e| e.to_string())?.policy.max_records,
                50_000
            );
            Ok(())
        });
    }

    #[test]
    fn the_documented_example_is_exactly_the_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("veritrace.toml", include_str!("../deploy/veritrace.toml"))?;
            let mut c = Config::load(None).map_err(|e| format!("{e:#}"))?;
            assert_eq!(
                c.config_dir,
                Some(PathBuf::new()),
                "schemas are found beside it"
            );
            c.config_dir = None;
            assert_eq!(c, Config::default());
            Ok(())
        });
    }

    #[test]
    fn a_typo_is_an_error_naming_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("veritrace.toml", "[pipeline]\nbatch-max-recods = 5\n")?;
            let err = format!("{:#}", Config::load(None).expect_err("typo must fail"));
            assert!(err.contains("batch-max-recods"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn kafka_properties_pass_through_and_secrets_never_print() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "veritrace.toml",
                "[kafka]\nbrokers = \"k1:9093\"\n[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password\" = \"hunter2-secret\"\n",
            )?;
            let c = Config::load(None).map_err(|e| format!("{e:#}"))?;
            let client = c.kafka.client();
            let cc = client
                .consumer_config("g", None)
                .map_err(|e| e.to_string())?;
            assert_eq!(cc.get("security.protocol"), Some("SASL_SSL"));
            assert_eq!(cc.get("sasl.password"), Some("hunter2-secret"));
            assert_eq!(cc.get("bootstrap.servers"), Some("k1:9093"));
            let shown = format!("{c:?} {client:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            Ok(())
        });
    }

    #[test]
    fn bad_durations_and_values_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("veritrace.toml", "[pipeline]\nbatch-max-age = \"soon\"\n")?;
            let err = format!("{:#}", Config::load(None).expect_err("bad duration"));
            assert!(err.contains("batch-max-age"), "{err}");
            jail.create_file("veritrace.toml", "[pipeline]\npartitions = 0\n")?;
            let err = format!("{:#}", Config::load(None).expect_err("zero partitions"));
            assert!(err.contains("partitions"), "{err}");
            Ok(())
        });
    }
}
