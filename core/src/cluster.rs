//! Cluster formation: who the servers are, when to bootstrap Raft, and adding servers to it.
//!
//! Agents answer joins on the serf_lan port (the gossip issue later runs SWIM there). A join or a
//! periodic push/pull swaps member lists, so every server learns of every other. Then:
//! - `bootstrap`: a lone server initialises Raft with itself.
//! - `bootstrap_expect = N`: once N servers of the datacenter know of each other and none of
//!   them belongs to a formed cluster yet, the one with the lowest Raft id initialises Raft with
//!   all of them; the others wait to be contacted by the new leader. Deterministic, so no two
//!   clusters form.
//! - The leader adds every live server it hears of that is not in the configuration yet, first
//!   as a learner, then as a voter once it has caught up (Consul's autopilot does the same).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::consensus::Consensus;
use crate::raft;
use crate::rpc::messages::{MemberInfo, WireError};
use crate::rpc::{Request, Response, RpcClient};

/// The default serf_lan port, used when a join address has no port.
pub const DEFAULT_SERF_LAN_PORT: u16 = 8301;
/// How long a member may go unanswered before it no longer counts as alive.
const ALIVE_WINDOW: Duration = Duration::from_secs(5);

/// Settings for cluster formation.
#[derive(Debug, Clone)]
pub struct FormationConfig {
    /// Initialise a single-server cluster at once.
    pub bootstrap: bool,
    /// Wait for this many servers, then initialise.
    pub bootstrap_expect: u32,
    /// Addresses to join.
    pub retry_join: Vec<String>,
    /// Time between join rounds.
    pub retry_interval: Duration,
    /// Join rounds before giving up (0 = forever).
    pub retry_max: u32,
}

/// Membership state and the tasks that act on it.
#[derive(Debug)]
pub struct Cluster {
    me: Mutex<MemberInfo>,
    members: Mutex<HashMap<Uuid, MemberInfo>>,
    last_seen: Mutex<HashMap<Uuid, Instant>>,
    consensus: Arc<Consensus>,
    rpc: RpcClient,
    formation: FormationConfig,
}

impl Cluster {
    /// A cluster view holding only this agent.
    pub fn new(me: MemberInfo, consensus: Arc<Consensus>, rpc: RpcClient, formation: FormationConfig) -> Arc<Self> {
        Arc::new(Cluster {
            me: Mutex::new(me),
            members: Mutex::default(),
            last_seen: Mutex::default(),
            consensus,
            rpc,
            formation,
        })
    }

    /// This agent's own record.
    pub fn me(&self) -> MemberInfo {
        self.me.lock().clone()
    }

    /// Every known member, this agent included, sorted by name.
    pub fn members(&self) -> Vec<MemberInfo> {
        let mut all: Vec<MemberInfo> = self.members.lock().values().cloned().collect();
        all.push(self.me());
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn merge(&self, info: MemberInfo) {
        if info.node_id == self.me.lock().node_id {
            return;
        }
        let mut members = self.members.lock();
        match members.get(&info.node_id) {
            Some(existing) if existing.incarnation > info.incarnation => {}
            Some(existing) if existing.incarnation == info.incarnation && existing == &info => {}
            _ => {
                tracing::debug!(member = %info.name, addr = %info.serf_addr, "member update");
                members.insert(info.node_id, info);
            }
        }
    }

    fn alive(&self, id: &Uuid) -> bool {
        self.last_seen.lock().get(id).is_some_and(|t| t.elapsed() < ALIVE_WINDOW)
    }

    /// Answers a request that arrived on the serf_lan port.
    pub fn handle_rpc(self: &Arc<Self>, req: Request) -> BoxFuture<'static, Response> {
        let this = self.clone();
        Box::pin(async move {
            match req {
                Request::Join(info) => {
                    tracing::info!(member = %info.name, addr = %info.serf_addr, "member joined");
                    this.last_seen.lock().insert(info.node_id, Instant::now());
                    this.merge(info);
                    Response::Members(this.members())
                }
                Request::PushPull(list) => {
                    if let Some(sender) = list.first() {
                        this.last_seen.lock().insert(sender.node_id, Instant::now());
                    }
                    for info in list {
                        this.merge(info);
                    }
                    Response::Members(this.members())
                }
                _ => Response::Error(WireError::BadRequest("only membership requests are served on serf_lan".into())),
            }
        })
    }

    /// Joins the agents at `addrs` (`host` or `host:port`); returns how many answered.
    pub async fn join(&self, addrs: &[String]) -> usize {
        let mut joined = 0;
        for addr in addrs {
            let targets = match resolve(addr).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "cannot resolve join address");
                    continue;
                }
            };
            for target in targets {
                if target == self.me.lock().serf_addr {
                    continue;
                }
                match self.rpc.call(target, Request::Join(self.me()), Duration::from_secs(3)).await {
                    Ok(Response::Members(list)) => {
                        joined += 1;
                        for m in list {
                            if m.serf_addr == target {
                                self.last_seen.lock().insert(m.node_id, Instant::now());
                            }
                            self.merge(m);
                        }
                        break;
                    }
                    Ok(other) => tracing::warn!(%target, "unexpected join answer: {other:?}"),
                    Err(e) => tracing::debug!(%target, error = %e, "join attempt failed"),
                }
            }
        }
        joined
    }

    /// Runs every cluster task until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let join = self.clone().join_loop(shutdown.clone());
        let gossip = self.clone().push_pull_loop(shutdown.clone());
        let form = self.clone().bootstrap_loop(shutdown.clone());
        let reconcile = self.clone().reconcile_loop(shutdown.clone());
        tokio::join!(join, gossip, form, reconcile);
    }

    async fn join_loop(self: Arc<Self>, shutdown: CancellationToken) {
        if self.formation.retry_join.is_empty() {
            return;
        }
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if self.join(&self.formation.retry_join).await > 0 {
                tracing::info!(addrs = ?self.formation.retry_join, "join completed");
                return;
            }
            if self.formation.retry_max > 0 && attempt >= self.formation.retry_max {
                tracing::error!(attempts = attempt, "retry_join: giving up; no address answered");
                return;
            }
            tracing::warn!(attempt, retry_in = ?self.formation.retry_interval, "join failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(self.formation.retry_interval) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn push_pull_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(1000));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let initialized = self.consensus.raft().is_initialized().await.unwrap_or(false);
            self.me.lock().raft_initialized = initialized;
            let mut list = vec![self.me()];
            let peers: Vec<MemberInfo> = self.members.lock().values().cloned().collect();
            list.extend(peers.iter().cloned());
            let calls = peers.into_iter().map(|peer| {
                let this = self.clone();
                let list = list.clone();
                async move {
                    if let Ok(Response::Members(theirs)) =
                        this.rpc.call(peer.serf_addr, Request::PushPull(list), Duration::from_secs(1)).await
                    {
                        this.last_seen.lock().insert(peer.node_id, Instant::now());
                        for m in theirs {
                            this.merge(m);
                        }
                    }
                }
            });
            futures::future::join_all(calls).await;
        }
    }

    async fn bootstrap_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let me = self.me();
        if !me.server || (!self.formation.bootstrap && self.formation.bootstrap_expect == 0) {
            return;
        }
        loop {
            if self.consensus.raft().is_initialized().await.unwrap_or(true) {
                return;
            }
            if self.formation.bootstrap {
                let nodes = BTreeMap::from([(me.raft_id(), me.server_node())]);
                match raft::initialize(self.consensus.raft(), nodes).await {
                    Ok(()) => tracing::info!("bootstrapped a single-server cluster"),
                    Err(e) => tracing::error!(error = %e, "bootstrap failed"),
                }
                return;
            }
            let servers: Vec<MemberInfo> =
                self.members().into_iter().filter(|m| m.server && m.datacenter == me.datacenter).collect();
            let expect = self.formation.bootstrap_expect as usize;
            let someone_formed = servers.iter().any(|m| m.raft_initialized && m.node_id != me.node_id);
            if servers.len() >= expect && !someone_formed {
                let lowest = servers.iter().map(MemberInfo::raft_id).min();
                if lowest == Some(me.raft_id()) {
                    let nodes: BTreeMap<_, _> = servers.iter().map(|m| (m.raft_id(), m.server_node())).collect();
                    tracing::info!(servers = nodes.len(), "bootstrap_expect reached; forming the cluster");
                    if let Err(e) = raft::initialize(self.consensus.raft(), nodes).await {
                        tracing::error!(error = %e, "bootstrap failed");
                    }
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn reconcile_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let me = self.me();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.cancelled() => return,
            }
            if !me.server || !self.consensus.is_leader() {
                continue;
            }
            if let Err(e) = self.reconcile_once(&me).await {
                tracing::warn!(error = %e, "adding servers to raft failed; will retry");
            }
        }
    }

    async fn reconcile_once(&self, me: &MemberInfo) -> crate::Result<()> {
        let metrics = self.consensus.metrics();
        let in_config = raft::membership_nodes(&metrics);
        let candidates: Vec<MemberInfo> = self
            .members
            .lock()
            .values()
            .filter(|m| m.server && m.datacenter == me.datacenter)
            .filter(|m| !in_config.contains_key(&m.raft_id()))
            .cloned()
            .collect();
        for m in candidates {
            if self.alive(&m.node_id) {
                tracing::info!(server = %m.name, "adding server to raft as a learner");
                raft::add_learner(self.consensus.raft(), m.raft_id(), m.server_node()).await?;
            }
        }
        // Promote learners that have caught up.
        let last = metrics.last_log_index.unwrap_or(0);
        let voters: BTreeSet<u64> = metrics.membership_config.membership().voter_ids().collect();
        let caught_up: Vec<u64> = metrics
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(id, matched)| !voters.contains(id) && matched.map(|l| l.index).unwrap_or(0) + 64 >= last)
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default();
        if !caught_up.is_empty() {
            let mut new_voters = voters;
            new_voters.extend(caught_up.iter().copied());
            tracing::info!(?caught_up, "promoting caught-up learners to voters");
            raft::set_voters(self.consensus.raft(), new_voters).await?;
        }
        Ok(())
    }
}

/// Resolves `host` or `host:port` (serf_lan port by default).
pub async fn resolve(addr: &str) -> std::io::Result<Vec<SocketAddr>> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(vec![sa]);
    }
    if let Ok(ip) = addr.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, DEFAULT_SERF_LAN_PORT)]);
    }
    let with_port = if addr.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        addr.to_string()
    } else {
        format!("{addr}:{DEFAULT_SERF_LAN_PORT}")
    };
    Ok(tokio::net::lookup_host(with_port).await?.collect())
}
