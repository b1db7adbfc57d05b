use std::path::{Path, PathBuf};

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
/// ```
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

/// The local path a data directory names: a plain path, or a `file://` URL. Other URLs
/// (`s3://bucket/prefix`) are refused with a clear error instead of becoming a relative
/// directory named `s3:`.
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
            "{text:?}: data directories on object storage ({scheme}://) are not supported yet; use a local or shared file system path (see deploy/README.md)"
        )));
    }
    Ok(root)
}

impl DataDir {
    /// Opens (creating if needed) a data directory.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self> {
        let dir = DataDir {
            root: local_root(root.into())?,
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
        let dir = DataDir {
            root: local_root(root.into())?,
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
        let dir = self.batches_dir();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(Error::io("list", &dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        let mut out = Vec::new();
        for f in files {
            out.extend(crate::fsutil::read_jsonl::<crate::BatchHeader>(&f)?);
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
        let e = local_root("s3://bucket/prefix".into()).expect_err("s3");
        assert!(e.to_string().contains("not supported yet"), "{e}");
        assert!(local_root("file://relative".into()).is_err());
        // A colon in a plain path is still a path.
        assert!(local_root("/tmp/a:b".into()).is_ok());
    }
}
