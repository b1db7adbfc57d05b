//! A tansu Kafka-protocol broker on a free loopback port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tansu binary: `$VERITRACE_TANSU`, else the cache `scripts/test` builds it into.
pub fn tansu_bin() -> PathBuf {
    std::env::var_os("VERITRACE_TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::cache_dir().join("tansu-0.6.0/bin/tansu"))
}

/// What a crashed broker needs to start again: its directory, port, storage and flags.
#[derive(Debug)]
pub struct Crashed {
    dir: tempfile::TempDir,
    port: u16,
    storage: String,
    extra: Vec<String>,
    bin: PathBuf,
}

/// A running tansu broker in its own working directory, killed when dropped.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its working directory (log in `broker.log`, SQLite storage when durable).
    pub dir: tempfile::TempDir,
    storage: String,
    extra: Vec<String>,
    bin: PathBuf,
}

impl Broker {
    /// A broker with in-memory storage; panics (failing the test) when it cannot start.
    pub fn start() -> Broker {
        Self::try_start(&tansu_bin(), crate::free_port(), "memory://tansu/")
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A broker with in-memory storage on a given port.
    pub fn start_on(port: u16) -> Broker {
        Self::try_start(&tansu_bin(), port, "memory://tansu/").unwrap_or_else(|e| panic!("{e}"))
    }

    /// A broker whose data survives a restart (SQLite in its directory).
    pub fn start_durable() -> Broker {
        // Relative to the broker's working directory (tansu resolves it there).
        Self::try_start(&tansu_bin(), crate::free_port(), "sqlite://broker.db")
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A durable broker that requires SASL/SCRAM-SHA-512 with one user. tansu 0.6 cannot
    /// create users once authentication is on, so the user is created first and the broker
    /// restarted with `--authentication` on the same storage.
    pub fn start_authenticated(user: &str, password: &str) -> Broker {
        let b = Self::start_durable();
        let out = Command::new(&b.bin)
            .args(["user", "create", "--broker", &format!("tcp://{}", b.addr())])
            .args([user, password, "--mechanism", "scram512"])
            .output()
            .expect("tansu user create");
        assert!(
            out.status.success(),
            "user create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut c = b.crash();
        c.extra.push("--authentication".to_owned());
        Self::restart(c)
    }

    /// Starts `bin` on `port` with `storage` (`memory://tansu/`, `sqlite://broker.db`).
    pub fn try_start(bin: &Path, port: u16, storage: &str) -> Result<Broker, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("broker dir: {e}"))?;
        Self::spawn(bin, dir, port, storage, &[])
    }

    fn spawn(
        bin: &Path,
        dir: tempfile::TempDir,
        port: u16,
        storage: &str,
        extra: &[String],
    ) -> Result<Broker, String> {
        if !bin.is_file() {
            return Err(format!(
                "no Kafka broker: {} does not exist. Run scripts/test (it builds tansu 0.6.0 into ~/.cache/veritrace) or set VERITRACE_TANSU to a tansu binary.",
                bin.display()
            ));
        }
        let url = format!("tcp://127.0.0.1:{port}");
        let log_path = dir.path().join("broker.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("broker log: {e}"))?;
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", storage])
            .args(extra)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let b = Broker {
            child,
            port,
            dir,
            storage: storage.to_owned(),
            extra: extra.to_vec(),
            bin: bin.to_owned(),
        };
        crate::wait_port(port, "tansu", Duration::from_secs(60), Some(&log_path))?;
        Ok(b)
    }

    /// Kills the broker (-9) and returns what is needed to start it again.
    pub fn crash(mut self) -> Crashed {
        crate::kill(&mut self.child);
        let placeholder = tempfile::tempdir().expect("placeholder dir");
        Crashed {
            dir: std::mem::replace(&mut self.dir, placeholder),
            port: self.port,
            storage: self.storage.clone(),
            extra: self.extra.clone(),
            bin: self.bin.clone(),
        }
    }

    /// Starts a crashed broker again on the same port and storage.
    pub fn restart(c: Crashed) -> Broker {
        let until = Instant::now() + Duration::from_secs(30);
        // The port may linger briefly after the old process died.
        while std::net::TcpListener::bind(("127.0.0.1", c.port)).is_err() && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        Self::spawn(&c.bin, c.dir, c.port, &c.storage, &c.extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `127.0.0.1:PORT`, the bootstrap servers.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log so far (the last 40 lines).
    pub fn log_tail(&self) -> String {
        crate::tail(&self.dir.path().join("broker.log"))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        crate::kill(&mut self.child);
    }
}
