//! Files Veritrace wrote are checked when read.
//!
//! **Digests at the commit point.** Every Parquet file a batch seals is hashed (SHA-256,
//! with its length) and the digests are appended to the partition's digest log
//! (`digests/{stream}-p{N}.jsonl`) before the manifest line commits the batch; a
//! compacted or merged file's digest is part of its line in `compacted/compactions.jsonl`.
//! A digest line without a manifest line is a crash before the commit and is ignored (the
//! batch is sealed again and its new line read last).
//!
//! **The whole directory, from outside.** [`check`] verifies a data directory end to end
//! (what `veritrace check` runs): every manifest's hash chain and that later records
//! (epochs, compactions) name only batches it holds; every committed file present with its
//! recorded digest; every batch root recomputed from its leaf hashes; with `deep`, every
//! leaf hash recomputed from the stored canonical event, in batch files and compacted files
//! alike; every epoch root recomputed from its batch headers; the ledger's chain, signatures
//! and head, and that it anchors the epochs' roots; EVM receipts against epoch roots. It
//! reads only, and reports each damage precisely: which file, which batch, expected and
//! found.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use arrow_array::{Array, FixedSizeBinaryArray, StringArray, UInt64Array};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use veritrace_verify::{Digest, merkle};

use crate::compact::CompactionLog;
use crate::fsutil::append_line_durable;
use crate::{BatchHeader, DataDir, EpochLog, Error, Result};

/// A file's length and SHA-256, recorded when it was committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// Path relative to the data directory (`events/....parquet`).
    pub file: String,
    /// Length in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole file.
    pub sha256: Digest,
}

/// A line of a partition's digest log: the files one batch wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchFiles {
    /// The batch.
    pub batch_id: String,
    /// Its files (events always; rejected and edges when it had any).
    pub files: Vec<FileDigest>,
}

/// The digest of a file's bytes, as recorded for `path`.
pub fn digest_bytes(dir: &DataDir, path: &Path, bytes: &[u8]) -> FileDigest {
    FileDigest {
        file: relative(dir, path),
        bytes: bytes.len() as u64,
        sha256: Digest(Sha256::digest(bytes).into()),
    }
}

/// Hashes a file (streaming, when local).
pub fn digest_file(dir: &DataDir, path: &Path) -> Result<FileDigest> {
    if dir.is_remote() {
        let bytes = dir.read_file(path)?.ok_or_else(|| Error::Corrupt {
            path: path.to_owned(),
            detail: "missing".into(),
        })?;
        return Ok(digest_bytes(dir, path, &bytes));
    }
    let mut f = File::open(path).map_err(Error::io("open", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(Error::io("read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileDigest {
        file: relative(dir, path),
        bytes,
        sha256: Digest(h.finalize().into()),
    })
}

fn relative(dir: &DataDir, path: &Path) -> String {
    path.strip_prefix(dir.root())
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Appends a batch's file digests to its partition's digest log (before the commit line).
pub(crate) fn record_batch_files(
    dir: &DataDir,
    log: &Path,
    seq: u64,
    files: &BatchFiles,
) -> Result<()> {
    if dir.is_remote() {
        return dir.append_jsonl(log, seq, files);
    }
    if let Some(parent) = log.parent() {
        // Data directories from before digests have no digests/ yet.
        std::fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
    }
    append_line_durable(log, files)
}

/// The recorded digests of committed batches of one partition (the last line per batch).
pub fn read_batch_files(dir: &DataDir, path: &Path) -> Result<HashMap<String, BatchFiles>> {
    Ok(dir
        .read_jsonl::<BatchFiles>(path)?
        .into_iter()
        .map(|b| (b.batch_id.clone(), b))
        .collect())
}

/// Verifies one file against its recorded digest; `Some(problem)` when it differs.
pub fn verify_file(dir: &DataDir, d: &FileDigest) -> Result<Option<String>> {
    let path = dir.root().join(&d.file);
    if dir.is_remote() {
        let Some(bytes) = dir.read_file(&path)? else {
            return Ok(Some("missing (committed, recorded, and gone)".into()));
        };
        if bytes.len() as u64 != d.bytes {
            return Ok(Some(format!(
                "length {} bytes, expected {} (truncated or rewritten)",
                bytes.len(),
                d.bytes
            )));
        }
        let found = digest_bytes(dir, &path, &bytes);
        return Ok((found.sha256 != d.sha256).then(|| {
            format!(
                "SHA-256 {} where {} was recorded at commit (altered)",
                found.sha256, d.sha256
            )
        }));
    }
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Some("missing (committed, recorded, and gone)".into()));
        }
        Err(e) => return Err(Error::io("stat", &path)(e)),
        Ok(m) if m.len() != d.bytes => {
            return Ok(Some(format!(
                "length {} bytes, expected {} (truncated or rewritten)",
                m.len(),
                d.bytes
            )));
        }
        Ok(_) => {}
    }
    let found = digest_file(dir, &path)?;
    Ok((found.sha256 != d.sha256).then(|| {
        format!(
            "SHA-256 {} where {} was recorded at commit (altered)",
            found.sha256, d.sha256
        )
    }))
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// The damaged or contradicted file.
    pub path: PathBuf,
    /// The batch concerned, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// What is wrong: expected and found.
    pub problem: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(b) = &self.batch {
            write!(f, " (batch {b})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// What [`check`] verified and found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Partition manifests read.
    pub manifests: u64,
    /// Committed batches.
    pub batches: u64,
    /// Batch roots recomputed from their leaf hashes.
    pub roots_recomputed: u64,
    /// Leaf hashes recomputed from canonical events (deep only).
    pub leaves_recomputed: u64,
    /// Files hashed against a recorded digest.
    pub files_verified: u64,
    /// Committed files with no recorded digest (written before digests were kept): only
    /// their presence and, deep, their contents against the batch roots were checked.
    pub files_without_digest: u64,
    /// Bytes hashed.
    pub bytes_hashed: u64,
    /// Epochs whose roots were recomputed.
    pub epochs: u64,
    /// Ledger entries verified.
    pub ledger_entries: u64,
    /// EVM receipts compared with epoch roots.
    pub evm_receipts: u64,
    /// Published log tiles and entry bundles compared with the log of the epochs.
    pub log_tiles: u64,
    /// Everything found wrong.
    pub damage: Vec<Damage>,
}

/// Progress of a [`check`]: units of work done of a total known up front.
pub trait Progress {
    /// Called once with the amount of work (files and logs to read).
    fn start(&mut self, total: u64);
    /// Called as work is done, with a short label of what was just checked.
    fn step(&mut self, label: &str);
}

/// No progress reporting.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _total: u64) {}
    fn step(&mut self, _label: &str) {}
}

/// Verifies a whole data directory (read only). `Err` only when the check itself cannot
/// run (unreadable directory); damage is in the report.
pub fn check(dir: &DataDir, deep: bool, progress: &mut dyn Progress) -> Result<CheckReport> {
    let mut r = CheckReport::default();
    let damage = |path: PathBuf, batch: Option<&str>, problem: String| Damage {
        path,
        batch: batch.map(str::to_owned),
        problem,
    };
    // Manifests, one per partition.
    let mut manifests: Vec<(PathBuf, String, u32)> = Vec::new();
    for (path, _) in dir.list_logs(&dir.batches_dir())? {
        let Some(stem) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        let Some((stream, p)) = stem.rsplit_once("-p") else {
            continue;
        };
        if let Ok(p) = p.parse::<u32>() {
            manifests.push((path, stream.to_owned(), p));
        }
    }
    manifests.sort();
    let log = match CompactionLog::read(dir) {
        Ok(l) => l,
        Err(e) => {
            r.damage
                .push(damage(dir.compactions_file(), None, e.to_string()));
            CompactionLog::default()
        }
    };
    let covered = log.covered_batches();
    let mut headers: BTreeMap<String, BatchHeader> = BTreeMap::new();
    let mut digests: HashMap<String, BatchFiles> = HashMap::new();
    for (path, stream, p) in &manifests {
        r.manifests += 1;
        let hs: Vec<BatchHeader> = match dir.read_jsonl(path) {
            Ok(h) => h,
            Err(e) => {
                r.damage.push(damage(path.clone(), None, e.to_string()));
                continue;
            }
        };
        if let Err(e) = crate::batch::check_chain(path, stream, *p, &hs) {
            r.damage.push(damage(path.clone(), None, e.to_string()));
        }
        if let Err(e) = crate::batch::check_references(dir, path, stream, *p, &hs) {
            r.damage.push(damage(path.clone(), None, e.to_string()));
        }
        let dl = dir.batch_files_log(stream, *p);
        match read_batch_files(dir, &dl) {
            Ok(d) => digests.extend(d),
            Err(e) => r.damage.push(damage(dl, None, e.to_string())),
        }
        for h in hs {
            headers.insert(h.batch_id.clone(), h);
        }
    }
    r.batches = headers.len() as u64;
    let live = log.live_files();
    let work = headers.len() as u64 + live.len() as u64 + 3;
    progress.start(work);

    // What is there: one listing of each directory (one request on an object store).
    let present: HashSet<PathBuf> = dir
        .list_files(&dir.events_dir())?
        .into_iter()
        .chain(dir.list_files(&dir.compacted_dir())?)
        .map(|(p, _)| p)
        .collect();

    // Batches: files present and as recorded; root from the leaves.
    for h in headers.values() {
        let id = h.batch_id.as_str();
        let recorded = digests.get(id);
        if covered.contains(id) {
            // Its rows live in compacted files now; its leaves in the sidecar.
            match crate::compact::batch_leaves(dir, id) {
                Ok(leaves) => {
                    if let Some(p) = root_problem(h, &leaves) {
                        r.damage.push(damage(dir.leaves_file(id), Some(id), p));
                    }
                    r.roots_recomputed += 1;
                }
                Err(e) => r
                    .damage
                    .push(damage(dir.leaves_file(id), Some(id), e.to_string())),
            }
        } else {
            let events = dir.events_file(id);
            match recorded {
                Some(files) => {
                    for d in &files.files {
                        match verify_file(dir, d)? {
                            Some(p) => r.damage.push(damage(dir.root().join(&d.file), Some(id), p)),
                            None => {
                                r.files_verified += 1;
                                r.bytes_hashed += d.bytes;
                            }
                        }
                    }
                }
                None if !present.contains(&events) => r.damage.push(damage(
                    events.clone(),
                    Some(id),
                    "missing: the batch is committed in its manifest but its events file is gone"
                        .into(),
                )),
                None => r.files_without_digest += 1,
            }
            if present.contains(&events) {
                match read_event_rows(dir, &events, deep) {
                    Ok(rows) => {
                        let leaves: Vec<Digest> = rows.iter().map(|x| x.leaf).collect();
                        if let Some(p) = root_problem(h, &leaves) {
                            r.damage.push(damage(events.clone(), Some(id), p));
                        }
                        r.roots_recomputed += 1;
                        if deep {
                            check_rows(&events, id, &rows, &mut r);
                        }
                    }
                    Err(e) => r
                        .damage
                        .push(damage(events.clone(), Some(id), e.to_string())),
                }
            }
        }
        progress.step(id);
    }

    // Compacted files: present, as recorded; deep, every row against its batch's leaves.
    let mut leaves_of: HashMap<String, Vec<Digest>> = HashMap::new();
    let mut rows_of: HashMap<String, u64> = HashMap::new();
    for f in &live {
        let path = dir.compacted_dir().join(&f.file);
        match log.digest_of(&f.file) {
            Some(d) => match verify_file(dir, d)? {
                Some(p) => r.damage.push(damage(path.clone(), None, p)),
                None => {
                    r.files_verified += 1;
                    r.bytes_hashed += d.bytes;
                }
            },
            None if !present.contains(&path) => r.damage.push(damage(
                path.clone(),
                None,
                "missing: committed in the compaction log and gone".into(),
            )),
            None => r.files_without_digest += 1,
        }
        if deep && present.contains(&path) {
            match read_event_rows(dir, &path, true) {
                Ok(rows) => {
                    check_rows(&path, "", &rows, &mut r);
                    for row in &rows {
                        *rows_of.entry(row.batch_id.clone()).or_default() += 1;
                        let leaves = match leaves_of.get(&row.batch_id) {
                            Some(l) => l,
                            None => {
                                let l = crate::compact::batch_leaves(dir, &row.batch_id)
                                    .unwrap_or_default();
                                leaves_of.entry(row.batch_id.clone()).or_insert(l)
                            }
                        };
                        if leaves.get(row.leaf_index as usize) != Some(&row.leaf) {
                            r.damage.push(damage(
                                path.clone(),
                                Some(&row.batch_id),
                                format!(
                                    "row for leaf {} holds leaf hash {} which the batch's leaves do not have there",
                                    row.leaf_index, row.leaf
                                ),
                            ));
                        }
                    }
                }
                Err(e) => r.damage.push(damage(path.clone(), None, e.to_string())),
            }
        }
        progress.step(&f.file);
    }

    // Deep: the compacted files hold every row of the batches they replaced, once.
    if deep {
        for h in headers.values() {
            let id = h.batch_id.as_str();
            if !covered.contains(id) {
                continue;
            }
            let found = rows_of.get(id).copied().unwrap_or(0);
            if found != h.size {
                r.damage.push(damage(
                    dir.compacted_dir(),
                    Some(id),
                    format!(
                        "the compacted files hold {found} rows of this batch; it sealed {}",
                        h.size
                    ),
                ));
            }
        }
    }

    // Epochs: ids in sequence, every batch known, roots recomputed.
    let epochs = match EpochLog::read(dir) {
        Ok(e) => e.records().to_vec(),
        Err(e) => {
            r.damage
                .push(damage(dir.epochs_file(), None, e.to_string()));
            Vec::new()
        }
    };
    // The log over every epoch's batches; unusable past an epoch with an unknown batch.
    let mut log = Some(veritrace_verify::logtree::LogTree::new());
    for e in &epochs {
        let mut leaves = Vec::with_capacity(e.batch_ids.len());
        for b in &e.batch_ids {
            match headers.get(b) {
                Some(h) => leaves.push(h.leaf_hash()?),
                None => r.damage.push(damage(
                    dir.epochs_file(),
                    Some(b),
                    format!(
                        "epoch {} names batch {b}, which no manifest holds",
                        e.epoch_id
                    ),
                )),
            }
        }
        let events: u64 = e
            .batch_ids
            .iter()
            .filter_map(|b| headers.get(b))
            .map(|h| h.size)
            .sum();
        if leaves.len() == e.batch_ids.len() && events != e.events {
            r.damage.push(damage(
                dir.epochs_file(),
                None,
                format!(
                    "epoch {} says {} events but its batches hold {events}",
                    e.epoch_id, e.events
                ),
            ));
        }
        if leaves.len() == e.batch_ids.len() {
            if let Some(l) = log.as_mut() {
                for leaf in &leaves {
                    l.push(*leaf);
                }
            }
            let root = match (e.log_size, &log) {
                (None, _) => Some(merkle::root(&leaves)),
                (Some(size), Some(l)) => l.root_at(size),
                (Some(_), None) => None,
            };
            match root {
                Some(root) if root != e.root => r.damage.push(damage(
                    dir.epochs_file(),
                    None,
                    match e.log_size {
                        Some(size) => format!(
                            "epoch {} root is {} but the log of its batch headers gives {root} at {size} leaves",
                            e.epoch_id, e.root
                        ),
                        None => format!(
                            "epoch {} root is {} but its batch headers give {root}",
                            e.epoch_id, e.root
                        ),
                    },
                )),
                None if log.is_some() => r.damage.push(damage(
                    dir.epochs_file(),
                    None,
                    format!(
                        "epoch {} says the log has {} leaves; its epochs hold another number",
                        e.epoch_id,
                        e.tree_size()
                    ),
                )),
                _ => {}
            }
        } else {
            log = None;
        }
        r.epochs += 1;
    }
    progress.step("epochs");

    // The local ledger: chain, signatures, head, and the epochs it anchors.
    let ledger_path = dir.ledger_file();
    // Locally the file's own text; on an object store its entries, one per line.
    let text = if dir.is_remote() {
        dir.read_jsonl::<serde_json::Value>(&ledger_path)
            .map(|entries| entries.iter().map(|e| format!("{e}\n")).collect::<String>())
            .map_err(|e| e.to_string())
    } else {
        match std::fs::read_to_string(&ledger_path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => return Err(Error::io("read", &ledger_path)(e)),
        }
    };
    match text.and_then(|t| veritrace_verify::verify::verify_ledger(&t).map_err(|e| e.to_string()))
    {
        Ok(entries) => {
            if let Err(e) = crate::ledger::check_head(dir, &entries) {
                r.damage
                    .push(damage(ledger_path.clone(), None, e.to_string()));
            }
            if entries.len() > epochs.len() {
                r.damage.push(damage(
                    dir.epochs_file(),
                    None,
                    format!(
                        "the ledger anchors {} epochs but the epoch log holds {}",
                        entries.len(),
                        epochs.len()
                    ),
                ));
            }
            for (l, e) in entries.iter().zip(&epochs) {
                if l.batch_count != e.tree_size() {
                    r.damage.push(damage(
                        ledger_path.clone(),
                        None,
                        format!(
                            "epoch {} is anchored with a tree of {} leaves but the epoch log says {}",
                            e.epoch_id,
                            l.batch_count,
                            e.tree_size()
                        ),
                    ));
                }
                if l.root != e.root {
                    r.damage.push(damage(
                        ledger_path.clone(),
                        None,
                        format!(
                            "epoch {} is anchored with root {} but the epoch log says {}",
                            e.epoch_id, l.root, e.root
                        ),
                    ));
                }
            }
            r.ledger_entries = entries.len() as u64;
        }
        Err(e) => r
            .damage
            .push(damage(ledger_path.clone(), None, e.to_string())),
    }
    progress.step("ledger");

    // The published log: its checkpoint and tiles against the log of the epochs.
    if let Some(l) = &log {
        r.log_tiles = check_published_log(dir, l, &epochs, &mut r.damage)?;
    }

    // EVM receipts (read from the journal; the chain itself is `veritrace verify --rpc`).
    match crate::evm::read_receipts(dir) {
        Ok(receipts) => {
            for (epoch_id, (root, _)) in &receipts {
                match epochs.get(*epoch_id as usize) {
                    Some(e) if e.root == *root => {}
                    Some(e) => r.damage.push(damage(
                        dir.evm_journal_file(),
                        None,
                        format!(
                            "epoch {epoch_id} was anchored on chain with root {root} but the epoch log says {}",
                            e.root
                        ),
                    )),
                    None => r.damage.push(damage(
                        dir.evm_journal_file(),
                        None,
                        format!("a chain receipt anchors epoch {epoch_id}, which the epoch log lacks"),
                    )),
                }
                r.evm_receipts += 1;
            }
        }
        Err(e) => r
            .damage
            .push(damage(dir.evm_journal_file(), None, e.to_string())),
    }
    progress.step("anchors");
    Ok(r)
}

fn root_problem(h: &BatchHeader, leaves: &[Digest]) -> Option<String> {
    if leaves.len() as u64 != h.size {
        return Some(format!(
            "{} leaves where the sealed header says {}",
            leaves.len(),
            h.size
        ));
    }
    let root = merkle::root(leaves);
    (root != h.root).then(|| {
        format!(
            "the leaves give root {root} but the sealed header says {}",
            h.root
        )
    })
}

/// One stored event row, as far as checks need it.
struct Row {
    batch_id: String,
    leaf_index: u64,
    leaf: Digest,
    /// The stored canonical event (deep reads only).
    canonical: Option<String>,
}

fn check_rows(path: &Path, batch: &str, rows: &[Row], r: &mut CheckReport) {
    let mut seen: HashSet<(&str, u64)> = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        if !batch.is_empty() && (row.batch_id != batch || row.leaf_index != i as u64) {
            r.damage.push(Damage {
                path: path.to_owned(),
                batch: Some(batch.to_owned()),
                problem: format!(
                    "row {i} says batch {} leaf {}, expected {batch} leaf {i}",
                    row.batch_id, row.leaf_index
                ),
            });
        }
        if !seen.insert((row.batch_id.as_str(), row.leaf_index)) {
            r.damage.push(Damage {
                path: path.to_owned(),
                batch: Some(row.batch_id.clone()),
                problem: format!("leaf {} is stored twice", row.leaf_index),
            });
        }
        if let Some(c) = &row.canonical {
            let found = merkle::leaf_hash(c.as_bytes());
            if found != row.leaf {
                r.damage.push(Damage {
                    path: path.to_owned(),
                    batch: Some(row.batch_id.clone()),
                    problem: format!(
                        "the stored event of leaf {} hashes to {found}, not its leaf hash {} (the event was altered)",
                        row.leaf_index, row.leaf
                    ),
                });
            }
            r.leaves_recomputed += 1;
        }
    }
}

fn read_event_rows(dir: &DataDir, path: &Path, canonical: bool) -> Result<Vec<Row>> {
    let bad = |detail: String| Error::Corrupt {
        path: path.to_owned(),
        detail,
    };
    let f = dir.source(path)?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| bad(e.to_string()))?;
    let mut names = vec!["batch_id", "leaf_index", "leaf_hash"];
    if canonical {
        names.push("canonical");
    }
    let roots = names
        .iter()
        .map(|n| b.schema().index_of(n).map_err(|e| bad(e.to_string())))
        .collect::<Result<Vec<_>>>()?;
    let mask = ProjectionMask::roots(b.parquet_schema(), roots);
    let mut out = Vec::new();
    for batch in b
        .with_projection(mask)
        .build()
        .map_err(|e| bad(e.to_string()))?
    {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let col = |n: &str| {
            batch
                .column_by_name(n)
                .ok_or_else(|| bad(format!("no {n} column")))
        };
        let ids = col("batch_id")?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| bad("batch_id is not a string column".into()))?;
        let idx = col("leaf_index")?
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| bad("leaf_index is not a UInt64 column".into()))?;
        let leaf = col("leaf_hash")?
            .as_any()
            .downcast_ref::<FixedSizeBinaryArray>()
            .ok_or_else(|| bad("leaf_hash is not FixedSizeBinary(32)".into()))?;
        let canon = if canonical {
            Some(
                col("canonical")?
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| bad("canonical is not a string column".into()))?,
            )
        } else {
            None
        };
        for i in 0..batch.num_rows() {
            let h =
                <[u8; 32]>::try_from(leaf.value(i)).map_err(|_| bad("leaf hash length".into()))?;
            out.push(Row {
                batch_id: ids.value(i).to_owned(),
                leaf_index: idx.value(i),
                leaf: Digest(h),
                canonical: canon.map(|c| c.value(i).to_owned()),
            });
        }
    }
    Ok(out)
}

/// Checks the published checkpoint and every tile and entry bundle under `log/tile/`
/// (locally; on an object store the checkpoint only) against the log of the epochs;
/// returns how many tiles were compared.
fn check_published_log(
    dir: &DataDir,
    log: &veritrace_verify::logtree::LogTree,
    epochs: &[crate::EpochRecord],
    out: &mut Vec<Damage>,
) -> Result<u64> {
    use veritrace_verify::logtree::{self, TileRef};
    let mut push = |path: PathBuf, problem: String| {
        out.push(Damage {
            path,
            batch: None,
            problem,
        })
    };
    let last_size = epochs.iter().rev().find_map(|e| e.log_size);
    match crate::log::published(dir) {
        Err(e) => push(dir.log_checkpoint_file(), e.to_string()),
        Ok(None) => {
            if let Some(size) = last_size {
                push(
                    dir.log_checkpoint_file(),
                    format!("no checkpoint is published but the log has {size} leaves"),
                );
            }
        }
        Ok(Some((_, c))) => {
            if !epochs.iter().any(|e| e.log_size == Some(c.size)) {
                push(
                    dir.log_checkpoint_file(),
                    format!("the checkpoint's size {} is no epoch's log size", c.size),
                );
            } else if log.root_at(c.size) != Some(c.root) {
                push(
                    dir.log_checkpoint_file(),
                    format!(
                        "the checkpoint's root at {} leaves is {} but the epochs' log gives {}",
                        c.size,
                        c.root,
                        log.root_at(c.size)
                            .unwrap_or(veritrace_verify::Digest::ZERO)
                    ),
                );
            }
        }
    }
    if dir.is_remote() {
        return Ok(0);
    }
    let base = dir.log_dir().join("tile");
    let mut files = Vec::new();
    let mut stack = vec![base.clone()];
    while let Some(d) = stack.pop() {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("list", &d)(e)),
        };
        for e in rd {
            let e = e.map_err(Error::io("list", &d))?;
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut checked = 0;
    for f in files {
        let rel = f
            .strip_prefix(&base)
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        let tile = match logtree::parse_tile_path(&rel) {
            Ok(t) => t,
            // A crash leaves a temporary file of a create-only write: not a tile.
            Err(_) if rel.ends_with(".tmp") => continue,
            Err(e) => {
                push(f, format!("not a tile of the log: {e}"));
                continue;
            }
        };
        let bytes = std::fs::read(&f).map_err(Error::io("read", &f))?;
        checked += 1;
        let problem = match tile {
            TileRef::Hashes(level, index, width) => {
                let size = (index * logtree::TILE_WIDTH + width).checked_shl(level * 8);
                match size.and_then(|s| log.tile(level, index, s)) {
                    None => Some("a tile beyond the log's size".to_owned()),
                    Some(h) if h.iter().flat_map(|d| d.0).eq(bytes.iter().copied()) => None,
                    Some(_) => Some("its hashes are not the log's".to_owned()),
                }
            }
            TileRef::Entries(index, width) => match logtree::read_entry_bundle(&bytes) {
                Err(e) => Some(e.to_string()),
                Ok(list) if list.len() as u64 != width => Some(format!(
                    "{} entries where its name says {width}",
                    list.len()
                )),
                Ok(list) => list
                    .iter()
                    .enumerate()
                    .find(|(i, e)| {
                        log.leaf(index * logtree::TILE_WIDTH + *i as u64)
                            != Some(veritrace_verify::merkle::leaf_hash(e))
                    })
                    .map(|(i, _)| {
                        format!(
                            "entry {} is not the log's leaf {}",
                            i,
                            index * logtree::TILE_WIDTH + i as u64
                        )
                    }),
            },
        };
        if let Some(p) = problem {
            push(f, p);
        }
    }
    Ok(checked)
}
