//! A mosquitto MQTT broker on a free loopback port (Debian's `mosquitto`, installed by
//! `scripts/test`; `$VERITRACE_MOSQUITTO` names another binary).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The mosquitto binary: `$VERITRACE_MOSQUITTO`, else Debian's `/usr/sbin/mosquitto`.
pub fn mosquitto_bin() -> PathBuf {
    std::env::var_os("VERITRACE_MOSQUITTO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/mosquitto"))
}

/// A running mosquitto, killed by PID when dropped. It keeps persistent sessions' messages
/// without limit (`max_queued_messages 0`), as a deployment behind the bridge should.
#[derive(Debug)]
pub struct Mosquitto {
    child: Child,
    /// Its port on 127.0.0.1 (plain TCP).
    pub port: u16,
    /// Its TLS port on 127.0.0.1 (client certificate required), when started with TLS.
    pub tls_port: Option<u16>,
    /// Its directory (config and `mosquitto.log`).
    pub dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts one; panics (failing the test) when it cannot.
    pub fn start() -> Mosquitto {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts one with a second, TLS listener that requires a client certificate from
    /// `client_ca`, serving `server` (certificate and key files); panics when it cannot.
    pub fn start_tls(server: &crate::tls::Issued, client_ca: &std::path::Path) -> Mosquitto {
        let tls = format!(
            "listener {{port}} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\n",
            client_ca.display(),
            server.cert.display(),
            server.key.display()
        );
        Self::try_start_with(Some(tls)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts one, or says why not.
    pub fn try_start() -> Result<Mosquitto, String> {
        Self::try_start_with(None)
    }

    fn try_start_with(tls: Option<String>) -> Result<Mosquitto, String> {
        let bin = mosquitto_bin();
        if !bin.is_file() {
            return Err(format!(
                "no MQTT broker: {} does not exist. Run scripts/test (it installs Debian's mosquitto) or set VERITRACE_MOSQUITTO.",
                bin.display()
            ));
        }
        let dir = tempfile::tempdir().map_err(|e| format!("mosquitto dir: {e}"))?;
        let port = crate::free_port();
        let conf = dir.path().join("mosquitto.conf");
        let log = dir.path().join("mosquitto.log");
        let tls_port = tls.as_ref().map(|_| crate::free_port());
        let tls_listener = match (&tls, tls_port) {
            (Some(t), Some(p)) => t.replace("{port}", &p.to_string()),
            _ => String::new(),
        };
        std::fs::write(
            &conf,
            format!(
                "allow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 100\nlog_dest file {}\nlistener {port} 127.0.0.1\n{tls_listener}",
                log.display()
            ),
        )
        .map_err(|e| format!("mosquitto config: {e}"))?;
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let m = Mosquitto {
            child,
            port,
            tls_port,
            dir,
        };
        crate::wait_port(port, "mosquitto", Duration::from_secs(30), Some(&log))?;
        if let Some(p) = tls_port {
            crate::wait_port(p, "mosquitto (TLS)", Duration::from_secs(30), Some(&log))?;
        }
        Ok(m)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
