//! # veritrace: the command-line front end
//!
//! Thin glue over the pipeline crates: `demo` (the whole pipeline on embedded defaults),
//! `ingest file` (JSON lines through the same processors), `sql`, `proof`, `verify` and
//! `serve`. See the README for the user guides.

pub mod cli;
pub mod config;
pub mod demo;
