//! Merging compacted files into one sorted run (a k-way merge with bounded memory).
//!
//! Every compacted file is sorted by [`SORT_KEY`], but files from different batch
//! compactions overlap: each holds codes from all over the key space, so a lookup by trace
//! code would have to open every one of them. A merge streams several sorted runs (a batch
//! compaction's file is a run of one file; an earlier merge's files are one run, read in key
//! order) into a new run whose files cover disjoint, ascending key ranges. Each output row is
//! an input row unchanged (batch id, leaf index and leaf hash included), so proofs are not
//! affected. Memory holds one decoded batch of 1,024 rows per input run plus one output row
//! group.
//!
//! The commit point is one `Merge` line in `compacted/compactions.jsonl`: before it readers
//! use the inputs, after it the run; the inputs are deleted a grace period later.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_row::{OwnedRow, RowConverter, Rows, SortField};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use tracing::instrument;

use crate::compaction_log::{
    CompactOptions, CompactionLog, KeyRange, LiveFile, Merge, RunFile, SORT_KEY,
};
use crate::tables::EVENTS;
use crate::{DataDir, Error, Result};

/// At most this many runs are merged at once (one open reader and batch each).
const MAX_INPUT_RUNS: usize = 256;
/// Rows per output batch handed to the writer.
const CHUNK_ROWS: usize = 8192;
/// Rows per decoded input batch: one per input run is held (about 1 KB a row), so 256 runs
/// hold about 256 MB.
const CURSOR_ROWS: usize = 1024;

/// The compacted files to merge now, if any: all runs when `full_merge`, else the smallest
/// size tier (runs within 4x of its smallest) once it has `merge_fanin` runs. Files from
/// before key ranges were kept are not sorted by [`SORT_KEY`] and are never merged.
pub(crate) fn merge_candidates(
    log: &CompactionLog,
    opts: &CompactOptions,
) -> Option<Vec<LiveFile>> {
    let mut by_run: BTreeMap<String, Vec<LiveFile>> = BTreeMap::new();
    for f in log.live_files() {
        if f.keys.is_some() {
            by_run.entry(f.run.clone()).or_default().push(f);
        }
    }
    let mut runs: Vec<(u64, Vec<LiveFile>)> = by_run
        .into_values()
        .map(|fs| (fs.iter().map(|f| f.rows).sum(), fs))
        .collect();
    if runs.len() < 2 {
        return None;
    }
    runs.sort_by_key(|(rows, _)| *rows);
    let pick = |r: &[(u64, Vec<LiveFile>)]| -> Vec<LiveFile> {
        r.iter()
            .take(MAX_INPUT_RUNS)
            .flat_map(|(_, f)| f.iter().cloned())
            .collect()
    };
    if opts.full_merge {
        return Some(pick(&runs));
    }
    if opts.merge_fanin < 2 {
        return None;
    }
    let mut i = 0;
    while i < runs.len() {
        let ceiling = runs[i].0.max(1).saturating_mul(4);
        let j = i + runs[i..].iter().take_while(|(r, _)| *r <= ceiling).count();
        if j - i >= opts.merge_fanin {
            return Some(pick(&runs[i..j]));
        }
        i = j.max(i + 1);
    }
    None
}

/// One input run: its files in key order, read one batch at a time.
struct Cursor {
    files: VecDeque<PathBuf>,
    path: PathBuf,
    reader: Option<ParquetRecordBatchReader>,
    batch: Option<RecordBatch>,
    rows: Option<Rows>,
    pos: usize,
    slot: u64,
    /// The last key of the previous batch (the order is checked across batches too).
    last: Option<OwnedRow>,
}

struct Merger {
    dir: DataDir,
    conv: RowConverter,
    cursors: Vec<Cursor>,
    /// Min-heap of cursor indices by current key.
    heap: Vec<usize>,
    /// Batches referenced by pending rows, by slot.
    slab: HashMap<u64, RecordBatch>,
    next_slot: u64,
    key_cols: Option<[usize; 2]>,
    schema: Option<arrow_schema::SchemaRef>,
}

fn corrupt(path: &std::path::Path, detail: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

impl Merger {
    /// Loads the cursor's next non-empty batch; false when its run is exhausted.
    fn load(&mut self, c: usize) -> Result<bool> {
        loop {
            let cur = &mut self.cursors[c];
            if cur.reader.is_none() {
                let Some(p) = cur.files.pop_front() else {
                    cur.batch = None;
                    cur.rows = None;
                    return Ok(false);
                };
                let f = self.dir.source(&p)?;
                let r = ParquetRecordBatchReaderBuilder::try_new(f)
                    .and_then(|b| b.with_batch_size(CURSOR_ROWS).build())
                    .map_err(|source| Error::Parquet {
                        path: p.clone(),
                        source,
                    })?;
                cur.reader = Some(r);
                cur.path = p;
            }
            let next = cur.reader.as_mut().and_then(Iterator::next);
            let Some(batch) = next else {
                cur.reader = None;
                continue;
            };
            let batch = batch.map_err(|e| corrupt(&cur.path, e))?;
            if batch.num_rows() == 0 {
                continue;
            }
            let schema = batch.schema();
            match &self.schema {
                None => {
                    let idx = SORT_KEY.map(|n| schema.index_of(n));
                    let [a, b] = idx;
                    self.key_cols = Some([
                        a.map_err(|e| corrupt(&cur.path, e))?,
                        b.map_err(|e| corrupt(&cur.path, e))?,
                    ]);
                    self.schema = Some(schema.clone());
                }
                Some(s) if s.fields() != schema.fields() => {
                    return Err(corrupt(
                        &cur.path,
                        "its columns differ from the other files being merged",
                    ));
                }
                Some(_) => {}
            }
            let [a, b] = self.key_cols.unwrap_or([0, 1]);
            let cols: Vec<ArrayRef> = vec![batch.column(a).clone(), batch.column(b).clone()];
            let rows = self
                .conv
                .convert_columns(&cols)
                .map_err(|e| corrupt(&cur.path, e))?;
            // Every input must already be in key order: a merge of unsorted runs would
            // produce a run whose key ranges lie.
            let sorted_across = cur.last.as_ref().is_none_or(|l| l.row() <= rows.row(0));
            let sorted_within = (1..rows.num_rows()).all(|i| rows.row(i - 1) <= rows.row(i));
            if !(sorted_across && sorted_within) {
                return Err(corrupt(
                    &cur.path,
                    "rows are not sorted by trace code, event id",
                ));
            }
            cur.last = Some(rows.row(rows.num_rows() - 1).owned());
            cur.slot = self.next_slot;
            self.next_slot += 1;
            self.slab.insert(cur.slot, batch.clone());
            cur.batch = Some(batch);
            cur.rows = Some(rows);
            cur.pos = 0;
            return Ok(true);
        }
    }

    fn less(&self, a: usize, b: usize) -> bool {
        let key = |c: usize| {
            let cur = &self.cursors[c];
            cur.rows.as_ref().map(|r| r.row(cur.pos))
        };
        match (key(a), key(b)) {
            (Some(x), Some(y)) => x < y || (x == y && a < b),
            _ => false,
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < n && self.less(self.heap[l], self.heap[m]) {
                m = l;
            }
            if r < n && self.less(self.heap[r], self.heap[m]) {
                m = r;
            }
            if m == i {
                return;
            }
            self.heap.swap(i, m);
            i = m;
        }
    }

    /// The next up to `n` rows in key order, or None when every run is exhausted.
    fn next_chunk(&mut self, n: usize) -> Result<Option<RecordBatch>> {
        let mut picks: Vec<(u64, usize)> = Vec::with_capacity(n);
        while picks.len() < n {
            let Some(&top) = self.heap.first() else {
                break;
            };
            let cur = &mut self.cursors[top];
            picks.push((cur.slot, cur.pos));
            cur.pos += 1;
            let done = cur.rows.as_ref().is_none_or(|r| cur.pos >= r.num_rows());
            if done && !self.load(top)? {
                // Run exhausted: drop it from the heap.
                let last = self.heap.len() - 1;
                self.heap.swap(0, last);
                self.heap.pop();
            }
            self.sift_down(0);
        }
        if picks.is_empty() {
            return Ok(None);
        }
        let mut index: HashMap<u64, usize> = HashMap::new();
        let mut batches: Vec<&RecordBatch> = Vec::new();
        let mut idx = Vec::with_capacity(picks.len());
        for (slot, row) in picks {
            let i = match index.get(&slot) {
                Some(i) => *i,
                None => {
                    let b = self
                        .slab
                        .get(&slot)
                        .ok_or_else(|| Error::Bug("merge lost a batch".into()))?;
                    batches.push(b);
                    index.insert(slot, batches.len() - 1);
                    batches.len() - 1
                }
            };
            idx.push((i, row));
        }
        let out = arrow_select::interleave::interleave_record_batch(&batches, &idx)
            .map_err(|e| Error::Bug(format!("merging rows: {e}")))?;
        // Batches no cursor holds any more are not needed by later chunks.
        let live: std::collections::HashSet<u64> = self
            .cursors
            .iter()
            .filter(|c| c.batch.is_some())
            .map(|c| c.slot)
            .collect();
        self.slab.retain(|s, _| live.contains(s));
        Ok(Some(out))
    }
}

/// Merges `inputs` (live compacted files, grouped by run) into one sorted run and commits it
/// as merge number `seq` (the merges committed before it), which names its files.
#[instrument(skip_all, fields(files = inputs.len()))]
pub(crate) fn merge(
    dir: &DataDir,
    inputs: &[LiveFile],
    seq: usize,
    opts: &CompactOptions,
) -> Result<Merge> {
    let started = std::time::Instant::now();
    let mut runs: Vec<(String, Vec<&LiveFile>)> = Vec::new();
    for f in inputs {
        match runs.iter_mut().find(|(r, _)| *r == f.run) {
            Some((_, v)) => v.push(f),
            None => runs.push((f.run.clone(), vec![f])),
        }
    }
    let conv = RowConverter::new(vec![
        SortField::new_with_options(
            arrow_schema::DataType::Utf8,
            arrow_schema::SortOptions {
                descending: false,
                nulls_first: false,
            },
        ),
        SortField::new(arrow_schema::DataType::Utf8),
    ])
    .map_err(|e| Error::Bug(e.to_string()))?;
    let mut m = Merger {
        dir: dir.clone(),
        conv,
        cursors: runs
            .iter()
            .map(|(_, files)| Cursor {
                files: files
                    .iter()
                    .map(|f| dir.compacted_dir().join(&f.file))
                    .collect(),
                path: PathBuf::new(),
                reader: None,
                batch: None,
                rows: None,
                pos: 0,
                slot: 0,
                last: None,
            })
            .collect(),
        heap: Vec::new(),
        slab: HashMap::new(),
        next_slot: 0,
        key_cols: None,
        schema: None,
    };
    for c in 0..m.cursors.len() {
        if m.load(c)? {
            m.heap.push(c);
        }
    }
    for i in (0..m.heap.len() / 2).rev() {
        m.sift_down(i);
    }
    let props = EVENTS.writer_properties(opts.row_group_rows);
    let file_rows = opts.merge_file_rows.max(1) as u64;
    let mut files: Vec<RunFile> = Vec::new();
    let mut carry: Option<RecordBatch> = None;
    loop {
        let first = match carry.take() {
            Some(b) => Some(b),
            None => m.next_chunk(CHUNK_ROWS)?,
        };
        let Some(first) = first else {
            break;
        };
        let name = format!("m{seq:06}-{:05}.parquet", files.len());
        let path = dir.compacted_dir().join(&name);
        let mut keys = KeyRange::default();
        let mut rows = 0u64;
        let digest = crate::compact::write_out(dir, &path, |f| {
            let pe = |source| Error::Parquet {
                path: path.clone(),
                source,
            };
            let mut w = ArrowWriter::try_new(f, first.schema(), Some(props.clone())).map_err(pe)?;
            let mut next = Some(first);
            while let Some(b) = next.take() {
                // Cut the file at `file_rows`; the rest of the chunk starts the next file.
                let room = (file_rows - rows) as usize;
                let (now, rest) = if b.num_rows() > room {
                    (b.slice(0, room), Some(b.slice(room, b.num_rows() - room)))
                } else {
                    (b, None)
                };
                keys.extend(&now)?;
                rows += now.num_rows() as u64;
                w.write(&now).map_err(pe)?;
                if rest.is_some() || rows >= file_rows {
                    carry = rest;
                    break;
                }
                next = m.next_chunk(CHUNK_ROWS)?;
            }
            w.close().map_err(pe)?;
            Ok(())
        })?;
        files.push(RunFile {
            file: name,
            rows,
            keys,
            digest: Some(digest),
        });
    }
    let rows: u64 = files.iter().map(|f| f.rows).sum();
    let expected: u64 = inputs.iter().map(|f| f.rows).sum();
    if rows != expected {
        return Err(Error::Bug(format!(
            "merge wrote {rows} rows of {expected}: not committed"
        )));
    }
    let merge = Merge {
        merged: inputs.iter().map(|f| f.file.clone()).collect(),
        files,
        rows,
        committed_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
    };
    // The commit point.
    crate::compact::append_log_line(dir, &merge)?;
    tracing::info!(
        inputs = merge.merged.len(),
        runs = runs.len(),
        files = merge.files.len(),
        rows,
        secs = started.elapsed().as_secs_f64(),
        "merged into one sorted run"
    );
    Ok(merge)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compaction_log::Compaction;

    fn log(sizes: &[u64]) -> CompactionLog {
        CompactionLog {
            compactions: sizes
                .iter()
                .enumerate()
                .map(|(i, &rows)| Compaction {
                    file: format!("c{i}.parquet"),
                    batch_ids: vec![format!("b{i}")],
                    rows,
                    committed_at: "2026-11-21T00:00:00Z".into(),
                    keys: Some(KeyRange::default()),
                    digest: None,
                })
                .collect(),
            merges: Vec::new(),
        }
    }

    fn picked(l: &CompactionLog, opts: &CompactOptions) -> Vec<String> {
        let mut v: Vec<String> = merge_candidates(l, opts)
            .unwrap_or_default()
            .into_iter()
            .map(|f| f.file)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_smallest_tier_with_enough_runs_is_merged() {
        let opts = CompactOptions {
            merge_fanin: 3,
            ..CompactOptions::default()
        };
        // Two small runs and one huge: no tier has three.
        assert!(picked(&log(&[100, 120, 10_000]), &opts).is_empty());
        // Three runs within 4x of the smallest are merged; the huge one waits.
        assert_eq!(
            picked(&log(&[100, 300, 390, 10_000]), &opts),
            ["c0.parquet", "c1.parquet", "c2.parquet"]
        );
        // Tiers of large runs merge too once they have enough members.
        assert_eq!(
            picked(&log(&[50, 10_000, 12_000, 30_000]), &opts),
            ["c1.parquet", "c2.parquet", "c3.parquet"]
        );
        // Full merges take everything; fan-in 0 never merges; one run is never merged.
        let full = CompactOptions {
            full_merge: true,
            ..opts.clone()
        };
        assert_eq!(picked(&log(&[1, 10_000]), &full).len(), 2);
        assert!(picked(&log(&[7]), &full).is_empty());
        let never = CompactOptions {
            merge_fanin: 0,
            ..opts.clone()
        };
        assert!(picked(&log(&[100, 100, 100, 100]), &never).is_empty());
        // Files from before key ranges were kept are not sorted by the key: never merged.
        let mut l = log(&[100, 100, 100]);
        l.compactions[0].keys = None;
        assert!(picked(&l, &opts).is_empty());
    }

    #[test]
    fn files_of_one_merged_run_count_as_one_run() {
        let mut l = log(&[100, 100]);
        l.merges.push(Merge {
            merged: vec![],
            files: (0..5)
                .map(|i| RunFile {
                    file: format!("m{i}.parquet"),
                    rows: 60,
                    keys: KeyRange::default(),
                    digest: None,
                })
                .collect(),
            rows: 300,
            committed_at: "2026-11-21T00:00:00Z".into(),
        });
        let opts = CompactOptions {
            merge_fanin: 3,
            ..CompactOptions::default()
        };
        // Runs: 100, 100, 300 (five files): one tier of three runs, seven files.
        assert_eq!(picked(&l, &opts).len(), 7);
        let four = CompactOptions {
            merge_fanin: 4,
            ..opts
        };
        assert!(picked(&l, &four).is_empty());
    }
}
