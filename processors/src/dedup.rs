//! The partition's dedupe index: the 128-bit hash of every event id the partition ever
//! accepted, so that a second delivery of an id is `duplicate_event_id` however long after
//! the first it comes.
//!
//! Recent ids are in memory, in a hash set (about 20-40 bytes an id). Once it holds
//! `pipeline.dedupe-memory-ids` ids ([`HOT_IDS`] by default), a seal hands them over to be
//! written, sorted, to a *run* file. Of a run, memory keeps a blocked Bloom filter (2 bytes
//! an id) and every [`STRIDE`]th key; a lookup that passes the filter reads one stretch of
//! [`STRIDE`] keys from the file (4 KiB, usually from the page cache). Runs of about the
//! same size are merged, so a partition has about log2(ids / bound) runs and a lookup tests
//! that many filters. Without runs, a partition's memory grew by 20-40 bytes per event for
//! ever (BENCHMARKS.md, issue 19).
//!
//! Runs are derived data on local disk ([`veritrace_anchor::DataDir::dedupe_dir`]:
//! `dedupe/{stream}-p{N}/` of a local data directory, or under `pipeline.dedupe-dir`),
//! named `{first}-{last}.ids`, where `first` and `last` are the sequence numbers of the
//! manifest entries whose ids the run holds. A run's header identifies those two entries (a
//! hash of their batch ids and Merkle roots), and the file ends with its key count and an
//! xxh3-128 checksum of everything before it. When a partition opens:
//! - a run that does not verify, or that names other batches than the manifest has, is
//!   reported and renamed `*.damaged` (never used, never deleted);
//! - the runs used form one chain from the manifest's first entry; a run after a gap, and
//!   the inputs a merge left behind (its output covers them), are removed;
//! - the ids of the entries after the chain are read again from the events files, as they
//!   were before runs existed.
//!
//! A data directory on an object store without `pipeline.dedupe-dir` has no runs: every id
//! stays in memory, as before.
//!
//! Runs are written and merged on threads of their own, one write and one merge at a time
//! per partition: a seal only hands the set over (a new, empty one takes its place), and
//! lookups go on in it, and in a merge's inputs, until the new run is in place. A run that
//! cannot be written leaves its ids in memory, and a later seal tries again. A run's order,
//! count and checksum are checked when it is opened and as a merge reads it, so damage done
//! to a run since it was opened fails the merge instead of being copied into a run that
//! would verify; lookups do not check, and other damage is found at the next start.

use std::collections::HashSet;
use std::fs::File;
use std::hash::BuildHasherDefault;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::thread::JoinHandle;

use veritrace_anchor::{BatchHeader, Error, Result};
use xxhash_rust::xxh3::Xxh3;

/// Ids held in memory before they are written to a run: a hash table of 2^20 buckets
/// (17 bytes each, 18 MB) filled to its load limit of 7/8.
pub const HOT_IDS: usize = (1 << 20) / 8 * 7;

/// Keys between two keys of a run's sparse index: a filter hit reads this many keys.
pub const STRIDE: usize = 256;

const MAGIC: &[u8; 8] = b"VTDEDUP1";
/// Magic, first and last sequence numbers, and the two entries' identities.
const HEADER: u64 = 8 + 8 + 8 + 16 + 16;
/// Key count and checksum.
const TRAILER: u64 = 8 + 16;

/// The dedupe key of an event id: its 128-bit xxh3 hash (a collision chance of about
/// n^2 / 2^129). Being a hash already, it needs no second hashing in a set.
pub fn id_key(event_id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(event_id.as_bytes())
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io { op, path, source }
}

/// A set of dedupe keys.
pub(crate) type IdSet = HashSet<u128, BuildHasherDefault<crate::PreHashed>>;

/// The ids a partition accepted: recent ones in memory, older ones in runs.
#[derive(Debug)]
pub struct IdIndex {
    hot: IdSet,
    /// The first manifest entry whose ids are in `hot` and in no run.
    hot_from: Option<(u64, u128)>,
    runs: Vec<Run>,
    /// Where runs go; `None`: ids stay in memory.
    dir: Option<PathBuf>,
    hot_limit: usize,
    /// Ids a batch may add (what the set is sized for after a run took the others).
    batch_hint: usize,
    /// Ids on their way to a run (the background job writes them), still looked up here.
    frozen: Option<Frozen>,
    /// The run of `frozen` being written, if any.
    writing: Option<Job>,
    /// The merge of two runs in progress, if any.
    merging: Option<Job>,
    /// Threads freeing what a job replaced ([`IdIndex::reap`]).
    reapers: Vec<JoinHandle<()>>,
    /// Runs that could not be written or merged ([`IndexStats::failures`]).
    failures: u64,
}

/// What an [`IdIndex`] holds, for the processor's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Ids in memory's sets, those on their way to a run included.
    pub ids_in_memory: u64,
    /// Ids in runs on disk.
    pub ids_in_runs: u64,
    /// Runs on disk.
    pub runs: u64,
    /// Memory the index holds: its hash tables as allocated, and the runs' filters and
    /// sparse keys.
    pub memory_bytes: u64,
    /// Runs that could not be written or merged since the index was opened (each is tried
    /// again after a later seal; the ids stay in memory meanwhile).
    pub failures: u64,
}

/// Bytes a set's table takes: a power of two of buckets of 16-byte keys and one control
/// byte each, with room for an eighth more (the hash table's load factor).
fn set_bytes(s: &IdSet) -> u64 {
    if s.capacity() == 0 {
        return 0;
    }
    let buckets = (s.capacity() as u64 * 8 / 7).next_power_of_two();
    buckets * 17
}

/// Ids taken out of memory's set for a run being written, and the entry they start at.
#[derive(Debug)]
struct Frozen {
    ids: Arc<IdSet>,
    from: (u64, u128),
}

/// A run being written or merged on a thread of its own; the partition goes on meanwhile.
#[derive(Debug)]
struct Job {
    /// A merge: the first entry of its first input and the last of its second.
    merge: Option<(u64, u64)>,
    cancel: Arc<AtomicBool>,
    done: Receiver<Result<Run>>,
    thread: JoinHandle<()>,
}

impl Drop for IdIndex {
    /// Stops the jobs in progress and waits for them, so that the directory is the index's
    /// alone when it is opened again.
    fn drop(&mut self) {
        for j in [self.writing.take(), self.merging.take()]
            .into_iter()
            .flatten()
        {
            j.cancel.store(true, Ordering::Relaxed);
            let _ = j.thread.join();
        }
        for r in self.reapers.drain(..) {
            let _ = r.join();
        }
    }
}

impl IdIndex {
    /// An index whose runs are in `dir` (`None`: all in memory), holding up to `hot_limit`
    /// ids in memory between seals, for batches of up to `batch_hint` ids.
    pub fn new(dir: Option<PathBuf>, hot_limit: usize, batch_hint: usize) -> Self {
        IdIndex {
            hot: IdSet::with_capacity_and_hasher(batch_hint, Default::default()),
            hot_from: None,
            runs: Vec::new(),
            dir,
            hot_limit: hot_limit.max(1),
            batch_hint,
            frozen: None,
            writing: None,
            merging: None,
            reapers: Vec::new(),
            failures: 0,
        }
    }

    /// What the index holds now.
    pub fn stats(&self) -> IndexStats {
        let frozen = self.frozen.as_ref().map(|f| &*f.ids);
        IndexStats {
            ids_in_memory: self.hot_len() as u64,
            ids_in_runs: self.runs.iter().map(|r| r.count).sum(),
            runs: self.runs.len() as u64,
            memory_bytes: set_bytes(&self.hot)
                + frozen.map_or(0, set_bytes)
                + self
                    .runs
                    .iter()
                    .map(|r| (r.filter.blocks.len() * 64 + r.sparse.len() * 16) as u64)
                    .sum::<u64>(),
            failures: self.failures,
        }
    }

    /// True when `key` was added before.
    pub fn contains(&self, key: u128) -> Result<bool> {
        Ok(self.hot.contains(&key) || self.older(key)?)
    }

    /// Adds `key`; false when it was there already.
    pub fn insert(&mut self, key: u128) -> Result<bool> {
        Ok(!self.older(key)? && self.hot.insert(key))
    }

    /// True when `key` is among the ids out of memory's set: on their way to a run, or in
    /// one.
    fn older(&self, key: u128) -> Result<bool> {
        if self.frozen.as_ref().is_some_and(|f| f.ids.contains(&key)) {
            return Ok(true);
        }
        for r in &self.runs {
            if r.contains(key)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Ids in memory (counting those on their way to a run).
    pub fn hot_len(&self) -> usize {
        self.hot.len() + self.frozen.as_ref().map_or(0, |f| f.ids.len())
    }

    /// Runs on disk.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// When opening: the ids of the manifest entries no run covers (those from `first` on)
    /// are added with [`IdIndex::load`].
    pub fn loading_from(&mut self, first: &BatchHeader, ids: usize) {
        self.hot_from = Some((first.seq, ident(first)));
        self.hot.reserve(ids);
    }

    /// Adds a key read from the files of a committed entry (when opening).
    pub fn load(&mut self, key: u128) {
        self.hot.insert(key);
    }

    /// Called when `sealed` is committed: takes in what the background job finished, and
    /// starts the next job due. The ids in memory, which are now exactly those of committed
    /// entries, are due to go to a run once there are enough of them; then merges are due
    /// (the newest pair of runs in which the newer is at least half the older, so sizes at
    /// least double from newest to oldest). Neither pauses the partition: a job runs on a
    /// thread of its own, and until its run is in place, lookups use what it reads.
    pub fn sealed(&mut self, sealed: &BatchHeader) {
        if self.dir.is_some() {
            self.hot_from.get_or_insert((sealed.seq, ident(sealed)));
            self.jobs(Some(sealed), false);
        }
    }

    /// Takes finished jobs in and starts those due: a run of the ids in memory once there
    /// are enough of them (`sealed`: the entry just committed, where it ends), and a merge
    /// of the newest pair of runs in which the newer is at least half the older (sizes then
    /// at least double from newest to oldest). One of each at a time. With `wait`, waits
    /// for them until none runs or is due (a job that failed is not started again here).
    fn jobs(&mut self, sealed: Option<&BatchHeader>, wait: bool) {
        let mut failed = false;
        loop {
            for merge in [false, true] {
                let slot = if merge {
                    &mut self.merging
                } else {
                    &mut self.writing
                };
                let Some(j) = slot else { continue };
                let result = if wait {
                    j.done.recv().ok()
                } else {
                    match j.done.try_recv() {
                        Ok(r) => Some(r),
                        Err(TryRecvError::Empty) => continue,
                        Err(TryRecvError::Disconnected) => None,
                    }
                };
                let Some(j) = slot.take() else { continue };
                let _ = j.thread.join();
                match (result, j.merge) {
                    (Some(Ok(run)), Some((first, last))) => self.merged(first, last, run),
                    (Some(Ok(run)), None) => {
                        self.runs.push(run);
                        let frozen = self.frozen.take();
                        self.reap(move || drop(frozen));
                    }
                    (result, _) => {
                        failed = true;
                        self.failures += 1;
                        let why = match result {
                            Some(Err(e)) => e.to_string(),
                            _ => "the job stopped without an answer".to_owned(),
                        };
                        // The ids that were on their way stay in memory; a later seal
                        // tries again.
                        if !merge {
                            self.unfreeze();
                        }
                        tracing::warn!(error = %why, "a dedupe run could not be written or merged; tried again after a later seal");
                    }
                }
            }
            if failed {
                return;
            }
            if self.writing.is_none()
                && let Some(h) = sealed
                && self.hot.len() >= self.hot_limit
                && let Err(e) = self.start_freeze(h)
            {
                self.failures += 1;
                tracing::warn!(error = %e, "could not start writing a dedupe run");
                return;
            }
            if self.merging.is_none()
                && let Some(i) = (1..self.runs.len())
                    .rev()
                    .find(|&i| self.runs[i].count.saturating_mul(2) >= self.runs[i - 1].count)
                && let Err(e) = self.start_merge(i - 1)
            {
                self.failures += 1;
                tracing::warn!(error = %e, "could not start a dedupe merge");
                return;
            }
            if !wait || (self.writing.is_none() && self.merging.is_none()) {
                return;
            }
        }
    }

    /// Starts writing the ids in memory, which end at entry `sealed`, to a run.
    fn start_freeze(&mut self, sealed: &BatchHeader) -> Result<()> {
        let (Some(dir), Some(from)) = (self.dir.clone(), self.hot_from) else {
            return Ok(());
        };
        let span = Span {
            first: from.0,
            last: sealed.seq,
            first_ident: from.1,
            last_ident: ident(sealed),
        };
        // Sized for a batch, as at open: a table sized for `hot_limit` would hold that
        // memory in every partition, busy or not.
        let fresh = IdSet::with_capacity_and_hasher(self.batch_hint, Default::default());
        let ids = Arc::new(std::mem::replace(&mut self.hot, fresh));
        self.hot_from = None;
        self.frozen = Some(Frozen {
            ids: ids.clone(),
            from,
        });
        let started = self.start(None, move |cancel| {
            let mut keys: Vec<u128> = ids.iter().copied().collect();
            keys.sort_unstable();
            Run::write(
                &dir,
                span,
                keys.len() as u64,
                keys.into_iter().map(Ok),
                cancel,
            )
        });
        match started {
            Ok(job) => {
                self.writing = job;
                Ok(())
            }
            Err(e) => {
                self.unfreeze();
                Err(e)
            }
        }
    }

    /// The ids on their way to a run back into memory's set (the run was not written).
    fn unfreeze(&mut self) {
        if let Some(f) = self.frozen.take() {
            self.hot.extend(f.ids.iter().copied());
            self.hot_from = Some(f.from);
        }
    }

    /// Starts merging runs `i` and `i + 1`.
    fn start_merge(&mut self, i: usize) -> Result<()> {
        let Some(dir) = self.dir.clone() else {
            return Ok(());
        };
        let (a, b) = (self.runs[i].input()?, self.runs[i + 1].input()?);
        let span = (a.span.first, b.span.last);
        self.merging = self.start(Some(span), move |cancel| Run::merge(&dir, &a, &b, cancel))?;
        Ok(())
    }

    /// Runs `work` on a thread of its own.
    fn start(
        &mut self,
        merge: Option<(u64, u64)>,
        work: impl FnOnce(&AtomicBool) -> Result<Run> + Send + 'static,
    ) -> Result<Option<Job>> {
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, done) = std::sync::mpsc::sync_channel(1);
        let stop = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("dedupe-runs".into())
            .spawn(move || {
                let _ = tx.send(work(&stop));
            })
            .map_err(|e| Error::Invalid(format!("cannot start the dedupe thread: {e}")))?;
        Ok(Some(Job {
            merge,
            cancel,
            done,
            thread,
        }))
    }

    /// Puts the merged `run` in place of its two inputs, and removes their files.
    fn merged(&mut self, first: u64, last: u64, run: Run) {
        let Some(i) = (1..self.runs.len())
            .find(|&i| self.runs[i - 1].span.first == first && self.runs[i].span.last == last)
        else {
            tracing::warn!(path = %run.path.display(), "the inputs of a dedupe merge are gone; the merge is not used");
            return;
        };
        let old: Vec<Run> = self.runs.splice(i - 1..=i, [run]).collect();
        self.reap(move || {
            for r in old {
                let path = r.path.clone();
                drop(r);
                // Left behind, it is removed at the next open (covered by the merge).
                if let Err(e) = remove_if_there(&path) {
                    tracing::warn!(error = %e, "could not remove a merged dedupe run");
                }
            }
        });
    }

    /// Frees what `free` holds (large tables; run files to remove: an unlink of a large
    /// file takes a while) off the partition's thread. When no thread starts, `free` is
    /// dropped here: its memory is freed, and files left behind are removed at the next
    /// open.
    fn reap(&mut self, free: impl FnOnce() + Send + 'static) {
        self.reapers.retain(|r| !r.is_finished());
        if let Ok(r) = std::thread::Builder::new()
            .name("dedupe-reap".into())
            .spawn(free)
        {
            self.reapers.push(r);
        }
    }

    /// Waits for jobs until none runs or is due (tests: a state that does not depend on timing).
    #[cfg(test)]
    fn settle(&mut self, sealed: &BatchHeader) {
        self.jobs(Some(sealed), true);
        for r in self.reapers.drain(..) {
            let _ = r.join();
        }
    }

    /// Opens the runs in `dir` that match `manifest` and says which entries (by sequence
    /// number) they cover; the caller loads the ids of the others ([`IdIndex::load`]).
    pub fn open(
        dir: Option<PathBuf>,
        manifest: &[BatchHeader],
        hot_limit: usize,
        batch_hint: usize,
    ) -> Result<(Self, HashSet<u64>)> {
        let mut index = IdIndex::new(dir.clone(), hot_limit, batch_hint);
        let mut covered = HashSet::new();
        let Some(dir) = dir else {
            return Ok((index, covered));
        };
        std::fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        let by_seq: std::collections::HashMap<u64, &BatchHeader> =
            manifest.iter().map(|h| (h.seq, h)).collect();
        let mut found = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(io("list", &dir))?;
        for e in entries {
            let path = e.map_err(io("list", &dir))?.path();
            match path.extension().and_then(|x| x.to_str()) {
                Some("ids") => {}
                // A run being written when the process stopped.
                Some("tmp") => {
                    remove_if_there(&path)?;
                    continue;
                }
                _ => continue,
            }
            match Run::open(&path, &by_seq) {
                Ok(run) => found.push(run),
                Err(why) => {
                    let aside = path.with_extension("ids.damaged");
                    tracing::warn!(path = %path.display(), reason = %why, moved_to = %aside.display(),
                        "dedupe run not used; the ids it held are read again from the events files");
                    std::fs::rename(&path, &aside).map_err(io("rename", &path))?;
                }
            }
        }
        // Runs are used as one chain from the manifest's first entry, so that the ids in
        // memory are always those of the entries after the chain, and the next run follows
        // it. The widest first: what a merge left behind when it stopped before removing
        // its inputs is covered by its output, and removed.
        found.sort_by_key(|r| (r.span.first, std::cmp::Reverse(r.span.last)));
        let mut next = manifest.first().map(|h| h.seq);
        for run in found {
            let end = index.runs.last().map(|r| r.span.last);
            if end.is_some_and(|end| run.span.last <= end) {
                remove_if_there(&run.path)?;
            } else if Some(run.span.first) == next {
                next = Some(run.span.last + 1);
                covered.extend(run.span.first..=run.span.last);
                index.runs.push(run);
            } else {
                // After a gap (a run set aside above): its entries are read again, and
                // a later run covers them.
                tracing::warn!(path = %run.path.display(),
                    "dedupe run does not follow the runs before it and is removed; its ids are read again from the events files");
                remove_if_there(&run.path)?;
            }
        }
        Ok((index, covered))
    }
}

/// A manifest entry's identity in a run's header: a hash of its batch id (unique in the
/// partition) and Merkle root.
fn ident(h: &BatchHeader) -> u128 {
    let mut x = Xxh3::new();
    x.update(h.batch_id.as_bytes());
    x.update(&[0]);
    x.update(h.root.as_bytes());
    x.digest128()
}

/// The manifest entries a run covers, and the identities of the first and the last.
#[derive(Debug, Clone, Copy)]
struct Span {
    first: u64,
    last: u64,
    first_ident: u128,
    last_ident: u128,
}

impl Span {
    fn header(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER as usize);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&self.first.to_le_bytes());
        h.extend_from_slice(&self.last.to_le_bytes());
        h.extend_from_slice(&self.first_ident.to_le_bytes());
        h.extend_from_slice(&self.last_ident.to_le_bytes());
        h
    }
    fn file_name(&self) -> String {
        format!("{:012}-{:012}.ids", self.first, self.last)
    }
}

/// One run: sorted keys in a file; a filter and a sparse index in memory.
#[derive(Debug)]
struct Run {
    path: PathBuf,
    file: File,
    span: Span,
    count: u64,
    filter: Filter,
    /// Every [`STRIDE`]th key, from the first.
    sparse: Vec<u128>,
}

impl Run {
    fn contains(&self, key: u128) -> Result<bool> {
        if !self.filter.may_contain(key) {
            return Ok(false);
        }
        let stretch = self.sparse.partition_point(|&s| s <= key);
        if stretch == 0 {
            return Ok(false);
        }
        let from = ((stretch - 1) * STRIDE) as u64;
        let n = (self.count - from).min(STRIDE as u64) as usize;
        let mut buf = vec![0u8; n * 16];
        self.file
            .read_exact_at(&mut buf, HEADER + from * 16)
            .map_err(io("read dedupe run", &self.path))?;
        let keys: Vec<u128> = decode(&buf).collect();
        Ok(keys.binary_search(&key).is_ok())
    }

    /// Writes `keys` (ascending, at most `expected` of them; repeats are written once) as
    /// the run of `span`.
    fn write(
        dir: &Path,
        span: Span,
        expected: u64,
        keys: impl Iterator<Item = Result<u128>>,
        cancel: &AtomicBool,
    ) -> Result<Run> {
        let path = dir.join(span.file_name());
        let tmp = path.with_extension("tmp");
        let written = Run::write_to(dir, path, &tmp, span, expected, keys, cancel);
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// [`Run::write`] through `tmp`, which the caller removes when this fails.
    fn write_to(
        dir: &Path,
        path: PathBuf,
        tmp: &Path,
        span: Span,
        expected: u64,
        keys: impl Iterator<Item = Result<u128>>,
        cancel: &AtomicBool,
    ) -> Result<Run> {
        let f = File::create(tmp).map_err(io("create", tmp))?;
        let mut out = BufWriter::with_capacity(1 << 16, f);
        let mut hash = Xxh3::new();
        let header = span.header();
        hash.update(&header);
        out.write_all(&header).map_err(io("write", tmp))?;
        let mut summary = Summary::new(expected);
        let mut prev: Option<u128> = None;
        let mut count = 0u64;
        for k in keys {
            let k = k?;
            if count.is_multiple_of(1 << 16) && cancel.load(Ordering::Relaxed) {
                return Err(Error::Invalid("dedupe merge stopped".into()));
            }
            if prev.is_some_and(|p| p >= k) {
                continue;
            }
            prev = Some(k);
            summary.add(k);
            let b = k.to_le_bytes();
            hash.update(&b);
            out.write_all(&b).map_err(io("write", tmp))?;
            count += 1;
        }
        hash.update(&count.to_le_bytes());
        out.write_all(&count.to_le_bytes())
            .map_err(io("write", tmp))?;
        out.write_all(&hash.digest128().to_le_bytes())
            .map_err(io("write", tmp))?;
        let f = out
            .into_inner()
            .map_err(|e| io("write", tmp)(e.into_error()))?;
        f.sync_all().map_err(io("fsync", tmp))?;
        drop(f);
        std::fs::rename(tmp, &path).map_err(io("rename", tmp))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync", dir))?;
        let file = File::open(&path).map_err(io("open", &path))?;
        Ok(summary.into_run(path, file, span))
    }

    /// What a merge needs of the run, for another thread.
    fn input(&self) -> Result<Input> {
        Ok(Input {
            file: self.file.try_clone().map_err(io("open", &self.path))?,
            path: self.path.clone(),
            span: self.span,
            count: self.count,
        })
    }

    /// One run of the keys of `a` and `b` (adjacent, `a` first).
    fn merge(dir: &Path, a: &Input, b: &Input, cancel: &AtomicBool) -> Result<Run> {
        let span = Span {
            first: a.span.first,
            last: b.span.last,
            first_ident: a.span.first_ident,
            last_ident: b.span.last_ident,
        };
        let (mut x, mut y) = (a.keys().peekable(), b.keys().peekable());
        let merged = std::iter::from_fn(move || {
            let take_x = match (x.peek(), y.peek()) {
                (Some(Ok(p)), Some(Ok(q))) => p <= q,
                (Some(Err(_)), _) | (_, None) => true,
                _ => false,
            };
            if take_x { x.next() } else { y.next() }
        });
        Run::write(dir, span, a.count + b.count, merged, cancel)
    }

    /// Opens and checks the run at `path`: its checksum, its keys ascending, and that its
    /// first and last entries are those of the manifest. `Err`: why it cannot be used.
    fn open(
        path: &Path,
        by_seq: &std::collections::HashMap<u64, &BatchHeader>,
    ) -> std::result::Result<Run, String> {
        let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        if len < HEADER + TRAILER || !(len - HEADER - TRAILER).is_multiple_of(16) {
            return Err(format!("{len} bytes is not a run's length"));
        }
        let count = (len - HEADER - TRAILER) / 16;
        let mut r = BufReader::with_capacity(1 << 16, &file);
        let mut header = [0u8; HEADER as usize];
        r.read_exact(&mut header).map_err(|e| e.to_string())?;
        if &header[..8] != MAGIC {
            return Err("not a dedupe run (magic)".into());
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let ident_at = |i: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&header[i..i + 16]);
            u128::from_le_bytes(b)
        };
        let span = Span {
            first: u64_at(8),
            last: u64_at(16),
            first_ident: ident_at(24),
            last_ident: ident_at(40),
        };
        for (seq, id) in [(span.first, span.first_ident), (span.last, span.last_ident)] {
            match by_seq.get(&seq) {
                Some(h) if ident(h) == id => {}
                Some(_) => return Err(format!("entry {seq} of the manifest is another batch")),
                None => return Err(format!("the manifest has no entry {seq}")),
            }
        }
        if span.first > span.last {
            return Err("its span is empty".into());
        }
        drop(r);
        let input = Input {
            path: path.to_owned(),
            file,
            span,
            count,
        };
        let mut summary = Summary::new(count);
        for k in input.keys() {
            summary.add(k.map_err(|e| e.to_string())?);
        }
        let Input { path, file, .. } = input;
        Ok(summary.into_run(path, file, span))
    }
}

/// The keys of `bytes` as a run stores them (16 bytes each, little-endian).
fn decode(bytes: &[u8]) -> impl DoubleEndedIterator<Item = u128> + '_ {
    bytes
        .chunks_exact(16)
        .map(|c| u128::from_le_bytes(c.try_into().unwrap_or_default()))
}

/// Removes the file at `path`, if it is still there.
fn remove_if_there(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", path)(e)),
        _ => Ok(()),
    }
}

/// What memory keeps of a run, built as its keys go by in order: its filter, and every
/// [`STRIDE`]th key.
struct Summary {
    filter: Filter,
    sparse: Vec<u128>,
    seen: u64,
}

impl Summary {
    /// For up to `keys` keys.
    fn new(keys: u64) -> Self {
        Summary {
            filter: Filter::with_keys(keys),
            sparse: Vec::with_capacity((keys as usize).div_ceil(STRIDE)),
            seen: 0,
        }
    }

    fn add(&mut self, key: u128) {
        if self.seen.is_multiple_of(STRIDE as u64) {
            self.sparse.push(key);
        }
        self.filter.add(key);
        self.seen += 1;
    }

    /// The run of the keys added, in `file` at `path`.
    fn into_run(self, path: PathBuf, file: File, span: Span) -> Run {
        Run {
            path,
            file,
            span,
            count: self.seen,
            filter: self.filter,
            sparse: self.sparse,
        }
    }
}

/// A run's file and what is known of it, read when it is opened and by a merge.
#[derive(Debug)]
struct Input {
    path: PathBuf,
    file: File,
    span: Span,
    count: u64,
}

impl Input {
    /// The run's keys, read in order from its file (by position: the file is shared), and
    /// checked as they are read: in order, and against the file's checksum at the end. A
    /// run damaged since it was opened ends in an error, so a merge never copies damage
    /// into a run that verifies.
    fn keys(&self) -> impl Iterator<Item = Result<u128>> + '_ {
        const BLOCK: u64 = 4096;
        let mut buf: Vec<u128> = Vec::new();
        let mut next = 0u64;
        let mut hash = Xxh3::new();
        let mut started = false;
        let mut ended = false;
        let mut prev: Option<u128> = None;
        let damaged = |why: String| Error::Corrupt {
            path: self.path.clone(),
            detail: why,
        };
        std::iter::from_fn(move || {
            if ended {
                return None;
            }
            let read = |at: u64, len: usize| -> Result<Vec<u8>> {
                let mut bytes = vec![0u8; len];
                self.file
                    .read_exact_at(&mut bytes, at)
                    .map_err(io("read dedupe run", &self.path))?;
                Ok(bytes)
            };
            if !started {
                started = true;
                match read(0, HEADER as usize) {
                    Ok(h) => hash.update(&h),
                    Err(e) => {
                        ended = true;
                        return Some(Err(e));
                    }
                }
            }
            if buf.is_empty() {
                if next == self.count {
                    ended = true;
                    let check = read(HEADER + self.count * 16, TRAILER as usize).and_then(|t| {
                        hash.update(&t[..8]);
                        let mut n = [0u8; 8];
                        n.copy_from_slice(&t[..8]);
                        if u64::from_le_bytes(n) != self.count {
                            return Err(damaged(format!(
                                "it says {} keys, its length {}",
                                u64::from_le_bytes(n),
                                self.count
                            )));
                        }
                        let mut sum = [0u8; 16];
                        sum.copy_from_slice(&t[8..]);
                        if u128::from_le_bytes(sum) == hash.digest128() {
                            Ok(())
                        } else {
                            Err(damaged("its checksum does not match its bytes".into()))
                        }
                    });
                    return check.err().map(Err);
                }
                let n = (self.count - next).min(BLOCK);
                let bytes = match read(HEADER + next * 16, n as usize * 16) {
                    Ok(b) => b,
                    Err(e) => {
                        ended = true;
                        return Some(Err(e));
                    }
                };
                hash.update(&bytes);
                next += n;
                buf = decode(&bytes).rev().collect();
            }
            let k = buf.pop()?;
            if prev.is_some_and(|p| p >= k) {
                ended = true;
                return Some(Err(damaged("its keys are not in order".into())));
            }
            prev = Some(k);
            Some(Ok(k))
        })
    }
}

/// A blocked Bloom filter over dedupe keys (uniformly random already): 16 bits a key in
/// blocks of 512 bits, 7 bits set a key within one block, so a test touches one cache
/// line. About 0.1% of absent keys pass.
#[derive(Debug)]
struct Filter {
    blocks: Vec<[u64; 8]>,
}

impl Filter {
    fn with_keys(n: u64) -> Self {
        let blocks = (n.saturating_mul(16) / 512).max(1) as usize;
        Filter {
            blocks: vec![[0u64; 8]; blocks],
        }
    }

    fn bits(&self, key: u128) -> (usize, [u16; 7]) {
        let hi = (key >> 64) as u64;
        let block = ((u128::from(hi) * self.blocks.len() as u128) >> 64) as usize;
        let lo = key as u64;
        let mut bits = [0u16; 7];
        for (i, b) in bits.iter_mut().enumerate() {
            *b = ((lo >> (i * 9)) & 511) as u16;
        }
        (block, bits)
    }

    fn add(&mut self, key: u128) {
        let (block, bits) = self.bits(key);
        if let Some(words) = self.blocks.get_mut(block) {
            for b in bits {
                words[usize::from(b / 64)] |= 1 << (b % 64);
            }
        }
    }

    fn may_contain(&self, key: u128) -> bool {
        let (block, bits) = self.bits(key);
        self.blocks.get(block).is_none_or(|words| {
            bits.iter()
                .all(|&b| words[usize::from(b / 64)] & (1 << (b % 64)) != 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;
    use veritrace_verify::Digest;

    use super::*;

    fn header(seq: u64) -> BatchHeader {
        BatchHeader {
            batch_id: format!("s-p000-{seq:012}-{seq:012}"),
            stream: "s".into(),
            partition: 0,
            seq,
            first_offset: seq,
            last_offset: seq,
            records: 1,
            size: 1,
            // Empty batches share a root: the identity must not rest on it alone.
            root: Digest([(seq % 3) as u8; 32]),
            prev_root: Digest::ZERO,
            sealed_at: String::new(),
            retracts: Vec::new(),
        }
    }

    /// A partition in miniature: ids accepted, batches sealed, the process restarted
    /// (reading the ids of the entries no run covers, as `PartitionProcessor::open` reads
    /// them from the events files), and a model of what must be found.
    struct Partition {
        dir: tempfile::TempDir,
        hot: usize,
        manifest: Vec<BatchHeader>,
        ids_of: Vec<Vec<u128>>,
        open: Vec<u128>,
        index: IdIndex,
        model: HashSet<u128>,
    }

    impl Partition {
        fn new(hot: usize) -> Self {
            let dir = tempfile::tempdir().expect("tmp");
            let (index, _) =
                IdIndex::open(Some(dir.path().join("runs")), &[], hot, 16).expect("open");
            Partition {
                dir,
                hot,
                manifest: Vec::new(),
                ids_of: Vec::new(),
                open: Vec::new(),
                index,
                model: HashSet::new(),
            }
        }
        fn runs_dir(&self) -> PathBuf {
            self.dir.path().join("runs")
        }
        fn insert(&mut self, key: u128) {
            let fresh = self.index.insert(key).expect("insert");
            assert_eq!(fresh, self.model.insert(key), "key {key:x}");
            if fresh {
                self.open.push(key);
            }
        }
        /// A seal, after which the runs due are written and merged.
        fn seal(&mut self) {
            let h = self.seal_no_wait();
            self.index.settle(&h);
        }
        /// A seal, with runs left being written and merged in the background.
        fn seal_no_wait(&mut self) -> BatchHeader {
            let h = header(self.manifest.len() as u64);
            self.ids_of.push(std::mem::take(&mut self.open));
            self.manifest.push(h.clone());
            self.index.sealed(&h);
            h
        }
        /// A restart: what was not sealed is gone (it is read again from Kafka).
        fn reopen(&mut self) {
            for k in self.open.drain(..) {
                self.model.remove(&k);
            }
            // The process ends first (its merge stops), as a partition's lock makes sure.
            self.index = IdIndex::new(None, 1, 0);
            let (mut index, covered) =
                IdIndex::open(Some(self.runs_dir()), &self.manifest, self.hot, 16).expect("open");
            let unread: Vec<&BatchHeader> = self
                .manifest
                .iter()
                .filter(|h| !covered.contains(&h.seq))
                .collect();
            if let Some(first) = unread.first() {
                index.loading_from(first, 0);
            }
            for h in unread {
                for k in &self.ids_of[h.seq as usize] {
                    index.load(*k);
                }
            }
            self.index = index;
        }
        fn run_files(&self) -> Vec<PathBuf> {
            let mut v: Vec<PathBuf> = std::fs::read_dir(self.runs_dir())
                .expect("list")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|x| x == "ids"))
                .collect();
            v.sort();
            v
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16),
        Seal,
        SealNoWait,
        Reopen,
        /// Flips a byte of a run file (then restarts, when damage is found).
        Damage(u16, u64),
    }

    fn key(n: u16) -> u128 {
        id_key(&format!("event-{n}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the order of ids, seals, restarts and damaged runs: an id is a
        /// duplicate exactly when it was accepted before and sealed (or is in the open
        /// batch).
        #[test]
        fn finds_exactly_the_ids_accepted_before(
            hot in 1usize..6,
            ops in proptest::collection::vec(prop_oneof![
                8 => (0u16..400).prop_map(Op::Insert),
                2 => Just(Op::Seal),
                2 => Just(Op::SealNoWait),
                1 => Just(Op::Reopen),
                1 => (any::<u16>(), any::<u64>()).prop_map(|(f, b)| Op::Damage(f, b)),
            ], 1..300),
        ) {
            let mut p = Partition::new(hot);
            for op in ops {
                let mut settled = false;
                match op {
                    Op::Insert(n) => p.insert(key(n)),
                    Op::Seal => {
                        p.seal();
                        settled = true;
                    }
                    Op::SealNoWait => {
                        p.seal_no_wait();
                    }
                    Op::Reopen => p.reopen(),
                    Op::Damage(f, b) => {
                        let files = p.run_files();
                        if let Some(path) = files.get(usize::from(f) % files.len().max(1)) {
                            let mut bytes = std::fs::read(path).expect("read");
                            let i = (b % bytes.len() as u64) as usize;
                            bytes[i] ^= 0x20;
                            std::fs::write(path, bytes).expect("write");
                            p.reopen();
                        }
                    }
                }
                // Runs stay few once merges are done: sizes at least double from the
                // newest to the oldest.
                if settled {
                    prop_assert!(p.index.runs() <= 2 + (p.model.len().max(1)).ilog2() as usize);
                }
            }
            for n in 0..400 {
                prop_assert_eq!(p.index.contains(key(n)).expect("contains"), p.model.contains(&key(n)));
            }
        }
    }

    /// Runs of many stretches: every id found, no other, before and after a restart; the
    /// memory holds only what came after the last run.
    #[test]
    fn large_runs_are_read_by_stretches() {
        let mut p = Partition::new(1_000);
        for n in 0..20_000u32 {
            let k = id_key(&format!("a-{n}"));
            assert!(p.index.insert(k).expect("insert"));
            p.open.push(k);
            p.model.insert(k);
            if n % 100 == 99 {
                p.seal();
            }
        }
        assert!(p.index.runs() >= 2, "{} runs", p.index.runs());
        assert!(
            p.index.hot_len() < 1_000,
            "{} ids in memory",
            p.index.hot_len()
        );
        // What the metrics report: every id once, and a memory of a few bytes an id in runs.
        let s = p.index.stats();
        assert_eq!(s.ids_in_memory + s.ids_in_runs, 20_000, "{s:?}");
        assert_eq!(s.runs, p.index.runs() as u64);
        assert_eq!(s.failures, 0);
        let all_in_memory = set_bytes(&p.model.iter().copied().collect::<IdSet>());
        assert!(
            s.memory_bytes > s.ids_in_runs * 2 && s.memory_bytes < all_in_memory / 2,
            "{s:?}, {all_in_memory} bytes all in memory"
        );
        for round in 0..2 {
            for n in 0..20_000u32 {
                let (ours, other) = (id_key(&format!("a-{n}")), id_key(&format!("b-{n}")));
                assert!(
                    p.index.contains(ours).expect("contains"),
                    "round {round}: a-{n}"
                );
                assert!(
                    !p.index.contains(other).expect("contains"),
                    "round {round}: b-{n}"
                );
            }
            p.reopen();
        }
    }

    /// A run that cannot be written leaves its ids in memory, found as before, and the
    /// next seal writes them.
    #[test]
    fn ids_whose_run_cannot_be_written_stay_in_memory() {
        let mut p = Partition::new(4);
        for n in 0..4 {
            p.insert(key(n));
        }
        std::fs::remove_dir_all(p.runs_dir()).expect("remove the runs' directory");
        p.seal();
        assert_eq!(p.index.runs(), 0);
        assert_eq!(p.index.hot_len(), 4);
        assert_eq!(p.index.stats().failures, 1);
        for n in 0..4 {
            assert!(p.index.contains(key(n)).expect("contains"), "{n}");
        }
        std::fs::create_dir_all(p.runs_dir()).expect("directory back");
        p.insert(key(4));
        p.seal();
        assert_eq!(p.index.runs(), 1);
        assert_eq!(p.index.hot_len(), 0);
        let s = p.index.stats();
        assert_eq!((s.ids_in_runs, s.failures), (5, 1), "{s:?}");
        p.reopen();
        for n in 0..5 {
            assert!(
                !p.index.insert(key(n)).expect("insert"),
                "{n} accepted twice"
            );
        }
    }

    /// The filter passes every key added and few others (a pass costs a read of 4 KiB).
    #[test]
    fn the_filter_passes_few_absent_keys() {
        let n = 100_000u64;
        let mut f = Filter::with_keys(n);
        for i in 0..n {
            f.add(id_key(&format!("in-{i}")));
        }
        assert!((0..n).all(|i| f.may_contain(id_key(&format!("in-{i}")))));
        let passed = (0..n)
            .filter(|i| f.may_contain(id_key(&format!("out-{i}"))))
            .count();
        assert!(passed < 250, "{passed} of {n} absent keys pass");
    }

    /// A damaged run is set aside, reported and never used; the ids it held are read
    /// again, and nothing accepted before is accepted twice.
    #[test]
    fn a_damaged_run_is_set_aside_and_its_ids_read_again() {
        let mut p = Partition::new(4);
        for n in 0..64 {
            p.insert(key(n));
            p.seal();
        }
        let files = p.run_files();
        let victim = files.first().expect("a run").clone();
        let mut bytes = std::fs::read(&victim).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&victim, bytes).expect("write");
        p.reopen();
        assert!(victim.with_extension("ids.damaged").exists());
        assert!(!victim.exists());
        for n in 0..64 {
            assert!(
                !p.index.insert(key(n)).expect("insert"),
                "{n} accepted twice"
            );
        }
        assert!(p.index.insert(key(64)).expect("insert"));
    }

    /// A run damaged after it was opened fails the merge that reads it: the damage is not
    /// copied into a new run that would verify.
    #[test]
    fn a_merge_refuses_an_input_damaged_since_it_was_opened() {
        let dir = tempfile::tempdir().expect("tmp");
        let never = AtomicBool::new(false);
        let span = |seq: u64| Span {
            first: seq,
            last: seq,
            first_ident: ident(&header(seq)),
            last_ident: ident(&header(seq)),
        };
        let keys = |r: std::ops::Range<u128>| r.map(|k| Ok(k << 64)).collect::<Vec<_>>();
        let a = Run::write(dir.path(), span(0), 3, keys(1..4).into_iter(), &never).expect("a");
        let b = Run::write(dir.path(), span(1), 3, keys(4..7).into_iter(), &never).expect("b");
        let merge = || {
            Run::merge(
                dir.path(),
                &a.input().expect("a"),
                &b.input().expect("b"),
                &never,
            )
        };
        let merged = merge().expect("merge");
        assert_eq!(merged.count, 6);
        std::fs::remove_file(&merged.path).expect("remove");
        // One byte of a key of `b`, changed behind the index's back.
        let mut bytes = std::fs::read(&b.path).expect("read");
        bytes[HEADER as usize + 20] ^= 4;
        std::fs::write(&b.path, bytes).expect("write");
        let err = merge().expect_err("merged a damaged run");
        assert!(err.to_string().contains("checksum"), "{err}");
        assert!(
            !dir.path()
                .join(span(0).file_name().replace("0.ids", "1.ids"))
                .exists()
        );
    }

    /// Runs that name other batches than the manifest has (a data directory restored from
    /// a backup older than its runs) are not used.
    #[test]
    fn runs_of_other_batches_are_not_used() {
        let mut p = Partition::new(2);
        for n in 0..16 {
            p.insert(key(n));
            p.seal();
        }
        assert!(p.index.runs() > 0);
        // The manifest of another history: same sequence numbers, other batches.
        p.manifest = (0..16)
            .map(|s| {
                let mut h = header(s);
                h.batch_id.push('x');
                h
            })
            .collect();
        p.reopen();
        assert_eq!(p.index.runs(), 0);
        assert_eq!(p.run_files().len(), 0);
        for n in 0..16 {
            assert!(p.index.contains(key(n)).expect("contains"));
        }
    }

    /// What a merge that stopped before removing its inputs leaves behind is removed at
    /// the next open, and the merged run answers for it.
    #[test]
    fn inputs_left_by_a_merge_are_removed() {
        let mut p = Partition::new(2);
        for n in 0..2 {
            p.insert(key(n));
            p.insert(key(100 + n));
            p.seal();
        }
        let before: Vec<(PathBuf, Vec<u8>)> = p
            .run_files()
            .into_iter()
            .map(|f| {
                let b = std::fs::read(&f).expect("read");
                (f, b)
            })
            .collect();
        assert_eq!(before.len(), 1);
        for n in 2..4 {
            p.insert(key(n));
            p.insert(key(100 + n));
            p.seal();
        }
        let merged = p.run_files();
        assert!(
            !before[0].0.exists(),
            "the input is removed after the merge"
        );
        std::fs::write(&before[0].0, &before[0].1).expect("put back");
        p.reopen();
        assert_eq!(p.run_files(), merged);
        for n in 0..4 {
            assert!(p.index.contains(key(n)).expect("contains"));
            assert!(p.index.contains(key(100 + n)).expect("contains"));
        }
    }
}
