//! The chain check (feature `rpc`): does the contract named in an EVM receipt hold the
//! epoch root, in the receipt's block, with the receipt's log? What `veritrace-verify
//! --rpc URL` and `veritrace verify --rpc URL` ask.
//!
//! The `VeritraceAnchor` contract binding is declared here once, from the committed
//! artifact `anchor/contracts/VeritraceAnchor.json`; the anchor stage writes with it.

use std::future::IntoFuture;
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::network::Ethereum;
use alloy::primitives::{Address, B256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;

use crate::Digest;
use crate::bundle::EvmReceipt;
use crate::report::{ChainCheck, ChainCheckError};

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    VeritraceAnchor,
    "../contracts/VeritraceAnchor.json"
);

/// `anchoredAt(bytes32)`'s function selector (what a client that asks the contract without
/// this binding, such as the browser page, calls).
pub const ANCHORED_AT_SELECTOR: [u8; 4] =
    <VeritraceAnchor::anchoredAtCall as alloy::sol_types::SolCall>::SELECTOR;

/// The topic of the `Anchored(bytes32,uint64,uint64)` event, likewise.
pub const ANCHORED_TOPIC: [u8; 32] = VeritraceAnchor::Anchored::SIGNATURE_HASH.0;

/// Parses an RPC URL.
pub fn rpc_url(rpc: &str) -> Result<alloy::transports::http::reqwest::Url, String> {
    rpc.parse()
        .map_err(|e| format!("--rpc {rpc:?} is not a URL: {e}"))
}

/// A JSON-RPC endpoint asked on a runtime of its own, one request at a time.
#[derive(Debug)]
pub struct RpcChain {
    rpc: String,
    contract: Option<Address>,
    timeout: Duration,
    rt: tokio::runtime::Runtime,
}

impl RpcChain {
    /// `rpc` is the endpoint, `contract` the operator's published `VeritraceAnchor` address
    /// (pins the contract; else the receipt's is used), `timeout` each request's deadline.
    pub fn new(rpc: &str, contract: Option<&str>, timeout: Duration) -> Result<Self, String> {
        let contract = match contract {
            Some(c) => Some(
                c.parse::<Address>()
                    .map_err(|_| format!("--contract {c:?} is not an address"))?,
            ),
            None => None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the RPC runtime: {e}"))?;
        Ok(RpcChain {
            rpc: rpc.to_owned(),
            contract,
            timeout: timeout.max(Duration::from_secs(1)),
            rt,
        })
    }
}

impl ChainCheck for RpcChain {
    fn check(
        &self,
        receipt: &EvmReceipt,
        root: &Digest,
        epoch_id: u64,
        batch_count: u64,
    ) -> Result<Vec<String>, ChainCheckError> {
        self.rt.block_on(check_on_chain(
            &self.rpc,
            receipt,
            root,
            epoch_id,
            batch_count,
            self.contract,
            self.timeout,
        ))
    }

    fn pins_contract(&self) -> bool {
        self.contract.is_some()
    }
}

fn fail(code: &'static str, detail: String) -> ChainCheckError {
    ChainCheckError::Failed { code, detail }
}

/// Checks `receipt` against the chain at `rpc` for the epoch root `root` (epoch `epoch_id`,
/// `batch_count` batches): chain id, contract (and `expected_contract` if the auditor
/// pinned one), contract code, `anchoredAt(root)`, block hash, and the `Anchored` log at
/// the receipt's position. Returns the checks made, in order.
pub async fn check_on_chain(
    rpc: &str,
    receipt: &EvmReceipt,
    root: &Digest,
    epoch_id: u64,
    batch_count: u64,
    expected_contract: Option<Address>,
    timeout: Duration,
) -> Result<Vec<String>, ChainCheckError> {
    let url = rpc_url(rpc).map_err(ChainCheckError::Unreachable)?;
    let p = RootProvider::<Ethereum>::new_http(url);
    let shown = redact_url(rpc);
    async fn ask<T, E: std::fmt::Display>(
        (shown, rpc): (&str, &str),
        timeout: Duration,
        what: &str,
        f: impl IntoFuture<Output = Result<T, E>>,
    ) -> Result<T, ChainCheckError> {
        match tokio::time::timeout(timeout, f.into_future()).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ChainCheckError::Unreachable(scrub_url(
                &format!("{what} via {shown}: {e}"),
                rpc,
            ))),
            Err(_) => Err(ChainCheckError::Unreachable(format!(
                "{what} via {shown}: no answer within {timeout:?}"
            ))),
        }
    }
    let mut checks = Vec::new();
    let contract: Address = receipt.contract.parse().map_err(|_| {
        fail(
            "bad_receipt",
            format!("contract {:?} is not an address", receipt.contract),
        )
    })?;
    let tx: B256 = receipt
        .tx_hash
        .parse()
        .map_err(|_| fail("bad_receipt", format!("tx hash {:?}", receipt.tx_hash)))?;
    let block_hash: B256 = receipt.block_hash.parse().map_err(|_| {
        fail(
            "bad_receipt",
            format!("block hash {:?}", receipt.block_hash),
        )
    })?;
    if let Some(want) = expected_contract {
        if want != contract {
            return Err(fail(
                "contract_mismatch",
                format!("the receipt names contract {contract}, the expected contract is {want}"),
            ));
        }
        checks.push(format!("contract {contract} is the expected contract"));
    }
    let chain_id = ask((&shown, rpc), timeout, "eth_chainId", p.get_chain_id()).await?;
    if chain_id != receipt.chain_id {
        return Err(fail(
            "chain_mismatch",
            format!(
                "the RPC serves chain {chain_id}, the receipt is for chain {}",
                receipt.chain_id
            ),
        ));
    }
    let code = ask(
        (&shown, rpc),
        timeout,
        "eth_getCode",
        p.get_code_at(contract),
    )
    .await?;
    if code.is_empty() {
        return Err(fail(
            "no_contract",
            format!("chain {chain_id} has no contract at {contract}"),
        ));
    }
    if code != VeritraceAnchor::DEPLOYED_BYTECODE {
        return Err(fail(
            "not_veritrace_contract",
            format!("the code at {contract} is not the VeritraceAnchor contract"),
        ));
    }
    checks.push(format!(
        "chain {chain_id}: contract {contract} runs the VeritraceAnchor code"
    ));
    let root_b = B256::from(root.0);
    let c = VeritraceAnchor::new(contract, &p);
    let at = ask(
        (&shown, rpc),
        timeout,
        "anchoredAt",
        c.anchoredAt(root_b).call(),
    )
    .await?;
    if at.is_zero() {
        return Err(fail(
            "root_not_on_chain",
            format!("contract {contract} does not hold epoch root {root}"),
        ));
    }
    if at != alloy::primitives::U256::from(receipt.block_number) {
        return Err(fail(
            "block_mismatch",
            format!(
                "the contract holds root {root} from block {at}, the receipt says block {}",
                receipt.block_number
            ),
        ));
    }
    checks.push(format!(
        "anchoredAt({root}) = block {}",
        receipt.block_number
    ));
    let block = ask(
        (&shown, rpc),
        timeout,
        "eth_getBlockByNumber",
        p.get_block_by_number(BlockNumberOrTag::Number(receipt.block_number)),
    )
    .await?
    .ok_or_else(|| {
        fail(
            "block_mismatch",
            format!("the chain has no block {}", receipt.block_number),
        )
    })?;
    if block.header.hash != block_hash {
        return Err(fail(
            "block_hash_mismatch",
            format!(
                "block {} is {} on the chain, the receipt says {block_hash} (reorg or forged receipt)",
                receipt.block_number, block.header.hash
            ),
        ));
    }
    let filter = Filter::new()
        .address(contract)
        .event_signature(VeritraceAnchor::Anchored::SIGNATURE_HASH)
        .topic1(root_b)
        .at_block_hash(block_hash);
    let logs = ask((&shown, rpc), timeout, "eth_getLogs", p.get_logs(&filter)).await?;
    let log = logs
        .iter()
        .find(|l| l.log_index == Some(receipt.log_index) && l.transaction_hash == Some(tx))
        .ok_or_else(|| {
            fail(
                "log_missing",
                format!(
                    "block {} has no Anchored log {} from tx {tx} for root {root}",
                    receipt.block_number, receipt.log_index
                ),
            )
        })?;
    let ev = VeritraceAnchor::Anchored::decode_log(&log.inner)
        .map_err(|e| fail("log_mismatch", format!("Anchored log does not decode: {e}")))?;
    if ev.epochId != epoch_id || ev.batchCount != batch_count {
        return Err(fail(
            "log_mismatch",
            format!(
                "the Anchored log says epoch {} with {} batches, the proof epoch {epoch_id} with {batch_count}",
                ev.epochId, ev.batchCount
            ),
        ));
    }
    let head = ask(
        (&shown, rpc),
        timeout,
        "eth_blockNumber",
        p.get_block_number(),
    )
    .await?;
    checks.push(format!(
        "block {} hash {block_hash} is canonical; tx {tx} emitted Anchored(root, epoch {epoch_id}, {batch_count} batches) as log {}; {} confirmations",
        receipt.block_number,
        receipt.log_index,
        head.saturating_sub(receipt.block_number) + 1
    ));
    Ok(checks)
}

/// `scheme://host:port` of a URL: what logs and errors show of an RPC endpoint.
pub fn redact_url(url: &str) -> String {
    match url.parse::<alloy::transports::http::reqwest::Url>() {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            match u.port() {
                Some(p) => format!("{}://{host}:{p}", u.scheme()),
                None => format!("{}://{host}", u.scheme()),
            }
        }
        Err(_) => "<unparsable url>".into(),
    }
}

/// Removes an RPC URL's secrets (path, query, credentials: where providers put API keys)
/// from a message that may quote it, as transport errors do.
pub fn scrub_url(msg: &str, rpc: &str) -> String {
    let shown = redact_url(rpc);
    let mut out = msg.replace(rpc, &shown);
    if let Ok(u) = rpc.parse::<alloy::transports::http::reqwest::Url>() {
        out = out.replace(u.as_str(), &shown);
        out = out.replace(u.as_str().trim_end_matches('/'), &shown);
        if u.path().len() > 1 {
            out = out.replace(u.path(), "/…");
        }
        if let Some(q) = u.query() {
            out = out.replace(q, "…");
        }
        if let Some(p) = u.password() {
            out = out.replace(p, "…");
        }
    }
    out
}
