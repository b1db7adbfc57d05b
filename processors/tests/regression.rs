//! One test per bug fixed, named after what broke.

use veritrace_processors::Reason;
use veritrace_processors::event::{Limits, process};

const NOW: i64 = 1_795_219_200_000; // 2026-11-21

fn reason(json: &str) -> Option<Reason> {
    process(json.as_bytes(), NOW, &Limits::default())
        .err()
        .map(|r| r.reason)
}

const BASE: &str = r#"{"event_id":"r1","event_type":"production","event_time":"2026-11-01T00:00:00Z","participant":{"id":"p","role":"manufacturer"},"trace_code":"(01)09506000134352(21)A"}"#;

fn with(extra: &str) -> String {
    format!("{},{extra}}}", &BASE[..BASE.len() - 1])
}

#[test]
fn a_positional_array_was_read_as_an_event() {
    // serde reads structs from arrays too; only JSON objects are events.
    let arr = r#"["r1","production","2026-11-01T00:00:00Z",{"id":"p","role":"manufacturer"},"(01)09506000134352(21)A"]"#;
    assert_eq!(reason(arr), Some(Reason::NotAnObject));
}

#[test]
fn an_attachment_without_a_name_was_missing_field_not_bad_attachment() {
    let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    assert_eq!(
        reason(&with(&format!(r#""attachments":[{{"sha256":"{sha}"}}]"#))),
        Some(Reason::BadAttachment)
    );
    assert_eq!(
        reason(&with(r#""attachments":[{"name":"a.pdf"}]"#)),
        Some(Reason::BadAttachment)
    );
}

#[test]
fn an_unpadded_date_was_accepted() {
    assert_eq!(
        reason(&with(r#""object":{"production_date":"2026-10-1"}"#)),
        Some(Reason::BadValue)
    );
    assert_eq!(
        reason(&with(r#""object":{"production_date":"2026-10-01"}"#)),
        None
    );
}

#[test]
fn a_reading_beyond_2_pow_53_was_silently_rounded() {
    let t = r#"{"event_id":"t1","event_type":"telemetry","event_time":"2026-11-01T00:00:00Z","participant":{"id":"p","role":"manufacturer"},"device_id":"d","readings":{"n":9007199254740993}}"#;
    assert_eq!(reason(t), Some(Reason::NumberOutOfRange));
}

#[test]
fn a_large_integral_double_in_attributes_could_not_be_canonicalised() {
    // ECMAScript prints 2382186501757725000 for this double; JCS must accept its own output.
    let a = process(
        with(r#""attributes":{"x":2382186501757725000}"#).as_bytes(),
        NOW,
        &Limits::default(),
    )
    .expect("a double that prints back as itself is canonical");
    assert!(String::from_utf8_lossy(&a.canonical).contains("2382186501757725000"));
}

#[test]
fn a_product_id_kept_its_unpadded_gtin() {
    let a = process(
        with(r#""object":{"product_id":"9506000134352"}"#).as_bytes(),
        NOW,
        &Limits::default(),
    )
    .expect("valid");
    assert!(String::from_utf8_lossy(&a.canonical).contains(r#""product_id":"09506000134352""#));
}
