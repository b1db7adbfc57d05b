//! What the parse side of the pipeline costs per record, against the floors a faster parse
//! could reach, on the simulator's valid records (issue 19's question: can a different
//! parse bring one partition thread to 3.3 us a record?). Each stage is a function of its
//! own, so `valgrind --tool=callgrind` counts its instructions; without valgrind the example
//! prints each stage's time per record (best of five passes):
//!
//! ```sh
//! cargo build --release -p veritrace-simulator --example parse_floor
//! target/release/examples/parse_floor 30000
//! valgrind --tool=callgrind target/release/examples/parse_floor 30000 once
//! callgrind_annotate --inclusive=yes callgrind.out.<pid> | grep parse_floor::
//! ```
//!
//! The stages:
//! - `scan`: serde_json reading each record and keeping nothing (`IgnoredAny`), the floor of
//!   any parse through serde_json;
//! - `borrowed`: the same fields read into a struct of borrowed strings (`Cow<str>`, owned
//!   only where the JSON escapes), readings into a map and attributes kept as raw text: a
//!   parse with no allocation per string and no validation;
//! - `parse_validate`: the pipeline's own `parse_event` (owned strings, every check of
//!   EVENTS.md, event times normalised);
//! - `process`: `parse_event`, then the RFC 8785 canonical bytes and the leaf hash, i.e.
//!   everything a record costs before it reaches the batch's columns.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use veritrace_processors::event::{Limits, parse_event, process};
use veritrace_simulator::{Expect, SimConfig, Simulator};

// The same allocator as the shipped binaries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Deserialize)]
#[allow(dead_code)] // read to be parsed, not used
struct Party<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    role: Cow<'a, str>,
}

#[derive(Deserialize)]
#[allow(dead_code)] // read to be parsed, not used
struct Object<'a> {
    #[serde(borrow, default)]
    batch_number: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    expiry_date: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    product_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    production_date: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    production_line: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    spec: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[allow(dead_code)] // read to be parsed, not used
struct Quantity<'a> {
    #[serde(borrow)]
    unit: Cow<'a, str>,
    value: f64,
}

#[derive(Deserialize)]
#[allow(dead_code)] // read to be parsed, not used
struct Location {
    lat: f64,
    lon: f64,
}

#[derive(Deserialize)]
#[allow(dead_code)] // read to be parsed, not used
struct Attachment<'a> {
    #[serde(borrow, default)]
    media_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sha256: Option<Cow<'a, str>>,
    #[serde(default)]
    size: Option<u64>,
}

/// A record's members as borrowed text.
#[derive(Deserialize)]
#[allow(dead_code)] // read to be parsed, not used
struct Borrowed<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    event_time: Cow<'a, str>,
    #[serde(borrow)]
    participant: Party<'a>,
    #[serde(borrow, default)]
    trace_code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    inputs: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    outputs: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    object: Option<Object<'a>>,
    #[serde(borrow, default)]
    quantity: Option<Quantity<'a>>,
    #[serde(borrow, default)]
    operator: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    result: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    site: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    device_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    counterparty: Option<Party<'a>>,
    #[serde(default)]
    location: Option<Location>,
    #[serde(borrow, default)]
    readings: Option<BTreeMap<Cow<'a, str>, f64>>,
    #[serde(borrow, default)]
    attributes: Option<&'a RawValue>,
    #[serde(borrow, default)]
    attachments: Option<Vec<Attachment<'a>>>,
    #[serde(default)]
    version: Option<u64>,
}

#[inline(never)]
fn scan(records: &[&str]) -> usize {
    records
        .iter()
        .filter(|r| serde_json::from_str::<serde::de::IgnoredAny>(r).is_ok())
        .count()
}

#[inline(never)]
fn borrowed(records: &[&str]) -> usize {
    let mut parsed = 0;
    for r in records {
        if let Ok(b) = serde_json::from_str::<Borrowed>(r) {
            std::hint::black_box((&b.event_id, &b.participant.id));
            parsed += 1;
        }
    }
    parsed
}

#[inline(never)]
fn parse_validate(records: &[&str], now: i64) -> usize {
    let limits = Limits::default();
    records
        .iter()
        .filter(|r| parse_event(r.as_bytes(), now, &limits).is_ok())
        .count()
}

#[inline(never)]
fn process_all(records: &[&str], now: i64) -> usize {
    let limits = Limits::default();
    records
        .iter()
        .filter(|r| process(r.as_bytes(), now, &limits).is_ok())
        .count()
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30_000);
    let once = std::env::args().nth(2).as_deref() == Some("once");
    let records: Vec<String> = Simulator::new(SimConfig {
        events: n,
        seed: 42,
        ..SimConfig::default()
    })
    .filter(|r| r.expect == Expect::Valid)
    .filter_map(|r| String::from_utf8(r.payload).ok())
    .collect();
    let refs: Vec<&str> = records.iter().map(String::as_str).collect();
    // Far enough ahead that no simulated time is in the future.
    let now = 4_102_444_800_000; // 2100-01-01
    let bytes: usize = refs.iter().map(|r| r.len()).sum();
    let per = refs.len().max(1) as f64;
    println!(
        "{} valid records, {:.0} bytes each on average",
        refs.len(),
        bytes as f64 / per
    );
    let stages: [(&str, &dyn Fn() -> usize); 4] = [
        ("scan", &|| scan(&refs)),
        ("borrowed", &|| borrowed(&refs)),
        ("parse_validate", &|| parse_validate(&refs, now)),
        ("process", &|| process_all(&refs, now)),
    ];
    for (name, stage) in stages {
        let passes = if once { 1 } else { 5 };
        let mut best = Duration::MAX;
        let mut out = 0;
        for _ in 0..passes {
            let start = Instant::now();
            out = std::hint::black_box(stage());
            best = best.min(start.elapsed());
        }
        println!(
            "{name:>15}: {:>6.0} ns per record ({out})",
            best.as_nanos() as f64 / per
        );
    }
}
