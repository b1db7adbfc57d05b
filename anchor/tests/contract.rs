//! The committed contract artifact (ABI + bytecode embedded by the EVM backend, so `cargo
//! build` never needs node) must be exactly what the pinned compiler makes of the source.

use std::path::Path;
use std::process::Command;

#[test]
fn committed_contract_artifact_matches_a_fresh_compile() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let solc = root.join("tools/evm/node_modules/solc");
    assert!(
        solc.is_dir(),
        "the pinned Solidity compiler is not installed at {}: run scripts/test (it runs \
         `npm ci --prefix tools/evm`)",
        solc.display()
    );
    let out = Command::new("node")
        .arg(root.join("anchor/contracts/compile.mjs"))
        .arg("--check")
        .output()
        .expect("node (Node.js) must be installed to check the contract artifact");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_artifact_exposes_the_anchoring_interface() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text =
        std::fs::read_to_string(root.join("contracts/VeritraceAnchor.json")).expect("artifact");
    let v: serde_json::Value = serde_json::from_str(&text).expect("artifact is JSON");
    let abi = v["abi"].as_array().expect("abi");
    let names: Vec<(&str, &str)> = abi
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or(""),
                e["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for want in [
        ("function", "anchor"),
        ("function", "anchoredAt"),
        ("function", "setWriter"),
        ("event", "Anchored"),
        ("error", "AlreadyAnchored"),
        ("error", "NotWriter"),
    ] {
        assert!(names.contains(&want), "{want:?} missing from the ABI");
    }
    assert_eq!(v["evmVersion"], "paris");
    assert!(
        v["bytecode"]
            .as_str()
            .is_some_and(|b| b.len() > 100 && b.starts_with("0x"))
    );
}
