//! The async runtime and the stop signal that every long-running command shares (the
//! command line, the demo, the Kafka processor): one place, so none of them imports another.

use anyhow::Context as _;

/// A multi-threaded tokio runtime with I/O and timers enabled.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Runs `servers` until they end (`Some` of their result) or Ctrl-C/SIGTERM: then `stop`
/// is sent (the servers stop accepting) and they get `grace` to finish what is running;
/// `None` when the grace period ran out first (what is still running is dropped).
pub async fn serve_until_signal<T>(
    servers: impl std::future::Future<Output = T>,
    stop: tokio::sync::watch::Sender<bool>,
    grace: std::time::Duration,
) -> Option<T> {
    let deadline = async {
        shutdown_signal().await;
        let _ = stop.send(true);
        eprintln!("shutting down: draining requests for up to {grace:?}");
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        r = servers => Some(r),
        () = deadline => {
            eprintln!("grace period of {grace:?} over: dropping the requests still running");
            None
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
