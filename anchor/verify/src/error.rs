use crate::Digest;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a verification or a canonicalisation failed. Every variant is the fault of the input
/// (a bundle, an event, a ledger file); the verifier has no external systems to blame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The document is not valid JSON or does not have the expected shape.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being read (bundle, ledger line, event).
        what: &'static str,
        /// Parser message.
        detail: String,
    },
    /// The document declares a format version this verifier does not know.
    #[error("unsupported format {found:?} (this verifier reads {})", supported.join(" and "))]
    UnsupportedFormat {
        /// Format string found in the document.
        found: String,
        /// The format strings this verifier reads for that kind of document.
        supported: &'static [&'static str],
    },
    /// A JSON object has the same key twice; JCS (I-JSON) forbids it and it would let a
    /// document show one value to a reader and hash another.
    #[error("duplicate key {key:?} in JSON object")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// An integer outside the range that IEEE 754 doubles represent exactly (+-2^53); JCS
    /// would silently change its value.
    #[error("number {value} is outside +-2^53 and cannot be canonicalised without loss")]
    UnsafeInteger {
        /// The number as written.
        value: String,
    },
    /// A digest field is not 64 hex digits (32 bytes).
    #[error("bad hash {field}: {detail}")]
    BadHash {
        /// Field name, as PROOFS.md names it (`leaf.hash`, `epoch.audit_path[2]`, ...).
        field: String,
        /// What is wrong.
        detail: String,
    },
    /// The leaf index is not inside the tree, or the audit path has the wrong length.
    #[error("bad audit path for {level}: {detail}")]
    BadPath {
        /// `batch` or `epoch`.
        level: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A recomputed hash differs from the one the bundle or the anchor states.
    #[error("{what} mismatch: expected {expected}, computed {computed}")]
    RootMismatch {
        /// Which hash (leaf hash, batch root, epoch root, anchored root, ...).
        what: &'static str,
        /// The value stated by the bundle or anchor.
        expected: Digest,
        /// The value recomputed from the evidence.
        computed: Digest,
    },
    /// Two fields that must agree do not (event id, epoch id, batch count, status, ...).
    #[error("inconsistent bundle: {0}")]
    Inconsistent(String),
    /// The Ed25519 signature of a ledger entry does not verify (strictly: a weak key or a
    /// non-canonical signature does not either).
    #[error("bad signature on local ledger entry {seq}: {detail}")]
    BadSignature {
        /// Ledger sequence number.
        seq: u64,
        /// Why.
        detail: String,
    },
    /// The ledger entry was signed by a key other than the one the auditor pinned.
    #[error("ledger entry signed by key {found}, expected pinned key {expected}")]
    WrongKey {
        /// Pinned key (hex).
        expected: String,
        /// Key in the entry (hex).
        found: String,
    },
    /// The local ledger file is broken: a hash chain gap, a changed entry, a missing entry.
    #[error("local ledger: {0}")]
    Ledger(String),
    /// A signed note or log checkpoint (C2SP signed-note, tlog-checkpoint) is malformed or
    /// its signature does not verify.
    #[error("signed note: {0}")]
    Note(String),
    /// Fewer of the witnesses the auditor named cosigned the checkpoint than required.
    #[error("witnesses: {0}")]
    Witnesses(String),
    /// The signed statement the event came in does not check out: its envelope against the
    /// digest the leaf commits to, its claims against the event, its key, its signature or
    /// its key's registration; or a disclosed private field does not match its commitment.
    #[error("signed statement: {code}: {detail}")]
    Statement {
        /// `bad_envelope`, `claims_mismatch`, `wrong_key`, `bad_signature` or
        /// `bad_disclosure`.
        code: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl Error {
    /// A stable reason code for scripts (`veritrace verify --json` prints it).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Statement { code, .. } => code,
            Error::Malformed { .. } => "malformed",
            Error::UnsupportedFormat { .. } => "unsupported_format",
            Error::DuplicateKey { .. } => "duplicate_key",
            Error::UnsafeInteger { .. } => "unsafe_integer",
            Error::BadHash { .. } => "bad_hash",
            Error::BadPath { .. } => "bad_path",
            Error::RootMismatch { .. } => "root_mismatch",
            Error::Inconsistent(_) => "inconsistent",
            Error::BadSignature { .. } => "bad_signature",
            Error::WrongKey { .. } => "wrong_key",
            Error::Ledger(_) => "ledger",
            Error::Note(_) => "bad_note",
            Error::Witnesses(_) => "not_witnessed",
        }
    }
}
