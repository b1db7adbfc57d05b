//! # veritrace-queries: SQL, proofs and the HTTP API over a data directory
//!
//! The query stage. Apache DataFusion reads the sealed Parquet files in place and exposes
//! four tables:
//!
//! | table | one row per | source |
//! |---|---|---|
//! | `events` | accepted event (with batch id, leaf index, leaf hash, canonical JSON) | `events/*.parquet` |
//! | `rejected` | rejected input record (original bytes, reason code) | `rejected/*.parquet` |
//! | `batches` | sealed batch (root, previous root, offsets, epoch) | `batches/*.jsonl` |
//! | `epochs` | epoch (root, batch count, anchor status and receipt) | `epochs/`, `ledger/` |
//!
//! [`QueryEngine::proof`] assembles a proof bundle for any event from the same files; the
//! bundle format and the hashing live in `veritrace-verify`, shared with the auditor.
#![deny(missing_docs)]

mod engine;
mod error;
pub mod http;
pub mod output;
mod proof;

pub use engine::QueryEngine;
pub use error::{Error, Result};
pub use output::Format;
