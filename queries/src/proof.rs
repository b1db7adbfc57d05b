use arrow::array::{Array, AsArray, FixedSizeBinaryArray, RecordBatch};
use base64::Engine as _;
use serde_json::Value;
use veritrace_verify::bundle::{
    Anchor, EpochProof, FORMAT, FORMAT_SIGNED, LeafProof, ProofBundle, SignedStatement, Status,
};
use veritrace_verify::{Digest, merkle};

use veritrace_anchor::{BatchHeader, EpochRecord};

use crate::engine::Snapshot;
use crate::{Error, QueryEngine, Result};

/// Where an event sits, as stored in the events table.
#[derive(Debug, Clone, PartialEq)]
pub struct EventLocation {
    /// The canonical event.
    pub event: Value,
    /// Batch id.
    pub batch_id: String,
    /// Leaf index in the batch.
    pub leaf_index: u64,
    /// Stored leaf hash.
    pub leaf_hash: Digest,
    /// Source stream.
    pub stream: String,
    /// Source partition.
    pub partition: u32,
    /// Source offset.
    pub offset: u64,
    /// The signed envelope the event came in, if it came signed (a bundle's event: the
    /// bundle's envelope).
    pub envelope: Option<Vec<u8>>,
    /// For a bundle's event: its index, audit path and bytes as sent
    /// ([`veritrace_verify::bundle_sig::encode_member`]).
    pub bundle_member: Option<Vec<u8>>,
}

impl QueryEngine {
    /// Finds one event by id ([`crate::lookup`]: no query is planned).
    ///
    /// An id stored more than once (sent with two trace codes, so to two partitions, each
    /// of which accepted it) is answered with the copy sealed first: the later copies are
    /// someone else's duplicates, and a lookup or proof must not fail because of them.
    pub async fn event(&self, event_id: &str) -> Result<EventLocation> {
        let snap = self.snapshot().await?;
        if !snap.missing.is_empty() {
            return Err(Error::Damaged(
                snap.missing
                    .iter()
                    .map(|(p, m)| format!("{}: {m}", p.display()))
                    .collect(),
            ));
        }
        let files: Vec<&std::path::Path> =
            snap.event_files.iter().map(|f| f.path.as_path()).collect();
        // Admins and auditors look audit entries up by id too.
        let files: Vec<&std::path::Path> = if self.hides_audit {
            files
        } else {
            files
                .into_iter()
                .chain(snap.audit_files.iter().map(|f| f.path.as_path()))
                .collect()
        };
        let mut batches = self
            .lookup
            .find(&self.dir, snap.fingerprint, &files, event_id)?;
        let altered = self.verifier.report();
        if !altered.is_empty() {
            let touched: Vec<String> = altered
                .iter()
                .filter(|(p, _)| files.contains(&p.as_path()))
                .map(|(p, m)| format!("{}: {m}", p.display()))
                .collect();
            if !touched.is_empty() && !batches.is_empty() {
                return Err(Error::Damaged(touched));
            }
        }
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows == 0 {
            return Err(Error::NotFound {
                what: "event",
                id: event_id.to_owned(),
            });
        }
        if rows > 1 {
            // Earliest sealed batch first (then batch id): a stable choice.
            let mut copies: Vec<RecordBatch> = Vec::new();
            for b in &batches {
                for r in 0..b.num_rows() {
                    copies.push(b.slice(r, 1));
                }
            }
            let key = |b: &RecordBatch| {
                let id = b
                    .column(1)
                    .as_string_opt::<i32>()
                    .map(|a| a.value(0).to_owned())
                    .unwrap_or_default();
                let sealed = snap
                    .headers
                    .get(&id)
                    .map(|h| h.sealed_at.clone())
                    .unwrap_or_default();
                (sealed, id)
            };
            copies.sort_by_key(key);
            tracing::warn!(
                event_id,
                copies = copies.len(),
                "event id stored more than once; answering with the copy sealed first"
            );
            copies.truncate(1);
            batches = copies;
        }
        let Some(b) = batches.iter().find(|b| b.num_rows() == 1) else {
            return Err(Error::Internal(format!(
                "the row of event {event_id} vanished"
            )));
        };
        let s = |i: usize| -> Result<String> {
            let a = b.column(i).as_string_opt::<i32>().ok_or_else(|| {
                Error::corrupt(
                    format!("event {event_id}"),
                    format!("column {i} is not a string column"),
                )
            })?;
            Ok(a.value(0).to_owned())
        };
        let u64v = |i: usize| -> Result<u64> {
            b.column(i)
                .as_primitive_opt::<arrow::datatypes::UInt64Type>()
                .map(|a| a.value(0))
                .ok_or_else(|| {
                    Error::corrupt(
                        format!("event {event_id}"),
                        format!("column {i} is not a u64 column"),
                    )
                })
        };
        let canonical = s(0)?;
        let event: Value = serde_json::from_str(&canonical).map_err(|e| {
            Error::corrupt(
                format!("event {event_id}"),
                format!("its stored canonical event is not JSON: {e}"),
            )
        })?;
        self.check_visible(event_id, &event)?;
        let hash = b
            .column(3)
            .as_any()
            .downcast_ref::<FixedSizeBinaryArray>()
            .and_then(|a| <[u8; 32]>::try_from(a.value(0)).ok())
            .ok_or_else(|| {
                Error::corrupt(format!("event {event_id}"), "leaf_hash is not 32 bytes")
            })?;
        let partition = b
            .column(5)
            .as_primitive_opt::<arrow::datatypes::UInt32Type>()
            .map(|a| a.value(0))
            .ok_or_else(|| {
                Error::corrupt(format!("event {event_id}"), "partition is not a u32 column")
            })?;
        Ok(EventLocation {
            event,
            batch_id: s(1)?,
            leaf_index: u64v(2)?,
            leaf_hash: Digest(hash),
            stream: s(4)?,
            partition,
            offset: u64v(6)?,
            envelope: b
                .column(7)
                .as_binary_opt::<i32>()
                .filter(|a| a.is_valid(0))
                .map(|a| a.value(0).to_vec()),
            bundle_member: b
                .column(8)
                .as_binary_opt::<i32>()
                .filter(|a| a.is_valid(0))
                .map(|a| a.value(0).to_vec()),
        })
    }

    /// Assembles the proof bundle of one event: leaf -> batch root -> epoch root -> anchor.
    /// Every stored hash is recomputed on the way, so a tampered data directory yields an
    /// error here instead of a bundle that fails later.
    pub async fn proof(&self, event_id: &str) -> Result<ProofBundle> {
        let loc = self.event(event_id).await?;
        let snap = self.snapshot().await?;
        let header = snap.headers.get(&loc.batch_id).cloned().ok_or_else(|| {
            Error::corrupt(
                format!("batch {}", loc.batch_id),
                format!(
                    "event {event_id} names it, but it has no manifest entry (not committed yet?)"
                ),
            )
        })?;
        let tree = self.batch_tree(&header).await?;
        let bytes = veritrace_verify::canonical::to_vec(&loc.event).map_err(|e| {
            Error::corrupt(
                format!("event {event_id}"),
                format!("its stored event cannot be canonicalised: {e}"),
            )
        })?;
        let leaf = merkle::leaf_hash(&bytes);
        let committed = tree.leaf(loc.leaf_index as usize).ok_or_else(|| {
            Error::corrupt(
                format!("event {event_id}"),
                format!(
                    "leaf index {} is outside batch {} ({} leaves)",
                    loc.leaf_index, header.batch_id, header.size
                ),
            )
        })?;
        for expected in [committed, loc.leaf_hash] {
            if leaf != expected {
                return Err(Error::Mismatch {
                    what: "leaf hash",
                    subject: format!(
                        "event {event_id} (batch {}, leaf {})",
                        header.batch_id, loc.leaf_index
                    ),
                    expected,
                    computed: leaf,
                });
            }
        }
        let audit_path = tree.audit_path(loc.leaf_index as usize).ok_or_else(|| {
            Error::corrupt(format!("event {event_id}"), "leaf index outside batch")
        })?;
        let (status, epoch, anchor) = epoch_and_anchor(&snap, &header)?;
        let checkpoint = self.cosigned_checkpoint(&snap, epoch.as_ref()).await?;
        let signed = match (&loc.envelope, loc.event.pointer("/signature/key_id")) {
            (Some(stored), Some(Value::String(key_id))) => {
                let (envelope, bundle) =
                    statement_of(event_id, &loc.event, stored, loc.bundle_member.as_deref())?;
                let registered = self.registered_key(key_id).await?;
                // The record that registered the key, with its own proof (a device's key:
                // the device record, itself carrying its participant's record).
                let registration = match &registered {
                    Some((_, reg_id)) if reg_id != event_id => {
                        Some(Box::new(Box::pin(self.proof(reg_id)).await?))
                    }
                    _ => None,
                };
                Some(SignedStatement {
                    envelope: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(envelope),
                    signer_key: registered.map(|(k, _)| k),
                    bundle,
                    registration,
                })
            }
            _ => None,
        };
        Ok(ProofBundle {
            format: if signed.is_some() {
                FORMAT_SIGNED
            } else {
                FORMAT
            }
            .to_owned(),
            signed,
            disclosures: Vec::new(),
            checkpoint,
            status,
            event: loc.event,
            leaf: LeafProof {
                index: loc.leaf_index,
                hash: leaf,
                audit_path,
            },
            batch: header,
            epoch,
            anchor,
        })
    }
}

/// The envelope and, for a bundle's event, its member evidence: from the `envelope` and
/// `bundle_member` columns, or, in files written before `bundle_member` existed, from the
/// `envelope` column holding `{"bundle": ENVELOPE, "event": B64, "index": I, "path": [HEX...]}`.
fn statement_of(
    event_id: &str,
    event: &Value,
    stored: &[u8],
    member: Option<&[u8]>,
) -> Result<(Vec<u8>, Option<veritrace_verify::bundle::BundleMember>)> {
    if event.pointer("/signature/bundle_size").is_none() {
        return Ok((stored.to_vec(), None));
    }
    let bad = |detail: String| Error::corrupt(format!("event {event_id}"), detail);
    if let Some(m) = member {
        let m = veritrace_verify::bundle_sig::decode_member(m)
            .ok_or_else(|| bad("its stored bundle member evidence is unreadable".into()))?;
        return Ok((
            stored.to_vec(),
            Some(veritrace_verify::bundle::BundleMember {
                event: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(m.event),
                index: m.index,
                path: m.path,
            }),
        ));
    }
    #[derive(serde::Deserialize)]
    struct Stored {
        bundle: String,
        event: String,
        index: u64,
        path: Vec<Digest>,
    }
    let s: Stored = serde_json::from_slice(stored)
        .map_err(|e| bad(format!("its stored bundle statement is unreadable: {e}")))?;
    let (envelope, _) = veritrace_verify::bundle_sig::envelope_bytes(&s.bundle)
        .map_err(|e| bad(format!("its stored bundle envelope is unreadable: {e}")))?;
    Ok((
        envelope,
        Some(veritrace_verify::bundle::BundleMember {
            event: s.event,
            index: s.index,
            path: s.path,
        }),
    ))
}

impl QueryEngine {
    /// The public key (`ALG:HEX`) whose key id is `key_id`, as a registry record in the
    /// log names it (a participant's admin key or a device's key), with that record's event
    /// id; `None` when no record names it.
    async fn registered_key(&self, key_id: &str) -> Result<Option<(String, String)>> {
        let batches = self
            .sql("SELECT event_id, attributes FROM events WHERE event_type = 'registry'")
            .await?;
        for b in &batches {
            let (Some(ids), Some(a)) = (
                b.column(0).as_string_opt::<i32>(),
                b.column(1).as_string_opt::<i32>(),
            ) else {
                continue;
            };
            for i in (0..a.len()).filter(|&i| a.is_valid(i)) {
                let Ok(record) = serde_json::from_str::<Value>(a.value(i)) else {
                    continue;
                };
                for field in ["key", "admin_key"] {
                    if let Some(text) = record.get(field).and_then(Value::as_str)
                        && veritrace_verify::signature::PublicKey::parse(text)
                            .is_ok_and(|k| k.key_id() == key_id)
                    {
                        return Ok(Some((text.to_owned(), ids.value(i).to_owned())));
                    }
                }
            }
        }
        Ok(None)
    }

    /// A trace certificate: the trace of `code` and every event of it with its proof; batch
    /// headers, epoch paths and anchor receipts are stored once per batch and epoch. Runs as
    /// a query (query runtime, slot, deadline).
    pub async fn certificate(
        &self,
        code: &str,
        direction: crate::trace::Direction,
        max_depth: Option<u32>,
    ) -> Result<veritrace_verify::certificate::Certificate> {
        let code = code.to_owned();
        self.run(move |e| async move { e.certificate_unguarded(&code, direction, max_depth).await })
            .await
    }

    async fn certificate_unguarded(
        &self,
        code: &str,
        direction: crate::trace::Direction,
        max_depth: Option<u32>,
    ) -> Result<veritrace_verify::certificate::Certificate> {
        use veritrace_verify::certificate::{
            CERTIFICATE_FORMAT, CertEvent, CertNode, CertTrace, CertWindow, Certificate,
        };
        let (walk, batches) = self.trace_unguarded(code, direction, max_depth).await?;
        let snap = self.snapshot().await?;
        struct Row {
            node: String,
            canonical: String,
            batch_id: String,
            leaf_index: u64,
        }
        let mut rows = Vec::new();
        for b in &batches {
            let s = b.schema();
            let col_str = |n: &str| -> Result<&arrow::array::StringArray> {
                let i = s.index_of(n).map_err(|e| Error::Internal(e.to_string()))?;
                b.column(i).as_string_opt::<i32>().ok_or_else(|| {
                    Error::corrupt("the events table", format!("{n} is not a string column"))
                })
            };
            let (node, canonical, batch) = (
                col_str("trace_node")?,
                col_str("canonical")?,
                col_str("batch_id")?,
            );
            let li = s
                .index_of("leaf_index")
                .map_err(|e| Error::Internal(e.to_string()))?;
            let leaf = b
                .column(li)
                .as_primitive_opt::<arrow::datatypes::UInt64Type>()
                .ok_or_else(|| {
                    Error::corrupt("the events table", "leaf_index is not a u64 column")
                })?;
            for r in 0..b.num_rows() {
                rows.push(Row {
                    node: node.value(r).to_owned(),
                    canonical: canonical.value(r).to_owned(),
                    batch_id: batch.value(r).to_owned(),
                    leaf_index: leaf.value(r),
                });
            }
        }
        let nodes: Vec<String> = rows.iter().map(|r| r.node.clone()).collect();
        let (cert_batches, anchors, proven) = self
            .prove_leaves(
                &snap,
                rows.into_iter()
                    .map(|r| (r.canonical, r.batch_id, r.leaf_index)),
            )
            .await?;
        let events = proven
            .into_iter()
            .zip(nodes)
            .map(|((event, batch_id, leaf), node)| CertEvent {
                node,
                event,
                batch_id,
                leaf,
            })
            .collect();
        Ok(Certificate {
            format: CERTIFICATE_FORMAT.to_owned(),
            trace: CertTrace {
                root: walk.root.clone(),
                direction: match walk.direction {
                    crate::trace::Direction::Backward => "backward".into(),
                    crate::trace::Direction::Forward => "forward".into(),
                },
                nodes: walk
                    .nodes
                    .iter()
                    .map(|n| CertNode {
                        code: n.code.clone(),
                        depth: n.depth,
                        via_event: n.via_event.clone(),
                        from: n.from.clone(),
                        windows: n
                            .windows
                            .iter()
                            .map(|w| CertWindow {
                                from: w.from.clone(),
                                to: w.to.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
                cycles: walk.cycles.clone(),
                depth_limited: walk.depth_limited,
            },
            batches: cert_batches,
            anchors,
            events,
        })
    }

    /// Proves stored events (canonical JSON, batch id, leaf index; in the order given):
    /// each batch's header, epoch path and receipt once, and each event's leaf proof,
    /// checked against its batch's committed leaf hashes.
    #[allow(clippy::type_complexity)]
    pub(crate) async fn prove_leaves(
        &self,
        snap: &Snapshot,
        rows: impl IntoIterator<Item = (String, String, u64)>,
    ) -> Result<(
        std::collections::BTreeMap<String, veritrace_verify::certificate::CertBatch>,
        std::collections::BTreeMap<u64, Anchor>,
        Vec<(Value, String, LeafProof)>,
    )> {
        use std::collections::BTreeMap;
        use veritrace_verify::certificate::CertBatch;
        let mut cert_batches: BTreeMap<String, CertBatch> = BTreeMap::new();
        let mut anchors = BTreeMap::new();
        let mut trees: std::collections::HashMap<String, BatchTree> = Default::default();
        let mut events = Vec::new();
        for (canonical, batch_id, leaf_index) in rows {
            if !trees.contains_key(&batch_id) {
                let header = snap.headers.get(&batch_id).cloned().ok_or_else(|| {
                    Error::corrupt(format!("batch {batch_id}"), "it has no manifest entry")
                })?;
                let tree = self.batch_tree(&header).await?;
                let (_, epoch, anchor) = epoch_and_anchor(snap, &header)?;
                if let (Some(ep), Some(a)) = (&epoch, anchor) {
                    anchors.insert(ep.epoch_id, a);
                }
                cert_batches.insert(batch_id.clone(), CertBatch { header, epoch });
                trees.insert(batch_id.clone(), tree);
            }
            let tree = &trees[&batch_id];
            let subject = format!("leaf {leaf_index} of batch {batch_id}");
            let event: Value = serde_json::from_str(&canonical).map_err(|e| {
                Error::corrupt(
                    &subject,
                    format!("its stored canonical event is not JSON: {e}"),
                )
            })?;
            let bytes = veritrace_verify::canonical::to_vec(&event).map_err(|e| {
                Error::corrupt(
                    &subject,
                    format!("its stored event cannot be canonicalised: {e}"),
                )
            })?;
            let hash = merkle::leaf_hash(&bytes);
            let committed = tree
                .leaf(leaf_index as usize)
                .ok_or_else(|| Error::corrupt(&subject, "leaf index outside batch"))?;
            if committed != hash {
                return Err(Error::Mismatch {
                    what: "leaf hash",
                    subject,
                    expected: committed,
                    computed: hash,
                });
            }
            let audit_path = tree
                .audit_path(leaf_index as usize)
                .ok_or_else(|| Error::corrupt(&subject, "leaf index outside batch"))?;
            events.push((
                event,
                batch_id,
                LeafProof {
                    index: leaf_index,
                    hash,
                    audit_path,
                },
            ));
        }
        Ok((cert_batches, anchors, events))
    }
}

/// Most rows a query certificate covers (each row's event is proven).
pub const MAX_CERTIFICATE_ROWS: usize = 100_000;

/// Event ids looked up per query while proving a query's rows.
const LOOKUP_CHUNK: usize = 1_000;

/// A value as the query certificate's verifier compares it ([`veritrace_verify::rows`]).
fn comparable(v: &Value) -> Option<Value> {
    match v {
        Value::String(_) | Value::Bool(_) => Some(v.clone()),
        Value::Number(n) => n.as_f64().map(Value::from),
        _ => None,
    }
}

impl QueryEngine {
    /// Runs `sql` and proves its rows: a query certificate
    /// ([`veritrace_verify::rows::RowsCertificate`]) in which each row names the event it
    /// came from (the result needs an `event_id` column) and that event's proof, and the
    /// columns that are the events' own fields are marked for the verifier to compare.
    /// `scope` names whose view this engine is (for the certificate). A result of more
    /// than `max_rows` rows (at most [`MAX_CERTIFICATE_ROWS`]) is refused, never cut: the
    /// certificate covers exactly the rows the query returns.
    pub async fn rows_certificate(
        &self,
        sql: &str,
        scope: &str,
        max_rows: usize,
    ) -> Result<(Vec<RecordBatch>, veritrace_verify::rows::RowsCertificate)> {
        let max = max_rows.min(MAX_CERTIFICATE_ROWS);
        let batches = self.sql_limited(sql, Some(max + 1)).await?;
        let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if total > max {
            return Err(Error::BadRequest(format!(
                "the query returns more than {max} rows; a certificate covers the whole result, at most that many: narrow it or add LIMIT"
            )));
        }
        let sql = sql.to_owned();
        let scope = scope.to_owned();
        self.run(move |e| async move {
            let cert = e.rows_certificate_unguarded(&sql, &scope, &batches).await?;
            Ok((batches, cert))
        })
        .await
    }

    async fn rows_certificate_unguarded(
        &self,
        sql: &str,
        scope: &str,
        batches: &[RecordBatch],
    ) -> Result<veritrace_verify::rows::RowsCertificate> {
        use datafusion::logical_expr::{col, lit};
        use veritrace_verify::rows::{ROWS_FORMAT, RowsColumn, RowsEvent, RowsQuery, RowsRow};
        let schema = match batches.first() {
            Some(b) => b.schema(),
            None => return Err(Error::Internal("a query without a schema".into())),
        };
        if schema.index_of("event_id").is_err() {
            return Err(Error::BadRequest(
                "a query certificate proves rows that are events: the result needs an event_id column (SELECT event_id, ...)".into(),
            ));
        }
        let rows: Vec<serde_json::Map<String, Value>> = if batches.iter().all(|b| b.num_rows() == 0)
        {
            Vec::new()
        } else {
            serde_json::from_slice(&crate::output::encode(batches, crate::Format::Json)?)
                .map_err(|e| Error::Output(e.to_string()))?
        };
        // Each row's event, each event once, in the order first seen.
        let mut index: std::collections::HashMap<String, usize> = Default::default();
        let mut ids: Vec<String> = Vec::new();
        let mut row_event = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let Some(id) = r.get("event_id").and_then(Value::as_str) else {
                return Err(Error::BadRequest(format!(
                    "row {i} has no event_id text: a query certificate proves rows that are events"
                )));
            };
            let n = *index.entry(id.to_owned()).or_insert_with(|| {
                ids.push(id.to_owned());
                ids.len() - 1
            });
            row_event.push(n);
        }
        // Where each event is stored: in the log as recorded (a row may be an event
        // declared in error since).
        let mut stored: Vec<Option<(String, String, u64)>> = vec![None; ids.len()];
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            let found = self
                .ctx
                .table("events_as_recorded")
                .await?
                .filter(
                    col("event_id").in_list(chunk.iter().map(|i| lit(i.as_str())).collect(), false),
                )?
                .select_columns(&["event_id", "canonical", "batch_id", "leaf_index"])?
                .collect()
                .await?;
            for b in &found {
                let text = |i: usize| {
                    b.column(i).as_string_opt::<i32>().ok_or_else(|| {
                        Error::corrupt("the events table", "a text column of another type")
                    })
                };
                let (id, canonical, batch) = (text(0)?, text(1)?, text(2)?);
                let leaf = b
                    .column(3)
                    .as_primitive_opt::<arrow::datatypes::UInt64Type>()
                    .ok_or_else(|| {
                        Error::corrupt("the events table", "leaf_index is not a u64 column")
                    })?;
                for r in 0..b.num_rows() {
                    if let Some(&n) = index.get(id.value(r)) {
                        stored[n] = Some((
                            canonical.value(r).to_owned(),
                            batch.value(r).to_owned(),
                            leaf.value(r),
                        ));
                    }
                }
            }
        }
        let mut leaves = Vec::with_capacity(ids.len());
        for (n, s) in stored.into_iter().enumerate() {
            leaves.push(s.ok_or_else(|| {
                Error::BadRequest(format!(
                    "event {} of the result is not an event of the log (a certificate proves rows of events and events_as_recorded)",
                    ids[n]
                ))
            })?);
        }
        let snap = self.snapshot().await?;
        let (cert_batches, anchors, proven) = self.prove_leaves(&snap, leaves).await?;
        // A column is checked when every row's value is its event's field of that name
        // (and some row has one): the verifier compares those.
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                let name = f.name();
                let mut some = false;
                let same = rows.iter().zip(&row_event).all(|(r, &n)| {
                    let got = r.get(name.as_str()).unwrap_or(&Value::Null);
                    let want = proven[n].0.get(name.as_str()).unwrap_or(&Value::Null);
                    match (comparable(got), comparable(want)) {
                        (Some(a), Some(b)) => {
                            some = true;
                            a == b
                        }
                        _ => got.is_null() && want.is_null(),
                    }
                });
                RowsColumn {
                    name: name.clone(),
                    checked: name == "event_id" || (same && some),
                }
            })
            .collect();
        Ok(veritrace_verify::rows::RowsCertificate {
            format: ROWS_FORMAT.to_owned(),
            query: RowsQuery {
                sql: sql.to_owned(),
                scope: scope.to_owned(),
                run_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                columns,
            },
            rows: rows
                .into_iter()
                .zip(row_event)
                .map(|(values, event)| RowsRow { event, values })
                .collect(),
            batches: cert_batches,
            anchors,
            events: proven
                .into_iter()
                .map(|(event, batch_id, leaf)| RowsEvent {
                    event,
                    batch_id,
                    leaf,
                })
                .collect(),
        })
    }
}

/// A batch's Merkle tree, rebuilt from its stored leaf hashes and checked against its header.
#[derive(Debug)]
pub(crate) struct BatchTree {
    leaves: Vec<Digest>,
    tree: merkle::Tree,
}

impl BatchTree {
    pub(crate) fn leaf(&self, i: usize) -> Option<Digest> {
        self.leaves.get(i).copied()
    }
    pub(crate) fn audit_path(&self, i: usize) -> Option<Vec<Digest>> {
        self.tree.audit_path(i)
    }
}

impl QueryEngine {
    /// Reads a committed batch's leaf hashes and rebuilds its tree; a count or root that
    /// differs from the sealed header is reported as corruption.
    pub(crate) async fn batch_tree(&self, header: &BatchHeader) -> Result<BatchTree> {
        let dir = self.dir.clone();
        let id = header.batch_id.clone();
        let leaves =
            tokio::task::spawn_blocking(move || veritrace_anchor::compact::batch_leaves(&dir, &id))
                .await
                .map_err(|e| Error::Internal(format!("reading leaves: {e}")))??;
        if leaves.len() as u64 != header.size {
            return Err(Error::corrupt(
                format!("batch {}", header.batch_id),
                format!(
                    "it has {} leaves but its header says {}",
                    leaves.len(),
                    header.size
                ),
            ));
        }
        let tree = merkle::Tree::new(&leaves);
        if tree.root() != header.root {
            return Err(Error::Mismatch {
                what: "batch root",
                subject: format!("batch {}", header.batch_id),
                expected: header.root,
                computed: tree.root(),
            });
        }
        Ok(BatchTree { leaves, tree })
    }
}

/// The batch's place in its epoch and the epoch's anchor receipt, as far as they exist
/// (a chain receipt is preferred to the local ledger).
pub(crate) fn epoch_and_anchor(
    snap: &Snapshot,
    header: &BatchHeader,
) -> Result<(Status, Option<EpochProof>, Option<Anchor>)> {
    let mut status = Status::Sealed;
    let mut epoch = None;
    let mut anchor = None;
    if let Some(rec) = snap
        .epochs
        .iter()
        .find(|e| e.batch_ids.iter().any(|b| b == &header.batch_id))
    {
        let index = rec
            .batch_ids
            .iter()
            .position(|b| b == &header.batch_id)
            .unwrap_or_default() as u64;
        epoch = Some(match rec.log_start() {
            // Sealed into the log: the header's place in the log at the epoch's checkpoint.
            Some(start) => {
                let log = snap.log()?;
                let size = rec.tree_size();
                EpochProof {
                    epoch_id: rec.epoch_id,
                    root: rec.root,
                    batch_index: start + index,
                    batch_count: size,
                    audit_path: log.inclusion_proof(start + index, size).ok_or_else(|| {
                        Error::corrupt(
                            format!("epoch {}", rec.epoch_id),
                            format!("the log has no leaf {} at size {size}", start + index),
                        )
                    })?,
                }
            }
            None => epoch_tree_proof(snap, rec, index)?,
        });
        (status, anchor) = anchor_of(snap, rec)?;
    }
    Ok((status, epoch, anchor))
}

/// The anchor receipt of an epoch, if it is anchored (a chain receipt is preferred to the
/// local ledger); a witness whose root differs from the epoch's is reported.
pub(crate) fn anchor_of(snap: &Snapshot, rec: &EpochRecord) -> Result<(Status, Option<Anchor>)> {
    let mut status = Status::Sealed;
    let mut anchor = None;
    if let Some((root, receipt)) = snap.evm.get(&rec.epoch_id) {
        if *root != rec.root {
            return Err(Error::Mismatch {
                what: "root anchored on the chain (EVM journal)",
                subject: format!("epoch {}", rec.epoch_id),
                expected: *root,
                computed: rec.root,
            });
        }
        status = Status::Anchored;
        anchor = Some(Anchor::Evm {
            receipt: receipt.clone(),
        });
    } else if let Some(entry) = snap
        .ledger
        .get(rec.epoch_id as usize)
        .filter(|l| l.epoch_id == rec.epoch_id)
    {
        if entry.root != rec.root {
            return Err(Error::Mismatch {
                what: "root anchored in the local ledger",
                subject: format!("epoch {}", rec.epoch_id),
                expected: entry.root,
                computed: rec.root,
            });
        }
        status = Status::Anchored;
        anchor = Some(Anchor::Local {
            ledger_entry: entry.clone(),
        });
    }
    Ok((status, anchor))
}

/// The proof of batch `index` of an epoch sealed before the log: the tree of the epoch's own
/// batches.
fn epoch_tree_proof(snap: &Snapshot, rec: &EpochRecord, index: u64) -> Result<EpochProof> {
    let mut epoch_leaves = Vec::with_capacity(rec.batch_ids.len());
    for b in &rec.batch_ids {
        let h = snap.headers.get(b).ok_or_else(|| {
            Error::corrupt(
                format!("epoch {}", rec.epoch_id),
                format!("it names unknown batch {b}"),
            )
        })?;
        epoch_leaves.push(h.leaf_hash().map_err(|e| {
            Error::corrupt(
                format!("batch {b}"),
                format!("its header cannot be hashed: {e}"),
            )
        })?);
    }
    let etree = merkle::Tree::new(&epoch_leaves);
    if etree.root() != rec.root {
        return Err(Error::Mismatch {
            what: "epoch root",
            subject: format!("epoch {}", rec.epoch_id),
            expected: rec.root,
            computed: etree.root(),
        });
    }
    Ok(EpochProof {
        epoch_id: rec.epoch_id,
        root: rec.root,
        batch_index: index,
        batch_count: rec.batch_count,
        audit_path: etree.audit_path(index as usize).unwrap_or_default(),
    })
}

/// Which private fields a proof discloses ([`veritrace_verify::private`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Disclose {
    /// None: every private field stays committed.
    #[default]
    Nothing,
    /// Every private field still held.
    All,
    /// These fields (those still held).
    Fields(Vec<String>),
}

impl Disclose {
    /// From a query parameter or flag: `all`, or fields separated by commas.
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            "" => Disclose::Nothing,
            "all" | "*" => Disclose::All,
            list => Disclose::Fields(
                list.split(',')
                    .map(|f| f.trim().to_owned())
                    .filter(|f| !f.is_empty())
                    .collect(),
            ),
        }
    }
}

impl QueryEngine {
    /// The private values (and salts) still held for `event_id` of `batch_id`.
    pub async fn private_values(
        &self,
        batch_id: &str,
        event_id: &str,
    ) -> Result<Vec<veritrace_processors::privacy::PrivateValue>> {
        let (dir, batch, id) = (self.dir.clone(), batch_id.to_owned(), event_id.to_owned());
        let file = tokio::task::spawn_blocking(move || {
            veritrace_processors::privacy::read_batch(&dir, &batch)
        })
        .await
        .map_err(|e| Error::Internal(format!("reading private values: {e}")))?
        .map_err(|e| Error::corrupt(format!("private values of batch {batch_id}"), e))?;
        Ok(file
            .values
            .into_iter()
            .filter(|v| v.event_id == id)
            .collect())
    }

    /// Re-proves a bundle against a later checkpoint: its batch header's inclusion in the
    /// log at `size` leaves (the log size of a later epoch), with that epoch's anchor, in
    /// place of the epoch the batch was sealed in. The verifier checks it as any bundle.
    pub async fn prove_at(&self, mut bundle: ProofBundle, size: u64) -> Result<ProofBundle> {
        let snap = self.snapshot().await?;
        let id = &bundle.batch.batch_id;
        let sealed = snap
            .epochs
            .iter()
            .find(|e| e.batch_ids.iter().any(|b| b == id))
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "batch {id} is in no epoch yet: there is no checkpoint to prove it against"
                ))
            })?;
        let Some(start) = sealed.log_start() else {
            return Err(Error::BadRequest(format!(
                "batch {id} was sealed in epoch {} before the log existed: its proof is that epoch's",
                sealed.epoch_id
            )));
        };
        let target = snap.epoch_at_log_size(size)?;
        if target.epoch_id < sealed.epoch_id {
            return Err(Error::BadRequest(format!(
                "the checkpoint of {size} leaves (epoch {}) is older than the epoch batch {id} was sealed in ({})",
                target.epoch_id, sealed.epoch_id
            )));
        }
        let index = start
            + sealed
                .batch_ids
                .iter()
                .position(|b| b == id)
                .unwrap_or_default() as u64;
        let log = snap.log()?;
        let audit_path = log
            .inclusion_proof(index, size)
            .ok_or_else(|| Error::corrupt("the log", format!("no leaf {index} at size {size}")))?;
        let (status, anchor) = anchor_of(&snap, target)?;
        let epoch = EpochProof {
            epoch_id: target.epoch_id,
            root: target.root,
            batch_index: index,
            batch_count: size,
            audit_path,
        };
        bundle.checkpoint = self.cosigned_checkpoint(&snap, Some(&epoch)).await?;
        bundle.epoch = Some(epoch);
        bundle.status = status;
        bundle.anchor = anchor;
        Ok(bundle)
    }

    /// A COSE Receipt (RFC 9942, RFC 9162_SHA256; [`veritrace_verify::receipt`]) of a
    /// bundle's event: its batch header's inclusion in the log at the bundle's checkpoint,
    /// signed with the node's key. Only for an epoch in the log, and only where this process
    /// can read the node's key (it never makes one).
    pub async fn receipt(&self, bundle: &ProofBundle) -> Result<Vec<u8>> {
        let Some(epoch) = &bundle.epoch else {
            return Err(Error::BadRequest(format!(
                "batch {} is in no epoch yet: there is no checkpoint to prove it against",
                bundle.batch.batch_id
            )));
        };
        let snap = self.snapshot().await?;
        if !snap
            .epochs
            .iter()
            .any(|r| r.epoch_id == epoch.epoch_id && r.log_size == Some(epoch.batch_count))
        {
            return Err(Error::BadRequest(format!(
                "epoch {} was sealed before the log existed: its events have no COSE receipt (their JSON proof stands)",
                epoch.epoch_id
            )));
        }
        let dir = self.data_dir().clone();
        let key = tokio::task::spawn_blocking(move || veritrace_anchor::ledger::existing_node_key(&dir))
            .await
            .map_err(|e| Error::Internal(format!("reading the node key: {e}")))??
            .ok_or_else(|| {
                Error::Unavailable(
                    "this server cannot read the node's key (keys/local-ledger.key or VERITRACE_LEDGER_KEY), so it signs no receipts".into(),
                )
            })?;
        let parts = veritrace_verify::receipt::ReceiptParts {
            header: &bundle.batch,
            leaf_index: epoch.batch_index,
            tree_size: epoch.batch_count,
            path: &epoch.audit_path,
            event: Some((&bundle.event, bundle.leaf.index, &bundle.leaf.audit_path)),
        };
        veritrace_verify::receipt::sign_receipt(&key, &parts)
            .map_err(|e| Error::Internal(format!("signing the receipt: {e}")))
    }

    /// The epoch's checkpoint with the witnesses' cosignatures the node keeps
    /// (`log/cosigned/{size}`, written by `veritrace witness submit`), if any.
    async fn cosigned_checkpoint(
        &self,
        snap: &Snapshot,
        epoch: Option<&EpochProof>,
    ) -> Result<Option<String>> {
        let Some(e) = epoch else {
            return Ok(None);
        };
        // Only an epoch in the log has a checkpoint.
        if !snap
            .epochs
            .iter()
            .any(|r| r.epoch_id == e.epoch_id && r.log_size == Some(e.batch_count))
        {
            return Ok(None);
        }
        let dir = self.data_dir().clone();
        let path = dir
            .log_dir()
            .join("cosigned")
            .join(e.batch_count.to_string());
        let bytes = tokio::task::spawn_blocking(move || dir.read_file(&path))
            .await
            .map_err(|err| Error::Internal(format!("reading a checkpoint: {err}")))??;
        Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// [`QueryEngine::proof`], disclosing the private fields asked for that are still held
    /// (an erased or unknown field stays committed; the verifier notes it).
    pub async fn proof_disclosing(
        &self,
        event_id: &str,
        disclose: &Disclose,
    ) -> Result<ProofBundle> {
        let mut bundle = self.proof(event_id).await?;
        if *disclose == Disclose::Nothing {
            return Ok(bundle);
        }
        let held = self
            .private_values(&bundle.batch.batch_id, event_id)
            .await?;
        bundle.disclosures = held
            .into_iter()
            .filter(|v| match disclose {
                Disclose::All => true,
                Disclose::Fields(f) => f.contains(&v.path),
                Disclose::Nothing => false,
            })
            .map(|v| veritrace_verify::private::Disclosure {
                path: v.path,
                value: v.value,
                salt: v.salt,
            })
            .collect();
        Ok(bundle)
    }
}
