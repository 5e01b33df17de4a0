//! openraft's network, carried by our RPC layer ([`crate::rpc`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};

use super::leader_lease::LeaderLease;
use super::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, NodeId, ServerNode,
    TypeConfig, VoteRequest, VoteResponse,
};
use super::{RaftRequest, RaftResponse};
use crate::rpc::{RpcClient, RpcError, Service};

/// Makes a [`PeerClient`] per replication target.
#[derive(Debug, Clone)]
pub struct NetworkFactory {
    rpc: RpcClient,
    votes: Arc<VoteSignals>,
    lease: Arc<LeaderLease>,
}

impl NetworkFactory {
    /// A factory sending over `rpc`.
    pub fn new(rpc: RpcClient) -> Self {
        NetworkFactory { rpc, votes: Arc::default(), lease: Arc::default() }
    }

    /// The acknowledgements this node's AppendEntries received, by send time: whether it holds
    /// the leader lease (give it to [`crate::replication::Consensus`]).
    pub fn leader_lease(&self) -> Arc<LeaderLease> {
        self.lease.clone()
    }

    /// What this node's campaigns have learnt from vote answers (read by the split-vote breaker).
    pub(super) fn vote_signals(&self) -> Arc<VoteSignals> {
        self.votes.clone()
    }
}

/// What vote answers told a campaigning node, beyond what openraft's metrics show.
#[derive(Debug, Default)]
pub(super) struct VoteSignals {
    /// The highest term in which a peer refused our vote because its log is ahead of ours.
    /// openraft then waits an extra `smaller_log_timeout` before its next campaign so the node
    /// with the longer log can win; the breaker must not cut that wait short.
    greater_log_term: AtomicU64,
}

impl VoteSignals {
    /// Whether a peer with a longer log refused us in `term` or later.
    pub(super) fn saw_greater_log_since(&self, term: u64) -> bool {
        self.greater_log_term.load(Ordering::Acquire) >= term && term > 0
    }

    fn record_greater_log(&self, term: u64) {
        self.greater_log_term.fetch_max(term, Ordering::AcqRel);
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &ServerNode) -> PeerClient {
        PeerClient {
            rpc: self.rpc.clone(),
            target,
            node: node.clone(),
            addr: node.rpc_addr.parse().ok(),
            votes: self.votes.clone(),
            lease: self.lease.clone(),
        }
    }
}

/// Sends Raft RPCs to one peer.
#[derive(Debug)]
pub struct PeerClient {
    rpc: RpcClient,
    target: NodeId,
    node: ServerNode,
    addr: Option<SocketAddr>,
    votes: Arc<VoteSignals>,
    lease: Arc<LeaderLease>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl PeerClient {
    async fn call<E: std::error::Error>(
        &self,
        req: RaftRequest,
        option: &RPCOption,
    ) -> Result<RaftResponse, RPCError<NodeId, ServerNode, RaftError<NodeId, E>>> {
        let Some(addr) = self.addr else {
            let e = Msg(format!("bad RPC address {:?} for {}", self.node.rpc_addr, self.node.name));
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        };
        match self.rpc.call(addr, Service::Raft, &req, option.hard_ttl()).await {
            Ok(RaftResponse::Error(msg)) => Err(RPCError::Network(NetworkError::new(&Msg(msg)))),
            Ok(resp) => Ok(resp),
            Err(e @ (RpcError::NotDelivered { .. } | RpcError::ConnectionLost(_) | RpcError::Refused { .. })) => {
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    fn unexpected<E: std::error::Error>(&self) -> RPCError<NodeId, ServerNode, RaftError<NodeId, E>> {
        RPCError::RemoteError(RemoteError::new_with_node(
            self.target,
            self.node.clone(),
            RaftError::Fatal(openraft::error::Fatal::Panicked),
        ))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RPCError<NodeId, ServerNode, RaftError<NodeId>>> {
        let (vote, sent) = (rpc.vote, tokio::time::Instant::now());
        match self.call(RaftRequest::AppendEntries(rpc), &option).await? {
            RaftResponse::AppendEntries(r) => {
                // Every answer but `HigherVote` comes after the peer accepted `vote` as its
                // leader's (a log conflict is found only after that).
                if !matches!(r, AppendEntriesResponse::HigherVote(_)) {
                    self.lease.record(self.target, vote, sent);
                }
                Ok(r)
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse, RPCError<NodeId, ServerNode, RaftError<NodeId, InstallSnapshotError>>> {
        match self.call(RaftRequest::InstallSnapshot(rpc), &option).await? {
            RaftResponse::InstallSnapshot(r) => Ok(r),
            _ => Err(self.unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RPCError<NodeId, ServerNode, RaftError<NodeId>>> {
        let (term, our_last) = (rpc.vote.leader_id.term, rpc.last_log_id);
        match self.call(RaftRequest::Vote(rpc), &option).await? {
            RaftResponse::Vote(r) => {
                if !r.vote_granted && r.last_log_id > our_last {
                    self.votes.record_greater_log(term);
                }
                Ok(r)
            }
            _ => Err(self.unexpected()),
        }
    }
}
