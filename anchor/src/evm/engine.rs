//! The EVM anchorer: a state machine over the journal, driven by [`EvmAnchorer::drive`].
//!
//! Each poll it asks the chain for its head, then
//! 1. re-checks the block hash of every recently anchored epoch (reorg detection; an epoch
//!    whose block left the canonical chain goes back to work),
//! 2. follows every transaction in flight (mined? reverted? forgotten by the node, so
//!    broadcast again? its nonce used by something else?) and records an epoch as
//!    anchored once its block has the configured confirmations and is still canonical,
//! 3. signs, journals and broadcasts transactions for the next sealed epochs, in epoch
//!    order, up to `max_in_flight` at a time.
//!
//! Any chain problem (RPC down or slow, a refused or reverted transaction, fees above the
//! limit) ends the poll with a logged error and a backoff; the epochs stay `sealed` and
//! nothing is lost. Local problems (the journal cannot be written) are returned.
//!
//! The decisions (fees and their replacement, which epochs next, nonces, gas, what a
//! vanished transaction, a confirmation count or a changed block means) are made by the
//! pure functions of [`super::decide`]; this file asks the chain and acts on them.

use std::collections::{BTreeMap, HashSet};
use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use alloy::consensus::BlockHeader as _;
use alloy::eips::BlockNumberOrTag;
use alloy::eips::eip2718::Encodable2718;
use alloy::network::{Ethereum, EthereumWallet, ReceiptResponse as _, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{Filter, Log, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolEvent};
use veritrace_verify::bundle::EvmReceipt;

use super::VeritraceAnchor;
use super::decide::{
    self, Bump, Confirmation, EpochView, FeeLimits, Fees, Market, Reorg, Vanished,
};
use super::journal::{self, JournalRecord};
use crate::{AnchoredEpoch, ChainError, DataDir, EpochRecord, Error, Result};
use veritrace_verify::chain::{redact_url, scrub_url};

/// How the EVM backend reaches and uses the chain.
#[derive(Clone)]
pub struct EvmSettings {
    /// JSON-RPC URL (HTTP). Only scheme, host and port appear in logs.
    pub rpc: String,
    /// The `VeritraceAnchor` contract.
    pub contract: Address,
    /// The writer key (the contract's owner or an allowed writer).
    pub key: PrivateKeySigner,
    /// Blocks (the anchoring block included) before an epoch counts as anchored.
    pub confirmations: u64,
    /// How often the chain is polled.
    pub poll_interval: Duration,
    /// Gas limit per anchoring transaction; an estimate above it is an error.
    pub gas_limit: u64,
    /// Highest fee per gas (wei) ever offered: EIP-1559 max fee, or the legacy gas price.
    pub max_fee_per_gas: u128,
    /// Highest EIP-1559 priority fee (wei).
    pub max_priority_fee_per_gas: u128,
    /// Anchoring transactions in flight at once (consecutive nonces).
    pub max_in_flight: usize,
    /// Deadline of one JSON-RPC request.
    pub request_timeout: Duration,
    /// Longest wait between retries after a chain error (the backoff doubles from 1 s).
    pub retry_max: Duration,
    /// Anchored epochs whose block is this close to the head are re-checked for reorgs.
    pub reorg_depth: u64,
    /// A transaction pending this long is replaced (same nonce) with fees raised by a
    /// quarter, within the limits.
    pub resubmit_after: Duration,
}

impl std::fmt::Debug for EvmSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key; never the RPC URL's path or query (providers put API keys there).
        f.debug_struct("EvmSettings")
            .field("rpc", &redact_url(&self.rpc))
            .field("contract", &self.contract)
            .field("writer", &self.key.address())
            .field("confirmations", &self.confirmations)
            .field("poll_interval", &self.poll_interval)
            .field("gas_limit", &self.gas_limit)
            .field("max_fee_per_gas", &self.max_fee_per_gas)
            .field("max_priority_fee_per_gas", &self.max_priority_fee_per_gas)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

/// What the backend is doing, for metrics and status output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnchorStatus {
    /// Sealed epochs not anchored yet (in flight included).
    pub unanchored: usize,
    /// Epochs with a transaction in flight or waiting for confirmations.
    pub in_flight: usize,
    /// Polls that ended with a chain error.
    pub failures: u64,
    /// Reorgs that removed an anchored epoch's block.
    pub reorgs: u64,
    /// The last chain error, cleared by a successful poll.
    pub last_error: Option<String>,
    /// The chain id, once the RPC answered.
    pub chain_id: Option<u64>,
}

#[derive(Debug, Clone)]
struct Sub {
    tx_hash: B256,
    nonce: u64,
    raw: Bytes,
    chain_id: u64,
    since: Instant,
}

#[derive(Debug, Clone)]
struct Mined {
    receipt: EvmReceipt,
    gas_used: u64,
}

#[derive(Debug, Default)]
struct EpochState {
    subs: Vec<Sub>,
    mined: Option<Mined>,
    anchored: Option<EvmReceipt>,
}

impl EpochState {
    fn in_flight(&self) -> bool {
        self.anchored.is_none() && (self.mined.is_some() || !self.subs.is_empty())
    }
}

/// Fees and gas of a signed transaction, read back from its bytes.
struct Signed {
    fees: Fees,
    gas: u64,
}

/// Fees and gas of a journaled transaction (`journal` names the file in an error: signed
/// bytes that do not decode were altered there).
fn decode_fees(raw: &Bytes, tx_hash: &B256, journal: &std::path::Path) -> Result<Signed> {
    use alloy::consensus::{Transaction as _, TxEnvelope};
    use alloy::eips::eip2718::Decodable2718;
    let tx = TxEnvelope::decode_2718(&mut raw.as_ref()).map_err(|e| Error::Corrupt {
        path: journal.to_owned(),
        detail: format!("the signed bytes of transaction {tx_hash} do not decode: {e}"),
    })?;
    let fees = match tx.max_priority_fee_per_gas() {
        Some(tip) => Fees::Eip1559 {
            max: tx.max_fee_per_gas(),
            tip,
        },
        None => Fees::Legacy {
            price: tx.gas_price().unwrap_or_default(),
        },
    };
    Ok(Signed {
        fees,
        gas: tx.gas_limit(),
    })
}

/// Anchors epochs on an EVM chain. Open one per data directory (under the anchorer lock).
pub struct EvmAnchorer {
    s: EvmSettings,
    dir: DataDir,
    /// Records in the journal (read at open, plus those written since).
    journal_lines: u64,
    path: PathBuf,
    rt: Arc<tokio::runtime::Runtime>,
    provider: RootProvider<Ethereum>,
    wallet: EthereumWallet,
    from: Address,
    chain_id: Option<u64>,
    states: BTreeMap<u64, EpochState>,
    /// Anchored epochs deeper than the reorg window: no longer re-checked.
    settled: HashSet<u64>,
    next_poll: Instant,
    backoff: Duration,
    checked_head: Option<u64>,
    status: AnchorStatus,
    out: Vec<AnchoredEpoch>,
    warned_stuck: HashSet<B256>,
}

impl std::fmt::Debug for EvmAnchorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvmAnchorer")
            .field("settings", &self.s)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

const FIRST_BACKOFF: Duration = Duration::from_secs(1);

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn hex32(b: &B256) -> String {
    format!("{b}")
}

fn digest_b256(d: &veritrace_verify::Digest) -> B256 {
    B256::from(d.0)
}

impl EvmAnchorer {
    /// Opens the journal (repairing a torn last line) and rebuilds what is in flight. Does
    /// not touch the network: a chain that is down delays anchoring, never the start.
    pub fn open(dir: &DataDir, settings: EvmSettings) -> Result<Self> {
        let path = dir.evm_journal_file();
        if let Some(parent) = path.parent()
            && !dir.is_remote()
        {
            std::fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
        }
        dir.repair_torn_tail(&path)?;
        let contract = settings.contract.to_string();
        let mut states: BTreeMap<u64, EpochState> = BTreeMap::new();
        let mut foreign = 0usize;
        let records = journal::read(dir)?;
        let journal_lines = records.len() as u64;
        for rec in records {
            match rec {
                JournalRecord::Submitted {
                    epoch_id,
                    contract: c,
                    chain_id,
                    nonce,
                    tx_hash,
                    raw,
                    ..
                } => {
                    if !c.eq_ignore_ascii_case(&contract) {
                        foreign += 1;
                        continue;
                    }
                    let (Ok(tx_hash), Ok(raw)) = (tx_hash.parse::<B256>(), raw.parse::<Bytes>())
                    else {
                        return Err(Error::Corrupt {
                            path,
                            detail: format!("epoch {epoch_id}: submitted tx is not hex"),
                        });
                    };
                    states.entry(epoch_id).or_default().subs.push(Sub {
                        tx_hash,
                        nonce,
                        raw,
                        chain_id,
                        since: Instant::now(),
                    });
                }
                JournalRecord::Abandoned {
                    epoch_id, tx_hash, ..
                } => {
                    if let Some(s) = states.get_mut(&epoch_id) {
                        s.subs.retain(|x| hex32(&x.tx_hash) != tx_hash);
                    }
                }
                JournalRecord::Anchored {
                    epoch_id, receipt, ..
                } => {
                    let s = states.entry(epoch_id).or_default();
                    s.anchored = Some(receipt);
                    s.mined = None;
                }
                JournalRecord::Reorged {
                    epoch_id, receipt, ..
                } => {
                    if let Some(s) = states.get_mut(&epoch_id)
                        && s.anchored.as_ref() == Some(&receipt)
                    {
                        s.anchored = None;
                    }
                }
            }
        }
        if foreign > 0 {
            tracing::warn!(
                transactions = foreign,
                contract = %contract,
                "the journal holds transactions for another contract; epochs not anchored on this one will be"
            );
        }
        let url = super::rpc_url(&settings.rpc)?;
        let provider = RootProvider::<Ethereum>::new_http(url);
        provider.client().set_poll_interval(settings.poll_interval);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Bug(format!("cannot start the EVM client runtime: {e}")))?;
        let from = settings.key.address();
        Ok(EvmAnchorer {
            wallet: EthereumWallet::from(settings.key.clone()),
            from,
            s: settings,
            dir: dir.clone(),
            journal_lines,
            path,
            rt: Arc::new(rt),
            provider,
            chain_id: None,
            states,
            settled: HashSet::new(),
            next_poll: Instant::now(),
            backoff: FIRST_BACKOFF,
            checked_head: None,
            status: AnchorStatus::default(),
            out: Vec::new(),
            warned_stuck: HashSet::new(),
        })
    }

    /// The writer's address.
    pub fn writer(&self) -> Address {
        self.from
    }

    /// The settings in use.
    pub fn settings(&self) -> &EvmSettings {
        &self.s
    }

    /// Whether the epoch has a confirmed receipt (on this contract).
    pub fn is_anchored(&self, epoch_id: u64) -> bool {
        self.settled.contains(&epoch_id)
            || self
                .states
                .get(&epoch_id)
                .is_some_and(|s| s.anchored.is_some())
    }

    /// Current status, counting the given epochs.
    pub fn status(&self, epochs: &[EpochRecord]) -> AnchorStatus {
        let mut st = self.status.clone();
        st.unanchored = epochs
            .iter()
            .filter(|e| !self.is_anchored(e.epoch_id))
            .count();
        st.in_flight = self.states.values().filter(|s| s.in_flight()).count();
        st.chain_id = self.chain_id;
        st
    }

    /// Makes progress if a poll is due: returns the epochs that became anchored. Chain
    /// errors are logged, counted and retried after a backoff; only local errors (the
    /// journal) are returned.
    pub fn drive(&mut self, epochs: &[EpochRecord]) -> Result<Vec<AnchoredEpoch>> {
        if Instant::now() >= self.next_poll {
            let rt = self.rt.clone();
            match rt.block_on(self.step(epochs)) {
                Ok(()) => {
                    self.backoff = FIRST_BACKOFF;
                    self.status.last_error = None;
                    self.next_poll = Instant::now() + self.s.poll_interval;
                }
                Err(Error::Chain(e)) => {
                    let msg = e.scrubbed(&self.s.rpc).to_string();
                    self.status.failures += 1;
                    tracing::warn!(error = %msg, retry_in = ?self.backoff, "anchoring on the chain is delayed; epochs stay sealed");
                    self.status.last_error = Some(msg);
                    self.next_poll = Instant::now() + self.backoff;
                    self.backoff = (self.backoff * 2).min(self.s.retry_max.max(FIRST_BACKOFF));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(std::mem::take(&mut self.out))
    }

    /// When the next poll is due.
    pub fn next_poll(&self) -> Instant {
        self.next_poll
    }

    async fn rpc<T, E: std::fmt::Display>(
        &self,
        what: &str,
        call: impl IntoFuture<Output = std::result::Result<T, E>>,
    ) -> Result<T> {
        self.deadline(what, call)
            .await?
            .map_err(|e| self.chain_err(what, e))
    }

    /// Runs one request under the request deadline; a timeout is a chain error, the
    /// request's own error is returned for the caller to inspect.
    async fn deadline<T, E>(
        &self,
        what: &str,
        call: impl IntoFuture<Output = std::result::Result<T, E>>,
    ) -> Result<std::result::Result<T, E>> {
        tokio::time::timeout(self.s.request_timeout, call.into_future())
            .await
            .map_err(|_| {
                Error::Chain(ChainError::Rpc {
                    call: what.to_owned(),
                    endpoint: redact_url(&self.s.rpc),
                    detail: format!("no answer within {:?}", self.s.request_timeout),
                })
            })
    }

    fn chain_err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Chain(ChainError::Rpc {
            call: what.to_owned(),
            endpoint: redact_url(&self.s.rpc),
            detail: scrub_url(&e.to_string(), &self.s.rpc),
        })
    }

    fn journal(&mut self, rec: &JournalRecord) -> Result<()> {
        self.dir.append_jsonl(&self.path, self.journal_lines, rec)?;
        self.journal_lines += 1;
        Ok(())
    }

    async fn step(&mut self, epochs: &[EpochRecord]) -> Result<()> {
        let chain_id = match self.chain_id {
            Some(c) => c,
            None => self.connect().await?,
        };
        let head = self
            .rpc("eth_blockNumber", self.provider.get_block_number())
            .await?;
        if self.checked_head != Some(head) {
            self.check_reorgs(head).await?;
            self.checked_head = Some(head);
        }
        self.follow_in_flight(chain_id, head, epochs).await?;
        self.submit_new(chain_id, head, epochs).await
    }

    /// First contact: the chain id, and the contract is a `VeritraceAnchor`.
    async fn connect(&mut self) -> Result<u64> {
        let chain_id = self
            .rpc("eth_chainId", self.provider.get_chain_id())
            .await?;
        let code = self
            .rpc("eth_getCode", self.provider.get_code_at(self.s.contract))
            .await?;
        if code.is_empty() {
            return Err(Error::Chain(ChainError::Contract {
                contract: self.s.contract.to_string(),
                chain_id,
                detail: "no contract at the configured address: deploy one with `veritrace anchor deploy --rpc URL` and set anchor.evm.contract".into(),
            }));
        }
        if code != VeritraceAnchor::DEPLOYED_BYTECODE {
            return Err(Error::Chain(ChainError::Contract {
                contract: self.s.contract.to_string(),
                chain_id,
                detail: "the code at the configured address is not the VeritraceAnchor contract this build anchors with".into(),
            }));
        }
        tracing::info!(chain_id, contract = %self.s.contract, writer = %self.from, rpc = %redact_url(&self.s.rpc), "connected to the anchor chain");
        self.chain_id = Some(chain_id);
        Ok(chain_id)
    }

    async fn block_hash(&self, number: u64) -> Result<Option<B256>> {
        let b = self
            .rpc(
                "eth_getBlockByNumber",
                self.provider
                    .get_block_by_number(BlockNumberOrTag::Number(number)),
            )
            .await?;
        Ok(b.map(|b| b.header.hash))
    }

    async fn check_reorgs(&mut self, head: u64) -> Result<()> {
        let anchored: Vec<(u64, EvmReceipt)> = self
            .states
            .iter()
            .filter_map(|(id, s)| s.anchored.clone().map(|r| (*id, r)))
            .collect();
        for (id, r) in anchored {
            let canonical =
                if decide::reorg_block_to_check(r.block_number, head, self.s.reorg_depth) {
                    self.block_hash(r.block_number).await?.map(|h| hex32(&h))
                } else {
                    None
                };
            let detail = match decide::reorg(
                r.block_number,
                &r.block_hash,
                head,
                self.s.reorg_depth,
                canonical.as_deref(),
            ) {
                Reorg::Settled => {
                    self.states.remove(&id);
                    self.settled.insert(id);
                    continue;
                }
                Reorg::Holds => continue,
                Reorg::Reorged { detail } => detail,
            };
            tracing::warn!(epoch_id = id, tx = %r.tx_hash, block = r.block_number, %detail, "reorg removed an anchored epoch's block; anchoring it again");
            self.journal(&JournalRecord::Reorged {
                epoch_id: id,
                receipt: r,
                detail,
                at: now_rfc3339(),
            })?;
            if let Some(s) = self.states.get_mut(&id) {
                s.anchored = None;
                s.mined = None;
            }
            self.status.reorgs += 1;
        }
        Ok(())
    }

    fn epoch<'e>(&self, epochs: &'e [EpochRecord], id: u64) -> Result<&'e EpochRecord> {
        epochs
            .get(id as usize)
            .filter(|e| e.epoch_id == id)
            .ok_or_else(|| Error::Corrupt {
                path: self.path.clone(),
                detail: format!("the journal names epoch {id}, which the epoch log does not hold"),
            })
    }

    fn abandon(&mut self, id: u64, tx: B256, reason: String) -> Result<()> {
        tracing::warn!(epoch_id = id, %tx, %reason, "anchor transaction abandoned; the epoch will be sent again");
        self.journal(&JournalRecord::Abandoned {
            epoch_id: id,
            tx_hash: hex32(&tx),
            reason,
            at: now_rfc3339(),
        })?;
        if let Some(s) = self.states.get_mut(&id) {
            s.subs.retain(|x| x.tx_hash != tx);
        }
        Ok(())
    }

    async fn follow_in_flight(
        &mut self,
        chain_id: u64,
        head: u64,
        epochs: &[EpochRecord],
    ) -> Result<()> {
        let ids: Vec<u64> = self
            .states
            .iter()
            .filter(|(_, s)| s.in_flight())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let e = self.epoch(epochs, id)?;
            if self.states.get(&id).is_some_and(|s| s.mined.is_none()) {
                self.find_mined(chain_id, e).await?;
            }
            let mined = self.states.get(&id).and_then(|s| s.mined.clone());
            if let Some(m) = mined {
                self.confirm(e, m, head).await?;
            }
        }
        Ok(())
    }

    /// Looks for the receipt of the epoch's submissions (newest first).
    async fn find_mined(&mut self, chain_id: u64, e: &EpochRecord) -> Result<()> {
        let id = e.epoch_id;
        let subs = self
            .states
            .get(&id)
            .map(|s| s.subs.clone())
            .unwrap_or_default();
        for sub in subs.iter().rev() {
            if sub.chain_id != chain_id {
                self.abandon(
                    id,
                    sub.tx_hash,
                    format!(
                        "signed for chain {}, the RPC serves chain {chain_id}",
                        sub.chain_id
                    ),
                )?;
                continue;
            }
            let receipt = self
                .rpc(
                    "eth_getTransactionReceipt",
                    self.provider.get_transaction_receipt(sub.tx_hash),
                )
                .await?;
            if let Some(r) = receipt {
                if r.status() {
                    let log = r
                        .inner
                        .logs()
                        .iter()
                        .find(|l| is_anchored_log(l, self.s.contract, &digest_b256(&e.root)))
                        .cloned();
                    match log {
                        Some(l) => {
                            let m = self.mined_from_log(chain_id, &l, r.gas_used())?;
                            if let Some(s) = self.states.get_mut(&id) {
                                s.mined = Some(m);
                            }
                            return Ok(());
                        }
                        None => {
                            self.abandon(id, sub.tx_hash, "mined without an Anchored log".into())?;
                        }
                    }
                } else if let Some(m) = self.lookup_on_chain(chain_id, e).await? {
                    // Another transaction anchored the root first (a resend, or another
                    // writer): adopt it; the root is on chain once.
                    self.abandon(
                        id,
                        sub.tx_hash,
                        format!("reverted: the root is anchored by {}", m.receipt.tx_hash),
                    )?;
                    if let Some(s) = self.states.get_mut(&id) {
                        s.mined = Some(m);
                    }
                    return Ok(());
                } else {
                    self.abandon(id, sub.tx_hash, "reverted".into())?;
                }
                continue;
            }
            let known = self
                .rpc(
                    "eth_getTransactionByHash",
                    self.provider.get_transaction_by_hash(sub.tx_hash),
                )
                .await?
                .is_some();
            if known {
                let newest = subs.last().is_some_and(|l| l.tx_hash == sub.tx_hash);
                if decide::due_for_replacement(newest, sub.since.elapsed(), self.s.resubmit_after) {
                    self.bump(chain_id, e, sub).await?;
                }
                return Ok(());
            }
            let latest = self
                .rpc(
                    "eth_getTransactionCount",
                    self.provider.get_transaction_count(self.from).latest(),
                )
                .await?;
            if decide::vanished(latest, sub.nonce) == Vanished::Rebroadcast {
                self.broadcast(id, sub).await?;
                return Ok(());
            }
            if let Some(m) = self.lookup_on_chain(chain_id, e).await? {
                if let Some(s) = self.states.get_mut(&id) {
                    s.mined = Some(m);
                }
                return Ok(());
            }
            self.abandon(
                id,
                sub.tx_hash,
                format!(
                    "nonce {} was used by another transaction of {}",
                    sub.nonce, self.from
                ),
            )?;
        }
        Ok(())
    }

    fn mined_from_log(&self, chain_id: u64, l: &Log, gas_used: u64) -> Result<Mined> {
        let (Some(tx), Some(block_number), Some(block_hash), Some(log_index)) = (
            l.transaction_hash,
            l.block_number,
            l.block_hash,
            l.log_index,
        ) else {
            return Err(Error::Chain(ChainError::Inconsistent(
                "the node returned an Anchored log without its position".into(),
            )));
        };
        Ok(Mined {
            receipt: EvmReceipt {
                chain_id,
                contract: self.s.contract.to_string(),
                tx_hash: hex32(&tx),
                block_number,
                block_hash: hex32(&block_hash),
                log_index,
            },
            gas_used,
        })
    }

    /// If the root is on chain, where (via `anchoredAt` and the `Anchored` log).
    async fn lookup_on_chain(&self, chain_id: u64, e: &EpochRecord) -> Result<Option<Mined>> {
        let root = digest_b256(&e.root);
        let c = VeritraceAnchor::new(self.s.contract, &self.provider);
        let block = self.rpc("anchoredAt", c.anchoredAt(root).call()).await?;
        if block.is_zero() {
            return Ok(None);
        }
        let block = u64::try_from(block).map_err(|_| {
            Error::Chain(ChainError::Inconsistent(format!(
                "anchoredAt({root}) returned {block}, not a block number"
            )))
        })?;
        let filter = Filter::new()
            .address(self.s.contract)
            .event_signature(VeritraceAnchor::Anchored::SIGNATURE_HASH)
            .topic1(root)
            .from_block(block)
            .to_block(block);
        let logs = self
            .rpc("eth_getLogs", self.provider.get_logs(&filter))
            .await?;
        let Some(l) = logs
            .iter()
            .find(|l| is_anchored_log(l, self.s.contract, &root))
        else {
            return Err(Error::Chain(ChainError::Inconsistent(format!(
                "the contract says root {root} is anchored in block {block}, but the block has no Anchored log for it"
            ))));
        };
        let gas_used = match l.transaction_hash {
            Some(tx) => self
                .rpc(
                    "eth_getTransactionReceipt",
                    self.provider.get_transaction_receipt(tx),
                )
                .await?
                .map_or(0, |r| r.gas_used()),
            None => 0,
        };
        self.mined_from_log(chain_id, l, gas_used).map(Some)
    }

    async fn confirm(&mut self, e: &EpochRecord, m: Mined, head: u64) -> Result<()> {
        let id = e.epoch_id;
        let block = m.receipt.block_number;
        let confirmations = match decide::confirmation(head, block, self.s.confirmations) {
            Confirmation::BlockAhead => {
                if let Some(s) = self.states.get_mut(&id) {
                    s.mined = None;
                }
                return Ok(());
            }
            Confirmation::Wait => return Ok(()),
            Confirmation::Check(n) => n,
        };
        let canonical = self.block_hash(block).await?;
        if !canonical.is_some_and(|h| hex32(&h).eq_ignore_ascii_case(&m.receipt.block_hash)) {
            tracing::warn!(
                epoch_id = id,
                block,
                "the anchoring block left the chain before its confirmations; following the transaction again"
            );
            if let Some(s) = self.states.get_mut(&id) {
                s.mined = None;
            }
            return Ok(());
        }
        let latency = humantime::parse_rfc3339_weak(&e.sealed_at)
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok());
        self.journal(&JournalRecord::Anchored {
            epoch_id: id,
            root: e.root,
            receipt: m.receipt.clone(),
            gas_used: m.gas_used,
            confirmations,
            sealed_at: e.sealed_at.clone(),
            at: now_rfc3339(),
        })?;
        tracing::info!(epoch_id = id, batches = e.batch_count, events = e.events, root = %e.root, tx = %m.receipt.tx_hash, block, confirmations, gas = m.gas_used, "epoch anchored (evm)");
        if let Some(s) = self.states.get_mut(&id) {
            s.anchored = Some(m.receipt);
            s.mined = None;
        }
        self.out.push(AnchoredEpoch {
            epoch_id: id,
            latency,
            gas_used: Some(m.gas_used),
        });
        Ok(())
    }

    fn limits(&self) -> FeeLimits {
        FeeLimits {
            max_fee: self.s.max_fee_per_gas,
            max_tip: self.s.max_priority_fee_per_gas,
        }
    }

    /// What the chain asks now ([`decide::quote`] turns it into fees within the limits).
    async fn fees(&self) -> Result<Fees> {
        let latest = self
            .rpc(
                "eth_getBlockByNumber(latest)",
                self.provider.get_block_by_number(BlockNumberOrTag::Latest),
            )
            .await?
            .ok_or_else(|| {
                Error::Chain(ChainError::Inconsistent(
                    "the node has no latest block".into(),
                ))
            })?;
        let market = match latest.header.base_fee_per_gas() {
            Some(base) => Market::Eip1559 {
                base: u128::from(base),
                // Some nodes lack eth_maxPriorityFeePerGas: the configured tip is offered.
                suggested_tip: tokio::time::timeout(
                    self.s.request_timeout,
                    self.provider.get_max_priority_fee_per_gas().into_future(),
                )
                .await
                .ok()
                .and_then(|r| r.ok()),
            },
            None => Market::Legacy {
                price: self
                    .rpc("eth_gasPrice", self.provider.get_gas_price())
                    .await?,
            },
        };
        decide::quote(market, self.limits())
            .map_err(|e| Error::Chain(ChainError::OverLimit(e.to_string())))
    }

    async fn submit_new(
        &mut self,
        chain_id: u64,
        _head: u64,
        epochs: &[EpochRecord],
    ) -> Result<()> {
        let in_flight = self.states.values().filter(|s| s.in_flight()).count();
        let views: Vec<EpochView> = epochs
            .iter()
            .map(|e| {
                let s = self.states.get(&e.epoch_id);
                EpochView {
                    epoch_id: e.epoch_id,
                    settled: self.settled.contains(&e.epoch_id),
                    anchored: s.is_some_and(|s| s.anchored.is_some()),
                    in_flight: s.is_some_and(EpochState::in_flight),
                }
            })
            .collect();
        let todo: Vec<&EpochRecord> = decide::to_submit(&views, in_flight, self.s.max_in_flight)
            .into_iter()
            .map(|id| self.epoch(epochs, id))
            .collect::<Result<_>>()?;
        if todo.is_empty() {
            return Ok(());
        }
        let fees = self.fees().await?;
        let pending = self
            .rpc(
                "eth_getTransactionCount",
                self.provider.get_transaction_count(self.from).pending(),
            )
            .await?;
        let mut used: HashSet<u64> = self
            .states
            .values()
            .filter(|s| s.anchored.is_none())
            .flat_map(|s| s.subs.iter().map(|x| x.nonce))
            .collect();
        for e in todo {
            let id = e.epoch_id;
            if let Some(m) = self.lookup_on_chain(chain_id, e).await? {
                tracing::info!(epoch_id = id, tx = %m.receipt.tx_hash, "epoch root already on chain; adopting that transaction");
                self.states.entry(id).or_default().mined = Some(m);
                continue;
            }
            let root = digest_b256(&e.root);
            let input = VeritraceAnchor::anchorCall {
                root,
                epochId: e.epoch_id,
                batchCount: e.tree_size(),
            }
            .abi_encode();
            let req = TransactionRequest::default()
                .with_from(self.from)
                .with_to(self.s.contract)
                .with_input(input);
            let est = match self
                .deadline("eth_estimateGas", self.provider.estimate_gas(req.clone()))
                .await?
            {
                Ok(g) => g,
                Err(err) => {
                    let decoded = err.as_error_resp().and_then(|p| {
                        p.as_decoded_interface_error::<VeritraceAnchor::VeritraceAnchorErrors>()
                    });
                    return Err(match decoded {
                        Some(VeritraceAnchor::VeritraceAnchorErrors::NotWriter(_)) => {
                            Error::Chain(ChainError::NotWriter {
                                writer: self.from.to_string(),
                                contract: self.s.contract.to_string(),
                            })
                        }
                        Some(VeritraceAnchor::VeritraceAnchorErrors::AlreadyAnchored(a)) => {
                            Error::Chain(ChainError::Refused {
                                what: format!("anchoring epoch {id}"),
                                detail: format!(
                                    "root {root} was anchored in block {} meanwhile; adopting it next poll",
                                    a.blockNumber
                                ),
                            })
                        }
                        _ => self.chain_err(&format!("estimating gas to anchor epoch {id}"), err),
                    });
                }
            };
            let gas = decide::gas_for(id, est, self.s.gas_limit)
                .map_err(|e| Error::Chain(ChainError::OverLimit(e.to_string())))?;
            let nonce = decide::next_nonce(pending, &mut used);
            self.sign_and_send(chain_id, e, nonce, gas, fees).await?;
        }
        Ok(())
    }

    /// Signs the anchor call of epoch `e` with the given nonce, gas and fees, journals it
    /// (durable before it can exist anywhere else: a restart finds it again), and
    /// broadcasts it.
    async fn sign_and_send(
        &mut self,
        chain_id: u64,
        e: &EpochRecord,
        nonce: u64,
        gas: u64,
        fees: Fees,
    ) -> Result<()> {
        let id = e.epoch_id;
        let input = VeritraceAnchor::anchorCall {
            root: digest_b256(&e.root),
            epochId: e.epoch_id,
            batchCount: e.tree_size(),
        }
        .abi_encode();
        let req = TransactionRequest::default()
            .with_from(self.from)
            .with_to(self.s.contract)
            .with_input(input)
            .with_nonce(nonce)
            .with_chain_id(chain_id)
            .with_gas_limit(gas);
        let req = match fees {
            Fees::Eip1559 { max, tip } => req
                .with_max_fee_per_gas(max)
                .with_max_priority_fee_per_gas(tip),
            Fees::Legacy { price } => req.with_gas_price(price),
        };
        let envelope = req
            .build(&self.wallet)
            .await
            .map_err(|e| Error::Bug(format!("signing the anchor transaction: {e}")))?;
        let tx_hash = *envelope.tx_hash();
        let raw = Bytes::from(envelope.encoded_2718());
        self.journal(&JournalRecord::Submitted {
            epoch_id: id,
            root: e.root,
            chain_id,
            contract: self.s.contract.to_string(),
            from: self.from.to_string(),
            nonce,
            tx_hash: hex32(&tx_hash),
            raw: raw.to_string(),
            at: now_rfc3339(),
        })?;
        let sub = Sub {
            tx_hash,
            nonce,
            raw,
            chain_id,
            since: Instant::now(),
        };
        self.states.entry(id).or_default().subs.push(sub.clone());
        tracing::debug!(epoch_id = id, tx = %tx_hash, nonce, gas, "anchor transaction sent");
        self.broadcast(id, &sub).await
    }

    /// A transaction pending longer than `resubmit_after`: the same call with the same
    /// nonce and fees raised by a quarter (nodes replace a pending transaction only for a
    /// higher fee, commonly at least +10%), within the configured limits. Whichever of
    /// the two is mined anchors the epoch; the other becomes invalid.
    async fn bump(&mut self, chain_id: u64, e: &EpochRecord, sub: &Sub) -> Result<()> {
        let old = decode_fees(&sub.raw, &sub.tx_hash, &self.path)?;
        let market = self.fees().await?;
        let Bump::Replace(fees) = decide::bump(old.fees, market, self.limits()) else {
            if self.warned_stuck.insert(sub.tx_hash) {
                tracing::warn!(epoch_id = e.epoch_id, tx = %sub.tx_hash, pending = ?sub.since.elapsed(), "anchor transaction still pending at anchor.evm.max-fee-per-gas-gwei; raise the limit to get it mined");
            }
            return Ok(());
        };
        tracing::info!(epoch_id = e.epoch_id, replaced = %sub.tx_hash, nonce = sub.nonce, "anchor transaction pending too long; replacing it with higher fees");
        self.sign_and_send(chain_id, e, sub.nonce, old.gas, fees)
            .await
    }

    /// Broadcasts signed bytes. A node that refuses them (an RPC error answer) abandons
    /// the submission; a transport failure keeps it, since it may have arrived.
    async fn broadcast(&mut self, id: u64, sub: &Sub) -> Result<()> {
        let sent = self
            .deadline(
                "eth_sendRawTransaction",
                self.provider.send_raw_transaction(&sub.raw),
            )
            .await?;
        match sent {
            Ok(_) => Ok(()),
            Err(e) if e.as_error_resp().is_some() => {
                let msg = e.to_string();
                if msg.contains("already known") || msg.contains("AlreadyKnown") {
                    return Ok(());
                }
                let msg = scrub_url(&msg, &self.s.rpc);
                self.abandon(id, sub.tx_hash, format!("the node refused it: {msg}"))?;
                Err(Error::Chain(ChainError::Refused {
                    what: format!("the anchor transaction of epoch {id}"),
                    detail: format!("the node refused it: {msg}"),
                }))
            }
            Err(e) => Err(self.chain_err("eth_sendRawTransaction", e)),
        }
    }
}

fn is_anchored_log(l: &Log, contract: Address, root: &B256) -> bool {
    l.address() == contract
        && VeritraceAnchor::Anchored::decode_log(&l.inner).is_ok_and(|d| d.root == *root)
}
