//! Kafka load runs: producing at the broker's maximum rate, a bare consumer as the peer,
//! and the end-to-end run against `veritrace process` (see `BENCHMARKS.md`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use serde::Serialize;
use veritrace_ingest::kafka::Publisher;
use veritrace_processors::kafka::ClientSettings;
use veritrace_testkit::metrics::{histogram_quantile, scrape, sum as metric};

use crate::Workload;

/// Result of a produce run.
#[derive(Debug, Clone, Serialize)]
pub struct ProduceReport {
    /// Records acknowledged.
    pub delivered: u64,
    /// Seconds from first send to last acknowledgement.
    pub seconds: f64,
    /// Records per second.
    pub records_per_s: f64,
}

/// Publishes the workload (keyed, idempotent) and waits for every acknowledgement;
/// `rate` caps records per second (None: as fast as the broker takes them).
pub fn produce_at(
    brokers: &str,
    topic: &str,
    w: &Workload,
    rate: Option<u64>,
) -> anyhow::Result<ProduceReport> {
    let mut p = Publisher::new(&ClientSettings::new(brokers), topic, "veritrace-loadtest")?;
    let start = Instant::now();
    for (i, (k, v)) in w.records.iter().enumerate() {
        if let Some(r) = rate
            && i % 1000 == 0
        {
            let due = Duration::from_secs_f64(i as f64 / r.max(1) as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        p.send(k.as_deref(), v)?;
    }
    let r = p.finish(Duration::from_secs(120));
    if r.failed > 0 || r.unacknowledged() > 0 {
        bail!(
            "{} failed, {} unacknowledged: {:?}",
            r.failed,
            r.unacknowledged(),
            r.first_error
        );
    }
    let seconds = r.elapsed.as_secs_f64();
    Ok(ProduceReport {
        delivered: r.delivered,
        seconds,
        records_per_s: r.delivered as f64 / seconds,
    })
}

/// Publishes the workload as fast as the broker takes it.
pub fn produce(brokers: &str, topic: &str, w: &Workload) -> anyhow::Result<ProduceReport> {
    produce_at(brokers, topic, w, None)
}

/// Result of a bare consume run.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumeReport {
    /// Records read.
    pub records: u64,
    /// Seconds from the first record to the last.
    pub seconds: f64,
    /// Records per second.
    pub records_per_s: f64,
}

/// Reads `events` records of `topic` with a fresh consumer group, touching only their
/// length: the broker-and-client ceiling the processor is compared with.
pub fn bare_consume(brokers: &str, topic: &str, events: u64) -> anyhow::Result<ConsumeReport> {
    let group = format!("bare-{}", std::process::id());
    let consumer: BaseConsumer = ClientSettings::new(brokers)
        .consumer_config(&group, None)?
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut n = 0u64;
    let mut bytes = 0u64;
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while n < events {
        if Instant::now() > deadline {
            bail!("only {n} of {events} records arrived within 10 minutes");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                bytes += m.payload().map_or(0, <[u8]>::len) as u64;
                n += 1;
            }
            Some(Err(e)) => tracing_warn(&e.to_string()),
            None => {}
        }
    }
    let seconds = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    std::hint::black_box(bytes);
    Ok(ConsumeReport {
        records: n,
        seconds,
        records_per_s: n as f64 / seconds,
    })
}

fn tracing_warn(msg: &str) {
    eprintln!("consumer: {msg}");
}

/// The binaries a load run starts (shared by the end-to-end and the cluster runs).
#[derive(Debug, Clone, clap::Args)]
pub struct Binaries {
    /// The tansu binary (a broker is started on a free loopback port for the run).
    #[arg(long)]
    pub tansu: PathBuf,
    /// The `veritrace` binary (release build).
    #[arg(long)]
    pub veritrace: PathBuf,
}

/// Flags of the end-to-end run.
#[derive(Debug, Clone, clap::Args)]
pub struct E2eArgs {
    /// The binaries the run starts.
    #[command(flatten)]
    pub bins: crate::kafka::Binaries,
    /// Records to publish.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Topic partitions.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Dataset seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Publish at this many records per second (default: the broker's maximum). Below the
    /// processor's capacity, event-to-sealed latency shows batching, not queueing.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Publish everything before the processor starts (measures the processor draining a
    /// backlog, without the producer competing for the cores).
    #[arg(long)]
    pub prefill: bool,
    /// The data directory on an S3-compatible store (moto_server from the tools virtualenv,
    /// started on a free loopback port) instead of a local directory.
    #[arg(long)]
    pub object_store: bool,
}

/// Result of the end-to-end run.
#[derive(Debug, Clone, Serialize)]
pub struct E2eReport {
    /// Records published.
    pub events: u64,
    /// The producer alone (while the processor consumed).
    pub produce: ProduceReport,
    /// Seconds from the first publish until every record was in a durable batch.
    pub end_to_end_seconds: f64,
    /// Records per second end to end.
    pub end_to_end_per_s: f64,
    /// Records per second while the processor was in steady state: from 10% to 90% of the
    /// records consumed (start-up, group join and the final partial batches excluded).
    pub sustained_per_s: f64,
    /// Batch seal time percentiles (seconds, from histogram buckets).
    pub seal_p50_s: f64,
    /// 99th percentile.
    pub seal_p99_s: f64,
    /// Event-to-sealed latency percentiles (seconds, from histogram buckets).
    pub latency_p50_s: f64,
    /// 99th percentile.
    pub latency_p99_s: f64,
    /// The bare consumer on the same topic, same broker, same run.
    pub bare_consume: ConsumeReport,
    /// Sustained processor rate / bare consume rate.
    pub ratio_to_bare: f64,
    /// CPU seconds (user + system) the processor used for the run.
    pub processor_cpu_s: f64,
    /// CPU seconds the broker used up to the end of the processor run.
    pub broker_cpu_s: f64,
    /// CPU seconds the object store (moto_server) used, with `--object-store`.
    pub store_cpu_s: Option<f64>,
}

/// CPU seconds (user + system) a process has used so far, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

struct Proc(Child, &'static str);
impl Drop for Proc {
    fn drop(&mut self) {
        // Stop by PID: SIGTERM first so the processor seals and commits, then make sure.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        for _ in 0..100 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{} did not stop on SIGTERM; killing", self.1);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(veritrace_testkit::free_port())
}

fn wait_port(port: u16, what: &str) -> anyhow::Result<()> {
    veritrace_testkit::wait_port(port, what, Duration::from_secs(30), None)
        .map_err(anyhow::Error::msg)
}

/// The end-to-end run (see the module docs).
pub fn end_to_end(a: &E2eArgs) -> anyhow::Result<E2eReport> {
    let work = tempfile::tempdir()?;
    let port = free_port()?;
    let brokers = format!("127.0.0.1:{port}");
    let broker =
        veritrace_testkit::broker::Broker::try_start(&a.bins.tansu, port, "memory://tansu/")
            .map_err(anyhow::Error::msg)?;
    let vt = |args: &[&str]| -> anyhow::Result<()> {
        // Its report goes to stderr: stdout carries only this run's JSON.
        let st = Command::new(&a.bins.veritrace)
            .args(args)
            .stdout(std::io::stderr())
            .status()?;
        anyhow::ensure!(st.success(), "veritrace {args:?} failed");
        Ok(())
    };
    vt(&[
        "topics",
        "create",
        "--brokers",
        &brokers,
        "--partitions",
        &a.partitions.to_string(),
    ])?;
    eprintln!("generating {} records", a.events);
    let w = crate::workload(a.events, a.seed);

    let prefilled = if a.prefill {
        eprintln!("publishing before the processor starts");
        Some(produce(&brokers, crate::RAW_TOPIC, &w)?)
    } else {
        None
    };
    let mport = free_port()?;
    let mut process = Command::new(&a.bins.veritrace);
    process.args(["process", "--brokers", &brokers, "--data"]);
    let moto = if a.object_store {
        let moto = veritrace_testkit::moto::Moto::try_start().map_err(anyhow::Error::msg)?;
        moto.create_bucket("veritrace-e2e");
        process
            .arg("s3://veritrace-e2e/plant")
            .envs(moto.client_env());
        Some(moto)
    } else {
        process.arg(work.path().join("data"));
        None
    };
    let proc_ = Proc(
        process
            .args(["--metrics-listen", &format!("127.0.0.1:{mport}")])
            .stdout(Stdio::null())
            .spawn()?,
        "processor",
    );
    wait_port(mport, "the processor's metrics endpoint")?;
    // Let the processor join the group before the clock starts (with a backlog, the
    // clock starts at the processor's start).
    let start = Instant::now();
    let until = Instant::now() + Duration::from_secs(60);
    while metric(&scrape(mport)?, "veritrace_assigned_partitions").unwrap_or(0.0)
        < a.partitions as f64
    {
        anyhow::ensure!(Instant::now() < until, "the processor got no partitions");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A sampler watches the processor's counters from the start, also while publishing.
    let total = a.events as f64;
    let sampler = std::thread::spawn(move || -> anyhow::Result<(Vec<(Instant, f64)>, String)> {
        let mut series = Vec::new();
        let until = Instant::now() + Duration::from_secs(1800);
        loop {
            let t = scrape(mport)?;
            series.push((
                Instant::now(),
                metric(&t, "veritrace_consumed_records_total").unwrap_or(0.0),
            ));
            if metric(&t, "veritrace_event_to_sealed_seconds_count").unwrap_or(0.0) >= total {
                return Ok((series, t));
            }
            anyhow::ensure!(
                Instant::now() < until,
                "not everything was sealed within 30 minutes"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let (start, produce) = match prefilled {
        Some(p) => (start, p),
        None => {
            eprintln!("publishing while the processor consumes");
            (
                Instant::now(),
                produce_at(&brokers, crate::RAW_TOPIC, &w, a.rate)?,
            )
        }
    };
    let (series, text) = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the sampler panicked"))??;
    let name = "veritrace_event_to_sealed_seconds";
    let at = |frac: f64| series.iter().find(|(_, c)| *c >= frac * total).copied();
    let sustained_per_s = match (at(0.1), at(0.9)) {
        (Some((a0, c0)), Some((a1, c1))) if a1 > a0 => (c1 - c0) / (a1 - a0).as_secs_f64(),
        _ => f64::NAN,
    };
    let e2e = start.elapsed().as_secs_f64();
    let processor_cpu_s = cpu_seconds(proc_.0.id());
    let broker_cpu_s = cpu_seconds(broker.pid());
    let store_cpu_s = moto.as_ref().map(|m| cpu_seconds(m.pid()));
    drop(proc_);
    drop(moto);
    eprintln!("measuring the bare consumer on the same topic");
    let bare = bare_consume(&brokers, crate::RAW_TOPIC, a.events)?;
    let per_s = a.events as f64 / e2e;
    Ok(E2eReport {
        events: a.events,
        produce,
        end_to_end_seconds: e2e,
        end_to_end_per_s: per_s,
        sustained_per_s,
        seal_p50_s: histogram_quantile(&text, "veritrace_batch_seal_seconds", 0.5)
            .unwrap_or(f64::NAN),
        seal_p99_s: histogram_quantile(&text, "veritrace_batch_seal_seconds", 0.99)
            .unwrap_or(f64::NAN),
        latency_p50_s: histogram_quantile(&text, name, 0.5).unwrap_or(f64::NAN),
        latency_p99_s: histogram_quantile(&text, name, 0.99).unwrap_or(f64::NAN),
        ratio_to_bare: sustained_per_s / bare.records_per_s,
        processor_cpu_s,
        broker_cpu_s,
        store_cpu_s,
        bare_consume: bare,
    })
}
