//! Consensus: openraft, its storage and its network.
//!
//! Every openraft type the rest of the crate touches is named here (as an alias or a wrapper),
//! so a bump of the exactly-pinned openraft version changes this module only.

mod election_hold;
pub mod leader_lease;
pub mod log_store;
pub mod network;
mod split_vote;
pub mod state_machine;
mod tuning;

pub use tuning::RaftTuning;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::state::command::{Command, CommandResponse};

openraft::declare_raft_types!(
    /// The type configuration of our Raft group.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = ServerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// Raft node id: derived from the agent's node UUID with [`raft_id`].
pub type NodeId = u64;
/// Raft metrics.
pub type Metrics = openraft::RaftMetrics<NodeId, ServerNode>;
/// AppendEntries request.
pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
/// AppendEntries response.
pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<NodeId>;
/// Vote request.
pub type VoteRequest = openraft::raft::VoteRequest<NodeId>;
/// Vote response.
pub type VoteResponse = openraft::raft::VoteResponse<NodeId>;
/// InstallSnapshot request (one chunk).
pub type InstallSnapshotRequest = openraft::raft::InstallSnapshotRequest<TypeConfig>;
/// InstallSnapshot response.
pub type InstallSnapshotResponse = openraft::raft::InstallSnapshotResponse<NodeId>;
/// A Raft message between servers (the [`crate::rpc::Service::Raft`] service).
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    /// AppendEntries (and heartbeats).
    AppendEntries(AppendEntriesRequest),
    /// RequestVote.
    Vote(VoteRequest),
    /// One InstallSnapshot chunk.
    InstallSnapshot(InstallSnapshotRequest),
}

/// The answer to a [`RaftRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftResponse {
    /// To AppendEntries.
    AppendEntries(AppendEntriesResponse),
    /// To RequestVote.
    Vote(VoteResponse),
    /// To InstallSnapshot.
    InstallSnapshot(InstallSnapshotResponse),
    /// The receiving Raft node failed to handle it (e.g. it is shutting down).
    Error(String),
}

/// Server state (leader, follower, …).
pub type ServerState = openraft::ServerState;

/// What the Raft membership records about each server: enough to reach it and to show it in
/// `/v1/operator/raft/configuration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerNode {
    /// The agent's node UUID.
    pub node_id: String,
    /// The agent's node name.
    pub name: String,
    /// Server RPC address (`ip:port`), where Raft traffic and forwarded requests go.
    pub rpc_addr: String,
}

impl fmt::Display for ServerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.rpc_addr)
    }
}

/// Derives the Raft node id from a node UUID (its first 8 bytes). Collisions would need two
/// random UUIDs sharing 64 bits.
pub fn raft_id(node_id: &Uuid) -> NodeId {
    let b = node_id.as_bytes();
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Builds openraft's configuration from Consul-style tuning.
pub fn raft_config(tuning: &RaftTuning) -> Result<Arc<openraft::Config>, crate::Error> {
    let config = openraft::Config {
        cluster_name: "consul-rs".into(),
        heartbeat_interval: tuning.heartbeat().as_millis() as u64,
        election_timeout_min: tuning.election_timeout_min().as_millis() as u64,
        election_timeout_max: tuning.election_timeout_max().as_millis() as u64,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(tuning.snapshot_threshold),
        max_in_snapshot_log_to_keep: tuning.trailing_logs,
        // Big enough for a 512 KiB value plus framing in one chunk.
        snapshot_max_chunk_size: 4 * 1024 * 1024,
        max_payload_entries: 1024,
        install_snapshot_timeout: 10_000,
        ..Default::default()
    };
    config.validate().map(Arc::new).map_err(|e| crate::Error::Config(format!("raft: {e}")))
}

/// A snapshot of the Raft configuration for the operator API.
#[derive(Debug, Clone)]
pub struct RaftConfiguration {
    /// Servers in the configuration with whether each votes.
    pub servers: Vec<(NodeId, ServerNode, bool)>,
    /// The current leader.
    pub leader: Option<NodeId>,
    /// Index of the log entry that holds this configuration.
    pub index: u64,
}

/// Reads the membership out of metrics.
pub fn configuration(metrics: &Metrics) -> RaftConfiguration {
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let servers = membership.nodes().map(|(id, node)| (*id, node.clone(), voters.contains(id))).collect();
    RaftConfiguration {
        servers,
        leader: metrics.current_leader,
        index: metrics.membership_config.log_id().map(|l| l.index).unwrap_or(0),
    }
}

/// The nodes of the current membership, voters and learners.
pub fn membership_nodes(metrics: &Metrics) -> BTreeMap<NodeId, ServerNode> {
    metrics.membership_config.membership().nodes().map(|(id, n)| (*id, n.clone())).collect()
}

/// Whether `id` votes in the current membership.
pub fn is_voter(metrics: &Metrics, id: NodeId) -> bool {
    metrics.membership_config.membership().voter_ids().any(|v| v == id)
}

/// Maps an openraft error into ours, keeping the leader hint for forwarding.
#[derive(Debug)]
pub enum WriteError {
    /// This server is not the leader; the leader is given when known.
    ForwardTo(Option<(NodeId, ServerNode)>),
    /// Anything else.
    Other(crate::Error),
}

/// Proposes `cmd` on this server (which must be the leader) and waits for it to be applied.
pub async fn client_write(raft: &Raft, cmd: Command) -> Result<(u64, CommandResponse), WriteError> {
    use openraft::error::{ClientWriteError, RaftError};
    match raft.client_write(cmd).await {
        Ok(resp) => Ok((resp.log_id.index, resp.data)),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(WriteError::ForwardTo(f.leader_id.zip(f.leader_node)))
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(WriteError::Other(crate::Error::Raft(e.to_string())))
        }
        Err(RaftError::Fatal(e)) => Err(WriteError::Other(crate::Error::Raft(e.to_string()))),
    }
}

/// Confirms leadership with a quorum (ReadIndex) and waits until the state machine has applied
/// everything committed before the call. Returns the read index.
pub async fn linearizable_barrier(raft: &Raft) -> Result<u64, WriteError> {
    use openraft::error::{CheckIsLeaderError, RaftError};
    match raft.ensure_linearizable().await {
        Ok(log_id) => Ok(log_id.map(|l| l.index).unwrap_or(0)),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
            Err(WriteError::ForwardTo(f.leader_id.zip(f.leader_node)))
        }
        Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
            Err(WriteError::Other(crate::Error::Rpc(format!("leadership check failed: {e}"))))
        }
        Err(RaftError::Fatal(e)) => Err(WriteError::Other(crate::Error::Raft(e.to_string()))),
    }
}

/// What a leader read must reflect, as the Raft core sees it at one instant (a local round
/// trip, no network): present only while this server is the leader of its term.
#[derive(Debug, Clone)]
pub struct LeaderReadPoint {
    /// The leader's vote (its term), to check the lease against.
    pub vote: leader_lease::Vote,
    /// The commit index: it covers every write the cluster acknowledged, which this leader's
    /// own state machine may not have applied yet (followers can apply an entry first).
    pub committed: u64,
    /// The voter sets whose majorities the lease needs (two during a membership change).
    pub configs: Vec<BTreeSet<NodeId>>,
}

/// This server's [`LeaderReadPoint`] if it leads and has committed an entry of its own term —
/// hence everything committed before it was elected (Raft §8) — else `None`. Metrics lag the
/// core, so a leader that just granted its vote to a candidate may still look like one there;
/// this check does not.
pub async fn leader_read_point(raft: &Raft) -> Option<LeaderReadPoint> {
    raft.with_raft_state(|st| {
        let vote = *st.vote_ref();
        let committed = st.committed?;
        let own_term = committed.leader_id.term == vote.leader_id.term;
        (st.server_state == ServerState::Leader && vote.is_committed() && own_term).then(|| LeaderReadPoint {
            vote,
            committed: committed.index,
            configs: st.membership_state.effective().membership().get_joint_config().clone(),
        })
    })
    .await
    .ok()
    .flatten()
}

/// Adds `node` as a learner (not waiting for it to catch up).
pub async fn add_learner(raft: &Raft, id: NodeId, node: ServerNode) -> Result<(), crate::Error> {
    raft.add_learner(id, node, false).await.map(|_| ()).map_err(|e| crate::Error::Raft(e.to_string()))
}

/// Makes `voters` the complete voter set (learners not listed stay learners).
pub async fn set_voters(raft: &Raft, voters: BTreeSet<NodeId>) -> Result<(), crate::Error> {
    raft.change_membership(voters, true).await.map(|_| ()).map_err(|e| crate::Error::Raft(e.to_string()))
}

/// Removes `id` entirely (voter or learner).
pub async fn remove_node(raft: &Raft, metrics: &Metrics, id: NodeId) -> Result<(), crate::Error> {
    let voters: BTreeSet<NodeId> = metrics.membership_config.membership().voter_ids().filter(|v| *v != id).collect();
    if voters.is_empty() {
        return Err(crate::Error::BadRequest("cannot remove the last voter".into()));
    }
    use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
    raft.change_membership(voters, false).await.map_err(|e| crate::Error::Raft(e.to_string()))?;
    let change = openraft::ChangeMembers::RemoveNodes(BTreeSet::from([id]));
    match raft.change_membership(change, false).await {
        Ok(_) => Ok(()),
        // openraft refuses to remove a node it still counts as a voter (the voter change above
        // has not taken effect yet); removing it from the voters already dropped it.
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::LearnerNotFound(
            _,
        )))) => Ok(()),
        Err(e) => Err(crate::Error::Raft(e.to_string())),
    }
}

/// Forms a new cluster with `members` as the voters.
pub async fn initialize(raft: &Raft, members: BTreeMap<NodeId, ServerNode>) -> Result<(), crate::Error> {
    match raft.initialize(members).await {
        Ok(()) => Ok(()),
        Err(openraft::error::RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(crate::Error::Raft(e.to_string())),
    }
}

/// A started Raft node and what its network layer learns for the rest of the crate.
#[derive(Clone)]
pub struct RaftNode {
    /// The node's id.
    pub id: NodeId,
    /// The openraft handle.
    pub raft: Raft,
    /// Its AppendEntries acknowledgements, by send time (see [`leader_lease`]).
    pub lease: Arc<leader_lease::LeaderLease>,
}

/// Starts the Raft node `id` over the given storage and network.
pub async fn start(
    id: NodeId,
    tuning: &RaftTuning,
    network: network::NetworkFactory,
    log: log_store::LogStore,
    sm: state_machine::StateMachine,
) -> Result<RaftNode, crate::Error> {
    start_with_config(id, raft_config(tuning)?, network, log, sm, rand::random()).await
}

/// Starts the Raft node `id` with an explicit configuration (the simulator fixes each node's
/// election timeout; see `replication::sim`). `jitter_seed` seeds the pauses between election
/// rounds after a split vote (see `split_vote`).
pub async fn start_with_config(
    id: NodeId,
    config: Arc<openraft::Config>,
    network: network::NetworkFactory,
    log: log_store::LogStore,
    sm: state_machine::StateMachine,
    jitter_seed: u64,
) -> Result<RaftNode, crate::Error> {
    let min_election = std::time::Duration::from_millis(config.election_timeout_min);
    let max_election = std::time::Duration::from_millis(config.election_timeout_max);
    let votes = network.vote_signals();
    let lease = network.leader_lease();
    let raft =
        openraft::Raft::new(id, config, network, log, sm).await.map_err(|e| crate::Error::Raft(e.to_string()))?;
    election_hold::spawn(raft.clone(), max_election);
    split_vote::spawn(raft.clone(), votes, min_election, jitter_seed);
    Ok(RaftNode { id, raft, lease })
}

/// Stops the Raft node.
pub async fn shutdown(raft: &Raft) {
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
}

/// Asks Raft to take a snapshot now (and compact the log behind it).
pub async fn trigger_snapshot(raft: &Raft) -> Result<(), crate::Error> {
    raft.trigger().snapshot().await.map_err(|e| crate::Error::Raft(e.to_string()))
}

#[cfg(test)]
mod storage_suite {
    //! openraft's own storage test suite (`openraft::testing::Suite`) over our [`LogStore`] and
    //! [`StateMachine`]: the contract openraft states for `RaftLogStorage` and
    //! `RaftStateMachine` (log ranges, vote, committed index, purge and truncate, membership
    //! recovery from log and state machine, apply, snapshot transfer), checked by openraft.
    //!
    //! [`LogStore`]: log_store::LogStore
    //! [`StateMachine`]: state_machine::StateMachine
    #![allow(clippy::unwrap_used)]

    use openraft::testing::{StoreBuilder, Suite};
    use openraft::StorageError;

    use super::log_store::LogStore;
    use super::state_machine::StateMachine;
    use super::{NodeId, TypeConfig};
    use crate::state::StateStore;

    /// The suite's own node id (`testing::suite::NODE_ID`): the store's "our own vote reads back
    /// uncommitted" rule applies to the votes the suite saves, which are all uncommitted.
    const SELF: NodeId = 0;

    fn storage(e: crate::Error) -> StorageError<NodeId> {
        openraft::StorageIOError::<NodeId>::write(&std::io::Error::other(e.to_string())).into()
    }

    /// The production configuration: a redb file and the group-commit writer thread.
    struct OnDisk;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for OnDisk {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
            let dir = tempfile::tempdir().map_err(|e| storage(crate::Error::Storage(e.to_string())))?;
            let store = LogStore::open(Some(dir.path()), SELF).map_err(storage)?;
            let sm = StateMachine::open(std::sync::Arc::new(StateStore::new()), store.clone()).map_err(storage)?;
            Ok((dir, store, sm))
        }
    }

    /// The simulator's configuration: in memory, committed inline.
    struct Inline;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine> for Inline {
        async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError<NodeId>> {
            let store = LogStore::open_inline(LogStore::memory_database().map_err(storage)?, SELF).map_err(storage)?;
            let sm = StateMachine::open(std::sync::Arc::new(StateStore::new()), store.clone()).map_err(storage)?;
            Ok(((), store, sm))
        }
    }

    // `Suite::test_all` makes a runtime per case, so these are plain tests.
    #[test]
    fn openraft_suite_on_disk_with_group_commit() {
        Suite::test_all(OnDisk).unwrap();
    }

    #[test]
    fn openraft_suite_in_memory_inline() {
        Suite::test_all(Inline).unwrap();
    }
}
