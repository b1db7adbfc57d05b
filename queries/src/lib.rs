//! # veritrace-queries: SQL, proofs and the HTTP API over a data directory
//!
//! The query stage. Apache DataFusion reads the sealed Parquet files in place and exposes
//! these tables:
//!
//! | table | one row per | source |
//! |---|---|---|
//! | `events` | accepted event (with batch id, leaf index, leaf hash, canonical JSON), less the events declared in error ([`corrections`]) | `compacted/*.parquet`, then `events/*.parquet` not compacted yet |
//! | `events_as_recorded` | every accepted event, also those declared in error | the same |
//! | `clone_suspects` | a serialised code seen in two places in an impossible time ([`clones`]) | a view over `events` |
//! | `code_lifecycle` | trace code: its lifecycle state (issued, commissioned, in use, sold, decommissioned, destroyed, recalled), since when and by which event ([`lifecycle`]) | a view over `events` |
//! | `rejected` | rejected input record (original bytes, reason code) | `rejected/*.parquet` |
//! | `batches` | sealed batch (root, previous root, offsets, epoch) | `batches/*.jsonl` |
//! | `epochs` | epoch (root, batch count, anchor status and receipt) | `epochs/`, `ledger/`, `anchors/` |
//! | `edges` | trace-graph edge (input -> what it went into, with the event) | `edges/*.parquet` |
//!
//! Table functions `trace_backward('<code>' [, depth])` and `trace_forward(...)` return
//! every event of a trace through the graph ([`trace`]); [`QueryEngine::trace`] is the
//! same for the CLI and HTTP.
//!
//! `GROUP BY` counts over low-cardinality string columns are answered from the Parquet
//! dictionary indices ([`dict_count`]).
//!
//! [`QueryEngine::proof`] assembles a proof bundle for any event from the same files; the
//! bundle format and the hashing live in `veritrace-verify`, shared with the auditor.
#![deny(missing_docs)]

pub mod access;
pub mod audit;
pub mod clones;
mod corrections;
mod damage;
pub mod dict_count;
mod engine;
pub mod epcis;
mod error;
mod events_table;
pub mod flight;
pub mod http;
pub mod lifecycle;
pub mod limits;
pub mod log;
mod lookup;
pub mod output;
mod proof;
pub mod resolver;
mod string_set;
pub mod trace;
pub mod visibility;

pub use engine::{QUERIES_REFUSED_TOTAL, QUERIES_RUNNING, QueryEngine, QueryOptions};
pub use error::{Error, Result};
pub use limits::QueryLimits;
pub use output::Format;
pub use proof::{Disclose, MAX_CERTIFICATE_ROWS};
