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
    /// Hashing or canonicalisation of our own structures failed (a bug).
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

impl From<veritrace_verify::Error> for Error {
    fn from(e: veritrace_verify::Error) -> Self {
        Error::Bug(e.to_string())
    }
}
