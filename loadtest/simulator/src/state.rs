//! Mutable simulation state: stocks, in-flight objects (tasks) and the schedule.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::format::{push_padded, push_pct, push_yymmdd};
use crate::master::{ALNUM, COAT, MATERIALS, OWN_PREFIX, PARTS, SUBS, SUPPLIER_DEFS};
use crate::rng::Rng;
use crate::world::{Gtin, World};
use crate::{DAY, DL_SHARE, HOUR, MIN, gs1_check_digit};

#[derive(Debug, Default)]
pub(crate) struct PlantState {
    pub(crate) raw_stock: Vec<VecDeque<String>>,
    pub(crate) raw_inflight: Vec<usize>,
    pub(crate) raw_next_order: Vec<i64>,
    /// Coating batches issued to the paint line, unopened: (code, grams).
    pub(crate) coat_stock: VecDeque<(String, i64)>,
    /// The open coating batch: (code, grams left, grams in the batch).
    pub(crate) coat: Option<(String, i64, i64)>,
    pub(crate) lots: Vec<VecDeque<(String, u32)>>,
    pub(crate) lots_pending: Vec<usize>,
    pub(crate) subs: Vec<VecDeque<String>>,
    pub(crate) subs_pending: Vec<usize>,
    pub(crate) pallet: Vec<String>,
    pub(crate) pallet_models: Vec<usize>,
    pub(crate) pallet_target: usize,
}

#[derive(Debug)]
pub(crate) struct RawTask {
    pub(crate) plant: usize,
    pub(crate) mat: usize,
    pub(crate) sup: usize,
    pub(crate) code: String,
    pub(crate) lot: String,
    pub(crate) qty: i64,
    pub(crate) step: u8,
}

#[derive(Debug)]
pub(crate) struct XformTask {
    pub(crate) plant: usize,
    pub(crate) part: usize,
    pub(crate) outputs: Vec<String>,
    pub(crate) next: usize,
}

#[derive(Debug)]
pub(crate) struct SubTask {
    pub(crate) plant: usize,
    pub(crate) sub: usize,
    pub(crate) code: String,
}

#[derive(Debug)]
pub(crate) struct FpTask {
    pub(crate) plant: usize,
    pub(crate) model: usize,
    pub(crate) code: String,
    pub(crate) step: u8,
    pub(crate) reworked: bool,
    pub(crate) retailer: usize,
}

#[derive(Debug)]
pub(crate) struct PalletTask {
    pub(crate) plant: usize,
    pub(crate) code: String,
    pub(crate) items: Vec<String>,
    pub(crate) models: Vec<usize>,
    pub(crate) dc: usize,
    pub(crate) step: u8,
}

#[derive(Debug)]
pub(crate) struct ShelfTask {
    pub(crate) code: String,
    pub(crate) model: usize,
    pub(crate) retailer: usize,
    pub(crate) step: u8,
}

#[derive(Debug)]
pub(crate) enum Task {
    Raw(RawTask),
    Xform(XformTask),
    Sub(SubTask),
    Fp(FpTask),
    Pallet(PalletTask),
    Shelf(ShelfTask),
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) plants: Vec<PlantState>,
    pub(crate) wear: Vec<f64>,
    pub(crate) tasks: Vec<Option<Task>>,
    pub(crate) free: Vec<u32>,
    pub(crate) heap: BinaryHeap<Reverse<(i64, u64, u32)>>,
    hseq: u64,
    serials: u64,
    serial_salt: u64,
    pub(crate) lots: u64,
    ssccs: u64,
}

impl State {
    pub(crate) fn new(w: &World, rng: &mut Rng, start: i64) -> Self {
        let mut st = State {
            plants: Vec::with_capacity(w.plants.len()),
            wear: w.devices.iter().map(|_| rng.unit() * 0.5).collect(),
            tasks: Vec::new(),
            free: Vec::new(),
            heap: BinaryHeap::new(),
            hseq: 0,
            serials: 0,
            serial_salt: rng.next_u64(),
            lots: 0,
            ssccs: 0,
        };
        for _ in &w.plants {
            st.plants.push(PlantState {
                raw_stock: MATERIALS.iter().map(|_| VecDeque::new()).collect(),
                raw_inflight: vec![0; MATERIALS.len()],
                raw_next_order: vec![start; MATERIALS.len()],
                coat_stock: VecDeque::new(),
                coat: None,
                lots: PARTS.iter().map(|_| VecDeque::new()).collect(),
                lots_pending: vec![0; PARTS.len()],
                subs: SUBS.iter().map(|_| VecDeque::new()).collect(),
                subs_pending: vec![0; SUBS.len()],
                pallet: Vec::new(),
                pallet_models: Vec::new(),
                pallet_target: 8,
            });
        }
        // The dataset starts mid-operation: per plant and material, eight batches have been
        // received and inspected and are about to go to the lines, eight more are on their
        // way and arrive during the first half day (their earlier events precede the window).
        // Of the coating, one fresh batch is about to go to the paint line.
        for p in 0..w.plants.len() {
            for m in 0..MATERIALS.len() {
                if m == COAT {
                    let produced = start - rng.range(2 * DAY, 12 * DAY);
                    let mut t = st.new_raw(w, rng, p, m, produced);
                    t.step = 5;
                    st.plants[p].raw_inflight[m] += 1;
                    st.schedule(Task::Raw(t), start + rng.range(0, 10 * MIN));
                    continue;
                }
                for k in 0..16 {
                    let produced = start - rng.range(2 * DAY, 12 * DAY);
                    let mut t = st.new_raw(w, rng, p, m, produced);
                    let due = if k < 8 {
                        t.step = 5;
                        start + rng.range(0, 15 * MIN)
                    } else {
                        t.step = 3;
                        start + rng.range(0, 12 * HOUR)
                    };
                    st.plants[p].raw_inflight[m] += 1;
                    st.schedule(Task::Raw(t), due);
                }
            }
        }
        st
    }

    pub(crate) fn schedule(&mut self, task: Task, due: i64) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.tasks[s as usize] = Some(task);
                s
            }
            None => {
                self.tasks.push(Some(task));
                (self.tasks.len() - 1) as u32
            }
        };
        self.reschedule(slot, due);
    }

    pub(crate) fn reschedule(&mut self, slot: u32, due: i64) {
        self.hseq += 1;
        self.heap.push(Reverse((due, self.hseq, slot)));
    }

    /// A fresh serial: one random character, then nine base-34 digits of a bijective mix of
    /// a counter (unique for 2^45 objects per run).
    pub(crate) fn serial(&mut self, rng: &mut Rng, out: &mut String) {
        const M: u64 = (1 << 45) - 1;
        self.serials += 1;
        let mut x = self.serials.wrapping_add(self.serial_salt) & M;
        x = x.wrapping_mul(0x1_9e37_79b9_7f4b) & M;
        x ^= x >> 19;
        x = x.wrapping_mul(0x0_5bd1_e995_3c6d) & M;
        x ^= x >> 23;
        out.push(ALNUM[rng.idx(ALNUM.len())] as char);
        for _ in 0..9 {
            out.push(ALNUM[(x % 34) as usize] as char);
            x /= 34;
        }
    }

    pub(crate) fn new_raw(
        &mut self,
        w: &World,
        rng: &mut Rng,
        plant: usize,
        mat: usize,
        now: i64,
    ) -> RawTask {
        let [a, b] = MATERIALS[mat].suppliers;
        let region = w.plants[plant].region;
        let sup = match (
            SUPPLIER_DEFS[a].region == region,
            SUPPLIER_DEFS[b].region == region,
        ) {
            (true, false) if rng.chance(0.85) => a,
            (false, true) if rng.chance(0.85) => b,
            _ => {
                if rng.chance(0.5) {
                    a
                } else {
                    b
                }
            }
        };
        let def = &SUPPLIER_DEFS[sup];
        self.lots += 1;
        let mut lot = String::with_capacity(20);
        lot.push_str(def.lot_prefix);
        if def.slash_lots {
            lot.push('/');
        }
        push_yymmdd(&mut lot, now, def.tz);
        lot.push(if def.slash_lots { '/' } else { '-' });
        push_padded(&mut lot, self.lots % 10_000_000, 4);
        let code = make_code(rng, &w.supplier_gtin[sup], "10", &lot, None);
        let (lo, hi) = MATERIALS[mat].qty;
        RawTask {
            plant,
            mat,
            sup,
            code,
            lot,
            qty: rng.range(lo, hi) / 10 * 10,
            step: 0,
        }
    }
}

/// Writes a trace code for `(01){gtin}({ai}){value}` in the object's chosen form.
pub(crate) fn make_code(
    rng: &mut Rng,
    g: &Gtin,
    ai: &str,
    value: &str,
    dl_lot: Option<&str>,
) -> String {
    let mut s = String::with_capacity(72);
    if rng.chance(DL_SHARE) {
        s.push_str(match rng.below(10) {
            0..=6 => "https://id.gs1.org",
            7 | 8 => "https://dl.zhiqi-mobility.example",
            _ => "https://qr.example.com/gs1",
        });
        s.push_str("/01/");
        match &g.g13 {
            Some(g13) if rng.chance(0.4) => s.push_str(g13),
            _ => s.push_str(&g.g14),
        }
        if let Some(lot) = dl_lot
            && rng.chance(0.3)
        {
            s.push_str("/10/");
            push_pct(&mut s, lot);
        }
        s.push('/');
        s.push_str(ai);
        s.push('/');
        push_pct(&mut s, value);
        if rng.chance(0.15) {
            s.push_str("?linkType=gs1%3Apip");
        }
    } else {
        s.push_str("(01)");
        s.push_str(&g.g14);
        s.push('(');
        s.push_str(ai);
        s.push(')');
        s.push_str(value);
    }
    s
}

pub(crate) fn sscc(st: &mut State, w: &World, plant: usize) -> String {
    st.ssccs += 1;
    let mut d = String::with_capacity(22);
    d.push_str("(00)");
    d.push((b'0' + (w.plants[plant].no % 10) as u8) as char);
    d.push_str(OWN_PREFIX);
    push_padded(
        &mut d,
        (w.plants[plant].no as u64 % 100) * 10_000_000 + st.ssccs % 10_000_000,
        9,
    );
    let check = gs1_check_digit(&d[4..]);
    d.push((b'0' + check) as char);
    d
}
