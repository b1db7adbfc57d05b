//! The cluster run: several `veritrace process` replicas and query servers on one `s3://`
//! data directory, while the records stream in, replicas are killed with `kill -9` one after
//! another and the group is scaled down and up again, and queries run the whole time. At
//! the end it checks what the README promises: every valid event exactly once, every
//! rejection kept once, every batch chain and file intact (`veritrace check`), every batch
//! in exactly one epoch and every epoch anchored exactly once.
//!
//! `--local` runs the same on a local directory shared by the replicas (OS locks instead of
//! leases), for comparison.
//!
//! Everything it starts (tansu, moto_server, the replicas, the servers) listens on free
//! loopback ports and is stopped by PID.

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde::Serialize;
use veritrace_anchor::store::S3Options;
use veritrace_anchor::{DataDir, EpochLog, LocalLedger};
use veritrace_simulator::{SimConfig, Simulator};

/// Flags of the cluster run.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// The binaries the run starts.
    #[command(flatten)]
    pub bins: crate::kafka::Binaries,
    /// Records to publish.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Topic partitions.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// `veritrace process` replicas.
    #[arg(long, default_value_t = 3)]
    pub processes: usize,
    /// `veritrace serve` replicas.
    #[arg(long, default_value_t = 2)]
    pub servers: usize,
    /// Publish at this many records per second, so that the disruptions happen while
    /// records stream in.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u64,
    /// Seconds between two disruptions (each kill -9, the scale-down, the scale-up).
    #[arg(long, default_value_t = 30)]
    pub step_seconds: u64,
    /// Dataset seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Dynamic group membership (no `--instance-id`): a replica that stops leaves the group
    /// at once. Default: static membership, as deployed (a restarted replica keeps its
    /// partitions; one that stopped is replaced after the session timeout).
    #[arg(long)]
    pub dynamic_membership: bool,
    /// A local data directory (shared by the replicas through OS locks) instead of the
    /// bucket: the same run, for comparison.
    #[arg(long)]
    pub local: bool,
    /// Keep the logs of the replicas and servers here (default: a temporary directory,
    /// removed at the end).
    #[arg(long)]
    pub logs: Option<PathBuf>,
}

/// What the run did and found.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ClusterReport {
    /// Where the data directory was: `s3` (moto_server) or `local`.
    pub backend: String,
    /// Records published.
    pub published: u64,
    /// Valid events in the dataset (each must be in the table once).
    pub expected_events: u64,
    /// Records the processors must reject (each kept once).
    pub expected_rejected: u64,
    /// Rows of `events`.
    pub events: u64,
    /// Distinct event ids in `events`.
    pub distinct_events: u64,
    /// Rows of `rejected`.
    pub rejected: u64,
    /// Seconds from the first publish until every record was in a committed batch.
    pub seconds: f64,
    /// Records per second over the whole run (disruptions included).
    pub records_per_s: f64,
    /// What happened, in order, with the second it happened at.
    pub disruptions: Vec<String>,
    /// Sealed batches, all partitions.
    pub batches: u64,
    /// Epochs sealed.
    pub epochs: u64,
    /// Ledger entries (one per anchored epoch).
    pub ledger_entries: u64,
    /// Batches in no epoch, or in more than one.
    pub batches_not_in_exactly_one_epoch: u64,
    /// Epochs anchored more than once, or not at all.
    pub epochs_not_anchored_exactly_once: u64,
    /// `veritrace check`'s verdict line.
    pub check: String,
    /// Queries answered while the run went on.
    pub queries: u64,
    /// Queries that failed (a server error, a refused connection).
    pub query_errors: u64,
    /// A server answered a smaller count than it had answered before.
    pub counts_went_backwards: u64,
    /// A server answered with an event id twice.
    pub answers_with_a_duplicate: u64,
    /// Query latency percentiles, seconds.
    pub query_p50_s: f64,
    /// 99th percentile.
    pub query_p99_s: f64,
    /// The first query error, if any.
    pub first_query_error: Option<String>,
    /// Every check held.
    pub passed: bool,
}

/// A child process stopped by PID when dropped.
struct Proc {
    child: Child,
    name: String,
    log: PathBuf,
    /// Its metrics port (0: none).
    metrics: u16,
}

impl Proc {
    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    /// SIGTERM, and wait for the exit (SIGKILL after `grace`). `true`: it exited by itself.
    fn stop(mut self, grace: Duration) -> bool {
        self.signal("-TERM");
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn kill9(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal("-KILL");
            let _ = self.child.wait();
        }
    }
}

/// How every child reaches the bucket.
struct Store {
    env: Vec<(String, String)>,
    url: String,
}

impl Store {
    fn cmd(&self, bin: &Path) -> Command {
        let mut c = Command::new(bin);
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }
}

fn tail(p: &Path) -> String {
    veritrace_testkit::tail(p)
}

/// Fails when a replica exited on its own (a failure of the run), with its log.
fn all_running(pods: &mut [Option<Proc>]) -> anyhow::Result<()> {
    for p in pods.iter_mut().flatten() {
        if let Ok(Some(st)) = p.child.try_wait() {
            bail!(
                "{} exited ({st}) on its own; its log:\n{}",
                p.name,
                tail(&p.log)
            );
        }
    }
    Ok(())
}

/// One `POST /v1/sql` to `127.0.0.1:port`: the rows.
fn sql(port: u16, text: &str) -> anyhow::Result<serde_json::Value> {
    let body = serde_json::json!({ "sql": text }).to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "POST /v1/sql HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut text_out = String::new();
    s.read_to_string(&mut text_out)?;
    let (head, rest) = text_out.split_once("\r\n\r\n").unwrap_or((&text_out, ""));
    ensure!(
        head.split_whitespace().nth(1) == Some("200"),
        "{}: {rest}",
        head.lines().next().unwrap_or_default()
    );
    let v: serde_json::Value = serde_json::from_str(rest).context("sql answer")?;
    Ok(v["rows"].clone())
}

/// `n` of a one-row answer.
fn count(port: u16, text: &str) -> anyhow::Result<u64> {
    let rows = sql(port, text)?;
    rows[0]["n"]
        .as_u64()
        .with_context(|| format!("no n in {rows}"))
}

/// What the query thread asks: events, distinct event ids, rejections.
const WHAT_A_READER_SEES: &str = "SELECT (SELECT count(*) FROM events) AS e, \
     (SELECT count(DISTINCT event_id) FROM events) AS d, (SELECT count(*) FROM rejected) AS r";

const ALL_RECORDS: &str =
    "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM rejected) AS n";

/// What the epoch log and the ledger say about the batches.
struct EpochState {
    batches: u64,
    epochs: u64,
    ledger_entries: u64,
    batches_not_in_exactly_one_epoch: u64,
    epochs_not_anchored_exactly_once: u64,
}

fn epoch_state(dir: &DataDir) -> anyhow::Result<EpochState> {
    let headers = dir.all_batch_headers()?;
    let epochs = EpochLog::read(dir)?;
    let mut in_epochs: Vec<&String> = epochs.records().iter().flat_map(|e| &e.batch_ids).collect();
    let listed = in_epochs.len();
    in_epochs.sort();
    in_epochs.dedup();
    let all: BTreeSet<&String> = headers.iter().map(|h| &h.batch_id).collect();
    let covered: BTreeSet<&String> = in_epochs.iter().copied().collect();
    let ledger = LocalLedger::read_entries(dir)?;
    let anchored: Vec<u64> = ledger.iter().map(|e| e.epoch_id).collect();
    let unique: HashSet<u64> = anchored.iter().copied().collect();
    let n_epochs = epochs.records().len() as u64;
    Ok(EpochState {
        batches: headers.len() as u64,
        epochs: n_epochs,
        ledger_entries: ledger.len() as u64,
        batches_not_in_exactly_one_epoch: (listed - in_epochs.len()) as u64
            + all.difference(&covered).count() as u64,
        epochs_not_anchored_exactly_once: (anchored.len() - unique.len()) as u64
            + (0..n_epochs).filter(|e| !unique.contains(e)).count() as u64,
    })
}

/// The run (see the module docs).
pub fn run(a: &ClusterArgs) -> anyhow::Result<ClusterReport> {
    ensure!(
        a.processes >= 1 && a.servers >= 1,
        "at least one replica of each"
    );
    let tmp = tempfile::tempdir()?;
    let logs = match &a.logs {
        Some(l) => {
            std::fs::create_dir_all(l)?;
            l.clone()
        }
        None => tmp.path().to_owned(),
    };
    let mut report = ClusterReport {
        backend: if a.local { "local" } else { "s3" }.into(),
        ..ClusterReport::default()
    };

    // The dataset and what must come out of it.
    eprintln!("generating {} records", a.events);
    let mut records = Vec::with_capacity(a.events as usize);
    for r in Simulator::new(SimConfig {
        events: a.events,
        seed: a.seed,
        ..SimConfig::default()
    }) {
        match r.expect.reason() {
            None => report.expected_events += 1,
            Some(_) => report.expected_rejected += 1,
        }
        records.push((Some(r.key), r.payload));
    }
    let bytes = records.iter().map(|r| r.1.len() as u64).sum();
    let work = crate::Workload { records, bytes };

    // A broker and a bucket.
    let port = veritrace_testkit::free_port();
    let brokers = format!("127.0.0.1:{port}");
    let broker =
        veritrace_testkit::broker::Broker::try_start(&a.bins.tansu, port, "memory://tansu/")
            .map_err(anyhow::Error::msg)?;
    let (moto, store) = if a.local {
        let data = tmp.path().join("data");
        let store = Store {
            env: Vec::new(),
            url: data.to_string_lossy().into_owned(),
        };
        (None, store)
    } else {
        let moto = veritrace_testkit::moto::Moto::try_start().map_err(anyhow::Error::msg)?;
        moto.create_bucket("veritrace-cluster");
        let store = Store {
            env: moto.client_env(),
            url: "s3://veritrace-cluster/plant".into(),
        };
        (Some(moto), store)
    };
    let st = store
        .cmd(&a.bins.veritrace)
        .args([
            "topics",
            "create",
            "--brokers",
            &brokers,
            "--partitions",
            &a.partitions.to_string(),
        ])
        .stdout(Stdio::null())
        .status()?;
    ensure!(st.success(), "creating the topics failed");

    let start_process = |i: usize| -> anyhow::Result<Proc> {
        let name = format!("pod-{i}");
        let mport = veritrace_testkit::free_port();
        let log = logs.join(format!("{name}-{mport}.log"));
        let child = store
            .cmd(&a.bins.veritrace)
            .args(["process", "--brokers", &brokers, "--data", &store.url])
            .args(if a.dynamic_membership {
                vec![]
            } else {
                vec!["--instance-id", &name]
            })
            .args(["--metrics-listen", &format!("127.0.0.1:{mport}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        Ok(Proc {
            child,
            name,
            log,
            metrics: mport,
        })
    };
    let mut pods: Vec<Option<Proc>> = Vec::new();
    for i in 0..a.processes {
        pods.push(Some(start_process(i)?));
    }
    // The servers open an existing data directory: wait for the replicas to create it.
    let opts = S3Options {
        endpoint: moto.as_ref().map(|m| m.endpoint()).unwrap_or_default(),
        region: "us-east-1".into(),
        access_key_id: "test".into(),
        secret_access_key: "test".into(),
        allow_http: true,
    };
    let until = Instant::now() + Duration::from_secs(60);
    while DataDir::open_with(&store.url, &opts).is_err() {
        all_running(&mut pods)?;
        ensure!(
            Instant::now() < until,
            "no replica created the data directory within 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut servers = Vec::new();
    let mut server_ports = Vec::new();
    for i in 0..a.servers {
        let hport = veritrace_testkit::free_port();
        let log = logs.join(format!("serve-{i}-{hport}.log"));
        let child = store
            .cmd(&a.bins.veritrace)
            .args(["serve", "--data", &store.url])
            .args(["--listen", &format!("127.0.0.1:{hport}")])
            .args([
                "--flight-listen",
                &format!("127.0.0.1:{}", veritrace_testkit::free_port()),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        servers.push(Proc {
            child,
            name: format!("serve-{i}"),
            log: log.clone(),
            metrics: 0,
        });
        server_ports.push(hport);
    }
    for (p, s) in server_ports.iter().zip(&servers) {
        veritrace_testkit::wait_port(*p, &s.name, Duration::from_secs(60), Some(&s.log))
            .map_err(anyhow::Error::msg)?;
    }

    // Queries the whole time, round robin over the servers: each server's count of
    // committed records may only grow.
    let stop_queries = Arc::new(AtomicBool::new(false));
    let queries = {
        let (stop, ports) = (stop_queries.clone(), server_ports.clone());
        std::thread::spawn(move || {
            let mut last = vec![0u64; ports.len()];
            let mut latencies = Vec::new();
            let (mut errors, mut backwards, mut doubled) = (0u64, 0u64, 0u64);
            let mut first_error = None;
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let k = i % ports.len();
                i += 1;
                let t0 = Instant::now();
                match sql(ports[k], WHAT_A_READER_SEES) {
                    Ok(rows) => {
                        latencies.push(t0.elapsed().as_secs_f64());
                        let (e, d, r) = (
                            rows[0]["e"].as_u64().unwrap_or(0),
                            rows[0]["d"].as_u64().unwrap_or(0),
                            rows[0]["r"].as_u64().unwrap_or(0),
                        );
                        if e + r < last[k] {
                            backwards += 1;
                        }
                        if d != e {
                            doubled += 1;
                        }
                        last[k] = last[k].max(e + r);
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            (latencies, errors, backwards, doubled, first_error)
        })
    };

    // The records stream in at the given rate.
    let started = Instant::now();
    let producer = {
        let brokers = brokers.clone();
        let rate = a.rate;
        std::thread::spawn(move || {
            crate::kafka::produce_at(&brokers, crate::RAW_TOPIC, &work, Some(rate))
        })
    };
    let at = || started.elapsed().as_secs();
    let committed = Arc::new(AtomicU64::new(0));
    let log = Mutex::new(Vec::new());
    let note = |what: String| {
        eprintln!("[{:>4} s] {what}", at());
        log.lock()
            .map(|mut l| l.push(format!("{} s: {what}", at())))
            .ok();
    };
    let step = Duration::from_secs(a.step_seconds);
    let wait_step = |pods: &mut Vec<Option<Proc>>| -> anyhow::Result<()> {
        let until = Instant::now() + step;
        while Instant::now() < until {
            // A replica that exits on its own is a failure of the run.
            all_running(pods)?;
            if let Ok(n) = count(server_ports[0], ALL_RECORDS) {
                committed.store(n, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        note(format!(
            "{} records committed",
            committed.load(Ordering::Relaxed)
        ));
        Ok(())
    };

    // Rolling kill -9: each replica in turn dies and is started again at once (it waits
    // out its own leases before it works again).
    for i in 0..a.processes {
        wait_step(&mut pods)?;
        if let Some(p) = pods[i].take() {
            p.kill9();
        }
        note(format!("kill -9 pod-{i}, restarted"));
        pods[i] = Some(start_process(i)?);
    }
    // Scale down to one replica (graceful: SIGTERM), then back up.
    wait_step(&mut pods)?;
    for (i, slot) in pods.iter_mut().enumerate().skip(1) {
        if let Some(p) = slot.take() {
            let clean = p.stop(Duration::from_secs(60));
            note(format!(
                "scaled down: pod-{i} stopped {}",
                if clean { "cleanly" } else { "NOT cleanly" }
            ));
            ensure!(clean, "pod-{i} did not stop cleanly on SIGTERM");
        }
    }
    wait_step(&mut pods)?;
    for (i, slot) in pods.iter_mut().enumerate().skip(1) {
        *slot = Some(start_process(i)?);
    }
    note(format!("scaled up to {} replicas", a.processes));

    let produced = producer
        .join()
        .map_err(|_| anyhow::anyhow!("the producer panicked"))??;
    report.published = produced.delivered;
    note(format!("all {} records published", produced.delivered));
    let until = Instant::now() + Duration::from_secs(1800);
    let mut unassigned_since: Option<Instant> = None;
    loop {
        all_running(&mut pods)?;
        let n = count(server_ports[0], ALL_RECORDS).unwrap_or(0);
        if n >= report.published {
            break;
        }
        // Records are waiting and no replica owns a partition: the group is stuck.
        let assigned: f64 = pods
            .iter()
            .flatten()
            .filter_map(|p| veritrace_testkit::metrics::scrape(p.metrics).ok())
            .filter_map(|t| veritrace_testkit::metrics::sum(&t, "veritrace_assigned_partitions"))
            .sum();
        if assigned > 0.0 {
            unassigned_since = None;
        } else if unassigned_since.get_or_insert_with(Instant::now).elapsed()
            > Duration::from_secs(90)
        {
            bail!(
                "{n} of {} records committed, and for 90 s the consumer group has assigned no partition to any replica",
                report.published
            );
        }
        ensure!(
            Instant::now() < until,
            "{n} of {} records committed after 30 minutes",
            report.published
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.records_per_s = report.published as f64 / report.seconds;
    note("every record committed".into());
    // Stop the replicas cleanly (each seals what it holds).
    for (i, slot) in pods.iter_mut().enumerate() {
        if let Some(p) = slot.take() {
            ensure!(
                p.stop(Duration::from_secs(60)),
                "pod-{i} did not stop cleanly"
            );
        }
    }
    // The servers stay up (any process on the directory may lead the epoch loop): wait
    // until every batch is in an epoch and every epoch is anchored.
    let dir = DataDir::open_with(&store.url, &opts)?;
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let e = epoch_state(&dir)?;
        let settled =
            e.batches_not_in_exactly_one_epoch == 0 && e.epochs_not_anchored_exactly_once == 0;
        report.batches = e.batches;
        report.epochs = e.epochs;
        report.ledger_entries = e.ledger_entries;
        report.batches_not_in_exactly_one_epoch = e.batches_not_in_exactly_one_epoch;
        report.epochs_not_anchored_exactly_once = e.epochs_not_anchored_exactly_once;
        if settled || Instant::now() > until {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    stop_queries.store(true, Ordering::Relaxed);
    let (mut lat, errors, backwards, doubled, first_error) = queries
        .join()
        .map_err(|_| anyhow::anyhow!("the query thread panicked"))?;
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    report.queries = lat.len() as u64;
    report.query_errors = errors;
    report.counts_went_backwards = backwards;
    report.answers_with_a_duplicate = doubled;
    report.query_p50_s = pct(0.5);
    report.query_p99_s = pct(0.99);
    report.first_query_error = first_error;

    // What the tables say, through a server.
    let q = server_ports[0];
    report.events = count(q, "SELECT count(*) AS n FROM events")?;
    report.distinct_events = count(q, "SELECT count(DISTINCT event_id) AS n FROM events")?;
    report.rejected = count(q, "SELECT count(*) AS n FROM rejected")?;
    drop(servers);

    // Every chain, digest, root and epoch.
    let out = store
        .cmd(&a.bins.veritrace)
        .args(["check", "--data", &store.url])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    report.check = text
        .lines()
        .find(|l| l.contains("INTACT") || l.contains("DAMAGED"))
        .unwrap_or(text.trim())
        .to_owned();

    report.disruptions = log.into_inner().unwrap_or_default();

    report.passed = report.published == a.events
        && report.events == report.expected_events
        && report.distinct_events == report.events
        && report.rejected == report.expected_rejected
        && report.check.contains("INTACT")
        && report.batches_not_in_exactly_one_epoch == 0
        && report.epochs_not_anchored_exactly_once == 0
        && report.counts_went_backwards == 0
        && report.answers_with_a_duplicate == 0;
    drop(moto);
    drop(broker);
    Ok(report)
}
