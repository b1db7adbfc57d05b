//! `veritrace witness`: a transparency-log witness (C2SP tlog-witness, tlog-cosignature), and
//! the node's side of it.
//!
//! - `serve`: keeps the last checkpoint it cosigned for each log it knows (by the log's
//!   verifier key), and on `POST /add-checkpoint` cosigns a new checkpoint only if its
//!   signature is the log's and the consistency proof from the last one verifies; its state
//!   is written before it answers, so it never cosigns two checkpoints that contradict.
//! - `vkey`: the witness's cosigner verifier key (created on first use), which auditors
//!   pass to the verifier (`--witness`).
//! - `submit`: the node sends its published checkpoint to a witness with the consistency
//!   proof from the size the witness last cosigned, and keeps the cosigned checkpoint in
//!   `log/cosigned/{size}`, which proofs against that checkpoint carry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use veritrace_verify::checkpoint::{Checkpoint, Note, NoteKey};
use veritrace_verify::{Digest, merkle};

/// `veritrace witness`.
#[derive(Debug, Subcommand)]
pub enum WitnessCommand {
    /// Run a witness: cosign each log's checkpoints that are consistent with the last one
    /// it cosigned (C2SP tlog-witness `POST /add-checkpoint`).
    Serve(ServeArgs),
    /// Print the witness's cosigner verifier key (creating its key on first use).
    Vkey(KeyArgs),
    /// Send a data directory's published checkpoint to a witness and keep its cosignature.
    Submit(SubmitArgs),
}

/// The witness's identity.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The witness's name (a schema-less URL, e.g. `witness.example.com/w1`).
    #[arg(long)]
    name: String,
    /// File holding the witness's Ed25519 seed (hex); created when absent.
    #[arg(long)]
    key: PathBuf,
}

/// `veritrace witness serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    id: KeyArgs,
    /// Where to listen (port 0: any free port).
    #[arg(long)]
    listen: SocketAddr,
    /// The state file: the last checkpoint cosigned per log.
    #[arg(long)]
    state: PathBuf,
    /// A log to witness, by its verifier key (`veritrace checkpoint --vkey`); repeatable.
    #[arg(long = "log", required = true)]
    logs: Vec<String>,
}

/// `veritrace witness submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Data directory [config: data-dir].
    #[arg(long)]
    data: Option<PathBuf>,
    /// The witness's base URL (its `/add-checkpoint` is below it).
    #[arg(long)]
    url: String,
    /// The witness's cosigner verifier key (`veritrace witness vkey` there).
    #[arg(long)]
    vkey: String,
}

/// Largest request body: a checkpoint and a proof of up to 64 hashes, with room to spare.
const MAX_BODY: usize = 64 * 1024;

fn load_or_create_key(path: &Path) -> anyhow::Result<SigningKey> {
    match std::fs::read_to_string(path) {
        Ok(t) => {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(t.trim(), &mut seed)
                .with_context(|| format!("{}: not a 32-byte hex seed", path.display()))?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            use std::io::Write as _;
            opts.open(path)
                .and_then(|mut f| f.write_all(hex::encode(seed).as_bytes()))
                .with_context(|| format!("creating {}", path.display()))?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The last checkpoint cosigned for a log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Seen {
    size: u64,
    root: Digest,
}

struct Witness {
    name: String,
    key: SigningKey,
    logs: BTreeMap<String, NoteKey>,
    state_path: PathBuf,
    state: Mutex<BTreeMap<String, Seen>>,
}

/// Runs `veritrace witness`.
pub fn run(
    cmd: WitnessCommand,
    data_of: impl Fn(Option<PathBuf>) -> PathBuf,
) -> anyhow::Result<ExitCode> {
    match cmd {
        WitnessCommand::Vkey(k) => {
            let key = load_or_create_key(&k.key)?;
            let nk = NoteKey::cosigner(&k.name, key.verifying_key()).map_err(anyhow::Error::msg)?;
            println!("{}", nk.to_vkey());
            Ok(ExitCode::SUCCESS)
        }
        WitnessCommand::Serve(a) => serve(a),
        WitnessCommand::Submit(a) => submit(a, data_of),
    }
}

fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let key = load_or_create_key(&a.id.key)?;
    NoteKey::cosigner(&a.id.name, key.verifying_key()).map_err(anyhow::Error::msg)?;
    let mut logs = BTreeMap::new();
    for v in &a.logs {
        let k = NoteKey::parse_vkey(v.trim()).map_err(|e| anyhow::anyhow!("--log {v}: {e}"))?;
        logs.insert(k.name.clone(), k);
    }
    let state: BTreeMap<String, Seen> = match std::fs::read(&a.state) {
        Ok(b) => serde_json::from_slice(&b)
            .with_context(|| format!("{}: not a witness state file", a.state.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", a.state.display())),
    };
    let w = Arc::new(Witness {
        name: a.id.name.clone(),
        key,
        logs,
        state_path: a.state.clone(),
        state: Mutex::new(state),
    });
    let rt = crate::rt::runtime()?;
    rt.block_on(async move {
        let registry = prometheus::Registry::new();
        let app = axum::Router::new()
            .route("/add-checkpoint", axum::routing::post(add_checkpoint))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
            .with_state(w.clone())
            .merge(veritrace_metrics::ops_router(
                registry,
                veritrace_metrics::Health::ready_when(Arc::new(|| Ok(serde_json::json!({})))),
            ));
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("binding {}", a.listen))?;
        eprintln!(
            "witness {} for {} log(s) on http://{}",
            w.name,
            w.logs.len(),
            listener.local_addr()?
        );
        veritrace_metrics::serve(listener, app, crate::rt::shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

/// C2SP tlog-witness `POST /add-checkpoint`: `old SIZE`, the consistency proof (one base64
/// hash per line), an empty line, the signed checkpoint.
async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    let w2 = w.clone();
    match tokio::task::spawn_blocking(move || w2.add(&body)).await {
        Ok(r) => r,
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("witness failed: {e}"),
        ),
    }
}

impl Witness {
    fn add(&self, body: &[u8]) -> Response {
        let Ok(all) = std::str::from_utf8(body) else {
            return text(StatusCode::BAD_REQUEST, "the request is not UTF-8 text");
        };
        let Some((head, note_text)) = all.split_once("\n\n") else {
            return text(
                StatusCode::BAD_REQUEST,
                "no empty line before the checkpoint",
            );
        };
        let mut lines = head.split('\n');
        let old = match lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .map(str::parse::<u64>)
        {
            Some(Ok(n)) => n,
            _ => return text(StatusCode::BAD_REQUEST, "the first line is not `old SIZE`"),
        };
        let mut proof = Vec::new();
        for l in lines {
            match STANDARD
                .decode(l)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
            {
                Some(h) if proof.len() < 64 => proof.push(Digest(h)),
                _ => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("proof line {l:?} is not a base64 hash (at most 64)"),
                    );
                }
            }
        }
        let mut note = match Note::parse(note_text.as_bytes()) {
            Ok(n) => n,
            Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let cp = match Checkpoint::parse(&note.text) {
            Ok(c) => c,
            Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let Some(log_key) = self.logs.get(&cp.origin) else {
            return text(
                StatusCode::NOT_FOUND,
                format!("this witness does not witness {}", cp.origin),
            );
        };
        if let Err(e) = note.verify(log_key) {
            return text(StatusCode::FORBIDDEN, e.to_string());
        }
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let (size, root) = state
            .get(&cp.origin)
            .map_or((0, merkle::empty_root()), |s| (s.size, s.root));
        if old != size {
            return (
                StatusCode::CONFLICT,
                [(header::CONTENT_TYPE, "text/x.tlog.size")],
                format!("{size}\n"),
            )
                .into_response();
        }
        if cp.size < old {
            return text(
                StatusCode::BAD_REQUEST,
                format!("the checkpoint has {} leaves, fewer than {old}", cp.size),
            );
        }
        if let Err(e) = merkle::verify_consistency(old, cp.size, &root, &cp.root, &proof) {
            tracing::warn!(origin = %cp.origin, old, new = cp.size, error = %e, "refused an inconsistent checkpoint");
            return text(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("not consistent with the checkpoint of {old} leaves cosigned before: {e}"),
            );
        }
        // Durable before the answer: never cosign two checkpoints that contradict.
        let mut next = state.clone();
        next.insert(
            cp.origin.clone(),
            Seen {
                size: cp.size,
                root: cp.root,
            },
        );
        let written = serde_json::to_vec_pretty(&next)
            .map_err(anyhow::Error::from)
            .and_then(|b| {
                let tmp = self.state_path.with_extension("tmp");
                std::fs::write(&tmp, b)?;
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, &self.state_path)?;
                Ok(())
            });
        if let Err(e) = written {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the witness cannot write its state: {e}"),
            );
        }
        *state = next;
        drop(state);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        note.signatures.clear();
        if let Err(e) = note.cosign(&self.name, &self.key, now) {
            return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
        // The answer is the cosignature line(s) only.
        let full = note.to_text();
        let lines = full
            .rsplit_once("\n\n")
            .map_or(String::new(), |(_, l)| l.to_owned());
        tracing::info!(origin = %cp.origin, size = cp.size, "cosigned");
        text(StatusCode::OK, lines)
    }
}

/// What the node keeps of a witness: the size it last cosigned.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Submitted {
    size: u64,
}

fn submit(a: SubmitArgs, data_of: impl Fn(Option<PathBuf>) -> PathBuf) -> anyhow::Result<ExitCode> {
    let data = data_of(a.data);
    let wkey = NoteKey::parse_vkey(a.vkey.trim()).map_err(|e| anyhow::anyhow!("--vkey: {e}"))?;
    let dir = veritrace_anchor::DataDir::open(&data)?;
    let Some((note_text, cp)) = veritrace_anchor::log::published(&dir)? else {
        anyhow::bail!("no checkpoint is published yet");
    };
    let track = dir
        .log_dir()
        .join("witnesses")
        .join(format!("{}.json", wkey.name.replace(['/', ':'], "_")));
    let mut old = match dir.read_file(&track)? {
        Some(b) => {
            serde_json::from_slice::<Submitted>(&b)
                .with_context(|| format!("{}", track.display()))?
                .size
        }
        None => 0,
    };
    let rt = crate::rt::runtime()?;
    let cosigned = rt.block_on(async {
        let engine = veritrace_queries::QueryEngine::open(&data).await?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        let url = format!("{}/add-checkpoint", a.url.trim_end_matches('/'));
        // At most twice: a witness that knows another size says which (409).
        for _ in 0..2 {
            if old > cp.size {
                anyhow::bail!("the witness cosigned {old} leaves of this log; the checkpoint has {}: it saw a longer log", cp.size);
            }
            let proof = engine.consistency(old, cp.size).await?;
            let mut body = format!("old {old}\n");
            for h in &proof.proof {
                body.push_str(&STANDARD.encode(h.0));
                body.push('\n');
            }
            body.push('\n');
            body.push_str(&note_text);
            let resp = http.post(&url).body(body).send().await.with_context(|| format!("POST {url}"))?;
            let status = resp.status();
            let answer = resp.text().await?;
            if status == reqwest::StatusCode::CONFLICT {
                old = answer
                    .trim()
                    .parse()
                    .with_context(|| format!("the witness's 409 names no size: {answer:?}"))?;
                continue;
            }
            if !status.is_success() {
                anyhow::bail!("the witness refused the checkpoint: {status}: {}", answer.trim());
            }
            return Ok(answer);
        }
        anyhow::bail!("the witness's size kept changing")
    })?;
    // The cosignature must verify before it is kept.
    let mut note = Note::parse(note_text.as_bytes()).map_err(anyhow::Error::msg)?;
    let extra = Note::parse(format!("{}\n{cosigned}", note.text).as_bytes())
        .map_err(|e| anyhow::anyhow!("the witness's answer is not a signature line: {e}"))?;
    let time = extra
        .verify(&wkey)
        .map_err(|e| anyhow::anyhow!("the witness's cosignature does not verify: {e}"))?;
    // Add to what is already kept for this size (other witnesses' cosignatures).
    let kept_path = dir.log_dir().join("cosigned").join(cp.size.to_string());
    if let Some(b) = dir.read_file(&kept_path)?
        && let Ok(k) = Note::parse(&b)
        && k.text == note.text
    {
        note = k;
    }
    let k = wkey.key_hash();
    note.signatures
        .retain(|s| !(s.name == wkey.name && s.key_hash == k));
    note.signatures.extend(
        extra
            .signatures
            .into_iter()
            .filter(|s| s.name == wkey.name && s.key_hash == k),
    );
    dir.write_replace(&kept_path, note.to_text().into_bytes())?;
    dir.write_replace(&track, serde_json::to_vec(&Submitted { size: cp.size })?)?;
    println!(
        "{} cosigned the checkpoint of {} leaves at {time}; kept in {}",
        wkey.name,
        cp.size,
        kept_path.display()
    );
    Ok(ExitCode::SUCCESS)
}
