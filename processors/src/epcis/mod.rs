//! GS1 EPCIS 2.0 (JSON-LD): the events of a document and their CBV 2.0 event hash IDs.

pub mod export;
pub mod gs1;
pub mod hash;
pub mod map;

use serde_json::Value;

pub use hash::{HashContext, event_hash, prehash};
pub use map::{Recorder, map_event};

/// The events of an EPCIS document: `epcisBody.eventList` of an `EPCISDocument`,
/// `epcisBody.queryResults.resultsBody.eventList` of an `EPCISQueryDocument`, or the value
/// itself when it is a single event. `None` when `doc` is none of these.
pub fn document_events(doc: &Value) -> Option<&Vec<Value>> {
    let body = &doc["epcisBody"];
    body["eventList"]
        .as_array()
        .or_else(|| body["queryResults"]["resultsBody"]["eventList"].as_array())
}

/// The EPCIS 2.0 event types.
pub const EVENT_TYPES: [&str; 5] = [
    "ObjectEvent",
    "AggregationEvent",
    "TransformationEvent",
    "AssociationEvent",
    "TransactionEvent",
];

/// Why a record that is an EPCIS event (not a Veritrace event) is refused: the import
/// hands on, as they are, the events it cannot map, so they are kept in `rejected` with the
/// reason; any other EPCIS event must come in a document. `None` when `payload` is no EPCIS
/// event.
pub fn refusal(payload: &[u8]) -> Option<crate::reason::Rejection> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let ty = v["type"].as_str()?;
    if !EVENT_TYPES.contains(&ty) {
        return None;
    }
    let ctx = HashContext::of_document(&v);
    let nobody = Recorder {
        id: "-".into(),
        role: "-".into(),
    };
    let detail = match map_event(&v, &ctx, &nobody) {
        Err(why) => why,
        Ok(_) => format!(
            "an EPCIS {ty} on its own: send EPCIS events in an EPCIS document \
             (veritrace ingest file DOC.jsonld --recorder ID:ROLE), which maps them to events"
        ),
    };
    let mut r = crate::reason::Rejection::new(crate::reason::Reason::EpcisUnsupported, detail);
    r.event_id = v["eventID"].as_str().map(str::to_owned);
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// JSON values shaped like EPCIS events: EPCIS keys with any value at any depth.
    fn epcis_like() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<f64>().prop_map(|f| serde_json::json!(f)),
            "[a-z:/%.*0-9+-]{0,40}".prop_map(Value::String),
            prop::sample::select(vec![
                "urn:epc:id:sgtin:4012345.011111.9876",
                "urn:epc:idpat:itip:4012345.012345.01.02.*",
                "https://id.gs1.org/01/09780345418913/21/x",
                "2020-03-04T11:00:30.1415+01:00",
                "ADD",
                "DELETE",
                "ObjectEvent",
                "AggregationEvent",
                "inspecting",
                "1e400",
            ])
            .prop_map(|s| Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let keys = prop::sample::select(vec![
                "type",
                "action",
                "eventTime",
                "epcList",
                "childEPCs",
                "parentID",
                "quantityList",
                "epcClass",
                "bizStep",
                "disposition",
                "readPoint",
                "id",
                "sensorElementList",
                "sensorReport",
                "sensorMetadata",
                "ilmd",
                "bizTransactionList",
                "errorDeclaration",
                "ex:field",
                "@context",
                "time",
            ]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys, inner, 0..6).prop_map(|m| {
                    Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_event_shaped_json_hashes_maps_or_is_refused_without_panicking(v in epcis_like()) {
            let ctx = HashContext::of_document(&v);
            let h = event_hash(&v, &ctx);
            prop_assert!(h.starts_with("ni:///sha-256;"));
            let r = Recorder { id: "p".into(), role: "manufacturer".into() };
            let _ = map_event(&v, &ctx, &r);
            let _ = refusal(v.to_string().as_bytes());
        }

        #[test]
        fn any_string_is_an_identifier_or_not_without_panicking(
            scheme in prop::sample::select(vec![
                "urn:epc:id:sgtin:", "urn:epc:id:sscc:", "urn:epc:id:sgln:", "urn:epc:id:grai:",
                "urn:epc:id:gdti:", "urn:epc:id:itip:", "urn:epc:id:cpi:", "urn:epc:id:pgln:",
                "urn:epc:class:lgtin:", "urn:epc:idpat:grai:", "urn:epc:idpat:sgtin:",
                "https://x/01/", "https://x/253/", "https://x/8003/", "https://x/gtin/", "",
            ]),
            s in "[0-9.*%/é]{0,30}|\\PC{0,40}",
        ) {
            let _ = gs1::canonical_digital_link(&format!("{scheme}{s}"));
        }
    }
}
