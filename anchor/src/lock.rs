//! Exclusive ownership of a partition (or of the anchorer) among processes that share one
//! data directory. Kafka decides who *should* own a partition; the lock makes sure a
//! process that has not yet let go (a slow revoke, a zombie) cannot write beside the new
//! owner. The lock is an OS file lock (`flock`), so it is released when its holder dies,
//! even by `kill -9`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A held lock; released on drop. On an object store it is a lease
/// ([`DataDir::try_lock`](crate::DataDir::try_lock)).
#[derive(Debug)]
pub struct DirLock {
    held: Held,
    path: PathBuf,
}

#[derive(Debug)]
enum Held {
    File(File),
    Lease(crate::storage::HeldLease),
}

impl DirLock {
    /// Tries to take the lock at `path` without waiting. `Ok(None)`: another process
    /// holds it (its note, pid and host, is in the file for whoever investigates).
    pub fn try_acquire(path: &Path, holder: &str) -> Result<Option<DirLock>> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(Error::io("open lock", path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", path)(e)),
        }
        let note = format!("{holder} pid={}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.write_all(note.as_bytes()))
            .map_err(Error::io("write lock note", path))?;
        Ok(Some(DirLock {
            held: Held::File(file),
            path: path.to_owned(),
        }))
    }

    pub(crate) fn lease(lease: crate::storage::HeldLease, path: &Path) -> DirLock {
        DirLock {
            held: Held::Lease(lease),
            path: path.to_owned(),
        }
    }

    /// Whether the lock was taken away (a lease that expired unrenewed and another holder
    /// took); an OS lock is never lost while held.
    pub fn lost(&self) -> bool {
        match &self.held {
            Held::File(_) => false,
            Held::Lease(l) => l.lost(),
        }
    }

    /// Who holds the lock at `path`, as its holder wrote it (for error messages).
    pub fn holder(path: &Path) -> String {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        if let Held::File(f) = &self.held {
            let _ = f.unlock();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_lets_go() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        let a = DirLock::try_acquire(&p, "a").unwrap().expect("free lock");
        assert!(DirLock::try_acquire(&p, "b").unwrap().is_none());
        assert!(DirLock::holder(&p).starts_with("a pid="));
        drop(a);
        assert!(DirLock::try_acquire(&p, "b").unwrap().is_some());
    }
}
