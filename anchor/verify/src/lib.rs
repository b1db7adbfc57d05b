//! # veritrace-verify: the auditor's verifier
//!
//! Everything an auditor needs to check a Veritrace proof bundle, and nothing else: no
//! database, no Kafka, no async runtime. The crate is small enough to read in one sitting
//! and compiles to WASM. The pipeline uses the very same functions to build what this crate
//! checks, so there is exactly one definition of each rule:
//!
//! - [`canonical`]: RFC 8785 (JCS) canonical JSON, the leaf preimage of every event.
//! - [`merkle`]: RFC 6962 / RFC 9162 hashing (`leaf = SHA-256(0x00 || bytes)`,
//!   `node = SHA-256(0x01 || left || right)`), tree roots, audit paths and their verification.
//! - [`logtree`]: the growing log over every batch header, kept as its complete subtrees
//!   (C2SP tlog-tiles): roots, inclusion and consistency proofs of any earlier size.
//! - [`receipt`]: COSE Receipts (RFC 9942, RFC 9162_SHA256) of an event's batch in the
//!   log, for SCITT tools.
//! - [`bundle`]: the versioned proof bundle format, the batch header and the local ledger entry.
//! - [`verify`]: recomputes every hash of a bundle and reports what it checked.
//! - [`certificate`]: a whole trace (its nodes and every event with its proof, shared
//!   batch and epoch parts) as one document, verified event by event.
//! - [`report`]: one document verified and rendered as the auditor's verdict (text or
//!   JSON): the `veritrace-verify` binary and `veritrace verify` print it.
//! - [`signature`]: signed statements (COSE_Sign1 and JWS; ES256 and EdDSA): parse, verify,
//!   sign.
//! - [`registry`]: the identity registry (participants, devices, key rotations and
//!   revocations) derived from its signed records; who could sign for a device when.
//! - `chain` (feature `rpc`): reads an EVM receipt's root back from the contract.
//!
//! Key decision: a proof is two-level. An event's leaf proves into its batch root (one
//! batch per partition and offset range); the batch header proves into the epoch root; the
//! epoch root is what the anchor (local signed ledger, or a chain) witnesses.
#![deny(missing_docs)]

pub mod bundle;
pub mod bundle_sig;
pub mod canonical;
pub mod certificate;
pub mod checkpoint;
pub mod digsig;
pub mod logtree;
pub mod merkle;
pub mod private;
pub mod receipt;
pub mod registry;
pub mod report;
pub mod rows;
pub mod signature;
pub mod verify;

#[cfg(feature = "rpc")]
pub mod chain;

mod digest;
mod error;
mod jcs_ser;
mod jcs_text;

pub use digest::Digest;
pub use error::{Error, Result};
