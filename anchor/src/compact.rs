//! Compaction: sealing writes one small events file per batch; the compactor rewrites
//! committed batches into large files sorted by trace code (bloom filters on event id and
//! trace code, page index), so lookups and traces touch few files and row groups.
//!
//! Nothing a proof needs changes: every row keeps its batch id, leaf index, leaf hash and
//! canonical JSON, and each batch's leaf hashes (in leaf order) are kept beside it in
//! `leaves/{batch_id}.leaves` (32 bytes per leaf), checked against the sealed batch root
//! whenever a proof is built.
//!
//! Queries never see an event twice or miss one: the commit point is one line in
//! `compacted/compactions.jsonl`. Readers take the committed compacted files plus the batch
//! files of batches no committed compaction covers, so before the line they read the small
//! files and after it the large one. Small files are deleted only a grace period after the
//! commit (queries planned before it may still be reading them); a crash at any point
//! leaves either an uncommitted compacted file (removed by the next run) or superseded
//! small files (removed by the next run after the grace period).

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use arrow_array::{Array, ArrayRef, FixedSizeBinaryArray, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;
use tracing::instrument;
use veritrace_verify::Digest;

use crate::clock::now_rfc3339;
use crate::fsutil::write_atomic;
use crate::merge::{merge, merge_candidates};
use crate::tables::EVENTS;
use crate::{BatchHeader, DataDir, Error, Result};

pub use crate::compaction_log::{
    CompactOptions, Compaction, CompactionLog, KeyRange, LiveFile, Merge, RunFile, SORT_KEY,
};

/// What a compaction run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactReport {
    /// Compacted files written and committed.
    pub files_written: usize,
    /// Batches they cover.
    pub batches_compacted: usize,
    /// Rows rewritten.
    pub rows: u64,
    /// Superseded small files deleted.
    pub small_files_deleted: usize,
    /// Uncommitted compacted files (from a crash) removed.
    pub orphans_removed: usize,
    /// Compacted files merged into a sorted run.
    pub files_merged: usize,
    /// Files of the sorted runs written.
    pub run_files_written: usize,
    /// Compacted files replaced by a merge and deleted.
    pub merged_files_deleted: usize,
}

/// Reads the committed batch compactions (a torn last line is ignored).
pub fn read_compactions(dir: &DataDir) -> Result<Vec<Compaction>> {
    Ok(CompactionLog::read(dir)?.compactions)
}

/// An events file to scan, with its key range when known (compacted files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFile {
    /// The Parquet file.
    pub path: PathBuf,
    /// Key range (None: unknown, always scanned).
    pub keys: Option<KeyRange>,
}

/// The events files a reader should scan: live compacted files, then the batch files of
/// committed batches no compaction covers.
pub fn event_files(dir: &DataDir, headers: &[BatchHeader], log: &CompactionLog) -> Vec<EventFile> {
    let covered = log.covered_batches();
    let mut files: Vec<EventFile> = log
        .live_files()
        .into_iter()
        .map(|f| EventFile {
            path: dir.compacted_dir().join(&f.file),
            keys: f.keys,
        })
        .collect();
    // On an object store, one listing instead of a request per batch.
    let listed: Option<std::collections::HashSet<PathBuf>> = dir.is_remote().then(|| {
        dir.list_files(&dir.events_dir())
            .map(|v| v.into_iter().map(|(p, _)| p).collect())
            .unwrap_or_default()
    });
    files.extend(
        headers
            .iter()
            .filter(|h| !covered.contains(h.batch_id.as_str()))
            .map(|h| dir.events_file(&h.batch_id))
            .filter(|p| match &listed {
                Some(l) => l.contains(p),
                None => p.exists(),
            })
            .map(|path| EventFile { path, keys: None }),
    );
    files
}

/// A batch's leaf hashes in leaf order: from its events file while it exists, else from
/// the sidecar compaction wrote. The caller checks them against the sealed root.
pub fn batch_leaves(dir: &DataDir, batch_id: &str) -> Result<Vec<Digest>> {
    let events = dir.events_file(batch_id);
    if dir.is_remote() {
        if let Some(bytes) = dir.read_file(&events)? {
            return leaves_from_parquet(&events, bytes::Bytes::from(bytes));
        }
    } else if events.exists() {
        let f = File::open(&events).map_err(Error::io("open", &events))?;
        return leaves_from_parquet(&events, f);
    }
    let side = dir.leaves_file(batch_id);
    let bytes = dir.read_file(&side)?.ok_or_else(|| Error::Corrupt {
        path: side.clone(),
        detail: format!("batch {batch_id} has neither its events file nor its leaf hashes"),
    })?;
    if bytes.len() % 32 != 0 {
        return Err(Error::Corrupt {
            path: side,
            detail: format!(
                "{} bytes is not a whole number of 32-byte hashes",
                bytes.len()
            ),
        });
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| {
            let mut d = [0u8; 32];
            d.copy_from_slice(c);
            Digest(d)
        })
        .collect())
}

fn leaves_from_parquet<R: parquet::file::reader::ChunkReader + 'static>(
    path: &std::path::Path,
    f: R,
) -> Result<Vec<Digest>> {
    let bad = |detail: String| Error::Corrupt {
        path: path.to_owned(),
        detail,
    };
    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| bad(e.to_string()))?;
    let idx = b
        .schema()
        .index_of("leaf_hash")
        .map_err(|e| bad(e.to_string()))?;
    let mask = parquet::arrow::ProjectionMask::roots(b.parquet_schema(), [idx]);
    let mut out = Vec::new();
    for batch in b
        .with_projection(mask)
        .build()
        .map_err(|e| bad(e.to_string()))?
    {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let a = batch
            .column(0)
            .as_any()
            .downcast_ref::<FixedSizeBinaryArray>()
            .ok_or_else(|| bad("leaf_hash is not FixedSizeBinary(32)".into()))?;
        for i in 0..a.len() {
            let h = <[u8; 32]>::try_from(a.value(i)).map_err(|_| bad("leaf hash length".into()))?;
            out.push(Digest(h));
        }
    }
    Ok(out)
}

fn read_all(dir: &DataDir, path: &std::path::Path) -> Result<Vec<RecordBatch>> {
    let f = dir.source(path)?;
    let r = ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| b.build())
        .map_err(|source| Error::Parquet {
            path: path.to_owned(),
            source,
        })?;
    r.collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Corrupt {
            path: path.to_owned(),
            detail: e.to_string(),
        })
}

/// Runs one compaction pass over a data directory. One compactor at a time per directory
/// (it takes `compacted/compactor.lock`); returns `Ok(None)` when another holds it.
#[instrument(skip_all)]
pub fn compact(dir: &DataDir, opts: &CompactOptions) -> Result<Option<CompactReport>> {
    if !dir.is_remote() {
        std::fs::create_dir_all(dir.compacted_dir())
            .map_err(Error::io("create directory", dir.compacted_dir()))?;
        std::fs::create_dir_all(dir.leaves_dir())
            .map_err(Error::io("create directory", dir.leaves_dir()))?;
    }
    let holder = format!("compactor (pid {})", std::process::id());
    let Some(_lock) = dir.try_lock(&dir.compactor_lock_file(), &holder)? else {
        return Ok(None);
    };
    dir.repair_torn_tail(&dir.compactions_file())?;
    let mut report = CompactReport::default();
    let done = CompactionLog::read(dir)?;
    report.orphans_removed = remove_orphans(dir, &done)?;
    delete_superseded(dir, &done, opts.grace, &mut report)?;

    let covered = done.covered_batches();
    let present: std::collections::HashSet<PathBuf> = dir
        .list_files(&dir.events_dir())?
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let mut todo: Vec<BatchHeader> = dir
        .all_batch_headers()?
        .into_iter()
        .filter(|h| {
            h.stream != crate::AUDIT_STREAM
                && !covered.contains(h.batch_id.as_str())
                && present.contains(&dir.events_file(&h.batch_id))
        })
        .collect();
    if todo.len() < opts.min_files.max(1) {
        todo.clear();
    }
    todo.sort_by(|a, b| (&a.stream, a.partition, a.seq).cmp(&(&b.stream, b.partition, b.seq)));
    let mut unit: Vec<BatchHeader> = Vec::new();
    let mut rows = 0u64;
    let mut units = Vec::new();
    for h in todo {
        rows += h.size;
        unit.push(h);
        if rows >= opts.target_rows as u64 {
            units.push(std::mem::take(&mut unit));
            rows = 0;
        }
    }
    // A last, smaller unit is compacted only when it is worth a file on its own.
    if unit.len() >= opts.min_files.max(1) {
        units.push(unit);
    }
    for u in units.into_iter().take(opts.max_files.max(1)) {
        let c = compact_unit(dir, &u, opts)?;
        report.files_written += 1;
        report.batches_compacted += c.batch_ids.len();
        report.rows += c.rows;
    }
    let log = CompactionLog::read(dir)?;
    if let Some(inputs) = merge_candidates(&log, opts) {
        let m = merge(dir, &inputs, log.merges.len(), opts)?;
        report.files_merged += m.merged.len();
        report.run_files_written += m.files.len();
    }
    let done = CompactionLog::read(dir)?;
    delete_superseded(dir, &done, opts.grace, &mut report)?;
    Ok(Some(report))
}

fn compact_unit(dir: &DataDir, unit: &[BatchHeader], opts: &CompactOptions) -> Result<Compaction> {
    let mut batches = Vec::new();
    for h in unit {
        let path = dir.events_file(&h.batch_id);
        let parts = read_all(dir, &path)?;
        // The leaf hashes in leaf order (row order of the batch file), for proofs.
        let mut side = Vec::with_capacity(h.size as usize * 32);
        for p in &parts {
            let i = p
                .schema()
                .index_of("leaf_hash")
                .map_err(|e| Error::Corrupt {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            let a = p
                .column(i)
                .as_any()
                .downcast_ref::<FixedSizeBinaryArray>()
                .ok_or_else(|| Error::Corrupt {
                    path: path.clone(),
                    detail: "leaf_hash is not FixedSizeBinary(32)".into(),
                })?;
            for r in 0..a.len() {
                side.extend_from_slice(a.value(r));
            }
        }
        if side.len() as u64 != h.size * 32 {
            return Err(Error::Corrupt {
                path,
                detail: format!("{} leaves, the header says {}", side.len() / 32, h.size),
            });
        }
        dir.write_replace(&dir.leaves_file(&h.batch_id), side)?;
        batches.extend(parts);
    }
    let Some(first) = batches.first() else {
        return Err(Error::Invalid("nothing to compact".into()));
    };
    let schema = first.schema();
    let all = arrow_select::concat::concat_batches(&schema, &batches)
        .map_err(|e| Error::Bug(format!("concatenating batches: {e}")))?;
    drop(batches);
    // Sorted by trace code (rows without one last), then event id: a code's events sit
    // together, and so do the events without a code, by id.
    let col = |n: &str| -> Result<ArrayRef> {
        schema
            .index_of(n)
            .map(|i| all.column(i).clone())
            .map_err(|e| Error::Bug(e.to_string()))
    };
    let sort = SORT_KEY.map(|n| -> Result<arrow_ord::sort::SortColumn> {
        Ok(arrow_ord::sort::SortColumn {
            values: col(n)?,
            options: Some(arrow_ord::sort::SortOptions {
                descending: false,
                nulls_first: false,
            }),
        })
    });
    let [a, b] = sort;
    let sort = [a?, b?];
    let idx = arrow_ord::sort::lexsort_to_indices(&sort, None)
        .map_err(|e| Error::Bug(format!("sorting: {e}")))?;
    let sorted = arrow_select::take::take_record_batch(&all, &idx)
        .map_err(|e| Error::Bug(format!("sorting: {e}")))?;
    drop(all);
    let rows = sorted.num_rows() as u64;
    let mut keys = KeyRange::default();
    keys.extend(&sorted)?;
    let (Some(a), Some(b)) = (unit.first(), unit.last()) else {
        return Err(Error::Invalid("empty compaction unit".into()));
    };
    let name = format!(
        "c-{}-p{:03}-{:012}-p{:03}-{:012}.parquet",
        a.stream, a.partition, a.first_offset, b.partition, b.last_offset
    );
    let path = dir.compacted_dir().join(&name);
    let props = EVENTS.writer_properties(opts.row_group_rows);
    let digest = write_out(dir, &path, |f| {
        let pe = |source| Error::Parquet {
            path: path.clone(),
            source,
        };
        let mut w = ArrowWriter::try_new(f, sorted.schema(), Some(props)).map_err(pe)?;
        w.write(&sorted).map_err(pe)?;
        w.close().map_err(pe)?;
        Ok(())
    })?;
    let c = Compaction {
        file: name,
        batch_ids: unit.iter().map(|h| h.batch_id.clone()).collect(),
        rows,
        committed_at: now_rfc3339(),
        keys: Some(keys),
        digest: Some(digest),
    };
    // The commit point.
    append_log_line(dir, &c)?;
    tracing::info!(file = %c.file, batches = c.batch_ids.len(), rows, "compacted");
    Ok(c)
}

/// Appends a line to the compaction log (the commit point of a compaction or a merge), as
/// the entry after the ones there now: the compactor holds the directory's compactor lock
/// (or lease), and on an object store a racing writer loses the create-only append.
pub(crate) fn append_log_line<T: Serialize>(dir: &DataDir, line: &T) -> Result<()> {
    let path = dir.compactions_file();
    let seq = if dir.is_remote() {
        dir.read_jsonl::<serde_json::Value>(&path)?.len() as u64
    } else {
        0
    };
    dir.append_jsonl(&path, seq, line)
}

/// Writes a compacted file and returns its digest: locally in place atomically (streamed
/// to disk); on an object store built in memory and created only if absent (another
/// compactor's file there means this one lost the directory: [`Error::Lost`]).
pub(crate) fn write_out(
    dir: &DataDir,
    path: &std::path::Path,
    body: impl FnOnce(&mut (dyn std::io::Write + Send)) -> Result<()>,
) -> Result<crate::integrity::FileDigest> {
    if dir.is_remote() {
        let mut buf = Vec::new();
        body(&mut buf)?;
        let digest = crate::integrity::digest_bytes(dir, path, &buf);
        if !dir.write_new(path, buf)? {
            return Err(Error::Lost {
                path: path.to_owned(),
                detail: "another compactor wrote this file".into(),
            });
        }
        return Ok(digest);
    }
    write_atomic(path, |f: &mut File| body(f))?;
    crate::integrity::digest_file(dir, path)
}

fn remove_orphans(dir: &DataDir, done: &CompactionLog) -> Result<usize> {
    let named = done.named_files();
    let mut removed = 0;
    let d = dir.compacted_dir();
    for (path, _) in dir.list_files(&d)? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parquet = name.ends_with(".parquet") || name.ends_with(".tmp");
        if parquet && !named.contains(name.as_str()) {
            if name.ends_with(".tmp") {
                // A write interrupted before its rename: never complete, never committed.
                tracing::warn!(file = %path.display(), "removing an unfinished compacted file");
                dir.remove_file(&path)?;
            } else {
                // Complete but not in the log: a crash before the commit line, or a log
                // that lost lines (then this may be the only copy of its rows). Set aside.
                let to = crate::batch::quarantine(dir, &path)?;
                tracing::warn!(file = %path.display(), moved_to = %to.display(), "compacted file not in the compaction log moved to quarantine");
            }
            removed += 1;
        }
    }
    Ok(removed)
}

fn old_enough(committed_at: &str, now: SystemTime, grace: Duration) -> bool {
    humantime::parse_rfc3339_weak(committed_at)
        .ok()
        .and_then(|t| now.duration_since(t).ok())
        .is_some_and(|age| age >= grace)
}

/// Removes `p` if it exists; true when it did.
fn remove_if_present(dir: &DataDir, p: PathBuf) -> Result<bool> {
    if dir.is_remote() {
        if !dir.exists(&p)? {
            return Ok(false);
        }
        dir.remove_file(&p)?;
        return Ok(true);
    }
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::Io {
            op: "remove superseded",
            path: p,
            source: e,
        }),
    }
}

/// Deletes batch files covered by a compaction and compacted files replaced by a merge,
/// once the commit that superseded them is `grace` old, after publishing the Delta tables
/// if the directory publishes them ([`crate::delta`]).
fn delete_superseded(
    dir: &DataDir,
    done: &CompactionLog,
    grace: Duration,
    report: &mut CompactReport,
) -> Result<()> {
    // A published Delta table names the small files until a version removes them: publish
    // first, and delete nothing if that fails (readers of the table would lose files).
    if crate::delta::enabled(dir) {
        crate::delta::publish(dir)?;
    }
    let now = SystemTime::now();
    for c in &done.compactions {
        if old_enough(&c.committed_at, now, grace) {
            for b in &c.batch_ids {
                report.small_files_deleted +=
                    usize::from(remove_if_present(dir, dir.events_file(b))?);
            }
        }
    }
    for m in &done.merges {
        if old_enough(&m.committed_at, now, grace) {
            for f in &m.merged {
                report.merged_files_deleted +=
                    usize::from(remove_if_present(dir, dir.compacted_dir().join(f))?);
            }
        }
    }
    Ok(())
}
