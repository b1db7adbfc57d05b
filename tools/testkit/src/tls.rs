//! A throw-away certificate authority for TLS tests (server certificates for 127.0.0.1,
//! client certificates naming a device), written as PEM files, and a blocking HTTPS client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// A test CA whose files live in `dir`.
pub struct Pki {
    dir: PathBuf,
    name: String,
    ca: Certificate,
    ca_key: KeyPair,
    /// The CA certificate (PEM): the client CA of servers, the root of clients.
    pub ca_file: PathBuf,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn boxed(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl Pki {
    /// A new CA named `name`, its certificate written to `dir/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> std::io::Result<Self> {
        let ca_key = KeyPair::generate().map_err(boxed)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(boxed)?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = p.self_signed(&ca_key).map_err(boxed)?;
        let ca_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, ca.pem())?;
        Ok(Pki {
            dir: dir.to_owned(),
            name: name.to_owned(),
            ca,
            ca_key,
            ca_file,
        })
    }

    fn issue(&self, file: &str, p: CertificateParams) -> std::io::Result<Issued> {
        let key = KeyPair::generate().map_err(boxed)?;
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).map_err(boxed)?;
        let out = Issued {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&out.key, key.serialize_pem())?;
        std::fs::write(&out.cert, cert.pem())?;
        Ok(out)
    }

    /// A server certificate for `127.0.0.1` and `localhost`, written as `<file>.pem` and
    /// `<file>.key` (overwriting: a renewal).
    pub fn server(&self, file: &str) -> std::io::Result<Issued> {
        let mut p = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(boxed)?;
        p.distinguished_name.push(DnType::CommonName, file);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(file, p)
    }

    /// A client certificate whose subject common name is `cn` (a device id).
    pub fn client(&self, cn: &str) -> std::io::Result<Issued> {
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(boxed)?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(&format!("{}-client-{cn}", self.name), p)
    }
}

/// Sends `request` (a whole HTTP/1.1 request, `Connection: close`) over TLS to
/// `127.0.0.1:port`, trusting `ca` and presenting `client` if given; returns the raw
/// response. The TLS handshake failing is an error.
pub fn https(
    port: u16,
    ca: &Path,
    client: Option<&Issued>,
    request: &[u8],
) -> std::io::Result<Vec<u8>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(boxed)? {
        roots.add(c.map_err(boxed)?).map_err(boxed)?;
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(boxed)?
        .with_root_certificates(roots);
    let cfg = match client {
        None => b.with_no_client_auth(),
        Some(c) => {
            let certs = CertificateDer::pem_file_iter(&c.cert)
                .map_err(boxed)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(boxed)?;
            let key = PrivateKeyDer::from_pem_file(&c.key).map_err(boxed)?;
            b.with_client_auth_cert(certs, key).map_err(boxed)?
        }
    };
    let name = ServerName::try_from("127.0.0.1").map_err(boxed)?;
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).map_err(boxed)?;
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(request)?;
    s.flush()?;
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        // A server that closes without close_notify after a complete response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => Ok(out),
        Err(e) => Err(e),
    }
}

/// The status code of a raw HTTP/1.1 response.
pub fn status(response: &[u8]) -> Option<u16> {
    let line = response.split(|&b| b == b'\n').next()?;
    std::str::from_utf8(line)
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
