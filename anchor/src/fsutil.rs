use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Writes `path` atomically: a temporary sibling is written and fsynced, renamed over the
/// target, and the directory is fsynced so the rename itself survives a crash.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(Error::io("create", &tmp))?;
    write(&mut f)?;
    f.sync_all().map_err(Error::io("fsync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(Error::io("rename", path))?;
    sync_dir(path)
}

pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(Error::io("fsync directory", dir))?;
    }
    Ok(())
}

/// Appends one JSON line and fsyncs it. The line is written with a single `write_all` so a
/// crash leaves at worst a torn last line, which [`read_jsonl`] removes.
pub fn append_line_durable<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut line = serde_json::to_vec(value).map_err(|e| Error::Bug(e.to_string()))?;
    line.push(b'\n');
    let existed = path.exists();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(Error::io("open for append", path))?;
    f.write_all(&line).map_err(Error::io("append", path))?;
    f.sync_all().map_err(Error::io("fsync", path))?;
    if !existed {
        sync_dir(path)?;
    }
    Ok(())
}

/// The file's bytes and the length of its complete lines (up to the last newline);
/// `None` when the file does not exist.
fn read_complete_lines(path: &Path) -> Result<Option<(Vec<u8>, usize)>> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                op: "read",
                path: path.to_owned(),
                source,
            });
        }
    };
    let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    Ok(Some((data, complete)))
}

/// Cuts a torn last line (a write interrupted by a crash, never acknowledged) off a
/// JSON-lines file. Only a writer that owns the file calls this, when it opens it.
pub fn repair_torn_tail(path: &Path) -> Result<()> {
    let Some((data, complete)) = read_complete_lines(path)? else {
        return Ok(());
    };
    if complete < data.len() {
        tracing::warn!(path = %path.display(), torn_bytes = data.len() - complete, "removing torn last line left by a crash");
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(Error::io("open for repair", path))?;
        f.set_len(complete as u64)
            .map_err(Error::io("truncate torn line", path))?;
        f.sync_all().map_err(Error::io("fsync", path))?;
    }
    Ok(())
}

/// Reads a JSON-lines file (missing file: empty). Never writes: a final line without a
/// newline is either being appended right now or torn by a crash, and is not yet part of
/// the file's content either way. Any other unparsable line is corruption, named by line.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let Some((data, complete)) = read_complete_lines(path)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (n, line) in data[..complete].split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v = serde_json::from_slice(line).map_err(|e| Error::Corrupt {
            path: path.to_owned(),
            detail: format!("line {}: {e}", n + 1),
        })?;
        out.push(v);
    }
    Ok(out)
}

/// Writes `path` only if it does not exist: a temporary sibling is written and fsynced, then
/// hard-linked to the name (which fails if the name is taken) and removed; the directory is
/// fsynced. `true` when this call wrote it.
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> Result<bool> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
    }
    let tmp = path.with_extension(format!("new-{}.tmp", std::process::id()));
    let mut f = File::create(&tmp).map_err(Error::io("create", &tmp))?;
    f.write_all(bytes).map_err(Error::io("write", &tmp))?;
    f.sync_all().map_err(Error::io("fsync", &tmp))?;
    drop(f);
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(path)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io("link", path)(e)),
    }
}
