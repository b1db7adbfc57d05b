//! Verification of proof bundles and local ledgers. Pure: the caller reads files.

use crate::bundle::{
    Anchor, FORMAT, FORMAT_SIGNED, FORMATS, LedgerEntry, ProofBundle, SignedStatement, Status,
    parse_ledger_entry,
};
use crate::{Digest, Error, Result, canonical, merkle};

/// What the auditor supplies besides the bundle.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Contents of the node's local ledger file, to check the receipt against the whole
    /// hash-chained ledger (and pin the key to the ledger's).
    pub ledger: Option<String>,
    /// The node's Ed25519 public key (hex) as published by its operator.
    pub pinned_key: Option<String>,
    /// Witnesses' cosigner verifier keys (C2SP tlog-cosignature, `NAME+HASH+KEY`): the
    /// bundle's checkpoint must carry cosignatures of `witness_quorum` of them.
    pub witnesses: Vec<String>,
    /// How many of `witnesses` must have cosigned (default: all of them).
    pub witness_quorum: Option<usize>,
}

/// What was checked, in order, for a human or a machine to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The event id, if the event carries one.
    pub event_id: Option<String>,
    /// Status stated by the bundle and confirmed by the checks.
    pub status: Status,
    /// Each successful check, in the order performed.
    pub checks: Vec<String>,
    /// Limits of what was proven (for example: no independent key was supplied).
    pub notes: Vec<String>,
    /// True when the result rests on a trust anchor the auditor supplied: the operator's
    /// pinned key or its ledger file for a local receipt. (A chain that backs an EVM receipt
    /// is the other anchor; [`crate::report`] adds it.) False for a sealed event, and for a
    /// receipt whose key came from the receipt itself: anyone can make such a file.
    pub trusted: bool,
}

/// Each disclosed private field matches its commitment; committed fields not disclosed are
/// noted (withheld or erased: the proof holds either way).
fn check_private(b: &ProofBundle, checks: &mut Vec<String>, notes: &mut Vec<String>) -> Result<()> {
    let committed = crate::private::commitments(&b.event);
    for d in &b.disclosures {
        crate::private::check(&b.event, d).map_err(|detail| statement("bad_disclosure", detail))?;
        checks.push(format!(
            "private field {} disclosed; its value and salt give the committed hash",
            d.path
        ));
    }
    for (path, _) in committed {
        if !b.disclosures.iter().any(|d| d.path == path) {
            notes.push(format!(
                "private field {path} is committed, not disclosed (withheld or erased)"
            ));
        }
    }
    Ok(())
}

/// Parses and verifies a bundle.
pub fn verify_bundle_json(bytes: &[u8], opts: &Options) -> Result<Report> {
    verify_bundle(&ProofBundle::from_json(bytes)?, opts)
}

fn statement(code: &'static str, detail: impl Into<String>) -> Error {
    Error::Statement {
        code,
        detail: detail.into(),
    }
}

/// For a signed event (one whose canonical form has a `signature`): the envelope is the one
/// the leaf commits to, says what the event says, and its signature verifies with the
/// signer's key, whose key id is the committed one.
fn check_statement(
    b: &ProofBundle,
    opts: &Options,
    checks: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<()> {
    use crate::signature::{PublicKey, parse_envelope, sniff};
    use base64::Engine as _;
    // The format says whether the bundle carries the statement: format 2 always does,
    // format 1 never (a certificate's events are format 1 bundles, signed or not).
    match (b.format.as_str(), &b.signed) {
        (FORMAT, Some(_)) => {
            return Err(Error::Inconsistent(format!(
                "format {FORMAT} does not carry a signed statement, but the bundle has one"
            )));
        }
        (FORMAT_SIGNED, None) => {
            return Err(Error::Inconsistent(format!(
                "format {FORMAT_SIGNED} carries the signed statement, but the bundle has none"
            )));
        }
        _ => {}
    }
    let Some(sig) = b.event.get("signature") else {
        if b.format == FORMAT_SIGNED {
            return Err(Error::Inconsistent(
                "the bundle carries a signed statement but the event records no signature".into(),
            ));
        }
        return Ok(());
    };
    let text = |k: &str| sig.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    let signer = text("signer");
    let key_id = text("key_id");
    let Some(SignedStatement {
        envelope,
        signer_key,
        bundle,
        registration,
    }) = &b.signed
    else {
        notes.push(format!(
            "the event was signed by {signer} (key {key_id}); a {FORMAT} bundle carries no envelope, so the signature was not checked here"
        ));
        return Ok(());
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(envelope)
        .map_err(|e| statement("bad_envelope", format!("not base64url: {e}")))?;
    let digest = Digest(<sha2::Sha256 as sha2::Digest>::digest(&bytes).into());
    if digest.to_hex() != text("envelope_sha256") {
        return Err(statement(
            "bad_envelope",
            format!(
                "the envelope's SHA-256 is {digest}, the leaf commits to {}",
                text("envelope_sha256")
            ),
        ));
    }
    let kind =
        sniff(&bytes).ok_or_else(|| statement("bad_envelope", "neither COSE_Sign1 nor JWS"))?;
    let signed =
        parse_envelope(&bytes, kind).map_err(|e| statement("bad_envelope", e.to_string()))?;
    let iat = sig.get("iat").and_then(|v| v.as_i64());
    if signed.alg.name() != text("alg") || signed.claims.iat != iat {
        return Err(statement(
            "claims_mismatch",
            "the envelope's algorithm or signing time is not the one the leaf commits to",
        ));
    }
    // What was signed is what was recorded: the event id (a registry record: the record).
    // A bundle signs a root; the event as sent proves into it by its path.
    let bundle_size = sig.get("bundle_size").and_then(|v| v.as_u64());
    let payload: serde_json::Value = match (bundle_size, bundle) {
        (None, None) => serde_json::from_slice(&signed.payload)
            .map_err(|e| statement("bad_envelope", format!("the payload is not JSON: {e}")))?,
        (Some(size), Some(member)) => {
            let manifest: crate::bundle_sig::Manifest = serde_json::from_slice(&signed.payload)
                .map_err(|e| statement("bad_envelope", format!("not a bundle manifest: {e}")))?;
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&member.event)
                .map_err(|e| {
                    statement(
                        "bad_envelope",
                        format!("the bundle event is not base64url: {e}"),
                    )
                })?;
            let index = sig.get("bundle_index").and_then(|v| v.as_u64());
            if manifest.size != size || index != Some(member.index) {
                return Err(statement(
                    "claims_mismatch",
                    "the bundle's size or the event's position is not the one the leaf commits to",
                ));
            }
            let root = merkle::root_from_path(
                "bundle",
                &merkle::leaf_hash(&raw),
                member.index,
                size,
                &member.path,
            )?;
            if root != manifest.bundle_root {
                return Err(statement(
                    "claims_mismatch",
                    format!(
                        "the event proves into bundle root {root}, the envelope signs {}",
                        manifest.bundle_root
                    ),
                ));
            }
            checks.push(format!(
                "the event as sent is event {} of the {size} the bundle signs (root {root})",
                member.index
            ));
            serde_json::from_slice(&raw).map_err(|e| {
                statement("bad_envelope", format!("the bundle event is not JSON: {e}"))
            })?
        }
        _ => {
            return Err(statement(
                "claims_mismatch",
                "the leaf and the bundle disagree on whether the event was signed in a bundle",
            ));
        }
    };
    let same = if b.event.get("event_type").and_then(|t| t.as_str()) == Some("registry") {
        b.event.get("attributes") == Some(&payload)
    } else {
        payload.get("event_id") == b.event.get("event_id")
            && signed.claims.iss.as_deref() == Some(signer)
    };
    if !same {
        return Err(statement(
            "claims_mismatch",
            "the signed payload or issuer is not the recorded event's",
        ));
    }
    let Some(key_text) = signer_key else {
        notes.push(format!(
            "signed by key {key_id}: the bundle carries no public key for it (the operator's root key signs participant records), so the signature was not checked here"
        ));
        return Ok(());
    };
    let key = PublicKey::parse(key_text).map_err(|e| statement("wrong_key", e.to_string()))?;
    if key.key_id() != key_id {
        return Err(statement(
            "wrong_key",
            format!(
                "the bundle's key has id {}, the leaf commits to {key_id}",
                key.key_id()
            ),
        ));
    }
    signed
        .verify(&key)
        .map_err(|e| statement("bad_signature", e.to_string()))?;
    checks.push(format!(
        "{} envelope ({}) is the one the leaf commits to and its signature by {signer} verifies with key {key_id}",
        signed.envelope.as_str(),
        signed.alg.name()
    ));
    let iat = iat.unwrap_or_default();
    match registration {
        None => notes.push(format!(
            "that key {key_id} was {signer}'s when it signed is not shown by this bundle: prove its registry record (veritrace proof registry:...)"
        )),
        Some(reg) => check_registration(reg, opts, signer, key_id, iat, checks, notes)?,
    }
    Ok(())
}

/// The registration of the key that signed: a registry record, with a proof that verifies,
/// that gave `key_id` to `signer` no later than `iat`.
fn check_registration(
    reg: &ProofBundle,
    opts: &Options,
    signer: &str,
    key_id: &str,
    iat: i64,
    checks: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let report = verify_bundle(reg, opts)?;
    let ev = &reg.event;
    let rec = ev.get("attributes").cloned().unwrap_or_default();
    let field = |k: &str| rec.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    let (who, key) = match field("record") {
        "device.registered" | "device.key_rotated" => (field("device_id"), field("key")),
        "participant.registered" => (field("participant_id"), field("admin_key")),
        other => {
            return Err(statement(
                "wrong_key",
                format!("the registration carried is a {other:?} record, not one that gives a key"),
            ));
        }
    };
    let at = rec.get("at").and_then(|v| v.as_i64()).unwrap_or(i64::MAX);
    let registered_id = crate::signature::PublicKey::parse(key).map(|k| k.key_id());
    if ev.get("event_type").and_then(|t| t.as_str()) != Some("registry")
        || who != signer
        || registered_id.as_deref() != Ok(key_id)
        || at > iat
    {
        return Err(statement(
            "wrong_key",
            format!(
                "the registration carried does not give key {key_id} to {signer} before {iat} (it gives {} to {who} at {at})",
                registered_id.unwrap_or_default()
            ),
        ));
    }
    checks.push(format!(
        "key {key_id} was registered for {signer} at {at} by registry record {} ({}), whose proof verifies ({} checks)",
        report.event_id.as_deref().unwrap_or("?"),
        field("record"),
        report.checks.len()
    ));
    // A registration's own registration's notes already say so: prefixed once, and each
    // said once.
    for n in report.notes {
        let n = if n.starts_with("registration: ") {
            n
        } else {
            format!("registration: {n}")
        };
        if !notes.contains(&n) {
            notes.push(n);
        }
    }
    notes.push(format!(
        "one record shows the key was {signer}'s from {at}; a later rotation or revocation is not excluded by it (the registry's records in the log show them: veritrace device list)"
    ));
    Ok(())
}

/// What many bundles checked against one ledger share (the events of a certificate): the
/// ledger file's entries, verified once instead of once per event.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The ledger file's entries when it verified; `None` when no file was given or it did
    /// not verify (each bundle's check then reports why).
    ledger: Option<Vec<LedgerEntry>>,
    /// Receipts whose signature verified already, by epoch (compared whole, signature and
    /// key included): bundles of one epoch share their receipt.
    receipts: std::cell::RefCell<std::collections::HashMap<u64, LedgerEntry>>,
}

impl Shared {
    /// Verifies the ledger file of `opts`, if any, once.
    pub(crate) fn new(opts: &Options) -> Self {
        Shared {
            ledger: opts.ledger.as_deref().and_then(|t| verify_ledger(t).ok()),
            receipts: Default::default(),
        }
    }
}

/// Verifies many bundles with one set of options: the ledger file is checked once, and each
/// receipt's signature once, however many bundles of its epoch follow. Each bundle's own
/// hashes (event, leaf, batch and epoch paths, the receipt's fields against its epoch) are
/// checked every time.
#[derive(Debug)]
pub struct BundleVerifier<'a> {
    opts: &'a Options,
    shared: Shared,
}

impl<'a> BundleVerifier<'a> {
    /// A verifier for bundles checked against `opts`.
    pub fn new(opts: &'a Options) -> Self {
        BundleVerifier {
            opts,
            shared: Shared::new(opts),
        }
    }

    /// [`verify_bundle`], sharing what was checked for earlier bundles.
    pub fn verify(&self, b: &ProofBundle) -> Result<Report> {
        verify_bundle_with(b, self.opts, &self.shared)
    }
}

/// The entry of `epoch_id` in a verified ledger (entries are consecutive from epoch 0).
fn entry_of(entries: &[LedgerEntry], epoch_id: u64) -> Option<&LedgerEntry> {
    usize::try_from(epoch_id)
        .ok()
        .and_then(|i| entries.get(i))
        .filter(|e| e.epoch_id == epoch_id)
        .or_else(|| entries.iter().find(|e| e.epoch_id == epoch_id))
}

/// Recomputes every hash of the bundle and checks the anchor receipt.
pub fn verify_bundle(b: &ProofBundle, opts: &Options) -> Result<Report> {
    verify_bundle_with(b, opts, &Shared::default())
}

/// [`verify_bundle`], with what the bundles of one document share checked once.
pub(crate) fn verify_bundle_with(
    b: &ProofBundle,
    opts: &Options,
    shared: &Shared,
) -> Result<Report> {
    if !FORMATS.contains(&b.format.as_str()) {
        return Err(Error::UnsupportedFormat {
            found: b.format.clone(),
            supported: FORMATS,
        });
    }
    let mut checks = Vec::new();
    let mut notes = Vec::new();
    let event_id = b
        .event
        .get("event_id")
        .and_then(|v| v.as_str())
        .map(str::to_owned);

    // 1. The event's canonical bytes give the stated leaf hash.
    let bytes = canonical::to_vec(&b.event)?;
    let leaf = merkle::leaf_hash(&bytes);
    if leaf != b.leaf.hash {
        return Err(Error::RootMismatch {
            what: "leaf hash",
            expected: b.leaf.hash,
            computed: leaf,
        });
    }
    checks.push(format!(
        "event canonicalised (RFC 8785, {} bytes); leaf hash {leaf}",
        bytes.len()
    ));
    check_statement(b, opts, &mut checks, &mut notes)?;
    check_private(b, &mut checks, &mut notes)?;

    // 2. The leaf proves into the batch root.
    merkle::verify_inclusion(
        "batch",
        &leaf,
        b.leaf.index,
        b.batch.size,
        &b.leaf.audit_path,
        &b.batch.root,
    )?;
    checks.push(format!(
        "leaf {} of {} proves into batch root {} (batch {}, {} path hashes)",
        b.leaf.index,
        b.batch.size,
        b.batch.root,
        b.batch.batch_id,
        b.leaf.audit_path.len()
    ));
    check_batch_header(b)?;

    // 3. The batch header proves into the epoch root.
    let Some(epoch) = &b.epoch else {
        if b.status == Status::Anchored {
            return Err(Error::Inconsistent(
                "status is anchored but the bundle has no epoch proof".into(),
            ));
        }
        if b.anchor.is_some() {
            return Err(Error::Inconsistent(
                "anchor receipt without an epoch proof".into(),
            ));
        }
        notes.push("status sealed: the batch is not yet in an anchored epoch; the batch root is not witnessed by any anchor".into());
        return Ok(Report {
            event_id,
            status: b.status,
            checks,
            notes,
            trusted: false,
        });
    };
    let header_leaf = b.batch.leaf_hash()?;
    merkle::verify_inclusion(
        "epoch",
        &header_leaf,
        epoch.batch_index,
        epoch.batch_count,
        &epoch.audit_path,
        &epoch.root,
    )?;
    checks.push(format!(
        "batch header {} of {} proves into epoch {} root {}",
        epoch.batch_index, epoch.batch_count, epoch.epoch_id, epoch.root
    ));

    // The epoch's checkpoint and its witnesses' cosignatures.
    let witnessed = check_checkpoint(b, epoch, opts, &mut checks, &mut notes)?;

    // 4. The anchor witnesses the epoch root.
    let Some(anchor) = &b.anchor else {
        if b.status == Status::Anchored {
            return Err(Error::Inconsistent(
                "status is anchored but the bundle has no anchor receipt".into(),
            ));
        }
        notes.push(format!(
            "status sealed: epoch {} is not anchored yet",
            epoch.epoch_id
        ));
        return Ok(Report {
            event_id,
            status: b.status,
            checks,
            notes,
            trusted: witnessed,
        });
    };
    if b.status != Status::Anchored {
        return Err(Error::Inconsistent(
            "bundle has an anchor receipt but status is not anchored".into(),
        ));
    }
    let trusted;
    match anchor {
        Anchor::Local { ledger_entry } => {
            // An entry equal to one of a ledger file verified already had its signature
            // checked with the file.
            let verified = shared.ledger.as_deref();
            let known = verified
                .and_then(|es| entry_of(es, ledger_entry.epoch_id))
                .is_some_and(|e| e == ledger_entry)
                || shared.receipts.borrow().get(&ledger_entry.epoch_id) == Some(ledger_entry);
            check_local_entry(
                ledger_entry,
                epoch.epoch_id,
                &epoch.root,
                epoch.batch_count,
                !known,
            )?;
            shared
                .receipts
                .borrow_mut()
                .insert(ledger_entry.epoch_id, ledger_entry.clone());
            checks.push(format!(
                "local ledger entry for epoch {} holds root {} and its Ed25519 signature verifies (key {})",
                ledger_entry.epoch_id, ledger_entry.root, ledger_entry.public_key
            ));
            let mut key_pinned = false;
            if let Some(text) = &opts.ledger {
                let owned;
                let entries = match verified {
                    Some(es) => es,
                    None => {
                        owned = verify_ledger(text)?;
                        &owned
                    }
                };
                let found = entry_of(entries, ledger_entry.epoch_id).ok_or_else(|| {
                    Error::Ledger(format!(
                        "no entry for epoch {} in the ledger file",
                        ledger_entry.epoch_id
                    ))
                })?;
                if found != ledger_entry {
                    return Err(Error::Ledger(format!(
                        "entry for epoch {} in the ledger file differs from the bundle's receipt",
                        ledger_entry.epoch_id
                    )));
                }
                checks.push(format!(
                    "ledger file: {} entries, hash chain and signatures intact, receipt is entry {}",
                    entries.len(),
                    ledger_entry.epoch_id
                ));
                key_pinned = true;
            }
            if let Some(key) = &opts.pinned_key {
                if !key.eq_ignore_ascii_case(&ledger_entry.public_key) {
                    return Err(Error::WrongKey {
                        expected: key.clone(),
                        found: ledger_entry.public_key.clone(),
                    });
                }
                checks.push("signing key matches the pinned key".into());
                key_pinned = true;
            }
            if let Some(note) = &b.checkpoint {
                // The log signs its checkpoints with the ledger's key.
                let n = crate::checkpoint::Note::parse(note.as_bytes())?;
                let origin = n.text.split('\n').next().unwrap_or_default();
                let pk = hex::decode(&ledger_entry.public_key)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok())
                    .ok_or_else(|| {
                        Error::Note("the ledger entry's key is not an Ed25519 key".into())
                    })?;
                n.verify(&crate::checkpoint::NoteKey::new(origin, pk)?)?;
                checks.push(format!(
                    "the checkpoint is signed by the ledger's key as log {origin}"
                ));
            }
            trusted = key_pinned || witnessed;
            if !trusted {
                notes.push(
                    "the signing key was taken from the receipt itself: pass --ledger or --key with the operator's published key to tie it to the node".into(),
                );
            }
            notes.push("backend local: the epoch root is witnessed by the node's signed ledger, not by a public chain".into());
        }
        Anchor::Evm { receipt } => {
            trusted = witnessed;
            receipt.check_shape()?;
            checks.push(format!(
                "evm receipt names chain {} contract {} tx {} block {} log {}",
                receipt.chain_id,
                receipt.contract,
                receipt.tx_hash,
                receipt.block_number,
                receipt.log_index
            ));
            notes.push(format!(
                "the chain was not consulted: pass --rpc URL to read root {} back from contract {} on chain {}",
                epoch.root, receipt.contract, receipt.chain_id
            ));
        }
    }
    Ok(Report {
        event_id,
        status: b.status,
        checks,
        notes,
        trusted,
    })
}

/// The bundle's checkpoint, when it carries one, is the epoch's tree (its size and root);
/// with witnesses given, at least the quorum of them cosigned it. Returns whether the
/// witnesses vouch for it.
fn check_checkpoint(
    b: &ProofBundle,
    epoch: &crate::bundle::EpochProof,
    opts: &Options,
    checks: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<bool> {
    use crate::checkpoint::{Checkpoint, Note, NoteKey};
    let note = match &b.checkpoint {
        Some(text) => {
            let n = Note::parse(text.as_bytes())?;
            let c = Checkpoint::parse(&n.text)?;
            if c.size != epoch.batch_count || c.root != epoch.root {
                return Err(Error::Inconsistent(format!(
                    "the checkpoint is of {} leaves with root {} but the epoch proof is of {} with {}",
                    c.size, c.root, epoch.batch_count, epoch.root
                )));
            }
            checks.push(format!(
                "checkpoint of log {} is the epoch's tree ({} leaves, root {})",
                c.origin, c.size, c.root
            ));
            Some(n)
        }
        None => None,
    };
    if opts.witnesses.is_empty() {
        if let Some(n) = &note
            && n.signatures.len() > 1
        {
            notes.push(format!(
                "the checkpoint carries {} cosignature line(s): pass --witness with the witnesses' keys to count them",
                n.signatures.len() - 1
            ));
        }
        return Ok(false);
    }
    let keys = opts
        .witnesses
        .iter()
        .map(|v| NoteKey::parse_vkey(v.trim()))
        .collect::<Result<Vec<_>>>()?;
    if let Some(k) = keys
        .iter()
        .find(|k| k.kind != crate::checkpoint::KeyKind::CosignatureV1)
    {
        return Err(Error::Note(format!(
            "--witness {} is not a cosigner key (type 0x04)",
            k.name
        )));
    }
    let need = opts
        .witness_quorum
        .unwrap_or(keys.len())
        .clamp(1, keys.len());
    let Some(note) = note else {
        return Err(Error::Witnesses(format!(
            "the bundle carries no cosigned checkpoint; {need} of {} witnesses are required",
            keys.len()
        )));
    };
    let (good, missing) = note.cosigned_by(&keys);
    if good.len() < need {
        return Err(Error::Witnesses(format!(
            "{} of {} witnesses cosigned the checkpoint; {need} are required ({})",
            good.len(),
            keys.len(),
            missing.join("; ")
        )));
    }
    checks.push(format!(
        "{} of {} witnesses cosigned the checkpoint ({}; {need} required)",
        good.len(),
        keys.len(),
        good.iter()
            .map(|(n, t)| format!("{n} at {t}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(true)
}

fn check_batch_header(b: &ProofBundle) -> Result<()> {
    let h = &b.batch;
    // Offsets may have gaps (Kafka compaction, transaction markers): records <= span.
    if h.last_offset < h.first_offset
        || h.records > h.last_offset - h.first_offset + 1
        || h.size > h.records
    {
        return Err(Error::Inconsistent(format!(
            "batch header offsets {}..={} do not hold {} records of which {} accepted",
            h.first_offset, h.last_offset, h.records, h.size
        )));
    }
    Ok(())
}

fn check_local_entry(
    e: &LedgerEntry,
    epoch_id: u64,
    root: &Digest,
    batch_count: u64,
    check_signature: bool,
) -> Result<()> {
    if e.epoch_id != epoch_id {
        return Err(Error::Inconsistent(format!(
            "ledger entry is for epoch {}, the proof for epoch {epoch_id}",
            e.epoch_id
        )));
    }
    if &e.root != root {
        return Err(Error::RootMismatch {
            what: "anchored epoch root",
            expected: e.root,
            computed: *root,
        });
    }
    if e.batch_count != batch_count {
        return Err(Error::Inconsistent(format!(
            "ledger entry counts {} batches, the epoch proof {batch_count}",
            e.batch_count
        )));
    }
    if check_signature {
        e.verify_signature()?;
    }
    Ok(())
}

/// Checks a whole local ledger file: every line parses, entries are consecutive from epoch
/// 0, each chains to the previous entry's hash, all are signed by one key, and every
/// signature verifies. A final line without a newline (a write torn by a crash, which the
/// node repairs when it restarts) is ignored.
pub fn verify_ledger(text: &str) -> Result<Vec<LedgerEntry>> {
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let mut entries: Vec<LedgerEntry> = Vec::new();
    let mut prev_hash = Digest::ZERO;
    for (n, line) in complete.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e = parse_ledger_entry(line.as_bytes())
            .map_err(|err| Error::Ledger(format!("line {}: {err}", n + 1)))?;
        let want = entries.len() as u64;
        if e.epoch_id != want {
            return Err(Error::Ledger(format!(
                "line {}: epoch {} where epoch {want} was expected",
                n + 1,
                e.epoch_id
            )));
        }
        if e.prev_entry_hash != prev_hash {
            return Err(Error::Ledger(format!(
                "line {}: previous-entry hash {} does not match the hash {} of the entry before it",
                n + 1,
                e.prev_entry_hash,
                prev_hash
            )));
        }
        if let Some(first) = entries.first()
            && first.public_key != e.public_key
        {
            return Err(Error::Ledger(format!(
                "line {}: signed by a different key than the first entry",
                n + 1
            )));
        }
        e.verify_signature()?;
        prev_hash = e.entry_hash()?;
        entries.push(e);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_of_many_bundles_checks_each_receipt_signature_once_and_still_refuses_a_forged_one()
     {
        let text = include_str!("../vectors/valid/proof-1.json");
        let bundle = ProofBundle::from_json(text.as_bytes()).expect("bundle");
        let opts = Options::default();
        let v = BundleVerifier::new(&opts);
        v.verify(&bundle).expect("valid");
        v.verify(&bundle)
            .expect("valid again, the receipt remembered");
        // The same entry with another signature is another receipt: verified, and refused.
        let mut forged = bundle.clone();
        let Some(Anchor::Local { ledger_entry }) = forged.anchor.as_mut() else {
            panic!("a local receipt");
        };
        let last = ledger_entry.signature.pop().expect("hex");
        ledger_entry
            .signature
            .push(if last == '0' { '1' } else { '0' });
        assert_eq!(
            v.verify(&forged).expect_err("forged").code(),
            "bad_signature"
        );
        // And a bundle whose epoch root is changed fails whatever was remembered.
        let mut moved = bundle.clone();
        if let Some(e) = moved.epoch.as_mut() {
            e.root = Digest([7; 32]);
        }
        assert!(v.verify(&moved).is_err());
    }
}
