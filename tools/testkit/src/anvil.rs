//! An Anvil EVM node on a free loopback port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The Anvil binary: `$VERITRACE_ANVIL`, else the one `npm ci --prefix tools/evm` installs.
pub fn anvil_bin() -> PathBuf {
    std::env::var_os("VERITRACE_ANVIL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            crate::repo_root()
                .join("tools/evm/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
        })
}

/// A running Anvil node, killed when dropped.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    /// Its JSON-RPC port on 127.0.0.1.
    pub port: u16,
    keys: Vec<String>,
    _log: tempfile::NamedTempFile,
}

impl Anvil {
    /// Starts [`anvil_bin`] with `extra` arguments (`--block-time 1`, `--no-mining`, ...);
    /// panics (failing the test) when it cannot.
    pub fn start(extra: &[&str]) -> Anvil {
        Self::try_start(&anvil_bin(), extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `bin` with `extra` arguments and waits until it answers JSON-RPC.
    pub fn try_start(bin: &Path, extra: &[&str]) -> Result<Anvil, String> {
        if !bin.is_file() {
            return Err(format!(
                "no EVM node: {} is missing; run scripts/test (it runs `npm ci --prefix tools/evm`) or set VERITRACE_ANVIL",
                bin.display()
            ));
        }
        let port = crate::free_port();
        let log = tempfile::NamedTempFile::new().map_err(|e| format!("anvil log: {e}"))?;
        let out = log.reopen().map_err(|e| format!("anvil log: {e}"))?;
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(extra)
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let mut a = Anvil {
            child,
            port,
            keys: Vec::new(),
            _log: log,
        };
        let until = Instant::now() + Duration::from_secs(30);
        while a.try_rpc("eth_chainId", json!([])).is_none() {
            if Instant::now() > until || matches!(a.child.try_wait(), Ok(Some(_))) {
                return Err(format!(
                    "anvil did not answer on 127.0.0.1:{port}; log:\n{}",
                    crate::tail(a._log.path())
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The banner with the keys can reach the log after the node answers (seen once on a
        // loaded machine): read it until the keys are there.
        loop {
            a.keys = dev_keys(&std::fs::read_to_string(a._log.path()).unwrap_or_default());
            if !a.keys.is_empty() {
                return Ok(a);
            }
            if Instant::now() > until {
                return Err(format!(
                    "anvil printed no development keys; log:\n{}",
                    crate::tail(a._log.path())
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The funded development keys Anvil printed (hex, `0x`-prefixed), in account order.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The chain id (`eth_chainId`).
    pub fn chain_id(&self) -> u64 {
        let v = self.rpc("eth_chainId", json!([]));
        v.as_str()
            .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
            .unwrap_or_else(|| panic!("eth_chainId answered {v}"))
    }

    /// A JSON-RPC call; `None` when the node does not answer or answers an error.
    pub fn try_rpc(&self, method: &str, params: Value) -> Option<Value> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        let v: Value = serde_json::from_str(resp.split("\r\n\r\n").nth(1)?).ok()?;
        v.get("result").cloned()
    }

    /// A JSON-RPC call that must succeed.
    pub fn rpc(&self, method: &str, params: Value) -> Value {
        self.try_rpc(method, params)
            .unwrap_or_else(|| panic!("{method} failed"))
    }

    /// `Anchored` logs of a contract: (root topic, tx hash).
    pub fn anchored_logs(&self, contract: &str) -> Vec<(String, String)> {
        let topic = self.rpc(
            "web3_sha3",
            json!([format!("0x{}", hex(b"Anchored(bytes32,uint64,uint64)"))]),
        );
        let logs = self.rpc(
            "eth_getLogs",
            json!([{"address": contract, "fromBlock": "0x0", "toBlock": "latest", "topics": [topic]}]),
        );
        logs.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| {
                        Some((
                            l["topics"][1].as_str()?.to_owned(),
                            l["transactionHash"].as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        crate::kill(&mut self.child);
    }
}

/// Lower-case hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The keys of Anvil's "Private Keys" banner: lines `(N) 0x<64 hex digits>`.
fn dev_keys(banner: &str) -> Vec<String> {
    let Some(section) = banner.split("Private Keys").nth(1) else {
        return Vec::new();
    };
    section
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with('('))
        .take_while(|l| l.starts_with('('))
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|k| k.len() == 66 && k.starts_with("0x"))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_keys_of_the_banner() {
        let banner = "Available Accounts\n==================\n\n(0) 0xf39F (10000 ETH)\n\nPrivate Keys\n==================\n\n(0) 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80\n(1) 0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d\n\nWallet\n";
        assert_eq!(
            dev_keys(banner),
            [
                "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
                "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
            ]
        );
        assert!(dev_keys("nothing").is_empty());
    }
}
