//! Damage the query stage knows of, and the background verifier that finds it.
//!
//! Two kinds: committed files that are **missing** (found on every metadata refresh: a
//! batch in a manifest whose events file is gone, a live compacted file that is gone) and
//! files **altered** since their commit (found by [`Verifier`], which hashes every committed
//! file with a recorded digest once, in the background, and again when its length or
//! modification time changes). A scan of `events` that would read a damaged file, or that
//! cannot know what a missing one held, fails with `data_damaged` naming the file; `/healthz`
//! fails with the list. Nothing is repaired here: `veritrace check` gives the full report.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use veritrace_anchor::DataDir;
use veritrace_anchor::integrity::{FileDigest, verify_file};

/// Files found altered: path -> what is wrong.
pub(crate) type Altered = Arc<RwLock<BTreeMap<PathBuf, String>>>;

/// Hashes committed files against their recorded digests on a background thread.
#[derive(Debug, Default)]
pub(crate) struct Verifier {
    altered: Altered,
    /// Files found intact, with the length and modification time they had then.
    intact: Mutex<HashMap<PathBuf, (u64, Option<SystemTime>)>>,
    pending: Mutex<Option<(DataDir, Vec<FileDigest>)>>,
    busy: AtomicBool,
    /// Files hashed so far (for metrics and tests).
    hashed: std::sync::atomic::AtomicU64,
    /// The nice value the last pass ran at (read back from the system, for tests).
    nice: std::sync::atomic::AtomicI32,
}

impl Verifier {
    pub(crate) fn altered(&self) -> Altered {
        self.altered.clone()
    }

    /// The damage found so far.
    pub(crate) fn report(&self) -> Vec<(PathBuf, String)> {
        read(&self.altered)
            .iter()
            .map(|(p, m)| (p.clone(), m.clone()))
            .collect()
    }

    /// Files hashed since the engine opened.
    pub(crate) fn hashed(&self) -> u64 {
        self.hashed.load(Ordering::Relaxed)
    }

    /// Verifies `files` (the committed files of the current snapshot) in the background;
    /// a later call replaces what is still waiting.
    pub(crate) fn schedule(self: &Arc<Self>, dir: DataDir, files: Vec<FileDigest>) {
        *lock(&self.pending) = Some((dir, files));
        if self.busy.swap(true, Ordering::AcqRel) {
            return; // the running pass picks it up
        }
        let me = self.clone();
        if let Err(e) = spawn_detached("veritrace-verify", move || {
            me.nice.store(lower_priority(), Ordering::Relaxed);
            me.run()
        }) {
            tracing::error!(error = %e, "cannot start the file verifier");
            self.busy.store(false, Ordering::Release);
        }
    }

    fn run(&self) {
        loop {
            let next = lock(&self.pending).take();
            let Some((dir, files)) = next else {
                self.busy.store(false, Ordering::Release);
                // Scheduled between the take and the store: run again.
                if lock(&self.pending).is_some() && !self.busy.swap(true, Ordering::AcqRel) {
                    continue;
                }
                return;
            };
            for d in files {
                let path = dir.root().join(&d.file);
                if dir.is_remote() {
                    // Objects are written once (create-only) and never rewritten by us:
                    // each is checked once per process, by its length (one HEAD), not
                    // downloaded; `veritrace check` hashes them.
                    if lock(&self.intact).contains_key(&path) {
                        continue;
                    }
                }
                let sig = if dir.is_remote() {
                    Some((d.bytes, None))
                } else {
                    std::fs::metadata(&path)
                        .ok()
                        .map(|m| (m.len(), m.modified().ok()))
                };
                if !dir.is_remote()
                    && sig.is_some()
                    && lock(&self.intact).get(&path) == sig.as_ref()
                {
                    continue;
                }
                let verdict = if dir.is_remote() {
                    match dir.file_len(&path) {
                        Ok(None) => Ok(Some("missing (committed, recorded, and gone)".to_owned())),
                        Ok(Some(n)) if n != d.bytes => Ok(Some(format!(
                            "length {n} bytes, expected {} (truncated or rewritten)",
                            d.bytes
                        ))),
                        Ok(Some(_)) => Ok(None),
                        Err(e) => Err(e),
                    }
                } else {
                    verify_file(&dir, &d)
                };
                self.hashed.fetch_add(1, Ordering::Relaxed);
                let mut altered = write(&self.altered);
                match verdict {
                    Ok(None) => {
                        altered.remove(&path);
                        if let Some(sig) = sig {
                            lock(&self.intact).insert(path, sig);
                        }
                    }
                    Ok(Some(problem)) => {
                        tracing::error!(file = %path.display(), %problem, "a committed file is damaged");
                        lock(&self.intact).remove(&path);
                        altered.insert(path, problem);
                    }
                    Err(e) => {
                        lock(&self.intact).remove(&path);
                        altered.insert(path, format!("cannot be verified: {e}"));
                    }
                }
            }
        }
    }
}

/// The nice value of the verifier's thread: it hashes whole files (the 5.9 GB of a 50 M
/// event directory at open) and must not take the cores from the queries it protects (27% of
/// the samples of a fresh process's first forward trace went to it at normal priority). At
/// nice 10 it still gets about a tenth of a busy core, and all of an idle one.
pub(crate) const VERIFIER_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to [`VERIFIER_NICE`] (Linux keeps a nice
/// value per thread), or leaves it lower, and returns the nice value it runs at; elsewhere, or when refused, the
/// thread runs at normal priority (0).
fn lower_priority() -> i32 {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let me = Some(rustix::thread::gettid());
        // Never above the priority it was started with (a process run under `nice 15`).
        let nice = getpriority_process(me).unwrap_or(0).max(VERIFIER_NICE);
        if let Err(e) = setpriority_process(me, nice) {
            tracing::debug!(error = %e, "the verifier runs at normal priority");
        }
        getpriority_process(me).unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// Starts a thread nobody joins, and lets it run only once it is detached.
///
/// Dropping a `JoinHandle` detaches the thread, and glibc's `pthread_detach` reads the
/// thread's descriptor after marking it detached. A thread that exits at that very moment
/// sees itself detached and frees its descriptor and stack first; when the stack cache is
/// full (the query runtime's 64 MiB stacks fill it) the stack is unmapped and the
/// detaching thread crashes (observed: `veritrace demo` killed by SIGSEGV in
/// `pthread_detach` after a short verification pass). Here the thread waits until the
/// detach is done, so it cannot be exiting during it.
fn spawn_detached(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let (detached, wait) = std::sync::mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            // Err: the spawner is gone, which also means the detach is done.
            let _ = wait.recv();
            f()
        })?;
    drop(handle);
    let _ = detached.send(());
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

pub(crate) fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    match m.read() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    match m.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_verifier_runs_below_the_queries_priority() {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let dir = DataDir::create(tmp.path()).expect("data directory");
        let base = rustix::process::getpriority_process(None).expect("getpriority");
        let v = Arc::new(Verifier::default());
        v.schedule(dir, Vec::new());
        let start = std::time::Instant::now();
        while v.busy.load(Ordering::Acquire) && start.elapsed().as_secs() < 30 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(v.nice.load(Ordering::Relaxed), base.max(VERIFIER_NICE));
        // The calling thread keeps its own priority.
        assert_eq!(
            rustix::process::getpriority_process(None).expect("getpriority"),
            base
        );
    }
}
