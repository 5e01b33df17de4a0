//! Writes and reads on top of Raft, with Consul's forwarding and consistency rules.
//!
//! - Writes go through the leader: a follower sends them straight to the leader it knows over
//!   the server RPC port, and during an election a request is held up to `rpc_hold_timeout`
//!   before failing with `No cluster leader`.
//! - Every write is applied exactly once. It is wrapped in [`Command::Tracked`] with a request id
//!   chosen once, here (or on the client agent that received it), and the state machine's dedup
//!   window answers a repeated id with the first application's result. That makes every retry
//!   safe — after a leader died holding the request, after a connection broke with the request
//!   sent, after a forward timed out — so a write is retried with the same id until the hold
//!   timeout, and only then answered with an error that says its outcome is unknown.
//! - Reads run against the local state after a *read barrier* chosen by the consistency mode
//!   (`agent/consul/rpc.go` semantics):
//!   - `stale`: no barrier; any server answers, even without a leader.
//!   - `max_stale=d`: like `stale` while this server heard from the leader within `d`,
//!     otherwise like default (Consul re-runs such a query on the leader).
//!   - default: the leader answers from its own state while its lease holds (a quorum
//!     acknowledged it within [`RaftTuning::leader_lease`]) *and* it has applied an entry of its
//!     own term — before that its state may lack entries an earlier leader committed — once its
//!     state machine has applied everything up to its commit index (followers may apply a
//!     committed entry before the leader does, so the applied index is not enough). A follower
//!     asks the leader for that index and waits until it has applied that much itself — the
//!     same guarantee as Consul's forward-to-leader, without shipping results between servers.
//!   - `consistent`: the leader confirms its leadership with a quorum round (ReadIndex) first.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::clock::{SharedClock, SystemClock};
use crate::replication::autopilot::ClusterHealth;
use crate::replication::forward::{ForwardRequest, ForwardResponse, WireError};
use crate::replication::raft::leader_lease::LeaderLease;
use crate::replication::raft::{self, NodeId, Raft, RaftNode, RaftTuning, ServerNode, ServerState, WriteError};
use crate::replication::raft::{RaftRequest, RaftResponse};
use crate::replication::session_ttl::SessionTimers;
use crate::rpc::{RpcClient, Service};
use crate::state::command::{Command, CommandResponse, RequestIds};
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
    /// `?max_stale=d`: any server that heard from the leader within `d`, else as
    /// [`Consistency::Default`].
    MaxStale(Duration),
}

impl Consistency {
    /// The `X-Consul-Effective-Consistency` value.
    pub fn as_header(self) -> &'static str {
        match self {
            Consistency::Default => "leader",
            Consistency::Stale | Consistency::MaxStale(_) => "stale",
            Consistency::Consistent => "consistent",
        }
    }
}

/// What a read reports in its response headers.
#[derive(Debug, Clone, Copy)]
pub struct ReadMeta {
    /// `X-Consul-KnownLeader`.
    pub known_leader: bool,
    /// `X-Consul-LastContact`, in ms (0 on the leader; `u64::MAX` when this server never
    /// heard from a leader since it started, as Consul's time since the zero time).
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
}

/// Consensus facade shared by the HTTP API, the RPC server and cluster management.
pub struct Consensus {
    raft: Raft,
    /// Which of this node's AppendEntries peers acknowledged, and when they were sent.
    lease: Arc<LeaderLease>,
    state: Arc<StateStore>,
    rpc: RpcClient,
    self_id: NodeId,
    tuning: RaftTuning,
    hold_timeout: Duration,
    view: Mutex<LeaderView>,
    /// The leader id as last seen in metrics: in-flight forwards to a leader that was replaced
    /// give up at once and retry at the new one.
    leader_changes: tokio::sync::watch::Sender<Option<NodeId>>,
    /// When this server last received AppendEntries (follower side of `X-Consul-LastContact`).
    last_leader_contact: Mutex<Option<Instant>>,
    proposals: mpsc::UnboundedSender<Proposal>,
    proposals_rx: Mutex<Option<mpsc::UnboundedReceiver<Proposal>>>,
    /// Session TTL timers (meaningful on the leader only).
    session_timers: SessionTimers,
    /// Request ids for the writes that enter the cluster here.
    ids: RequestIds,
    /// Cancelled when the agent starts stopping: leader requests give up at once instead of
    /// retrying against connections that are closing.
    closing: CancellationToken,
    /// Time for leases, deadlines and the proposer's `now_ms` stamps (virtual in simulations).
    clock: SharedClock,
    /// The autopilot's latest assessment, published by the leader's membership task.
    autopilot: Mutex<Option<ClusterHealth>>,
    /// The agent's metrics (Raft apply and commit times, leader contact).
    metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
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
/// Pause between attempts while no leader is known or the leader just changed.
const RETRY_PAUSE: Duration = Duration::from_millis(25);

impl std::fmt::Debug for Consensus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consensus").field("self_id", &self.self_id).finish_non_exhaustive()
    }
}

/// Where a request for the leader goes right now.
enum Route {
    /// This server leads.
    Local,
    /// Another server leads.
    Remote(NodeId, ServerNode),
    /// No leader is known (election in progress).
    Unknown,
}

/// Why one attempt at a leader request did not produce an answer.
#[derive(Debug)]
enum Failure {
    /// Not applied, or repeatable without harm: try again (perhaps at another leader).
    Retry,
    /// The request may have taken effect (the connection broke after it was sent, the leader
    /// lost leadership with it in its log, the leader changed while it was in flight). Every
    /// leader request is safe to repeat — writes carry their request id — so it is retried
    /// too; if the hold timeout runs out after one of these, a write's outcome is unknown.
    Ambiguous(String),
    /// Failed for good; the error is the answer.
    Fatal(Error),
}

impl Consensus {
    /// Wraps a started Raft node (on the system clock).
    pub fn new(
        node: RaftNode,
        state: Arc<StateStore>,
        rpc: RpcClient,
        tuning: RaftTuning,
        hold_timeout: Duration,
    ) -> Arc<Self> {
        Self::with_clock(node, state, rpc, tuning, hold_timeout, SystemClock::shared())
    }

    /// Wraps a started Raft node, reading time from `clock`.
    pub fn with_clock(
        node: RaftNode,
        state: Arc<StateStore>,
        rpc: RpcClient,
        tuning: RaftTuning,
        hold_timeout: Duration,
        clock: SharedClock,
    ) -> Arc<Self> {
        let (proposals, rx) = mpsc::unbounded_channel();
        Arc::new(Consensus {
            raft: node.raft,
            lease: node.lease,
            state,
            rpc,
            self_id: node.id,
            tuning,
            hold_timeout,
            view: Mutex::default(),
            leader_changes: tokio::sync::watch::channel(None).0,
            last_leader_contact: Mutex::default(),
            proposals,
            proposals_rx: Mutex::new(Some(rx)),
            session_timers: SessionTimers::new(clock.clone()),
            ids: RequestIds::new(),
            closing: CancellationToken::new(),
            clock,
            autopilot: Mutex::default(),
            metrics: std::sync::OnceLock::new(),
        })
    }

    /// Records this server's periodic metrics: `raft.leader.lastContact` (on the leader, the
    /// time since a quorum last acknowledged it), `session_ttl.active` (on the leader, sessions
    /// with a TTL) and the state store's table sizes (`state.*`, as Consul's usage metrics).
    pub fn record_metrics(&self, m: &crate::metrics::Metrics) {
        let (leader, since_ack) = {
            let rx = self.raft.metrics();
            let r = rx.borrow();
            (r.state == ServerState::Leader, r.millis_since_quorum_ack)
        };
        if let (true, Some(ms)) = (leader, since_ack) {
            m.measure("raft.leader.lastContact", &[], Duration::from_millis(ms));
        }
        let (kv, kv_bytes, nodes, services, instances, checks, sessions, ttl) = self.state.read(|d| {
            let names: std::collections::BTreeSet<&str> =
                d.catalog.services.values().map(|s| s.service.as_str()).collect();
            (
                d.kvs.len(),
                d.kvs.bytes(),
                d.catalog.nodes.len(),
                names.len(),
                d.catalog.services.len(),
                d.catalog.checks.len(),
                d.sessions.len(),
                d.sessions.values().filter(|s| !s.ttl.is_empty()).count(),
            )
        });
        if leader {
            m.set_gauge("session_ttl.active", &[], ttl as f64);
        }
        // `state.kv_bytes` is kept by every KV change (`state::kv_table`), not counted here, so
        // reading it costs nothing on a big store; per key, it shows what the representation costs.
        let per_key = if kv == 0 { 0.0 } else { kv_bytes as f64 / kv as f64 };
        m.set_gauge("state.kv_bytes", &[], kv_bytes as f64);
        m.set_gauge("state.kv_bytes_per_key", &[], per_key);
        for (name, n) in [
            ("state.kv_entries", kv),
            ("state.nodes", nodes),
            ("state.services", services),
            ("state.service_instances", instances),
            ("state.checks", checks),
            ("state.sessions", sessions),
        ] {
            m.set_gauge(name, &[], n as f64);
        }
    }

    /// Gives this server the agent's metrics (once; later calls are ignored).
    pub fn set_metrics(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Stops Raft participation: pending and new leader requests fail with
    /// [`Error::ShuttingDown`], and the Raft node stops (no more votes, elections or
    /// heartbeats). The agent calls this first when it stops, *before* closing its connections:
    /// a Raft node left running without them would time out, start election after election and
    /// come back from a restart with an inflated term that unseats a healthy leader.
    pub async fn close(&self) {
        self.closing.cancel();
        raft::shutdown(&self.raft).await;
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
            let metrics = self.metrics.get().cloned();
            tokio::spawn(async move {
                let _permit = permit;
                let (count, start) = (batch.len(), std::time::Instant::now());
                propose_batch(&raft, batch).await;
                // hashicorp/raft's names: entries handed to Raft, and the time to commit them.
                if let Some(m) = metrics {
                    m.incr_counter("raft.apply", &[], count as f64);
                    m.measure_since("raft.commitTime", &[], start);
                }
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
                self.leader_changes.send_if_modified(|l| std::mem::replace(l, m.current_leader) != m.current_leader);
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Changes whenever the known leader changes (this server winning an election included):
    /// leader duties start at once instead of on their next tick.
    pub fn leader_changes(&self) -> tokio::sync::watch::Receiver<Option<NodeId>> {
        self.leader_changes.subscribe()
    }

    /// The Raft handle.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The clock this server reads (stamp commands' `now_ms` with its `unix_ms`).
    pub fn clock(&self) -> &SharedClock {
        &self.clock
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

    /// Sends `req` to `service` on the current leader and returns its answer. For the few
    /// requests the leader itself must answer (ACL bootstrap reads the reset file in the
    /// leader's data dir, as Consul does); writes go through [`Consensus::write`] instead.
    pub async fn call_leader<Req, Resp>(&self, service: Service, req: &Req, timeout: Duration) -> Result<Resp>
    where
        Req: serde::Serialize + ?Sized,
        Resp: serde::de::DeserializeOwned,
    {
        let (_, node) = self.leader().ok_or(Error::NoLeader)?;
        let addr: std::net::SocketAddr =
            node.rpc_addr.parse().map_err(|e| Error::Rpc(format!("leader address {:?}: {e}", node.rpc_addr)))?;
        self.rpc.call(addr, service, req, timeout).await.map_err(|e| Error::Rpc(e.to_string()))
    }

    /// Whether this server is the leader.
    pub fn is_leader(&self) -> bool {
        self.view.lock().is_leader
    }

    /// The index a default-mode read must reflect when this server may answer it from its
    /// leader lease: it leads, has committed an entry of its own term, and a quorum acknowledged
    /// requests it sent within the lease (see [`raft::leader_lease`]). The commit index, not the
    /// applied one: a follower may already have applied, and served, entries this leader's state
    /// machine has not reached yet.
    async fn lease_read_index(&self) -> Option<u64> {
        if !self.view.lock().is_leader {
            return None;
        }
        let point = raft::leader_read_point(&self.raft).await?;
        // Checked after the core answered: a lease that holds now held when it did, so no other
        // leader can have acknowledged a write the commit index misses.
        let now = self.clock.now();
        self.lease
            .holds(self.self_id, &point.vote, &point.configs, self.tuning.leader_lease(), now)
            .then_some(point.committed)
    }

    /// Time since this server last heard from a leader (zero on the leader), `None` if never.
    fn since_leader_contact(&self) -> Option<Duration> {
        if self.view.lock().is_leader {
            return Some(Duration::ZERO);
        }
        self.last_leader_contact.lock().map(|t| self.clock.now().saturating_duration_since(t))
    }

    fn read_meta(&self, consistency: Consistency) -> ReadMeta {
        let known_leader = self.view.lock().leader.is_some();
        let last_contact_ms = self.since_leader_contact().map_or(u64::MAX, |d| d.as_millis() as u64);
        ReadMeta { known_leader, last_contact_ms, consistency }
    }

    fn route(&self) -> Route {
        let view = self.view.lock();
        if view.is_leader {
            return Route::Local;
        }
        match view.leader {
            Some(id) if id != self.self_id => {
                let metrics = self.raft.metrics();
                let m = metrics.borrow();
                match m.membership_config.membership().get_node(&id) {
                    Some(node) => Route::Remote(id, node.clone()),
                    None => Route::Unknown,
                }
            }
            _ => Route::Unknown,
        }
    }

    /// Proposes `cmd` through Raft, forwarding to the leader when needed; returns the Raft index
    /// the command was applied at and its result. Applied exactly once however often it is
    /// retried (see the module docs); a repeat answers the first application's index and result.
    pub async fn write(&self, cmd: Command) -> Result<(u64, CommandResponse)> {
        // Extras of services and sessions leave this process beside their records.
        let cmd = self.ids.track(crate::state::ext_fields::carry(cmd));
        match self.on_leader(ForwardRequest::Write(cmd)).await? {
            ForwardResponse::Written(index, resp) => settle_write(index, resp),
            other => Err(Error::Rpc(format!("unexpected answer to a write: {other:?}"))),
        }
    }

    /// Makes the local state fresh enough for a read in `mode`; returns the response metadata.
    pub async fn read_barrier(&self, mode: Consistency) -> Result<ReadMeta> {
        let mode = match mode {
            Consistency::Stale => return Ok(self.read_meta(mode)),
            Consistency::MaxStale(max) if self.since_leader_contact().is_some_and(|d| d <= max) => {
                return Ok(self.read_meta(mode));
            }
            // Too far behind (or never heard from a leader since start): read as default does.
            Consistency::MaxStale(_) => Consistency::Default,
            m => m,
        };
        let started = self.clock.now();
        let index = match self.lease_read_index().await {
            Some(index) if mode == Consistency::Default => index,
            _ => {
                let req = ForwardRequest::ReadIndex { consistent: mode == Consistency::Consistent };
                let ForwardResponse::ReadIndex(index) = self.on_leader(req).await? else {
                    return Err(Error::Rpc("unexpected answer to a read index".into()));
                };
                index
            }
        };
        let left = self
            .hold_timeout
            .saturating_sub(self.clock.now().saturating_duration_since(started))
            .max(Duration::from_millis(100));
        if self.state.wait_applied(index, left).await {
            Ok(self.read_meta(mode))
        } else {
            Err(Error::Rpc(format!("timed out catching up to the leader's index {index}")))
        }
    }

    /// The Raft timing this server runs with.
    pub fn tuning(&self) -> &RaftTuning {
        &self.tuning
    }

    /// When `peer` last acknowledged a request from this server as its leader.
    pub fn last_ack(&self, peer: NodeId) -> Option<Instant> {
        self.lease.last_ack(peer)
    }

    /// Records the autopilot's latest assessment (the leader's membership task calls this).
    pub fn publish_autopilot(&self, health: ClusterHealth) {
        *self.autopilot.lock() = Some(health);
    }

    /// The leader's latest autopilot assessment (forwarded to the leader from a follower).
    pub async fn autopilot_health(&self) -> Result<ClusterHealth> {
        match self.on_leader(ForwardRequest::AutopilotHealth).await? {
            ForwardResponse::AutopilotHealth(h) => Ok(*h),
            other => Err(Error::Rpc(format!("unexpected answer to an autopilot read: {other:?}"))),
        }
    }

    /// Moves leadership to the voter with node ID `target`, or to any up-to-date voter; returns
    /// once another server leads. Not through [`Consensus::on_leader`]: its retry after a
    /// leader change — the very thing a transfer causes — would hand leadership on once more.
    /// Retried only while no leader is known or the request did not reach it.
    pub async fn transfer_leader(&self, target: Option<String>) -> Result<()> {
        let deadline = self.clock.now() + self.hold_timeout;
        loop {
            let left = deadline.saturating_duration_since(self.clock.now());
            match self.route() {
                Route::Local => return self.hand_over_leadership(target, left).await.map(|_| ()),
                Route::Remote(_, node) => {
                    let addr: std::net::SocketAddr = node
                        .rpc_addr
                        .parse()
                        .map_err(|e| Error::Rpc(format!("leader address {:?}: {e}", node.rpc_addr)))?;
                    let req = ForwardRequest::TransferLeader(target.clone());
                    let answer = self
                        .rpc
                        .call::<_, Result<ForwardResponse, WireError>>(
                            addr,
                            Service::Forward,
                            &req,
                            left + Duration::from_millis(500),
                        )
                        .await;
                    match answer {
                        Ok(Ok(_)) => return Ok(()),
                        Ok(Err(WireError::NotLeader(_))) => {}
                        Ok(Err(e)) => return Err(e.into_error()),
                        Err(e) if e.not_delivered() => {}
                        Err(e) => return Err(Error::Rpc(e.to_string())),
                    }
                }
                Route::Unknown => {}
            }
            if self.clock.now() >= deadline {
                return Err(Error::NoLeader);
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY_PAUSE) => {}
                _ = self.closing.cancelled() => return Err(Error::ShuttingDown),
            }
        }
    }

    /// Removes a server from the Raft configuration (on the leader, or forwarded to it).
    pub async fn remove_peer(&self, id: NodeId) -> Result<()> {
        self.on_leader(ForwardRequest::RemovePeer(id)).await.map(|_| ())
    }

    /// The leader-local session TTL timers.
    pub fn session_timers(&self) -> &SessionTimers {
        &self.session_timers
    }

    /// Renews session `id` on the leader (forwarded there from a follower): returns the session
    /// after a consistent read, or `None` if it does not exist.
    pub async fn renew_session(&self, id: &str) -> Result<Option<Session>> {
        match self.on_leader(ForwardRequest::SessionRenew(id.to_string())).await? {
            ForwardResponse::Session(found) => Ok(found.map(|s| {
                // The session's extras do not travel in this answer's encoding (see
                // `state::ext_fields`); they are the same in this replica, which applied its create.
                let mut s = *s;
                if let Some(ext) = self.state.read(|d| d.sessions.get(&s.id).map(|l| l.ext.clone())) {
                    s.ext = ext;
                }
                s
            })),
            other => Err(Error::Rpc(format!("unexpected answer to a renew: {other:?}"))),
        }
    }

    /// Runs `req` on the leader — here when this server leads, else over RPC — retrying through
    /// elections and leader changes until the hold timeout. The one retry loop of this module.
    async fn on_leader(&self, req: ForwardRequest) -> Result<ForwardResponse> {
        let deadline = self.clock.now() + self.hold_timeout;
        let mut ambiguous: Option<String> = None;
        loop {
            if self.closing.is_cancelled() {
                return Err(match (ambiguous, &req) {
                    (Some(why), ForwardRequest::Write(_)) => Error::OutcomeUnknown(format!("{why}; agent stopping")),
                    _ => Error::ShuttingDown,
                });
            }
            let left = deadline.saturating_duration_since(self.clock.now());
            let attempt = match self.route() {
                Route::Local => self.serve_as_leader(req.clone(), left).await,
                Route::Remote(id, node) => self.forward(id, &node, req.clone(), left).await,
                Route::Unknown => Err(Failure::Retry),
            };
            match attempt {
                Ok(resp) => return Ok(resp),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry) => {}
                Err(Failure::Ambiguous(why)) => ambiguous = Some(why),
            }
            if self.clock.now() >= deadline {
                return Err(match (ambiguous, &req) {
                    (Some(why), ForwardRequest::Write(_)) => Error::OutcomeUnknown(why),
                    (Some(why), _) => Error::Rpc(why),
                    (None, _) => Error::NoLeader,
                });
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY_PAUSE) => {}
                _ = self.closing.cancelled() => {}
            }
        }
    }

    /// One attempt at `req` on this server, as the leader (what a forward asks of us, too).
    async fn serve_as_leader(&self, req: ForwardRequest, time_left: Duration) -> Result<ForwardResponse, Failure> {
        match req {
            ForwardRequest::Write(cmd) => {
                let cmd = self.ids.track(cmd);
                match tokio::time::timeout(time_left, self.propose(cmd)).await {
                    Ok(Ok((index, resp))) => Ok(ForwardResponse::Written(index, resp)),
                    // Refused before appending, or appended and then leadership lost: either
                    // way the same request id may go to the next leader.
                    Ok(Err(WriteError::ForwardTo(_))) => Err(Failure::Ambiguous("leadership changed".into())),
                    Ok(Err(WriteError::Other(e))) => Err(Failure::Fatal(Error::OutcomeUnknown(e.to_string()))),
                    Err(_) => Err(Failure::Ambiguous("timed out waiting for the write to commit".into())),
                }
            }
            ForwardRequest::ReadIndex { consistent } => {
                if !consistent {
                    if let Some(index) = self.lease_read_index().await {
                        return Ok(ForwardResponse::ReadIndex(index));
                    }
                }
                match raft::linearizable_barrier(&self.raft).await {
                    Ok(index) => Ok(ForwardResponse::ReadIndex(index.max(self.state.last_index()))),
                    Err(WriteError::ForwardTo(_)) => Err(Failure::Retry),
                    Err(WriteError::Other(e)) => Err(Failure::Ambiguous(e.to_string())),
                }
            }
            ForwardRequest::RemovePeer(id) => {
                if !self.is_leader() {
                    return Err(Failure::Retry);
                }
                match raft::remove_node(&self.raft, &self.metrics(), id).await {
                    Ok(()) => Ok(ForwardResponse::Done),
                    Err(e) => Err(Failure::Fatal(e)),
                }
            }
            ForwardRequest::SessionRenew(id) => {
                if !self.is_leader() {
                    return Err(Failure::Retry);
                }
                match self.renew_on_leader(&id).await {
                    Ok(found) => Ok(ForwardResponse::Session(found.map(Box::new))),
                    Err(Error::NoLeader) => Err(Failure::Retry),
                    Err(e) => Err(Failure::Ambiguous(e.to_string())),
                }
            }
            ForwardRequest::AutopilotHealth => {
                if !self.is_leader() {
                    return Err(Failure::Retry);
                }
                match self.autopilot.lock().clone() {
                    Some(h) if h.leader == self.self_id => Ok(ForwardResponse::AutopilotHealth(Box::new(h))),
                    // Just elected: the first pass has not run yet.
                    _ => Err(Failure::Retry),
                }
            }
            ForwardRequest::TransferLeader(target) => {
                if !self.is_leader() {
                    return Err(Failure::Retry);
                }
                self.hand_over_leadership(target, time_left).await.map_err(Failure::Fatal)
            }
            // Any server answers these; they never travel through `on_leader`.
            ForwardRequest::ReadNode(_)
            | ForwardRequest::ReadNodeExt(_)
            | ForwardRequest::ResolveToken(_)
            | ForwardRequest::Campaign { .. } => {
                Err(Failure::Fatal(Error::Rpc("a read from the replica is not a leader request".into())))
            }
            // The agent layer checks the token and passes the write on as `Write`; one that
            // reaches consensus unchecked is refused.
            ForwardRequest::AgentWrite { .. } => {
                Err(Failure::Fatal(Error::Rpc("an agent write must be authorized by the receiving server".into())))
            }
        }
    }

    /// The leader's side of a transfer. openraft has no transfer call, and a follower refuses
    /// any candidate while it heard from its leader within `election_timeout_max` (its vote
    /// lease). So the leader stops its heartbeats, asks the target to campaign until it wins —
    /// its first attempt after the followers' leases ran out does, its log being up to date —
    /// and waits until another server leads. Heartbeats are back on either way.
    async fn hand_over_leadership(&self, target: Option<String>, time_left: Duration) -> Result<ForwardResponse> {
        let metrics = self.metrics();
        let last = metrics.last_log_index.unwrap_or(0);
        let matched = |id: &NodeId| {
            metrics.replication.as_ref().and_then(|r| r.get(id).copied().flatten()).map_or(0, |l| l.index)
        };
        let others: Vec<(NodeId, ServerNode)> = raft::membership_nodes(&metrics)
            .into_iter()
            .filter(|(id, _)| *id != self.self_id && raft::is_voter(&metrics, *id))
            .collect();
        let chosen = match target {
            Some(id) => others.iter().find(|(_, n)| n.node_id == id).cloned().ok_or_else(|| {
                Error::BadRequest(format!("cannot find peer: {id:?} is not another voter of the Raft configuration"))
            })?,
            None => others.iter().max_by_key(|(id, _)| matched(id)).cloned().ok_or_else(|| {
                Error::BadRequest("cannot find peer: there is no other voter to transfer leadership to".into())
            })?,
        };
        let (id, node) = chosen;
        tracing::info!(target = %node, behind = last.saturating_sub(matched(&id)), "transferring leadership");
        let addr: std::net::SocketAddr =
            node.rpc_addr.parse().map_err(|e| Error::Rpc(format!("address {:?}: {e}", node.rpc_addr)))?;
        let wait = (self.tuning.election_timeout_max() * 3 + Duration::from_secs(1))
            .min(time_left.saturating_sub(Duration::from_millis(500)))
            .max(Duration::from_millis(500));
        let mut leaders = self.leader_changes.subscribe();
        self.raft.runtime_config().heartbeat(false);
        let outcome = async {
            let ask = ForwardRequest::Campaign { for_ms: wait.as_millis() as u64 };
            let answer: Result<ForwardResponse, WireError> = self
                .rpc
                .call(addr, Service::Forward, &ask, Duration::from_secs(2))
                .await
                .map_err(|e| Error::Rpc(format!("asking {node} to take over: {e}")))?;
            answer.map_err(WireError::into_error)?;
            let moved = leaders.wait_for(|l| l.is_some_and(|l| l != self.self_id));
            match tokio::time::timeout(wait, moved).await {
                Ok(Ok(_)) => Ok(ForwardResponse::Done),
                Ok(Err(_)) => Err(Error::ShuttingDown),
                Err(_) => Err(Error::Rpc(format!("leadership did not move to {node} within {wait:?}"))),
            }
        }
        .await;
        self.raft.runtime_config().heartbeat(true);
        outcome
    }

    /// The target's side of a transfer: campaign until this server leads or `for_ms` passed.
    /// Each round waits a whole minimum election timeout: a new round raises the term, and the
    /// answers to the previous one would then be ignored.
    fn campaign(&self, for_ms: u64) {
        let raft = self.raft.clone();
        let round = self.tuning.election_timeout_min();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(for_ms.min(60_000));
            let metrics = raft.metrics();
            while tokio::time::Instant::now() < deadline {
                if metrics.borrow().state == ServerState::Leader {
                    return;
                }
                if raft.trigger().elect().await.is_err() {
                    return;
                }
                tokio::time::sleep(round).await;
            }
        });
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

    /// Sends `req` to leader `leader_id`. Gives up early — as an ambiguous failure, so the same
    /// request is retried — when metrics name another leader meanwhile: a paused or partitioned
    /// leader holds a connection open without ever answering.
    async fn forward(
        &self,
        leader_id: NodeId,
        leader: &ServerNode,
        req: ForwardRequest,
        time_left: Duration,
    ) -> Result<ForwardResponse, Failure> {
        let Ok(addr) = leader.rpc_addr.parse() else {
            return Err(Failure::Fatal(Error::Rpc(format!("bad leader address {:?}", leader.rpc_addr))));
        };
        let mut leader_changes = self.leader_changes.subscribe();
        let replaced = leader_changes.wait_for(|l| *l != Some(leader_id));
        // A little past our own deadline, so the leader's answer to a write that just made it
        // is not thrown away.
        let call = self.rpc.call::<_, Result<ForwardResponse, WireError>>(
            addr,
            Service::Forward,
            &req,
            time_left + Duration::from_millis(500),
        );
        let answer = tokio::select! {
            a = call => a,
            _ = replaced => return Err(Failure::Ambiguous(format!("leader {leader} was replaced"))),
            _ = self.closing.cancelled() => return Err(Failure::Ambiguous("agent stopping".into())),
        };
        match answer {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(WireError::NotLeader(_))) => Err(Failure::Retry),
            // Safe to repeat (the request id), but the first attempt may have been applied.
            Ok(Err(WireError::OutcomeUnknown(why))) => Err(Failure::Ambiguous(why)),
            Ok(Err(e)) => Err(Failure::Fatal(e.into_error())),
            Err(e) if e.not_delivered() => Err(Failure::Retry),
            Err(e) => Err(Failure::Ambiguous(e.to_string())),
        }
    }

    /// Answers a Raft message from another server (the [`Service::Raft`] RPC service).
    pub async fn handle_raft(&self, req: RaftRequest) -> RaftResponse {
        let error = |e: &dyn std::fmt::Display| RaftResponse::Error(e.to_string());
        match req {
            RaftRequest::AppendEntries(r) => {
                *self.last_leader_contact.lock() = Some(self.clock.now());
                match self.raft.append_entries(r).await {
                    Ok(resp) => RaftResponse::AppendEntries(resp),
                    Err(e) => error(&e),
                }
            }
            RaftRequest::Vote(r) => match self.raft.vote(r).await {
                Ok(resp) => RaftResponse::Vote(resp),
                Err(e) => error(&e),
            },
            RaftRequest::InstallSnapshot(r) => {
                *self.last_leader_contact.lock() = Some(self.clock.now());
                match self.raft.install_snapshot(r).await {
                    Ok(resp) => RaftResponse::InstallSnapshot(resp),
                    Err(e) => error(&e),
                }
            }
        }
    }

    /// Answers a request forwarded by another server or a client agent (the
    /// [`Service::Forward`] RPC service).
    pub async fn handle_forward(&self, req: ForwardRequest) -> Result<ForwardResponse, WireError> {
        if let ForwardRequest::ResolveToken(secret) = &req {
            let now = self.clock.unix_ms();
            let found = self.state.read(|d| d.acl.for_secret(secret, now));
            return Ok(ForwardResponse::Acl(found.map(Box::new)));
        }
        if let ForwardRequest::Campaign { for_ms } = req {
            self.campaign(for_ms);
            return Ok(ForwardResponse::Done);
        }
        if let ForwardRequest::ReadNode(node) = req {
            return match self.read_barrier(Consistency::Default).await {
                Ok(_) => Ok(ForwardResponse::Node(Box::new(self.state.read(|d| d.catalog.node_state(&node))))),
                Err(e) => Err(WireError::from_error(e)),
            };
        }
        if let ForwardRequest::ReadNodeExt(node) = req {
            return match self.read_barrier(Consistency::Default).await {
                Ok(_) => {
                    let state = self.state.read(|d| d.catalog.node_state(&node));
                    let ext = crate::state::ext_fields::NodeStateExt {
                        node: state.node.as_ref().map(|n| n.ext.clone()).unwrap_or_default(),
                        services: state.services.iter().map(|s| s.ext.clone()).collect(),
                    };
                    Ok(ForwardResponse::NodeExt(Box::new(state), crate::state::ext_fields::JsonText(ext)))
                }
                Err(e) => Err(WireError::from_error(e)),
            };
        }
        // One attempt: the forwarding server owns the retry loop (and the request id).
        match self.serve_as_leader(req, self.hold_timeout).await {
            Ok(resp) => Ok(resp),
            Err(Failure::Retry) => Err(WireError::NotLeader(self.leader())),
            // The write may have taken effect here (appended, then not confirmed): the
            // forwarding server must keep that ambiguity — it retries with the same request id
            // and, if time runs out, answers "outcome unknown", never "No cluster leader".
            Err(Failure::Ambiguous(why)) => Err(WireError::OutcomeUnknown(why)),
            Err(Failure::Fatal(e)) => Err(WireError::from_error(e)),
        }
    }
}

/// Unwraps what the dedup window may have answered for a tracked write.
pub(crate) fn settle_write(index: u64, resp: CommandResponse) -> Result<(u64, CommandResponse)> {
    let (index, resp) = match resp {
        CommandResponse::Replayed { index, response } => (index, *response),
        CommandResponse::Expired => {
            return Err(Error::OutcomeUnknown(
                "the request is older than the server's record of applied requests".into(),
            ));
        }
        resp => (index, resp),
    };
    match resp {
        // A refusal is the same on every server and changed nothing: the caller's error.
        CommandResponse::Failed(e) => Err(Error::Apply(e)),
        resp => Ok((index, resp)),
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

#[cfg(test)]
#[path = "consensus_tests.rs"]
mod tests;
