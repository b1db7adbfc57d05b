//! Builders of the `events`, `rejected` and `edges` columns. What the tables look like
//! (schemas, encodings, bloom filters, sort order) is defined once, in
//! [`veritrace_anchor::tables`]; these build record batches of those schemas.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, FixedSizeBinaryBuilder, Float64Builder, ListBuilder, MapBuilder, StringBuilder,
    TimestampMillisecondBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::ArrowError;
use veritrace_anchor::tables;
use veritrace_verify::{Digest, canonical};

use crate::event::Event;
use crate::reason::Rejection;

/// Accumulates the trace-graph edges of one open batch: an `assembly` links each input to
/// its output (`trace_code`); a `transformation` links each input to each output (a split
/// fans out, a merge fans in); a `disassembly` writes a row per object taken out of its
/// `trace_code`, or one row with the empty string as `parent` when it empties the container
/// (the trace graph ends those links at its time).
#[derive(Debug)]
pub struct EdgeColumns {
    parent: StringBuilder,
    child: StringBuilder,
    event_id: StringBuilder,
    event_type: StringBuilder,
    event_time: TimestampMillisecondBuilder,
    event_trace_code: StringBuilder,
    rows: usize,
}

impl Default for EdgeColumns {
    fn default() -> Self {
        EdgeColumns {
            parent: StringBuilder::new(),
            child: StringBuilder::new(),
            event_id: StringBuilder::new(),
            event_type: StringBuilder::new(),
            event_time: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            event_trace_code: StringBuilder::new(),
            rows: 0,
        }
    }
}

impl EdgeColumns {
    /// Adds the edges an accepted event defines (none for most event types).
    pub fn push(&mut self, e: &Event) {
        let children: Vec<&str> = match e.kind {
            crate::event::EventType::Assembly | crate::event::EventType::Disassembly => {
                e.trace_code.as_deref().into_iter().collect()
            }
            crate::event::EventType::Transformation => {
                e.outputs.iter().map(String::as_str).collect()
            }
            _ => return,
        };
        let everything = [String::new()];
        let inputs = match e.kind {
            crate::event::EventType::Disassembly if e.inputs.is_empty() => &everything[..],
            _ => &e.inputs[..],
        };
        for input in inputs {
            for child in &children {
                self.parent.append_value(input);
                self.child.append_value(child);
                self.event_id.append_value(&e.event_id);
                // The link's meaning (a business type's `like`): the trace graph reads it.
                self.event_type.append_value(e.kind.as_str());
                self.event_time.append_value(e.event_time_ms);
                self.event_trace_code.append_option(e.trace_code.as_deref());
                self.rows += 1;
            }
        }
    }

    /// True when no edges are accumulated.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Finishes the batch's edges.
    pub fn finish(&mut self, batch_id: &str) -> Result<RecordBatch, ArrowError> {
        let n = self.rows;
        self.rows = 0;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.parent.finish()),
            Arc::new(self.child.finish()),
            Arc::new(self.event_id.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.event_time.finish()),
            constant_str(batch_id, n),
            Arc::new(self.event_trace_code.finish()),
        ];
        RecordBatch::try_new(tables::EDGES.schema(), cols)
    }
}

/// Canonical JSON text of a value already accepted into a canonical event (so it has a
/// canonical form: the leaf was computed from it).
fn json_text<T: serde::Serialize + ?Sized>(v: &T) -> String {
    canonical::to_vec(v)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

/// A column holding the same string in every row (batch id, stream).
fn constant_str(v: &str, n: usize) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(std::iter::repeat_n(v, n)))
}

/// Accumulates accepted events of one open batch as Arrow columns.
#[derive(Debug)]
pub struct EventColumns {
    event_id: StringBuilder,
    event_type: StringBuilder,
    event_time: TimestampMillisecondBuilder,
    trace_code: StringBuilder,
    gtin: StringBuilder,
    inputs: ListBuilder<StringBuilder>,
    outputs: ListBuilder<StringBuilder>,
    participant_id: StringBuilder,
    participant_name: StringBuilder,
    participant_role: StringBuilder,
    counterparty_id: StringBuilder,
    counterparty_name: StringBuilder,
    counterparty_role: StringBuilder,
    operator: StringBuilder,
    result: StringBuilder,
    site: StringBuilder,
    device_id: StringBuilder,
    lat: Float64Builder,
    lon: Float64Builder,
    product_id: StringBuilder,
    batch_number: StringBuilder,
    production_line: StringBuilder,
    production_date: StringBuilder,
    model: StringBuilder,
    spec: StringBuilder,
    expiry_date: StringBuilder,
    quantity: Float64Builder,
    quantity_unit: StringBuilder,
    readings: MapBuilder<StringBuilder, Float64Builder>,
    attributes: StringBuilder,
    attachments: StringBuilder,
    signer: StringBuilder,
    signer_participant: StringBuilder,
    key_id: StringBuilder,
    sig_alg: StringBuilder,
    envelope: BinaryBuilder,
    bundle_member: BinaryBuilder,
    canonical: StringBuilder,
    leaf_hash: FixedSizeBinaryBuilder,
    offset: UInt64Builder,
    rows: usize,
}

impl Default for EventColumns {
    fn default() -> Self {
        Self::new()
    }
}

impl EventColumns {
    /// Empty builders.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// Builders sized for `rows` events, so a batch fills them without regrowing.
    pub fn with_capacity(rows: usize) -> Self {
        let text = |bytes_per_row: usize| StringBuilder::with_capacity(rows, rows * bytes_per_row);
        EventColumns {
            event_id: text(32),
            event_type: text(16),
            event_time: TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC"),
            trace_code: text(16),
            gtin: text(16),
            inputs: ListBuilder::new(text(16)),
            outputs: ListBuilder::new(text(16)),
            participant_id: text(16),
            participant_name: text(16),
            participant_role: text(16),
            counterparty_id: text(16),
            counterparty_name: text(16),
            counterparty_role: text(16),
            operator: text(16),
            result: text(16),
            site: text(16),
            device_id: text(16),
            lat: Float64Builder::new(),
            lon: Float64Builder::new(),
            product_id: text(16),
            batch_number: text(16),
            production_line: text(16),
            production_date: text(16),
            model: text(16),
            spec: text(16),
            expiry_date: text(16),
            quantity: Float64Builder::new(),
            quantity_unit: text(16),
            readings: MapBuilder::new(None, text(16), Float64Builder::new()),
            attributes: text(64),
            attachments: text(64),
            signer: StringBuilder::new(),
            signer_participant: StringBuilder::new(),
            key_id: StringBuilder::new(),
            sig_alg: StringBuilder::new(),
            envelope: BinaryBuilder::new(),
            bundle_member: BinaryBuilder::new(),
            canonical: text(512),
            leaf_hash: FixedSizeBinaryBuilder::with_capacity(rows, 32),
            offset: UInt64Builder::with_capacity(rows),
            rows: 0,
        }
    }

    /// Rows accumulated so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no rows are accumulated.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one accepted event (with the signed envelope it came in and, for a bundle's
    /// event, its member evidence).
    pub fn push(
        &mut self,
        e: &Event,
        canonical: &[u8],
        leaf: &Digest,
        offset: u64,
        envelope: Option<&[u8]>,
        bundle_member: Option<&[u8]>,
    ) -> Result<(), ArrowError> {
        self.event_id.append_value(&e.event_id);
        self.event_type.append_value(e.event_type.as_str());
        self.event_time.append_value(e.event_time_ms);
        self.trace_code.append_option(e.trace_code.as_deref());
        self.gtin.append_option(e.gtin());
        if e.inputs.is_empty() {
            self.inputs.append_null();
        } else {
            for c in &e.inputs {
                self.inputs.values().append_value(c);
            }
            self.inputs.append(true);
        }
        if e.outputs.is_empty() {
            self.outputs.append_null();
        } else {
            for c in &e.outputs {
                self.outputs.values().append_value(c);
            }
            self.outputs.append(true);
        }
        self.participant_id.append_value(&e.participant.id);
        self.participant_name
            .append_option(e.participant.name.as_deref());
        self.participant_role.append_value(&e.participant.role);
        let cp = e.counterparty.as_ref();
        self.counterparty_id
            .append_option(cp.map(|c| c.id.as_str()));
        self.counterparty_name
            .append_option(cp.and_then(|c| c.name.as_deref()));
        self.counterparty_role
            .append_option(cp.map(|c| c.role.as_str()));
        self.operator.append_option(e.operator.as_deref());
        self.result.append_option(e.result.as_deref());
        self.site.append_option(e.site.as_deref());
        self.device_id.append_option(e.device_id.as_deref());
        self.lat.append_option(e.location.map(|l| l.lat));
        self.lon.append_option(e.location.map(|l| l.lon));
        let o = e.object.as_ref();
        self.product_id
            .append_option(o.and_then(|o| o.product_id.as_deref()));
        self.batch_number
            .append_option(o.and_then(|o| o.batch_number.as_deref()));
        self.production_line
            .append_option(o.and_then(|o| o.production_line.as_deref()));
        self.production_date
            .append_option(o.and_then(|o| o.production_date.as_deref()));
        self.model.append_option(o.and_then(|o| o.model.as_deref()));
        self.spec.append_option(o.and_then(|o| o.spec.as_deref()));
        self.expiry_date
            .append_option(o.and_then(|o| o.expiry_date.as_deref()));
        self.quantity
            .append_option(e.quantity.as_ref().map(|q| q.value));
        self.quantity_unit
            .append_option(e.quantity.as_ref().map(|q| q.unit.as_str()));
        if e.readings.is_empty() {
            self.readings.append(false)?;
        } else {
            for (k, v) in &e.readings {
                self.readings.keys().append_value(k);
                self.readings.values().append_value(*v);
            }
            self.readings.append(true)?;
        }
        // Both are in the canonical bytes already, as their columns hold them.
        let (attachments, attributes) = crate::event_jcs::leading_members(canonical);
        match (&e.attributes, attributes) {
            (None, _) => self.attributes.append_null(),
            (Some(_), Some(text)) => self.attributes.append_value(text),
            (Some(v), None) => self.attributes.append_value(json_text(v)),
        }
        match attachments {
            _ if e.attachments.is_empty() => self.attachments.append_null(),
            Some(text) => self.attachments.append_value(text),
            None => {
                let v = serde_json::to_value(&e.attachments).unwrap_or_default();
                self.attachments.append_value(json_text(&v));
            }
        }
        let sig = e.signature.as_ref();
        self.signer.append_option(sig.map(|s| s.signer.as_str()));
        self.signer_participant
            .append_option(sig.map(|s| s.signer_participant.as_str()));
        self.key_id.append_option(sig.map(|s| s.key_id.as_str()));
        self.sig_alg.append_option(sig.map(|s| s.alg.as_str()));
        self.envelope.append_option(envelope);
        self.bundle_member.append_option(bundle_member);
        // Canonical bytes are JCS output of a Rust string-keyed value: always UTF-8 (checked
        // here once, with the fast validator; the lossy one cost 3% of the pipeline).
        match std::str::from_utf8(canonical) {
            Ok(s) => self.canonical.append_value(s),
            Err(_) => self
                .canonical
                .append_value(String::from_utf8_lossy(canonical)),
        }
        self.leaf_hash.append_value(leaf.0)?;
        self.offset.append_value(offset);
        self.rows += 1;
        Ok(())
    }

    /// Finishes the batch's columns (leaf index = row number) and resets the builders.
    pub fn finish(
        &mut self,
        batch_id: &str,
        stream: &str,
        partition: u32,
    ) -> Result<RecordBatch, ArrowError> {
        let n = self.rows;
        self.rows = 0;
        let repeat = |v: &str| constant_str(v, n);
        let leaf_index = UInt64Array::from_iter_values(0..n as u64);
        let part = UInt32Array::from(vec![partition; n]);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.event_time.finish()),
            Arc::new(self.trace_code.finish()),
            Arc::new(self.gtin.finish()),
            Arc::new(self.inputs.finish()),
            Arc::new(self.outputs.finish()),
            Arc::new(self.participant_id.finish()),
            Arc::new(self.participant_name.finish()),
            Arc::new(self.participant_role.finish()),
            Arc::new(self.counterparty_id.finish()),
            Arc::new(self.counterparty_name.finish()),
            Arc::new(self.counterparty_role.finish()),
            Arc::new(self.operator.finish()),
            Arc::new(self.result.finish()),
            Arc::new(self.site.finish()),
            Arc::new(self.device_id.finish()),
            Arc::new(self.lat.finish()),
            Arc::new(self.lon.finish()),
            Arc::new(self.product_id.finish()),
            Arc::new(self.batch_number.finish()),
            Arc::new(self.production_line.finish()),
            Arc::new(self.production_date.finish()),
            Arc::new(self.model.finish()),
            Arc::new(self.spec.finish()),
            Arc::new(self.expiry_date.finish()),
            Arc::new(self.quantity.finish()),
            Arc::new(self.quantity_unit.finish()),
            Arc::new(self.readings.finish()),
            Arc::new(self.attributes.finish()),
            Arc::new(self.attachments.finish()),
            Arc::new(self.signer.finish()),
            Arc::new(self.signer_participant.finish()),
            Arc::new(self.key_id.finish()),
            Arc::new(self.sig_alg.finish()),
            Arc::new(self.envelope.finish()),
            Arc::new(self.bundle_member.finish()),
            Arc::new(self.canonical.finish()),
            repeat(batch_id),
            Arc::new(leaf_index),
            Arc::new(self.leaf_hash.finish()),
            repeat(stream),
            Arc::new(part),
            Arc::new(self.offset.finish()),
        ];
        RecordBatch::try_new(tables::EVENTS.schema(), cols)
    }
}

/// Accumulates rejected records of one open batch.
#[derive(Debug)]
pub struct RejectedColumns {
    offset: UInt64Builder,
    key: BinaryBuilder,
    payload: BinaryBuilder,
    reason: StringBuilder,
    detail: StringBuilder,
    event_id: StringBuilder,
    rejected_at: TimestampMillisecondBuilder,
    rows: usize,
}

impl Default for RejectedColumns {
    fn default() -> Self {
        Self::new()
    }
}

impl RejectedColumns {
    /// Empty builders.
    pub fn new() -> Self {
        RejectedColumns {
            offset: UInt64Builder::new(),
            key: BinaryBuilder::new(),
            payload: BinaryBuilder::new(),
            reason: StringBuilder::new(),
            detail: StringBuilder::new(),
            event_id: StringBuilder::new(),
            rejected_at: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            rows: 0,
        }
    }

    /// Rows accumulated so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no rows are accumulated.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one rejected record, original bytes kept.
    pub fn push(
        &mut self,
        offset: u64,
        key: Option<&[u8]>,
        payload: &[u8],
        r: &Rejection,
        now_ms: i64,
    ) {
        self.offset.append_value(offset);
        self.key.append_option(key);
        self.payload.append_value(payload);
        self.reason.append_value(r.reason.as_str());
        self.detail.append_value(&r.detail);
        self.event_id.append_option(r.event_id.as_deref());
        self.rejected_at.append_value(now_ms);
        self.rows += 1;
    }

    /// Finishes the columns and resets the builders.
    pub fn finish(
        &mut self,
        batch_id: &str,
        stream: &str,
        partition: u32,
    ) -> Result<RecordBatch, ArrowError> {
        let n = self.rows;
        self.rows = 0;
        let repeat = |v: &str| constant_str(v, n);
        let part = UInt32Array::from(vec![partition; n]);
        let cols: Vec<ArrayRef> = vec![
            repeat(stream),
            Arc::new(part),
            Arc::new(self.offset.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.payload.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.detail.finish()),
            Arc::new(self.event_id.finish()),
            Arc::new(self.rejected_at.finish()),
            repeat(batch_id),
        ];
        RecordBatch::try_new(tables::REJECTED.schema(), cols)
    }
}
