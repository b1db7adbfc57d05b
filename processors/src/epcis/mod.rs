//! GS1 EPCIS 2.0 (JSON-LD): the events of a document and their CBV 2.0 event hash IDs.

pub mod gs1;
pub mod hash;

use serde_json::Value;

pub use hash::{HashContext, event_hash, prehash};

/// The events of an EPCIS document: `epcisBody.eventList` of an `EPCISDocument`,
/// `epcisBody.queryResults.resultsBody.eventList` of an `EPCISQueryDocument`, or the value
/// itself when it is a single event. `None` when `doc` is none of these.
pub fn document_events(doc: &Value) -> Option<&Vec<Value>> {
    let body = &doc["epcisBody"];
    body["eventList"]
        .as_array()
        .or_else(|| body["queryResults"]["resultsBody"]["eventList"].as_array())
}
