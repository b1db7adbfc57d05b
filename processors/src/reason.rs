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
}

impl Reason {
    /// Every reason, in a stable order (for metrics and reports).
    pub const ALL: [Reason; 16] = [
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

impl Rejection {
    pub(crate) fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
            event_id: None,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}
