//! The log as auditors, witnesses and monitors read it: its published checkpoint and tiles
//! ([`veritrace_anchor::log`]), and consistency proofs between any two of its sizes
//! (RFC 9162 section 2.1.4), computed from the same snapshot as proofs.

use serde::{Deserialize, Serialize};
use veritrace_verify::Digest;
use veritrace_verify::bundle::{Anchor, Status};
use veritrace_verify::logtree::{self, TileRef};
pub use veritrace_verify::logtree::{CONSISTENCY_FORMAT, ConsistencyProof, TreeHead};

use crate::{Error, QueryEngine, Result};

/// The epoch whose checkpoint has a given log size, and its anchor
/// (`GET /v1/log/anchor?size=`): what a monitor checks each checkpoint against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogAnchor {
    /// The epoch.
    pub epoch_id: u64,
    /// The log's size at the epoch.
    pub log_size: u64,
    /// The log's root at that size: the epoch root.
    pub root: Digest,
    /// `anchored` or `sealed`.
    pub status: Status,
    /// The receipt, once anchored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<Anchor>,
}

impl QueryEngine {
    /// The epoch sealed at log size `size` and its anchor.
    pub async fn log_anchor(&self, size: u64) -> Result<LogAnchor> {
        let snap = self.snapshot().await?;
        let rec = snap.epoch_at_log_size(size)?;
        let (status, anchor) = crate::proof::anchor_of(&snap, rec)?;
        Ok(LogAnchor {
            epoch_id: rec.epoch_id,
            log_size: size,
            root: rec.root,
            status,
            anchor,
        })
    }

    /// The log's head: its size (every batch of every epoch) and root.
    pub async fn log_head(&self) -> Result<TreeHead> {
        let snap = self.snapshot().await?;
        let log = snap.log()?;
        Ok(TreeHead {
            size: log.size(),
            root: log.root(),
        })
    }

    /// The consistency proof from the log's first `from` leaves to its first `to`.
    pub async fn consistency(&self, from: u64, to: u64) -> Result<ConsistencyProof> {
        let snap = self.snapshot().await?;
        let log = snap.log()?;
        if from > to {
            return Err(Error::BadRequest(format!(
                "from ({from}) is larger than to ({to}): a log only grows"
            )));
        }
        if to > log.size() {
            return Err(Error::BadRequest(format!(
                "the log has {} leaves; there is no tree of {to}",
                log.size()
            )));
        }
        let head = |size| -> Result<TreeHead> {
            Ok(TreeHead {
                size,
                root: log
                    .root_at(size)
                    .ok_or_else(|| Error::Internal(format!("no log root at {size}")))?,
            })
        };
        let proof = if from == 0 {
            Vec::new()
        } else {
            log.consistency_proof(from, to)
                .ok_or_else(|| Error::Internal(format!("no consistency proof {from} -> {to}")))?
        };
        Ok(ConsistencyProof {
            format: CONSISTENCY_FORMAT.into(),
            from: head(from)?,
            to: head(to)?,
            proof,
        })
    }

    /// The published checkpoint (a signed note), as written at the last epoch.
    pub async fn checkpoint(&self) -> Result<String> {
        let dir = self.data_dir().clone();
        let found = tokio::task::spawn_blocking(move || veritrace_anchor::log::published(&dir))
            .await
            .map_err(|e| Error::Internal(format!("reading the checkpoint: {e}")))??;
        found.map(|(text, _)| text).ok_or_else(|| Error::NotFound {
            what: "checkpoint",
            id: "log/checkpoint (no epoch has been sealed into the log yet)".into(),
        })
    }

    /// A published tile or entry bundle, by its path below `tile/` (C2SP tlog-tiles).
    pub async fn log_tile(&self, path: &str) -> Result<(TileRef, Vec<u8>)> {
        let tile = logtree::parse_tile_path(path).map_err(|e| Error::BadRequest(e.to_string()))?;
        let file = self.data_dir().log_tile_file(&format!("tile/{path}"));
        // A partial tile is removed once its full tile is written: its prefix answers.
        let full = match tile {
            TileRef::Hashes(l, n, w) if w < logtree::TILE_WIDTH => {
                Some(logtree::tile_path(l, n, logtree::TILE_WIDTH))
            }
            TileRef::Entries(n, w) if w < logtree::TILE_WIDTH => {
                Some(logtree::entries_path(n, logtree::TILE_WIDTH))
            }
            _ => None,
        }
        .map(|p| self.data_dir().log_tile_file(&p));
        let dir = self.data_dir().clone();
        let bytes = tokio::task::spawn_blocking(move || {
            if let Some(b) = dir.read_file(&file)? {
                return Ok(Some(b));
            }
            match full {
                Some(f) => dir.read_file(&f),
                None => Ok(None),
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("reading a tile: {e}")))?
        .map_err(Error::Anchor)?;
        let bytes = bytes.ok_or_else(|| Error::NotFound {
            what: "tile",
            id: path.to_owned(),
        })?;
        let bytes = match tile {
            TileRef::Hashes(_, _, w) if bytes.len() as u64 > w * 32 => {
                bytes[..(w * 32) as usize].to_vec()
            }
            TileRef::Entries(_, w) => {
                let list = logtree::read_entry_bundle(&bytes).map_err(|e| {
                    Error::corrupt(format!("log entry bundle {path}"), e.to_string())
                })?;
                if (list.len() as u64) < w {
                    return Err(Error::corrupt(
                        format!("log entry bundle {path}"),
                        format!("it holds {} entries, not {w}", list.len()),
                    ));
                }
                if list.len() as u64 > w {
                    logtree::entry_bundle(list.into_iter().take(w as usize))
                        .map_err(|e| Error::Internal(e.to_string()))?
                } else {
                    bytes
                }
            }
            _ => bytes,
        };
        // A hash tile is its width in hashes; anything else is damage, not an answer.
        if let TileRef::Hashes(_, _, w) = tile
            && bytes.len() as u64 != w * 32
        {
            return Err(Error::corrupt(
                format!("log tile {path}"),
                format!("it holds {} bytes, not {} hashes", bytes.len(), w),
            ));
        }
        Ok((tile, bytes))
    }
}
