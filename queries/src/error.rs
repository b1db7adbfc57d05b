/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Query-stage errors. `Sql` and `NotFound` are the caller's; `Corrupt` means the data
/// directory contradicts itself (tampering or damage, evidence included); `Io`/`Anchor` are
/// the environment's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The SQL failed to plan or run (syntax, unknown column, forbidden statement, ...).
    #[error(transparent)]
    Sql(#[from] datafusion::error::DataFusionError),
    /// No such event (or other object).
    #[error("{what} {id:?} not found")]
    NotFound {
        /// Kind of object.
        what: &'static str,
        /// Requested id.
        id: String,
    },
    /// The data directory contradicts itself.
    #[error("data directory inconsistent: {0}")]
    Corrupt(String),
    /// Reading the data directory failed.
    #[error(transparent)]
    Anchor(#[from] veritrace_anchor::Error),
    /// Encoding output failed.
    #[error("output: {0}")]
    Output(String),
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl Error {
    /// A stable machine-readable code for API responses.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Sql(_) => "sql_error",
            Error::NotFound { .. } => "not_found",
            Error::Corrupt(_) => "data_inconsistent",
            Error::Anchor(_) => "storage_error",
            Error::Output(_) => "output_error",
            Error::BadRequest(_) => "bad_request",
        }
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Error::Output(e.to_string())
    }
}
