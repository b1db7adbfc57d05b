use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::storage::Remote;
use crate::{Error, Result};

/// The data directory layout. Everything a query or an auditor needs is under one root:
///
/// ```text
/// events/{batch_id}.parquet      accepted events of one batch (leaf index, leaf hash)
/// rejected/{batch_id}.parquet    rejected records of the same offset range (original bytes)
/// edges/{batch_id}.parquet       trace-graph edges (input -> output) of the batch's events
/// compacted/*.parquet            many batches' events in one file, sorted by trace code
/// compacted/compactions.jsonl    committed compactions (which batches each file holds)
/// leaves/{batch_id}.leaves       leaf hashes of a compacted batch, in leaf order
/// batches/{stream}-p{N}.jsonl    hash-chained batch headers of one partition
/// batches/{stream}-p{N}.lock     held by the process that owns the partition
/// digests/{stream}-p{N}.jsonl    length and SHA-256 of each file a batch committed
/// epochs/anchorer.lock           held by the process that seals and anchors epochs
/// epochs/epochs.jsonl            epoch records (which batches, epoch root)
/// ledger/local.jsonl             the local anchor: signed, hash-chained epoch roots
/// anchors/evm.jsonl              the EVM anchor journal: signed txs, receipts, reorgs
/// ledger/head.json               how many ledger entries exist and the last one's hash
/// keys/local-ledger.key          the node's Ed25519 seed (0600); .pub is the public key
/// quarantine/                    files recovery set aside instead of deleting them
/// dedupe/{stream}-p{N}/*.ids     the hashes of older event ids, sorted (derived; rebuilt
///                                from the events files when missing or damaged)
/// ```
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    /// The object store, when the data directory is `s3://bucket/prefix` (`root` is then that
    /// URL, and every path under it names the object key).
    remote: Option<Arc<Remote>>,
    /// A local directory for the processors' dedupe runs, instead of `dedupe/` under a
    /// local root (the only place for them when the data is on an object store).
    dedupe: Option<PathBuf>,
}

/// The local path a data directory names: a plain path, or a `file://` URL. Other URLs
/// than `s3://` are refused with a clear error instead of becoming a relative directory
/// named `scheme:`.
fn local_root(root: PathBuf) -> Result<PathBuf> {
    let Some(text) = root.to_str() else {
        return Ok(root);
    };
    if let Some(path) = text.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(Error::Invalid(format!(
                "{text:?}: a file:// data directory needs an absolute path (file:///var/lib/veritrace)"
            )));
        }
        return Ok(PathBuf::from(path));
    }
    if let Some((scheme, _)) = text.split_once("://")
        && !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
    {
        return Err(Error::Invalid(format!(
            "{text:?}: data directories on {scheme}:// are not supported; use a path, file:///path or s3://bucket/prefix (see deploy/README.md)"
        )));
    }
    Ok(root)
}

/// The marker object of a data directory on an object store (there are no directories to
/// tell one from an empty prefix).
const MARKER: &str = "veritrace-data.json";

/// `s3://bucket/prefix` as a data directory: the store from the usual AWS variables
/// (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_ALLOW_HTTP` for a plain-HTTP endpoint), path-style requests.
fn remote_root_with(
    text: &str,
    opts: &crate::store::S3Options,
) -> Result<Option<(PathBuf, Arc<Remote>)>> {
    if !text.starts_with("s3://") {
        return Ok(None);
    }
    let url = text.trim_end_matches('/').to_owned();
    let dir = crate::store::ObjectDir::s3(&url, opts).map_err(Error::Invalid)?;
    Ok(Some((PathBuf::from(&url), Arc::new(Remote::new(dir, url)))))
}

impl DataDir {
    /// Opens (creating if needed) a data directory.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self> {
        Self::create_with(root, &crate::store::S3Options::configured())
    }

    /// [`DataDir::create`], with the object store's endpoint, region and credentials given
    /// (empty fields: the AWS variables).
    pub fn create_with(root: impl Into<PathBuf>, s3: &crate::store::S3Options) -> Result<Self> {
        let root = root.into();
        if let Some((root, remote)) = remote_root_with(&root.to_string_lossy(), s3)? {
            let dir = DataDir {
                root,
                remote: Some(remote.clone()),
                dedupe: None,
            };
            let marker = dir.root.join(MARKER);
            remote.create(&marker, MARKER.into(), br#"{"format":1}"#.to_vec())?;
            return Ok(dir);
        }
        let dir = DataDir {
            root: local_root(root)?,
            remote: None,
            dedupe: None,
        };
        for sub in [
            "events", "rejected", "edges", "batches", "epochs", "ledger", "anchors", "keys",
            "digests",
        ] {
            let p = dir.root.join(sub);
            std::fs::create_dir_all(&p).map_err(Error::io("create directory", &p))?;
        }
        Ok(dir)
    }

    /// Opens an existing data directory without creating anything.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        Self::open_with(root, &crate::store::S3Options::configured())
    }

    /// [`DataDir::open`], with the object store's endpoint, region and credentials given.
    pub fn open_with(root: impl Into<PathBuf>, s3: &crate::store::S3Options) -> Result<Self> {
        let root = root.into();
        if let Some((root, remote)) = remote_root_with(&root.to_string_lossy(), s3)? {
            let marker = root.join(MARKER);
            if !remote.exists(&marker, MARKER.into())? {
                return Err(Error::Invalid(format!(
                    "{} is not a Veritrace data directory (no {MARKER} in it); run a processor or `veritrace ingest` with --data {} first",
                    root.display(),
                    root.display()
                )));
            }
            return Ok(DataDir {
                root,
                remote: Some(remote),
                dedupe: None,
            });
        }
        let dir = DataDir {
            root: local_root(root)?,
            remote: None,
            dedupe: None,
        };
        let batches = dir.root.join("batches");
        if !batches.is_dir() {
            return Err(Error::Invalid(format!(
                "{} is not a Veritrace data directory (no batches/ inside); run `veritrace demo --data {}` or point --data at one",
                dir.root.display(),
                dir.root.display()
            )));
        }
        Ok(dir)
    }

    /// The same data directory, with the processors' dedupe runs in the local directory
    /// `dir` (`pipeline.dedupe-dir`; one per data directory) instead of `dedupe/` under the
    /// root. An empty path leaves the default.
    pub fn with_dedupe_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        self.dedupe = (!dir.as_os_str().is_empty()).then_some(dir);
        self
    }

    /// Where the dedupe runs of a partition go: under [`DataDir::with_dedupe_dir`]'s
    /// directory, or `dedupe/` of a local root; `None` on an object store without one (every
    /// id then stays in memory).
    pub fn dedupe_dir(&self, stream: &str, partition: u32) -> Option<PathBuf> {
        let base = match (&self.dedupe, &self.remote) {
            (Some(d), _) => d.clone(),
            (None, None) => self.root.join("dedupe"),
            (None, Some(_)) => return None,
        };
        Some(base.join(format!("{stream}-p{partition:03}")))
    }

    /// Whether the data directory is on an object store.
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Refuses `what` on an object store, for the operations that need a local directory.
    pub fn require_local(&self, what: &str) -> Result<()> {
        if self.is_remote() {
            return Err(Error::Invalid(format!(
                "{what} needs a local data directory; {} is on an object store",
                self.root.display()
            )));
        }
        Ok(())
    }

    /// The object store and its URL (`s3://bucket`) and key prefix, for DataFusion; `None`
    /// for a local directory.
    pub fn object_store(&self) -> Option<(String, Arc<dyn object_store::ObjectStore>, String)> {
        let r = self.remote.as_ref()?;
        let (store, prefix) = r.dir.store();
        let rest = r.url.strip_prefix("s3://").unwrap_or(&r.url);
        let bucket = rest.split('/').next().unwrap_or(rest);
        Some((format!("s3://{bucket}"), store.clone(), prefix.to_owned()))
    }

    fn key(&self, path: &Path) -> Result<String> {
        crate::storage::key_of(&self.root, path)
    }

    /// The bytes of `path`; `None` when it does not exist.
    pub fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        match &self.remote {
            Some(r) => r.read(path, self.key(path)?),
            None => match std::fs::read(path) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io("read", path)(e)),
            },
        }
    }

    /// `path` opened for a Parquet reader; `None` when it does not exist.
    pub fn open_source(&self, path: &Path) -> Result<Option<crate::storage::Source>> {
        match &self.remote {
            Some(_) => Ok(self
                .read_file(path)?
                .map(|b| crate::storage::Source::Bytes(bytes::Bytes::from(b)))),
            None => match std::fs::File::open(path) {
                Ok(f) => Ok(Some(crate::storage::Source::File(f))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io("open", path)(e)),
            },
        }
    }

    /// `path` opened for a Parquet reader; a missing file is an error naming it.
    pub fn source(&self, path: &Path) -> Result<crate::storage::Source> {
        self.open_source(path)?.ok_or_else(|| Error::Io {
            op: "open",
            path: path.to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
    }

    /// The length of `path`; `None` when it does not exist.
    pub fn file_len(&self, path: &Path) -> Result<Option<u64>> {
        match &self.remote {
            Some(r) => r.len(path, self.key(path)?),
            None => match std::fs::metadata(path) {
                Ok(m) => Ok(Some(m.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io("stat", path)(e)),
            },
        }
    }

    /// Bytes `start..start + len` of `path` (a ranged GET on an object store).
    pub fn read_range(&self, path: &Path, start: u64, len: u64) -> Result<bytes::Bytes> {
        match &self.remote {
            Some(r) => r.read_range(path, self.key(path)?, start, len),
            None => {
                use std::os::unix::fs::FileExt;
                let f = std::fs::File::open(path).map_err(Error::io("open", path))?;
                let mut buf = vec![0u8; len as usize];
                f.read_exact_at(&mut buf, start)
                    .map_err(Error::io("read", path))?;
                Ok(buf.into())
            }
        }
    }

    /// Whether `path` exists.
    pub fn exists(&self, path: &Path) -> Result<bool> {
        match &self.remote {
            Some(r) => r.exists(path, self.key(path)?),
            None => Ok(path.exists()),
        }
    }

    /// Reads a JSON-lines log (missing: empty); see [`crate::read_jsonl`]. On an object store
    /// the log `x.jsonl` is the objects `x/{seq:020}.json`.
    pub fn read_jsonl<T: DeserializeOwned>(&self, path: &Path) -> Result<Vec<T>> {
        match &self.remote {
            Some(r) => r.read_log(path, &self.key(path)?),
            None => crate::fsutil::read_jsonl(path),
        }
    }

    /// Appends one entry to a JSON-lines log, durably, as its entry number `seq` (how many
    /// entries the writer read or wrote before). On an object store the entry is written
    /// create-only at `seq`: if another writer took it, nothing is written and the answer is
    /// [`Error::Lost`]. Locally the log's OS lock makes the writer the only one.
    pub fn append_jsonl<T: serde::Serialize>(
        &self,
        path: &Path,
        seq: u64,
        value: &T,
    ) -> Result<()> {
        match &self.remote {
            Some(r) => r.append(path, &self.key(path)?, seq, value),
            None => crate::fsutil::append_line_durable(path, value),
        }
    }

    /// Cuts a torn last line off a log this process owns (nothing to do on an object store:
    /// an entry is written whole or not at all).
    pub fn repair_torn_tail(&self, path: &Path) -> Result<()> {
        match &self.remote {
            Some(_) => Ok(()),
            None => crate::fsutil::repair_torn_tail(path),
        }
    }

    /// Writes `path` only if nothing is there: `true` when this call wrote it. Locally a
    /// temporary file is written, fsynced and hard-linked to the name.
    pub fn write_new(&self, path: &Path, bytes: Vec<u8>) -> Result<bool> {
        match &self.remote {
            Some(r) => r.create(path, self.key(path)?, bytes),
            None => crate::fsutil::write_new(path, &bytes),
        }
    }

    /// Writes `path` whole, replacing what is there (atomically: readers see the old or the
    /// new content).
    pub fn write_replace(&self, path: &Path, bytes: Vec<u8>) -> Result<()> {
        match &self.remote {
            Some(r) => r.replace(path, self.key(path)?, bytes),
            None => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(Error::io("create directory", parent))?;
                }
                crate::fsutil::write_atomic(path, |f| {
                    use std::io::Write;
                    f.write_all(&bytes).map_err(Error::io("write", path))
                })
            }
        }
    }

    /// Deletes `path` (absent already: done).
    pub fn remove_file(&self, path: &Path) -> Result<()> {
        match &self.remote {
            Some(r) => r.delete(path, self.key(path)?),
            None => match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io("remove", path)(e)),
            },
        }
    }

    /// The files directly in `dir` with their sizes, sorted by path (missing: none).
    pub fn list_files(&self, dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
        match &self.remote {
            Some(r) => {
                let prefix = self.key(dir)?;
                Ok(r.list(dir, format!("{prefix}/"))?
                    .into_iter()
                    .filter_map(|(k, size)| {
                        let rest = k.strip_prefix(&format!("{prefix}/"))?;
                        (!rest.contains('/'))
                            .then(|| (crate::storage::path_of(&self.root, &k), size))
                    })
                    .collect())
            }
            None => {
                let rd = match std::fs::read_dir(dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(Error::io("list", dir)(e)),
                };
                let mut out = Vec::new();
                for e in rd {
                    let e = e.map_err(Error::io("list", dir))?;
                    let Ok(m) = e.metadata() else { continue };
                    if m.is_file() {
                        out.push((e.path(), m.len()));
                    }
                }
                out.sort();
                Ok(out)
            }
        }
    }

    /// The JSON-lines logs (`*.jsonl`) in `dir`, sorted, each with a number that changes
    /// when the log grows (its length locally, its entry count on an object store).
    pub fn list_logs(&self, dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
        match &self.remote {
            Some(r) => {
                let prefix = self.key(dir)?;
                let mut logs: std::collections::BTreeMap<PathBuf, u64> = Default::default();
                for (k, _) in r.list(dir, format!("{prefix}/"))? {
                    let Some(rest) = k.strip_prefix(&format!("{prefix}/")) else {
                        continue;
                    };
                    let Some((name, entry)) = rest.split_once('/') else {
                        continue;
                    };
                    if entry.contains('/') || !entry.ends_with(".json") {
                        continue;
                    }
                    *logs.entry(dir.join(format!("{name}.jsonl"))).or_default() += 1;
                }
                Ok(logs.into_iter().collect())
            }
            None => Ok(self
                .list_files(dir)?
                .into_iter()
                .filter(|(p, _)| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()),
        }
    }

    /// Takes the lock at `path` without waiting: an OS file lock locally, a lease object
    /// (`leases/{path}.json`, renewed in the background) on an object store. `Ok(None)`:
    /// another process holds it ([`DataDir::lock_holder`] names it).
    pub fn try_lock(&self, path: &Path, holder: &str) -> Result<Option<crate::DirLock>> {
        match &self.remote {
            Some(r) => {
                let key = self.key(path)?;
                let name = key.strip_suffix(".lock").unwrap_or(&key);
                Ok(crate::storage::HeldLease::acquire(r, path, name, holder)?
                    .ok()
                    .map(|l| crate::DirLock::lease(l, path)))
            }
            None => crate::DirLock::try_acquire(path, holder),
        }
    }

    /// Who holds the lock at `path`, as far as it says (for error messages).
    pub fn lock_holder(&self, path: &Path) -> String {
        match &self.remote {
            Some(_) => {
                let Ok(key) = self.key(path) else {
                    return String::new();
                };
                let name = key.strip_suffix(".lock").unwrap_or(&key);
                let lease = self.root.join(format!("leases/{name}.json"));
                self.read_file(&lease)
                    .ok()
                    .flatten()
                    .and_then(|b| serde_json::from_slice::<crate::store::LeaseState>(&b).ok())
                    .map(|s| format!("{} (lease generation {})", s.holder, s.generation))
                    .unwrap_or_default()
            }
            None => crate::DirLock::holder(path),
        }
    }

    /// The root path.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `quarantine/`: files recovery moved aside instead of deleting (an operator decides).
    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join("quarantine")
    }
    /// `digests/{stream}-p{N}.jsonl`: length and SHA-256 of the files each batch committed.
    pub fn batch_files_log(&self, stream: &str, partition: u32) -> PathBuf {
        self.root
            .join("digests")
            .join(format!("{stream}-p{partition:03}.jsonl"))
    }
    /// `ledger/head.json`: the ledger's entry count and last entry hash, so a truncated
    /// ledger is found instead of re-signed.
    pub fn ledger_head_file(&self) -> PathBuf {
        self.root.join("ledger").join("head.json")
    }
    /// `events/`
    pub fn events_dir(&self) -> PathBuf {
        self.root.join("events")
    }
    /// `rejected/`
    pub fn rejected_dir(&self) -> PathBuf {
        self.root.join("rejected")
    }
    /// `edges/`
    pub fn edges_dir(&self) -> PathBuf {
        self.root.join("edges")
    }
    /// `compacted/`
    pub fn compacted_dir(&self) -> PathBuf {
        self.root.join("compacted")
    }
    /// `compacted/compactions.jsonl`
    pub fn compactions_file(&self) -> PathBuf {
        self.compacted_dir().join("compactions.jsonl")
    }
    /// `compacted/compactor.lock`
    pub fn compactor_lock_file(&self) -> PathBuf {
        self.compacted_dir().join("compactor.lock")
    }
    /// `leaves/`
    pub fn leaves_dir(&self) -> PathBuf {
        self.root.join("leaves")
    }
    /// Leaf hashes of a compacted batch (32 bytes each, leaf order).
    pub fn leaves_file(&self, batch_id: &str) -> PathBuf {
        self.leaves_dir().join(format!("{batch_id}.leaves"))
    }
    /// `batches/`
    pub fn batches_dir(&self) -> PathBuf {
        self.root.join("batches")
    }
    /// Private values (and salts) of a batch, kept apart from the log (`private/`).
    pub fn private_file(&self, batch_id: &str) -> PathBuf {
        self.root().join("private").join(format!("{batch_id}.json"))
    }
    /// Events file of a batch.
    pub fn events_file(&self, batch_id: &str) -> PathBuf {
        self.events_dir().join(format!("{batch_id}.parquet"))
    }
    /// Rejected-records file of a batch.
    pub fn rejected_file(&self, batch_id: &str) -> PathBuf {
        self.rejected_dir().join(format!("{batch_id}.parquet"))
    }
    /// Trace-graph edges of a batch (only when the batch has assembly or transformation
    /// events).
    pub fn edges_file(&self, batch_id: &str) -> PathBuf {
        self.edges_dir().join(format!("{batch_id}.parquet"))
    }
    /// Manifest of one partition of one stream.
    pub fn manifest_file(&self, stream: &str, partition: u32) -> PathBuf {
        self.batches_dir()
            .join(format!("{stream}-p{partition:03}.jsonl"))
    }
    /// Write-ahead journal of one partition of a stream whose records are acknowledged
    /// before they are sealed (the audit log): emptied after each seal.
    pub fn journal_file(&self, stream: &str, partition: u32) -> PathBuf {
        self.batches_dir()
            .join(format!("{stream}-p{partition:03}.journal"))
    }
    /// Lock file of one partition of one stream: held by the process that owns it.
    pub fn partition_lock_file(&self, stream: &str, partition: u32) -> PathBuf {
        self.batches_dir()
            .join(format!("{stream}-p{partition:03}.lock"))
    }
    /// Lock file of the anchorer: one process per data directory seals and anchors epochs.
    pub fn anchorer_lock_file(&self) -> PathBuf {
        self.root.join("epochs").join("anchorer.lock")
    }
    /// `epochs/epochs.jsonl`
    pub fn epochs_file(&self) -> PathBuf {
        self.root.join("epochs").join("epochs.jsonl")
    }
    /// `ledger/local.jsonl`
    pub fn ledger_file(&self) -> PathBuf {
        self.root.join("ledger").join("local.jsonl")
    }
    /// `anchors/evm.jsonl`: the EVM backend's journal (see [`crate::evm`]).
    pub fn evm_journal_file(&self) -> PathBuf {
        self.root.join("anchors").join("evm.jsonl")
    }
    /// `keys/local-ledger.key`
    pub fn ledger_key_file(&self) -> PathBuf {
        self.root.join("keys").join("local-ledger.key")
    }
    /// All batch headers of all partitions, each manifest in chain order.
    pub fn all_batch_headers(&self) -> Result<Vec<crate::BatchHeader>> {
        let mut out = Vec::new();
        for (f, _) in self.list_logs(&self.batches_dir())? {
            out.extend(self.read_jsonl::<crate::BatchHeader>(&f)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_a_path_only_with_file_scheme() {
        assert_eq!(
            local_root("file:///var/lib/veritrace".into()).expect("file url"),
            PathBuf::from("/var/lib/veritrace")
        );
        assert_eq!(
            local_root("data/vt".into()).expect("path"),
            PathBuf::from("data/vt")
        );
        let e = local_root("gs://bucket/prefix".into()).expect_err("gs");
        assert!(e.to_string().contains("s3://bucket/prefix"), "{e}");
        assert!(
            remote_root_with("s3://bucket/prefix", &Default::default())
                .expect("s3")
                .is_some()
        );
        assert!(
            remote_root_with("/var/lib/veritrace", &Default::default())
                .expect("path")
                .is_none()
        );
        assert!(local_root("file://relative".into()).is_err());
        // A colon in a plain path is still a path.
        assert!(local_root("/tmp/a:b".into()).is_ok());
    }
}
