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

/// The rejection for `json`, which must be rejected.
fn rejection(json: &str) -> veritrace_processors::Rejection {
    match process(json.as_bytes(), NOW, &Limits::default()) {
        Ok(a) => panic!(
            "accepted {json}\nas {}",
            String::from_utf8_lossy(&a.canonical)
        ),
        Err(r) => r,
    }
}

const TELEMETRY: &str = r#"{"event_id":"t1","event_type":"telemetry","event_time":"2026-11-01T00:00:00Z","participant":{"id":"p","role":"manufacturer"},"device_id":"d"}"#;

/// The telemetry event above with `extra` (its readings) added.
fn telemetry_with(extra: &str) -> String {
    format!("{},{extra}}}", &TELEMETRY[..TELEMETRY.len() - 1])
}

/// Asserts `json` is rejected as `number_out_of_range` with a detail naming `path`.
fn out_of_range(json: &str, path: &str) {
    let r = rejection(json);
    assert_eq!(r.reason, Reason::NumberOutOfRange, "{json}: {r}");
    assert!(
        r.detail.contains(path),
        "{json}: detail does not name {path}: {r}"
    );
}

#[test]
fn integers_beyond_2_pow_53_were_rounded_not_rejected() {
    // A u64 literal one past 2^53 was sealed as 2^53.
    out_of_range(
        &with(r#""quantity":{"unit":"pcs","value":9007199254740993}"#),
        "quantity.value",
    );
    out_of_range(
        &with(r#""quantity":{"unit":"pcs","value":-9007199254740993}"#),
        "quantity.value",
    );
    // Beyond u64, serde_json parses integer literals as (rounded) doubles: check those too.
    out_of_range(
        &with(r#""quantity":{"unit":"pcs","value":120000000000000000000000000000}"#),
        "quantity.value",
    );
    out_of_range(
        &with(r#""quantity":{"unit":"pcs","value":1.2e29}"#),
        "quantity.value",
    );
    out_of_range(
        &telemetry_with(r#""readings":{"y":1,"x":18446744073709551616}"#),
        "readings.x",
    );
    out_of_range(&telemetry_with(r#""readings":{"x":-1e300}"#), "readings.x");
    out_of_range(
        &with(r#""location":{"lat":9007199254740993,"lon":0}"#),
        "location.lat",
    );
    out_of_range(&with(r#""location":{"lat":0,"lon":-1e20}"#), "location.lon");
    let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    for size in [
        "9007199254740993",
        "2382186501757725000",
        "18446744073709551616",
    ] {
        out_of_range(
            &with(&format!(
                r#""attachments":[{{"name":"a","sha256":"{sha}"}},{{"name":"b","sha256":"{sha}","size":{size}}}]"#
            )),
            "attachments[1].size",
        );
    }
    // Free attributes keep the JCS rule (a large integer is fine when a double holds it
    // exactly), but an integer literal beyond u64 was rounded silently.
    out_of_range(
        &with(r#""attributes":{"a":{"b":[1,100000000000000000001]}}"#),
        "attributes.a.b[1]",
    );
    out_of_range(
        &with(r#""attributes":{"n":18446744073709551617}"#),
        "attributes.n",
    );
    out_of_range(
        &with(r#""attributes":{"n":9007199254740993}"#),
        "attributes.n",
    );

    // 2^53 itself is exact and stays accepted, written either way.
    for v in ["9007199254740992", "-9007199254740992"] {
        assert_eq!(
            reason(&telemetry_with(&format!(r#""readings":{{"x":{v}}}"#))),
            None,
            "{v}"
        );
    }
    assert_eq!(
        reason(&with(
            r#""quantity":{"unit":"kg","value":4503599627370496.5}"#
        )),
        None
    );
}

#[test]
fn a_number_beyond_the_double_range_and_readings_as_an_array_were_malformed_json() {
    out_of_range(
        &with(r#""quantity":{"unit":"kg","value":1e400}"#),
        "quantity.value",
    );
    out_of_range(
        &telemetry_with(r#""readings":{"y":1e300,"x":-1e400}"#),
        "readings.x",
    );
    out_of_range(
        &with(r#""location":{"lat":1,"lon":1E+400}"#),
        "location.lon",
    );
    out_of_range(&with(r#""attributes":{"a":[1,1e400]}"#), "attributes.a[1]");
    let long = format!("1{}", "0".repeat(400));
    out_of_range(
        &with(&format!(r#""quantity":{{"unit":"kg","value":{long}}}"#)),
        "quantity.value",
    );
    // serde_json skips the attributes (kept as text) and stops at the quantity, on line 3.
    let r = rejection(&with(
        "\n\"attributes\":{\"a\":1e400},\n\"quantity\":{\"unit\":\"kg\",\"value\":1e999}\n",
    ));
    assert_eq!(
        (r.reason, r.detail.as_str()),
        (
            Reason::NumberOutOfRange,
            "quantity.value = 1e999 is outside the range of a double"
        )
    );

    for readings in [
        "[1,2]",
        "[]",
        r#"[{"x":1}]"#,
        "[1e400]",
        r#""x""#,
        "5",
        "true",
    ] {
        let r = rejection(&telemetry_with(&format!(r#""readings":{readings}"#)));
        assert_eq!(r.reason, Reason::BadFieldType, "{readings}: {r}");
        assert!(r.detail.contains("readings"), "{readings}: {r}");
    }
}

/// Asserts a detail is printable and bounded.
fn clean(json: &str) -> veritrace_processors::Rejection {
    let r = rejection(json);
    assert!(
        !r.detail.chars().any(|c| c.is_control()),
        "control characters in {:?}",
        r.detail
    );
    assert!(r.detail.len() <= 512, "{} bytes", r.detail.len());
    r
}

#[test]
fn a_rejection_detail_carried_nul_characters() {
    // Each of these echoes a piece of the input in its detail.
    let r = clean(&with(r#""attributes":{"a\u0000":1,"a\u0000":2}"#));
    assert_eq!(r.reason, Reason::MalformedJson);
    let r = clean(&with(r#""col\u0000our\u001b[31m":1"#));
    assert_eq!(r.reason, Reason::UnknownField);
    assert!(r.detail.contains(r"col\0our\u{1b}[31m"), "{}", r.detail);
    let r = clean(&telemetry_with(r#""readings":{"x\u0000\n":"1"}"#));
    assert_eq!(r.reason, Reason::BadFieldType);
    assert!(r.detail.contains(r"readings.x\0\n "), "{}", r.detail);
    let r = clean(&with(r#""attributes":{"\u0000\u202e":9007199254740993}"#));
    assert!(
        r.detail.contains(r"attributes.\0\u{202e} = "),
        "{}",
        r.detail
    );

    // And its length is bounded, whatever the input.
    let key = "\\u0000".repeat(9_000);
    clean(&with(&format!(r#""{key}":1"#)));
    clean(&telemetry_with(&format!(r#""readings":{{"{key}":true}}"#)));
    clean(&with(&format!(r#""attributes":{{"{key}":1e400}}"#)));
}

#[test]
fn a_long_non_ascii_event_type_or_field_name_panicked() {
    // Details were cut with String::truncate at a byte count, which panics inside a character.
    let event_type = format!("a{}", "é".repeat(40));
    let r = clean(&BASE.replace("production", &event_type));
    assert_eq!(r.reason, Reason::UnknownEventType);
    let r = clean(&with(&format!(r#""{}":1"#, "é".repeat(200))));
    assert_eq!(r.reason, Reason::UnknownField);
}

/// An event with every field, numbers at their edges included.
const FULL: &str = r#"{"event_id":"plant-sh-01:asm:1","event_type":"assembly","event_time":"2026-11-01T08:15:02.1+08:00",
    "trace_code":"https://id.gs1.org/01/9506000134352/21/BIKE1","inputs":["(01)09506000134352(10)L%2F1"],
    "participant":{"id":"plant-sh-01","name":"Shanghai \"1\"","role":"assembler"},
    "counterparty":{"id":"c","role":"customer"},"object":{"product_id":"9506000134352","production_date":"2026-11-01"},
    "quantity":{"unit":"pcs","value":9007199254740992},"operator":"o","site":"s","device_id":"d",
    "location":{"lat":-90,"lon":179.99999999999997},"readings":{"x":-0.0,"y":1e-7,"z":4503599627370496.5},
    "attributes":{"big":2382186501757725000,"e":1e21,"s":"\u0000é\ud83d\ude00","n":null,"a":[true,{}]},
    "attachments":[{"name":"r.pdf","sha256":"9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08","size":9007199254740992,"media_type":"application/pdf"}]}"#;

#[test]
fn a_stored_event_was_refused_as_input_for_its_version_field() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/events/inputs");
    let mut inputs = vec![FULL.as_bytes().to_vec()];
    for entry in std::fs::read_dir(dir).expect("golden inputs") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !name.starts_with("reject_") {
            inputs.push(std::fs::read(&path).expect("read"));
        }
    }
    assert!(inputs.len() > 5);
    for input in inputs {
        let first = process(&input, NOW, &Limits::default())
            .unwrap_or_else(|r| panic!("{}: {r}", String::from_utf8_lossy(&input)));
        let text = String::from_utf8_lossy(&first.canonical).into_owned();
        assert!(text.contains(r#""version":1"#), "{text}");
        // Exported, migrated, replayed or a partner's copy: the stored bytes come back in.
        let again = process(&first.canonical, NOW, &Limits::default())
            .unwrap_or_else(|r| panic!("stored event refused: {r}\n{text}"));
        assert_eq!(String::from_utf8_lossy(&again.canonical), text);
        assert_eq!(again.leaf_hash, first.leaf_hash);
    }

    // Other versions are refused as such, even when their shape differs from this one's.
    let r = rejection(&with(r#""version":2"#));
    assert_eq!(
        (r.reason, r.detail.as_str()),
        (
            Reason::BadValue,
            "unsupported event version 2; this build writes 1"
        )
    );
    let r = rejection(&with(r#""version":3,"provenance":{"x":1}"#));
    assert_eq!(
        (r.reason, r.detail.as_str()),
        (
            Reason::BadValue,
            "unsupported event version 3; this build writes 1"
        )
    );
    assert_eq!(reason(&with(r#""version":0"#)), Some(Reason::BadValue));
    assert_eq!(
        reason(&with(r#""version":"1""#)),
        Some(Reason::BadFieldType)
    );
    assert_eq!(reason(&with(r#""version":1"#)), None);
}

#[test]
fn a_nested_positional_array_was_read_as_an_object() {
    // serde reads structs from arrays; GeoJSON order [lon, lat] was stored swapped.
    for extra in [
        r#""location":[10,50]"#,
        r#""quantity":["kg",5]"#,
        r#""counterparty":["c",null,"customer"]"#,
        r#""object":["B-1"]"#,
        r#""attachments":[["r.pdf","9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]]"#,
    ] {
        let r = rejection(&with(extra));
        assert_eq!(r.reason, Reason::BadFieldType, "{extra}: {r}");
    }
    let r = rejection(&BASE.replace(
        r#"{"id":"p","role":"manufacturer"}"#,
        r#"["p",null,"manufacturer"]"#,
    ));
    assert_eq!(r.reason, Reason::BadFieldType, "{r}");
    // The objects themselves still read as before.
    assert_eq!(reason(&with(r#""location":{"lat":50,"lon":10}"#)), None);
    assert_eq!(
        reason(&with(r#""location":{"lat":50,"lon":10,"alt":3}"#)),
        Some(Reason::UnknownField)
    );
    assert_eq!(
        reason(&with(r#""quantity":{"unit":"kg"}"#)),
        Some(Reason::MissingField)
    );
    assert_eq!(
        reason(&with(r#""quantity":"5kg""#)),
        Some(Reason::BadFieldType)
    );
}

#[test]
fn a_batch_policy_without_a_record_bound_panicked_at_open() {
    // `batch_max_records = 18446744073709551615` passes the config's `>= 1` check; the
    // dedupe set was sized "sealed + max_records" and overflowed its capacity.
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = veritrace_anchor::DataDir::create(tmp.path().join("d")).expect("dir");
    let policy = veritrace_processors::BatchPolicy {
        max_records: usize::MAX,
        ..Default::default()
    };
    let mut p = veritrace_processors::PartitionProcessor::open(&dir, "s", 0, policy).expect("open");
    let out = p.push(0, None, BASE.as_bytes(), NOW).expect("push");
    assert_eq!(out, veritrace_processors::Outcome::Accepted);
    assert_eq!(p.seal(NOW).expect("seal").expect("header").size, 1);
}
