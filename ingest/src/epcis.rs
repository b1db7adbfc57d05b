//! GS1 EPCIS 2.0 documents in: each event of an `EPCISDocument` (or of an
//! `EPCISQueryDocument`'s results) becomes the records of its Veritrace events
//! ([`veritrace_processors::epcis::map_event`]). An event that cannot be mapped yet is handed
//! on as it was sent (with the document's `@context`, so it stands alone), and the
//! processors refuse it with `epcis_unsupported` and the reason, keeping it in `rejected`.
//! A file that is not an EPCIS document is handed on whole, so nothing of it is lost.

use serde_json::Value;
use veritrace_processors::epcis::{HashContext, Recorder, document_events, map_event};

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
