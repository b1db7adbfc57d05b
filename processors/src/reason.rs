//! Stable rejection reason codes. These strings are an interface: they appear in the
//! rejected table, in Kafka headers and in metrics labels, and never change meaning.

use std::fmt;

/// Why an input record was rejected. See `processors/EVENTS.md` for the user-facing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Reason {
    PayloadTooLarge,
    MalformedJson,
    NotAnObject,
    UnknownField,
    MissingField,
    BadFieldType,
    BadEventId,
    UnknownEventType,
    BadTimestamp,
    LatLonOutOfRange,
    BadGtinCheckDigit,
    MalformedTraceCode,
    BadAttachment,
    BadValue,
    NumberOutOfRange,
    DuplicateEventId,
    Unsigned,
    MalformedEnvelope,
    UnsupportedAlg,
    UnknownSigner,
    BadSignature,
    SignerRevoked,
    SignerNotAuthorized,
    StaleSignature,
    ClaimsMismatch,
    BadRecord,
    RecordNotAuthorized,
    BadDisclosure,
    PrivateFieldInClear,
    EpcisUnsupported,
    SchemaViolation,
}

impl Reason {
    /// Every reason, in a stable order (for metrics and reports).
    pub const ALL: [Reason; 31] = [
        Reason::PayloadTooLarge,
        Reason::MalformedJson,
        Reason::NotAnObject,
        Reason::UnknownField,
        Reason::MissingField,
        Reason::BadFieldType,
        Reason::BadEventId,
        Reason::UnknownEventType,
        Reason::BadTimestamp,
        Reason::LatLonOutOfRange,
        Reason::BadGtinCheckDigit,
        Reason::MalformedTraceCode,
        Reason::BadAttachment,
        Reason::BadValue,
        Reason::NumberOutOfRange,
        Reason::DuplicateEventId,
        Reason::Unsigned,
        Reason::MalformedEnvelope,
        Reason::UnsupportedAlg,
        Reason::UnknownSigner,
        Reason::BadSignature,
        Reason::SignerRevoked,
        Reason::SignerNotAuthorized,
        Reason::StaleSignature,
        Reason::ClaimsMismatch,
        Reason::BadRecord,
        Reason::RecordNotAuthorized,
        Reason::BadDisclosure,
        Reason::PrivateFieldInClear,
        Reason::EpcisUnsupported,
        Reason::SchemaViolation,
    ];

    /// The stable snake_case code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::PayloadTooLarge => "payload_too_large",
            Reason::MalformedJson => "malformed_json",
            Reason::NotAnObject => "not_an_object",
            Reason::UnknownField => "unknown_field",
            Reason::MissingField => "missing_field",
            Reason::BadFieldType => "bad_field_type",
            Reason::BadEventId => "bad_event_id",
            Reason::UnknownEventType => "unknown_event_type",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::LatLonOutOfRange => "lat_lon_out_of_range",
            Reason::BadGtinCheckDigit => "bad_gtin_check_digit",
            Reason::MalformedTraceCode => "malformed_trace_code",
            Reason::BadAttachment => "bad_attachment",
            Reason::BadValue => "bad_value",
            Reason::NumberOutOfRange => "number_out_of_range",
            Reason::DuplicateEventId => "duplicate_event_id",
            Reason::Unsigned => "unsigned",
            Reason::MalformedEnvelope => "malformed_envelope",
            Reason::UnsupportedAlg => "unsupported_alg",
            Reason::UnknownSigner => "unknown_signer",
            Reason::BadSignature => "bad_signature",
            Reason::SignerRevoked => "signer_revoked",
            Reason::SignerNotAuthorized => "signer_not_authorized",
            Reason::StaleSignature => "stale_signature",
            Reason::ClaimsMismatch => "claims_mismatch",
            Reason::BadRecord => "bad_record",
            Reason::RecordNotAuthorized => "record_not_authorized",
            Reason::BadDisclosure => "bad_disclosure",
            Reason::PrivateFieldInClear => "private_field_in_clear",
            Reason::EpcisUnsupported => "epcis_unsupported",
            Reason::SchemaViolation => "schema_violation",
        }
    }

    /// Parses a code back (for reports and tests).
    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == code)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejection: the reason code and a human-readable detail (naming the field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Stable reason code.
    pub reason: Reason,
    /// What exactly was wrong, for a person fixing the source system.
    pub detail: String,
    /// The event id, when the record got far enough to have one.
    pub event_id: Option<String>,
}

/// Longest detail, in bytes (the Kafka header allows 1,000).
pub const MAX_DETAIL_BYTES: usize = 512;

/// Marks a detail that was cut at [`MAX_DETAIL_BYTES`].
const CUT: &str = "…";

impl Rejection {
    /// Every rejection is built here, so that no detail carries control characters or
    /// unbounded input: details echo pieces of the record (field names, values) and end up
    /// in the rejected table, a Kafka header, logs and terminals.
    pub(crate) fn new(reason: Reason, detail: impl AsRef<str>) -> Self {
        Rejection {
            reason,
            detail: printable(detail.as_ref()),
            event_id: None,
        }
    }
}

/// `s` with control characters escaped (`\0`, `\n`, `\u{1b}`), as are the invisible
/// characters that reorder or hide text (bidi overrides, zero-width characters), cut to at
/// most [`MAX_DETAIL_BYTES`] on a character boundary, never inside an escape.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_DETAIL_BYTES));
    // Length of `out` at the last point where the cut mark still fits after it.
    let mut fits_with_cut = 0;
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else if is_invisible(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
        if out.len() <= MAX_DETAIL_BYTES - CUT.len() {
            fits_with_cut = out.len();
        }
        if out.len() > MAX_DETAIL_BYTES {
            out.truncate(fits_with_cut);
            out.push_str(CUT);
            break;
        }
    }
    out
}

/// Format characters that change how the text around them displays without showing.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
    )
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_printable() {
        let r = Rejection::new(
            Reason::BadValue,
            "a\0b\n\t\u{1b}[1m\u{7f}\u{85}\u{202e}c é 中 \"q\" \\",
        );
        assert_eq!(
            r.detail,
            "a\\0b\\n\\t\\u{1b}[1m\\u{7f}\\u{85}\\u{202e}c é 中 \"q\" \\"
        );
    }

    #[test]
    fn details_are_bounded_on_a_boundary() {
        for filler in ["x", "é", "中", "\u{1f600}", "\0", "\u{1b}"] {
            for pad in 0..4 {
                let s = format!("{}{}", "a".repeat(pad), filler.repeat(2_000));
                let d = Rejection::new(Reason::BadValue, &s).detail;
                assert!(d.len() <= MAX_DETAIL_BYTES, "{filler}: {}", d.len());
                assert!(d.len() > MAX_DETAIL_BYTES - 12, "{filler}: {}", d.len());
                assert!(d.ends_with(CUT), "{filler}");
            }
        }
        let exact = "a".repeat(MAX_DETAIL_BYTES);
        assert_eq!(Rejection::new(Reason::BadValue, &exact).detail, exact);
    }
}
