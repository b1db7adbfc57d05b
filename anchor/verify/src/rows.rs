//! Query certificates: the rows a SQL query returned, each backed by the proof of the event
//! it came from, so a data team can hand an auditor the exact rows behind a report. Batch
//! headers, epoch paths and anchor receipts are shared as in a trace certificate
//! ([`crate::certificate`]).
//!
//! ```text
//! {"format":  "veritrace.rows/1",
//!  "query":   {"sql", "scope", "run_at", "columns": [{"name", "checked"}]},
//!  "rows":    [{"event": index into events, "values": {column: value}}],
//!  "batches": {batch_id: {"header": BatchHeader, "epoch": EpochProof?}},
//!  "anchors": {epoch_id: Anchor},
//!  "events":  [{"event", "batch_id", "leaf": LeafProof}]}
//! ```
//!
//! What it proves: every event is in the log unaltered (its proof, checked as a single
//! bundle's), each row names the event it came from (its `event_id` value), and each
//! value of a column marked `checked` equals the event's own top-level field of that name.
//! Other columns (computed, joined, typed such as times) are the query's output as the
//! node rendered it, and the report names them. What it cannot prove: that no other row
//! matches the query (absence), nor that the query means what its text says.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::bundle::{Anchor, LeafProof, ProofBundle};
use crate::certificate::{CertBatch, assemble};
use crate::verify::{Options, Report, Shared, verify_bundle_with};
use crate::{Error, Result};

/// The query certificate format this crate writes and reads.
pub const ROWS_FORMAT: &str = "veritrace.rows/1";

/// The query the rows answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowsQuery {
    /// The SQL as run.
    pub sql: String,
    /// Whose view it ran in: `all`, `data` (all but the audit log) or `participant:{id}`.
    pub scope: String,
    /// When it ran (RFC 3339, UTC).
    pub run_at: String,
    /// The result's columns, in order.
    pub columns: Vec<RowsColumn>,
}

/// One result column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowsColumn {
    /// Its name.
    pub name: String,
    /// True when its values are the events' own top-level field of that name (text,
    /// numbers, booleans), so the verifier compares them.
    pub checked: bool,
}

/// One result row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowsRow {
    /// The event it came from (an index into `events`).
    pub event: usize,
    /// Its values, by column name.
    pub values: Map<String, Value>,
}

/// One event and its leaf proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowsEvent {
    /// The canonical event.
    pub event: Value,
    /// Its batch (a key of `batches`).
    pub batch_id: String,
    /// Its position and audit path in the batch.
    pub leaf: LeafProof,
}

/// A query certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowsCertificate {
    /// Always [`ROWS_FORMAT`].
    pub format: String,
    /// The query.
    pub query: RowsQuery,
    /// The rows, in the order the query returned them.
    pub rows: Vec<RowsRow>,
    /// Batches, by id.
    pub batches: BTreeMap<String, CertBatch>,
    /// Anchor receipts, by epoch id.
    pub anchors: BTreeMap<u64, Anchor>,
    /// The events the rows came from, each once.
    pub events: Vec<RowsEvent>,
}

impl RowsCertificate {
    /// Parses a query certificate, refusing duplicate keys anywhere, a format other than
    /// [`ROWS_FORMAT`], unknown fields and digests that are not 64 hex digits.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        crate::bundle::read_document(bytes, "query certificate", &[ROWS_FORMAT])
    }

    /// The single-event bundle of event `i` (what [`crate::verify::verify_bundle`] checks).
    pub fn bundle(&self, i: usize) -> Result<ProofBundle> {
        let e = self.events.get(i);
        assemble(
            &self.batches,
            &self.anchors,
            i,
            e.map(|e| (&e.event, e.batch_id.as_str(), &e.leaf)),
        )
    }
}

/// The outcome for one event.
#[derive(Debug)]
pub struct RowsEventOutcome {
    /// The event id (or its position when it has none).
    pub event_id: String,
    /// Its verification.
    pub result: Result<Report>,
}

/// What a query certificate's verification found.
#[derive(Debug)]
pub struct RowsReport {
    /// Per event, in certificate order.
    pub events: Vec<RowsEventOutcome>,
    /// Checks of the rows as a whole.
    pub checks: Vec<String>,
    /// Problems (the certificate is invalid if any).
    pub problems: Vec<String>,
    /// Limits of what was proven.
    pub notes: Vec<String>,
}

impl RowsReport {
    /// True when every event verified and every row agrees with its event.
    pub fn valid(&self) -> bool {
        self.problems.is_empty() && self.events.iter().all(|e| e.result.is_ok())
    }
}

/// A value as it compares: text, a number (as f64: the events' numbers are JCS-safe) or a
/// boolean; anything else does not compare.
fn scalar(v: &Value) -> Option<Value> {
    match v {
        Value::String(_) | Value::Bool(_) => Some(v.clone()),
        Value::Number(n) => n.as_f64().map(Value::from),
        _ => None,
    }
}

/// Verifies every event's proof, and that each row belongs to its event: its `event_id`
/// is the event's and each checked column's value is the event's field of that name.
pub fn verify_rows(c: &RowsCertificate, opts: &Options) -> Result<RowsReport> {
    if c.format != ROWS_FORMAT {
        return Err(Error::UnsupportedFormat {
            found: c.format.clone(),
            supported: &[ROWS_FORMAT],
        });
    }
    let mut problems = Vec::new();
    let mut checks = Vec::new();
    let mut notes = Vec::new();
    let mut outcomes = Vec::with_capacity(c.events.len());
    // The ledger file once for all events.
    let shared = Shared::new(opts);
    let mut ids = HashSet::new();
    for (i, e) in c.events.iter().enumerate() {
        let id = e
            .event
            .get("event_id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("#{i}"), str::to_owned);
        if !ids.insert(id.clone()) {
            problems.push(format!("event {id} appears twice"));
        }
        outcomes.push(RowsEventOutcome {
            event_id: id,
            result: c
                .bundle(i)
                .and_then(|b| verify_bundle_with(&b, opts, &shared)),
        });
    }
    let names: HashSet<&str> = c.query.columns.iter().map(|k| k.name.as_str()).collect();
    if names.len() != c.query.columns.len() {
        problems.push("the query's column names are not unique".into());
    }
    match c.query.columns.iter().find(|k| k.name == "event_id") {
        Some(k) if k.checked => {}
        _ => problems.push("the rows have no checked event_id column".into()),
    }
    let checked: Vec<&str> = c
        .query
        .columns
        .iter()
        .filter(|k| k.checked)
        .map(|k| k.name.as_str())
        .collect();
    let mut compared = 0u64;
    let mut used = vec![false; c.events.len()];
    for (r, row) in c.rows.iter().enumerate() {
        let Some(e) = c.events.get(row.event) else {
            problems.push(format!(
                "row {r} names event {}, which the certificate does not hold",
                row.event
            ));
            continue;
        };
        used[row.event] = true;
        if let Some(extra) = row.values.keys().find(|k| !names.contains(k.as_str())) {
            problems.push(format!(
                "row {r} has a value for {extra}, which is not a column"
            ));
        }
        for col in &checked {
            let got = row.values.get(*col).unwrap_or(&Value::Null);
            let want = e.event.get(*col).unwrap_or(&Value::Null);
            let same = match (scalar(got), scalar(want)) {
                (Some(a), Some(b)) => a == b,
                // A null value stands for a field the event does not have.
                _ => got.is_null() && want.is_null(),
            };
            if same {
                compared += 1;
            } else {
                problems.push(format!(
                    "row {r}: {col} is {got}, but its event says {want}"
                ));
            }
        }
    }
    if let Some(i) = used.iter().position(|u| !u) {
        problems.push(format!("event {i} belongs to no row"));
    }
    checks.push(format!(
        "{} rows, each naming one of {} events; {compared} values equal their event's field ({})",
        c.rows.len(),
        c.events.len(),
        checked.join(", ")
    ));
    let ok = outcomes.iter().filter(|o| o.result.is_ok()).count();
    checks.push(format!("{ok} of {} event proofs verify", outcomes.len()));
    let unchecked: Vec<&str> = c
        .query
        .columns
        .iter()
        .filter(|k| !k.checked)
        .map(|k| k.name.as_str())
        .collect();
    if !unchecked.is_empty() {
        notes.push(format!(
            "columns not compared with the events (computed, joined or typed values, as the node rendered them): {}",
            unchecked.join(", ")
        ));
    }
    notes.push(format!(
        "ran as {} at {}: {}",
        c.query.scope, c.query.run_at, c.query.sql
    ));
    notes.push("a query certificate proves each row's event was recorded unaltered; it cannot prove that no other row matches the query".into());
    Ok(RowsReport {
        events: outcomes,
        checks,
        problems,
        notes,
    })
}
