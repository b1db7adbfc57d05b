//! GS1 trace codes: parsing, validation and normalisation.
//!
//! A trace code names exactly one trace object. Three kinds of object are supported:
//!
//! | kind | identifies | element string |
//! |---|---|---|
//! | [`TraceCodeKind::Sgtin`] | one serialised item: GTIN + serial number | `(01){gtin14}(21){serial}` |
//! | [`TraceCodeKind::Lgtin`] | one batch / lot of a product: GTIN + lot | `(01){gtin14}(10){lot}` |
//! | [`TraceCodeKind::Sscc`] | one logistic unit (pallet, case) | `(00){sscc18}` |
//!
//! # Accepted input forms
//!
//! [`parse_trace_code`] accepts, after trimming leading and trailing ASCII whitespace:
//!
//! * **GS1 element strings in parentheses** (the human readable interpretation printed under
//!   a barcode): `(01)09506000134352(21)7QK3M9`, `(01)09506000134352(10)LOT-2026-11` and
//!   `(00)106141411234567897`. Everything after `(21)` or `(10)` is the serial or lot, so a
//!   serial may itself contain parentheses: `(01)09506000134352(21)A(1)` has serial `A(1)`.
//! * **GS1 Digital Link URIs** with scheme `http` or `https` (any case), any host and any
//!   path prefix, ending in one of `/01/{gtin}/21/{serial}`, `/01/{gtin}/10/{lot}`,
//!   `/01/{gtin}/10/{lot}/21/{serial}` or `/00/{sscc}`. Path segment values are
//!   percent-decoded (an invalid escape is malformed). The query string and the fragment
//!   carry no identity and are ignored. A lot followed by a serial names the serial item:
//!   the result is an SGTIN and the lot is validated, then dropped.
//!
//! GTIN-8, GTIN-12, GTIN-13 and GTIN-14 are accepted in both forms and zero-padded to 14
//! digits. The GS1 mod-10 check digit of every GTIN and SSCC (18 digits) is verified.
//! Serials and lots are 1 to 20 characters of the GS1 AI encodable character set 82:
//! `! " % & ' ( ) * + , - . / 0-9 : ; < = > ? A-Z _ a-z`. Nothing else is accepted: raw
//! (unbracketed, FNC1-separated) element strings, EPC URNs, other application identifiers
//! (`(17)`, `/22/`, ...), a GTIN without serial or lot, and trailing path segments or a
//! trailing `/` are all malformed.
//!
//! Details worth knowing:
//!
//! * Digital Link URIs are matched from the right: the path prefix is never interpreted, so
//!   `https://h/00/x/01/{gtin}/21/{serial}` is the SGTIN. Raw URIs must be printable ASCII
//!   (non-ASCII has to be percent-encoded, and then fails the character set 82 check).
//! * Because a serial or lot runs to the end of an element string,
//!   `(01){gtin}(10)L(21)S` is the LGTIN with lot `L(21)S`, not an SGTIN.
//! * `(01)` followed by 8, 12 or 13 digits is accepted and padded, although GS1 element
//!   strings always carry 14 digits.
//!
//! # Why the element string is the canonical form
//!
//! Every accepted input is normalised to its bracketed element string
//! ([`TraceCode::as_str`]). That form is:
//!
//! * **unique per object**: a Digital Link can be written with any resolver host, path
//!   prefix, GTIN length, percent-encoding and query string, but the element string has
//!   exactly one spelling per object (14-digit GTIN, no escapes, no host). Two events about
//!   the same object therefore always carry byte-identical trace codes, which is what the
//!   canonical event (and its Merkle leaf) and trace queries rely on;
//! * **human readable**: it is the GS1 human readable interpretation (HRI) printed under
//!   barcodes, so an auditor can compare it with a label by eye;
//! * **independent of any web domain**: it stays valid if a brand changes resolver.
//!
//! [`TraceCode::digital_link`] renders the Digital Link URI for a given resolver base.
//!
//! # Errors
//!
//! Every failure is one of two [`TraceCodeError`] kinds, which map to the stable reason
//! codes `bad_gtin_check_digit` and `malformed_trace_code` ([`TraceCodeError::reason_code`]).
//! Structure is checked before check digits: a code that is both malformed and has a wrong
//! check digit is reported as malformed.
//!
//! # Performance
//!
//! Parsing does no regex matching and makes exactly one heap allocation on success (the
//! canonical string, from which the GTIN, serial, lot and SSCC are borrowed). It never
//! panics, whatever the input.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;
use std::str::FromStr;

/// Maximum length of a serial number (AI 21) or a lot number (AI 10).
pub const MAX_SERIAL_LEN: usize = 20;

/// Number of characters of the offending input echoed in a [`TraceCodeError::Malformed`].
const ECHO_CHARS: usize = 100;

/// Length of an SSCC, check digit included.
const SSCC_LEN: usize = 18;

/// Byte range of the GTIN-14 in a canonical SGTIN / LGTIN element string.
const GTIN_RANGE: std::ops::Range<usize> = 4..18;
/// Byte offset of the serial / lot in a canonical SGTIN / LGTIN element string.
const VALUE_START: usize = 22;
/// Byte range of the SSCC in a canonical SSCC element string.
const SSCC_RANGE: std::ops::Range<usize> = 4..22;

/// The kind of object a [`TraceCode`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TraceCodeKind {
    /// A serialised trade item: GTIN + serial number (AIs 01 + 21).
    Sgtin,
    /// A batch or lot of a trade item: GTIN + batch/lot number (AIs 01 + 10).
    Lgtin,
    /// A logistic unit: Serial Shipping Container Code (AI 00).
    Sscc,
}

impl TraceCodeKind {
    /// Stable lower-case name: `"sgtin"`, `"lgtin"` or `"sscc"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sgtin => "sgtin",
            Self::Lgtin => "lgtin",
            Self::Sscc => "sscc",
        }
    }
}

impl fmt::Display for TraceCodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a trace code or GTIN was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceCodeError {
    /// A well-formed GTIN or SSCC whose GS1 mod-10 check digit is wrong.
    #[error("bad check digit in GTIN/SSCC {code}: expected {expected}, found {found}")]
    BadCheckDigit {
        /// The GTIN or SSCC digits as given (not padded).
        code: String,
        /// The check digit computed from the other digits.
        expected: u8,
        /// The check digit the code carries.
        found: u8,
    },
    /// Input in none of the accepted forms.
    #[error("malformed trace code {input:?}: {reason}")]
    Malformed {
        /// The offending input, truncated to 100 characters (`…` marks a cut).
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl TraceCodeError {
    /// Stable reason code: `bad_gtin_check_digit` or `malformed_trace_code`.
    #[must_use]
    pub const fn reason_code(&self) -> &'static str {
        match self {
            Self::BadCheckDigit { .. } => "bad_gtin_check_digit",
            Self::Malformed { .. } => "malformed_trace_code",
        }
    }

    fn malformed(input: &str, reason: &'static str) -> Self {
        Self::Malformed {
            input: echo(input),
            reason,
        }
    }
}

/// `input`, cut to [`ECHO_CHARS`] characters so that huge inputs do not bloat errors.
fn echo(input: &str) -> String {
    match input.char_indices().nth(ECHO_CHARS) {
        Some((cut, _)) => {
            let mut s = String::with_capacity(cut + 3);
            s.push_str(input.get(..cut).unwrap_or_default());
            s.push('…');
            s
        }
        None => input.to_owned(),
    }
}

/// A validated, normalised trace code.
///
/// Internally it is its canonical element string; the GTIN, serial, lot and SSCC are
/// borrowed from it. Equality and hashing are those of the canonical form, so two inputs
/// naming the same object (say a Digital Link and an element string) compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceCode {
    kind: TraceCodeKind,
    /// `(01){gtin14}(21){serial}`, `(01){gtin14}(10){lot}` or `(00){sscc18}`.
    canonical: String,
}

impl TraceCode {
    /// Builds an SGTIN from a GTIN (8, 12, 13 or 14 digits) and a serial (1-20 characters of
    /// character set 82, not percent-encoded).
    ///
    /// # Errors
    ///
    /// [`TraceCodeError::Malformed`] if either part is malformed,
    /// [`TraceCodeError::BadCheckDigit`] if the GTIN check digit is wrong.
    pub fn new_sgtin(gtin: &str, serial: &str) -> Result<Self, TraceCodeError> {
        Self::from_gtin_parts(TraceCodeKind::Sgtin, gtin.as_bytes(), serial.as_bytes())
            .map_err(|e| e.into_error(&format!("(01){gtin}(21){serial}")))
    }

    /// Builds an LGTIN from a GTIN (8, 12, 13 or 14 digits) and a batch/lot number (1-20
    /// characters of character set 82, not percent-encoded).
    ///
    /// # Errors
    ///
    /// [`TraceCodeError::Malformed`] if either part is malformed,
    /// [`TraceCodeError::BadCheckDigit`] if the GTIN check digit is wrong.
    pub fn new_lgtin(gtin: &str, lot: &str) -> Result<Self, TraceCodeError> {
        Self::from_gtin_parts(TraceCodeKind::Lgtin, gtin.as_bytes(), lot.as_bytes())
            .map_err(|e| e.into_error(&format!("(01){gtin}(10){lot}")))
    }

    /// Builds an SSCC trace code from 18 digits.
    ///
    /// # Errors
    ///
    /// [`TraceCodeError::Malformed`] if it is not 18 digits,
    /// [`TraceCodeError::BadCheckDigit`] if the check digit is wrong.
    pub fn new_sscc(sscc: &str) -> Result<Self, TraceCodeError> {
        Self::from_sscc(sscc.as_bytes()).map_err(|e| e.into_error(sscc))
    }

    /// What kind of object this code names.
    #[must_use]
    pub const fn kind(&self) -> TraceCodeKind {
        self.kind
    }

    /// The canonical element string, borrowed: `(01){gtin14}(21){serial}`,
    /// `(01){gtin14}(10){lot}` or `(00){sscc18}`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// The canonical element string, owned (see [`TraceCode::as_str`]).
    #[must_use]
    pub fn canonical(&self) -> String {
        self.canonical.clone()
    }

    /// Consumes the code, returning its canonical element string without copying.
    #[must_use]
    pub fn into_canonical(self) -> String {
        self.canonical
    }

    /// The 14-digit GTIN of an SGTIN or LGTIN; `None` for an SSCC.
    #[must_use]
    pub fn gtin(&self) -> Option<&str> {
        match self.kind {
            TraceCodeKind::Sgtin | TraceCodeKind::Lgtin => self.canonical.get(GTIN_RANGE),
            TraceCodeKind::Sscc => None,
        }
    }

    /// The serial number of an SGTIN; `None` otherwise.
    #[must_use]
    pub fn serial(&self) -> Option<&str> {
        match self.kind {
            TraceCodeKind::Sgtin => self.canonical.get(VALUE_START..),
            TraceCodeKind::Lgtin | TraceCodeKind::Sscc => None,
        }
    }

    /// The batch/lot number of an LGTIN; `None` otherwise.
    #[must_use]
    pub fn lot(&self) -> Option<&str> {
        match self.kind {
            TraceCodeKind::Lgtin => self.canonical.get(VALUE_START..),
            TraceCodeKind::Sgtin | TraceCodeKind::Sscc => None,
        }
    }

    /// The 18-digit SSCC of a logistic unit; `None` otherwise.
    #[must_use]
    pub fn sscc(&self) -> Option<&str> {
        match self.kind {
            TraceCodeKind::Sscc => self.canonical.get(SSCC_RANGE),
            TraceCodeKind::Sgtin | TraceCodeKind::Lgtin => None,
        }
    }

    /// The GS1 Digital Link URI of this code under `base` (for example
    /// `https://id.gs1.org`; trailing slashes are dropped): `{base}/01/{gtin14}/21/{serial}`,
    /// `{base}/01/{gtin14}/10/{lot}` or `{base}/00/{sscc}`.
    ///
    /// Serial and lot characters other than `A-Z a-z 0-9 - . _` are percent-encoded (upper
    /// case hex), as the GS1 Digital Link standard does for path segments, so
    /// `parse_trace_code(&code.digital_link(base)) == Ok(code)` for any `base` of the
    /// form `http(s)://host[/prefix]`.
    #[must_use]
    pub fn digital_link(&self, base: &str) -> String {
        let base = base.trim_end_matches('/');
        let mut out = String::with_capacity(base.len() + 24 + 3 * MAX_SERIAL_LEN);
        out.push_str(base);
        match self.kind {
            TraceCodeKind::Sgtin | TraceCodeKind::Lgtin => {
                let ai = if self.kind == TraceCodeKind::Sgtin {
                    "/21/"
                } else {
                    "/10/"
                };
                out.push_str("/01/");
                out.push_str(self.canonical.get(GTIN_RANGE).unwrap_or_default());
                out.push_str(ai);
                for &b in self
                    .canonical
                    .get(VALUE_START..)
                    .unwrap_or_default()
                    .as_bytes()
                {
                    push_percent_encoded(&mut out, b);
                }
            }
            TraceCodeKind::Sscc => {
                out.push_str("/00/");
                out.push_str(self.canonical.get(SSCC_RANGE).unwrap_or_default());
            }
        }
        out
    }

    /// Validates a GTIN and a raw (decoded) serial/lot and builds the canonical form.
    fn from_gtin_parts(kind: TraceCodeKind, gtin: &[u8], value: &[u8]) -> Result<Self, Fault> {
        check_gtin_shape(gtin)?;
        if !is_serial(value) {
            return Err(value_fault(kind));
        }
        check_digit_matches(gtin)?;
        let ai = if kind == TraceCodeKind::Sgtin {
            "(21)"
        } else {
            "(10)"
        };
        let mut canonical = String::with_capacity(VALUE_START + value.len());
        canonical.push_str("(01)");
        push_gtin14(&mut canonical, gtin);
        canonical.push_str(ai);
        // `value` is character set 82, hence ASCII.
        canonical.push_str(ascii_str(value));
        Ok(Self { kind, canonical })
    }

    /// Validates an SSCC and builds the canonical form.
    fn from_sscc(sscc: &[u8]) -> Result<Self, Fault> {
        if sscc.len() != SSCC_LEN || !sscc.iter().all(u8::is_ascii_digit) {
            return Err(Fault::Malformed("SSCC must be exactly 18 digits"));
        }
        check_digit_matches(sscc)?;
        let mut canonical = String::with_capacity(SSCC_RANGE.end);
        canonical.push_str("(00)");
        canonical.push_str(ascii_str(sscc));
        Ok(Self {
            kind: TraceCodeKind::Sscc,
            canonical,
        })
    }
}

impl fmt::Display for TraceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

impl AsRef<str> for TraceCode {
    fn as_ref(&self) -> &str {
        &self.canonical
    }
}

impl FromStr for TraceCode {
    type Err = TraceCodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_trace_code(s)
    }
}

/// Computes the GS1 mod-10 check digit of `digits_without_check` (weights 3, 1, 3, ...
/// from the rightmost digit), as used by GTIN, SSCC, GLN and the other GS1 keys.
///
/// Returns `None` if the string is empty or contains anything but ASCII digits. For example
/// the check digit of `400638133393` is 1 (GTIN-13 `4006381333931`).
#[must_use]
pub fn gs1_check_digit(digits_without_check: &str) -> Option<u8> {
    let digits = digits_without_check.as_bytes();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(check_digit_of(digits))
}

/// Check digit of an all-digit slice (not checked here). Reduces when the sum grows large,
/// so it cannot overflow whatever the length.
fn check_digit_of(digits: &[u8]) -> u8 {
    let mut sum: u32 = 0;
    for (i, &c) in digits.iter().rev().enumerate() {
        let d = u32::from(c.wrapping_sub(b'0') & 0x0F);
        sum += if i % 2 == 0 { 3 * d } else { d };
        if sum >= 1 << 16 {
            sum %= 10;
        }
    }
    // A single digit, so the conversion cannot fail.
    u8::try_from((10 - sum % 10) % 10).unwrap_or(0)
}

/// Validates a GTIN-8, -12, -13 or -14 (check digit included) and returns it zero-padded to
/// 14 digits.
///
/// No whitespace is trimmed.
///
/// # Errors
///
/// [`TraceCodeError::Malformed`] if `s` is not 8, 12, 13 or 14 ASCII digits;
/// [`TraceCodeError::BadCheckDigit`] if the check digit is wrong.
pub fn normalise_gtin(s: &str) -> Result<String, TraceCodeError> {
    let gtin = s.as_bytes();
    check_gtin_shape(gtin)
        .and_then(|()| check_digit_matches(gtin))
        .map_err(|e| e.into_error(s))?;
    let mut out = String::with_capacity(14);
    push_gtin14(&mut out, gtin);
    Ok(out)
}

/// Parses any accepted trace code form (see the [module docs](self)) into its normalised
/// [`TraceCode`]. Leading and trailing ASCII whitespace is ignored.
///
/// # Errors
///
/// [`TraceCodeError::BadCheckDigit`] for a well-formed code with a wrong GTIN or SSCC check
/// digit, [`TraceCodeError::Malformed`] for anything else that is not accepted.
pub fn parse_trace_code(input: &str) -> Result<TraceCode, TraceCodeError> {
    let s = input.trim_ascii();
    let bytes = s.as_bytes();
    let result = if bytes.first() == Some(&b'(') {
        parse_element_string(bytes)
    } else if let Some(rest) = strip_scheme(bytes) {
        parse_digital_link(rest)
    } else if bytes.is_empty() {
        Err(Fault::Malformed("empty trace code"))
    } else {
        Err(Fault::Malformed(
            "not a GS1 element string ((01)..., (00)...) nor an http(s) GS1 Digital Link URI",
        ))
    };
    result.map_err(|e| e.into_error(input))
}

/// Failure before the error is materialised: no allocation until we know what to echo.
#[derive(Debug)]
enum Fault {
    Malformed(&'static str),
    /// A GTIN/SSCC whose check digit is wrong. Carries the key digits (at most 18 bytes).
    CheckDigit {
        code: KeyBuf,
        expected: u8,
        found: u8,
    },
}

impl Fault {
    /// Materialises the error; `malformed_echo` is what a `Malformed` error echoes.
    fn into_error(self, malformed_echo: &str) -> TraceCodeError {
        match self {
            Self::Malformed(reason) => TraceCodeError::malformed(malformed_echo, reason),
            Self::CheckDigit {
                code,
                expected,
                found,
            } => TraceCodeError::BadCheckDigit {
                code: code.as_str().to_owned(),
                expected,
                found,
            },
        }
    }
}

/// A copy of a GTIN or SSCC (at most 18 ASCII digits) kept on the stack.
#[derive(Debug)]
struct KeyBuf {
    len: usize,
    buf: [u8; SSCC_LEN],
}

impl KeyBuf {
    fn new(digits: &[u8]) -> Self {
        let mut buf = [0u8; SSCC_LEN];
        let len = digits.len().min(SSCC_LEN);
        for (dst, &src) in buf.iter_mut().zip(digits) {
            *dst = src;
        }
        Self { len, buf }
    }

    fn as_str(&self) -> &str {
        self.buf
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

const fn value_fault(kind: TraceCodeKind) -> Fault {
    Fault::Malformed(match kind {
        TraceCodeKind::Lgtin => "lot must be 1 to 20 characters of GS1 character set 82",
        TraceCodeKind::Sgtin | TraceCodeKind::Sscc => {
            "serial must be 1 to 20 characters of GS1 character set 82"
        }
    })
}

/// Is `b` in GS1 AI encodable character set 82?
/// `! "` (0x21-0x22), `% & ' ( ) * + , - . / 0-9 : ; < = > ?` (0x25-0x3F), `A-Z`, `_`, `a-z`.
const fn is_cs82(b: u8) -> bool {
    matches!(b, 0x21..=0x22 | 0x25..=0x3F | b'A'..=b'Z' | b'_' | b'a'..=b'z')
}

/// 1 to 20 characters of character set 82.
fn is_serial(value: &[u8]) -> bool {
    !value.is_empty() && value.len() <= MAX_SERIAL_LEN && value.iter().all(|&b| is_cs82(b))
}

/// 8, 12, 13 or 14 ASCII digits.
fn check_gtin_shape(gtin: &[u8]) -> Result<(), Fault> {
    if matches!(gtin.len(), 8 | 12 | 13 | 14) && gtin.iter().all(u8::is_ascii_digit) {
        Ok(())
    } else {
        Err(Fault::Malformed("GTIN must be 8, 12, 13 or 14 digits"))
    }
}

/// Verifies the last digit of an all-digit key against the others.
fn check_digit_matches(key: &[u8]) -> Result<(), Fault> {
    let Some((&last, body)) = key.split_last() else {
        return Err(Fault::Malformed("empty GS1 key"));
    };
    let expected = check_digit_of(body);
    let found = last.wrapping_sub(b'0');
    if expected == found {
        Ok(())
    } else {
        Err(Fault::CheckDigit {
            code: KeyBuf::new(key),
            expected,
            found,
        })
    }
}

/// `bytes` as `&str`; callers pass validated ASCII, anything else would yield `""`.
fn ascii_str(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// Appends a shape-checked GTIN zero-padded to 14 digits.
fn push_gtin14(out: &mut String, gtin: &[u8]) {
    out.push_str(
        "000000"
            .get(..14usize.saturating_sub(gtin.len()))
            .unwrap_or_default(),
    );
    out.push_str(ascii_str(gtin));
}

/// Parses a trimmed element string starting with `(`.
fn parse_element_string(s: &[u8]) -> Result<TraceCode, Fault> {
    match s.split_at_checked(4) {
        Some((b"(00)", sscc)) => TraceCode::from_sscc(sscc),
        Some((b"(01)", rest)) => {
            let Some(open) = rest.iter().position(|&b| b == b'(') else {
                return Err(Fault::Malformed(
                    "expected (21) serial or (10) lot after the GTIN",
                ));
            };
            let (gtin, tail) = rest.split_at(open);
            let (kind, value) = match tail.split_at_checked(4) {
                Some((b"(21)", v)) => (TraceCodeKind::Sgtin, v),
                Some((b"(10)", v)) => (TraceCodeKind::Lgtin, v),
                _ => {
                    return Err(Fault::Malformed(
                        "expected (21) serial or (10) lot after the GTIN",
                    ));
                }
            };
            TraceCode::from_gtin_parts(kind, gtin, value)
        }
        _ => Err(Fault::Malformed(
            "element string must start with (01) GTIN or (00) SSCC",
        )),
    }
}

/// Strips `http://` or `https://` (any case).
fn strip_scheme(s: &[u8]) -> Option<&[u8]> {
    for scheme in [&b"https://"[..], &b"http://"[..]] {
        if let Some((head, rest)) = s.split_at_checked(scheme.len())
            && head.eq_ignore_ascii_case(scheme)
        {
            return Some(rest);
        }
    }
    None
}

/// Reason for a Digital Link whose path ends in none of the accepted key shapes.
const NO_KEY: &str = "URI path must end in /01/{gtin}/21/{serial}, /01/{gtin}/10/{lot}, \
                      /01/{gtin}/10/{lot}/21/{serial} or /00/{sscc}";

/// Parses what follows `http(s)://` in a Digital Link URI.
fn parse_digital_link(rest: &[u8]) -> Result<TraceCode, Fault> {
    if !rest.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(Fault::Malformed(
            "URI contains spaces, control or non-ASCII characters",
        ));
    }
    // Query and fragment carry no identity.
    let end = rest
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(rest.len());
    let rest = rest.get(..end).unwrap_or_default();
    let Some(slash) = rest.iter().position(|&b| b == b'/') else {
        return Err(Fault::Malformed("URI has no GS1 key path"));
    };
    let (host, path) = rest.split_at(slash);
    if host.is_empty() {
        return Err(Fault::Malformed("URI has no host"));
    }
    // The last six segments of the path, last first. `path` starts with '/', so the split
    // always yields a leading empty segment, which ends up in the prefix.
    let mut tail: [&[u8]; 6] = [&[]; 6];
    let mut n = 0;
    for (slot, seg) in tail.iter_mut().zip(path.rsplit(|&b| b == b'/')) {
        *slot = seg;
        n += 1;
    }
    let seg = |i: usize| -> Option<&[u8]> { if i < n { tail.get(i).copied() } else { None } };

    let mut key = DecodeBuf::new();
    let mut value = DecodeBuf::new();
    // The three shapes are mutually exclusive: they disagree on segment 1 or segment 3.
    if seg(1) == Some(b"00") {
        let sscc = key
            .decode(seg(0).unwrap_or_default())
            .map_err(|e| e.or(Fault::Malformed("SSCC must be exactly 18 digits")))?;
        return TraceCode::from_sscc(sscc);
    }
    let (kind, gtin_seg, value_seg) = match (seg(5), seg(3), seg(1)) {
        (Some(b"01"), Some(b"10"), Some(b"21")) => {
            // Lot then serial: validate the lot, identify the serial item.
            let mut lot = DecodeBuf::new();
            let lot = lot
                .decode(seg(2).unwrap_or_default())
                .map_err(|e| e.or(value_fault(TraceCodeKind::Lgtin)))?;
            if !is_serial(lot) {
                return Err(value_fault(TraceCodeKind::Lgtin));
            }
            (TraceCodeKind::Sgtin, seg(4), seg(0))
        }
        (_, Some(b"01"), Some(b"21")) => (TraceCodeKind::Sgtin, seg(2), seg(0)),
        (_, Some(b"01"), Some(b"10")) => (TraceCodeKind::Lgtin, seg(2), seg(0)),
        _ => return Err(Fault::Malformed(NO_KEY)),
    };
    let gtin = key
        .decode(gtin_seg.unwrap_or_default())
        .map_err(|e| e.or(Fault::Malformed("GTIN must be 8, 12, 13 or 14 digits")))?;
    let value = value
        .decode(value_seg.unwrap_or_default())
        .map_err(|e| e.or(value_fault(kind)))?;
    TraceCode::from_gtin_parts(kind, gtin, value)
}

/// Why a path segment could not be decoded.
#[derive(Debug)]
enum DecodeError {
    /// `%` not followed by two hex digits.
    BadEscape,
    /// More than [`MAX_SERIAL_LEN`] decoded bytes.
    TooLong,
}

impl DecodeError {
    /// The fault to report: a bad escape is always reported as such, a long value as the
    /// context's length fault.
    const fn or(self, too_long: Fault) -> Fault {
        match self {
            Self::BadEscape => Fault::Malformed("invalid percent escape in URI path"),
            Self::TooLong => too_long,
        }
    }
}

/// Stack buffer for one percent-decoded path segment (GS1 values are at most 20 bytes).
struct DecodeBuf {
    buf: [u8; MAX_SERIAL_LEN],
}

impl DecodeBuf {
    const fn new() -> Self {
        Self {
            buf: [0; MAX_SERIAL_LEN],
        }
    }

    /// Percent-decodes `seg`. Character-set checks are left to the caller.
    fn decode(&mut self, seg: &[u8]) -> Result<&[u8], DecodeError> {
        let mut len = 0;
        let mut i = 0;
        while let Some(&b) = seg.get(i) {
            let byte = if b == b'%' {
                let hi = seg.get(i + 1).and_then(|&h| hex_val(h));
                let lo = seg.get(i + 2).and_then(|&l| hex_val(l));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(DecodeError::BadEscape);
                };
                i += 3;
                (hi << 4) | lo
            } else {
                i += 1;
                b
            };
            let Some(slot) = self.buf.get_mut(len) else {
                return Err(DecodeError::TooLong);
            };
            *slot = byte;
            len += 1;
        }
        Ok(self.buf.get(..len).unwrap_or_default())
    }
}

const fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends `b`, percent-encoded unless it is an RFC 3986 unreserved character.
fn push_percent_encoded(out: &mut String, b: u8) {
    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
        out.push(char::from(b));
    } else {
        out.push('%');
        out.push(hex_digit_upper(b >> 4));
        out.push(hex_digit_upper(b & 0x0F));
    }
}

const fn hex_digit_upper(n: u8) -> char {
    let n = n & 0x0F;
    if n < 10 {
        (b'0' + n) as char
    } else {
        (b'A' + n - 10) as char
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SERIAL: &str = "(01)09506000134352(21)7QK3M9";
    const LOT: &str = "(01)09506000134352(10)LOT-2026-11";
    const SSCC: &str = "(00)106141411234567897";

    fn ok(input: &str) -> TraceCode {
        parse_trace_code(input).unwrap_or_else(|e| panic!("{input:?} rejected: {e}"))
    }

    fn reason(input: &str) -> &'static str {
        match parse_trace_code(input) {
            Ok(code) => panic!("{input:?} accepted as {code}"),
            Err(e) => e.reason_code(),
        }
    }

    fn malformed(input: &str) {
        assert_eq!(reason(input), "malformed_trace_code", "{input:?}");
    }

    fn bad_check(input: &str) {
        assert_eq!(reason(input), "bad_gtin_check_digit", "{input:?}");
    }

    #[test]
    fn check_digits_of_known_keys() {
        assert_eq!(gs1_check_digit("0950600013435"), Some(2)); // 09506000134352
        assert_eq!(gs1_check_digit("400638133393"), Some(1)); // EAN-13 4006381333931
        assert_eq!(gs1_check_digit("03600029145"), Some(2)); // UPC-A 036000291452
        assert_eq!(gs1_check_digit("9638507"), Some(4)); // EAN-8 96385074
        assert_eq!(gs1_check_digit("10614141123456789"), Some(7)); // SSCC
        assert_eq!(gs1_check_digit("0"), Some(0));
        assert_eq!(gs1_check_digit("1"), Some(7));
        assert_eq!(gs1_check_digit(""), None);
        assert_eq!(gs1_check_digit("12a4"), None);
        assert_eq!(gs1_check_digit("１２"), None); // full-width digits
        // Leading zeros do not change the check digit (weights run from the right).
        assert_eq!(gs1_check_digit("0000009638507"), Some(4));
        // Long input cannot overflow, and the running reduction keeps the result right.
        for (n, digit) in [(100_000, '9'), (99_999, '7'), (12_345, '3')] {
            let s: String = std::iter::repeat_n(digit, n).collect();
            let d = u64::from(u32::from(digit) - u32::from('0'));
            let sum: u64 = (0..n as u64)
                .map(|i| if i % 2 == 0 { 3 * d } else { d })
                .sum();
            assert_eq!(gs1_check_digit(&s), u8::try_from((10 - sum % 10) % 10).ok());
        }
    }

    #[test]
    fn normalise_gtin_pads_and_verifies() {
        assert_eq!(normalise_gtin("09506000134352").unwrap(), "09506000134352");
        assert_eq!(normalise_gtin("9506000134352").unwrap(), "09506000134352");
        assert_eq!(normalise_gtin("4006381333931").unwrap(), "04006381333931");
        assert_eq!(normalise_gtin("036000291452").unwrap(), "00036000291452");
        assert_eq!(normalise_gtin("96385074").unwrap(), "00000096385074");
        assert_eq!(
            normalise_gtin("4006381333932"),
            Err(TraceCodeError::BadCheckDigit {
                code: "4006381333932".into(),
                expected: 1,
                found: 2
            })
        );
        for bad in [
            "",
            "1234567",
            "123456789",
            "12345678901",
            "123456789012345",
            "4006381333931 ",
            "40063813339a1",
            "+4006381333931",
        ] {
            let e = normalise_gtin(bad).unwrap_err();
            assert_eq!(e.reason_code(), "malformed_trace_code", "{bad:?}");
        }
    }

    #[test]
    fn element_strings() {
        let c = ok(SERIAL);
        assert_eq!(c.kind(), TraceCodeKind::Sgtin);
        assert_eq!(c.as_str(), SERIAL);
        assert_eq!(c.canonical(), SERIAL);
        assert_eq!(c.gtin(), Some("09506000134352"));
        assert_eq!(c.serial(), Some("7QK3M9"));
        assert_eq!((c.lot(), c.sscc()), (None, None));

        let c = ok(LOT);
        assert_eq!(c.kind(), TraceCodeKind::Lgtin);
        assert_eq!(c.as_str(), LOT);
        assert_eq!(c.lot(), Some("LOT-2026-11"));
        assert_eq!((c.serial(), c.sscc()), (None, None));

        let c = ok(SSCC);
        assert_eq!(c.kind(), TraceCodeKind::Sscc);
        assert_eq!(c.sscc(), Some("106141411234567897"));
        assert_eq!((c.gtin(), c.serial(), c.lot()), (None, None, None));

        // Short GTINs are padded.
        assert_eq!(ok("(01)96385074(21)1").as_str(), "(01)00000096385074(21)1");
        assert_eq!(
            ok("(01)036000291452(10)A").as_str(),
            "(01)00036000291452(10)A"
        );
        assert_eq!(
            ok("(01)4006381333931(21)X").as_str(),
            "(01)04006381333931(21)X"
        );
        // The serial is the rest of the string, parentheses included.
        let c = ok("(01)09506000134352(21)A(1)");
        assert_eq!(c.serial(), Some("A(1)"));
        assert_eq!(ok("(01)09506000134352(10)L(21)S").lot(), Some("L(21)S"));
        // Every character of set 82; 20 characters.
        let all =
            "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
        assert_eq!(all.len(), 82);
        for chunk in all.as_bytes().chunks(20) {
            let serial = std::str::from_utf8(chunk).unwrap();
            assert_eq!(
                ok(&format!("(01)09506000134352(21){serial}")).serial(),
                Some(serial)
            );
        }
        // Whitespace trimmed.
        assert_eq!(ok(" \t\r\n(00)106141411234567897 \n"), ok(SSCC));
        assert_eq!(SERIAL.parse::<TraceCode>(), Ok(ok(SERIAL)));
        assert_eq!(ok(SERIAL).to_string(), SERIAL);
    }

    #[test]
    fn digital_links() {
        let serial = ok(SERIAL);
        for uri in [
            "https://id.gs1.org/01/09506000134352/21/7QK3M9",
            "https://id.gs1.org/01/9506000134352/21/7QK3M9",
            "http://example.com/01/9506000134352/21/7QK3M9",
            "HTTPS://Example.COM:8443/a/b/c/01/9506000134352/21/7QK3M9?17=261231&linkType=all#x",
            "https://id.gs1.org/01/9506000134352/10/LOT1/21/7QK3M9",
            "https://id.gs1.org/01/09506000134352/21/%37QK3M9",
            "https://id.gs1.org/01/%30%39506000134352/21/7QK3M9",
            "https://id.gs1.org//01/09506000134352/21/7QK3M9",
            "  https://id.gs1.org/01/09506000134352/21/7QK3M9#frag  ",
            "https://id.gs1.org/01/09506000134352/21/7QK3M9?",
        ] {
            assert_eq!(ok(uri), serial, "{uri}");
        }
        assert_eq!(
            ok("https://id.gs1.org/01/09506000134352/10/LOT-2026-11"),
            ok(LOT)
        );
        assert_eq!(ok("https://id.gs1.org/00/106141411234567897"), ok(SSCC));
        assert_eq!(
            ok("https://x.example/01/96385074/21/a%2Fb%25c%28%29%3f").serial(),
            Some("a/b%c()?")
        );
        // A serial or lot that is itself an AI number.
        assert_eq!(
            ok("https://x.example/01/96385074/21/01").serial(),
            Some("01")
        );
        assert_eq!(
            ok("https://x.example/01/96385074/10/21/21/10").serial(),
            Some("10")
        );
        assert_eq!(ok("https://x.example/01/96385074/10/00").lot(), Some("00"));
        // Digital link output.
        assert_eq!(
            serial.digital_link("https://id.gs1.org"),
            "https://id.gs1.org/01/09506000134352/21/7QK3M9"
        );
        assert_eq!(
            serial.digital_link("https://id.gs1.org/"),
            "https://id.gs1.org/01/09506000134352/21/7QK3M9"
        );
        assert_eq!(
            ok(LOT).digital_link("https://example.com/dl"),
            "https://example.com/dl/01/09506000134352/10/LOT-2026-11"
        );
        assert_eq!(
            ok(SSCC).digital_link("https://id.gs1.org"),
            "https://id.gs1.org/00/106141411234567897"
        );
        let odd = ok("(01)09506000134352(21)a/b%c?d\"(1)");
        let link = odd.digital_link("https://id.gs1.org");
        assert_eq!(
            link,
            "https://id.gs1.org/01/09506000134352/21/a%2Fb%25c%3Fd%22%281%29"
        );
        assert_eq!(ok(&link), odd);
    }

    #[test]
    fn every_cs82_character_round_trips_through_digital_link() {
        for b in (0u8..=255).filter(|&b| is_cs82(b)) {
            let c = char::from(b);
            let code = TraceCode::new_sgtin("96385074", &format!("x{c}y")).unwrap();
            assert_eq!(ok(&code.digital_link("https://h")), code, "{c:?}");
            let code = TraceCode::new_lgtin("96385074", &c.to_string()).unwrap();
            assert_eq!(ok(&code.digital_link("http://h/p")), code, "{c:?}");
        }
    }

    #[test]
    fn constructors() {
        assert_eq!(
            TraceCode::new_sgtin("9506000134352", "7QK3M9"),
            Ok(ok(SERIAL))
        );
        assert_eq!(
            TraceCode::new_lgtin("09506000134352", "LOT-2026-11"),
            Ok(ok(LOT))
        );
        assert_eq!(TraceCode::new_sscc("106141411234567897"), Ok(ok(SSCC)));
        assert_eq!(
            TraceCode::new_sgtin("9506000134352", "")
                .unwrap_err()
                .reason_code(),
            "malformed_trace_code"
        );
        assert_eq!(
            TraceCode::new_sgtin("9506000134353", "x")
                .unwrap_err()
                .reason_code(),
            "bad_gtin_check_digit"
        );
        assert_eq!(
            TraceCode::new_sscc("106141411234567898")
                .unwrap_err()
                .reason_code(),
            "bad_gtin_check_digit"
        );
        assert_eq!(
            TraceCode::new_sscc("10614141123456789")
                .unwrap_err()
                .reason_code(),
            "malformed_trace_code"
        );
        assert_eq!(ok(SERIAL).into_canonical(), SERIAL);
        assert_eq!(TraceCodeKind::Sgtin.as_str(), "sgtin");
        assert_eq!(TraceCodeKind::Lgtin.as_str(), "lgtin");
        assert_eq!(TraceCodeKind::Sscc.to_string(), "sscc");
    }

    #[test]
    fn bad_check_digits() {
        bad_check("(01)09506000134353(21)7QK3M9");
        bad_check("(01)9506000134353(10)L");
        bad_check("(01)96385075(21)1");
        bad_check("(01)0950600013435(21)X"); // 13 digits: a GTIN-13 shape, wrong check digit
        bad_check("(01)950600013435(21)X"); // 12 digits
        bad_check("https://id.gs1.org/01/0950600013435/21/X");
        bad_check("(00)106141411234567898");
        bad_check("https://id.gs1.org/01/09506000134353/21/7QK3M9");
        bad_check("https://id.gs1.org/00/106141411234567890");
        assert_eq!(
            parse_trace_code("(01)09506000134353(21)7QK3M9"),
            Err(TraceCodeError::BadCheckDigit {
                code: "09506000134353".into(),
                expected: 2,
                found: 3
            })
        );
        assert_eq!(
            parse_trace_code("https://h/00/106141411234567890"),
            Err(TraceCodeError::BadCheckDigit {
                code: "106141411234567890".into(),
                expected: 7,
                found: 0
            })
        );
        // Structure wins over the check digit.
        malformed("(01)09506000134353(21)");
        malformed("(01)09506000134353(21)bad space");
    }

    #[test]
    fn malformed_inputs() {
        for input in [
            "",
            "   ",
            "09506000134352",
            "0109506000134352217QK3M9",
            "urn:epc:id:sgtin:9506000.013435.7QK3M9",
            "(01)09506000134352",
            "(01)09506000134352(21)",
            "(01)09506000134352(17)261231",
            "(01)09506000134352 (21)7QK3M9",
            "(01)123456789(21)X",
            "(01)095060001343521(21)X",
            "(02)09506000134352(21)X",
            "(00)10614141123456789",
            "(00)1061414112345678970",
            "(00)106141411234567897(21)X",
            "(01)09506000134352(21)123456789012345678901",
            "(01)09506000134352(21)7QK 3M9",
            "(01)09506000134352(21)7QK#3M9",
            "(01)09506000134352(21)7QK~3M9",
            "(01)09506000134352(21)Größe",
            "(01)09506000134352(10)",
            "(01)09506000134352(10)LOT\u{0}",
            "(01)(21)X",
            "(0",
            "(",
            "ftp://id.gs1.org/01/09506000134352/21/X",
            "https://",
            "https://id.gs1.org",
            "https:///01/09506000134352/21/X",
            "https://id.gs1.org/01/09506000134352",
            "https://id.gs1.org/01/09506000134352/21",
            "https://id.gs1.org/01/09506000134352/21/",
            "https://id.gs1.org/01/09506000134352/21/X/",
            "https://id.gs1.org/01/09506000134352/21/X/extra",
            "https://id.gs1.org/01/09506000134352/22/X",
            "https://id.gs1.org/01/09506000134352/21/X%",
            "https://id.gs1.org/01/09506000134352/21/X%4",
            "https://id.gs1.org/01/09506000134352/21/X%zz",
            "https://id.gs1.org/01/09506000134352/21/%C3%A9",
            "https://id.gs1.org/01/09506000134352/21/a%20b",
            "https://id.gs1.org/01/09506000134352/21/é",
            "https://id.gs1.org/01/09506000134352/21/a b",
            "https://id.gs1.org/01/09506000134352/21/123456789012345678901",
            "https://id.gs1.org/01/09506000134352/21/%31%32%33%34%35%36%37%38%39%30%31%32%33%34%35%36%37%38%39%30%31",
            "https://id.gs1.org/01/09506000134352/10//21/X",
            "https://id.gs1.org/01/09506000134352/10/L%zz/21/X",
            "https://id.gs1.org/01/09506000134352/21/X/10/L",
            "https://id.gs1.org/01//21/X",
            "https://id.gs1.org/00/10614141123456789",
            "https://id.gs1.org/00/",
            "https://id.gs1.org/00/106141411234567897/21/X",
            "http://id.gs1.org\u{3000}/01/09506000134352/21/X",
            "\u{a0}(01)09506000134352(21)7QK3M9",
            "(01)09506000134352(21)7QK3M9\u{200b}",
            "(０１)09506000134352(21)X",
        ] {
            malformed(input);
        }
    }

    #[test]
    fn errors_echo_truncated_input() {
        let long = format!("(01)09506000134352(21){}", "é".repeat(10_000));
        let e = parse_trace_code(&long).unwrap_err();
        let TraceCodeError::Malformed { input, reason } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(input.chars().count(), ECHO_CHARS + 1);
        assert!(input.ends_with('…'));
        assert!(!reason.is_empty());
        assert!(e.to_string().len() < 400);
        let e = parse_trace_code("nope").unwrap_err();
        assert_eq!(
            e,
            TraceCodeError::Malformed {
                input: "nope".into(),
                reason: match &e {
                    TraceCodeError::Malformed { reason, .. } => reason,
                    TraceCodeError::BadCheckDigit { .. } => "",
                }
            }
        );
        assert!(e.to_string().contains("\"nope\""));
    }

    // ---- property tests ----

    const CS82: &[u8] =
        b"!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

    fn serial_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(CS82), 1..=MAX_SERIAL_LEN)
            .prop_map(|v| v.into_iter().map(char::from).collect())
    }

    /// A valid GTIN of length 8, 12, 13 or 14.
    fn gtin_strategy() -> impl Strategy<Value = String> {
        prop::sample::select(&[8usize, 12, 13, 14][..])
            .prop_flat_map(|len| prop::collection::vec(0u8..10, len - 1))
            .prop_map(|body| {
                let mut s: String = body.iter().map(|d| char::from(b'0' + d)).collect();
                let check = gs1_check_digit(&s).unwrap();
                s.push(char::from(b'0' + check));
                s
            })
    }

    fn sscc_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(0u8..10, SSCC_LEN - 1).prop_map(|body| {
            let mut s: String = body.iter().map(|d| char::from(b'0' + d)).collect();
            let check = gs1_check_digit(&s).unwrap();
            s.push(char::from(b'0' + check));
            s
        })
    }

    fn near_miss_strategy() -> impl Strategy<Value = String> {
        let prefix = prop::sample::select(
            &[
                "",
                "(01)",
                "(00)",
                "(01)09506000134352(21)",
                "(01)96385074(10)",
                "https://h/01/",
                "https://h/00/",
                "http://h/x/01/09506000134352/10/",
                "https://h/01/96385074/21/",
            ][..],
        );
        (prefix, "[0-9()%/a-fA-F21 :.?#é]{0,40}").prop_map(|(p, s)| format!("{p}{s}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_strings_never_panic(s in any::<String>()) {
            let _ = parse_trace_code(&s);
            let _ = normalise_gtin(&s);
            let _ = gs1_check_digit(&s);
        }

        #[test]
        fn near_misses_never_panic_and_ok_results_are_canonical(s in near_miss_strategy()) {
            if let Ok(code) = parse_trace_code(&s) {
                prop_assert_eq!(parse_trace_code(code.as_str()), Ok(code.clone()));
                prop_assert_eq!(parse_trace_code(&code.digital_link("https://id.gs1.org")), Ok(code));
            }
        }

        #[test]
        fn sgtin_and_lgtin_round_trip(gtin in gtin_strategy(), value in serial_strategy(), lot in serial_strategy()) {
            let gtin14 = normalise_gtin(&gtin).unwrap();
            for kind in [TraceCodeKind::Sgtin, TraceCodeKind::Lgtin] {
                let (ai, code) = match kind {
                    TraceCodeKind::Sgtin => ("21", TraceCode::new_sgtin(&gtin, &value).unwrap()),
                    _ => ("10", TraceCode::new_lgtin(&gtin, &value).unwrap()),
                };
                prop_assert_eq!(code.kind(), kind);
                prop_assert_eq!(code.gtin(), Some(gtin14.as_str()));
                prop_assert_eq!(code.serial().or(code.lot()), Some(value.as_str()));
                prop_assert_eq!(code.as_str(), format!("(01){gtin14}({ai}){value}"));
                // Canonical form, the unpadded element string and the digital link all parse back.
                prop_assert_eq!(parse_trace_code(&code.canonical()), Ok(code.clone()));
                prop_assert_eq!(parse_trace_code(&format!("(01){gtin}({ai}){value}")), Ok(code.clone()));
                let link = code.digital_link("https://id.gs1.org");
                prop_assert_eq!(parse_trace_code(&link), Ok(code.clone()));
                prop_assert_eq!(parse_trace_code(&code.digital_link("http://example.com/a/01/b")), Ok(code.clone()));
            }
            // Lot then serial names the serial item.
            let sgtin = TraceCode::new_sgtin(&gtin, &value).unwrap();
            let lot_enc = TraceCode::new_lgtin(&gtin, &lot).unwrap().digital_link("https://h");
            let both = format!("{lot_enc}/21/{}", sgtin.digital_link("").rsplit('/').next().unwrap());
            prop_assert_eq!(parse_trace_code(&both), Ok(sgtin));
        }

        #[test]
        fn sscc_round_trips(sscc in sscc_strategy()) {
            let code = TraceCode::new_sscc(&sscc).unwrap();
            prop_assert_eq!(code.sscc(), Some(sscc.as_str()));
            prop_assert_eq!(parse_trace_code(&format!("(00){sscc}")), Ok(code.clone()));
            prop_assert_eq!(parse_trace_code(&code.digital_link("https://id.gs1.org")), Ok(code));
        }

        #[test]
        fn any_single_digit_change_is_a_bad_check_digit(
            gtin in gtin_strategy(), pos in any::<prop::sample::Index>(), delta in 1u8..10
        ) {
            let mut bytes = gtin.clone().into_bytes();
            let i = pos.index(bytes.len());
            bytes[i] = b'0' + (bytes[i] - b'0' + delta) % 10;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert_ne!(&changed, &gtin);
            prop_assert_eq!(normalise_gtin(&changed).err().map(|e| e.reason_code()), Some("bad_gtin_check_digit"));
            for input in [format!("(01){changed}(21)S"), format!("https://h/01/{changed}/10/L")] {
                prop_assert_eq!(parse_trace_code(&input).err().map(|e| e.reason_code()), Some("bad_gtin_check_digit"));
            }
        }

        #[test]
        fn any_single_digit_change_of_an_sscc_is_a_bad_check_digit(
            sscc in sscc_strategy(), pos in any::<prop::sample::Index>(), delta in 1u8..10
        ) {
            let mut bytes = sscc.into_bytes();
            let i = pos.index(bytes.len());
            bytes[i] = b'0' + (bytes[i] - b'0' + delta) % 10;
            let changed = String::from_utf8(bytes).unwrap();
            let e = parse_trace_code(&format!("(00){changed}")).unwrap_err();
            prop_assert_eq!(e.reason_code(), "bad_gtin_check_digit");
        }
    }
}
