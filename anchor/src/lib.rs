//! # veritrace-anchor: sealing batches and anchoring epochs
//!
//! Sits between the processors and the queries. A processor hands a partition's accepted
//! events (as Arrow columns, with their leaf hashes) and its rejected records here; this
//! crate makes them durable and verifiable:
//!
//! 1. **Batch**: the Merkle root over the leaf hashes is computed ([`veritrace_verify::merkle`]),
//!    the events and the rejected records are written as Parquet atomically (temp file,
//!    fsync, rename, fsync of the directory), then a [`BatchHeader`] is appended to the
//!    partition's manifest. The manifest line is the commit point: input offsets may be
//!    committed only after [`BatchWriter::seal`] returns.
//! 2. **Epoch**: every few seconds the sealed batch headers not yet in an epoch form an
//!    epoch tree ([`EpochLog`]); its root is what gets anchored. Every runtime (in-process,
//!    Kafka, `veritrace anchor run`) drives this with the one [`epoch_loop`].
//! 3. **Anchor**: the embedded backend is [`LocalLedger`], an append-only, hash-chained
//!    file of Ed25519-signed entries, named `local` in every proof. The [`evm`] backend
//!    anchors each epoch root on an EVM chain with one transaction; its receipt goes into
//!    every proof of the epoch.
//!
//! Key decision: batch ids derive from the stream, partition and offsets, so re-sealing
//! the same input after a crash rewrites the same files instead of adding new ones.
#![deny(missing_docs)]

mod anchorer;
mod batch;
pub mod clock;
pub mod compact;
mod compaction_log;
pub mod delta;
mod epoch;
pub mod epoch_loop;
mod error;
pub mod evm;
mod fsutil;
pub mod integrity;
mod layout;
pub mod ledger;
mod lock;
pub mod log;
mod merge;
mod storage;
pub mod store;
pub mod tables;

pub use anchorer::{AnchoredEpoch, Anchorer, Backend, check_backend};
pub use batch::{BatchWriter, SealInput, batch_id};
pub use epoch::{EpochLog, EpochRecord, log_of_epochs};
pub use error::{ChainError, Error, Result};
pub use fsutil::{append_line_durable, read_jsonl, repair_torn_tail, write_atomic};
pub use layout::DataDir;
pub use ledger::{LedgerHead, LocalLedger};
pub use lock::DirLock;
pub use storage::{HeldLease, LEASE_TTL_MS, ObjectFile, ReadAt, Source};

/// The stream of the query servers' audit log (see `veritrace_processors::audit`): its
/// batches are sealed and anchored like any, read as the `audit` table (never as events),
/// and left out of compaction.
pub const AUDIT_STREAM: &str = "veritrace.audit";
pub use veritrace_verify::bundle::{BatchHeader, LedgerEntry};
