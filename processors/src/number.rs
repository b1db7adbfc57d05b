//! Numbers as the source wrote them.
//!
//! Every JSON number of an event is stored as an IEEE 754 double (the canonical JSON is
//! RFC 8785), and a double holds every integer only up to 2^53. serde_json keeps an
//! integer literal that fits `u64`/`i64` exactly, but parses a larger one as a double,
//! already rounded: `18446744073709551617` arrives as `1.8446744073709552e19`. So a range
//! check has to look at both representations, and where the parsed value cannot tell (an
//! integer literal beyond `u64` in free-form `attributes`), at the literal itself.
//!
//! The rules:
//! - a typed numeric field (quantity, location, readings, attachment size) is refused when
//!   its magnitude exceeds 2^53, whatever the notation ([`checked`]); a value that
//!   arrives as a double is refused from 2^53 on, since the literal may have been rounded
//!   onto it;
//! - in `attributes` (any JSON) a number is what a double holds, as JCS says, so a large
//!   double such as `1e21` is fine; an integer literal is refused only when the double
//!   would print back as different digits ([`inexact_literal`]), as the canonical encoder
//!   does for integers that fit `u64`;
//! - a literal outside the double range (`1e400`) is refused everywhere; serde_json stops
//!   at it with "number out of range", and [`beyond_double_range`] names the field.
//!
//! Pure: the scanner runs over text that serde_json has already accepted, so it only
//! needs to track structure, and it never panics on anything else either.

use std::fmt;

use serde_json::Number;
use veritrace_verify::canonical;

use crate::reason::{Reason, Rejection};

/// Largest magnitude up to which a double holds every integer: 2^53.
pub(crate) const MAX_SAFE: u64 = 1 << 53;

/// The value of a typed numeric field, or `number_out_of_range` naming `field`.
pub(crate) fn checked(field: impl fmt::Display, n: &Number) -> Result<f64, Rejection> {
    let safe = if let Some(u) = n.as_u64() {
        u <= MAX_SAFE
    } else if let Some(i) = n.as_i64() {
        i.unsigned_abs() <= MAX_SAFE
    } else {
        // Parsed as a double: from 2^53 on, the literal may have been rounded onto it.
        n.as_f64().is_some_and(|f| f.abs() < MAX_SAFE as f64)
    };
    match n.as_f64() {
        Some(f) if safe => Ok(f),
        _ => Err(Rejection::new(
            Reason::NumberOutOfRange,
            format!("{field} = {n} is beyond +-2^53 and cannot be stored exactly"),
        )),
    }
}

/// The first number literal in `json` (the text of the value at `root`) that a double
/// does not hold: outside the double range, or an integer literal whose double prints as
/// other digits.
pub(crate) fn inexact_literal(json: &str, root: &str) -> Option<Rejection> {
    scan(json, |path, lit, _| {
        let f = lit.parse::<f64>().ok()?;
        if !f.is_finite() {
            return Some(beyond_range(&path.under(root), lit));
        }
        if lit.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
            return None;
        }
        let digits = lit.trim_start_matches('-');
        if digits.len() < 16 || digits.parse::<u64>().is_ok_and(|u| u <= MAX_SAFE) {
            return None;
        }
        let mut printed = Vec::with_capacity(24);
        canonical::write_f64(f, &mut printed).ok()?;
        (printed != lit.as_bytes()).then(|| {
            Rejection::new(
                Reason::NumberOutOfRange,
                format!(
                    "{} = {lit} is beyond +-2^53 and would be stored as {}",
                    path.under(root),
                    String::from_utf8_lossy(&printed)
                ),
            )
        })
    })
}

/// After serde_json stopped with "number out of range" at byte `at` (or anywhere, when
/// unknown): the rejection naming the last such literal that starts before `at`.
pub(crate) fn beyond_double_range(json: &str, at: Option<usize>) -> Option<Rejection> {
    let mut found = None;
    scan(json, |path, lit, start| {
        if at.is_some_and(|at| start >= at) {
            return Some(());
        }
        if lit.parse::<f64>().is_ok_and(|f| f.is_infinite()) {
            found = Some(beyond_range(&path.under(""), lit));
            if at.is_none() {
                return Some(());
            }
        }
        None
    });
    found
}

fn beyond_range(field: &dyn fmt::Display, lit: &str) -> Rejection {
    Rejection::new(
        Reason::NumberOutOfRange,
        format!("{field} = {lit} is outside the range of a double"),
    )
}

/// One level of the path to a value.
enum Frame {
    /// In an object; the byte range of the current key's text (between its quotes).
    Object(Option<(usize, usize)>),
    /// In an array, at this index.
    Array(usize),
}

/// Where a number literal is, for error details.
struct Path<'a> {
    json: &'a str,
    frames: &'a [Frame],
}

impl<'a> Path<'a> {
    /// The path rendered below `root` (`""` for the document itself).
    fn under(&'a self, root: &'a str) -> Rooted<'a> {
        Rooted { path: self, root }
    }
}

struct Rooted<'a> {
    path: &'a Path<'a>,
    root: &'a str,
}

impl fmt::Display for Rooted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.root)?;
        let mut first = self.root.is_empty();
        for frame in self.path.frames {
            match frame {
                Frame::Object(Some((s, e))) => {
                    let raw = self.path.json.get(*s..*e).unwrap_or_default();
                    if !first {
                        f.write_str(".")?;
                    }
                    if raw.contains('\\') {
                        // The key as a program sees it, escapes decoded.
                        let quoted = format!("\"{raw}\"");
                        match serde_json::from_str::<String>(&quoted) {
                            Ok(key) => f.write_str(&key)?,
                            Err(_) => f.write_str(raw)?,
                        }
                    } else {
                        f.write_str(raw)?;
                    }
                }
                Frame::Object(None) => {}
                Frame::Array(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// Calls `visit(path, literal, start)` for each number literal of `json` in document
/// order, until it returns `Some`.
fn scan<R>(json: &str, mut visit: impl FnMut(&Path<'_>, &str, usize) -> Option<R>) -> Option<R> {
    let b = json.as_bytes();
    let mut frames: Vec<Frame> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                let start = i + 1;
                i = start;
                while let Some(&c) = b.get(i) {
                    match c {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                if expect_key && let Some(Frame::Object(key)) = frames.last_mut() {
                    *key = Some((start, i.min(b.len())));
                }
                expect_key = false;
                i += 1;
            }
            b'{' => {
                frames.push(Frame::Object(None));
                expect_key = true;
                i += 1;
            }
            b'[' => {
                frames.push(Frame::Array(0));
                i += 1;
            }
            b'}' | b']' => {
                frames.pop();
                expect_key = false;
                i += 1;
            }
            b',' => {
                match frames.last_mut() {
                    Some(Frame::Array(n)) => *n += 1,
                    Some(Frame::Object(_)) => expect_key = true,
                    None => {}
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while b
                    .get(i)
                    .is_some_and(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                {
                    i += 1;
                }
                let lit = json.get(start..i).unwrap_or_default();
                let path = Path {
                    json,
                    frames: &frames,
                };
                if let Some(r) = visit(&path, lit, start) {
                    return Some(r);
                }
            }
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(s: &str) -> Number {
        serde_json::from_str(s).expect("a JSON number")
    }

    #[test]
    fn checked_looks_at_every_representation() {
        for ok in [
            "0",
            "-0",
            "1.5",
            "9007199254740992",
            "-9007199254740992",
            "9007199254740991.0",
            "1e15",
        ] {
            assert!(checked("x", &number(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "9007199254740993",
            "-9007199254740993",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "9007199254740993.0",
            "9007199254740992.0",
            "1.2e29",
            "1e300",
        ] {
            let r = checked("a.b", &number(bad)).expect_err(bad);
            assert_eq!(r.reason, Reason::NumberOutOfRange, "{bad}");
            assert!(r.detail.starts_with("a.b = "), "{}", r.detail);
        }
    }

    #[test]
    fn inexact_literals_are_found_with_their_path() {
        let find = |json: &str| inexact_literal(json, "attributes").map(|r| r.detail);
        assert_eq!(
            find(r#"{"a":[1,2.5,1e21,-3e300,2382186501757725000]}"#),
            None
        );
        assert_eq!(
            find(r#"{"a":"9007199254740993","b":9007199254740992}"#),
            None
        );
        let d = find(r#"{"s":"x,[{","a":{"b":[1,{"c":true},100000000000000000001]}}"#);
        assert_eq!(
            d.as_deref(),
            Some(
                "attributes.a.b[2] = 100000000000000000001 is beyond +-2^53 and would be stored as 100000000000000000000"
            )
        );
        let d = find(r#"{"k\"\u0041":-9007199254740993}"#).expect("found");
        assert!(d.starts_with("attributes.k\"A = -9007199254740993 "), "{d}");
        let d = find(r#"{"x":[],"y":{},"z":1e400}"#).expect("found");
        assert_eq!(d, "attributes.z = 1e400 is outside the range of a double");
    }

    #[test]
    fn beyond_double_range_picks_the_literal_before_the_error() {
        let json = r#"{"quantity":{"value":1e400},"readings":{"x":-2E+999}}"#;
        let at = |s: &str| json.find(s).map(|i| i + s.len());
        let detail = |at| beyond_double_range(json, at).map(|r| r.detail);
        assert_eq!(
            detail(at("1e400")).as_deref(),
            Some("quantity.value = 1e400 is outside the range of a double")
        );
        assert_eq!(
            detail(at("2E+999")).as_deref(),
            Some("readings.x = -2E+999 is outside the range of a double")
        );
        assert_eq!(
            detail(None).as_deref(),
            Some("quantity.value = 1e400 is outside the range of a double")
        );
        assert!(beyond_double_range("[1,2]", None).is_none());
    }

    #[test]
    fn the_scanner_survives_broken_text() {
        for s in ["", "\"", "\"\\", "{\"a", "[[[-", "}}]]", "{\"a\":1e", "-"] {
            let _ = inexact_literal(s, "r");
            let _ = beyond_double_range(s, None);
            let _ = beyond_double_range(s, Some(1));
        }
    }
}
