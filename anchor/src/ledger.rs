//! The local ledger: the embedded anchor backend, and its head (`ledger/head.json`) that
//! makes a truncated ledger an error instead of epochs to sign again.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use tracing::instrument;
use veritrace_verify::bundle::LedgerEntry;
use veritrace_verify::{Digest, verify};

use crate::{DataDir, EpochRecord, Error, Result};

/// The embedded anchor backend: an append-only file (`ledger/local.jsonl`) in which each
/// epoch root is signed with the node's Ed25519 key and chained to the previous entry.
/// It proves the operator's node committed to a root at a time and never rewrote it
/// without breaking the chain; it is not a public witness, and proofs say `local`.
pub struct LocalLedger {
    dir: DataDir,
    path: PathBuf,
    key: SigningKey,
    public_hex: String,
    entries: Vec<LedgerEntry>,
}

impl std::fmt::Debug for LocalLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The signing key never appears in logs.
        f.debug_struct("LocalLedger")
            .field("path", &self.path)
            .field("public_key", &self.public_hex)
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl LocalLedger {
    /// Opens the ledger, creating the node key on first use, and verifies the whole file
    /// (chain, signatures, single key) against its head (`ledger/head.json`): a ledger with
    /// fewer entries than the head records was truncated, and is an error, never a reason
    /// to sign those epochs again. A torn last line beyond the head (a crash while
    /// appending) is cut off.
    pub fn open(dir: &DataDir) -> Result<Self> {
        let key = node_key(dir)?;
        let public_hex = hex::encode(key.verifying_key().to_bytes());
        let path = dir.ledger_file();
        let text = if dir.is_remote() {
            let lines: Vec<serde_json::Value> = dir.read_jsonl(&path)?;
            let mut text = String::new();
            for l in lines {
                text.push_str(&l.to_string());
                text.push('\n');
            }
            text
        } else {
            match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => {
                    return Err(Error::Io {
                        op: "read",
                        path,
                        source: e,
                    });
                }
            }
        };
        let entries = verify::verify_ledger(&text).map_err(|e| Error::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        check_head(dir, &entries)?;
        dir.repair_torn_tail(&path)?;
        write_head(dir, &entries)?;
        if let Some(first) = entries.first()
            && first.public_key != public_hex
        {
            return Err(Error::Corrupt {
                path,
                detail: format!(
                    "ledger is signed by key {} but this node's key is {public_hex}",
                    first.public_key
                ),
            });
        }
        Ok(LocalLedger {
            dir: dir.clone(),
            path,
            key,
            public_hex,
            entries,
        })
    }

    /// Reads the ledger entries without the node key and without writing (for queries),
    /// checked against the head: a truncated ledger is an error naming what is missing.
    pub fn read_entries(dir: &DataDir) -> Result<Vec<LedgerEntry>> {
        let entries = dir.read_jsonl(&dir.ledger_file())?;
        check_head(dir, &entries)?;
        Ok(entries)
    }

    /// The node's public key (hex), to publish so auditors can pin it.
    pub fn public_key_hex(&self) -> &str {
        &self.public_hex
    }

    /// All entries, in epoch order.
    pub fn entries(&self) -> &[LedgerEntry] {
        &self.entries
    }

    /// The entry anchoring an epoch, if any.
    pub fn entry(&self, epoch_id: u64) -> Option<&LedgerEntry> {
        self.entries
            .get(epoch_id as usize)
            .filter(|e| e.epoch_id == epoch_id)
    }

    /// Anchors an epoch: signs and appends its entry. Epochs are anchored in order; an
    /// epoch already anchored with the same root returns its entry (idempotent retry).
    #[instrument(skip_all, fields(epoch_id = epoch.epoch_id))]
    pub fn anchor(&mut self, epoch: &EpochRecord, anchored_at: String) -> Result<LedgerEntry> {
        if let Some(e) = self.entry(epoch.epoch_id) {
            if e.root == epoch.root {
                return Ok(e.clone());
            }
            return Err(Error::Corrupt {
                path: self.path.clone(),
                detail: format!(
                    "epoch {} is anchored with root {} but the epoch log says {}",
                    epoch.epoch_id, e.root, epoch.root
                ),
            });
        }
        let next = self.entries.len() as u64;
        if epoch.epoch_id != next {
            return Err(Error::Invalid(format!(
                "epoch {} cannot be anchored before epoch {next}",
                epoch.epoch_id
            )));
        }
        let prev_entry_hash = match self.entries.last() {
            Some(e) => e.entry_hash()?,
            None => Digest::ZERO,
        };
        let mut entry = LedgerEntry {
            epoch_id: epoch.epoch_id,
            root: epoch.root,
            batch_count: epoch.tree_size(),
            anchored_at,
            prev_entry_hash,
            public_key: self.public_hex.clone(),
            signature: String::new(),
        };
        let sig = self.key.sign(&entry.signing_bytes()?);
        entry.signature = hex::encode(sig.to_bytes());
        self.dir
            .append_jsonl(&self.path, self.entries.len() as u64, &entry)?;
        self.entries.push(entry.clone());
        write_head(&self.dir, &self.entries)?;
        Ok(entry)
    }
}

/// `ledger/head.json`: how many entries the ledger had when last written, and the hash of
/// the last. Written after every append, so it is never ahead of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerHead {
    /// Entries in the ledger.
    pub entries: u64,
    /// `entry_hash` of the last entry (zero when empty).
    pub last_entry_hash: Digest,
}

/// Reads the head, if one was written (ledgers from before heads have none).
pub fn read_head(dir: &DataDir) -> Result<Option<LedgerHead>> {
    let path = dir.ledger_head_file();
    match dir.read_file(&path)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                path,
                detail: format!("ledger head is not valid: {e}"),
            }),
        None => Ok(None),
    }
}

/// Checks `entries` (as read from the ledger) against the head.
pub fn check_head(dir: &DataDir, entries: &[LedgerEntry]) -> Result<()> {
    let Some(head) = read_head(dir)? else {
        return Ok(());
    };
    let have = entries.len() as u64;
    if have < head.entries {
        return Err(Error::Corrupt {
            path: dir.ledger_file(),
            detail: format!(
                "the ledger holds {have} complete entries but its head ({}) records {}: epochs \
                 {have}..={} were anchored and their entries are gone (truncated or replaced). \
                 Restore the ledger from a backup; Veritrace will not sign these epochs again",
                dir.ledger_head_file().display(),
                head.entries,
                head.entries - 1
            ),
        });
    }
    if head.entries > 0 {
        let at = &entries[head.entries as usize - 1];
        let found = at.entry_hash()?;
        if found != head.last_entry_hash {
            return Err(Error::Corrupt {
                path: dir.ledger_file(),
                detail: format!(
                    "ledger entry {} hashes to {found} but the head recorded {}: the entry was \
                     altered or replaced",
                    head.entries - 1,
                    head.last_entry_hash
                ),
            });
        }
    }
    Ok(())
}

fn write_head(dir: &DataDir, entries: &[LedgerEntry]) -> Result<()> {
    let head = LedgerHead {
        entries: entries.len() as u64,
        last_entry_hash: match entries.last() {
            Some(e) => e.entry_hash()?,
            None => Digest::ZERO,
        },
    };
    if read_head(dir)?.as_ref() == Some(&head) {
        return Ok(());
    }
    let mut bytes = serde_json::to_vec(&head).map_err(|e| Error::Bug(e.to_string()))?;
    bytes.push(b'\n');
    dir.write_replace(&dir.ledger_head_file(), bytes)
}

/// The variable naming a file that holds the node's ledger key (64 hex digits; created if
/// absent). Where it is unset the key is `keys/local-ledger.key` in the data directory.
pub const LEDGER_KEY_VAR: &str = "VERITRACE_LEDGER_KEY";

/// The node's Ed25519 ledger key: from [`LEDGER_KEY_VAR`]'s file when set, else from the data
/// directory (on an object store it is created there create-only, so replicas racing to
/// create it end up with the one key; a Secret mounted as a file is the better home).
pub(crate) fn node_key(dir: &DataDir) -> Result<SigningKey> {
    if let Some(file) = std::env::var_os(LEDGER_KEY_VAR).filter(|v| !v.is_empty()) {
        return load_or_create_key(Path::new(&file));
    }
    if !dir.is_remote() {
        return load_or_create_key(&dir.ledger_key_file());
    }
    let path = dir.ledger_key_file();
    if dir.read_file(&path)?.is_none() {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| Error::Bug(format!("no OS randomness for the node key: {e}")))?;
        if dir.write_new(&path, hex::encode(seed).into_bytes())? {
            let key = SigningKey::from_bytes(&seed);
            dir.write_replace(
                &path.with_extension("pub"),
                format!("{}\n", hex::encode(key.verifying_key().to_bytes())).into_bytes(),
            )?;
            tracing::warn!(key = %path.display(), "created the local ledger node key in the bucket; set {LEDGER_KEY_VAR} to a file (a mounted Secret) to keep it out of the data");
        }
    }
    let text = dir.read_file(&path)?.unwrap_or_default();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(String::from_utf8_lossy(&text).trim(), &mut seed).map_err(|e| {
        Error::Corrupt {
            path: path.clone(),
            detail: format!("node key is not 64 hex digits: {e}"),
        }
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The node's key if it exists ([`LEDGER_KEY_VAR`]'s file, else the data directory's), never
/// creating one: what a reader that signs for the node (COSE receipts) uses, so that it
/// never signs with a key of its own.
pub fn existing_node_key(dir: &DataDir) -> Result<Option<SigningKey>> {
    let (path, text) = match std::env::var_os(LEDGER_KEY_VAR).filter(|v| !v.is_empty()) {
        Some(file) => {
            let p = PathBuf::from(file);
            match std::fs::read(&p) {
                Ok(t) => (p, t),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io("read", &p)(e)),
            }
        }
        None => {
            let p = dir.ledger_key_file();
            match dir.read_file(&p)? {
                Some(t) => (p, t),
                None => return Ok(None),
            }
        }
    };
    let mut seed = [0u8; 32];
    hex::decode_to_slice(String::from_utf8_lossy(&text).trim(), &mut seed).map_err(|e| {
        Error::Corrupt {
            path,
            detail: format!("node key is not 64 hex digits: {e}"),
        }
    })?;
    Ok(Some(SigningKey::from_bytes(&seed)))
}

fn load_or_create_key(path: &Path) -> Result<SigningKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut seed).map_err(|e| Error::Corrupt {
                path: path.to_owned(),
                detail: format!("node key is not 64 hex digits: {e}"),
            })?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed)
                .map_err(|e| Error::Bug(format!("no OS randomness for the node key: {e}")))?;
            let key = SigningKey::from_bytes(&seed);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
            }
            write_secret(path, hex::encode(seed).as_bytes())?;
            let pub_path = path.with_extension("pub");
            std::fs::write(
                &pub_path,
                format!("{}\n", hex::encode(key.verifying_key().to_bytes())),
            )
            .map_err(Error::io("write public key", &pub_path))?;
            tracing::info!(public_key = %hex::encode(key.verifying_key().to_bytes()), "created local ledger node key");
            Ok(key)
        }
        Err(e) => Err(Error::Io {
            op: "read node key",
            path: path.to_owned(),
            source: e,
        }),
    }
}

fn write_secret(path: &Path, data: &[u8]) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(Error::io("create node key", path))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(Error::io("write node key", path))
}
