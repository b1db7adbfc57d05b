//! An EPCIS 2.0 event as Veritrace events: the projection traces and SQL use, with the
//! whole original event and its CBV 2.0 hash ID in `attributes`, so the leaf commits to
//! what was imported.
//!
//! | EPCIS | Veritrace |
//! |---|---|
//! | ObjectEvent ADD `commissioning` (and other ADD) | `production` |
//! | ObjectEvent `inspecting`, `sampling` (disposition `conformant` / `non_conformant`) | `quality_check` (`pass` / `fail`) |
//! | ObjectEvent `receiving`, `accepting`, `storing`, `stocking`, `arriving` | `warehouse_in` |
//! | ObjectEvent `picking`, `shipping`, `staging_outbound`, `loading` | `warehouse_out` |
//! | ObjectEvent `departing`, `transporting`, `unloading` | `transport` |
//! | ObjectEvent `retail_selling` | `sale` |
//! | ObjectEvent `repairing` | `maintenance` |
//! | ObjectEvent DELETE (`decommissioning`, `destroying`) | `decommissioning` |
//! | ObjectEvent with disposition `recalled` | `recall` |
//! | AggregationEvent / AssociationEvent ADD | `assembly`: `trace_code` the parent, `inputs` the children |
//! | AggregationEvent / AssociationEvent DELETE | `disassembly`: `trace_code` the parent, `inputs` the children (none listed: all of them) |
//! | AggregationEvent OBSERVE | by `bizStep`, about the parent |
//! | TransformationEvent | `transformation`: `inputs` and `outputs` |
//! | any event with `errorDeclaration` | `error_declaration` retracting what the event became |
//!
//! An ObjectEvent about several objects becomes one Veritrace event per object (ids
//! `{id}` for the first, `{id}/{n}` for the others; the first carries the original event).
//! The event id is the EPCIS `eventID` when it fits Veritrace's id alphabet, else
//! `epcis:sha-256:{hex}` from the CBV hash, so a document without event ids is deduplicated
//! by content, as the CBV intends.
//!
//! Refused, with the reason in the detail of `epcis_unsupported` (the original event is kept
//! in `rejected`): TransactionEvents,
//! AssociationEvents whose objects are not trace codes, business steps without a Veritrace
//! event type, inspections without a conformant / non_conformant disposition, and events
//! about no object Veritrace can trace (trace codes are SGTIN, SSCC and LGTIN).

use serde_json::{Map, Value, json};

use super::gs1::canonical_digital_link;
use super::hash::{HashContext, event_hash};

/// Who records imported events (EPCIS events do not name the recording party).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorder {
    /// Participant id.
    pub id: String,
    /// Participant role (`manufacturer`, `warehouse`, ...).
    pub role: String,
}

impl std::str::FromStr for Recorder {
    type Err = String;
    /// `ID:ROLE`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.rsplit_once(':') {
            Some((id, role)) if !id.is_empty() && !role.is_empty() => Ok(Recorder {
                id: id.to_owned(),
                role: role.to_owned(),
            }),
            _ => Err(format!(
                "{s:?}: expected ID:ROLE, e.g. plant-sh-01:manufacturer"
            )),
        }
    }
}

/// The short CBV term of a vocabulary value in any of its spellings
/// (`shipping`, `urn:epcglobal:cbv:bizstep:shipping`, `https://ref.gs1.org/cbv/BizStep-shipping`,
/// `cbv:BizStep-shipping`).
fn term(v: &Value, web: &str, urn: &str) -> Option<String> {
    let s = v.as_str()?.trim();
    let s = s
        .strip_prefix(&format!("https://ref.gs1.org/cbv/{web}"))
        .or_else(|| s.strip_prefix(&format!("cbv:{web}")))
        .or_else(|| s.strip_prefix(&format!("urn:epcglobal:cbv:{urn}:")))
        .unwrap_or(s);
    (!s.is_empty()).then(|| s.to_owned())
}

fn event_type_of(biz_step: &str, action: &str) -> Option<&'static str> {
    Some(match biz_step {
        "commissioning" | "creating_class_instance" | "encoding" => "production",
        "inspecting" | "sampling" => "quality_check",
        "receiving" | "accepting" | "storing" | "stocking" | "arriving" => "warehouse_in",
        "picking" | "shipping" | "staging_outbound" | "loading" => "warehouse_out",
        "departing" | "transporting" | "unloading" => "transport",
        "retail_selling" => "sale",
        "repairing" => "maintenance",
        _ if action == "ADD" => "production",
        _ => return None,
    })
}

/// A trace code Veritrace accepts (its element string), from an EPC URN or Digital Link.
fn trace_code(s: &str) -> Option<String> {
    let dl = canonical_digital_link(s.trim())?;
    crate::tracecode::parse_trace_code(&dl)
        .ok()
        .map(crate::tracecode::TraceCode::into_canonical)
}

/// The trace codes of EPC lists and quantity lists, and the identifiers that are not trace
/// codes.
fn objects(event: &Value, epc_keys: &[&str], quantity_keys: &[&str]) -> (Vec<String>, Vec<String>) {
    let (mut codes, mut other) = (Vec::new(), Vec::new());
    let mut take = |s: &str| match trace_code(s) {
        Some(c) if !codes.contains(&c) => codes.push(c),
        Some(_) => {}
        None => other.push(s.to_owned()),
    };
    for k in epc_keys {
        for e in event[*k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            take(e);
        }
    }
    for k in quantity_keys {
        for q in event[*k].as_array().into_iter().flatten() {
            if let Some(c) = q["epcClass"].as_str() {
                take(c);
            }
        }
    }
    (codes, other)
}

fn not_traceable(what: &str, other: &[String]) -> String {
    let shown: Vec<&str> = other.iter().take(3).map(String::as_str).collect();
    format!(
        "{what} names no object Veritrace can trace ({}): trace codes are SGTIN, SSCC and LGTIN",
        if shown.is_empty() {
            "no identifiers".to_owned()
        } else {
            shown.join(", ")
        }
    )
}

/// The event id: the EPCIS `eventID` if it fits Veritrace's alphabet, else from the hash.
fn base_id(event: &Value, hash: &str) -> String {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 120
            && !s.starts_with("ni:")
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:~/-".contains(&b))
    };
    match event["eventID"].as_str() {
        Some(id) if ok(id) => id.to_owned(),
        _ => {
            let hex = hash
                .split_once(';')
                .and_then(|(_, r)| r.split_once('?'))
                .map_or(hash, |(h, _)| h);
            format!("epcis:sha-256:{hex}")
        }
    }
}

/// An error declaration: the erroneous event re-sent with `errorDeclaration`. It becomes one
/// `error_declaration` event (id `{id}/err`, at the declaration time, about the first object
/// of the event it corrects) that retracts every Veritrace event the erroneous event became,
/// with the declaration as sent in `attributes.epcis`. The erroneous event stays in the log.
fn declaration(
    event: &Value,
    ctx: &HashContext,
    recorder: &Recorder,
) -> Result<Vec<Value>, String> {
    let decl = &event["errorDeclaration"];
    let Some(when) = decl["declarationTime"].as_str() else {
        return Err("an error declaration needs its declarationTime".into());
    };
    let mut original = event.clone();
    if let Some(o) = original.as_object_mut() {
        o.remove("errorDeclaration");
    }
    let corrected = map_event(&original, ctx, recorder).map_err(|why| {
        format!("the event this error declaration corrects was not imported: {why}")
    })?;
    let retracts: Vec<&Value> = corrected.iter().map(|e| &e["event_id"]).collect();
    let Some(first) = retracts.first().and_then(|v| v.as_str()) else {
        return Err("the event this error declaration corrects names no object".into());
    };
    let mut attrs = Map::new();
    attrs.insert("epcis_type".into(), event["type"].clone());
    attrs.insert("epcis_event_hash".into(), json!(event_hash(event, ctx)));
    if let Some(r) = term(&decl["reason"], "ER-", "er") {
        attrs.insert("epcis_error_reason".into(), json!(r));
    }
    if let Some(c) = decl["correctiveEventIDs"].as_array() {
        attrs.insert("epcis_corrective_event_ids".into(), json!(c));
    }
    attrs.insert("epcis".into(), event.clone());
    let mut e = json!({
        "event_id": format!("{first}/err"),
        "event_type": "error_declaration",
        "event_time": when,
        "participant": {"id": recorder.id, "role": recorder.role},
        "retracts": retracts,
        "attributes": Value::Object(attrs),
    });
    if let Some(code) = corrected.iter().find_map(|c| c["trace_code"].as_str()) {
        e["trace_code"] = json!(code);
    }
    Ok(vec![e])
}

/// The Veritrace events of one EPCIS event, or why it cannot be imported yet.
pub fn map_event(
    event: &Value,
    ctx: &HashContext,
    recorder: &Recorder,
) -> Result<Vec<Value>, String> {
    let ty = event["type"].as_str().unwrap_or("");
    let action = event["action"].as_str().unwrap_or("");
    if !event["errorDeclaration"].is_null() {
        return declaration(event, ctx, recorder);
    }
    if action == "DELETE" && !matches!(ty, "AggregationEvent" | "AssociationEvent" | "ObjectEvent")
    {
        return Err(format!("a {ty} DELETE has no Veritrace event type yet"));
    }
    let biz = term(&event["bizStep"], "BizStep-", "bizstep").unwrap_or_default();
    let hash = event_hash(event, ctx);
    let id = base_id(event, &hash);
    let site = ["readPoint", "bizLocation"]
        .iter()
        .find_map(|k| event[*k]["id"].as_str())
        .map(|s| canonical_digital_link(s).unwrap_or_else(|| s.to_owned()));
    let mut attrs = Map::new();
    attrs.insert("epcis_type".into(), json!(ty));
    attrs.insert("epcis_event_hash".into(), json!(hash));
    if let Some(a) = event["action"].as_str() {
        attrs.insert("epcis_action".into(), json!(a));
    }
    if !biz.is_empty() {
        attrs.insert("epcis_biz_step".into(), json!(biz));
    }
    if let Some(d) = term(&event["disposition"], "Disp-", "disp") {
        attrs.insert("epcis_disposition".into(), json!(d));
    }
    if let Some(offset) = event["eventTimeZoneOffset"].as_str() {
        attrs.insert("epcis_time_zone_offset".into(), json!(offset));
    }
    let base = |event_type: &str| {
        let mut e = json!({
            "event_id": id,
            "event_type": event_type,
            "event_time": event["eventTime"],
            "participant": {"id": recorder.id, "role": recorder.role},
        });
        if let Some(s) = &site {
            e["site"] = json!(s);
        }
        e
    };
    let with_original = |mut e: Value| {
        let mut a = attrs.clone();
        a.insert("epcis".into(), event.clone());
        e["attributes"] = Value::Object(a);
        e
    };
    match ty {
        "ObjectEvent" => {
            let recalled =
                attrs.get("epcis_disposition").and_then(Value::as_str) == Some("recalled");
            let et = if action == "DELETE" {
                // Decommissioning, destroying: the objects end.
                "decommissioning"
            } else if recalled {
                "recall"
            } else {
                event_type_of(&biz, action).ok_or_else(|| {
                    format!("ObjectEvent with bizStep {biz:?}: no Veritrace event type for it yet")
                })?
            };
            let (codes, other) = objects(event, &["epcList"], &["quantityList"]);
            if codes.is_empty() {
                return Err(not_traceable("the ObjectEvent", &other));
            }
            let result = if et == "quality_check" {
                match attrs.get("epcis_disposition").and_then(Value::as_str) {
                    Some("conformant") => Some("pass"),
                    Some("non_conformant") => Some("fail"),
                    d => {
                        return Err(format!(
                            "an inspection needs disposition conformant or non_conformant for its result, not {d:?}"
                        ));
                    }
                }
            } else {
                None
            };
            Ok(codes
                .iter()
                .enumerate()
                .map(|(i, code)| {
                    let mut e = base(et);
                    e["trace_code"] = json!(code);
                    if let Some(r) = result {
                        e["result"] = json!(r);
                    }
                    if i == 0 {
                        with_original(e)
                    } else {
                        e["event_id"] = json!(format!("{id}/{i}"));
                        let mut a = attrs.clone();
                        a.insert("epcis_part_of".into(), json!(id));
                        e["attributes"] = Value::Object(a);
                        e
                    }
                })
                .collect())
        }
        "AggregationEvent" | "AssociationEvent" => {
            let parent = event["parentID"].as_str().unwrap_or("");
            let parent_code = trace_code(parent).ok_or_else(|| {
                not_traceable(&format!("the {ty}'s parent"), &[parent.to_owned()])
            })?;
            let (children, other) = objects(event, &["childEPCs"], &["childQuantityList"]);
            let mut e = if action == "ADD" {
                if children.is_empty() {
                    return Err(not_traceable(&format!("the {ty}'s children"), &other));
                }
                let mut e = base("assembly");
                e["inputs"] = json!(children);
                e
            } else if action == "DELETE" {
                // No children listed: all of them come out (EPCIS: the parent is emptied).
                // Children listed that are not trace codes were never linked: nothing ends.
                if children.is_empty() && !other.is_empty() {
                    return Err(not_traceable(&format!("the {ty}'s children"), &other));
                }
                let mut e = base("disassembly");
                if !children.is_empty() {
                    e["inputs"] = json!(children);
                }
                e
            } else {
                let et = event_type_of(&biz, action).ok_or_else(|| {
                    format!(
                        "{ty} {action} with bizStep {biz:?}: no Veritrace event type for it yet"
                    )
                })?;
                base(et)
            };
            e["trace_code"] = json!(parent_code);
            Ok(vec![with_original(e)])
        }
        "TransformationEvent" => {
            let (inputs, other_in) = objects(event, &["inputEPCList"], &["inputQuantityList"]);
            let (outputs, other_out) = objects(event, &["outputEPCList"], &["outputQuantityList"]);
            if inputs.is_empty() || outputs.is_empty() {
                let other: Vec<String> = other_in.into_iter().chain(other_out).collect();
                return Err(not_traceable(
                    "the TransformationEvent's inputs or outputs",
                    &other,
                ));
            }
            let mut e = base("transformation");
            e["inputs"] = json!(inputs);
            e["outputs"] = json!(outputs);
            let mut e = with_original(e);
            if let Some(t) = event["transformationID"].as_str() {
                e["attributes"]["epcis_transformation_id"] = json!(t);
            }
            Ok(vec![e])
        }
        "TransactionEvent" => Err("a TransactionEvent has no Veritrace event type yet".into()),
        other => Err(format!("{other:?} is not an EPCIS 2.0 event type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Recorder {
        "plant-1:manufacturer".parse().expect("recorder")
    }

    #[test]
    fn object_events_become_one_event_per_object_with_the_original_on_the_first() {
        let doc =
            json!({"@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"]});
        let ctx = HashContext::of_document(&doc);
        let ev = json!({
            "type": "ObjectEvent", "eventTime": "2020-03-04T11:00:30+01:00",
            "eventTimeZoneOffset": "+01:00", "action": "OBSERVE", "bizStep": "shipping",
            "epcList": ["urn:epc:id:sgtin:0614141.011111.987", "urn:epc:id:sscc:4012345.3111111111",
                        "urn:epc:id:grai:4012345.00022.334455"],
            "readPoint": {"id": "urn:epc:id:sgln:4012345.00011.0"}
        });
        let out = map_event(&ev, &ctx, &rec()).expect("mapped");
        assert_eq!(out.len(), 2, "the GRAI is not a trace code");
        assert_eq!(out[0]["event_type"], "warehouse_out");
        assert_eq!(out[0]["trace_code"], "(01)00614141111114(21)987");
        assert!(
            out[0]["event_id"]
                .as_str()
                .expect("id")
                .starts_with("epcis:sha-256:")
        );
        assert_eq!(out[0]["attributes"]["epcis"], ev);
        assert_eq!(
            out[1]["event_id"],
            format!("{}/1", out[0]["event_id"].as_str().expect("id"))
        );
        assert!(out[1]["attributes"]["epcis"].is_null());
        assert_eq!(out[0]["site"], "https://id.gs1.org/414/4012345000115");

        let mut del = ev.clone();
        del["action"] = json!("DELETE");
        del["bizStep"] = json!("destroying");
        assert_eq!(
            map_event(&del, &ctx, &rec()).expect("delete")[0]["event_type"],
            "decommissioning"
        );
        let mut recalled = ev.clone();
        recalled["disposition"] = json!("urn:epcglobal:cbv:disp:recalled");
        assert_eq!(
            map_event(&recalled, &ctx, &rec()).expect("recall")[0]["event_type"],
            "recall"
        );
        // Unpacking: the children come out of the parent; none listed is all of them.
        let unpack = json!({
            "type": "AggregationEvent", "eventTime": "2020-03-05T11:00:30+01:00",
            "eventTimeZoneOffset": "+01:00", "action": "DELETE", "bizStep": "unpacking",
            "parentID": "urn:epc:id:sscc:4012345.3111111111",
            "childEPCs": ["urn:epc:id:sgtin:0614141.011111.987"]
        });
        let out = map_event(&unpack, &ctx, &rec()).expect("unpacking");
        assert_eq!(out[0]["event_type"], "disassembly");
        assert_eq!(out[0]["trace_code"], "(00)340123451111111111");
        assert_eq!(out[0]["inputs"], json!(["(01)00614141111114(21)987"]));
        let mut all = unpack.clone();
        all.as_object_mut().expect("object").remove("childEPCs");
        let out = map_event(&all, &ctx, &rec()).expect("emptying");
        assert!(out[0]["inputs"].is_null(), "{}", out[0]);
        let mut qc = ev.clone();
        qc["bizStep"] = json!("urn:epcglobal:cbv:bizstep:inspecting");
        assert!(
            map_event(&qc, &ctx, &rec())
                .expect_err("no result")
                .contains("conformant")
        );
        qc["disposition"] = json!("https://ref.gs1.org/cbv/Disp-non_conformant");
        assert_eq!(
            map_event(&qc, &ctx, &rec()).expect("qc")[0]["result"],
            "fail"
        );
    }
}
