//! # veritrace-metrics: one metric vocabulary, one operations endpoint
//!
//! Every metric any Veritrace runtime exports (the Kafka processor, the in-process demo,
//! the query server) is written once here, in [`CATALOG`]: name, type, unit, labels and
//! help, the way Vector's component specification lists what each component emits. The
//! runtimes register their metrics from these entries ([`counter`], [`gauge`],
//! [`histogram`] and their labelled forms), so a dashboard built on one runtime shows the
//! same series on the others. `deploy/METRICS.md` is generated from the catalog
//! ([`markdown`]; a test keeps it in step).
//!
//! [`ProcessorMetrics`] is the set the processing stages update; [`ops_router`] serves
//! `GET /metrics` and `GET /healthz` for a process that serves nothing else
//! (`veritrace process`). No DataFusion, no Kafka: only prometheus and axum.
#![deny(missing_docs)]

mod processor;
mod serve;

pub use processor::{LATENCY_BUCKETS, ProcessorMetrics};
pub use serve::{Health, HealthCheck, error_response, ops_router, render, serve};

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// What a metric measures over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (restarts at zero with the process).
    Counter,
    /// A value now.
    Gauge,
    /// A distribution (`_bucket`, `_sum`, `_count`).
    Histogram,
}

impl Kind {
    /// The Prometheus type name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric of the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The metric's name (`veritrace_...`).
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// What one unit is (`records`, `seconds`, ...).
    pub unit: &'static str,
    /// Its label names, in order.
    pub labels: &'static [&'static str],
    /// What it counts or measures.
    pub help: &'static str,
    /// The runtimes that export it.
    pub runtimes: &'static str,
}

const PROCESS: &str = "process, demo";
const PROCESS_ONLY: &str = "process";
const SERVE: &str = "serve, demo";
const GATEWAY: &str = "gateway";
const MQTT: &str = "mqtt-bridge";
const MONITOR: &str = "monitor";

macro_rules! specs {
    ($($id:ident = $name:literal, $kind:ident, $unit:literal, [$($l:literal),*], $rt:expr, $help:literal;)*) => {
        $(
            #[doc = concat!("`", $name, "`: ", $help)]
            pub const $id: Spec = Spec {
                name: $name,
                kind: Kind::$kind,
                unit: $unit,
                labels: &[$($l),*],
                help: $help,
                runtimes: $rt,
            };
        )*
        /// Every metric, in the order of `deploy/METRICS.md`.
        pub const CATALOG: &[Spec] = &[$($id),*];
    };
}

specs! {
    CONSUMED = "veritrace_consumed_records_total", Counter, "records", [], PROCESS,
        "Records read from the input (Kafka, or the demo's generator)";
    ACCEPTED = "veritrace_accepted_events_total", Counter, "events", [], PROCESS,
        "Events accepted into batches";
    REJECTED = "veritrace_rejected_records_total", Counter, "records", ["reason"], PROCESS,
        "Records rejected, by reason code";
    DUPLICATES = "veritrace_duplicate_events_total", Counter, "events", [], PROCESS,
        "Event ids delivered more than once (kept once)";
    CLONE_SIGHTINGS = "veritrace_clone_sightings_total", Counter, "events", [], PROCESS,
        "Accepted events that place a serialised code too far from its last sighting to be one object (over 50 km at over 1,000 km/h: a copied code; the clone_suspects table lists the pairs)";
    REJECTED_PUBLISHED = "veritrace_rejected_published_total", Counter, "records", [], PROCESS_ONLY,
        "Rejected records delivered to the rejected topic";
    BATCHES = "veritrace_batches_sealed_total", Counter, "batches", [], PROCESS,
        "Batches sealed";
    SEAL_SECONDS = "veritrace_batch_seal_seconds", Histogram, "seconds", [], PROCESS_ONLY,
        "Time to seal one batch durably";
    EVENT_TO_SEALED_SECONDS = "veritrace_event_to_sealed_seconds", Histogram, "seconds", ["topic"], PROCESS_ONLY,
        "Time from a record's Kafka timestamp to its batch being durable";
    LAG = "veritrace_consumer_lag", Gauge, "records", ["topic", "partition"], PROCESS_ONLY,
        "Records between the high watermark and the processor's position";
    COMMITTED = "veritrace_committed_offset", Gauge, "offset", ["topic", "partition"], PROCESS_ONLY,
        "Next offset to read, as last committed to the consumer group";
    ASSIGNED = "veritrace_assigned_partitions", Gauge, "partitions", [], PROCESS_ONLY,
        "Partitions owned by this process";
    REBALANCES = "veritrace_rebalances_total", Counter, "rebalances", ["kind"], PROCESS_ONLY,
        "Rebalance callbacks, by kind (assign, revoke, error), and partitions lost to another process (lost)";
    EPOCHS = "veritrace_epochs_anchored_total", Counter, "epochs", [], PROCESS,
        "Epochs anchored by this process";
    PENDING_BATCHES = "veritrace_pending_batches", Gauge, "batches", [], PROCESS_ONLY,
        "Sealed batches not yet in an epoch";
    COMMIT_FAILURES = "veritrace_commit_failures_total", Counter, "commits", [], PROCESS_ONLY,
        "Offset commits that failed";
    PENDING_EPOCHS = "veritrace_anchor_pending_epochs", Gauge, "epochs", [], PROCESS_ONLY,
        "Sealed epochs not yet anchored by the backend";
    ANCHOR_SECONDS = "veritrace_anchor_latency_seconds", Histogram, "seconds", [], PROCESS_ONLY,
        "Time from an epoch's seal to its anchor, confirmations included";
    ANCHOR_GAS = "veritrace_anchor_gas_used_total", Counter, "gas", [], PROCESS_ONLY,
        "Gas used by anchoring transactions";
    ANCHOR_FAILURES = "veritrace_anchor_failures_total", Counter, "polls", [], PROCESS_ONLY,
        "Chain polls that failed; anchoring retries with backoff";
    ANCHOR_REORGS = "veritrace_anchor_reorgs_total", Counter, "reorgs", [], PROCESS_ONLY,
        "Reorgs that removed an anchored epoch's block";
    HTTP_REQUESTS = "veritrace_queries_http_requests_total", Counter, "requests", ["route", "status"], SERVE,
        "HTTP requests by route and status";
    HTTP_REQUEST_SECONDS = "veritrace_queries_http_request_seconds", Histogram, "seconds", ["route"], SERVE,
        "HTTP request latency by route";
    QUERIES_RUNNING = "veritrace_queries_running", Gauge, "queries", [], SERVE,
        "Queries running now on the query runtime";
    AUDIT_ENTRIES = "veritrace_audit_entries_total", Counter, "entries", ["outcome"], SERVE,
        "Audit log entries by outcome (sealed, rejected, failed, refused)";
    GATEWAY_REQUESTS = "veritrace_gateway_requests_total", Counter, "requests", ["route", "status"], GATEWAY,
        "Gateway HTTP requests by route and status";
    GATEWAY_REQUEST_SECONDS = "veritrace_gateway_request_seconds", Histogram, "seconds", ["route"], GATEWAY,
        "Gateway request latency by route, Kafka acknowledgement included";
    GATEWAY_RECORDS = "veritrace_gateway_records_total", Counter, "records", ["outcome"], GATEWAY,
        "Gateway records by outcome (published, refused, rate_limited, backpressure, failed)";
    MQTT_RECEIVED = "veritrace_mqtt_received_total", Counter, "messages", [], MQTT,
        "MQTT messages received by the bridge";
    MQTT_PUBLISHED = "veritrace_mqtt_published_total", Counter, "messages", [], MQTT,
        "MQTT messages acknowledged by Kafka, then to the MQTT broker";
    MQTT_RETRIES = "veritrace_mqtt_kafka_retries_total", Counter, "attempts", [], MQTT,
        "Kafka publish attempts the bridge retried (the MQTT message stays unacknowledged)";
    MQTT_CONNECTED = "veritrace_mqtt_connected", Gauge, "boolean", [], MQTT,
        "1 while the bridge is connected to the MQTT broker";
    MQTT_REFUSED = "veritrace_mqtt_refused_total", Counter, "messages", [], MQTT,
        "MQTT messages refused by their topic's device binding (sent to the rejected topic with the reason)";
    DEDUPE_IDS_IN_MEMORY = "veritrace_dedupe_ids_in_memory", Gauge, "ids", ["topic", "partition"], PROCESS_ONLY,
        "Event ids a partition holds in memory to catch duplicates (up to pipeline.dedupe-memory-ids, twice that while a run is written)";
    DEDUPE_RUN_IDS = "veritrace_dedupe_run_ids", Gauge, "ids", ["topic", "partition"], PROCESS_ONLY,
        "Event ids a partition holds in dedupe runs on local disk (16 bytes each)";
    DEDUPE_RUNS = "veritrace_dedupe_runs", Gauge, "files", ["topic", "partition"], PROCESS_ONLY,
        "Dedupe run files of a partition (about log2 of its ids over the memory bound)";
    DEDUPE_MEMORY_BYTES = "veritrace_dedupe_memory_bytes", Gauge, "bytes", ["topic", "partition"], PROCESS_ONLY,
        "Memory a partition's dedupe index holds: hash tables as allocated, the runs' filters (2 bytes an id) and sparse keys";
    DEDUPE_RUN_FAILURES = "veritrace_dedupe_run_failures_total", Counter, "runs", [], PROCESS_ONLY,
        "Dedupe runs that could not be written or merged (the ids stay in memory and a later seal tries again; a full or failing scratch disk)";
    POLL_LOOP_TIMESTAMP = "veritrace_poll_loop_timestamp_seconds", Gauge, "seconds", [], PROCESS_ONLY,
        "Unix time the Kafka poll loop last turned (GET /livez fails when it stalls for 5 minutes)";
    DAMAGED_FILES = "veritrace_damaged_files", Gauge, "files", [], SERVE,
        "Committed files found damaged or missing (GET /readyz answers 503 while any are; `veritrace check` reports them)";
    MONITOR_ALARMS = "veritrace_monitor_alarms_total", Counter, "alarms", ["kind"], MONITOR,
        "Alarms raised by the log monitor, by kind (rollback, split_view, inconsistent, bad_signature, bad_entry, gap, missing_anchor, bad_anchor)";
    MONITOR_LOG_SIZE = "veritrace_monitor_verified_log_size", Gauge, "leaves", [], MONITOR,
        "Size of the last checkpoint the log monitor verified (consistent with every earlier one, entries checked)";
    MONITOR_CHECKED = "veritrace_monitor_last_check_timestamp_seconds", Gauge, "seconds", [], MONITOR,
        "Unix time of the log monitor's last completed round (a stale value: the node is unreachable)";
    QUERIES_REFUSED = "veritrace_queries_refused_total", Counter, "queries", ["reason"], SERVE,
        "Queries refused or stopped, by reason (statement_too_complex, query_timeout, server_busy, query_memory_exceeded, cancelled)";
}

/// Looks a metric up by name.
pub fn spec(name: &str) -> Option<&'static Spec> {
    CATALOG.iter().find(|s| s.name == name)
}

fn expect(spec: &Spec, kind: Kind, labelled: bool) -> prometheus::Result<()> {
    if spec.kind != kind || spec.labels.is_empty() == labelled {
        return Err(prometheus::Error::Msg(format!(
            "{} is a {}{} in the catalog",
            spec.name,
            spec.kind.as_str(),
            if spec.labels.is_empty() {
                ""
            } else {
                " with labels"
            }
        )));
    }
    Ok(())
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> prometheus::Result<C> {
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

/// The name and help of `spec`, for a metric registered later (or in another registry).
pub fn opts(spec: &Spec) -> Opts {
    Opts::new(spec.name, spec.help)
}

/// Registers the counter `spec` (which has no labels).
pub fn counter(registry: &Registry, spec: &Spec) -> prometheus::Result<IntCounter> {
    expect(spec, Kind::Counter, false)?;
    register(registry, IntCounter::new(spec.name, spec.help)?)
}

/// Registers the labelled counter `spec`.
pub fn counter_vec(registry: &Registry, spec: &Spec) -> prometheus::Result<IntCounterVec> {
    expect(spec, Kind::Counter, true)?;
    register(
        registry,
        IntCounterVec::new(Opts::new(spec.name, spec.help), spec.labels)?,
    )
}

/// Registers the gauge `spec` (which has no labels).
pub fn gauge(registry: &Registry, spec: &Spec) -> prometheus::Result<IntGauge> {
    expect(spec, Kind::Gauge, false)?;
    register(registry, IntGauge::new(spec.name, spec.help)?)
}

/// Registers the labelled gauge `spec`.
pub fn gauge_vec(registry: &Registry, spec: &Spec) -> prometheus::Result<IntGaugeVec> {
    expect(spec, Kind::Gauge, true)?;
    register(
        registry,
        IntGaugeVec::new(Opts::new(spec.name, spec.help), spec.labels)?,
    )
}

/// Registers the histogram `spec` (no labels) with `buckets` (upper bounds, in its unit).
pub fn histogram(
    registry: &Registry,
    spec: &Spec,
    buckets: &[f64],
) -> prometheus::Result<Histogram> {
    expect(spec, Kind::Histogram, false)?;
    register(
        registry,
        Histogram::with_opts(HistogramOpts::new(spec.name, spec.help).buckets(buckets.to_vec()))?,
    )
}

/// Registers the labelled histogram `spec` with `buckets`, or prometheus' default buckets.
pub fn histogram_vec(
    registry: &Registry,
    spec: &Spec,
    buckets: Option<&[f64]>,
) -> prometheus::Result<HistogramVec> {
    expect(spec, Kind::Histogram, true)?;
    let mut opts = HistogramOpts::new(spec.name, spec.help);
    if let Some(b) = buckets {
        opts = opts.buckets(b.to_vec());
    }
    register(registry, HistogramVec::new(opts, spec.labels)?)
}

/// Every metric family in `registry` that is not in the catalog, or differs from its entry
/// in type or labels (empty when the registry speaks the vocabulary).
pub fn off_catalog(registry: &Registry) -> Vec<String> {
    let mut problems = Vec::new();
    for family in registry.gather() {
        let Some(spec) = spec(family.name()) else {
            problems.push(format!("{} is not in the catalog", family.name()));
            continue;
        };
        let kind = match family.get_field_type() {
            prometheus::proto::MetricType::COUNTER => Kind::Counter,
            prometheus::proto::MetricType::GAUGE => Kind::Gauge,
            prometheus::proto::MetricType::HISTOGRAM => Kind::Histogram,
            other => {
                problems.push(format!("{}: unexpected type {other:?}", spec.name));
                continue;
            }
        };
        if kind != spec.kind {
            problems.push(format!(
                "{} is a {}, the catalog says {}",
                spec.name,
                kind.as_str(),
                spec.kind.as_str()
            ));
        }
        for m in family.get_metric() {
            let labels: Vec<&str> = m.get_label().iter().map(|l| l.name()).collect();
            let mut want: Vec<&str> = spec.labels.to_vec();
            want.sort_unstable();
            let mut got = labels.clone();
            got.sort_unstable();
            if got != want {
                problems.push(format!(
                    "{} has labels {labels:?}, the catalog says {:?}",
                    spec.name, spec.labels
                ));
                break;
            }
        }
    }
    problems
}

/// The catalog as the Markdown of `deploy/METRICS.md`.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Metrics\n\n\
         Every metric Veritrace exports, from `processors/metrics/src/lib.rs` (`CATALOG`); this\n\
         file is generated from it and a test keeps the two equal. `veritrace process` serves\n\
         them on its metrics port (`kafka.metrics-listen`), `veritrace serve` and `veritrace demo`\n\
         on `GET /metrics` of the HTTP API. The demo reports its run with the same names.\n\n\
         | name | type | unit | labels | exported by | meaning |\n\
         |---|---|---|---|---|---|\n",
    );
    for s in CATALOG {
        let labels = if s.labels.is_empty() {
            "-".to_owned()
        } else {
            s.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            s.name,
            s.kind.as_str(),
            s.unit,
            labels,
            s.runtimes,
            s.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_follow_the_conventions() {
        let mut seen = std::collections::HashSet::new();
        for s in CATALOG {
            assert!(seen.insert(s.name), "{} twice", s.name);
            assert!(s.name.starts_with("veritrace_"), "{}", s.name);
            assert_eq!(
                s.name.ends_with("_total"),
                s.kind == Kind::Counter,
                "{}: counters and only counters end in _total",
                s.name
            );
            if s.unit == "seconds" {
                assert!(s.name.ends_with("_seconds"), "{}", s.name);
            }
        }
    }

    #[test]
    fn the_metrics_document_is_the_catalog() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/METRICS.md");
        let doc = std::fs::read_to_string(path).unwrap_or_default();
        if doc != markdown() {
            if std::env::var_os("VERITRACE_BLESS").is_some() {
                std::fs::write(path, markdown()).expect("write deploy/METRICS.md");
            } else {
                panic!(
                    "deploy/METRICS.md differs from the catalog: run VERITRACE_BLESS=1 cargo test -p veritrace-metrics"
                );
            }
        }
    }

    #[test]
    fn registration_refuses_what_the_catalog_does_not_say() {
        let r = Registry::new();
        assert!(
            counter(&r, &LAG).is_err(),
            "a gauge registered as a counter"
        );
        assert!(counter(&r, &REJECTED).is_err(), "labels dropped");
        assert!(gauge_vec(&r, &LAG).is_ok());
        let foreign = IntCounter::new("veritrace_other_total", "x").expect("counter");
        r.register(Box::new(foreign.clone())).expect("register");
        foreign.inc();
        let problems = off_catalog(&r);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }
}
