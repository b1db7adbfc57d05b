//! Invalid records: throw-away events that carry exactly one defect with a known reason
//! code.

use std::fmt::Write as _;

use crate::format::{
    HEX, attachment, civil_from_days, person, push_date, push_fixed, push_json_str, push_padded,
    push_time, push_u64, push_yymmdd, quantity, report,
};
use crate::master::{DEV_KINDS, MODELS, OWN_PREFIX, PLANT_DEVICES, SUBS, SUPPLIER_DEFS, route};
use crate::rng::Rng;
use crate::state::{State, make_code, sscc};
use crate::writer::{Ev, write_event};
use crate::{DAY, HOUR, Simulator};

/// Reason codes with their weights (per 1000 invalid records).
#[rustfmt::skip]
pub(crate) const DEFECTS: [(&str, u32); 15] = [
    ("malformed_json", 120),
    ("not_an_object", 50),
    ("unknown_event_type", 70),
    ("missing_field", 120),
    ("bad_timestamp", 90),
    ("lat_lon_out_of_range", 60),
    ("bad_gtin_check_digit", 90),
    ("malformed_trace_code", 90),
    ("bad_attachment", 60),
    ("unknown_field", 70),
    ("bad_value", 70),
    ("bad_field_type", 40),
    ("bad_event_id", 30),
    ("number_out_of_range", 30),
    ("payload_too_large", 10),
];

/// Template of a throw-away event that carries a defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tpl {
    /// Final `quality_check` of a bike: trace code, object, result, location, attachment.
    Qc,
    /// `telemetry` of a device.
    Telemetry,
    /// `assembly` of a bike from four sub-assemblies.
    Assembly,
    /// `transport` of a raw batch or a pallet: quantity, counterparty, location.
    Transport,
    /// `production` of a raw batch: object master data and quantity.
    Production,
}

/// Where the single defect goes (besides whole-record ones).
#[derive(Debug, Default)]
struct Defect {
    event_type: Option<&'static str>,
    omit: &'static str,
    omit_participant: Option<&'static str>,
    time: Option<String>,
    lat_lon: Option<(String, String)>,
    lat_as_string: bool,
    trace_code: Option<String>,
    inputs_raw: Option<String>,
    corrupt_first_input: bool,
    product_id: Option<String>,
    attachment: Option<String>,
    extra_top: Option<&'static str>,
    extra_nested: Option<&'static str>,
    role: Option<&'static str>,
    result: Option<&'static str>,
    date: Option<&'static str>,
    empty_operator: bool,
    event_id: Option<String>,
    quantity: Option<String>,
    big_reading: bool,
    huge: bool,
    latin1_operator: bool,
}

/// A check digit that is wrong: `digits` with its last digit changed.
fn break_check_digit(rng: &mut Rng, digits: &str) -> String {
    let mut s = digits.to_string();
    if let Some(last) = s.pop() {
        let d = last as u8 - b'0';
        s.push((b'0' + (d + 1 + rng.below(9) as u8) % 10) as char);
    }
    s
}

impl Simulator {
    /// Writes an invalid record; `key` gets its natural key. Returns payload and reason.
    pub(crate) fn invalid(&mut self) -> (Vec<u8>, &'static str) {
        let total: u32 = DEFECTS.iter().map(|d| d.1).sum();
        let mut x = self.rng.below(u64::from(total)) as u32;
        let mut reason = DEFECTS[0].0;
        for (code, wgt) in DEFECTS {
            if x < wgt {
                reason = code;
                break;
            }
            x -= wgt;
        }
        let rng = &mut self.rng;
        let mut d = Defect::default();
        let any = [
            Tpl::Qc,
            Tpl::Telemetry,
            Tpl::Assembly,
            Tpl::Transport,
            Tpl::Production,
        ];
        let tpl = match reason {
            "malformed_json" => {
                let v = rng.below(6);
                if v == 0 {
                    // Garbage bytes: never valid UTF-8 (the first byte cannot start a character).
                    let n = rng.range(8, 300) as usize;
                    let mut g = Vec::with_capacity(n);
                    g.push(*rng.pick(&[0xff_u8, 0xfe, 0xc0, 0xc1, 0xf8, 0x80]));
                    for _ in 1..n {
                        g.push(rng.next_u64() as u8);
                    }
                    let dev = &self.w.devices[rng.idx(self.w.devices.len())];
                    self.key.clear();
                    self.key.push_str(&dev.id);
                    return (g, reason);
                }
                if v == 1 {
                    d.latin1_operator = true;
                    Tpl::Qc
                } else {
                    *rng.pick(&any)
                }
            }
            "not_an_object" => *rng.pick(&any),
            "unknown_event_type" => {
                d.event_type = Some(*rng.pick(&[
                    "inspection",
                    "Quality_Check",
                    "shipping",
                    "scrap",
                    "repair",
                    "QC",
                    "sold",
                    "telemetry_v2",
                ]));
                *rng.pick(&any)
            }
            "missing_field" => {
                let t = *rng.pick(&any);
                let mut fields: Vec<&'static str> = vec![
                    "event_id",
                    "event_type",
                    "event_time",
                    "participant",
                    "participant.id",
                    "participant.role",
                ];
                match t {
                    Tpl::Qc => fields.extend(["trace_code", "result"]),
                    Tpl::Telemetry => fields.extend(["device_id", "readings"]),
                    Tpl::Assembly => fields.extend(["trace_code", "inputs"]),
                    Tpl::Transport | Tpl::Production => fields.push("trace_code"),
                }
                let f = *rng.pick(&fields);
                match f {
                    "participant.id" => d.omit_participant = Some("id"),
                    "participant.role" => d.omit_participant = Some("role"),
                    f => d.omit = f,
                }
                t
            }
            "bad_timestamp" => {
                let mut s = String::with_capacity(32);
                match rng.below(9) {
                    0 => {
                        push_time(&mut s, self.clock, 0, false);
                        s.pop(); // no offset
                    }
                    1 => {
                        push_time(&mut s, self.clock, 480, true);
                        s.truncate(s.len() - 6);
                        s.push_str("+0800");
                    }
                    2 => s.push_str("1999-12-31T23:59:59Z"),
                    3 => s.push_str("2099-01-01T00:00:00Z"),
                    4 => s.push_str("2026-02-30T10:00:00Z"),
                    5 => {
                        push_date(&mut s, self.clock, 480);
                        s.push_str("T25:10:00+08:00");
                    }
                    6 => {
                        let (y, m, dd) = civil_from_days((self.clock + 8 * HOUR).div_euclid(DAY));
                        let _ = write!(s, "{dd:02}/{m:02}/{y} 08:15:02");
                    }
                    7 => push_u64(&mut s, (self.clock / 1000).max(0) as u64),
                    _ => {
                        push_time(&mut s, self.clock, 0, false);
                        s.push_str(" UTC");
                        s.remove(s.len() - 5); // drop the Z
                    }
                }
                d.time = Some(s);
                *rng.pick(&[Tpl::Qc, Tpl::Telemetry, Tpl::Transport])
            }
            "lat_lon_out_of_range" => {
                d.lat_lon = Some(match rng.below(4) {
                    0 => ("91.2034".into(), "121.4737".into()),
                    1 => ("31.2304".into(), "181.4737".into()),
                    2 => ("-95.5".into(), "-100.3161".into()),
                    _ => (String::new(), String::new()), // swapped, set per template below
                });
                *rng.pick(&[Tpl::Qc, Tpl::Transport])
            }
            "bad_gtin_check_digit" => match rng.below(4) {
                0 => {
                    d.corrupt_first_input = true;
                    Tpl::Assembly
                }
                1 => {
                    let m = rng.idx(MODELS.len());
                    d.product_id = Some(break_check_digit(rng, &self.w.model_gtin[m].g14));
                    Tpl::Qc
                }
                2 => {
                    let mut c = sscc(&mut self.st, &self.w, 0);
                    let digits = break_check_digit(rng, &c[4..]);
                    c.truncate(4);
                    c.push_str(&digits);
                    d.trace_code = Some(c);
                    Tpl::Transport
                }
                _ => {
                    let g = &self.w.model_gtin[rng.idx(MODELS.len())];
                    let mut sn = String::new();
                    State::serial(&mut self.st, rng, &mut sn);
                    let bad = break_check_digit(rng, &g.g14);
                    d.trace_code = Some(if rng.chance(0.5) {
                        format!("(01){bad}(21){sn}")
                    } else {
                        format!("https://id.gs1.org/01/{bad}/21/{sn}")
                    });
                    *rng.pick(&[Tpl::Qc, Tpl::Transport, Tpl::Production])
                }
            },
            "malformed_trace_code" => {
                let g = &self.w.model_gtin[rng.idx(MODELS.len())].g14;
                let mut sn = String::new();
                State::serial(&mut self.st, rng, &mut sn);
                d.trace_code = Some(match rng.below(8) {
                    0 => format!("urn:epc:id:sgtin:{}.0{}.{sn}", OWN_PREFIX, &g[8..13]),
                    1 => g.clone(),
                    2 => format!("(01){g}(21)"),
                    3 => format!("(01){g}(21){sn}{sn}{sn}"),
                    4 => format!("(01){g}(21){} {}", &sn[..5], &sn[5..]),
                    5 => format!("(01){}X(21){sn}", &g[..13]),
                    6 => format!("https://id.gs1.org/21/{sn}"),
                    _ => format!("SN-{sn}"),
                });
                *rng.pick(&[Tpl::Qc, Tpl::Transport, Tpl::Production, Tpl::Assembly])
            }
            "bad_attachment" => {
                let mut sha = String::with_capacity(64);
                for _ in 0..64 {
                    sha.push(HEX[rng.idx(16)] as char);
                }
                d.attachment = Some(match rng.below(4) {
                    0 => format!(
                        "[{{\"name\":\"qc-report.pdf\",\"sha256\":\"{}\"}}]",
                        &sha[..63]
                    ),
                    1 => format!(
                        "[{{\"name\":\"qc-report.pdf\",\"sha256\":\"{}\"}}]",
                        &sha[..40]
                    ),
                    2 => format!(
                        "[{{\"name\":\"qc-report.pdf\",\"sha256\":\"{}zz{}\"}}]",
                        &sha[..30],
                        &sha[32..]
                    ),
                    _ => format!("[{{\"sha256\":\"{sha}\",\"media_type\":\"application/pdf\"}}]"),
                });
                Tpl::Qc
            }
            "unknown_field" => {
                if rng.chance(0.5) {
                    d.extra_top = Some(*rng.pick(&[
                        "\"plant\":\"plant-sh-01\"",
                        "\"timestamp\":1790812800",
                        "\"qc_result\":\"pass\"",
                        "\"eventTime\":\"2026-10-01T08:00:00Z\"",
                        "\"source_system\":\"MES\"",
                    ]));
                    *rng.pick(&any)
                } else {
                    d.extra_nested =
                        Some(*rng.pick(&["location", "participant", "attachment", "object"]));
                    Tpl::Qc
                }
            }
            "bad_value" => match rng.below(4) {
                0 => {
                    d.role = Some(*rng.pick(&["vendor", "factory", "Manufacturer", "oem"]));
                    *rng.pick(&any)
                }
                1 => {
                    d.result = Some(*rng.pick(&["\"ok\"", "\"PASS\"", "\"passed\"", "\"nok\""]));
                    Tpl::Qc
                }
                2 => {
                    d.date =
                        Some(*rng.pick(&["2026/10/01", "20261001", "01.10.2026", "2026-10-1"]));
                    Tpl::Production
                }
                _ => {
                    d.empty_operator = true;
                    Tpl::Qc
                }
            },
            "bad_field_type" => match rng.below(4) {
                0 => {
                    d.result = Some("1");
                    Tpl::Qc
                }
                1 => {
                    d.lat_as_string = true;
                    Tpl::Qc
                }
                2 => {
                    d.quantity = Some("{\"value\":\"500\",\"unit\":\"kg\"}".to_string());
                    *rng.pick(&[Tpl::Transport, Tpl::Production])
                }
                _ => {
                    d.inputs_raw = Some(String::new()); // filled with a string below
                    Tpl::Assembly
                }
            },
            "bad_event_id" => {
                d.event_id = Some(match rng.below(3) {
                    0 => format!("plant-sh-01:qc:{} retry", self.seq + 1),
                    1 => "x".repeat(rng.range(129, 200) as usize),
                    _ => format!("plant-sh-01#qc#{}", self.seq + 1),
                });
                *rng.pick(&any)
            }
            "number_out_of_range" => {
                if rng.chance(0.5) {
                    d.quantity = Some(format!(
                        "{{\"value\":-{},\"unit\":\"kg\"}}",
                        rng.range(1, 500)
                    ));
                    *rng.pick(&[Tpl::Transport, Tpl::Production])
                } else {
                    d.big_reading = true;
                    Tpl::Telemetry
                }
            }
            _ => {
                d.huge = true;
                Tpl::Telemetry
            }
        };
        self.probe(tpl, &d);
        let mut out = self.buf.as_bytes().to_vec();
        if reason == "malformed_json" {
            if d.latin1_operator {
                if let Some(i) = find(&out, b"\"M~ller\"") {
                    out[i + 2] = 0xfc;
                }
            } else {
                match self.rng.below(4) {
                    0 => {
                        let cut = self.rng.range(1, out.len() as i64 - 1) as usize;
                        out.truncate(cut);
                    }
                    1 => {
                        out.pop();
                        out.extend_from_slice(b",}");
                    }
                    2 => {
                        let first = out.clone();
                        out.extend_from_slice(&first);
                    }
                    _ => {
                        for b in out.iter_mut() {
                            if *b == b'"' {
                                *b = b'\'';
                            }
                        }
                    }
                }
            }
        } else if reason == "not_an_object" {
            out = match self.rng.below(6) {
                0 | 1 => {
                    let mut v = Vec::with_capacity(out.len() + 2);
                    v.push(b'[');
                    v.extend_from_slice(&out);
                    v.push(b']');
                    v
                }
                2 | 3 => {
                    let mut s = String::with_capacity(out.len() + 64);
                    push_json_str(&mut s, &self.buf);
                    s.into_bytes()
                }
                4 => b"null".to_vec(),
                _ => (*self.rng.pick(&[&b"[]"[..], b"42", b"true", b"\"ok\""])).to_vec(),
            };
        }
        (out, reason)
    }

    /// Writes a throw-away event of template `tpl` with the single defect `d` into `buf`.
    fn probe(&mut self, tpl: Tpl, d: &Defect) {
        let seq = self.next_seq();
        let now = self.clock;
        let p = self.rng.idx(self.w.plants.len());
        let plant = &self.w.plants[p];
        let rng = &mut self.rng;
        let sc = &mut self.sc;
        let st = &mut self.st;
        let w = &self.w;
        // Participant (and its possible defects).
        let supplier = rng.idx(SUPPLIER_DEFS.len());
        let who = match tpl {
            Tpl::Qc | Tpl::Telemetry => plant.mfr,
            Tpl::Assembly => plant.asm,
            Tpl::Transport => {
                w.carriers[route(SUPPLIER_DEFS[supplier].region, plant.region, false, true).0]
            }
            Tpl::Production => w.suppliers[supplier],
        };
        let who = &w.parties[who];
        sc.part.clear();
        sc.part.push('{');
        if d.omit_participant != Some("id") {
            sc.part.push_str("\"id\":");
            push_json_str(&mut sc.part, &who.id);
            sc.part.push(',');
        }
        let (role_start, role) = match who.frag.rfind("\"role\":\"") {
            Some(i) => (i, &who.frag[i + 8..who.frag.len() - 2]),
            None => (who.frag.len(), ""),
        };
        if let Some(i) = who.frag.find(",\"name\":") {
            sc.part.push_str(&who.frag[i + 1..role_start]);
        }
        if d.extra_nested == Some("participant") {
            sc.part.push_str("\"country\":\"CN\",");
        }
        if d.omit_participant != Some("role") {
            sc.part.push_str("\"role\":");
            push_json_str(&mut sc.part, d.role.unwrap_or(role));
        }
        if sc.part.ends_with(',') {
            sc.part.pop();
        }
        sc.part.push('}');
        // Location.
        sc.loc.clear();
        let place = if tpl == Tpl::Transport {
            &w.parties[w.suppliers[supplier]].loc
        } else {
            &who.loc
        };
        let (lat, lon) = split_loc(place).unwrap_or(("31.2304", "121.4737"));
        match &d.lat_lon {
            Some((la, lo)) if !la.is_empty() => {
                let _ = write!(sc.loc, "{{\"lat\":{la},\"lon\":{lo}}}");
            }
            Some(_) => {
                // Swapped coordinates (a classic): make sure the latitude is out of range.
                let lon_abs = lon.trim_start_matches('-').parse::<f64>().unwrap_or(0.0);
                if lon_abs > 90.0 {
                    let _ = write!(sc.loc, "{{\"lat\":{lon},\"lon\":{lat}}}");
                } else if let Some(abs) = lat.strip_prefix('-') {
                    let _ = write!(sc.loc, "{{\"lat\":-9{abs},\"lon\":{lon}}}");
                } else {
                    let _ = write!(sc.loc, "{{\"lat\":9{lat},\"lon\":{lon}}}");
                }
            }
            None if d.lat_as_string => {
                let _ = write!(sc.loc, "{{\"lat\":\"{lat}\",\"lon\":{lon}}}");
            }
            None if d.extra_nested == Some("location") => {
                let _ = write!(sc.loc, "{{\"lat\":{lat},\"lon\":{lon},\"alt\":12.5}}");
            }
            None => {
                let _ = write!(sc.loc, "{{\"lat\":{lat},\"lon\":{lon}}}");
            }
        }
        // A fresh bike code (never part of the simulation).
        let model = rng.idx(MODELS.len());
        sc.misc.clear();
        State::serial(st, rng, &mut sc.misc);
        let mut code = match tpl {
            Tpl::Transport if rng.chance(0.5) => sscc(st, w, p),
            Tpl::Transport | Tpl::Production => {
                sc.code.clear();
                sc.code.push_str(SUPPLIER_DEFS[supplier].lot_prefix);
                push_yymmdd(&mut sc.code, now, 0);
                sc.code.push('-');
                push_padded(&mut sc.code, st.lots % 10_000, 4);
                make_code(rng, &w.supplier_gtin[supplier], "10", &sc.code, None)
            }
            _ => make_code(rng, &w.model_gtin[model], "21", &sc.misc, None),
        };
        if let Some(c) = &d.trace_code {
            code.clone_from(c);
        }
        if d.latin1_operator {
            sc.op.clear();
            sc.op.push_str("M~ller");
        } else if d.empty_operator {
            sc.op.clear();
        } else {
            person(&mut sc.op, "qc", &plant.code, rng.range(1, 30));
        }
        sc.extra.clear();
        if let Some(x) = d.extra_top {
            sc.extra.push_str(x);
        }
        let mut ev = Ev {
            source: &who.id,
            time: now,
            tz: who.tz,
            secs: who.secs,
            participant: &sc.part,
            omit: d.omit,
            raw_event_id: d.event_id.as_deref(),
            raw_time: d.time.as_deref(),
            extra: (!sc.extra.is_empty()).then_some(sc.extra.as_str()),
            ..Ev::default()
        };
        match tpl {
            Tpl::Qc => {
                sc.obj.clear();
                sc.obj.push_str("{\"product_id\":\"");
                sc.obj
                    .push_str(d.product_id.as_deref().unwrap_or(&w.model_gtin[model].g14));
                sc.obj.push_str("\",\"model\":");
                push_json_str(&mut sc.obj, MODELS[model].name);
                if d.extra_nested == Some("object") {
                    sc.obj.push_str(",\"colour\":\"matt black\"");
                }
                sc.obj.push('}');
                match &d.attachment {
                    Some(a) => {
                        sc.att.clear();
                        sc.att.push_str(a);
                    }
                    None => {
                        report(
                            &mut sc.report,
                            "Final inspection report",
                            &code,
                            now,
                            "pass",
                            "",
                        );
                        attachment(
                            &mut sc.att,
                            "qc-report.pdf",
                            &sc.report,
                            "application/pdf",
                            false,
                        );
                        if d.extra_nested == Some("attachment") {
                            sc.att.truncate(sc.att.len() - 2);
                            sc.att
                                .push_str(",\"url\":\"https://files.example.com/qc-report.pdf\"}]");
                        }
                    }
                }
                sc.attr.clear();
                sc.attr.push_str("{\"inspection\":\"final\"}");
                ev.event_type = "quality_check";
                ev.short = "qc";
                ev.trace_code = Some(&code);
                ev.object = Some(&sc.obj);
                ev.operator = Some(&sc.op);
                ev.result = Some(d.result.unwrap_or("\"pass\""));
                ev.site = Some(&plant.lines[3]);
                ev.location = Some(&sc.loc);
                ev.attributes = Some(&sc.attr);
                ev.attachments = Some(&sc.att);
            }
            Tpl::Telemetry => {
                let dev = &w.devices[p * PLANT_DEVICES.len() + rng.idx(PLANT_DEVICES.len())];
                let kind = &DEV_KINDS[dev.kind];
                sc.read.clear();
                sc.read.push('{');
                for r in kind.readings {
                    sc.read.push('"');
                    sc.read.push_str(r.name);
                    sc.read.push_str("\":");
                    push_fixed(&mut sc.read, r.base, r.dec);
                    sc.read.push(',');
                }
                sc.read.push_str(if d.big_reading {
                    "\"counter\":18014398509481985}"
                } else {
                    "\"uptime_h\":1203}"
                });
                if d.huge {
                    // A raw waveform dump that blows the 64 KiB limit.
                    sc.attr.clear();
                    sc.attr.push_str("{\"waveform\":[");
                    let n = rng.range(12_000, 16_000);
                    for i in 0..n {
                        if i > 0 {
                            sc.attr.push(',');
                        }
                        push_fixed(&mut sc.attr, 2.0 + rng.gauss() * 0.4, 3);
                    }
                    sc.attr.push_str("]}");
                    ev.attributes = Some(&sc.attr);
                }
                ev.event_type = "telemetry";
                ev.short = "tel";
                ev.site = Some(&dev.site);
                ev.device_id = Some(&dev.id);
                ev.readings = Some(&sc.read);
                self.key.clear();
                self.key.push_str(&dev.id);
            }
            Tpl::Assembly => {
                sc.inputs.clear();
                for t in 0..SUBS.len() {
                    let mut sn = String::new();
                    State::serial(st, rng, &mut sn);
                    sc.inputs
                        .push(make_code(rng, &w.sub_gtin[t], "21", &sn, None));
                }
                if d.corrupt_first_input {
                    let mut sn = String::new();
                    State::serial(st, rng, &mut sn);
                    let bad = break_check_digit(rng, &w.sub_gtin[0].g14);
                    sc.inputs[0] = format!("(01){bad}(21){sn}");
                }
                if d.inputs_raw.is_some() {
                    sc.misc.clear();
                    push_json_str(&mut sc.misc, &sc.inputs[0]);
                    ev.raw_inputs = Some(&sc.misc);
                }
                ev.event_type = "assembly";
                ev.short = "asm";
                ev.trace_code = Some(&code);
                ev.inputs = Some(&sc.inputs);
                ev.site = Some(&plant.lines[3]);
            }
            Tpl::Transport | Tpl::Production => {
                match &d.quantity {
                    Some(q) => {
                        sc.qty.clear();
                        sc.qty.push_str(q);
                    }
                    None => quantity(&mut sc.qty, rng.range(100, 900), "kg"),
                }
                ev.trace_code = Some(&code);
                ev.quantity = Some(&sc.qty);
                if tpl == Tpl::Transport {
                    ev.event_type = "transport";
                    ev.short = "ship";
                    ev.counterparty = Some(&w.parties[plant.mfr].frag);
                    ev.location = Some(&sc.loc);
                    sc.attr.clear();
                    sc.attr.push_str("{\"destination\":\"");
                    sc.attr.push_str(&plant.id);
                    sc.attr.push_str("\"}");
                    ev.attributes = Some(&sc.attr);
                } else {
                    sc.obj.clear();
                    sc.obj.push_str("{\"production_date\":\"");
                    match d.date {
                        Some(bad) => sc.obj.push_str(bad),
                        None => push_date(&mut sc.obj, now, who.tz),
                    }
                    sc.obj.push_str("\"}");
                    ev.event_type = "production";
                    ev.short = "prod";
                    ev.object = Some(&sc.obj);
                }
            }
        }
        if tpl != Tpl::Telemetry {
            self.key.clear();
            self.key.push_str(&code);
        }
        if let Some(t) = d.event_type {
            ev.event_type = t;
        }
        write_event(&mut self.buf, seq, &ev);
    }
}

fn split_loc(loc: &str) -> Option<(&str, &str)> {
    let rest = loc.strip_prefix("{\"lat\":")?;
    let (lat, rest) = rest.split_once(",\"lon\":")?;
    Some((lat, rest.strip_suffix('}')?))
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
