//! The metrics the processing stages update (`veritrace process`).

use prometheus::{
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};

use crate::{
    ACCEPTED, ANCHOR_FAILURES, ANCHOR_GAS, ANCHOR_REORGS, ANCHOR_SECONDS, ASSIGNED, BATCHES,
    CLONE_SIGHTINGS, COMMIT_FAILURES, COMMITTED, CONSUMED, DEDUPE_IDS_IN_MEMORY,
    DEDUPE_MEMORY_BYTES, DEDUPE_RUN_FAILURES, DEDUPE_RUN_IDS, DEDUPE_RUNS, DUPLICATES, EPOCHS,
    EVENT_TO_SEALED_SECONDS, LAG, PENDING_BATCHES, PENDING_EPOCHS, POLL_LOOP_TIMESTAMP, REBALANCES,
    REJECTED, REJECTED_PUBLISHED, SEAL_SECONDS, counter, counter_vec, gauge, gauge_vec, histogram,
    histogram_vec,
};

/// Buckets of the seal and event-to-sealed latencies, in seconds.
pub const LATENCY_BUCKETS: [f64; 18] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
    60.0,
];

/// Buckets of the anchor latency, in seconds (a chain may take an hour of confirmations).
const ANCHOR_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
];

/// The processor's metrics, registered in one registry. Each field is the catalog entry of
/// the same name in upper case (see [`crate::CATALOG`]).
#[derive(Debug, Clone)]
pub struct ProcessorMetrics {
    /// [`crate::CONSUMED`].
    pub consumed: IntCounter,
    /// [`crate::ACCEPTED`].
    pub accepted: IntCounter,
    /// [`crate::REJECTED`].
    pub rejected: IntCounterVec,
    /// [`crate::DUPLICATES`].
    pub duplicates: IntCounter,
    /// [`crate::REJECTED_PUBLISHED`].
    pub rejected_published: IntCounter,
    /// [`crate::BATCHES`].
    pub batches: IntCounter,
    /// [`crate::SEAL_SECONDS`].
    pub seal_seconds: Histogram,
    /// [`crate::EVENT_TO_SEALED_SECONDS`].
    pub event_to_sealed: HistogramVec,
    /// [`crate::LAG`].
    pub lag: IntGaugeVec,
    /// [`crate::COMMITTED`].
    pub committed: IntGaugeVec,
    /// [`crate::ASSIGNED`].
    pub assigned: IntGauge,
    /// [`crate::REBALANCES`].
    pub rebalances: IntCounterVec,
    /// [`crate::EPOCHS`].
    pub epochs: IntCounter,
    /// [`crate::PENDING_BATCHES`].
    pub pending_batches: IntGauge,
    /// [`crate::COMMIT_FAILURES`].
    pub commit_failures: IntCounter,
    /// [`crate::PENDING_EPOCHS`].
    pub unanchored_epochs: IntGauge,
    /// [`crate::ANCHOR_SECONDS`].
    pub anchor_seconds: Histogram,
    /// [`crate::ANCHOR_GAS`].
    pub anchor_gas: IntCounter,
    /// [`crate::ANCHOR_FAILURES`].
    pub anchor_failures: IntCounter,
    /// [`crate::ANCHOR_REORGS`].
    pub anchor_reorgs: IntCounter,
    /// [`crate::POLL_LOOP_TIMESTAMP`].
    pub poll_loop_timestamp: IntGauge,
    /// [`crate::CLONE_SIGHTINGS`].
    pub clone_sightings: IntCounter,
    /// [`crate::DEDUPE_IDS_IN_MEMORY`].
    pub dedupe_ids_in_memory: IntGaugeVec,
    /// [`crate::DEDUPE_RUN_IDS`].
    pub dedupe_run_ids: IntGaugeVec,
    /// [`crate::DEDUPE_RUNS`].
    pub dedupe_runs: IntGaugeVec,
    /// [`crate::DEDUPE_MEMORY_BYTES`].
    pub dedupe_memory_bytes: IntGaugeVec,
    /// [`crate::DEDUPE_RUN_FAILURES`].
    pub dedupe_run_failures: IntCounter,
}

impl ProcessorMetrics {
    /// Registers every processor metric in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = registry;
        Ok(ProcessorMetrics {
            consumed: counter(r, &CONSUMED)?,
            accepted: counter(r, &ACCEPTED)?,
            rejected: counter_vec(r, &REJECTED)?,
            duplicates: counter(r, &DUPLICATES)?,
            rejected_published: counter(r, &REJECTED_PUBLISHED)?,
            batches: counter(r, &BATCHES)?,
            seal_seconds: histogram(r, &SEAL_SECONDS, &LATENCY_BUCKETS)?,
            event_to_sealed: histogram_vec(r, &EVENT_TO_SEALED_SECONDS, Some(&LATENCY_BUCKETS))?,
            lag: gauge_vec(r, &LAG)?,
            committed: gauge_vec(r, &COMMITTED)?,
            assigned: gauge(r, &ASSIGNED)?,
            rebalances: counter_vec(r, &REBALANCES)?,
            epochs: counter(r, &EPOCHS)?,
            pending_batches: gauge(r, &PENDING_BATCHES)?,
            commit_failures: counter(r, &COMMIT_FAILURES)?,
            unanchored_epochs: gauge(r, &PENDING_EPOCHS)?,
            anchor_seconds: histogram(r, &ANCHOR_SECONDS, &ANCHOR_BUCKETS)?,
            anchor_gas: counter(r, &ANCHOR_GAS)?,
            anchor_failures: counter(r, &ANCHOR_FAILURES)?,
            anchor_reorgs: counter(r, &ANCHOR_REORGS)?,
            poll_loop_timestamp: gauge(r, &POLL_LOOP_TIMESTAMP)?,
            clone_sightings: counter(r, &CLONE_SIGHTINGS)?,
            dedupe_ids_in_memory: gauge_vec(r, &DEDUPE_IDS_IN_MEMORY)?,
            dedupe_run_ids: gauge_vec(r, &DEDUPE_RUN_IDS)?,
            dedupe_runs: gauge_vec(r, &DEDUPE_RUNS)?,
            dedupe_memory_bytes: gauge_vec(r, &DEDUPE_MEMORY_BYTES)?,
            dedupe_run_failures: counter(r, &DEDUPE_RUN_FAILURES)?,
        })
    }
}

impl ProcessorMetrics {
    /// Drops the series of a partition this process no longer owns: its lag and what its
    /// dedupe index held (the committed offset stays: it is the group's, not the owner's).
    pub fn forget_partition(&self, topic: &str, partition: i32) {
        let labels = [topic, &partition.to_string()];
        for g in [
            &self.lag,
            &self.dedupe_ids_in_memory,
            &self.dedupe_run_ids,
            &self.dedupe_runs,
            &self.dedupe_memory_bytes,
        ] {
            g.remove_label_values(&labels).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_processor_metric_is_in_the_catalog() {
        let r = Registry::new();
        let m = ProcessorMetrics::new(&r).expect("register");
        m.rejected.with_label_values(&["malformed_json"]).inc();
        m.event_to_sealed.with_label_values(&["raw"]).observe(0.1);
        m.lag.with_label_values(&["raw", "0"]).set(1);
        m.committed.with_label_values(&["raw", "0"]).set(1);
        for g in [
            &m.dedupe_ids_in_memory,
            &m.dedupe_run_ids,
            &m.dedupe_runs,
            &m.dedupe_memory_bytes,
        ] {
            g.with_label_values(&["raw", "0"]).set(1);
        }
        m.rebalances.with_label_values(&["assign"]).inc();
        assert_eq!(crate::off_catalog(&r), Vec::<String>::new());
        assert_eq!(r.gather().len(), 27, "every family is exported");
    }
}
