//! # veritrace: the command-line front end
//!
//! Thin glue over the pipeline crates: `demo` (the whole pipeline on embedded defaults),
//! `ingest file` (JSON lines, arrays or mapped CSV, embedded or to Kafka), `process` (the
//! Kafka consumer group), `topics create`, `sql`, `proof`, `verify` and `serve`. See the README for the user guides.

pub mod cli;
pub mod codes_cmd;
pub mod config;
pub mod demo;
pub mod gateway_cmd;
pub mod monitor_cmd;
pub mod mqtt_cmd;
pub mod process;
pub mod recall;
pub mod registry_cmd;
pub mod rt;
pub mod signing;
pub mod tokens_cmd;
pub mod types_cmd;
pub mod witness_cmd;
