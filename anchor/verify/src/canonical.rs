//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! The canonical bytes of an event are its Merkle leaf preimage, so this one function is
//! used by the pipeline when it seals and by the verifier when it checks. The rules:
//!
//! - no whitespace; object members sorted by the UTF-16 code units of their keys;
//! - strings escape only `"`, `\` and control characters below U+0020 (`\b \t \n \f \r`
//!   short forms, otherwise `\u00xx` in lower-case hex); everything else is literal UTF-8;
//! - numbers are IEEE 754 doubles written as ECMAScript `Number.prototype.toString` does
//!   (shortest round-trip form, `-0` as `0`). Integers beyond +-2^53 are refused rather
//!   than silently rounded ([`Error::UnsafeInteger`]).
//!
//! Input documents with duplicate object keys are refused by [`parse_strict`]: I-JSON
//! forbids them and they would let a document show one value and hash another. So is an
//! integer literal beyond the 64-bit range that a double does not hold as written: the
//! parser can only keep it as the nearest double, which would then be hashed in place of
//! the number the document shows.

use std::fmt;

use serde::Serialize;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

#[cfg(test)]
use crate::jcs_text::{MAX_SAFE, utf16_cmp};
pub use crate::jcs_text::{write_f64, write_string};
use crate::{Error, Result};

/// Canonical JCS bytes of any serialisable value: a `serde_json::Value` from a proof bundle
/// and the pipeline's own event struct go through this same serializer.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(512);
    crate::jcs_ser::write(value, &mut out)?;
    Ok(out)
}

/// Appends the canonical JCS form of `v` to `out`.
pub fn write_value(v: &Value, out: &mut Vec<u8>) -> Result<()> {
    crate::jcs_ser::write(v, out)
}

/// A direct walk over a `serde_json::Value`, kept as the test oracle for the serializer.
#[cfg(test)]
fn reference_write(v: &Value, out: &mut Vec<u8>) -> Result<()> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                reference_write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // serde_json's map may be ordered by UTF-8 bytes or by insertion; JCS wants
            // UTF-16 code units, which differ for characters above U+FFFF.
            entries.sort_by(|a, b| utf16_cmp(a.0, b.0));
            out.push(b'{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                reference_write(val, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

#[cfg(test)]
fn write_number(n: &Number, out: &mut Vec<u8>) -> Result<()> {
    // Every JSON number is an IEEE 754 double in JCS. Integers up to 2^53 print as
    // themselves. A larger integer is accepted only when the double nearest to it prints
    // back as the same digits (as ECMAScript would print it); otherwise canonicalising
    // would silently change the value.
    let big = match (n.as_u64(), n.as_i64()) {
        (Some(u), _) if u <= MAX_SAFE => {
            out.extend_from_slice(u.to_string().as_bytes());
            return Ok(());
        }
        (None, Some(i)) if i.unsigned_abs() <= MAX_SAFE => {
            out.extend_from_slice(i.to_string().as_bytes());
            return Ok(());
        }
        (Some(u), _) => Some((u as f64, u.to_string())),
        (None, Some(i)) => Some((i as f64, i.to_string())),
        (None, None) => None,
    };
    match big {
        Some((f, digits)) => {
            let mut tmp = Vec::with_capacity(24);
            write_f64(f, &mut tmp)?;
            if tmp != digits.as_bytes() {
                return Err(Error::UnsafeInteger { value: digits });
            }
            out.extend_from_slice(&tmp);
        }
        None => match n.as_f64() {
            Some(f) => write_f64(f, out)?,
            None => {
                return Err(Error::UnsafeInteger {
                    value: n.to_string(),
                });
            }
        },
    }
    Ok(())
}

/// Parses JSON, refusing duplicate object keys at any depth, trailing data, and integer
/// literals beyond the 64-bit range that JCS could not write unchanged
/// ([`Error::UnsafeInteger`]).
pub fn parse_strict(bytes: &[u8]) -> Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = StrictValue::deserialize(&mut de).map_err(map_strict_error)?;
    de.end().map_err(map_strict_error)?;
    if let Some(value) = wide_integer(bytes) {
        return Err(Error::UnsafeInteger { value });
    }
    Ok(v.0)
}

/// The first integer literal of `json` (text that parsed as JSON) beyond the range of
/// `i64` and `u64` whose nearest double JCS writes as other digits.
///
/// serde_json reads such a literal as that double (there is no integer to hold it), so the
/// value it yields cannot tell `18446744073709551616` from `18446744073709552000`: only the
/// text can. Integers within the 64-bit range keep their value and are judged when they
/// are canonicalised (`write_u64`, `write_i64`).
fn wide_integer(json: &[u8]) -> Option<String> {
    let mut i = 0;
    while let Some(&b) = json.get(i) {
        match b {
            b'"' => {
                // Skip the string; outside strings a digit or '-' only starts a number.
                i += 1;
                while let Some(&c) = json.get(i) {
                    i += match c {
                        b'\\' => 2,
                        b'"' => break,
                        _ => 1,
                    };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while json
                    .get(i)
                    .is_some_and(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    i += 1;
                }
                let lit = std::str::from_utf8(&json[start..i]).ok()?;
                if !lit_survives(lit) {
                    return Some(lit.to_owned());
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// False for an integer literal outside `i64` and `u64` whose nearest double is written
/// by JCS as other digits; true for every other number literal.
fn lit_survives(lit: &str) -> bool {
    let digits = lit.strip_prefix('-').unwrap_or(lit);
    if lit.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) || digits.len() < 19 {
        return true;
    }
    let in_range = if lit.starts_with('-') {
        lit.parse::<i64>().is_ok()
    } else {
        lit.parse::<u64>().is_ok()
    };
    if in_range {
        return true;
    }
    let mut printed = Vec::with_capacity(24);
    lit.parse::<f64>()
        .is_ok_and(|f| write_f64(f, &mut printed).is_ok() && printed == lit.as_bytes())
}

fn map_strict_error(e: serde_json::Error) -> Error {
    let msg = e.to_string();
    if let Some(rest) = msg.strip_prefix(DUP_PREFIX) {
        let key = rest.split('\u{0}').next().unwrap_or_default().to_string();
        return Error::DuplicateKey { key };
    }
    Error::Malformed {
        what: "json",
        detail: msg,
    }
}

const DUP_PREFIX: &str = "duplicate key\u{0}";

/// A JSON value whose deserialisation refuses duplicate keys. Use it as a field type (or
/// with `deserialize_with`) where free-form JSON enters a signed or hashed document.
#[derive(Debug, Clone, PartialEq)]
pub struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

/// `deserialize_with` helper: an optional free-form JSON object with no duplicate keys.
pub fn deserialize_strict_opt<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Value>, D::Error> {
    Option::<StrictValue>::deserialize(d).map(|o| o.map(|s| s.0))
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("{DUP_PREFIX}{key}\u{0}")));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(s: &str) -> String {
        let v = parse_strict(s.as_bytes()).expect("valid json");
        let mut out = Vec::new();
        write_value(&v, &mut out).expect("canonicalisable");
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn rfc8785_sorting_example() {
        // RFC 8785 section 3.2.3: keys sorted by UTF-16 code units.
        let input = r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#;
        let want = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(canon(input), want);
    }

    #[test]
    fn rfc8785_number_and_literal_example() {
        // RFC 8785 section 3.2.2 example input and output.
        let input = r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/", "literals": [null, true, false]}"#;
        let want = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
        assert_eq!(canon(input), want);
    }

    #[test]
    fn negative_zero_and_integers() {
        assert_eq!(
            canon("[-0.0, 0, -1, 9007199254740992, 1.0, 100]"),
            "[0,0,-1,9007199254740992,1,100]"
        );
    }

    #[test]
    fn unsafe_integers_are_refused() {
        let v = parse_strict(b"[9007199254740993]").expect("json");
        assert!(matches!(
            write_value(&v, &mut Vec::new()),
            Err(Error::UnsafeInteger { .. })
        ));
        let v = parse_strict(b"[-9007199254740993]").expect("json");
        assert!(matches!(
            write_value(&v, &mut Vec::new()),
            Err(Error::UnsafeInteger { .. })
        ));
        // A large integer that a double holds exactly is fine, as ECMAScript prints it.
        assert_eq!(
            canon("[2382186501757725000, 1e21]"),
            "[2382186501757725000,1e+21]"
        );
    }

    #[test]
    fn integers_beyond_64_bits_were_hashed_as_other_numbers() {
        // serde_json reads these as the nearest double: 18446744073709551616 (2^64) would
        // have been hashed as 18446744073709552000.
        for lit in [
            "18446744073709551616",
            "18446744073709551617",
            "-9223372036854775809",
            "123456789012345678901234567890",
        ] {
            let doc = format!(r#"{{"a":[1,{{"b":{lit}}}]}}"#);
            match parse_strict(doc.as_bytes()) {
                Err(Error::UnsafeInteger { value }) => assert_eq!(value, lit),
                other => panic!("{lit}: {other:?}"),
            }
        }
        // Beyond 64 bits but written as its double is: accepted, and hashed as written.
        assert_eq!(
            canon("[100000000000000000000,-18446744073709552000]"),
            "[100000000000000000000,-18446744073709552000]"
        );
        // Within 64 bits the value is kept and judged when canonicalised; in strings, and
        // as fractions or exponents (doubles by definition), digits are not integers.
        assert!(parse_strict(b"[18446744073709551615,-9223372036854775808]").is_ok());
        assert_eq!(
            canon(
                r#"["18446744073709551616","\\\"18446744073709551616",1.8446744073709551616e19,18446744073709551616.0]"#
            ),
            r#"["18446744073709551616","\\\"18446744073709551616",18446744073709552000,18446744073709552000]"#
        );
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert!(
            matches!(parse_strict(br#"{"a":1,"a":2}"#), Err(Error::DuplicateKey { key }) if key == "a")
        );
        assert!(matches!(
            parse_strict(br#"{"x":[{"b":1,"b":1}]}"#),
            Err(Error::DuplicateKey { .. })
        ));
        assert!(matches!(
            parse_strict(br#"{"a":1} x"#),
            Err(Error::Malformed { .. })
        ));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(1i64 << 53)..=(1i64 << 53)).prop_map(|i| Value::Number(i.into())),
            any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(".*", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Canonical output is valid JSON that parses back to the same value and is a fixed
        /// point: canonicalising it again yields the same bytes.
        #[test]
        fn canonical_form_is_a_fixed_point(v in arb_json()) {
            let mut once = Vec::new();
            write_value(&v, &mut once).expect("canonicalisable");
            let back = parse_strict(&once).expect("canonical output parses");
            let mut twice = Vec::new();
            write_value(&back, &mut twice).expect("canonicalisable");
            prop_assert_eq!(&once, &twice);
            let std_back: Value = serde_json::from_slice(&once).expect("serde_json agrees it is JSON");
            prop_assert_eq!(back, std_back);
        }

        /// The streaming serializer agrees byte for byte with the direct reference walk.
        #[test]
        fn serializer_matches_reference(v in arb_json()) {
            let mut a = Vec::new();
            let ra = write_value(&v, &mut a);
            let mut b = Vec::new();
            let rb = reference_write(&v, &mut b);
            prop_assert_eq!(ra.is_ok(), rb.is_ok());
            prop_assert_eq!(a, b);
        }

        /// An integer literal of any size is either refused as unsafe or hashed as exactly
        /// the digits the document shows: a document never shows one number and hashes
        /// another.
        #[test]
        fn integer_literals_are_hashed_as_written_or_refused(lit in "-?[1-9][0-9]{0,39}") {
            let doc = format!("[{lit}]");
            let written = parse_strict(doc.as_bytes()).and_then(|v| {
                let mut out = Vec::new();
                write_value(&v, &mut out).map(|()| out)
            });
            match written {
                Ok(out) => prop_assert_eq!(String::from_utf8(out).expect("utf8"), doc),
                Err(Error::UnsafeInteger { value }) => prop_assert_eq!(value, lit),
                Err(e) => prop_assert!(false, "{lit}: {e}"),
            }
        }

        /// Arbitrary bytes never panic the strict parser.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_strict(&bytes);
        }
    }
}
