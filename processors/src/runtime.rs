//! The in-process runtime: a channel per partition stands in for Kafka, one thread per
//! partition runs a [`PartitionProcessor`], and one thread drives epochs and the anchor.
//! The demo, the tests and the pipeline benchmark use it; the processing code is exactly
//! the production code, only the transport differs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread;
use std::time::{Duration, Instant};

use veritrace_anchor::epoch_loop::{BatchFeed, EpochLoop, EpochObserver};
use veritrace_anchor::{AnchoredEpoch, Anchorer, Backend, BatchHeader, DataDir};

use crate::partition::{BatchPolicy, PartitionProcessor, Stats};
use crate::{Error, Result, now_ms};

/// Kafka's default partitioner (murmur2 of the key, positive, modulo the partition count),
/// so a trace code lands on the same partition number here as on a Kafka topic.
pub fn kafka_partition(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h = SEED ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= (tail[2] as u32) << 16;
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// Settings of an in-process run.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Stream name recorded in batch ids.
    pub stream: String,
    /// Number of partitions (processor threads).
    pub partitions: u32,
    /// Batch sealing policy.
    pub policy: BatchPolicy,
    /// Epoch interval.
    pub epoch_interval: Duration,
    /// Who anchors epoch roots.
    pub backend: Backend,
    /// At the end of a run, how long to wait for the backend to anchor the last epochs;
    /// epochs still waiting stay sealed and are anchored by the next run.
    pub anchor_drain: Duration,
    /// How signed records are checked.
    pub signatures: crate::signed::SignatureSettings,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            stream: "demo".into(),
            partitions: 4,
            policy: BatchPolicy::default(),
            epoch_interval: Duration::from_secs(10),
            backend: Backend::Local,
            anchor_drain: Duration::from_secs(120),
            signatures: Default::default(),
        }
    }
}

/// Live counters for progress display.
#[derive(Debug, Default)]
pub struct Progress {
    /// Records handed to processors.
    pub sent: AtomicU64,
    /// Records processed.
    pub processed: AtomicU64,
    /// Batches sealed.
    pub batches: AtomicU64,
    /// Epochs anchored.
    pub epochs: AtomicU64,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// Summed processor counters.
    pub stats: Stats,
    /// Epochs anchored during the run.
    pub epochs: u64,
    /// Sealed epochs still waiting for the anchor backend when the run ended.
    pub unanchored: usize,
    /// Who witnesses the roots (the local node key, or the chain contract).
    pub witness: String,
    /// Seal-to-anchored latency of each epoch anchored during the run.
    pub anchored: Vec<AnchoredEpoch>,
    /// Wall time from first record to last anchor.
    pub elapsed: Duration,
}

/// One input record on the in-process channel: offset, key, payload.
type Record = (u64, Option<Vec<u8>>, Vec<u8>);

struct Chunk {
    records: Vec<Record>,
}

const CHUNK: usize = 512;

/// Runs `source` (key, payload) records through partition processors and the anchorer
/// until the source ends, then seals and anchors everything that remains.
pub fn run<I>(
    dir: &DataDir,
    cfg: &RuntimeConfig,
    source: I,
    progress: Arc<Progress>,
) -> Result<RunReport>
where
    I: IntoIterator<Item = (Option<Vec<u8>>, Vec<u8>)>,
{
    let start = Instant::now();
    let parts = cfg.partitions.max(1);
    let drain = cfg.anchor_drain;
    let (htx, hrx) = sync_channel::<BatchHeader>(1024);

    let mut senders: Vec<SyncSender<Chunk>> = Vec::new();
    let mut workers = Vec::new();
    let mut next_offsets = Vec::new();
    let registry = cfg.signatures.registry(dir)?;
    // One writer per partition: a Kafka processor or another import holding one makes this
    // run stop before it writes anything (locally an OS lock, on an object store a lease).
    let holder = format!("veritrace ingest (pid {})", std::process::id());
    let mut _locks = Vec::with_capacity(parts as usize);
    // On an object store the lease of a process that died expires after its TTL: wait that
    // long before calling a lock taken.
    let patience = if dir.is_remote() {
        Duration::from_millis(veritrace_anchor::LEASE_TTL_MS as u64 + 2_000)
    } else {
        Duration::ZERO
    };
    let deadline = Instant::now() + patience;
    let lock = |path: &std::path::Path| -> Result<Option<veritrace_anchor::DirLock>> {
        loop {
            match dir.try_lock(path, &holder)? {
                Some(l) => return Ok(Some(l)),
                None if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(500));
                }
                None => return Ok(None),
            }
        }
    };
    // One anchorer per directory too: while another process (a Kafka processor, a server)
    // anchors it, this run seals its batches and leaves their epochs to that process, which
    // finds them in the manifests.
    let anchor_lock = lock(&dir.anchorer_lock_file())?;
    let (anchorer, witness) = match &anchor_lock {
        Some(_) => {
            let a = Anchorer::open(
                dir,
                cfg.epoch_interval,
                cfg.backend.clone(),
                veritrace_anchor::clock::now_rfc3339,
            )?;
            let w = a.witness_description();
            (Some(a), w)
        }
        None => {
            let who = dir.lock_holder(&dir.anchorer_lock_file());
            tracing::info!(anchorer = %who, "another process anchors this data directory: its epochs will hold this run's batches");
            (
                None,
                format!("the process that anchors this data directory ({who})"),
            )
        }
    };
    for p in 0..parts {
        let path = dir.partition_lock_file(&cfg.stream, p);
        match lock(&path)? {
            Some(l) => _locks.push(l),
            None => {
                return Err(Error::Invalid(format!(
                    "partition {p} of stream {} is written by another process ({}); stop it or import into another stream",
                    cfg.stream,
                    dir.lock_holder(&path)
                )));
            }
        }
    }
    for p in 0..parts {
        let proc = PartitionProcessor::open(dir, &cfg.stream, p, cfg.policy)?
            .with_signatures(cfg.signatures.stage(&cfg.stream, registry.clone()));
        next_offsets.push(proc.resume_offset().unwrap_or(0));
        let (tx, rx) = sync_channel::<Chunk>(8);
        senders.push(tx);
        let htx = htx.clone();
        let progress = progress.clone();
        workers.push(
            thread::Builder::new()
                .name(format!("proc-p{p}"))
                .spawn(move || partition_loop(proc, rx, htx, progress))
                .map_err(|e| Error::Invalid(format!("cannot start processor thread: {e}")))?,
        );
    }
    drop(htx);
    let anchor_progress = progress.clone();
    let (anchor_dir, interval) = (dir.clone(), cfg.epoch_interval);
    let anchor_thread = thread::Builder::new()
        .name("anchor".into())
        .spawn(move || match anchorer {
            Some(anchorer) => {
                let r = EpochLoop::with_anchorer(&anchor_dir, interval, anchorer).run(
                    BatchFeed::Channel(hrx),
                    drain,
                    &ProgressObserver(anchor_progress),
                );
                drop(anchor_lock);
                r
            }
            None => {
                // Sealed batches are in their manifests already; the anchoring process
                // rescans them.
                for _ in hrx {}
                Ok(Default::default())
            }
        })
        .map_err(|e| Error::Invalid(format!("cannot start anchor thread: {e}")))?;

    // The "producer": partition by key like Kafka, assign per-partition offsets.
    let mut buffers: Vec<Vec<Record>> = (0..parts).map(|_| Vec::with_capacity(CHUNK)).collect();
    let mut send_failed = false;
    for (key, payload) in source {
        let p = key.as_deref().map_or(0, |k| kafka_partition(k, parts)) as usize;
        let off = next_offsets[p];
        next_offsets[p] += 1;
        buffers[p].push((off, key, payload));
        if buffers[p].len() >= CHUNK {
            let records = std::mem::replace(&mut buffers[p], Vec::with_capacity(CHUNK));
            progress
                .sent
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            if senders[p].send(Chunk { records }).is_err() {
                send_failed = true;
                break;
            }
        }
    }
    for (p, records) in buffers.into_iter().enumerate() {
        if !records.is_empty() && !send_failed {
            progress
                .sent
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            let _ = senders[p].send(Chunk { records });
        }
    }
    drop(senders);

    let mut stats = Stats::default();
    let mut first_err: Option<Error> = None;
    for w in workers {
        match w.join() {
            Ok(Ok(s)) => stats.merge(&s),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(Error::Invalid("a processor thread panicked".into()));
            }
        }
    }
    let (anchored, unanchored) = match anchor_thread.join() {
        Ok(Ok(r)) => (r.anchored, r.unanchored),
        Ok(Err(e)) => return Err(first_err.unwrap_or(e.into())),
        Err(_) => return Err(Error::Invalid("the anchor thread panicked".into())),
    };
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(RunReport {
        stats,
        epochs: anchored.len() as u64,
        unanchored,
        witness,
        anchored,
        elapsed: start.elapsed(),
    })
}

fn partition_loop(
    mut proc: PartitionProcessor,
    rx: Receiver<Chunk>,
    htx: SyncSender<BatchHeader>,
    progress: Arc<Progress>,
) -> Result<Stats> {
    loop {
        let timeout = proc.seal_deadline().map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        match rx.recv_timeout(timeout) {
            Ok(chunk) => {
                let n = chunk.records.len() as u64;
                let now = now_ms();
                proc.preverify(chunk.records.iter().map(|(_, _, p)| p.as_slice()));
                for (off, key, payload) in chunk.records {
                    proc.push(off, key.as_deref(), &payload, now)?;
                    if proc.is_full() {
                        seal(&mut proc, &htx, &progress)?;
                    }
                }
                progress.processed.fetch_add(n, Ordering::Relaxed);
                if proc.should_seal(Instant::now()) {
                    seal(&mut proc, &htx, &progress)?;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if proc.should_seal(Instant::now()) {
                    seal(&mut proc, &htx, &progress)?;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                seal(&mut proc, &htx, &progress)?;
                return Ok(proc.stats().clone());
            }
        }
    }
}

fn seal(
    proc: &mut PartitionProcessor,
    htx: &SyncSender<BatchHeader>,
    progress: &Progress,
) -> Result<()> {
    if let Some(h) = proc.seal(now_ms())? {
        progress.batches.fetch_add(1, Ordering::Relaxed);
        // The anchorer only stops after all processors; a send error means it failed,
        // and its error is reported by `run`. The batch is durable either way and will be
        // picked up by the next start.
        let _ = htx.send(h);
    }
    Ok(())
}

/// Counts anchored epochs into the run's progress.
struct ProgressObserver(Arc<Progress>);

impl EpochObserver for ProgressObserver {
    fn anchored(&self, done: &[AnchoredEpoch]) {
        self.0
            .epochs
            .fetch_add(done.len() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }
}
