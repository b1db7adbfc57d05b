//! What an auditor reads: one document (a proof bundle, a trace certificate or a query
//! certificate) verified and rendered as a verdict, in text for people and JSON for scripts.
//!
//! This is the whole of `veritrace-verify FILE` and `veritrace verify FILE`; both print
//! [`Verdict::text`] or [`Verdict::json`] and exit with [`Verdict::valid`]. Pure: the caller
//! reads the files, and the chain is asked through a [`ChainCheck`] it supplies (the `rpc`
//! feature's [`crate::chain::RpcChain`], or none: the report then says the chain was not
//! consulted).

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};

use crate::Digest;
use crate::bundle::{Anchor, EvmReceipt, ProofBundle};
use crate::certificate::{CERTIFICATE_FORMAT, CertBatch, Certificate, verify_certificate};
use crate::rows::{ROWS_FORMAT, RowsCertificate, verify_rows};
use crate::verify::{Options, Shared, verify_bundle_with};

/// Why the chain does not back a receipt. `code` is stable (for scripts); `detail` is for
/// people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainCheckError {
    /// The RPC could not be asked (down, slow, not a URL): nothing was proven either way.
    #[error("cannot consult the chain: {0}")]
    Unreachable(String),
    /// The chain contradicts the receipt.
    #[error("{code}: {detail}")]
    Failed {
        /// Stable reason code.
        code: &'static str,
        /// What the chain showed.
        detail: String,
    },
}

/// Asks a chain whether it backs an EVM receipt.
pub trait ChainCheck {
    /// Checks `receipt` for the epoch root `root` (epoch `epoch_id`, `batch_count`
    /// batches); returns the checks made, in order.
    fn check(
        &self,
        receipt: &EvmReceipt,
        root: &Digest,
        epoch_id: u64,
        batch_count: u64,
    ) -> Result<Vec<String>, ChainCheckError>;

    /// True when the auditor pinned the contract address (else it comes from the receipt).
    fn pins_contract(&self) -> bool;
}

/// The outcome of verifying one document.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// True when every check passed.
    pub valid: bool,
    /// True when the result rests on a trust anchor the auditor supplied (the operator's
    /// pinned key or ledger file, or the chain read back). A valid document without one is
    /// only consistent with itself: anyone with a key can make such a file. The CLIs exit 3
    /// for it, and its first line says `UNANCHORED`.
    pub anchored: bool,
    /// The report for people, one line per check (ends with a newline).
    pub text: String,
    /// The report for scripts.
    pub json: Value,
}

impl Verdict {
    fn invalid(name: &str, code: &str, msg: String) -> Self {
        Verdict {
            valid: false,
            anchored: false,
            text: format!("INVALID  {name}: {msg}\n"),
            json: json!({"valid": false, "code": code, "error": msg}),
        }
    }
}

/// Verifies `bytes` (a proof bundle or a certificate, told apart by its `format`) named
/// `name` in the report. The only error is a chain that could not be asked: nothing is
/// proven either way, so that is not a verdict on the document.
pub fn verify_document(
    name: &str,
    bytes: &[u8],
    opts: &Options,
    chain: Option<&dyn ChainCheck>,
) -> Result<Verdict, ChainCheckError> {
    DocumentVerifier::new(opts, chain).verify(name, bytes)
}

/// Verifies documents one after another with the same trust anchors (`veritrace-verify
/// FILE...`): the ledger file is checked once, and each receipt's signature once however
/// many bundles of its epoch follow; every bundle's own hashes are checked each time.
pub struct DocumentVerifier<'a> {
    opts: &'a Options,
    chain: Option<&'a dyn ChainCheck>,
    shared: Shared,
}

impl std::fmt::Debug for DocumentVerifier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentVerifier")
            .field("chain", &self.chain.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> DocumentVerifier<'a> {
    /// A verifier of documents against `opts` (and the chain, when given).
    pub fn new(opts: &'a Options, chain: Option<&'a dyn ChainCheck>) -> Self {
        DocumentVerifier {
            opts,
            chain,
            shared: Shared::new(opts),
        }
    }

    /// [`verify_document`], sharing what earlier documents checked.
    pub fn verify(&self, name: &str, bytes: &[u8]) -> Result<Verdict, ChainCheckError> {
        verify_one(name, bytes, self.opts, self.chain, &self.shared)
    }
}

fn verify_one(
    name: &str,
    bytes: &[u8],
    opts: &Options,
    chain: Option<&dyn ChainCheck>,
    shared: &Shared,
) -> Result<Verdict, ChainCheckError> {
    // The kind by the format's name, whatever its version: a version this verifier does
    // not read is refused as unsupported by that kind's parser, not read as another kind.
    let format = serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v.get("format").and_then(Value::as_str).map(str::to_owned));
    let kind = format.as_deref().map(family);
    if kind == Some(family(CERTIFICATE_FORMAT)) {
        return certificate(name, bytes, opts, chain);
    }
    if kind == Some(family(ROWS_FORMAT)) {
        return rows(name, bytes, opts, chain);
    }
    if kind == Some(family(crate::logtree::CONSISTENCY_FORMAT)) {
        return Ok(consistency(name, bytes));
    }
    // CBOR: a COSE_Sign1, tagged (0xd2) or not (an array of 4, 0x84): a COSE receipt.
    if matches!(bytes.first(), Some(0xd2 | 0x84)) {
        return Ok(receipt(name, bytes, opts));
    }
    let bundle = match ProofBundle::from_json(bytes) {
        Ok(b) => b,
        Err(e) => return Ok(Verdict::invalid(name, e.code(), e.to_string())),
    };
    let mut report = match verify_bundle_with(&bundle, opts, shared) {
        Ok(r) => r,
        Err(e) => return Ok(Verdict::invalid(name, e.code(), e.to_string())),
    };
    // The chain, when asked and when the receipt names one.
    let chain_note = match (chain, &bundle.anchor, &bundle.epoch) {
        (Some(chain), Some(Anchor::Evm { receipt }), Some(epoch)) => {
            match chain.check(receipt, &epoch.root, epoch.epoch_id, epoch.batch_count) {
                Ok(checks) => {
                    report.checks.extend(checks);
                    report.trusted = true;
                    report
                        .notes
                        .retain(|n| !n.starts_with("the chain was not consulted"));
                    if !chain.pins_contract() {
                        report.notes.push(format!(
                            "the contract address was taken from the receipt: pass --contract with the operator's published address to pin it ({})",
                            receipt.contract
                        ));
                    }
                    None
                }
                Err(ChainCheckError::Failed { code, detail }) => {
                    return Ok(Verdict::invalid(
                        name,
                        code,
                        format!("chain check failed ({code}): {detail}"),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        (Some(_), Some(Anchor::Local { .. }), _) => {
            Some("chain: this bundle is anchored on the local ledger; --rpc has nothing to check")
        }
        (Some(_), None, _) => {
            Some("chain: the bundle is not anchored yet; --rpc has nothing to check")
        }
        (None, Some(Anchor::Local { .. }), _) => {
            Some("chain: no public chain consulted (local backend)")
        }
        _ => None,
    };
    if let Some(n) = chain_note {
        report.notes.push(n.to_owned());
    }
    let mut text = if report.trusted {
        format!(
            "VALID  {} ({})\n",
            report.event_id.as_deref().unwrap_or("?"),
            report.status.as_str()
        )
    } else {
        format!(
            "UNANCHORED  {} ({}): {UNANCHORED}\n",
            report.event_id.as_deref().unwrap_or("?"),
            report.status.as_str()
        )
    };
    for c in &report.checks {
        text.push_str(&format!("  ok    {c}\n"));
    }
    for n in &report.notes {
        text.push_str(&format!("  note  {n}\n"));
    }
    Ok(Verdict {
        valid: true,
        anchored: report.trusted,
        text,
        json: json!({
            "valid": true,
            "anchored": report.trusted,
            "event_id": report.event_id,
            "status": report.status.as_str(),
            "checks": report.checks,
            "notes": report.notes,
        }),
    })
}

/// A COSE receipt ([`crate::receipt`]), verified with the `--key` given or the `--ledger`
/// file's key: the only keys it can rest on.
fn receipt(name: &str, bytes: &[u8], opts: &Options) -> Verdict {
    let key_hex = match (&opts.pinned_key, &opts.ledger) {
        (Some(k), _) => k.clone(),
        (None, Some(text)) => match crate::verify::verify_ledger(text) {
            Ok(entries) => match entries.first() {
                Some(e) => e.public_key.clone(),
                None => return Verdict::invalid(name, "ledger", "the ledger file is empty".into()),
            },
            Err(e) => return Verdict::invalid(name, e.code(), e.to_string()),
        },
        (None, None) => {
            return Verdict::invalid(
                name,
                "wrong_key",
                "a COSE receipt is verified with the node's key: pass --key HEX or --ledger FILE"
                    .into(),
            );
        }
    };
    let key = match hex::decode(key_hex.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok())
    {
        Some(k) => k,
        None => {
            return Verdict::invalid(
                name,
                "wrong_key",
                format!("{key_hex:?} is not an Ed25519 public key"),
            );
        }
    };
    let r = match crate::receipt::verify_receipt(bytes, &key) {
        Ok(r) => r,
        Err(e) => return Verdict::invalid(name, e.code(), e.to_string()),
    };
    let mut checks = vec![
        format!(
            "batch {} is leaf {} of the log of {} leaves (RFC 9162 inclusion proof, root {})",
            r.batch_id, r.leaf_index, r.tree_size, r.root
        ),
        format!(
            "the receipt's EdDSA signature over that root verifies with key {}",
            r.public_key
        ),
    ];
    if let Some(id) = &r.event_id {
        checks.push(format!(
            "event {id} proves into the batch root the entry commits to"
        ));
    }
    let subject = r.event_id.clone().unwrap_or_else(|| r.batch_id.clone());
    let mut text = format!(
        "VALID  {subject} (COSE receipt, log size {})\n",
        r.tree_size
    );
    for c in &checks {
        text.push_str(&format!("  ok    {c}\n"));
    }
    Verdict {
        valid: true,
        anchored: true,
        text,
        json: json!({
            "valid": true,
            "anchored": true,
            "event_id": r.event_id,
            "batch_id": r.batch_id,
            "tree_size": r.tree_size,
            "root": r.root,
            "checks": checks,
        }),
    }
}

/// A consistency proof (`veritrace.consistency/1`): its hashes against its two tree heads.
/// Valid, it is still unanchored: the two roots are the node's word until the auditor
/// compares them with checkpoints it holds (signed, anchored or cosigned).
fn consistency(name: &str, bytes: &[u8]) -> Verdict {
    const FORMATS: &[&str] = &[crate::logtree::CONSISTENCY_FORMAT];
    let p: crate::logtree::ConsistencyProof =
        match crate::bundle::read_document(bytes, "consistency proof", FORMATS) {
            Ok(p) => p,
            Err(e) => return Verdict::invalid(name, e.code(), e.to_string()),
        };
    if let Err(e) = p.verify() {
        return Verdict::invalid(name, e.code(), e.to_string());
    }
    let check = format!(
        "the log of {} leaves (root {}) is a prefix of the log of {} leaves (root {}): {} proof hashes verify (RFC 9162 2.1.4.2)",
        p.from.size,
        p.from.root,
        p.to.size,
        p.to.root,
        p.proof.len()
    );
    let note = "the two roots are the node's: compare them with checkpoints you hold (signed by the log's key, anchored, or cosigned by witnesses)";
    Verdict {
        valid: true,
        anchored: false,
        text: format!(
            "UNANCHORED  {name} (consistency {} -> {}): {note}\n  ok    {check}\n",
            p.from.size, p.to.size
        ),
        json: json!({
            "valid": true,
            "anchored": false,
            "from": p.from,
            "to": p.to,
            "checks": [check],
            "notes": [note],
        }),
    }
}

/// A format's name without its version: `veritrace.certificate` of `veritrace.certificate/1`.
fn family(format: &str) -> &str {
    format.rsplit_once('/').map_or(format, |(name, _)| name)
}

fn certificate(
    name: &str,
    bytes: &[u8],
    opts: &Options,
    chain: Option<&dyn ChainCheck>,
) -> Result<Verdict, ChainCheckError> {
    let cert = match Certificate::from_json(bytes) {
        Ok(c) => c,
        Err(e) => return Ok(Verdict::invalid(name, e.code(), e.to_string())),
    };
    let report = match verify_certificate(&cert, opts) {
        Ok(r) => r,
        Err(e) => return Ok(Verdict::invalid(name, e.code(), e.to_string())),
    };
    let head = format!(
        "certificate: {} trace of {} ({} events)",
        cert.trace.direction,
        cert.trace.root,
        report.events.len()
    );
    let events = report
        .events
        .iter()
        .map(|e| (e.event_id.as_str(), Some(e.node.as_str()), &e.result))
        .collect();
    let about = json!({"root": cert.trace.root, "direction": cert.trace.direction});
    many(
        Many {
            head,
            about,
            events,
            checks: report.checks,
            problems: report.problems,
            notes: report.notes,
            batches: &cert.batches,
            anchors: &cert.anchors,
            bundle: &|i| cert.bundle(i).ok(),
        },
        chain,
    )
}

/// Each epoch receipt of a certificate once against the chain, when asked: the epochs the
/// chain backs (a receipt the chain contradicts is a problem).
fn chain_backed(
    batches: &BTreeMap<String, CertBatch>,
    anchors: &BTreeMap<u64, Anchor>,
    chain: Option<&dyn ChainCheck>,
    checks: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> Result<HashSet<u64>, ChainCheckError> {
    let mut backed = HashSet::new();
    let Some(chain) = chain else {
        return Ok(backed);
    };
    for (epoch_id, anchor) in anchors {
        let Anchor::Evm { receipt } = anchor else {
            continue;
        };
        let Some(ep) = batches
            .values()
            .filter_map(|b| b.epoch.as_ref())
            .find(|e| e.epoch_id == *epoch_id)
        else {
            continue;
        };
        match chain.check(receipt, &ep.root, ep.epoch_id, ep.batch_count) {
            Ok(_) => {
                backed.insert(*epoch_id);
                checks.push(format!(
                    "epoch {epoch_id}: root read back from contract {} in block {}",
                    receipt.contract, receipt.block_number
                ));
            }
            Err(ChainCheckError::Failed { code, detail }) => {
                problems.push(format!("epoch {epoch_id}: {code}: {detail}"))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(backed)
}

/// Anchored when every event rests on the pinned key or ledger, or on its epoch's root
/// read back from the chain.
fn all_anchored<'a>(
    results: impl Iterator<Item = &'a crate::Result<crate::verify::Report>>,
    bundle: impl Fn(usize) -> Option<ProofBundle>,
    backed: &HashSet<u64>,
) -> bool {
    results.enumerate().all(|(i, r)| match r {
        Ok(r) => {
            r.trusted
                || bundle(i)
                    .and_then(|b| b.epoch.map(|ep| ep.epoch_id))
                    .is_some_and(|id| backed.contains(&id))
        }
        Err(_) => false,
    })
}

fn chain_note(chain: Option<&dyn ChainCheck>, anchors: &BTreeMap<u64, Anchor>, text: &mut String) {
    if chain.is_none() && anchors.values().any(|x| matches!(x, Anchor::Evm { .. })) {
        text.push_str(
            "  note  the chain was not consulted: pass --rpc URL to read the epoch roots back\n",
        );
    }
}

fn rows(
    name: &str,
    bytes: &[u8],
    opts: &Options,
    chain: Option<&dyn ChainCheck>,
) -> Result<Verdict, ChainCheckError> {
    let cert = match RowsCertificate::from_json(bytes) {
        Ok(c) => c,
        Err(e) => return Ok(Verdict::invalid(name, e.code(), e.to_string())),
    };
    let report = match verify_rows(&cert, opts) {
        Ok(r) => r,
        Err(e) => return Ok(Verdict::invalid(name, e.code(), e.to_string())),
    };
    let head = format!(
        "query certificate: {} rows from {} events",
        cert.rows.len(),
        report.events.len()
    );
    let events = report
        .events
        .iter()
        .map(|e| (e.event_id.as_str(), None, &e.result))
        .collect();
    let about = json!({"sql": cert.query.sql, "rows": cert.rows.len()});
    many(
        Many {
            head,
            about,
            events,
            checks: report.checks,
            problems: report.problems,
            notes: report.notes,
            batches: &cert.batches,
            anchors: &cert.anchors,
            bundle: &|i| cert.bundle(i).ok(),
        },
        chain,
    )
}

/// A verified document of many events (a trace or query certificate), to be judged against
/// the chain and rendered.
struct Many<'a> {
    /// The first line's subject.
    head: String,
    /// What the document is about, merged into the JSON report.
    about: Value,
    /// Per event: its id, the node it is listed under (trace certificates), its outcome.
    events: Vec<(
        &'a str,
        Option<&'a str>,
        &'a crate::Result<crate::verify::Report>,
    )>,
    checks: Vec<String>,
    problems: Vec<String>,
    notes: Vec<String>,
    batches: &'a BTreeMap<String, CertBatch>,
    anchors: &'a BTreeMap<u64, Anchor>,
    /// Event `i`'s single bundle.
    bundle: &'a dyn Fn(usize) -> Option<ProofBundle>,
}

fn many(mut m: Many<'_>, chain: Option<&dyn ChainCheck>) -> Result<Verdict, ChainCheckError> {
    let backed = chain_backed(m.batches, m.anchors, chain, &mut m.checks, &mut m.problems)?;
    let valid = m.problems.is_empty() && m.events.iter().all(|(_, _, r)| r.is_ok());
    let anchored = valid && all_anchored(m.events.iter().map(|(_, _, r)| *r), m.bundle, &backed);
    let events: Vec<Value> = m
        .events
        .iter()
        .map(|(id, node, result)| {
            let mut e = match result {
                Ok(r) => json!({"event_id": id, "valid": true, "status": r.status.as_str()}),
                Err(err) => json!({"event_id": id, "valid": false, "code": err.code(), "error": err.to_string()}),
            };
            if let Some(n) = node {
                e["node"] = json!(n);
            }
            e
        })
        .collect();
    let mut json = json!({
        "valid": valid,
        "anchored": anchored,
        "events": events,
        "checks": m.checks,
        "problems": m.problems,
        "notes": m.notes,
    });
    if let (Some(j), Value::Object(about)) = (json.as_object_mut(), m.about) {
        j.extend(about);
    }
    let mut text = format!(
        "{}  {}{}\n",
        match (valid, anchored) {
            (false, _) => "INVALID",
            (true, true) => "VALID",
            (true, false) => "UNANCHORED",
        },
        m.head,
        if valid && !anchored {
            format!(": {UNANCHORED}")
        } else {
            String::new()
        }
    );
    for (id, node, result) in &m.events {
        let node = node.map(|n| format!(" [{n}]")).unwrap_or_default();
        text.push_str(&match result {
            Ok(r) => format!("  ok    {id} ({}){node}\n", r.status.as_str()),
            Err(err) => format!("  FAIL  {id}{node}: {err}\n"),
        });
    }
    for c in &m.checks {
        text.push_str(&format!("  ok    {c}\n"));
    }
    for p in &m.problems {
        text.push_str(&format!("  FAIL  {p}\n"));
    }
    for n in &m.notes {
        text.push_str(&format!("  note  {n}\n"));
    }
    chain_note(chain, m.anchors, &mut text);
    Ok(Verdict {
        valid,
        anchored,
        text,
        json,
    })
}

/// What an unanchored verdict says on its first line.
const UNANCHORED: &str = "every check passes, but nothing ties this file to the operator \
    (anyone with a key of their own can make one): pass --ledger FILE or --key HEX (the \
    operator's local ledger or published key) or --rpc URL (the chain)";
