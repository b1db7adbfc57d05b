//! EPCIS 2.0 out of the `events` table: the EPCIS form of event rows (shared by
//! `veritrace trace --format epcis`, `veritrace recall --format epcis` and the query
//! binding) and the EPCIS 2.0 REST query binding's common queries (`GET /epcis/events`).
//!
//! An imported event is answered as it was imported (its original EPCIS event, so its CBV
//! 2.0 hash ID is unchanged); a native event in its EPCIS form
//! ([`veritrace_processors::epcis::export::from_event`]). Each carries its proof reference
//! (`vt:proof`).
//!
//! The query parameters are matched on the EPCIS form, as the standard defines them:
//! `EQ_bizStep`, `EQ_disposition` (bare CBV words, `urn:epcglobal:cbv:...` URNs and
//! `https://ref.gs1.org/cbv/...` URIs are the same value), `MATCH_epc` (epcList,
//! childEPCs), `MATCH_anyEPC` (those, parentID, inputEPCList, outputEPCList),
//! `MATCH_parentID`, `MATCH_inputEPC`, `MATCH_outputEPC` (EPC URNs, `idpat` patterns or
//! Digital Link URIs; a pattern or a class matches the instances under it), `GE_eventTime`,
//! `LT_eventTime` (RFC 3339), `EQ_readPoint`, `EQ_bizLocation`. A parameter takes several
//! values separated by `|` (or repeated); an event matches a parameter when it matches any
//! of its values, and the query when it matches every parameter. Events come in
//! `(eventTime, id)` order, `perPage` at a time (default 100, at most 1,000), with a
//! `nextPageToken` while more may follow. One page reads at most [`MAX_SCANNED`] rows, so a
//! query that matches few of many events answers a short (even empty) page with a token
//! rather than scanning everything in one request.

use std::collections::BTreeSet;

use arrow::record_batch::RecordBatch;
use base64::Engine as _;
use serde_json::{Value, json};
use veritrace_processors::epcis::export;
use veritrace_processors::epcis::gs1::canonical_digital_link;

use crate::{Error, Format, QueryEngine, Result, output};

/// Rows one page of the query binding reads at most.
pub const MAX_SCANNED: usize = 20_000;
/// Events per page unless `perPage` says otherwise.
pub const DEFAULT_PER_PAGE: usize = 100;
/// Largest `perPage`.
pub const MAX_PER_PAGE: usize = 1_000;
/// Rows read per round of a page.
const CHUNK: usize = 2_000;

/// The columns [`epcis_events`] needs.
pub const COLUMNS: &str = "canonical, batch_id, leaf_index, leaf_hash, event_time, event_id";

/// The EPCIS events of event rows (with at least [`COLUMNS`]), in row order, and the rows
/// that have no EPCIS form, each with why. A part of a split EPCIS event stands for the
/// whole event, proven by its first part; each EPCIS event comes once.
pub async fn epcis_events(
    engine: &QueryEngine,
    batches: &[RecordBatch],
) -> Result<(Vec<Value>, Vec<String>)> {
    let mut seen = BTreeSet::new();
    let (mut events, mut left_out) = (Vec::new(), Vec::new());
    for row in rows(batches)? {
        if let Some(ev) = epcis_event(engine, &row, true, &mut seen, &mut left_out).await? {
            events.push(ev);
        }
    }
    Ok((events, left_out))
}

/// The events of `batches` as JSON rows.
fn rows(batches: &[RecordBatch]) -> Result<Vec<Value>> {
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&output::encode(batches, Format::Json)?)
        .map_err(|e| Error::Output(e.to_string()))
}

/// One row's EPCIS event; `None` when the row is a later part of an event already given
/// (ids in `seen`), a later part at all unless `parts` (its first part, a row of its own,
/// stands for it), or has no EPCIS form (named in `left_out`).
async fn epcis_event(
    engine: &QueryEngine,
    row: &Value,
    parts: bool,
    seen: &mut BTreeSet<String>,
    left_out: &mut Vec<String>,
) -> Result<Option<Value>> {
    let canonical: Value = serde_json::from_str(row["canonical"].as_str().unwrap_or("{}"))
        .map_err(|e| Error::Output(format!("a stored canonical event is not JSON: {e}")))?;
    let id = canonical["event_id"].as_str().unwrap_or("").to_owned();
    let attrs = &canonical["attributes"];
    let part_of = attrs["epcis_part_of"].as_str();
    if part_of.is_some() && !parts {
        return Ok(None);
    }
    if !seen.insert(part_of.unwrap_or(&id).to_owned()) {
        return Ok(None);
    }
    let (original, proof) = match part_of {
        Some(base) => {
            let loc = engine.event(base).await?;
            let proof = export::proof_reference(
                base,
                &loc.batch_id,
                loc.leaf_index,
                &hex::encode(loc.leaf_hash.0),
            );
            (loc.event["attributes"]["epcis"].clone(), proof)
        }
        None => (
            attrs["epcis"].clone(),
            export::proof_reference(
                &id,
                row["batch_id"].as_str().unwrap_or(""),
                row["leaf_index"].as_u64().unwrap_or(0),
                row["leaf_hash"].as_str().unwrap_or(""),
            ),
        ),
    };
    let mut ev = if original.is_object() {
        original
    } else {
        match export::from_event(&canonical) {
            Ok(e) => e,
            Err(why) => {
                left_out.push(format!("{id}: {why}"));
                return Ok(None);
            }
        }
    };
    if let Some(o) = ev.as_object_mut() {
        // An imported event keeps its own `@context` (the prefixes of its extensions).
        o.insert("vt:proof".into(), proof);
    }
    Ok(Some(ev))
}

/// A CBV value (business step, disposition) as its bare word: `shipping` for
/// `urn:epcglobal:cbv:bizstep:shipping` and `https://ref.gs1.org/cbv/BizStep-shipping`;
/// any other value as it is.
fn cbv_word(v: &str) -> &str {
    for prefix in ["urn:epcglobal:cbv:bizstep:", "urn:epcglobal:cbv:disp:"] {
        if let Some(w) = v.strip_prefix(prefix) {
            return w;
        }
    }
    for prefix in [
        "https://ref.gs1.org/cbv/BizStep-",
        "https://ref.gs1.org/cbv/Disp-",
    ] {
        if let Some(w) = v.strip_prefix(prefix) {
            return w;
        }
    }
    v
}

/// An identifier (EPC, location) in one comparable form: its canonical Digital Link when it
/// is a GS1 key, else as it is.
fn ident(v: &str) -> String {
    canonical_digital_link(v).unwrap_or_else(|| v.to_owned())
}

/// What one `GET /epcis/events` asks.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EventsQuery {
    biz_steps: Vec<String>,
    dispositions: Vec<String>,
    epcs: Vec<String>,
    any_epcs: Vec<String>,
    parent_ids: Vec<String>,
    input_epcs: Vec<String>,
    output_epcs: Vec<String>,
    read_points: Vec<String>,
    biz_locations: Vec<String>,
    from: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// Events per page.
    pub per_page: usize,
    after: Option<(String, String)>,
}

impl EventsQuery {
    /// Reads the query string's pairs; an unknown parameter, a bad time, a value that is
    /// no EPC or pattern, or a page token of another query is a clear error.
    pub fn parse(pairs: &[(String, String)]) -> Result<EventsQuery> {
        let mut q = EventsQuery {
            per_page: DEFAULT_PER_PAGE,
            ..EventsQuery::default()
        };
        let mut token = None;
        let values = |v: &str| -> Vec<String> {
            v.split('|')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let epcs = |name: &str, v: &str| -> Result<Vec<String>> {
            values(v)
                .into_iter()
                .map(|e| {
                    canonical_digital_link(&e).ok_or_else(|| {
                        Error::BadRequest(format!(
                            "{name}: {e:?} is no EPC URN, EPC pattern (urn:epc:idpat:...) or GS1 Digital Link URI this server reads"
                        ))
                    })
                })
                .collect()
        };
        let time = |name: &str, v: &str| -> Result<chrono::DateTime<chrono::Utc>> {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| Error::BadRequest(format!("{name}: {v:?} is no RFC 3339 time: {e}")))
        };
        for (k, v) in pairs {
            match k.as_str() {
                "EQ_bizStep" => q
                    .biz_steps
                    .extend(values(v).iter().map(|s| cbv_word(s).to_owned())),
                "EQ_disposition" => q
                    .dispositions
                    .extend(values(v).iter().map(|s| cbv_word(s).to_owned())),
                "MATCH_epc" => q.epcs.extend(epcs(k, v)?),
                "MATCH_anyEPC" => q.any_epcs.extend(epcs(k, v)?),
                "MATCH_parentID" => q.parent_ids.extend(epcs(k, v)?),
                "MATCH_inputEPC" => q.input_epcs.extend(epcs(k, v)?),
                "MATCH_outputEPC" => q.output_epcs.extend(epcs(k, v)?),
                "EQ_readPoint" => q.read_points.extend(values(v).iter().map(|s| ident(s))),
                "EQ_bizLocation" => q.biz_locations.extend(values(v).iter().map(|s| ident(s))),
                "GE_eventTime" => q.from = Some(time(k, v)?),
                "LT_eventTime" => q.until = Some(time(k, v)?),
                "perPage" => {
                    q.per_page = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PER_PAGE).contains(n))
                        .ok_or_else(|| {
                            Error::BadRequest(format!(
                                "perPage: {v:?} is not a number from 1 to {MAX_PER_PAGE}"
                            ))
                        })?
                }
                "nextPageToken" => token = Some(v.clone()),
                other => {
                    return Err(Error::BadRequest(format!(
                        "{other:?} is not a query parameter this server answers (it answers EQ_bizStep, \
                         EQ_disposition, MATCH_epc, MATCH_anyEPC, MATCH_parentID, MATCH_inputEPC, \
                         MATCH_outputEPC, GE_eventTime, LT_eventTime, EQ_readPoint, EQ_bizLocation, \
                         perPage, nextPageToken)"
                    )));
                }
            }
        }
        if let Some(t) = token {
            q.after = Some(q.read_token(&t)?);
        }
        Ok(q)
    }

    /// What the filters are, for tying a page token to its query.
    fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        let mut unpaged = self.clone();
        unpaged.after = None;
        let d = sha2::Sha256::digest(format!("{unpaged:?}").as_bytes());
        hex::encode(&d[..8])
    }

    fn token(&self, event_time: &str, event_id: &str) -> String {
        let t = json!([self.fingerprint(), event_time, event_id]).to_string();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t)
    }

    fn read_token(&self, t: &str) -> Result<(String, String)> {
        let bad = |why: &str| Error::BadRequest(format!("nextPageToken: {why}"));
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t)
            .map_err(|_| bad("not a token this server gave"))?;
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|_| bad("not a token this server gave"))?;
        let (Some(fp), Some(time), Some(id)) = (v[0].as_str(), v[1].as_str(), v[2].as_str()) else {
            return Err(bad("not a token this server gave"));
        };
        if fp != self.fingerprint() {
            return Err(bad(
                "it belongs to a query with other parameters; ask again with the same ones",
            ));
        }
        chrono::DateTime::parse_from_rfc3339(time)
            .map_err(|_| bad("not a token this server gave"))?;
        Ok((time.to_owned(), id.to_owned()))
    }

    /// The SQL that reads the next rows in order: the time range and the page position
    /// (the other parameters are matched on the EPCIS form).
    fn sql(&self, after: Option<&(String, String)>, limit: usize) -> String {
        let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let at = |t: &chrono::DateTime<chrono::Utc>| {
            lit(&t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        };
        let mut conds: Vec<String> = Vec::new();
        if let Some(t) = &self.from {
            conds.push(format!("event_time >= CAST({} AS TIMESTAMP)", at(t)));
        }
        if let Some(t) = &self.until {
            conds.push(format!("event_time < CAST({} AS TIMESTAMP)", at(t)));
        }
        if let Some((time, id)) = after {
            conds.push(format!(
                "(event_time > CAST({t} AS TIMESTAMP) OR (event_time = CAST({t} AS TIMESTAMP) AND event_id > {id}))",
                t = lit(time),
                id = lit(id)
            ));
        }
        let filter = if conds.is_empty() {
            String::new()
        } else {
            let conds: Vec<String> = conds.into_iter().map(|c| format!("({c})")).collect();
            format!(" WHERE {}", conds.join(" AND "))
        };
        format!("SELECT {COLUMNS} FROM events{filter} ORDER BY event_time, event_id LIMIT {limit}")
    }

    /// Whether an EPCIS event matches every parameter but the time range (in the SQL).
    pub fn matches(&self, ev: &Value) -> bool {
        let word = |k: &str| ev[k].as_str().map(cbv_word);
        let one_of = |want: &[String], got: Option<&str>| {
            want.is_empty() || got.is_some_and(|g| want.iter().any(|w| w == g))
        };
        let list = |k: &str| -> Vec<String> {
            match &ev[k] {
                Value::Array(a) => a.iter().filter_map(Value::as_str).map(ident).collect(),
                Value::String(s) => vec![ident(s)],
                _ => Vec::new(),
            }
        };
        // Classes in quantity lists match the same patterns as instances.
        let classes = |k: &str| -> Vec<String> {
            ev[k]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|q| q["epcClass"].as_str())
                        .map(ident)
                        .collect()
                })
                .unwrap_or_default()
        };
        let hits = |want: &[String], got: &[String]| {
            want.is_empty()
                || got.iter().any(|g| {
                    want.iter().any(|w| {
                        g == w
                            || g.strip_prefix(w.as_str())
                                .is_some_and(|r| r.starts_with('/'))
                    })
                })
        };
        let epc = [
            list("epcList"),
            list("childEPCs"),
            classes("quantityList"),
            classes("childQuantityList"),
        ]
        .concat();
        let inputs = [list("inputEPCList"), classes("inputQuantityList")].concat();
        let outputs = [list("outputEPCList"), classes("outputQuantityList")].concat();
        let parent = list("parentID");
        let any = [epc.clone(), inputs.clone(), outputs.clone(), parent.clone()].concat();
        let place = |k: &str| ev[k]["id"].as_str().map(ident);
        one_of(&self.biz_steps, word("bizStep"))
            && one_of(&self.dispositions, word("disposition"))
            && hits(&self.epcs, &epc)
            && hits(&self.any_epcs, &any)
            && hits(&self.parent_ids, &parent)
            && hits(&self.input_epcs, &inputs)
            && hits(&self.output_epcs, &outputs)
            && one_of(&self.read_points, place("readPoint").as_deref())
            && one_of(&self.biz_locations, place("bizLocation").as_deref())
    }
}

/// One page of the query binding's answer.
#[derive(Debug)]
pub struct EventsPage {
    /// The matching EPCIS events, each with `vt:proof`.
    pub events: Vec<Value>,
    /// Where the next page starts, when more events may follow.
    pub next_page_token: Option<String>,
    /// Rows read for this page.
    pub scanned: usize,
}

/// Answers one page of `q` from `engine` (a scoped engine shows its identity's rows only).
pub async fn query_events(engine: &QueryEngine, q: &EventsQuery) -> Result<EventsPage> {
    let mut after = q.after.clone();
    let mut seen = BTreeSet::new();
    // Rows with no EPCIS form are not EPCIS events: a query does not match them.
    let (mut events, mut left_out) = (Vec::new(), Vec::new());
    let mut scanned = 0;
    loop {
        let want = CHUNK.min(MAX_SCANNED - scanned);
        let rows = rows(&engine.sql(&q.sql(after.as_ref(), want)).await?)?;
        let n = rows.len();
        let mut used = 0;
        for row in rows {
            used += 1;
            scanned += 1;
            let position = (
                to_rfc3339(row["event_time"].as_str().unwrap_or("")),
                row["event_id"].as_str().unwrap_or("").to_owned(),
            );
            // Later parts of a split EPCIS event are skipped: the first part, a row of its
            // own at the same time, stands for the whole event.
            if let Some(ev) = epcis_event(engine, &row, false, &mut seen, &mut left_out).await?
                && q.matches(&ev)
            {
                events.push(ev);
            }
            after = Some(position);
            if events.len() == q.per_page {
                break;
            }
        }
        // Rows may follow the last one read: this chunk was cut short, or was full.
        let rest = used < n || n == want;
        if events.len() == q.per_page || scanned >= MAX_SCANNED || !rest {
            let next_page_token = match &after {
                Some((t, id)) if rest => Some(q.token(t, id)),
                _ => None,
            };
            return Ok(EventsPage {
                events,
                next_page_token,
                scanned,
            });
        }
    }
}

/// A timestamp as the JSON output writes it, as RFC 3339 (for the token).
fn to_rfc3339(t: &str) -> String {
    if chrono::DateTime::parse_from_rfc3339(t).is_ok() {
        return t.to_owned();
    }
    // `2026-01-01T00:00:00.000000` (no zone: the column is UTC).
    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|n| {
            n.and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        })
        .unwrap_or_else(|_| t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<EventsQuery> {
        EventsQuery::parse(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn parameters_match_the_epcis_form() {
        let ev = json!({
            "type": "ObjectEvent", "action": "OBSERVE",
            "bizStep": "urn:epcglobal:cbv:bizstep:shipping",
            "disposition": "https://ref.gs1.org/cbv/Disp-in_transit",
            "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"],
            "readPoint": {"id": "urn:epc:id:sgln:0614141.07346.1234"},
        });
        let yes = |p: &[(&str, &str)]| assert!(q(p).expect("query").matches(&ev), "{p:?}");
        let no = |p: &[(&str, &str)]| assert!(!q(p).expect("query").matches(&ev), "{p:?}");
        yes(&[]);
        yes(&[("EQ_bizStep", "shipping")]);
        yes(&[(
            "EQ_bizStep",
            "receiving|https://ref.gs1.org/cbv/BizStep-shipping",
        )]);
        no(&[("EQ_bizStep", "receiving")]);
        yes(&[("EQ_disposition", "in_transit")]);
        // The same SGTIN as a URN, as a Digital Link, and under its GTIN pattern.
        yes(&[("MATCH_epc", "urn:epc:id:sgtin:0614141.107346.2017")]);
        yes(&[("MATCH_epc", "https://id.gs1.org/01/10614141073464/21/2017")]);
        yes(&[("MATCH_anyEPC", "urn:epc:idpat:sgtin:0614141.107346.*")]);
        no(&[("MATCH_epc", "urn:epc:id:sgtin:0614141.107346.2018")]);
        no(&[("MATCH_parentID", "urn:epc:id:sgtin:0614141.107346.2017")]);
        no(&[("MATCH_inputEPC", "urn:epc:id:sgtin:0614141.107346.2017")]);
        yes(&[("EQ_readPoint", "urn:epc:id:sgln:0614141.07346.1234")]);
        no(&[("EQ_bizLocation", "urn:epc:id:sgln:0614141.07346.1234")]);
        // Every parameter must hold.
        no(&[("EQ_bizStep", "shipping"), ("EQ_disposition", "sold")]);
    }

    #[test]
    fn bad_parameters_and_foreign_tokens_are_named() {
        for (p, why) in [
            (("EQ_color", "red"), "not a query parameter"),
            (("MATCH_epc", "not-an-epc"), "no EPC URN"),
            (("GE_eventTime", "yesterday"), "RFC 3339"),
            (("perPage", "0"), "perPage"),
            (("perPage", "100000"), "perPage"),
            (("nextPageToken", "%%%"), "not a token"),
        ] {
            let e = q(&[p]).expect_err("refused");
            assert!(e.to_string().contains(why), "{p:?}: {e}");
        }
        let a = q(&[("EQ_bizStep", "shipping")]).expect("a");
        let t = a.token("2026-01-01T00:00:00.000000Z", "e1");
        assert!(q(&[("EQ_bizStep", "shipping"), ("nextPageToken", &t)]).is_ok());
        let e = q(&[("EQ_bizStep", "receiving"), ("nextPageToken", &t)]).expect_err("other query");
        assert!(e.to_string().contains("other parameters"), "{e}");
        // Quotes cannot leave the SQL string they are put in.
        let t = a.token("2026-01-01T00:00:00.000000Z", "x' OR '1'='1");
        let with = q(&[("EQ_bizStep", "shipping"), ("nextPageToken", &t)]).expect("token");
        assert!(
            with.sql(with.after.as_ref(), 10)
                .contains("'x'' OR ''1''=''1'")
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "EQ_bizStep",
                    "EQ_disposition",
                    "MATCH_epc",
                    "MATCH_anyEPC",
                    "MATCH_parentID",
                    "MATCH_inputEPC",
                    "MATCH_outputEPC",
                    "GE_eventTime",
                    "LT_eventTime",
                    "EQ_readPoint",
                    "EQ_bizLocation",
                    "perPage",
                    "nextPageToken",
                ])
                .prop_map(str::to_owned),
                "\\PC{0,20}",
            ]
        }

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                "\\PC{0,80}",
                "[a-z:./*0-9|%-]{0,60}",
                prop::sample::select(vec![
                    "urn:epc:id:sgtin:0614141.107346.2017",
                    "urn:epc:idpat:sgtin:0614141.107346.*",
                    "https://id.gs1.org/01/10614141073464/21/2017",
                    "2019-10-21T10:00:30Z",
                    "shipping|receiving",
                ])
                .prop_map(str::to_owned),
            ]
        }

        proptest! {
            /// Any query string is an answer or a named refusal, never a panic; what is
            /// accepted matches any event without panicking, and its SQL keeps every
            /// value inside its quotes.
            #[test]
            fn any_query_string_is_read_or_refused(pairs in prop::collection::vec((name(), value()), 0..6)) {
                if let Ok(q) = EventsQuery::parse(&pairs) {
                    let ev = json!({"type": "ObjectEvent", "bizStep": "shipping",
                        "epcList": ["urn:epc:id:sgtin:0614141.107346.2017", 7, null],
                        "readPoint": {"id": 3}, "parentID": {"x": 1}});
                    let _ = q.matches(&ev);
                    let sql = q.sql(q.after.as_ref(), 10);
                    prop_assert_eq!(sql.matches('\'').count() % 2, 0, "{}", sql);
                }
            }

            /// A token is taken only from this server for the same query.
            #[test]
            fn tokens_round_trip_and_nothing_else_passes(t in "\\PC{0,80}", id in "\\PC{0,40}") {
                let q = EventsQuery::parse(&[]).expect("empty");
                let token = q.token("2026-01-01T00:00:00.000000Z", &id);
                let back = EventsQuery::parse(&[("nextPageToken".into(), token)]).expect("own token");
                prop_assert_eq!(back.after, Some(("2026-01-01T00:00:00.000000Z".to_owned(), id)));
                let _ = EventsQuery::parse(&[("nextPageToken".into(), t)]);
            }
        }
    }
}
