//! API tokens: created by `veritrace tokens create`, stored only as hashes, revocable.
//!
//! A token reads `vtk_<id>_<secret>`: `id` (12 hex digits) names its record, `secret` is 32
//! random bytes (base64url). The token file (`<data-dir>/access/tokens.json` by default,
//! mode 0600) keeps, per token, the SHA-256 of the whole token, its role and participant,
//! when it was made, when it expires and when it was revoked; never the token itself, so a
//! copy of the file authenticates nobody. The secret has 256 bits of entropy, so a plain
//! hash is enough (a password hash guards low-entropy secrets).
//!
//! The server re-reads the file when it changes (a revocation takes effect on the next
//! request); writers take an exclusive lock on `tokens.json.lock` and replace the file
//! atomically.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Identity, Method, Role};
use crate::Error;

/// The prefix of every API token (so scanners and people recognise one).
pub const PREFIX: &str = "vtk_";

/// One token as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// Its id (the part of the token before the secret).
    pub id: String,
    /// What it is for (free text).
    #[serde(default)]
    pub name: String,
    /// Its role.
    pub role: String,
    /// The participant it speaks for (the `participant` role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<String>,
    /// SHA-256 of the whole token, hex.
    pub sha256: String,
    /// When it was created (seconds since the epoch).
    pub created: i64,
    /// When it stops working (seconds since the epoch), if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<i64>,
    /// Its queries running at once (over its role's limit), if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<usize>,
    /// Deadline of one of its queries in seconds (over its role's), if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Memory its running queries may hold together, in MiB, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_mib: Option<usize>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    version: u32,
    tokens: Vec<TokenRecord>,
}

/// The token file of a data directory (a path, a `file://` URL or an `s3://` URL).
pub fn default_path(data_dir: &Path) -> PathBuf {
    // `file:///srv/vt` is the directory `/srv/vt`, as the data directory reads it; joined
    // as text it became a relative `file:` directory under the working directory.
    let dir = match data_dir.to_str().and_then(|t| t.strip_prefix("file://")) {
        Some(path) => Path::new(path),
        None => data_dir,
    };
    dir.join("access").join("tokens.json")
}

fn now() -> i64 {
    veritrace_processors::now_ms().div_euclid(1000)
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn read(path: &Path) -> Result<TokenFile, String> {
    if let Some(obj) = object(path)? {
        return parse(path, obj.read().map_err(|e| e.to_string())?.0);
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TokenFile::default()),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    parse(path, Some(bytes))
}

fn is_object(path: &Path) -> bool {
    path.to_string_lossy().starts_with("s3://")
}

/// The token file on an object store, when `path` is an `s3://` URL.
fn object(path: &Path) -> Result<Option<veritrace_anchor::ObjectFile>, String> {
    veritrace_anchor::ObjectFile::parse(path).map_err(|e| e.to_string())
}

fn parse(path: &Path, bytes: Option<Vec<u8>>) -> Result<TokenFile, String> {
    let Some(bytes) = bytes else {
        return Ok(TokenFile::default());
    };
    let f: TokenFile = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not a token file: {e}", path.display()))?;
    if f.version != 1 {
        return Err(format!(
            "{}: token file version {} (this build reads 1)",
            path.display(),
            f.version
        ));
    }
    Ok(f)
}

/// The file's bytes: pretty JSON and a final newline.
fn encode(file: &TokenFile) -> Result<Vec<u8>, String> {
    let mut bytes = serde_json::to_vec_pretty(file).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Runs `change` on the token file under its lock and writes the result atomically.
fn update<T>(
    path: &Path,
    change: impl Fn(&mut TokenFile) -> Result<T, String>,
) -> Result<T, String> {
    if let Some(obj) = object(path)? {
        // No locks on an object store: read, change, and write back only if nobody wrote
        // in between (compare-and-swap on the version read); otherwise do it again.
        for _ in 0..32 {
            let (bytes, at) = obj.read().map_err(|e| e.to_string())?;
            let mut file = parse(path, bytes)?;
            let out = change(&mut file)?;
            if obj
                .replace(encode(&file)?, &at)
                .map_err(|e| e.to_string())?
            {
                return Ok(out);
            }
        }
        return Err(format!(
            "{}: changed by others 32 times in a row while this change was made; try again",
            path.display()
        ));
    }
    let dir = path
        .parent()
        .ok_or_else(|| format!("{} has no directory", path.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let lock_path = path.with_extension("json.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("opening {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    let mut file = read(path)?;
    let out = change(&mut file)?;
    let bytes = encode(&file)?;
    let tmp = path.with_extension("json.tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("creating {}: {e}", tmp.display()))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("replacing {}: {e}", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("syncing {}: {e}", dir.display()))?;
    drop(lock);
    Ok(out)
}

/// What a new token is for.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Its role.
    pub role: Role,
    /// Its participant (required for, and only for, the `participant` role).
    pub participant: Option<String>,
    /// How long it works, if not for ever.
    pub expires_in: Option<std::time::Duration>,
    /// What it is for.
    pub name: String,
    /// Its own limits.
    pub limits: super::Limits,
}

/// Creates a token: returns the token (shown once, never stored) and its record.
pub fn create(path: &Path, new: &NewToken) -> Result<(String, TokenRecord), String> {
    match (new.role, &new.participant) {
        (Role::Participant, None) => {
            return Err("a participant token needs --participant ID".into());
        }
        (Role::Participant, Some(p)) if p.trim().is_empty() => {
            return Err("the participant id is empty".into());
        }
        (r, Some(_)) if r != Role::Participant => {
            return Err(format!(
                "--participant is for the participant role, not {r}"
            ));
        }
        _ => {}
    }
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id).map_err(|e| format!("no randomness: {e}"))?;
    getrandom::fill(&mut secret).map_err(|e| format!("no randomness: {e}"))?;
    let id = hex::encode(id);
    let token = format!(
        "{PREFIX}{id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let created = now();
    let record = TokenRecord {
        id: id.clone(),
        name: new.name.clone(),
        role: new.role.as_str().into(),
        participant: new.participant.clone(),
        sha256: hash(&token),
        created,
        expires: new
            .expires_in
            .map(|d| created.saturating_add(d.as_secs() as i64)),
        revoked: None,
        max_concurrent: new.limits.max_concurrent,
        timeout_secs: new.limits.timeout.map(|d| d.as_secs().max(1)),
        memory_limit_mib: new.limits.memory_limit.map(|b| (b >> 20).max(1)),
    };
    update(path, |f| {
        if f.tokens.iter().any(|t| t.id == id) {
            return Err(format!("token id {id} exists already; try again"));
        }
        f.version = 1;
        f.tokens.push(record.clone());
        Ok(())
    })?;
    Ok((token, record))
}

/// Revokes the token with `id` (from now on it authenticates nobody); revoking twice keeps
/// the first time.
pub fn revoke(path: &Path, id: &str) -> Result<TokenRecord, String> {
    update(path, |f| {
        let t = f
            .tokens
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or_else(|| format!("no token {id} in {}", path.display()))?;
        t.revoked.get_or_insert(now());
        Ok(t.clone())
    })
}

/// Every token record.
pub fn list(path: &Path) -> Result<Vec<TokenRecord>, String> {
    Ok(read(path)?.tokens)
}

type Stamp = Option<(std::time::SystemTime, u64, u64)>;

/// The token file as the server reads it: re-read whenever it changes.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    cache: Mutex<(Stamp, Arc<HashMap<String, TokenRecord>>)>,
}

/// How often a server re-reads a token file on an object store (a revocation takes effect
/// on every server within this; locally it is at once, by the file's modification time).
pub const OBJECT_REREAD: std::time::Duration = std::time::Duration::from_secs(5);

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    if is_object(path) {
        let window = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / OBJECT_REREAD.as_secs());
        return Some((std::time::UNIX_EPOCH, window, 0));
    }
    std::fs::metadata(path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len(), m.ino())))
}

fn unauthenticated(code: &'static str, detail: impl Into<String>) -> Error {
    Error::Unauthenticated {
        code,
        detail: detail.into(),
    }
}

impl TokenStore {
    /// The store over `path` (which need not exist yet: then no token authenticates).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, String> {
        let store = TokenStore {
            path: path.into(),
            cache: Mutex::new((None, Arc::new(HashMap::new()))),
        };
        store.current()?;
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn current(&self) -> Result<Arc<HashMap<String, TokenRecord>>, String> {
        let now = stamp(&self.path);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0.is_none() || cache.0 != now {
            let file = match read(&self.path) {
                Ok(f) => f,
                // An object store that does not answer for a moment: keep what was read
                // last (tried again on the next request), rather than refuse everyone.
                Err(e) if cache.0.is_some() && is_object(&self.path) => {
                    tracing::warn!(file = %self.path.display(), error = %e, "token file not re-read; using the copy read before");
                    return Ok(cache.1.clone());
                }
                Err(e) => return Err(e),
            };
            let map = file
                .tokens
                .into_iter()
                .map(|t| (t.id.clone(), t))
                .collect::<HashMap<_, _>>();
            *cache = (now, Arc::new(map));
        }
        Ok(cache.1.clone())
    }

    /// Whether `token` looks like one of ours (so a JWT is not tried as one).
    pub fn is_api_token(token: &str) -> bool {
        token.starts_with(PREFIX)
    }

    /// The identity `token` authenticates, or why it does not: `invalid_token` (malformed,
    /// unknown or wrong secret, all alike), `token_expired`, `token_revoked`.
    pub fn verify(&self, token: &str) -> Result<Identity, Error> {
        let invalid = || unauthenticated("invalid_token", "the API token is not valid");
        let rest = token.strip_prefix(PREFIX).ok_or_else(invalid)?;
        let (id, _) = rest.split_once('_').ok_or_else(invalid)?;
        let tokens = self.current().map_err(|e| {
            tracing::error!(error = %e, "the token file cannot be read");
            Error::Internal(format!("the token file cannot be read: {e}"))
        })?;
        let t = tokens.get(id).ok_or_else(invalid)?;
        let presented = Sha256::digest(token.as_bytes());
        let stored = hex::decode(&t.sha256).map_err(|_| invalid())?;
        // Constant time: the comparison does not stop at the first differing byte.
        let differ = stored.len() != presented.len()
            || stored
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                != 0;
        if differ {
            return Err(invalid());
        }
        if let Some(at) = t.revoked {
            return Err(unauthenticated(
                "token_revoked",
                format!("API token {id} was revoked at {at}"),
            ));
        }
        if t.expires.is_some_and(|e| now() >= e) {
            return Err(unauthenticated(
                "token_expired",
                format!("API token {id} has expired"),
            ));
        }
        let role: Role = t
            .role
            .parse()
            .map_err(|e: String| Error::Internal(format!("token {id} in the token file: {e}")))?;
        Ok(Identity {
            subject: format!("token:{id}"),
            role,
            participant: t.participant.clone(),
            method: Method::Token,
            limits: super::Limits {
                max_concurrent: t.max_concurrent,
                timeout: t.timeout_secs.map(std::time::Duration::from_secs),
                memory_limit: t.memory_limit_mib.map(|m| m.saturating_mul(1 << 20)),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file_of_a_file_url_is_in_that_directory() {
        assert_eq!(
            default_path(Path::new("file:///srv/vt")),
            Path::new("/srv/vt/access/tokens.json")
        );
        assert_eq!(
            default_path(Path::new("/srv/vt")),
            Path::new("/srv/vt/access/tokens.json")
        );
        assert_eq!(
            default_path(Path::new("s3://bucket/plant")),
            Path::new("s3://bucket/plant/access/tokens.json")
        );
    }

    #[test]
    fn created_tokens_verify_until_revoked_or_expired_and_only_hashes_are_stored() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = default_path(dir.path());
        let store = TokenStore::open(&path).expect("store");
        let new = |role, participant: Option<&str>, expires_in| NewToken {
            role,
            participant: participant.map(str::to_owned),
            expires_in,
            name: "test".into(),
            limits: Default::default(),
        };
        let (analyst, rec) = create(&path, &new(Role::Analyst, None, None)).expect("create");
        let (part, _) = create(&path, &new(Role::Participant, Some("p-7"), None)).expect("create");
        let (short, _) = create(
            &path,
            &new(Role::Auditor, None, Some(std::time::Duration::ZERO)),
        )
        .expect("create");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains(&analyst[10..]), "the secret is not stored");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "only the owner reads the token file");

        let id = store.verify(&analyst).expect("analyst");
        assert_eq!((id.role, id.participant), (Role::Analyst, None));
        let id = store.verify(&part).expect("participant");
        assert_eq!(id.participant.as_deref(), Some("p-7"));
        assert_eq!(id.scope(), super::super::Scope::Participant("p-7".into()));
        let code = |t: &str| match store.verify(t) {
            Err(Error::Unauthenticated { code, .. }) => code,
            other => panic!("{t}: {other:?}"),
        };
        assert_eq!(code(&short), "token_expired");
        let mut wrong = analyst.clone();
        wrong.pop();
        wrong.push(if analyst.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(code(&wrong), "invalid_token");
        assert_eq!(code("vtk_000000000000_x"), "invalid_token");
        assert_eq!(code("vtk_"), "invalid_token");
        assert_eq!(code("Bearer"), "invalid_token");

        revoke(&path, &rec.id).expect("revoke");
        assert_eq!(code(&analyst), "token_revoked");
        assert!(store.verify(&part).is_ok(), "other tokens keep working");
        assert!(revoke(&path, "nope").is_err());
        assert_eq!(list(&path).expect("list").len(), 3);

        assert!(create(&path, &new(Role::Participant, None, None)).is_err());
        assert!(create(&path, &new(Role::Analyst, Some("p"), None)).is_err());
    }

    #[test]
    fn a_damaged_token_file_authenticates_nobody() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = default_path(dir.path());
        let (t, _) = create(
            &path,
            &NewToken {
                role: Role::Admin,
                participant: None,
                expires_in: None,
                name: String::new(),
                limits: Default::default(),
            },
        )
        .expect("create");
        let store = TokenStore::open(&path).expect("store");
        assert!(store.verify(&t).is_ok());
        std::fs::write(&path, b"{\"version\":1,\"tokens\":[{").expect("damage");
        assert!(matches!(store.verify(&t), Err(Error::Internal(_))));
    }
}
