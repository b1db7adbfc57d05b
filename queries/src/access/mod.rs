//! Who may see what: identities, roles and the rows each role reads.
//!
//! A request is authenticated once, at the edge (an API token from [`tokens`] or an
//! OIDC/JWT bearer token from [`oidc`], see [`Authenticator`]), and becomes an [`Identity`]:
//! a role and, for the `participant` role, the participant it speaks for. What the identity
//! may read is a [`Scope`], enforced where the data is read: [`crate::QueryEngine::scoped`]
//! gives the request an engine whose every table scan carries the scope's filter, so SQL,
//! traces, proofs and Flight SQL obey the same rule.
//!
//! | role | may |
//! |---|---|
//! | `admin` | everything, the audit log included |
//! | `operator` | health and metrics, no row data |
//! | `analyst` | every row but the audit log (SQL, traces, events, proofs) |
//! | `auditor` | every row and the audit log (`audit` table), proofs and verification |
//! | `participant` | events in which its participant takes part (as the recording participant or the counterparty), plus events about trace codes another participant shared with it |
//! | `public` | health only |

pub mod auth;
pub mod oidc;
pub mod tokens;

pub use auth::{AuthConfig, Authenticator};

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// A role: what kind of caller this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Everything.
    Admin,
    /// Health, metrics and operations; no row data.
    Operator,
    /// Every row of the deployment.
    Analyst,
    /// Proofs and verification for anything.
    Auditor,
    /// Only the events its participant takes part in, plus what others share with it.
    Participant,
    /// Health only.
    Public,
}

/// Every role, in the order of the table above.
pub const ROLES: [Role; 6] = [
    Role::Admin,
    Role::Operator,
    Role::Analyst,
    Role::Auditor,
    Role::Participant,
    Role::Public,
];

impl Role {
    /// Its name in tokens, claims and the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
            Role::Participant => "participant",
            Role::Public => "public",
        }
    }

    /// Whether this role may do `what`.
    pub fn may(self, what: Capability) -> bool {
        use Capability::*;
        match self {
            Role::Admin => true,
            Role::Operator => matches!(what, Health | Metrics),
            Role::Analyst | Role::Auditor | Role::Participant => {
                matches!(what, Health | Rows | Proofs)
            }
            Role::Public => matches!(what, Health),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ROLES
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown role {s:?}; roles are {}",
                    ROLES.map(Role::as_str).join(", ")
                )
            })
    }
}

/// What a request asks to do, checked against its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// `GET /healthz`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// Row data: SQL, events, traces, Flight SQL.
    Rows,
    /// Proof bundles.
    Proofs,
}

impl Capability {
    /// A short name for messages and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Health => "health",
            Capability::Metrics => "metrics",
            Capability::Rows => "row data",
            Capability::Proofs => "proofs",
        }
    }
}

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// An API token (`veritrace tokens create`).
    Token,
    /// An OIDC/JWT bearer token from the configured identity provider.
    Jwt,
    /// No credentials: the configured anonymous role.
    Anonymous,
}

impl Method {
    /// Its name in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Token => "token",
            Method::Jwt => "jwt",
            Method::Anonymous => "anonymous",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Who: the token id, the JWT subject, or `anonymous`.
    pub subject: String,
    /// Its role.
    pub role: Role,
    /// The participant it speaks for (the `participant` role always has one).
    pub participant: Option<String>,
    /// How it authenticated.
    pub method: Method,
    /// Its own limits (a token's), over its role's.
    pub limits: Limits,
}

impl Identity {
    /// The anonymous caller with `role` (loopback development, or a configured public role).
    pub fn anonymous(role: Role) -> Self {
        Identity {
            subject: "anonymous".into(),
            role,
            participant: None,
            method: Method::Anonymous,
            limits: Limits::default(),
        }
    }

    /// The rows this identity reads.
    pub fn scope(&self) -> Scope {
        match (self.role, &self.participant) {
            (Role::Admin | Role::Auditor, _) => Scope::All,
            (Role::Analyst, _) => Scope::Data,
            (Role::Participant, Some(p)) => Scope::Participant(p.clone()),
            _ => Scope::Nothing,
        }
    }

    /// `Ok` when the role may do `what`, else the `forbidden` error naming both.
    pub fn require(&self, what: Capability) -> Result<(), crate::Error> {
        if self.role.may(what) {
            return Ok(());
        }
        Err(crate::Error::Forbidden(format!(
            "the {} role may not read {} ({} {})",
            self.role,
            what.as_str(),
            self.method.as_str(),
            self.subject
        )))
    }
}

/// The rows an identity reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every row, the audit log included.
    All,
    /// Every row but the audit log.
    Data,
    /// Events in which this participant takes part, plus what others share with it.
    Participant(String),
    /// No rows at all.
    Nothing,
}

impl Scope {
    /// How a certificate names it: `all`, `data` (all but the audit log),
    /// `participant:{id}`, `nothing`.
    pub fn label(&self) -> String {
        match self {
            Scope::All => "all".into(),
            Scope::Data => "data".into(),
            Scope::Participant(p) => format!("participant:{p}"),
            Scope::Nothing => "nothing".into(),
        }
    }
}

/// What the queries of one role or token may cost, within the server's own limits
/// (`[query]`): how many run at once, and how long each may run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Queries of this identity running at once; more wait (then `too_many_queries`).
    pub max_concurrent: Option<usize>,
    /// Deadline of one query, if shorter than the server's.
    pub timeout: Option<Duration>,
    /// Memory this identity's running queries may hold together, in bytes (a pool of its
    /// own: sorts and aggregates spill within it, other queries fail with
    /// `query_memory_exceeded`).
    pub memory_limit: Option<usize>,
}

impl Limits {
    /// These limits, each falling back to `other`'s.
    pub fn or(self, other: Limits) -> Limits {
        Limits {
            max_concurrent: self.max_concurrent.or(other.max_concurrent),
            timeout: self.timeout.or(other.timeout),
            memory_limit: self.memory_limit.or(other.memory_limit),
        }
    }

    /// Whether nothing is limited.
    pub fn is_none(&self) -> bool {
        self.max_concurrent.is_none() && self.timeout.is_none() && self.memory_limit.is_none()
    }
}

/// The running state of one identity's limits, shared by its requests.
#[derive(Debug)]
pub struct Quota {
    /// Whose (`role:participant`, `token:ab12...`).
    pub name: String,
    /// Its limits.
    pub limits: Limits,
    /// Its query slots.
    pub slots: Option<Arc<tokio::sync::Semaphore>>,
    /// Its queries' runtime, with its own memory pool, when memory is limited.
    pub runtime: Option<Arc<datafusion::execution::runtime_env::RuntimeEnv>>,
}

impl Quota {
    /// A quota named `name` with `limits`.
    pub fn new(name: String, limits: Limits) -> Self {
        use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
        let runtime = limits.memory_limit.and_then(|bytes| {
            let pool = TrackConsumersPool::new(
                FairSpillPool::new(bytes.max(1 << 20)),
                std::num::NonZeroUsize::MIN.saturating_add(2),
            );
            datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
                .with_memory_pool(Arc::new(pool))
                .build_arc()
                .inspect_err(
                    |e| tracing::error!(error = %e, "no runtime for {name}'s memory limit"),
                )
                .ok()
        });
        Quota {
            slots: limits
                .max_concurrent
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n.max(1)))),
            runtime,
            name,
            limits,
        }
    }
}
