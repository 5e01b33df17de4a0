//! What the gossip pool spreads about each member: its identity, addresses and role.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::replication::raft::{NodeId, ServerNode};

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
    /// A server's WAN pool address (Consul's `wan_join_port` tag): where the other servers of its
    /// datacenter join it to the WAN pool. `None` on client agents and without a WAN pool.
    pub wan_addr: Option<SocketAddr>,
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
