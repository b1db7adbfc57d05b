//! `veritrace monitor`: follows a node's log from outside, with nothing but its HTTP API and
//! the log's published verifier key (and, for chain anchors, an RPC URL).
//!
//! Each round it reads the signed checkpoint and checks, against what it saw before (kept in
//! its state file):
//!
//! - the signature, by the pinned key (`bad_signature`);
//! - that the log did not shrink (`rollback`) and that one size has one root (`split_view`);
//! - that the new tree extends the old: the consistency proof verifies (`inconsistent`);
//! - every new entry (batch header): its leaf hash, fed to the monitor's own frontier of the
//!   log, gives the checkpoint's root (`inconsistent`), it is canonical JSON of a batch
//!   header (`bad_entry`), and each partition's batches follow on with no gap: sequence,
//!   previous root, offsets (`gap`);
//! - that the checkpoint is anchored with its root and size: a local ledger entry signed by
//!   the log's key, or with `--rpc` the chain (`bad_anchor`), within `--anchor-grace`
//!   (`missing_anchor`).
//!
//! An alarm is a log line (`ALARM kind: ...` on standard error), a metric
//! (`veritrace_monitor_alarms_total{kind}`), and the exit status 1 with `--once`. A
//! checkpoint that raised an alarm is never adopted: the state keeps the last good one, so a
//! rewritten log stays an alarm until an operator looks. A node that cannot be reached is no
//! alarm but no verdict (exit status 2 with `--once`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Args;
use serde::{Deserialize, Serialize};
use veritrace_verify::bundle::{Anchor, BatchHeader};
use veritrace_verify::checkpoint::{Checkpoint, NoteKey, open_checkpoint};
use veritrace_verify::logtree::{self, Frontier, TILE_WIDTH};
use veritrace_verify::{Digest, canonical, merkle};

/// `veritrace monitor`.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// The node's HTTP API (`veritrace serve`), e.g. `http://127.0.0.1:8080`.
    #[arg(long)]
    url: String,
    /// The log's note verifier key, as the operator publishes it (`veritrace checkpoint
    /// --vkey` on the node): `origin+keyhash+key`.
    #[arg(long)]
    vkey: String,
    /// File where the monitor keeps what it verified (created on first run: the log is
    /// then checked from its first entry).
    #[arg(long)]
    state: PathBuf,
    /// An API token for the node (a role that may read proofs, e.g. auditor).
    #[arg(long, env = "VERITRACE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// JSON-RPC URL of the chain, to check EVM anchors on it.
    #[arg(long)]
    rpc: Option<String>,
    /// The operator's published VeritraceAnchor address (with --rpc).
    #[arg(long, requires = "rpc")]
    contract: Option<String>,
    /// Check once and exit: 0 all good, 1 an alarm, 2 no verdict (node unreachable).
    #[arg(long)]
    once: bool,
    /// Seconds between rounds.
    #[arg(long, default_value_t = 10)]
    interval_secs: u64,
    /// Seconds a checkpoint may stay unanchored before it is an alarm.
    #[arg(long, default_value_t = 600)]
    anchor_grace_secs: u64,
    /// Serve /metrics and /healthz here (port 0: any free port).
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Seconds each HTTP request to the node may take.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

/// What the monitor verified so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    /// The log's origin (from the pinned key).
    origin: String,
    /// The last good checkpoint (signed note text).
    checkpoint: Option<String>,
    /// The log's right edge at that checkpoint, built from the entries.
    frontier: Frontier,
    /// The last batch seen of each stream and partition (`stream/partition`).
    heads: BTreeMap<String, Head>,
    /// Checkpoints seen but not yet anchored: size and when first seen (Unix seconds).
    unanchored: BTreeMap<u64, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Head {
    seq: u64,
    root: Digest,
    last_offset: u64,
}

/// One alarm.
#[derive(Debug, Clone)]
struct Alarm {
    kind: &'static str,
    detail: String,
}

fn alarm(kind: &'static str, detail: impl Into<String>) -> Alarm {
    Alarm {
        kind,
        detail: detail.into(),
    }
}

/// A round's outcome.
enum Round {
    /// Every check passed at this size.
    Good(u64),
    /// Alarms: the state was not advanced past them.
    Alarms(Vec<Alarm>),
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    async fn get(&self, path: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.with_context(|| format!("GET {path}"))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = resp.bytes().await.with_context(|| format!("GET {path}"))?;
        if !status.is_success() {
            anyhow::bail!(
                "GET {path}: {status}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            );
        }
        Ok(Some(body.to_vec()))
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<Option<T>> {
        match self.get(path).await? {
            Some(b) => {
                Ok(Some(serde_json::from_slice(&b).with_context(|| {
                    format!("GET {path}: not the expected JSON")
                })?))
            }
            None => Ok(None),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs the monitor.
pub fn run(a: MonitorArgs) -> anyhow::Result<ExitCode> {
    let key = NoteKey::parse_vkey(a.vkey.trim()).map_err(|e| anyhow::anyhow!("--vkey: {e}"))?;
    let rt = crate::rt::runtime()?;
    rt.block_on(async move {
        let registry = prometheus::Registry::new();
        let alarms = veritrace_metrics::counter_vec(&registry, &veritrace_metrics::MONITOR_ALARMS)?;
        let size_gauge = veritrace_metrics::gauge(&registry, &veritrace_metrics::MONITOR_LOG_SIZE)?;
        let checked = veritrace_metrics::gauge(&registry, &veritrace_metrics::MONITOR_CHECKED)?;
        // What an earlier run verified stands until this one verifies more.
        if let Ok(st) = read_state(&a.state, &key.name) {
            size_gauge.set(st.frontier.size as i64);
        }
        let (ops_stop, mut ops_rx) = tokio::sync::watch::channel(false);
        let ops = match a.metrics_listen {
            Some(listen) => {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("binding {listen}"))?;
                eprintln!("monitor metrics on http://{}", listener.local_addr()?);
                let app = veritrace_metrics::ops_router(
                    registry.clone(),
                    veritrace_metrics::Health::ready_when(Arc::new(|| Ok(serde_json::json!({})))),
                );
                Some(tokio::spawn(veritrace_metrics::serve(
                    listener,
                    app,
                    async move {
                        let _ = ops_rx.wait_for(|s| *s).await;
                    },
                )))
            }
            None => None,
        };
        let client = Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(a.timeout_secs.max(1)))
                .build()
                .context("the HTTP client")?,
            base: a.url.trim_end_matches('/').to_owned(),
            token: a.token.clone(),
        };
        let code = loop {
            let outcome = round(&a, &key, &client).await;
            checked.set(now_secs() as i64);
            let code = match outcome {
                Ok(Round::Good(size)) => {
                    size_gauge.set(size as i64);
                    eprintln!("log verified at {size} leaves");
                    ExitCode::SUCCESS
                }
                Ok(Round::Alarms(list)) => {
                    for al in &list {
                        alarms.with_label_values(&[al.kind]).inc();
                        tracing::error!(kind = al.kind, detail = %al.detail, "log monitor alarm");
                        eprintln!("ALARM {}: {}", al.kind, al.detail);
                    }
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("no verdict this round: {e:#}");
                    ExitCode::from(2)
                }
            };
            if a.once {
                break code;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(a.interval_secs.max(1))) => {}
                () = crate::rt::shutdown_signal() => break ExitCode::SUCCESS,
            }
        };
        let _ = ops_stop.send(true);
        if let Some(o) = ops {
            let _ = o.await;
        }
        Ok(code)
    })
}

fn read_state(path: &std::path::Path, origin: &str) -> anyhow::Result<State> {
    match std::fs::read(path) {
        Ok(b) => {
            let s: State = serde_json::from_slice(&b)
                .with_context(|| format!("{}: not a monitor state file", path.display()))?;
            if s.origin != origin {
                anyhow::bail!(
                    "{} follows the log {:?}, not {origin:?}: use one state file per log",
                    path.display(),
                    s.origin
                );
            }
            if !s.frontier.is_well_formed() {
                anyhow::bail!("{}: its frontier is damaged", path.display());
            }
            Ok(s)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State {
            origin: origin.to_owned(),
            ..State::default()
        }),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_state(path: &std::path::Path, s: &State) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(s)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// One round: every check against the node's current checkpoint.
async fn round(a: &MonitorArgs, key: &NoteKey, c: &Client) -> anyhow::Result<Round> {
    let mut st = read_state(&a.state, &key.name)?;
    let Some(note) = c.get("/v1/log/checkpoint").await? else {
        anyhow::bail!("the node has published no checkpoint yet");
    };
    let new = match open_checkpoint(&note, key) {
        Ok(cp) => cp,
        Err(e) => {
            return Ok(Round::Alarms(vec![alarm(
                "bad_signature",
                format!("the checkpoint does not verify with the pinned key: {e}"),
            )]));
        }
    };
    let old: Option<Checkpoint> = st
        .checkpoint
        .as_deref()
        .and_then(|t| open_checkpoint(t.as_bytes(), key).ok());
    let mut alarms = Vec::new();
    if let Some(old) = &old {
        if new.size < old.size {
            return Ok(Round::Alarms(vec![alarm(
                "rollback",
                format!("the log shrank from {} to {} leaves", old.size, new.size),
            )]));
        }
        if new.size == old.size && new.root != old.root {
            return Ok(Round::Alarms(vec![alarm(
                "split_view",
                format!(
                    "two checkpoints of {} leaves with different roots: {} before, {} now",
                    new.size, old.root, new.root
                ),
            )]));
        }
        if new.size > old.size {
            let path = format!("/v1/log/consistency?from={}&to={}", old.size, new.size);
            let p: veritrace_queries::log::ConsistencyProof = c
                .json(&path)
                .await?
                .ok_or_else(|| anyhow::anyhow!("GET {path}: not found"))?;
            if p.from.root != old.root
                || p.to.root != new.root
                || p.from.size != old.size
                || p.to.size != new.size
            {
                return Ok(Round::Alarms(vec![alarm(
                    "inconsistent",
                    format!(
                        "the node's consistency proof is between other trees ({} at {}, {} at {}) than the checkpoints ({} at {}, {} at {})",
                        p.from.root,
                        p.from.size,
                        p.to.root,
                        p.to.size,
                        old.root,
                        old.size,
                        new.root,
                        new.size
                    ),
                )]));
            }
            if let Err(e) = p.verify() {
                return Ok(Round::Alarms(vec![alarm(
                    "inconsistent",
                    format!(
                        "the log of {} leaves does not extend the one of {}: {e}",
                        new.size, old.size
                    ),
                )]));
            }
        }
    }
    // The new entries: each leaf onto the frontier, each header checked.
    let mut frontier = st.frontier.clone();
    let mut heads = st.heads.clone();
    if frontier.size > new.size {
        return Ok(Round::Alarms(vec![alarm(
            "rollback",
            format!(
                "the monitor verified {} entries; the checkpoint has {}",
                frontier.size, new.size
            ),
        )]));
    }
    while frontier.size < new.size {
        let start = frontier.size;
        let bundle = start / TILE_WIDTH;
        let width = (new.size - bundle * TILE_WIDTH).min(TILE_WIDTH);
        let path = format!("/v1/log/{}", logtree::entries_path(bundle, width));
        let Some(bytes) = c.get(&path).await? else {
            return Ok(Round::Alarms(vec![alarm(
                "gap",
                format!("entry bundle {path} is missing"),
            )]));
        };
        let entries = match logtree::read_entry_bundle(&bytes) {
            Ok(e) if e.len() as u64 == width => e,
            Ok(e) => {
                return Ok(Round::Alarms(vec![alarm(
                    "bad_entry",
                    format!("{path} holds {} entries, not {width}", e.len()),
                )]));
            }
            Err(e) => {
                return Ok(Round::Alarms(vec![alarm(
                    "bad_entry",
                    format!("{path}: {e}"),
                )]));
            }
        };
        for (i, e) in entries
            .iter()
            .enumerate()
            .skip((start - bundle * TILE_WIDTH) as usize)
        {
            let index = bundle * TILE_WIDTH + i as u64;
            frontier.push(merkle::leaf_hash(e));
            if let Some(al) = check_entry(index, e, &mut heads) {
                alarms.push(al);
            }
        }
    }
    if frontier.root() != new.root {
        return Ok(Round::Alarms(vec![alarm(
            "inconsistent",
            format!(
                "the published entries give root {} at {} leaves; the checkpoint says {}",
                frontier.root(),
                new.size,
                new.root
            ),
        )]));
    }
    // Anchors: the new checkpoint and those still waiting.
    // A checkpoint first seen now is not late yet, whatever the grace.
    let mut fresh = None;
    if old.as_ref().is_none_or(|o| o.size != new.size) && !st.unanchored.contains_key(&new.size) {
        st.unanchored.insert(new.size, now_secs());
        fresh = Some(new.size);
    }
    let waiting: Vec<(u64, u64)> = st.unanchored.iter().map(|(s, t)| (*s, *t)).collect();
    for (size, since) in waiting {
        match anchor_state(a, key, c, size, (size == new.size).then_some(new.root)).await? {
            AnchorCheck::Anchored => {
                st.unanchored.remove(&size);
            }
            AnchorCheck::Bad(detail) => alarms.push(alarm("bad_anchor", detail)),
            AnchorCheck::Waiting => {
                if fresh != Some(size) && now_secs().saturating_sub(since) > a.anchor_grace_secs {
                    alarms.push(alarm(
                        "missing_anchor",
                        format!(
                            "the checkpoint of {size} leaves is not anchored {} s after it was first seen",
                            now_secs().saturating_sub(since)
                        ),
                    ));
                }
            }
        }
    }
    // Only missing anchors may leave the rest adopted: the log itself checked out.
    let log_ok = alarms
        .iter()
        .all(|a| a.kind == "missing_anchor" || a.kind == "bad_anchor");
    if log_ok {
        st.checkpoint = Some(String::from_utf8_lossy(&note).into_owned());
        st.frontier = frontier;
        st.heads = heads;
    }
    write_state(&a.state, &st)?;
    if alarms.is_empty() {
        Ok(Round::Good(new.size))
    } else {
        Ok(Round::Alarms(alarms))
    }
}

/// Checks one log entry: a canonical batch header that follows its partition's last batch.
fn check_entry(index: u64, e: &[u8], heads: &mut BTreeMap<String, Head>) -> Option<Alarm> {
    let h: BatchHeader = match serde_json::from_slice(e) {
        Ok(h) => h,
        Err(err) => {
            return Some(alarm(
                "bad_entry",
                format!("entry {index} is not a batch header: {err}"),
            ));
        }
    };
    match canonical::to_vec(&h) {
        Ok(c) if c == e => {}
        _ => {
            return Some(alarm(
                "bad_entry",
                format!("entry {index} (batch {}) is not canonical JSON", h.batch_id),
            ));
        }
    }
    let key = format!("{}/{}", h.stream, h.partition);
    let follows = match heads.get(&key) {
        None => h.seq == 0 && h.prev_root == Digest::ZERO,
        Some(p) => h.seq == p.seq + 1 && h.prev_root == p.root && h.first_offset > p.last_offset,
    };
    let found = heads.get(&key).map(|p| (p.seq, p.root));
    heads.insert(
        key.clone(),
        Head {
            seq: h.seq,
            root: h.root,
            last_offset: h.last_offset,
        },
    );
    if follows {
        return None;
    }
    Some(alarm(
        "gap",
        match found {
            None => format!(
                "entry {index}: batch {} is the first of {key} in the log but has sequence {} (a batch is missing before it)",
                h.batch_id, h.seq
            ),
            Some((seq, root)) => format!(
                "entry {index}: batch {} (sequence {}, previous root {}) does not follow batch {seq} of {key} (root {root})",
                h.batch_id, h.seq, h.prev_root
            ),
        },
    ))
}

enum AnchorCheck {
    Anchored,
    Waiting,
    Bad(String),
}

/// Whether the checkpoint of `size` leaves is anchored with its root (`root`: the
/// checkpoint's, when known) and size.
async fn anchor_state(
    a: &MonitorArgs,
    key: &NoteKey,
    c: &Client,
    size: u64,
    root: Option<Digest>,
) -> anyhow::Result<AnchorCheck> {
    let Some(an): Option<veritrace_queries::log::LogAnchor> =
        c.json(&format!("/v1/log/anchor?size={size}")).await?
    else {
        // Not an epoch's size: a node cannot anchor it.
        return Ok(AnchorCheck::Bad(format!(
            "no epoch was sealed at log size {size}"
        )));
    };
    if root.is_some_and(|r| r != an.root) {
        return Ok(AnchorCheck::Bad(format!(
            "the epoch at {size} leaves has root {} but the checkpoint says {}",
            an.root,
            root.unwrap_or(Digest::ZERO)
        )));
    }
    let Some(anchor) = an.anchor else {
        return Ok(AnchorCheck::Waiting);
    };
    match anchor {
        Anchor::Local { ledger_entry: e } => {
            if e.root != an.root || e.batch_count != size || e.epoch_id != an.epoch_id {
                return Ok(AnchorCheck::Bad(format!(
                    "ledger entry of epoch {} anchors root {} at {} leaves, not {} at {size}",
                    e.epoch_id, e.root, e.batch_count, an.root
                )));
            }
            if e.public_key != hex::encode(key.key.to_bytes()) {
                return Ok(AnchorCheck::Bad(format!(
                    "ledger entry of epoch {} is signed by {}, not the log's key",
                    e.epoch_id, e.public_key
                )));
            }
            if let Err(err) = e.verify_signature() {
                return Ok(AnchorCheck::Bad(format!(
                    "ledger entry of epoch {}: {err}",
                    e.epoch_id
                )));
            }
            Ok(AnchorCheck::Anchored)
        }
        Anchor::Evm { receipt } => {
            let Some(rpc) = &a.rpc else {
                // Without a chain to ask, the receipt's existence is all there is.
                return Ok(AnchorCheck::Anchored);
            };
            let chain = veritrace_verify::chain::RpcChain::new(
                rpc,
                a.contract.as_deref(),
                Duration::from_secs(a.timeout_secs.max(1)),
            )
            .map_err(|e| anyhow::anyhow!("--rpc: {e}"))?;
            let root = an.root;
            let epoch = an.epoch_id;
            let r = tokio::task::spawn_blocking(move || {
                use veritrace_verify::report::ChainCheck as _;
                chain.check(&receipt, &root, epoch, size)
            })
            .await?;
            match r {
                Ok(_) => Ok(AnchorCheck::Anchored),
                Err(veritrace_verify::report::ChainCheckError::Failed { code, detail }) => {
                    Ok(AnchorCheck::Bad(format!("the chain says {code}: {detail}")))
                }
                Err(e) => Err(anyhow::anyhow!("asking the chain: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(partition: u32, seq: u64, first: u64, last: u64, root: u8, prev: u8) -> Vec<u8> {
        let h = BatchHeader {
            batch_id: veritrace_anchor::batch_id("s", partition, first, last),
            stream: "s".into(),
            partition,
            seq,
            first_offset: first,
            last_offset: last,
            records: last - first + 1,
            size: 1,
            root: Digest([root; 32]),
            prev_root: if prev == 0 {
                Digest::ZERO
            } else {
                Digest([prev; 32])
            },
            sealed_at: "2026-12-04T00:00:00.000Z".into(),
            retracts: Vec::new(),
        };
        canonical::to_vec(&h).expect("jcs")
    }

    #[test]
    fn entries_must_follow_their_partition_without_a_gap() {
        let mut heads = BTreeMap::new();
        assert!(check_entry(0, &header(0, 0, 0, 9, 1, 0), &mut heads).is_none());
        assert!(check_entry(1, &header(1, 0, 0, 4, 7, 0), &mut heads).is_none());
        assert!(check_entry(2, &header(0, 1, 10, 19, 2, 1), &mut heads).is_none());
        // Sequence 2 of partition 0 is missing.
        let a = check_entry(3, &header(0, 3, 30, 39, 4, 3), &mut heads).expect("gap");
        assert_eq!(a.kind, "gap");
        assert!(
            a.detail.contains("does not follow batch 1 of s/0"),
            "{}",
            a.detail
        );
        // A batch whose previous root is not its predecessor's.
        let a = check_entry(4, &header(1, 1, 5, 9, 8, 9), &mut heads).expect("broken chain");
        assert_eq!(a.kind, "gap");
        // A partition seen first at a later sequence.
        let a = check_entry(5, &header(2, 4, 0, 1, 1, 2), &mut heads).expect("missing start");
        assert!(a.detail.contains("is the first of s/2"), "{}", a.detail);
        // Not canonical, or not a header at all.
        let mut pretty = b" ".to_vec();
        pretty.extend(header(3, 0, 0, 1, 1, 0));
        assert_eq!(
            check_entry(6, &pretty, &mut heads).expect("bad").kind,
            "bad_entry"
        );
        assert_eq!(
            check_entry(7, b"{}", &mut heads).expect("bad").kind,
            "bad_entry"
        );
    }
}
