//! The EVM anchor journal, `anchors/evm.jsonl`: one JSON line per step of anchoring, made
//! durable before the step's effect can happen on chain. Replaying it tells a restarted
//! anchorer which transactions it already signed (and may have broadcast), which epochs are
//! anchored with which receipt, and which receipts a reorg invalidated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use veritrace_verify::Digest;
use veritrace_verify::bundle::EvmReceipt;

use crate::{DataDir, Result};

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum JournalRecord {
    /// A signed anchor transaction, written before it is broadcast.
    Submitted {
        /// The epoch.
        epoch_id: u64,
        /// Its root.
        root: Digest,
        /// Chain the transaction is signed for.
        chain_id: u64,
        /// Contract it calls.
        contract: String,
        /// Sender (the writer key's address).
        from: String,
        /// Sender nonce.
        nonce: u64,
        /// Transaction hash.
        tx_hash: String,
        /// The signed transaction (EIP-2718 bytes, hex), to broadcast again if the node
        /// forgot it. It contains no secret.
        raw: String,
        /// When it was signed (RFC 3339).
        at: String,
    },
    /// A submission that can no longer land (the node refused it, it reverted, or its
    /// nonce was used by another transaction); the epoch is anchored by a later one.
    Abandoned {
        /// The epoch.
        epoch_id: u64,
        /// The abandoned transaction.
        tx_hash: String,
        /// Why.
        reason: String,
        /// When (RFC 3339).
        at: String,
    },
    /// The root is on chain with enough confirmations: this receipt goes into proofs.
    Anchored {
        /// The epoch.
        epoch_id: u64,
        /// Its root.
        root: Digest,
        /// Where it landed.
        receipt: EvmReceipt,
        /// Gas the anchoring transaction used.
        gas_used: u64,
        /// Confirmations seen when it was recorded.
        confirmations: u64,
        /// When the epoch was sealed (RFC 3339), for seal-to-anchored latency.
        sealed_at: String,
        /// When it was recorded (RFC 3339).
        at: String,
    },
    /// A reorg removed the block of an anchored epoch's receipt; the epoch is anchored
    /// again and gets a new `anchored` line.
    Reorged {
        /// The epoch.
        epoch_id: u64,
        /// The receipt that is no longer on the canonical chain.
        receipt: EvmReceipt,
        /// What the chain showed instead.
        detail: String,
        /// When it was detected (RFC 3339).
        at: String,
    },
}

/// Reads every journal line (a torn last line is ignored here and repaired by the
/// anchorer when it opens the journal).
pub(crate) fn read(dir: &DataDir) -> Result<Vec<JournalRecord>> {
    dir.read_jsonl(&dir.evm_journal_file())
}

/// The current EVM receipt of each anchored epoch, with the root it anchors: the last
/// `anchored` line of the epoch, unless a later `reorged` line invalidated it. This is
/// what proofs carry. Missing journal: no epoch is anchored on a chain.
pub fn read_receipts(dir: &DataDir) -> Result<BTreeMap<u64, (Digest, EvmReceipt)>> {
    let mut out = BTreeMap::new();
    for r in read(dir)? {
        match r {
            JournalRecord::Anchored {
                epoch_id,
                root,
                receipt,
                ..
            } => {
                out.insert(epoch_id, (root, receipt));
            }
            JournalRecord::Reorged {
                epoch_id, receipt, ..
            } => {
                if out.get(&epoch_id).is_some_and(|(_, r)| *r == receipt) {
                    out.remove(&epoch_id);
                }
            }
            JournalRecord::Submitted { .. } | JournalRecord::Abandoned { .. } => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn anchored(epoch_id: u64, block: u64) -> JournalRecord {
        JournalRecord::Anchored {
            epoch_id,
            root: Digest([epoch_id as u8 + 1; 32]),
            receipt: EvmReceipt {
                chain_id: 1,
                contract: format!("0x{}", "11".repeat(20)),
                tx_hash: format!("0x{}", "22".repeat(32)),
                block_number: block,
                block_hash: format!("0x{:064x}", block),
                log_index: 0,
            },
            gas_used: 48_000,
            confirmations: 1,
            sealed_at: "2026-11-21T00:00:00.000Z".into(),
            at: "2026-11-21T00:00:01.000Z".into(),
        }
    }

    #[test]
    fn receipts_follow_reorgs_and_bad_lines_are_named_errors() {
        let d = tempfile::tempdir().unwrap();
        let dir = DataDir::create(d.path()).unwrap();
        assert!(read_receipts(&dir).unwrap().is_empty());
        let path = dir.evm_journal_file();
        let a0 = anchored(0, 5);
        let JournalRecord::Anchored { receipt: r0, .. } = a0.clone() else {
            unreachable!()
        };
        for rec in [
            a0,
            anchored(1, 6),
            JournalRecord::Reorged {
                epoch_id: 0,
                receipt: r0,
                detail: "block 5 is now 0x..".into(),
                at: "x".into(),
            },
        ] {
            crate::append_line_durable(&path, &rec).unwrap();
        }
        let got = read_receipts(&dir).unwrap();
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), vec![1]);
        // Re-anchored after the reorg.
        crate::append_line_durable(&path, &anchored(0, 9)).unwrap();
        assert_eq!(read_receipts(&dir).unwrap()[&0].1.block_number, 9);
        // A torn last line (crash mid-append) is ignored; a bad complete line is an error
        // naming the file and line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"kind\":\"anch")
            .unwrap();
        assert_eq!(read_receipts(&dir).unwrap().len(), 2);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"ored\",\"bogus\":1}\n")
            .unwrap();
        let e = read_receipts(&dir).unwrap_err().to_string();
        assert!(e.contains("evm.jsonl") && e.contains("line 5"), "{e}");
    }

    use std::io::Write as _;
}
