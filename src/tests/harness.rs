//! Real components for the Kafka tests: a tansu broker on a free loopback port, the real
//! `veritrace process` binary, a real producer, and checks over the data directory.
//! A missing broker binary is a failure, never a skip.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use veritrace_anchor::BatchHeader;
use veritrace_ingest::kafka::Publisher;
use veritrace_processors::kafka::ClientSettings;
use veritrace_verify::verify::{Options, verify_bundle};

pub const RAW: &str = "veritrace.raw";
pub const REJECTED: &str = "veritrace.rejected";

pub use veritrace_testkit::broker::Broker;
pub use veritrace_testkit::metrics::{scrape, sum};
pub use veritrace_testkit::{free_port, tail};

fn wait_port(port: u16, what: &str, log: &Path) {
    veritrace_testkit::wait_port(port, what, Duration::from_secs(60), Some(log))
        .unwrap_or_else(|e| panic!("{e}"));
}

fn kill(child: &mut Child, signal: &str) {
    veritrace_testkit::signal(child, signal);
}

/// Topics of the tests, created with `veritrace topics create` on a [`Broker`].
pub trait Topics {
    /// `veritrace.raw` and `veritrace.rejected` with `partitions` partitions.
    fn create_topics(&self, partitions: u32) {
        self.create_topics_with(partitions, &[]);
    }
    /// The same, with config flags before the subcommand.
    fn create_topics_with(&self, partitions: u32, config: &[&str]);
}

impl Topics for Broker {
    fn create_topics_with(&self, partitions: u32, config: &[&str]) {
        let out = Command::new(env!("CARGO_BIN_EXE_veritrace"))
            .args(config)
            .args([
                "topics",
                "create",
                "--brokers",
                &self.addr(),
                "--partitions",
            ])
            .arg(partitions.to_string())
            .output()
            .expect("run topics create");
        assert!(
            out.status.success(),
            "topics create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A running `veritrace process`.
pub struct Processor {
    child: Option<Child>,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Processor {
    pub fn start(brokers: &str, data: &Path, name: &str, extra: &[&str]) -> Processor {
        Self::start_with_env(brokers, data, name, extra, &[])
    }

    pub fn start_with_env(
        brokers: &str,
        data: &Path,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Processor {
        let logs = data.parent().expect("data dir has a parent");
        Self::start_in(brokers, data, logs, name, extra, env)
    }

    /// A processor on `data` (a path or an `s3://` URL) that logs into `logs`.
    pub fn start_in(
        brokers: &str,
        data: &Path,
        logs: &Path,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Processor {
        let metrics_port = free_port();
        let log = logs.join(format!("{name}-{metrics_port}.log"));
        let logf = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_veritrace"))
            .args(["process", "--brokers", brokers, "--data"])
            .arg(data)
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("VERITRACE__PIPELINE__BATCH_MAX_RECORDS", "2000")
            .env("VERITRACE__PIPELINE__BATCH_MAX_AGE", "300ms")
            .env("VERITRACE__PIPELINE__EPOCH_INTERVAL", "1s")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("start veritrace process");
        wait_port(metrics_port, "veritrace process", &log);
        Processor {
            child: Some(child),
            metrics_port,
            log,
        }
    }

    pub fn metrics(&self) -> String {
        scrape(self.metrics_port).unwrap_or_default()
    }

    /// The sum of every sample of a metric (0 when it has none).
    pub fn metric(&self, name: &str) -> f64 {
        sum(&self.metrics(), name).unwrap_or(0.0)
    }

    /// Waits until `cond(metrics text)` holds.
    pub fn wait_for(&self, what: &str, timeout: Duration, cond: impl Fn(&str) -> bool) {
        let until = Instant::now() + timeout;
        loop {
            let m = self.metrics();
            if cond(&m) {
                return;
            }
            if let Some(c) = self.child.as_ref()
                && Command::new("kill")
                    .args(["-0", &c.id().to_string()])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| !s.success())
            {
                panic!(
                    "processor exited while waiting for {what}; log:\n{}",
                    tail(&self.log)
                );
            }
            assert!(
                Instant::now() < until,
                "timed out waiting for {what}; metrics:\n{}\nlog:\n{}",
                m.lines()
                    .filter(|l| !l.starts_with('#') && !l.contains("bucket"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                tail(&self.log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Crash: SIGKILL by PID, no chance to seal or commit.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c, "-KILL");
            let _ = c.wait();
        }
    }

    /// Graceful stop: SIGTERM, then it must exit 0.
    pub fn stop(mut self) {
        let mut c = self.child.take().expect("running");
        kill(&mut c, "-TERM");
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = c.try_wait().expect("wait") {
                assert!(
                    st.success(),
                    "processor exited with {st}; log:\n{}",
                    tail(&self.log)
                );
                return;
            }
            assert!(
                Instant::now() < until,
                "processor ignored SIGTERM; log:\n{}",
                tail(&self.log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Processor {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c, "-KILL");
            let _ = c.wait();
        }
    }
}

/// Publishes records (keyed) and asserts every one was acknowledged.
pub fn produce(brokers: &str, topic: &str, records: &[(Option<Vec<u8>>, Vec<u8>)]) {
    let mut p = Publisher::new(&ClientSettings::new(brokers), topic, "test").expect("producer");
    for (k, v) in records {
        p.send(k.as_deref(), v).expect("send");
    }
    let r = p.finish(Duration::from_secs(60));
    assert_eq!(r.delivered, records.len() as u64, "{r:?}");
}

/// One record of the rejected topic.
#[derive(Debug, Clone)]
pub struct RejectedRecord {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// Reads the rejected topic from the beginning until `at_least` records arrived and no
/// more arrive for a second.
pub fn read_rejected(brokers: &str, at_least: usize) -> Vec<RejectedRecord> {
    let consumer: BaseConsumer = ClientSettings::new(brokers)
        .consumer_config(&format!("reader-{}", free_port()), None)
        .expect("config")
        .create()
        .expect("consumer");
    consumer.subscribe(&[REJECTED]).expect("subscribe");
    let mut out = Vec::new();
    let mut last = Instant::now();
    let until = Instant::now() + Duration::from_secs(120);
    while out.len() < at_least || last.elapsed() < Duration::from_secs(1) {
        assert!(
            Instant::now() < until,
            "only {} of {at_least} rejected records arrived",
            out.len()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let mut headers = HashMap::new();
            if let Some(h) = m.headers() {
                for x in h.iter() {
                    headers.insert(
                        x.key.to_owned(),
                        String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                    );
                }
            }
            out.push(RejectedRecord {
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                headers,
            });
            last = Instant::now();
        }
    }
    out
}

/// What the data directory must hold.
pub struct Expected {
    pub valid_ids: HashSet<String>,
    pub rejected: BTreeMap<String, u64>,
}

impl Expected {
    /// From simulator records: valid ones by event id, rejections by reason.
    pub fn from_sim(records: &[veritrace_simulator::SimRecord]) -> Expected {
        let mut valid_ids = HashSet::new();
        let mut rejected = BTreeMap::new();
        for r in records {
            match r.expect.reason() {
                None => {
                    let v: serde_json::Value =
                        serde_json::from_slice(&r.payload).expect("valid record is JSON");
                    assert!(valid_ids.insert(v["event_id"].as_str().expect("id").to_owned()));
                }
                Some(reason) => *rejected.entry(reason.to_owned()).or_default() += 1,
            }
        }
        Expected {
            valid_ids,
            rejected,
        }
    }
}

/// Checks the whole data directory: exactly the valid events once each, rejections by
/// reason, every batch chain intact, no file outside a manifest, and sampled proofs valid
/// against the ledger.
pub fn check_data(data: &Path, want: &Expected, proofs: usize) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let engine = veritrace_queries::QueryEngine::open(data)
            .await
            .expect("open");
        let ids = column_strings(&engine, "SELECT event_id FROM events").await;
        let mut seen = HashSet::new();
        let dups: Vec<&String> = ids.iter().filter(|i| !seen.insert(*i)).take(5).collect();
        assert!(dups.is_empty(), "duplicate events in the table: {dups:?}");
        let missing: Vec<&String> = want
            .valid_ids
            .iter()
            .filter(|i| !seen.contains(i))
            .collect();
        assert!(
            missing.is_empty(),
            "{} valid events missing, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        let extra: Vec<&&String> = seen
            .iter()
            .filter(|i| !want.valid_ids.contains(**i))
            .take(5)
            .collect();
        assert!(extra.is_empty(), "unexpected events: {extra:?}");

        let reasons = column_strings(&engine, "SELECT reason FROM rejected").await;
        let mut got = BTreeMap::new();
        for r in reasons {
            *got.entry(r).or_insert(0u64) += 1;
        }
        assert_eq!(got, want.rejected, "rejected table by reason");

        // Chains: consecutive sequence numbers and previous roots, offsets increasing.
        let dir = veritrace_anchor::DataDir::open(data).expect("data dir");
        let headers = dir.all_batch_headers().expect("manifests");
        let mut files: HashSet<String> = HashSet::new();
        let mut by_part: BTreeMap<(String, u32), Vec<&BatchHeader>> = BTreeMap::new();
        for h in &headers {
            by_part
                .entry((h.stream.clone(), h.partition))
                .or_default()
                .push(h);
            files.insert(format!("{}.parquet", h.batch_id));
        }
        for ((s, p), hs) in &by_part {
            for (i, h) in hs.iter().enumerate() {
                assert_eq!(h.seq, i as u64, "{s}-p{p}: sequence gap at {}", h.batch_id);
                if i > 0 {
                    assert_eq!(
                        h.prev_root,
                        hs[i - 1].root,
                        "{s}-p{p}: broken chain at {}",
                        h.batch_id
                    );
                    assert!(
                        h.first_offset > hs[i - 1].last_offset,
                        "{s}-p{p}: overlap at {}",
                        h.batch_id
                    );
                }
            }
        }
        for e in std::fs::read_dir(dir.events_dir())
            .expect("events dir")
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                files.contains(&name),
                "events file {name} is in no manifest"
            );
        }

        // Every batch ended up in an epoch (the processors anchor on shutdown).
        let epochs = veritrace_anchor::EpochLog::read(&dir).expect("epochs");
        for h in &headers {
            assert!(
                epochs.epoch_of(&h.batch_id).is_some(),
                "batch {} in no epoch",
                h.batch_id
            );
        }

        let ledger = std::fs::read_to_string(dir.ledger_file()).expect("ledger");
        let opts = Options {
            ledger: Some(ledger),
            ..Options::default()
        };
        let mut sample: Vec<&String> = want.valid_ids.iter().collect();
        sample.sort();
        let step = (sample.len() / proofs.max(1)).max(1);
        for id in sample.iter().step_by(step).take(proofs) {
            let b = engine.proof(id).await.expect("proof");
            verify_bundle(&b, &opts).unwrap_or_else(|e| panic!("proof of {id} invalid: {e}"));
        }
    });
}

async fn column_strings(engine: &veritrace_queries::QueryEngine, sql: &str) -> Vec<String> {
    use arrow::array::{Array, AsArray};
    let batches = engine.sql(sql).await.expect("sql");
    let mut out = Vec::new();
    for b in batches {
        let col = b.column(0);
        let col = arrow::compute::cast(col, &arrow::datatypes::DataType::Utf8).expect("cast");
        let s = col.as_string::<i32>();
        for i in 0..s.len() {
            out.push(s.value(i).to_owned());
        }
    }
    out
}
