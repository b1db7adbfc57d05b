//! The Kafka runtime of `veritrace process`: a consumer group member that runs one
//! [`PartitionProcessor`](crate::PartitionProcessor) task per assigned partition.
//!
//! Guarantees, and how they are kept with a broker that has no transactions:
//! - **Nothing lost**: offsets are committed only after the batch is durable, and the
//!   data directory's manifest (not the group offset) decides where a partition resumes.
//!   Rejected records reach the rejected table (same batch) and the rejected topic (acked
//!   before the batch is sealed).
//! - **Nothing doubled**: batch ids derive from partition and offsets; a record at or below
//!   the manifest's last offset is never processed again; event ids are deduplicated per
//!   partition across restarts.
//! - **One writer per partition**: an OS lock per partition in the shared data directory.
//!   A process that has not let go (slow revoke, zombie) blocks the new owner instead of
//!   writing beside it; `kill -9` releases the lock.
//! - **Rebalance**: on revocation each task seals what it holds (so little is re-read),
//!   releases the partition and commits; the new owner resumes after the last seal.
//!
//! Every process sharing a data directory can anchor; one at a time does (the anchorer
//! lock), reading all partitions' manifests, so anchoring continues when processes come
//! and go.

pub mod admin;
pub mod settings;
mod worker;

/// The headers every rejection published to the rejected topic carries: `veritrace-reason`
/// (the stable code), `veritrace-detail` and `veritrace-source` (where the record came from:
/// `topic/partition/offset`, or `mqtt:TOPIC` for the MQTT bridge's refusals).
pub fn rejection_headers(
    reason: &str,
    detail: &str,
    source: &str,
) -> rdkafka::message::OwnedHeaders {
    use rdkafka::message::{Header, OwnedHeaders};
    OwnedHeaders::new()
        .insert(Header {
            key: "veritrace-reason",
            value: Some(reason),
        })
        .insert(Header {
            key: "veritrace-detail",
            value: Some(detail),
        })
        .insert(Header {
            key: "veritrace-source",
            value: Some(source),
        })
}

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TrySendError, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, config::RDKafkaLogLevel};
use veritrace_anchor::epoch_loop::{BatchFeed, EpochLoop};
use veritrace_anchor::{Backend, BatchHeader, DataDir};

pub use settings::{ClientSettings, Properties};
pub use veritrace_metrics::ProcessorMetrics;

use crate::partition::{BatchPolicy, Stats};
use crate::{Error, Result};
use worker::{Chunk, Msg, WorkerCtx};

/// The topic raw events are produced to.
pub const RAW_TOPIC: &str = "veritrace.raw";
/// The topic rejected records are published to.
pub const REJECTED_TOPIC: &str = "veritrace.rejected";

/// Settings of `veritrace process`.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// How to reach the cluster.
    pub client: ClientSettings,
    /// Consumer group id.
    pub group: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Where rejected records go.
    pub rejected_topic: String,
    /// Static group membership id (`group.instance.id`): a restarted process takes its
    /// partitions straight back instead of waiting for the session timeout.
    pub instance_id: Option<String>,
    /// Batch sealing policy.
    pub policy: BatchPolicy,
    /// Epoch interval.
    pub epoch_interval: Duration,
    /// Who anchors epoch roots.
    pub backend: Backend,
    /// Records to re-read before the resume offset (see [`DEFAULT_RESUME_REWIND`]).
    pub resume_rewind: u64,
    /// How signed records are checked, per topic.
    pub signatures: crate::signed::SignatureSettings,
}

/// Broker gap: tansu 0.6 answers a fetch with the record batches that *start* at or after
/// the fetch offset, so a resume offset inside a producer batch would skip the rest of
/// that batch (Kafka returns the batch holding the offset). The processor therefore asks
/// for this many records before its resume offset and discards those it already sealed.
/// It must be at least the largest producer batch in records (librdkafka's default
/// `batch.num.messages` is 10,000). Set 0 on Apache Kafka or Redpanda.
pub const DEFAULT_RESUME_REWIND: u64 = 10_000;

/// What a run did (this process only).
#[derive(Debug, Clone, Default)]
pub struct ProcessReport {
    /// Summed counters of the partition tasks that finished.
    pub stats: Stats,
    /// Epochs this process anchored.
    pub epochs: u64,
}

/// How long a missing topic is waited for at start before it is reported as an error.
const TOPIC_GRACE: Duration = Duration::from_secs(10);

/// Records per hand-off to a partition task.
const CHUNK: usize = 512;
/// Chunks queued per process, shared out among its partition tasks, before the poll loop
/// waits (back-pressure): about 256k records (about 120 MB of 456-byte records) in flight.
/// The poll loop receives each partition's records in runs of a fetch response, so a small
/// per-partition queue makes it wait on one full partition while the others starve.
/// Measured draining a 1M-record backlog on 4 partitions, 2 cores: 32 chunks per partition
/// sustain 159k records/s, 128 chunks 188k-196k/s.
const QUEUE_BUDGET: usize = 512;
/// The smallest queue of one partition task, in chunks.
const QUEUE_MIN: usize = 4;
/// Emptied chunks kept for the poll loop to fill again; more are freed.
const SPARE_CHUNKS: usize = 64;
/// Longest a record waits in the poll loop's buffer before it is handed off.
const FLUSH_EVERY: Duration = Duration::from_millis(20);

fn queue_chunks(partitions: usize) -> usize {
    (QUEUE_BUDGET / partitions.max(1)).max(QUEUE_MIN)
}

struct Task {
    topic: String,
    partition: i32,
    tx: SyncSender<Msg>,
    buf: Chunk,
    cancel: Arc<AtomicBool>,
    join: JoinHandle<Result<worker::Exit>>,
}

struct Shared {
    dir: DataDir,
    cfg: ProcessConfig,
    producer: FutureProducer,
    metrics: ProcessorMetrics,
    commits_tx: Sender<(String, i32, i64)>,
    spare_tx: SyncSender<Chunk>,
    seeks_tx: Sender<(String, i32, i64)>,
    tasks: Mutex<Vec<Task>>,
    stats: Mutex<Stats>,
    fatal: Mutex<Option<Error>>,
    holder: String,
    registry: Option<Arc<crate::signed::RegistryCache>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("cfg", &self.cfg).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn fail(&self, e: Error) {
        tracing::error!(error = %e, "processing stopped");
        lock(&self.fatal).get_or_insert(e);
    }

    fn failed(&self) -> bool {
        lock(&self.fatal).is_some()
    }

    /// Starts a task for each partition of `tpl`, positioning each at one past its last
    /// sealed offset.
    fn assign(&self, tpl: &mut TopicPartitionList) {
        let elems: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let n_partitions = elems.len() + lock(&self.tasks).len();
        for (topic, p) in elems {
            // Through the data directory: on an object store the manifest is not a file.
            let resume = match self
                .dir
                .read_jsonl::<BatchHeader>(&self.dir.manifest_file(&topic, p as u32))
            {
                Ok(h) => h.last().map(|h| h.last_offset as i64 + 1),
                Err(e) => {
                    self.fail(e.into());
                    return;
                }
            };
            let start = resume.map(|o| o.saturating_sub(self.cfg.resume_rewind as i64).max(0));
            if let Some(o) = start
                && let Err(e) = tpl.set_partition_offset(&topic, p, Offset::Offset(o))
            {
                self.fail(e.into());
                return;
            }
            let (tx, rx) = sync_channel(queue_chunks(n_partitions));
            let cancel = Arc::new(AtomicBool::new(false));
            let ctx = WorkerCtx {
                dir: self.dir.clone(),
                topic: topic.clone(),
                partition: p,
                policy: self.cfg.policy,
                signatures: self.cfg.signatures.stage(&topic, self.registry.clone()),
                producer: self.producer.clone(),
                rejected_topic: self.cfg.rejected_topic.clone(),
                metrics: self.metrics.clone(),
                cancel: cancel.clone(),
                commits: self.commits_tx.clone(),
                spare: self.spare_tx.clone(),
                seeks: self.seeks_tx.clone(),
                rewind: self.cfg.resume_rewind,
                expected_start: resume,
                holder: self.holder.clone(),
            };
            tracing::info!(topic = %topic, partition = p, ?resume, "partition assigned");
            let spawned = std::thread::Builder::new()
                .name(format!("p{p}-{topic}"))
                .spawn(move || worker::run(ctx, rx));
            match spawned {
                Ok(join) => lock(&self.tasks).push(Task {
                    topic,
                    partition: p,
                    tx,
                    buf: Chunk::default(),
                    cancel,
                    join,
                }),
                Err(e) => {
                    self.fail(Error::Invalid(format!(
                        "cannot start a partition task: {e}"
                    )));
                    return;
                }
            }
        }
        self.metrics.assigned.set(lock(&self.tasks).len() as i64);
    }

    /// Stops the tasks of the given partitions (all when `None`): each seals what it
    /// holds and releases its lock. Returns the positions to commit.
    fn revoke(&self, which: Option<&[(String, i32)]>) -> TopicPartitionList {
        let mut tasks = lock(&self.tasks);
        let (stop, keep): (Vec<Task>, Vec<Task>) =
            std::mem::take(&mut *tasks).into_iter().partition(|t| {
                which.is_none_or(|w| w.iter().any(|(tp, p)| *tp == t.topic && *p == t.partition))
            });
        *tasks = keep;
        drop(tasks);
        let mut commit = TopicPartitionList::new();
        for mut t in stop {
            // Cancel first: a task still waiting for its partition lock gives up (its
            // queue is dropped, so the sends below cannot block); a running task drains
            // its queue, seals and stops.
            t.cancel.store(true, Ordering::Relaxed);
            if !t.buf.is_empty() {
                let _ = t.tx.send(Msg::Records(std::mem::take(&mut t.buf)));
            }
            let _ = t.tx.send(Msg::Stop { seal: true });
            drop(t.tx);
            match t.join.join() {
                Ok(Ok(exit)) => {
                    lock(&self.stats).merge(&exit.stats);
                    if let Some(o) = exit.next_offset {
                        let _ =
                            commit.add_partition_offset(&t.topic, t.partition, Offset::Offset(o));
                    }
                }
                Ok(Err(e)) => self.fail(e),
                Err(_) => self.fail(Error::Invalid(format!(
                    "the task of {}-p{} panicked",
                    t.topic, t.partition
                ))),
            }
            self.metrics.forget_partition(&t.topic, t.partition);
            tracing::info!(topic = %t.topic, partition = t.partition, "partition released");
        }
        self.metrics.assigned.set(lock(&self.tasks).len() as i64);
        commit
    }
}

struct Ctx {
    shared: Arc<Shared>,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{msg}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{msg}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{msg}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{msg}"),
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, reason, "kafka client error (retrying)");
    }

    fn stats(&self, s: Statistics) {
        let tasks = lock(&self.shared.tasks);
        for t in tasks.iter() {
            let Some(p) = s
                .topics
                .get(&t.topic)
                .and_then(|tp| tp.partitions.get(&t.partition))
            else {
                continue;
            };
            if p.consumer_lag >= 0 {
                self.shared
                    .metrics
                    .lag
                    .with_label_values(&[t.topic.as_str(), &t.partition.to_string()])
                    .set(p.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            rdkafka::consumer::RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.shared
                    .metrics
                    .rebalances
                    .with_label_values(&["assign"])
                    .inc();
                self.shared.assign(tpl);
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r {
                    self.shared.fail(e.into());
                }
            }
            other => {
                let kind = if other == RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                    "revoke"
                } else {
                    tracing::warn!(error = ?other, "rebalance error; releasing all partitions");
                    "error"
                };
                self.shared
                    .metrics
                    .rebalances
                    .with_label_values(&[kind])
                    .inc();
                let which: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                let commits = self
                    .shared
                    .revoke(if cooperative { Some(&which) } else { None });
                if commits.count() > 0 && !consumer.assignment_lost() {
                    commit(consumer, &self.shared.metrics, &commits, CommitMode::Sync);
                }
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    tracing::warn!(error = %e, "unassign failed");
                }
            }
        }
    }
}

fn commit(
    consumer: &BaseConsumer<Ctx>,
    metrics: &ProcessorMetrics,
    tpl: &TopicPartitionList,
    mode: CommitMode,
) {
    match consumer.commit(tpl, mode) {
        Ok(()) => {
            for e in tpl.elements() {
                if let Offset::Offset(o) = e.offset() {
                    metrics
                        .committed
                        .with_label_values(&[e.topic(), &e.partition().to_string()])
                        .set(o);
                }
            }
        }
        Err(e) => {
            metrics.commit_failures.inc();
            tracing::warn!(error = %e, "offset commit failed; the batches are durable and the next commit supersedes it");
        }
    }
}

/// Runs `veritrace process` until `stop` is set (or a fatal error), then seals what is
/// open, commits, anchors, and leaves the group.
pub fn run(
    dir: &DataDir,
    cfg: &ProcessConfig,
    metrics: ProcessorMetrics,
    stop: Arc<AtomicBool>,
) -> Result<ProcessReport> {
    if cfg.topics.is_empty() {
        return Err(Error::Config("no topics to consume (kafka.topics)".into()));
    }
    veritrace_anchor::check_backend(dir, &cfg.backend)?;
    let producer: FutureProducer = cfg
        .client
        .producer_config("veritrace-process")?
        .create()
        .map_err(|e| Error::Kafka(format!("creating the rejected-topic producer: {e}")))?;
    let (commits_tx, commits_rx) = channel();
    let (seeks_tx, seeks_rx) = channel();
    let (spare_tx, spare_rx) = sync_channel(SPARE_CHUNKS);
    let holder = format!("veritrace process group={} host={}", cfg.group, hostname());
    let shared = Arc::new(Shared {
        dir: dir.clone(),
        cfg: cfg.clone(),
        producer: producer.clone(),
        metrics: metrics.clone(),
        commits_tx,
        seeks_tx,
        spare_tx,
        tasks: Mutex::new(Vec::new()),
        stats: Mutex::new(Stats::default()),
        fatal: Mutex::new(None),
        holder: holder.clone(),
        registry: cfg.signatures.registry(dir)?,
    });
    let consumer: BaseConsumer<Ctx> = cfg
        .client
        .consumer_config(&cfg.group, cfg.instance_id.as_deref())?
        // librdkafka's own `debug` contexts (`kafka.consumer-properties.debug = "cgrp"`)
        // are only worth setting if their messages come through.
        .set_log_level(
            if cfg.client.consumer.0.contains_key("debug")
                || cfg.client.properties.0.contains_key("debug")
            {
                RDKafkaLogLevel::Debug
            } else {
                RDKafkaLogLevel::Warning
            },
        )
        .create_with_context(Ctx {
            shared: shared.clone(),
        })
        .map_err(|e| Error::Kafka(format!("creating the consumer: {e}")))?;

    let mut needed: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    needed.push(&cfg.rejected_topic);
    // Brokers that are down delay the start. A missing topic is a configuration error once
    // it stays missing for a grace period (an init job may be creating it right now).
    let mut backoff = Duration::from_millis(500);
    let mut missing_since: Option<Instant> = None;
    loop {
        match admin::require_topics(&consumer, &needed, Duration::from_secs(10)) {
            Ok(()) => break,
            Err(e @ Error::Config(_)) => {
                let since = *missing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= TOPIC_GRACE {
                    return Err(e);
                }
                tracing::warn!(error = %e, "waiting for the topic to appear");
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "brokers not reachable yet; waiting");
            }
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return Ok(ProcessReport::default());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }

    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(group = %cfg.group, topics = ?cfg.topics, brokers = %cfg.client.brokers, "consumer subscribed");

    let anchor_stop = Arc::new(AtomicBool::new(false));
    let anchor = {
        let dir = dir.clone();
        let interval = cfg.epoch_interval;
        let backend = cfg.backend.clone();
        let stop = anchor_stop.clone();
        let metrics = metrics.clone();
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("anchor".into())
            .spawn(move || {
                // An anchoring failure stops the process at once (it restarts and catches
                // up), rather than processing on while nothing gets anchored.
                let r = EpochLoop::contending(&dir, interval, backend, &holder)
                    .run(
                        BatchFeed::Rescan(stop),
                        STOP_ANCHOR_GRACE,
                        &MetricsObserver(metrics),
                    )
                    .map(|r| r.anchored.len() as u64);
                if let Err(e) = &r {
                    shared.fail(Error::Invalid(format!("anchoring failed: {e}")));
                }
                r
            })
            .map_err(|e| Error::Invalid(format!("cannot start the anchor thread: {e}")))?
    };

    poll_loop(&consumer, &shared, &stop, &commits_rx, &seeks_rx, &spare_rx);

    // Shutdown: seal what is open, commit it, leave the group, anchor what was sealed.
    let final_commits = shared.revoke(None);
    drain_commits(&consumer, &shared.metrics, &commits_rx);
    if final_commits.count() > 0 {
        commit(&consumer, &metrics, &final_commits, CommitMode::Sync);
    }
    consumer.unsubscribe();
    drop(consumer);
    let _ = producer.flush(Duration::from_secs(10));
    anchor_stop.store(true, Ordering::Relaxed);
    let epochs = match anchor.join() {
        Ok(Ok(n)) => n,
        Ok(Err(_)) => 0, // already recorded by the thread

        Err(_) => {
            shared.fail(Error::Invalid("the anchor thread panicked".into()));
            0
        }
    };
    if let Some(e) = lock(&shared.fatal).take() {
        return Err(e);
    }
    let stats = lock(&shared.stats).clone();
    Ok(ProcessReport { stats, epochs })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn drain_commits(
    consumer: &BaseConsumer<Ctx>,
    metrics: &ProcessorMetrics,
    rx: &Receiver<(String, i32, i64)>,
) {
    let mut tpl = TopicPartitionList::new();
    let mut any = false;
    while let Ok((t, p, o)) = rx.try_recv() {
        // Later positions of the same partition replace earlier ones.
        if tpl.set_partition_offset(&t, p, Offset::Offset(o)).is_err() {
            let _ = tpl.add_partition_offset(&t, p, Offset::Offset(o));
        }
        any = true;
    }
    // Synchronous: one broker round trip per sealed batch, and the metric then tells
    // the truth about what the group holds.
    if any {
        commit(consumer, metrics, &tpl, CommitMode::Sync);
    }
}

fn poll_loop(
    consumer: &BaseConsumer<Ctx>,
    shared: &Shared,
    stop: &AtomicBool,
    commits_rx: &Receiver<(String, i32, i64)>,
    seeks_rx: &Receiver<(String, i32, i64)>,
    spare_rx: &Receiver<Chunk>,
) {
    // A chunk given back by a worker, or a new one sized like the last full one.
    let mut chunk_bytes = 0usize;
    let mut next_chunk = |last: Option<usize>| {
        if let Some(n) = last {
            chunk_bytes = n.min(worker::CHUNK_KEEP_BYTES);
        }
        spare_rx
            .try_recv()
            .unwrap_or_else(|_| Chunk::with_capacity(CHUNK, chunk_bytes))
    };
    let mut last_flush = Instant::now();
    let mut warned_at: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) && !shared.failed() {
        drain_commits(consumer, &shared.metrics, commits_rx);
        while let Ok((topic, p, o)) = seeks_rx.try_recv() {
            // What was fetched for the partition before is dropped by its task.
            if let Some(t) = lock(&shared.tasks)
                .iter_mut()
                .find(|t| t.partition == p && t.topic == topic)
            {
                t.buf.clear();
            }
            if let Err(e) = consumer.seek(&topic, p, Offset::Offset(o), Duration::from_secs(10)) {
                tracing::warn!(topic = %topic, partition = p, offset = o, error = %e, "could not read the partition again from an earlier offset");
            }
        }
        let polled = consumer.poll(Duration::from_millis(50));
        let idle = polled.is_none();
        match polled {
            Some(Ok(m)) => {
                let (topic, partition) = (m.topic(), m.partition());
                let mut tasks = lock(&shared.tasks);
                let Some(t) = tasks
                    .iter_mut()
                    .find(|t| t.partition == partition && t.topic == topic)
                else {
                    // Not ours (any more): not committed either, so its owner reads it.
                    continue;
                };
                t.buf.push(
                    m.offset(),
                    m.key(),
                    m.payload().unwrap_or_default(),
                    m.timestamp().to_millis(),
                );
                if t.buf.len() >= CHUNK {
                    let fresh = next_chunk(Some(t.buf.bytes()));
                    let chunk = std::mem::replace(&mut t.buf, fresh);
                    hand_off(shared, t, chunk);
                }
            }
            Some(Err(e)) if warned_at.is_none_or(|w| w.elapsed() > Duration::from_secs(10)) => {
                warned_at = Some(Instant::now());
                tracing::warn!(error = %e, "consumer error (the client retries)");
            }
            Some(Err(_)) | None => {}
        }
        if idle || last_flush.elapsed() >= FLUSH_EVERY {
            last_flush = Instant::now();
            shared
                .metrics
                .poll_loop_timestamp
                .set(crate::now_ms() / 1000);
            let mut tasks = lock(&shared.tasks);
            for t in tasks.iter_mut() {
                if !t.buf.is_empty() {
                    let chunk = std::mem::replace(&mut t.buf, next_chunk(None));
                    hand_off(shared, t, chunk);
                }
            }
            let (ended, running): (Vec<Task>, Vec<Task>) = std::mem::take(&mut *tasks)
                .into_iter()
                .partition(|t| t.join.is_finished());
            *tasks = running;
            drop(tasks);
            for t in ended {
                restart_or_fail(consumer, shared, t);
            }
        }
    }
}

/// A task that ended before it was told to stop. One that lost its partition to another
/// process (its lease ran out, or another writer committed the next batch) is started
/// again from the manifest: it waits for the partition, and the group's next rebalance
/// decides who reads it. Any other end stops the process.
fn restart_or_fail(consumer: &BaseConsumer<Ctx>, shared: &Shared, t: Task) {
    let (topic, p) = (t.topic.clone(), t.partition);
    match t.join.join() {
        Ok(Err(Error::Anchor(e @ veritrace_anchor::Error::Lost { .. }))) => {
            shared.metrics.rebalances.with_label_values(&["lost"]).inc();
            tracing::warn!(topic = %topic, partition = p, error = %e,
                "this process lost the partition to another; its unsealed records are read again by whoever owns it");
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&topic, p);
            shared.assign(&mut tpl);
            if shared.failed() {
                return;
            }
            // Read again from where the manifest resumes (set by `assign`).
            if let Err(e) = consumer.seek_partitions(tpl, Duration::from_secs(10)) {
                shared.fail(Error::Kafka(format!(
                    "repositioning {topic}-p{p} after losing it: {e}"
                )));
            }
        }
        Ok(Err(e)) => shared.fail(e),
        Ok(Ok(exit)) => {
            lock(&shared.stats).merge(&exit.stats);
            shared.fail(Error::Invalid(format!("the task of {topic}-p{p} stopped")));
        }
        Err(_) => shared.fail(Error::Invalid(format!("the task of {topic}-p{p} panicked"))),
    }
}

/// Hands records to a task, waiting while its queue is full (back-pressure on the
/// consumer); a task that died is noticed by the poll loop.
fn hand_off(shared: &Shared, t: &Task, chunk: Chunk) {
    match t.tx.try_send(Msg::Records(chunk)) {
        Ok(()) => {}
        Err(TrySendError::Full(msg)) => {
            if t.tx.send(msg).is_err() {
                shared.fail(Error::Invalid(format!(
                    "the task of {}-p{} stopped",
                    t.topic, t.partition
                )));
            }
        }
        Err(TrySendError::Disconnected(_)) => shared.fail(Error::Invalid(format!(
            "the task of {}-p{} stopped",
            t.topic, t.partition
        ))),
    }
}

/// Reports the epoch loop's progress as the processor's metrics.
struct MetricsObserver(ProcessorMetrics);

impl veritrace_anchor::epoch_loop::EpochObserver for MetricsObserver {
    fn pending_batches(&self, n: usize) {
        self.0.pending_batches.set(n as i64);
    }
    fn anchored(&self, done: &[veritrace_anchor::AnchoredEpoch]) {
        for d in done {
            self.0.epochs.inc();
            if let Some(l) = d.latency {
                self.0.anchor_seconds.observe(l.as_secs_f64());
            }
            if let Some(g) = d.gas_used {
                self.0.anchor_gas.inc_by(g);
            }
        }
    }
    fn unanchored_epochs(&self, n: usize) {
        self.0.unanchored_epochs.set(n as i64);
    }
    fn chain(&self, new_failures: u64, new_reorgs: u64) {
        self.0.anchor_failures.inc_by(new_failures);
        self.0.anchor_reorgs.inc_by(new_reorgs);
    }
}

/// How long a stopping processor waits for the chain to anchor its last epochs.
const STOP_ANCHOR_GRACE: Duration = Duration::from_secs(5);
