//! The RFC 8785 bytes of an [`Event`], written field by field.
//!
//! The generic serializer ([`veritrace_verify::canonical::to_vec`]) reaches the same bytes
//! through serde: it escapes and orders every member name at run time and checks each
//! value's type. An event's members are fixed and already in canonical order, so this
//! writes their names as constants and their values with the same JCS primitives
//! (strings, ECMAScript numbers, free attributes through the generic serializer). The
//! tests hold it to the generic serializer byte for byte, and the proof golden test
//! (`queries/tests/proof_golden.rs`) to the bundles of a fixed run.

use std::collections::BTreeMap;

use veritrace_verify::Result;
use veritrace_verify::canonical;

use crate::event::{
    Attachment, Event, Location, Participant, Quantity, SignatureInfo, TraceObject,
};

/// Largest integer an IEEE 754 double holds exactly (2^53): JCS writes integers up to it
/// as they are; beyond it only those the nearest double prints back the same.
const MAX_SAFE: u64 = 1 << 53;

/// Appends the canonical bytes of `e` to `out`.
pub(crate) fn write(e: &Event, out: &mut Vec<u8>) -> Result<()> {
    let mut o = Obj::open(out);
    if !e.attachments.is_empty() {
        o.key("attachments");
        o.out.push(b'[');
        for (i, a) in e.attachments.iter().enumerate() {
            if i > 0 {
                o.out.push(b',');
            }
            attachment(a, o.out)?;
        }
        o.out.push(b']');
    }
    if let Some(v) = &e.attributes {
        o.key("attributes");
        canonical::write_value(v, o.out)?;
    }
    if let Some(p) = &e.counterparty {
        o.key("counterparty");
        participant(p, o.out);
    }
    o.opt_str("device_id", e.device_id.as_deref());
    o.str("event_id", &e.event_id);
    o.str("event_time", &e.event_time);
    o.str("event_type", e.event_type.as_str());
    o.strs("inputs", &e.inputs);
    if let Some(l) = &e.location {
        o.key("location");
        location(l, o.out)?;
    }
    if let Some(t) = &e.object {
        o.key("object");
        object(t, o.out);
    }
    o.opt_str("operator", e.operator.as_deref());
    o.strs("outputs", &e.outputs);
    o.key("participant");
    participant(&e.participant, o.out);
    if let Some(q) = &e.quantity {
        o.key("quantity");
        quantity(q, o.out)?;
    }
    if !e.readings.is_empty() {
        o.key("readings");
        readings(&e.readings, o.out)?;
    }
    o.opt_str("result", e.result.as_deref());
    o.strs("retracts", &e.retracts);
    if let Some(s) = &e.signature {
        o.key("signature");
        signature(s, o.out)?;
    }
    o.opt_str("site", e.site.as_deref());
    o.opt_str("trace_code", e.trace_code.as_deref());
    o.key("version");
    unsigned(e.version.into(), o.out)?;
    o.close();
    Ok(())
}

/// An object being written; member names are passed in canonical order by the caller.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj { out, empty: true }
    }

    /// A member name: plain ASCII, nothing to escape.
    fn key(&mut self, name: &str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, name: &str, v: &str) {
        self.key(name);
        string(v, self.out);
    }

    fn opt_str(&mut self, name: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.str(name, v);
        }
    }

    /// A list of strings, left out when empty.
    fn strs(&mut self, name: &str, v: &[String]) {
        if v.is_empty() {
            return;
        }
        self.key(name);
        self.out.push(b'[');
        for (i, s) in v.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            string(s, self.out);
        }
        self.out.push(b']');
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// Exact powers of ten (every one up to 10^22 is a double).
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// A number as ECMAScript prints it (JCS), for the two forms of nearly every reading and
/// position: an integer, and a decimal fraction of few digits. The rest, and any doubt, go
/// to the shortest-digits printer ([`canonical::write_f64`]), which is also the judge of
/// what this writes (a property test).
///
/// The decimal `m / 10^k` (with `m < 2^53`) is read back as the double nearest to it,
/// which is `m as f64 / 10^k` (a quotient of two exact doubles, correctly rounded). The
/// printer wants the fewest digits that read back as `f`, and of those the nearest: the
/// fewest fraction digits `k` for which some `m` reads back, where `m` must be the only
/// one (the `m` that read back at one `k` are consecutive, so it is the only one when its
/// neighbours do not). Between 10^-6 and 10^15 ECMAScript writes such a number plainly.
fn number(f: f64, out: &mut Vec<u8>) -> Result<()> {
    const SAFE: u64 = MAX_SAFE;
    let a = f.abs();
    if !f.is_finite() || !(1e-6..1e15).contains(&a) {
        return canonical::write_f64(f, out);
    }
    // Below 10^15 the cast is exact for integers (and truncates fractions).
    let whole = a as u64;
    if whole as f64 == a {
        if f < 0.0 {
            out.push(b'-');
        }
        out.extend_from_slice(itoa::Buffer::new().format(whole).as_bytes());
        return Ok(());
    }
    let back = |m: u64, k: usize| m as f64 / POW10[k] == a;
    for (k, &p) in POW10.iter().enumerate().skip(1) {
        // Within one of the nearest `m`; its neighbours are tried too.
        let m = (a * p + 0.5) as u64;
        if m >= SAFE {
            break;
        }
        let below = m.checked_sub(1).is_some_and(|m| back(m, k));
        let (this, above) = (back(m, k), back(m + 1, k));
        if !(this || below || above) {
            continue;
        }
        if !this || below || above {
            break;
        }
        if f < 0.0 {
            out.push(b'-');
        }
        let scale = 10u64.pow(k as u32);
        out.extend_from_slice(itoa::Buffer::new().format(m / scale).as_bytes());
        out.push(b'.');
        let mut fraction = [b'0'; 16];
        let mut rest = m % scale;
        for d in fraction[..k].iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.extend_from_slice(&fraction[..k]);
        return Ok(());
    }
    canonical::write_f64(f, out)
}

/// A JSON string as JCS writes it. Nearly every value needs no escape: that is checked
/// over the whole string without branching (which the compiler vectorises) and the text
/// copied at once; the others go through the byte-wise writer.
fn string(s: &str, out: &mut Vec<u8>) {
    let plain = !s.bytes().fold(false, |any, c| {
        any | (c < 0x20) | (c == b'"') | (c == b'\\')
    });
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        canonical::write_string(s, out);
    }
}

/// The canonical text of an event's `attachments` and `attributes` members, cut from its
/// canonical bytes (where they lead, in that order) rather than written again for their
/// columns. `None` for a member the event does not have, or when `canonical` does not
/// start as [`write`] starts it.
pub(crate) fn leading_members(canonical: &[u8]) -> (Option<&str>, Option<&str>) {
    const ATTACHMENTS: &[u8] = b"{\"attachments\":";
    const ATTRIBUTES: &[u8] = b"\"attributes\":";
    let mut at = 1;
    let attachments = if canonical.starts_with(ATTACHMENTS) {
        let start = ATTACHMENTS.len();
        let end = value_end(canonical, start);
        at = end.map_or(canonical.len(), |e| e + 1);
        end.and_then(|e| std::str::from_utf8(&canonical[start..e]).ok())
    } else {
        None
    };
    let attributes = canonical
        .get(at..)
        .filter(|rest| rest.starts_with(ATTRIBUTES))
        .and_then(|_| {
            let start = at + ATTRIBUTES.len();
            let end = value_end(canonical, start)?;
            std::str::from_utf8(&canonical[start..end]).ok()
        });
    (attachments, attributes)
}

/// Where the object or array opening at `start` of canonical JSON closes (the index after
/// it). Strings are skipped whole, escapes and all.
fn value_end(json: &[u8], start: usize) -> Option<usize> {
    if !matches!(json.get(start), Some(b'{' | b'[')) {
        return None;
    }
    let (mut i, mut depth) = (start, 0usize);
    while let Some(&c) = json.get(i) {
        match c {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b'"' => {
                i += 1;
                while let Some(&c) = json.get(i) {
                    match c {
                        b'"' => break,
                        b'\\' => i += 2,
                        _ => i += 1,
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn unsigned(v: u64, out: &mut Vec<u8>) -> Result<()> {
    if v <= MAX_SAFE {
        out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        Ok(())
    } else {
        // The generic serializer decides whether a double holds it exactly.
        out.extend_from_slice(&canonical::to_vec(&v)?);
        Ok(())
    }
}

fn signed(v: i64, out: &mut Vec<u8>) -> Result<()> {
    if v.unsigned_abs() <= MAX_SAFE {
        out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        Ok(())
    } else {
        out.extend_from_slice(&canonical::to_vec(&v)?);
        Ok(())
    }
}

fn participant(p: &Participant, out: &mut Vec<u8>) {
    let mut o = Obj::open(out);
    o.str("id", &p.id);
    o.opt_str("name", p.name.as_deref());
    o.str("role", &p.role);
    o.close();
}

fn object(t: &TraceObject, out: &mut Vec<u8>) {
    let mut o = Obj::open(out);
    o.opt_str("batch_number", t.batch_number.as_deref());
    o.opt_str("expiry_date", t.expiry_date.as_deref());
    o.opt_str("model", t.model.as_deref());
    o.opt_str("product_id", t.product_id.as_deref());
    o.opt_str("production_date", t.production_date.as_deref());
    o.opt_str("production_line", t.production_line.as_deref());
    o.opt_str("spec", t.spec.as_deref());
    o.close();
}

fn location(l: &Location, out: &mut Vec<u8>) -> Result<()> {
    let mut o = Obj::open(out);
    o.key("lat");
    number(l.lat, o.out)?;
    o.key("lon");
    number(l.lon, o.out)?;
    o.close();
    Ok(())
}

fn quantity(q: &Quantity, out: &mut Vec<u8>) -> Result<()> {
    let mut o = Obj::open(out);
    o.str("unit", &q.unit);
    o.key("value");
    number(q.value, o.out)?;
    o.close();
    Ok(())
}

fn attachment(a: &Attachment, out: &mut Vec<u8>) -> Result<()> {
    let mut o = Obj::open(out);
    o.opt_str("media_type", a.media_type.as_deref());
    o.str("name", &a.name);
    o.str("sha256", &a.sha256);
    if let Some(s) = a.size {
        o.key("size");
        unsigned(s, o.out)?;
    }
    o.close();
    Ok(())
}

fn signature(s: &SignatureInfo, out: &mut Vec<u8>) -> Result<()> {
    let mut o = Obj::open(out);
    o.str("alg", &s.alg);
    if let Some(i) = s.bundle_index {
        o.key("bundle_index");
        unsigned(i, o.out)?;
    }
    if let Some(n) = s.bundle_size {
        o.key("bundle_size");
        unsigned(n, o.out)?;
    }
    o.str("envelope", &s.envelope);
    o.str("envelope_sha256", &s.envelope_sha256);
    o.key("iat");
    signed(s.iat, o.out)?;
    o.str("key_id", &s.key_id);
    o.str("signer", &s.signer);
    o.str("signer_participant", &s.signer_participant);
    o.close();
    Ok(())
}

/// Sensor readings: a map's order is that of UTF-8 bytes, JCS's that of UTF-16 code
/// units. They agree unless a name holds a character beyond U+FFFF and another one in
/// U+E000..U+FFFF; only names that are not all ASCII are sorted again.
fn readings(r: &BTreeMap<String, f64>, out: &mut Vec<u8>) -> Result<()> {
    let mut o = Obj::open(out);
    if r.keys().all(|k| k.is_ascii()) {
        for (k, v) in r {
            o.key_escaped(k);
            number(*v, o.out)?;
        }
    } else {
        let mut sorted: Vec<(&String, &f64)> = r.iter().collect();
        sorted.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
        for (k, v) in sorted {
            o.key_escaped(k);
            number(*v, o.out)?;
        }
    }
    o.close();
    Ok(())
}

impl Obj<'_> {
    /// A member name from the data: escaped as any string.
    fn key_escaped(&mut self, name: &str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        string(name, self.out);
        self.out.push(b':');
    }
}

/// Kept for the tests: what the generic serializer writes, the oracle of this writer.
#[cfg(test)]
pub(crate) fn generic(e: &Event) -> Result<Vec<u8>> {
    canonical::to_vec(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use proptest::prelude::*;
    use serde_json::json;
    use veritrace_verify::canonical::write_f64;

    /// Text that needs every kind of JCS care: escapes, controls, non-ASCII, astral.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9_:.-]{0,12}",
            "[\u{0}-\u{7f}]{0,8}",
            "[\u{e000}-\u{ffff}\u{10000}-\u{10ffff}a\"\\\\]{0,6}",
            "\\PC{0,10}",
        ]
    }

    fn number() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            short_decimal(),
            -1e6f64..1e6,
            Just(0.0),
            Just(-0.0),
            Just(1e21),
            Just(1e-7),
            Just(f64::NAN),
        ]
    }

    /// What sensors send: a few digits, a few of them after the point.
    fn short_decimal() -> impl Strategy<Value = f64> {
        (any::<i64>(), 0u32..16, 0i32..18).prop_map(|(m, digits, k)| {
            let m = m % 10i64.pow(digits.max(1));
            m as f64 / 10f64.powi(k)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20000))]

        /// Numbers are written as the shortest-digits printer writes them.
        #[test]
        fn numbers_are_written_as_ecmascript_writes_them(
            f in prop_oneof![short_decimal(), any::<f64>(), -1e6f64..1e6, 1e-7f64..1e-5],
        ) {
            let (mut fast, mut printer) = (Vec::new(), Vec::new());
            let a = super::number(f, &mut fast).map(|()| String::from_utf8_lossy(&fast).into_owned());
            let b = write_f64(f, &mut printer).map(|()| String::from_utf8_lossy(&printer).into_owned());
            prop_assert_eq!(a.map_err(|e| e.to_string()), b.map_err(|e| e.to_string()), "{:?}", f);
        }
    }

    #[test]
    fn numbers_at_the_edges_of_the_plain_forms() {
        for f in [
            0.1,
            21.37,
            -0.5,
            1e-6,
            1.5e-6,
            8.538038684148812e-6,
            0.3,
            2.0 / 3.0,
            1e15 - 0.5,
            999_999_999_999_999.0,
            9_007_199_254_740.99,
            123_456.789,
            -0.0,
            5e-324,
            1e21,
        ] {
            let (mut fast, mut printer) = (Vec::new(), Vec::new());
            super::number(f, &mut fast).expect("finite");
            write_f64(f, &mut printer).expect("finite");
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&printer),
                "{f:?}"
            );
        }
    }

    fn integer() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..1000,
            Just(MAX_SAFE),
            Just(MAX_SAFE + 1),
            Just(MAX_SAFE + 3),
            any::<u64>()
        ]
    }

    fn participant() -> impl Strategy<Value = Participant> {
        (text(), proptest::option::of(text()), text()).prop_map(|(id, name, role)| Participant {
            id,
            name,
            role,
        })
    }

    fn object() -> impl Strategy<Value = TraceObject> {
        proptest::collection::vec(proptest::option::of(text()), 7).prop_map(|mut v| TraceObject {
            batch_number: v[0].take(),
            expiry_date: v[1].take(),
            model: v[2].take(),
            product_id: v[3].take(),
            production_date: v[4].take(),
            production_line: v[5].take(),
            spec: v[6].take(),
        })
    }

    fn attachment() -> impl Strategy<Value = Attachment> {
        (
            proptest::option::of(text()),
            text(),
            text(),
            proptest::option::of(integer()),
        )
            .prop_map(|(media_type, name, sha256, size)| Attachment {
                media_type,
                name,
                sha256,
                size,
            })
    }

    fn signature() -> impl Strategy<Value = SignatureInfo> {
        (
            (
                text(),
                proptest::option::of(integer()),
                proptest::option::of(integer()),
            ),
            (text(), text(), any::<i64>(), text(), text(), text()),
        )
            .prop_map(
                |(
                    (alg, bundle_index, bundle_size),
                    (envelope, envelope_sha256, iat, key_id, signer, signer_participant),
                )| {
                    SignatureInfo {
                        alg,
                        bundle_index,
                        bundle_size,
                        envelope,
                        envelope_sha256,
                        iat,
                        key_id,
                        signer,
                        signer_participant,
                    }
                },
            )
    }

    fn attributes() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            Just(json!({})),
            Just(
                json!({"b": [1, 2.5, "x"], "a": {"é": null, "z": true}, "\u{10000}": 1, "\u{e000}": 2})
            ),
            (text(), number()).prop_map(|(k, v)| json!({ k: v.is_finite().then_some(v) })),
        ]
    }

    fn event() -> impl Strategy<Value = Event> {
        let types = proptest::sample::select(EventType::ALL.to_vec());
        (
            (
                proptest::collection::vec(attachment(), 0..3),
                proptest::option::of(attributes()),
                proptest::option::of(participant()),
                proptest::option::of(text()),
                text(),
                text(),
                types,
                proptest::collection::vec(text(), 0..3),
                proptest::option::of((number(), number())),
                proptest::option::of(object()),
            ),
            (
                proptest::option::of(text()),
                proptest::collection::vec(text(), 0..3),
                participant(),
                proptest::option::of((text(), number())),
                proptest::collection::btree_map(text(), number(), 0..4),
                proptest::option::of(text()),
                proptest::collection::vec(text(), 0..3),
                proptest::option::of(signature()),
                proptest::option::of(text()),
                proptest::option::of(text()),
                any::<u32>(),
            ),
        )
            .prop_map(
                |(
                    (
                        attachments,
                        attributes,
                        counterparty,
                        device_id,
                        event_id,
                        event_time,
                        ty,
                        inputs,
                        at,
                        object,
                    ),
                    (
                        operator,
                        outputs,
                        participant,
                        quantity,
                        readings,
                        result,
                        retracts,
                        signature,
                        site,
                        trace_code,
                        version,
                    ),
                )| Event {
                    attachments,
                    attributes,
                    counterparty,
                    device_id,
                    event_id,
                    event_time,
                    event_time_ms: 0,
                    event_type: ty,
                    kind: ty,
                    inputs,
                    location: at.map(|(lat, lon)| Location { lat, lon }),
                    object,
                    operator,
                    outputs,
                    participant,
                    quantity: quantity.map(|(unit, value)| Quantity { unit, value }),
                    readings,
                    result,
                    retracts,
                    signature,
                    site,
                    trace_code,
                    version,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The writer and the generic serializer give the same bytes, or both refuse (a
        /// number no double holds exactly, a reading that is not finite).
        #[test]
        fn writes_what_the_generic_serializer_writes(e in event()) {
            let mut direct = Vec::new();
            let got = write(&e, &mut direct).map(|()| direct);
            match (got, generic(&e)) {
                (Ok(a), Ok(b)) => prop_assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b)),
                (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                (a, b) => prop_assert!(false, "direct {a:?}, generic {b:?}"),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// The members cut from the canonical bytes are the texts the columns would write.
        #[test]
        fn leading_members_are_the_members_written_alone(e in event()) {
            let mut bytes = Vec::new();
            if write(&e, &mut bytes).is_ok() {
                let (attachments, attributes) = leading_members(&bytes);
                let alone = |v: &serde_json::Value| {
                    String::from_utf8(canonical::to_vec(v).expect("jcs")).expect("utf8")
                };
                let want_attachments = (!e.attachments.is_empty())
                    .then(|| alone(&serde_json::to_value(&e.attachments).expect("json")));
                prop_assert_eq!(attachments.map(str::to_owned), want_attachments);
                prop_assert_eq!(attributes.map(str::to_owned), e.attributes.as_ref().map(alone));
            }
        }
    }

    #[test]
    fn names_ordered_by_utf16_not_by_utf8() {
        // U+E000 sorts before U+10000 in UTF-8 bytes and after it in UTF-16 code units,
        // where U+10000 is the surrogate pair D800 DC00.
        let mut readings = BTreeMap::new();
        readings.insert("\u{10000}".to_owned(), 1.0);
        readings.insert("\u{e000}".to_owned(), 2.0);
        readings.insert("a".to_owned(), 0.5);
        let mut out = Vec::new();
        readings_only(&readings, &mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "{\"a\":0.5,\"\u{10000}\":1,\"\u{e000}\":2}"
        );
    }

    fn readings_only(r: &BTreeMap<String, f64>, out: &mut Vec<u8>) {
        readings(r, out).expect("finite readings");
    }
}
