use std::time::{Duration, Instant};

use tracing::instrument;

use crate::evm::{AnchorStatus, EvmAnchorer, EvmSettings};
use crate::{BatchHeader, DataDir, EpochLog, EpochRecord, LocalLedger, Result};
use veritrace_verify::Digest;

/// Which witness anchors epoch roots.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The embedded local ledger (signed, hash-chained file): the demo default.
    Local,
    /// An EVM chain over JSON-RPC.
    Evm(Box<EvmSettings>),
}

/// Refuses to anchor `dir` with the local ledger once any of its epochs went to an EVM
/// chain (the EVM journal, `anchors/evm.jsonl`, has records). Every process that seals
/// epochs of a data directory anchors them with its own backend, whichever holds the
/// anchorer lock; a server or gateway configured with the defaults would otherwise put
/// epochs of a chain-anchored directory on the node's local ledger, which auditors who
/// check the chain do not trust. The other way (a directory anchored locally so far, now
/// configured for a chain) is a migration, and allowed.
pub fn check_backend(dir: &DataDir, backend: &Backend) -> Result<()> {
    if !matches!(backend, Backend::Local) {
        return Ok(());
    }
    let journal = crate::evm::journal::read(dir)?;
    if journal.is_empty() {
        return Ok(());
    }
    let contract = journal.iter().rev().find_map(|r| match r {
        crate::evm::JournalRecord::Submitted {
            contract, chain_id, ..
        } => Some(format!("contract {contract} on chain {chain_id}")),
        _ => None,
    });
    Err(crate::Error::Invalid(format!(
        "the epochs of this data directory are anchored on an EVM chain ({}, journal {}); \
         this process is configured with the local ledger and would anchor them there. \
         Give it the same [anchor.evm] settings as the processors",
        contract.unwrap_or_else(|| "see the journal".into()),
        dir.evm_journal_file().display()
    )))
}

/// An epoch that became anchored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchoredEpoch {
    /// The epoch.
    pub epoch_id: u64,
    /// From the epoch's seal to its anchor (confirmations included), when known.
    pub latency: Option<Duration>,
    /// Gas of the anchoring transaction (EVM only).
    pub gas_used: Option<u64>,
}

enum Witness {
    Local(Box<LocalLedger>, Vec<AnchoredEpoch>),
    Evm(Box<EvmAnchorer>),
}

/// Drives epochs for one data directory: collects sealed batch headers, seals an epoch
/// every `interval`, and anchors each epoch root with the backend, in order. On start it
/// catches up on whatever a crash left behind: batches sealed but in no epoch, epochs
/// sealed but not anchored. There is one anchorer per data directory.
///
/// The local ledger anchors at once; the EVM backend anchors as the chain allows, from
/// [`Anchorer::drive`], which callers invoke regularly.
pub struct Anchorer {
    epochs: EpochLog,
    witness: Witness,
    pending: Vec<BatchHeader>,
    interval: Duration,
    next_tick: Instant,
}

impl std::fmt::Debug for Anchorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anchorer")
            .field("epochs", &self.epochs.records().len())
            .field("pending", &self.pending.len())
            .field("backend", &self.backend_name())
            .finish_non_exhaustive()
    }
}

/// The ledger anchors epochs of the epoch log, in order, with the same roots. More ledger
/// entries than epochs means the epoch log lost records: sealing on would give new batches
/// the ids of anchored epochs.
fn check_ledger_covers_epochs(
    dir: &DataDir,
    epochs: &EpochLog,
    entries: &[veritrace_verify::bundle::LedgerEntry],
) -> Result<()> {
    check_witnessed_epochs(
        dir,
        epochs,
        "the ledger",
        entries.iter().map(|e| (e.epoch_id, e.root)),
    )
}

/// The EVM journal: every epoch submitted to or anchored on a chain is in the epoch log with
/// the same root. A journal that names epochs the log lacks means the log lost records;
/// sealing on would submit other roots under ids a chain already holds.
fn check_journal_covers_epochs(dir: &DataDir, epochs: &EpochLog) -> Result<()> {
    let witnessed = crate::evm::journal::read(dir)?
        .into_iter()
        .filter_map(|r| match r {
            crate::evm::JournalRecord::Submitted { epoch_id, root, .. }
            | crate::evm::JournalRecord::Anchored { epoch_id, root, .. } => Some((epoch_id, root)),
            _ => None,
        });
    check_witnessed_epochs(dir, epochs, "the EVM journal", witnessed)
}

/// Every `(epoch id, root)` that `witness` recorded is an epoch of the log with that root.
fn check_witnessed_epochs(
    dir: &DataDir,
    epochs: &EpochLog,
    witness: &str,
    witnessed: impl Iterator<Item = (u64, Digest)>,
) -> Result<()> {
    let records = epochs.records();
    let mut beyond: Option<(u64, u64)> = None;
    for (id, root) in witnessed {
        match records.get(id as usize) {
            Some(r) if r.epoch_id == id && r.root == root => {}
            Some(r) => {
                return Err(crate::Error::Corrupt {
                    path: dir.epochs_file(),
                    detail: format!(
                        "epoch {} has root {} but {witness} recorded {root} for epoch {id}. \
                         Restore the epoch log from a backup; nothing was changed",
                        r.epoch_id, r.root
                    ),
                });
            }
            None => {
                beyond = Some(beyond.map_or((id, id), |(lo, hi)| (lo.min(id), hi.max(id))));
            }
        }
    }
    if let Some((lo, hi)) = beyond {
        return Err(crate::Error::Corrupt {
            path: dir.epochs_file(),
            detail: format!(
                "the epoch log holds {} epochs but {witness} anchors epochs {lo}..={hi}: \
                 they are missing (truncated or replaced). Restore the epoch log from a \
                 backup; nothing was changed",
                records.len(),
            ),
        });
    }
    Ok(())
}

impl Anchorer {
    /// Opens the epoch log and the backend and catches up (the local ledger anchors every
    /// sealed epoch now; the EVM backend on the next [`Anchorer::drive`]).
    pub fn open(
        dir: &DataDir,
        interval: Duration,
        backend: Backend,
        now_rfc3339: impl Fn() -> String,
    ) -> Result<Self> {
        check_backend(dir, &backend)?;
        let epochs = EpochLog::open_writer(dir)?;
        let witness = match backend {
            Backend::Local => {
                let ledger = LocalLedger::open(dir)?;
                check_ledger_covers_epochs(dir, &epochs, ledger.entries())?;
                Witness::Local(Box::new(ledger), Vec::new())
            }
            Backend::Evm(s) => {
                check_journal_covers_epochs(dir, &epochs)?;
                Witness::Evm(Box::new(EvmAnchorer::open(dir, *s)?))
            }
        };
        let pending = epochs.unepoched(dir.all_batch_headers()?);
        let mut a = Anchorer {
            epochs,
            witness,
            pending,
            interval,
            next_tick: Instant::now() + interval,
        };
        a.anchor_local(&now_rfc3339)?;
        a.publish(&[])?;
        Ok(a)
    }

    /// Publishes the log's tiles and checkpoint up to the last epoch ([`crate::log`]). A
    /// published log that disagrees with the epoch log is an error; a write that fails is
    /// retried at the next epoch (publishing catches up from the published checkpoint).
    fn publish(&mut self, fresh: &[BatchHeader]) -> Result<()> {
        let dir = self.epochs.dir().clone();
        match crate::log::publish(&dir, &mut self.epochs, fresh) {
            Ok(_) => Ok(()),
            Err(e @ crate::Error::Corrupt { .. }) => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "could not publish the log's checkpoint; retrying at the next epoch");
                Ok(())
            }
        }
    }

    /// Local backend: anchors every sealed epoch the ledger lacks.
    fn anchor_local(&mut self, now: &impl Fn() -> String) -> Result<()> {
        let Witness::Local(ledger, done) = &mut self.witness else {
            return Ok(());
        };
        let from = ledger.entries().len();
        for e in self.epochs.records().iter().skip(from) {
            ledger.anchor(e, now())?;
            done.push(AnchoredEpoch {
                epoch_id: e.epoch_id,
                latency: humantime::parse_rfc3339_weak(&e.sealed_at)
                    .ok()
                    .and_then(|t| std::time::SystemTime::now().duration_since(t).ok()),
                gas_used: None,
            });
        }
        Ok(())
    }

    /// `local` or `evm`.
    pub fn backend_name(&self) -> &'static str {
        match self.witness {
            Witness::Local(..) => "local",
            Witness::Evm(_) => "evm",
        }
    }

    /// Who witnesses the roots, for people: the node key, or the chain and contract.
    pub fn witness_description(&self) -> String {
        match &self.witness {
            Witness::Local(l, _) => format!("local ledger, node key {}", l.public_key_hex()),
            Witness::Evm(e) => format!(
                "EVM contract {} (writer {})",
                e.settings().contract,
                e.writer()
            ),
        }
    }

    /// The local ledger's public key (None on the EVM backend).
    pub fn public_key_hex(&self) -> Option<&str> {
        match &self.witness {
            Witness::Local(l, _) => Some(l.public_key_hex()),
            Witness::Evm(_) => None,
        }
    }

    /// Epochs sealed so far.
    pub fn epochs(&self) -> &[EpochRecord] {
        self.epochs.records()
    }

    /// Batches waiting for the next epoch.
    pub fn pending_batches(&self) -> usize {
        self.pending.len()
    }

    /// Sealed epochs that are not anchored yet.
    pub fn unanchored_epochs(&self) -> usize {
        match &self.witness {
            Witness::Local(l, _) => self.epochs.records().len() - l.entries().len(),
            Witness::Evm(e) => e.status(self.epochs.records()).unanchored,
        }
    }

    /// The EVM backend's status (None on the local ledger).
    pub fn chain_status(&self) -> Option<AnchorStatus> {
        match &self.witness {
            Witness::Local(..) => None,
            Witness::Evm(e) => Some(e.status(self.epochs.records())),
        }
    }

    /// Replaces the pending batches with every sealed batch of the data directory that is in
    /// no epoch yet. Used when other processes seal batches into the same directory (the
    /// manifests are the source of truth; a line being appended right now is skipped and
    /// picked up next time).
    pub fn rescan(&mut self, dir: &DataDir) -> Result<()> {
        self.pending = self.epochs.unepoched(dir.all_batch_headers()?);
        Ok(())
    }

    /// Adds a freshly sealed batch.
    pub fn add(&mut self, header: BatchHeader) {
        self.pending.push(header);
    }

    /// When the next epoch is due.
    pub fn next_tick(&self) -> Instant {
        self.next_tick
    }

    /// Seals an epoch over the pending batches if it is due (or `force`) and, on the local
    /// ledger, anchors it. Returns the sealed epoch.
    #[instrument(skip_all, fields(pending = self.pending.len()))]
    pub fn tick(
        &mut self,
        now: Instant,
        force: bool,
        now_rfc3339: impl Fn() -> String,
    ) -> Result<Option<EpochRecord>> {
        if !force && now < self.next_tick {
            return Ok(None);
        }
        self.next_tick = now + self.interval;
        let headers = std::mem::take(&mut self.pending);
        let fresh = headers.clone();
        let Some(rec) = self.epochs.seal(headers, now_rfc3339())? else {
            return Ok(None);
        };
        tracing::info!(epoch_id = rec.epoch_id, batches = rec.batch_count, log_size = rec.tree_size(), events = rec.events, root = %rec.root, backend = self.backend_name(), "epoch sealed");
        self.anchor_local(&now_rfc3339)?;
        self.publish(&fresh)?;
        Ok(Some(rec))
    }

    /// Makes anchoring progress and returns the epochs anchored since the last call. The
    /// EVM backend polls the chain when due (chain errors are retried with backoff, not
    /// returned); the local ledger has already anchored in [`Anchorer::tick`].
    pub fn drive(&mut self) -> Result<Vec<AnchoredEpoch>> {
        match &mut self.witness {
            Witness::Local(_, done) => Ok(std::mem::take(done)),
            Witness::Evm(e) => e.drive(self.epochs.records()),
        }
    }

    /// Drives anchoring until every sealed epoch is anchored or `timeout` passes; returns
    /// the epochs anchored meanwhile. Those still unanchored stay sealed for the next run.
    pub fn drain(&mut self, timeout: Duration) -> Result<Vec<AnchoredEpoch>> {
        let deadline = Instant::now() + timeout;
        let mut out = self.drive()?;
        while self.unanchored_epochs() > 0 && Instant::now() < deadline {
            let wake = match &self.witness {
                Witness::Evm(e) => e.next_poll().min(deadline),
                Witness::Local(..) => deadline,
            };
            std::thread::sleep(
                wake.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(200)),
            );
            out.extend(self.drive()?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submitted(epoch_id: u64, root: Digest) -> crate::evm::JournalRecord {
        crate::evm::JournalRecord::Submitted {
            epoch_id,
            root,
            chain_id: 31337,
            contract: "0x5fbdb2315678afecb367f032d93f642f64180aa3".into(),
            from: "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266".into(),
            nonce: epoch_id,
            tx_hash: format!("0x{}", "ab".repeat(32)),
            raw: "0x02".into(),
            at: "2026-12-02T00:00:00Z".into(),
        }
    }

    #[test]
    fn evm_journal_naming_epochs_the_epoch_log_lacks_is_refused() {
        let tmp = tempfile::tempdir().expect("test step");
        let dir = DataDir::create(tmp.path()).expect("test step");
        let epochs = EpochLog::open_writer(&dir).expect("test step");
        assert!(epochs.records().is_empty());
        // Nothing submitted yet: fine.
        check_journal_covers_epochs(&dir, &epochs).expect("test step");
        let path = dir.evm_journal_file();
        std::fs::create_dir_all(path.parent().expect("test step")).expect("test step");
        let lines: String = [submitted(2, Digest([7; 32])), submitted(4, Digest([8; 32]))]
            .iter()
            .map(|r| serde_json::to_string(r).expect("test step") + "\n")
            .collect();
        std::fs::write(&path, lines).expect("test step");
        let err = check_journal_covers_epochs(&dir, &epochs)
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("holds 0 epochs but the EVM journal anchors epochs 2..=4"),
            "{err}"
        );
    }

    /// A directory whose epochs went to a chain is not anchored on the local ledger (a
    /// server or gateway left on the defaults would do that); one anchored locally so far
    /// may move to a chain.
    #[test]
    fn the_local_ledger_does_not_anchor_a_chain_anchored_directory() {
        let tmp = tempfile::tempdir().expect("test step");
        let dir = DataDir::create(tmp.path()).expect("test step");
        let now = || "2026-12-05T00:00:00Z".to_owned();
        // Anchored locally so far: both backends may go on.
        let a = Anchorer::open(&dir, Duration::from_secs(1), Backend::Local, now)
            .expect("a fresh directory opens with the local ledger");
        drop(a);
        check_backend(&dir, &Backend::Local).expect("no chain journal");
        // One epoch submitted to a chain.
        let path = dir.evm_journal_file();
        std::fs::create_dir_all(path.parent().expect("test step")).expect("test step");
        let line = serde_json::to_string(&submitted(0, Digest([7; 32]))).expect("test step");
        std::fs::write(&path, line + "\n").expect("test step");
        let err = check_backend(&dir, &Backend::Local)
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("anchored on an EVM chain (contract 0x5fbdb2315678afecb367f032d93f642f64180aa3 on chain 31337")
                && err.contains("[anchor.evm]"),
            "{err}"
        );
        let err = Anchorer::open(&dir, Duration::from_secs(1), Backend::Local, now)
            .expect_err("the anchorer refuses too")
            .to_string();
        assert!(err.contains("anchored on an EVM chain"), "{err}");
        // Nothing was written to the ledger by the refused open.
        assert!(
            LocalLedger::open(&dir)
                .expect("ledger")
                .entries()
                .is_empty(),
            "the local ledger anchored nothing"
        );
    }
}
