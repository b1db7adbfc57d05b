//! # veritrace-ingest: getting records into the pipeline
//!
//! The first stage. Records reach the processors as `(key, bytes)`: the key is the trace
//! code (so one object's events stay in order on one partition), the bytes are the event
//! as the source wrote it. This crate holds the sources that are not a plain Kafka
//! producer: [`file`] reads JSON lines, JSON arrays, mapped ERP CSV exports and COSE
//! sequences, [`kafka`] publishes records to `veritrace.raw`, and [`gateway`] takes them
//! over HTTP (`POST /v1/ingest`) for devices and connectors that do not speak Kafka. Simulated records for the demo, the tests and the
//! benchmarks come from `veritrace-simulator` (`loadtest/simulator/`).
#![deny(missing_docs)]

pub mod devices;
pub mod epcis;
pub mod file;
pub mod gateway;
pub mod kafka;
pub mod mqtt;

pub use file::key_of;
