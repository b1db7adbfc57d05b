//! The published log: its signed checkpoint and its tiles, in the data directory (or bucket)
//! under `log/`, in the formats that transparency-log tools read.
//!
//! - `log/checkpoint`: the latest checkpoint (C2SP tlog-checkpoint: origin, size, root),
//!   a signed note (C2SP signed-note) by the node's Ed25519 key, whose key name is the
//!   log's origin. Its size and root are those of the last epoch sealed into the log, which
//!   is exactly what that epoch's anchor (ledger entry or chain transaction) commits to.
//! - `log/tile/{L}/{N}[.p/{W}]`: the hash tiles (C2SP tlog-tiles), and
//!   `log/tile/entries/{N}[.p/{W}]`: the entry bundles, each entry the canonical JSON (JCS)
//!   of one batch header, whose leaf hash is `SHA-256(0x00 ‖ entry)`.
//! - `log/origin`: the log's name, chosen once per data directory.
//!
//! Tiles are immutable: each is written once, create-only; one already there with other
//! bytes is damage and is reported, never overwritten. The checkpoint is written after
//! the tiles it needs, so a reader never sees a checkpoint whose tiles are missing. A
//! published checkpoint whose root is not the log's root at its size means the epoch log
//! was rewritten: publishing stops with an error naming both roots.

use std::collections::HashMap;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};
use veritrace_verify::checkpoint::{self, Checkpoint};
use veritrace_verify::logtree::{self, LogTree, TILE_WIDTH};
use veritrace_verify::{Digest, canonical};

use crate::{BatchHeader, DataDir, EpochLog, Error, Result};

/// Names the log's origin when a data directory first publishes (later changes are not
/// read: a log keeps its name).
pub const ORIGIN_VAR: &str = "VERITRACE_LOG_ORIGIN";

impl DataDir {
    /// `log/`: the published log.
    pub fn log_dir(&self) -> PathBuf {
        self.root().join("log")
    }
    /// `log/checkpoint`: the latest signed checkpoint.
    pub fn log_checkpoint_file(&self) -> PathBuf {
        self.log_dir().join("checkpoint")
    }
    /// `log/origin`: the log's name.
    pub fn log_origin_file(&self) -> PathBuf {
        self.log_dir().join("origin")
    }
    /// A tile below `log/` (`tile/0/x001/234`, `tile/entries/000.p/5`).
    pub fn log_tile_file(&self, tile_path: &str) -> PathBuf {
        self.log_dir().join(tile_path)
    }
}

/// A valid origin: a key name of a signed note (no spaces, no `+`), at most 255 bytes.
fn valid_origin(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.contains('+')
        && s.chars().all(|c| !c.is_whitespace() && !c.is_control())
}

/// The log's origin: `log/origin`, or, the first time, `VERITRACE_LOG_ORIGIN` or
/// `veritrace.log/` and the first 16 hex digits of the SHA-256 of the node's public key.
pub fn origin(dir: &DataDir) -> Result<String> {
    let path = dir.log_origin_file();
    if dir.read_file(&path)?.is_none() {
        let name = match std::env::var(ORIGIN_VAR)
            .ok()
            .filter(|v| !v.trim().is_empty())
        {
            Some(v) => v.trim().to_owned(),
            None => {
                let key = crate::ledger::node_key(dir)?;
                let h = Sha256::digest(key.verifying_key().to_bytes());
                format!("veritrace.log/{}", &hex::encode(h)[..16])
            }
        };
        if !valid_origin(&name) {
            return Err(Error::Invalid(format!(
                "{ORIGIN_VAR}={name:?} is not a log origin: a name without spaces or '+', like example.com/log"
            )));
        }
        dir.write_new(&path, format!("{name}\n").into_bytes())?;
    }
    let text = dir.read_file(&path)?.unwrap_or_default();
    let name = String::from_utf8_lossy(&text).trim().to_owned();
    if !valid_origin(&name) {
        return Err(Error::Corrupt {
            path,
            detail: format!("{name:?} is not a log origin"),
        });
    }
    Ok(name)
}

/// The node's signed checkpoint of the log at `size` leaves with `root`.
pub fn sign_checkpoint(dir: &DataDir, size: u64, root: Digest) -> Result<String> {
    let origin = origin(dir)?;
    let key = crate::ledger::node_key(dir)?;
    let text = Checkpoint {
        origin: origin.clone(),
        size,
        root,
        extensions: Vec::new(),
    }
    .to_text();
    checkpoint::sign(&text, &origin, &key)
        .map_err(|e| Error::Bug(format!("signing the checkpoint: {e}")))
}

/// The node's note verifier key (`origin+keyhash+base64`, C2SP signed-note `vkey`), which
/// witnesses and monitors are configured with.
pub fn verifier_key(dir: &DataDir) -> Result<String> {
    let origin = origin(dir)?;
    let key = crate::ledger::node_key(dir)?;
    let k = checkpoint::NoteKey::new(&origin, key.verifying_key())
        .map_err(|e| Error::Bug(format!("the node's note key: {e}")))?;
    Ok(k.to_vkey())
}

/// The published checkpoint's text and its parsed body (its signature is not checked:
/// this is the node reading what it wrote).
pub fn published(dir: &DataDir) -> Result<Option<(String, Checkpoint)>> {
    let path = dir.log_checkpoint_file();
    let Some(bytes) = dir.read_file(&path)? else {
        return Ok(None);
    };
    let corrupt = |detail: String| Error::Corrupt {
        path: path.clone(),
        detail,
    };
    let note = checkpoint::Note::parse(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let c = Checkpoint::parse(&note.text).map_err(|e| corrupt(e.to_string()))?;
    Ok(Some((String::from_utf8_lossy(&bytes).into_owned(), c)))
}

/// What [`publish`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// The log size of the checkpoint now published (0: nothing is in the log yet).
    pub size: u64,
    /// Tiles and entry bundles written by this call.
    pub tiles_written: usize,
}

/// Publishes the log up to the last epoch sealed into it: the tiles that changed since
/// the published checkpoint, then the checkpoint. `fresh`: headers just sealed (the
/// others are read from the last entry bundle, or the manifests).
pub fn publish(dir: &DataDir, epochs: &mut EpochLog, fresh: &[BatchHeader]) -> Result<Published> {
    let Some(size) = epochs.records().last().and_then(|r| r.log_size) else {
        return Ok(Published::default());
    };
    let root = epochs
        .records()
        .last()
        .map(|r| r.root)
        .unwrap_or(Digest::ZERO);
    let since = match published(dir)? {
        None => 0,
        Some((_, c)) if c.size > size => {
            return Err(Error::Corrupt {
                path: dir.epochs_file(),
                detail: format!(
                    "the published checkpoint has {} leaves but the epoch log's log has {size}: epochs are missing. Restore the epoch log from a backup; nothing was changed",
                    c.size
                ),
            });
        }
        Some((_, c)) => {
            let log = epochs.log()?;
            let ours = log.root_at(c.size).unwrap_or(Digest::ZERO);
            if ours != c.root {
                return Err(Error::Corrupt {
                    path: dir.log_checkpoint_file(),
                    detail: format!(
                        "the published checkpoint has root {} at {} leaves but the epoch log gives {ours}: the log was rewritten. Nothing was changed",
                        c.root, c.size
                    ),
                });
            }
            if c.size == size {
                return Ok(Published {
                    size,
                    tiles_written: 0,
                });
            }
            c.size
        }
    };
    let ids: Vec<String> = epochs.log_ids().map(str::to_owned).collect();
    let log = epochs.log()?;
    if log.size() != size || ids.len() as u64 != size {
        return Err(Error::Bug(format!(
            "the log has {} leaves and {} ids but the last epoch says {size}",
            log.size(),
            ids.len()
        )));
    }
    let mut written = 0;
    for (level, index, width) in log.tiles_changed(since, size) {
        let hashes = log
            .tile(level, index, size)
            .ok_or_else(|| Error::Bug(format!("tile {level}/{index} of a log of {size}")))?;
        let bytes: Vec<u8> = hashes.iter().flat_map(|d| d.0).collect();
        written += write_tile(dir, &logtree::tile_path(level, index, width), bytes)?;
    }
    let entries = entries_from(dir, log, &ids, since, fresh)?;
    let first_bundle = since / TILE_WIDTH;
    for bundle in first_bundle..size.div_ceil(TILE_WIDTH) {
        let lo = bundle * TILE_WIDTH;
        let hi = (lo + TILE_WIDTH).min(size);
        let bytes = logtree::entry_bundle((lo..hi).map(|i| entries[&i].as_slice()))
            .map_err(|e| Error::Invalid(e.to_string()))?;
        written += write_tile(dir, &logtree::entries_path(bundle, hi - lo), bytes)?;
    }
    let note = sign_checkpoint(dir, size, root)?;
    dir.write_replace(&dir.log_checkpoint_file(), note.into_bytes())?;
    tracing::debug!(size, since, tiles = written, "log published");
    Ok(Published {
        size,
        tiles_written: written,
    })
}

/// Writes a tile create-only; one already there must hold the same bytes. Once a full tile
/// is written, its partial tiles go (C2SP tlog-tiles allows it: a client that asks for a
/// partial tile that is gone reads the full tile's prefix), so a log sealed every second
/// does not keep every partial tile it ever published.
fn write_tile(dir: &DataDir, tile_path: &str, bytes: Vec<u8>) -> Result<usize> {
    let path = dir.log_tile_file(tile_path);
    if dir.write_new(&path, bytes.clone())? {
        if !tile_path.contains(".p/") {
            let partials = dir.log_tile_file(&format!("{tile_path}.p"));
            for (p, _) in dir.list_files(&partials)? {
                dir.remove_file(&p)?;
            }
            if !dir.is_remote() {
                // The emptied directory too (absent or not empty: nothing to do).
                let _ = std::fs::remove_dir(&partials);
            }
        }
        return Ok(1);
    }
    match dir.read_file(&path)? {
        Some(b) if b == bytes => Ok(0),
        _ => Err(Error::Corrupt {
            path,
            detail: "this tile is already published with other contents: the log was rewritten, or the file damaged. Nothing was changed".into(),
        }),
    }
}

/// The entries (JCS of the headers) of the leaves from the start of the entry bundle that
/// holds leaf `since` to the end of the log, by log index.
fn entries_from(
    dir: &DataDir,
    log: &LogTree,
    ids: &[String],
    since: u64,
    fresh: &[BatchHeader],
) -> Result<HashMap<u64, Vec<u8>>> {
    let start = since / TILE_WIDTH * TILE_WIDTH;
    let mut by_id: HashMap<&str, &BatchHeader> =
        fresh.iter().map(|h| (h.batch_id.as_str(), h)).collect();
    let mut out = HashMap::new();
    // The leaves of the partial bundle already published.
    if since > start {
        let path = dir.log_tile_file(&logtree::entries_path(start / TILE_WIDTH, since - start));
        if let Some(bytes) = dir.read_file(&path)?
            && let Ok(list) = logtree::read_entry_bundle(&bytes)
            && list.len() as u64 == since - start
            && list.iter().enumerate().all(|(i, e)| {
                log.leaf(start + i as u64) == Some(veritrace_verify::merkle::leaf_hash(e))
            })
        {
            for (i, e) in list.into_iter().enumerate() {
                out.insert(start + i as u64, e.to_vec());
            }
        }
    }
    let missing = (start..log.size())
        .any(|i| !out.contains_key(&i) && !by_id.contains_key(ids[i as usize].as_str()));
    let all = if missing {
        dir.all_batch_headers()?
    } else {
        Vec::new()
    };
    by_id.extend(all.iter().map(|h| (h.batch_id.as_str(), h)));
    for i in start..log.size() {
        if out.contains_key(&i) {
            continue;
        }
        let id = &ids[i as usize];
        let h = by_id.get(id.as_str()).ok_or_else(|| Error::Corrupt {
            path: dir.epochs_file(),
            detail: format!("the log's leaf {i} is batch {id}, which no manifest holds"),
        })?;
        let entry = canonical::to_vec(h).map_err(|e| Error::Invalid(e.to_string()))?;
        if Some(veritrace_verify::merkle::leaf_hash(&entry)) != log.leaf(i) {
            return Err(Error::Corrupt {
                path: dir.epochs_file(),
                detail: format!("batch {id}'s header is not the log's leaf {i}"),
            });
        }
        out.insert(i, entry);
    }
    Ok(out)
}
