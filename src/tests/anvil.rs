//! A real EVM node for the tests: Anvil from tools/evm (installed by `npm ci --prefix
//! tools/evm`, which scripts/test runs) on a free loopback port, stopped by PID. A missing
//! Anvil fails the test, never skips it.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Anvil's first well-known development key (public test data, never a real secret).
pub const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

pub struct Anvil {
    child: Child,
    pub port: u16,
    _log: tempfile::NamedTempFile,
}

impl Anvil {
    pub fn start(extra: &[&str]) -> Anvil {
        let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tools/evm/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
        assert!(
            bin.is_file(),
            "no EVM node for this test: {} is missing; run scripts/test (it runs `npm ci --prefix tools/evm`)",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = tempfile::NamedTempFile::new().expect("log");
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(extra)
            .stdout(log.reopen().expect("log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start anvil");
        let a = Anvil {
            child,
            port,
            _log: log,
        };
        let until = Instant::now() + Duration::from_secs(30);
        while a.try_rpc("eth_chainId", json!([])).is_none() {
            assert!(Instant::now() < until, "anvil did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        a
    }
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
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
    pub fn rpc(&self, method: &str, params: Value) -> Value {
        self.try_rpc(method, params)
            .unwrap_or_else(|| panic!("{method} failed"))
    }
    /// `Anchored` logs of a contract: (root topic, tx hash).
    pub fn anchored_logs(&self, contract: &str) -> Vec<(String, String)> {
        // keccak256("Anchored(bytes32,uint64,uint64)")
        let topic = self.rpc(
            "web3_sha3",
            json!([format!("0x{}", hex(b"Anchored(bytes32,uint64,uint64)"))]),
        );
        let logs = self.rpc(
            "eth_getLogs",
            json!([{"address": contract, "fromBlock": "0x0", "toBlock": "latest", "topics": [topic]}]),
        );
        logs.as_array()
            .expect("logs")
            .iter()
            .map(|l| {
                (
                    l["topics"][1].as_str().expect("root").to_owned(),
                    l["transactionHash"].as_str().expect("tx").to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Deploys the contract with `veritrace anchor deploy` (key: [`DEV_KEY`]); on a node that
/// does not mine by itself, mines until the deployment lands.
pub fn deploy(node: &Anvil) -> String {
    let url = node.url();
    let deploying = std::thread::spawn(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_veritrace"))
            .env("VERITRACE_EVM_KEY", DEV_KEY)
            .args(["anchor", "deploy", "--rpc", &url])
            .output()
            .expect("deploy");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        v["contract"].as_str().expect("address").to_owned()
    });
    let until = Instant::now() + Duration::from_secs(30);
    while !deploying.is_finished() {
        assert!(Instant::now() < until, "deployment did not finish");
        node.rpc("evm_mine", json!([]));
        std::thread::sleep(Duration::from_millis(100));
    }
    deploying.join().expect("deploy thread")
}
