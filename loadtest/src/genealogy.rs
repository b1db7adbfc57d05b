//! A product genealogy whose truth is known: the generator builds a layered graph of
//! trace objects itself (raw material batches, lots made by splits, merges and plain
//! transformations over several stages, then serialised assemblies over several levels),
//! writes the events that describe it, and keeps the graph, so tests can check every
//! backward and forward trace against it, node for node and event for event.
//!
//! Depth: `lot_stages` transformation stages plus `assembly_levels` assembly levels, so a
//! top-level product traces back `lot_stages + assembly_levels` levels to raw material.

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde::Serialize;

/// Shape of the generated genealogy.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Raw material batches.
    pub raw_batches: usize,
    /// Transformation stages (each stage turns the previous lots into new lots).
    pub lot_stages: usize,
    /// Assembly levels of serialised items on top of the last lots.
    pub assembly_levels: usize,
    /// Items per assembly level (the first level draws from the last lots).
    pub items_per_level: usize,
    /// Seed.
    pub seed: u64,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            raw_batches: 60,
            lot_stages: 4,
            assembly_levels: 3,
            items_per_level: 150,
            seed: 7,
        }
    }
}

/// The generated dataset and its truth.
#[derive(Debug, Serialize)]
pub struct Genealogy {
    /// Trace codes (canonical element strings), by node index.
    pub codes: Vec<String>,
    /// Level of each node (0: raw material).
    pub level: Vec<usize>,
    /// Parents (inputs) of each node.
    pub parents: Vec<Vec<usize>>,
    /// Children (what each node went into).
    pub children: Vec<Vec<usize>>,
    /// Event ids whose `trace_code` is the node.
    pub node_events: Vec<Vec<String>>,
    /// Edge events: (event id, inputs, outputs).
    pub edge_events: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// The records, keyed like the simulator (trace code, or first input).
    #[serde(skip)]
    pub records: Vec<(Option<Vec<u8>>, Vec<u8>)>,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) ^ t) as u64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn gtin(item: u64) -> String {
    // GTIN-14: indicator 0, company prefix 069..., item, check digit.
    let body = format!("0069{:09}", item);
    let d = veritrace_processors::tracecode::gs1_check_digit(&body).unwrap_or(0);
    format!("{body}{d}")
}

impl Genealogy {
    /// Generates the genealogy for `shape`.
    pub fn generate(shape: &Shape) -> Genealogy {
        let mut g = Genealogy {
            codes: Vec::new(),
            level: Vec::new(),
            parents: Vec::new(),
            children: Vec::new(),
            node_events: Vec::new(),
            edge_events: Vec::new(),
            records: Vec::new(),
        };
        let mut rng = Rng(shape.seed);
        let mut clock: i64 = 1_790_000_000_000;
        let mut seq = 0u64;
        let mut tick = |rng: &mut Rng| {
            clock += 1_000 + (rng.next() % 5_000) as i64;
            clock
        };
        let time = |ms: i64| {
            humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64),
            )
            .to_string()
        };
        let new_node = |g: &mut Genealogy, code: String, level: usize| {
            g.codes.push(code);
            g.level.push(level);
            g.parents.push(Vec::new());
            g.children.push(Vec::new());
            g.node_events.push(Vec::new());
            g.codes.len() - 1
        };
        let push = |g: &mut Genealogy, key: &str, v: serde_json::Value| {
            g.records
                .push((Some(key.as_bytes().to_vec()), v.to_string().into_bytes()));
        };
        // Raw material batches, each with production and incoming inspection.
        let mut prev: Vec<usize> = Vec::new();
        for b in 0..shape.raw_batches {
            let code = format!("(01){}(10)RAW-{b:05}", gtin(100 + (b % 7) as u64));
            let n = new_node(&mut g, code.clone(), 0);
            for (ty, extra) in [
                ("production", serde_json::json!({})),
                ("quality_check", serde_json::json!({"result": "pass"})),
            ] {
                seq += 1;
                let id = format!("gen:{ty}:{seq:07}");
                let mut v = serde_json::json!({
                    "event_id": id, "event_type": ty, "event_time": time(tick(&mut rng)),
                    "trace_code": code, "participant": {"id": "supplier-1", "role": "supplier"},
                });
                if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                    o.extend(e.clone());
                }
                push(&mut g, &code, v);
                g.node_events[n].push(id);
            }
            prev.push(n);
        }
        // Lot stages: splits (1 -> 2..3), merges (2..3 -> 1), plain (1 -> 1).
        let mut lot = 0u64;
        for stage in 1..=shape.lot_stages {
            let mut pool = prev.clone();
            // Shuffle so merges mix batches.
            for i in (1..pool.len()).rev() {
                let j = rng.below(i + 1);
                pool.swap(i, j);
            }
            let mut next = Vec::new();
            while !pool.is_empty() {
                let kind = rng.below(3);
                let take = if kind == 1 { 2 + rng.below(2) } else { 1 };
                let inputs: Vec<usize> = pool.drain(..take.min(pool.len())).collect();
                let outs = if kind == 0 { 2 + rng.below(2) } else { 1 };
                let mut outputs = Vec::new();
                for _ in 0..outs {
                    lot += 1;
                    let code = format!("(01){}(10)S{stage}-{lot:06}", gtin(200 + stage as u64));
                    outputs.push(new_node(&mut g, code, stage));
                }
                seq += 1;
                let id = format!("gen:xform:{seq:07}");
                let mut v = serde_json::json!({
                    "event_id": id, "event_type": "transformation", "event_time": time(tick(&mut rng)),
                    "inputs": inputs.iter().map(|&i| g.codes[i].clone()).collect::<Vec<_>>(),
                    "outputs": outputs.iter().map(|&o| g.codes[o].clone()).collect::<Vec<_>>(),
                    "participant": {"id": "plant-1", "role": "manufacturer"}, "site": format!("plant-1/stage-{stage}"),
                });
                // Every third names its work order as its trace code: an object outside the
                // graph, so a trace must find the event by that code, not by a node's.
                if seq.is_multiple_of(3) {
                    v["trace_code"] = format!("(01){}(10)WO{seq:07}", gtin(900)).into();
                }
                let key = g.codes[inputs[0]].clone();
                push(&mut g, &key, v);
                for &o in &outputs {
                    for &i in &inputs {
                        g.parents[o].push(i);
                        g.children[i].push(o);
                    }
                    // Each lot is sampled.
                    seq += 1;
                    let qid = format!("gen:qc:{seq:07}");
                    let code = g.codes[o].clone();
                    let v = serde_json::json!({
                        "event_id": qid, "event_type": "quality_check", "event_time": time(tick(&mut rng)),
                        "trace_code": code, "result": "pass", "participant": {"id": "plant-1", "role": "manufacturer"},
                    });
                    push(&mut g, &code, v);
                    g.node_events[o].push(qid);
                }
                g.edge_events.push((id, inputs, outputs.clone()));
                next.extend(outputs);
            }
            prev = next;
        }
        // Assembly levels: each item takes 2..4 inputs from the level below (inputs are
        // shared between items: one lot goes into many items, a fork).
        let mut serial = 0u64;
        for lvl in 0..shape.assembly_levels {
            let level = shape.lot_stages + 1 + lvl;
            let mut next = Vec::new();
            let items = if lvl + 1 == shape.assembly_levels {
                shape.items_per_level
            } else {
                shape.items_per_level / (lvl + 1)
            };
            for _ in 0..items.max(1) {
                serial += 1;
                let code = format!("(01){}(21)SN{serial:08}", gtin(300 + lvl as u64));
                let n = new_node(&mut g, code.clone(), level);
                let k = 2 + rng.below(3);
                let mut inputs = BTreeSet::new();
                for _ in 0..k {
                    inputs.insert(prev[rng.below(prev.len())]);
                }
                let inputs: Vec<usize> = inputs.into_iter().collect();
                seq += 1;
                let id = format!("gen:asm:{seq:07}");
                let v = serde_json::json!({
                    "event_id": id, "event_type": "assembly", "event_time": time(tick(&mut rng)),
                    "trace_code": code, "inputs": inputs.iter().map(|&i| g.codes[i].clone()).collect::<Vec<_>>(),
                    "participant": {"id": "plant-1", "role": "assembler"}, "site": format!("plant-1/line-{lvl}"),
                });
                push(&mut g, &code, v);
                g.node_events[n].push(id.clone());
                for &i in &inputs {
                    g.parents[n].push(i);
                    g.children[i].push(n);
                }
                g.edge_events.push((id, inputs, vec![n]));
                // Final test, and for top-level products a sale.
                for ty in ["quality_check", "sale"] {
                    if ty == "sale" && lvl + 1 != shape.assembly_levels {
                        continue;
                    }
                    seq += 1;
                    let eid = format!("gen:{ty}:{seq:07}");
                    let mut v = serde_json::json!({
                        "event_id": eid, "event_type": ty, "event_time": time(tick(&mut rng)),
                        "trace_code": code, "participant": {"id": "plant-1", "role": "manufacturer"},
                        "site": format!("site-{}", rng.below(4)),
                    });
                    if ty == "quality_check" {
                        v["result"] = "pass".into();
                    }
                    push(&mut g, &code, v);
                    g.node_events[n].push(eid);
                }
                next.push(n);
            }
            prev = next;
        }
        g
    }

    /// The node of a code.
    pub fn node(&self, code: &str) -> Option<usize> {
        self.codes.iter().position(|c| c == code)
    }

    /// The true trace: node -> shortest distance, and the set of event ids, backward
    /// (`forward == false`) or forward.
    pub fn truth(&self, root: usize, forward: bool) -> (HashMap<usize, u32>, BTreeSet<String>) {
        let adj = if forward {
            &self.children
        } else {
            &self.parents
        };
        let mut dist = HashMap::from([(root, 0u32)]);
        let mut q = VecDeque::from([root]);
        while let Some(n) = q.pop_front() {
            for &m in &adj[n] {
                if !dist.contains_key(&m) {
                    dist.insert(m, dist[&n] + 1);
                    q.push_back(m);
                }
            }
        }
        let mut events: BTreeSet<String> = BTreeSet::new();
        for &n in dist.keys() {
            events.extend(self.node_events[n].iter().cloned());
        }
        for (id, inputs, outputs) in &self.edge_events {
            // Backward: the events that made a node of the trace; forward: the events that
            // consumed one.
            let side = if forward { inputs } else { outputs };
            if side.iter().any(|x| dist.contains_key(x)) {
                events.insert(id.clone());
            }
        }
        (dist, events)
    }
}
