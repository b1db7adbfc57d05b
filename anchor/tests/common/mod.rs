//! Helpers shared by the anchor crate's integration tests.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use veritrace_anchor::{BatchHeader, BatchWriter, Result, SealInput};
use veritrace_verify::merkle;

/// Seals `n` events `e{first}..` (offsets `first..first + n`) as one batch.
pub(crate) fn seal(w: &mut BatchWriter, first: u64, n: usize) -> Result<BatchHeader> {
    let ids: Vec<String> = (0..n).map(|i| format!("e{}", first as usize + i)).collect();
    let leaves: Vec<_> = ids
        .iter()
        .map(|s| merkle::leaf_hash(s.as_bytes()))
        .collect();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "event_id",
        DataType::Utf8,
        false,
    )]));
    let col: ArrayRef = Arc::new(StringArray::from(ids));
    w.seal(SealInput {
        first_offset: first,
        last_offset: first + n as u64 - 1,
        records: n as u64,
        leaf_hashes: &leaves,
        events: RecordBatch::try_new(schema, vec![col]).expect("batch"),
        rejected: None,
        edges: None,
        sealed_at: "2026-12-03T00:00:00.000Z".into(),
        retracts: Vec::new(),
    })
}
