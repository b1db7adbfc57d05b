//! GS1 EPCIS 2.0 documents in: each event of an `EPCISDocument` (or of an
//! `EPCISQueryDocument`'s results) becomes the records of its Veritrace events
//! ([`veritrace_processors::epcis::map_event`]). An event that cannot be mapped yet is handed
//! on as it was sent (with the document's `@context`, so it stands alone), and the
//! processors refuse it with `epcis_unsupported` and the reason, keeping it in `rejected`.
//! A file that is not an EPCIS document is handed on whole, so nothing of it is lost.
//!
//! With the operator's copy of GS1's EPCIS 2.0 JSON schema (`[epcis] schema`: GS1 publishes
//! it at <https://ref.gs1.org/standards/epcis/artefacts>; it is not ours to ship), a document
//! is checked against it first ([`Schema`]): one that fails is refused whole, with the places
//! that failed, and none of its events is taken.

use std::path::Path;

use serde_json::Value;
use veritrace_processors::epcis::{HashContext, Recorder, document_events, map_event};

/// Failures named when a document fails the schema (the first ones).
const FAILURES_NAMED: usize = 5;
/// Characters of one failure's message kept.
const FAILURE_CHARS: usize = 200;

/// A compiled EPCIS JSON schema (draft-07, formats checked).
pub struct Schema {
    validator: jsonschema::Validator,
    path: String,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").field("path", &self.path).finish()
    }
}

impl Schema {
    /// Reads and compiles the schema at `path`; a file that is missing, not JSON or not a
    /// schema is named with why.
    pub fn load(path: &Path) -> Result<Schema, String> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| format!("the EPCIS schema {name}: {e}"))?;
        let schema: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the EPCIS schema {name} is not JSON: {e}"))?;
        Self::compile(&schema, name)
    }

    /// Compiles a schema given as JSON (`name` says where it came from).
    pub fn compile(schema: &Value, name: String) -> Result<Schema, String> {
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .should_validate_formats(true)
            .build(schema)
            .map_err(|e| {
                format!("the EPCIS schema {name} is not a JSON schema this server reads: {e}")
            })?;
        Ok(Schema {
            validator,
            path: name,
        })
    }

    /// `Ok` when `doc` satisfies the schema; else the first failures, each with where in
    /// the document (a JSON pointer) and which rule of the schema.
    pub fn check(&self, doc: &Value) -> Result<(), String> {
        let mut errors = self.validator.iter_errors(doc).peekable();
        if errors.peek().is_none() {
            return Ok(());
        }
        let all: Vec<String> = errors
            .map(|e| {
                let at = e.instance_path().to_string();
                // A failed `anyOf` quotes the whole event: the place says enough.
                let mut what = e.to_string();
                if what.chars().count() > FAILURE_CHARS {
                    what = what.chars().take(FAILURE_CHARS).collect::<String>() + "...";
                }
                format!(
                    "at {} ({}): {what}",
                    if at.is_empty() { "/" } else { at.as_str() },
                    e.schema_path()
                )
            })
            .collect();
        let shown = all.len().min(FAILURES_NAMED);
        let mut msg = format!(
            "the document fails the EPCIS schema {}: {}",
            self.path,
            all[..shown].join("; ")
        );
        if all.len() > shown {
            msg.push_str(&format!("; and {} more", all.len() - shown));
        }
        Err(msg)
    }
}

/// The records of an EPCIS document, events recorded by `recorder`.
pub fn records(data: &[u8], recorder: &Recorder) -> Vec<Vec<u8>> {
    serde_json::from_slice::<Value>(data)
        .ok()
        .and_then(|doc| document_records(&doc, recorder))
        .unwrap_or_else(|| vec![data.to_vec()])
}

/// The records of a parsed EPCIS document; `None` when it is not one.
pub fn document_records(doc: &Value, recorder: &Recorder) -> Option<Vec<Vec<u8>>> {
    let events = document_events(doc)?;
    let ctx = HashContext::of_document(doc);
    let mut out = Vec::new();
    for ev in events {
        // Each event keeps the document's context, so it stands alone: in the rejected
        // table, and as the original an export writes back.
        let mut alone = ev.clone();
        if let Some(o) = alone.as_object_mut()
            && !o.contains_key("@context")
        {
            o.insert("@context".into(), doc["@context"].clone());
        }
        match map_event(&alone, &ctx.with_event(&alone), recorder) {
            Ok(mapped) => out.extend(mapped.iter().map(|e| e.to_string().into_bytes())),
            Err(_) => out.push(alone.to_string().into_bytes()),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Our own small schema of the shape (GS1's is not ours to ship): a document type,
    /// events with a type, an RFC 3339 time and an offset.
    fn shape() -> Value {
        serde_json::from_str(include_str!("../tests/data/epcis-shape.schema.json")).expect("json")
    }

    #[test]
    fn a_document_that_fails_the_schema_is_named_where() {
        let s = Schema::compile(&shape(), "shape.json".into()).expect("schema");
        let good = json!({"type": "EPCISDocument", "epcisBody": {"eventList": [
            {"type": "ObjectEvent", "eventTime": "2026-01-01T00:00:00Z", "eventTimeZoneOffset": "+01:00"}
        ]}});
        assert_eq!(s.check(&good), Ok(()));
        let mut bad = good.clone();
        bad["epcisBody"]["eventList"][0]["eventTime"] = json!("yesterday");
        bad["epcisBody"]["eventList"][0]["eventTimeZoneOffset"] = json!("CET");
        let e = s.check(&bad).expect_err("fails");
        assert!(e.contains("at /epcisBody/eventList/0/eventTime"), "{e}");
        assert!(
            e.contains("at /epcisBody/eventList/0/eventTimeZoneOffset"),
            "{e}"
        );
        assert!(e.contains("shape.json"), "{e}");
        let e = s.check(&json!({"type": "Nonsense"})).expect_err("fails");
        assert!(e.contains("epcisBody") && e.contains("at /type"), "{e}");
        // Not a schema at all.
        assert!(Schema::compile(&json!({"type": 7}), "x".into()).is_err());
    }
}
