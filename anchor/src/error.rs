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
    /// The object store holding the data directory failed a request (network, permissions,
    /// a store without conditional writes); the work is retried, nothing is lost.
    #[error("object store, {path}: {detail}")]
    Store {
        /// The file (object) concerned.
        path: PathBuf,
        /// What the store said.
        detail: String,
    },
    /// Another process wrote where this one expected to own the next entry (a partition or
    /// the epoch sealer moved to a new owner): this process stops writing there.
    #[error("ownership lost, {path}: {detail}")]
    Lost {
        /// The log.
        path: PathBuf,
        /// What happened.
        detail: String,
    },
    /// The caller asked for something impossible (sealing offsets out of order, ...).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The chain (JSON-RPC node) refused or failed a request; anchoring retries later.
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
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

/// What went wrong with the chain, and the evidence: the JSON-RPC call and endpoint
/// (`scheme://host:port`, never its path or credentials), the epoch, the contract, the
/// numbers over a limit. Anchoring retries all of these with backoff; none loses an epoch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// A request failed or got no answer in time (node down, slow, or answering an error).
    #[error("{call} via {endpoint}: {detail}")]
    Rpc {
        /// The JSON-RPC method (or what was being done).
        call: String,
        /// The endpoint, `scheme://host:port`.
        endpoint: String,
        /// What the transport or the node said.
        detail: String,
    },
    /// The configured address holds no contract, or not the `VeritraceAnchor` contract.
    #[error("{detail} (contract {contract} on chain {chain_id})")]
    Contract {
        /// The configured contract address.
        contract: String,
        /// The chain the RPC serves.
        chain_id: u64,
        /// What is wrong with it.
        detail: String,
    },
    /// The writer key may not anchor on the contract.
    #[error(
        "{writer} may not anchor on contract {contract} (NotWriter): the contract owner must call setWriter({writer}, true)"
    )]
    NotWriter {
        /// The writer key's address.
        writer: String,
        /// The contract.
        contract: String,
    },
    /// A cost over the operator's limit (fees, gas): epochs wait until it drops or the
    /// limit is raised.
    #[error("{0}")]
    OverLimit(String),
    /// The node refused or reverted a transaction of ours.
    #[error("{what}: {detail}")]
    Refused {
        /// The transaction (`the anchor transaction of epoch 3`, `deployment 0x..`).
        what: String,
        /// Why.
        detail: String,
    },
    /// The chain's answers contradict each other (a log without its position, a root the
    /// contract holds without its log): nothing is adopted from them.
    #[error("{0}")]
    Inconsistent(String),
}

impl ChainError {
    /// The same error with an RPC URL's secrets removed from every text it carries.
    pub(crate) fn scrubbed(self, rpc: &str) -> Self {
        let s = |t: String| veritrace_verify::chain::scrub_url(&t, rpc);
        match self {
            ChainError::Rpc {
                call,
                endpoint,
                detail,
            } => ChainError::Rpc {
                call,
                endpoint,
                detail: s(detail),
            },
            ChainError::Refused { what, detail } => ChainError::Refused {
                what,
                detail: s(detail),
            },
            ChainError::Contract {
                contract,
                chain_id,
                detail,
            } => ChainError::Contract {
                contract,
                chain_id,
                detail: s(detail),
            },
            ChainError::OverLimit(d) => ChainError::OverLimit(s(d)),
            ChainError::Inconsistent(d) => ChainError::Inconsistent(s(d)),
            e @ ChainError::NotWriter { .. } => e,
        }
    }
}
