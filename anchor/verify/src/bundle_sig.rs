//! Bundle signatures: one signature for many events, for devices that cannot sign each
//! reading (ES256 on a secure element signs a few per second; a sensor may read thousands).
//!
//! The device hashes each event's bytes as it sends them into an RFC 6962 tree (the
//! pipeline's own [`crate::merkle`]) and signs the tree's root once, as a COSE_Sign1 or a
//! JWS whose payload is the [`Manifest`] `{"bundle_root": HEX, "size": N}` (claims `iss`,
//! `iat`; no `sub`: the events may be about different objects). The record it sends is
//!
//! ```text
//! {"bundle": "<the envelope: JWS text, or base64url of the COSE bytes>", "events": [<event>, ...]}
//! ```
//!
//! with the events written exactly as they were hashed. Each event becomes a leaf of its own;
//! its proof carries the envelope, the event's bytes, its index and its audit path to the
//! signed root, so an auditor checks one event's signature without the other N - 1 events.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::Digest;
use crate::merkle;
use crate::signature::{Claims, Envelope, SigError, SigningKey, sign_cose, sign_jws};

/// What a bundle envelope signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// RFC 6962 root over `leaf_hash(event bytes)` of the events, in order.
    pub bundle_root: Digest,
    /// How many events.
    pub size: u64,
}

/// How the pipeline stores a bundle member's evidence beside its row (the `bundle_member`
/// column; the bundle's envelope is in the `envelope` column, the same bytes for every
/// member, so Parquet's dictionary keeps it once per row group):
///
/// ```text
/// 0x01 | index (u32, big-endian) | n (u8) | n x 32-byte audit path | the event's bytes as sent
/// ```
pub fn encode_member(index: u64, path: &[Digest], event: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + 32 * path.len() + event.len());
    out.push(1);
    out.extend_from_slice(&u32::try_from(index).unwrap_or(u32::MAX).to_be_bytes());
    out.push(u8::try_from(path.len()).unwrap_or(u8::MAX));
    for d in path.iter().take(usize::from(u8::MAX)) {
        out.extend_from_slice(&d.0);
    }
    out.extend_from_slice(event);
    out
}

/// A stored bundle member: its index, audit path and event bytes as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember<'a> {
    /// Position in the bundle.
    pub index: u64,
    /// Audit path to the signed bundle root.
    pub path: Vec<Digest>,
    /// The event's bytes as sent (and hashed).
    pub event: &'a [u8],
}

/// Reads what [`encode_member`] wrote; `None` when the bytes are not such a record.
pub fn decode_member(bytes: &[u8]) -> Option<StoredMember<'_>> {
    let (&version, rest) = bytes.split_first()?;
    if version != 1 || rest.len() < 5 {
        return None;
    }
    let index = u64::from(u32::from_be_bytes(rest[..4].try_into().ok()?));
    let n = usize::from(rest[4]);
    let rest = &rest[5..];
    if rest.len() < 32 * n {
        return None;
    }
    let path = rest[..32 * n]
        .chunks_exact(32)
        .map(|c| c.try_into().map(Digest))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some(StoredMember {
        index,
        path,
        event: &rest[32 * n..],
    })
}

/// The root a bundle of `events` (their bytes as sent) signs.
pub fn bundle_root(events: &[&[u8]]) -> Digest {
    let leaves: Vec<Digest> = events.iter().map(|e| merkle::leaf_hash(e)).collect();
    merkle::root(&leaves)
}

/// The leaf hashes of a bundle's events, for audit paths.
pub fn bundle_tree(events: &[&[u8]]) -> merkle::Tree {
    let leaves: Vec<Digest> = events.iter().map(|e| merkle::leaf_hash(e)).collect();
    merkle::Tree::new(&leaves)
}

/// A bundle record as received.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleRecord<'a> {
    /// The envelope: JWS text, or base64url of COSE_Sign1 bytes.
    pub bundle: String,
    /// The events, each exactly as written (and hashed).
    #[serde(borrow)]
    pub events: Vec<&'a RawValue>,
}

/// A bundle record's parts: its envelope field and each event's bytes exactly as written
/// (what the bundle tree hashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleParts<'a> {
    /// The envelope: JWS text, or base64url of COSE_Sign1 bytes.
    pub bundle: std::borrow::Cow<'a, str>,
    /// The events, each exactly as written.
    pub events: Vec<&'a [u8]>,
}

/// Splits a bundle record into its envelope and its events' bytes. Records in the shape
/// [`sign_bundle`] writes (any whitespace, either key order, no escapes in the keys or the
/// envelope) are split by a scanner that only finds where each event ends; the events'
/// own JSON is checked when each is parsed, so an event that is not JSON is rejected alone,
/// as any bad reading of a bundle is. Anything else goes through `serde_json`, whose error
/// is returned.
pub fn split_bundle(record: &[u8]) -> Result<BundleParts<'_>, serde_json::Error> {
    if let Some(parts) = scan::record(record) {
        return Ok(parts);
    }
    let r: BundleRecord<'_> = serde_json::from_slice(record)?;
    let events = r.events.iter().map(|v| v.get().as_bytes()).collect();
    Ok(BundleParts {
        bundle: std::borrow::Cow::Owned(r.bundle),
        events,
    })
}

/// The fast path of [`split_bundle`]: `None` whenever the record is not plainly shaped.
mod scan {
    use super::BundleParts;

    fn ws(b: &[u8], mut i: usize) -> usize {
        while b
            .get(i)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        {
            i += 1;
        }
        i
    }

    /// A string without escapes at `i` (its opening quote): its text and the index after it.
    fn plain_string(b: &[u8], i: usize) -> Option<(&str, usize)> {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let len = b.get(i + 1..)?.iter().position(|&c| c == b'"')?;
        let text = &b[i + 1..i + 1 + len];
        if text.iter().any(|&c| c == b'\\' || c < 0x20) {
            return None;
        }
        Some((std::str::from_utf8(text).ok()?, i + len + 2))
    }

    /// Where the JSON value starting at `i` ends: strings (with escapes) skipped, brackets
    /// counted; a scalar ends at a delimiter. Its content is not validated.
    fn value_end(b: &[u8], mut i: usize) -> Option<usize> {
        let mut depth = 0usize;
        loop {
            match *b.get(i)? {
                b'"' => {
                    i += 1;
                    loop {
                        match *b.get(i)? {
                            b'\\' => i += 2,
                            b'"' => break,
                            _ => i += 1,
                        }
                    }
                    i += 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                b'{' | b'[' => {
                    depth += 1;
                    i += 1;
                }
                b'}' | b']' => {
                    if depth == 0 {
                        return Some(i);
                    }
                    depth -= 1;
                    i += 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                b',' | b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => return Some(i),
                _ => i += 1,
            }
        }
    }

    /// The envelope of a record that starts `{"bundle":"...`: see [`super::leading_envelope`].
    pub(super) fn leading_envelope(b: &[u8]) -> Option<&str> {
        let i = ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return None;
        }
        let (key, next) = plain_string(b, ws(b, i + 1))?;
        let i = ws(b, next);
        if key != "bundle" || b.get(i) != Some(&b':') {
            return None;
        }
        plain_string(b, ws(b, i + 1)).map(|(text, _)| text)
    }

    pub(super) fn record(b: &[u8]) -> Option<BundleParts<'_>> {
        let mut bundle = None;
        let mut events = None;
        let mut i = ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return None;
        }
        i += 1;
        loop {
            let (key, next) = plain_string(b, ws(b, i))?;
            i = ws(b, next);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i = ws(b, i + 1);
            match key {
                "bundle" if bundle.is_none() => {
                    let (text, next) = plain_string(b, i)?;
                    bundle = Some(text);
                    i = next;
                }
                "events" if events.is_none() => {
                    if b.get(i) != Some(&b'[') {
                        return None;
                    }
                    let mut list = Vec::new();
                    i = ws(b, i + 1);
                    if b.get(i) == Some(&b']') {
                        i += 1;
                    } else {
                        loop {
                            let end = value_end(b, i)?;
                            if end == i {
                                return None;
                            }
                            list.push(&b[i..end]);
                            i = ws(b, end);
                            match b.get(i)? {
                                b',' => i = ws(b, i + 1),
                                b']' => {
                                    i += 1;
                                    break;
                                }
                                _ => return None,
                            }
                        }
                    }
                    events = Some(list);
                }
                _ => return None,
            }
            i = ws(b, i);
            match b.get(i)? {
                b',' => i += 1,
                b'}' => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
        if ws(b, i) != b.len() {
            return None;
        }
        Some(BundleParts {
            bundle: std::borrow::Cow::Borrowed(bundle?),
            events: events?,
        })
    }
}

/// The envelope field of a record that starts `{"bundle":"...`, as [`sign_bundle`] writes
/// it, read without looking at the events; `None` for any other shape.
pub fn leading_envelope(record: &[u8]) -> Option<&str> {
    scan::leading_envelope(record)
}

/// True when `record` is shaped as a bundle (`{"bundle": ...`), so it is parsed as one.
pub fn is_bundle(record: &[u8]) -> bool {
    let t = record.trim_ascii_start();
    t.strip_prefix(b"{")
        .is_some_and(|rest| rest.trim_ascii_start().starts_with(b"\"bundle\""))
}

/// The envelope's bytes as the digest covers them: the JWS text, or the decoded COSE.
pub fn envelope_bytes(field: &str) -> Result<(Vec<u8>, Envelope), SigError> {
    let f = field.trim();
    if f.starts_with("eyJ") && f.matches('.').count() == 2 {
        return Ok((f.as_bytes().to_vec(), Envelope::Jws));
    }
    B64.decode(f)
        .map(|b| (b, Envelope::Cose))
        .map_err(|e| SigError {
            code: "malformed_envelope",
            detail: format!("bundle is neither a JWS nor base64url COSE: {e}"),
        })
}

/// Signs `events` (each a JSON event, as bytes) as one bundle record.
pub fn sign_bundle(
    key: &SigningKey,
    kid: &str,
    iss: &str,
    iat: i64,
    events: &[&[u8]],
    envelope: Envelope,
) -> Vec<u8> {
    let manifest = Manifest {
        bundle_root: bundle_root(events),
        size: events.len() as u64,
    };
    let payload = serde_json::to_vec(&manifest).unwrap_or_default();
    let claims = Claims {
        iss: Some(iss.to_owned()),
        sub: None,
        iat: Some(iat),
    };
    let env = match envelope {
        Envelope::Jws => sign_jws(key, kid, &claims, &payload),
        Envelope::Cose => B64.encode(sign_cose(key, kid, &claims, &payload)),
    };
    let mut out =
        Vec::with_capacity(env.len() + events.iter().map(|e| e.len() + 1).sum::<usize>() + 32);
    out.extend_from_slice(b"{\"bundle\":\"");
    out.extend_from_slice(env.as_bytes());
    out.extend_from_slice(b"\",\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e);
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_members_round_trip_and_garbage_is_refused() {
        let path = vec![Digest([7; 32]), Digest([9; 32])];
        let bytes = encode_member(41, &path, b"{\"event_id\":\"e\"}");
        let m = decode_member(&bytes).expect("decodes");
        assert_eq!(m.index, 41);
        assert_eq!(m.path, path);
        assert_eq!(m.event, b"{\"event_id\":\"e\"}");
        assert!(decode_member(b"").is_none());
        assert!(decode_member(&bytes[..20]).is_none(), "a truncated path");
        assert!(decode_member(b"{\"bundle\":1}").is_none(), "not version 1");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_stored_members_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            if let Some(m) = decode_member(&bytes) {
                proptest::prop_assert_eq!(encode_member(m.index, &m.path, m.event), bytes);
            }
        }
    }
    use crate::signature::{Alg, parse_envelope};

    /// What `serde_json` makes of a record, as parts.
    fn by_serde(record: &[u8]) -> Option<(String, Vec<Vec<u8>>)> {
        let r: BundleRecord<'_> = serde_json::from_slice(record).ok()?;
        Some((
            r.bundle,
            r.events
                .iter()
                .map(|v| v.get().as_bytes().to_vec())
                .collect(),
        ))
    }

    fn parts(p: &BundleParts<'_>) -> (String, Vec<Vec<u8>>) {
        (
            p.bundle.to_string(),
            p.events.iter().map(|e| e.to_vec()).collect(),
        )
    }

    #[test]
    fn the_scanner_splits_as_serde_does_and_leaves_the_rest_to_it() {
        let good: &[&str] = &[
            r#"{"bundle":"eyJ.a.b","events":[{"a":1},{"b":"x]}\"{"}]}"#,
            " {\n \"events\" : [ {\"a\": [1, {\"c\": \"}\"}]} , {} ] ,\t\"bundle\":\"AAA\" } ",
            r#"{"bundle":"x","events":[]}"#,
            r#"{"bundle":"x","events":[1, "s", null, [2]]}"#,
        ];
        for g in good {
            let fast = scan::record(g.as_bytes()).expect("scanned");
            if g.trim_start().starts_with(r#"{"bundle""#) {
                assert_eq!(leading_envelope(g.as_bytes()), Some(&*fast.bundle), "{g}");
            }
            assert_eq!(Some(parts(&fast)), by_serde(g.as_bytes()), "{g}");
            assert_eq!(
                parts(&split_bundle(g.as_bytes()).expect("split")),
                parts(&fast)
            );
        }
        // Escapes in the envelope, duplicate or unknown keys, trailing bytes: serde decides.
        let other: &[&str] = &[
            r#"{"bundle":"e\u0079J.a.b","events":[{}]}"#,
            r#"{"bundle":"x","bundle":"y","events":[{}]}"#,
            r#"{"bundle":"x","events":[{}],"extra":1}"#,
            r#"{"bundle":"x","events":[{}]} x"#,
            r#"{"bundle":"x","events":[{}}]}"#,
            r#"{"bundle":"x","events":[{"a":"unterminated}]}"#,
            r#"{"bundle":"x"}"#,
        ];
        for o in other {
            assert!(scan::record(o.as_bytes()).is_none(), "{o}");
            assert_eq!(
                split_bundle(o.as_bytes()).ok().map(|p| parts(&p)),
                by_serde(o.as_bytes()),
                "{o}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn whatever_the_scanner_splits_serde_splits_the_same_when_it_can(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            events in proptest::collection::vec(r#"[{}\[\]",:a1 \\]{0,16}"#, 0..4),
            printable in proptest::collection::vec("[ -~]{0,24}", 0..4),
        ) {
            let printable = format!(r#"{{"events":[{}], "bundle":"eyJ.a.b"}}"#, printable.join(","));
            let shaped = format!(r#"{{"bundle":"eyJ.a.b","events":[{}]}}"#, events.join(","));
            for input in [bytes.as_slice(), shaped.as_bytes(), printable.as_bytes()] {
                if let (Some(fast), Some(slow)) = (scan::record(input), by_serde(input)) {
                    proptest::prop_assert_eq!(parts(&fast), slow);
                }
                let _ = split_bundle(input);
            }
        }
    }

    #[test]
    fn a_signed_bundle_proves_each_event_alone() {
        let key = SigningKey::from_bytes(Alg::EdDsa, &[5; 32]).expect("key");
        let events: Vec<Vec<u8>> = (0..5)
            .map(|i| format!("{{\"event_id\":\"e{i}\", \"x\": {i}}}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        for kind in [Envelope::Jws, Envelope::Cose] {
            let record = sign_bundle(&key, "k", "d1", 7, &refs, kind);
            assert!(is_bundle(&record));
            let parsed: BundleRecord<'_> = serde_json::from_slice(&record).expect("record");
            assert_eq!(parsed.events.len(), 5);
            assert_eq!(parsed.events[2].get().as_bytes(), events[2].as_slice());
            let (bytes, k) = envelope_bytes(&parsed.bundle).expect("envelope");
            assert_eq!(k, kind);
            let signed = parse_envelope(&bytes, k).expect("parse");
            signed.verify(&key.public()).expect("verifies");
            let m: Manifest = serde_json::from_slice(&signed.payload).expect("manifest");
            assert_eq!(m.size, 5);
            let tree = bundle_tree(&refs);
            let path = tree.audit_path(3).expect("path");
            let root =
                merkle::root_from_path("bundle", &merkle::leaf_hash(&events[3]), 3, 5, &path)
                    .expect("root");
            assert_eq!(root, m.bundle_root);
        }
        assert!(!is_bundle(b"{\"event_id\":\"x\"}"));
        assert!(is_bundle(b" { \"bundle\": 1}"));
    }
}
