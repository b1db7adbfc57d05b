//! `veritrace types`: the deployment's business types ([`veritrace_processors::types`]).

use std::process::ExitCode;

use clap::Subcommand;
use veritrace_processors::types;
use veritrace_queries::QueryEngine;

/// `veritrace types ...`.
#[derive(Debug, Subcommand)]
pub enum TypesCommand {
    /// The configured business types and their versions (time in force, digest).
    List,
    /// Writes every configured version as a `type_definition` event (JSON lines) for
    /// `veritrace ingest file` (or `--kafka`): the log then holds which definition was in
    /// force when. Recording a version twice is one event (its id holds its digest).
    Records {
        /// Who records them, `ID:ROLE` (a participant id and role).
        #[arg(long)]
        recorder: veritrace_processors::epcis::Recorder,
    },
    /// Compares the configured versions with those recorded in the data directory: exit
    /// status 1 when a version is not recorded or was recorded with another definition.
    Check {
        /// Data directory [config: data-dir].
        #[arg(long)]
        data: Option<std::path::PathBuf>,
    },
}

/// Runs `veritrace types`.
pub fn types_cmd(c: TypesCommand, cfg: &crate::config::Config) -> anyhow::Result<ExitCode> {
    let all = types::current();
    match c {
        TypesCommand::List => {
            if all.types().is_empty() {
                println!("no business types are configured ([types.NAME] in the config)");
            }
            for t in all.types() {
                println!("{}  {}", t.name, t.description);
                for v in &t.versions {
                    println!(
                        "  v{}  from {}  like {}  digest {}",
                        v.number,
                        v.def.from,
                        v.def.like.as_deref().unwrap_or("-"),
                        v.digest
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TypesCommand::Records { recorder } => {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let who = serde_json::json!({"id": recorder.id, "role": recorder.role});
            for t in all.types() {
                for r in t.records(&who, &now) {
                    println!("{r}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TypesCommand::Check { data } => {
            let data = data.unwrap_or_else(|| cfg.data_dir.clone());
            let rt = crate::rt::runtime()?;
            let rows = rt.block_on(async {
                let engine = QueryEngine::open(&data).await?;
                let batches = engine
                    .sql(
                        "SELECT attributes FROM events WHERE event_type = 'type_definition' \
                         ORDER BY event_time",
                    )
                    .await?;
                veritrace_queries::output::encode(&batches, veritrace_queries::Format::Json)
                    .map_err(anyhow::Error::from)
            })?;
            let rows: Vec<serde_json::Value> = serde_json::from_slice(&rows)?;
            // (type, version) -> digests recorded
            let mut recorded: std::collections::BTreeMap<(String, u64), Vec<String>> =
                Default::default();
            for r in &rows {
                let Some(a) = r["attributes"]
                    .as_str()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                else {
                    continue;
                };
                if let (Some(t), Some(v), Some(d)) = (
                    a["type"].as_str(),
                    a["version"].as_u64(),
                    a["digest"].as_str(),
                ) {
                    recorded
                        .entry((t.to_owned(), v))
                        .or_default()
                        .push(d.to_owned());
                }
            }
            let mut bad = 0;
            for t in all.types() {
                for v in &t.versions {
                    let key = (t.name.to_owned(), u64::from(v.number));
                    let state = match recorded.get(&key) {
                        None => {
                            bad += 1;
                            "NOT RECORDED".to_owned()
                        }
                        Some(ds) if ds.contains(&v.digest) && ds.len() == 1 => {
                            "recorded".to_owned()
                        }
                        Some(ds) => {
                            bad += 1;
                            format!(
                                "DIFFERS: recorded with digest {}",
                                ds.iter()
                                    .filter(|d| **d != v.digest)
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        }
                    };
                    println!("{} v{} ({}): {state}", t.name, v.number, v.def.from);
                }
            }
            if bad > 0 {
                eprintln!(
                    "{bad} version(s) differ from the log: record them (`veritrace types records`), \
                     and never change a recorded version: add a new one from a later time"
                );
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
