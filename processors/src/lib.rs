//! # veritrace-processors: from raw records to canonical, validated events
//!
//! The stream-processing stage. Each input record (a Kafka record value, an HTTP body, a
//! line of a file) is parsed, structured into the canonical [`event::Event`] and validated
//! ([`event::process`], pure, no I/O). Accepted events become Merkle leaves; rejected
//! records keep their original bytes and a stable [`Reason`] code. The
//! [`partition::PartitionProcessor`] is the I/O shell that owns one partition: it
//! deduplicates event ids and seals batches through `veritrace-anchor`. Two runtimes drive
//! partitions: [`runtime`] in process (files, the demo), and `kafka` (feature `kafka`) as a
//! Kafka consumer group.
//!
//! Key decision: the leaf preimage is the RFC 8785 canonical JSON of the structured event,
//! produced by the same function the auditor's verifier uses.
#![deny(missing_docs)]

pub mod audit;
pub mod columns;
pub mod dedup;
pub mod embedded;
pub mod epcis;
pub mod event;
mod event_jcs;
#[cfg(feature = "kafka")]
pub mod kafka;
mod number;
pub mod partition;
pub mod privacy;
pub mod reason;
pub mod runtime;
pub mod sightings;
pub mod signed;
pub mod tracecode;
pub mod types;

pub use event::{Accepted, Event, EventType, Limits, process};
pub use partition::{BatchPolicy, Outcome, PartitionProcessor, Stats};
pub use reason::{Reason, Rejection};

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the processing stage (not rejections: those are data, see [`Rejection`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Sealing or reading sealed batches failed.
    #[error(transparent)]
    Anchor(#[from] veritrace_anchor::Error),
    /// Building Arrow columns failed (a bug: the schema is ours).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A file could not be read.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Which file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A sealed file does not have the expected content.
    #[error("corrupt {path}: {detail}")]
    Corrupt {
        /// Which file.
        path: std::path::PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The caller broke the contract (offsets not increasing, ...).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A setting is missing or unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The Kafka client failed in a way that stops processing.
    #[error("kafka: {0}")]
    Kafka(String),
}

#[cfg(feature = "kafka")]
impl From<rdkafka::error::KafkaError> for Error {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        Error::Kafka(e.to_string())
    }
}

/// A hasher for keys that are already uniformly distributed hashes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PreHashed(u64);

impl std::hash::Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 ^= i;
    }
    fn write_u128(&mut self, i: u128) {
        self.0 ^= i as u64 ^ (i >> 64) as u64;
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC with millisecond precision.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| utc_ms_text(&t))
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into())
}

/// `YYYY-MM-DDTHH:MM:SS.sssZ`, what chrono's `to_rfc3339_opts(Millis, true)` writes, without
/// its formatting machinery: every accepted event's time goes through it. The civil date
/// of the day number is Howard Hinnant's `civil_from_days`; years beyond four digits are
/// left to chrono.
pub(crate) fn utc_ms_text(t: &chrono::DateTime<chrono::Utc>) -> String {
    let mut out = String::new();
    utc_ms_text_into(t, &mut out);
    out
}

/// [`utc_ms_text`] written into `out` (cleared first), reusing its allocation: the event
/// path hands it the text the time came in.
pub(crate) fn utc_ms_text_into(t: &chrono::DateTime<chrono::Utc>, out: &mut String) {
    out.clear();
    let ms = t.timestamp_millis();
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        out.push_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        return;
    }
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, in_day / 3_600_000);
    put(14, 2, in_day / 60_000 % 60);
    put(17, 2, in_day / 1_000 % 60);
    put(20, 3, in_day % 1_000);
    // Digits and ASCII punctuation only, so never lossy.
    out.push_str(&String::from_utf8_lossy(&b));
}

/// The instant of `text`, in milliseconds since the Unix epoch, when it is written the way
/// nearly every source writes times: `YYYY-MM-DDTHH:MM:SS`, an optional fraction of one to
/// nine digits, then `Z` or `+HH:MM` / `-HH:MM`. Every accepted event's time is read here;
/// chrono's RFC 3339 parser costs about four times as much.
///
/// `None` for anything else: lower-case `t` or `z`, a space for the `T`, a leap second,
/// longer fractions, and every malformed text. The caller then asks chrono, which accepts
/// or rejects it with its own message, so what is accepted and what a rejection says do
/// not depend on this path. Whatever this accepts, chrono accepts as the same instant (a
/// property test holds it to that).
pub(crate) fn rfc3339_common_ms(text: &str) -> Option<i64> {
    let (head, rest) = text.as_bytes().split_first_chunk::<19>()?;
    if head[4] != b'-'
        || head[7] != b'-'
        || head[10] != b'T'
        || head[13] != b':'
        || head[16] != b':'
    {
        return None;
    }
    let mut digits = 0u32;
    for i in [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18] {
        digits += u32::from(head[i].is_ascii_digit());
    }
    if digits != 14 {
        return None;
    }
    let two = |i: usize| i64::from(head[i] - b'0') * 10 + i64::from(head[i + 1] - b'0');
    let year = two(0) * 100 + two(2);
    let (month, day) = (two(5), two(8));
    let (hour, minute, second) = (two(11), two(14), two(17));
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // The fraction: one to nine digits, of which the first three are milliseconds.
    let mut rest = rest;
    let mut millis = 0;
    if let [b'.', tail @ ..] = rest {
        let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return None;
        }
        for k in 0..3 {
            millis = millis * 10
                + tail
                    .get(k)
                    .filter(|_| k < n)
                    .map_or(0, |c| i64::from(c - b'0'));
        }
        rest = &tail[n..];
    }
    let offset = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()) =>
        {
            let (h, m) = (
                i64::from((h1 - b'0') * 10 + (h2 - b'0')),
                i64::from((m1 - b'0') * 10 + (m2 - b'0')),
            );
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'-' {
                -(h * 3600 + m * 60)
            } else {
                h * 3600 + m * 60
            }
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some((seconds - offset) * 1000 + millis)
}

/// Days of `month` (1-12) in `year` of the proleptic Gregorian calendar.
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's `days_from_civil`, the inverse of
/// the `civil_from_days` in [`utc_ms_text`]).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod time_text_tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20000))]

        /// The same text as chrono's RFC 3339 writer, over the whole range it accepts.
        #[test]
        fn writes_what_chrono_writes(ms in prop_oneof![
            -62_167_219_200_000i64..253_402_300_800_000,
            any::<i64>(),
            946_684_800_000i64..4_102_444_800_000,
        ]) {
            if let Some(t) = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms) {
                let want = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                prop_assert_eq!(super::utc_ms_text(&t), want.clone());
                // Into a buffer that held a longer text before.
                let mut reused = "2026-11-01T08:15:02.123456789+08:00 and more".to_owned();
                super::utc_ms_text_into(&t, &mut reused);
                prop_assert_eq!(reused, want);
            }
        }
    }

    /// Texts in the common form, with fields sometimes out of range.
    fn common_text() -> impl Strategy<Value = String> {
        (
            (0u32..10_000, 0u32..14, 0u32..33),
            (0u32..25, 0u32..61, 0u32..61),
            prop_oneof![Just(String::new()), "\\.[0-9]{1,10}"],
            prop_oneof![
                Just("Z".to_owned()),
                (any::<bool>(), 0u32..25, 0u32..61).prop_map(|(neg, h, m)| format!(
                    "{}{h:02}:{m:02}",
                    if neg { '-' } else { '+' }
                )),
            ],
        )
            .prop_map(|((y, mo, d), (h, mi, s), frac, zone)| {
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{zone}")
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20000))]

        /// What the fast path reads, chrono reads as the same instant; and it reads every
        /// text in the common form that chrono reads, so it is not a path never taken.
        #[test]
        fn reads_what_chrono_reads(text in common_text()) {
            let chrono = chrono::DateTime::parse_from_rfc3339(&text).map(|t| t.timestamp_millis());
            let fast = super::rfc3339_common_ms(&text);
            match (&chrono, fast) {
                (Ok(c), Some(f)) => prop_assert_eq!(*c, f),
                (Ok(_), None) => {
                    // Only what the fast path leaves to chrono on purpose.
                    let frac = text.split(['.']).nth(1).map(|f| f.bytes().take_while(u8::is_ascii_digit).count());
                    prop_assert!(frac > Some(9) || text.get(17..19) == Some("60"), "{text} not read");
                }
                (Err(_), None) => {}
                (Err(e), Some(f)) => prop_assert!(false, "{text}: chrono says {e}, fast path {f}"),
            }
        }

        /// Any text, even one close to the form: never read where chrono refuses, never
        /// another instant.
        #[test]
        fn never_reads_what_chrono_refuses(text in prop_oneof![
            "[0-9T:.+Zz -]{0,32}",
            common_text().prop_flat_map(|t| (Just(t.clone()), 0..t.len(), any::<u8>()))
                .prop_map(|(t, i, c)| {
                    let mut b = t.into_bytes();
                    b[i] = b"0123456789T:.+-Zzt "[usize::from(c) % 19];
                    String::from_utf8_lossy(&b).into_owned()
                }),
        ]) {
            if let Some(f) = super::rfc3339_common_ms(&text) {
                let chrono = chrono::DateTime::parse_from_rfc3339(&text).map(|t| t.timestamp_millis());
                prop_assert_eq!(chrono.ok(), Some(f), "{}", text);
            }
        }
    }

    #[test]
    fn reads_the_edges_of_the_calendar() {
        for (text, ms) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T23:59:59.999+00:00", 951_868_799_999),
            ("2024-12-31T23:59:59.9999999-01:30", 1_735_694_999_999),
            ("0000-03-01T00:00:00Z", -62_162_035_200_000),
            ("1969-12-31T23:59:59.5Z", -500),
        ] {
            assert_eq!(super::rfc3339_common_ms(text), Some(ms), "{text}");
        }
        for text in [
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-01-01t00:00:00Z",
            "2024-01-01T00:00:00z",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:60Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00.1234567890Z",
            "2024-01-01T00:00:00+0100",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00Z ",
            "+2024-01-01T00:00:00Z",
        ] {
            assert_eq!(super::rfc3339_common_ms(text), None, "{text}");
        }
    }
}
