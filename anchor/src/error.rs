use std::path::PathBuf;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the anchor stage. `Io` and `Parquet` are the environment's fault (disk full,
/// permissions); `Corrupt` means files in the data directory were changed or damaged
/// (evidence included); `Bug` is ours.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing Parquet failed.
    #[error("writing parquet {path}: {source}")]
    Parquet {
        /// The file being written.
        path: PathBuf,
        /// Parquet's error.
        source: parquet::errors::ParquetError,
    },
    /// The data directory holds something that contradicts its own hash chains or format.
    #[error("corrupt data directory: {path}: {detail}")]
    Corrupt {
        /// The offending file.
        path: PathBuf,
        /// What contradicts what.
        detail: String,
    },
    /// The caller asked for something impossible (sealing offsets out of order, ...).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The chain (JSON-RPC node) refused or failed a request; anchoring retries later.
    #[error("chain: {0}")]
    Chain(String),
    /// A verification rule failed on stored data (a hash, root or signature that does not
    /// match, a record that does not parse): the verifier's error, with its evidence
    /// (expected and computed digests, the field, the entry) and its reason code.
    #[error(transparent)]
    Verify(#[from] veritrace_verify::Error),
    /// Our own structures could not be built (a bug).
    #[error("internal error: {0}")]
    Bug(String),
}

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}
