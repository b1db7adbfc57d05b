//! # veritrace-testkit: the real components, started by the project itself
//!
//! Every test and benchmark that needs a real component takes it from here, so each is
//! found, started, waited for and stopped one way:
//!
//! - [`broker`]: a tansu Kafka-protocol broker (`$VERITRACE_TANSU`, else the cache
//!   `scripts/test` builds it into).
//! - [`browser`]: headless Chromium (Debian's, driven by `tools/browser`'s playwright-core)
//!   for page tests.
//! - [`anvil`]: an Anvil EVM node (`$VERITRACE_ANVIL`, else `tools/evm`'s, installed by
//!   `npm ci --prefix tools/evm`), with its development keys.
//! - [`python`]: the Python with the ADBC Flight SQL driver and DuckDB
//!   (`$VERITRACE_PYTHON`, else the virtualenv `scripts/test` builds).
//! - [`metrics`]: `GET /metrics` and reading samples out of the Prometheus text.
//! - [`mosquitto`]: a mosquitto MQTT broker (Debian's, installed by `scripts/test`).
//! - [`moto`]: an S3-compatible object store (PyPI's `moto_server`, in the tools
//!   virtualenv).
//! - [`tls`]: a throw-away certificate authority (server and client certificates) and an
//!   HTTPS client, for the TLS and client-certificate tests.
//!
//! Components listen on `127.0.0.1` on a free port, never a fixed one, and are stopped by
//! PID when dropped. A component that cannot be found is an error naming what to run
//! (`scripts/test` installs everything); a test turns it into a failure, never a skip.

pub mod anvil;
pub mod broker;
pub mod browser;
pub mod metrics;
pub mod mosquitto;
pub mod moto;
pub mod python;
pub mod tls;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// The cache folder `scripts/test` installs tools into (`~/.cache/veritrace`).
pub fn cache_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/veritrace")
}

/// A free loopback port (the OS picks it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// Waits until something listens on `127.0.0.1:port`; on timeout the error names `what`
/// and ends with the last lines of `log`, if given.
pub fn wait_port(
    port: u16,
    what: &str,
    timeout: Duration,
    log: Option<&Path>,
) -> Result<(), String> {
    let until = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > until {
            return Err(format!(
                "{what} did not listen on 127.0.0.1:{port} within {timeout:?}{}",
                log.map(|l| format!("; log:\n{}", tail(l)))
                    .unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The last 40 lines of a log file (empty if it cannot be read).
pub fn tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Sends `signal` (`-TERM`, `-KILL`, ...) to a child by PID.
pub fn signal(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
}

/// Kills a child (`-KILL`) and reaps it.
pub fn kill(child: &mut Child) {
    signal(child, "-KILL");
    let _ = child.wait();
}
