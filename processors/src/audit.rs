//! The audit log of the query servers: every request (who, role, when, route or SQL text,
//! rows returned, digest of the result, outcome) becomes an event of type `audit` on the
//! audit stream, sealed into batches, put into epochs and anchored like any event, so an
//! auditor proves an audit entry as any other.
//!
//! Entries come only from the servers of the node (they submit [`AuditEntry`] JSON to an
//! embedded processor of the audit stream, see [`crate::embedded`]); an `audit` event
//! type sent by a source is refused like any unknown type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::{EVENT_VERSION, Event, EventType, Limits, Participant};
use crate::reason::{Reason, Rejection};
use crate::signed::Opened;

/// The stream (batch names, manifest) of the audit log.
pub use veritrace_anchor::AUDIT_STREAM;

/// Longest SQL text kept in an entry, in bytes (longer text is cut, its digest kept whole).
pub const MAX_SQL_BYTES: usize = 16 * 1024;

/// One request, as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Unique id (`audit:<node>:<random>`).
    pub entry_id: String,
    /// When the request arrived (ms since the epoch).
    pub at_ms: i64,
    /// The server that answered (host name and listener).
    pub node: String,
    /// Who: `token:<id>`, `jwt:<sub>`, `anonymous`, or `-` when authentication failed.
    pub who: String,
    /// The role, when authenticated.
    pub role: String,
    /// The participant the caller speaks for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<String>,
    /// `http` or `flight`.
    pub protocol: String,
    /// Method and route (`POST /v1/sql`, `GET /v1/events/{id}/proof`, `DoGet`).
    pub route: String,
    /// The path or statement target (event id, trace code), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The SQL text, for statements (cut at [`MAX_SQL_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// SHA-256 of the whole SQL text (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_sha256: Option<String>,
    /// Rows returned, when rows were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// SHA-256 of the result as sent (the response body; the Arrow IPC messages for
    /// Flight), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_sha256: Option<String>,
    /// HTTP status (or the gRPC code) of the answer.
    pub status: u32,
    /// `ok`, or the reason code of the refusal or failure.
    pub outcome: String,
    /// How long it took (ms).
    pub duration_ms: u64,
    /// What else the entry says (an erasure: the fields and the reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Appends entries to the audit stream from a process that is not a server (`veritrace
/// erase`): on the first audit partition no other process holds, sealed as one batch before
/// this returns.
pub fn append(
    dir: &veritrace_anchor::DataDir,
    policy: crate::BatchPolicy,
    holder: &str,
    entries: &[AuditEntry],
) -> crate::Result<Option<veritrace_anchor::BatchHeader>> {
    for p in 0..64 {
        let Some(_lock) = dir.try_lock(&dir.partition_lock_file(AUDIT_STREAM, p), holder)? else {
            continue;
        };
        let mut proc = crate::PartitionProcessor::open(dir, AUDIT_STREAM, p, policy)?.with_audit();
        // What a server answered on this partition before it stopped comes first.
        replay_journal(dir, &mut proc, &dir.journal_file(AUDIT_STREAM, p))?;
        let first = proc.resume_offset().unwrap_or(0);
        for (offset, e) in (first..).zip(entries) {
            let payload =
                serde_json::to_vec(e).map_err(|e| crate::Error::Invalid(e.to_string()))?;
            if let crate::Outcome::Rejected(r) =
                proc.push(offset, None, &payload, crate::now_ms())?
            {
                return Err(crate::Error::Invalid(format!(
                    "the audit entry was refused ({}): {}",
                    r.reason, r.detail
                )));
            }
        }
        return proc.seal(crate::now_ms());
    }
    Err(crate::Error::Invalid(format!(
        "all 64 partitions of {AUDIT_STREAM} are written by other processes"
    )))
}

/// One line of an audit partition's write-ahead journal: an entry and its offset.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalLine {
    offset: u64,
    entry: Box<serde_json::value::RawValue>,
}

/// The write-ahead journal of the audit partition a server holds: an entry is appended and
/// fsynced before the request it describes is answered, and the journal is emptied once
/// the batch holding its entries is sealed. A server that dies in between leaves entries
/// that the next holder of the partition seals first ([`replay_journal`]), so an answered
/// request always has its entry.
///
/// On an object store the journal is a prefix: each group of entries is one object
/// `{journal}/{seq:020}.ndjson`, created only if absent (a second writer cannot overwrite
/// it), and emptying deletes them newest first, so a crash meanwhile leaves a prefix.
#[derive(Debug)]
pub struct Journal {
    file: JournalFile,
    path: std::path::PathBuf,
}

#[derive(Debug)]
enum JournalFile {
    Local(std::fs::File),
    Remote {
        dir: veritrace_anchor::DataDir,
        next: u64,
    },
}

/// The objects of a journal on an object store, in order, with their sequence numbers.
fn journal_chunks(
    dir: &veritrace_anchor::DataDir,
    path: &std::path::Path,
) -> crate::Result<Vec<(u64, std::path::PathBuf)>> {
    let mut out: Vec<(u64, std::path::PathBuf)> = dir
        .list_files(path)?
        .into_iter()
        .filter_map(|(p, _)| {
            let seq = p
                .file_name()?
                .to_str()?
                .strip_suffix(".ndjson")?
                .parse()
                .ok()?;
            Some((seq, p))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The journal's entries, in order: whole lines only (a torn last line locally was never
/// acknowledged); any other unparsable line is damage, named.
fn journal_lines(
    dir: &veritrace_anchor::DataDir,
    path: &std::path::Path,
) -> crate::Result<Vec<JournalLine>> {
    if !dir.is_remote() {
        return Ok(veritrace_anchor::read_jsonl(path)?);
    }
    let mut out = Vec::new();
    for (_, chunk) in journal_chunks(dir, path)? {
        let Some(bytes) = dir.read_file(&chunk)? else {
            continue;
        };
        for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            out.push(serde_json::from_slice(line).map_err(|e| {
                veritrace_anchor::Error::Corrupt {
                    path: chunk.clone(),
                    detail: format!("line {}: {e}", n + 1),
                }
            })?);
        }
    }
    Ok(out)
}

impl Journal {
    /// Opens (creating) the journal at `path` for appending.
    pub fn open(dir: &veritrace_anchor::DataDir, path: &std::path::Path) -> crate::Result<Self> {
        if dir.is_remote() {
            let next = journal_chunks(dir, path)?.last().map_or(0, |(s, _)| s + 1);
            return Ok(Journal {
                file: JournalFile::Remote {
                    dir: dir.clone(),
                    next,
                },
                path: path.to_owned(),
            });
        }
        let io = |op: &'static str| {
            let path = path.to_owned();
            move |source| veritrace_anchor::Error::Io { op, path, source }
        };
        let existed = path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io("open for append"))?;
        if !existed && let Some(d) = path.parent() {
            std::fs::File::open(d)
                .and_then(|d| d.sync_all())
                .map_err(io("fsync directory"))?;
        }
        Ok(Journal {
            file: JournalFile::Local(file),
            path: path.to_owned(),
        })
    }

    /// Appends entries (offset, entry JSON) with one write and one fsync.
    pub fn append<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (u64, &'a [u8])>,
    ) -> crate::Result<()> {
        use std::io::Write;
        let mut bytes = Vec::new();
        for (offset, entry) in entries {
            let entry = serde_json::value::RawValue::from_string(
                String::from_utf8(entry.to_vec())
                    .map_err(|e| crate::Error::Invalid(format!("an audit entry: {e}")))?,
            )
            .map_err(|e| crate::Error::Invalid(format!("an audit entry is not JSON: {e}")))?;
            serde_json::to_writer(&mut bytes, &JournalLine { offset, entry })
                .map_err(|e| crate::Error::Invalid(e.to_string()))?;
            bytes.push(b'\n');
        }
        let io = |op: &'static str| {
            let path = self.path.clone();
            move |source| veritrace_anchor::Error::Io { op, path, source }
        };
        match &mut self.file {
            JournalFile::Local(f) => {
                f.write_all(&bytes).map_err(io("append"))?;
                f.sync_data().map_err(io("fsync"))?;
            }
            JournalFile::Remote { dir, next } => {
                let chunk = self.path.join(format!("{:020}.ndjson", *next));
                if !dir.write_new(&chunk, bytes)? {
                    return Err(veritrace_anchor::Error::Lost {
                        path: chunk,
                        detail: "another server journals on this audit partition".into(),
                    }
                    .into());
                }
                *next += 1;
            }
        }
        Ok(())
    }

    /// Empties the journal: everything in it is sealed.
    pub fn clear(&mut self) -> crate::Result<()> {
        let io = |op: &'static str| {
            let path = self.path.clone();
            move |source| veritrace_anchor::Error::Io { op, path, source }
        };
        match &mut self.file {
            JournalFile::Local(f) => {
                f.set_len(0).map_err(io("truncate"))?;
                f.sync_all().map_err(io("fsync"))?;
            }
            JournalFile::Remote { dir, .. } => {
                for (_, chunk) in journal_chunks(dir, &self.path)?.into_iter().rev() {
                    dir.remove_file(&chunk)?;
                }
            }
        }
        Ok(())
    }
}

/// Seals the journaled entries of partition `proc` that it has not sealed (a server died
/// after answering and before sealing), then empties the journal. Entries already sealed
/// are skipped by their offset; a torn last line was never acknowledged (its fsync did
/// not return) and is dropped; any other damage stops here, naming the line, and the
/// journal is left as it is. Returns how many entries were sealed now.
pub fn replay_journal(
    dir: &veritrace_anchor::DataDir,
    proc: &mut crate::PartitionProcessor,
    path: &std::path::Path,
) -> crate::Result<usize> {
    let lines: Vec<JournalLine> = journal_lines(dir, path)?;
    let mut replayed = 0;
    for line in &lines {
        match proc.push(
            line.offset,
            None,
            line.entry.get().as_bytes(),
            crate::now_ms(),
        )? {
            crate::Outcome::AlreadySealed => {}
            _ => replayed += 1,
        }
    }
    if replayed > 0 {
        proc.seal(crate::now_ms())?;
        tracing::warn!(path = %path.display(), entries = replayed, "sealed audit entries a stopped server had journaled but not sealed");
    }
    if dir.is_remote() || path.exists() {
        Journal::open(dir, path)?.clear()?;
    }
    Ok(replayed)
}

/// Seals the journals of audit partitions that no process holds (a server that died and
/// whose partition no server took again: a group that shrank). Returns the entries sealed.
pub fn recover_journals(
    dir: &veritrace_anchor::DataDir,
    policy: crate::BatchPolicy,
    holder: &str,
) -> crate::Result<usize> {
    let mut sealed = 0;
    for p in 0..64 {
        let path = dir.journal_file(AUDIT_STREAM, p);
        let empty = if dir.is_remote() {
            journal_chunks(dir, &path)?.is_empty()
        } else {
            std::fs::metadata(&path).map_or(true, |m| m.len() == 0)
        };
        if empty {
            continue;
        }
        let Some(_lock) = dir.try_lock(&dir.partition_lock_file(AUDIT_STREAM, p), holder)? else {
            continue;
        };
        let mut proc = crate::PartitionProcessor::open(dir, AUDIT_STREAM, p, policy)?.with_audit();
        sealed += replay_journal(dir, &mut proc, &path)?;
    }
    Ok(sealed)
}

fn bad(detail: impl AsRef<str>) -> Rejection {
    Rejection::new(Reason::BadRecord, detail)
}

/// Turns one submitted entry into its `audit` event.
pub(crate) fn open_entry(payload: &[u8], limits: &Limits) -> Result<Opened, Rejection> {
    if payload.len() > limits.max_payload.max(64 * 1024) {
        return Err(Rejection::new(
            Reason::PayloadTooLarge,
            format!("an audit entry of {} bytes", payload.len()),
        ));
    }
    let entry: AuditEntry =
        serde_json::from_slice(payload).map_err(|e| bad(format!("not an audit entry: {e}")))?;
    if entry.entry_id.is_empty() || entry.node.is_empty() {
        return Err(bad("an audit entry needs entry_id and node"));
    }
    let time = chrono::DateTime::from_timestamp_millis(entry.at_ms)
        .ok_or_else(|| bad(format!("at_ms {} is not a time", entry.at_ms)))?;
    let event = Event {
        attachments: Vec::new(),
        attributes: serde_json::to_value(&entry).ok(),
        counterparty: None,
        device_id: None,
        event_id: entry.entry_id.clone(),
        event_time: time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        event_time_ms: entry.at_ms,
        event_type: EventType::Audit,
        kind: EventType::Audit,
        inputs: Vec::new(),
        location: None,
        object: None,
        operator: Some(entry.who.clone()),
        outputs: Vec::new(),
        participant: Participant {
            id: entry.node.clone(),
            name: None,
            role: "operator".into(),
        },
        quantity: None,
        readings: BTreeMap::new(),
        result: Some(entry.outcome.clone()),
        retracts: Vec::new(),
        signature: None,
        site: Some(entry.route.clone()),
        trace_code: None,
        version: EVENT_VERSION,
    };
    crate::signed::finish(event, None).map_err(|mut r| {
        r.event_id = Some(entry.entry_id);
        r
    })
}
