//! `veritrace tokens create|list|revoke`: API tokens for `veritrace serve`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use veritrace_queries::access::Role;
use veritrace_queries::access::tokens::{self, NewToken};

use crate::config::Config;

/// `veritrace tokens ...`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token; it is printed once and only its hash is stored.
    Create(CreateArgs),
    /// List tokens (never their secrets).
    List(ListArgs),
    /// Revoke a token: from the next request on it authenticates nobody.
    Revoke(RevokeArgs),
}

/// Where the token file is.
#[derive(Debug, Args)]
pub struct Where {
    /// Data directory [config: data-dir]; the token file is `access/tokens.json` in it
    /// unless `[auth] tokens-file` names another.
    #[arg(long)]
    data: Option<PathBuf>,
}

/// Flags of `veritrace tokens create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// admin, operator, analyst, auditor, participant or public.
    #[arg(long)]
    role: String,
    /// The participant the token speaks for (the participant role).
    #[arg(long)]
    participant: Option<String>,
    /// How long it works, e.g. `90d`, `12h`; default: until revoked.
    #[arg(long)]
    expires: Option<humantime::Duration>,
    /// What it is for (shown by `tokens list`).
    #[arg(long, default_value = "")]
    name: String,
    /// Its queries running at once (over its role's `[auth.limits]`).
    #[arg(long)]
    max_concurrent: Option<usize>,
    /// Deadline of one of its queries, e.g. `5s` (over its role's and the server's).
    #[arg(long)]
    timeout: Option<humantime::Duration>,
    /// Memory its running queries may hold together, in MiB (a pool of its own).
    #[arg(long)]
    memory_limit_mib: Option<usize>,
    #[command(flatten)]
    at: Where,
}

/// Flags of `veritrace tokens list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    at: Where,
}

/// Flags of `veritrace tokens revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The token's id (the 12 hex digits after `vtk_`).
    id: String,
    #[command(flatten)]
    at: Where,
}

fn path(cfg: &Config, w: &Where) -> PathBuf {
    cfg.auth
        .tokens_path(w.data.as_ref().unwrap_or(&cfg.data_dir))
}

/// Runs one `tokens` command.
pub fn tokens_cmd(cmd: TokensCommand, cfg: &Config) -> anyhow::Result<ExitCode> {
    match cmd {
        TokensCommand::Create(a) => {
            let role: Role = a.role.parse().map_err(anyhow::Error::msg)?;
            let file = path(cfg, &a.at);
            let (token, rec) = tokens::create(
                &file,
                &NewToken {
                    role,
                    participant: a.participant,
                    expires_in: a.expires.map(Into::into),
                    name: a.name,
                    limits: veritrace_queries::access::Limits {
                        max_concurrent: a.max_concurrent.filter(|n| *n > 0),
                        timeout: a.timeout.map(Into::into),
                        memory_limit: a
                            .memory_limit_mib
                            .filter(|m| *m > 0)
                            .map(|m| m.saturating_mul(1 << 20)),
                    },
                },
            )
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("token file {}", file.display()))?;
            eprintln!(
                "token {} ({}{}) created; it is shown once, keep it secret",
                rec.id,
                rec.role,
                rec.participant
                    .as_deref()
                    .map(|p| format!(" of {p}"))
                    .unwrap_or_default()
            );
            println!("{token}");
        }
        TokensCommand::List(a) => {
            let file = path(cfg, &a.at);
            let list = tokens::list(&file).map_err(anyhow::Error::msg)?;
            if a.json {
                for t in &list {
                    let mut v = serde_json::to_value(t)?;
                    if let Some(o) = v.as_object_mut() {
                        o.remove("sha256");
                    }
                    println!("{v}");
                }
            } else {
                println!(
                    "{:<12}  {:<11}  {:<16}  {:<20}  {:<20}  name",
                    "id", "role", "participant", "expires", "revoked"
                );
                let t = |s: Option<i64>| {
                    s.and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                        .unwrap_or_else(|| "-".into())
                };
                for r in &list {
                    println!(
                        "{:<12}  {:<11}  {:<16}  {:<20}  {:<20}  {}",
                        r.id,
                        r.role,
                        r.participant.as_deref().unwrap_or("-"),
                        t(r.expires),
                        t(r.revoked),
                        r.name
                    );
                }
            }
        }
        TokensCommand::Revoke(a) => {
            let file = path(cfg, &a.at);
            let r = tokens::revoke(&file, &a.id).map_err(anyhow::Error::msg)?;
            eprintln!("token {} revoked", r.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}
