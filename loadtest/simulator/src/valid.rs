//! Valid events: pull-based work at each plant, each task's life-cycle events, and device
//! telemetry and maintenance.

use std::cmp::Reverse;

use crate::format::{
    attachment, person, push_date, push_fixed, push_json_str, push_padded, push_pct, push_u64,
    push_yymmdd, qc_result, quantity, report,
};
use crate::master::{
    ALNUM, COAT, COAT_REORDER, COAT_SUB, COAT_USE_G, DEV_KINDS, MATERIALS, MODELS, Mode, PARTS,
    Pattern, Region, SUBS, SUPPLIER_DEFS, route,
};
use crate::state::{
    FpTask, PalletTask, RawTask, ShelfTask, State, SubTask, Task, XformTask, make_code, sscc,
};
use crate::writer::{Ev, write_event};
use crate::{
    DAY, DEVICE_SHARE, HOUR, LOT_TARGET, MIN, PREVENTIVE_MAINTENANCE, RAW_ORDER_GAP, RAW_TARGET,
    SEC, SUB_TARGET, Simulator,
};

impl Simulator {
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Writes one valid event into `buf` and its key into `key`.
    pub(crate) fn valid(&mut self) {
        if self.rng.chance(DEVICE_SHARE) {
            self.device_event();
        } else if !self.object_event() {
            self.starved += 1;
            self.device_event();
        }
    }

    fn object_event(&mut self) -> bool {
        if let Some(&Reverse((due, _, slot))) = self.st.heap.peek()
            && due <= self.clock
        {
            self.st.heap.pop();
            if let Some(task) = self.st.tasks[slot as usize].take() {
                match self.run(task) {
                    Some((task, delay)) => {
                        self.st.tasks[slot as usize] = Some(task);
                        self.st.reschedule(slot, self.clock + delay.max(SEC));
                    }
                    None => self.st.free.push(slot),
                }
                return true;
            }
        }
        self.spawn()
    }

    /// Starts new work at some plant (pull-based, highest BOM level first) and emits its
    /// first event. False when nothing can start right now.
    fn spawn(&mut self) -> bool {
        let n = self.w.plants.len();
        let first = self.rng.idx(n);
        for k in 0..n {
            let p = (first + k) % n;
            if let Some(task) = self.pick_work(p) {
                if let Some((task, delay)) = self.run(task) {
                    self.st.schedule(task, self.clock + delay.max(SEC));
                }
                return true;
            }
        }
        false
    }

    fn pick_work(&mut self, p: usize) -> Option<Task> {
        let ps = &self.st.plants[p];
        // Replenish raw materials.
        let m0 = self.rng.idx(MATERIALS.len());
        for k in 0..MATERIALS.len() {
            let m = (m0 + k) % MATERIALS.len();
            let short = if m == COAT {
                // Bulk: one batch on order at a time, once the open one is running down.
                ps.coat_stock.is_empty()
                    && ps.raw_inflight[m] == 0
                    && ps.coat.as_ref().is_none_or(|(_, left, total)| {
                        (*left as f64) < COAT_REORDER * *total as f64
                    })
            } else {
                ps.raw_stock[m].len() + ps.raw_inflight[m] < RAW_TARGET
            };
            if short && ps.raw_next_order[m] <= self.clock {
                self.st.plants[p].raw_inflight[m] += 1;
                self.st.plants[p].raw_next_order[m] = self.clock + RAW_ORDER_GAP;
                let t = self.st.new_raw(&self.w, &mut self.rng, p, m, self.clock);
                return Some(Task::Raw(t));
            }
        }
        // Make part lots.
        for (q, part) in PARTS.iter().enumerate() {
            if ps.lots[q].len() + ps.lots_pending[q] < LOT_TARGET
                && !ps.raw_stock[part.mat].is_empty()
            {
                return Some(Task::Xform(XformTask {
                    plant: p,
                    part: q,
                    outputs: Vec::new(),
                    next: usize::MAX,
                }));
            }
        }
        // Build a bike.
        if ps.subs.iter().all(|s| !s.is_empty()) {
            let model = self.rng.idx(MODELS.len());
            return Some(Task::Fp(FpTask {
                plant: p,
                model,
                code: String::new(),
                step: 0,
                reworked: false,
                retailer: 0,
            }));
        }
        // Build the scarcest sub-assembly whose part lots are there.
        let mut best: Option<(usize, usize)> = None;
        for (t, sub) in SUBS.iter().enumerate() {
            let have = ps.subs[t].len() + ps.subs_pending[t];
            if have < SUB_TARGET
                && sub.parts.iter().all(|&q| !ps.lots[q].is_empty())
                && (t != COAT_SUB || ps.coat.is_some() || !ps.coat_stock.is_empty())
                && best.is_none_or(|(_, h)| have < h)
            {
                best = Some((t, have));
            }
        }
        best.map(|(t, _)| {
            Task::Sub(SubTask {
                plant: p,
                sub: t,
                code: String::new(),
            })
        })
    }

    /// Emits the task's next event; returns the task and the delay to its next step.
    fn run(&mut self, task: Task) -> Option<(Task, i64)> {
        match task {
            Task::Raw(t) => self.step_raw(t).map(|(t, d)| (Task::Raw(t), d)),
            Task::Xform(t) => self.step_xform(t).map(|(t, d)| (Task::Xform(t), d)),
            Task::Sub(t) => self.step_sub(t).map(|(t, d)| (Task::Sub(t), d)),
            Task::Fp(t) => self.step_fp(t).map(|(t, d)| (Task::Fp(t), d)),
            Task::Pallet(t) => self.step_pallet(t).map(|(t, d)| (Task::Pallet(t), d)),
            Task::Shelf(t) => self.step_shelf(t).map(|(t, d)| (Task::Shelf(t), d)),
        }
    }

    fn step_raw(&mut self, mut t: RawTask) -> Option<(RawTask, i64)> {
        let seq = self.next_seq();
        self.key.clear();
        self.key.push_str(&t.code);
        let now = self.clock;
        let mat = &MATERIALS[t.mat];
        let sup = &self.w.parties[self.w.suppliers[t.sup]];
        let plant = &self.w.plants[t.plant];
        let sc = &mut self.sc;
        let rng = &mut self.rng;
        quantity(&mut sc.qty, t.qty, mat.unit);
        let next = match t.step {
            0 => {
                sc.obj.clear();
                sc.obj.push_str("{\"product_id\":\"");
                sc.obj.push_str(&self.w.supplier_gtin[t.sup].g14);
                sc.obj.push_str("\",\"batch_number\":");
                push_json_str(&mut sc.obj, &t.lot);
                sc.obj.push_str(",\"production_date\":\"");
                push_date(&mut sc.obj, now, sup.tz);
                sc.obj.push_str("\",\"model\":");
                push_json_str(&mut sc.obj, mat.name);
                sc.obj.push_str(",\"spec\":");
                push_json_str(&mut sc.obj, mat.spec);
                if mat.expiry_days > 0 {
                    sc.obj.push_str(",\"expiry_date\":\"");
                    push_date(&mut sc.obj, now + mat.expiry_days * DAY, sup.tz);
                    sc.obj.push('"');
                }
                sc.obj.push('}');
                sc.attr.clear();
                sc.attr.push_str("{\"material\":");
                push_json_str(&mut sc.attr, mat.name);
                sc.attr.push_str(",\"purchase_order\":\"PO-");
                push_padded(&mut sc.attr, 4_500_000 + seq % 1_000_000, 7);
                sc.attr.push_str("\"}");
                write_event(
                    &mut self.buf,
                    seq,
                    &Ev {
                        event_type: "production",
                        short: "prod",
                        source: &sup.id,
                        time: now,
                        tz: sup.tz,
                        secs: sup.secs,
                        trace_code: Some(&t.code),
                        participant: &sup.frag,
                        object: Some(&sc.obj),
                        quantity: Some(&sc.qty),
                        site: Some(&sup.id),
                        location: Some(&sup.loc),
                        attributes: Some(&sc.attr),
                        ..Ev::default()
                    },
                );
                Some(rng.range(20 * MIN, HOUR))
            }
            1 => {
                person(
                    &mut sc.op,
                    "lab",
                    &SUPPLIER_DEFS[t.sup].lot_prefix.to_ascii_lowercase(),
                    rng.range(1, 12),
                );
                report(
                    &mut sc.report,
                    "Certificate of analysis",
                    &t.code,
                    now,
                    "pass",
                    mat.standard,
                );
                sc.misc.clear();
                sc.misc.push_str("coa-");
                push_pct(&mut sc.misc, &t.lot);
                sc.misc.push_str(".pdf");
                attachment(&mut sc.att, &sc.misc, &sc.report, "application/pdf", false);
                sc.attr.clear();
                sc.attr
                    .push_str("{\"inspection\":\"outgoing\",\"standard\":");
                push_json_str(&mut sc.attr, mat.standard);
                sc.attr.push('}');
                write_event(
                    &mut self.buf,
                    seq,
                    &Ev {
                        event_type: "quality_check",
                        short: "qc",
                        source: &sup.id,
                        time: now,
                        tz: sup.tz,
                        secs: sup.secs,
                        trace_code: Some(&t.code),
                        participant: &sup.frag,
                        operator: Some(&sc.op),
                        result: Some("\"pass\""),
                        site: Some(&sup.id),
                        location: Some(&sup.loc),
                        attributes: Some(&sc.attr),
                        attachments: Some(&sc.att),
                        ..Ev::default()
                    },
                );
                Some(rng.range(30 * MIN, 3 * HOUR))
            }
            2 | 6 => {
                // 2: to the plant; 6: a rejected batch goes back to the supplier.
                let back = t.step == 6;
                let (ci, mode) = route(sup.region, plant.region, false, true);
                let carrier = &self.w.parties[self.w.carriers[ci]];
                let (to, from) = if back {
                    (sup, &self.w.parties[plant.mfr])
                } else {
                    (&self.w.parties[plant.mfr], sup)
                };
                sc.attr.clear();
                sc.attr.push_str("{\"mode\":\"");
                sc.attr.push_str(mode.as_str());
                sc.attr.push_str("\",\"shipment_id\":\"SHP-");
                push_padded(&mut sc.attr, seq, 9);
                sc.attr.push_str("\",\"destination\":");
                push_json_str(&mut sc.attr, &to.id);
                if back {
                    sc.attr
                        .push_str(",\"reason\":\"nonconforming material returned to supplier\"");
                }
                sc.attr.push('}');
                write_event(
                    &mut self.buf,
                    seq,
                    &Ev {
                        event_type: "transport",
                        short: "ship",
                        source: &carrier.id,
                        time: now,
                        tz: carrier.tz,
                        secs: carrier.secs,
                        trace_code: Some(&t.code),
                        participant: &carrier.frag,
                        counterparty: Some(&to.frag),
                        quantity: Some(&sc.qty),
                        location: Some(&from.loc),
                        attributes: Some(&sc.attr),
                        ..Ev::default()
                    },
                );
                if back {
                    None
                } else {
                    let (lo, hi) = if mode == Mode::Road {
                        (2 * HOUR, 10 * HOUR)
                    } else {
                        mode.transit()
                    };
                    Some(rng.range(lo, hi))
                }
            }
            3 | 5 => {
                let inbound = t.step == 3;
                let wh = &self.w.parties[plant.wh];
                sc.attr.clear();
                if inbound {
                    sc.attr.push_str("{\"bin\":\"R");
                    push_padded(&mut sc.attr, rng.range(1, 40) as u64, 2);
                    sc.attr.push_str("-0");
                    push_u64(&mut sc.attr, rng.range(1, 6) as u64);
                    sc.attr.push_str("\"}");
                } else {
                    sc.attr.push_str("{\"destination\":");
                    let line = if t.mat == COAT {
                        SUBS[COAT_SUB].line
                    } else {
                        PARTS.iter().find(|p| p.mat == t.mat).map_or(0, |p| p.line)
                    };
                    push_json_str(&mut sc.attr, &plant.lines[line]);
                    sc.attr.push('}');
                }
                write_event(
                    &mut self.buf,
                    seq,
                    &Ev {
                        event_type: if inbound {
                            "warehouse_in"
                        } else {
                            "warehouse_out"
                        },
                        short: if inbound { "whin" } else { "whout" },
                        source: &plant.id,
                        time: now,
                        tz: wh.tz,
                        secs: false,
                        trace_code: Some(&t.code),
                        participant: &wh.frag,
                        quantity: Some(&sc.qty),
                        operator: Some({
                            person(&mut sc.op, "wh", &plant.code, rng.range(1, 25));
                            &sc.op
                        }),
                        site: Some(&plant.raw_wh),
                        location: Some(&wh.loc),
                        attributes: Some(&sc.attr),
                        ..Ev::default()
                    },
                );
                if inbound {
                    Some(rng.range(20 * MIN, 2 * HOUR))
                } else {
                    let ps = &mut self.st.plants[t.plant];
                    ps.raw_inflight[t.mat] -= 1;
                    if t.mat == COAT {
                        ps.coat_stock
                            .push_back((std::mem::take(&mut t.code), t.qty * 1000));
                    } else {
                        ps.raw_stock[t.mat].push_back(std::mem::take(&mut t.code));
                    }
                    None
                }
            }
            _ => {
                // 4: incoming inspection at the plant.
                let iqc = &self.w.parties[plant.iqc];
                let result = qc_result(rng, 0.015, 0.015);
                person(&mut sc.op, "iqc", &plant.code, rng.range(1, 12));
                let sample = [8, 13, 20, 32, 50][rng.idx(5)];
                sc.misc.clear();
                sc.misc.push_str("sample size ");
                push_u64(&mut sc.misc, sample);
                sc.misc.push_str(", AQL 1.0, ");
                sc.misc.push_str(mat.standard);
                report(
                    &mut sc.report,
                    "Incoming inspection report",
                    &t.code,
                    now,
                    result.trim_matches('"'),
                    &sc.misc,
                );
                sc.misc.clear();
                sc.misc.push_str("iqc-");
                push_pct(&mut sc.misc, &t.lot);
                sc.misc.push_str(".pdf");
                attachment(
                    &mut sc.att,
                    &sc.misc,
                    &sc.report,
                    "application/pdf",
                    rng.chance(0.02),
                );
                sc.attr.clear();
                sc.attr
                    .push_str("{\"inspection\":\"incoming\",\"aql\":1.0,\"sample_size\":");
                push_u64(&mut sc.attr, sample);
                sc.attr.push_str(",\"supplier\":");
                push_json_str(&mut sc.attr, &sup.id);
                if result != "\"pass\"" {
                    sc.attr.push_str(",\"defect\":");
                    push_json_str(
                        &mut sc.attr,
                        rng.pick::<&str>(&[
                            "dimension out of tolerance",
                            "surface contamination",
                            "certificate mismatch",
                            "moisture above limit",
                        ]),
                    );
                }
                sc.attr.push('}');
                sc.misc.clear();
                sc.misc.push_str(&plant.code);
                sc.misc.push_str("-iqc-lab-01");
                write_event(
                    &mut self.buf,
                    seq,
                    &Ev {
                        event_type: "quality_check",
                        short: "iqc",
                        source: &iqc.id,
                        time: now,
                        tz: iqc.tz,
                        trace_code: Some(&t.code),
                        participant: &iqc.frag,
                        operator: Some(&sc.op),
                        result: Some(result),
                        site: Some(&plant.raw_wh),
                        device_id: Some(&sc.misc),
                        location: Some(&iqc.loc),
                        attributes: Some(&sc.attr),
                        attachments: Some(&sc.att),
                        ..Ev::default()
                    },
                );
                if result == "\"fail\"" {
                    t.step = 5; // becomes 6 below: ship back
                    self.st.plants[t.plant].raw_inflight[t.mat] -= 1;
                    Some(rng.range(2 * HOUR, 12 * HOUR))
                } else {
                    Some(rng.range(30 * MIN, 4 * HOUR))
                }
            }
        };
        let delay = next?;
        t.step += 1;
        Some((t, delay))
    }

    fn step_xform(&mut self, mut t: XformTask) -> Option<(XformTask, i64)> {
        let seq = self.next_seq();
        let now = self.clock;
        let part = &PARTS[t.part];
        let plant = &self.w.plants[t.plant];
        let mfr = &self.w.parties[plant.mfr];
        let sc = &mut self.sc;
        let rng = &mut self.rng;
        if t.next == usize::MAX {
            // The transformation itself: consume raw batches, create lots.
            let stock = &mut self.st.plants[t.plant].raw_stock[part.mat];
            let pattern = if rng.chance(0.7) {
                part.pattern
            } else {
                Pattern::Plain
            };
            let (n_in, n_out) = match pattern {
                Pattern::Split => (1, rng.range(2, 4) as usize),
                Pattern::Merge => (rng.range(2, 3) as usize, 1),
                Pattern::Plain => (1, 1),
            };
            let n_in = n_in.min(stock.len()).max(1);
            let pattern = if n_in == 1 && n_out == 1 {
                Pattern::Plain
            } else {
                pattern
            };
            sc.inputs.clear();
            for _ in 0..n_in {
                if let Some(c) = stock.pop_front() {
                    sc.inputs.push(c);
                }
            }
            for _ in 0..n_out {
                self.st.lots += 1;
                sc.misc.clear();
                sc.misc.push_str(&plant.code.to_ascii_uppercase());
                sc.misc.push('-');
                push_yymmdd(&mut sc.misc, now, mfr.tz);
                sc.misc.push('-');
                push_padded(&mut sc.misc, self.st.lots % 10_000_000, 5);
                t.outputs.push(make_code(
                    rng,
                    &self.w.part_gtin[t.part],
                    "10",
                    &sc.misc,
                    None,
                ));
            }
            self.st.plants[t.plant].lots_pending[t.part] += n_out;
            let per_lot = rng.range(40, 200);
            quantity(&mut sc.qty, per_lot * n_out as i64, "pcs");
            person(&mut sc.op, "op", &plant.code, rng.range(1, 80));
            sc.attr.clear();
            sc.attr.push_str("{\"process\":");
            push_json_str(&mut sc.attr, part.process);
            sc.attr.push_str(",\"pattern\":\"");
            sc.attr.push_str(match pattern {
                Pattern::Split => "split",
                Pattern::Merge => "merge",
                Pattern::Plain => "convert",
            });
            sc.attr.push_str("\",\"work_order\":\"MO-");
            push_padded(&mut sc.attr, seq, 9);
            sc.attr.push_str("\",\"part\":");
            push_json_str(&mut sc.attr, part.name);
            sc.attr.push('}');
            sc.code.clear();
            sc.code.push_str(&plant.code);
            sc.code.push_str("-l");
            push_u64(&mut sc.code, part.line as u64 + 1);
            sc.code.push('-');
            sc.code.push_str(part.device);
            write_event(
                &mut self.buf,
                seq,
                &Ev {
                    event_type: "transformation",
                    short: "xform",
                    source: &plant.id,
                    time: now,
                    tz: mfr.tz,
                    inputs: Some(&sc.inputs),
                    outputs: Some(&t.outputs),
                    participant: &mfr.frag,
                    quantity: Some(&sc.qty),
                    operator: Some(&sc.op),
                    site: Some(&plant.lines[part.line]),
                    device_id: Some(&sc.code),
                    location: Some(&mfr.loc),
                    attributes: Some(&sc.attr),
                    ..Ev::default()
                },
            );
            self.key.clear();
            if let Some(first) = sc.inputs.first() {
                self.key.push_str(first);
            }
            t.next = 0;
            return Some((t, rng.range(10 * MIN, 40 * MIN)));
        }
        // In-process sampling inspection of one output lot.
        let i = t.next;
        let result = qc_result(rng, 0.01, 0.01);
        person(&mut sc.op, "qc", &plant.code, rng.range(1, 30));
        sc.code.clear();
        sc.code.push_str(&plant.code);
        sc.code.push_str("-l");
        push_u64(&mut sc.code, part.line as u64 + 1);
        sc.code.push_str("-cmm-01");
        sc.attr.clear();
        sc.attr
            .push_str("{\"inspection\":\"in-process\",\"sample_size\":5,\"cpk\":");
        push_fixed(&mut sc.attr, 1.33 + rng.gauss() * 0.12, 2);
        sc.attr.push('}');
        let with_report = rng.chance(0.5);
        if with_report {
            report(
                &mut sc.report,
                "In-process inspection",
                &t.outputs[i],
                now,
                result.trim_matches('"'),
                part.name,
            );
            attachment(
                &mut sc.att,
                "inspection-record.pdf",
                &sc.report,
                "application/pdf",
                false,
            );
        }
        write_event(
            &mut self.buf,
            seq,
            &Ev {
                event_type: "quality_check",
                short: "qc",
                source: &plant.id,
                time: now,
                tz: mfr.tz,
                trace_code: Some(&t.outputs[i]),
                participant: &mfr.frag,
                operator: Some(&sc.op),
                result: Some(result),
                site: Some(&plant.lines[part.line]),
                device_id: Some(&sc.code),
                attributes: Some(&sc.attr),
                attachments: with_report.then_some(sc.att.as_str()),
                ..Ev::default()
            },
        );
        self.key.clear();
        self.key.push_str(&t.outputs[i]);
        let ps = &mut self.st.plants[t.plant];
        ps.lots_pending[t.part] -= 1;
        let code = std::mem::take(&mut t.outputs[i]);
        if result != "\"fail\"" {
            let (lo, hi) = match part.pattern {
                Pattern::Split => (60, 250),
                Pattern::Merge => (250, 600),
                Pattern::Plain => (150, 500),
            };
            ps.lots[t.part].push_back((code, rng.range(lo, hi) as u32));
        }
        t.next += 1;
        (t.next < t.outputs.len()).then(|| {
            let d = rng.range(3 * MIN, 15 * MIN);
            (t, d)
        })
    }

    fn step_sub(&mut self, mut t: SubTask) -> Option<(SubTask, i64)> {
        let seq = self.next_seq();
        let now = self.clock;
        let sub = &SUBS[t.sub];
        let plant = &self.w.plants[t.plant];
        let sc = &mut self.sc;
        let rng = &mut self.rng;
        sc.code.clear();
        sc.code.push_str(&plant.code);
        sc.code.push_str("-l");
        push_u64(&mut sc.code, sub.line as u64 + 1);
        sc.code.push('-');
        if t.code.is_empty() {
            // Assembly from the current part lots.
            let asm = &self.w.parties[plant.asm];
            let ps = &mut self.st.plants[t.plant];
            sc.inputs.clear();
            for &q in sub.parts {
                if let Some(front) = ps.lots[q].front_mut() {
                    sc.inputs.push(front.0.clone());
                    front.1 -= 1;
                    if front.1 == 0 {
                        ps.lots[q].pop_front();
                    }
                }
            }
            // Powder coating after welding: from the open bulk batch (the next one is opened
            // when it runs out).
            sc.attr.clear();
            if t.sub == COAT_SUB {
                if ps.coat.is_none() {
                    ps.coat = ps.coat_stock.pop_front().map(|(c, g)| (c, g, g));
                }
                if let Some((code, left, _)) = &mut ps.coat {
                    let used = rng.range(COAT_USE_G.0, COAT_USE_G.1);
                    sc.inputs.push(code.clone());
                    *left -= used;
                    if *left <= 0 {
                        ps.coat = None;
                    }
                    sc.attr
                        .push_str("{\"process\":\"welding and powder coating\",\"powder_kg\":");
                    push_fixed(&mut sc.attr, used as f64 / 1000.0, 3);
                    sc.attr.push('}');
                }
            }
            ps.subs_pending[t.sub] += 1;
            sc.misc.clear();
            State::serial(&mut self.st, rng, &mut sc.misc);
            t.code = make_code(rng, &self.w.sub_gtin[t.sub], "21", &sc.misc, None);
            sc.obj.clear();
            sc.obj.push_str("{\"product_id\":\"");
            sc.obj.push_str(&self.w.sub_gtin[t.sub].g14);
            sc.obj.push_str("\",\"production_line\":");
            push_json_str(&mut sc.obj, &plant.lines[sub.line]);
            sc.obj.push_str(",\"production_date\":\"");
            push_date(&mut sc.obj, now, asm.tz);
            sc.obj.push_str("\",\"model\":");
            push_json_str(&mut sc.obj, sub.name);
            sc.obj.push('}');
            person(&mut sc.op, "op", &plant.code, rng.range(1, 80));
            sc.code.push_str(sub.asm_device);
            write_event(
                &mut self.buf,
                seq,
                &Ev {
                    event_type: "assembly",
                    short: "asm",
                    source: &plant.id,
                    time: now,
                    tz: asm.tz,
                    trace_code: Some(&t.code),
                    inputs: Some(&sc.inputs),
                    participant: &asm.frag,
                    object: Some(&sc.obj),
                    operator: Some(&sc.op),
                    site: Some(&plant.lines[sub.line]),
                    device_id: Some(&sc.code),
                    location: Some(&asm.loc),
                    attributes: Some(sc.attr.as_str()).filter(|a| !a.is_empty()),
                    ..Ev::default()
                },
            );
            self.key.clear();
            self.key.push_str(&t.code);
            return Some((t, rng.range(3 * MIN, 20 * MIN)));
        }
        // End-of-line test.
        let mfr = &self.w.parties[plant.mfr];
        let result = qc_result(rng, 0.02, 0.005);
        person(&mut sc.op, "qc", &plant.code, rng.range(1, 30));
        sc.code.push_str(sub.qc_device);
        sc.attr.clear();
        sc.attr.push_str("{\"inspection\":\"end-of-line\"");
        match t.sub {
            0 => {
                sc.attr.push_str(",\"torque_nm\":");
                push_fixed(&mut sc.attr, 85.0 + rng.gauss() * 0.9, 1);
                sc.attr.push_str(",\"noise_db\":");
                push_fixed(&mut sc.attr, 52.0 + rng.gauss() * 0.8, 1);
            }
            1 => {
                sc.attr.push_str(",\"voltage_v\":");
                push_fixed(&mut sc.attr, 36.5 + rng.gauss() * 0.1, 2);
                sc.attr.push_str(",\"insulation_mohm\":");
                push_u64(&mut sc.attr, rng.range(450, 900) as u64);
                sc.attr.push_str(",\"capacity_ah\":");
                push_fixed(&mut sc.attr, 14.0 + rng.gauss() * 0.08, 2);
            }
            2 => {
                sc.attr.push_str(",\"alignment_mm\":");
                push_fixed(&mut sc.attr, (rng.gauss() * 0.15).abs(), 2);
                sc.attr.push_str(",\"standard\":\"ISO 4210-6\"");
            }
            _ => {
                sc.attr.push_str(",\"firmware\":\"3.2.");
                push_u64(&mut sc.attr, rng.range(5, 7) as u64);
                sc.attr.push_str("\",\"self_test\":\"ok\"");
            }
        }
        sc.attr.push('}');
        let with_report = rng.chance(0.5);
        if with_report {
            report(
                &mut sc.report,
                "End-of-line test log",
                &t.code,
                now,
                result.trim_matches('"'),
                &sc.attr,
            );
            attachment(
                &mut sc.att,
                "eol-test-log.pdf",
                &sc.report,
                "application/pdf",
                false,
            );
        }
        write_event(
            &mut self.buf,
            seq,
            &Ev {
                event_type: "quality_check",
                short: "qc",
                source: &plant.id,
                time: now,
                tz: mfr.tz,
                trace_code: Some(&t.code),
                participant: &mfr.frag,
                operator: Some(&sc.op),
                result: Some(result),
                site: Some(&plant.lines[sub.line]),
                device_id: Some(&sc.code),
                location: Some(&mfr.loc),
                attributes: Some(&sc.attr),
                attachments: with_report.then_some(sc.att.as_str()),
                ..Ev::default()
            },
        );
        self.key.clear();
        self.key.push_str(&t.code);
        let ps = &mut self.st.plants[t.plant];
        ps.subs_pending[t.sub] -= 1;
        if result != "\"fail\"" {
            ps.subs[t.sub].push_back(t.code);
        }
        None
    }

    fn step_fp(&mut self, mut t: FpTask) -> Option<(FpTask, i64)> {
        let seq = self.next_seq();
        let now = self.clock;
        let model = &MODELS[t.model];
        let plant = &self.w.plants[t.plant];
        let sc = &mut self.sc;
        let rng = &mut self.rng;
        self.key.clear();
        self.key.push_str(&t.code);
        let next = match t.step {
            0 => {
                let asm = &self.w.parties[plant.asm];
                let ps = &mut self.st.plants[t.plant];
                sc.inputs.clear();
                for s in ps.subs.iter_mut() {
                    if let Some(c) = s.pop_front() {
                        sc.inputs.push(c);
                    }
                }
                sc.misc.clear();
                State::serial(&mut self.st, rng, &mut sc.misc);
                sc.code.clear();
                sc.code.push_str("WO");
                push_yymmdd(&mut sc.code, now, asm.tz);
                push_padded(&mut sc.code, seq % 10_000, 4);
                t.code = make_code(
                    rng,
                    &self.w.model_gtin[t.model],
                    "21",
                    &sc.misc,
                    Some(&sc.code),
                );
                sc.obj.clear();
                sc.obj.push_str("{\"product_id\":\"");
                sc.obj.push_str(&self.w.model_gtin[t.model].g14);
                sc.obj.push_str("\",\"batch_number\":\"");
                sc.obj.push_str(&sc.code);
                sc.obj.push_str("\",\"production_line\":");
                push_json_str(&mut sc.obj, &plant.lines[3]);
                sc.obj.push_str(",\"production_date\":\"");
                push_date(&mut sc.obj, now, asm.tz);
                sc.obj.push_str("\",\"model\":");
                push_json_str(&mut sc.obj, model.name);
                sc.obj.push_str(",\"spec\":");
                push_json_str(&mut sc.obj, model.spec);
                sc.obj.push('}');
                person(&mut sc.op, "op", &plant.code, rng.range(1, 80));
                sc.misc.clear();
                sc.misc.push_str(&plant.code);
                sc.misc.push_str("-l4-torque-01");
                write_event(
                    &mut self.buf,
                    seq,
                    &Ev {
                        event_type: "assembly",
                        short: "asm",
                        source: &plant.id,
                        time: now,
                        tz: asm.tz,
                        trace_code: Some(&t.code),
                        inputs: Some(&sc.inputs),
                        participant: &asm.frag,
                        object: Some(&sc.obj),
                        operator: Some(&sc.op),
                        site: Some(&plant.lines[3]),
                        device_id: Some(&sc.misc),
                        location: Some(&asm.loc),
                        ..Ev::default()
                    },
                );
                self.key.push_str(&t.code);
                Some(rng.range(10 * MIN, 45 * MIN))
            }
            1 => {
                let mfr = &self.w.parties[plant.mfr];
                let result = if t.reworked {
                    "\"pass\""
                } else {
                    qc_result(rng, 0.03, 0.02)
                };
                person(&mut sc.op, "inspector", &plant.code, rng.range(1, 24));
                sc.misc.clear();
                sc.misc.push_str(&plant.code);
                sc.misc.push_str("-l4-bike-eol-01");
                sc.attr.clear();
                sc.attr
                    .push_str("{\"inspection\":\"final\",\"standard\":\"");
                sc.attr.push_str(plant.region.standard());
                sc.attr.push_str("\",\"brake_force_n\":");
                push_u64(&mut sc.attr, (420.0 + rng.gauss() * 8.0) as u64);
                sc.attr.push_str(",\"motor_power_w\":");
                push_u64(&mut sc.attr, (250.0 + rng.gauss() * 3.0) as u64);
                sc.attr.push_str(",\"battery_voltage_v\":");
                push_fixed(&mut sc.attr, 36.4 + rng.gauss() * 0.15, 2);
                if t.reworked {
                    sc.attr.push_str(",\"retest\":true");
                }
                if result != "\"pass\"" {
                    sc.attr.push_str(",\"finding\":");
                    push_json_str(
                        &mut sc.attr,
                        rng.pick::<&str>(&[
                            "brake rub",
                            "display flicker",
                            "cable routing",
                            "paint scratch on top tube",
                            "spoke tension",
                        ]),
                    );
                }
                sc.attr.push('}');
                report(
                    &mut sc.report,
                    "Final inspection report",
                    &t.code,
                    now,
                    result.trim_matches('"'),
                    &sc.attr,
                );
                attachment(
                    &mut sc.att,
                    "qc-report.pdf",
                    &sc.report,
                    "application/pdf",
                    rng.chance(0.02),
                );
                write_event(
                    &mut self.buf,
                    seq,
                    &Ev {
                        event_type: "quality_check",
                        short: "qc",
                        source: &plant.id,
                        time: now,
                        tz: mfr.tz,
                        trace_code: Some(&t.code),
                        participant: &mfr.frag,
                        operator: Some(&sc.op),
                        result: Some(result),
                        site: Some(&plant.lines[3]),
                        device_id: Some(&sc.misc),
                        location: Some(&mfr.loc),
                        attributes: Some(&sc.attr),
                        attachments: Some(&sc.att),
                        ..Ev::default()
                    },
                );
                if result == "\"fail\"" {
                    t.reworked = true;
                    t.step = 0; // +1 below: test again after rework
                    Some(rng.range(HOUR, 6 * HOUR))
                } else {
                    Some(rng.range(10 * MIN, HOUR))
                }
            }
            2 | 3 => {
                let inbound = t.step == 2;
                let wh = &self.w.parties[plant.wh];
                person(&mut sc.op, "wh", &plant.code, rng.range(1, 25));
                sc.attr.clear();
                if inbound {
                    sc.attr.push_str("{\"bin\":\"F");
                    push_padded(&mut sc.attr, rng.range(1, 60) as u64, 2);
                    sc.attr.push_str("-0");
                    push_u64(&mut sc.attr, rng.range(1, 5) as u64);
                    sc.attr.push_str("\"}");
                } else {
                    sc.attr.push_str("{\"sales_order\":\"SO-");
                    push_padded(&mut sc.attr, 7_000_000 + seq % 1_000_000, 7);
                    sc.attr.push_str("\"}");
                }
                write_event(
                    &mut self.buf,
                    seq,
                    &Ev {
                        event_type: if inbound {
                            "warehouse_in"
                        } else {
                            "warehouse_out"
                        },
                        short: if inbound { "whin" } else { "whout" },
                        source: &plant.id,
                        time: now,
                        tz: wh.tz,
                        trace_code: Some(&t.code),
                        participant: &wh.frag,
                        operator: Some(&sc.op),
                        site: Some(&plant.fg_wh),
                        location: Some(&wh.loc),
                        attributes: Some(&sc.attr),
                        ..Ev::default()
                    },
                );
                if !inbound {
                    Some(rng.range(15 * MIN, 2 * HOUR))
                } else if rng.chance(0.35) {
                    // Shipped alone to a retailer.
                    let dc = *rng.pick(plant.dc_choices);
                    t.retailer = *rng.pick(&self.w.dcs[dc].retailers);
                    Some(rng.range(30 * MIN, 4 * HOUR))
                } else {
                    // Waits for a pallet.
                    let ps = &mut self.st.plants[t.plant];
                    ps.pallet.push(std::mem::take(&mut t.code));
                    ps.pallet_models.push(t.model);
                    if ps.pallet.len() >= ps.pallet_target {
                        let items = std::mem::take(&mut ps.pallet);
                        let models = std::mem::take(&mut ps.pallet_models);
                        ps.pallet_target = rng.range(6, 10) as usize;
                        let dc = *rng.pick(plant.dc_choices);
                        let code = sscc(&mut self.st, &self.w, t.plant);
                        let due = now + rng.range(15 * MIN, HOUR);
                        self.st.schedule(
                            Task::Pallet(PalletTask {
                                plant: t.plant,
                                code,
                                items,
                                models,
                                dc,
                                step: 0,
                            }),
                            due,
                        );
                    }
                    return None;
                }
            }
            4 => {
                let rt = &self.w.parties[t.retailer];
                let (ci, mode) = route(plant.region, rt.region, true, false);
                let carrier = &self.w.parties[self.w.carriers[ci]];
                sc.attr.clear();
                sc.attr.push_str("{\"mode\":\"");
                sc.attr.push_str(mode.as_str());
                sc.attr.push_str("\",\"tracking_no\":\"");
                sc.attr.push_str(&carrier.id[..2].to_ascii_uppercase());
                push_padded(&mut sc.attr, 100_000_000 + seq % 900_000_000, 10);
                sc.attr.push_str("\"}");
                write_event(
                    &mut self.buf,
                    seq,
                    &Ev {
                        event_type: "transport",
                        short: "ship",
                        source: &carrier.id,
                        time: now,
                        tz: carrier.tz,
                        secs: carrier.secs,
                        trace_code: Some(&t.code),
                        participant: &carrier.frag,
                        counterparty: Some(&rt.frag),
                        location: Some(&self.w.parties[plant.wh].loc),
                        attributes: Some(&sc.attr),
                        ..Ev::default()
                    },
                );
                // A parcel abroad flies: days, not hours (a bike at a retailer on another
                // continent hours after it left the plant would be a clone, see the
                // `clone_suspects` table).
                let (lo, hi) = if plant.region == rt.region {
                    Mode::Parcel.transit()
                } else {
                    (2 * DAY, 6 * DAY)
                };
                Some(rng.range(lo, hi))
            }
            _ => {
                // 5, 6: retail and sale, shared with palletised bikes.
                let mut shelf = ShelfTask {
                    code: std::mem::take(&mut t.code),
                    model: t.model,
                    retailer: t.retailer,
                    step: t.step - 5,
                };
                let next = self.step_shelf_inner(&mut shelf, seq);
                t.code = shelf.code;
                return next.map(|d| {
                    t.step += 1;
                    (t, d)
                });
            }
        };
        let delay = next?;
        t.step += 1;
        Some((t, delay))
    }

    fn step_pallet(&mut self, mut t: PalletTask) -> Option<(PalletTask, i64)> {
        let seq = self.next_seq();
        let now = self.clock;
        let plant = &self.w.plants[t.plant];
        let wh = &self.w.parties[plant.wh];
        let dc = &self.w.parties[self.w.dcs[t.dc].party];
        self.key.clear();
        self.key.push_str(&t.code);
        let sc = &mut self.sc;
        let rng = &mut self.rng;
        person(&mut sc.op, "wh", &plant.code, rng.range(1, 25));
        let next = match t.step {
            0 => {
                quantity(&mut sc.qty, t.items.len() as i64, "pcs");
                sc.attr.clear();
                sc.attr
                    .push_str("{\"packaging\":\"pallet\",\"gross_weight_kg\":");
                push_u64(&mut sc.attr, 25 + 31 * t.items.len() as u64);
                sc.attr.push_str(",\"destination\":\"");
                sc.attr.push_str(&dc.id);
                sc.attr.push_str("\"}");
                write_event(
                    &mut self.buf,
                    seq,
                    &Ev {
                        event_type: "assembly",
                        short: "pack",
                        source: &plant.id,
                        time: now,
                        tz: wh.tz,
                        trace_code: Some(&t.code),
                        inputs: Some(&t.items),
                        participant: &wh.frag,
                        quantity: Some(&sc.qty),
                        operator: Some(&sc.op),
                        site: Some(&plant.fg_wh),
                        location: Some(&wh.loc),
                        attributes: Some(&sc.attr),
                        ..Ev::default()
                    },
                );
                Some(rng.range(30 * MIN, 4 * HOUR))
            }
            1 => {
                sc.attr.clear();
                sc.attr.push_str("{\"dock\":\"D");
                push_padded(&mut sc.attr, rng.range(1, 12) as u64, 2);
                sc.attr.push_str("\"}");
                write_event(
                    &mut self.buf,
                    seq,
                    &Ev {
                        event_type: "warehouse_out",
                        short: "whout",
                        source: &plant.id,
                        time: now,
                        tz: wh.tz,
                        trace_code: Some(&t.code),
                        participant: &wh.frag,
                        operator: Some(&sc.op),
                        site: Some(&plant.fg_wh),
                        location: Some(&wh.loc),
                        attributes: Some(&sc.attr),
                        ..Ev::default()
                    },
                );
                Some(rng.range(30 * MIN, 2 * HOUR))
            }
            2 => {
                let (ci, mode) = route(plant.region, dc.region, false, false);
                let carrier = &self.w.parties[self.w.carriers[ci]];
                quantity(&mut sc.qty, 1, "pallet");
                sc.attr.clear();
                sc.attr.push_str("{\"mode\":\"");
                sc.attr.push_str(mode.as_str());
                sc.attr.push_str("\",\"shipment_id\":\"SHP-");
                push_padded(&mut sc.attr, seq, 9);
                sc.attr.push_str("\",\"destination\":\"");
                sc.attr.push_str(&dc.id);
                sc.attr.push_str("\"}");
                write_event(
                    &mut self.buf,
                    seq,
                    &Ev {
                        event_type: "transport",
                        short: "ship",
                        source: &carrier.id,
                        time: now,
                        tz: carrier.tz,
                        secs: carrier.secs,
                        trace_code: Some(&t.code),
                        participant: &carrier.frag,
                        counterparty: Some(&dc.frag),
                        quantity: Some(&sc.qty),
                        location: Some(&wh.loc),
                        attributes: Some(&sc.attr),
                        ..Ev::default()
                    },
                );
                let (lo, hi) = mode.transit();
                Some(rng.range(lo, hi))
            }
            _ => {
                sc.attr.clear();
                sc.attr.push_str("{\"items\":");
                push_u64(&mut sc.attr, t.items.len() as u64);
                sc.attr.push('}');
                write_event(
                    &mut self.buf,
                    seq,
                    &Ev {
                        event_type: "warehouse_in",
                        short: "whin",
                        source: &dc.id,
                        time: now,
                        tz: dc.tz,
                        secs: dc.secs,
                        trace_code: Some(&t.code),
                        participant: &dc.frag,
                        site: Some(&dc.id),
                        location: Some(&dc.loc),
                        attributes: Some(&sc.attr),
                        ..Ev::default()
                    },
                );
                // Unpacked: every bike goes to a retailer of this distribution centre.
                for (code, model) in t.items.drain(..).zip(t.models.drain(..)) {
                    let retailer = *rng.pick(&self.w.dcs[t.dc].retailers);
                    let due = now + rng.range(HOUR, 24 * HOUR);
                    self.st.schedule(
                        Task::Shelf(ShelfTask {
                            code,
                            model,
                            retailer,
                            step: 0,
                        }),
                        due,
                    );
                }
                None
            }
        };
        let delay = next?;
        t.step += 1;
        Some((t, delay))
    }

    fn step_shelf(&mut self, mut t: ShelfTask) -> Option<(ShelfTask, i64)> {
        let seq = self.next_seq();
        let delay = self.step_shelf_inner(&mut t, seq)?;
        t.step += 1;
        Some((t, delay))
    }

    /// Step 0: `retail` (received and listed at the retailer); step 1: `sale`.
    fn step_shelf_inner(&mut self, t: &mut ShelfTask, seq: u64) -> Option<i64> {
        self.key.clear();
        self.key.push_str(&t.code);
        let now = self.clock;
        let rt = &self.w.parties[t.retailer];
        let sc = &mut self.sc;
        let rng = &mut self.rng;
        if t.step == 0 {
            sc.attr.clear();
            sc.attr.push_str("{\"display_area\":\"");
            sc.attr
                .push_str(rng.pick::<&str>(&["showroom", "window", "backroom", "demo fleet"]));
            sc.attr.push_str("\",\"list_price\":");
            push_u64(
                &mut sc.attr,
                u64::from(MODELS[t.model].prices[rt.region as usize]),
            );
            sc.attr.push_str(",\"currency\":\"");
            sc.attr.push_str(rt.region.currency());
            sc.attr.push_str("\"}");
            write_event(
                &mut self.buf,
                seq,
                &Ev {
                    event_type: "retail",
                    short: "retail",
                    source: &rt.id,
                    time: now,
                    tz: rt.tz,
                    secs: rt.secs,
                    trace_code: Some(&t.code),
                    participant: &rt.frag,
                    site: Some(&rt.id),
                    location: Some(&rt.loc),
                    attributes: Some(&sc.attr),
                    ..Ev::default()
                },
            );
            // Most bikes sell within days, some within hours (reserved online); 10 % stay.
            let quick = rng.chance(0.5);
            rng.chance(0.9).then(|| {
                if quick {
                    rng.range(30 * MIN, 12 * HOUR)
                } else {
                    rng.range(12 * HOUR, 4 * DAY)
                }
            })
        } else {
            sc.cp.clear();
            sc.cp.push_str("{\"id\":\"cust-");
            for _ in 0..8 {
                sc.cp.push(ALNUM[rng.idx(ALNUM.len())] as char);
            }
            sc.cp.push_str("\",\"role\":\"customer\"}");
            let list = MODELS[t.model].prices[rt.region as usize];
            let discount = [0, 0, 0, 5, 10, 15][rng.idx(6)];
            sc.attr.clear();
            sc.attr.push_str("{\"channel\":\"");
            sc.attr
                .push_str(if rng.chance(0.7) { "store" } else { "online" });
            sc.attr.push_str("\",\"price\":{\"amount\":");
            push_fixed(
                &mut sc.attr,
                f64::from(list) * f64::from(100 - discount) / 100.0,
                2,
            );
            sc.attr.push_str(",\"currency\":\"");
            sc.attr.push_str(rt.region.currency());
            sc.attr.push_str("\"},\"warranty_months\":24}");
            person(&mut sc.op, "pos", &rt.id[3..5], rng.range(1, 9));
            write_event(
                &mut self.buf,
                seq,
                &Ev {
                    event_type: "sale",
                    short: "sale",
                    source: &rt.id,
                    time: now,
                    tz: rt.tz,
                    secs: rt.secs,
                    trace_code: Some(&t.code),
                    participant: &rt.frag,
                    counterparty: Some(&sc.cp),
                    operator: Some(&sc.op),
                    site: Some(&rt.id),
                    location: Some(&rt.loc),
                    attributes: Some(&sc.attr),
                    ..Ev::default()
                },
            );
            None
        }
    }

    /// Telemetry from a random device, or maintenance when it is due.
    fn device_event(&mut self) {
        let seq = self.next_seq();
        let now = self.clock;
        let d = self.rng.idx(self.w.devices.len());
        let dev = &self.w.devices[d];
        let kind = &DEV_KINDS[dev.kind];
        let plant = &self.w.plants[dev.plant];
        let sc = &mut self.sc;
        let rng = &mut self.rng;
        let wear = &mut self.st.wear[d];
        *wear = (*wear + rng.gauss() * 0.02 + 0.002).max(0.0);
        if rng.chance(0.0005) {
            *wear += 1.5; // onset of a fault (bearing, nozzle, ...)
        }
        let corrective = *wear > 3.0 && rng.chance(0.05);
        if corrective || rng.chance(PREVENTIVE_MAINTENANCE) {
            let mnt = &self.w.parties[plant.mnt];
            person(&mut sc.op, "tech", &plant.code, rng.range(1, 15));
            let action = *rng.pick(kind.maint);
            let downtime = if corrective {
                rng.range(45, 240)
            } else {
                rng.range(15, 90)
            };
            sc.attr.clear();
            sc.attr.push_str("{\"work_order\":\"WO-M");
            push_padded(&mut sc.attr, seq, 9);
            sc.attr.push_str("\",\"kind\":\"");
            sc.attr.push_str(if corrective {
                "corrective"
            } else {
                "preventive"
            });
            sc.attr.push_str("\",\"action\":");
            push_json_str(&mut sc.attr, action);
            sc.attr.push_str(",\"downtime_min\":");
            push_u64(&mut sc.attr, downtime as u64);
            sc.attr.push('}');
            let with_report = rng.chance(0.3);
            if with_report {
                report(
                    &mut sc.report,
                    "Maintenance report",
                    &dev.id,
                    now,
                    "done",
                    action,
                );
                attachment(
                    &mut sc.att,
                    "maintenance-report.pdf",
                    &sc.report,
                    "application/pdf",
                    false,
                );
            }
            write_event(
                &mut self.buf,
                seq,
                &Ev {
                    event_type: "maintenance",
                    short: "maint",
                    source: &plant.id,
                    time: now,
                    tz: mnt.tz,
                    participant: &mnt.frag,
                    operator: Some(&sc.op),
                    site: Some(&dev.site),
                    device_id: Some(&dev.id),
                    location: Some(&mnt.loc),
                    attributes: Some(&sc.attr),
                    attachments: with_report.then_some(sc.att.as_str()),
                    ..Ev::default()
                },
            );
            *wear = rng.unit() * 0.2;
        } else {
            let mfr = &self.w.parties[plant.mfr];
            sc.read.clear();
            sc.read.push('{');
            for (i, r) in kind.readings.iter().enumerate() {
                if i > 0 {
                    sc.read.push(',');
                }
                sc.read.push('"');
                sc.read.push_str(r.name);
                sc.read.push_str("\":");
                let mut v = r.base + r.sd * (rng.gauss() + *wear * r.wear);
                if r.name == "ambient_temp_c" && plant.region == Region::Cn {
                    v += 4.0;
                }
                push_fixed(&mut sc.read, v.max(0.0), r.dec);
            }
            sc.read.push('}');
            write_event(
                &mut self.buf,
                seq,
                &Ev {
                    event_type: "telemetry",
                    short: "tel",
                    source: &plant.id,
                    time: now,
                    tz: mfr.tz,
                    participant: &mfr.frag,
                    site: Some(&dev.site),
                    device_id: Some(&dev.id),
                    location: rng.chance(0.1).then_some(mfr.loc.as_str()),
                    readings: Some(&sc.read),
                    ..Ev::default()
                },
            );
        }
        self.key.clear();
        self.key.push_str(&dev.id);
    }
}
