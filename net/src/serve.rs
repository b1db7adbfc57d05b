//! One accept loop for every HTTP server: plain or TLS, HTTP/1.1 and HTTP/2, bounded
//! (connections, handshake and header time), with the client's address and certificate on
//! each request, and a graceful stop that finishes the requests already running.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use crate::tls::{ClientCert, Tls};

/// Who is on the other end of a request: its address and, over TLS with client
/// certificates, the certificate it presented (already verified against the client CA).
/// Every request carries one as an extension (`axum::Extension<Peer>`), beside axum's
/// `ConnectInfo<SocketAddr>`.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The client certificate, when one was presented.
    pub client: Option<Arc<ClientCert>>,
}

/// How a server accepts connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// TLS, or `None` for plain TCP.
    pub tls: Option<Arc<Tls>>,
    /// How long a client may take to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// How long a client may take to send a request's headers (slow clients holding
    /// connections open are cut off).
    pub header_timeout: Duration,
    /// Connections served at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            tls: None,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

/// Counts of what the accept loop turned away (for metrics and tests).
#[derive(Debug, Default)]
pub struct AcceptStats {
    /// Connections closed because `max_connections` were open.
    pub over_limit: AtomicU64,
    /// TLS handshakes that failed or timed out (no client certificate where one is
    /// required, a certificate the CA did not sign, not TLS at all).
    pub handshake_failures: AtomicU64,
}

/// The next connection; failures to accept (out of file descriptors, a connection reset
/// before it was taken) are logged and waited out rather than spun on.
async fn accept(listener: &TcpListener) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(c) => return c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The TLS handshake of one connection, bounded by `timeout`; a failure is counted.
async fn handshake(
    tls: &Tls,
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
    timeout: Duration,
    stats: &AcceptStats,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%addr, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Refuses plain TCP on an address other than loopback unless `allow_plaintext` says the
/// operator means it (a proxy in front terminates TLS, say): `what` names the server in the
/// error.
pub fn check_plaintext(
    what: &str,
    addr: SocketAddr,
    tls: bool,
    allow_plaintext: bool,
) -> Result<(), String> {
    if tls || allow_plaintext || addr.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "{what} would listen on {addr} without TLS: set its tls cert and key, listen on \
         loopback, or set allow-plaintext = true if a proxy in front terminates TLS"
    ))
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits for the requests
/// running at that moment to finish (bound that wait from outside, as
/// `serve_until_signal` does).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: ServeOptions,
    stats: Arc<AcceptStats>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout);
    builder.http2().timer(TokioTimer::new());
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            c = accept(&listener) => c,
            () = &mut shutdown => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            stats.over_limit.fetch_add(1, Ordering::Relaxed);
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let app = app.clone();
        let tls = opts.tls.clone();
        let timeout = opts.handshake_timeout;
        let stats = stats.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => {
                    let peer = Peer {
                        addr,
                        tls: false,
                        client: None,
                    };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(tcp), service(app, peer));
                    let _ = watcher.watch(conn).await;
                }
                Some(tls) => {
                    let Some(stream) = handshake(&tls, tcp, addr, timeout, &stats).await else {
                        return;
                    };
                    let client = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| Arc::new(ClientCert::from_der(c)));
                    let peer = Peer {
                        addr,
                        tls: true,
                        client,
                    };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service(app, peer));
                    let _ = watcher.watch(conn).await;
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn service(
    app: Router,
    peer: Peer,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer.addr));
        req.extensions_mut().insert(peer.clone());
        app.clone().oneshot(req)
    })
}

/// TLS connections accepted on `listener`, for servers that take a stream of connections
/// (tonic's Flight SQL): each handshake runs on its own task (a slow client holds up no
/// one), bounded by `opts.handshake_timeout`, with `opts.max_connections` handshakes at once;
/// failed handshakes are counted in `stats` and left out. Ends when `listener` fails for
/// good or the stream is dropped.
pub fn tls_incoming(
    listener: TcpListener,
    tls: Arc<Tls>,
    opts: &ServeOptions,
    stats: Arc<AcceptStats>,
) -> impl futures::Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>
+ Send
+ 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let timeout = opts.handshake_timeout;
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = tokio::select! {
                c = accept(&listener) => c,
                () = tx.closed() => return,
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                stats.over_limit.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (tx, tls, stats) = (tx.clone(), tls.clone(), stats.clone());
            tokio::spawn(async move {
                let _permit = permit;
                if let Some(s) = handshake(&tls, tcp, addr, timeout, &stats).await {
                    let _ = tx.send(Ok(s)).await;
                }
            });
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}
