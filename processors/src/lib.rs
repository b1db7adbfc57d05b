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
        return t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
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
    String::from_utf8_lossy(&b).into_owned()
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
                prop_assert_eq!(
                    super::utc_ms_text(&t),
                    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                );
            }
        }
    }
}
