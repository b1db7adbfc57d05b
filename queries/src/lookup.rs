//! Point lookups by event id without planning a query.
//!
//! A lookup through DataFusion listed and opened every committed file, read every file's
//! footer and bloom filter, and spawned a blocking task per read: 57-200 ms for one lookup
//! on 102 batch files, and under 200 connections 15 lookups/s with 515 threads. Here:
//!
//! 1. per file, once: the Parquet metadata (with the page index) and the `event_id` bloom
//!    filter of every row group, kept in memory (files are immutable once committed; a file
//!    is known by path and length);
//! 2. per lookup: the bloom filters say which row groups may hold the id (about 1% false
//!    positives per row group);
//! 3. per row group hit, once: its `event_id` column is decoded into a sorted table of
//!    64-bit id hashes and row numbers (12 bytes an event), so later lookups there are a
//!    binary search;
//! 4. the matching rows alone are read (a row selection over the page index: a page per
//!    column) and the id compared exactly, in the canonical event the lookup returns;
//! 5. the file list of a snapshot is resolved once, not per lookup.
//!
//! The files are written for this ([`veritrace_anchor::tables`]): pages of at
//! most 64 KiB and 1,024 rows (32 KiB of canonical events in freshly sealed files), and the
//! small columns a lookup reads uncompressed, so that a lookup decompresses one page (the
//! canonical event's) and decodes at most a thousand values per column to reach its row.
//!
//! Everything is synchronous and short (page-cache reads of a few pages); it runs on the
//! caller's thread, never on a blocking pool that grows with the load.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::{Array, RecordBatch, StringArray};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use parquet::bloom_filter::Sbbf;
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::properties::ReaderProperties;
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};

use veritrace_anchor::DataDir;

use crate::{Error, Result};

/// The columns a lookup returns, in this order.
pub(crate) const LOOKUP_COLUMNS: [&str; 7] = [
    "canonical",
    "batch_id",
    "leaf_index",
    "leaf_hash",
    "stream",
    "partition",
    "offset",
];

/// Returned after [`LOOKUP_COLUMNS`], in this order (each a null when a file predates it):
/// the signed envelope the event came in, and for a bundle's event its member evidence.
pub(crate) const SIGNATURE_COLUMNS: [&str; 2] = ["envelope", "bundle_member"];

/// Lookup state of every events file seen, shared by clones of the engine.
#[derive(Debug, Default)]
pub(crate) struct LookupIndex {
    files: Mutex<HashMap<(PathBuf, u64), Arc<FileIndex>>>,
    /// The file list of the last lookup, resolved: consecutive lookups on the same snapshot
    /// neither stat nor hash every path again (102 files cost 102 `stat` calls a lookup).
    resolved: Mutex<Option<Resolved>>,
}

/// A snapshot's fingerprint and its files.
type Resolved = (u64, Arc<Vec<Arc<FileIndex>>>);

struct FileIndex {
    path: PathBuf,
    /// The file, open for positioned reads by every lookup at once.
    file: PreadFile,
    meta: ArrowReaderMetadata,
    /// Leaf column index of `event_id`.
    id_column: usize,
    blooms: Vec<Option<Sbbf>>,
    row_groups: Vec<OnceLock<RowGroupIndex>>,
}

impl std::fmt::Debug for FileIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileIndex")
            .field("path", &self.path)
            .field("row_groups", &self.row_groups.len())
            .finish()
    }
}

/// A row group's event ids as sorted (hash, row) pairs.
#[derive(Debug)]
struct RowGroupIndex {
    hashes: Vec<u64>,
    rows: Vec<u32>,
}

fn id_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::corrupt(path.display(), e)
}

impl LookupIndex {
    /// Every stored row with `event_id = id` in `files`, with [`LOOKUP_COLUMNS`].
    /// `snapshot` identifies the file list (the metadata snapshot's fingerprint).
    pub(crate) fn find(
        &self,
        dir: &DataDir,
        snapshot: u64,
        files: &[&Path],
        id: &str,
    ) -> Result<Vec<RecordBatch>> {
        let hash = id_hash(id);
        let mut out = Vec::new();
        for f in self.resolve(dir, snapshot, files)?.iter() {
            for (rg, bloom) in f.blooms.iter().enumerate() {
                // Without a bloom filter (older files), the row-group index decides.
                if bloom.as_ref().is_some_and(|b| !b.check(id)) {
                    continue;
                }
                let idx = match f.row_groups[rg].get() {
                    Some(i) => i,
                    None => {
                        let built = f.build_row_group(rg)?;
                        let _ = f.row_groups[rg].set(built);
                        f.row_groups[rg]
                            .get()
                            .ok_or_else(|| Error::Internal("row group index vanished".into()))?
                    }
                };
                let from = idx.hashes.partition_point(|&h| h < hash);
                let to = idx.hashes.partition_point(|&h| h <= hash);
                if from == to {
                    continue;
                }
                let mut rows: Vec<u32> = idx.rows[from..to].to_vec();
                rows.sort_unstable();
                out.extend(f.read_rows(rg, &rows, id)?);
            }
        }
        Ok(out)
    }

    fn resolve(
        &self,
        dir: &DataDir,
        snapshot: u64,
        files: &[&Path],
    ) -> Result<Arc<Vec<Arc<FileIndex>>>> {
        if let Some((fp, list)) = lock(&self.resolved).as_ref()
            && *fp == snapshot
            && list.len() == files.len()
        {
            return Ok(list.clone());
        }
        let list = Arc::new(
            files
                .iter()
                .map(|p| self.file(dir, p))
                .collect::<Result<Vec<_>>>()?,
        );
        *lock(&self.resolved) = Some((snapshot, list.clone()));
        Ok(list)
    }

    /// Forgets files no longer committed (superseded by compaction).
    pub(crate) fn retain(&self, live: &[&Path]) {
        let live: std::collections::HashSet<&Path> = live.iter().copied().collect();
        lock(&self.files).retain(|(p, _), _| live.contains(p.as_path()));
        *lock(&self.resolved) = None;
    }

    fn file(&self, dir: &DataDir, path: &Path) -> Result<Arc<FileIndex>> {
        let len = dir
            .file_len(path)
            .map_err(|e| corrupt(path, format!("cannot read the file: {e}")))?
            .ok_or_else(|| corrupt(path, "cannot read the file: it is gone"))?;
        let key = (path.to_owned(), len);
        if let Some(f) = lock(&self.files).get(&key) {
            return Ok(f.clone());
        }
        let f = Arc::new(FileIndex::open(dir, path, len)?);
        lock(&self.files).insert(key, f.clone());
        Ok(f)
    }
}

impl FileIndex {
    fn open(dir: &DataDir, path: &Path, len: u64) -> Result<Self> {
        let file = PreadFile::open(dir, path, len)?;
        let meta = ArrowReaderMetadata::load(
            &file,
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
        )
        .map_err(|e| corrupt(path, e))?;
        let schema = meta.metadata().file_metadata().schema_descr();
        let id_column = (0..schema.num_columns())
            .find(|&i| schema.column(i).name() == "event_id")
            .ok_or_else(|| corrupt(path, "no event_id column"))?;
        let reader = SerializedFileReader::new_with_options(
            file.clone(),
            ReadOptionsBuilder::new()
                .with_reader_properties(
                    ReaderProperties::builder()
                        .set_read_bloom_filter(true)
                        .build(),
                )
                .build(),
        )
        .map_err(|e| corrupt(path, e))?;
        let groups = reader.num_row_groups();
        let mut blooms = Vec::with_capacity(groups);
        for rg in 0..groups {
            let r = reader.get_row_group(rg).map_err(|e| corrupt(path, e))?;
            blooms.push(r.get_column_bloom_filter(id_column).cloned());
        }
        Ok(FileIndex {
            path: path.to_owned(),
            file,
            meta,
            id_column,
            blooms,
            row_groups: (0..groups).map(|_| OnceLock::new()).collect(),
        })
    }

    fn builder(&self) -> Result<ParquetRecordBatchReaderBuilder<PreadFile>> {
        Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(
            self.file.clone(),
            self.meta.clone(),
        ))
    }

    fn build_row_group(&self, rg: usize) -> Result<RowGroupIndex> {
        let mask = ProjectionMask::leaves(
            self.meta.metadata().file_metadata().schema_descr(),
            [self.id_column],
        );
        let reader = self
            .builder()?
            .with_row_groups(vec![rg])
            .with_projection(mask)
            .with_batch_size(8192)
            .build()
            .map_err(|e| corrupt(&self.path, e))?;
        let mut pairs: Vec<(u64, u32)> = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| corrupt(&self.path, e))?;
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| corrupt(&self.path, "event_id is not a string column"))?;
            let base = pairs.len() as u32;
            pairs.extend((0..ids.len()).map(|i| (id_hash(ids.value(i)), base + i as u32)));
        }
        pairs.sort_unstable();
        Ok(RowGroupIndex {
            hashes: pairs.iter().map(|p| p.0).collect(),
            rows: pairs.iter().map(|p| p.1).collect(),
        })
    }

    /// Reads `rows` (sorted, within row group `rg`) and keeps those whose id is `id`.
    fn read_rows(&self, rg: usize, rows: &[u32], id: &str) -> Result<Vec<RecordBatch>> {
        let mut selectors = Vec::new();
        let mut at = 0usize;
        for &r in rows {
            let r = r as usize;
            if r < at {
                continue;
            }
            if r > at {
                selectors.push(RowSelector::skip(r - at));
            }
            selectors.push(RowSelector::select(1));
            at = r + 1;
        }
        let descr = self.meta.metadata().file_metadata().schema_descr();
        let arrow_schema = self.meta.schema();
        let mut roots = Vec::with_capacity(LOOKUP_COLUMNS.len());
        for name in LOOKUP_COLUMNS {
            roots.push(
                arrow_schema
                    .index_of(name)
                    .map_err(|e| corrupt(&self.path, e))?,
            );
        }
        for name in SIGNATURE_COLUMNS {
            if let Ok(i) = arrow_schema.index_of(name) {
                roots.push(i);
            }
        }
        let reader = self
            .builder()?
            .with_row_groups(vec![rg])
            .with_projection(ProjectionMask::roots(descr, roots))
            .with_row_selection(RowSelection::from(selectors))
            .build()
            .map_err(|e| corrupt(&self.path, e))?;
        let mut out = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| corrupt(&self.path, e))?;
            let schema = batch.schema();
            // The id is compared in the canonical event, which the lookup returns anyway:
            // reading the `event_id` column too would decode one more page.
            let canonical = schema
                .index_of("canonical")
                .ok()
                .and_then(|i| batch.column(i).as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| corrupt(&self.path, "canonical is not a string column"))?;
            let keep = (0..canonical.len())
                .map(|i| canonical_id(canonical.value(i)).map(|v| Some(v == id)))
                .collect::<Result<arrow::array::BooleanArray>>()
                .map_err(|e| corrupt(&self.path, e))?;
            let batch = arrow::compute::filter_record_batch(&batch, &keep)?;
            if batch.num_rows() == 0 {
                continue;
            }
            let order = LOOKUP_COLUMNS
                .iter()
                .map(|n| schema.index_of(n))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let mut fields: Vec<arrow::datatypes::FieldRef> =
                order.iter().map(|&i| schema.fields()[i].clone()).collect();
            let mut columns: Vec<arrow::array::ArrayRef> =
                order.iter().map(|&i| batch.column(i).clone()).collect();
            for name in SIGNATURE_COLUMNS {
                let column = match schema.index_of(name) {
                    Ok(i) => batch.column(i).clone(),
                    Err(_) => arrow::array::new_null_array(
                        &arrow::datatypes::DataType::Binary,
                        batch.num_rows(),
                    ),
                };
                fields.push(Arc::new(arrow::datatypes::Field::new(
                    name,
                    arrow::datatypes::DataType::Binary,
                    true,
                )));
                columns.push(column);
            }
            out.push(RecordBatch::try_new(
                Arc::new(arrow::datatypes::Schema::new(fields)),
                columns,
            )?);
        }
        Ok(out)
    }
}

/// An open file read with `pread`: no file opened, duplicated or seeked per lookup (the
/// `ChunkReader` of `std::fs::File` does all three for every page it reads). On an object
/// store, each read is a ranged GET of what the reader asks for (the footer, a bloom filter,
/// the pages of one row group), never the whole file.
#[derive(Debug, Clone)]
struct PreadFile {
    file: Option<Arc<File>>,
    /// The object store's file, when remote.
    remote: Option<(DataDir, PathBuf)>,
    len: u64,
}

impl PreadFile {
    fn open(dir: &DataDir, path: &Path, len: u64) -> Result<Self> {
        if dir.is_remote() {
            return Ok(PreadFile {
                file: None,
                remote: Some((dir.clone(), path.to_owned())),
                len,
            });
        }
        let file = File::open(path).map_err(|e| corrupt(path, e))?;
        let len = file.metadata().map_err(|e| corrupt(path, e))?.len();
        Ok(PreadFile {
            file: Some(Arc::new(file)),
            remote: None,
            len,
        })
    }
}

impl parquet::file::reader::Length for PreadFile {
    fn len(&self) -> u64 {
        self.len
    }
}

impl parquet::file::reader::ChunkReader for PreadFile {
    type T = PreadReader;

    fn get_read(&self, start: u64) -> parquet::errors::Result<PreadReader> {
        Ok(PreadReader {
            file: self.clone(),
            pos: start,
            ahead: bytes::Bytes::new(),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        use std::os::unix::fs::FileExt;
        if let Some((dir, path)) = &self.remote {
            return dir
                .read_range(path, start, length as u64)
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)));
        }
        let Some(file) = &self.file else {
            return Err(parquet::errors::ParquetError::General("no file".into()));
        };
        let mut buf = vec![0u8; length];
        file.read_exact_at(&mut buf, start)?;
        Ok(buf.into())
    }
}

/// A reader at a position of a [`PreadFile`].
struct PreadReader {
    file: PreadFile,
    pos: u64,
    /// Remote: what was fetched beyond `pos` (GETs of up to 1 MiB, not one per `read`).
    ahead: bytes::Bytes,
}

impl std::io::Read for PreadReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use parquet::file::reader::ChunkReader;
        use std::os::unix::fs::FileExt;
        let n = match &self.file.file {
            Some(f) => f.read_at(buf, self.pos)?,
            None => {
                if self.ahead.is_empty() {
                    let want = (buf.len() as u64)
                        .max(1 << 20)
                        .min(self.file.len.saturating_sub(self.pos));
                    if want == 0 {
                        return Ok(0);
                    }
                    self.ahead = self
                        .file
                        .get_bytes(self.pos, want as usize)
                        .map_err(std::io::Error::other)?;
                }
                let n = buf.len().min(self.ahead.len());
                buf[..n].copy_from_slice(&self.ahead.split_to(n));
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

/// The `event_id` of a stored canonical event.
fn canonical_id(canonical: &str) -> Result<std::borrow::Cow<'_, str>> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        event_id: std::borrow::Cow<'a, str>,
    }
    serde_json::from_str::<Id<'_>>(canonical)
        .map(|i| i.event_id)
        .map_err(|e| {
            Error::corrupt(
                "a stored canonical event",
                format!("it has no event id: {e}"),
            )
        })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
