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
    /// The data directory contradicts itself: `subject` is the file, batch, epoch or event
    /// concerned, `detail` what contradicts what.
    #[error("data directory inconsistent: {subject}: {detail}")]
    Corrupt {
        /// The file, batch, epoch or event concerned.
        subject: String,
        /// What contradicts what.
        detail: String,
    },
    /// A hash recomputed from stored data differs from the one committed: the data
    /// directory was altered or damaged. Both digests are kept for the auditor.
    #[error(
        "data directory inconsistent: {subject}: {what} mismatch: committed {expected}, computed {computed}"
    )]
    Mismatch {
        /// Which hash (`leaf hash`, `batch root`, `epoch root`, `anchored root`).
        what: &'static str,
        /// The event, batch or epoch it belongs to.
        subject: String,
        /// The committed digest.
        expected: veritrace_verify::Digest,
        /// The digest recomputed from what is stored.
        computed: veritrace_verify::Digest,
    },
    /// Reading the data directory failed.
    #[error(transparent)]
    Anchor(#[from] veritrace_anchor::Error),
    /// Encoding output failed.
    #[error("output: {0}")]
    Output(String),
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The statement is larger or deeper than the server accepts ([`crate::limits`]).
    #[error("statement too complex: {0}")]
    TooComplex(String),
    /// The query passed its deadline and was stopped.
    #[error("the query did not finish within {0:?} and was stopped")]
    Timeout(std::time::Duration),
    /// Every query slot stayed taken while the query waited.
    #[error(
        "the server is busy: {running} queries are running and none finished within {waited:?}; \
         retry later"
    )]
    Busy {
        /// Slots (all taken).
        running: usize,
        /// How long the query waited.
        waited: std::time::Duration,
    },
    /// Files the query needs are missing or differ from what was committed; nothing was
    /// answered from them (`veritrace check --data DIR` reports all damage).
    #[error("data damaged: {}", .0.join("; "))]
    Damaged(Vec<String>),
    /// A bug or an environment failure inside the server (evidence in the message).
    #[error("internal error: {0}")]
    Internal(String),
    /// The caller's own limit of queries at once stayed reached while the query waited.
    #[error(
        "{who} already runs {running} queries at once (its limit) and none finished within {waited:?}; retry later"
    )]
    TooManyQueries {
        /// Whose limit (`role:participant:p-1`, `token:ab12...`).
        who: String,
        /// Its limit.
        running: usize,
        /// How long the query waited.
        waited: std::time::Duration,
    },
    /// The caller did not prove who it is (`code`: `missing_credentials`, `invalid_token`,
    /// `token_expired`, `token_revoked`, `alg_not_allowed`, `unknown_key`, `bad_signature`,
    /// `wrong_issuer`, `wrong_audience`, `token_not_yet_valid`, `no_role`).
    #[error("not authenticated: {detail}")]
    Unauthenticated {
        /// The reason code.
        code: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The caller's role may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// This server cannot do what was asked (a key it does not hold).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    /// A stable machine-readable code for API responses.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Sql(e) if is_memory_exceeded(e) => "query_memory_exceeded",
            Error::Sql(e) if is_timeout(e) => "query_timeout",
            Error::Sql(e) if is_damaged(e) => "data_damaged",
            Error::Sql(_) => "sql_error",
            Error::NotFound { .. } => "not_found",
            Error::Corrupt { .. } | Error::Mismatch { .. } => "data_inconsistent",
            Error::Anchor(_) => "storage_error",
            Error::Output(_) => "output_error",
            Error::BadRequest(_) => "bad_request",
            Error::TooComplex(_) => "statement_too_complex",
            Error::Timeout(_) => "query_timeout",
            Error::Busy { .. } => "server_busy",
            Error::Internal(_) => "internal_error",
            Error::Damaged(_) => "data_damaged",
            Error::Unauthenticated { code, .. } => code,
            Error::Forbidden(_) => "forbidden",
            Error::TooManyQueries { .. } => "too_many_queries",
            Error::Unavailable(_) => "unavailable",
        }
    }

    /// The message for API responses: our own error when DataFusion carried it (a timeout
    /// or damage found while streaming), without DataFusion's wrapping.
    pub fn message(&self) -> String {
        if let Error::Sql(e) = self
            && let datafusion::error::DataFusionError::External(x) = e.find_root()
            && let Some(inner) = x.downcast_ref::<Error>()
        {
            return inner.to_string();
        }
        self.to_string()
    }

    /// The evidence of a damaged or inconsistent data directory, for API responses
    /// (`{"subject", "what", "expected", "computed"}` or `{"files"}`), if this is such an
    /// error.
    pub fn evidence(&self) -> Option<serde_json::Value> {
        match self {
            Error::Corrupt { subject, .. } => Some(serde_json::json!({ "subject": subject })),
            Error::Mismatch {
                what,
                subject,
                expected,
                computed,
            } => Some(serde_json::json!({
                "subject": subject,
                "what": what,
                "expected": expected.to_string(),
                "computed": computed.to_string(),
            })),
            Error::Damaged(files) => Some(serde_json::json!({ "files": files })),
            Error::Sql(e) => match e.find_root() {
                datafusion::error::DataFusionError::External(x) => {
                    x.downcast_ref::<Error>().and_then(Error::evidence)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// [`Error::Corrupt`] about `subject`.
    pub(crate) fn corrupt(subject: impl std::fmt::Display, detail: impl std::fmt::Display) -> Self {
        Error::Corrupt {
            subject: subject.to_string(),
            detail: detail.to_string(),
        }
    }

    /// The reason a query was refused or stopped by a limit (a metrics label), if it was.
    pub fn refusal_reason(&self) -> Option<&'static str> {
        match self.code() {
            c @ ("query_memory_exceeded"
            | "query_timeout"
            | "statement_too_complex"
            | "server_busy"
            | "too_many_queries") => Some(c),
            _ => None,
        }
    }
}

/// The memory pool refused a reservation (somewhere in the error's chain).
fn is_memory_exceeded(e: &datafusion::error::DataFusionError) -> bool {
    matches!(
        e.find_root(),
        datafusion::error::DataFusionError::ResourcesExhausted(_)
    )
}

/// A scan met a damaged or missing file.
fn is_damaged(e: &datafusion::error::DataFusionError) -> bool {
    match e.find_root() {
        datafusion::error::DataFusionError::External(x) => {
            matches!(x.downcast_ref::<Error>(), Some(Error::Damaged(_)))
        }
        _ => false,
    }
}

/// A streamed query passed its deadline (the error item [`crate::QueryEngine::sql_stream`]
/// sends).
fn is_timeout(e: &datafusion::error::DataFusionError) -> bool {
    match e.find_root() {
        datafusion::error::DataFusionError::External(x) => {
            matches!(x.downcast_ref::<Error>(), Some(Error::Timeout(_)))
        }
        _ => false,
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Error::Output(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use veritrace_verify::Digest;

    use super::*;

    fn mismatch() -> Error {
        Error::Mismatch {
            what: "batch root",
            subject: "batch b-1".into(),
            expected: Digest([1; 32]),
            computed: Digest([2; 32]),
        }
    }

    #[test]
    fn a_mismatch_keeps_both_digests_up_to_the_user() {
        let e = mismatch();
        assert_eq!(e.code(), "data_inconsistent");
        let text = e.to_string();
        assert!(text.contains(&Digest([1; 32]).to_string()), "{text}");
        assert!(text.contains(&Digest([2; 32]).to_string()), "{text}");
        let v = e.evidence().expect("evidence");
        assert_eq!(v["subject"], "batch b-1");
        assert_eq!(v["what"], "batch root");
        assert_eq!(v["expected"], Digest([1; 32]).to_string());
        assert_eq!(v["computed"], Digest([2; 32]).to_string());
        // Carried through DataFusion (found while streaming), the evidence survives.
        let wrapped = Error::Sql(datafusion::error::DataFusionError::External(Box::new(
            mismatch(),
        )));
        assert_eq!(wrapped.evidence(), Some(v));
        assert_eq!(
            Error::corrupt("epoch 3", "it names unknown batch x").evidence(),
            Some(serde_json::json!({"subject": "epoch 3"}))
        );
        assert_eq!(Error::BadRequest("x".into()).evidence(), None);
    }
}
