//! The data directory's backends behind one set of operations: a local (or shared POSIX)
//! directory, or an object store (`s3://bucket/prefix`). Writers and readers call these
//! through [`crate::DataDir`] with the same paths on both; on an object store a path is the
//! object key under the prefix (ARCHITECTURE.md, "Object storage").
//!
//! | operation | local directory | object store |
//! |---|---|---|
//! | create-only write | temp file, fsync, hard link (fails if taken), fsync dir | PUT `If-None-Match: *` |
//! | replace | temp file, fsync, rename, fsync dir | PUT |
//! | append to a JSON-lines log `x.jsonl` | append one line, fsync | create-only PUT of `x/{seq:020}.json` |
//! | read a log | read, drop a torn last line | LIST `x/`, GET each entry (in parallel) |
//! | owner of a partition, the sealer | OS file lock | lease object, renewed by compare-and-swap |
//!
//! The object store is async; these calls are not (the processors' partition threads and the
//! anchorer are plain threads). They run on one small runtime of their own and wait for the
//! answer, so they may be called from anywhere, a blocking thread of another runtime
//! included.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use serde::de::DeserializeOwned;

use crate::store::{Appended, Lease, ObjectDir, StoreError};
use crate::{Error, Result};

/// An object-store data directory: the store, its URL and the next sequence number of each
/// log this process appends to.
#[derive(Debug)]
pub(crate) struct Remote {
    pub(crate) dir: ObjectDir,
    /// `s3://bucket/prefix`, as given.
    pub(crate) url: String,
}

/// The runtime the object-store calls run on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("veritrace-store")
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            // Without threads nothing of the process works; say so where it happened.
            Err(e) => panic!("starting the object-store runtime: {e}"),
        }
    })
}

/// Runs `fut` on the store runtime and waits for it on a plain channel. (Not by polling
/// the task's `JoinHandle` here: called from inside another runtime's task whose
/// cooperative budget is spent, that poll is told to yield and is woken again at once, and
/// the thread spins for ever.)
pub(crate) fn block<T: Send + 'static>(
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| Error::Bug("object-store call: its task ended without an answer".into()))
}

fn store_err(path: &Path) -> impl FnOnce(StoreError) -> Error {
    let path = path.to_owned();
    move |e| Error::Store {
        path,
        detail: e.to_string(),
    }
}

/// `x/y.jsonl` -> the log's name `x/y`.
fn log_name(key: &str) -> &str {
    key.strip_suffix(".jsonl").unwrap_or(key)
}

impl Remote {
    pub(crate) fn new(dir: ObjectDir, url: String) -> Remote {
        Remote { dir, url }
    }

    pub(crate) fn read(&self, path: &Path, key: String) -> Result<Option<Vec<u8>>> {
        let dir = self.dir.clone();
        block(async move { dir.read(&key).await })?
            .map(|v| v.map(|v| v.bytes.to_vec()))
            .map_err(store_err(path))
    }

    pub(crate) fn len(&self, path: &Path, key: String) -> Result<Option<u64>> {
        let dir = self.dir.clone();
        block(async move { dir.head(&key).await })?.map_err(store_err(path))
    }

    pub(crate) fn read_range(
        &self,
        path: &Path,
        key: String,
        start: u64,
        len: u64,
    ) -> Result<bytes::Bytes> {
        let dir = self.dir.clone();
        block(async move { dir.read_range(&key, start, len).await })?.map_err(store_err(path))
    }

    pub(crate) fn exists(&self, path: &Path, key: String) -> Result<bool> {
        let dir = self.dir.clone();
        block(async move { dir.head(&key).await })?
            .map(|m| m.is_some())
            .map_err(store_err(path))
    }

    pub(crate) fn create(&self, path: &Path, key: String, bytes: Vec<u8>) -> Result<bool> {
        let dir = self.dir.clone();
        block(async move { dir.create(&key, bytes).await })?
            .map(|v| v.is_some())
            .map_err(store_err(path))
    }

    pub(crate) fn replace(&self, path: &Path, key: String, bytes: Vec<u8>) -> Result<()> {
        let dir = self.dir.clone();
        block(async move { dir.overwrite(&key, bytes).await })?.map_err(store_err(path))
    }

    pub(crate) fn delete(&self, path: &Path, key: String) -> Result<()> {
        let dir = self.dir.clone();
        block(async move { dir.delete(&key).await })?.map_err(store_err(path))
    }

    /// Keys directly or indirectly under `prefix/`, with their sizes, in key order.
    pub(crate) fn list(&self, path: &Path, prefix: String) -> Result<Vec<(String, u64)>> {
        let dir = self.dir.clone();
        block(async move { dir.list_sized(&prefix).await })?.map_err(store_err(path))
    }

    /// The entries of log `key` (`x.jsonl`), in order. A gap in the sequence is damage.
    pub(crate) fn read_log<T: DeserializeOwned>(&self, path: &Path, key: &str) -> Result<Vec<T>> {
        let name = log_name(key).to_owned();
        let dir = self.dir.clone();
        let entries = block(async move {
            let keys = dir.list(&format!("{name}/")).await?;
            let mut seqs = Vec::with_capacity(keys.len());
            for k in keys {
                if let Some(seq) = k
                    .strip_prefix(&format!("{name}/"))
                    .and_then(|k| k.strip_suffix(".json"))
                    .and_then(|k| k.parse::<u64>().ok())
                {
                    seqs.push((seq, k));
                }
            }
            let got: Vec<std::result::Result<(u64, Option<bytes::Bytes>), StoreError>> =
                futures::stream::iter(seqs)
                    .map(|(seq, k)| {
                        let dir = dir.clone();
                        async move { Ok((seq, dir.read(&k).await?.map(|v| v.bytes))) }
                    })
                    .buffered(32)
                    .collect()
                    .await;
            got.into_iter().collect::<std::result::Result<Vec<_>, _>>()
        })?
        .map_err(store_err(path))?;
        let mut out = Vec::with_capacity(entries.len());
        for (i, (seq, bytes)) in entries.into_iter().enumerate() {
            if seq != i as u64 {
                return Err(Error::Corrupt {
                    path: path.to_owned(),
                    detail: format!("entry {i} is missing (the next is {seq})"),
                });
            }
            let Some(bytes) = bytes else {
                return Err(Error::Corrupt {
                    path: path.to_owned(),
                    detail: format!("entry {seq} was listed and is gone"),
                });
            };
            out.push(serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                path: path.to_owned(),
                detail: format!("entry {seq}: {e}"),
            })?);
        }
        Ok(out)
    }

    /// Appends to log `key` at `seq`, the number of entries its writer has read or written.
    /// Another writer's entry there means this process no longer owns the log:
    /// [`Error::Lost`], and nothing is written (it stays fenced: it never moves past an entry
    /// it did not read).
    pub(crate) fn append<T: serde::Serialize>(
        &self,
        path: &Path,
        key: &str,
        seq: u64,
        value: &T,
    ) -> Result<()> {
        let entry = serde_json::to_vec(value).map_err(|e| Error::Bug(e.to_string()))?;
        let log = crate::store::ObjectLog::new(self.dir.clone(), log_name(key));
        match block(async move { log.append(seq, entry).await })?.map_err(store_err(path))? {
            Appended::Written => Ok(()),
            Appended::Taken(_) => Err(Error::Lost {
                path: path.to_owned(),
                detail: format!(
                    "another writer appended entry {seq} first: this process no longer owns the log and writes nothing more to it"
                ),
            }),
        }
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `holder` made unique to this acquisition: the process, a run id that differs between
/// processes with the same pid (containers), and a counter.
fn unique_holder(holder: &str) -> String {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static ACQUIRED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUN.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!(
            "{:x}",
            (nanos as u64) ^ (u64::from(std::process::id()) << 40)
        )
    });
    let n = ACQUIRED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{holder} pid={} run={run}.{n}", std::process::id())
}

/// How long a lease lasts without renewal: a holder that died is replaced after this.
pub const LEASE_TTL_MS: i64 = 15_000;

/// A lease held on an object store, renewed in the background every third of its life
/// until dropped (then released, so the next holder need not wait for the expiry).
#[derive(Debug)]
pub struct HeldLease {
    stop: Option<std::sync::mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
    lost: Arc<std::sync::atomic::AtomicBool>,
    /// The lease key.
    pub key: String,
}

impl HeldLease {
    /// Takes the lease `name` (`leases/{name}.json`), or says who holds it.
    pub(crate) fn acquire(
        remote: &Arc<Remote>,
        path: &Path,
        name: &str,
        holder: &str,
    ) -> Result<std::result::Result<HeldLease, String>> {
        let dir = remote.dir.clone();
        // Each acquisition is a holder of its own, as an OS lock is per open file: two
        // processes that give the same name (two replicas on one host), or two parts of one
        // process, never both hold the lease; and a restarted process waits out the lease of
        // the one it replaces instead of taking over what that one may still be writing.
        let holder = unique_holder(holder);
        let (n, h) = (name.to_owned(), holder.clone());
        let acquired_at = std::time::Instant::now();
        let got = block(async move { Lease::acquire(&dir, &n, &h, LEASE_TTL_MS, now_ms()).await })?
            .map_err(store_err(path))?;
        let lease = match got {
            Ok(l) => l,
            Err(held) => {
                return Ok(Err(format!(
                    "{} (lease generation {}, expires in {} ms)",
                    held.0.holder,
                    held.0.generation,
                    (held.0.expires_at_ms - now_ms()).max(0)
                )));
            }
        };
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (dir, flag, key) = (
            remote.dir.clone(),
            lost.clone(),
            format!("leases/{name}.json"),
        );
        let renewer = std::thread::Builder::new()
            .name("veritrace-lease".into())
            .spawn(move || {
                let mut lease = lease;
                let every = std::time::Duration::from_millis((LEASE_TTL_MS / 3) as u64);
                let ttl = std::time::Duration::from_millis(LEASE_TTL_MS as u64);
                // The lease runs out TTL after the last renewal that succeeded was *sent*
                // (measured here, on this process's monotonic clock): past that, another
                // process may hold it, so this one stops writing whether or not the store
                // has said so yet.
                let mut valid_until = acquired_at + ttl;
                loop {
                    match stopped.recv_timeout(every) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        _ => {
                            let d = dir.clone();
                            let _ = block(async move { lease.release(&d, now_ms()).await });
                            return;
                        }
                    }
                    let d = dir.clone();
                    let mut l = lease.clone();
                    let sent = std::time::Instant::now();
                    match block(async move {
                        let r = l.renew(&d, LEASE_TTL_MS, now_ms()).await;
                        (l, r)
                    }) {
                        Ok((l, Ok(true))) => {
                            lease = l;
                            valid_until = sent + ttl;
                        }
                        Ok((_, Ok(false))) => {
                            tracing::error!(lease = %lease.state().holder, "lease lost to another holder: this process's next write to what it guarded is refused");
                            flag.store(true, std::sync::atomic::Ordering::SeqCst);
                            return;
                        }
                        // A store that does not answer: try again; the lease may expire
                        // meanwhile, and then the create-only commits fence this writer.
                        Ok((_, Err(e))) => tracing::warn!(error = %e, "renewing a lease failed; retrying"),
                        Err(e) => tracing::warn!(error = %e, "renewing a lease failed; retrying"),
                    }
                    // A margin of one renewal interval: clocks and requests in flight.
                    if std::time::Instant::now() + every >= valid_until {
                        tracing::error!(lease = %lease.state().holder, "a lease could not be renewed before it ran out: this process gives up what it guarded");
                        flag.store(true, std::sync::atomic::Ordering::SeqCst);
                        return;
                    }
                }
            })
            .map_err(Error::io("start lease renewer", path))?;
        Ok(Ok(HeldLease {
            stop: Some(stop),
            renewer: Some(renewer),
            lost,
            key,
        }))
    }

    /// Whether another holder took the lease (after it expired unrenewed).
    pub fn lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(r) = self.renewer.take() {
            let _ = r.join();
        }
    }
}

/// The key of `path` under `root` (`/` separated); a path outside the root is a bug.
pub(crate) fn key_of(root: &Path, path: &Path) -> Result<String> {
    let rel = path.strip_prefix(root).map_err(|_| {
        Error::Bug(format!(
            "{} is not inside the data directory {}",
            path.display(),
            root.display()
        ))
    })?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Ok(parts.join("/"))
}

/// `root` joined with `key`.
pub(crate) fn path_of(root: &Path, key: &str) -> PathBuf {
    root.join(key)
}

/// A Parquet file to read: a local file, or an object's bytes.
#[derive(Debug)]
pub enum Source {
    /// A local file.
    File(std::fs::File),
    /// The object, read whole.
    Bytes(bytes::Bytes),
}

impl parquet::file::reader::Length for Source {
    fn len(&self) -> u64 {
        match self {
            Source::File(f) => f.len(),
            Source::Bytes(b) => b.len() as u64,
        }
    }
}

impl parquet::file::reader::ChunkReader for Source {
    type T = Box<dyn std::io::Read + Send>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(match self {
            Source::File(f) => Box::new(f.get_read(start)?),
            Source::Bytes(b) => Box::new(b.get_read(start)?),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        match self {
            Source::File(f) => f.get_bytes(start, length),
            Source::Bytes(b) => b.get_bytes(start, length),
        }
    }
}

/// One object addressed by its own `s3://bucket/key` URL (a file that lives beside a data
/// directory, such as the API token list), read and replaced by compare-and-swap.
#[derive(Debug, Clone)]
pub struct ObjectFile {
    dir: ObjectDir,
    name: String,
    url: String,
}

/// The version an [`ObjectFile`] was read at (`None`: it did not exist).
#[derive(Debug, Clone)]
pub struct ReadAt(Option<crate::store::Version>);

impl ObjectFile {
    /// `Some` for an `s3://` URL, with the store from the AWS variables; `None` for a path.
    pub fn parse(url: &Path) -> Result<Option<ObjectFile>> {
        let text = url.to_string_lossy();
        if !text.starts_with("s3://") {
            return Ok(None);
        }
        let (parent, name) = text
            .rsplit_once('/')
            .filter(|(p, n)| !n.is_empty() && p.len() > "s3:/".len())
            .ok_or_else(|| Error::Invalid(format!("{text:?} names no object")))?;
        let dir = ObjectDir::s3(parent, &crate::store::S3Options::configured())
            .map_err(Error::Invalid)?;
        Ok(Some(ObjectFile {
            dir,
            name: name.to_owned(),
            url: text.into_owned(),
        }))
    }

    /// The content (`None`: no such object) and the version it was read at.
    pub fn read(&self) -> Result<(Option<Vec<u8>>, ReadAt)> {
        let (dir, name) = (self.dir.clone(), self.name.clone());
        let got = block(async move { dir.read(&name).await })?
            .map_err(store_err(Path::new(&self.url)))?;
        Ok(match got {
            Some(v) => (Some(v.bytes.to_vec()), ReadAt(Some(v.version))),
            None => (None, ReadAt(None)),
        })
    }

    /// Writes `bytes` if the object is still at `at` (created if it did not exist): `false`
    /// when another writer changed it first (read again and redo the change).
    pub fn replace(&self, bytes: Vec<u8>, at: &ReadAt) -> Result<bool> {
        let (dir, name, at) = (self.dir.clone(), self.name.clone(), at.0.clone());
        let done = block(async move {
            match at {
                None => dir.create(&name, bytes).await,
                Some(v) => dir.swap(&name, bytes, &v).await,
            }
        })?
        .map_err(store_err(Path::new(&self.url)))?;
        Ok(done.is_some())
    }
}
