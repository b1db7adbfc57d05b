//! The documents an auditor receives: the proof bundle, the batch header (the leaf of the
//! epoch tree) and the local ledger entry (the embedded anchor's receipt).
//!
//! A bundle is versioned JSON (`"format": "veritrace.proof/1"`):
//!
//! ```text
//! event ──JCS──> leaf hash ──audit path──> batch root   (batch header, per partition)
//! batch header ──JCS──> epoch leaf ──audit path──> epoch root ──> anchor receipt
//! ```
//!
//! The anchor receipt is either a local ledger entry (`"backend": "local"`) or an EVM
//! receipt (`"backend": "evm"`: chain id, contract, transaction, block, log index).

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::canonical;
use crate::digest::field;
use crate::{Digest, Error, Result, merkle};

/// The proof format this crate writes for unsigned events (and reads).
pub const FORMAT: &str = "veritrace.proof/1";

/// The proof format of a signed event: [`FORMAT`] plus the signed statement
/// ([`ProofBundle::signed`]). Verifiers read both.
pub const FORMAT_SIGNED: &str = "veritrace.proof/2";

/// The proof bundle formats this crate reads.
pub const FORMATS: &[&str] = &[FORMAT, FORMAT_SIGNED];

/// The statement a signed event came in, so an auditor checks the signature offline: the
/// leaf commits to the envelope's digest, signer, key id and algorithm (the event's
/// `signature`); the bundle carries the envelope itself and the signer's public key (whose
/// key id must be the committed one). That the key was the signer's at the time is shown
/// by the registry record that registered it, which has its own proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedStatement {
    /// The envelope as received (COSE_Sign1 bytes or JWS text), base64url without padding.
    pub envelope: String,
    /// The signer's public key (`ALG:HEX`) as its registry record names it; absent when
    /// the node holds no record of it (participant records: the operator's root key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_key: Option<String>,
    /// For an event signed in a bundle ([`crate::bundle_sig`]): the event as signed and its
    /// path to the root the envelope signs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleMember>,
    /// The registry record that registered the signer's key, with its own proof (which in
    /// turn carries its signer's registration, up to the operator's root key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<Box<ProofBundle>>,
}

/// One event of a signed bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleMember {
    /// The event's bytes as the device sent and hashed them, base64url without padding.
    pub event: String,
    /// Its position among the bundle's events.
    pub index: u64,
    /// Its RFC 6962 audit path to the bundle root.
    #[serde(deserialize_with = "field::bundle_path")]
    pub path: Vec<Digest>,
}

/// Domain separation prefix of the bytes a local ledger entry's signature covers.
pub const LEDGER_SIGNING_DOMAIN: &[u8] = b"veritrace.local-ledger/1\n";

/// The sealed description of one batch: what the epoch tree commits to. Batches of a
/// partition form a hash chain (`prev_root`) and cover contiguous offsets, so a missing or
/// reordered batch is detectable, not only a changed event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchHeader {
    /// `{stream}-p{partition:03}-{first_offset:012}-{last_offset:012}` (numbers zero-padded
    /// to at least 3 and 12 digits): derived from the input position, so re-sealing the same
    /// records after a crash yields the same id.
    pub batch_id: String,
    /// Source stream (Kafka topic, or `demo` for the in-process channel).
    pub stream: String,
    /// Source partition.
    pub partition: u32,
    /// Position of this batch in its partition's chain, from 0.
    pub seq: u64,
    /// First input offset covered (accepted or rejected).
    pub first_offset: u64,
    /// Last input offset covered, inclusive.
    pub last_offset: u64,
    /// Input records covered: accepted plus rejected.
    pub records: u64,
    /// Accepted events, i.e. leaves of the batch tree.
    pub size: u64,
    /// Merkle root over the accepted events' leaf hashes, in offset order.
    #[serde(deserialize_with = "field::batch_root")]
    pub root: Digest,
    /// Root of the previous batch of the same partition (zero for the first).
    #[serde(deserialize_with = "field::batch_prev_root")]
    pub prev_root: Digest,
    /// When the batch was sealed (RFC 3339, UTC).
    pub sealed_at: String,
    /// The events this batch's error declarations declare in error, in leaf order: an
    /// index, committed with the batch, so readers find every retraction from the headers
    /// alone. Absent when there are none (so every earlier header hashes as it did).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retracts: Vec<Retraction>,
}

/// One event declared in error by an `error_declaration` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retraction {
    /// The event declared in error.
    pub event_id: String,
    /// The error declaration's own event id.
    pub declaration: String,
    /// The participant who declared it (only the participant who recorded an event can
    /// retract it).
    pub participant: String,
}

impl BatchHeader {
    /// The epoch-tree leaf hash of this header: `leaf_hash(JCS(header))`.
    pub fn leaf_hash(&self) -> Result<Digest> {
        Ok(merkle::leaf_hash(&canonical::to_vec(self)?))
    }
}

/// One entry of the embedded local ledger: an append-only, hash-chained file in which each
/// anchored epoch root is signed with the node's Ed25519 key. It is honest about what it
/// is: a signature by the operator's node, not a public chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerEntry {
    /// Epoch anchored by this entry; entries are consecutive from 0.
    pub epoch_id: u64,
    /// The epoch root.
    #[serde(deserialize_with = "field::ledger_root")]
    pub root: Digest,
    /// Number of batches in the epoch.
    pub batch_count: u64,
    /// When the entry was written (RFC 3339, UTC).
    pub anchored_at: String,
    /// `entry_hash` of the previous entry (zero for the first).
    #[serde(deserialize_with = "field::ledger_prev_entry_hash")]
    pub prev_entry_hash: Digest,
    /// Ed25519 public key of the node (64 hex digits).
    pub public_key: String,
    /// Ed25519 signature (128 hex digits) over [`LedgerEntry::signing_bytes`].
    pub signature: String,
}

/// The fields of a ledger entry that its signature covers (all but the signature).
#[derive(Serialize)]
struct LedgerBody<'a> {
    epoch_id: u64,
    root: &'a Digest,
    batch_count: u64,
    anchored_at: &'a str,
    prev_entry_hash: &'a Digest,
    public_key: &'a str,
}

impl LedgerEntry {
    /// The bytes the signature covers: [`LEDGER_SIGNING_DOMAIN`] followed by the JCS form of
    /// every field but `signature`.
    pub fn signing_bytes(&self) -> Result<Vec<u8>> {
        let body = LedgerBody {
            epoch_id: self.epoch_id,
            root: &self.root,
            batch_count: self.batch_count,
            anchored_at: &self.anchored_at,
            prev_entry_hash: &self.prev_entry_hash,
            public_key: &self.public_key,
        };
        let mut out = LEDGER_SIGNING_DOMAIN.to_vec();
        out.extend_from_slice(&canonical::to_vec(&body)?);
        Ok(out)
    }

    /// `SHA-256(JCS(entry))`, signature included: what the next entry chains to.
    pub fn entry_hash(&self) -> Result<Digest> {
        Ok(Digest(Sha256::digest(canonical::to_vec(self)?).into()))
    }

    /// Checks the Ed25519 signature against the entry's own public key, strictly (RFC 8032
    /// with ed25519-dalek's `verify_strict`, as signed statements are): a weak (small-order)
    /// key or signature point is refused, since with one a signature can verify for any
    /// message.
    pub fn verify_signature(&self) -> Result<()> {
        let bad = |detail: String| Error::BadSignature {
            seq: self.epoch_id,
            detail,
        };
        let mut pk = [0u8; 32];
        hex::decode_to_slice(&self.public_key, &mut pk)
            .map_err(|e| bad(format!("public key: {e}")))?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut sig)
            .map_err(|e| bad(format!("signature: {e}")))?;
        let key = VerifyingKey::from_bytes(&pk).map_err(|e| bad(format!("public key: {e}")))?;
        key.verify_strict(&self.signing_bytes()?, &Signature::from_bytes(&sig))
            .map_err(|e| bad(e.to_string()))
    }
}

/// Whether the bundle's epoch root is witnessed by an anchor yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The batch root exists (and maybe the epoch root), but no anchor witnesses it yet.
    Sealed,
    /// The epoch root is witnessed by the anchor receipt.
    Anchored,
}

impl Status {
    /// `sealed` or `anchored`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Sealed => "sealed",
            Status::Anchored => "anchored",
        }
    }
}

/// Position of the event in its batch tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeafProof {
    /// Leaf index within the batch (0-based); the tree size is the batch header's `size`.
    pub index: u64,
    /// `SHA-256(0x00 || JCS(event))`, stated for convenience; the verifier recomputes it.
    #[serde(deserialize_with = "field::leaf_hash")]
    pub hash: Digest,
    /// Audit path from the leaf to the batch root (RFC 9162).
    #[serde(deserialize_with = "field::leaf_audit_path")]
    pub audit_path: Vec<Digest>,
}

/// Position of the batch in its epoch tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochProof {
    /// Epoch number, consecutive from 0.
    pub epoch_id: u64,
    /// Root over the leaf hashes of the epoch's batch headers.
    #[serde(deserialize_with = "field::epoch_root")]
    pub root: Digest,
    /// Index of this batch within the epoch.
    pub batch_index: u64,
    /// Number of batches (leaves) in the epoch.
    pub batch_count: u64,
    /// Audit path from the batch header's leaf to the epoch root.
    #[serde(deserialize_with = "field::epoch_audit_path")]
    pub audit_path: Vec<Digest>,
}

/// Where an epoch root landed on an EVM chain: the transaction that called
/// `VeritraceAnchor.anchor(root, epochId, batchCount)` and the `Anchored` log it emitted.
/// Hex fields are `0x`-prefixed as on every EVM tool (explorers, `cast`, JSON-RPC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvmReceipt {
    /// The chain's id (`eth_chainId`), e.g. 1 for Ethereum mainnet.
    pub chain_id: u64,
    /// The `VeritraceAnchor` contract address (20 bytes).
    pub contract: String,
    /// The anchoring transaction's hash (32 bytes).
    pub tx_hash: String,
    /// The block that holds the transaction.
    pub block_number: u64,
    /// That block's hash (32 bytes): a reorg that drops the block changes it.
    pub block_hash: String,
    /// Index of the `Anchored` log in the block.
    pub log_index: u64,
}

impl EvmReceipt {
    /// Checks that the hex fields have the right shape (`0x` and 40 or 64 hex digits).
    pub fn check_shape(&self) -> Result<()> {
        for (field, value, digits) in [
            ("contract", &self.contract, 40),
            ("tx_hash", &self.tx_hash, 64),
            ("block_hash", &self.block_hash, 64),
        ] {
            let ok = value
                .strip_prefix("0x")
                .is_some_and(|h| h.len() == digits && h.bytes().all(|b| b.is_ascii_hexdigit()));
            if !ok {
                return Err(Error::Malformed {
                    what: "evm receipt",
                    detail: format!("{field} {value:?} is not 0x followed by {digits} hex digits"),
                });
            }
        }
        Ok(())
    }
}

/// The anchor receipt: who witnesses the epoch root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum Anchor {
    /// The embedded local ledger: a signed, hash-chained file kept by the node.
    Local {
        /// The ledger entry for the epoch, signature included.
        ledger_entry: LedgerEntry,
    },
    /// An EVM chain: the epoch root is stored by the `VeritraceAnchor` contract.
    Evm {
        /// Where the root landed.
        receipt: EvmReceipt,
    },
}

/// A proof that one event was recorded unaltered, as an auditor receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBundle {
    /// [`FORMAT`], or [`FORMAT_SIGNED`] for a signed event.
    pub format: String,
    /// `sealed` or `anchored`.
    pub status: Status,
    /// The canonical event, as a JSON object. Its JCS bytes are the leaf preimage.
    pub event: Value,
    /// The event's position and audit path in its batch.
    pub leaf: LeafProof,
    /// The batch header; its `root` is what the leaf proves into.
    pub batch: BatchHeader,
    /// The batch's position in its epoch, once the epoch is sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<EpochProof>,
    /// The anchor receipt, once the epoch is anchored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<Anchor>,
    /// The signed statement, for a signed event ([`FORMAT_SIGNED`] only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<SignedStatement>,
    /// Private fields disclosed with this proof ([`crate::private`]); the others stay
    /// committed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disclosures: Vec<crate::private::Disclosure>,
    /// The epoch's checkpoint as a signed note, with the cosignatures of the witnesses that
    /// cosigned it (C2SP tlog-checkpoint, signed-note, tlog-cosignature), when the node
    /// has them: its size and root are `epoch.batch_count` and `epoch.root`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

impl ProofBundle {
    /// Parses a bundle, refusing duplicate keys anywhere, a format other than [`FORMATS`],
    /// unknown fields and digests that are not 64 hex digits.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        read_document(bytes, "proof bundle", FORMATS)
    }

    /// Pretty JSON for humans; the verifier does not depend on whitespace or key order.
    pub fn to_json_pretty(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Malformed {
            what: "proof bundle",
            detail: e.to_string(),
        })
    }
}

/// Parses one ledger line, refusing duplicate keys, unknown fields and digests that are
/// not 64 hex digits.
pub fn parse_ledger_entry(line: &[u8]) -> Result<LedgerEntry> {
    read_document(line, "ledger entry", &[])
}

/// Reads a document of kind `what` by the rules of PROOFS.md 2.3, in order: strict JSON
/// ([`canonical::parse_strict`]: `duplicate_key`, `unsafe_integer`, `malformed`); a
/// `format` member that is a string must be one of `formats` (unless that is empty),
/// since the format decides the shape (`unsupported_format`); then the shape (`malformed`,
/// or `bad_hash` naming a digest field that is not 64 hex digits).
pub(crate) fn read_document<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
    formats: &'static [&'static str],
) -> Result<T> {
    let v = canonical::parse_strict(bytes).map_err(|e| match e {
        Error::Malformed { detail, .. } => Error::Malformed { what, detail },
        other => other,
    })?;
    if let Some(found) = v.get("format").and_then(Value::as_str)
        && !formats.is_empty()
        && !formats.contains(&found)
    {
        return Err(Error::UnsupportedFormat {
            found: found.to_owned(),
            supported: formats,
        });
    }
    serde_json::from_value(v).map_err(|e| {
        let detail = e.to_string();
        match crate::digest::bad_hash(&detail) {
            Some((field, detail)) => Error::BadHash { field, detail },
            None => Error::Malformed { what, detail },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn receipt() -> EvmReceipt {
        EvmReceipt {
            chain_id: 31337,
            contract: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
            tx_hash: format!("0x{}", "ab".repeat(32)),
            block_number: 7,
            block_hash: format!("0x{}", "cd".repeat(32)),
            log_index: 0,
        }
    }

    #[test]
    fn evm_receipts_round_trip_and_bad_shapes_are_named() {
        let a = Anchor::Evm { receipt: receipt() };
        let json = serde_json::to_value(&a).expect("json");
        assert_eq!(json["backend"], "evm");
        let back: Anchor = serde_json::from_value(json.clone()).expect("parse");
        assert_eq!(back, a);
        receipt().check_shape().expect("valid");
        for (field, bad) in [
            ("contract", "5FbDB2315678afecb367f032d93F642f64180aa3"),
            ("contract", "0x5FbDB2315678afecb367f032d93F642f64180a"),
            ("tx_hash", "0xzz"),
            ("block_hash", ""),
        ] {
            let mut r = receipt();
            match field {
                "contract" => r.contract = bad.into(),
                "tx_hash" => r.tx_hash = bad.into(),
                _ => r.block_hash = bad.into(),
            }
            let e = r.check_shape().expect_err(bad).to_string();
            assert!(e.contains(field), "{e}");
        }
        // Unknown fields are refused (no field an auditor's tool would silently ignore).
        let mut j = json;
        j["receipt"]["extra"] = 1.into();
        assert!(serde_json::from_value::<Anchor>(j).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Arbitrary receipt fields never panic the shape check, and it accepts exactly
        /// `0x` plus the right number of hex digits.
        #[test]
        fn receipt_shape_check_is_exact(s in "(0x)?[0-9a-fA-Fg-z]{0,70}") {
            let mut r = receipt();
            r.tx_hash = s.clone();
            let valid = s.len() == 66 && s.starts_with("0x") && s[2..].bytes().all(|b| b.is_ascii_hexdigit());
            prop_assert_eq!(r.check_shape().is_ok(), valid);
        }
    }
}
