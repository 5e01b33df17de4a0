//! The engine's error type.
//!
//! One enum for every API surface of the core. Each variant maps to exactly one HTTP status in
//! [`Error::http_status`]; the bindings map the same variants to their exception classes and
//! error codes in one place each. Variants say whether state changed: none of them do — a request
//! that fails has applied nothing.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Errors returned by the consul-rs engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed (bad parameter, JSON, key, conflicting flags). HTTP 400.
    #[error("{0}")]
    BadRequest(String),
    /// The addressed object does not exist. HTTP 404.
    #[error("{0}")]
    NotFound(String),
    /// A request body or value is over a configured limit. HTTP 413.
    #[error("{0}")]
    TooLarge(String),
    /// The agent is already doing the one thing of this kind it does at a time (429).
    #[error("{0}")]
    Busy(String),
    /// A transaction was rolled back; carries the per-operation errors. HTTP 409.
    #[error("transaction rolled back: {}", .0.iter().map(|e| e.what.clone()).collect::<Vec<_>>().join("; "))]
    TxnRolledBack(Vec<TxnError>),
    /// The request names a datacenter the WAN pool does not know, or whose servers are all
    /// failed. HTTP 500, Consul's wording.
    #[error("No path to datacenter: {0}")]
    NoPathToDatacenter(String),
    /// No leader is known (election in progress or quorum lost). HTTP 500, Consul's wording.
    #[error("No cluster leader")]
    NoLeader,
    /// A request could not reach another server. HTTP 500.
    #[error("rpc error making call: {0}")]
    Rpc(String),
    /// A write may or may not have been applied: every attempt to learn its fate failed before
    /// the hold timeout (the leader died or was cut off with it in flight). HTTP 500; retrying
    /// it is the client's call.
    #[error("write outcome unknown (it may or may not have been applied): {0}")]
    OutcomeUnknown(String),
    /// The agent is shutting down. HTTP 503.
    #[error("agent is shutting down")]
    ShuttingDown,
    /// Invalid configuration; the message names the key. Only at start-up.
    #[error("config: {0}")]
    Config(String),
    /// A listener could not bind (port in use, address not available).
    #[error("failed to bind {what} listener on {addr}: {source}")]
    Bind {
        /// Which listener (`HTTP`, `server RPC`, `serf_lan`).
        what: &'static str,
        /// The address we tried.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Durable storage failed. HTTP 500.
    #[error("storage error: {0}")]
    Storage(String),
    /// The state machine refused a write (deterministically, on every server) and nothing
    /// changed. HTTP 400 or 500 by kind, as Consul answers each.
    #[error("{0}")]
    Apply(ApplyError),
    /// The Raft engine failed in a way that is not the caller's fault. HTTP 500.
    #[error("raft error: {0}")]
    Raft(String),
    /// The request's token does not exist (or expired). HTTP 403, Consul's "ACL not found".
    #[error("ACL not found")]
    AclNotFound,
    /// The request's token does not exist and the ACL system has not been bootstrapped yet, so
    /// none can (Consul's wording, which its tools look for). HTTP 403.
    #[error("ACL system must be bootstrapped before making any requests that require authorization: ACL not found")]
    AclNotBootstrapped,
    /// The token lacks a permission; the message names the accessor, the permission and the
    /// resource (`Permission denied: token with AccessorID '…' lacks permission 'key:write' on
    /// "foo"`). HTTP 403.
    #[error("Permission denied: {0}")]
    PermissionDenied(String),
    /// An ACL endpoint was called on an agent without ACLs. HTTP 401, Consul's wording.
    #[error("ACL support disabled")]
    AclDisabled,
    /// A service the agent calls on the request's behalf (a `kubernetes` auth method's API
    /// server) failed or could not be reached; the message names it. HTTP 500.
    #[error("{0}")]
    Upstream(String),
}

impl Error {
    /// The one place errors become HTTP status codes.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::BadRequest(_)
            | Error::Config(_)
            | Error::Apply(ApplyError::InvalidRegistration(_))
            | Error::Apply(ApplyError::AclInvalid(_))
            | Error::Apply(ApplyError::PreparedQueryInvalid(_)) => 400,
            Error::Apply(ApplyError::AclBootstrapNotAllowed { .. } | ApplyError::PermissionDenied(_)) => 403,
            Error::AclDisabled => 401,
            Error::AclNotFound | Error::AclNotBootstrapped | Error::PermissionDenied(_) => 403,
            Error::NotFound(_) => 404,
            Error::TxnRolledBack(_) => 409,
            Error::TooLarge(_) => 413,
            Error::Busy(_) => 429,
            Error::ShuttingDown => 503,
            Error::NoPathToDatacenter(_)
            | Error::NoLeader
            | Error::OutcomeUnknown(_)
            | Error::Rpc(_)
            | Error::Bind { .. }
            | Error::Storage(_)
            | Error::Apply(_)
            | Error::Raft(_)
            | Error::Upstream(_) => 500,
        }
    }

    /// Whether retrying the same request later may succeed (leader elections, transient RPC).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::NoLeader | Error::Rpc(_))
    }
}

/// Shorthand used throughout the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A per-operation error of a rolled-back transaction (`TxnError`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnError {
    /// Position of the failing operation in the request.
    pub op_index: usize,
    /// What went wrong.
    pub what: String,
}

/// Why the state machine refused a command. Part of the replicated state (remembered results),
/// so new variants go at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApplyError {
    /// A KV lock named a session that does not exist (Consul answers 500 "invalid session").
    #[error("invalid session {0:?}")]
    UnknownSession(String),
    /// The catalog refused a registration: no node name, no address, a bad check (400).
    #[error("{0}")]
    InvalidRegistration(String),
    /// A session could not be created: its node or a linked check is missing or critical, or
    /// the ID is taken (Consul answers 500).
    #[error("{0}")]
    SessionRefused(String),
    /// An ACL write was refused: a link to a missing policy or role, a name or ID in use, a
    /// protected built-in, an expiry in the past (400, Consul's message).
    #[error("{0}")]
    AclInvalid(String),
    /// `/v1/acl/bootstrap` after the cluster was bootstrapped (403); carries the reset index an
    /// operator writes to `<data_dir>/acl-bootstrap-reset` to allow one more.
    #[error("Permission denied: ACL bootstrap no longer allowed (reset index: {reset_index})")]
    AclBootstrapNotAllowed {
        /// The index of the last bootstrap.
        reset_index: u64,
    },
    /// One command of a client agent's batch that its token may not make (403); the others
    /// applied. Never produced by the state machine itself: the receiving server answers it.
    #[error("{0}")]
    PermissionDenied(String),
    /// A prepared query write was refused: a name in use, a bad template, a missing session
    /// (400, Consul's message). Appended last: earlier variants keep their encoding.
    #[error("{0}")]
    PreparedQueryInvalid(String),
}

impl From<ApplyError> for Error {
    fn from(e: ApplyError) -> Self {
        Error::Apply(e)
    }
}
