//! The in-process pipeline under the `enforce` signature policy: the simulator's events
//! signed by registered devices (one per participant), one signature per event or one per
//! bundle. Signing happens before the clock starts: what is measured is what the pipeline
//! pays (envelope parsing, signature verification, the registry lookup, the signature block
//! in every leaf, the envelope column). Only the pipeline crates build (no DataFusion):
//!
//! ```sh
//! cargo run --release -p veritrace-simulator --example signed_pipeline -- \
//!   EVENTS PARTITIONS ALG(ES256|EdDSA) ENVELOPE(jws|cose) BUNDLE(0: per event)
//! ```
//!
//! The data directory is a temporary one, deleted at the end; with `KEEP_DATA=DIR` in the
//! environment it is `DIR` instead (created, and left in place), for instance to time the
//! encode of its sealed files with `veritrace-anchor`'s `encode_columns` example.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::Digest as _;
use veritrace_anchor::DataDir;
use veritrace_processors::BatchPolicy;
use veritrace_processors::runtime::{self, RunReport, RuntimeConfig};
use veritrace_processors::signed::{Policy, SignaturePolicy, SignatureSettings, append_registry};
use veritrace_verify::bundle_sig::sign_bundle;
use veritrace_verify::registry::Record;
use veritrace_verify::signature::{Alg, Claims, Envelope, SigningKey, sign_cose, sign_jws};

use veritrace_simulator::{SimConfig, Simulator};

// The same allocator as the shipped binaries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A record's partition key.
type Key = Option<Vec<u8>>;

/// Pre-generated records.
struct Workload {
    records: Vec<(Option<Vec<u8>>, Vec<u8>)>,
}

/// How the devices sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signing {
    /// One envelope per event.
    PerEvent,
    /// One envelope per bundle of up to this many events of one device.
    Bundle(usize),
}

/// What a signed run measured.
#[derive(Debug)]
struct SignedRun {
    /// The pipeline's report.
    report: RunReport,
    /// Wall time of the pipeline run.
    elapsed: Duration,
    /// CPU time (user + system, all threads) of the pipeline run, where `/proc` tells.
    cpu_s: Option<f64>,
    /// Records fed (envelopes, bundles, and the unsigned invalid records).
    records: usize,
    /// Devices (one per participant) registered.
    devices: usize,
    /// Bytes of the sealed events files (what a seal writes until compaction rewrites it).
    events_bytes: u64,
}

fn key(alg: Alg, label: &str) -> SigningKey {
    // Deterministic keys from a label; a P-256 scalar out of range is (practically) never hit,
    // and a counter moves past one.
    for i in 0u8..=255 {
        let seed: [u8; 32] = sha2::Sha256::digest(format!("{label}/{i}")).into();
        if let Ok(k) = SigningKey::from_bytes(alg, &seed) {
            return k;
        }
    }
    unreachable!("256 P-256 scalars out of range in a row")
}

/// User + system CPU seconds of this process so far (`/proc/self/stat`, in clock ticks of
/// 10 ms), or `None` off Linux.
fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at its closing paren.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = |i: usize| f.get(i)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the paren.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

fn participant_of(payload: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v.get("participant")?.get("id")?.as_str().map(str::to_owned)
}

/// Signs `w`'s records as `signing` says, registers the devices in a fresh data directory
/// and runs the in-process pipeline over them with every event type under `enforce`.
fn run_signed(
    w: &Workload,
    partitions: u32,
    batch_size: usize,
    alg: Alg,
    envelope: Envelope,
    signing: Signing,
    unsigned: bool,
) -> anyhow::Result<SignedRun> {
    let tmp = tempfile::tempdir()?;
    let data = match std::env::var_os("KEEP_DATA") {
        Some(keep) => std::path::PathBuf::from(keep),
        None => tmp.path().to_owned(),
    };
    let dir = DataDir::create(&data)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let root = key(Alg::EdDsa, "root");

    // One device per participant, registered by the participant's admin key.
    let mut devices: BTreeMap<String, SigningKey> = BTreeMap::new();
    for (_, payload) in &w.records {
        if let Some(p) = participant_of(payload) {
            devices
                .entry(p.clone())
                .or_insert_with(|| key(alg, &format!("device/{p}")));
        }
    }
    let sign_record = |k: &SigningKey, record: &Record| {
        let claims = Claims {
            iss: None,
            sub: None,
            iat: Some(record.at()),
        };
        sign_cose(
            k,
            &k.public().key_id(),
            &claims,
            &serde_json::to_vec(record).unwrap_or_default(),
        )
    };
    let mut registry = Vec::new();
    for (p, device) in &devices {
        let admin = key(Alg::EdDsa, &format!("admin/{p}"));
        registry.push(sign_record(
            &root,
            &Record::ParticipantRegistered {
                participant_id: p.clone(),
                name: p.clone(),
                role: "manufacturer".into(),
                admin_key: admin.public().to_text(),
                at: now - 3600,
            },
        ));
        registry.push(sign_record(
            &admin,
            &Record::DeviceRegistered {
                device_id: format!("dev-{p}"),
                participant_id: p.clone(),
                kind: "plc_gateway".into(),
                key: device.public().to_text(),
                at: now - 3600,
            },
        ));
    }
    let policy = SignaturePolicy {
        default: Policy::Enforce,
        ..SignaturePolicy::default()
    };
    let (outcomes, _) = append_registry(
        &dir,
        &root.public(),
        &policy,
        BatchPolicy::default(),
        &registry,
    )?;
    anyhow::ensure!(
        outcomes
            .iter()
            .all(|o| matches!(o, veritrace_processors::Outcome::Accepted)),
        "registry records refused: {outcomes:?}"
    );

    // Sign: per event, or bundles of one device's consecutive events.
    let mut records: Vec<(Option<Vec<u8>>, Vec<u8>)> = Vec::with_capacity(w.records.len());
    let mut open: BTreeMap<String, (Key, Vec<Vec<u8>>)> = BTreeMap::new();
    let flush = |p: &str,
                 key_: Option<Vec<u8>>,
                 events: Vec<Vec<u8>>,
                 out: &mut Vec<(Option<Vec<u8>>, Vec<u8>)>| {
        let k = &devices[p];
        let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        out.push((
            key_,
            sign_bundle(
                k,
                &k.public().key_id(),
                &format!("dev-{p}"),
                now,
                &refs,
                envelope,
            ),
        ));
    };
    for (k, payload) in &w.records {
        let p = if unsigned {
            None
        } else {
            participant_of(payload)
        };
        let Some(p) = p else {
            records.push((k.clone(), payload.clone()));
            continue;
        };
        match signing {
            Signing::PerEvent => {
                let dk = &devices[&p];
                let sub = serde_json::from_slice::<serde_json::Value>(payload)
                    .ok()
                    .and_then(|v| v.get("trace_code")?.as_str().map(str::to_owned));
                let claims = Claims {
                    iss: Some(format!("dev-{p}")),
                    sub,
                    iat: Some(now),
                };
                let kid = dk.public().key_id();
                let env = match envelope {
                    Envelope::Jws => sign_jws(dk, &kid, &claims, payload).into_bytes(),
                    Envelope::Cose => sign_cose(dk, &kid, &claims, payload),
                };
                records.push((k.clone(), env));
            }
            Signing::Bundle(n) => {
                let entry = open
                    .entry(p.clone())
                    .or_insert_with(|| (k.clone(), Vec::new()));
                entry.1.push(payload.clone());
                if entry.1.len() >= n {
                    let (key_, events) = open.remove(&p).unwrap_or_default();
                    flush(&p, key_, events, &mut records);
                }
            }
        }
    }
    for (p, (key_, events)) in std::mem::take(&mut open) {
        flush(&p, key_, events, &mut records);
    }

    let cfg = RuntimeConfig {
        stream: "load".into(),
        partitions,
        policy: BatchPolicy {
            max_records: batch_size,
            max_age: Duration::from_secs(3600),
            ..BatchPolicy::default()
        },
        epoch_interval: Duration::from_secs(1),
        signatures: SignatureSettings {
            root: Some(root.public()),
            default: if unsigned {
                SignaturePolicy::default()
            } else {
                policy
            },
            streams: BTreeMap::new(),
            privacy: Default::default(),
        },
        ..RuntimeConfig::default()
    };
    let n_records = records.len();
    let cpu = process_cpu_s();
    let start = Instant::now();
    let report = runtime::run(&dir, &cfg, records, Arc::default())?;
    let elapsed = start.elapsed();
    Ok(SignedRun {
        report,
        elapsed,
        events_bytes: dir
            .list_files(&dir.events_dir())?
            .iter()
            .map(|(_, len)| len)
            .sum(),
        cpu_s: process_cpu_s().zip(cpu).map(|(b, a)| b - a),
        records: n_records,
        devices: devices.len(),
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_owned());
    let events: u64 = arg(0, "200000").parse()?;
    let partitions: u32 = arg(1, "1").parse()?;
    // `none`: the same run unsigned (policy record), the peer of the signed runs.
    let unsigned = arg(2, "EdDSA") == "none";
    let alg = if unsigned {
        Alg::EdDsa
    } else {
        Alg::from_name(&arg(2, "EdDSA")).map_err(|e| anyhow::anyhow!("{e}"))?
    };
    let envelope = match arg(3, "cose").as_str() {
        "jws" => Envelope::Jws,
        "cose" => Envelope::Cose,
        other => anyhow::bail!("envelope {other}: jws or cose"),
    };
    let bundle: usize = arg(4, "0").parse()?;
    let signing = if bundle == 0 {
        Signing::PerEvent
    } else {
        Signing::Bundle(bundle)
    };
    let w = Workload {
        records: Simulator::new(SimConfig {
            events,
            seed: 42,
            ..SimConfig::default()
        })
        .map(|r| (Some(r.key), r.payload))
        .collect(),
    };
    let r = run_signed(&w, partitions, 10_000, alg, envelope, signing, unsigned)?;
    let s = &r.report.stats;
    let secs = r.elapsed.as_secs_f64();
    let rejected: BTreeMap<&str, u64> = s.rejected.iter().map(|(r, n)| (r.as_str(), *n)).collect();
    println!(
        "{}",
        serde_json::json!({
            "alg": if unsigned { "none" } else { alg.name() },
            "envelope": arg(3, "cose"),
            "bundle": bundle,
            "records": r.records,
            "devices": r.devices,
            "accepted": s.accepted,
            "rejected": rejected,
            "pipeline_s": secs,
            "events_per_s": s.accepted as f64 / secs,
            "cpu_s": r.cpu_s,
            "cpu_us_per_event": r.cpu_s.map(|c| c * 1e6 / s.accepted.max(1) as f64),
            "partitions": partitions,
            "events_file_bytes_per_event": r.events_bytes as f64 / s.accepted.max(1) as f64,
        })
    );
    Ok(())
}
