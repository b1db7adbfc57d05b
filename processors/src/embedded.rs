//! The embedded ingest queue: records submitted by another thread (the gateway running
//! without Kafka) go through one partition processor of the data directory, and each
//! submission is answered once the batch holding its records is sealed (Parquet files and
//! manifest written and synced: durable), with every record's outcome. Epochs are sealed
//! and anchored by the shared epoch loop ([`EpochLoop::contending`]), so other processes on
//! the same directory (the registry commands, `veritrace process`) coexist with it.
//!
//! Offsets are the partition's own (one after the last sealed), so a restart resumes where
//! the last sealed batch ended: a submission that was not answered was not sealed, and its
//! client sends it again (a record sealed twice is one row: event ids are deduplicated).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use veritrace_anchor::epoch_loop::{BatchFeed, EpochLoop, EpochLoopReport, EpochObserver};
use veritrace_anchor::{Backend, DataDir};

use crate::partition::{BatchPolicy, Outcome, PartitionProcessor, Stats};
use crate::signed::SignatureSettings;
use crate::{Error, Result, now_ms};

/// How the embedded queue processes and anchors.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// The stream its batches are named after (partition 0).
    pub stream: String,
    /// When batches are sealed: a submission waits at most `max_age` for its answer.
    pub policy: BatchPolicy,
    /// Epoch interval.
    pub epoch_interval: Duration,
    /// Who anchors epochs.
    pub backend: Backend,
    /// How signed records are checked.
    pub signatures: SignatureSettings,
    /// Submissions waiting to be processed, at most; past it [`Embedded::submit`] says
    /// [`Busy::Full`].
    pub queue: usize,
    /// Names this process in the anchorer lock.
    pub holder: String,
    /// What the records are: events (the gateway) or audit entries ([`crate::audit`]).
    pub kind: EmbeddedKind,
}

/// What an embedded queue's records are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmbeddedKind {
    /// Events, signed or not, on partition 0 of the stream.
    #[default]
    Events,
    /// Audit entries of this node's servers, on the first partition of the stream no other
    /// process holds (each server of a group writes its own).
    Audit,
}

/// One record of a submission that was rejected, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRejected {
    /// Its position in the submission.
    pub index: usize,
    /// Its event id, when it was readable.
    pub event_id: Option<String>,
    /// The reason code.
    pub reason: &'static str,
    /// What was wrong.
    pub detail: String,
}

/// A sealed submission: how many events were accepted, which records were rejected (kept in
/// the rejected table), and the batch they were sealed in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sealed {
    /// Events accepted (a bundle record counts its events).
    pub accepted: usize,
    /// Records (or bundle events) rejected.
    pub rejected: Vec<RecordRejected>,
    /// The batch sealed over them (`None` when every record was already sealed before).
    pub batch_id: Option<String>,
}

/// Called once with a submission's fate: sealed, or the error that stopped the queue.
pub type Done = Box<dyn FnOnce(std::result::Result<Sealed, String>) + Send>;

/// Why a submission was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The queue is full: try again shortly.
    Full,
    /// The queue has stopped (shutting down, or a write failed).
    Stopped,
}

/// Called once a submission is journaled (audit entries: durable before their request is
/// answered), or with the error that stopped the journal.
pub type Journaled = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

struct Submission {
    records: Vec<(Option<Vec<u8>>, Vec<u8>)>,
    done: Done,
    journaled: Option<Journaled>,
}

/// Submissions journaled together at most (one write, one fsync).
const GROUP_COMMIT: usize = 256;

/// A running embedded queue.
pub struct Embedded {
    tx: Option<SyncSender<Submission>>,
    worker: Option<JoinHandle<Result<Stats>>>,
    anchor: Option<JoinHandle<Result<EpochLoopReport>>>,
    anchor_stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("running", &self.tx.is_some())
            .finish_non_exhaustive()
    }
}

struct Quiet;
impl EpochObserver for Quiet {}

impl Embedded {
    /// Opens partition 0 of `cfg.stream` in `dir` (the first free partition for audit
    /// entries; the partition's lock keeps a second process out) and starts the processor
    /// and epoch threads.
    pub fn start(dir: &DataDir, cfg: EmbeddedConfig) -> Result<Self> {
        veritrace_anchor::check_backend(dir, &cfg.backend)?;
        let lock = |p: u32| dir.try_lock(&dir.partition_lock_file(&cfg.stream, p), &cfg.holder);
        let mut journal = None;
        let (proc, lock) = match cfg.kind {
            EmbeddedKind::Events => {
                let Some(l) = lock(0)? else {
                    return Err(Error::Invalid(format!(
                        "partition 0 of stream {} is written by another process ({})",
                        cfg.stream,
                        dir.lock_holder(&dir.partition_lock_file(&cfg.stream, 0))
                    )));
                };
                let registry = cfg.signatures.registry(dir)?;
                let proc = PartitionProcessor::open(dir, &cfg.stream, 0, cfg.policy)?
                    .with_signatures(cfg.signatures.stage(&cfg.stream, registry));
                (proc, l)
            }
            EmbeddedKind::Audit => {
                let mut found = None;
                for p in 0..64 {
                    if let Some(l) = lock(p)? {
                        let mut proc =
                            PartitionProcessor::open(dir, &cfg.stream, p, cfg.policy)?.with_audit();
                        let path = dir.journal_file(&cfg.stream, p);
                        crate::audit::replay_journal(dir, &mut proc, &path)?;
                        journal = Some(crate::audit::Journal::open(dir, &path)?);
                        found = Some((proc, l));
                        break;
                    }
                }
                found.ok_or_else(|| {
                    Error::Invalid(format!(
                        "all 64 partitions of stream {} are written by other processes",
                        cfg.stream
                    ))
                })?
            }
        };
        let (tx, rx) = sync_channel::<Submission>(cfg.queue.max(1));
        let worker = std::thread::Builder::new()
            .name("embedded-p0".into())
            .spawn(move || {
                // The partition's lock is held as long as its processor writes.
                let _lock = lock;
                worker(proc, rx, journal)
            })
            .map_err(|e| Error::Invalid(format!("cannot start the processor thread: {e}")))?;
        let anchor_stop = Arc::new(AtomicBool::new(false));
        let anchor = {
            let (dir, stop) = (dir.clone(), anchor_stop.clone());
            let (interval, backend, holder) = (cfg.epoch_interval, cfg.backend, cfg.holder);
            std::thread::Builder::new()
                .name("anchor".into())
                .spawn(move || {
                    EpochLoop::contending(&dir, interval, backend, &holder)
                        .run(BatchFeed::Rescan(stop), Duration::from_secs(10), &Quiet)
                        .map_err(Error::from)
                })
                .map_err(|e| Error::Invalid(format!("cannot start the anchor thread: {e}")))?
        };
        Ok(Embedded {
            tx: Some(tx),
            worker: Some(worker),
            anchor: Some(anchor),
            anchor_stop,
        })
    }

    /// Queues `records` (key, payload); `done` is called once they are sealed.
    pub fn submit(
        &self,
        records: Vec<(Option<Vec<u8>>, Vec<u8>)>,
        done: Done,
    ) -> std::result::Result<(), Busy> {
        self.send(Submission {
            records,
            done,
            journaled: None,
        })
    }

    /// [`Embedded::submit`] for an audit queue: `journaled` is called once the records
    /// are in the partition's write-ahead journal (durable), before they are sealed.
    pub fn submit_journaled(
        &self,
        records: Vec<(Option<Vec<u8>>, Vec<u8>)>,
        journaled: Journaled,
        done: Done,
    ) -> std::result::Result<(), Busy> {
        self.send(Submission {
            records,
            done,
            journaled: Some(journaled),
        })
    }

    fn send(&self, s: Submission) -> std::result::Result<(), Busy> {
        let tx = self.tx.as_ref().ok_or(Busy::Stopped)?;
        tx.try_send(s).map_err(|e| match e {
            TrySendError::Full(_) => Busy::Full,
            TrySendError::Disconnected(_) => Busy::Stopped,
        })
    }

    /// Whether the processor thread is still running.
    pub fn is_running(&self) -> bool {
        self.worker.as_ref().is_some_and(|w| !w.is_finished())
    }

    /// Stops taking submissions, seals and answers what was queued, then seals the last
    /// epoch and waits (briefly) for its anchor.
    pub fn stop(mut self) -> Result<Stats> {
        drop(self.tx.take());
        let stats = match self.worker.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(Error::Invalid("the processor thread panicked".into())),
            None => Ok(Stats::default()),
        };
        self.anchor_stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.anchor.take() {
            match a.join() {
                Ok(r) => {
                    r?;
                }
                Err(_) => return Err(Error::Invalid("the anchor thread panicked".into())),
            }
        }
        stats
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        self.anchor_stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.anchor.take() {
            let _ = a.join();
        }
    }
}

fn worker(
    mut proc: PartitionProcessor,
    rx: Receiver<Submission>,
    mut journal: Option<crate::audit::Journal>,
) -> Result<Stats> {
    let mut next = proc.resume_offset().unwrap_or(0);
    let mut pending: Vec<(Done, Sealed)> = Vec::new();
    let seal = |proc: &mut PartitionProcessor,
                pending: &mut Vec<(Done, Sealed)>,
                journal: Option<&mut crate::audit::Journal>|
     -> Result<()> {
        let sealed = proc.seal(now_ms()).and_then(|header| {
            // Given only when every journaled record was pushed before this seal: the
            // journal is done.
            if let Some(j) = journal {
                j.clear()?;
            }
            Ok(header)
        });
        match sealed {
            Ok(header) => {
                let id = header.map(|h| h.batch_id);
                for (done, mut sealed) in pending.drain(..) {
                    sealed.batch_id.clone_from(&id);
                    done(Ok(sealed));
                }
                Ok(())
            }
            Err(e) => {
                let msg = format!("sealing the batch failed: {e}");
                for (done, _) in pending.drain(..) {
                    done(Err(msg.clone()));
                }
                Err(e)
            }
        }
    };
    loop {
        let timeout = proc.seal_deadline().map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        match rx.recv_timeout(timeout) {
            Ok(first) => {
                let mut group = vec![first];
                if let Some(j) = journal.as_mut() {
                    // Group commit: what else is queued shares the write and the fsync.
                    while group.len() < GROUP_COMMIT {
                        match rx.try_recv() {
                            Ok(s) => group.push(s),
                            Err(_) => break,
                        }
                    }
                    let mut offset = next;
                    let written = j.append(group.iter().flat_map(|s| s.records.iter()).map(
                        |(_, payload)| {
                            offset += 1;
                            (offset - 1, payload.as_slice())
                        },
                    ));
                    if let Err(e) = written {
                        let msg = format!("the audit journal cannot be written: {e}");
                        for s in group {
                            if let Some(j) = s.journaled {
                                j(Err(msg.clone()));
                            }
                            (s.done)(Err(msg.clone()));
                        }
                        for (d, _) in pending.drain(..) {
                            d(Err(msg.clone()));
                        }
                        return Err(e);
                    }
                    for s in &mut group {
                        if let Some(j) = s.journaled.take() {
                            j(Ok(()));
                        }
                    }
                }
                let last = group.len() - 1;
                for (n, Submission { records, done, .. }) in group.into_iter().enumerate() {
                    let now = now_ms();
                    proc.preverify(records.iter().map(|(_, p)| p.as_slice()));
                    let mut sealed = Sealed::default();
                    for (index, (key, payload)) in records.into_iter().enumerate() {
                        let outcome = match proc.push(next, key.as_deref(), &payload, now) {
                            Ok(o) => o,
                            Err(e) => {
                                done(Err(format!("processing failed: {e}")));
                                for (d, _) in pending.drain(..) {
                                    d(Err(format!("processing failed: {e}")));
                                }
                                return Err(e);
                            }
                        };
                        next += 1;
                        match outcome {
                            Outcome::Accepted => sealed.accepted += 1,
                            Outcome::Bundle { accepted, rejected } => {
                                sealed.accepted += accepted;
                                sealed.rejected.extend(rejected.into_iter().map(|(r, _)| {
                                    RecordRejected {
                                        index,
                                        event_id: r.event_id,
                                        reason: r.reason.as_str(),
                                        detail: r.detail,
                                    }
                                }));
                            }
                            Outcome::Rejected(r) => sealed.rejected.push(RecordRejected {
                                index,
                                event_id: r.event_id,
                                reason: r.reason.as_str(),
                                detail: r.detail,
                            }),
                            Outcome::AlreadySealed => {}
                        }
                    }
                    pending.push((done, sealed));
                    if proc.should_seal(Instant::now()) {
                        // Records of this group still to be pushed keep the journal.
                        let done_with = if n == last { journal.as_mut() } else { None };
                        seal(&mut proc, &mut pending, done_with)?;
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if proc.should_seal(Instant::now()) || !pending.is_empty() {
                    seal(&mut proc, &mut pending, journal.as_mut())?;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                seal(&mut proc, &mut pending, journal.as_mut())?;
                return Ok(proc.stats().clone());
            }
        }
    }
}
