//! The trace graph persisted: `index/trace-graph.vtg`, written by `veritrace compact` from the
//! edges files of the committed batches, read lazily by a fresh engine instead of decoding
//! every edges file at its first trace.
//!
//! Layout (little-endian; every section 8-byte aligned), in compressed sparse row form over
//! interned codes and event ids:
//!
//! | section | content |
//! |---|---|
//! | `code_ends`, `code_bytes` | the codes: one byte arena, the end of each code in it (u64) |
//! | `code_table` | open-addressing hash table (xxh3-64 of the code, linear probing): code ids (u32), `u32::MAX` empty |
//! | `event_ends`, `event_bytes` | the edge events' ids, the same way |
//! | `event_codes` | each edge event's own trace code id (u32; [`NULL_CODE`], [`UNKNOWN_CODE`]) |
//! | `event_times` | each edge event's time (i64, epoch ms) |
//! | `parent_offsets`, `parent_edges` | per code, its parents: (code, event) pairs (u32, u32), in load order |
//! | `child_offsets`, `child_edges` | per code, its children, the same way |
//! | `ends` | the links disassemblies ended: (container, input or [`EVERYTHING`], event), by container |
//! | block checksums | xxh3-64 of every 4 KiB block of everything before it |
//!
//! then a JSON header (the sections, the counts, the batches covered in load order) and a
//! 24-byte trailer: the offsets of the checksums and of the header, and xxh3-64 over both.
//! The trailer, the header and the checksum table are checked when the file is opened; each
//! block when it is first read. A block that does not match is reported with its number and
//! offset, and the engine falls back to the edges files (the index is derived data: the
//! edges files stay the truth, and nothing is deleted).
//!
//! A walk over the file reads only what it reaches: the nodes' adjacency, the events crossed
//! and their codes, through a bounded cache of verified blocks. It gathers the reachable
//! subgraph (with the edges of batches the file does not cover yet, loaded in memory as
//! before) into a small [`EdgeIndex`] and walks that with the in-memory walk, so both give
//! the same answers.

use std::collections::{HashMap as StdHashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use datafusion::common::HashMap;
use serde::{Deserialize, Serialize};
use veritrace_anchor::DataDir;
use veritrace_anchor::Source;

use super::{Direction, EVERYTHING, EdgeIndex, EdgeRow, NULL_CODE, UNKNOWN_CODE};
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"VTGRAPH1";
/// Bytes per checksummed block: a walk touches codes and events scattered over the file,
/// so blocks are small (one read and one hash of a page each).
const BLOCK: u64 = 4096;
/// Verified blocks kept per open file (64 MiB).
const CACHE_BLOCKS: usize = 16 * 1024;
const TRAILER: u64 = 24;
const EMPTY: u32 = u32::MAX;

/// Where the index lives in a data directory.
pub fn index_path(dir: &DataDir) -> PathBuf {
    dir.root().join("index").join("trace-graph.vtg")
}

/// One section: its offset and length in bytes.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Section {
    offset: u64,
    len: u64,
}

/// The sections of the file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Sections {
    code_ends: Section,
    code_bytes: Section,
    code_table: Section,
    event_ends: Section,
    event_bytes: Section,
    event_codes: Section,
    event_times: Section,
    parent_offsets: Section,
    parent_edges: Section,
    child_offsets: Section,
    child_edges: Section,
    ends: Section,
}

/// The header: counts, sections, and the batches whose edges are in the file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Header {
    version: u32,
    codes: u64,
    events: u64,
    edges: u64,
    /// Links ended by disassemblies.
    ends: u64,
    sections: Sections,
    /// The batches covered, in the order their edges were loaded.
    batches: Vec<String>,
}

/// What [`build`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// The file.
    pub path: PathBuf,
    /// Batches covered.
    pub batches: usize,
    /// Links (and ended links) in it.
    pub edges: u64,
    /// Distinct trace codes.
    pub codes: u64,
    /// Distinct edge events.
    pub events: u64,
    /// File size.
    pub bytes: u64,
}

fn hash(s: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(s.as_bytes())
}

/// Builds the index over every committed batch (manifest order: stream, partition, chain)
/// and replaces the file atomically, under the compactor's lock; nothing when the file there
/// covers exactly those batches and reads back whole, or when another compactor holds the
/// lock (it writes the index after its compaction).
pub fn build(dir: &DataDir) -> Result<Option<BuildReport>> {
    if !dir.is_remote() {
        std::fs::create_dir_all(dir.compacted_dir()).map_err(|e| {
            Error::Internal(format!("creating {}: {e}", dir.compacted_dir().display()))
        })?;
    }
    let holder = format!("trace index (pid {})", std::process::id());
    let Some(_lock) = dir
        .try_lock(&dir.compactor_lock_file(), &holder)
        .map_err(|e| Error::Internal(format!("the compactor's lock: {e}")))?
    else {
        tracing::info!("another compactor holds the lock; it writes the trace index");
        return Ok(None);
    };
    let mut headers = dir
        .all_batch_headers()
        .map_err(|e| Error::corrupt("batch manifests", e))?;
    headers.sort_by(|a, b| (&a.stream, a.partition, a.seq).cmp(&(&b.stream, b.partition, b.seq)));
    let ids: Vec<&str> = headers.iter().map(|h| h.batch_id.as_str()).collect();
    if let Ok(Some(f)) = GraphFile::open(dir)
        && f.batches().len() == ids.len()
        && f.batches().iter().zip(&ids).all(|(a, b)| a == b)
        && f.verify_all().is_ok()
    {
        return Ok(None);
    }
    let mut idx = EdgeIndex::default();
    idx.load_batches(dir, ids.iter().copied())?;
    let path = index_path(dir);
    // A local file is streamed to a temporary name and renamed (the graph is never copied
    // whole in memory); an object is uploaded whole.
    let len = if dir.is_remote() {
        let mut bytes = Vec::new();
        let len = encode(&idx, &ids, &mut bytes)?;
        dir.write_replace(&path, bytes)
            .map_err(|e| Error::Internal(format!("writing {}: {e}", path.display())))?;
        len
    } else {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::Internal(format!("creating {}: {e}", parent.display())))?;
        }
        let mut len = 0;
        veritrace_anchor::write_atomic(&path, |f| {
            len = encode(&idx, &ids, f)
                .map_err(|e| veritrace_anchor::Error::Invalid(e.to_string()))?;
            Ok(())
        })
        .map_err(|e| Error::Internal(format!("writing {}: {e}", path.display())))?;
        len
    };
    Ok(Some(BuildReport {
        path,
        batches: ids.len(),
        edges: idx.edges,
        codes: idx.codes.ends.len() as u64,
        events: idx.events.ends.len() as u64,
        bytes: len,
    }))
}

/// Where the file is written: offsets, block checksums on the fly, and a small buffer in
/// front of the destination, so the graph is never copied whole into memory.
struct Sink<'a> {
    out: &'a mut dyn std::io::Write,
    pos: u64,
    block: Vec<u8>,
    sums: Vec<u64>,
    buf: Vec<u8>,
}

impl<'a> Sink<'a> {
    fn new(out: &'a mut dyn std::io::Write) -> Self {
        Sink {
            out,
            pos: 0,
            block: Vec::with_capacity(BLOCK as usize),
            sums: Vec::new(),
            buf: Vec::with_capacity(1 << 16),
        }
    }

    /// Bytes of the checked region (block checksums are computed as they pass).
    fn put(&mut self, mut b: &[u8]) -> std::io::Result<()> {
        self.pos += b.len() as u64;
        while !b.is_empty() {
            let room = BLOCK as usize - self.block.len();
            let (now, rest) = b.split_at(room.min(b.len()));
            self.block.extend_from_slice(now);
            if self.block.len() == BLOCK as usize {
                self.sums.push(xxhash_rust::xxh3::xxh3_64(&self.block));
                self.block.clear();
            }
            self.buf.extend_from_slice(now);
            if self.buf.len() >= 1 << 16 {
                self.out.write_all(&self.buf)?;
                self.buf.clear();
            }
            b = rest;
        }
        Ok(())
    }

    /// Starts a section: pads to 8 bytes.
    fn align(&mut self) -> std::io::Result<u64> {
        while !self.pos.is_multiple_of(8) {
            self.put(&[0])?;
        }
        Ok(self.pos)
    }

    /// One section of values, each as little-endian bytes.
    fn section<const N: usize>(
        &mut self,
        values: impl IntoIterator<Item = [u8; N]>,
    ) -> std::io::Result<Section> {
        let offset = self.align()?;
        for v in values {
            self.put(&v)?;
        }
        Ok(Section {
            offset,
            len: self.pos - offset,
        })
    }

    fn bytes(&mut self, v: &[u8]) -> std::io::Result<Section> {
        let offset = self.align()?;
        self.put(v)?;
        Ok(Section {
            offset,
            len: v.len() as u64,
        })
    }

    /// Ends the checked region and writes the checksums, the header and the trailer.
    fn finish(mut self, header: &[u8]) -> std::io::Result<u64> {
        self.align()?;
        if !self.block.is_empty() {
            self.sums.push(xxhash_rust::xxh3::xxh3_64(&self.block));
        }
        let checked = self.pos;
        let mut tail: Vec<u8> = self.sums.iter().flat_map(|v| v.to_le_bytes()).collect();
        let header_at = checked + tail.len() as u64;
        tail.extend_from_slice(header);
        let sum = xxhash_rust::xxh3::xxh3_64(&tail);
        self.buf.extend_from_slice(&tail);
        for v in [checked, header_at, sum] {
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
        self.out.write_all(&self.buf)?;
        self.out.flush()?;
        Ok(header_at + header.len() as u64 + TRAILER)
    }
}

/// The code table: slot -> code id.
fn table(names: &super::Interner) -> Vec<u32> {
    let n = names.ends.len();
    let slots = (n * 2).next_power_of_two().max(2);
    let mask = slots - 1;
    let mut t = vec![EMPTY; slots];
    for i in 0..n {
        let mut s = hash(names.name(i as u32)) as usize & mask;
        while t[s] != EMPTY {
            s = (s + 1) & mask;
        }
        t[s] = i as u32;
    }
    t
}

/// Per node, where its list starts in the edges section (and the end after the last).
fn offsets(adj: &[Vec<(u32, u32)>]) -> impl Iterator<Item = [u8; 8]> + '_ {
    std::iter::once(0u64)
        .chain(adj.iter().scan(0u64, |at, l| {
            *at += l.len() as u64;
            Some(*at)
        }))
        .map(u64::to_le_bytes)
}

fn pairs(adj: &[Vec<(u32, u32)>]) -> impl Iterator<Item = [u8; 8]> + '_ {
    adj.iter().flatten().map(|&(n, e)| {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&n.to_le_bytes());
        b[4..].copy_from_slice(&e.to_le_bytes());
        b
    })
}

/// Writes the file for `idx`, which holds the edges of `batches`; returns its length.
fn encode(idx: &EdgeIndex, batches: &[&str], out: &mut dyn std::io::Write) -> Result<u64> {
    let io = |e: std::io::Error| Error::Internal(format!("writing the trace index: {e}"));
    let mut w = Sink::new(out);
    w.put(MAGIC).map_err(io)?;
    let ends = |i: &super::Interner| {
        i.ends
            .iter()
            .map(|&e| (e as u64).to_le_bytes())
            .collect::<Vec<_>>()
    };
    let mut s = Sections {
        code_ends: w.section(ends(&idx.codes)).map_err(io)?,
        code_bytes: w.bytes(idx.codes.bytes.as_bytes()).map_err(io)?,
        code_table: w
            .section(table(&idx.codes).into_iter().map(u32::to_le_bytes))
            .map_err(io)?,
        event_ends: w.section(ends(&idx.events)).map_err(io)?,
        event_bytes: w.bytes(idx.events.bytes.as_bytes()).map_err(io)?,
        ..Default::default()
    };
    s.event_codes = w
        .section(idx.event_codes.iter().map(|c| c.to_le_bytes()))
        .map_err(io)?;
    s.event_times = w
        .section(idx.event_times.iter().map(|t| t.to_le_bytes()))
        .map_err(io)?;
    s.parent_offsets = w.section(offsets(&idx.parents)).map_err(io)?;
    s.parent_edges = w.section(pairs(&idx.parents)).map_err(io)?;
    s.child_offsets = w.section(offsets(&idx.children)).map_err(io)?;
    s.child_edges = w.section(pairs(&idx.children)).map_err(io)?;
    let mut containers: Vec<&u32> = idx.ends.keys().collect();
    containers.sort_unstable();
    let triples = containers.iter().flat_map(|c| {
        idx.ends[*c].iter().map(move |&(input, e)| {
            let mut b = [0u8; 12];
            for (i, v) in [**c, input, e].into_iter().enumerate() {
                b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
            }
            b
        })
    });
    s.ends = w.section(triples).map_err(io)?;
    let header = Header {
        version: 1,
        codes: idx.codes.ends.len() as u64,
        events: idx.events.ends.len() as u64,
        edges: idx.edges,
        ends: s.ends.len / 12,
        sections: s,
        batches: batches.iter().map(|b| b.to_string()).collect(),
    };
    let header = serde_json::to_vec(&header).map_err(|e| Error::Internal(e.to_string()))?;
    w.finish(&header).map_err(io)
}

/// Verified blocks, oldest dropped first.
#[derive(Debug, Default)]
struct Cache {
    blocks: StdHashMap<u64, Arc<[u8]>>,
    order: VecDeque<u64>,
}

/// An open index file, read lazily.
#[derive(Debug)]
pub struct GraphFile {
    path: PathBuf,
    src: Source,
    header: Header,
    /// Bytes covered by block checksums.
    checked: u64,
    sums: Vec<u64>,
    cache: Mutex<Cache>,
    /// Slots of the code table.
    slots: u64,
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

impl GraphFile {
    /// Opens the data directory's index (None: there is none) and checks its trailer, header
    /// and checksums.
    pub fn open(dir: &DataDir) -> Result<Option<GraphFile>> {
        let path = index_path(dir);
        let src = match dir.open_source(&path) {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(None),
            Err(e) => return Err(Error::corrupt(path.display(), e)),
        };
        Self::from_source(path, src).map(Some)
    }

    fn from_source(path: PathBuf, src: Source) -> Result<GraphFile> {
        use parquet::file::reader::{ChunkReader, Length};
        let bad = |d: String| Error::corrupt(path.display(), d);
        let len = src.len();
        let get = |at: u64, n: u64| -> Result<bytes::Bytes> {
            if at.checked_add(n).is_none_or(|end| end > len) {
                return Err(bad(format!(
                    "truncated: {n} bytes at {at} are past its end ({len} bytes)"
                )));
            }
            src.get_bytes(at, n as usize)
                .map_err(|e| bad(format!("reading {n} bytes at {at}: {e}")))
        };
        if len < MAGIC.len() as u64 + TRAILER {
            return Err(bad(format!("truncated: {len} bytes")));
        }
        if get(0, 8)?.as_ref() != MAGIC {
            return Err(bad("not a trace graph index (bad magic)".into()));
        }
        let t = get(len - TRAILER, TRAILER)?;
        let (checked, header_at, sum) = (le_u64(&t[0..]), le_u64(&t[8..]), le_u64(&t[16..]));
        if !checked.is_multiple_of(8)
            || checked > header_at
            || header_at > len - TRAILER
            || (header_at - checked) != checked.div_ceil(BLOCK) * 8
        {
            return Err(bad(format!(
                "its trailer is damaged (checksums at {checked}, header at {header_at}, {len} bytes)"
            )));
        }
        let tail = get(checked, len - TRAILER - checked)?;
        if xxhash_rust::xxh3::xxh3_64(&tail) != sum {
            return Err(bad(
                "its header or checksum table is damaged (checksum mismatch)".into(),
            ));
        }
        let nsums = (header_at - checked) as usize;
        let sums: Vec<u64> = tail[..nsums].chunks(8).map(le_u64).collect();
        let header: Header = serde_json::from_slice(&tail[nsums..])
            .map_err(|e| bad(format!("its header is not readable: {e}")))?;
        if header.version != 1 {
            return Err(bad(format!("version {} is not supported", header.version)));
        }
        let s = &header.sections;
        let within = |sec: &Section, want: Option<u64>| {
            sec.offset
                .checked_add(sec.len)
                .is_some_and(|e| e <= checked)
                && want.is_none_or(|w| w == sec.len)
        };
        let (c, e, n_edges) = (header.codes, header.events, 8 * header.edges);
        let ok = within(&s.code_ends, Some(8 * c))
            && within(&s.code_bytes, None)
            && within(&s.code_table, None)
            && s.code_table.len >= 8
            && (s.code_table.len / 4).is_power_of_two()
            && within(&s.event_ends, Some(8 * e))
            && within(&s.event_bytes, None)
            && within(&s.event_codes, Some(4 * e))
            && within(&s.event_times, Some(8 * e))
            && within(&s.parent_offsets, Some(8 * (c + 1)))
            && within(&s.child_offsets, Some(8 * (c + 1)))
            && within(&s.parent_edges, None)
            && within(&s.child_edges, None)
            && s.parent_edges.len + s.child_edges.len <= 2 * n_edges
            && within(&s.ends, Some(12 * header.ends));
        if !ok {
            return Err(bad("its header's sections do not fit the file".into()));
        }
        let slots = s.code_table.len / 4;
        Ok(GraphFile {
            path,
            src,
            header,
            checked,
            sums,
            cache: Mutex::new(Cache::default()),
            slots,
        })
    }

    /// The batches whose edges the file holds.
    pub fn batches(&self) -> &[String] {
        &self.header.batches
    }

    /// Links in the file.
    pub fn edges(&self) -> u64 {
        self.header.edges
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn damaged(&self, detail: String) -> Error {
        Error::corrupt(self.path.display(), detail)
    }

    /// Block `b`, verified.
    fn block(&self, b: u64) -> Result<Arc<[u8]>> {
        use parquet::file::reader::ChunkReader;
        if let Some(hit) = self.lock().blocks.get(&b) {
            return Ok(hit.clone());
        }
        let at = b * BLOCK;
        let n = BLOCK.min(self.checked - at);
        let bytes = self
            .src
            .get_bytes(at, n as usize)
            .map_err(|e| self.damaged(format!("reading block {b} at byte {at}: {e}")))?;
        let want = self.sums.get(b as usize).copied();
        if want != Some(xxhash_rust::xxh3::xxh3_64(&bytes)) {
            return Err(self.damaged(format!(
                "block {b} (bytes {at}..{}) does not match its checksum",
                at + n
            )));
        }
        let block: Arc<[u8]> = Arc::from(bytes.as_ref());
        let mut c = self.lock();
        if c.order.len() >= CACHE_BLOCKS
            && let Some(old) = c.order.pop_front()
        {
            c.blocks.remove(&old);
        }
        c.order.push_back(b);
        c.blocks.insert(b, block.clone());
        Ok(block)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        match self.cache.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// `len` bytes at `at` of section `sec`.
    fn read(&self, sec: &Section, at: u64, len: u64) -> Result<Vec<u8>> {
        if at.checked_add(len).is_none_or(|end| end > sec.len) {
            return Err(self.damaged(format!(
                "a read of {len} bytes at {at} leaves its section of {} bytes (inconsistent offsets)",
                sec.len
            )));
        }
        let mut out = Vec::with_capacity(len as usize);
        let (mut from, end) = (sec.offset + at, sec.offset + at + len);
        while from < end {
            let b = from / BLOCK;
            let block = self.block(b)?;
            let start = (from - b * BLOCK) as usize;
            let stop = ((end - b * BLOCK) as usize).min(block.len());
            out.extend_from_slice(&block[start..stop]);
            from = b * BLOCK + stop as u64;
        }
        Ok(out)
    }

    fn u64_at(&self, sec: &Section, i: u64) -> Result<u64> {
        Ok(le_u64(&self.read(sec, i * 8, 8)?))
    }

    fn u32_at(&self, sec: &Section, i: u64) -> Result<u32> {
        Ok(le_u32(&self.read(sec, i * 4, 4)?))
    }

    fn name(&self, ends: &Section, bytes: &Section, i: u32) -> Result<String> {
        let i = u64::from(i);
        let start = if i == 0 { 0 } else { self.u64_at(ends, i - 1)? };
        let end = self.u64_at(ends, i)?;
        if end < start {
            return Err(self.damaged(format!("name {i} ends before it starts")));
        }
        String::from_utf8(self.read(bytes, start, end - start)?)
            .map_err(|_| self.damaged(format!("name {i} is not UTF-8")))
    }

    fn code(&self, i: u32) -> Result<String> {
        if u64::from(i) >= self.header.codes {
            return Err(self.damaged(format!("code {i} is out of range")));
        }
        let s = &self.header.sections;
        self.name(&s.code_ends, &s.code_bytes, i)
    }

    fn event(&self, i: u32) -> Result<String> {
        if u64::from(i) >= self.header.events {
            return Err(self.damaged(format!("event {i} is out of range")));
        }
        let s = &self.header.sections;
        self.name(&s.event_ends, &s.event_bytes, i)
    }

    /// The id of code `s` in the file.
    fn code_id(&self, s: &str) -> Result<Option<u32>> {
        let table = &self.header.sections.code_table;
        let mask = self.slots - 1;
        let mut at = hash(s) & mask;
        for _ in 0..self.slots {
            let id = self.u32_at(table, at)?;
            if id == EMPTY {
                return Ok(None);
            }
            if self.code(id)? == s {
                return Ok(Some(id));
            }
            at = (at + 1) & mask;
        }
        Ok(None)
    }

    fn adjacency(&self, direction: Direction, node: u32) -> Result<Vec<(u32, u32)>> {
        let s = &self.header.sections;
        let (offsets, edges) = match direction {
            Direction::Backward => (&s.parent_offsets, &s.parent_edges),
            Direction::Forward => (&s.child_offsets, &s.child_edges),
        };
        let (from, to) = (
            self.u64_at(offsets, u64::from(node))?,
            self.u64_at(offsets, u64::from(node) + 1)?,
        );
        if to < from {
            return Err(self.damaged(format!(
                "the adjacency of code {node} ends before it starts"
            )));
        }
        let raw = self.read(edges, from * 8, (to - from) * 8)?;
        Ok(raw
            .chunks(8)
            .map(|c| (le_u32(c), le_u32(&c[4..])))
            .collect())
    }

    /// The links ended in `container`: (input or [`EVERYTHING`], disassembly event).
    fn ends_of(&self, container: u32) -> Result<Vec<(u32, u32)>> {
        let sec = &self.header.sections.ends;
        let n = self.header.ends;
        let at = |i: u64| -> Result<(u32, u32, u32)> {
            let b = self.read(sec, i * 12, 12)?;
            Ok((le_u32(&b), le_u32(&b[4..]), le_u32(&b[8..])))
        };
        let (mut lo, mut hi) = (0u64, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if at(mid)?.0 < container {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut out = Vec::new();
        while lo < n {
            let (c, input, e) = at(lo)?;
            if c != container {
                break;
            }
            out.push((input, e));
            lo += 1;
        }
        Ok(out)
    }

    /// Reads every block against its checksum (`veritrace check`).
    pub fn verify_all(&self) -> Result<()> {
        for b in 0..self.checked.div_ceil(BLOCK) {
            self.block(b)?;
        }
        Ok(())
    }
}

/// One edge event as the subgraph needs it.
struct Ev {
    id: String,
    code: Option<String>,
    known: bool,
    time: i64,
}

impl GraphFile {
    fn ev(&self, e: u32, cache: &mut HashMap<u32, Arc<Ev>>) -> Result<Arc<Ev>> {
        if let Some(v) = cache.get(&e) {
            return Ok(v.clone());
        }
        let s = &self.header.sections;
        let c = self.u32_at(&s.event_codes, u64::from(e))?;
        let (code, known) = match c {
            UNKNOWN_CODE => (None, false),
            NULL_CODE => (None, true),
            c => (Some(self.code(c)?), true),
        };
        let time = self.u64_at(&s.event_times, u64::from(e))? as i64;
        let v = Arc::new(Ev {
            id: self.event(e)?,
            code,
            known,
            time,
        });
        cache.insert(e, v.clone());
        Ok(v)
    }
}

impl EdgeIndex {
    /// The part of the graph a walk from `root` can reach: every link `direction` of every
    /// node reachable (within `max_depth` levels; the nodes at the limit keep theirs, so the
    /// walk can tell it stopped early), and the ended links of those nodes, from the file
    /// first and then from the batches loaded in memory, in that order.
    pub(super) fn subgraph(
        &self,
        file: &GraphFile,
        root: &str,
        direction: Direction,
        max_depth: Option<u32>,
    ) -> Result<EdgeIndex> {
        let mut sub = EdgeIndex {
            in_time: self.in_time || !self.ends.is_empty() || file.header.ends > 0,
            ..Default::default()
        };
        let mut events: HashMap<u32, Arc<Ev>> = HashMap::new();
        let mut depth: HashMap<String, u32> = HashMap::from([(root.to_owned(), 0)]);
        // Each node with its id in the file when reached through the file (found by name
        // otherwise).
        let mut queue: VecDeque<(String, Option<u32>)> = VecDeque::from([(root.to_owned(), None)]);
        while let Some((name, known)) = queue.pop_front() {
            let d = depth[&name];
            let expand = max_depth.is_none_or(|m| d < m);
            let mut next_names: Vec<(String, Option<u32>)> = Vec::new();
            let link = |sub: &mut EdgeIndex, other: &str, ev: &Ev| {
                let (parent, child) = match direction {
                    Direction::Backward => (other, name.as_str()),
                    Direction::Forward => (name.as_str(), other),
                };
                sub.add_row(EdgeRow {
                    parent,
                    child,
                    event_id: &ev.id,
                    event_code: ev.code.as_deref(),
                    code_known: ev.known,
                    event_type: "",
                    time_ms: ev.time,
                });
            };
            let id = match known {
                Some(id) => Some(id),
                None => file.code_id(&name)?,
            };
            if let Some(n) = id {
                for (other, e) in file.adjacency(direction, n)? {
                    let other_name = file.code(other)?;
                    let ev = file.ev(e, &mut events)?;
                    link(&mut sub, &other_name, &ev);
                    next_names.push((other_name, Some(other)));
                }
                for (input, e) in file.ends_of(n)? {
                    let input = if input == EVERYTHING {
                        String::new()
                    } else {
                        file.code(input)?
                    };
                    let ev = file.ev(e, &mut events)?;
                    sub.add_row(EdgeRow {
                        parent: &input,
                        child: &name,
                        event_id: &ev.id,
                        event_code: None,
                        code_known: false,
                        event_type: "disassembly",
                        time_ms: ev.time,
                    });
                }
            }
            if let Some(n) = self.codes.get(&name) {
                for &(other, e) in &self.adjacency(direction)[n as usize] {
                    let other = self.codes.name(other).to_owned();
                    let ev = self.memory_ev(e);
                    link(&mut sub, &other, &ev);
                    next_names.push((other, None));
                }
                for &(input, e) in self.ends.get(&n).into_iter().flatten() {
                    let input = if input == EVERYTHING {
                        ""
                    } else {
                        self.codes.name(input)
                    };
                    sub.add_row(EdgeRow {
                        parent: input,
                        child: &name,
                        event_id: self.events.name(e),
                        event_code: None,
                        code_known: false,
                        event_type: "disassembly",
                        time_ms: self.event_times[e as usize],
                    });
                }
            }
            if expand {
                for (other, id) in next_names {
                    if !depth.contains_key(&other) {
                        depth.insert(other.clone(), d + 1);
                        queue.push_back((other, id));
                    }
                }
            }
        }
        sub.retract(self.retracted_ids.clone());
        Ok(sub)
    }

    fn memory_ev(&self, e: u32) -> Ev {
        let (code, known) = match self.event_codes[e as usize] {
            UNKNOWN_CODE => (None, false),
            NULL_CODE => (None, true),
            c => (Some(self.codes.name(c).to_owned()), true),
        };
        Ev {
            id: self.events.name(e).to_owned(),
            code,
            known,
            time: self.event_times[e as usize],
        }
    }
}

#[cfg(test)]
pub(super) fn encode_for_test(idx: &EdgeIndex, batches: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    let len = encode(idx, batches, &mut out).expect("encode");
    assert_eq!(len, out.len() as u64);
    out
}

#[cfg(test)]
pub(super) fn open_bytes(bytes: Vec<u8>) -> Result<GraphFile> {
    GraphFile::from_source(
        PathBuf::from("test.vtg"),
        Source::Bytes(bytes::Bytes::from(bytes)),
    )
}
