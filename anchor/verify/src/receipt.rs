//! COSE Receipts (RFC 9942) for Veritrace events, with the RFC 9162_SHA256 verifiable data
//! structure, so that SCITT tools can check that an event's batch is in the log.
//!
//! The profile (PROOFS.md 4.8):
//!
//! - a COSE_Sign1 (tag 18), payload detached (`nil`);
//! - protected header: `1` (alg) `-8` (EdDSA), `4` (kid) the node's key id (the first 8
//!   bytes of SHA-256 of its Ed25519 public key), `395` (vds) `1` (RFC9162_SHA256);
//! - unprotected header: `396` (vdp) `{-1: [bstr .cbor [tree_size, leaf_index,
//!   [+ hash]]]}`: one RFC 9162 inclusion proof of the batch header in the log at a
//!   checkpoint's size;
//! - the signature is the node's Ed25519 signature (the local ledger's and the
//!   checkpoint's key) over the Sig_structure whose payload is the log's root at that size,
//!   which the verifier recomputes from the entry and the proof;
//! - the entry is the batch header's JCS bytes (its leaf hash `SHA-256(0x00 ‖ entry)`), and
//!   for the event itself, private unprotected members (text labels, which SCITT verifiers
//!   ignore): `"veritrace.entry"` (the entry), `"veritrace.event"` (the event's JCS bytes)
//!   and `"veritrace.batch_proof"` (`[leaf_index, [+ hash]]`, the event's path to the
//!   batch root that the header commits to).

use ciborium::value::{Integer, Value};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::bundle::BatchHeader;
use crate::signature::{cbor_bytes, sig_structure};
use crate::{Digest, Error, Result, canonical, merkle};

/// COSE header label of the verifiable data structure (RFC 9942).
pub const VDS: i64 = 395;
/// COSE header label of the verifiable data structure proofs (RFC 9942).
pub const VDP: i64 = 396;
/// The RFC 9162_SHA256 verifiable data structure.
pub const RFC9162_SHA256: i64 = 1;
/// The inclusion proofs' key in the proofs map.
pub const INCLUSION: i64 = -1;
/// COSE algorithm EdDSA.
const EDDSA: i64 = -8;
const TAG: u64 = 18;
const ENTRY: &str = "veritrace.entry";
const EVENT: &str = "veritrace.event";
const BATCH_PROOF: &str = "veritrace.batch_proof";

fn bad(detail: impl Into<String>) -> Error {
    Error::Malformed {
        what: "COSE receipt",
        detail: detail.into(),
    }
}

/// The key id a receipt names: the first 8 bytes of SHA-256 of the Ed25519 public key.
pub fn key_id(key: &VerifyingKey) -> Vec<u8> {
    Sha256::digest(key.as_bytes())[..8].to_vec()
}

fn int(i: i64) -> Value {
    Value::Integer(Integer::from(i))
}

fn hashes(path: &[Digest]) -> Value {
    Value::Array(path.iter().map(|d| Value::Bytes(d.0.to_vec())).collect())
}

/// What a receipt proves.
#[derive(Debug, Clone)]
pub struct ReceiptParts<'a> {
    /// The batch header (the log entry).
    pub header: &'a BatchHeader,
    /// Its index in the log.
    pub leaf_index: u64,
    /// The log size of the checkpoint.
    pub tree_size: u64,
    /// Its audit path in the log of `tree_size` leaves.
    pub path: &'a [Digest],
    /// The event, its leaf index in the batch and its audit path to the batch root.
    pub event: Option<(&'a serde_json::Value, u64, &'a [Digest])>,
}

/// Builds and signs a receipt (the root is recomputed from the parts, as a verifier will).
pub fn sign_receipt(key: &SigningKey, parts: &ReceiptParts<'_>) -> Result<Vec<u8>> {
    let entry = canonical::to_vec(parts.header)?;
    let root = merkle::root_from_path(
        "epoch",
        &merkle::leaf_hash(&entry),
        parts.leaf_index,
        parts.tree_size,
        parts.path,
    )?;
    let protected = cbor_bytes(&Value::Map(vec![
        (int(1), int(EDDSA)),
        (int(4), Value::Bytes(key_id(&key.verifying_key()))),
        (int(VDS), int(RFC9162_SHA256)),
    ]));
    let proof = cbor_bytes(&Value::Array(vec![
        Value::Integer(parts.tree_size.into()),
        Value::Integer(parts.leaf_index.into()),
        hashes(parts.path),
    ]));
    let mut unprotected = vec![
        (
            int(VDP),
            Value::Map(vec![(
                int(INCLUSION),
                Value::Array(vec![Value::Bytes(proof)]),
            )]),
        ),
        (Value::Text(ENTRY.into()), Value::Bytes(entry)),
    ];
    if let Some((event, index, path)) = parts.event {
        unprotected.push((
            Value::Text(EVENT.into()),
            Value::Bytes(canonical::to_vec(event)?),
        ));
        unprotected.push((
            Value::Text(BATCH_PROOF.into()),
            Value::Array(vec![Value::Integer(index.into()), hashes(path)]),
        ));
    }
    let signature = key.sign(&sig_structure(&protected, &root.0));
    Ok(cbor_bytes(&Value::Tag(
        TAG,
        Box::new(Value::Array(vec![
            Value::Bytes(protected),
            Value::Map(unprotected),
            Value::Null,
            Value::Bytes(signature.to_bytes().to_vec()),
        ])),
    )))
}

/// What a verified receipt showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptReport {
    /// The log size the receipt is for, and the root it signs.
    pub tree_size: u64,
    /// The log root at that size.
    pub root: Digest,
    /// The batch header's index in the log.
    pub leaf_index: u64,
    /// The batch.
    pub batch_id: String,
    /// The event id, when the receipt carries the event.
    pub event_id: Option<String>,
    /// The key the signature verified with (hex).
    pub public_key: String,
}

fn digest_list(v: &Value, what: &str) -> Result<Vec<Digest>> {
    let Value::Array(items) = v else {
        return Err(bad(format!("{what} is not an array")));
    };
    if items.len() > 64 {
        return Err(bad(format!("{what} has over 64 hashes")));
    }
    items
        .iter()
        .map(|h| match h {
            Value::Bytes(b) => <[u8; 32]>::try_from(b.as_slice())
                .map(Digest)
                .map_err(|_| bad(format!("a hash of {what} is not 32 bytes"))),
            _ => Err(bad(format!("a hash of {what} is not a byte string"))),
        })
        .collect()
}

fn uint(v: &Value, what: &str) -> Result<u64> {
    match v {
        Value::Integer(i) => u64::try_from(i128::from(*i))
            .map_err(|_| bad(format!("{what} is negative or too large"))),
        _ => Err(bad(format!("{what} is not an integer"))),
    }
}

fn label(k: &Value) -> Option<i128> {
    match k {
        Value::Integer(i) => Some(i128::from(*i)),
        _ => None,
    }
}

/// Verifies a receipt with the node's public key: the entry's inclusion in the log at the
/// receipt's size, the signature over the recomputed root and, when the receipt carries the
/// event, the event's path to the batch root the entry commits to.
pub fn verify_receipt(bytes: &[u8], key: &VerifyingKey) -> Result<ReceiptReport> {
    if bytes.len() > 1 << 20 {
        return Err(bad("over 1 MiB"));
    }
    let v: Value = ciborium::de::from_reader_with_recursion_limit(bytes, 16)
        .map_err(|e| bad(format!("not CBOR: {e}")))?;
    let v = match v {
        Value::Tag(TAG, inner) => *inner,
        Value::Tag(t, _) => return Err(bad(format!("CBOR tag {t} is not COSE_Sign1 (18)"))),
        other => other,
    };
    let Value::Array(parts) = v else {
        return Err(bad("a COSE_Sign1 is an array of 4"));
    };
    let [protected, unprotected, payload, signature]: [Value; 4] = parts
        .try_into()
        .map_err(|p: Vec<Value>| bad(format!("a COSE_Sign1 has 4 parts, not {}", p.len())))?;
    let (Value::Bytes(protected), Value::Map(unprotected), Value::Null, Value::Bytes(signature)) =
        (protected, unprotected, payload, signature)
    else {
        return Err(bad(
            "a receipt is [protected bytes, unprotected map, nil, signature bytes]",
        ));
    };
    let header: Value = ciborium::de::from_reader_with_recursion_limit(&protected[..], 8)
        .map_err(|e| bad(format!("the protected header is not CBOR: {e}")))?;
    let Value::Map(header) = header else {
        return Err(bad("the protected header is not a map"));
    };
    let get = |l: i64| {
        header
            .iter()
            .find(|(k, _)| label(k) == Some(i128::from(l)))
            .map(|(_, v)| v)
    };
    if get(1).and_then(label) != Some(i128::from(EDDSA)) {
        return Err(bad("alg is not EdDSA (-8)"));
    }
    if get(VDS).and_then(label) != Some(i128::from(RFC9162_SHA256)) {
        return Err(bad("vds (395) is not RFC9162_SHA256 (1)"));
    }
    if get(4) != Some(&Value::Bytes(key_id(key))) {
        return Err(Error::WrongKey {
            expected: hex::encode(key.as_bytes()),
            found: "the receipt's kid names another key".into(),
        });
    }
    let uget = |name: &str| {
        unprotected
            .iter()
            .find(|(k, _)| matches!(k, Value::Text(t) if t == name))
            .map(|(_, v)| v)
    };
    let vdp = unprotected
        .iter()
        .find(|(k, _)| label(k) == Some(i128::from(VDP)))
        .map(|(_, v)| v)
        .ok_or_else(|| bad("no vdp (396)"))?;
    let Value::Map(vdp) = vdp else {
        return Err(bad("vdp is not a map"));
    };
    let proofs = vdp
        .iter()
        .find(|(k, _)| label(k) == Some(i128::from(INCLUSION)))
        .map(|(_, v)| v)
        .ok_or_else(|| bad("no inclusion proofs (-1) in vdp"))?;
    let Some(Value::Bytes(first)) = (match proofs {
        Value::Array(a) if a.len() == 1 => a.first(),
        _ => None,
    }) else {
        return Err(bad("one inclusion proof (a byte string) is expected"));
    };
    let proof: Value = ciborium::de::from_reader_with_recursion_limit(&first[..], 8)
        .map_err(|e| bad(format!("the inclusion proof is not CBOR: {e}")))?;
    let Value::Array(proof) = proof else {
        return Err(bad("the inclusion proof is not an array"));
    };
    let [size, index, path]: [Value; 3] = proof
        .try_into()
        .map_err(|_| bad("an inclusion proof is [tree_size, leaf_index, path]"))?;
    let (tree_size, leaf_index) = (uint(&size, "tree_size")?, uint(&index, "leaf_index")?);
    let path = digest_list(&path, "the inclusion path")?;
    let Some(Value::Bytes(entry)) = uget(ENTRY) else {
        return Err(bad(format!(
            "no {ENTRY}: the batch header the receipt proves"
        )));
    };
    let root = merkle::root_from_path(
        "epoch",
        &merkle::leaf_hash(entry),
        leaf_index,
        tree_size,
        &path,
    )?;
    let sig = ed25519_dalek::Signature::from_slice(&signature)
        .map_err(|_| bad("the signature is not 64 bytes"))?;
    key.verify_strict(&sig_structure(&protected, &root.0), &sig)
        .map_err(|_| Error::BadSignature {
            seq: tree_size,
            detail: "the receipt's signature does not verify over the root its proof gives".into(),
        })?;
    let header: BatchHeader = crate::bundle::read_document(entry, "receipt entry", &[])?;
    if canonical::to_vec(&header)? != *entry {
        return Err(Error::Inconsistent(
            "the receipt's entry is not canonical JSON".into(),
        ));
    }
    let event_id = match (uget(EVENT), uget(BATCH_PROOF)) {
        (None, None) => None,
        (Some(Value::Bytes(ev)), Some(Value::Array(bp))) if bp.len() == 2 => {
            let i = uint(&bp[0], "the event's leaf index")?;
            let p = digest_list(&bp[1], "the event's batch path")?;
            merkle::verify_inclusion(
                "batch",
                &merkle::leaf_hash(ev),
                i,
                header.size,
                &p,
                &header.root,
            )?;
            let event: serde_json::Value = serde_json::from_slice(ev)
                .map_err(|e| bad(format!("the event is not JSON: {e}")))?;
            if canonical::to_vec(&event)? != *ev {
                return Err(Error::Inconsistent(
                    "the receipt's event is not canonical JSON".into(),
                ));
            }
            event
                .get("event_id")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        }
        _ => return Err(bad(format!("{EVENT} and {BATCH_PROOF} come together"))),
    };
    Ok(ReceiptReport {
        tree_size,
        root,
        leaf_index,
        batch_id: header.batch_id,
        event_id,
        public_key: hex::encode(key.as_bytes()),
    })
}
