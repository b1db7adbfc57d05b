//! # veritrace-net: how Veritrace's servers meet the network
//!
//! Every HTTP server of the project (the gateway now; the query server and Flight SQL
//! next) accepts connections through [`serve`]:
//!
//! - TLS with rustls ([`tls::Tls`]): certificate and key from PEM files, re-read when they
//!   change, so a renewed certificate needs no restart; optional or required client
//!   certificates verified against a CA, whose subject common name the server reads (the
//!   gateway maps it to a registered device).
//! - Plain TCP only on loopback unless the operator says otherwise ([`check_plaintext`]).
//! - Bounds: connections at once, TLS handshake time, request header time.
//! - Each request carries a [`Peer`]: the client address and its certificate.
//! - A graceful stop: no new connections, the running requests finish.

pub mod serve;
pub mod tls;

pub use serve::{AcceptStats, Peer, ServeOptions, check_plaintext, serve, tls_incoming};
pub use tls::{ClientCert, ClientCerts, Tls, TlsError, TlsFiles};

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::routing::get;
    use axum::{Extension, Router};
    use veritrace_testkit::tls::{Pki, https, status};

    use super::*;

    fn app() -> Router {
        Router::new().route(
            "/who",
            get(|Extension(p): Extension<Peer>| async move {
                format!(
                    "tls={} cn={}",
                    p.tls,
                    p.client
                        .as_ref()
                        .and_then(|c| c.common_name.clone())
                        .unwrap_or_else(|| "-".into())
                )
            }),
        )
    }

    const GET: &[u8] = b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    struct Server {
        port: u16,
        stop: tokio::sync::watch::Sender<bool>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
        stats: Arc<AcceptStats>,
    }

    async fn start(opts: ServeOptions) -> Server {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let stats = Arc::new(AcceptStats::default());
        let task = tokio::spawn(serve(l, app(), opts, stats.clone(), async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        Server {
            port,
            stop,
            task,
            stats,
        }
    }

    async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        tokio::task::spawn_blocking(f).await.expect("join")
    }

    fn body(resp: &[u8]) -> String {
        let s = String::from_utf8_lossy(resp);
        s.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_with_optional_and_required_client_certificates() {
        let dir = tempfile::tempdir().expect("tmp");
        let pki = Pki::new(dir.path(), "clients").expect("pki");
        let server = pki.server("server").expect("server cert");
        let dev = pki.client("dev-7").expect("client cert");
        // A client certificate from another CA is not accepted.
        let other = Pki::new(dir.path(), "other").expect("other pki");
        let stranger = other.client("dev-7").expect("stranger cert");

        let files = |mode| TlsFiles {
            cert: server.cert.clone(),
            key: server.key.clone(),
            client_ca: Some(pki.ca_file.clone()),
            client_certs: mode,
        };
        let s = start(ServeOptions {
            tls: Some(Tls::load(files(ClientCerts::Optional)).expect("tls")),
            ..ServeOptions::default()
        })
        .await;
        let (port, ca) = (s.port, pki.ca_file.clone());
        let (anon, with, strange) = blocking({
            let (ca, dev, stranger) = (ca.clone(), dev.clone(), stranger.clone());
            move || {
                (
                    https(port, &ca, None, GET).expect("anonymous"),
                    https(port, &ca, Some(&dev), GET).expect("with cert"),
                    https(port, &ca, Some(&stranger), GET),
                )
            }
        })
        .await;
        assert_eq!(status(&anon), Some(200));
        assert_eq!(body(&anon), "tls=true cn=-");
        assert_eq!(body(&with), "tls=true cn=dev-7");
        assert!(
            strange.is_err(),
            "a certificate from another CA: {strange:?}"
        );
        // The server counts the failure after the client has read the alert: wait for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while s
            .stats
            .handshake_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the refused handshake was never counted"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let _ = s.stop.send(true);
        s.task.await.expect("join").expect("serve");

        let s = start(ServeOptions {
            tls: Some(Tls::load(files(ClientCerts::Required)).expect("tls")),
            ..ServeOptions::default()
        })
        .await;
        let port = s.port;
        let (anon, with) = blocking({
            let dev = dev.clone();
            move || {
                (
                    https(port, &ca, None, GET),
                    https(port, &ca, Some(&dev), GET),
                )
            }
        })
        .await;
        assert!(
            anon.is_err(),
            "required: no certificate, no connection: {anon:?}"
        );
        assert_eq!(body(&with.expect("with cert")), "tls=true cn=dev-7");
        let _ = s.stop.send(true);
        s.task.await.expect("join").expect("serve");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_renewed_certificate_is_served_without_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let old_ca = Pki::new(dir.path(), "old").expect("pki");
        let cert = old_ca.server("server").expect("cert");
        let tls = Tls::load(TlsFiles {
            cert: cert.cert.clone(),
            key: cert.key.clone(),
            client_ca: None,
            client_certs: ClientCerts::Off,
        })
        .expect("tls");
        let s = start(ServeOptions {
            tls: Some(tls.clone()),
            ..ServeOptions::default()
        })
        .await;
        let port = s.port;
        let new_ca = Pki::new(dir.path(), "new").expect("pki");
        let (old_file, new_file) = (old_ca.ca_file.clone(), new_ca.ca_file.clone());
        let before = blocking({
            let f = old_file.clone();
            move || https(port, &f, None, GET)
        })
        .await;
        assert_eq!(status(&before.expect("old cert")), Some(200));
        // A half-written renewal (a key that does not match the certificate) keeps the old
        // certificate in service.
        let partial = new_ca.server("partial").expect("cert");
        std::fs::copy(&partial.key, &cert.key).expect("key only");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let during = blocking({
            let f = old_file.clone();
            move || https(port, &f, None, GET)
        })
        .await;
        assert_eq!(status(&during.expect("still the old cert")), Some(200));
        assert_eq!(tls.reload_failures(), 1);
        // The renewal completes: the new CA's certificate is served from then on.
        std::fs::copy(&partial.cert, &cert.cert).expect("cert");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let after = blocking(move || {
            (
                https(port, &new_file, None, GET),
                https(port, &old_file, None, GET),
            )
        })
        .await;
        assert_eq!(status(&after.0.expect("new cert")), Some(200));
        assert!(after.1.is_err(), "the old certificate is no longer served");
        assert_eq!(tls.reloads(), 1);
        let _ = s.stop.send(true);
        s.task.await.expect("join").expect("serve");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_over_the_limit_are_closed_and_plain_needs_loopback() {
        let s = start(ServeOptions {
            max_connections: 1,
            header_timeout: Duration::from_secs(60),
            ..ServeOptions::default()
        })
        .await;
        // One idle connection holds the only slot; the next is closed at once.
        let hold = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
            .await
            .expect("connect");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut next = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
            .await
            .expect("connect");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = next.write_all(GET).await;
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), next.read_to_end(&mut buf))
            .await
            .expect("closed, not hung");
        assert!(
            n.is_err() || buf.is_empty(),
            "served over the limit: {buf:?}"
        );
        assert_eq!(
            s.stats
                .over_limit
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        drop(hold);
        let _ = s.stop.send(true);
        s.task.await.expect("join").expect("serve");

        let lo = "127.0.0.1:8080".parse().expect("addr");
        let any = "0.0.0.0:8080".parse().expect("addr");
        assert!(check_plaintext("the gateway", lo, false, false).is_ok());
        assert!(check_plaintext("the gateway", any, true, false).is_ok());
        assert!(check_plaintext("the gateway", any, false, true).is_ok());
        let e = check_plaintext("the gateway", any, false, false).expect_err("refused");
        assert!(e.contains("allow-plaintext"), "{e}");
    }
}
