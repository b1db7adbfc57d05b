//! Prometheus metrics of `veritrace process`.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::Result;

/// Metric names, so dashboards and tests refer to one spelling.
pub mod names {
    /// Records read from Kafka (including ones later rejected).
    pub const CONSUMED: &str = "veritrace_consumed_records_total";
    /// Events accepted into batches.
    pub const ACCEPTED: &str = "veritrace_accepted_events_total";
    /// Records rejected, by reason code.
    pub const REJECTED: &str = "veritrace_rejected_records_total";
    /// Event ids seen again (also counted under `rejected{reason="duplicate_event_id"}`).
    pub const DUPLICATES: &str = "veritrace_duplicate_events_total";
    /// Rejected records delivered to the rejected topic.
    pub const REJECTED_PUBLISHED: &str = "veritrace_rejected_published_total";
    /// Batches sealed.
    pub const BATCHES: &str = "veritrace_batches_sealed_total";
    /// Time to seal one batch (Parquet + manifest, durable).
    pub const SEAL_SECONDS: &str = "veritrace_batch_seal_seconds";
    /// Time from a record's Kafka timestamp to its batch being durable.
    pub const EVENT_TO_SEALED_SECONDS: &str = "veritrace_event_to_sealed_seconds";
    /// Records between the partition's high watermark and the processor's position.
    pub const LAG: &str = "veritrace_consumer_lag";
    /// Last offset committed to the consumer group (the next offset to read).
    pub const COMMITTED: &str = "veritrace_committed_offset";
    /// Partitions this process owns.
    pub const ASSIGNED: &str = "veritrace_assigned_partitions";
    /// Rebalances seen (assignments and revocations).
    pub const REBALANCES: &str = "veritrace_rebalances_total";
    /// Epochs anchored by this process.
    pub const EPOCHS: &str = "veritrace_epochs_anchored_total";
    /// Sealed batches not yet in an epoch (when this process is the anchorer).
    pub const PENDING_BATCHES: &str = "veritrace_pending_batches";
    /// Offset commits that failed (the data is durable; the next commit supersedes it).
    pub const COMMIT_FAILURES: &str = "veritrace_commit_failures_total";
    /// Sealed epochs the anchor backend has not anchored yet (when this process anchors).
    pub const PENDING_EPOCHS: &str = "veritrace_anchor_pending_epochs";
    /// Time from an epoch's seal to its anchor (chain confirmations included).
    pub const ANCHOR_SECONDS: &str = "veritrace_anchor_latency_seconds";
    /// Gas used by anchoring transactions (EVM backend).
    pub const ANCHOR_GAS: &str = "veritrace_anchor_gas_used_total";
    /// Chain polls that failed (RPC down, refused or reverted transaction, fees over the limit).
    pub const ANCHOR_FAILURES: &str = "veritrace_anchor_failures_total";
    /// Reorgs that removed an anchored epoch's block (the epoch is anchored again).
    pub const ANCHOR_REORGS: &str = "veritrace_anchor_reorgs_total";
}

/// The processor's metrics, registered in one registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// See [`names::CONSUMED`].
    pub consumed: IntCounter,
    /// See [`names::ACCEPTED`].
    pub accepted: IntCounter,
    /// See [`names::REJECTED`].
    pub rejected: IntCounterVec,
    /// See [`names::DUPLICATES`].
    pub duplicates: IntCounter,
    /// See [`names::REJECTED_PUBLISHED`].
    pub rejected_published: IntCounter,
    /// See [`names::BATCHES`].
    pub batches: IntCounter,
    /// See [`names::SEAL_SECONDS`].
    pub seal_seconds: Histogram,
    /// See [`names::EVENT_TO_SEALED_SECONDS`].
    pub event_to_sealed: HistogramVec,
    /// See [`names::LAG`].
    pub lag: IntGaugeVec,
    /// See [`names::COMMITTED`].
    pub committed: IntGaugeVec,
    /// See [`names::ASSIGNED`].
    pub assigned: IntGauge,
    /// See [`names::REBALANCES`].
    pub rebalances: IntCounterVec,
    /// See [`names::EPOCHS`].
    pub epochs: IntCounter,
    /// See [`names::PENDING_BATCHES`].
    pub pending_batches: IntGauge,
    /// See [`names::COMMIT_FAILURES`].
    pub commit_failures: IntCounter,
    /// See [`names::PENDING_EPOCHS`].
    pub unanchored_epochs: IntGauge,
    /// See [`names::ANCHOR_SECONDS`].
    pub anchor_seconds: Histogram,
    /// See [`names::ANCHOR_GAS`].
    pub anchor_gas: IntCounter,
    /// See [`names::ANCHOR_FAILURES`].
    pub anchor_failures: IntCounter,
    /// See [`names::ANCHOR_REORGS`].
    pub anchor_reorgs: IntCounter,
}

const LATENCY_BUCKETS: [f64; 18] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
    60.0,
];

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self> {
        let e = |e: prometheus::Error| crate::Error::Invalid(format!("metrics: {e}"));
        let counter = |name: &str, help: &str| -> Result<IntCounter> {
            let c = IntCounter::new(name, help).map_err(e)?;
            registry.register(Box::new(c.clone())).map_err(e)?;
            Ok(c)
        };
        let part = ["topic", "partition"];
        let m = Metrics {
            consumed: counter(names::CONSUMED, "Records read from Kafka")?,
            accepted: counter(names::ACCEPTED, "Events accepted into batches")?,
            rejected: IntCounterVec::new(
                Opts::new(names::REJECTED, "Records rejected, by reason code"),
                &["reason"],
            )
            .map_err(e)?,
            duplicates: counter(names::DUPLICATES, "Event ids delivered more than once")?,
            rejected_published: counter(
                names::REJECTED_PUBLISHED,
                "Rejected records delivered to the rejected topic",
            )?,
            batches: counter(names::BATCHES, "Batches sealed")?,
            seal_seconds: Histogram::with_opts(
                HistogramOpts::new(names::SEAL_SECONDS, "Time to seal one batch durably")
                    .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .map_err(e)?,
            event_to_sealed: HistogramVec::new(
                HistogramOpts::new(
                    names::EVENT_TO_SEALED_SECONDS,
                    "Time from a record's Kafka timestamp to its batch being durable",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["topic"],
            )
            .map_err(e)?,
            lag: IntGaugeVec::new(
                Opts::new(
                    names::LAG,
                    "Records between the high watermark and the processor's position",
                ),
                &part,
            )
            .map_err(e)?,
            committed: IntGaugeVec::new(
                Opts::new(
                    names::COMMITTED,
                    "Next offset to read, as last committed to the consumer group",
                ),
                &part,
            )
            .map_err(e)?,
            assigned: IntGauge::new(names::ASSIGNED, "Partitions owned by this process")
                .map_err(e)?,
            rebalances: IntCounterVec::new(
                Opts::new(names::REBALANCES, "Rebalance callbacks, by kind"),
                &["kind"],
            )
            .map_err(e)?,
            epochs: counter(names::EPOCHS, "Epochs anchored by this process")?,
            pending_batches: IntGauge::new(
                names::PENDING_BATCHES,
                "Sealed batches not yet in an epoch",
            )
            .map_err(e)?,
            commit_failures: counter(names::COMMIT_FAILURES, "Offset commits that failed")?,
            unanchored_epochs: IntGauge::new(
                names::PENDING_EPOCHS,
                "Sealed epochs not yet anchored by the backend",
            )
            .map_err(e)?,
            anchor_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    names::ANCHOR_SECONDS,
                    "Time from an epoch's seal to its anchor, confirmations included",
                )
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
                    3600.0,
                ]),
            )
            .map_err(e)?,
            anchor_gas: counter(names::ANCHOR_GAS, "Gas used by anchoring transactions")?,
            anchor_failures: counter(
                names::ANCHOR_FAILURES,
                "Chain polls that failed; anchoring retries with backoff",
            )?,
            anchor_reorgs: counter(
                names::ANCHOR_REORGS,
                "Reorgs that removed an anchored epoch's block",
            )?,
        };
        for c in [
            Box::new(m.rejected.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.seal_seconds.clone()),
            Box::new(m.event_to_sealed.clone()),
            Box::new(m.lag.clone()),
            Box::new(m.committed.clone()),
            Box::new(m.assigned.clone()),
            Box::new(m.rebalances.clone()),
            Box::new(m.pending_batches.clone()),
            Box::new(m.unanchored_epochs.clone()),
            Box::new(m.anchor_seconds.clone()),
        ] {
            registry.register(c).map_err(e)?;
        }
        Ok(m)
    }
}
