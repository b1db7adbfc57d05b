//! What compaction commits and how it is configured: the records of
//! `compacted/compactions.jsonl` (batch compactions and merges of sorted runs), the log read
//! back as the set of live files, and [`CompactOptions`]. Both the compactor
//! ([`crate::compact`]) and the merger ([`crate::merge`]) take these from here.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use arrow_array::{Array, RecordBatch};

use crate::{DataDir, Error, Result};

/// One committed compaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compaction {
    /// File name in `compacted/`.
    pub file: String,
    /// The batches it holds (their small files are superseded).
    pub batch_ids: Vec<String>,
    /// Rows (events).
    pub rows: u64,
    /// When it was committed (RFC 3339).
    pub committed_at: String,
    /// The file's key range. Present on files sorted by [`SORT_KEY`] (absent on files from
    /// before it, which are never merged and always scanned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<KeyRange>,
    /// The file's length and SHA-256 at commit (absent on files from before digests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<crate::integrity::FileDigest>,
}

/// The order of rows in compacted files ([`crate::tables::EVENTS_SORT_KEY`]).
pub use crate::tables::EVENTS_SORT_KEY as SORT_KEY;

/// What a compacted file holds, for choosing files without opening them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KeyRange {
    /// Smallest trace code (None: no row has one).
    pub code_min: Option<String>,
    /// Largest trace code.
    pub code_max: Option<String>,
    /// Rows without a trace code (sorted last, by event id).
    pub null_rows: u64,
    /// Smallest event id among the rows without a trace code.
    pub null_event_min: Option<String>,
    /// Largest event id among them.
    pub null_event_max: Option<String>,
}

impl KeyRange {
    /// True when a row with trace code `code` may be in the file.
    pub fn may_hold_code(&self, code: &str) -> bool {
        match (&self.code_min, &self.code_max) {
            (Some(lo), Some(hi)) => lo.as_str() <= code && code <= hi.as_str(),
            _ => false,
        }
    }

    /// True when any of `codes` (sorted ascending) may be in the file.
    pub fn may_hold_any_code(&self, codes: &[String]) -> bool {
        let (Some(lo), Some(hi)) = (&self.code_min, &self.code_max) else {
            return false;
        };
        let i = codes.partition_point(|c| c.as_str() < lo.as_str());
        codes.get(i).is_some_and(|c| c.as_str() <= hi.as_str())
    }

    /// True when a row without a trace code and with one of `event_ids` (sorted ascending)
    /// may be in the file.
    pub fn may_hold_null_code_event(&self, event_ids: &[String]) -> bool {
        let (Some(lo), Some(hi)) = (&self.null_event_min, &self.null_event_max) else {
            return false;
        };
        let i = event_ids.partition_point(|c| c.as_str() < lo.as_str());
        self.null_rows > 0 && event_ids.get(i).is_some_and(|c| c.as_str() <= hi.as_str())
    }

    /// Widens this range to cover the rows of `b` (sorted by [`SORT_KEY`]).
    pub(crate) fn extend(&mut self, b: &RecordBatch) -> Result<()> {
        let strings = |name: &str| -> Result<arrow_array::StringArray> {
            let i = b
                .schema()
                .index_of(name)
                .map_err(|e| Error::Bug(e.to_string()))?;
            b.column(i)
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .cloned()
                .ok_or_else(|| Error::Bug(format!("{name} is not a string column")))
        };
        let (codes, ids) = (strings("trace_code")?, strings("event_id")?);
        let widen_min = |slot: &mut Option<String>, v: &str| {
            if slot.as_deref().is_none_or(|m| v < m) {
                *slot = Some(v.to_owned());
            }
        };
        let widen_max = |slot: &mut Option<String>, v: &str| {
            if slot.as_deref().is_none_or(|m| v > m) {
                *slot = Some(v.to_owned());
            }
        };
        // Sorted: the first and last non-null codes bound the batch; nulls come last.
        let non_null = b.num_rows() - codes.null_count();
        if non_null > 0 {
            widen_min(&mut self.code_min, codes.value(0));
            widen_max(&mut self.code_max, codes.value(non_null - 1));
        }
        for i in non_null..b.num_rows() {
            if !codes.is_null(i) {
                return Err(Error::Bug("rows are not sorted by trace code".into()));
            }
            widen_min(&mut self.null_event_min, ids.value(i));
            widen_max(&mut self.null_event_max, ids.value(i));
        }
        self.null_rows += (b.num_rows() - non_null) as u64;
        Ok(())
    }
}

/// A committed merge: compacted files rewritten as one sorted run (files in key order,
/// key ranges disjoint), so a lookup by trace code opens one file of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Merge {
    /// The compacted files it replaces (superseded; deleted after the grace period).
    pub merged: Vec<String>,
    /// The run, in key order.
    pub files: Vec<RunFile>,
    /// Rows (equal to the rows of the files it replaces).
    pub rows: u64,
    /// When it was committed (RFC 3339).
    pub committed_at: String,
}

/// One file of a merged run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFile {
    /// File name in `compacted/`.
    pub file: String,
    /// Rows.
    pub rows: u64,
    /// Its key range.
    pub keys: KeyRange,
    /// The file's length and SHA-256 at commit (absent on files from before digests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<crate::integrity::FileDigest>,
}

/// A line of `compacted/compactions.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum LogLine {
    Merge(Merge),
    Compaction(Compaction),
}

/// Everything committed in `compacted/compactions.jsonl`, in commit order.
#[derive(Debug, Clone, Default)]
pub struct CompactionLog {
    /// Batch compactions.
    pub compactions: Vec<Compaction>,
    /// Merges of compacted files into sorted runs.
    pub merges: Vec<Merge>,
}

/// A compacted file queries read now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFile {
    /// File name in `compacted/`.
    pub file: String,
    /// Rows.
    pub rows: u64,
    /// Key range (None: a file from before key ranges were kept).
    pub keys: Option<KeyRange>,
    /// The sorted run it belongs to (a batch compaction's file is a run of its own).
    pub run: String,
}

impl CompactionLog {
    /// Reads the log (a torn last line is ignored).
    pub fn read(dir: &DataDir) -> Result<Self> {
        let mut log = CompactionLog::default();
        for line in dir.read_jsonl::<LogLine>(&dir.compactions_file())? {
            match line {
                LogLine::Merge(m) => log.merges.push(m),
                LogLine::Compaction(c) => log.compactions.push(c),
            }
        }
        Ok(log)
    }

    /// Batches whose rows are in compacted files.
    pub fn covered_batches(&self) -> HashSet<&str> {
        self.compactions
            .iter()
            .flat_map(|c| c.batch_ids.iter().map(String::as_str))
            .collect()
    }

    /// Compacted files replaced by a merge.
    pub fn superseded_files(&self) -> HashSet<&str> {
        self.merges
            .iter()
            .flat_map(|m| m.merged.iter().map(String::as_str))
            .collect()
    }

    /// The compacted files readers scan: every file committed and not replaced by a merge.
    pub fn live_files(&self) -> Vec<LiveFile> {
        let gone = self.superseded_files();
        let mut out: Vec<LiveFile> = self
            .compactions
            .iter()
            .filter(|c| !gone.contains(c.file.as_str()))
            .map(|c| LiveFile {
                file: c.file.clone(),
                rows: c.rows,
                keys: c.keys.clone(),
                run: c.file.clone(),
            })
            .collect();
        for (i, m) in self.merges.iter().enumerate() {
            out.extend(
                m.files
                    .iter()
                    .filter(|f| !gone.contains(f.file.as_str()))
                    .map(|f| LiveFile {
                        file: f.file.clone(),
                        rows: f.rows,
                        keys: Some(f.keys.clone()),
                        run: format!("merge-{i}"),
                    }),
            );
        }
        out
    }

    /// The digest recorded for a compacted file, if any.
    pub fn digest_of(&self, file: &str) -> Option<&crate::integrity::FileDigest> {
        self.compactions
            .iter()
            .filter(|c| c.file == file)
            .filter_map(|c| c.digest.as_ref())
            .chain(
                self.merges
                    .iter()
                    .flat_map(|m| m.files.iter())
                    .filter(|f| f.file == file)
                    .filter_map(|f| f.digest.as_ref()),
            )
            .next()
    }

    /// Every file name the log commits (live or superseded).
    pub(crate) fn named_files(&self) -> HashSet<&str> {
        self.compactions
            .iter()
            .map(|c| c.file.as_str())
            .chain(
                self.merges
                    .iter()
                    .flat_map(|m| m.files.iter().map(|f| f.file.as_str())),
            )
            .collect()
    }
}

/// How to compact.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Rows per compacted file (bounded memory: a file is sorted in memory).
    pub target_rows: usize,
    /// Do nothing until at least this many uncompacted batch files exist.
    pub min_files: usize,
    /// Delete superseded small files this long after their compaction committed.
    pub grace: Duration,
    /// Rows per row group in compacted files.
    pub row_group_rows: usize,
    /// At most this many compacted files per run (bounded work; the next run goes on).
    pub max_files: usize,
    /// Merge sorted runs of similar size once this many exist (0: never merge).
    pub merge_fanin: usize,
    /// Rows per file of a merged run.
    pub merge_file_rows: usize,
    /// Merge every sorted run into one now, whatever their sizes (after a bulk import).
    pub full_merge: bool,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            target_rows: 250_000,
            min_files: 8,
            grace: Duration::from_secs(120),
            row_group_rows: 65_536,
            max_files: 64,
            merge_fanin: 8,
            merge_file_rows: 1_000_000,
            full_merge: false,
        }
    }
}
