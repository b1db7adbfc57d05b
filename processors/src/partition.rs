//! The partition processor: the I/O shell around [`crate::event::process`]. One instance
//! owns one partition of one stream (a Kafka partition, or a lane of the in-process
//! channel): it validates each record, drops nothing (rejections are kept with their
//! bytes), deduplicates event ids, and seals batches through the anchor crate.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use arrow_array::{Array, StringArray};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tracing::instrument;
use veritrace_anchor::{BatchHeader, BatchWriter, DataDir, SealInput, batch_id};
use veritrace_verify::Digest;

use crate::columns::{EdgeColumns, EventColumns, RejectedColumns};
use crate::event::Limits;
use crate::reason::{Reason, Rejection};
use crate::signed::{BundleReject, Opened, RegistryStage, Signatures};
use crate::{Error, Result};

/// When to seal a batch, and how to validate.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// Seal after this many input records (accepted + rejected), or as many rows: a
    /// signed bundle is one record of up to 10,000 events, each a row of its own, so a
    /// batch of bundles is sealed by its rows and stays the size a batch of single
    /// events would be.
    pub max_records: usize,
    /// Seal when the oldest unsealed record is this old.
    pub max_age: Duration,
    /// Validation limits.
    pub limits: Limits,
    /// Event ids kept in memory for deduplication before they go to a run on local disk
    /// ([`crate::dedup`]; where the data directory has a place for runs).
    pub dedupe_memory_ids: usize,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        BatchPolicy {
            max_records: 10_000,
            max_age: Duration::from_millis(1000),
            limits: Limits::default(),
            dedupe_memory_ids: crate::dedup::HOT_IDS,
        }
    }
}

/// Counters of one processor since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records seen (not counting replays of already-sealed offsets).
    pub consumed: u64,
    /// Accepted events.
    pub accepted: u64,
    /// Rejections by reason code (duplicates included as `duplicate_event_id`).
    pub rejected: BTreeMap<Reason, u64>,
    /// Batches sealed.
    pub batches: u64,
    /// Records skipped because their offset was already sealed (replay after restart).
    pub replayed: u64,
    /// Accepted events that saw a serialised code too far from its last sighting to be one
    /// object ([`crate::sightings`]).
    pub clone_sightings: u64,
}

impl Stats {
    /// Total rejections.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Adds another processor's counters.
    pub fn merge(&mut self, o: &Stats) {
        self.consumed += o.consumed;
        self.accepted += o.accepted;
        self.batches += o.batches;
        self.replayed += o.replayed;
        self.clone_sightings += o.clone_sightings;
        for (r, n) in &o.rejected {
            *self.rejected.entry(*r).or_default() += n;
        }
    }
}

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted into the open batch.
    Accepted,
    /// A signed bundle: how many of its events were accepted into the open batch, and each
    /// rejected one with its bytes as sent (kept in the rejected table).
    Bundle {
        /// Events accepted.
        accepted: usize,
        /// Events rejected, with their bytes.
        rejected: Vec<(Rejection, Vec<u8>)>,
    },
    /// Rejected (kept in the rejected table); the reason code and its detail.
    Rejected(Rejection),
    /// The offset was already sealed before a restart; nothing to do.
    AlreadySealed,
}

/// Processes one partition.
#[derive(Debug)]
pub struct PartitionProcessor {
    stream: String,
    partition: u32,
    writer: BatchWriter,
    policy: BatchPolicy,
    stage: Stage,
    seen: IdIndex,
    events: EventColumns,
    edges: EdgeColumns,
    /// The open batch's retractions (its error declarations), for the header.
    retracts: Vec<veritrace_verify::bundle::Retraction>,
    leaves: Vec<Digest>,
    rejected: RejectedColumns,
    /// The open batch's private values ([`crate::privacy`]), and where they go.
    private: Vec<crate::privacy::PrivateValue>,
    dir: DataDir,
    open_first: Option<u64>,
    open_last: u64,
    open_records: u64,
    opened_at: Option<Instant>,
    sightings: crate::sightings::Sightings,
    stats: Stats,
}

/// How records become events: an event stream's signature stage, or the registry's.
#[derive(Debug)]
enum Stage {
    Events(Signatures),
    Registry(Box<RegistryStage>),
    Audit,
}

use crate::dedup::{IdIndex, id_key};

impl PartitionProcessor {
    /// Opens the partition: checks its batch chain, removes uncommitted files, and loads
    /// the ids of already-sealed events so duplicates across restarts are caught.
    pub fn open(dir: &DataDir, stream: &str, partition: u32, policy: BatchPolicy) -> Result<Self> {
        let writer = BatchWriter::open(dir, stream, partition)?;
        let manifest: Vec<BatchHeader> = dir.read_jsonl(&dir.manifest_file(stream, partition))?;
        // The ids of older entries are in the dedupe runs (on local disk); those of the
        // entries after them are read from the files.
        let runs = dir.dedupe_dir(stream, partition);
        // Room for one batch (a policy without a record bound must not ask for an
        // impossible table).
        let batch = policy.max_records.min(1 << 20);
        let (mut seen, in_runs) = IdIndex::open(runs, &manifest, policy.dedupe_memory_ids, batch)?;
        let unread: Vec<&BatchHeader> = manifest
            .iter()
            .filter(|h| !in_runs.contains(&h.seq))
            .collect();
        if let Some(first) = unread.first() {
            let ids: u64 = unread.iter().map(|h| h.size).sum();
            seen.loading_from(first, (ids as usize).saturating_add(batch));
        }
        // A batch's events are in its own file until compaction covers it, then in the
        // compacted files (which the compactor may also have merged into sorted runs): the
        // ids come from wherever the committed rows are now, never from a file compaction
        // deleted.
        let log = veritrace_anchor::compact::CompactionLog::read(dir)?;
        let covered = log.covered_batches();
        let mut compacted: HashSet<&str> = HashSet::new();
        for h in unread.iter().filter(|h| h.size > 0) {
            if covered.contains(h.batch_id.as_str()) {
                compacted.insert(h.batch_id.as_str());
            } else {
                load_ids(dir, &dir.events_file(&h.batch_id), None, &mut seen)?;
            }
        }
        if !compacted.is_empty() {
            for f in log.live_files() {
                load_ids(
                    dir,
                    &dir.compacted_dir().join(&f.file),
                    Some(&compacted),
                    &mut seen,
                )?;
            }
        }
        Ok(PartitionProcessor {
            stream: stream.to_owned(),
            partition,
            writer,
            policy,
            stage: Stage::Events(Signatures::default()),
            seen,
            events: EventColumns::with_capacity(policy.max_records.min(100_000)),
            edges: EdgeColumns::default(),
            retracts: Vec::new(),
            leaves: Vec::new(),
            rejected: RejectedColumns::new(),
            private: Vec::new(),
            dir: dir.clone(),
            open_first: None,
            open_last: 0,
            open_records: 0,
            opened_at: None,
            sightings: Default::default(),
            stats: Stats::default(),
        })
    }

    /// Sets how signed records are checked (the default: policy `record`, no registry).
    pub fn with_signatures(mut self, signatures: Signatures) -> Self {
        self.stage = Stage::Events(signatures);
        self
    }

    /// Makes this the registry stream's processor: every record is a signed registry
    /// record, applied to the registry state before it is accepted.
    pub fn with_registry(mut self, stage: RegistryStage) -> Self {
        self.stage = Stage::Registry(Box::new(stage));
        self
    }

    /// Makes this the audit stream's processor: each record is an audit entry of the node's
    /// servers ([`crate::audit`]).
    pub fn with_audit(mut self) -> Self {
        self.stage = Stage::Audit;
        self
    }

    /// The partition number.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The next offset to read: one past the last sealed offset (None: from the start).
    pub fn resume_offset(&self) -> Option<u64> {
        self.writer.committed_offset().map(|o| o + 1)
    }

    /// The sealing policy.
    pub fn policy(&self) -> &BatchPolicy {
        &self.policy
    }

    /// What the partition's dedupe index holds (ids in memory and in runs, memory).
    pub fn dedupe_stats(&self) -> crate::dedup::IndexStats {
        self.seen.stats()
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Records in the open (unsealed) batch.
    pub fn open_records(&self) -> u64 {
        self.open_records
    }

    /// Verifies the Ed25519 signatures of the records about to be pushed together (see
    /// [`Signatures::preverify`]); each [`PartitionProcessor::push`] of them then skips its
    /// own check. Optional: a record not given here is verified when pushed.
    pub fn preverify<'a>(&mut self, payloads: impl IntoIterator<Item = &'a [u8]>) {
        let limits = self.policy.limits;
        if let Stage::Events(s) = &mut self.stage {
            s.preverify(payloads, &limits);
        }
    }

    /// Processes one record at `offset` (offsets must increase).
    pub fn push(
        &mut self,
        offset: u64,
        key: Option<&[u8]>,
        payload: &[u8],
        now_ms: i64,
    ) -> Result<Outcome> {
        if self.writer.committed_offset().is_some_and(|c| offset <= c) {
            self.stats.replayed += 1;
            return Ok(Outcome::AlreadySealed);
        }
        if self.open_first.is_some() && offset <= self.open_last {
            return Err(Error::Invalid(format!(
                "offset {offset} of {}-p{} is not after {}",
                self.stream, self.partition, self.open_last
            )));
        }
        if self.open_first.is_none() {
            self.open_first = Some(offset);
            self.opened_at = Some(Instant::now());
        }
        self.open_last = offset;
        self.open_records += 1;
        self.stats.consumed += 1;

        let limits = self.policy.limits;
        let opened = match &mut self.stage {
            Stage::Events(s) => match s.open_bundle(payload, now_ms, &limits) {
                Some(bundle) => {
                    return Ok(match bundle {
                        Ok(events) => self.accept_bundle(offset, key, events, now_ms)?,
                        Err(r) => self.reject(offset, key, payload, r, now_ms),
                    });
                }
                None => s.open(payload, now_ms, &limits),
            },
            Stage::Registry(r) => {
                // A run that cannot be read stops the partition (it is opened again), after
                // the record is judged and before anything of it is kept.
                let (seen, failed) = (&self.seen, std::cell::RefCell::new(None));
                let opened = r.open_record(payload, now_ms, &limits, &|id| {
                    seen.contains(id_key(id)).unwrap_or_else(|e| {
                        failed.replace(Some(e));
                        false
                    })
                });
                if let Some(e) = failed.into_inner() {
                    return Err(e.into());
                }
                opened
            }
            Stage::Audit => crate::audit::open_entry(payload, &limits),
        };
        let outcome = match opened {
            Ok(o) => match self.add(offset, &o)? {
                None => {
                    self.private.extend(o.private);
                    Outcome::Accepted
                }
                Some(r) => self.reject(offset, key, payload, r, now_ms),
            },
            Err(r) => self.reject(offset, key, payload, r, now_ms),
        };
        Ok(outcome)
    }

    /// Adds an accepted event to the open batch, unless its id was accepted before (in an
    /// earlier record, or earlier in the same bundle): then its `duplicate_event_id`.
    fn add(&mut self, offset: u64, o: &Opened) -> Result<Option<Rejection>> {
        let a = &o.accepted;
        if !self.seen.insert(id_key(&a.event.event_id))? {
            let mut r = Rejection::new(
                Reason::DuplicateEventId,
                format!("event_id {} was already accepted", a.event.event_id),
            );
            r.event_id = Some(a.event.event_id.clone());
            return Ok(Some(r));
        }
        self.events.push(
            &a.event,
            &a.canonical,
            &a.leaf_hash,
            offset,
            o.envelope.as_deref(),
            o.member.as_deref(),
        )?;
        self.edges.push(&a.event);
        for r in &a.event.retracts {
            self.retracts.push(veritrace_verify::bundle::Retraction {
                event_id: r.clone(),
                declaration: a.event.event_id.clone(),
                participant: a.event.participant.id.clone(),
            });
        }
        self.leaves.push(a.leaf_hash);
        self.stats.accepted += 1;
        if let (Some(code), Some(at)) = (&a.event.trace_code, a.event.location)
            && self
                .sightings
                .observe(code, a.event.event_time_ms, at.lat, at.lon)
        {
            self.stats.clone_sightings += 1;
            tracing::debug!(code = %code, event_id = %a.event.event_id, "clone sighting");
        }
        Ok(None)
    }

    /// A bundle's events, each with its own outcome: accepted, or rejected (a duplicate,
    /// also within the bundle, is `duplicate_event_id`) with its bytes as sent kept in the
    /// rejected table.
    fn accept_bundle(
        &mut self,
        offset: u64,
        key: Option<&[u8]>,
        events: Vec<Result<Opened, BundleReject>>,
        now_ms: i64,
    ) -> Result<Outcome> {
        let mut accepted = 0usize;
        let mut rejected = Vec::new();
        for e in events {
            let (r, bytes) = match e {
                Ok(o) => match self.add(offset, &o)? {
                    None => {
                        accepted += 1;
                        continue;
                    }
                    // The copy as sent: the bundle's own bytes of this event.
                    Some(r) => {
                        let bytes = o
                            .member
                            .as_deref()
                            .and_then(veritrace_verify::bundle_sig::decode_member)
                            .map(|m| m.event.to_vec())
                            .unwrap_or(o.accepted.canonical);
                        (r, bytes)
                    }
                },
                Err(BundleReject { rejection, event }) => (rejection, event),
            };
            self.reject(offset, key, &bytes, r.clone(), now_ms);
            rejected.push((r, bytes));
        }
        Ok(Outcome::Bundle { accepted, rejected })
    }

    fn reject(
        &mut self,
        offset: u64,
        key: Option<&[u8]>,
        payload: &[u8],
        r: Rejection,
        now_ms: i64,
    ) -> Outcome {
        self.rejected.push(offset, key, payload, &r, now_ms);
        *self.stats.rejected.entry(r.reason).or_default() += 1;
        Outcome::Rejected(r)
    }

    /// Rows (accepted events and rejected records or bundle events) in the open batch.
    pub fn open_rows(&self) -> usize {
        self.events.len() + self.rejected.len()
    }

    /// True when the open batch holds `max_records` records or rows: seal it now.
    pub fn is_full(&self) -> bool {
        let max = self.policy.max_records;
        self.open_records as usize >= max || self.open_rows() >= max
    }

    /// True when the open batch is full or old enough to seal.
    pub fn should_seal(&self, now: Instant) -> bool {
        self.is_full()
            || self
                .opened_at
                .is_some_and(|t| now.duration_since(t) >= self.policy.max_age)
    }

    /// How long until the open batch must be sealed (None: nothing open).
    pub fn seal_deadline(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + self.policy.max_age)
    }

    /// Seals the open batch, if any. When this returns, the batch is durable and every
    /// offset up to its last is safe to commit upstream.
    #[instrument(skip_all, fields(stream = %self.stream, partition = self.partition, records = self.open_records))]
    pub fn seal(&mut self, now_ms: i64) -> Result<Option<BatchHeader>> {
        let Some(first) = self.open_first else {
            return Ok(None);
        };
        let last = self.open_last;
        let id = batch_id(&self.stream, self.partition, first, last);
        let events = self.events.finish(&id, &self.stream, self.partition)?;
        self.events = EventColumns::with_capacity(self.policy.max_records.min(100_000));
        let rejected = if self.rejected.is_empty() {
            None
        } else {
            Some(self.rejected.finish(&id, &self.stream, self.partition)?)
        };
        let edges = if self.edges.is_empty() {
            None
        } else {
            Some(self.edges.finish(&id)?)
        };
        // The private values first: a committed batch has its file.
        crate::privacy::write_batch(&self.dir, &id, &self.private)?;
        self.private.clear();
        let header = self.writer.seal(SealInput {
            first_offset: first,
            last_offset: last,
            records: self.open_records,
            leaf_hashes: &self.leaves,
            events,
            rejected,
            edges,
            sealed_at: crate::rfc3339_ms(now_ms),
            retracts: std::mem::take(&mut self.retracts),
        })?;
        // Ids that cannot go to a run stay in memory; the next seal tries again.
        self.seen.sealed(&header);
        self.leaves.clear();
        self.open_first = None;
        self.open_records = 0;
        self.opened_at = None;
        self.stats.batches += 1;
        Ok(Some(header))
    }
}

/// Adds the event ids of `path` to `seen`; with `batches`, only the rows of those batches
/// (a compacted file holds rows of many partitions).
fn load_ids(
    dir: &DataDir,
    path: &std::path::Path,
    batches: Option<&HashSet<&str>>,
    seen: &mut IdIndex,
) -> Result<()> {
    let f = dir.source(path)?;
    let pq = |e: parquet::errors::ParquetError| Error::Corrupt {
        path: path.to_owned(),
        detail: e.to_string(),
    };
    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(pq)?;
    let corrupt = |detail: String| Error::Corrupt {
        path: path.to_owned(),
        detail,
    };
    let column = |name: &str| {
        b.schema()
            .index_of(name)
            .map_err(|e| corrupt(e.to_string()))
    };
    let mut roots = vec![column("event_id")?];
    if batches.is_some() {
        roots.push(column("batch_id")?);
    }
    // The projection keeps file order; find each column by name in the result.
    let mask = ProjectionMask::roots(b.parquet_schema(), roots);
    for batch in b.with_projection(mask).build().map_err(pq)? {
        let batch = batch.map_err(|e| corrupt(e.to_string()))?;
        let strings = |name: &str| -> Result<&StringArray> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| corrupt(format!("{name} is not a string column")))
        };
        let ids = strings("event_id")?;
        let of_batch = match batches {
            Some(_) => Some(strings("batch_id")?),
            None => None,
        };
        for i in 0..ids.len() {
            if let (Some(want), Some(b)) = (batches, of_batch)
                && !want.contains(b.value(i))
            {
                continue;
            }
            seen.load(id_key(ids.value(i)));
        }
    }
    Ok(())
}
