//! # veritrace-ingest: getting records into the pipeline
//!
//! The first stage. Records reach the processors as `(key, bytes)`: the key is the trace
//! code (so one object's events stay in order on one partition), the bytes are the event
//! as the source wrote it. This crate holds the sources that are not a plain Kafka
//! producer; today that is [`simulate`], a deterministic factory simulator used by the
//! demo, the tests and the benchmarks.
#![deny(missing_docs)]

pub mod simulate;
