//! Event writer: one event's fields (pre-rendered JSON fragments) serialised in one pass.

use crate::format::{push_json_str, push_padded, push_time};

/// One event to serialise. Fragments (`participant`, `object`, ...) are pre-rendered JSON.
#[derive(Default)]
pub(crate) struct Ev<'a> {
    pub(crate) event_type: &'a str,
    pub(crate) short: &'a str,
    pub(crate) source: &'a str,
    pub(crate) time: i64,
    pub(crate) tz: i32,
    pub(crate) secs: bool,
    pub(crate) trace_code: Option<&'a str>,
    pub(crate) inputs: Option<&'a [String]>,
    pub(crate) outputs: Option<&'a [String]>,
    pub(crate) participant: &'a str,
    pub(crate) counterparty: Option<&'a str>,
    pub(crate) object: Option<&'a str>,
    pub(crate) quantity: Option<&'a str>,
    pub(crate) operator: Option<&'a str>,
    pub(crate) result: Option<&'a str>,
    pub(crate) site: Option<&'a str>,
    pub(crate) device_id: Option<&'a str>,
    pub(crate) location: Option<&'a str>,
    pub(crate) readings: Option<&'a str>,
    pub(crate) attributes: Option<&'a str>,
    pub(crate) attachments: Option<&'a str>,
    // Defect hooks (invalid records only).
    pub(crate) omit: &'a str,
    pub(crate) raw_event_id: Option<&'a str>,
    pub(crate) raw_time: Option<&'a str>,
    pub(crate) raw_inputs: Option<&'a str>,
    pub(crate) extra: Option<&'a str>,
}

#[inline]
fn open(buf: &mut String, name: &str) {
    if buf.len() > 1 {
        buf.push(',');
    }
    buf.push('"');
    buf.push_str(name);
    buf.push_str("\":");
}

pub(crate) fn write_event(buf: &mut String, seq: u64, ev: &Ev<'_>) {
    buf.clear();
    buf.push('{');
    if ev.omit != "event_id" {
        open(buf, "event_id");
        match ev.raw_event_id {
            Some(raw) => push_json_str(buf, raw),
            None => {
                buf.push('"');
                buf.push_str(ev.source);
                buf.push(':');
                buf.push_str(ev.short);
                buf.push(':');
                push_padded(buf, seq, 9);
                buf.push('"');
            }
        }
    }
    if ev.omit != "event_type" {
        open(buf, "event_type");
        push_json_str(buf, ev.event_type);
    }
    if ev.omit != "event_time" {
        open(buf, "event_time");
        match ev.raw_time {
            Some(raw) => push_json_str(buf, raw),
            None => {
                buf.push('"');
                push_time(buf, ev.time, ev.tz, ev.secs);
                buf.push('"');
            }
        }
    }
    let str_field = |buf: &mut String, name: &str, v: Option<&str>| {
        if let Some(v) = v
            && ev.omit != name
        {
            open(buf, name);
            push_json_str(buf, v);
        }
    };
    let raw_field = |buf: &mut String, name: &str, v: Option<&str>| {
        if let Some(v) = v
            && ev.omit != name
        {
            open(buf, name);
            buf.push_str(v);
        }
    };
    let list_field = |buf: &mut String, name: &str, v: Option<&[String]>| {
        if let Some(v) = v
            && ev.omit != name
        {
            open(buf, name);
            buf.push('[');
            for (i, c) in v.iter().enumerate() {
                if i > 0 {
                    buf.push(',');
                }
                push_json_str(buf, c);
            }
            buf.push(']');
        }
    };
    str_field(buf, "trace_code", ev.trace_code);
    if ev.raw_inputs.is_some() {
        raw_field(buf, "inputs", ev.raw_inputs);
    } else {
        list_field(buf, "inputs", ev.inputs);
    }
    list_field(buf, "outputs", ev.outputs);
    raw_field(
        buf,
        "participant",
        Some(ev.participant).filter(|p| !p.is_empty()),
    );
    raw_field(buf, "counterparty", ev.counterparty);
    raw_field(buf, "object", ev.object);
    raw_field(buf, "quantity", ev.quantity);
    str_field(buf, "operator", ev.operator);
    raw_field(buf, "result", ev.result);
    str_field(buf, "site", ev.site);
    str_field(buf, "device_id", ev.device_id);
    raw_field(buf, "location", ev.location);
    raw_field(buf, "readings", ev.readings);
    raw_field(buf, "attributes", ev.attributes);
    raw_field(buf, "attachments", ev.attachments);
    if let Some(x) = ev.extra {
        buf.push(',');
        buf.push_str(x);
    }
    buf.push('}');
}

/// Reusable buffers for JSON fragments.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pub(crate) attr: String,
    pub(crate) obj: String,
    pub(crate) qty: String,
    pub(crate) read: String,
    pub(crate) att: String,
    pub(crate) op: String,
    pub(crate) cp: String,
    pub(crate) part: String,
    pub(crate) loc: String,
    pub(crate) report: String,
    pub(crate) code: String,
    pub(crate) misc: String,
    pub(crate) extra: String,
    pub(crate) inputs: Vec<String>,
}
