//! Trace certificates: a whole trace (the nodes of a backward or forward trace and every
//! event of it) as one document, each event with its proof. Batch headers, their epoch
//! paths and the epochs' anchor receipts are stored once and shared by every event of the
//! batch or epoch; only the leaf audit path is per event.
//!
//! ```text
//! {"format": "veritrace.certificate/1",
//!  "trace":   {"root", "direction", "nodes": [{code, depth, via_event, from}], "cycles", "depth_limited"},
//!  "batches": {batch_id: {"header": BatchHeader, "epoch": EpochProof?}},
//!  "anchors": {epoch_id: Anchor},
//!  "events":  [{"node", "event", "batch_id", "leaf": LeafProof}]}
//! ```
//!
//! Verifying it checks every event's proof exactly as a single bundle's, and that the trace
//! holds together: each node is linked to the node it was reached from by an event in the
//! certificate whose own content names both. What it cannot prove is absence: that no
//! other event about these objects exists.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bundle::{Anchor, BatchHeader, EpochProof, FORMAT, LeafProof, ProofBundle, Status};
use crate::verify::{Options, Report, Shared, verify_bundle_with};
use crate::{Error, Result};

/// The certificate format this crate writes and reads.
pub const CERTIFICATE_FORMAT: &str = "veritrace.certificate/1";

/// A node of the trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertNode {
    /// Trace code (canonical).
    pub code: String,
    /// Levels from the root.
    pub depth: u32,
    /// The event that linked it to `from`.
    pub via_event: Option<String>,
    /// The node it was reached from.
    pub from: Option<String>,
    /// The times it belongs to the trace in, when not all time: while it held (or was held
    /// in) what the trace followed, between an assembly and the disassembly that ended it.
    /// Its events lie in them, but for the events that link it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<CertWindow>,
}

/// A closed interval of event times (canonical form, `2026-01-01T00:00:00.000Z`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertWindow {
    /// From (None: since ever).
    pub from: Option<String>,
    /// Until, inclusive (None: still).
    pub to: Option<String>,
}

impl CertWindow {
    /// True when the canonical event time `t` falls in it (canonical times compare as text).
    pub fn contains(&self, t: &str) -> bool {
        self.from.as_deref().is_none_or(|f| f <= t) && self.to.as_deref().is_none_or(|x| t <= x)
    }
}

/// The trace the certificate covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertTrace {
    /// The code traced from.
    pub root: String,
    /// `backward` or `forward`.
    pub direction: String,
    /// Nodes, breadth-first, the root first.
    pub nodes: Vec<CertNode>,
    /// Cycles found in the data (bad data), each as its codes.
    pub cycles: Vec<Vec<String>>,
    /// True when a depth limit cut the trace.
    pub depth_limited: bool,
}

/// A batch's header and its place in its epoch, shared by its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertBatch {
    /// The sealed batch header.
    pub header: BatchHeader,
    /// The batch's path into its epoch root, once the epoch is sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<EpochProof>,
}

/// One event of the trace and its leaf proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertEvent {
    /// The node the event belongs to.
    pub node: String,
    /// The canonical event.
    pub event: Value,
    /// Its batch (a key of `batches`).
    pub batch_id: String,
    /// Its position and audit path in the batch.
    pub leaf: LeafProof,
}

/// A trace certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// Always [`CERTIFICATE_FORMAT`].
    pub format: String,
    /// The trace.
    pub trace: CertTrace,
    /// Batches, by id.
    pub batches: BTreeMap<String, CertBatch>,
    /// Anchor receipts, by epoch id.
    pub anchors: BTreeMap<u64, Anchor>,
    /// The events.
    pub events: Vec<CertEvent>,
}

impl Certificate {
    /// Parses a certificate, refusing duplicate keys anywhere, a format other than
    /// [`CERTIFICATE_FORMAT`], unknown fields and digests that are not 64 hex digits.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        crate::bundle::read_document(bytes, "trace certificate", &[CERTIFICATE_FORMAT])
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

/// The single-event bundle of a certificate's event `i` from the shared batches and
/// receipts (trace and query certificates alike).
pub(crate) fn assemble(
    batches: &BTreeMap<String, CertBatch>,
    anchors: &BTreeMap<u64, Anchor>,
    i: usize,
    event: Option<(&Value, &str, &LeafProof)>,
) -> Result<ProofBundle> {
    let (event, batch_id, leaf) =
        event.ok_or_else(|| Error::Inconsistent(format!("certificate has no event {i}")))?;
    let b = batches.get(batch_id).ok_or_else(|| {
        Error::Inconsistent(format!(
            "event {i} names batch {batch_id} which the certificate does not hold"
        ))
    })?;
    let anchor = b
        .epoch
        .as_ref()
        .and_then(|ep| anchors.get(&ep.epoch_id))
        .cloned();
    Ok(ProofBundle {
        format: FORMAT.to_owned(),
        status: if anchor.is_some() {
            Status::Anchored
        } else {
            Status::Sealed
        },
        event: event.clone(),
        leaf: leaf.clone(),
        batch: b.header.clone(),
        epoch: b.epoch.clone(),
        anchor,
        signed: None,
        disclosures: Vec::new(),
        checkpoint: None,
    })
}

/// The outcome for one event.
#[derive(Debug)]
pub struct EventOutcome {
    /// The event id (or its position when it has none).
    pub event_id: String,
    /// The node it belongs to.
    pub node: String,
    /// Its verification.
    pub result: Result<Report>,
}

/// What a certificate verification found.
#[derive(Debug)]
pub struct CertificateReport {
    /// Per event, in certificate order.
    pub events: Vec<EventOutcome>,
    /// Checks of the trace as a whole.
    pub checks: Vec<String>,
    /// Problems of the trace as a whole (the certificate is invalid if any).
    pub problems: Vec<String>,
    /// Limits of what was proven.
    pub notes: Vec<String>,
}

impl CertificateReport {
    /// True when every event verified and the trace holds together.
    pub fn valid(&self) -> bool {
        self.problems.is_empty() && self.events.iter().all(|e| e.result.is_ok())
    }
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Verifies a certificate: every event's proof, and the links of the trace.
pub fn verify_certificate(c: &Certificate, opts: &Options) -> Result<CertificateReport> {
    if c.format != CERTIFICATE_FORMAT {
        return Err(Error::UnsupportedFormat {
            found: c.format.clone(),
            supported: &[CERTIFICATE_FORMAT],
        });
    }
    let mut checks = Vec::new();
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut outcomes = Vec::with_capacity(c.events.len());
    // The ledger file once for all events.
    let shared = Shared::new(opts);
    let nodes: HashSet<&str> = c.trace.nodes.iter().map(|n| n.code.as_str()).collect();
    let windows: HashMap<&str, &[CertWindow]> = c
        .trace
        .nodes
        .iter()
        .map(|n| (n.code.as_str(), n.windows.as_slice()))
        .collect();
    let mut by_id: HashMap<&str, &Value> = HashMap::new();
    for (i, e) in c.events.iter().enumerate() {
        let id = e
            .event
            .get("event_id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("#{i}"), str::to_owned);
        if !nodes.contains(e.node.as_str()) {
            problems.push(format!(
                "event {id} belongs to {}, which is not a node of the trace",
                e.node
            ));
        } else if !concerns(&e.event, &e.node) {
            // Listed under a node its own content does not name: another object's history.
            problems.push(format!(
                "event {id} is listed under {}, but its content names that object neither as \
                 its trace code nor among its inputs or outputs",
                e.node
            ));
        } else if let Some(ws) = windows.get(e.node.as_str()).filter(|ws| !ws.is_empty()) {
            // Outside the node's windows only the events that link it belong to the trace.
            let time = e.event.get("event_time").and_then(Value::as_str);
            let links = !strings(e.event.get("inputs")).is_empty();
            if !links && !time.is_some_and(|t| ws.iter().any(|w| w.contains(t))) {
                problems.push(format!(
                    "event {id} of {} lies outside the times {} belongs to the trace",
                    e.node, e.node
                ));
            }
        }
        if let Some(eid) = e.event.get("event_id").and_then(Value::as_str)
            && by_id.insert(eid, &e.event).is_some()
        {
            problems.push(format!("event {eid} appears twice"));
        }
        let result = c
            .bundle(i)
            .and_then(|b| verify_bundle_with(&b, opts, &shared));
        outcomes.push(EventOutcome {
            event_id: id,
            node: e.node.clone(),
            result,
        });
    }
    check_nodes(&c.trace, &mut problems);
    // Every node but the root is linked to the node it was reached from by an event the
    // certificate holds, and that event's own content names both.
    let backward = match c.trace.direction.as_str() {
        "backward" => Some(true),
        "forward" => Some(false),
        _ => None,
    };
    let mut linked = 0usize;
    for n in c.trace.nodes.iter().skip(1) {
        let (Some(via), Some(from)) = (&n.via_event, &n.from) else {
            problems.push(format!("node {} has no link to the trace", n.code));
            continue;
        };
        let Some(ev) = by_id.get(via.as_str()) else {
            problems.push(format!(
                "node {} is linked by event {via}, which the certificate does not hold",
                n.code
            ));
            continue;
        };
        // An unknown direction is a problem of its own; its links mean nothing.
        let Some(backward) = backward else {
            continue;
        };
        let inputs = strings(ev.get("inputs"));
        let mut made: Vec<&str> = strings(ev.get("outputs"));
        if let Some(t) = ev.get("trace_code").and_then(Value::as_str) {
            made.push(t);
        }
        let (input, output) = if backward {
            (n.code.as_str(), from.as_str())
        } else {
            (from.as_str(), n.code.as_str())
        };
        if inputs.contains(&input) && made.contains(&output) {
            linked += 1;
        } else {
            problems.push(format!(
                "event {via} does not link {input} into {output} as the trace says"
            ));
        }
    }
    checks.push(format!(
        "{} nodes; {linked} links between them are backed by events in the certificate",
        c.trace.nodes.len()
    ));
    let ok = outcomes.iter().filter(|o| o.result.is_ok()).count();
    checks.push(format!("{ok} of {} event proofs verify", outcomes.len()));
    let anchored = outcomes
        .iter()
        .filter(|o| {
            o.result
                .as_ref()
                .is_ok_and(|r| r.status == Status::Anchored)
        })
        .count();
    checks.push(format!(
        "{anchored} events anchored, {} sealed; {} batches and {} epoch receipts shared",
        ok - anchored.min(ok),
        c.batches.len(),
        c.anchors.len()
    ));
    if !c.trace.cycles.is_empty() {
        notes.push(format!(
            "the data has {} cycle(s) among these objects (bad data), reported once each",
            c.trace.cycles.len()
        ));
    }
    if c.trace.depth_limited {
        notes.push("the trace was cut by a depth limit; the graph goes further".into());
    }
    notes.push("a certificate proves each listed event was recorded unaltered and how the objects link; it cannot prove that no other event about them exists".into());
    Ok(CertificateReport {
        events: outcomes,
        checks,
        problems,
        notes,
    })
}

/// The trace's own shape, as its writer builds it (a breadth-first walk, the root first,
/// each node once, reached from a node already reached): the direction is `backward` or
/// `forward`; the first node is the root, at depth 0 and without a link; no other node has
/// depth 0; each other node's `from` is a node listed before it, whose depth is one less;
/// no code is listed twice. (Nodes are not required to be in order of depth: a walk that
/// reaches a node again in a new window of time may reach further nodes from it later.)
fn check_nodes(t: &CertTrace, problems: &mut Vec<String>) {
    if t.direction != "backward" && t.direction != "forward" {
        problems.push(format!(
            "the direction {:?} is neither backward nor forward",
            t.direction
        ));
    }
    // Depth of each node listed so far.
    let mut listed: HashMap<&str, u32> = HashMap::new();
    for (i, n) in t.nodes.iter().enumerate() {
        if i == 0 {
            if n.code != t.root {
                problems.push("the first node is not the root".into());
            } else if n.depth != 0 {
                problems.push(format!("the root {} has depth {}, not 0", n.code, n.depth));
            } else if n.via_event.is_some() || n.from.is_some() {
                problems.push(format!(
                    "the root {} has a link (via_event or from), which only other nodes have",
                    n.code
                ));
            }
        } else if n.depth == 0 {
            problems.push(format!(
                "node {} has depth 0, but only the root has",
                n.code
            ));
        } else if let Some(from) = &n.from {
            match listed.get(from.as_str()) {
                None => problems.push(format!(
                    "node {} is reached from {from}, which is not a node listed before it",
                    n.code
                )),
                Some(d) if d.checked_add(1) != Some(n.depth) => problems.push(format!(
                    "node {} has depth {}, but {from}, which it is reached from, has depth {d}",
                    n.code, n.depth
                )),
                Some(_) => {}
            }
        }
        if listed.insert(n.code.as_str(), n.depth).is_some() {
            problems.push(format!("node {} is listed twice", n.code));
        }
    }
}

/// True when `event`'s own content names `node`: as its trace code, or among its inputs or
/// outputs (an edge event is listed under the object it was crossed from).
fn concerns(event: &Value, node: &str) -> bool {
    event.get("trace_code").and_then(Value::as_str) == Some(node)
        || strings(event.get("inputs")).contains(&node)
        || strings(event.get("outputs")).contains(&node)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors' certificate, as `veritrace trace --backward --certificate` wrote it:
    /// P1 (the root) assembled from LOT-A and B1.
    fn written() -> Certificate {
        Certificate::from_json(include_bytes!("../vectors/valid/certificate.json"))
            .expect("the vector parses")
    }

    fn problems(c: &Certificate) -> Vec<String> {
        verify_certificate(c, &Options::default())
            .expect("verifies")
            .problems
    }

    fn node<'a>(c: &'a mut Certificate, suffix: &str) -> &'a mut CertNode {
        c.trace
            .nodes
            .iter_mut()
            .find(|n| n.code.ends_with(suffix))
            .expect("node")
    }

    #[test]
    fn the_written_certificate_holds_together() {
        let report = verify_certificate(&written(), &Options::default()).expect("verifies");
        assert!(report.valid(), "{:?}", report.problems);
    }

    #[test]
    fn nodes_that_break_the_walk_s_shape_were_accepted() {
        type Edit = fn(&mut Certificate);
        let cases: [(&str, Edit); 8] = [
            ("has depth 2, but", |c| node(c, "LOT-A").depth = 2),
            ("has depth 0, but only the root has", |c| {
                node(c, "B1").depth = 0
            }),
            ("which is not a node listed before it", |c| {
                node(c, "LOT-A").from = Some("(01)09506000134352(21)X9".into())
            }),
            ("which is not a node listed before it", |c| {
                let later = node(c, "B1").code.clone();
                node(c, "LOT-A").from = Some(later)
            }),
            ("is listed twice", |c| {
                let again = node(c, "B1").clone();
                c.trace.nodes.push(again)
            }),
            ("is neither backward nor forward", |c| {
                c.trace.direction = "sideways".into()
            }),
            ("has depth 1, not 0", |c| c.trace.nodes[0].depth = 1),
            ("has a link (via_event or from)", |c| {
                c.trace.nodes[0].via_event = Some("vec:asm:p1".into())
            }),
        ];
        for (want, edit) in cases {
            let mut c = written();
            edit(&mut c);
            let found = problems(&c);
            assert!(found.iter().any(|p| p.contains(want)), "{want}: {found:?}");
        }
    }

    #[test]
    fn a_node_reached_later_in_a_new_window_may_sit_after_deeper_nodes() {
        // A walk in time re-walks a node whose windows grew: what it reaches then is listed
        // after nodes of greater depth. The rule is only: from listed before, one level up.
        let n = |code: &str, depth, from: Option<&str>| CertNode {
            code: code.into(),
            depth,
            via_event: from.map(|_| format!("link-to-{code}")),
            from: from.map(str::to_owned),
            windows: Vec::new(),
        };
        let mut t = written().trace;
        let root = t.root.clone();
        t.nodes = vec![
            n(&root, 0, None),
            n("A", 1, Some(&root)),
            n("B", 2, Some("A")),
            n("C", 3, Some("B")),
            n("D", 2, Some("A")),
        ];
        let mut found = Vec::new();
        check_nodes(&t, &mut found);
        assert!(found.is_empty(), "{found:?}");
    }
}
