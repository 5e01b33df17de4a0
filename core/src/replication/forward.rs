//! Requests a server sends the leader, and client agents send servers (the `Forward` RPC
//! service), with their answers and errors. Changing them changes the wire protocol: add
//! variants at the end.

use serde::{Deserialize, Serialize};

use crate::replication::raft::{NodeId, ServerNode};
use crate::state::command::{Command, CommandResponse};

/// A request forwarded from a server that is not the leader to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardRequest {
    /// Propose a command.
    Write(Command),
    /// Return an index that covers every write acknowledged so far: under a valid lease the
    /// leader's applied index, otherwise (or when `consistent`) after a quorum round.
    ReadIndex {
        /// Require a quorum round even under a valid lease.
        consistent: bool,
    },
    /// Remove a server from the Raft configuration.
    RemovePeer(NodeId),
    /// Renew a session: a consistent read of it plus a reset of the leader's TTL timer.
    SessionRenew(String),
    /// A client agent's anti-entropy: what the catalog holds for this node (any server answers,
    /// after a default-consistency read barrier).
    ReadNode(String),
    /// A client agent with ACLs resolving a token: the ACL objects it needs (see
    /// [`crate::state::acl::AclTables::for_secret`]); any server answers from its replica.
    ResolveToken(String),
    /// A client agent's own write (anti-entropy, coordinates) under its agent token: the
    /// receiving server checks the token may make it, then handles it as [`Self::Write`].
    AgentWrite {
        /// The agent's token (`None`: anonymous).
        token: Option<String>,
        /// The write, tracked.
        command: Command,
    },
    /// Move leadership to the voter with this node ID, or to any up-to-date voter (`None`).
    TransferLeader(Option<String>),
    /// From the leader handing its leadership over: campaign now, and again until elected or
    /// `for_ms` milliseconds have passed (sent straight to the target, never forwarded).
    Campaign {
        /// How long to keep trying.
        for_ms: u64,
    },
    /// The autopilot's latest view of server health (the leader answers).
    AutopilotHealth,
    /// [`Self::ReadNode`] answered with the services' extras too ([`ForwardResponse::NodeExt`]),
    /// which `NodeState`'s encoding cannot hold (see [`crate::state::ext_fields`]).
    ReadNodeExt(String),
}

/// The leader's answer to a [`ForwardRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardResponse {
    /// The command was applied at this index with this result.
    Written(u64, CommandResponse),
    /// The read index.
    ReadIndex(u64),
    /// Done.
    Done,
    /// The renewed session, or `None` if it does not exist.
    Session(Option<Box<crate::state::Session>>),
    /// Answer to [`ForwardRequest::ReadNode`].
    Node(Box<crate::state::catalog::NodeState>),
    /// Answer to [`ForwardRequest::ResolveToken`] (`None`: no such token).
    Acl(Option<Box<crate::state::acl::AclTables>>),
    /// Answer to [`ForwardRequest::AutopilotHealth`].
    AutopilotHealth(Box<crate::replication::autopilot::ClusterHealth>),
    /// Answer to [`ForwardRequest::ReadNodeExt`]: the node's state and the extras of the node
    /// and its services.
    NodeExt(
        Box<crate::state::catalog::NodeState>,
        crate::state::ext_fields::JsonText<crate::state::ext_fields::NodeStateExt>,
    ),
}

/// An error carried over the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WireError {
    /// The receiver is not the leader; the leader it knows of, if any.
    NotLeader(Option<(NodeId, ServerNode)>),
    /// The request itself is wrong (maps back to HTTP 400).
    BadRequest(String),
    /// Anything else (maps to HTTP 500).
    Other(String),
    /// A request whose outcome the leader cannot tell. The forwarding server retries it with
    /// the same request id until its hold timeout, then answers HTTP 500 "outcome unknown".
    OutcomeUnknown(String),
    /// The token is unknown (HTTP 403 "ACL not found").
    AclNotFound,
    /// The token lacks a permission (HTTP 403); the message names it.
    PermissionDenied(String),
}

impl WireError {
    /// The error a forwarded request's caller answers with.
    pub fn into_error(self) -> crate::Error {
        match self {
            WireError::NotLeader(_) => crate::Error::NoLeader,
            WireError::BadRequest(m) => crate::Error::BadRequest(m),
            WireError::Other(m) => crate::Error::Rpc(m),
            WireError::OutcomeUnknown(m) => crate::Error::OutcomeUnknown(m),
            WireError::AclNotFound => crate::Error::AclNotFound,
            WireError::PermissionDenied(m) => crate::Error::PermissionDenied(m),
        }
    }

    /// The wire form of an error answered to a forwarded request.
    pub fn from_error(e: crate::Error) -> WireError {
        match e {
            crate::Error::BadRequest(m) => WireError::BadRequest(m),
            crate::Error::OutcomeUnknown(m) => WireError::OutcomeUnknown(m),
            crate::Error::AclNotFound => WireError::AclNotFound,
            crate::Error::PermissionDenied(m) => WireError::PermissionDenied(m),
            e => WireError::Other(e.to_string()),
        }
    }
}
