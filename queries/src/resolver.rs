//! The GS1 Digital Link resolver for consumers and market regulators:
//! `GET /01/{gtin}/21/{serial}[?8030=signature]` answers whether a code is genuine (its AI
//! 8030 signature against the brand's key, and whether the brand's issue of it is in the
//! log), where it is in its lifecycle, a public-safe summary of its history (what happened,
//! when, by which kind of party: no participant ids, sites or attributes), and how many of
//! its events are anchored. HTML for people, JSON for `Accept: application/json`.
//!
//! Lifecycle, from the code's own events in time order, by the rule of [`crate::lifecycle`]
//! (the `code_lifecycle` table applies the same).

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use datafusion::logical_expr::{col, lit};
use serde::Serialize;
use veritrace_verify::digsig::Code;
use veritrace_verify::signature::PublicKey;

use crate::{QueryEngine, Result};

/// Most events a resolver answer reads (newest kept).
pub const MAX_HISTORY: usize = 200;

/// Brand keys by GTIN prefix (the longest matching prefix names the key).
#[derive(Debug, Clone, Default)]
pub struct BrandKeys(Vec<(String, PublicKey)>);

impl BrandKeys {
    /// From `prefix -> ALG:HEX`.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> std::result::Result<Self, String> {
        let mut v = Vec::new();
        for (prefix, key) in pairs {
            if prefix.is_empty() || prefix.len() > 14 || !prefix.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(format!("{prefix:?} is not a GTIN prefix (1-14 digits)"));
            }
            let k = PublicKey::parse(key).map_err(|e| format!("{prefix}: {e}"))?;
            v.push((prefix.to_owned(), k));
        }
        // Longest first: the most specific prefix wins.
        v.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(BrandKeys(v))
    }

    /// The key of `gtin` (14 digits; a prefix also matches without the leading zero).
    pub fn of(&self, gtin: &str) -> Option<&PublicKey> {
        let short = gtin.strip_prefix('0').unwrap_or(gtin);
        self.0
            .iter()
            .find(|(p, _)| gtin.starts_with(p.as_str()) || short.starts_with(p.as_str()))
            .map(|(_, k)| k)
    }

    /// True when no brand key is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One event of the public history.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// When (UTC date).
    pub date: String,
    /// What (the event type).
    pub what: String,
    /// By which kind of party (the participant's role).
    pub by: String,
}

/// What the resolver says about a code.
#[derive(Debug, Clone, Serialize)]
pub struct CodeStatus {
    /// The code (element string, without AI 8030).
    pub code: String,
    /// `genuine`, `not_genuine` or `unknown` (no brand key for the GTIN).
    pub verdict: &'static str,
    /// The signature check: `valid`, `invalid`, `absent`, `no_brand_key`.
    pub signature: &'static str,
    /// Why the signature failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_detail: Option<String>,
    /// Whether the brand's issue of the code is in the log.
    pub issued_in_log: bool,
    /// Lifecycle state: `unknown`, `issued`, `commissioned`, `in use`, `sold`,
    /// `decommissioned`, `destroyed`, `recalled`.
    pub state: String,
    /// Since when (UTC date), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The history, oldest first (at most [`MAX_HISTORY`] events, the newest).
    pub history: Vec<Step>,
    /// Events in the log about the code.
    pub events: u64,
    /// Of which anchored (their batch's epoch root is anchored; the rest are sealed,
    /// anchoring pending).
    pub anchored: u64,
}

impl QueryEngine {
    /// What the resolver says about `code`, from every event about it (not the caller's
    /// scope: the answer is public-safe by construction).
    pub async fn code_status(&self, code: &Code, keys: &Arc<BrandKeys>) -> Result<CodeStatus> {
        let trace_code = crate::trace::normalise(&code.trace_code())?;
        let code_c = code.clone();
        let keys = keys.clone();
        self.run(move |e| async move {
            let (signature, signature_detail) = match keys.of(&code_c.gtin) {
                None => ("no_brand_key", None),
                Some(k) => match code_c.verify(k) {
                    Ok(()) => ("valid", None),
                    Err(err) if err.code == "unsigned" => ("absent", Some(err.detail)),
                    Err(err) => ("invalid", Some(err.detail)),
                },
            };
            let snap = e.snapshot().await?;
            let batches = e
                .ctx
                .table("events")
                .await?
                .filter(col("trace_code").eq(lit(trace_code.as_str())))?
                .select_columns(&[
                    "event_time",
                    "event_type",
                    "participant_role",
                    "attributes",
                    "batch_id",
                    "event_id",
                ])?
                .sort(vec![
                    col("event_time").sort(true, false),
                    col("event_id").sort(true, false),
                ])?
                .collect()
                .await?;
            let mut rows: Vec<(i64, String, String, bool, String)> = Vec::new();
            for b in &batches {
                let time = b
                    .column(0)
                    .as_primitive_opt::<arrow::datatypes::TimestampMillisecondType>()
                    .ok_or_else(|| crate::Error::Internal("event_time".into()))?;
                let text = |i: usize| {
                    b.column(i)
                        .as_string_opt::<i32>()
                        .ok_or_else(|| crate::Error::Internal("events: a text column".into()))
                };
                let (what, role, attrs, batch) = (text(1)?, text(2)?, text(3)?, text(4)?);
                for i in 0..b.num_rows() {
                    let destroyed = !attrs.is_null(i)
                        && attrs.value(i).contains("\"epcis_biz_step\":\"destroying\"");
                    rows.push((
                        time.value(i),
                        what.value(i).to_owned(),
                        if role.is_null(i) {
                            String::new()
                        } else {
                            role.value(i).to_owned()
                        },
                        destroyed,
                        batch.value(i).to_owned(),
                    ));
                }
            }
            let date = |ms: i64| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .map(|t| t.format("%Y-%m-%d").to_string())
                    .unwrap_or_default()
            };
            let mut state = "unknown".to_owned();
            let mut since = None;
            for (t, what, _, destroyed, _) in &rows {
                if let Some(s) = crate::lifecycle::next(&state, what, *destroyed) {
                    state = s.to_owned();
                    since = Some(date(*t));
                }
            }
            let issued_in_log = rows.iter().any(|r| r.1 == "code_issued");
            let keep = rows.len().saturating_sub(MAX_HISTORY);
            // Anchored or not is a property of the event's batch: each batch once, from the
            // snapshot (no proof is assembled).
            let mut batch_anchored: std::collections::HashMap<&str, bool> = Default::default();
            let mut anchored = 0;
            for r in &rows {
                let yes = match batch_anchored.get(r.4.as_str()) {
                    Some(y) => *y,
                    None => {
                        let y = snap.headers.get(&r.4).is_some_and(|h| {
                            crate::proof::epoch_and_anchor(&snap, h).is_ok_and(|(s, _, _)| {
                                s == veritrace_verify::bundle::Status::Anchored
                            })
                        });
                        batch_anchored.insert(r.4.as_str(), y);
                        y
                    }
                };
                anchored += u64::from(yes);
            }
            let verdict = match signature {
                "valid" => "genuine",
                "no_brand_key" => "unknown",
                _ => "not_genuine",
            };
            Ok(CodeStatus {
                code: trace_code.clone(),
                verdict,
                signature,
                signature_detail,
                issued_in_log,
                state,
                since,
                events: rows.len() as u64,
                anchored,
                history: rows[keep..]
                    .iter()
                    .map(|(t, what, by, _, _)| Step {
                        date: date(*t),
                        what: what.replace('_', " "),
                        by: by.clone(),
                    })
                    .collect(),
            })
        })
        .await
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The answer as an HTML page for people.
pub fn html(s: &CodeStatus) -> String {
    let (banner, class) = match (s.verdict, s.state.as_str()) {
        (_, "recalled") => ("Recalled: do not use this product", "warn"),
        ("genuine", _) => ("Genuine", "ok"),
        ("not_genuine", _) => ("Not genuine: this code was not issued by the brand", "bad"),
        _ => ("Authenticity unknown", "warn"),
    };
    let mut rows = String::new();
    for h in &s.history {
        rows.push_str(&format!(
            "<li><time>{}</time> {} <span class=\"by\">({})</span></li>",
            esc(&h.date),
            esc(&h.what),
            esc(&h.by)
        ));
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{code}: {banner}</title>\
<style>body{{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em}}\
.ok{{background:#d7f5dd}}.bad{{background:#f9d6d5}}.warn{{background:#fdf1c7}}\
#verdict{{padding:1em;border-radius:6px;font-size:1.3em}}.by{{color:#555}}</style></head>\
<body><h1>Product code</h1><p><code id=\"code\">{code}</code></p>\
<p id=\"verdict\" class=\"{class}\" data-verdict=\"{verdict}\">{banner}</p>\
<dl><dt>Signature</dt><dd id=\"signature\">{signature}</dd>\
<dt>Issue recorded by the brand</dt><dd id=\"issued\">{issued}</dd>\
<dt>State</dt><dd id=\"state\">{state}{since}</dd>\
<dt>Events in the log</dt><dd id=\"proofs\">{events}, of which {anchored} anchored</dd></dl>\
<h2>History</h2><ol id=\"history\">{rows}</ol></body></html>\n",
        code = esc(&s.code),
        class = class,
        verdict = s.verdict,
        banner = banner,
        signature = s.signature,
        issued = if s.issued_in_log { "yes" } else { "no" },
        state = esc(&s.state),
        since = s
            .since
            .as_deref()
            .map(|d| format!(" since {}", esc(d)))
            .unwrap_or_default(),
        events = s.events,
        anchored = s.anchored,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brand_keys_pick_the_longest_prefix_and_html_is_escaped() {
        let k1 = veritrace_verify::signature::SigningKey::from_bytes(
            veritrace_verify::signature::Alg::EdDsa,
            &[1; 32],
        )
        .expect("key")
        .public();
        let k2 = veritrace_verify::signature::SigningKey::from_bytes(
            veritrace_verify::signature::Alg::EdDsa,
            &[2; 32],
        )
        .expect("key")
        .public();
        let (t1, t2) = (k1.to_text(), k2.to_text());
        let keys =
            BrandKeys::parse([("950", t1.as_str()), ("9506000", t2.as_str())]).expect("keys");
        assert_eq!(keys.of("09506000134352"), Some(&k2));
        assert_eq!(keys.of("09501234000001"), Some(&k1));
        assert_eq!(keys.of("04012345000001"), None);
        assert!(BrandKeys::parse([("95x", t1.as_str())]).is_err());
        let s = CodeStatus {
            code: "(01)1<script>".into(),
            verdict: "genuine",
            signature: "valid",
            signature_detail: None,
            issued_in_log: true,
            state: "sold".into(),
            since: None,
            history: vec![],
            events: 0,
            anchored: 0,
        };
        assert!(!html(&s).contains("<script>"));
    }
}
