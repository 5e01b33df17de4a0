//! Messages exchanged between agents. Changing them changes the wire protocol: add variants at
//! the end.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::replication::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, NodeId, ServerNode,
    VoteRequest, VoteResponse,
};
use crate::state::command::{Command, CommandResponse};

/// A member's identity and tags, as the gossip pool spreads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Node UUID.
    pub node_id: Uuid,
    /// Node name.
    pub name: String,
    /// Datacenter.
    pub datacenter: String,
    /// Server RPC address.
    pub rpc_addr: SocketAddr,
    /// serf_lan address (joins).
    pub serf_addr: SocketAddr,
    /// HTTP API address.
    pub http_addr: SocketAddr,
    /// Whether it is a server.
    pub server: bool,
    /// Its `bootstrap_expect` setting.
    pub bootstrap_expect: u32,
    /// Whether its Raft state is initialised (it belongs to a formed cluster).
    pub raft_initialized: bool,
    /// Start time in ms since the epoch: a restarted agent has a larger incarnation, which is how
    /// a server removed from Raft is recognised when it comes back.
    pub incarnation: u64,
}

impl MemberInfo {
    /// The Raft node id of this member.
    pub fn raft_id(&self) -> NodeId {
        crate::replication::raft::raft_id(&self.node_id)
    }

    /// Its Raft membership record.
    pub fn server_node(&self) -> ServerNode {
        ServerNode { node_id: self.node_id.to_string(), name: self.name.clone(), rpc_addr: self.rpc_addr.to_string() }
    }
}

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
    /// A write whose outcome the leader cannot tell (maps to HTTP 500, and is never retried).
    OutcomeUnknown(String),
}

impl WireError {
    /// The wire form of an error answered to a forwarded request.
    pub fn from_error(e: crate::Error) -> WireError {
        match e {
            crate::Error::BadRequest(m) => WireError::BadRequest(m),
            crate::Error::OutcomeUnknown(m) => WireError::OutcomeUnknown(m),
            e => WireError::Other(e.to_string()),
        }
    }
}

/// A request on either port.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Raft AppendEntries.
    AppendEntries(AppendEntriesRequest),
    /// Raft RequestVote.
    Vote(VoteRequest),
    /// Raft InstallSnapshot chunk.
    InstallSnapshot(InstallSnapshotRequest),
    /// A request forwarded to the leader.
    Forward(ForwardRequest),
    /// serf_lan: a gossip push/pull or join: the sender's sealed state.
    GossipSync(Vec<u8>),
    /// server port: a client agent's HTTP request, served by the server's own API.
    Http(HttpRequest),
    /// serf_lan: a keyring operation (sealed [`crate::membership::gossip::driver::KeyringOp`]).
    KeyringOp(Vec<u8>),
    /// server port: a DNS query a client agent received, resolved by the server.
    Dns {
        /// The query as received.
        packet: Vec<u8>,
        /// Whether it came over UDP (answer size limits).
        udp: bool,
    },
}

/// An HTTP request a client agent forwards to a server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpRequest {
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers worth forwarding (token, content type).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// A server's answer to a forwarded HTTP request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// A response on either port.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// Raft AppendEntries.
    AppendEntries(AppendEntriesResponse),
    /// Raft RequestVote.
    Vote(VoteResponse),
    /// Raft InstallSnapshot.
    InstallSnapshot(InstallSnapshotResponse),
    /// Answer to a forwarded request.
    Forward(ForwardResponse),
    /// The request failed.
    Error(WireError),
    /// The receiver's sealed gossip state.
    GossipSync(Vec<u8>),
    /// Answer to [`Request::Http`].
    Http(HttpResponse),
    /// Answer to [`Request::KeyringOp`] (sealed [`crate::membership::gossip::driver::KeyringReply`]).
    KeyringOp(Vec<u8>),
    /// Answer to [`Request::Dns`] (`None`: drop the query).
    Dns(Option<Vec<u8>>),
}
