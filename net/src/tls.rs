//! TLS for every server: rustls with the `ring` provider, certificates read from PEM files
//! and re-read when the files change (a renewed certificate is served from the next
//! connection on, no restart), and optional client certificates checked against a CA.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Whether clients present certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientCerts {
    /// Not asked for.
    #[default]
    Off,
    /// Asked for and checked against the client CA when presented; a client without one
    /// is still served (and is then anonymous).
    Optional,
    /// Required: a client without a certificate the CA signed fails the handshake.
    Required,
}

impl ClientCerts {
    /// Parses `off`, `optional` or `required`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(ClientCerts::Off),
            "optional" => Some(ClientCerts::Optional),
            "required" => Some(ClientCerts::Required),
            _ => None,
        }
    }

    /// The name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientCerts::Off => "off",
            ClientCerts::Optional => "optional",
            ClientCerts::Required => "required",
        }
    }
}

/// Where a server's TLS material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to; needed unless
    /// `client_certs` is `Off`.
    pub client_ca: Option<PathBuf>,
    /// Whether clients present certificates.
    pub client_certs: ClientCerts,
}

/// What went wrong loading TLS material; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds nothing usable.
    #[error("{path}: {detail}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// rustls refused the material (a key that does not match the certificate, say).
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_err(path: &Path, detail: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsFiles {
    /// Reads the files and builds the rustls configuration (TLS 1.2 and 1.3, ALPN h2 and
    /// http/1.1).
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let certs = read_certs(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| file_err(&self.key, e))?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match self.client_certs {
            ClientCerts::Off => builder.with_no_client_auth(),
            mode => {
                let ca = self.client_ca.as_ref().ok_or_else(|| {
                    TlsError::Config(format!(
                        "client certificates are {} but no client CA file is set",
                        mode.as_str()
                    ))
                })?;
                let mut roots = rustls::RootCertStore::empty();
                for c in read_certs(ca)? {
                    roots.add(c).map_err(|e| file_err(ca, e))?;
                }
                let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let v = if mode == ClientCerts::Optional {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                builder.with_client_cert_verifier(
                    v.build().map_err(|e| TlsError::Config(e.to_string()))?,
                )
            }
        };
        let mut cfg = builder.with_single_cert(certs, key).map_err(|e| {
            TlsError::Config(format!(
                "{} and {}: {e}",
                self.cert.display(),
                self.key.display()
            ))
        })?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }

    fn stamp(&self) -> Vec<Option<(SystemTime, u64)>> {
        let one = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        };
        let mut v = vec![one(&self.cert), one(&self.key)];
        if let Some(ca) = &self.client_ca {
            v.push(one(ca));
        }
        v
    }
}

struct Current {
    config: Arc<ServerConfig>,
    stamp: Vec<Option<(SystemTime, u64)>>,
    checked: Instant,
}

/// A server's TLS configuration, re-read when its files change (checked at most once per
/// second, on a new connection). A change that does not load (a key written before its
/// certificate, say) keeps the previous configuration and is logged; the next change is
/// tried again.
pub struct Tls {
    files: TlsFiles,
    current: Mutex<Current>,
    reloads: std::sync::atomic::AtomicU64,
    failures: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// How often the files are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);

impl Tls {
    /// Loads the files; fails when they do not make a configuration.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let stamp = files.stamp();
        let config = Arc::new(files.server_config()?);
        Ok(Arc::new(Tls {
            files,
            current: Mutex::new(Current {
                config,
                stamp,
                checked: Instant::now(),
            }),
            reloads: Default::default(),
            failures: Default::default(),
        }))
    }

    /// The files.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The configuration for a new connection, re-read first if the files changed.
    pub fn config(&self) -> Arc<ServerConfig> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if cur.checked.elapsed() >= CHECK_EVERY {
            cur.checked = Instant::now();
            let stamp = self.files.stamp();
            if stamp != cur.stamp {
                cur.stamp = stamp;
                match self.files.server_config() {
                    Ok(c) => {
                        cur.config = Arc::new(c);
                        self.reloads
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                    }
                    Err(e) => {
                        self.failures
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::error!(error = %e, "TLS files changed but do not load; keeping the previous certificate");
                    }
                }
            }
        }
        cur.config.clone()
    }

    /// Reloads that took effect.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Changes that did not load.
    pub fn reload_failures(&self) -> u64 {
        self.failures.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A verified client certificate: who it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject's common name (the device id, by Veritrace's convention).
    pub common_name: Option<String>,
    /// SHA-256 of the certificate (DER), hex: what audit lines name.
    pub sha256: String,
}

impl ClientCert {
    /// Reads the subject of a DER certificate rustls has already verified.
    pub fn from_der(der: &[u8]) -> Self {
        use x509_cert::der::Decode;
        let common_name = x509_cert::Certificate::from_der(der).ok().and_then(|c| {
            c.tbs_certificate.subject.0.iter().find_map(|rdn| {
                rdn.0.iter().find_map(|atv| {
                    (atv.oid == x509_cert::der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3"))
                        .then(|| string_value(&atv.value))
                        .flatten()
                })
            })
        });
        let mut h = Sha256::new();
        h.update(der);
        ClientCert {
            common_name,
            sha256: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

fn string_value(v: &x509_cert::der::Any) -> Option<String> {
    use x509_cert::der::{Tag, Tagged};
    match v.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString => {
            std::str::from_utf8(v.value()).ok().map(str::to_owned)
        }
        _ => None,
    }
}
