use std::collections::HashSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tracing::instrument;
use veritrace_verify::{Digest, merkle};

use crate::{BatchHeader, DataDir, Error, Result};

/// One epoch: the batches it covers (in epoch-tree leaf order) and the root over their
/// header leaf hashes. This root is what an anchor witnesses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochRecord {
    /// Consecutive from 0.
    pub epoch_id: u64,
    /// Root over `leaf_hash(JCS(batch header))` of each batch, in `batch_ids` order.
    pub root: Digest,
    /// Number of batches.
    pub batch_count: u64,
    /// Accepted events in all batches of the epoch.
    pub events: u64,
    /// Batch ids, in leaf order.
    pub batch_ids: Vec<String>,
    /// When the epoch was sealed (RFC 3339, UTC).
    pub sealed_at: String,
}

/// The append-only log of epochs (`epochs/epochs.jsonl`).
#[derive(Debug)]
pub struct EpochLog {
    dir: DataDir,
    path: PathBuf,
    records: Vec<EpochRecord>,
    in_epoch: HashSet<String>,
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
        for (i, r) in records.iter().enumerate() {
            if r.epoch_id != i as u64 || r.batch_count != r.batch_ids.len() as u64 {
                return Err(Error::Corrupt {
                    path: path.clone(),
                    detail: format!("epoch record {i} is out of sequence or miscounted"),
                });
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
        })
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
        let rec = EpochRecord {
            epoch_id: self.records.len() as u64,
            root: merkle::root(&leaves),
            batch_count: headers.len() as u64,
            events: headers.iter().map(|h| h.size).sum(),
            batch_ids: headers.iter().map(|h| h.batch_id.clone()).collect(),
            sealed_at,
        };
        self.dir.append_jsonl(&self.path, rec.epoch_id, &rec)?;
        self.in_epoch.extend(rec.batch_ids.iter().cloned());
        self.records.push(rec.clone());
        Ok(Some(rec))
    }
}
