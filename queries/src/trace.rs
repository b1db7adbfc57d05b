//! Forward and backward tracing over the trace graph.
//!
//! The processors write one `edges/{batch_id}.parquet` per sealed batch: `parent -> child`
//! for every input of an `assembly` (input -> the assembled object) and every input/output
//! pair of a `transformation` (a split fans out, a merge fans in). [`EdgeIndex`] holds the
//! committed edges in memory as an interned adjacency list (loaded incrementally as batches
//! are sealed), so a walk through any number of levels costs microseconds per node; the
//! events of the nodes reached are then read from Parquet by trace code, where the bloom
//! filters and statistics prune files and row groups.
//!
//! A walk is breadth-first from the root: every node once, at its shortest distance, every
//! event once. Cycles (bad data: an object among its own inputs) are found with a separate
//! depth-first pass over the nodes reached, reported, and never looped on.
//!
//! Containment over time: a `disassembly` (unpacking a pallet, removing a part) ends the
//! links its `assembly` began. A container with any ended link is followed only for the
//! time a link held: forward from a case, a pallet it travelled in is reached with the
//! window from packing to unpacking (intersected with the window the case itself was
//! reached in), and only the pallet's events in that window are its; backward from a
//! pallet, each case is reached if it was inside during the pallet's window, with its
//! history up to when it came out. Every node carries its windows; where no link on the
//! way ever ended, windows stay unbounded and a trace is what it was before disassembly
//! existed.

use std::collections::VecDeque;

// foldhash: the trace graph hashes tens of millions of codes while it loads.
use datafusion::common::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use arrow::array::{Array, AsArray, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableFunctionArgs;
use datafusion::catalog::TableFunctionImpl;
use datafusion::common::ScalarValue;
use datafusion::datasource::{MemTable, TableProvider, ViewTable, provider_as_source};
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan, LogicalPlanBuilder, col, lit};
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;
use veritrace_anchor::DataDir;

use crate::{Error, Result};

pub mod index;

pub use index::{BuildReport, GraphFile, build as build_index, index_path};

/// Which way a trace goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Towards the inputs: what went into it (parts, lots, raw material batches).
    Backward,
    /// Towards the outputs: where it went (sub-assemblies, products, pallets).
    Forward,
}

impl std::str::FromStr for Direction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "backward" | "back" | "b" => Ok(Direction::Backward),
            "forward" | "fwd" | "f" => Ok(Direction::Forward),
            other => Err(Error::BadRequest(format!(
                "direction {other:?} is neither backward nor forward"
            ))),
        }
    }
}

/// An edge event without a trace code of its own (a transformation naming none).
const NULL_CODE: u32 = u32::MAX - 1;
/// An edge event whose own trace code the edges file does not say.
const UNKNOWN_CODE: u32 = u32::MAX;
/// A disassembly that empties its container (every link into it ends).
const EVERYTHING: u32 = u32::MAX;

/// A set of closed time intervals in epoch milliseconds, sorted and disjoint;
/// `[(i64::MIN, i64::MAX)]` is all time.
type Windows = Vec<(i64, i64)>;

const ALL_TIME: (i64, i64) = (i64::MIN, i64::MAX);

/// `w` cut to `[lo, hi]`.
fn intersect(w: &[(i64, i64)], lo: i64, hi: i64) -> Windows {
    w.iter()
        .filter_map(|&(a, b)| {
            let (a, b) = (a.max(lo), b.min(hi));
            (a <= b).then_some((a, b))
        })
        .collect()
}

/// Adds `add` to `w`; true when `w` grew.
fn unite(w: &mut Windows, add: &[(i64, i64)]) -> bool {
    let before = w.clone();
    w.extend_from_slice(add);
    w.sort_unstable();
    let mut out: Windows = Vec::with_capacity(w.len());
    for &(a, b) in w.iter() {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    *w = out;
    *w != before
}

/// One stretch of time an input was inside a container: from the assembly that put it in to
/// the disassembly that took it out (none: still inside).
#[derive(Debug, Clone, Copy)]
struct Stint {
    from: i64,
    to: i64,
    add: u32,
    end: Option<u32>,
}

/// Interned strings: one byte arena, ids in insertion order, a table of (hash, id).
#[derive(Debug, Default, Clone)]
struct Interner {
    bytes: String,
    /// End offset of each string in `bytes`.
    ends: Vec<usize>,
    table: hashbrown::HashTable<(u64, u32)>,
    hasher: hashbrown::DefaultHashBuilder,
}

fn arena_str<'a>(bytes: &'a str, ends: &[usize], i: u32) -> &'a str {
    let i = i as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] };
    &bytes[start..ends[i]]
}

impl Interner {
    fn name(&self, i: u32) -> &str {
        arena_str(&self.bytes, &self.ends, i)
    }

    fn get(&self, s: &str) -> Option<u32> {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(s);
        self.table
            .find(h, |&(eh, i)| eh == h && self.name(i) == s)
            .map(|&(_, i)| i)
    }

    /// The id of `s`, and whether it is new.
    fn intern(&mut self, s: &str) -> (u32, bool) {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(s);
        let (bytes, ends) = (&self.bytes, &self.ends);
        if let Some(&(_, i)) = self
            .table
            .find(h, |&(eh, i)| eh == h && arena_str(bytes, ends, i) == s)
        {
            return (i, false);
        }
        let i = self.ends.len() as u32;
        self.bytes.push_str(s);
        self.ends.push(self.bytes.len());
        self.table.insert_unique(h, (h, i), |&(eh, _)| eh);
        (i, true)
    }
}

/// The trace graph: interned trace codes with parent and child adjacency.
#[derive(Debug, Default, Clone)]
pub struct EdgeIndex {
    codes: Interner,
    /// Event ids of the edges, interned.
    events: Interner,
    /// Each edge event's own trace code: a code id, [`NULL_CODE`] or [`UNKNOWN_CODE`]
    /// (edges files from before the column was written).
    event_codes: Vec<u32>,
    /// node -> (parent, edge event)
    parents: Vec<Vec<(u32, u32)>>,
    /// node -> (child, edge event)
    children: Vec<Vec<(u32, u32)>>,
    /// Each edge event's time (epoch ms).
    event_times: Vec<i64>,
    /// container -> (input taken out or [`EVERYTHING`], disassembly event): the links that
    /// ended. Only containers ever taken apart are here.
    ends: HashMap<u32, Vec<(u32, u32)>>,
    /// The events declared in error ([`crate::corrections`]): their links are not followed.
    retracted_ids: Arc<std::collections::BTreeSet<String>>,
    /// Those of them that are edge events, interned.
    retracted: HashSet<u32>,
    /// Batches whose edges are loaded in memory, and the order they were loaded in.
    loaded: HashSet<String>,
    loaded_order: Vec<String>,
    edges: u64,
    /// Walk with time windows even when no loaded container was taken apart (a subgraph of
    /// a graph where some were).
    in_time: bool,
    /// The persisted index ([`index`]) holding the edges of older batches, read lazily.
    file: Option<Arc<GraphFile>>,
    /// The batches the file covers.
    covered: HashSet<String>,
    /// Whether the index file was looked for (once per engine).
    file_tried: bool,
}

impl EdgeIndex {
    fn intern_code(&mut self, c: &str) -> u32 {
        let (i, new) = self.codes.intern(c);
        if new {
            self.parents.push(Vec::new());
            self.children.push(Vec::new());
        }
        i
    }

    fn intern_event(&mut self, e: &str) -> u32 {
        let (i, new) = self.events.intern(e);
        if new {
            self.event_codes.push(UNKNOWN_CODE);
            self.event_times.push(0);
        }
        i
    }

    /// Adds one edge made by an event whose own trace code is unknown.
    pub fn add(&mut self, parent: &str, child: &str, event_id: &str) {
        self.add_with_code(parent, child, event_id, None, false);
    }

    /// Adds one edge row with its event's type and time: a `disassembly` row ends the link
    /// from `parent` (the empty string: every link) into `child` at `time_ms`; any other row
    /// is a link made at `time_ms`.
    pub fn add_row(&mut self, row: EdgeRow<'_>) {
        if row.event_type == "disassembly" {
            let container = self.intern_code(row.child);
            let input = if row.parent.is_empty() {
                EVERYTHING
            } else {
                self.intern_code(row.parent)
            };
            let e = self.intern_event(row.event_id);
            self.event_codes[e as usize] = container;
            self.event_times[e as usize] = row.time_ms;
            self.ends.entry(container).or_default().push((input, e));
            self.edges += 1;
            return;
        }
        let e = self.link(
            row.parent,
            row.child,
            row.event_id,
            row.event_code,
            row.code_known,
        );
        self.event_times[e as usize] = row.time_ms;
    }

    /// Adds one edge; `known` tells whether `event_code` (the event's own trace code) is
    /// known (None then means the event has none).
    pub fn add_with_code(
        &mut self,
        parent: &str,
        child: &str,
        event_id: &str,
        event_code: Option<&str>,
        known: bool,
    ) {
        self.link(parent, child, event_id, event_code, known);
    }

    /// Adds one link; returns its event's id.
    fn link(
        &mut self,
        parent: &str,
        child: &str,
        event_id: &str,
        event_code: Option<&str>,
        known: bool,
    ) -> u32 {
        let p = self.intern_code(parent);
        let c = self.intern_code(child);
        let e = self.intern_event(event_id);
        if known {
            self.event_codes[e as usize] = match event_code {
                Some(code) => self.intern_code(code),
                None => NULL_CODE,
            };
        }
        self.children[p as usize].push((c, e));
        self.parents[c as usize].push((p, e));
        self.edges += 1;
        e
    }

    /// True when `ids` are the events declared in error this index leaves out.
    pub fn retracts_as(&self, ids: &std::collections::BTreeSet<String>) -> bool {
        *self.retracted_ids == *ids
    }

    /// Leaves out the links made or ended by the events `ids` (declared in error).
    pub fn retract(&mut self, ids: Arc<std::collections::BTreeSet<String>>) {
        self.retracted = ids.iter().filter_map(|i| self.events.get(i)).collect();
        self.retracted_ids = ids;
    }

    /// True when the link event `ev` counts (it is not declared in error).
    fn counts(&self, ev: u32) -> bool {
        self.retracted.is_empty() || !self.retracted.contains(&ev)
    }

    /// True when the batch's edges are loaded (in memory or in the index file).
    pub fn is_loaded(&self, batch_id: &str) -> bool {
        self.loaded.contains(batch_id) || self.covered.contains(batch_id)
    }

    /// Edges loaded (in memory and in the index file).
    pub fn len(&self) -> u64 {
        self.edges + self.file.as_ref().map_or(0, |f| f.edges())
    }

    /// True when there are no edges.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the index file was looked for.
    pub fn file_tried(&self) -> bool {
        self.file_tried
    }

    /// The index file in use, if any.
    pub fn file(&self) -> Option<&GraphFile> {
        self.file.as_deref()
    }

    /// Looks for the data directory's index file (once): it is used when every batch it
    /// covers is among `committed`, the batches of the snapshot being served; otherwise (a
    /// restored directory, a file from elsewhere) and when it cannot be read, the edges
    /// files are read as before, and why is logged.
    pub fn attach_file(&mut self, dir: &DataDir, committed: &dyn Fn(&str) -> bool) {
        if self.file_tried {
            return;
        }
        self.file_tried = true;
        match GraphFile::open(dir) {
            Ok(None) => {}
            Ok(Some(f)) => {
                if let Some(b) = f.batches().iter().find(|b| !committed(b)) {
                    tracing::warn!(index = %f.path().display(), batch = %b, "the trace index covers a batch that is not committed here; not used (rebuild it with `veritrace compact`)");
                    return;
                }
                if f.batches().iter().any(|b| self.loaded.contains(b)) {
                    // Loaded in memory already: the file would add nothing.
                    return;
                }
                tracing::info!(index = %f.path().display(), batches = f.batches().len(), edges = f.edges(), "trace index in use");
                self.covered = f.batches().iter().cloned().collect();
                self.file = Some(Arc::new(f));
            }
            Err(e) => {
                tracing::error!(error = %e, "the trace index cannot be used; reading the edges files instead (rebuild it with `veritrace compact`)");
            }
        }
    }

    /// Stops using the index file (found damaged while walking): the edges of the batches it
    /// covered are loaded from their edges files, and the graph is rebuilt in load order.
    pub fn fall_back(&mut self, dir: &DataDir) -> Result<()> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let mut order: Vec<String> = file.batches().to_vec();
        order.extend(self.loaded_order.iter().cloned());
        let mut fresh = EdgeIndex {
            file_tried: true,
            ..Default::default()
        };
        fresh.load_batches(dir, order.iter().map(String::as_str))?;
        fresh.retract(self.retracted_ids.clone());
        *self = fresh;
        Ok(())
    }

    /// [`EdgeIndex::walk`], through the index file when there is one (its reads can fail:
    /// then the error names the damage, and [`EdgeIndex::fall_back`] is the remedy).
    pub fn try_walk(
        &self,
        root: &str,
        direction: Direction,
        max_depth: Option<u32>,
    ) -> Result<Walk> {
        match &self.file {
            None => Ok(self.walk(root, direction, max_depth)),
            Some(f) => {
                let sub = self.subgraph(f, root, direction, max_depth)?;
                Ok(sub.walk(root, direction, max_depth))
            }
        }
    }

    /// Loads the edges of the given committed batches that are not loaded yet (a batch
    /// without assembly or transformation events has no edges file), in the order given.
    /// Files are decoded on a second thread while the decoded ones are added.
    pub fn load_batches<'a>(
        &mut self,
        dir: &DataDir,
        batch_ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<()> {
        let todo: Vec<&str> = batch_ids
            .into_iter()
            .filter(|b| !self.loaded.contains(*b))
            .collect();
        const CHUNK: usize = 64;
        let mut chunks = todo.chunks(CHUNK);
        let decode = |ids: &[&str]| -> Vec<(String, Result<Option<EdgeRows>>)> {
            ids.iter()
                .map(|b| (b.to_string(), read_edges_file(dir, &dir.edges_file(b))))
                .collect()
        };
        let mut current = chunks.next().map(decode);
        std::thread::scope(|scope| -> Result<()> {
            while let Some(decoded) = current.take() {
                let next = chunks.next().map(|ids| scope.spawn(move || decode(ids)));
                for (b, rows) in decoded {
                    if let Some(rows) = rows? {
                        self.add_rows(&rows);
                    }
                    self.loaded_order.push(b.clone());
                    self.loaded.insert(b);
                }
                current = match next {
                    Some(h) => Some(
                        h.join()
                            .map_err(|_| Error::Internal("decoding edges files panicked".into()))?,
                    ),
                    None => None,
                };
            }
            Ok(())
        })
    }

    fn add_rows(&mut self, rows: &EdgeRows) {
        for b in &rows.batches {
            for i in 0..b.parent.len() {
                let code = b.code.as_ref();
                self.add_row(EdgeRow {
                    parent: b.parent.value(i),
                    child: b.child.value(i),
                    event_id: b.event_id.value(i),
                    event_code: code.and_then(|c| (!c.is_null(i)).then(|| c.value(i))),
                    code_known: code.is_some(),
                    event_type: b.event_type.value(i),
                    time_ms: b.time.value(i),
                });
            }
        }
    }

    /// The stints of `input` inside `container`, from the assembly events `adds` that put it
    /// in and the disassemblies of the container that took it (or everything) out, in time
    /// order. An assembly while already inside changes nothing; a disassembly while outside
    /// ends nothing.
    fn stints(&self, input: u32, container: u32, adds: &[u32]) -> Vec<Stint> {
        let mut points: Vec<(i64, u8, u32)> = adds
            .iter()
            .map(|&e| (self.event_times[e as usize], 0, e))
            .collect();
        for &(what, e) in self.ends.get(&container).into_iter().flatten() {
            if (what == input || what == EVERYTHING) && self.counts(e) {
                points.push((self.event_times[e as usize], 1, e));
            }
        }
        points.sort_unstable();
        let mut out = Vec::new();
        let mut open: Option<(i64, u32)> = None;
        for (t, kind, e) in points {
            match (kind, open) {
                (0, None) => open = Some((t, e)),
                (1, Some((from, add))) => {
                    out.push(Stint {
                        from,
                        to: t,
                        add,
                        end: Some(e),
                    });
                    open = None;
                }
                _ => {}
            }
        }
        if let Some((from, add)) = open {
            out.push(Stint {
                from,
                to: i64::MAX,
                add,
                end: None,
            });
        }
        out
    }

    fn adjacency(&self, direction: Direction) -> &[Vec<(u32, u32)>] {
        match direction {
            Direction::Backward => &self.parents,
            Direction::Forward => &self.children,
        }
    }

    fn edge_event(&self, ev: u32, node: u32, depth: u32) -> EdgeEvent {
        let lookup = match self.event_codes[ev as usize] {
            UNKNOWN_CODE => EventLookup::Unknown,
            NULL_CODE => EventLookup::NoCode,
            c => EventLookup::Code(self.codes.name(c).to_string()),
        };
        EdgeEvent {
            event_id: self.events.name(ev).to_string(),
            node: self.codes.name(node).to_string(),
            depth,
            lookup,
            time_ms: self.event_times[ev as usize],
        }
    }

    /// Walks from `root` in `direction`, at most `max_depth` levels (None: all).
    pub fn walk(&self, root: &str, direction: Direction, max_depth: Option<u32>) -> Walk {
        if !self.ends.is_empty() || self.in_time {
            return self.walk_in_time(root, direction, max_depth);
        }
        let mut w = Walk::of(root, direction);
        let Some(start) = self.codes.get(root) else {
            return w;
        };
        let adj = self.adjacency(direction);
        let mut depth: HashMap<u32, u32> = HashMap::from([(start, 0)]);
        let mut seen_events: HashSet<u32> = HashSet::new();
        let mut queue = VecDeque::from([start]);
        while let Some(n) = queue.pop_front() {
            let d = depth[&n];
            if max_depth.is_some_and(|m| d >= m) {
                if !adj[n as usize].is_empty() {
                    w.depth_limited = true;
                }
                continue;
            }
            for &(next, ev) in &adj[n as usize] {
                if !self.counts(ev) {
                    continue;
                }
                if seen_events.insert(ev) {
                    w.edge_events.push(self.edge_event(ev, n, d));
                }
                if let datafusion::common::hash_map::Entry::Vacant(v) = depth.entry(next) {
                    v.insert(d + 1);
                    w.nodes.push(TraceNode {
                        code: self.codes.name(next).to_string(),
                        depth: d + 1,
                        via_event: Some(self.events.name(ev).to_string()),
                        from: Some(self.codes.name(n).to_string()),
                        windows: Vec::new(),
                    });
                    queue.push_back(next);
                }
            }
        }
        w.cycles = self.cycles(&depth, adj, max_depth);
        w
    }

    /// [`EdgeIndex::walk`] when some container was taken apart: each node carries the
    /// windows of time it belongs to the trace in, and a link is followed only where its
    /// stint meets them. Forward, a container's windows are the stint cut to the windows of
    /// the node it holds; backward, an input's window runs up to the end of the last stint
    /// that meets the container's windows. A link into a container never taken apart has no
    /// stint: it holds for all time from an unbounded window (so traces without disassembly
    /// are unchanged) and from its assembly on otherwise. A node whose windows grow is
    /// walked again, so every window reaches every node it leads to.
    fn walk_in_time(&self, root: &str, direction: Direction, max_depth: Option<u32>) -> Walk {
        let mut w = Walk::of(root, direction);
        let Some(start) = self.codes.get(root) else {
            return w;
        };
        let adj = self.adjacency(direction);
        let mut depth: HashMap<u32, u32> = HashMap::from([(start, 0)]);
        let mut windows: HashMap<u32, Windows> = HashMap::from([(start, vec![ALL_TIME])]);
        let mut order: Vec<u32> = vec![start];
        let mut seen_events: HashSet<u32> = HashSet::new();
        let mut queue = VecDeque::from([start]);
        let mut queued: HashSet<u32> = HashSet::from_iter([start]);
        while let Some(n) = queue.pop_front() {
            queued.remove(&n);
            let d = depth[&n];
            if max_depth.is_some_and(|m| d >= m) {
                if !adj[n as usize].is_empty() {
                    w.depth_limited = true;
                }
                continue;
            }
            let here = windows[&n].clone();
            let unbounded = here == [ALL_TIME];
            // The link events per neighbour, neighbours in the order first linked.
            let mut groups: Vec<(u32, Vec<u32>)> = Vec::new();
            for &(next, ev) in adj[n as usize].iter().filter(|(_, ev)| self.counts(*ev)) {
                match groups.iter_mut().find(|(m, _)| *m == next) {
                    Some((_, evs)) => evs.push(ev),
                    None => groups.push((next, vec![ev])),
                }
            }
            for (next, evs) in groups {
                let (input, container) = match direction {
                    Direction::Forward => (n, next),
                    Direction::Backward => (next, n),
                };
                let stints: Vec<Stint> = if self.ends.contains_key(&container) {
                    self.stints(input, container, &evs)
                } else {
                    evs.iter()
                        .map(|&add| Stint {
                            from: if unbounded {
                                i64::MIN
                            } else {
                                self.event_times[add as usize]
                            },
                            to: i64::MAX,
                            add,
                            end: None,
                        })
                        .collect()
                };
                let mut reach: Windows = Vec::new();
                let mut crossed: Vec<u32> = Vec::new();
                for st in &stints {
                    let overlap = intersect(&here, st.from, st.to);
                    let Some(&(_, last)) = overlap.last() else {
                        continue;
                    };
                    match direction {
                        Direction::Forward => unite(&mut reach, &overlap),
                        Direction::Backward => unite(&mut reach, &[(i64::MIN, last)]),
                    };
                    crossed.push(st.add);
                    crossed.extend(st.end);
                }
                let Some(&via) = crossed.first() else {
                    continue;
                };
                for ev in crossed {
                    if seen_events.insert(ev) {
                        w.edge_events.push(self.edge_event(ev, n, d));
                    }
                }
                match windows.entry(next) {
                    datafusion::common::hash_map::Entry::Vacant(v) => {
                        v.insert(reach);
                        depth.insert(next, d + 1);
                        order.push(next);
                        w.nodes.push(TraceNode {
                            code: self.codes.name(next).to_string(),
                            depth: d + 1,
                            via_event: Some(self.events.name(via).to_string()),
                            from: Some(self.codes.name(n).to_string()),
                            windows: Vec::new(),
                        });
                        queued.insert(next);
                        queue.push_back(next);
                    }
                    datafusion::common::hash_map::Entry::Occupied(mut o) => {
                        if unite(o.get_mut(), &reach) && queued.insert(next) {
                            queue.push_back(next);
                        }
                    }
                }
            }
        }
        for (node, id) in w.nodes.iter_mut().zip(&order) {
            let ws = &windows[id];
            if ws.as_slice() != [ALL_TIME] {
                node.windows = ws.iter().map(|&(a, b)| Window::of(a, b)).collect();
            }
        }
        w.cycles = self.cycles(&depth, adj, max_depth);
        w
    }

    /// Cycles among the nodes reached (iterative depth-first search, three colours); each
    /// reported as the codes along it, the first repeated at the end. At most 16.
    fn cycles(
        &self,
        reached: &HashMap<u32, u32>,
        adj: &[Vec<(u32, u32)>],
        max_depth: Option<u32>,
    ) -> Vec<Vec<String>> {
        const MAX: usize = 16;
        let mut out = Vec::new();
        // 0 white, 1 on the stack, 2 done
        let mut colour: HashMap<u32, u8> = HashMap::with_capacity(reached.len());
        // By code, not by id: the same cycles whichever way the graph was loaded (ids
        // follow the load order, which differs between the index file and memory).
        let mut roots: Vec<u32> = reached.keys().copied().collect();
        roots.sort_unstable_by(|a, b| self.codes.name(*a).cmp(self.codes.name(*b)));
        for r in roots {
            if colour.get(&r).copied().unwrap_or(0) != 0 {
                continue;
            }
            let mut stack: Vec<(u32, usize)> = vec![(r, 0)];
            colour.insert(r, 1);
            while let Some((n, i)) = stack.last().copied() {
                let edges = &adj[n as usize];
                let expand = max_depth.is_none_or(|m| reached.get(&n).is_some_and(|d| *d < m));
                if i < edges.len() && expand {
                    if let Some(top) = stack.last_mut() {
                        top.1 += 1;
                    }
                    let next = edges[i].0;
                    if !reached.contains_key(&next) {
                        continue;
                    }
                    match colour.get(&next).copied().unwrap_or(0) {
                        0 => {
                            colour.insert(next, 1);
                            stack.push((next, 0));
                        }
                        1 if out.len() < MAX => {
                            let from = stack.iter().position(|(x, _)| *x == next).unwrap_or(0);
                            let mut cyc: Vec<String> = stack[from..]
                                .iter()
                                .map(|(x, _)| self.codes.name(*x).to_string())
                                .collect();
                            cyc.push(self.codes.name(next).to_string());
                            out.push(cyc);
                        }
                        _ => {}
                    }
                } else {
                    colour.insert(n, 2);
                    stack.pop();
                }
            }
        }
        out
    }
}

/// One row of an edges file.
#[derive(Debug, Clone, Copy)]
pub struct EdgeRow<'a> {
    /// The input (for a disassembly: the object taken out, or "" for everything).
    pub parent: &'a str,
    /// The output (for a disassembly: the container).
    pub child: &'a str,
    /// The event that made (or ended) the link.
    pub event_id: &'a str,
    /// That event's own trace code.
    pub event_code: Option<&'a str>,
    /// Whether `event_code` is known (files from before it was kept do not say).
    pub code_known: bool,
    /// That event's type.
    pub event_type: &'a str,
    /// That event's time, epoch milliseconds.
    pub time_ms: i64,
}

/// The columns of one record batch of an edges file.
struct EdgeBatch {
    parent: StringArray,
    child: StringArray,
    event_id: StringArray,
    /// The event's own trace code, when the file has it.
    code: Option<StringArray>,
    event_type: StringArray,
    time: arrow::array::TimestampMillisecondArray,
}

/// The record batches of one edges file.
struct EdgeRows {
    batches: Vec<EdgeBatch>,
}

/// Reads an edges file (None: the batch has none).
fn read_edges_file(
    dir: &veritrace_anchor::DataDir,
    path: &std::path::Path,
) -> Result<Option<EdgeRows>> {
    let bad = |e: &dyn std::fmt::Display| Error::corrupt(path.display(), e);
    let f = match dir.open_source(path) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(e) => return Err(bad(&e)),
    };
    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| bad(&e))?;
    let schema = b.schema().clone();
    let mut names = vec!["parent", "child", "event_id", "event_type", "event_time"];
    // Files from before `event_trace_code` lack it: their events' codes are unknown.
    if schema.index_of("event_trace_code").is_ok() {
        names.push("event_trace_code");
    }
    let mut roots = Vec::new();
    for n in &names {
        roots.push(schema.index_of(n).map_err(|e| bad(&e))?);
    }
    let mask = ProjectionMask::roots(b.parquet_schema(), roots);
    let mut out = EdgeRows {
        batches: Vec::new(),
    };
    for batch in b.with_projection(mask).build().map_err(|e| bad(&e))? {
        let batch = batch.map_err(|e| bad(&e))?;
        let s = batch.schema();
        let string = |n: &str| -> Result<StringArray> {
            let i = s.index_of(n).map_err(|e| bad(&e))?;
            let c = batch
                .column(i)
                .as_string_opt::<i32>()
                .ok_or_else(|| bad(&format!("{n} is not a string column")))?;
            if n != "event_trace_code" && c.null_count() > 0 {
                return Err(bad(&format!("{n} has nulls")));
            }
            Ok(c.clone())
        };
        let time = {
            let i = s.index_of("event_time").map_err(|e| bad(&e))?;
            let c = batch
                .column(i)
                .as_primitive_opt::<arrow::datatypes::TimestampMillisecondType>()
                .ok_or_else(|| bad(&"event_time is not a millisecond timestamp column"))?;
            if c.null_count() > 0 {
                return Err(bad(&"event_time has nulls"));
            }
            c.clone()
        };
        out.batches.push(EdgeBatch {
            parent: string("parent")?,
            child: string("child")?,
            event_id: string("event_id")?,
            code: if names.contains(&"event_trace_code") {
                Some(string("event_trace_code")?)
            } else {
                None
            },
            event_type: string("event_type")?,
            time,
        });
    }
    Ok(Some(out))
}

/// A node reached by a walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceNode {
    /// Its trace code (canonical form).
    pub code: String,
    /// Levels from the root (0 for the root).
    pub depth: u32,
    /// The assembly or transformation event that first linked it.
    pub via_event: Option<String>,
    /// The node it was reached from.
    pub from: Option<String>,
    /// The times it belongs to the trace in (empty: all time): while it held, or was held
    /// in, what the trace followed ([containment over time](self)).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
}

/// A closed interval of time, as canonical event times (`2026-01-01T00:00:00.000Z`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    /// From (None: since ever).
    pub from: Option<String>,
    /// Until, inclusive (None: still).
    pub to: Option<String>,
    #[serde(skip)]
    from_ms: i64,
    #[serde(skip)]
    to_ms: i64,
}

impl Window {
    fn of(from_ms: i64, to_ms: i64) -> Window {
        let text = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        };
        Window {
            from: if from_ms == i64::MIN {
                None
            } else {
                text(from_ms)
            },
            to: if to_ms == i64::MAX { None } else { text(to_ms) },
            from_ms,
            to_ms,
        }
    }

    /// True when `ms` falls in it.
    pub fn contains(&self, ms: i64) -> bool {
        self.from_ms <= ms && ms <= self.to_ms
    }

    /// Its bounds in epoch milliseconds (None: open on that side).
    pub fn bounds_ms(&self) -> (Option<i64>, Option<i64>) {
        (
            (self.from_ms != i64::MIN).then_some(self.from_ms),
            (self.to_ms != i64::MAX).then_some(self.to_ms),
        )
    }
}

/// An assembly or transformation event crossed by a walk, with the node it was crossed
/// from (the object being made, backward; the object consumed, forward).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EdgeEvent {
    /// The event.
    pub event_id: String,
    /// The node it belongs to in this trace.
    pub node: String,
    /// That node's depth.
    pub depth: u32,
    /// How to find the event among all events.
    #[serde(skip)]
    pub lookup: EventLookup,
    /// Its time, epoch milliseconds.
    #[serde(skip)]
    pub time_ms: i64,
}

/// How a trace finds an edge event's row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EventLookup {
    /// By this trace code (its own).
    Code(String),
    /// Among the events without a trace code, by id.
    NoCode,
    /// Its own code is not known (edges written before it was kept): by id among all.
    #[default]
    Unknown,
}

/// The result of a walk: the nodes (each once, breadth-first), the edge events crossed,
/// and any cycles found.
#[derive(Debug, Clone, Serialize)]
pub struct Walk {
    /// The code traced from.
    pub root: String,
    /// Which way.
    pub direction: Direction,
    /// Nodes in breadth-first order, the root first.
    pub nodes: Vec<TraceNode>,
    /// Edge events crossed, each once.
    pub edge_events: Vec<EdgeEvent>,
    /// Cycles among the nodes reached (bad data), each as its codes.
    pub cycles: Vec<Vec<String>>,
    /// True when the depth limit stopped the walk before the graph ended.
    pub depth_limited: bool,
    /// Nodes the caller may not see, counted per depth ([`crate::visibility`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hidden: Vec<crate::visibility::HiddenNodes>,
}

impl Walk {
    /// A walk that has reached only its root.
    fn of(root: &str, direction: Direction) -> Walk {
        Walk {
            root: root.to_owned(),
            direction,
            nodes: vec![TraceNode {
                code: root.to_owned(),
                depth: 0,
                via_event: None,
                from: None,
                windows: Vec::new(),
            }],
            edge_events: Vec::new(),
            cycles: Vec::new(),
            depth_limited: false,
            hidden: Vec::new(),
        }
    }
}

/// The plan that returns every event of a walk, once: the events of each node (by trace
/// code) and the edge events crossed that name no node as their trace code (a
/// transformation usually has none), each with the node it belongs to and that node's
/// depth. Every lookup is by trace code, or by event id among the events without a code
/// (sorted by id in compacted files), so both prune to few files, row groups and pages;
/// only edges written before event codes were kept need a search by id among all events.
pub fn plan(events: Arc<dyn TableProvider>, w: &Walk) -> Result<LogicalPlan> {
    plan_with(events, w, crate::engine::MAX_PRUNED_IN_LIST)
}

/// `column IN values`: a list of literals up to `max_list` values, which DataFusion prunes
/// row groups and pages by (statistics, bloom filters, the page index); above it one shared
/// set ([`crate::string_set`]), which the events table prunes files, row groups and pages
/// by itself.
fn one_of(column: &str, values: &[&str], max_list: usize) -> Expr {
    if values.len() <= max_list {
        col(column).in_list(values.iter().map(|v| lit(*v)).collect(), false)
    } else {
        crate::string_set::in_set(
            col(column),
            values.iter().map(|v| (*v).to_owned()).collect(),
        )
    }
}

pub(crate) fn plan_with(
    events: Arc<dyn TableProvider>,
    w: &Walk,
    max_list: usize,
) -> Result<LogicalPlan> {
    let codes: Vec<&str> = w.nodes.iter().map(|n| n.code.as_str()).collect();
    let windows: HashMap<&str, &[Window]> = w
        .nodes
        .iter()
        .map(|n| (n.code.as_str(), n.windows.as_slice()))
        .collect();
    let timed = w.nodes.iter().any(|n| !n.windows.is_empty());
    let node_table = if timed {
        // One row per window (a node without windows: one row open on both sides); a node's
        // events are those whose time falls in one of its windows.
        let (mut node, mut depth, mut from, mut to) = (vec![], vec![], vec![], vec![]);
        for n in &w.nodes {
            let bounds: Vec<(Option<i64>, Option<i64>)> = if n.windows.is_empty() {
                vec![(None, None)]
            } else {
                n.windows.iter().map(Window::bounds_ms).collect()
            };
            for (a, b) in bounds {
                node.push(n.code.as_str());
                depth.push(n.depth);
                from.push(a);
                to.push(b);
            }
        }
        let ts = DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, Some("UTC".into()));
        mem(
            vec![
                Field::new("trace_node", DataType::Utf8, false),
                Field::new("trace_depth", DataType::UInt32, false),
                Field::new("window_from", ts.clone(), true),
                Field::new("window_to", ts, true),
            ],
            vec![
                Arc::new(StringArray::from(node)),
                Arc::new(UInt32Array::from(depth)),
                Arc::new(arrow::array::TimestampMillisecondArray::from(from).with_timezone("UTC")),
                Arc::new(arrow::array::TimestampMillisecondArray::from(to).with_timezone("UTC")),
            ],
        )?
    } else {
        mem(
            vec![
                Field::new("trace_node", DataType::Utf8, false),
                Field::new("trace_depth", DataType::UInt32, false),
            ],
            vec![
                Arc::new(StringArray::from(codes.clone())),
                Arc::new(UInt32Array::from(
                    w.nodes.iter().map(|n| n.depth).collect::<Vec<_>>(),
                )),
            ],
        )?
    };
    let in_window = timed.then(|| {
        (col("n.window_from")
            .is_null()
            .or(col("events.event_time").gt_eq(col("n.window_from"))))
        .and(
            col("n.window_to")
                .is_null()
                .or(col("events.event_time").lt_eq(col("n.window_to"))),
        )
    });
    let event_cols: Vec<Expr> = events
        .schema()
        .fields()
        .iter()
        .map(|f| col(format!("events.{}", f.name())))
        .collect();
    let out_cols = |node: &str| -> Vec<Expr> {
        let mut v = vec![
            col(format!("{node}.trace_node")),
            col(format!("{node}.trace_depth")),
        ];
        v.extend(event_cols.iter().cloned());
        v
    };
    let by_code = LogicalPlanBuilder::scan("events", provider_as_source(events.clone()), None)?
        .filter(one_of("trace_code", &codes, max_list))?
        .join(
            LogicalPlanBuilder::scan("n", provider_as_source(node_table), None)?.build()?,
            JoinType::Inner,
            (vec!["trace_code"], vec!["trace_node"]),
            in_window,
        )?
        .project(out_cols("n"))?
        .build()?;
    // Edge events whose own code is a node, in that node's windows, are among that node's
    // events already.
    let covered = |c: &str, ms: i64| {
        windows
            .get(c)
            .is_some_and(|ws| ws.is_empty() || ws.iter().any(|x| x.contains(ms)))
    };
    let (mut no_code, mut other_code, mut other_ids, mut unknown) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut wanted: Vec<&EdgeEvent> = Vec::new();
    for e in &w.edge_events {
        match &e.lookup {
            EventLookup::Code(c) if covered(c, e.time_ms) => continue,
            EventLookup::Code(c) => {
                other_code.push(c.as_str());
                other_ids.push(e.event_id.as_str());
            }
            EventLookup::NoCode => no_code.push(e.event_id.as_str()),
            EventLookup::Unknown => unknown.push(e.event_id.as_str()),
        }
        wanted.push(e);
    }
    if wanted.is_empty() {
        return sorted(by_code);
    }
    let edge_table = mem(
        vec![
            Field::new("edge_event_id", DataType::Utf8, false),
            Field::new("trace_node", DataType::Utf8, false),
            Field::new("trace_depth", DataType::UInt32, false),
        ],
        vec![
            Arc::new(StringArray::from(
                wanted
                    .iter()
                    .map(|e| e.event_id.as_str())
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                wanted.iter().map(|e| e.node.as_str()).collect::<Vec<_>>(),
            )),
            Arc::new(UInt32Array::from(
                wanted.iter().map(|e| e.depth).collect::<Vec<_>>(),
            )),
        ],
    )?;
    let mut terms: Vec<Expr> = Vec::new();
    if !no_code.is_empty() {
        terms.push(
            col("trace_code")
                .is_null()
                .and(one_of("event_id", &no_code, max_list)),
        );
    }
    if !other_code.is_empty() {
        other_code.sort_unstable();
        other_code.dedup();
        terms.push(
            one_of("trace_code", &other_code, max_list)
                .and(one_of("event_id", &other_ids, max_list)),
        );
    }
    if !unknown.is_empty() {
        terms.push(one_of("event_id", &unknown, max_list).and(
            col("trace_code").is_null().or(Expr::Not(Box::new(one_of(
                "trace_code",
                &codes,
                max_list,
            )))),
        ));
    }
    let filter = terms
        .into_iter()
        .reduce(Expr::or)
        .ok_or_else(|| Error::Internal("no edge event lookup".into()))?;
    let by_edge = LogicalPlanBuilder::scan("events", provider_as_source(events), None)?
        .filter(filter)?
        .join(
            LogicalPlanBuilder::scan("x", provider_as_source(edge_table), None)?.build()?,
            JoinType::Inner,
            (vec!["event_id"], vec!["edge_event_id"]),
            None,
        )?
        .project(out_cols("x"))?
        .build()?;
    sorted(LogicalPlanBuilder::from(by_code).union(by_edge)?.build()?)
}

fn sorted(p: LogicalPlan) -> Result<LogicalPlan> {
    Ok(LogicalPlanBuilder::from(p)
        .sort(vec![
            col("trace_depth").sort(true, false),
            col("trace_node").sort(true, false),
            col("event_time").sort(true, false),
            col("event_id").sort(true, false),
        ])?
        .build()?)
}

fn mem(fields: Vec<Field>, cols: Vec<arrow::array::ArrayRef>) -> Result<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// The columns a person reads in a trace listing (the full rows carry every event column).
pub const SUMMARY_COLUMNS: [&str; 11] = [
    "trace_depth",
    "trace_node",
    "event_time",
    "event_type",
    "event_id",
    "participant_id",
    "site",
    "operator",
    "result",
    "counterparty_id",
    "device_id",
];

/// Keeps only `columns` (in that order) of trace result batches.
pub fn project(batches: &[RecordBatch], columns: &[&str]) -> Result<Vec<RecordBatch>> {
    batches
        .iter()
        .map(|b| {
            let idx: Vec<usize> = columns
                .iter()
                .map(|c| b.schema().index_of(c))
                .collect::<std::result::Result<_, _>>()?;
            Ok(b.project(&idx)?)
        })
        .collect()
}

/// The distinct values of a string column of trace result batches.
pub fn column_values(batches: &[RecordBatch], column: &str) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    for b in batches {
        let i = b.schema().index_of(column)?;
        let a = b.column(i).as_string_opt::<i32>().ok_or_else(|| {
            Error::Internal(format!("trace results: {column} is not a string column"))
        })?;
        out.extend(a.iter().flatten().map(str::to_owned));
    }
    Ok(out)
}

/// Keeps the rows of trace result batches whose `trace_node` is in `nodes`.
pub fn keep_nodes(batches: &[RecordBatch], nodes: &HashSet<String>) -> Result<Vec<RecordBatch>> {
    batches
        .iter()
        .map(|b| {
            let i = b.schema().index_of("trace_node")?;
            let a = b.column(i).as_string_opt::<i32>().ok_or_else(|| {
                Error::Internal("trace results: trace_node is not a string column".into())
            })?;
            let mask: arrow::array::BooleanArray = a
                .iter()
                .map(|n| Some(n.is_some_and(|n| nodes.contains(n))))
                .collect();
            Ok(arrow::compute::filter_record_batch(b, &mask)?)
        })
        .collect()
}

/// Renders a walk and its events as an indented tree: each node once, under the node it
/// was first reached from, with its events (time, type, site, result).
pub fn render_tree(w: &Walk, batches: &[RecordBatch]) -> String {
    use std::fmt::Write as _;
    let mut events: HashMap<&str, Vec<String>> = HashMap::new();
    for b in batches {
        let s = b.schema();
        let get = |n: &str| s.index_of(n).ok().map(|i| b.column(i).clone());
        let (Some(node), Some(ty), Some(time), Some(site), Some(result)) = (
            get("trace_node"),
            get("event_type"),
            get("event_time"),
            get("site"),
            get("result"),
        ) else {
            continue;
        };
        let (Some(node), Some(ty), Some(site), Some(result)) = (
            node.as_string_opt::<i32>(),
            ty.as_string_opt::<i32>(),
            site.as_string_opt::<i32>(),
            result.as_string_opt::<i32>(),
        ) else {
            continue;
        };
        let time = arrow::util::display::ArrayFormatter::try_new(
            time.as_ref(),
            &arrow::util::display::FormatOptions::default(),
        );
        for i in 0..b.num_rows() {
            let mut line = String::new();
            if let Ok(f) = &time {
                let _ = write!(line, "{} ", f.value(i));
            }
            line.push_str(ty.value(i));
            if !site.is_null(i) {
                let _ = write!(line, " at {}", site.value(i));
            }
            if !result.is_null(i) {
                let _ = write!(line, " ({})", result.value(i));
            }
            // Node names live in the walk; the map borrows them from there.
            if let Some(n) = w.nodes.iter().find(|n| n.code == node.value(i)) {
                events.entry(n.code.as_str()).or_default().push(line);
            }
        }
    }
    let mut kids: HashMap<&str, Vec<&TraceNode>> = HashMap::new();
    for n in &w.nodes {
        if let Some(f) = &n.from {
            kids.entry(f.as_str()).or_default().push(n);
        }
    }
    let mut out = String::new();
    let mut stack: Vec<(&TraceNode, String, bool)> = Vec::new();
    if let Some(root) = w.nodes.first() {
        stack.push((root, String::new(), true));
    }
    while let Some((n, prefix, last)) = stack.pop() {
        let (branch, cont) = if n.depth == 0 {
            ("", "")
        } else if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        let _ = write!(out, "{prefix}{branch}{}", n.code);
        for (i, win) in n.windows.iter().enumerate() {
            let _ = write!(
                out,
                "{} {} .. {}",
                if i == 0 { "  while" } else { "," },
                win.from.as_deref().unwrap_or("always"),
                win.to.as_deref().unwrap_or("now")
            );
        }
        out.push('\n');
        let inner = format!("{prefix}{cont}");
        let children = kids.get(n.code.as_str()).cloned().unwrap_or_default();
        let bar = if children.is_empty() { "  " } else { "│ " };
        for e in events
            .get(n.code.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let _ = writeln!(out, "{inner}{bar}  · {e}");
        }
        for (i, c) in children.iter().enumerate().rev() {
            stack.push((c, inner.clone(), i + 1 == children.len()));
        }
    }
    out
}

/// Normalises a trace code as the processors do (a Digital Link and an element string
/// naming the same object trace the same).
pub fn normalise(code: &str) -> Result<String> {
    veritrace_processors::tracecode::parse_trace_code(code)
        .map(|c| c.into_canonical())
        .map_err(|e| Error::BadRequest(format!("{e} ({})", e.reason_code())))
}

/// Walks the shared trace graph. When its index file turns out damaged, the damage is
/// logged, the graph falls back to the edges files ([`EdgeIndex::fall_back`]) and the walk is
/// answered from them: a damaged index costs time, never an answer.
pub fn walk_shared(
    index: &RwLock<Arc<EdgeIndex>>,
    dir: &DataDir,
    root: &str,
    direction: Direction,
    max_depth: Option<u32>,
) -> Result<Walk> {
    let current = || match index.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    };
    match current().try_walk(root, direction, max_depth) {
        Ok(w) => Ok(w),
        Err(e) => {
            tracing::error!(error = %e, "the trace index failed; loading the edges files it covers instead (rebuild it with `veritrace compact`)");
            {
                let mut g = match index.write() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                if g.file.is_some() {
                    Arc::make_mut(&mut *g).fall_back(dir)?;
                }
            }
            current().try_walk(root, direction, max_depth)
        }
    }
}

/// `trace_backward('code' [, depth])` and `trace_forward('code' [, depth])` in SQL.
#[derive(Debug)]
pub struct TraceFunction {
    direction: Direction,
    index: Arc<RwLock<Arc<EdgeIndex>>>,
    events: Arc<dyn TableProvider>,
    dir: DataDir,
}

impl TraceFunction {
    /// The function for one direction over the shared index and the events table.
    pub fn new(
        direction: Direction,
        index: Arc<RwLock<Arc<EdgeIndex>>>,
        events: Arc<dyn TableProvider>,
        dir: DataDir,
    ) -> Self {
        TraceFunction {
            direction,
            index,
            events,
            dir,
        }
    }
}

impl TableFunctionImpl for TraceFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let name = match self.direction {
            Direction::Backward => "trace_backward",
            Direction::Forward => "trace_forward",
        };
        let usage = || {
            datafusion::error::DataFusionError::Plan(format!(
                "usage: {name}('<trace code>' [, max_depth])"
            ))
        };
        let exprs = args.exprs();
        let code = match exprs.first() {
            Some(Expr::Literal(ScalarValue::Utf8(Some(s)), _))
            | Some(Expr::Literal(ScalarValue::LargeUtf8(Some(s)), _))
            | Some(Expr::Literal(ScalarValue::Utf8View(Some(s)), _)) => s.clone(),
            _ => return Err(usage()),
        };
        let depth = match exprs.get(1) {
            None => None,
            Some(Expr::Literal(v, _)) => Some(
                match v {
                    ScalarValue::Int64(Some(d)) => u32::try_from(*d).ok(),
                    ScalarValue::Int32(Some(d)) => u32::try_from(*d).ok(),
                    ScalarValue::UInt64(Some(d)) => u32::try_from(*d).ok(),
                    ScalarValue::UInt32(Some(d)) => Some(*d),
                    _ => None,
                }
                .ok_or_else(usage)?,
            ),
            Some(_) => return Err(usage()),
        };
        if exprs.len() > 2 {
            return Err(usage());
        }
        let code = normalise(&code)
            .map_err(|e| datafusion::error::DataFusionError::Plan(format!("{name}: {e}")))?;
        let w = walk_shared(&self.index, &self.dir, &code, self.direction, depth)
            .map_err(|e| datafusion::error::DataFusionError::Execution(format!("{name}: {e}")))?;
        if !w.cycles.is_empty() {
            tracing::warn!(root = %code, cycles = ?w.cycles, "trace graph has cycles (bad data); each node is reported once");
        }
        let p = plan(self.events.clone(), &w)
            .map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))?;
        Ok(Arc::new(ViewTable::new(p, None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(edges: &[(&str, &str, &str)]) -> EdgeIndex {
        let mut i = EdgeIndex::default();
        for (p, c, e) in edges {
            i.add(p, c, e);
        }
        i
    }

    /// A pseudo-random graph: forks, merges, cycles, containers packed and emptied.
    fn random_rows(seed: u64, n: usize) -> Vec<(String, String, String, char, i64)> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = |m: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        let nodes = (n / 2).max(3) as u64;
        (0..n)
            .map(|i| {
                let kind = if next(10) == 0 { 'd' } else { 'a' };
                let parent = if kind == 'd' && next(3) == 0 {
                    String::new()
                } else {
                    format!("N{}", next(nodes))
                };
                // Mostly towards higher numbers (a DAG), sometimes back (a cycle).
                let child = format!("N{}", next(nodes));
                (parent, child, format!("e{}", i / 2), kind, (i as i64) * 10)
            })
            .collect()
    }

    fn add_rows(i: &mut EdgeIndex, rows: &[(String, String, String, char, i64)]) {
        for (parent, child, event_id, kind, time_ms) in rows {
            i.add_row(EdgeRow {
                parent,
                child,
                event_id,
                event_code: (kind == &'a').then_some(child.as_str()),
                code_known: true,
                event_type: if *kind == 'd' {
                    "disassembly"
                } else {
                    "assembly"
                },
                time_ms: *time_ms,
            });
        }
    }

    /// `idx` with its first `in_file` rows' graph persisted and attached as the index file,
    /// the rest loaded in memory.
    fn with_file(rows: &[(String, String, String, char, i64)], in_file: usize) -> EdgeIndex {
        let mut older = EdgeIndex::default();
        add_rows(&mut older, &rows[..in_file]);
        let bytes = index::encode_for_test(&older, &["b0"]);
        let f = index::open_bytes(bytes).expect("open");
        let mut idx = EdgeIndex::default();
        add_rows(&mut idx, &rows[in_file..]);
        idx.covered = f.batches().iter().cloned().collect();
        idx.file = Some(Arc::new(f));
        idx
    }

    fn sorted_walk(w: &Walk) -> serde_json::Value {
        let mut nodes: Vec<_> = w
            .nodes
            .iter()
            .map(|n| (n.code.clone(), n.depth, format!("{:?}", n.windows)))
            .collect();
        nodes.sort();
        let mut evs: Vec<_> = w.edge_events.iter().map(|e| e.event_id.clone()).collect();
        evs.sort();
        let mut cycles = w.cycles.clone();
        cycles.sort();
        serde_json::json!({"nodes": nodes, "events": evs, "cycles": cycles.len(), "limited": w.depth_limited})
    }

    #[test]
    fn walks_through_the_index_file_answer_as_walks_in_memory() {
        for seed in 0..24u64 {
            let rows = random_rows(seed, 60 + (seed as usize % 5) * 40);
            let mut all = EdgeIndex::default();
            add_rows(&mut all, &rows);
            let whole = with_file(&rows, rows.len());
            let split = with_file(&rows, rows.len() / 2);
            let nodes: Vec<String> = (0..all.codes.ends.len() as u32)
                .map(|i| all.codes.name(i).to_owned())
                .chain(["absent".to_owned()])
                .collect();
            for root in &nodes {
                for d in [Direction::Forward, Direction::Backward] {
                    for depth in [None, Some(1), Some(2)] {
                        let want = all.walk(root, d, depth);
                        let got = whole.try_walk(root, d, depth).expect("walk");
                        // All in the file: the same walk, in the same order.
                        assert_eq!(
                            serde_json::to_value(&got).expect("json"),
                            serde_json::to_value(&want).expect("json"),
                            "seed {seed} root {root} {d:?} {depth:?}"
                        );
                        // Older links in the file, newer in memory: the same nodes, depths,
                        // windows and events.
                        let got = split.try_walk(root, d, depth).expect("walk");
                        assert_eq!(
                            sorted_walk(&got),
                            sorted_walk(&want),
                            "seed {seed} root {root} {d:?} {depth:?} (split)"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_damaged_index_file_is_refused_or_reported_with_its_block() {
        let rows = random_rows(7, 4000);
        let mut all = EdgeIndex::default();
        add_rows(&mut all, &rows);
        let bytes = index::encode_for_test(&all, &["b0"]);
        // A flipped byte in the data: found when the block holding it is read.
        let mut bad = bytes.clone();
        bad[70_000] ^= 0x40;
        let f = index::open_bytes(bad).expect("the header is intact");
        let e = f.verify_all().expect_err("damage").to_string();
        assert!(e.contains("block 17 (bytes 69632..73728)"), "{e}");
        // In the header or the trailer: refused at open.
        for at in [bytes.len() - 30, bytes.len() - 3, 3] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            let e = index::open_bytes(bad).expect_err("refused").to_string();
            assert!(
                e.contains("damaged") || e.contains("magic"),
                "byte {at}: {e}"
            );
        }
        // Truncated.
        let e = index::open_bytes(bytes[..bytes.len() / 2].to_vec())
            .expect_err("refused")
            .to_string();
        assert!(e.contains("damaged") || e.contains("truncated"), "{e}");
    }

    #[test]
    fn the_index_is_not_written_while_another_compactor_holds_the_lock() {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let dir = DataDir::create(tmp.path()).expect("data directory");
        // A directory never compacted: the index creates the lock's folder.
        assert!(build_index(&dir).expect("build").is_some());
        std::fs::remove_file(index::index_path(&dir)).expect("removed");
        let lock = dir
            .try_lock(&dir.compactor_lock_file(), "a compactor")
            .expect("lock")
            .expect("free");
        assert!(build_index(&dir).expect("build").is_none());
        assert!(!index::index_path(&dir).exists());
        drop(lock);
        let r = build_index(&dir)
            .expect("build")
            .expect("written once the lock is free");
        assert_eq!((r.batches, r.edges), (0, 0));
        assert!(r.path.exists());
        // Up to date: nothing to write.
        assert!(build_index(&dir).expect("build").is_none());
    }

    #[test]
    fn walks_visit_each_node_once_at_its_shortest_depth_through_forks_and_merges() {
        // raw B1, B2 -> merge M -> lots L1, L2 (split) ; L1 + L2 -> S ; S -> P ; B1 -> L3 -> P
        let i = index(&[
            ("B1", "L1", "t1"),
            ("B1", "L2", "t1"),
            ("B2", "L1", "t1"),
            ("B2", "L2", "t1"),
            ("L1", "S", "a1"),
            ("L2", "S", "a1"),
            ("S", "P", "a2"),
            ("B1", "L3", "t2"),
            ("L3", "P", "a2"),
        ]);
        let w = i.walk("P", Direction::Backward, None);
        let got: Vec<(&str, u32)> = w.nodes.iter().map(|n| (n.code.as_str(), n.depth)).collect();
        assert_eq!(got.len(), 7);
        let d = |c: &str| got.iter().find(|(x, _)| *x == c).map(|(_, d)| *d);
        assert_eq!(d("P"), Some(0));
        assert_eq!(d("S"), Some(1));
        assert_eq!(d("L3"), Some(1));
        assert_eq!(d("B1"), Some(2));
        assert_eq!(d("B2"), Some(3));
        let mut ev: Vec<&str> = w.edge_events.iter().map(|e| e.event_id.as_str()).collect();
        ev.sort_unstable();
        assert_eq!(ev, vec!["a1", "a2", "t1", "t2"]);
        assert!(w.cycles.is_empty());
        let f = i.walk("B2", Direction::Forward, None);
        let mut codes: Vec<&str> = f.nodes.iter().map(|n| n.code.as_str()).collect();
        codes.sort_unstable();
        assert_eq!(codes, vec!["B2", "L1", "L2", "P", "S"]);
        let limited = i.walk("B2", Direction::Forward, Some(1));
        assert_eq!(limited.nodes.len(), 3);
        assert!(limited.depth_limited);
        // Unknown codes trace to themselves only.
        assert_eq!(i.walk("nope", Direction::Forward, None).nodes.len(), 1);
    }

    /// (parent, child, event, type, time): `a` assembly, `d` disassembly.
    fn timed(rows: &[(&str, &str, &str, char, i64)]) -> EdgeIndex {
        let mut i = EdgeIndex::default();
        for &(parent, child, event_id, kind, time_ms) in rows {
            i.add_row(EdgeRow {
                parent,
                child,
                event_id,
                event_code: Some(child),
                code_known: true,
                event_type: if kind == 'd' {
                    "disassembly"
                } else {
                    "assembly"
                },
                time_ms,
            });
        }
        i
    }

    type Bounds = Vec<(Option<i64>, Option<i64>)>;

    fn windows(w: &Walk) -> Vec<(String, Bounds)> {
        w.nodes
            .iter()
            .map(|n| {
                (
                    n.code.clone(),
                    n.windows.iter().map(Window::bounds_ms).collect(),
                )
            })
            .collect()
    }

    fn events(w: &Walk) -> Vec<&str> {
        let mut v: Vec<&str> = w.edge_events.iter().map(|e| e.event_id.as_str()).collect();
        v.sort_unstable();
        v
    }

    /// Cases packed on a pallet, the pallet loaded on a truck and unloaded, the pallet
    /// emptied, one case repacked on another pallet, the first pallet reused and loaded on
    /// the same truck again; a part built into a case for good.
    fn pallets() -> EdgeIndex {
        timed(&[
            ("Q", "C1", "q", 'a', 5),
            ("C1", "P1", "a1", 'a', 10),
            ("C2", "P1", "a1", 'a', 10),
            ("P1", "K", "k1", 'a', 20),
            ("P1", "K", "k1d", 'd', 30),
            ("", "P1", "d1", 'd', 40),
            ("C9", "P1", "d9", 'd', 45),
            ("C2", "P2", "a2", 'a', 50),
            ("C3", "P1", "a3", 'a', 60),
            ("P1", "K", "k2", 'a', 70),
        ])
    }

    #[test]
    fn containment_is_followed_only_while_it_lasted() {
        let i = pallets();
        let (s, e) = (None, None);
        // Forward from a case: the pallet while it was on it, the truck while both held.
        let w = i.walk("C1", Direction::Forward, None);
        assert_eq!(
            windows(&w),
            vec![
                ("C1".into(), vec![]),
                ("P1".into(), vec![(Some(10), Some(40))]),
                ("K".into(), vec![(Some(20), Some(30))]),
            ]
        );
        assert_eq!(events(&w), vec!["a1", "d1", "k1", "k1d"]);
        // The repacked case: both pallets, each for its own stint.
        let w = i.walk("C2", Direction::Forward, None);
        assert_eq!(
            windows(&w),
            vec![
                ("C2".into(), vec![]),
                ("P1".into(), vec![(Some(10), Some(40))]),
                ("P2".into(), vec![]),
                ("K".into(), vec![(Some(20), Some(30))]),
            ]
        );
        // The case on the reused pallet: only the second trip of the truck.
        let w = i.walk("C3", Direction::Forward, None);
        assert_eq!(
            windows(&w),
            vec![
                ("C3".into(), vec![]),
                ("P1".into(), vec![(Some(60), e)]),
                ("K".into(), vec![(Some(70), e)]),
            ]
        );
        assert_eq!(events(&w), vec!["a3", "k2"]);
        // A part built in for good goes wherever its case went, from when it was built in.
        let w = i.walk("Q", Direction::Forward, None);
        assert_eq!(
            windows(&w),
            vec![
                ("Q".into(), vec![]),
                ("C1".into(), vec![]),
                ("P1".into(), vec![(Some(10), Some(40))]),
                ("K".into(), vec![(Some(20), Some(30))]),
            ]
        );
        // Backward from the pallet: every case it ever held, each up to when it came out;
        // the part inside a case up to then too. The disassembly of a case never packed
        // links nothing.
        let w = i.walk("P1", Direction::Backward, None);
        assert_eq!(
            windows(&w),
            vec![
                ("P1".into(), vec![]),
                ("C1".into(), vec![(s, Some(40))]),
                ("C2".into(), vec![(s, Some(40))]),
                ("C3".into(), vec![]),
                ("Q".into(), vec![(s, Some(40))]),
            ]
        );
        assert_eq!(events(&w), vec!["a1", "a3", "d1", "q"]);
        // Backward from the truck: the pallet on both trips.
        let w = i.walk("K", Direction::Backward, None);
        let codes: Vec<&str> = w.nodes.iter().map(|n| n.code.as_str()).collect();
        assert_eq!(codes, vec!["K", "P1", "C1", "C2", "C3", "Q"]);
        assert_eq!(windows(&w)[1], ("P1".into(), vec![]));
        // A case unpacked before its pallet was loaded never rode the truck.
        let early = timed(&[
            ("C1", "P1", "a1", 'a', 10),
            ("C1", "P1", "d1", 'd', 15),
            ("P1", "K", "k1", 'a', 20),
        ]);
        let w = early.walk("C1", Direction::Forward, None);
        assert_eq!(
            windows(&w),
            vec![
                ("C1".into(), vec![]),
                ("P1".into(), vec![(Some(10), Some(15))])
            ]
        );
        let w = early.walk("K", Direction::Backward, None);
        assert_eq!(
            windows(&w),
            vec![
                ("K".into(), vec![]),
                ("P1".into(), vec![]),
                ("C1".into(), vec![(s, Some(15))])
            ]
        );
    }

    #[test]
    fn a_node_reached_twice_in_different_windows_is_walked_in_both() {
        // A lot split over two cases; the cases ride one pallet at different times, and the
        // pallet rides a truck in the second stint only.
        let i = timed(&[
            ("L", "A", "sa", 'a', 1),
            ("L", "B", "sb", 'a', 1),
            ("A", "P", "pa", 'a', 10),
            ("A", "P", "pad", 'd', 20),
            ("B", "P", "pb", 'a', 30),
            ("B", "P", "pbd", 'd', 40),
            ("P", "K", "k", 'a', 35),
            ("P", "K", "kd", 'd', 36),
        ]);
        let w = i.walk("L", Direction::Forward, None);
        let got = windows(&w);
        assert_eq!(
            got[3],
            ("P".into(), vec![(Some(10), Some(20)), (Some(30), Some(40))])
        );
        assert_eq!(got[4], ("K".into(), vec![(Some(35), Some(36))]));
        assert_eq!(w.nodes[4].from.as_deref(), Some("P"));
    }

    #[test]
    fn cycles_are_reported_not_looped_on() {
        let i = index(&[
            ("A", "B", "e1"),
            ("B", "C", "e2"),
            ("C", "A", "e3"),
            ("C", "D", "e4"),
        ]);
        let w = i.walk("A", Direction::Forward, None);
        assert_eq!(w.nodes.len(), 4);
        assert_eq!(w.cycles.len(), 1, "{:?}", w.cycles);
        let c = &w.cycles[0];
        assert_eq!(c.first(), c.last());
        assert_eq!(c.len(), 4);
        let self_loop = index(&[("X", "X", "e")]);
        assert_eq!(
            self_loop.walk("X", Direction::Backward, None).cycles.len(),
            1
        );
    }
}
