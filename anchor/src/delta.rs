//! Delta Lake publication of the committed tables, for engines that list Parquet files
//! themselves (Spark, Trino, DuckDB, Snowflake, the `deltalake` package).
//!
//! Such an engine, pointed at `events/` and `compacted/`, would see a batch's small file and
//! the compacted file that replaced it during the grace period, and count its events twice;
//! it would also see files of batches not yet committed. A Delta table names exactly the
//! committed files: each publication reads what the manifests and the compaction log commit
//! now and writes one Delta version (`_delta_log/{version:020}.json`) that adds the files
//! that became committed and removes the ones that were superseded, in one step.
//!
//! Why Delta rather than Iceberg: a Delta commit is one create-only object per version, the
//! same commit rule as everything else here (no catalog, no pointer swap), data files are
//! named relative to the table, so a copied or restored data directory keeps working, and
//! every engine named above reads it without a catalog service.
//!
//! The three tables and their roots (Delta paths are relative to the table root, and readers
//! do not follow absolute ones reliably):
//!
//! | table | root | data files |
//! |---|---|---|
//! | `events` | the data directory | `events/{batch}.parquet` not yet compacted, live `compacted/*.parquet` |
//! | `rejected` | `rejected/` | `{batch}.parquet` |
//! | `edges` | `edges/` | `{batch}.parquet` |
//!
//! The audit log's batches are in none of them. Publication is on for a data directory once
//! `veritrace publish` has run there (the events table's `_delta_log/` exists): from then on
//! each sealed epoch publishes, and compaction publishes before it deletes superseded files,
//! so no published version names a file that is gone before the compaction's grace period.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow_schema::{DataType, Field};
use serde_json::{Value, json};

use crate::compaction_log::CompactionLog;
use crate::{DataDir, Error, Result};

/// What one publication did to one table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Published {
    /// `events`, `rejected` or `edges`.
    pub table: &'static str,
    /// The table's root directory.
    pub root: PathBuf,
    /// Its Delta version after the publication (`None`: nothing to publish yet).
    pub version: Option<u64>,
    /// Files added by this publication.
    pub added: usize,
    /// Files removed (superseded by compaction).
    pub removed: usize,
    /// Files the published version names.
    pub files: usize,
}

/// The tables, in publication order.
pub const TABLES: [&str; 3] = ["events", "rejected", "edges"];

/// The root of a published table.
pub fn table_root(dir: &DataDir, table: &str) -> PathBuf {
    match table {
        "rejected" => dir.rejected_dir(),
        "edges" => dir.edges_dir(),
        _ => dir.root().to_owned(),
    }
}

/// True once `veritrace publish` has run on the directory (its events table exists).
pub fn enabled(dir: &DataDir) -> bool {
    if dir.is_remote() {
        // One listing; an object store that does not answer now is retried next time.
        return dir
            .list_files(&log_dir(dir.root()))
            .is_ok_and(|files| !files.is_empty());
    }
    log_dir(dir.root()).is_dir()
}

/// Publishes if [`enabled`]; a failure is logged, never fatal to the caller (sealing and
/// anchoring go on; the next publication catches up).
pub fn publish_if_enabled(dir: &DataDir) {
    if !enabled(dir) {
        return;
    }
    if let Err(e) = publish(dir) {
        tracing::warn!(error = %e, "publishing the Delta tables failed; the next epoch retries");
    }
}

fn log_dir(root: &Path) -> PathBuf {
    root.join("_delta_log")
}

/// Publishes every table: one new Delta version per table whose committed files changed.
pub fn publish(dir: &DataDir) -> Result<Vec<Published>> {
    TABLES.iter().map(|t| publish_table(dir, t)).collect()
}

/// The files `table` commits now: encoded path (relative to its root) -> size and
/// modification time.
fn committed(dir: &DataDir, table: &str, root: &Path) -> Result<BTreeMap<String, (u64, u64)>> {
    let headers: Vec<_> = dir
        .all_batch_headers()?
        .into_iter()
        .filter(|h| h.stream != crate::AUDIT_STREAM)
        .collect();
    let files: Vec<PathBuf> = match table {
        "events" => {
            // Every committed file, gone or not: a missing one is damage to report, never
            // a file to leave out of the table quietly.
            let log = CompactionLog::read(dir)?;
            let covered = log.covered_batches();
            log.live_files()
                .into_iter()
                .map(|f| dir.compacted_dir().join(&f.file))
                .chain(
                    headers
                        .iter()
                        .filter(|h| !covered.contains(h.batch_id.as_str()))
                        .map(|h| dir.events_file(&h.batch_id)),
                )
                .collect()
        }
        _ => {
            // The files each batch committed are in its partition's digest log; batches
            // from before digests name none, and their files are taken if present.
            let mut recorded = std::collections::HashMap::new();
            let partitions: std::collections::BTreeSet<(&str, u32)> = headers
                .iter()
                .map(|h| (h.stream.as_str(), h.partition))
                .collect();
            for (stream, p) in partitions {
                recorded.extend(crate::integrity::read_batch_files(
                    dir,
                    &dir.batch_files_log(stream, p),
                )?);
            }
            let mut files = Vec::new();
            for h in &headers {
                let path = if table == "rejected" {
                    dir.rejected_file(&h.batch_id)
                } else {
                    dir.edges_file(&h.batch_id)
                };
                let committed = match recorded.get(&h.batch_id) {
                    Some(b) => b.files.iter().any(|f| dir.root().join(&f.file) == path),
                    None => dir.exists(&path)?,
                };
                if committed {
                    files.push(path);
                }
            }
            files
        }
    };
    let mut want = BTreeMap::new();
    if dir.is_remote() {
        // Sizes from one listing per directory; the modification time is the
        // publication's (an object's own is not listed here, and readers only show it).
        let mut sizes = std::collections::HashMap::new();
        let parents: std::collections::BTreeSet<PathBuf> = files
            .iter()
            .filter_map(|p| p.parent().map(Path::to_owned))
            .collect();
        for d in parents {
            sizes.extend(dir.list_files(&d)?);
        }
        let now = now_ms();
        for path in files {
            let size = *sizes.get(&path).ok_or_else(|| Error::Corrupt {
                path: path.clone(),
                detail: "committed and gone: not published (run `veritrace check`)".into(),
            })?;
            want.insert(encode_path(relative(&path, root)?), (size, now));
        }
        return Ok(want);
    }
    for path in files {
        let meta = std::fs::metadata(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Corrupt {
                path: path.clone(),
                detail: "committed and gone: not published (run `veritrace check`)".into(),
            },
            _ => Error::io("stat", &path)(e),
        })?;
        let rel = relative(&path, root)?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        want.insert(encode_path(rel), (meta.len(), mtime));
    }
    Ok(want)
}

fn relative<'a>(path: &'a Path, root: &Path) -> Result<&'a Path> {
    path.strip_prefix(root).map_err(|_| {
        Error::Bug(format!(
            "{} is not under the table root {}",
            path.display(),
            root.display()
        ))
    })
}

/// Brings one table's Delta log to the files committed now.
fn publish_table(dir: &DataDir, table: &'static str) -> Result<Published> {
    let root = table_root(dir, table);
    let logs = log_dir(&root);
    if !dir.is_remote() {
        std::fs::create_dir_all(&logs).map_err(Error::io("create directory", &logs))?;
    }
    // Optimistic concurrency, as Delta writers do: a writer that loses the race for a
    // version starts over. The table is read before the committed state, so a version that
    // wins was computed from a state at least as new as the one it follows: a publisher that
    // read the compaction log before a compaction can never undo that compaction's version
    // (which the compactor writes before it deletes the small files).
    for _ in 0..64 {
        let (version, live) = read_table(dir, &logs)?;
        let want = committed(dir, table, &root)?;
        let added: Vec<_> = want.keys().filter(|p| !live.contains_key(*p)).collect();
        let removed: Vec<_> = live.keys().filter(|p| !want.contains_key(*p)).collect();
        if version.is_some() && added.is_empty() && removed.is_empty() {
            return Ok(Published {
                table,
                root,
                version,
                added: 0,
                removed: 0,
                files: live.len(),
            });
        }
        let now = now_ms();
        let next = version.map_or(0, |v| v + 1);
        let mut actions = vec![json!({"commitInfo": {
            "timestamp": now,
            "operation": "WRITE",
            "operationParameters": {"mode": "Append"},
            "engineInfo": concat!("veritrace/", env!("CARGO_PKG_VERSION")),
            "isBlindAppend": removed.is_empty(),
        }})];
        if version.is_none() {
            actions.push(json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}));
            actions.push(json!({"metaData": {
                "id": table_id(&root, table),
                "name": table,
                "format": {"provider": "parquet", "options": {}},
                "schemaString": schema_string(table)?,
                "partitionColumns": [],
                "configuration": {},
                "createdTime": now,
            }}));
        }
        for p in &removed {
            actions.push(json!({"remove": {
                "path": p, "deletionTimestamp": now, "dataChange": true,
                "extendedFileMetadata": true, "partitionValues": {}, "size": live[*p],
            }}));
        }
        for p in &added {
            let (size, mtime) = want[*p];
            actions.push(json!({"add": {
                "path": p, "partitionValues": {}, "size": size,
                "modificationTime": mtime, "dataChange": true,
            }}));
        }
        if commit(dir, &logs, next, &actions)? {
            tracing::info!(
                table,
                version = next,
                added = added.len(),
                removed = removed.len(),
                "Delta table published"
            );
            return Ok(Published {
                table,
                root,
                version: Some(next),
                added: added.len(),
                removed: removed.len(),
                files: want.len(),
            });
        }
    }
    Err(Error::Invalid(format!(
        "{}: 64 publications in a row lost the race for the next version",
        logs.display()
    )))
}

/// The table's last version and its live files (path -> size), replayed from the log.
pub fn read_table(dir: &DataDir, logs: &Path) -> Result<(Option<u64>, BTreeMap<String, u64>)> {
    let mut versions = Vec::new();
    for (path, _) in dir.list_files(logs)? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(v) = name.strip_suffix(".json").filter(|v| v.len() == 20) {
            if let Ok(v) = v.parse::<u64>() {
                versions.push(v);
            }
        } else if name == "_last_checkpoint" {
            return Err(Error::Corrupt {
                path,
                detail: "a Delta checkpoint written by another writer: this table is \
                         published by Veritrace only (move the table's _delta_log \
                         aside and publish again)"
                    .into(),
            });
        }
    }
    versions.sort_unstable();
    let mut live = BTreeMap::new();
    for (i, v) in versions.iter().enumerate() {
        let path = logs.join(format!("{v:020}.json"));
        if *v != i as u64 {
            return Err(Error::Corrupt {
                path,
                detail: format!(
                    "Delta version {v} follows {} versions: a version is missing",
                    i
                ),
            });
        }
        let bytes = dir.read_file(&path)?.ok_or_else(|| Error::Corrupt {
            path: path.clone(),
            detail: "listed and gone while read".into(),
        })?;
        let text = String::from_utf8(bytes).map_err(|e| Error::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let action: Value = serde_json::from_str(line).map_err(|e| Error::Corrupt {
                path: path.clone(),
                detail: format!("line {}: {e}", n + 1),
            })?;
            if let Some(p) = action["add"]["path"].as_str() {
                live.insert(p.to_owned(), action["add"]["size"].as_u64().unwrap_or(0));
            } else if let Some(p) = action["remove"]["path"].as_str() {
                live.remove(p);
            }
        }
    }
    Ok((versions.last().copied(), live))
}

/// Writes version `v` create-only: locally the whole file is written and synced under a
/// temporary name, then hard-linked to its final name, which fails if another writer took
/// `v`; on an object store a PUT with `If-None-Match: *`. `Ok(false)`: another writer did.
fn commit(dir: &DataDir, logs: &Path, v: u64, actions: &[Value]) -> Result<bool> {
    let target = logs.join(format!("{v:020}.json"));
    if dir.is_remote() {
        let mut text = Vec::new();
        for a in actions {
            serde_json::to_writer(&mut text, a).map_err(|e| Error::Bug(e.to_string()))?;
            text.push(b'\n');
        }
        return dir.write_new(&target, text);
    }
    let tmp = logs.join(format!(
        ".{v:020}.json.{}-{}.tmp",
        std::process::id(),
        now_ms()
    ));
    let mut text = Vec::new();
    for a in actions {
        serde_json::to_writer(&mut text, a).map_err(|e| Error::Bug(e.to_string()))?;
        text.push(b'\n');
    }
    let mut f = std::fs::File::create(&tmp).map_err(Error::io("create", &tmp))?;
    f.write_all(&text).map_err(Error::io("write", &tmp))?;
    f.sync_all().map_err(Error::io("fsync", &tmp))?;
    drop(f);
    let linked = std::fs::hard_link(&tmp, &target);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            crate::fsutil::sync_dir(&target)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io("commit", &target)(e)),
    }
}

/// A Delta path: relative, `/`-separated, percent-encoded outside the unreserved set.
fn encode_path(rel: &Path) -> String {
    let s = rel
        .to_string_lossy()
        .replace(std::path::MAIN_SEPARATOR, "/");
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A UUID-shaped id for the table (random: two data directories never share one).
fn table_id(root: &Path, table: &str) -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        use sha2::{Digest as _, Sha256};
        let h = Sha256::digest(format!("{}:{table}:{}", root.display(), now_ms()));
        b.copy_from_slice(&h[..16]);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The table's schema in Delta's JSON form.
fn schema_string(table: &str) -> Result<String> {
    let schema = match table {
        "rejected" => crate::tables::REJECTED.schema(),
        "edges" => crate::tables::EDGES.schema(),
        _ => crate::tables::EVENTS.schema(),
    };
    let fields = schema
        .fields()
        .iter()
        .map(|f| delta_field(f))
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({"type": "struct", "fields": fields}).to_string())
}

fn delta_field(f: &Field) -> Result<Value> {
    Ok(json!({
        "name": f.name(),
        "type": delta_type(f.data_type())?,
        "nullable": f.is_nullable(),
        "metadata": {},
    }))
}

/// Delta has no unsigned integers: `UInt32` and `UInt64` (offsets, indexes, counts, all
/// below 2^63) are `long`; millisecond timestamps are Delta's `timestamp`.
fn delta_type(t: &DataType) -> Result<Value> {
    Ok(match t {
        DataType::Utf8 | DataType::LargeUtf8 => json!("string"),
        DataType::Int64 | DataType::UInt64 | DataType::UInt32 => json!("long"),
        DataType::Int32 | DataType::UInt16 => json!("integer"),
        DataType::Float64 => json!("double"),
        DataType::Float32 => json!("float"),
        DataType::Boolean => json!("boolean"),
        DataType::Binary | DataType::LargeBinary | DataType::FixedSizeBinary(_) => {
            json!("binary")
        }
        DataType::Timestamp(_, Some(_)) => json!("timestamp"),
        DataType::List(item) | DataType::LargeList(item) => json!({
            "type": "array",
            "elementType": delta_type(item.data_type())?,
            "containsNull": item.is_nullable(),
        }),
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err(Error::Bug(format!("map without key/value struct: {t}")));
            };
            let (Some(k), Some(v)) = (kv.first(), kv.get(1)) else {
                return Err(Error::Bug(format!("map without key/value struct: {t}")));
            };
            json!({
                "type": "map",
                "keyType": delta_type(k.data_type())?,
                "valueType": delta_type(v.data_type())?,
                "valueContainsNull": v.is_nullable(),
            })
        }
        DataType::Struct(fields) => json!({
            "type": "struct",
            "fields": fields.iter().map(|f| delta_field(f)).collect::<Result<Vec<_>>>()?,
        }),
        other => {
            return Err(Error::Bug(format!(
                "no Delta type for the column type {other}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_schema_has_a_delta_form_and_paths_are_encoded() {
        for t in TABLES {
            let s: Value = serde_json::from_str(&schema_string(t).expect(t)).expect("json");
            assert_eq!(s["type"], "struct", "{t}");
            assert!(!s["fields"].as_array().expect("fields").is_empty(), "{t}");
        }
        assert_eq!(
            encode_path(Path::new("events/veritrace.raw-p000-1 2%.parquet")),
            "events/veritrace.raw-p000-1%202%25.parquet"
        );
    }

    #[test]
    fn a_version_is_created_once_and_the_loser_sees_the_winner() {
        let d = tempfile::tempdir().expect("tmp");
        let dir = DataDir::create(d.path().join("data")).expect("data dir");
        let logs = dir.root().join("_delta_log");
        std::fs::create_dir_all(&logs).expect("mkdir");
        let add = |p: &str| json!({"add": {"path": p, "size": 1}});
        assert!(commit(&dir, &logs, 0, &[add("a")]).expect("first"));
        assert!(
            !commit(&dir, &logs, 0, &[add("b")]).expect("second"),
            "taken"
        );
        assert!(
            commit(
                &dir,
                &logs,
                1,
                &[json!({"remove": {"path": "a"}}), add("c")]
            )
            .expect("v1")
        );
        let (v, live) = read_table(&dir, &logs).expect("read");
        assert_eq!(v, Some(1));
        assert_eq!(live.keys().collect::<Vec<_>>(), ["c"]);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&logs).expect("ls").count(), 2);
        // A missing version is damage, reported with its file.
        std::fs::remove_file(logs.join(format!("{:020}.json", 0))).expect("rm");
        assert!(matches!(
            read_table(&dir, &logs),
            Err(Error::Corrupt { .. })
        ));
    }
}
