//! The epoch loop: the one place where epochs are sealed and anchored as time passes.
//!
//! Every runtime drives epochs the same way: learn of sealed batches, seal an epoch over them
//! every interval, let the backend anchor (the local ledger at once, a chain as it confirms),
//! report progress, and on stop seal what is left and wait a while for the anchors. Only two
//! things differ between runtimes, and they are parameters here:
//!
//! - where sealed batches come from ([`BatchFeed`]): headers sent by the processors of this
//!   process (`veritrace ingest file`, the demo), or the manifests of a data directory that
//!   other processes seal into (`veritrace process`: re-read every interval);
//! - who anchors: the caller's own [`Anchorer`] ([`EpochLoop::with_anchorer`]), or whichever
//!   process holds the data directory's anchorer lock ([`EpochLoop::contending`]: processor
//!   replicas all run the loop, one of them leads, another takes over when it stops).
//!
//! What the loop does is reported to an [`EpochObserver`] (metrics, progress counters).
//! `veritrace anchor run` is [`anchor_once`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::clock::now_rfc3339;
use crate::{
    AnchoredEpoch, Anchorer, Backend, BatchHeader, DataDir, DirLock, EpochRecord, Error, Result,
};

/// How often the loop wakes at most to drive the backend (chain polls, stop checks).
const WAKE: Duration = Duration::from_millis(100);

/// How long a loop that gave up the lead waits before it asks for it again (another
/// process that took it over meanwhile keeps it).
const STEP_DOWN_PAUSE: Duration = Duration::from_secs(2);

/// Where the loop learns of sealed batches.
#[derive(Debug)]
pub enum BatchFeed {
    /// Headers sent by this process's processors as they seal. The loop stops (sealing and
    /// anchoring what is left) when every sender is gone.
    Channel(Receiver<BatchHeader>),
    /// The data directory's manifests, re-read before each epoch: other processes seal into
    /// the directory. The loop stops when the flag is set.
    Rescan(Arc<AtomicBool>),
}

/// What the loop reports as it goes. Every method has an empty default.
pub trait EpochObserver {
    /// This process took the lead: it seals and anchors epochs for the directory.
    fn leading(&self, _backend: &str) {}
    /// This process gave the lead up (lease lost, or the store failed mid-way).
    fn stepped_down(&self) {}
    /// Batches waiting for the next epoch (reported before each epoch).
    fn pending_batches(&self, _n: usize) {}
    /// An epoch was sealed.
    fn sealed(&self, _epoch: &EpochRecord) {}
    /// Epochs that became anchored.
    fn anchored(&self, _done: &[AnchoredEpoch]) {}
    /// Sealed epochs not anchored yet.
    fn unanchored_epochs(&self, _n: usize) {}
    /// Chain errors and reorgs seen since the last report (EVM backend).
    fn chain(&self, _new_failures: u64, _new_reorgs: u64) {}
}

/// An observer that wants nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl EpochObserver for Quiet {}

/// What a loop did by the time it stopped.
#[derive(Debug, Clone, Default)]
pub struct EpochLoopReport {
    /// Epochs anchored by this loop, in order.
    pub anchored: Vec<AnchoredEpoch>,
    /// Sealed epochs still unanchored when it stopped (they are anchored by the next run).
    pub unanchored: usize,
}

enum Lead {
    /// This process anchors (holding the directory lock, if it had to take it).
    Held(Option<DirLock>, Box<Anchorer>),
    /// Another process anchors; this one takes over when the lock frees.
    Waiting {
        interval: Duration,
        backend: Backend,
        holder: String,
    },
}

/// The epoch loop of one data directory (see the module documentation).
pub struct EpochLoop {
    dir: DataDir,
    interval: Duration,
    lead: Lead,
    /// What a contending loop goes back to waiting with when it loses the lead.
    contend: Option<(Backend, String)>,
    next: Instant,
    seen_chain: (u64, u64),
    /// Not before this instant does a loop that stepped down try to lead again.
    retry_lead_at: Option<Instant>,
}

impl std::fmt::Debug for EpochLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochLoop")
            .field("dir", &self.dir.root())
            .field("interval", &self.interval)
            .field("leading", &matches!(self.lead, Lead::Held(..)))
            .finish_non_exhaustive()
    }
}

impl EpochLoop {
    /// A loop around an anchorer the caller opened (and so may anchor this directory).
    pub fn with_anchorer(dir: &DataDir, interval: Duration, anchorer: Anchorer) -> Self {
        EpochLoop {
            dir: dir.clone(),
            interval,
            lead: Lead::Held(None, Box::new(anchorer)),
            contend: None,
            next: Instant::now() + interval,
            seen_chain: (0, 0),
            retry_lead_at: None,
        }
    }

    /// A loop that anchors while it holds the directory's anchorer lock (`holder` names this
    /// process in the lock file), and waits while another process holds it.
    pub fn contending(dir: &DataDir, interval: Duration, backend: Backend, holder: &str) -> Self {
        EpochLoop {
            dir: dir.clone(),
            interval,
            lead: Lead::Waiting {
                interval,
                backend: backend.clone(),
                holder: holder.to_owned(),
            },
            contend: Some((backend, holder.to_owned())),
            next: Instant::now() + interval,
            seen_chain: (0, 0),
            retry_lead_at: None,
        }
    }

    /// Gives up the lead (a contending loop only): its lease was lost, another process
    /// wrote the epoch it was about to write, or the store failed mid-way. Whatever it had
    /// in memory is dropped; the next leader (this process again, after a pause, or
    /// another) re-reads the directory, so nothing sealed is lost and nothing is sealed
    /// twice. `false`: a loop around the caller's own anchorer, which cannot step down.
    fn step_down(&mut self, why: &Error, obs: &dyn EpochObserver) -> bool {
        let Some((backend, holder)) = self.contend.clone() else {
            return false;
        };
        if !matches!(self.lead, Lead::Held(..)) {
            return true;
        }
        tracing::warn!(error = %why, "this process stops anchoring epochs for the data directory and waits to lead again");
        obs.stepped_down();
        self.lead = Lead::Waiting {
            interval: self.interval,
            backend,
            holder,
        };
        self.retry_lead_at = Some(Instant::now() + STEP_DOWN_PAUSE);
        true
    }

    /// Takes the lead if the lock is free. Returns whether this process anchors.
    pub fn try_lead(&mut self, obs: &dyn EpochObserver) -> Result<bool> {
        if self.retry_lead_at.is_some_and(|t| Instant::now() < t) {
            return Ok(false);
        }
        self.retry_lead_at = None;
        if let Lead::Waiting {
            interval,
            backend,
            holder,
        } = &self.lead
        {
            let Some(lock) = self.dir.try_lock(&self.dir.anchorer_lock_file(), holder)? else {
                return Ok(false);
            };
            let a = Anchorer::open(&self.dir, *interval, backend.clone(), now_rfc3339)?;
            tracing::info!(
                backend = a.backend_name(),
                "this process anchors epochs for the data directory"
            );
            obs.leading(a.backend_name());
            self.lead = Lead::Held(Some(lock), Box::new(a));
        }
        Ok(true)
    }

    /// Runs until the feed ends; on the way out seals what is pending and waits up to
    /// `drain` for the backend to anchor every sealed epoch.
    pub fn run(
        mut self,
        feed: BatchFeed,
        drain: Duration,
        obs: &dyn EpochObserver,
    ) -> Result<EpochLoopReport> {
        let mut report = EpochLoopReport::default();
        loop {
            let (stopping, rescan) = match &feed {
                BatchFeed::Channel(rx) => {
                    let timeout = self
                        .next
                        .saturating_duration_since(Instant::now())
                        .min(WAKE);
                    match rx.recv_timeout(timeout) {
                        Ok(h) => {
                            self.add(h);
                            // Take what else is queued before deciding anything.
                            while let Ok(h) = rx.try_recv() {
                                self.add(h);
                            }
                            (false, false)
                        }
                        Err(RecvTimeoutError::Timeout) => (false, false),
                        Err(RecvTimeoutError::Disconnected) => (true, false),
                    }
                }
                BatchFeed::Rescan(stop) => (stop.load(Ordering::Relaxed), true),
            };
            match self.try_lead(obs) {
                Ok(_) => {}
                // A store that does not answer delays the lead; it is asked again.
                Err(e @ Error::Store { .. }) if self.contend.is_some() => {
                    tracing::warn!(error = %e, "could not ask for the anchorer lease; retrying");
                    self.retry_lead_at = Some(Instant::now() + STEP_DOWN_PAUSE);
                }
                Err(e) => return Err(e),
            }
            let due = stopping || Instant::now() >= self.next;
            if due {
                self.next = Instant::now() + self.interval;
            }
            match self.lead_step(due, rescan, stopping, drain, obs, &mut report) {
                Ok(()) => {}
                Err(e @ (Error::Lost { .. } | Error::Store { .. })) => {
                    if !self.step_down(&e, obs) {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
            if stopping {
                return Ok(report);
            }
            if rescan {
                std::thread::sleep(WAKE);
            }
        }
    }

    /// One round of the leader's work (nothing when another process leads).
    fn lead_step(
        &mut self,
        due: bool,
        rescan: bool,
        stopping: bool,
        drain: Duration,
        obs: &dyn EpochObserver,
        report: &mut EpochLoopReport,
    ) -> Result<()> {
        let dir = self.dir.clone();
        let Lead::Held(lock, a) = &mut self.lead else {
            return Ok(());
        };
        if let Some(l) = lock
            && l.lost()
        {
            return Err(Error::Lost {
                path: l.path().to_owned(),
                detail: "the anchorer lease ran out before it was renewed".into(),
            });
        }
        if due {
            if rescan {
                a.rescan(&dir)?;
            }
            obs.pending_batches(a.pending_batches());
            if let Some(e) = a.tick(Instant::now(), true, now_rfc3339)? {
                obs.sealed(&e);
                obs.pending_batches(0);
                crate::delta::publish_if_enabled(&dir);
            }
        }
        let done = if stopping {
            a.drain(drain)?
        } else {
            a.drive()?
        };
        if !done.is_empty() {
            obs.anchored(&done);
            report.anchored.extend(done);
        }
        obs.unanchored_epochs(a.unanchored_epochs());
        if let Some(st) = a.chain_status() {
            obs.chain(
                st.failures.saturating_sub(self.seen_chain.0),
                st.reorgs.saturating_sub(self.seen_chain.1),
            );
            self.seen_chain = (st.failures, st.reorgs);
        }
        report.unanchored = a.unanchored_epochs();
        Ok(())
    }

    fn add(&mut self, h: BatchHeader) {
        if let Lead::Held(_, a) = &mut self.lead {
            a.add(h);
        }
    }
}

/// What [`anchor_once`] did.
#[derive(Debug, Clone)]
pub struct OnceReport {
    /// The epoch sealed over batches that were in none, if there were any.
    pub sealed: Option<EpochRecord>,
    /// Epochs anchored during the run.
    pub anchored: Vec<AnchoredEpoch>,
    /// Epochs waiting for an anchor when the run started (the new one included).
    pub waiting_before: usize,
    /// Epochs in the epoch log.
    pub epochs: usize,
    /// Epochs still waiting at the end.
    pub waiting_after: usize,
    /// What anchors (backend and key or contract).
    pub witness: String,
    /// The last chain error, if epochs are still waiting on a chain.
    pub last_error: Option<String>,
}

/// `veritrace anchor run`: seals every batch in no epoch into one epoch, then anchors every
/// sealed epoch, waiting up to `timeout`. `Ok(None)`: another process holds the anchorer
/// lock (it anchors these epochs itself); [`DirLock::holder`] names it.
pub fn anchor_once(
    dir: &DataDir,
    interval: Duration,
    backend: Backend,
    holder: &str,
    timeout: Duration,
) -> Result<Option<OnceReport>> {
    let mut l = EpochLoop::contending(dir, interval, backend, holder);
    if !l.try_lead(&Quiet)? {
        return Ok(None);
    }
    let Lead::Held(_lock, a) = &mut l.lead else {
        return Ok(None);
    };
    a.rescan(dir)?;
    let sealed = a.tick(Instant::now(), true, now_rfc3339)?;
    if sealed.is_some() {
        crate::delta::publish_if_enabled(dir);
    }
    let waiting_before = a.unanchored_epochs();
    let anchored = a.drain(timeout)?;
    let waiting_after = a.unanchored_epochs();
    Ok(Some(OnceReport {
        sealed,
        anchored,
        waiting_before,
        epochs: a.epochs().len(),
        waiting_after,
        witness: a.witness_description(),
        last_error: (waiting_after > 0)
            .then(|| a.chain_status().and_then(|s| s.last_error))
            .flatten(),
    }))
}
