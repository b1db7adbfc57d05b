//! The anchoring cost on a real EVM node (Anvil from tools/evm, started here on a free
//! loopback port): the in-process pipeline anchors its epochs with the EVM backend, and
//! the journal gives gas per epoch and seal-to-anchored latency. The peer, in the same
//! run on the same node: writing each event on chain as its own transaction.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::eips::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, ReceiptResponse as _, TransactionBuilder};
use alloy::primitives::{B256, Bytes, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use serde::Serialize;
use veritrace_anchor::evm::{self, EvmSettings, JournalRecord};
use veritrace_anchor::{Backend, DataDir};
use veritrace_processors::BatchPolicy;
use veritrace_processors::runtime::{self, RuntimeConfig};

use veritrace_anchor::evm::VeritraceAnchor;
use veritrace_testkit::anvil::{Anvil, anvil_bin};

/// Flags of `veritrace-loadtest evm`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvmArgs {
    /// The anvil binary (default: tools/evm's, installed by `npm ci --prefix tools/evm`).
    #[arg(long)]
    pub anvil: Option<PathBuf>,
    /// Anvil block time in seconds (0: a block per transaction).
    #[arg(long, default_value_t = 1.0)]
    pub block_time: f64,
    /// Event counts of the pipeline runs (gas per epoch should not depend on them).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub events: Vec<u64>,
    /// Epoch interval of the pipeline runs, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub epoch_ms: u64,
    /// Confirmations before an epoch counts as anchored.
    #[arg(long, default_value_t = 1)]
    pub confirmations: u64,
    /// Processor threads.
    #[arg(long, default_value_t = 2)]
    pub partitions: u32,
    /// Per-event transactions of the peer measurement.
    #[arg(long, default_value_t = 3000)]
    pub per_event_txs: u64,
}

/// One pipeline run with EVM anchoring.
#[derive(Debug, Serialize)]
pub struct PipelineRun {
    /// Input records.
    pub records: u64,
    /// Accepted events.
    pub events: u64,
    /// Epochs (= anchoring transactions).
    pub epochs: usize,
    /// Accepted events per on-chain transaction.
    pub events_per_tx: f64,
    /// Gas per anchoring transaction: min, max.
    pub gas_min: u64,
    /// See `gas_min`.
    pub gas_max: u64,
    /// Seal to anchored (confirmations included), milliseconds: p50, p99, max.
    pub latency_ms_p50: f64,
    /// See `latency_ms_p50`.
    pub latency_ms_p99: f64,
    /// See `latency_ms_p50`.
    pub latency_ms_max: f64,
    /// Wall time of the run, anchoring of the last epoch included.
    pub wall_s: f64,
}

/// Writing each event as its own transaction on the same node.
#[derive(Debug, Serialize)]
pub struct PerEventPeer {
    /// Transactions sent.
    pub txs: u64,
    /// From the first send to the last receipt.
    pub wall_s: f64,
    /// Transactions per second achieved.
    pub tx_per_s: f64,
    /// Gas per transaction.
    pub gas_per_tx: u64,
}

/// The report.
#[derive(Debug, Serialize)]
pub struct EvmReport {
    /// Anvil block time (s).
    pub block_time_s: f64,
    /// Block gas limit of the node.
    pub block_gas_limit: u64,
    /// Pipeline runs.
    pub runs: Vec<PipelineRun>,
    /// The per-event peer.
    pub per_event: PerEventPeer,
    /// Anchoring transactions per hour at the default 10 s epoch interval (whatever the
    /// event rate).
    pub tx_per_hour_at_default_interval: u64,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the benchmark.
pub fn run(a: &EvmArgs) -> anyhow::Result<EvmReport> {
    let bin = a.anvil.clone().unwrap_or_else(anvil_bin);
    let block_time = a.block_time.to_string();
    let extra: &[&str] = if a.block_time > 0.0 {
        &["--block-time", &block_time]
    } else {
        &[]
    };
    let node = Anvil::try_start(&bin, extra).map_err(anyhow::Error::msg)?;
    let rpc = node.url();
    let owner: PrivateKeySigner = node.keys()[0].parse()?;
    let peer_key: PrivateKeySigner = node.keys()[1].parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let poll = Duration::from_millis(50);
    let contract = rt
        .block_on(evm::deploy(&rpc, owner.clone(), poll))?
        .contract;
    let provider = RootProvider::<alloy::network::Ethereum>::new_http(rpc.parse()?);
    let block_gas_limit = rt
        .block_on(std::future::IntoFuture::into_future(
            provider.get_block_by_number(alloy::eips::BlockNumberOrTag::Latest),
        ))?
        .map(|b| b.header.gas_limit)
        .unwrap_or_default();

    let mut runs = Vec::new();
    for &n in &a.events {
        let w = crate::workload(n, 42);
        let tmp = tempfile::tempdir()?;
        let dir = DataDir::create(tmp.path())?;
        let settings = EvmSettings {
            rpc: rpc.clone(),
            contract,
            key: owner.clone(),
            confirmations: a.confirmations,
            poll_interval: Duration::from_millis(100),
            gas_limit: 200_000,
            max_fee_per_gas: 200_000_000_000,
            max_priority_fee_per_gas: 2_000_000_000,
            max_in_flight: 16,
            request_timeout: Duration::from_secs(10),
            retry_max: Duration::from_secs(5),
            reorg_depth: 64,
            resubmit_after: Duration::from_secs(180),
        };
        let cfg = RuntimeConfig {
            stream: "bench".into(),
            partitions: a.partitions,
            policy: BatchPolicy::default(),
            epoch_interval: Duration::from_millis(a.epoch_ms),
            backend: Backend::Evm(Box::new(settings)),
            anchor_drain: Duration::from_secs(300),
            signatures: Default::default(),
        };
        let start = Instant::now();
        let report = runtime::run(&dir, &cfg, w.records.iter().cloned(), Arc::default())?;
        let wall = start.elapsed();
        anyhow::ensure!(
            report.unanchored == 0,
            "{} epochs were not anchored",
            report.unanchored
        );
        let journal: Vec<JournalRecord> = veritrace_anchor::read_jsonl(&dir.evm_journal_file())?;
        let mut gas = Vec::new();
        let mut lat = Vec::new();
        for r in journal {
            if let JournalRecord::Anchored {
                gas_used,
                sealed_at,
                at,
                ..
            } = r
            {
                gas.push(gas_used);
                let (s, t) = (
                    humantime::parse_rfc3339_weak(&sealed_at)?,
                    humantime::parse_rfc3339_weak(&at)?,
                );
                lat.push(t.duration_since(s).unwrap_or_default().as_secs_f64() * 1e3);
            }
        }
        lat.sort_by(f64::total_cmp);
        let epochs = gas.len();
        runs.push(PipelineRun {
            records: report.stats.consumed,
            events: report.stats.accepted,
            epochs,
            events_per_tx: report.stats.accepted as f64 / epochs.max(1) as f64,
            gas_min: gas.iter().copied().min().unwrap_or_default(),
            gas_max: gas.iter().copied().max().unwrap_or_default(),
            latency_ms_p50: pct(&lat, 0.5),
            latency_ms_p99: pct(&lat, 0.99),
            latency_ms_max: lat.last().copied().unwrap_or_default(),
            wall_s: wall.as_secs_f64(),
        });
    }

    let per_event = rt.block_on(per_event_peer(&rpc, peer_key, a.per_event_txs))?;
    Ok(EvmReport {
        block_time_s: a.block_time,
        block_gas_limit,
        runs,
        per_event,
        tx_per_hour_at_default_interval: 3600 / 10,
    })
}

/// Sends `n` anchor transactions, one per "event", as fast as the node takes them
/// (pre-signed, consecutive nonces), and waits for every receipt.
async fn per_event_peer(rpc: &str, key: PrivateKeySigner, n: u64) -> anyhow::Result<PerEventPeer> {
    let from = key.address();
    let wallet = EthereumWallet::from(key.clone());
    let c = evm::deploy(rpc, key, Duration::from_millis(50))
        .await?
        .contract;
    let p = RootProvider::<alloy::network::Ethereum>::new_http(rpc.parse()?);
    p.client().set_poll_interval(Duration::from_millis(50));
    let chain_id = p.get_chain_id().await?;
    let nonce = p.get_transaction_count(from).pending().await?;
    let gas_price = p.get_gas_price().await?;
    let mut raw = Vec::with_capacity(n as usize);
    for i in 0..n {
        let input = VeritraceAnchor::anchorCall {
            root: B256::from(U256::from(i + 1)),
            epochId: i,
            batchCount: 1,
        }
        .abi_encode();
        let tx = TransactionRequest::default()
            .with_from(from)
            .with_to(c)
            .with_input(input)
            .with_nonce(nonce + i)
            .with_chain_id(chain_id)
            .with_gas_limit(100_000)
            .with_max_fee_per_gas(gas_price * 2)
            .with_max_priority_fee_per_gas(1);
        let env = tx.build(&wallet).await?;
        raw.push((*env.tx_hash(), Bytes::from(env.encoded_2718())));
    }
    let start = Instant::now();
    for (_, r) in &raw {
        let _pending = p.send_raw_transaction(r).await?;
    }
    let last = raw
        .last()
        .map(|(h, _)| *h)
        .ok_or_else(|| anyhow::anyhow!("no txs"))?;
    let receipt = loop {
        if let Some(r) = p.get_transaction_receipt(last).await? {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(3600),
            "per-event transactions did not finish"
        );
    };
    let wall = start.elapsed().as_secs_f64();
    Ok(PerEventPeer {
        txs: n,
        wall_s: wall,
        tx_per_s: n as f64 / wall,
        gas_per_tx: receipt.gas_used(),
    })
}
