//! The datacenter as the gossip pool sees it: who the servers are, when to bootstrap Raft,
//! adding and removing servers, and (on the leader) reflecting membership into the catalog.
//!
//! Membership comes from [`crate::membership::gossip`]. On top of it:
//! - `bootstrap`: a lone server initialises Raft with itself.
//! - `bootstrap_expect = N`: once N alive servers of the datacenter are in the pool and none of
//!   them belongs to a formed cluster yet (a gossip tag), the one with the lowest Raft id
//!   initialises Raft with all of them; the others wait to be contacted by the new leader.
//!   Deterministic, so no two clusters form.
//! - The leader adds every alive server it hears of that is not in the configuration yet as a
//!   learner, and removes servers that left gracefully. Autopilot
//!   ([`crate::replication::autopilot`]) promotes learners once they have been healthy for
//!   `server_stabilization_time` and removes failed servers; this module gathers its facts
//!   (gossip status, replication progress, last contact) and carries out its plan.
//! - The leader reconciles members into the catalog (Consul's `leader.go` `reconcileMember`):
//!   alive → node registered with a passing `serfHealth` check, failed → `serfHealth` critical
//!   (which invalidates sessions tied to it), left or reaped → node deregistered.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::membership::gossip::MemberInfo;
use crate::membership::gossip::{Gossip, Member, MemberStatus};
use crate::membership::wan::WanPool;
use crate::replication::autopilot::{self, SerfStatus, ServerFacts, Tracker};
use crate::replication::consensus::Consensus;
use crate::replication::raft;
use crate::state::autopilot::{AutopilotConfig, AutopilotOp};
use crate::state::catalog::{
    DeregisterRequest, HealthCheck, Node, RegisterRequest, ServiceInstance, CRITICAL, PASSING,
};
use crate::state::command::Command;

/// The default serf_lan port, used when a join address has no port.
pub const DEFAULT_SERF_LAN_PORT: u16 = 8301;
/// The node-level check the leader keeps from gossip.
pub const SERF_HEALTH: &str = "serfHealth";
const SERF_ALIVE: &str = "Agent alive and reachable";
const SERF_DEAD: &str = "Agent not live or unreachable";

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
    /// The agent configuration's `autopilot {}` block: what the first leader seeds the
    /// replicated autopilot configuration with.
    pub autopilot: AutopilotConfig,
}

/// Membership-driven tasks of an agent.
#[derive(Debug)]
pub struct Cluster {
    gossip: Arc<Gossip>,
    /// Raft, on servers; `None` on client agents.
    consensus: Option<Arc<Consensus>>,
    formation: FormationConfig,
    /// Since when each server has been healthy (leader only).
    health: parking_lot::Mutex<Tracker>,
    /// The WAN pool, on servers that run one.
    wan: Option<Arc<WanPool>>,
}

impl Cluster {
    /// Cluster tasks over a gossip pool member.
    pub fn new(
        gossip: Arc<Gossip>,
        consensus: Option<Arc<Consensus>>,
        formation: FormationConfig,
        wan: Option<Arc<WanPool>>,
    ) -> Arc<Self> {
        Arc::new(Cluster { gossip, consensus, formation, health: parking_lot::Mutex::default(), wan })
    }

    /// The WAN pool: `None` on client agents and servers with `ports.serf_wan = -1`.
    pub fn wan(&self) -> Option<&Arc<WanPool>> {
        self.wan.as_ref()
    }

    /// Leaves the LAN pool and, on a server, the WAN pool gracefully (both intents spread
    /// together, then one propagation delay each).
    pub async fn leave(&self) {
        match &self.wan {
            Some(wan) => {
                tokio::join!(self.gossip.leave(), wan.gossip().leave());
            }
            None => self.gossip.leave().await,
        }
    }

    /// The gossip pool.
    pub fn gossip(&self) -> &Arc<Gossip> {
        &self.gossip
    }

    /// This agent's own record.
    pub fn me(&self) -> MemberInfo {
        self.gossip.me()
    }

    /// Every known member, this agent included, sorted by name.
    pub fn members(&self) -> Vec<Member> {
        self.gossip.members()
    }

    /// Alive servers of this agent's datacenter (where a client agent sends its requests).
    pub fn servers(&self) -> Vec<MemberInfo> {
        let dc = self.me().datacenter;
        self.members()
            .into_iter()
            .filter(|m| m.status == MemberStatus::Alive && m.info.server && m.info.datacenter == dc)
            .map(|m| m.info)
            .collect()
    }

    /// Joins the agents at `addrs` (`host` or `host:port`); how many answered, or why none did.
    pub async fn join(&self, addrs: &[String]) -> Result<usize, crate::membership::gossip::driver::JoinError> {
        self.gossip.join(addrs).await
    }

    /// Runs every cluster task until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let join = self.clone().join_loop(shutdown.clone());
        let tags = self.clone().raft_tag_loop(shutdown.clone());
        let form = self.clone().bootstrap_loop(shutdown.clone());
        let reconcile = self.clone().reconcile_loop(shutdown.clone());
        tokio::join!(join, tags, form, reconcile);
    }

    async fn join_loop(self: Arc<Self>, shutdown: CancellationToken) {
        if self.formation.retry_join.is_empty() {
            return;
        }
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.join(&self.formation.retry_join).await {
                Ok(n) if n > 0 => {
                    tracing::info!(addrs = ?self.formation.retry_join, "join completed");
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(attempt, error = %e, retry_in = ?self.formation.retry_interval, "join failed"),
            }
            if self.formation.retry_max > 0 && attempt >= self.formation.retry_max {
                tracing::error!(attempts = attempt, "retry_join: giving up; no address answered");
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.formation.retry_interval) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Publishes "my Raft state is initialised" as a gossip tag, which `bootstrap_expect` reads.
    async fn raft_tag_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(consensus) = self.consensus.clone() else { return };
        loop {
            let initialized = consensus.raft().is_initialized().await.unwrap_or(false);
            let me = self.me();
            if initialized != me.raft_initialized {
                self.gossip.update_identity(MemberInfo { raft_initialized: initialized, ..me });
            }
            if initialized {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn bootstrap_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(consensus) = self.consensus.clone() else { return };
        let me = self.me();
        if !me.server || (!self.formation.bootstrap && self.formation.bootstrap_expect == 0) {
            return;
        }
        loop {
            if consensus.raft().is_initialized().await.unwrap_or(true) {
                return;
            }
            if self.formation.bootstrap {
                let nodes = BTreeMap::from([(me.raft_id(), me.server_node())]);
                match raft::initialize(consensus.raft(), nodes).await {
                    Ok(()) => tracing::info!("bootstrapped a single-server cluster"),
                    Err(e) => tracing::error!(error = %e, "bootstrap failed"),
                }
                return;
            }
            let servers = self.servers();
            let expect = self.formation.bootstrap_expect as usize;
            let someone_formed = servers.iter().any(|m| m.raft_initialized && m.node_id != me.node_id);
            if servers.len() >= expect && !someone_formed {
                let lowest = servers.iter().map(MemberInfo::raft_id).min();
                if lowest == Some(me.raft_id()) {
                    let nodes: BTreeMap<_, _> = servers.iter().map(|m| (m.raft_id(), m.server_node())).collect();
                    tracing::info!(servers = nodes.len(), "bootstrap_expect reached; forming the cluster");
                    if let Err(e) = raft::initialize(consensus.raft(), nodes).await {
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
        let Some(consensus) = self.consensus.clone() else { return };
        let mut changes = self.gossip.member_changes();
        // A new leader registers the members (itself, its serfHealth check, the `consul`
        // service) right after its election, not on the next tick: clients look for them as
        // soon as a leader is known.
        let mut leaders = consensus.leader_changes();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = changes.changed() => {}
                _ = leaders.changed() => {}
                _ = shutdown.cancelled() => return,
            }
            if !consensus.is_leader() {
                continue;
            }
            if let Err(e) = self.reconcile_raft(&consensus).await {
                tracing::warn!(error = %e, "reconciling raft servers failed; will retry");
            }
            if let Err(e) = self.reconcile_catalog(&consensus).await {
                tracing::warn!(error = %e, "reconciling members into the catalog failed; will retry");
            }
        }
    }

    async fn reconcile_raft(&self, consensus: &Consensus) -> crate::Result<()> {
        let me = self.me();
        let metrics = consensus.metrics();
        let in_config = raft::membership_nodes(&metrics);
        let members = self.members();
        for m in &members {
            let i = &m.info;
            if !i.server || i.datacenter != me.datacenter {
                continue;
            }
            match m.status {
                MemberStatus::Alive if !in_config.contains_key(&i.raft_id()) => {
                    tracing::info!(server = %i.name, "adding server to raft as a learner");
                    raft::add_learner(consensus.raft(), i.raft_id(), i.server_node()).await?;
                }
                MemberStatus::Left if in_config.contains_key(&i.raft_id()) && i.node_id != me.node_id => {
                    tracing::info!(server = %i.name, "server left; removing it from the raft configuration");
                    consensus.remove_peer(i.raft_id()).await?;
                }
                _ => {}
            }
        }
        self.run_autopilot(consensus, &members).await
    }

    /// One autopilot pass: judge every server of the Raft configuration, publish the result
    /// for the operator API, promote and remove as planned.
    async fn run_autopilot(&self, consensus: &Consensus, members: &[Member]) -> crate::Result<()> {
        let config = match consensus.state().read(|d| d.autopilot.clone()) {
            Some(config) => config,
            None => {
                // The first leader seeds the replicated configuration from its own.
                consensus.write(Command::Autopilot(AutopilotOp::Seed(self.formation.autopilot.clone()))).await?;
                self.formation.autopilot.clone()
            }
        };
        let settings = autopilot::Settings::new(&config, consensus.tuning().heartbeat());
        let metrics = consensus.metrics();
        let dc = self.me().datacenter;
        let by_id: BTreeMap<u64, &Member> = members
            .iter()
            .filter(|m| m.info.server && m.info.datacenter == dc)
            .map(|m| (m.info.raft_id(), m))
            .collect();
        let now = consensus.clock().now();
        let last = metrics.last_log_index.unwrap_or(0);
        let term = metrics.current_term;
        let self_id = consensus.self_id();
        let facts: Vec<ServerFacts> = raft::membership_nodes(&metrics)
            .into_iter()
            .map(|(id, node)| {
                let serf = by_id.get(&id).map_or(SerfStatus::None, |m| serf_status(m.status));
                let (last_contact, last_index, last_term) = if id == self_id {
                    (Some(Duration::ZERO), last, term)
                } else {
                    let matched = metrics.replication.as_ref().and_then(|r| r.get(&id).copied().flatten());
                    (
                        consensus.last_ack(id).map(|t| now.saturating_duration_since(t)),
                        matched.map_or(0, |l| l.index),
                        matched.map_or(0, |l| l.leader_id.term),
                    )
                };
                ServerFacts {
                    id,
                    node_id: node.node_id,
                    name: node.name,
                    address: node.rpc_addr,
                    serf,
                    voter: raft::is_voter(&metrics, id),
                    leader: id == self_id,
                    last_contact,
                    last_index,
                    last_term,
                    meta: BTreeMap::new(),
                }
            })
            .collect();
        let health = self.health.lock().assess(facts, last, term, &settings, now, consensus.clock().unix_ms());
        let plan = autopilot::plan(&health, &settings);
        consensus.publish_autopilot(health);
        if !plan.promote.is_empty() {
            let mut voters: BTreeSet<u64> = metrics.membership_config.membership().voter_ids().collect();
            voters.extend(plan.promote.iter().copied());
            tracing::info!(promote = ?plan.promote, "autopilot: promoting stable servers to voters");
            raft::set_voters(consensus.raft(), voters).await?;
        }
        for id in plan.remove {
            tracing::warn!(server = id, "autopilot: removing a failed server from the raft configuration");
            consensus.remove_peer(id).await?;
        }
        Ok(())
    }

    /// One pass of Consul's member reconciliation; writes only what differs, in one batch.
    async fn reconcile_catalog(&self, consensus: &Consensus) -> crate::Result<()> {
        let dc = self.me().datacenter;
        let members: BTreeMap<String, Member> =
            self.members().into_iter().filter(|m| m.info.datacenter == dc).map(|m| (m.info.name.clone(), m)).collect();
        let commands = consensus.state().read(|d| plan_reconcile(&members, &d.catalog));
        if commands.is_empty() {
            return Ok(());
        }
        tracing::debug!(changes = commands.len(), "reconciling members into the catalog");
        for chunk in commands.chunks(64) {
            consensus.write(Command::Batch(chunk.to_vec())).await?;
        }
        Ok(())
    }
}

fn serf_status(status: MemberStatus) -> SerfStatus {
    match status {
        MemberStatus::Alive => SerfStatus::Alive,
        MemberStatus::Leaving => SerfStatus::Leaving,
        MemberStatus::Left => SerfStatus::Left,
        MemberStatus::Failed => SerfStatus::Failed,
    }
}

fn serf_check(node: &str, status: &str) -> HealthCheck {
    HealthCheck {
        node: node.to_string(),
        check_id: SERF_HEALTH.into(),
        name: "Serf Health Status".into(),
        status: status.into(),
        output: if status == PASSING { SERF_ALIVE } else { SERF_DEAD }.into(),
        ..HealthCheck::default()
    }
}

/// What the catalog needs so it matches gossip membership.
fn plan_reconcile(members: &BTreeMap<String, Member>, catalog: &crate::state::catalog::Catalog) -> Vec<Command> {
    let mut out = Vec::new();
    for (name, m) in members {
        let existing = catalog.checks.get(&(name.clone(), SERF_HEALTH.to_string()));
        match m.status {
            MemberStatus::Alive | MemberStatus::Leaving | MemberStatus::Failed => {
                let status = if m.status == MemberStatus::Failed { CRITICAL } else { PASSING };
                let node_known = catalog.nodes.contains_key(name);
                let check_ok = existing.is_some_and(|c| c.status == status);
                let consul_ok = !m.info.server
                    || m.status == MemberStatus::Failed
                    || catalog
                        .services
                        .get(&(name.clone(), "consul".to_string()))
                        .is_some_and(|s| s.port == m.info.rpc_addr.port());
                if node_known && check_ok && consul_ok {
                    continue;
                }
                if !node_known && m.status == MemberStatus::Failed {
                    // Never registered while alive; nothing to mark.
                    continue;
                }
                let addr = m.info.serf_addr.ip().to_string();
                let service = (m.info.server && m.status != MemberStatus::Failed).then(|| ServiceInstance {
                    node: name.clone(),
                    id: "consul".into(),
                    service: "consul".into(),
                    port: m.info.rpc_addr.port(),
                    ..ServiceInstance::default()
                });
                out.push(Command::CatalogRegister(Box::new(RegisterRequest {
                    node: Node {
                        id: m.info.node_id.to_string(),
                        node: name.clone(),
                        address: addr,
                        datacenter: m.info.datacenter.clone(),
                        ..Node::default()
                    },
                    // The agent's anti-entropy owns the node's address, tagged addresses, meta and
                    // locality. Always "create if missing", never "replace": this plan was made from
                    // a snapshot, and the agent's own registration may land before it is applied.
                    skip_node_update: true,
                    service,
                    checks: vec![serf_check(name, status)],
                })));
            }
            MemberStatus::Left => {
                if catalog.nodes.contains_key(name) {
                    out.push(Command::CatalogDeregister(DeregisterRequest {
                        node: name.clone(),
                        ..Default::default()
                    }));
                }
            }
        }
    }
    // Reaped: nodes that gossip once managed (they carry serfHealth) but no longer knows.
    for (node, check_id) in catalog.checks.keys() {
        if check_id == SERF_HEALTH && !members.contains_key(node) {
            out.push(Command::CatalogDeregister(DeregisterRequest { node: node.clone(), ..Default::default() }));
        }
    }
    out
}

/// Resolves `host` or `host:port` (serf_lan port by default).
pub async fn resolve(addr: &str) -> std::io::Result<Vec<SocketAddr>> {
    resolve_with_port(addr, DEFAULT_SERF_LAN_PORT).await
}

/// Resolves `host` or `host:port`, with `default_port` when none is given (the pool's own).
pub async fn resolve_with_port(addr: &str, default_port: u16) -> std::io::Result<Vec<SocketAddr>> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(vec![sa]);
    }
    if let Ok(ip) = addr.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, default_port)]);
    }
    let with_port = if addr.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        addr.to_string()
    } else {
        format!("{addr}:{default_port}")
    };
    Ok(tokio::net::lookup_host(with_port).await?.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::catalog::Catalog;

    fn member(name: &str, server: bool, status: MemberStatus) -> Member {
        Member {
            info: MemberInfo {
                node_id: uuid::Uuid::new_v4(),
                name: name.into(),
                datacenter: "dc1".into(),
                rpc_addr: "127.0.0.1:8300".parse().expect("test setup"),
                serf_addr: "127.0.0.1:8301".parse().expect("test setup"),
                http_addr: "127.0.0.1:8500".parse().expect("test setup"),
                server,
                bootstrap_expect: 0,
                raft_initialized: false,
                incarnation: 1,
                wan_addr: None,
            },
            status,
            since: std::time::Instant::now(),
        }
    }

    fn apply(catalog: &mut Catalog, cmds: &[Command]) {
        for (i, c) in cmds.iter().enumerate() {
            match c {
                Command::CatalogRegister(r) => {
                    catalog.register(r, 10 + i as u64).expect("test setup");
                }
                Command::CatalogDeregister(r) => {
                    catalog.deregister(r, 10 + i as u64);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn a_plan_made_before_the_agent_registered_keeps_the_agents_node_data() {
        let mut catalog = Catalog::default();
        let members: BTreeMap<String, Member> =
            [member("c1", false, MemberStatus::Alive)].into_iter().map(|m| (m.info.name.clone(), m)).collect();
        // The leader plans while the node is still unknown...
        let cmds = plan_reconcile(&members, &catalog);
        // ...the agent's first anti-entropy sync lands first, with its meta and tagged addresses...
        let node = Node {
            node: "c1".into(),
            address: "127.0.0.1".into(),
            datacenter: "dc1".into(),
            meta: [("rack".to_string(), "r1".to_string())].into(),
            tagged_addresses: [("wan".to_string(), "127.0.0.1".to_string())].into(),
            ..Node::default()
        };
        catalog
            .register(&RegisterRequest { node, skip_node_update: false, service: None, checks: vec![] }, 5)
            .expect("test setup");
        // ...and the leader's registration must add serfHealth without replacing the node.
        apply(&mut catalog, &cmds);
        let n = &catalog.nodes["c1"];
        assert_eq!(n.meta.get("rack").map(String::as_str), Some("r1"), "{n:?}");
        assert_eq!(n.tagged_addresses.get("wan").map(String::as_str), Some("127.0.0.1"), "{n:?}");
        assert_eq!(catalog.checks[&("c1".into(), SERF_HEALTH.into())].status, PASSING);
    }

    #[test]
    fn alive_failed_left_and_reaped_members_map_onto_the_catalog() {
        let mut catalog = Catalog::default();
        let mut members: BTreeMap<String, Member> =
            [member("s1", true, MemberStatus::Alive), member("c1", false, MemberStatus::Alive)]
                .into_iter()
                .map(|m| (m.info.name.clone(), m))
                .collect();
        let cmds = plan_reconcile(&members, &catalog);
        assert_eq!(cmds.len(), 2);
        apply(&mut catalog, &cmds);
        assert_eq!(catalog.checks[&("c1".into(), SERF_HEALTH.into())].status, PASSING);
        assert!(catalog.services.contains_key(&("s1".into(), "consul".into())));
        assert!(plan_reconcile(&members, &catalog).is_empty(), "a second pass writes nothing");

        members.get_mut("c1").expect("test setup").status = MemberStatus::Failed;
        let cmds = plan_reconcile(&members, &catalog);
        apply(&mut catalog, &cmds);
        assert_eq!(catalog.checks[&("c1".into(), SERF_HEALTH.into())].status, CRITICAL);

        members.get_mut("c1").expect("test setup").status = MemberStatus::Left;
        let cmds = plan_reconcile(&members, &catalog);
        apply(&mut catalog, &cmds);
        assert!(!catalog.nodes.contains_key("c1"));

        members.remove("s1");
        let cmds = plan_reconcile(&members, &catalog);
        apply(&mut catalog, &cmds);
        assert!(catalog.nodes.is_empty());
    }
}
