//! One task per assigned partition: takes the partition's lock in the data directory,
//! runs the foundation's parse -> structure -> validate -> batch path, publishes rejected
//! records to the rejected topic, seals, and asks for the offset commit.
//!
//! Order at each seal (the commit protocol):
//! 1. every rejected record of the batch is acknowledged by the rejected topic,
//! 2. the batch's Parquet files and manifest line are durable ([`PartitionProcessor::seal`]),
//! 3. the next offset is committed to the consumer group.
//!
//! A crash before 2 re-reads the whole batch (rejected records may reach the topic twice,
//! with the same source offset header; never zero times). A crash between 2 and 3 is
//! harmless: the manifest, not the group offset, says where to resume.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Header;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use veritrace_anchor::DataDir;

use crate::partition::{BatchPolicy, Outcome, PartitionProcessor, Stats};
use crate::reason::{Reason, Rejection};
use crate::{Error, Result, now_ms};
use veritrace_metrics::ProcessorMetrics;

/// Records for one hand-off, their keys and payloads copied out of the consumer into one
/// buffer: no allocation per record on the poll loop, and no freeing of another thread's
/// memory per record on the worker. The worker gives the emptied chunk back to the poll loop
/// to fill again ([`WorkerCtx::spare`]).
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    bytes: Vec<u8>,
    recs: Vec<RecAt>,
}

/// Largest buffer of a chunk that is kept for another fill, and that a new chunk reserves.
pub(crate) const CHUNK_KEEP_BYTES: usize = 4 << 20;

/// Where a record's parts are in [`Chunk::bytes`].
#[derive(Debug, Clone, Copy)]
struct RecAt {
    offset: i64,
    key: Option<(usize, usize)>,
    payload: (usize, usize),
    timestamp_ms: Option<i64>,
}

/// One record of a [`Chunk`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rec<'a> {
    pub(crate) offset: i64,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) payload: &'a [u8],
    pub(crate) timestamp_ms: Option<i64>,
}

impl Chunk {
    /// Room for `records` records of `bytes` bytes in all.
    pub(crate) fn with_capacity(records: usize, bytes: usize) -> Self {
        Chunk {
            bytes: Vec::with_capacity(bytes),
            recs: Vec::with_capacity(records),
        }
    }

    pub(crate) fn push(
        &mut self,
        offset: i64,
        key: Option<&[u8]>,
        payload: &[u8],
        timestamp_ms: Option<i64>,
    ) {
        let mut copy = |part: &[u8]| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(part);
            (start, self.bytes.len())
        };
        let key = key.map(&mut copy);
        let payload = copy(payload);
        self.recs.push(RecAt {
            offset,
            key,
            payload,
            timestamp_ms,
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.recs.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// Bytes of keys and payloads held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Empties the chunk, keeping its memory.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.recs.clear();
    }

    /// The chunk emptied for another fill, unless it grew beyond [`CHUNK_KEEP_BYTES`] (a run
    /// of large records): that memory goes back to the allocator.
    pub(crate) fn recycle(mut self) -> Option<Self> {
        self.clear();
        (self.bytes.capacity() <= CHUNK_KEEP_BYTES).then_some(self)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Rec<'_>> + '_ {
        let part = |(a, b): (usize, usize)| self.bytes.get(a..b).unwrap_or_default();
        self.recs.iter().map(move |r| Rec {
            offset: r.offset,
            key: r.key.map(part),
            payload: part(r.payload),
            timestamp_ms: r.timestamp_ms,
        })
    }
}

/// What the poll loop sends a worker.
#[derive(Debug)]
pub(crate) enum Msg {
    Records(Chunk),
    /// Seal what is open (when `seal`), then stop and release the partition.
    Stop {
        seal: bool,
    },
}

/// How a worker ended.
#[derive(Debug, Default)]
pub(crate) struct Exit {
    /// Next offset to read (one past the last sealed offset), if anything is sealed.
    pub(crate) next_offset: Option<i64>,
    pub(crate) stats: Stats,
}

/// Everything a worker needs from the process.
pub(crate) struct WorkerCtx {
    pub(crate) dir: DataDir,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) policy: BatchPolicy,
    pub(crate) signatures: crate::signed::Signatures,
    pub(crate) producer: FutureProducer,
    pub(crate) rejected_topic: String,
    pub(crate) metrics: ProcessorMetrics,
    /// Set when the process is stopping or the partition was revoked: stop waiting.
    pub(crate) cancel: Arc<AtomicBool>,
    /// Sealed positions go here; the poll loop commits them.
    pub(crate) commits: std::sync::mpsc::Sender<(String, i32, i64)>,
    /// Positions to read from again go here; the poll loop seeks.
    pub(crate) seeks: std::sync::mpsc::Sender<(String, i32, i64)>,
    /// Emptied chunks go back to the poll loop here (dropped when it holds enough).
    pub(crate) spare: std::sync::mpsc::SyncSender<Chunk>,
    /// How far before the resume point the partition is read (`kafka.resume-rewind`).
    pub(crate) rewind: u64,
    /// Where the assign callback positioned the consumer (one past the last sealed offset).
    pub(crate) expected_start: Option<i64>,
    pub(crate) holder: String,
}

impl std::fmt::Debug for WorkerCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerCtx")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

/// The largest rejected payload copied to the rejected topic; larger originals are cut
/// (header `veritrace-truncated-from` gives the full length). The rejected table always
/// keeps the whole original.
const MAX_TOPIC_PAYLOAD: usize = 900 * 1024;
const MAX_DETAIL: usize = 1000;

struct PendingReject {
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    reason: Reason,
    detail: String,
    truncated_from: Option<usize>,
    delivery: Option<DeliveryFuture>,
    failed: bool,
}

pub(crate) fn run(ctx: WorkerCtx, rx: Receiver<Msg>) -> Result<Exit> {
    let lock_path = ctx
        .dir
        .partition_lock_file(&ctx.topic, ctx.partition as u32);
    let started = Instant::now();
    let mut warned = Instant::now();
    let lock = loop {
        if let Some(l) = ctx.dir.try_lock(&lock_path, &ctx.holder)? {
            break l;
        }
        if ctx.cancel.load(Ordering::Relaxed) {
            return Ok(Exit::default());
        }
        if warned.elapsed() > Duration::from_secs(5) {
            warned = Instant::now();
            tracing::warn!(
                topic = %ctx.topic,
                partition = ctx.partition,
                holder = %ctx.dir.lock_holder(&lock_path),
                waited_s = started.elapsed().as_secs(),
                "partition is assigned to this process but another process still holds its lock in the data directory; waiting"
            );
        }
        // A lease on an object store is a request per try: ask less often there.
        let pause = if ctx.dir.is_remote() { 500 } else { 50 };
        std::thread::sleep(Duration::from_millis(pause));
    };
    let proc = PartitionProcessor::open(&ctx.dir, &ctx.topic, ctx.partition as u32, ctx.policy)?
        .with_signatures(ctx.signatures.clone());
    let resume = proc.resume_offset().map(|o| o as i64);
    if resume != ctx.expected_start {
        tracing::info!(topic = %ctx.topic, partition = ctx.partition, ?resume, assigned = ?ctx.expected_start,
            "the manifest moved while the partition was being assigned; records before the resume offset are skipped");
    }
    tracing::info!(topic = %ctx.topic, partition = ctx.partition, ?resume, "partition opened");
    let mut w = Worker {
        ctx,
        gap_retries: 0,
        gap_asked: None,
        lock,
        proc,
        pending: Vec::new(),
        timestamps: Vec::new(),
        resume,
        last_offset: None,
        dedupe_failures: 0,
    };
    w.dedupe_metrics();
    let r = w.main_loop(&rx);
    let mut exit = Exit {
        next_offset: w.proc.resume_offset().map(|o| o as i64),
        stats: w.proc.stats().clone(),
    };
    if let Err(e) = r {
        exit.next_offset = None;
        return Err(e);
    }
    Ok(exit)
}

/// How often a task asks to read again from further back before it accepts a gap after
/// its resume point.
const GAP_RETRIES: u32 = 3;

struct Worker {
    ctx: WorkerCtx,
    /// Re-reads asked for because the first record was past the resume point.
    gap_retries: u32,
    gap_asked: Option<Instant>,
    /// The partition's lock (a lease on an object store): held for the worker's life.
    lock: veritrace_anchor::DirLock,
    proc: PartitionProcessor,
    pending: Vec<PendingReject>,
    timestamps: Vec<i64>,
    resume: Option<i64>,
    last_offset: Option<i64>,
    /// Dedupe run failures already counted in the metrics.
    dedupe_failures: u64,
}

impl Worker {
    /// Reports what the partition's dedupe index holds (after it opens and after each seal,
    /// when it may have started or taken in a run).
    fn dedupe_metrics(&mut self) {
        let d = self.proc.dedupe_stats();
        let m = &self.ctx.metrics;
        let labels = [self.ctx.topic.as_str(), &self.ctx.partition.to_string()];
        let gauges = [
            (&m.dedupe_ids_in_memory, d.ids_in_memory),
            (&m.dedupe_run_ids, d.ids_in_runs),
            (&m.dedupe_runs, d.runs),
            (&m.dedupe_memory_bytes, d.memory_bytes),
        ];
        for (g, v) in gauges {
            g.with_label_values(&labels)
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        }
        m.dedupe_run_failures
            .inc_by(d.failures.saturating_sub(self.dedupe_failures));
        self.dedupe_failures = d.failures;
    }

    fn main_loop(&mut self, rx: &Receiver<Msg>) -> Result<()> {
        loop {
            let timeout = self
                .proc
                .seal_deadline()
                .map_or(Duration::from_millis(500), |d| {
                    d.saturating_duration_since(Instant::now())
                });
            match rx.recv_timeout(timeout) {
                Ok(Msg::Records(recs)) => {
                    self.records(recs)?;
                    if self.proc.should_seal(Instant::now()) {
                        self.seal(false)?;
                    }
                }
                Ok(Msg::Stop { seal }) => {
                    if seal {
                        self.seal(true)?;
                    }
                    return Ok(());
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.proc.should_seal(Instant::now()) {
                        self.seal(false)?;
                    }
                }
                // The poll loop is gone without a stop: the process is failing. Unsealed
                // records are not committed and will be read again.
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }

    fn records(&mut self, chunk: Chunk) -> Result<()> {
        self.chunk(&chunk)?;
        if let Some(empty) = chunk.recycle() {
            let _ = self.ctx.spare.try_send(empty);
        }
        Ok(())
    }

    fn chunk(&mut self, chunk: &Chunk) -> Result<()> {
        let now = now_ms();
        self.proc.preverify(chunk.iter().map(|r| r.payload));
        let (mut accepted, mut consumed, mut dups) = (0u64, 0u64, 0u64);
        let sightings = self.proc.stats().clone_sightings;
        for r in chunk.iter() {
            if let Some(resume) = self.resume {
                // Re-read on purpose (resume rewind) or re-delivered: already sealed.
                if r.offset < resume {
                    continue;
                }
                if self.last_offset.is_none() && r.offset > resume {
                    // Records the broker skipped, or records fetched before this task's
                    // position took effect: read from further back before accepting a gap.
                    if self.gap_retries < GAP_RETRIES {
                        let due = self
                            .gap_asked
                            .is_none_or(|t| t.elapsed() > Duration::from_secs(5));
                        if due {
                            self.gap_retries += 1;
                            self.gap_asked = Some(Instant::now());
                            let back = self
                                .ctx
                                .rewind
                                .max(1)
                                .saturating_mul(4u64.saturating_pow(self.gap_retries))
                                as i64;
                            let to = resume.saturating_sub(back).max(0);
                            tracing::warn!(
                                topic = %self.ctx.topic,
                                partition = self.ctx.partition,
                                expected = resume,
                                first = r.offset,
                                from = to,
                                "the first record after the resume point is not the next one; reading again from further back"
                            );
                            let _ = self.ctx.seeks.send((
                                self.ctx.topic.clone(),
                                self.ctx.partition,
                                to,
                            ));
                        }
                        continue;
                    }
                    tracing::warn!(
                        topic = %self.ctx.topic,
                        partition = self.ctx.partition,
                        expected = resume,
                        first = r.offset,
                        "the broker did not deliver offsets {resume}..{} (compacted, expired by retention, \
                         transaction markers, or a resume rewind smaller than the producer's batches)",
                        r.offset - 1
                    );
                }
            }
            if self.last_offset.is_some_and(|l| r.offset <= l) {
                // A re-delivery after a seek; already in the open batch.
                continue;
            }
            self.last_offset = Some(r.offset);
            consumed += 1;
            let outcome = self.proc.push(r.offset as u64, r.key, r.payload, now)?;
            match outcome {
                Outcome::Accepted => {
                    accepted += 1;
                    self.timestamps.push(r.timestamp_ms.unwrap_or(now));
                }
                Outcome::Bundle {
                    accepted: n,
                    rejected,
                } => {
                    accepted += n as u64;
                    for _ in 0..n {
                        self.timestamps.push(r.timestamp_ms.unwrap_or(now));
                    }
                    for (rej, bytes) in rejected {
                        dups += self.rejected(
                            r.offset,
                            r.key.map(<[u8]>::to_vec),
                            bytes,
                            rej,
                            r.timestamp_ms.unwrap_or(now),
                        )?;
                    }
                }
                Outcome::Rejected(rej) => {
                    dups += self.rejected(
                        r.offset,
                        r.key.map(<[u8]>::to_vec),
                        r.payload.to_vec(),
                        rej,
                        r.timestamp_ms.unwrap_or(now),
                    )?;
                }
                Outcome::AlreadySealed => {}
            }
            if self.proc.is_full() {
                self.seal(false)?;
            }
        }
        let m = &self.ctx.metrics;
        m.consumed.inc_by(consumed);
        m.accepted.inc_by(accepted);
        m.duplicates.inc_by(dups);
        m.clone_sightings
            .inc_by(self.proc.stats().clone_sightings - sightings);
        Ok(())
    }

    /// Hands one rejected record to the producer (not waiting for the broker).
    /// Counts a rejection and publishes it to the rejected topic (its original bytes);
    /// 1 when it is a duplicate.
    fn rejected(
        &mut self,
        offset: i64,
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
        rej: Rejection,
        timestamp_ms: i64,
    ) -> Result<u64> {
        self.ctx
            .metrics
            .rejected
            .with_label_values(&[rej.reason.as_str()])
            .inc();
        self.timestamps.push(timestamp_ms);
        let mut detail = rej.detail;
        if detail.len() > MAX_DETAIL {
            let mut cut = MAX_DETAIL;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
        }
        let mut p = PendingReject {
            offset,
            key,
            payload,
            reason: rej.reason,
            detail,
            truncated_from: None,
            delivery: None,
            failed: false,
        };
        if p.payload.len() > MAX_TOPIC_PAYLOAD {
            p.truncated_from = Some(p.payload.len());
            p.payload.truncate(MAX_TOPIC_PAYLOAD);
        }
        self.send(&mut p)?;
        self.pending.push(p);
        Ok(u64::from(rej.reason == Reason::DuplicateEventId))
    }

    fn send(&self, p: &mut PendingReject) -> Result<()> {
        let source = format!("{}/{}/{}", self.ctx.topic, self.ctx.partition, p.offset);
        let mut headers = super::rejection_headers(p.reason.as_str(), &p.detail, &source);
        let truncated;
        if let Some(n) = p.truncated_from {
            truncated = n.to_string();
            headers = headers.insert(Header {
                key: "veritrace-truncated-from",
                value: Some(truncated.as_str()),
            });
        }
        loop {
            let mut rec = FutureRecord::to(&self.ctx.rejected_topic)
                .payload(&p.payload)
                .headers(headers.clone());
            if let Some(k) = &p.key {
                rec = rec.key(k);
            }
            match self.ctx.producer.send_result(rec) {
                Ok(f) => {
                    p.delivery = Some(f);
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _))
                    if p.payload.len() > 1024 =>
                {
                    p.truncated_from.get_or_insert(p.payload.len());
                    let half = p.payload.len() / 2;
                    p.payload.truncate(half);
                    return self.send(p);
                }
                Err((e, _)) => {
                    return Err(Error::Kafka(format!(
                        "cannot queue a rejected record for {}: {e}",
                        self.ctx.rejected_topic
                    )));
                }
            }
        }
    }

    /// Waits until the rejected topic has acknowledged every pending record, re-sending
    /// failures with backoff. Returns false when cancelled first (the batch must not be
    /// sealed then).
    fn deliver_rejected(&mut self, stopping: bool) -> Result<bool> {
        let mut backoff = Duration::from_millis(100);
        let give_up_at = Instant::now() + Duration::from_secs(15);
        loop {
            let mut last_err = None;
            for p in &mut self.pending {
                p.failed = match p.delivery.take() {
                    Some(f) => match futures::executor::block_on(f) {
                        Ok(Ok(_)) => false,
                        Ok(Err((e, _))) => {
                            last_err = Some(e.to_string());
                            true
                        }
                        Err(_) => {
                            last_err = Some("delivery cancelled".into());
                            true
                        }
                    },
                    None => true,
                };
            }
            let before = self.pending.len();
            self.pending.retain(|p| p.failed);
            self.ctx
                .metrics
                .rejected_published
                .inc_by((before - self.pending.len()) as u64);
            if self.pending.is_empty() {
                return Ok(true);
            }
            tracing::warn!(
                topic = %self.ctx.rejected_topic,
                undelivered = self.pending.len(),
                error = last_err.as_deref().unwrap_or(""),
                "rejected records not yet acknowledged; the batch waits (nothing is dropped)"
            );
            if self.ctx.cancel.load(Ordering::Relaxed) && (!stopping || Instant::now() > give_up_at)
            {
                return Ok(false);
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
            let mut pending = std::mem::take(&mut self.pending);
            for p in &mut pending {
                self.send(p)?;
            }
            self.pending = pending;
        }
    }

    fn seal(&mut self, stopping: bool) -> Result<()> {
        if self.proc.open_records() == 0 {
            return Ok(());
        }
        if !self.deliver_rejected(stopping)? {
            tracing::warn!(topic = %self.ctx.topic, partition = self.ctx.partition, records = self.proc.open_records(),
                "stopping without sealing: the rejected topic did not acknowledge; the next owner reads these records again");
            return Ok(());
        }
        // A lease that ran out unrenewed: another process may own the partition now. Its
        // commit would fence this one anyway (create-only manifest entries); stopping here
        // keeps this process from racing it at all.
        if self.lock.lost() {
            return Err(Error::Anchor(veritrace_anchor::Error::Lost {
                path: self.lock.path().to_owned(),
                detail: "the partition lease ran out before it was renewed".into(),
            }));
        }
        let t0 = Instant::now();
        let Some(h) = self.proc.seal(now_ms())? else {
            return Ok(());
        };
        let m = &self.ctx.metrics;
        m.seal_seconds.observe(t0.elapsed().as_secs_f64());
        m.batches.inc();
        let now = now_ms();
        let hist = m
            .event_to_sealed
            .with_label_values(&[self.ctx.topic.as_str()]);
        for t in self.timestamps.drain(..) {
            hist.observe((now - t).max(0) as f64 / 1000.0);
        }
        self.dedupe_metrics();
        // Committing is the poll loop's job; if it is gone, the manifest still says where
        // to resume.
        let _ = self.ctx.commits.send((
            self.ctx.topic.clone(),
            self.ctx.partition,
            h.last_offset as i64 + 1,
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{CHUNK_KEEP_BYTES, Chunk};

    type Owned = (i64, Option<Vec<u8>>, Vec<u8>, Option<i64>);

    fn records() -> impl Strategy<Value = Vec<Owned>> {
        prop::collection::vec(
            (
                any::<i64>(),
                prop::option::of(prop::collection::vec(any::<u8>(), 0..8)),
                prop::collection::vec(any::<u8>(), 0..64),
                prop::option::of(any::<i64>()),
            ),
            0..40,
        )
    }

    fn fill(c: &mut Chunk, recs: &[Owned]) {
        for (o, k, p, t) in recs {
            c.push(*o, k.as_deref(), p, *t);
        }
    }

    fn read(c: &Chunk) -> Vec<Owned> {
        c.iter()
            .map(|r| {
                (
                    r.offset,
                    r.key.map(<[u8]>::to_vec),
                    r.payload.to_vec(),
                    r.timestamp_ms,
                )
            })
            .collect()
    }

    proptest! {
        /// A chunk gives back each record as pushed, in order (an empty key stays a key),
        /// also when it is filled again after being recycled.
        #[test]
        fn a_chunk_gives_back_its_records_as_pushed(a in records(), b in records()) {
            let mut c = Chunk::with_capacity(4, 16);
            fill(&mut c, &a);
            prop_assert_eq!(c.len(), a.len());
            prop_assert_eq!(read(&c), a);
            let mut c = c.recycle().expect("a small chunk is kept");
            prop_assert!(c.is_empty());
            fill(&mut c, &b);
            prop_assert_eq!(read(&c), b);
        }
    }

    #[test]
    fn a_chunk_grown_by_large_records_is_not_kept() {
        let mut c = Chunk::default();
        c.push(1, None, &vec![b'x'; CHUNK_KEEP_BYTES], None);
        assert_eq!(c.bytes(), CHUNK_KEEP_BYTES);
        assert!(c.recycle().is_some(), "at the limit it is kept");
        let mut c = Chunk::default();
        c.push(1, Some(b"k"), &vec![b'x'; CHUNK_KEEP_BYTES], None);
        assert!(c.recycle().is_none());
    }
}
