//! # veritrace-loadtest: load generation and end-to-end measurements
//!
//! Drives the real pipeline with the factory simulator and reports what it measured. The
//! criterion benches in `benches/` measure each stage on its own (parse + validate,
//! canonicalise + leaf hash, Merkle build, Parquet write) and the whole in-process
//! pipeline; the `veritrace-loadtest` binary runs larger end-to-end loads.
#![deny(missing_docs)]

pub mod cluster;
pub mod evm;
pub mod genealogy;
pub mod kafka;
pub mod traces;

use std::sync::Arc;
use std::time::{Duration, Instant};

use veritrace_anchor::DataDir;
use veritrace_processors::BatchPolicy;
use veritrace_processors::runtime::{self, RunReport, RuntimeConfig};
use veritrace_simulator::{SimConfig, Simulator};

/// The raw topic.
pub const RAW_TOPIC: &str = veritrace_processors::kafka::RAW_TOPIC;

/// A pre-generated workload: records in memory so generation is not measured.
#[derive(Debug)]
pub struct Workload {
    /// `(key, payload)` records.
    pub records: Vec<(Option<Vec<u8>>, Vec<u8>)>,
    /// Total payload bytes.
    pub bytes: u64,
}

/// Generates `n` simulator records with the given seed.
pub fn workload(n: u64, seed: u64) -> Workload {
    let records: Vec<(Option<Vec<u8>>, Vec<u8>)> = Simulator::new(SimConfig {
        events: n,
        seed,
        ..SimConfig::default()
    })
    .map(|r| (Some(r.key), r.payload))
    .collect();
    let bytes = records.iter().map(|r| r.1.len() as u64).sum();
    Workload { records, bytes }
}

/// Runs a workload through the in-process pipeline into a fresh temporary directory.
pub fn run_pipeline(
    w: &Workload,
    partitions: u32,
    batch_size: usize,
) -> anyhow::Result<(RunReport, Duration)> {
    let tmp = tempfile::tempdir()?;
    let dir = DataDir::create(tmp.path())?;
    let cfg = RuntimeConfig {
        stream: "load".into(),
        partitions,
        policy: BatchPolicy {
            max_records: batch_size,
            max_age: Duration::from_secs(3600),
            ..BatchPolicy::default()
        },
        epoch_interval: Duration::from_secs(1),
        ..RuntimeConfig::default()
    };
    let start = Instant::now();
    let report = runtime::run(&dir, &cfg, w.records.iter().cloned(), Arc::default())?;
    Ok((report, start.elapsed()))
}
