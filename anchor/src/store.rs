//! The commit points of a data directory as conditional writes on object storage (S3 and
//! S3-compatible stores; ARCHITECTURE.md, "Object storage"). There are no locks and no
//! renames there: what a POSIX data directory guards with OS locks and appends, an object
//! store guards with three kinds of write.
//!
//! - [`ObjectDir::create`]: a PUT with `If-None-Match: *`. Exactly one of any number of
//!   writers of a key wins; the others learn that they lost.
//! - [`ObjectDir::swap`]: a PUT with `If-Match: <ETag>` (compare-and-swap), for pointers that
//!   move.
//! - [`ObjectLog`]: an append-only log as one object per entry, `{name}/{seq:020}.json`,
//!   each written with `create`: two writers that race for the same sequence number cannot
//!   both win, so a hash-chained log cannot fork; the loser reads the winner's entry.
//! - [`Lease`]: who owns a partition or the epoch sealer: an object naming the holder, a
//!   generation and an expiry, created once, taken over only after it expired and renewed by
//!   compare-and-swap. A holder that lost its lease finds out at its next renewal; its next
//!   log append is refused anyway (the new holder has written that sequence number).
//!
//! [`crate::DataDir`] reaches these through `storage`, with the same paths as on a local
//! directory.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

/// Errors of the object store itself (network, permissions, a store that does not support
/// conditional writes), with the key.
#[derive(Debug, thiserror::Error)]
#[error("object store, {op} {key}: {source}")]
pub struct StoreError {
    op: &'static str,
    key: String,
    #[source]
    source: object_store::Error,
}

/// A result of the object store.
pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// The version of an object a compare-and-swap expects (its ETag, and the version id on
/// versioned buckets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    e_tag: Option<String>,
    version: Option<String>,
}

impl Version {
    fn update(&self) -> UpdateVersion {
        UpdateVersion {
            e_tag: self.e_tag.clone(),
            version: self.version.clone(),
        }
    }
}

/// An object's bytes and the version they are.
#[derive(Debug, Clone)]
pub struct Versioned {
    /// The content.
    pub bytes: bytes::Bytes,
    /// Its version, for [`ObjectDir::swap`].
    pub version: Version,
}

/// Where an `s3://` data directory lives and how to reach it.
#[derive(Clone, Default)]
pub struct S3Options {
    /// The endpoint of an S3-compatible store (`http://127.0.0.1:9000`); empty: AWS.
    pub endpoint: String,
    /// The region.
    pub region: String,
    /// Credentials; empty: the usual AWS variables and instance credentials.
    pub access_key_id: String,
    /// Credentials; empty: the usual AWS variables and instance credentials.
    pub secret_access_key: String,
    /// Plain HTTP to the endpoint (tests, a store inside the cluster).
    pub allow_http: bool,
}

/// Credentials from files (a mounted Secret), as `AWS_ACCESS_KEY_ID_FILE` and
/// `AWS_SECRET_ACCESS_KEY_FILE` name them: keys stay out of the pod's environment.
fn credential_files() -> Result<Option<(String, String)>, String> {
    let read = |var: &str| -> Result<Option<String>, String> {
        match std::env::var_os(var) {
            None => Ok(None),
            Some(p) => std::fs::read_to_string(&p)
                .map(|t| Some(t.trim().to_owned()))
                .map_err(|e| format!("{var}: reading {}: {e}", p.to_string_lossy())),
        }
    };
    match (
        read("AWS_ACCESS_KEY_ID_FILE")?,
        read("AWS_SECRET_ACCESS_KEY_FILE")?,
    ) {
        (Some(id), Some(secret)) => Ok(Some((id, secret))),
        (None, None) => Ok(None),
        _ => Err("AWS_ACCESS_KEY_ID_FILE and AWS_SECRET_ACCESS_KEY_FILE go together".into()),
    }
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

static CONFIGURED: std::sync::OnceLock<S3Options> = std::sync::OnceLock::new();

impl S3Options {
    /// Sets the options every `s3://` data directory of this process uses (the
    /// configuration's `[storage]`; its empty fields fall back to the AWS variables). Once per
    /// process, before the first data directory is opened; `false` if it was set before.
    pub fn configure(opts: S3Options) -> bool {
        CONFIGURED.set(opts).is_ok()
    }

    /// What [`S3Options::configure`] set, or the defaults (the AWS variables).
    pub fn configured() -> S3Options {
        CONFIGURED.get().cloned().unwrap_or_default()
    }
}

/// A data directory on an object store: every key is under one prefix.
#[derive(Debug, Clone)]
pub struct ObjectDir {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl ObjectDir {
    /// A directory under `prefix` of `store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> ObjectDir {
        ObjectDir {
            store,
            prefix: prefix.trim_matches('/').to_owned(),
        }
    }

    /// `s3://bucket/prefix` with path-style requests (what S3-compatible stores expect).
    pub fn s3(url: &str, opts: &S3Options) -> Result<ObjectDir, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{url:?} is not an s3://bucket/prefix URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{url:?} names no bucket"));
        }
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_virtual_hosted_style_request(false);
        if opts.allow_http {
            b = b.with_allow_http(true);
        }
        if !opts.endpoint.is_empty() {
            b = b.with_endpoint(&opts.endpoint);
        }
        if !opts.region.is_empty() {
            b = b.with_region(&opts.region);
        }
        if !opts.access_key_id.is_empty() {
            b = b
                .with_access_key_id(&opts.access_key_id)
                .with_secret_access_key(&opts.secret_access_key);
        } else if let Some((id, secret)) = credential_files()? {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        let store = b.build().map_err(|e| format!("{url}: {e}"))?;
        Ok(ObjectDir::new(Arc::new(store), prefix))
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        }
    }

    fn fail(op: &'static str, key: &str) -> impl FnOnce(object_store::Error) -> StoreError {
        let key = key.to_owned();
        move |source| StoreError { op, key, source }
    }

    /// Writes `key` if no object has that key: `Some(version)` when this call created it,
    /// `None` when another writer had (its content stays).
    pub async fn create(&self, key: &str, bytes: Vec<u8>) -> StoreResult<Option<Version>> {
        self.put(key, bytes, PutMode::Create, "create").await
    }

    /// Replaces `key` only if it is still at `expected`: the new version, or `None` when it
    /// changed (someone else swapped first; read it again).
    pub async fn swap(
        &self,
        key: &str,
        bytes: Vec<u8>,
        expected: &Version,
    ) -> StoreResult<Option<Version>> {
        self.put(key, bytes, PutMode::Update(expected.update()), "swap")
            .await
    }

    /// A conditional put: the new version, or `None` when its condition failed (the object
    /// exists, for a create; it changed, for a swap).
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        mode: PutMode,
        op: &'static str,
    ) -> StoreResult<Option<Version>> {
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.path(key), PutPayload::from(bytes), opts)
            .await
        {
            Ok(r) => Ok(Some(Version {
                e_tag: r.e_tag,
                version: r.version,
            })),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(None),
            Err(e) => Err(Self::fail(op, key)(e)),
        }
    }

    /// The object's bytes and version; `None` when there is none.
    pub async fn read(&self, key: &str) -> StoreResult<Option<Versioned>> {
        let r = match self.store.get(&self.path(key)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Self::fail("get", key)(e)),
        };
        let version = Version {
            e_tag: r.meta.e_tag.clone(),
            version: r.meta.version.clone(),
        };
        let bytes = r.bytes().await.map_err(Self::fail("read", key))?;
        Ok(Some(Versioned { bytes, version }))
    }

    /// Bytes `start..start + len` of `key` (a ranged GET).
    pub async fn read_range(&self, key: &str, start: u64, len: u64) -> StoreResult<bytes::Bytes> {
        self.store
            .get_range(&self.path(key), start..start + len)
            .await
            .map_err(Self::fail("get range", key))
    }

    /// Whether `key` exists, and its size.
    pub async fn head(&self, key: &str) -> StoreResult<Option<u64>> {
        match self.store.head(&self.path(key)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Self::fail("head", key)(e)),
        }
    }

    /// Writes `key` whatever is there (not a commit point: keys, derived files).
    pub async fn overwrite(&self, key: &str, bytes: Vec<u8>) -> StoreResult<()> {
        self.store
            .put(&self.path(key), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(Self::fail("put", key))
    }

    /// Deletes `key` (absent already: done).
    pub async fn delete(&self, key: &str) -> StoreResult<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Self::fail("delete", key)(e)),
        }
    }

    /// The store and the key prefix, for readers that go through `object_store` directly
    /// (DataFusion).
    pub fn store(&self) -> (&Arc<dyn ObjectStore>, &str) {
        (&self.store, &self.prefix)
    }

    /// The keys under `prefix` with their sizes, in key order.
    pub async fn list_sized(&self, prefix: &str) -> StoreResult<Vec<(String, u64)>> {
        let base = self.path(prefix);
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut keys: Vec<(String, u64)> = self
            .store
            .list(Some(&base))
            .map_ok(|m| {
                let full = m.location.to_string();
                (
                    full.strip_prefix(&strip).unwrap_or(&full).to_owned(),
                    m.size,
                )
            })
            .try_collect()
            .await
            .map_err(Self::fail("list", prefix))?;
        keys.sort();
        Ok(keys)
    }

    /// The keys under `prefix` (relative to the directory), in key order.
    pub async fn list(&self, prefix: &str) -> StoreResult<Vec<String>> {
        let base = self.path(prefix);
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut keys: Vec<String> = self
            .store
            .list(Some(&base))
            .map_ok(|m| {
                let full = m.location.to_string();
                full.strip_prefix(&strip).unwrap_or(&full).to_owned()
            })
            .try_collect()
            .await
            .map_err(Self::fail("list", prefix))?;
        keys.sort();
        Ok(keys)
    }
}

/// What an append to an [`ObjectLog`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// The entry is the log's at that sequence number.
    Written,
    /// Another writer's entry is there: these are its bytes (the log continues from it; this
    /// writer has lost the race and re-reads before doing anything else).
    Taken(bytes::Bytes),
}

/// An append-only log of one object per entry, `{name}/{seq:020}.json`.
#[derive(Debug, Clone)]
pub struct ObjectLog {
    dir: ObjectDir,
    name: String,
}

impl ObjectLog {
    /// The log `name` of `dir`.
    pub fn new(dir: ObjectDir, name: &str) -> ObjectLog {
        ObjectLog {
            dir,
            name: name.trim_matches('/').to_owned(),
        }
    }

    fn key(&self, seq: u64) -> String {
        format!("{}/{seq:020}.json", self.name)
    }

    /// Writes the entry at `seq` unless one is there.
    pub async fn append(&self, seq: u64, entry: Vec<u8>) -> StoreResult<Appended> {
        let key = self.key(seq);
        if self.dir.create(&key, entry.clone()).await?.is_some() {
            return Ok(Appended::Written);
        }
        match self.dir.read(&key).await? {
            // Our own entry: a request the store carried out whose answer was lost, sent
            // again by the client and refused the second time.
            Some(v) if v.bytes.as_ref() == entry.as_slice() => Ok(Appended::Written),
            Some(v) => Ok(Appended::Taken(v.bytes)),
            // Created by another writer, then gone: only a deletion (never done to a log)
            // does that.
            None => Err(StoreError {
                op: "append",
                key,
                source: object_store::Error::Generic {
                    store: "veritrace",
                    source: "the entry another writer created is gone".into(),
                },
            }),
        }
    }

    /// Every entry from `from` on, in sequence order; a gap is damage and is named.
    pub async fn read_from(&self, from: u64) -> StoreResult<Vec<(u64, bytes::Bytes)>> {
        let mut out = Vec::new();
        let mut expect = from;
        for key in self.dir.list(&self.name).await? {
            let Some(seq) = key
                .strip_prefix(&format!("{}/", self.name))
                .and_then(|k| k.strip_suffix(".json"))
                .and_then(|k| k.parse::<u64>().ok())
            else {
                continue;
            };
            if seq < from {
                continue;
            }
            if seq != expect {
                return Err(StoreError {
                    op: "read log",
                    key: self.key(expect),
                    source: object_store::Error::Generic {
                        store: "veritrace",
                        source: format!("entry {expect} is missing (the next is {seq})").into(),
                    },
                });
            }
            let Some(v) = self.dir.read(&key).await? else {
                continue;
            };
            out.push((seq, v.bytes));
            expect += 1;
        }
        Ok(out)
    }
}

/// The content of a lease object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseState {
    /// Who holds it (a process, a pod).
    pub holder: String,
    /// Counts the holders since the lease was first taken: a fencing token.
    pub generation: u64,
    /// Unix milliseconds after which another may take it.
    pub expires_at_ms: i64,
}

/// A lease this process holds.
#[derive(Debug, Clone)]
pub struct Lease {
    key: String,
    state: LeaseState,
    version: Version,
}

/// Why a lease was not taken: who holds it, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held(pub LeaseState);

impl Lease {
    /// Takes the lease `leases/{name}.json` for `ttl_ms` if it is free, expired, or already
    /// this holder's.
    pub async fn acquire(
        dir: &ObjectDir,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Result<Lease, Held>> {
        let key = format!("leases/{name}.json");
        let encode = |s: &LeaseState| serde_json::to_vec(s).unwrap_or_default();
        // Two rounds: a lease created or swapped between our read and our write is read
        // again once, then reported as held.
        for _ in 0..2 {
            let Some(current) = dir.read(&key).await? else {
                let state = LeaseState {
                    holder: holder.to_owned(),
                    generation: 1,
                    expires_at_ms: now_ms + ttl_ms,
                };
                if let Some(version) = dir.create(&key, encode(&state)).await? {
                    return Ok(Ok(Lease {
                        key,
                        state,
                        version,
                    }));
                }
                continue;
            };
            let held: LeaseState =
                serde_json::from_slice(&current.bytes).map_err(|e| StoreError {
                    op: "read lease",
                    key: key.clone(),
                    source: object_store::Error::Generic {
                        store: "veritrace",
                        source: Box::new(e),
                    },
                })?;
            if held.holder != holder && held.expires_at_ms > now_ms {
                return Ok(Err(Held(held)));
            }
            let state = LeaseState {
                holder: holder.to_owned(),
                generation: held.generation + 1,
                expires_at_ms: now_ms + ttl_ms,
            };
            if let Some(version) = dir.swap(&key, encode(&state), &current.version).await? {
                return Ok(Ok(Lease {
                    key,
                    state,
                    version,
                }));
            }
        }
        // Lost every race: report whoever holds it now, as far as the object says.
        let held = dir
            .read(&key)
            .await?
            .and_then(|v| serde_json::from_slice(&v.bytes).ok())
            .unwrap_or_else(|| LeaseState {
                holder: "unknown".into(),
                generation: 0,
                expires_at_ms: 0,
            });
        Ok(Err(Held(held)))
    }

    /// What this lease says.
    pub fn state(&self) -> &LeaseState {
        &self.state
    }

    /// Extends the lease to `now + ttl`; `false` when it was lost (another holder took it
    /// after it expired): stop writing at once.
    pub async fn renew(&mut self, dir: &ObjectDir, ttl_ms: i64, now_ms: i64) -> StoreResult<bool> {
        let state = LeaseState {
            expires_at_ms: now_ms + ttl_ms,
            ..self.state.clone()
        };
        let bytes = serde_json::to_vec(&state).unwrap_or_default();
        // Two rounds: the condition can fail on a write of our own (an earlier renewal the
        // store carried out but whose answer was lost, or this one sent twice by the client).
        // The lease is still ours while it names this holder at this generation: a new
        // holder always raises the generation.
        for _ in 0..2 {
            if let Some(v) = dir.swap(&self.key, bytes.clone(), &self.version).await? {
                self.state = state;
                self.version = v;
                return Ok(true);
            }
            let Some(current) = dir.read(&self.key).await? else {
                return Ok(false);
            };
            let Ok(now) = serde_json::from_slice::<LeaseState>(&current.bytes) else {
                return Ok(false);
            };
            if now.holder != self.state.holder || now.generation != self.state.generation {
                return Ok(false);
            }
            if current.bytes.as_ref() == bytes.as_slice() {
                self.state = state;
                self.version = current.version;
                return Ok(true);
            }
            self.version = current.version;
        }
        Ok(false)
    }

    /// Gives the lease up (expired now), so the next holder need not wait for the expiry.
    pub async fn release(self, dir: &ObjectDir, now_ms: i64) -> StoreResult<bool> {
        let state = LeaseState {
            expires_at_ms: now_ms,
            ..self.state
        };
        let bytes = serde_json::to_vec(&state).unwrap_or_default();
        Ok(dir.swap(&self.key, bytes, &self.version).await?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> ObjectDir {
        ObjectDir::new(Arc::new(object_store::memory::InMemory::new()), "data")
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn conditional_writes_in_memory() {
        rt().block_on(conditional_writes(memory()));
    }

    #[test]
    fn racing_log_writers_in_memory() {
        rt().block_on(racing_log_writers(memory()));
    }

    #[test]
    fn leases_in_memory() {
        rt().block_on(leases(memory()));
    }

    /// The same, against an S3-compatible server (moto_server, which answers 412 to failed
    /// `If-None-Match` and `If-Match` as S3 does).
    #[test]
    fn conditional_writes_logs_and_leases_on_s3() {
        let moto = veritrace_testkit::moto::Moto::start();
        let rt = rt();
        for (bucket, test) in [("writes", 0), ("logs", 1), ("leases", 2)] {
            moto.create_bucket(bucket);
            let dir = ObjectDir::s3(
                &format!("s3://{bucket}/tenant/data"),
                &S3Options {
                    endpoint: moto.endpoint(),
                    region: "us-east-1".into(),
                    access_key_id: "test".into(),
                    secret_access_key: "test".into(),
                    allow_http: true,
                },
            )
            .expect("s3 dir");
            rt.block_on(async {
                match test {
                    0 => conditional_writes(dir).await,
                    1 => racing_log_writers(dir).await,
                    _ => leases(dir).await,
                }
            });
        }
        assert!(
            ObjectDir::s3("s3:///x", &S3Options::default()).is_err()
                && ObjectDir::s3("file:///x", &S3Options::default()).is_err()
        );
    }

    /// Create-only and compare-and-swap as the commit points need them.
    async fn conditional_writes(dir: ObjectDir) {
        let v1 = dir
            .create("k", b"one".to_vec())
            .await
            .expect("create")
            .expect("created");
        assert_eq!(
            dir.create("k", b"two".to_vec()).await.expect("create"),
            None
        );
        let got = dir.read("k").await.expect("read").expect("there");
        assert_eq!(&got.bytes[..], b"one");
        let v2 = dir
            .swap("k", b"three".to_vec(), &v1)
            .await
            .expect("swap")
            .expect("swapped");
        // A stale version loses.
        assert_eq!(
            dir.swap("k", b"four".to_vec(), &v1).await.expect("swap"),
            None
        );
        assert_eq!(
            &dir.read("k").await.expect("read").expect("there").bytes[..],
            b"three"
        );
        assert!(
            dir.swap("k", b"five".to_vec(), &v2)
                .await
                .expect("swap")
                .is_some()
        );
        assert!(dir.read("missing").await.expect("read").is_none());
        assert_eq!(dir.list("").await.expect("list"), ["k"]);
    }

    /// Two writers append to one log at once, each believing it is next: every sequence
    /// number has exactly one entry, and each writer learns which of its appends lost.
    async fn racing_log_writers(dir: ObjectDir) {
        let log = ObjectLog::new(dir, "batches/s-p000");
        let n = 40u64;
        let writer = |name: &'static str, log: ObjectLog| async move {
            let mut won = Vec::new();
            for seq in 0..n {
                match log
                    .append(seq, format!("{name}-{seq}").into_bytes())
                    .await
                    .expect("append")
                {
                    Appended::Written => won.push(seq),
                    Appended::Taken(b) => {
                        assert!(
                            !b.starts_with(name.as_bytes()),
                            "own entry reported as taken"
                        );
                    }
                }
            }
            won
        };
        let (a, b) = tokio::join!(
            tokio::spawn(writer("a", log.clone())),
            tokio::spawn(writer("b", log.clone()))
        );
        let (a, b) = (a.expect("a"), b.expect("b"));
        assert_eq!(a.len() + b.len(), n as usize, "a won {a:?}, b won {b:?}");
        let entries = log.read_from(0).await.expect("read");
        assert_eq!(entries.len(), n as usize);
        for (seq, bytes) in &entries {
            let text = std::str::from_utf8(bytes).expect("utf8");
            let winner = if a.contains(seq) { "a" } else { "b" };
            assert_eq!(text, format!("{winner}-{seq}"));
        }
        assert_eq!(log.read_from(n - 3).await.expect("read").len(), 3);
        // The same entry sent again (a retried request whose first answer was lost) is the
        // writer's own; a different one is another writer's.
        let first = entries[0].1.to_vec();
        assert_eq!(
            log.append(0, first).await.expect("append"),
            Appended::Written
        );
        assert!(matches!(
            log.append(0, b"c-0".to_vec()).await.expect("append"),
            Appended::Taken(_)
        ));
    }

    /// A lease is exclusive until it expires; a holder that lost it cannot renew it.
    async fn leases(dir: ObjectDir) {
        let ttl = 10_000;
        let mut a = Lease::acquire(&dir, "anchorer", "pod-a", ttl, 1_000)
            .await
            .expect("acquire")
            .expect("free");
        assert_eq!(a.state().generation, 1);
        let held = Lease::acquire(&dir, "anchorer", "pod-b", ttl, 2_000)
            .await
            .expect("acquire")
            .expect_err("held by a");
        assert_eq!(held.0.holder, "pod-a");
        assert!(a.renew(&dir, ttl, 5_000).await.expect("renew"));
        // A renewal the store carried out but whose answer never came back (the copy that
        // sent it is dropped): the holder's next renewal, at the old version, still succeeds.
        let mut unanswered = a.clone();
        assert!(unanswered.renew(&dir, ttl, 4_000).await.expect("renew"));
        assert!(
            a.renew(&dir, ttl, 5_000)
                .await
                .expect("renew at a stale version")
        );
        // Still held at 14 s (renewed at 5 s for 10 s), free at 16 s.
        assert!(
            Lease::acquire(&dir, "anchorer", "pod-b", ttl, 14_000)
                .await
                .expect("acquire")
                .is_err()
        );
        let b = Lease::acquire(&dir, "anchorer", "pod-b", ttl, 16_000)
            .await
            .expect("acquire")
            .expect("expired");
        assert_eq!(b.state().generation, 2);
        assert!(
            !a.renew(&dir, ttl, 16_500).await.expect("renew"),
            "a lost it"
        );
        assert!(b.release(&dir, 17_000).await.expect("release"));
        let a2 = Lease::acquire(&dir, "anchorer", "pod-a", ttl, 17_001)
            .await
            .expect("acquire")
            .expect("released");
        assert_eq!(a2.state().generation, 3);
    }
}
