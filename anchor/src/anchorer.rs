use std::time::{Duration, Instant};

use tracing::instrument;

use crate::{BatchHeader, DataDir, EpochLog, EpochRecord, LedgerEntry, LocalLedger, Result};

/// Drives epochs for one data directory: collects sealed batch headers, seals an epoch
/// every `interval`, and anchors each epoch root on the local ledger, in order. On start it
/// catches up on whatever a crash left behind: batches sealed but in no epoch, epochs
/// sealed but not anchored. There is one anchorer per data directory.
#[derive(Debug)]
pub struct Anchorer {
    epochs: EpochLog,
    ledger: LocalLedger,
    pending: Vec<BatchHeader>,
    interval: Duration,
    next_tick: Instant,
}

impl Anchorer {
    /// Opens the epoch log and ledger and catches up.
    pub fn open(
        dir: &DataDir,
        interval: Duration,
        now_rfc3339: impl Fn() -> String,
    ) -> Result<Self> {
        let epochs = EpochLog::open_writer(dir)?;
        let ledger = LocalLedger::open(dir)?;
        let pending = epochs.unepoched(dir.all_batch_headers()?);
        let mut a = Anchorer {
            epochs,
            ledger,
            pending,
            interval,
            next_tick: Instant::now() + interval,
        };
        a.anchor_unanchored(&now_rfc3339)?;
        Ok(a)
    }

    fn anchor_unanchored(&mut self, now: &impl Fn() -> String) -> Result<Vec<LedgerEntry>> {
        let mut out = Vec::new();
        let from = self.ledger.entries().len();
        let todo: Vec<EpochRecord> = self.epochs.records().iter().skip(from).cloned().collect();
        for e in todo {
            out.push(self.ledger.anchor(&e, now())?);
        }
        Ok(out)
    }

    /// The node's public key.
    pub fn public_key_hex(&self) -> &str {
        self.ledger.public_key_hex()
    }

    /// Epochs sealed so far.
    pub fn epochs(&self) -> &[EpochRecord] {
        self.epochs.records()
    }

    /// Batches waiting for the next epoch.
    pub fn pending_batches(&self) -> usize {
        self.pending.len()
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

    /// Seals and anchors an epoch if it is due (or `force`), returning what was anchored.
    #[instrument(skip_all, fields(pending = self.pending.len()))]
    pub fn tick(
        &mut self,
        now: Instant,
        force: bool,
        now_rfc3339: impl Fn() -> String,
    ) -> Result<Option<(EpochRecord, LedgerEntry)>> {
        if !force && now < self.next_tick {
            return Ok(None);
        }
        self.next_tick = now + self.interval;
        let headers = std::mem::take(&mut self.pending);
        let Some(rec) = self.epochs.seal(headers, now_rfc3339())? else {
            return Ok(None);
        };
        let entry = self.ledger.anchor(&rec, now_rfc3339())?;
        tracing::info!(epoch_id = rec.epoch_id, batches = rec.batch_count, events = rec.events, root = %rec.root, "epoch anchored (local)");
        Ok(Some((rec, entry)))
    }
}
