use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use tracing::instrument;
use veritrace_verify::bundle::LedgerEntry;
use veritrace_verify::{Digest, verify};

use crate::fsutil::append_line_durable;
use crate::{DataDir, EpochRecord, Error, Result};

/// The embedded anchor backend: an append-only file (`ledger/local.jsonl`) in which each
/// epoch root is signed with the node's Ed25519 key and chained to the previous entry.
/// It proves the operator's node committed to a root at a time and never rewrote it
/// without breaking the chain; it is not a public witness, and proofs say `local`.
pub struct LocalLedger {
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
    /// (chain, signatures, single key). A torn last line from a crash is cut off.
    pub fn open(dir: &DataDir) -> Result<Self> {
        let key = load_or_create_key(&dir.ledger_key_file())?;
        let public_hex = hex::encode(key.verifying_key().to_bytes());
        let path = dir.ledger_file();
        crate::fsutil::repair_torn_tail(&path)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(Error::Io {
                    op: "read",
                    path,
                    source: e,
                });
            }
        };
        let entries = verify::verify_ledger(&text).map_err(|e| Error::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
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
            path,
            key,
            public_hex,
            entries,
        })
    }

    /// Reads the ledger entries without the node key and without writing (for queries).
    pub fn read_entries(dir: &DataDir) -> Result<Vec<LedgerEntry>> {
        crate::fsutil::read_jsonl(&dir.ledger_file())
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
            batch_count: epoch.batch_count,
            anchored_at,
            prev_entry_hash,
            public_key: self.public_hex.clone(),
            signature: String::new(),
        };
        let sig = self.key.sign(&entry.signing_bytes()?);
        entry.signature = hex::encode(sig.to_bytes());
        append_line_durable(&self.path, &entry)?;
        self.entries.push(entry.clone());
        Ok(entry)
    }
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
