//! The CBV 2.0 event hash against the reference implementation's vectors
//! (`tests/data/epcis-hash/`, see its README): every event of every document.

use std::path::PathBuf;

use veritrace_processors::epcis::{HashContext, document_events, event_hash, prehash};

/// Pre-hash files that are stale upstream (their `.hashes` are right).
const STALE_PREHASHES: [&str; 3] = [
    "epcisDocWithAllGS1Keys",
    "epcisDocWithCustomSchemaInContext",
    "epcisDocWithDefaultSchemaInContext",
];

#[test]
fn every_vector_hashes_as_the_reference_implementation() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/epcis-hash");
    let mut docs = 0;
    let mut events = 0;
    let mut failures = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("vectors")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonld"))
        .collect();
    names.sort();
    for path in names {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_owned();
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        let ctx = HashContext::of_document(&doc);
        let list = document_events(&doc).unwrap_or_else(|| panic!("{name}: no event list"));
        let want: Vec<String> = std::fs::read_to_string(dir.join(format!("{name}.hashes")))
            .expect("hashes")
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        let pre: Vec<String> = std::fs::read_to_string(dir.join(format!("{name}.prehashes")))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(list.len(), want.len(), "{name}: events vs .hashes lines");
        docs += 1;
        for (i, ev) in list.iter().enumerate() {
            events += 1;
            let got = event_hash(ev, &ctx);
            if got != want[i] {
                let mine = prehash(ev, &ctx);
                let theirs = if STALE_PREHASHES.contains(&name.as_str()) {
                    "(stale upstream)"
                } else {
                    pre.get(i).map_or("(none)", String::as_str)
                };
                failures.push(format!(
                    "{name} event {i}:\n  ours:   {mine}\n  theirs: {theirs}"
                ));
            }
        }
    }
    assert!(
        docs >= 20 && events >= 40,
        "{docs} documents, {events} events"
    );
    assert!(
        failures.is_empty(),
        "{} of {events} events differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
