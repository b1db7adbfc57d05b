use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tracing::instrument;
use veritrace_verify::Digest;
use veritrace_verify::logtree::LogTree;

use crate::{BatchHeader, DataDir, Error, Result};

/// One epoch: the batches it covers (in leaf order) and the root an anchor witnesses.
///
/// Every batch header is a leaf of one growing log, in epoch order and, within an epoch, in
/// `batch_ids` order. An epoch sealed into the log (`log_size` set: every epoch this version
/// seals) has as `root` the log's root at `log_size` leaves: its checkpoint. Epochs sealed
/// before the log existed have the root of their own batches only; their batches are still
/// leaves of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochRecord {
    /// Consecutive from 0.
    pub epoch_id: u64,
    /// With `log_size`: the log's root at that size. Without: the root over
    /// `leaf_hash(JCS(batch header))` of each batch of the epoch, in `batch_ids` order.
    pub root: Digest,
    /// Number of batches.
    pub batch_count: u64,
    /// Accepted events in all batches of the epoch.
    pub events: u64,
    /// Batch ids, in leaf order.
    pub batch_ids: Vec<String>,
    /// When the epoch was sealed (RFC 3339, UTC).
    pub sealed_at: String,
    /// Leaves of the log once this epoch's batches are in it (absent for epochs sealed
    /// before the log existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_size: Option<u64>,
}

impl EpochRecord {
    /// The size of the tree `root` is the root of, which proofs and anchors state as the
    /// epoch's `batch_count`: the log's size, or the epoch's own batch count before the log.
    pub fn tree_size(&self) -> u64 {
        self.log_size.unwrap_or(self.batch_count)
    }

    /// The log index of this epoch's first batch.
    pub fn log_start(&self) -> Option<u64> {
        self.log_size.map(|s| s - self.batch_count)
    }
}

/// Builds the log from the epoch records and the batch headers (looked up by id), checking
/// every log epoch's root against it.
pub fn log_of_epochs<'a>(
    records: &[EpochRecord],
    header: impl Fn(&str) -> Option<&'a BatchHeader>,
) -> std::result::Result<LogTree, String> {
    let mut log = LogTree::new();
    for r in records {
        for b in &r.batch_ids {
            let h = header(b.as_str())
                .ok_or_else(|| format!("epoch {} names unknown batch {b}", r.epoch_id))?;
            log.push(
                h.leaf_hash()
                    .map_err(|e| format!("batch {b}: its header cannot be hashed: {e}"))?,
            );
        }
        if let Some(size) = r.log_size {
            let root = log.root_at(size).ok_or_else(|| {
                format!(
                    "epoch {} says the log has {size} leaves; it has {}",
                    r.epoch_id,
                    log.size()
                )
            })?;
            if root != r.root {
                return Err(format!(
                    "epoch {} has root {} but the log's root at {size} leaves is {root}",
                    r.epoch_id, r.root
                ));
            }
        }
    }
    Ok(log)
}
/// The append-only log of epochs (`epochs/epochs.jsonl`).
#[derive(Debug)]
pub struct EpochLog {
    dir: DataDir,
    path: PathBuf,
    records: Vec<EpochRecord>,
    in_epoch: HashSet<String>,
    /// The log, built at the first seal (from the manifests' headers).
    log: Option<LogTree>,
}

impl EpochLog {
    /// Opens the epoch log for appending (one writer per data directory): repairs a torn
    /// last line, then reads it like [`EpochLog::read`].
    pub fn open_writer(dir: &DataDir) -> Result<Self> {
        dir.repair_torn_tail(&dir.epochs_file())?;
        Self::read(dir)
    }

    /// Reads the epoch log without writing, checking that epoch ids are consecutive and
    /// that no batch is in two epochs.
    pub fn read(dir: &DataDir) -> Result<Self> {
        let path = dir.epochs_file();
        let records: Vec<EpochRecord> = dir.read_jsonl(&path)?;
        let mut in_epoch = HashSet::new();
        let mut leaves = 0u64;
        let mut in_log = false;
        for (i, r) in records.iter().enumerate() {
            if r.epoch_id != i as u64 || r.batch_count != r.batch_ids.len() as u64 {
                return Err(Error::Corrupt {
                    path: path.clone(),
                    detail: format!("epoch record {i} is out of sequence or miscounted"),
                });
            }
            leaves += r.batch_count;
            match r.log_size {
                Some(s) if s != leaves => {
                    return Err(Error::Corrupt {
                        path: path.clone(),
                        detail: format!(
                            "epoch {i} says the log has {s} leaves but the epochs up to it hold {leaves} batches"
                        ),
                    });
                }
                Some(_) => in_log = true,
                None if in_log => {
                    return Err(Error::Corrupt {
                        path: path.clone(),
                        detail: format!(
                            "epoch {i} has no log size but an earlier epoch is in the log"
                        ),
                    });
                }
                None => {}
            }
            for b in &r.batch_ids {
                if !in_epoch.insert(b.clone()) {
                    return Err(Error::Corrupt {
                        path: path.clone(),
                        detail: format!("batch {b} appears in two epochs"),
                    });
                }
            }
        }
        Ok(EpochLog {
            dir: dir.clone(),
            path,
            records,
            in_epoch,
            log: None,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &DataDir {
        &self.dir
    }

    /// All epochs, in order.
    pub fn records(&self) -> &[EpochRecord] {
        &self.records
    }

    /// The epoch that contains a batch, if it is in one yet.
    pub fn epoch_of(&self, batch_id: &str) -> Option<&EpochRecord> {
        if !self.in_epoch.contains(batch_id) {
            return None;
        }
        self.records
            .iter()
            .rev()
            .find(|r| r.batch_ids.iter().any(|b| b == batch_id))
    }

    /// The given headers that are not yet in any epoch.
    pub fn unepoched(&self, headers: impl IntoIterator<Item = BatchHeader>) -> Vec<BatchHeader> {
        headers
            .into_iter()
            .filter(|h| !self.in_epoch.contains(&h.batch_id))
            .collect()
    }

    /// Seals one epoch over `headers` (ordered by stream, partition, sequence), appends it
    /// durably and returns it; `None` when there is nothing to seal.
    #[instrument(skip_all, fields(epoch_id = self.records.len(), batches = headers.len()))]
    pub fn seal(
        &mut self,
        mut headers: Vec<BatchHeader>,
        sealed_at: String,
    ) -> Result<Option<EpochRecord>> {
        headers.retain(|h| !self.in_epoch.contains(&h.batch_id));
        if headers.is_empty() {
            return Ok(None);
        }
        headers
            .sort_by(|a, b| (&a.stream, a.partition, a.seq).cmp(&(&b.stream, b.partition, b.seq)));
        headers.dedup_by(|a, b| a.batch_id == b.batch_id);
        let leaves = headers
            .iter()
            .map(BatchHeader::leaf_hash)
            .collect::<Result<Vec<_>, _>>()?;
        let mut log = match self.log.take() {
            Some(l) => l,
            None => self.build_log(&headers)?,
        };
        for l in &leaves {
            log.push(*l);
        }
        let rec = EpochRecord {
            epoch_id: self.records.len() as u64,
            root: log.root(),
            batch_count: headers.len() as u64,
            events: headers.iter().map(|h| h.size).sum(),
            batch_ids: headers.iter().map(|h| h.batch_id.clone()).collect(),
            sealed_at,
            log_size: Some(log.size()),
        };
        // On failure the log is dropped with the record: the next seal rebuilds it.
        self.dir.append_jsonl(&self.path, rec.epoch_id, &rec)?;
        self.in_epoch.extend(rec.batch_ids.iter().cloned());
        self.records.push(rec.clone());
        self.log = Some(log);
        Ok(Some(rec))
    }

    /// The log over every batch of every epoch (built from the manifests on first use).
    pub fn log(&mut self) -> Result<&LogTree> {
        if self.log.is_none() {
            self.log = Some(self.build_log(&[])?);
        }
        Ok(self.log.get_or_insert_default())
    }

    /// The batch ids in log order.
    pub fn log_ids(&self) -> impl Iterator<Item = &str> {
        self.records
            .iter()
            .flat_map(|r| r.batch_ids.iter().map(String::as_str))
    }

    /// Builds the log of the recorded epochs from the data directory's headers (and
    /// `extra`, headers not in a manifest yet).
    fn build_log(&self, extra: &[BatchHeader]) -> Result<LogTree> {
        let all = self.dir.all_batch_headers()?;
        let by_id: HashMap<&str, &BatchHeader> = all
            .iter()
            .chain(extra)
            .map(|h| (h.batch_id.as_str(), h))
            .collect();
        // A batch an epoch names that no manifest holds: its manifest lost it.
        let lost = self.records.iter().find_map(|r| {
            r.batch_ids
                .iter()
                .find(|b| !by_id.contains_key(b.as_str()))
                .map(|b| (r.epoch_id, b))
        });
        if let Some((epoch, b)) = lost {
            let manifest = b
                .rsplitn(3, '-')
                .nth(2)
                .and_then(|sp| sp.rsplit_once("-p"))
                .and_then(|(stream, p)| Some(self.dir.manifest_file(stream, p.parse().ok()?)));
            return Err(Error::Corrupt {
                path: manifest.unwrap_or_else(|| self.path.clone()),
                detail: format!(
                    "epoch {epoch} names batch {b}, which the manifest lacks: it was truncated or replaced. \
                     Nothing was changed: restore the manifest from a backup (`veritrace check --data DIR` lists all damage)"
                ),
            });
        }
        log_of_epochs(&self.records, |id| by_id.get(id).copied()).map_err(|detail| Error::Corrupt {
            path: self.path.clone(),
            detail,
        })
    }
}
