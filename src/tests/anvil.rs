//! A real EVM node for the tests ([`veritrace_testkit::anvil`]: Anvil from tools/evm on a
//! free loopback port, stopped by PID; a missing Anvil fails the test, never skips it) and
//! the contract deployed through the real binary.

#![allow(dead_code, unreachable_pub)]

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use veritrace_testkit::anvil::Anvil;

/// Anvil's first well-known development key (public test data, never a real secret).
pub const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

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
