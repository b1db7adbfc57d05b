use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use tracing::instrument;
use veritrace_verify::{Digest, merkle};

use crate::tables::{EDGES, EVENTS, REJECTED, Table};
use crate::{BatchHeader, DataDir, Error, Result};

/// The batch id: derived from the input position only, so that re-sealing the same
/// records after a crash produces the same id and overwrites the same files.
pub fn batch_id(stream: &str, partition: u32, first_offset: u64, last_offset: u64) -> String {
    format!("{stream}-p{partition:03}-{first_offset:012}-{last_offset:012}")
}

/// What a processor hands over to seal one batch.
#[derive(Debug)]
pub struct SealInput<'a> {
    /// First input offset covered (accepted or rejected).
    pub first_offset: u64,
    /// Last input offset covered, inclusive.
    pub last_offset: u64,
    /// Input records in the range (accepted + rejected); offsets may have gaps.
    pub records: u64,
    /// Leaf hashes of the accepted events, in leaf order (row order of `events`).
    pub leaf_hashes: &'a [Digest],
    /// Accepted events, one row per leaf, already carrying batch id, leaf index and hash.
    pub events: RecordBatch,
    /// Rejected records of the range, if any.
    pub rejected: Option<RecordBatch>,
    /// Trace-graph edges of the accepted events, if any.
    pub edges: Option<RecordBatch>,
    /// Seal time, RFC 3339 UTC.
    pub sealed_at: String,
    /// The events the batch's error declarations declare in error (the header's index).
    pub retracts: Vec<veritrace_verify::bundle::Retraction>,
}

/// Seals the batches of one partition of one stream, keeping its hash chain.
#[derive(Debug)]
pub struct BatchWriter {
    dir: DataDir,
    stream: String,
    partition: u32,
    manifest: PathBuf,
    last: Option<BatchHeader>,
    /// Lines in the partition's digest log (as read at open, plus those written since).
    digest_lines: u64,
}

impl BatchWriter {
    /// Opens the partition's manifest, checking its whole hash chain, and removes files of
    /// batches that were written but never committed to the manifest (a crash between the
    /// Parquet rename and the manifest append); they will be sealed again from the input.
    pub fn open(dir: &DataDir, stream: &str, partition: u32) -> Result<Self> {
        if stream.is_empty()
            || !stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(Error::Invalid(format!(
                "stream name {stream:?} must be non-empty [A-Za-z0-9._-]"
            )));
        }
        let manifest = dir.manifest_file(stream, partition);
        dir.repair_torn_tail(&manifest)?;
        // A digest line torn by a crash was never followed by its commit line.
        dir.repair_torn_tail(&dir.batch_files_log(stream, partition))?;
        let headers: Vec<BatchHeader> = dir.read_jsonl(&manifest)?;
        check_chain(&manifest, stream, partition, &headers)?;
        check_references(dir, &manifest, stream, partition, &headers)?;
        let digest_lines = dir
            .read_jsonl::<serde_json::Value>(&dir.batch_files_log(stream, partition))?
            .len() as u64;
        let w = BatchWriter {
            dir: dir.clone(),
            stream: stream.to_owned(),
            partition,
            manifest,
            last: headers.last().cloned(),
            digest_lines,
        };
        w.remove_uncommitted()?;
        Ok(w)
    }

    fn remove_uncommitted(&self) -> Result<()> {
        let after = self.last.as_ref().map(|h| h.last_offset);
        let prefix = format!("{}-p{:03}-", self.stream, self.partition);
        for d in [
            self.dir.events_dir(),
            self.dir.rejected_dir(),
            self.dir.edges_dir(),
        ] {
            // Data directories made before the edges table have no edges/ yet.
            if !self.dir.is_remote() && !d.exists() {
                std::fs::create_dir_all(&d).map_err(Error::io("create directory", &d))?;
            }
            for (path, _) in self.dir.list_files(&d)? {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let Some(rest) = name.strip_prefix(&prefix) else {
                    continue;
                };
                let first: Option<u64> = rest.split('-').next().and_then(|s| s.parse().ok());
                let stale = name.ends_with(".tmp")
                    || matches!((first, after), (Some(f), Some(a)) if f > a)
                    || (first.is_some() && after.is_none());
                if stale {
                    // Never deleted: nothing references it (checked at open), but a person
                    // may still want it; it is sealed again from the input.
                    let to = quarantine(&self.dir, &path)?;
                    tracing::warn!(file = %path.display(), moved_to = %to.display(), "batch file never committed to the manifest moved to quarantine");
                }
            }
        }
        Ok(())
    }

    /// The last committed batch header, if any.
    pub fn last(&self) -> Option<&BatchHeader> {
        self.last.as_ref()
    }

    /// Offsets up to and including this one are durable (sealed); resume after it.
    pub fn committed_offset(&self) -> Option<u64> {
        self.last.as_ref().map(|h| h.last_offset)
    }

    /// Writes the batch's files atomically, then appends its header to the manifest (the
    /// commit point) and returns it.
    #[instrument(skip_all, fields(stream = %self.stream, partition = self.partition, first = input.first_offset, last = input.last_offset))]
    pub fn seal(&mut self, input: SealInput<'_>) -> Result<BatchHeader> {
        if input.last_offset < input.first_offset {
            return Err(Error::Invalid(format!(
                "offsets {}..={} are reversed",
                input.first_offset, input.last_offset
            )));
        }
        if let Some(prev) = &self.last
            && input.first_offset <= prev.last_offset
        {
            return Err(Error::Invalid(format!(
                "batch starting at offset {} overlaps the sealed batch {} (up to offset {})",
                input.first_offset, prev.batch_id, prev.last_offset
            )));
        }
        if input.events.num_rows() != input.leaf_hashes.len() {
            return Err(Error::Invalid(format!(
                "{} event rows but {} leaf hashes",
                input.events.num_rows(),
                input.leaf_hashes.len()
            )));
        }
        let id = batch_id(
            &self.stream,
            self.partition,
            input.first_offset,
            input.last_offset,
        );
        let root = merkle::root(input.leaf_hashes);

        let mut digests = vec![write_parquet(
            &self.dir,
            &self.dir.events_file(&id),
            &input.events,
            &EVENTS,
        )?];
        if let Some(rej) = &input.rejected
            && rej.num_rows() > 0
        {
            digests.push(write_parquet(
                &self.dir,
                &self.dir.rejected_file(&id),
                rej,
                &REJECTED,
            )?);
        }
        if let Some(edges) = &input.edges
            && edges.num_rows() > 0
        {
            digests.push(write_parquet(
                &self.dir,
                &self.dir.edges_file(&id),
                edges,
                &EDGES,
            )?);
        }
        // The files' digests go on record before the commit line names the batch.
        let files = crate::integrity::BatchFiles {
            batch_id: id.clone(),
            files: digests,
        };
        crate::integrity::record_batch_files(
            &self.dir,
            &self.dir.batch_files_log(&self.stream, self.partition),
            self.digest_lines,
            &files,
        )?;
        self.digest_lines += 1;
        let header = BatchHeader {
            batch_id: id,
            stream: self.stream.clone(),
            partition: self.partition,
            seq: self.last.as_ref().map_or(0, |h| h.seq + 1),
            first_offset: input.first_offset,
            last_offset: input.last_offset,
            records: input.records,
            size: input.leaf_hashes.len() as u64,
            root,
            prev_root: self.last.as_ref().map_or(Digest::ZERO, |h| h.root),
            sealed_at: input.sealed_at,
            retracts: input.retracts,
        };
        self.dir.append_jsonl(&self.manifest, header.seq, &header)?;
        self.last = Some(header.clone());
        Ok(header)
    }
}

/// Moves `path` into `quarantine/` (keeping its name, suffixed when taken) and returns where.
pub(crate) fn quarantine(dir: &DataDir, path: &Path) -> Result<PathBuf> {
    let q = dir.quarantine_dir();
    if dir.is_remote() {
        // No renames on an object store: a copy under quarantine/, then the original goes.
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "unnamed".into());
        let Some(bytes) = dir.read_file(path)? else {
            return Ok(path.to_owned());
        };
        let mut n = 0;
        loop {
            let to = if n == 0 {
                q.join(&name)
            } else {
                q.join(format!("{name}.{n}"))
            };
            if dir.write_new(&to, bytes.clone())? {
                dir.remove_file(path)?;
                return Ok(to);
            }
            n += 1;
        }
    }
    std::fs::create_dir_all(&q).map_err(Error::io("create directory", &q))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unnamed".into());
    let mut to = q.join(&name);
    let mut n = 1;
    while to.exists() {
        to = q.join(format!("{name}.{n}"));
        n += 1;
    }
    std::fs::rename(path, &to).map_err(Error::io("move to quarantine", path))?;
    crate::fsutil::sync_dir(&q)?;
    Ok(to)
}

/// Every batch of this partition that a later record names (an epoch, a compaction) must
/// be in the manifest. A manifest shorter than that was truncated or replaced: writing on
/// would delete committed files as "never committed" and re-seal over anchored batches, so
/// the writer stops and says what is missing.
pub(crate) fn check_references(
    dir: &DataDir,
    manifest: &Path,
    stream: &str,
    partition: u32,
    headers: &[BatchHeader],
) -> Result<()> {
    let prefix = format!("{stream}-p{partition:03}-");
    let have: std::collections::HashSet<&str> =
        headers.iter().map(|h| h.batch_id.as_str()).collect();
    let epochs = crate::EpochLog::read(dir)?;
    let log = crate::compact::CompactionLog::read(dir)?;
    let mut missing: Vec<(String, String)> = Vec::new();
    for e in epochs.records() {
        for b in &e.batch_ids {
            if b.starts_with(&prefix) && !have.contains(b.as_str()) {
                missing.push((b.clone(), format!("epoch {}", e.epoch_id)));
            }
        }
    }
    for b in log.covered_batches() {
        if b.starts_with(&prefix) && !have.contains(b) {
            missing.push((b.to_owned(), "a compaction".into()));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort();
    let shown: Vec<String> = missing
        .iter()
        .take(5)
        .map(|(b, by)| format!("{b} (named by {by})"))
        .collect();
    Err(Error::Corrupt {
        path: manifest.to_owned(),
        detail: format!(
            "the manifest holds {} batches but {} committed batch(es) it lacks are named by later records: {}{}; \
             it was truncated or replaced. Nothing was changed: restore the manifest from a backup \
             (`veritrace check --data DIR` lists all damage)",
            headers.len(),
            missing.len(),
            shown.join(", "),
            if missing.len() > shown.len() {
                ", ..."
            } else {
                ""
            }
        ),
    })
}

/// Writes a batch's Parquet file and returns its digest. Locally the file replaces any
/// leftover of the same name atomically; on an object store it is created only if absent
/// (files of uncommitted batches were set aside at open, so one there now was written by
/// another owner of the partition: this writer has lost it).
fn write_parquet(
    dir: &DataDir,
    path: &Path,
    batch: &RecordBatch,
    table: &Table,
) -> Result<crate::integrity::FileDigest> {
    let props = table.fresh_writer_properties(batch.num_rows());
    let pe = |source| Error::Parquet {
        path: path.to_owned(),
        source,
    };
    // Room for the whole file at once: encoded and compressed, it is smaller than the
    // batch in memory, and capacity never written costs no memory. Grown by doubling
    // instead, the file was copied about twice over by the reallocations.
    let mut buf = Vec::with_capacity(batch.get_array_memory_size());
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).map_err(pe)?;
    w.write(batch).map_err(pe)?;
    w.close().map_err(pe)?;
    let digest = crate::integrity::digest_bytes(dir, path, &buf);
    if dir.is_remote() {
        if !dir.write_new(path, buf)? {
            return Err(Error::Lost {
                path: path.to_owned(),
                detail: "another writer created this batch file: the partition has a new owner"
                    .into(),
            });
        }
    } else {
        dir.write_replace(path, buf)?;
    }
    Ok(digest)
}

/// Checks one partition's manifest: consecutive sequence numbers, increasing offsets,
/// each batch chained to the previous root, ids derived from offsets.
pub(crate) fn check_chain(
    path: &Path,
    stream: &str,
    partition: u32,
    headers: &[BatchHeader],
) -> Result<()> {
    let mut prev: Option<&BatchHeader> = None;
    for h in headers {
        let bad = |detail: String| Error::Corrupt {
            path: path.to_owned(),
            detail: format!("batch {}: {detail}", h.batch_id),
        };
        if h.stream != stream || h.partition != partition {
            return Err(bad(format!(
                "belongs to {}-p{} not {stream}-p{partition}",
                h.stream, h.partition
            )));
        }
        if h.batch_id != batch_id(stream, partition, h.first_offset, h.last_offset) {
            return Err(bad("id does not match its offsets".into()));
        }
        let (want_seq, want_prev) = prev.map_or((0, Digest::ZERO), |p| (p.seq + 1, p.root));
        if h.seq != want_seq {
            return Err(bad(format!(
                "sequence {} where {want_seq} was expected (a batch is missing)",
                h.seq
            )));
        }
        if h.prev_root != want_prev {
            return Err(bad(format!(
                "previous root {} does not match {want_prev}",
                h.prev_root
            )));
        }
        if let Some(p) = prev
            && h.first_offset <= p.last_offset
        {
            return Err(bad(format!(
                "offsets overlap the previous batch {}",
                p.batch_id
            )));
        }
        prev = Some(h);
    }
    Ok(())
}
