//! Writes and reads on top of Raft, with Consul's forwarding and consistency rules.
//!
//! - Writes go through the leader: a follower forwards them over the server RPC port, and during
//!   an election a request is held up to `rpc_hold_timeout` before failing with
//!   `No cluster leader`.
//! - Reads run against the local state after a *read barrier* chosen by the consistency mode
//!   (`agent/consul/rpc.go` semantics):
//!   - `stale`: no barrier; any server answers, even without a leader.
//!   - default: the leader answers from its own state while its lease holds (a quorum
//!     acknowledged it within [`RaftTuning::leader_lease`]); a follower asks the leader for its
//!     applied index and waits until it has applied that much itself — the same guarantee as
//!     Consul's forward-to-leader, without shipping results between servers.
//!   - `consistent`: the leader confirms its leadership with a quorum round (ReadIndex) first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::command::{Command, CommandResponse};
use crate::config::RaftTuning;
use crate::raft::{self, NodeId, Raft, ServerNode, ServerState, WriteError};
use crate::rpc::messages::{ForwardRequest, ForwardResponse, WireError};
use crate::rpc::{Request, Response, RpcClient, RpcError};
use crate::session_ttl::SessionTimers;
use crate::state::{Session, StateStore};
use crate::{Error, Result};

/// Consistency mode of a read (`?stale`, default, `?consistent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Leader lease read (the default).
    Default,
    /// Any server, no leader needed.
    Stale,
    /// Leader after a quorum round.
    Consistent,
}

impl Consistency {
    /// The `X-Consul-Effective-Consistency` value.
    pub fn as_header(self) -> &'static str {
        match self {
            Consistency::Default => "leader",
            Consistency::Stale => "stale",
            Consistency::Consistent => "consistent",
        }
    }
}

/// What a read reports in its response headers.
#[derive(Debug, Clone, Copy)]
pub struct ReadMeta {
    /// `X-Consul-KnownLeader`.
    pub known_leader: bool,
    /// `X-Consul-LastContact`, in ms (0 on the leader).
    pub last_contact_ms: u64,
    /// `X-Consul-Effective-Consistency`.
    pub consistency: Consistency,
}

/// Leadership facts refreshed from Raft metrics by a background task, so the read path never
/// clones metrics.
#[derive(Debug, Default)]
struct LeaderView {
    is_leader: bool,
    leader: Option<NodeId>,
    /// When a quorum last acknowledged this leader.
    quorum_ack: Option<Instant>,
}

/// Consensus facade shared by the HTTP API, the RPC server and cluster management.
pub struct Consensus {
    raft: Raft,
    state: Arc<StateStore>,
    rpc: RpcClient,
    self_id: NodeId,
    tuning: RaftTuning,
    hold_timeout: Duration,
    view: Mutex<LeaderView>,
    /// When this server last received AppendEntries (follower side of `X-Consul-LastContact`).
    last_leader_contact: Mutex<Option<Instant>>,
    proposals: mpsc::UnboundedSender<Proposal>,
    proposals_rx: Mutex<Option<mpsc::UnboundedReceiver<Proposal>>>,
    /// Session TTL timers (meaningful on the leader only).
    session_timers: SessionTimers,
}

/// A command waiting to be proposed, with where to send its outcome.
struct Proposal {
    cmd: Command,
    done: oneshot::Sender<Result<(u64, CommandResponse), WriteError>>,
}

/// Batches in flight at once. While they are all busy, new proposals queue up and leave together
/// as one Raft entry: under load the per-entry costs (Raft bookkeeping, a log write, an apply
/// round) are shared by many writes, while a lone write still goes out at once.
const MAX_BATCHES_IN_FLIGHT: usize = 4;
/// Upper bounds on one batch.
const MAX_BATCH_COMMANDS: usize = 1024;
const MAX_BATCH_BYTES: usize = 1024 * 1024;

impl std::fmt::Debug for Consensus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consensus").field("self_id", &self.self_id).finish_non_exhaustive()
    }
}

enum ForwardFailure {
    /// Definitely not applied: try again (maybe with another leader).
    Retry,
    /// Failed for good.
    Fatal(Error),
}

impl Consensus {
    /// Wraps a started Raft node.
    pub fn new(
        raft: Raft,
        state: Arc<StateStore>,
        rpc: RpcClient,
        self_id: NodeId,
        tuning: RaftTuning,
        hold_timeout: Duration,
    ) -> Arc<Self> {
        let (proposals, rx) = mpsc::unbounded_channel();
        Arc::new(Consensus {
            raft,
            state,
            rpc,
            self_id,
            tuning,
            hold_timeout,
            view: Mutex::default(),
            last_leader_contact: Mutex::default(),
            proposals,
            proposals_rx: Mutex::new(Some(rx)),
            session_timers: SessionTimers::default(),
        })
    }

    /// Proposes queued commands in batches until `shutdown` (run once per agent).
    pub async fn run_proposer(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(mut rx) = self.proposals_rx.lock().take() else {
            return;
        };
        let permits = Arc::new(Semaphore::new(MAX_BATCHES_IN_FLIGHT));
        loop {
            let first = tokio::select! {
                p = rx.recv() => p,
                _ = shutdown.cancelled() => None,
            };
            let Some(first) = first else { return };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let mut size = first.cmd.approx_size();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH_COMMANDS && size < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(p) => {
                        size = size.saturating_add(p.cmd.approx_size());
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            let raft = self.raft.clone();
            tokio::spawn(async move {
                let _permit = permit;
                propose_batch(&raft, batch).await;
            });
        }
    }

    async fn propose(&self, cmd: Command) -> Result<(u64, CommandResponse), WriteError> {
        let (done, rx) = oneshot::channel();
        if self.proposals.send(Proposal { cmd, done }).is_err() {
            return Err(WriteError::Other(Error::ShuttingDown));
        }
        rx.await.unwrap_or(Err(WriteError::Other(Error::ShuttingDown)))
    }

    /// Keeps the leadership view current until `shutdown`.
    pub async fn watch_metrics(self: Arc<Self>, shutdown: CancellationToken) {
        let mut rx = self.raft.metrics();
        loop {
            {
                let m = rx.borrow_and_update();
                let mut view = self.view.lock();
                view.is_leader = m.state == ServerState::Leader;
                view.leader = m.current_leader;
                view.quorum_ack = match (view.is_leader, m.millis_since_quorum_ack) {
                    (true, Some(ms)) => Instant::now().checked_sub(Duration::from_millis(ms)),
                    _ => None,
                };
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// The Raft handle.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The replicated state.
    pub fn state(&self) -> &Arc<StateStore> {
        &self.state
    }

    /// This server's Raft id.
    pub fn self_id(&self) -> NodeId {
        self.self_id
    }

    /// Current Raft metrics (a clone: not for hot paths).
    pub fn metrics(&self) -> raft::Metrics {
        self.raft.metrics().borrow().clone()
    }

    /// The current leader and its record, if known.
    pub fn leader(&self) -> Option<(NodeId, ServerNode)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    /// Whether this server is the leader.
    pub fn is_leader(&self) -> bool {
        self.view.lock().is_leader
    }

    fn lease_valid(&self) -> bool {
        let view = self.view.lock();
        view.is_leader && view.quorum_ack.is_some_and(|t| t.elapsed() < self.tuning.leader_lease())
    }

    fn read_meta(&self, consistency: Consistency) -> ReadMeta {
        let view = self.view.lock();
        let last_contact_ms = if view.is_leader {
            0
        } else {
            self.last_leader_contact.lock().map(|t| t.elapsed().as_millis() as u64).unwrap_or(0)
        };
        ReadMeta { known_leader: view.leader.is_some(), last_contact_ms, consistency }
    }

    /// Proposes `cmd` through Raft, forwarding to the leader when needed; returns the Raft index
    /// the command was applied at and its result.
    pub async fn write(&self, cmd: Command) -> Result<(u64, CommandResponse)> {
        let deadline = Instant::now() + self.hold_timeout;
        loop {
            match self.propose(cmd.clone()).await {
                Ok(done) => return Ok(done),
                Err(WriteError::Other(e)) => return Err(e),
                Err(WriteError::ForwardTo(Some((id, node)))) if id != self.self_id => {
                    match self.forward(&node, ForwardRequest::Write(cmd.clone())).await {
                        Ok(ForwardResponse::Written(index, resp)) => return Ok((index, resp)),
                        Ok(other) => return Err(Error::Rpc(format!("unexpected answer to a write: {other:?}"))),
                        Err(ForwardFailure::Fatal(e)) => return Err(e),
                        Err(ForwardFailure::Retry) => {}
                    }
                }
                Err(WriteError::ForwardTo(_)) => {}
            }
            if Instant::now() >= deadline {
                return Err(Error::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Makes the local state fresh enough for a read in `mode`; returns the response metadata.
    pub async fn read_barrier(&self, mode: Consistency) -> Result<ReadMeta> {
        if mode == Consistency::Stale {
            return Ok(self.read_meta(mode));
        }
        let deadline = Instant::now() + self.hold_timeout;
        loop {
            if mode == Consistency::Default && self.lease_valid() {
                return Ok(self.read_meta(mode));
            }
            match raft::linearizable_barrier(&self.raft).await {
                Ok(_) => return Ok(self.read_meta(mode)),
                Err(WriteError::Other(e)) if Instant::now() >= deadline => return Err(e),
                Err(WriteError::Other(_)) => {}
                Err(WriteError::ForwardTo(Some((id, node)))) if id != self.self_id => {
                    let req = ForwardRequest::ReadIndex { consistent: mode == Consistency::Consistent };
                    match self.forward(&node, req).await {
                        Ok(ForwardResponse::ReadIndex(index)) => {
                            let left = deadline.saturating_duration_since(Instant::now());
                            if self.state.wait_applied(index, left.max(Duration::from_millis(100))).await {
                                return Ok(self.read_meta(mode));
                            }
                            return Err(Error::Rpc(format!("timed out catching up to the leader's index {index}")));
                        }
                        Ok(other) => return Err(Error::Rpc(format!("unexpected answer to a read index: {other:?}"))),
                        Err(ForwardFailure::Fatal(e)) => return Err(e),
                        Err(ForwardFailure::Retry) => {}
                    }
                }
                Err(WriteError::ForwardTo(_)) => {}
            }
            if Instant::now() >= deadline {
                return Err(Error::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Removes a server from the Raft configuration (on the leader, or forwarded to it).
    pub async fn remove_peer(&self, id: NodeId) -> Result<()> {
        let deadline = Instant::now() + self.hold_timeout;
        loop {
            if self.is_leader() {
                return raft::remove_node(&self.raft, &self.metrics(), id).await;
            }
            if let Some((leader, node)) = self.leader() {
                if leader != self.self_id {
                    match self.forward(&node, ForwardRequest::RemovePeer(id)).await {
                        Ok(_) => return Ok(()),
                        Err(ForwardFailure::Fatal(e)) => return Err(e),
                        Err(ForwardFailure::Retry) => {}
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The leader-local session TTL timers.
    pub fn session_timers(&self) -> &SessionTimers {
        &self.session_timers
    }

    /// Renews session `id` on the leader (forwarded there from a follower): returns the session
    /// after a consistent read, or `None` if it does not exist.
    pub async fn renew_session(&self, id: &str) -> Result<Option<Session>> {
        let deadline = Instant::now() + self.hold_timeout;
        loop {
            if self.is_leader() {
                match self.renew_on_leader(id).await {
                    Ok(found) => return Ok(found),
                    Err(e) if Instant::now() >= deadline => return Err(e),
                    Err(_) => {}
                }
            } else if let Some((leader, node)) = self.leader() {
                if leader != self.self_id {
                    match self.forward(&node, ForwardRequest::SessionRenew(id.to_string())).await {
                        Ok(ForwardResponse::Session(found)) => return Ok(found.map(|s| *s)),
                        Ok(other) => return Err(Error::Rpc(format!("unexpected answer to a renew: {other:?}"))),
                        Err(ForwardFailure::Fatal(e)) => return Err(e),
                        Err(ForwardFailure::Retry) => {}
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn renew_on_leader(&self, id: &str) -> Result<Option<Session>> {
        raft::linearizable_barrier(&self.raft).await.map_err(|e| match e {
            WriteError::Other(e) => e,
            WriteError::ForwardTo(_) => Error::NoLeader,
        })?;
        let found = self.state.read(|d| d.sessions.get(id).cloned());
        if found.is_some() {
            self.session_timers.renew(id);
        }
        Ok(found)
    }

    async fn forward(
        &self,
        leader: &ServerNode,
        req: ForwardRequest,
    ) -> std::result::Result<ForwardResponse, ForwardFailure> {
        let Ok(addr) = leader.rpc_addr.parse() else {
            return Err(ForwardFailure::Fatal(Error::Rpc(format!("bad leader address {:?}", leader.rpc_addr))));
        };
        // Generous: the leader itself may hold the request for a whole election.
        let timeout = self.hold_timeout + Duration::from_secs(5);
        match self.rpc.call(addr, Request::Forward(req), timeout).await {
            Ok(Response::Forward(resp)) => Ok(resp),
            Ok(Response::Error(WireError::NotLeader(_))) => Err(ForwardFailure::Retry),
            Ok(Response::Error(WireError::BadRequest(m))) => Err(ForwardFailure::Fatal(Error::BadRequest(m))),
            Ok(Response::Error(WireError::Other(m))) => Err(ForwardFailure::Fatal(Error::Rpc(m))),
            Ok(other) => Err(ForwardFailure::Fatal(Error::Rpc(format!("unexpected RPC answer {other:?}")))),
            // Never connected: the request was not delivered, so retrying cannot apply it twice.
            Err(RpcError::Unreachable { reason, .. }) if reason.contains("connect") || reason.contains("refused") => {
                Err(ForwardFailure::Retry)
            }
            Err(e) => Err(ForwardFailure::Fatal(Error::Rpc(e.to_string()))),
        }
    }

    /// Answers a request that arrived on the server RPC port.
    pub fn handle_rpc(self: &Arc<Self>, req: Request) -> BoxFuture<'static, Response> {
        let this = self.clone();
        Box::pin(async move {
            let other = |e: &dyn std::fmt::Display| Response::Error(WireError::Other(e.to_string()));
            match req {
                Request::AppendEntries(r) => {
                    *this.last_leader_contact.lock() = Some(Instant::now());
                    match this.raft.append_entries(r).await {
                        Ok(resp) => Response::AppendEntries(resp),
                        Err(e) => other(&e),
                    }
                }
                Request::Vote(r) => match this.raft.vote(r).await {
                    Ok(resp) => Response::Vote(resp),
                    Err(e) => other(&e),
                },
                Request::InstallSnapshot(r) => {
                    *this.last_leader_contact.lock() = Some(Instant::now());
                    match this.raft.install_snapshot(r).await {
                        Ok(resp) => Response::InstallSnapshot(resp),
                        Err(e) => other(&e),
                    }
                }
                Request::Forward(f) => this.handle_forward(f).await,
                Request::GossipSync(_) | Request::KeyringOp(_) => {
                    Response::Error(WireError::BadRequest("gossip requests go to the serf_lan port".into()))
                }
                // The agent answers these before handing the rest to us.
                Request::Http(_) | Request::Dns { .. } => {
                    Response::Error(WireError::BadRequest("this server does not serve forwarded requests".into()))
                }
            }
        })
    }

    async fn handle_forward(&self, req: ForwardRequest) -> Response {
        let not_leader = |leader| Response::Error(WireError::NotLeader(leader));
        let error = |e: Error| match e {
            Error::BadRequest(m) => Response::Error(WireError::BadRequest(m)),
            e => Response::Error(WireError::Other(e.to_string())),
        };
        match req {
            ForwardRequest::Write(cmd) => match self.propose(cmd).await {
                Ok((index, resp)) => Response::Forward(ForwardResponse::Written(index, resp)),
                Err(WriteError::ForwardTo(leader)) => not_leader(leader),
                Err(WriteError::Other(e)) => error(e),
            },
            ForwardRequest::ReadIndex { consistent } => {
                if !consistent && self.lease_valid() {
                    return Response::Forward(ForwardResponse::ReadIndex(self.state.last_index()));
                }
                match raft::linearizable_barrier(&self.raft).await {
                    Ok(index) => Response::Forward(ForwardResponse::ReadIndex(index.max(self.state.last_index()))),
                    Err(WriteError::ForwardTo(leader)) => not_leader(leader),
                    Err(WriteError::Other(e)) => error(e),
                }
            }
            ForwardRequest::RemovePeer(id) => {
                if !self.is_leader() {
                    return not_leader(self.leader());
                }
                match raft::remove_node(&self.raft, &self.metrics(), id).await {
                    Ok(()) => Response::Forward(ForwardResponse::Done),
                    Err(e) => error(e),
                }
            }
            ForwardRequest::ReadNode(node) => match self.read_barrier(Consistency::Default).await {
                Ok(_) => {
                    Response::Forward(ForwardResponse::Node(Box::new(self.state.read(|d| d.catalog.node_state(&node)))))
                }
                Err(e) => error(e),
            },
            ForwardRequest::SessionRenew(id) => {
                if !self.is_leader() {
                    return not_leader(self.leader());
                }
                match self.renew_on_leader(&id).await {
                    Ok(found) => Response::Forward(ForwardResponse::Session(found.map(Box::new))),
                    Err(Error::NoLeader) => not_leader(self.leader()),
                    Err(e) => error(e),
                }
            }
        }
    }
}

/// Proposes one batch and hands every proposal its own outcome.
async fn propose_batch(raft: &Raft, mut batch: Vec<Proposal>) {
    if batch.len() == 1 {
        if let Some(p) = batch.pop() {
            let _ = p.done.send(raft::client_write(raft, p.cmd).await);
        }
        return;
    }
    let (cmds, dones): (Vec<Command>, Vec<_>) = batch.into_iter().map(|p| (p.cmd, p.done)).unzip();
    let count = cmds.len();
    match raft::client_write(raft, Command::Batch(cmds)).await {
        Ok((index, CommandResponse::Batch(responses))) if responses.len() == count => {
            for (done, resp) in dones.into_iter().zip(responses) {
                let _ = done.send(Ok((index, resp)));
            }
        }
        Ok((_, other)) => {
            for done in dones {
                let e = Error::Raft(format!("unexpected batch result {other:?}"));
                let _ = done.send(Err(WriteError::Other(e)));
            }
        }
        Err(WriteError::ForwardTo(leader)) => {
            for done in dones {
                let _ = done.send(Err(WriteError::ForwardTo(leader.clone())));
            }
        }
        Err(WriteError::Other(e)) => {
            let text = e.to_string();
            for done in dones {
                let _ = done.send(Err(WriteError::Other(Error::Raft(text.clone()))));
            }
        }
    }
}
