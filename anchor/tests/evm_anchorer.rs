//! The EVM anchor backend against a real Anvil (from tools/evm, on a free loopback port):
//! many epochs with confirmations, the RPC going down and coming back, a crash with
//! transactions in flight, a reorg that drops anchored blocks, a writer the contract does
//! not allow, and fee limits. Every receipt is checked against the chain the way
//! `veritrace verify --rpc` does.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::Filter;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use veritrace_anchor::evm::{self, EvmSettings, JournalRecord, VeritraceAnchor};
use veritrace_anchor::{Anchorer, Backend, BatchHeader, DataDir};
use veritrace_verify::Digest;

use veritrace_testkit::anvil::Anvil;

fn anvil(extra: &[&str]) -> Anvil {
    Anvil::start(extra)
}

/// The node's URL, as alloy's providers take it.
fn endpoint(node: &Anvil) -> alloy::transports::http::reqwest::Url {
    node.url().parse().expect("anvil url")
}

/// A TCP forwarder in front of the node that can be switched off (connections refused
/// and cut) and on again: the RPC outage, without losing the chain's state.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    /// Milliseconds added before each request is forwarded: a slow node.
    delay_ms: Arc<AtomicU64>,
    generation: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (u, g, s, d) = (
            up.clone(),
            generation.clone(),
            stop.clone(),
            delay_ms.clone(),
        );
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if !u.load(Ordering::Relaxed) {
                            drop(client);
                            continue;
                        }
                        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                            continue;
                        };
                        let my_gen = g.load(Ordering::Relaxed);
                        for (mut from, mut to, delayed) in [
                            (
                                client.try_clone().expect("clone"),
                                server.try_clone().expect("clone"),
                                true,
                            ),
                            (server, client, false),
                        ] {
                            let (u, g, d) = (u.clone(), g.clone(), d.clone());
                            std::thread::spawn(move || {
                                let _ = from.set_nonblocking(false);
                                let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
                                let mut buf = [0u8; 16384];
                                loop {
                                    if !u.load(Ordering::Relaxed)
                                        || g.load(Ordering::Relaxed) != my_gen
                                    {
                                        let _ = from.shutdown(std::net::Shutdown::Both);
                                        let _ = to.shutdown(std::net::Shutdown::Both);
                                        return;
                                    }
                                    match from.read(&mut buf) {
                                        Ok(0) => {
                                            let _ = to.shutdown(std::net::Shutdown::Write);
                                            return;
                                        }
                                        Ok(n) => {
                                            let wait = d.load(Ordering::Relaxed);
                                            if delayed && wait > 0 {
                                                std::thread::sleep(Duration::from_millis(wait));
                                            }
                                            if to.write_all(&buf[..n]).is_err() {
                                                return;
                                            }
                                        }
                                        Err(e)
                                            if matches!(
                                                e.kind(),
                                                std::io::ErrorKind::WouldBlock
                                                    | std::io::ErrorKind::TimedOut
                                            ) => {}
                                        Err(_) => return,
                                    }
                                }
                            });
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy {
            port,
            up,
            delay_ms,
            generation,
            stop,
        }
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn settings(rpc: &str, key: PrivateKeySigner, contract: Address) -> EvmSettings {
    EvmSettings {
        rpc: rpc.to_owned(),
        contract,
        key,
        confirmations: 1,
        poll_interval: Duration::from_millis(50),
        gas_limit: 200_000,
        max_fee_per_gas: 200_000_000_000,
        max_priority_fee_per_gas: 2_000_000_000,
        max_in_flight: 16,
        request_timeout: Duration::from_secs(3),
        retry_max: Duration::from_millis(400),
        reorg_depth: 64,
        resubmit_after: Duration::from_secs(600),
    }
}

/// A batch header for an epoch (the epoch tree only needs headers).
fn header(n: u64) -> BatchHeader {
    let mut root = [0u8; 32];
    root[..8].copy_from_slice(&n.to_be_bytes());
    root[31] = 1;
    BatchHeader {
        batch_id: format!("t-p000-{n}-{n}"),
        stream: "t".into(),
        partition: 0,
        seq: n,
        first_offset: n,
        last_offset: n,
        records: 1,
        size: 1,
        root: Digest(root),
        prev_root: Digest::ZERO,
        sealed_at: "2026-11-21T00:00:00.000Z".into(),
        retracts: Vec::new(),
    }
}

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Seals one epoch holding batch `n` (its header appended to the partition's manifest
/// first, as a processor's seal does: the log is built from the manifests).
fn seal_epoch(dir: &DataDir, a: &mut Anchorer, n: u64) {
    let h = header(n);
    let manifest = dir.manifest_file("t", 0);
    std::fs::create_dir_all(manifest.parent().expect("parent")).expect("mkdir");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&manifest)
        .expect("manifest");
    std::io::Write::write_all(
        &mut f,
        (serde_json::to_string(&h).expect("json") + "\n").as_bytes(),
    )
    .expect("append");
    a.add(h);
    a.tick(Instant::now(), true, now)
        .expect("tick")
        .expect("epoch");
}

fn drain_all(a: &mut Anchorer, within: Duration) {
    a.drain(within).expect("drain");
    assert_eq!(
        a.unanchored_epochs(),
        0,
        "epochs left unanchored: {:?}",
        a.chain_status()
    );
}

fn deploy(node: &Anvil, key: &PrivateKeySigner) -> Address {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(evm::deploy(
        node.url().as_str(),
        key.clone(),
        Duration::from_millis(20),
    ))
    .expect("deploy")
    .contract
}

/// Deploys on a node that does not mine by itself, mining until the deployment lands.
fn deploy_mining(node: &Anvil, key: &PrivateKeySigner) -> Address {
    let (k, rpc) = (key.clone(), node.url());
    let h = std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .expect("rt")
            .block_on(evm::deploy(&rpc, k, Duration::from_millis(20)))
    });
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let p = ProviderBuilder::new().connect_http(endpoint(node));
    while !h.is_finished() {
        rt.block_on(p.raw_request::<_, String>("evm_mine".into(), ()))
            .expect("mine");
        std::thread::sleep(Duration::from_millis(50));
    }
    h.join().expect("join").expect("deploy").contract
}

/// Every `Anchored` log of the contract, as (root, tx).
fn chain_anchors(rpc: &str, contract: Address) -> Vec<(B256, B256)> {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let p = ProviderBuilder::new().connect_http(rpc.parse().expect("url"));
        let logs = p
            .get_logs(
                &Filter::new()
                    .address(contract)
                    .event_signature(VeritraceAnchor::Anchored::SIGNATURE_HASH)
                    .from_block(0),
            )
            .await
            .expect("logs");
        logs.iter()
            .map(|l| {
                let d = VeritraceAnchor::Anchored::decode_log(&l.inner).expect("decode");
                (d.root, l.transaction_hash.expect("tx"))
            })
            .collect()
    })
}

fn check_all(dir: &DataDir, a: &Anchorer, rpc: &str, contract: Address) {
    let receipts = evm::read_receipts(dir).expect("receipts");
    assert_eq!(receipts.len(), a.epochs().len());
    let rt = tokio::runtime::Runtime::new().expect("rt");
    for e in a.epochs() {
        let (root, r) = &receipts[&e.epoch_id];
        assert_eq!(*root, e.root);
        let checks = rt
            .block_on(evm::check_on_chain(
                rpc,
                r,
                &e.root,
                e.epoch_id,
                e.tree_size(),
                Some(contract),
                Duration::from_secs(5),
            ))
            .unwrap_or_else(|err| panic!("epoch {}: {err}", e.epoch_id));
        assert!(checks.len() >= 4, "{checks:?}");
    }
    // Each root on chain exactly once.
    let on_chain = chain_anchors(rpc, contract);
    let mut roots: Vec<B256> = on_chain.iter().map(|(r, _)| *r).collect();
    roots.sort();
    roots.dedup();
    assert_eq!(roots.len(), on_chain.len(), "a root was anchored twice");
    assert_eq!(on_chain.len(), a.epochs().len());
}

fn journal(dir: &DataDir) -> Vec<JournalRecord> {
    veritrace_anchor::read_jsonl(&dir.evm_journal_file()).expect("journal")
}

#[test]
fn many_epochs_anchor_in_order_and_an_rpc_outage_loses_nothing() {
    let node = anvil(&["--block-time", "0.1"]);
    let key: PrivateKeySigner = node.keys()[0].parse().expect("dev key");
    let contract = deploy(&node, &key);
    let proxy = Proxy::start(node.port);
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let mut s = settings(&proxy.url(), key, contract);
    s.confirmations = 2;
    let mut a = Anchorer::open(
        &dir,
        Duration::from_secs(3600),
        Backend::Evm(Box::new(s)),
        now,
    )
    .expect("anchorer");
    for n in 0..12 {
        seal_epoch(&dir, &mut a, n);
    }
    drain_all(&mut a, Duration::from_secs(60));
    check_all(&dir, &a, node.url().as_str(), contract);
    // Receipts are in epoch order: blocks never go backwards.
    let receipts = evm::read_receipts(&dir).expect("receipts");
    let blocks: Vec<u64> = receipts.values().map(|(_, r)| r.block_number).collect();
    assert!(blocks.windows(2).all(|w| w[0] <= w[1]), "{blocks:?}");

    // The RPC goes away: epochs stay sealed, failures are counted, nothing is lost.
    proxy.set_up(false);
    for n in 12..17 {
        seal_epoch(&dir, &mut a, n);
    }
    let until = Instant::now() + Duration::from_secs(30);
    while a.chain_status().expect("evm status").failures < 3 {
        assert!(Instant::now() < until, "{:?}", a.chain_status());
        a.drive().expect("drive");
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = a.chain_status().expect("evm status");
    assert_eq!(st.unanchored, 5, "{st:?}");
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.contains(&format!("127.0.0.1:{}", proxy.port))),
        "{st:?}"
    );
    // ... and comes back: everything is anchored, each root once.
    proxy.set_up(true);
    drain_all(&mut a, Duration::from_secs(60));
    check_all(&dir, &a, node.url().as_str(), contract);

    // A node slower than the request deadline: requests time out, epochs wait.
    proxy.delay_ms.store(4_000, Ordering::Relaxed);
    for n in 17..19 {
        seal_epoch(&dir, &mut a, n);
    }
    let failures = a.chain_status().expect("status").failures;
    let until = Instant::now() + Duration::from_secs(60);
    while a.chain_status().expect("status").failures < failures + 2 {
        assert!(Instant::now() < until, "{:?}", a.chain_status());
        a.drive().expect("drive");
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = a.chain_status().expect("status");
    assert!(st.unanchored >= 1, "{st:?}");
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.contains("no answer within")),
        "{st:?}"
    );
    // Back to normal speed: everything is anchored, each root once.
    proxy.delay_ms.store(0, Ordering::Relaxed);
    proxy.set_up(true);
    drain_all(&mut a, Duration::from_secs(60));
    check_all(&dir, &a, node.url().as_str(), contract);
}

#[test]
fn a_crash_with_transactions_in_flight_never_anchors_twice() {
    // No mining: the transactions wait in the mempool while the anchorer "crashes".
    let node = anvil(&["--no-mining"]);
    let rpc = node.url();
    let key: PrivateKeySigner = node.keys()[1].parse().expect("dev key");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let p = ProviderBuilder::new().connect_http(endpoint(&node));
    let contract = deploy_mining(&node, &key);
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let s = settings(&rpc, key, contract);
    let mut a = Anchorer::open(
        &dir,
        Duration::from_secs(3600),
        Backend::Evm(Box::new(s.clone())),
        now,
    )
    .expect("anchorer");
    for n in 0..3 {
        seal_epoch(&dir, &mut a, n);
    }
    a.drive().expect("drive");
    let submitted: Vec<String> = journal(&dir)
        .into_iter()
        .filter_map(|r| match r {
            JournalRecord::Submitted { tx_hash, .. } => Some(tx_hash),
            _ => None,
        })
        .collect();
    assert_eq!(
        submitted.len(),
        3,
        "three transactions signed and journaled"
    );
    drop(a); // the crash: only the journal survives
    // The node also forgets one of them (restart, mempool eviction).
    let dropped: B256 = submitted[1].parse().expect("hash");
    rt.block_on(p.raw_request::<_, serde_json::Value>("anvil_dropTransaction".into(), (dropped,)))
        .expect("drop tx");

    let mut a = Anchorer::open(
        &dir,
        Duration::from_secs(3600),
        Backend::Evm(Box::new(s)),
        now,
    )
    .expect("reopen");
    a.drive().expect("drive"); // re-broadcasts the forgotten transaction, signs nothing new
    for _ in 0..3 {
        rt.block_on(p.raw_request::<_, String>("evm_mine".into(), ()))
            .expect("mine");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.unanchored_epochs() > 0 && Instant::now() < deadline {
        a.drive().expect("drive");
        rt.block_on(p.raw_request::<_, String>("evm_mine".into(), ()))
            .expect("mine");
        std::thread::sleep(Duration::from_millis(60));
    }
    assert_eq!(a.unanchored_epochs(), 0, "{:?}", a.chain_status());
    let records = journal(&dir);
    let signed = records
        .iter()
        .filter(|r| matches!(r, JournalRecord::Submitted { .. }))
        .count();
    assert_eq!(signed, 3, "no second transaction was signed: {records:?}");
    check_all(&dir, &a, &rpc, contract);
    // The receipts name exactly the journaled transactions.
    let receipts = evm::read_receipts(&dir).expect("receipts");
    for (i, (_, r)) in receipts.values().enumerate() {
        assert_eq!(r.tx_hash, submitted[i]);
    }
}

#[test]
fn a_reorg_that_drops_anchored_blocks_is_detected_and_reanchored() {
    let node = anvil(&[]);
    let rpc = node.url();
    let key: PrivateKeySigner = node.keys()[2].parse().expect("dev key");
    let contract = deploy(&node, &key);
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let p = ProviderBuilder::new().connect_http(endpoint(&node));
    let snapshot: alloy::primitives::U256 = rt
        .block_on(p.raw_request("evm_snapshot".into(), ()))
        .expect("snapshot");
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let mut a = Anchorer::open(
        &dir,
        Duration::from_secs(3600),
        Backend::Evm(Box::new(settings(&rpc, key, contract))),
        now,
    )
    .expect("anchorer");
    for n in 0..2 {
        seal_epoch(&dir, &mut a, n);
    }
    drain_all(&mut a, Duration::from_secs(30));
    let before = evm::read_receipts(&dir).expect("receipts");

    // The chain reorganises: the anchoring blocks are gone, other blocks take their height.
    let reverted: bool = rt
        .block_on(p.raw_request("evm_revert".into(), (snapshot,)))
        .expect("revert");
    assert!(reverted);
    for _ in 0..6 {
        rt.block_on(p.raw_request::<_, String>("evm_mine".into(), ()))
            .expect("mine");
    }
    let old = &before[&0].1;
    let stale = rt.block_on(evm::check_on_chain(
        &rpc,
        old,
        &before[&0].0,
        0,
        1,
        None,
        Duration::from_secs(5),
    ));
    assert!(
        matches!(stale, Err(evm::ChainCheckError::Failed { code, .. }) if code == "root_not_on_chain"),
        "{stale:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        a.drive().expect("drive");
        let reorged = journal(&dir)
            .iter()
            .filter(|r| matches!(r, JournalRecord::Reorged { .. }))
            .count();
        if reorged == 2 && a.unanchored_epochs() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", a.chain_status());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(a.chain_status().expect("status").reorgs, 2);
    let after = evm::read_receipts(&dir).expect("receipts");
    for id in 0..2u64 {
        assert_ne!(before[&id].1.block_hash, after[&id].1.block_hash);
    }
    check_all(&dir, &a, &rpc, contract);
}

#[test]
fn a_key_the_contract_does_not_allow_is_refused_until_the_owner_allows_it() {
    let node = anvil(&[]);
    let rpc = node.url();
    let owner: PrivateKeySigner = node.keys()[3].parse().expect("dev key");
    let stranger: PrivateKeySigner = node.keys()[4].parse().expect("dev key");
    let contract = deploy(&node, &owner);
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let mut a = Anchorer::open(
        &dir,
        Duration::from_secs(3600),
        Backend::Evm(Box::new(settings(&rpc, stranger.clone(), contract))),
        now,
    )
    .expect("anchorer");
    seal_epoch(&dir, &mut a, 0);
    a.drain(Duration::from_millis(800)).expect("drain");
    let st = a.chain_status().expect("status");
    assert_eq!(st.unanchored, 1);
    let err = st.last_error.expect("an error");
    assert!(
        err.contains("NotWriter") && err.contains(&stranger.address().to_string()),
        "{err}"
    );
    assert!(chain_anchors(&rpc, contract).is_empty());

    // The owner allows it: the epoch is anchored on the next retry.
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let p = ProviderBuilder::new()
            .with_simple_nonce_management()
            .wallet(owner)
            .connect_http(endpoint(&node));
        VeritraceAnchor::new(contract, &p)
            .setWriter(stranger.address(), true)
            .send()
            .await
            .expect("send")
            .get_receipt()
            .await
            .expect("receipt");
    });
    drain_all(&mut a, Duration::from_secs(30));
    check_all(&dir, &a, &rpc, contract);
}

#[test]
fn fees_above_the_limit_wait_and_a_wrong_contract_is_named() {
    let node = anvil(&["--base-fee", "50000000000"]);
    let rpc = node.url();
    let key: PrivateKeySigner = node.keys()[5].parse().expect("dev key");
    let contract = deploy(&node, &key);
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let mut s = settings(&rpc, key.clone(), contract);
    s.max_fee_per_gas = 10_000_000_000; // 10 gwei, below the 50 gwei base fee
    let mut a = Anchorer::open(
        &dir,
        Duration::from_secs(3600),
        Backend::Evm(Box::new(s)),
        now,
    )
    .expect("anchorer");
    seal_epoch(&dir, &mut a, 0);
    a.drain(Duration::from_millis(500)).expect("drain");
    let err = a.chain_status().and_then(|s| s.last_error).expect("error");
    assert!(err.contains("max-fee-per-gas"), "{err}");
    assert!(
        journal(&dir).is_empty(),
        "nothing may be signed above the limit"
    );
    drop(a);

    // An address without the contract: a clear error, epochs wait.
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let nowhere = Address::repeat_byte(0x42);
    let mut a = Anchorer::open(
        &dir,
        Duration::from_secs(3600),
        Backend::Evm(Box::new(settings(&rpc, key, nowhere))),
        now,
    )
    .expect("anchorer");
    seal_epoch(&dir, &mut a, 0);
    a.drain(Duration::from_millis(300)).expect("drain");
    let err = a.chain_status().and_then(|s| s.last_error).expect("error");
    assert!(err.contains("no contract at"), "{err}");
}

#[test]
fn a_transaction_pending_too_long_is_replaced_with_higher_fees_and_lands_once() {
    let node = anvil(&["--no-mining"]);
    let rpc = node.url();
    let key: PrivateKeySigner = node.keys()[6].parse().expect("dev key");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let p = ProviderBuilder::new().connect_http(endpoint(&node));
    let mine = || {
        rt.block_on(p.raw_request::<_, String>("evm_mine".into(), ()))
            .expect("mine")
    };
    let contract = deploy_mining(&node, &key);
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let mut s = settings(&rpc, key, contract);
    s.resubmit_after = Duration::from_millis(300);
    let mut a = Anchorer::open(
        &dir,
        Duration::from_secs(3600),
        Backend::Evm(Box::new(s)),
        now,
    )
    .expect("anchorer");
    seal_epoch(&dir, &mut a, 0);
    let submitted = |dir: &DataDir| -> Vec<(u64, String, String)> {
        journal(dir)
            .into_iter()
            .filter_map(|r| match r {
                JournalRecord::Submitted {
                    nonce,
                    tx_hash,
                    raw,
                    ..
                } => Some((nonce, tx_hash, raw)),
                _ => None,
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while submitted(&dir).len() < 2 {
        assert!(Instant::now() < deadline, "{:?}", a.chain_status());
        a.drive().expect("drive");
        std::thread::sleep(Duration::from_millis(50));
    }
    let subs = submitted(&dir);
    assert_eq!(subs[0].0, subs[1].0, "the replacement reuses the nonce");
    assert_ne!(subs[0].1, subs[1].1);
    // The replacement offers more: read both fees back from the signed bytes.
    let fee = |raw: &str| {
        use alloy::consensus::Transaction as _;
        use alloy::eips::eip2718::Decodable2718;
        let bytes: alloy::primitives::Bytes = raw.parse().expect("hex");
        alloy::consensus::TxEnvelope::decode_2718(&mut bytes.as_ref())
            .expect("tx")
            .max_fee_per_gas()
    };
    assert!(fee(&subs[1].2) > fee(&subs[0].2) * 5 / 4);
    mine();
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.unanchored_epochs() > 0 {
        assert!(Instant::now() < deadline, "{:?}", a.chain_status());
        a.drive().expect("drive");
        mine();
        std::thread::sleep(Duration::from_millis(50));
    }
    check_all(&dir, &a, &rpc, contract);
    let receipts = evm::read_receipts(&dir).expect("receipts");
    assert!(
        subs.iter().any(|(_, h, _)| *h == receipts[&0].1.tx_hash),
        "the receipt names one of the journaled transactions"
    );
}

#[test]
fn https_rpc_endpoints_are_spoken_to_over_tls() {
    // A listener that accepts and answers with plain text: an https client fails in the
    // TLS handshake (it did try TLS), never on "unsupported scheme".
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten().take(4) {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\nnot tls");
        }
    });
    let key = PrivateKeySigner::random();
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let mut a = Anchorer::open(
        &dir,
        Duration::from_secs(3600),
        Backend::Evm(Box::new(settings(
            &format!("https://127.0.0.1:{port}/v3/secret-api-key"),
            key,
            Address::repeat_byte(1),
        ))),
        now,
    )
    .expect("anchorer");
    seal_epoch(&dir, &mut a, 0);
    a.drain(Duration::from_millis(300)).expect("drain");
    let err = a.chain_status().and_then(|s| s.last_error).expect("error");
    assert!(!err.to_lowercase().contains("scheme"), "{err}");
    // The URL's path (where providers put API keys) never shows.
    assert!(!err.contains("secret-api-key"), "{err}");
    assert!(err.contains(&format!("https://127.0.0.1:{port}")), "{err}");
}
