//! `veritrace process`, `veritrace topics create` and `veritrace ingest file --kafka`:
//! the Kafka production path.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use veritrace_processors::kafka::{self, ProcessConfig, ProcessorMetrics, admin};

use crate::config::Config;

/// Flags of `veritrace process`; each overrides its config key.
#[derive(Debug, Args)]
pub struct ProcessArgs {
    /// Data directory shared by all processors of the group [config: data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Bootstrap servers [config: kafka.brokers].
    #[arg(long)]
    brokers: Option<String>,
    /// Consumer group [config: kafka.group].
    #[arg(long)]
    group: Option<String>,
    /// Topic to consume; repeat for several [config: kafka.topics].
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// Static membership id, unique per processor [config: kafka.group-instance-id].
    #[arg(long)]
    instance_id: Option<String>,
    /// Where /metrics and /healthz are served; port 0 picks a free port
    /// [config: kafka.metrics-listen].
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
}

/// Flags of `veritrace topics create`.
#[derive(Debug, Args)]
pub struct TopicsCreateArgs {
    /// Bootstrap servers [config: kafka.brokers].
    #[arg(long)]
    brokers: Option<String>,
    /// Partitions of each new topic (the processors' unit of parallelism).
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Replication factor of each new topic.
    #[arg(long, default_value_t = 1)]
    replication: i32,
}

fn apply_brokers(cfg: &mut Config, brokers: Option<String>) {
    if let Some(b) = brokers {
        cfg.kafka.brokers = b;
    }
}

/// `veritrace topics create`: the raw and rejected topics, unless they exist.
pub fn topics_create(a: TopicsCreateArgs, mut cfg: Config) -> anyhow::Result<ExitCode> {
    apply_brokers(&mut cfg, a.brokers);
    anyhow::ensure!(a.partitions >= 1, "--partitions must be at least 1");
    let mut names: Vec<&str> = cfg.kafka.topics.iter().map(String::as_str).collect();
    for t in [&cfg.kafka.raw_topic, &cfg.kafka.rejected_topic] {
        if !names.contains(&t.as_str()) {
            names.push(t);
        }
    }
    let rt = crate::rt::runtime()?;
    let out = rt.block_on(admin::create_topics(
        &cfg.kafka.client(),
        &names,
        a.partitions,
        a.replication,
    ))?;
    for (name, o) in out {
        match o {
            admin::TopicOutcome::Created(n) => println!("created {name} ({n} partitions)"),
            admin::TopicOutcome::Exists(n) => {
                println!("exists  {name} ({n} partitions, unchanged)")
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `veritrace process`: consume, validate, seal, anchor, until SIGTERM or Ctrl-C.
pub fn process(a: ProcessArgs, mut cfg: Config) -> anyhow::Result<ExitCode> {
    apply_brokers(&mut cfg, a.brokers);
    if let Some(g) = a.group {
        cfg.kafka.group = g;
    }
    if !a.topics.is_empty() {
        cfg.kafka.topics = a.topics;
    }
    if let Some(i) = a.instance_id {
        cfg.kafka.group_instance_id = i;
    }
    let listen = a.metrics_listen.unwrap_or(cfg.kafka.metrics_listen);
    let data = a.data.unwrap_or_else(|| cfg.data_dir.clone());
    let dir = veritrace_anchor::DataDir::create(&data)?.with_dedupe_dir(&cfg.pipeline.dedupe_dir);
    let rt_cfg = cfg.runtime()?;
    let k = &cfg.kafka;
    let pcfg = ProcessConfig {
        client: k.client(),
        group: k.group.clone(),
        topics: k.topics.clone(),
        rejected_topic: k.rejected_topic.clone(),
        instance_id: (!k.group_instance_id.is_empty()).then(|| k.group_instance_id.clone()),
        policy: rt_cfg.policy,
        epoch_interval: rt_cfg.epoch_interval,
        backend: rt_cfg.backend.clone(),
        resume_rewind: k.resume_rewind,
        signatures: rt_cfg.signatures.clone(),
    };
    tracing::info!(config = ?pcfg, data = %data.display(), "starting processor");

    let registry = prometheus::Registry::new();
    let metrics = ProcessorMetrics::new(&registry)?;
    let stop = Arc::new(AtomicBool::new(false));
    // Why processing stopped, if it did: /healthz answers with it until the process exits.
    let failed: Arc<std::sync::Mutex<Option<String>>> = Arc::default();

    let rt = crate::rt::runtime()?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(listen))
        .with_context(|| format!("binding the metrics endpoint {listen}"))?;
    let bound = listener.local_addr()?;
    let health = process_health(failed.clone(), metrics.clone());
    let app = veritrace_metrics::ops_router(registry, health);
    let server_stop = Arc::new(tokio::sync::Notify::new());
    let server = {
        let n = server_stop.clone();
        rt.spawn(veritrace_metrics::serve(listener, app, async move {
            n.notified().await
        }))
    };
    {
        let stop = stop.clone();
        rt.spawn(async move {
            crate::rt::shutdown_signal().await;
            tracing::info!("stopping: sealing open batches and committing");
            stop.store(true, Ordering::Relaxed);
        });
    }
    eprintln!(
        "processing {} (group {}) from {} into {}; metrics on http://{bound}/metrics",
        pcfg.topics.join(","),
        pcfg.group,
        pcfg.client.brokers,
        data.display()
    );

    let worker = {
        let (dir, pcfg, metrics, stop) = (dir.clone(), pcfg.clone(), metrics.clone(), stop.clone());
        std::thread::Builder::new()
            .name("consumer".into())
            .spawn(move || kafka::run(&dir, &pcfg, metrics, stop))
            .context("starting the consumer thread")?
    };
    let result = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the consumer thread panicked"))?;
    if let Err(e) = &result {
        let reason = e.to_string();
        match failed.lock() {
            Ok(mut f) => *f = Some(reason),
            Err(p) => *p.into_inner() = Some(reason),
        }
    }
    server_stop.notify_one();
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), server).await });
    let report = result?;
    let s = &report.stats;
    eprintln!(
        "stopped: {} consumed, {} accepted, {} rejected ({} duplicates), {} batches sealed, {} epochs anchored",
        s.consumed,
        s.accepted,
        s.rejected_total(),
        s.rejected
            .get(&veritrace_processors::Reason::DuplicateEventId)
            .copied()
            .unwrap_or(0),
        s.batches,
        report.epochs
    );
    Ok(ExitCode::SUCCESS)
}

/// `veritrace ingest file --kafka`: publishes a file's records to the raw topic.
pub fn ingest_to_kafka(
    records: veritrace_ingest::file::Records,
    cfg: &Config,
    brokers: Option<String>,
    topic: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut cfg = cfg.clone();
    apply_brokers(&mut cfg, brokers);
    let topic = topic.unwrap_or_else(|| cfg.kafka.raw_topic.clone());
    let mut p =
        veritrace_ingest::kafka::Publisher::new(&cfg.kafka.client(), &topic, "veritrace-ingest")?;
    let mut read_error = None;
    for r in records {
        match r {
            Ok(r) => {
                let key = veritrace_ingest::key_of(&r);
                p.send(key.as_deref(), &r)?;
            }
            Err(e) => {
                read_error = Some(e);
                break;
            }
        }
    }
    let report = p.finish(Duration::from_secs(60));
    eprintln!(
        "published {} of {} records to {topic} in {:.2}s",
        report.delivered,
        report.sent,
        report.elapsed.as_secs_f64()
    );
    if report.failed > 0 || report.unacknowledged() > 0 {
        bail!(
            "{} records failed and {} were not acknowledged: {}; re-run the import (duplicates are rejected by event id)",
            report.failed,
            report.unacknowledged(),
            report.first_error.as_deref().unwrap_or("flush timed out")
        );
    }
    if let Some(e) = read_error {
        bail!(
            "{e}; the {} records read before that were published",
            report.delivered
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// How long the Kafka poll loop may stand still before `GET /livez` fails (a seal that
/// waits for the disk is far shorter; a deadlock is not).
const POLL_STALL: u64 = 300;

/// `/livez`: the poll loop turned within [`POLL_STALL`] seconds (or has not started: the
/// process waits for its brokers, which a restart would not help). `/readyz`: processing has
/// not stopped and the consumer is subscribed and polling.
fn process_health(
    failed: Arc<std::sync::Mutex<Option<String>>>,
    metrics: ProcessorMetrics,
) -> veritrace_metrics::Health {
    let last_poll = {
        let m = metrics.clone();
        move || {
            let at = m.poll_loop_timestamp.get();
            (at > 0).then(|| (veritrace_processors::now_ms() / 1000 - at).max(0) as u64)
        }
    };
    let live: veritrace_metrics::HealthCheck = {
        let last_poll = last_poll.clone();
        Arc::new(move || match last_poll() {
            Some(s) if s > POLL_STALL => Err(format!(
                "the Kafka poll loop has not turned for {s} s (a stall; restart)"
            )),
            Some(s) => Ok(serde_json::json!({"poll_loop_seconds_ago": s})),
            None => Ok(serde_json::json!({"poll_loop": "not started (waiting for the brokers)"})),
        })
    };
    let ready: veritrace_metrics::HealthCheck = Arc::new(move || {
        let reason = failed
            .lock()
            .map(|f| f.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        if let Some(reason) = reason {
            return Err(format!("processing stopped: {reason}"));
        }
        if last_poll().is_none() {
            return Err("not consuming yet: waiting for the brokers and topics".into());
        }
        Ok(serde_json::json!({"assigned_partitions": metrics.assigned.get()}))
    });
    veritrace_metrics::Health { live, ready }
}
