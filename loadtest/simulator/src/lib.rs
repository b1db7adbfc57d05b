//! Deterministic factory simulator: a realistic multi-plant traceability dataset.
//!
//! [`Simulator`] is an iterator of [`SimRecord`]s: raw JSON event bytes in the format of
//! `processors/EVENTS.md`, each with its Kafka key and what the processors are expected to
//! do with it ([`Expect`]). It feeds `veritrace demo`, the tests and the benchmarks.
//!
//! # The simulated company
//!
//! Zhiqi Mobility, an e-bike maker with plants in China and abroad (Shanghai, Debrecen,
//! Shenzhen, Monterrey, Chongqing, Leipzig, Hai Phong, Pune; `plants` picks the first N and
//! repeats the sites with new numbers beyond eight). The bill of materials has four levels:
//!
//! 1. raw material batches (`(01){gtin}(10){lot}`) made by Chinese and international
//!    suppliers: `production`, outgoing `quality_check`, `transport`, `warehouse_in`,
//!    incoming `quality_check` (a failed batch is shipped back), `warehouse_out` to the line;
//! 2. part lots made by `transformation` events that consume raw batches: batch splits (one
//!    batch, several lots), merges (several batches, one lot) and plain 1:1 conversions, each
//!    lot then sampled by an in-process `quality_check`;
//! 3. serialised sub-assemblies (`(01){gtin}(21){serial}`: drive unit, battery pack, frame
//!    set, controller) built by `assembly` events from part lots, then end-of-line tested;
//!    frame sets are welded and powder-coated, so they also consume a bulk material (below);
//! 4. serialised e-bikes built by `assembly` from one sub-assembly of each kind, final
//!    `quality_check` (a failed bike is reworked and re-tested), `warehouse_in`; most are
//!    packed on pallets (`assembly` of an SSCC `(00)...`, `warehouse_out`, `transport`,
//!    `warehouse_in` at a distribution centre), the rest shipped one by one to a retailer;
//!    then `retail` and `sale` (to a customer) at retailers in China, Europe, North America
//!    and South-East Asia.
//!
//! The bulk material is polyester powder coating, bought in supplier batches of 4.5-6.5 t
//! (`(01)06951187102381(10)HC{yymmdd}-{counter}` from Guangdong Huacai, mostly for the
//! Chinese plants, `(01)04056731102557(10)NP{yymmdd}-{counter}` from Nordpulver, mostly for
//! the European ones; about 10 % written as Digital Link URIs like any batch). It goes through
//! the same supplier, transport and incoming-inspection events as the other raw batches,
//! but a plant has only one batch open at its paint line at a time: every frame set coated
//! while it is open (0.30-0.42 kg each, in the assembly's `attributes`) lists the batch as
//! an `assembly` input, the next batch is opened when it runs out, and the one after that
//! is ordered once the open one is down to 80 %. At about 2,800 bikes a plant a day, one
//! coating batch lasts four to eight days and its forward trace reaches 11,000-20,000
//! frame sets and as many bikes (and their pallets), where any other raw batch reaches a
//! few hundred to about a thousand. The first batch of each plant is opened at the start.
//!
//! Devices on every line emit `telemetry` (about 55 % of all records) and get occasional
//! preventive or corrective `maintenance` (when their simulated wear drifts too far).
//! Production is pull-based: when no scheduled step is due, a plant starts the highest BOM
//! level it can (bike, else sub-assembly, else part lot, else a purchase order). The window
//! opens mid-operation: the first raw batches appear at their line feed or warehouse
//! arrival, without their earlier supplier events. With the default three plants a
//! 1M-record run covers about four simulated days, 200k records about 18 hours. A bike can
//! be sold about six hours after assembly at the earliest; rail and sea exports take weeks.
//!
//! # Determinism and time
//!
//! The generator uses its own small PRNG (wyrand), so the same [`SimConfig`] yields
//! byte-identical records on every platform and with any `rand` version. Simulated time
//! starts at [`SimConfig::start_unix_ms`] and advances by about `1000 / plants` ms per
//! record (see [`SimConfig::approx_end_unix_ms`]); every record's `event_time` is the
//! simulation clock, so the stream is in time order and an object's events are in causal
//! order (sources that write whole seconds floor the clock, so across sources the stream is
//! in order to within a second). Chinese (and Singapore/Malaysia) participants write
//! `+08:00` times, the others `Z`; ERP-like sources (suppliers, carriers, distributors,
//! retailers) write whole seconds, plant systems milliseconds.
//!
//! # Trace codes and keys
//!
//! Each object gets one written form for its whole life (about 90 % GS1 element strings,
//! 10 % GS1 Digital Link URIs on various hosts, some with a GTIN-13, a query string, a
//! percent-encoded lot or a lot before the serial), so the Kafka key (the trace code as
//! written) is stable and one object's events stay in one partition. Transformations are
//! keyed by their first input, telemetry and maintenance by the device id.
//!
//! # Invalid records and duplicates
//!
//! `invalid_ratio` of the records carry exactly one defect whose EVENTS.md reason code is in
//! [`Expect::Invalid`]: `malformed_json` (truncated, trailing comma, two objects, single
//! quotes, Latin-1 bytes, binary garbage), `not_an_object`, `unknown_event_type`,
//! `missing_field`, `bad_timestamp`, `lat_lon_out_of_range`, `bad_gtin_check_digit`,
//! `malformed_trace_code`, `bad_attachment`, `unknown_field`, `bad_value`, `bad_field_type`,
//! `bad_event_id`, `number_out_of_range` and (1 % of them) `payload_too_large`. Their
//! `event_id`s never collide with valid ones. `duplicate_ratio` are byte-identical re-sends
//! (same key) of a recent valid record. Valid records never exceed [`PAYLOAD_LIMIT`]; about
//! 2 % of report hashes are written in upper-case hex (valid: EVENTS.md lower-cases them).
//! Memory stays bounded: only in-flight objects, stocks and a 64-record ring are kept.
#![deny(missing_docs)]

mod format;
mod invalid;
mod master;
mod rng;
mod state;
mod valid;
mod world;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;

use crate::rng::Rng;
use crate::state::State;
use crate::world::World;
use crate::writer::Scratch;

// ------------------------------------------------------------------------------------------
// Public API
// ------------------------------------------------------------------------------------------

/// 2026-10-01T00:00:00Z in Unix milliseconds, the default [`SimConfig::start_unix_ms`].
pub const DEFAULT_START_UNIX_MS: i64 = 1_790_812_800_000;

/// Largest accepted [`SimConfig::plants`]; larger values are clamped.
pub const MAX_PLANTS: u32 = 64;

/// The payload size limit the processors apply by default (64 KiB); `payload_too_large`
/// records are larger, every other record is smaller.
pub const PAYLOAD_LIMIT: usize = 64 * 1024;

/// 2000-01-01T00:00:00Z: earliest start accepted (earlier events would be invalid).
const MIN_START_UNIX_MS: i64 = 946_684_800_000;
/// 9000-01-01T00:00:00Z: latest start accepted (keeps years at four digits).
const MAX_START_UNIX_MS: i64 = 221_845_392_000_000;

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Total number of records produced: valid, invalid and duplicates together.
    pub events: u64,
    /// PRNG seed; the same configuration always yields byte-identical records.
    pub seed: u64,
    /// Number of plants, clamped to `1..=MAX_PLANTS`; the simulated clock advances about
    /// `1000 / plants` ms per record (each plant produces about one event per second).
    pub plants: u32,
    /// Fraction of records that are invalid, each with exactly one defect (clamped to 0..=1;
    /// NaN counts as 0).
    pub invalid_ratio: f64,
    /// Fraction of records that are byte-identical re-sends of a recent valid record
    /// (clamped to `0..=1 - invalid_ratio`; NaN counts as 0).
    pub duplicate_ratio: f64,
    /// Simulated time of the first record, Unix milliseconds, clamped to
    /// 2000-01-01 ..= 9000-01-01 (UTC).
    pub start_unix_ms: i64,
}

impl Default for SimConfig {
    /// One million records, seed 42, three plants (Shanghai, Debrecen, Shenzhen), 1 %
    /// invalid, 0.5 % duplicates, starting 2026-10-01T00:00:00Z.
    fn default() -> Self {
        Self {
            events: 1_000_000,
            seed: 42,
            plants: 3,
            invalid_ratio: 0.01,
            duplicate_ratio: 0.005,
            start_unix_ms: DEFAULT_START_UNIX_MS,
        }
    }
}

impl SimConfig {
    /// Mean simulated time between two records, in milliseconds (`1000 / plants`, at least 1).
    pub fn mean_gap_ms(&self) -> u64 {
        (1000 / u64::from(self.plants.clamp(1, MAX_PLANTS))).max(1)
    }

    /// Approximate simulated time of the last record (Unix ms): start plus `events` mean gaps.
    /// Event times must not lie more than a day in the future of the validating clock, so
    /// for very large runs pick a start such that this is in the past (see [`Self::ending_by`]).
    pub fn approx_end_unix_ms(&self) -> i64 {
        let span = self.events.saturating_mul(self.mean_gap_ms());
        self.start_unix_ms
            .clamp(MIN_START_UNIX_MS, MAX_START_UNIX_MS)
            .saturating_add(i64::try_from(span).unwrap_or(i64::MAX))
    }

    /// Moves `start_unix_ms` back (never forward) so that the run ends by `end_unix_ms`,
    /// e.g. the current time for a long benchmark run.
    pub fn ending_by(mut self, end_unix_ms: i64) -> Self {
        let over = self.approx_end_unix_ms().saturating_sub(end_unix_ms);
        if over > 0 {
            self.start_unix_ms = self.start_unix_ms.saturating_sub(over);
        }
        self
    }
}

/// What the processors are expected to do with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expect {
    /// A valid event with a fresh `event_id`: accepted, becomes a Merkle leaf.
    Valid,
    /// A byte-identical re-send of an earlier valid record (producer retry): rejected as
    /// `duplicate_event_id` or dropped, never a second leaf.
    Duplicate,
    /// Rejected with exactly this EVENTS.md reason code.
    Invalid(&'static str),
}

impl Expect {
    /// The expected rejection reason code, if any (`duplicate_event_id` for duplicates).
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Expect::Valid => None,
            Expect::Duplicate => Some("duplicate_event_id"),
            Expect::Invalid(code) => Some(*code),
        }
    }
}

/// One simulated record, as a producer would send it to Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRecord {
    /// Kafka key: the trace code as written in the payload (object events), the first input
    /// (transformation) or the device id (telemetry, maintenance).
    pub key: Vec<u8>,
    /// The raw record value: JSON bytes (or, for some `malformed_json` records, garbage).
    pub payload: Vec<u8>,
    /// What the processors should do with it.
    pub expect: Expect,
}

/// The dataset generator: an iterator of exactly [`SimConfig::events`] records.
pub struct Simulator {
    total: u64,
    emitted: u64,
    invalid_ratio: f64,
    duplicate_ratio: f64,
    mean_gap: u64,
    clock: i64,
    seq: u64,
    rng: Rng,
    w: World,
    st: State,
    sc: Scratch,
    buf: String,
    key: String,
    ring: Vec<(Vec<u8>, Vec<u8>)>,
    ring_pos: usize,
    /// Object slots that found no work and fell back to a device event.
    starved: u64,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("total", &self.total)
            .field("emitted", &self.emitted)
            .field("invalid_ratio", &self.invalid_ratio)
            .field("duplicate_ratio", &self.duplicate_ratio)
            .field("plants", &self.w.plants.len())
            .field("clock_unix_ms", &self.clock)
            .field("tasks_in_flight", &self.st.heap.len())
            .field("starved", &self.starved)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// A simulator for `cfg` (out-of-range settings are clamped as documented on
    /// [`SimConfig`]).
    pub fn new(cfg: SimConfig) -> Self {
        let plants = cfg.plants.clamp(1, MAX_PLANTS) as usize;
        let clean = |r: f64| if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
        let invalid_ratio = clean(cfg.invalid_ratio);
        let duplicate_ratio = clean(cfg.duplicate_ratio).min(1.0 - invalid_ratio);
        let start = cfg
            .start_unix_ms
            .clamp(MIN_START_UNIX_MS, MAX_START_UNIX_MS);
        let mut rng = Rng::new(cfg.seed);
        let w = World::build(plants);
        let st = State::new(&w, &mut rng, start);
        Self {
            total: cfg.events,
            emitted: 0,
            invalid_ratio,
            duplicate_ratio,
            mean_gap: cfg.mean_gap_ms(),
            clock: start,
            seq: 0,
            rng,
            w,
            st,
            sc: Scratch::default(),
            buf: String::with_capacity(4096),
            key: String::with_capacity(128),
            ring: Vec::with_capacity(RING),
            ring_pos: 0,
            starved: 0,
        }
    }

    /// Records still to come.
    pub fn remaining(&self) -> u64 {
        self.total - self.emitted
    }

    /// Simulated time of the most recent record (Unix ms).
    pub fn clock_unix_ms(&self) -> i64 {
        self.clock
    }
}

impl Iterator for Simulator {
    type Item = SimRecord;

    fn next(&mut self) -> Option<SimRecord> {
        if self.emitted >= self.total {
            return None;
        }
        self.emitted += 1;
        self.clock = self
            .clock
            .saturating_add(self.rng.below(2 * self.mean_gap + 1) as i64);
        let u = self.rng.unit();
        if u < self.invalid_ratio {
            let (payload, reason) = self.invalid();
            return Some(SimRecord {
                key: self.key.as_bytes().to_vec(),
                payload,
                expect: Expect::Invalid(reason),
            });
        }
        if u < self.invalid_ratio + self.duplicate_ratio && !self.ring.is_empty() {
            let (key, payload) = &self.ring[self.rng.idx(self.ring.len())];
            return Some(SimRecord {
                key: key.clone(),
                payload: payload.clone(),
                expect: Expect::Duplicate,
            });
        }
        self.valid();
        let rec = SimRecord {
            key: self.key.as_bytes().to_vec(),
            payload: self.buf.as_bytes().to_vec(),
            expect: Expect::Valid,
        };
        // The ring of retry candidates is refreshed with every fourth valid record.
        if self.duplicate_ratio > 0.0 && self.seq.is_multiple_of(4) {
            if self.ring.len() < RING {
                self.ring.push((rec.key.clone(), rec.payload.clone()));
            } else {
                let slot = &mut self.ring[self.ring_pos];
                slot.0.clear();
                slot.0.extend_from_slice(&rec.key);
                slot.1.clear();
                slot.1.extend_from_slice(&rec.payload);
                self.ring_pos = (self.ring_pos + 1) % RING;
            }
        }
        Some(rec)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining()).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

impl std::iter::FusedIterator for Simulator {}

/// GS1 mod-10 check digit of `digits` (a GTIN or SSCC without its check digit).
/// The GS1 mod-10 check digit, from the one implementation the processors validate with.
/// Callers pass only digit strings they built themselves.
fn gs1_check_digit(digits: &str) -> u8 {
    veritrace_processors::tracecode::gs1_check_digit(digits).unwrap_or(0)
}

// ------------------------------------------------------------------------------------------
// Tunables
// ------------------------------------------------------------------------------------------

const RING: usize = 64;
/// Share of valid records that are device events (telemetry or maintenance).
const DEVICE_SHARE: f64 = 0.55;
const PREVENTIVE_MAINTENANCE: f64 = 0.003;
const DL_SHARE: f64 = 0.10;
/// Raw batches per plant and material in stock or on their way.
const RAW_TARGET: usize = 40;
/// Minimum time between two purchase orders of one material at one plant.
const RAW_ORDER_GAP: i64 = 15 * MIN;
/// Part lots per plant and part in stock or being made.
const LOT_TARGET: usize = 2;
/// Sub-assemblies per plant and kind in stock or being tested.
const SUB_TARGET: usize = 150;

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
