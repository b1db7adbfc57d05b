//! The servers' side of the audit log: each request becomes an
//! [`veritrace_processors::audit::AuditEntry`], submitted to an embedded processor of the
//! audit stream in this data directory (its own partition per server), sealed, put into an
//! epoch and anchored like any event. Admins and auditors read it as the `audit` table and
//! prove an entry like any event.
//!
//! A request is answered once its entry is durable: appended and fsynced to the write-ahead
//! journal of the server's audit partition (entries queued together share the fsync). It
//! is not held until the entry is sealed (a batch's age bounds that, one second by
//! default): a server that dies in between leaves the entry in its journal, and the next
//! process that takes the partition, or any server starting on the directory, seals it
//! first ([`veritrace_processors::audit::replay_journal`]). If the entry cannot be queued
//! or journaled, the request is refused (`audit_unavailable`), never answered unaudited.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use veritrace_processors::audit::{AUDIT_STREAM, AuditEntry, MAX_SQL_BYTES};
use veritrace_processors::embedded::{Busy, Embedded, EmbeddedConfig, EmbeddedKind};

use crate::access::Identity;

/// Longest wait for an entry's journal write and fsync before its request is refused.
const JOURNAL_WAIT: Duration = Duration::from_secs(10);

/// The audit log writer of one server process.
pub struct AuditLog {
    queue: Embedded,
    node: String,
    written: prometheus::IntCounterVec,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// What a request did, for its entry (filled by the handler, read by the middleware).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The SQL text, for statements.
    pub sql: Option<String>,
    /// Rows returned.
    pub rows: Option<u64>,
    /// The event id or trace code asked about.
    pub target: Option<String>,
}

fn hex_sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

impl AuditLog {
    /// Starts the audit stream's processor in `dir` (settings as the gateway's embedded
    /// queue: batch policy, epochs, anchoring) and registers its metric.
    pub fn start(
        dir: &veritrace_anchor::DataDir,
        mut cfg: EmbeddedConfig,
        node: String,
        registry: &prometheus::Registry,
    ) -> Result<Self, String> {
        cfg.stream = AUDIT_STREAM.into();
        cfg.kind = EmbeddedKind::Audit;
        // Journals of servers that died on partitions no one holds now are sealed first.
        veritrace_processors::audit::recover_journals(dir, cfg.policy, &cfg.holder)
            .map_err(|e| format!("sealing the audit journals left by stopped servers: {e}"))?;
        let written = veritrace_metrics::counter_vec(registry, &veritrace_metrics::AUDIT_ENTRIES)
            .map_err(|e| e.to_string())?;
        let queue = Embedded::start(dir, cfg).map_err(|e| e.to_string())?;
        Ok(AuditLog {
            queue,
            node,
            written,
        })
    }

    /// Appends one entry. `Err` when it could not be queued within a second (the queue
    /// stopped, or stayed full): the caller refuses the request.
    #[allow(clippy::too_many_arguments)]
    pub async fn record(
        self: &Arc<Self>,
        who: Result<&Identity, ()>,
        protocol: &str,
        route: String,
        facts: Facts,
        status: u32,
        outcome: String,
        result: Option<&[u8]>,
        started: (i64, Instant),
    ) -> Result<(), String> {
        let mut id = [0u8; 12];
        getrandom::fill(&mut id).map_err(|e| e.to_string())?;
        let (who, role, participant) = match who {
            Ok(i) => (
                i.subject.clone(),
                i.role.as_str().to_owned(),
                i.participant.clone(),
            ),
            Err(()) => ("-".to_owned(), String::new(), None),
        };
        let sql_sha256 = facts.sql.as_deref().map(|s| hex_sha256(s.as_bytes()));
        let sql = facts.sql.map(|mut s| {
            if s.len() > MAX_SQL_BYTES {
                let mut cut = MAX_SQL_BYTES;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
            }
            s
        });
        let entry = AuditEntry {
            entry_id: format!("audit:{}", hex::encode(id)),
            at_ms: started.0,
            node: self.node.clone(),
            who,
            role,
            participant,
            protocol: protocol.into(),
            route,
            target: facts.target,
            sql,
            sql_sha256,
            rows: facts.rows,
            result_sha256: result.map(hex_sha256),
            status,
            outcome,
            duration_ms: started.1.elapsed().as_millis() as u64,
            detail: None,
        };
        let payload = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut records = vec![(None, payload)];
        let journaled = loop {
            let written = self.written.clone();
            let done: veritrace_processors::embedded::Done = Box::new(move |r| {
                let label = match r {
                    Ok(s) if s.rejected.is_empty() => "sealed",
                    Ok(_) => "rejected",
                    Err(_) => "failed",
                };
                written.with_label_values(&[label]).inc();
            });
            let (tx, rx) = tokio::sync::oneshot::channel();
            let journaled: veritrace_processors::embedded::Journaled = Box::new(move |r| {
                let _ = tx.send(r);
            });
            match self
                .queue
                .submit_journaled(std::mem::take(&mut records), journaled, done)
            {
                Ok(()) => break rx,
                Err(Busy::Stopped) => {
                    self.written.with_label_values(&["refused"]).inc();
                    return Err("the audit log has stopped".into());
                }
                Err(Busy::Full) if Instant::now() < deadline => {
                    // The submission came back unused: queue it again shortly.
                    records = vec![(None, serde_json::to_vec(&entry).map_err(|e| e.to_string())?)];
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(Busy::Full) => {
                    self.written.with_label_values(&["refused"]).inc();
                    return Err("the audit log's queue stayed full for 1 s".into());
                }
            }
        };
        // Answered only once the entry is durable in the partition's journal (an fsync,
        // shared by the entries queued together).
        match tokio::time::timeout(JOURNAL_WAIT, journaled).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => {
                self.written.with_label_values(&["refused"]).inc();
                Err(e)
            }
            Ok(Err(_)) => {
                self.written.with_label_values(&["refused"]).inc();
                Err("the audit log stopped before the entry was journaled".into())
            }
            Err(_) => {
                self.written.with_label_values(&["refused"]).inc();
                Err(format!(
                    "the audit journal took over {} s to become durable",
                    JOURNAL_WAIT.as_secs()
                ))
            }
        }
    }

    /// Seals what is queued and stops (the last entries are durable when it returns).
    pub fn stop(self) -> Result<(), String> {
        self.queue.stop().map(drop).map_err(|e| e.to_string())
    }
}
