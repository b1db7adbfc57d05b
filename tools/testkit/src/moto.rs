//! An S3-compatible object store on a free loopback port: `moto_server` from PyPI
//! (`moto[server]`, pinned in tools/python/requirements.txt and installed by `scripts/test`
//! into the virtualenv beside [`crate::python::python`]). It answers conditional writes
//! (`If-None-Match: *`, `If-Match`) with 412 as S3 does.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `moto_server` of the tools virtualenv.
pub fn moto_bin() -> PathBuf {
    crate::python::python()
        .parent()
        .map(|d| d.join("moto_server"))
        .unwrap_or_else(|| PathBuf::from("moto_server"))
}

/// A running moto_server, killed by PID when dropped.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its directory (`moto.log`).
    pub dir: tempfile::TempDir,
}

impl Moto {
    /// Starts one; panics (failing the test) when it cannot.
    pub fn start() -> Moto {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts one, or says why not.
    pub fn try_start() -> Result<Moto, String> {
        let bin = moto_bin();
        if !bin.is_file() {
            return Err(format!(
                "no S3-compatible store: {} does not exist. Run scripts/test (it installs tools/python/requirements.txt) or set VERITRACE_PYTHON.",
                bin.display()
            ));
        }
        let dir = tempfile::tempdir().map_err(|e| format!("moto dir: {e}"))?;
        let log = dir.path().join("moto.log");
        let logf = std::fs::File::create(&log).map_err(|e| format!("moto log: {e}"))?;
        let port = crate::free_port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let m = Moto { child, port, dir };
        crate::wait_port(port, "moto_server", Duration::from_secs(60), Some(&log))?;
        Ok(m)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (`PUT /bucket`; moto accepts unsigned requests); panics on failure.
    pub fn create_bucket(&self, name: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("moto_server: {e}"));
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap_or_else(|e| panic!("moto_server: {e}"));
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "creating bucket {name}: {}",
            answer.lines().next().unwrap_or_default()
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
