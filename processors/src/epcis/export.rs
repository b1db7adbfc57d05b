//! Veritrace events out as EPCIS 2.0: an `EPCISQueryDocument` whose events are, for an
//! imported event, the original EPCIS event exactly as imported (so its CBV 2.0 hash ID is
//! the one computed at import: export, then import again, gives the same events), and for a
//! native event its EPCIS form (see [`from_event`]). Every event carries its proof
//! reference as the declared extension `vt:proof` (event id, batch, leaf index, leaf hash:
//! what `veritrace proof` and `GET /v1/events/{id}/proof` need), which the document lists
//! under `vt:ignoreFields`, so hashing leaves it out.

use serde_json::{Map, Value, json};

/// The namespace of Veritrace's EPCIS extensions (`vt:`).
pub const VT_NAMESPACE: &str = "https://veritrace.dev/ns/epcis/";

/// The GS1 EPCIS 2.0 JSON-LD context.
pub const EPCIS_CONTEXT: &str = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld";

/// Where an event is proven: the `vt:proof` extension.
pub fn proof_reference(event_id: &str, batch_id: &str, leaf_index: u64, leaf_hash: &str) -> Value {
    json!({
        "vt:eventId": event_id,
        "vt:batchId": batch_id,
        "vt:leafIndex": leaf_index,
        "vt:leafHash": leaf_hash,
    })
}

/// An EPCIS query document around `events` (EPCIS events, each with its `vt:proof`).
pub fn query_document(events: Vec<Value>, query_name: &str, created: &str) -> Value {
    json!({
        "@context": [EPCIS_CONTEXT, {"vt": VT_NAMESPACE}],
        "type": "EPCISQueryDocument",
        "schemaVersion": "2.0",
        "creationDate": created,
        "epcisBody": {
            "queryResults": {
                "queryName": query_name,
                "vt:ignoreFields": ["vt:proof"],
                "resultsBody": {"eventList": events},
            }
        }
    })
}

/// A trace code as a GS1 Digital Link URI, and whether it names a class (a lot).
fn digital_link(code: &str) -> Option<(String, bool)> {
    let tc = crate::tracecode::parse_trace_code(code).ok()?;
    let class = tc.lot().is_some() && tc.serial().is_none();
    Some((tc.digital_link("https://id.gs1.org"), class))
}

/// EPC lists and quantity lists of `codes`: instances by Digital Link, lots as classes.
fn lists(codes: &[&str], epc_key: &str, quantity_key: &str, e: &mut Map<String, Value>) {
    let (mut epcs, mut classes) = (Vec::new(), Vec::new());
    for c in codes {
        match digital_link(c) {
            Some((dl, true)) => classes.push(json!({"epcClass": dl})),
            Some((dl, false)) => epcs.push(json!(dl)),
            None => {}
        }
    }
    if !epcs.is_empty() {
        e.insert(epc_key.into(), Value::Array(epcs));
    }
    if !classes.is_empty() {
        e.insert(quantity_key.into(), Value::Array(classes));
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The EPCIS form of a native Veritrace event (its canonical JSON), or why it has none.
///
/// `production` -> ObjectEvent ADD `commissioning`; `quality_check` -> ObjectEvent OBSERVE
/// `inspecting` with disposition `conformant` (pass) or `non_conformant` (fail);
/// `warehouse_in` -> `receiving`; `warehouse_out` -> `shipping`; `transport` -> `departing`;
/// `retail` and `sale` -> `retail_selling`; `maintenance` -> `repairing`; `assembly` ->
/// AggregationEvent ADD `assembling` when the output is an instance (serial, SSCC), else a
/// TransformationEvent; `disassembly` -> AggregationEvent DELETE (`unpacking` of an SSCC,
/// else `disassembling`); `transformation` -> TransformationEvent. The site becomes the
/// `readPoint` when it is a URI; what EPCIS has no field for (participant, site, operator,
/// device, result, readings, attributes) goes into `vt:` extensions.
pub fn from_event(ev: &Value) -> Result<Value, String> {
    let et = ev["event_type"].as_str().unwrap_or("");
    let mut e = Map::new();
    let code = ev["trace_code"].as_str();
    let (ty, action, biz) = match et {
        "production" => ("ObjectEvent", Some("ADD"), "commissioning"),
        "quality_check" => ("ObjectEvent", Some("OBSERVE"), "inspecting"),
        "warehouse_in" => ("ObjectEvent", Some("OBSERVE"), "receiving"),
        "warehouse_out" => ("ObjectEvent", Some("OBSERVE"), "shipping"),
        "transport" => ("ObjectEvent", Some("OBSERVE"), "departing"),
        "retail" | "sale" => ("ObjectEvent", Some("OBSERVE"), "retail_selling"),
        "maintenance" => ("ObjectEvent", Some("OBSERVE"), "repairing"),
        "assembly" => match code.and_then(digital_link) {
            Some((_, false)) => ("AggregationEvent", Some("ADD"), "assembling"),
            _ => ("TransformationEvent", None, "assembling"),
        },
        "disassembly" => match code.and_then(digital_link) {
            Some((dl, false)) if dl.contains("/00/") => {
                ("AggregationEvent", Some("DELETE"), "unpacking")
            }
            Some((_, false)) => ("AggregationEvent", Some("DELETE"), "disassembling"),
            _ => {
                return Err(
                    "a disassembly of a class (a lot, a GTIN) has no EPCIS form: an AggregationEvent's parent is an instance".into(),
                );
            }
        },
        "transformation" => ("TransformationEvent", None, "transforming"),
        "telemetry" => ("ObjectEvent", Some("OBSERVE"), "sensor_reporting"),
        other => return Err(format!("a {other} event has no EPCIS form")),
    };
    e.insert("type".into(), json!(ty));
    e.insert("eventTime".into(), ev["event_time"].clone());
    e.insert("eventTimeZoneOffset".into(), json!("+00:00"));
    match (ty, et) {
        ("ObjectEvent", _) => {
            let Some(c) = code else {
                return Err(format!(
                    "a {et} event without a trace code has no EPCIS form (an ObjectEvent needs an EPC)"
                ));
            };
            lists(&[c], "epcList", "quantityList", &mut e);
        }
        ("AggregationEvent", _) => {
            if let Some((dl, _)) = code.and_then(digital_link) {
                e.insert("parentID".into(), json!(dl));
            }
            lists(
                &strs(&ev["inputs"]),
                "childEPCs",
                "childQuantityList",
                &mut e,
            );
        }
        _ => {
            let outputs: Vec<&str> = if et == "assembly" {
                code.into_iter().collect()
            } else {
                strs(&ev["outputs"])
            };
            lists(
                &strs(&ev["inputs"]),
                "inputEPCList",
                "inputQuantityList",
                &mut e,
            );
            lists(&outputs, "outputEPCList", "outputQuantityList", &mut e);
        }
    }
    if let Some(a) = action {
        e.insert("action".into(), json!(a));
    }
    e.insert("bizStep".into(), json!(biz));
    match ev["result"].as_str() {
        Some("pass") => {
            e.insert("disposition".into(), json!("conformant"));
        }
        Some("fail") => {
            e.insert("disposition".into(), json!("non_conformant"));
        }
        _ => {}
    }
    if let Some(site) = ev["site"].as_str()
        && site.contains(':')
    {
        e.insert("readPoint".into(), json!({"id": site}));
    }
    let mut vt = Map::new();
    vt.insert("vt:eventType".into(), json!(et));
    vt.insert("vt:participant".into(), ev["participant"].clone());
    for (k, name) in [
        ("counterparty", "vt:counterparty"),
        ("site", "vt:site"),
        ("operator", "vt:operator"),
        ("device_id", "vt:deviceId"),
        ("result", "vt:result"),
        ("readings", "vt:readings"),
        ("quantity", "vt:quantity"),
        ("attributes", "vt:attributes"),
    ] {
        if !ev[k].is_null() {
            vt.insert(name.into(), ev[k].clone());
        }
    }
    e.extend(vt);
    Ok(Value::Object(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_events_take_their_epcis_form() {
        let qc = json!({
            "event_id": "q1", "event_type": "quality_check", "event_time": "2026-01-01T00:00:00.000Z",
            "trace_code": "(01)09506000134352(21)A1", "result": "fail",
            "participant": {"id": "p", "role": "inspector"}, "site": "plant-1"
        });
        let e = from_event(&qc).expect("qc");
        assert_eq!(e["type"], "ObjectEvent");
        assert_eq!(
            e["epcList"][0],
            "https://id.gs1.org/01/09506000134352/21/A1"
        );
        assert_eq!(e["disposition"], "non_conformant");
        assert_eq!(e["vt:site"], "plant-1");
        assert!(e.get("readPoint").is_none(), "plant-1 is not a URI");
        let lot = json!({
            "event_id": "a1", "event_type": "assembly", "event_time": "2026-01-01T00:00:00.000Z",
            "trace_code": "(01)09506000134352(10)LOT-7", "inputs": ["(00)340123451111111111"],
            "participant": {"id": "p", "role": "assembler"}
        });
        let e = from_event(&lot).expect("assembly");
        assert_eq!(e["type"], "TransformationEvent", "a lot is not a parent");
        assert_eq!(
            e["outputQuantityList"][0]["epcClass"],
            "https://id.gs1.org/01/09506000134352/10/LOT-7"
        );
        assert_eq!(
            e["inputEPCList"][0],
            "https://id.gs1.org/00/340123451111111111"
        );
        let tele = json!({"event_id": "t", "event_type": "telemetry", "event_time": "2026-01-01T00:00:00.000Z",
                          "device_id": "d", "participant": {"id": "p", "role": "manufacturer"}});
        assert!(
            from_event(&tele)
                .expect_err("no epc")
                .contains("trace code")
        );
    }
}
