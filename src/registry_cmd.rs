//! `veritrace participant register` and `veritrace device register|rotate|revoke|list`: the
//! identity registry, kept as signed records in the log.
//!
//! Each command builds one registry record ([`veritrace_verify::registry::Record`]), signs
//! it as a COSE_Sign1 envelope with the key that has the authority (the operator's root key
//! for participants, the participant's admin key for its devices), and appends it to the
//! data directory's `registry` stream: checked against the registry as sealed so far,
//! sealed as a batch of its own, then put into an epoch and anchored like any event. The
//! processors of event streams read the registry from there.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use veritrace_anchor::DataDir;
use veritrace_processors::Outcome;
use veritrace_processors::signed::{REGISTRY_STREAM, append_registry, load_registry};
use veritrace_verify::registry::Record;
use veritrace_verify::signature::{Claims, PublicKey, SigningKey, sign_cose};

use crate::config::Config;
use crate::signing::{now_secs, read_key};

/// `veritrace participant ...`
#[derive(Debug, Subcommand)]
pub enum ParticipantCommand {
    /// Register a participant (a company) and its admin key, signed with the operator's
    /// root key (the one `[signatures] root-key` names).
    Register(ParticipantRegisterArgs),
    /// Let another participant see the events about some trace codes in which this
    /// participant takes part (a recall, an audit): a `visibility.granted` record signed with
    /// the sharing participant's admin key, sealed and anchored like any event.
    Share(ShareArgs),
    /// End a grant (`visibility.revoked`, signed with the sharing participant's admin key).
    Unshare(UnshareArgs),
}

/// Flags of `veritrace participant share`.
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// The sharing participant's admin key file (secret).
    #[arg(long)]
    admin_key: PathBuf,
    /// The sharing participant.
    #[arg(long)]
    from: String,
    /// The participant who may see.
    #[arg(long)]
    to: String,
    /// A trace code shared (repeat for more).
    #[arg(long = "code")]
    codes: Vec<String>,
    /// A file of trace codes, one per line.
    #[arg(long)]
    codes_file: Option<PathBuf>,
    /// Why (kept in the record).
    #[arg(long, default_value = "")]
    reason: String,
    /// When the grant ends by itself: a time (`2027-03-31T00:00:00Z`) or a duration from
    /// its start (`90d`, `12h`); default: until `participant unshare`.
    #[arg(long)]
    until: Option<String>,
    /// The grant's id; default: a random one (printed).
    #[arg(long)]
    grant_id: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// Flags of `veritrace participant unshare`.
#[derive(Debug, Args)]
pub struct UnshareArgs {
    /// The sharing participant's admin key file (secret).
    #[arg(long)]
    admin_key: PathBuf,
    /// The grant to end.
    #[arg(long)]
    grant_id: String,
    #[command(flatten)]
    common: Common,
}

/// `veritrace device ...`
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register a device of a participant with its public key, signed with the
    /// participant's admin key.
    Register(DeviceRegisterArgs),
    /// Give a device a new key from now on (statements signed before keep verifying with
    /// the old one), signed with the participant's admin key.
    Rotate(DeviceRotateArgs),
    /// Revoke a device: nothing it signs from now on is accepted. Signed with the
    /// participant's admin key.
    Revoke(DeviceRevokeArgs),
    /// List participants and devices with their keys, as the log holds them.
    List(DeviceListArgs),
}

/// Flags every registry write shares.
#[derive(Debug, Args)]
pub struct Common {
    /// Data directory [config: data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
    /// When the record takes effect (seconds since 1970); default: now.
    #[arg(long)]
    at: Option<i64>,
}

/// Flags of `veritrace participant register`.
#[derive(Debug, Args)]
pub struct ParticipantRegisterArgs {
    /// The operator's root key file (secret).
    #[arg(long)]
    root_key: PathBuf,
    /// The participant's id (enterprise code, GLN, ...).
    #[arg(long)]
    id: String,
    /// Its name.
    #[arg(long)]
    name: String,
    /// Its role: manufacturer, supplier, logistics, retailer, regulator, ...
    #[arg(long)]
    role: String,
    /// Its admin public key: `ALG:HEX`, or a key file (its `public` is read).
    #[arg(long)]
    admin_key: String,
    #[command(flatten)]
    common: Common,
}

/// Flags of `veritrace device register`.
#[derive(Debug, Args)]
pub struct DeviceRegisterArgs {
    /// The participant's admin key file (secret).
    #[arg(long)]
    admin_key: PathBuf,
    /// The owning participant.
    #[arg(long)]
    participant: String,
    /// The device's id: the `iss` of what it signs.
    #[arg(long)]
    id: String,
    /// What it is: sensor, plc_gateway, scanner, erp_connector, ...
    #[arg(long, default_value = "sensor")]
    kind: String,
    /// The device's public key: `ALG:HEX`, or a key file (its `public` is read).
    #[arg(long)]
    key: String,
    #[command(flatten)]
    common: Common,
}

/// Flags of `veritrace device rotate`.
#[derive(Debug, Args)]
pub struct DeviceRotateArgs {
    /// The participant's admin key file (secret).
    #[arg(long)]
    admin_key: PathBuf,
    /// The device.
    #[arg(long)]
    id: String,
    /// The new public key: `ALG:HEX`, or a key file.
    #[arg(long)]
    key: String,
    #[command(flatten)]
    common: Common,
}

/// Flags of `veritrace device revoke`.
#[derive(Debug, Args)]
pub struct DeviceRevokeArgs {
    /// The participant's admin key file (secret).
    #[arg(long)]
    admin_key: PathBuf,
    /// The device.
    #[arg(long)]
    id: String,
    /// Why (kept in the record).
    #[arg(long, default_value = "revoked by its participant")]
    reason: String,
    #[command(flatten)]
    common: Common,
}

/// Flags of `veritrace device list`.
#[derive(Debug, Args)]
pub struct DeviceListArgs {
    /// Data directory [config: data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// A public key from its text or from a file holding it (a key file's `public`, or text).
pub fn read_public_key(v: &str) -> anyhow::Result<PublicKey> {
    let v = v.trim();
    if let Ok(k) = PublicKey::parse(v) {
        return Ok(k);
    }
    let text = std::fs::read_to_string(v)
        .with_context(|| format!("{v} is neither a public key (ALG:HEX) nor a readable file"))?;
    let public = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|j| j.get("public").and_then(|p| p.as_str()).map(str::to_owned))
        .unwrap_or_else(|| text.trim().to_owned());
    PublicKey::parse(&public).map_err(|e| anyhow::anyhow!("{v}: {e}"))
}

/// `veritrace participant ...`
pub fn participant_cmd(cmd: ParticipantCommand, cfg: &Config) -> anyhow::Result<ExitCode> {
    match cmd {
        ParticipantCommand::Register(a) => {
            let root = read_key(&a.root_key)?;
            let admin = read_public_key(&a.admin_key)?;
            let record = Record::ParticipantRegistered {
                participant_id: a.id,
                name: a.name,
                role: a.role,
                admin_key: admin.to_text(),
                at: a.common.at.unwrap_or_else(now_secs),
            };
            submit(cfg, a.common.data.as_deref(), &root, &record)
        }
        ParticipantCommand::Share(a) => {
            let admin = read_key(&a.admin_key)?;
            let mut codes = a.codes;
            if let Some(f) = &a.codes_file {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?;
                codes.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned),
                );
            }
            if codes.is_empty() {
                bail!("name the trace codes shared: --code CODE (repeatable) or --codes-file FILE");
            }
            let grant_id = match a.grant_id {
                Some(g) => g,
                None => {
                    let mut b = [0u8; 8];
                    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
                    format!("grant-{}", hex::encode(b))
                }
            };
            let at = a.common.at.unwrap_or_else(now_secs);
            let until = a.until.as_deref().map(|u| grant_end(u, at)).transpose()?;
            let record = Record::VisibilityGranted {
                grant_id,
                grantor: a.from,
                grantee: a.to,
                trace_codes: codes,
                reason: a.reason,
                at,
                until,
            };
            submit(cfg, a.common.data.as_deref(), &admin, &record)
        }
        ParticipantCommand::Unshare(a) => {
            let admin = read_key(&a.admin_key)?;
            let record = Record::VisibilityRevoked {
                grant_id: a.grant_id,
                at: a.common.at.unwrap_or_else(now_secs),
            };
            submit(cfg, a.common.data.as_deref(), &admin, &record)
        }
    }
}

/// `veritrace device ...`
pub fn device_cmd(cmd: DeviceCommand, cfg: &Config) -> anyhow::Result<ExitCode> {
    let (admin, record, data) = match cmd {
        DeviceCommand::List(a) => return list(cfg, a),
        DeviceCommand::Register(a) => (
            a.admin_key,
            Record::DeviceRegistered {
                device_id: a.id,
                participant_id: a.participant,
                kind: a.kind,
                key: read_public_key(&a.key)?.to_text(),
                at: a.common.at.unwrap_or_else(now_secs),
            },
            a.common.data,
        ),
        DeviceCommand::Rotate(a) => (
            a.admin_key,
            Record::DeviceKeyRotated {
                device_id: a.id,
                key: read_public_key(&a.key)?.to_text(),
                at: a.common.at.unwrap_or_else(now_secs),
            },
            a.common.data,
        ),
        DeviceCommand::Revoke(a) => (
            a.admin_key,
            Record::DeviceRevoked {
                device_id: a.id,
                reason: a.reason,
                at: a.common.at.unwrap_or_else(now_secs),
            },
            a.common.data,
        ),
    };
    let admin = read_key(&admin)?;
    submit(cfg, data.as_deref(), &admin, &record)
}

fn root_of(cfg: &Config) -> anyhow::Result<PublicKey> {
    cfg.signatures.root()?.context(
        "no identity registry: set [signatures] root-key (the operator's root public key) in the config",
    )
}

/// Signs `record`, checks it against the registry as sealed, seals it on the registry
/// stream, and puts it into an epoch (anchored by the configured backend, or by the process
/// that leads anchoring for the directory).
fn submit(
    cfg: &Config,
    data: Option<&Path>,
    key: &SigningKey,
    record: &Record,
) -> anyhow::Result<ExitCode> {
    let root = root_of(cfg)?;
    let dir = DataDir::create(data.unwrap_or(&cfg.data_dir))?;
    let claims = Claims {
        iss: None,
        sub: None,
        iat: Some(record.at()),
    };
    let payload = serde_json::to_vec(record)?;
    let envelope = sign_cose(key, &key.public().key_id(), &claims, &payload);

    let policy = cfg.runtime()?.policy;
    let settings = cfg.signatures.settings()?;
    let (outcomes, header) = append_registry(
        &dir,
        &root,
        settings.policy(REGISTRY_STREAM),
        policy,
        &[envelope],
    )?;
    if let Some(Outcome::Rejected(r)) = outcomes.first() {
        // Sealed all the same: the refused record is kept in the rejected table.
        bail!("refused ({}): {}", r.reason, r.detail);
    }
    let header = header.context("the registry batch was not sealed")?;
    let holder = format!("veritrace registry (pid {})", std::process::id());
    let anchored = veritrace_anchor::epoch_loop::anchor_once(
        &dir,
        cfg.pipeline.epoch_interval,
        cfg.backend()?,
        &holder,
        Duration::from_secs(30),
    )?;
    let epoch = match anchored {
        Some(r) => r
            .sealed
            .map(|e| format!("epoch {}", e.epoch_id))
            .unwrap_or_else(|| "the next epoch".into()),
        None => format!(
            "the next epoch of {}",
            dir.lock_holder(&dir.anchorer_lock_file())
        ),
    };
    println!(
        "{}",
        serde_json::json!({
            "record": serde_json::to_value(record)?,
            "signed_by": key.public().key_id(),
            "batch_id": header.batch_id,
            "epoch": epoch,
        })
    );
    Ok(ExitCode::SUCCESS)
}

fn list(cfg: &Config, a: DeviceListArgs) -> anyhow::Result<ExitCode> {
    let root = root_of(cfg)?;
    let dir = DataDir::open(a.data.as_ref().unwrap_or(&cfg.data_dir))?;
    let registry = load_registry(&dir, &root)?;
    if a.json {
        let participants: Vec<_> = registry
            .participants()
            .iter()
            .map(|(id, p)| {
                serde_json::json!({
                    "participant_id": id, "name": p.name, "role": p.role,
                    "admin_key": p.admin_key.to_text(), "admin_key_id": p.admin_key.key_id(),
                    "since": p.since,
                })
            })
            .collect();
        let devices: Vec<_> = registry
            .devices()
            .iter()
            .map(|(id, d)| {
                let keys: Vec<_> = d
                    .keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "key": k.key.to_text(), "key_id": k.key.key_id(),
                            "from": k.from, "until": k.until,
                        })
                    })
                    .collect();
                serde_json::json!({
                    "device_id": id, "participant_id": d.participant_id, "kind": d.kind,
                    "keys": keys, "revoked": d.revoked,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"participants": participants, "devices": devices})
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("participant          role          admin key id                      since");
    for (id, p) in registry.participants() {
        println!(
            "{id:<20} {:<13} {:<33} {}",
            p.role,
            p.admin_key.key_id(),
            p.since
        );
    }
    println!(
        "\ndevice               participant          kind           key id                            from        status"
    );
    for (id, d) in registry.devices() {
        let current = d.keys.last();
        let status = match d.revoked {
            Some(r) => format!("revoked at {r}"),
            None => format!("{} key(s)", d.keys.len()),
        };
        println!(
            "{id:<20} {:<20} {:<14} {:<33} {:<11} {status}",
            d.participant_id,
            d.kind,
            current.map(|k| k.key.key_id()).unwrap_or_default(),
            current.map(|k| k.from).unwrap_or_default(),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--until`: an RFC 3339 time, or a duration after `at`; seconds since the epoch.
fn grant_end(text: &str, at: i64) -> anyhow::Result<i64> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        let secs = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| anyhow::anyhow!("--until {text:?} is before 1970"))?
            .as_secs();
        return i64::try_from(secs).map_err(|_| anyhow::anyhow!("--until {text:?} is too far"));
    }
    let d = humantime::parse_duration(text).map_err(|_| {
        anyhow::anyhow!(
            "--until {text:?}: expected a time (2027-03-31T00:00:00Z) or a duration (90d)"
        )
    })?;
    let secs =
        i64::try_from(d.as_secs()).map_err(|_| anyhow::anyhow!("--until {text:?} is too far"))?;
    let end = at.saturating_add(secs);
    anyhow::ensure!(end > at, "--until {text:?} must end after the grant starts");
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::grant_end;

    #[test]
    fn a_grant_ends_at_a_time_or_after_a_duration() {
        assert_eq!(
            grant_end("2027-01-01T00:00:00Z", 0).expect("time"),
            1_798_761_600
        );
        assert_eq!(
            grant_end("90d", 1_000).expect("duration"),
            1_000 + 90 * 86_400
        );
        assert!(grant_end("0s", 1_000).is_err());
        assert!(grant_end("next tuesday", 1_000).is_err());
    }
}
