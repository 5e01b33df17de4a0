//! Anti-entropy (Consul's `agent/ae` and `agent/local.State.SyncChanges/SyncFull`): the agent is
//! authoritative for its own node. Local changes are pushed to the catalog at once (one Raft
//! entry carrying every pending change); a periodic full sync also compares the catalog's view of
//! this node with the local state, re-registers what differs and removes what the agent does not
//! know. Failed syncs are retried with backoff (up to 15 s, like Consul's retry). A reaper
//! deregisters services whose check has been critical longer than its
//! `DeregisterCriticalServiceAfter`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{LocalAgent, Snapshot};
use crate::replication::backend::Backend;
use crate::state::catalog::{
    DeregisterRequest, HealthCheck, Node, NodeState, RegisterRequest, ServiceInstance, CRITICAL,
};
use crate::state::command::{Command, CommandResponse};
use crate::state::ext_fields::NodeExt;
use crate::{Error, Result};

/// The node-level check maintained by the leader from gossip; never touched by anti-entropy.
const SERF_HEALTH: &str = "serfHealth";
/// The `consul` service the leader registers for each server; never touched by anti-entropy.
const CONSUL_SERVICE: &str = "consul";
const MAX_RETRY: Duration = Duration::from_secs(15);

/// Timing of the sync and reaper tasks.
#[derive(Debug, Clone, Copy)]
pub struct SyncTiming {
    /// Full-sync period.
    pub ae_interval: Duration,
    /// Reaper period.
    pub reap_interval: Duration,
    /// Smallest `DeregisterCriticalServiceAfter` honoured.
    pub deregister_min: Duration,
}

/// The node's catalog metadata: `node_meta`, plus the network segment key Consul's agents
/// always register (empty: the default segment).
fn node_meta(n: &crate::local::NodeInfo) -> BTreeMap<String, String> {
    let mut meta = n.meta.clone();
    meta.insert("consul-network-segment".into(), String::new());
    meta
}

fn node_registration(agent: &LocalAgent) -> Node {
    let n = &agent.node;
    let tagged: BTreeMap<String, String> =
        ["lan", "lan_ipv4", "wan", "wan_ipv4"].iter().map(|k| (k.to_string(), n.address.clone())).collect();
    Node {
        id: n.id.clone(),
        node: n.name.clone(),
        address: n.address.clone(),
        datacenter: n.datacenter.clone(),
        tagged_addresses: tagged,
        meta: node_meta(n),
        ext: NodeExt { locality: n.locality.clone() },
        ..Node::default()
    }
}

/// What one sync round will write, and how to mark it done.
#[derive(Default)]
struct Plan {
    commands: Vec<Command>,
    done: Vec<Done>,
    next_deferred: Option<std::time::Instant>,
}

/// What one command of the plan settles once applied (one entry per command, in order).
enum Done {
    Service(String, u64, Vec<(String, u64)>),
    NodeChecks(Vec<(String, u64)>),
    Removed(Option<String>, Option<String>),
}

fn plan_changes(node: &Node, snap: &Snapshot, node_dirty: bool) -> Plan {
    let now = std::time::Instant::now();
    let mut plan = Plan::default();
    for id in &snap.removed_services {
        plan.commands.push(Command::CatalogDeregister(DeregisterRequest {
            node: node.node.clone(),
            service_id: Some(id.clone()),
            check_id: None,
        }));
        plan.done.push(Done::Removed(Some(id.clone()), None));
    }
    for id in &snap.removed_checks {
        plan.commands.push(Command::CatalogDeregister(DeregisterRequest {
            node: node.node.clone(),
            service_id: None,
            check_id: Some(id.clone()),
        }));
        plan.done.push(Done::Removed(None, Some(id.clone())));
    }
    let ready = |c: &super::LocalCheck, plan: &mut Plan| -> bool {
        if c.synced_rev == c.rev {
            return false;
        }
        match c.defer_until {
            Some(t) if t > now && c.synced_rev != 0 => {
                plan.next_deferred = Some(plan.next_deferred.map_or(t, |n| n.min(t)));
                false
            }
            _ => true,
        }
    };
    // Checks ready to sync, grouped by service once (thousands of services and checks on one
    // agent would make a per-service scan of every check quadratic).
    let mut ready_by_service: std::collections::HashMap<&str, Vec<&super::LocalCheck>> = Default::default();
    for c in snap.checks.values() {
        if !c.def.service_id.is_empty() && ready(c, &mut Plan::default()) {
            ready_by_service.entry(c.def.service_id.as_str()).or_default().push(c);
        }
    }
    for (id, s) in &snap.services {
        let checks: Vec<&super::LocalCheck> = ready_by_service.remove(id.as_str()).unwrap_or_default();
        if s.synced_rev == s.rev && checks.is_empty() {
            continue;
        }
        let mut service = s.service.clone();
        service.node = node.node.clone();
        plan.commands.push(Command::CatalogRegister(Box::new(RegisterRequest {
            node: node.clone(),
            skip_node_update: false,
            service: Some(service),
            checks: checks.iter().map(|c| c.to_health_check(&node.node, &snap.services)).collect(),
        })));
        plan.done.push(Done::Service(id.clone(), s.rev, checks.iter().map(|c| (c.def.id.clone(), c.rev)).collect()));
    }
    let mut node_checks = Vec::new();
    for c in snap.checks.values() {
        // Service checks were handled with their service (deferred ones just record their time).
        if !c.def.service_id.is_empty() {
            let _ = ready(c, &mut plan);
            continue;
        }
        if ready(c, &mut plan) {
            node_checks.push(c);
        }
    }
    if !node_checks.is_empty() || node_dirty {
        plan.commands.push(Command::CatalogRegister(Box::new(RegisterRequest {
            node: node.clone(),
            skip_node_update: false,
            service: None,
            checks: node_checks.iter().map(|c| c.to_health_check(&node.node, &snap.services)).collect(),
        })));
        plan.done.push(Done::NodeChecks(node_checks.iter().map(|c| (c.def.id.clone(), c.rev)).collect()));
    }
    plan
}

/// Most commands per Raft entry: a big change (hundreds of services at start) is split so no
/// single log entry grows past a few hundred KiB.
const MAX_BATCH: usize = 64;

async fn execute(agent: &LocalAgent, backend: &Backend, plan: Plan) -> Result<()> {
    let mut failure = None;
    let mut done = plan.done.into_iter();
    let mut commands = plan.commands.into_iter().peekable();
    while commands.peek().is_some() {
        let chunk: Vec<Command> = commands.by_ref().take(MAX_BATCH).collect();
        let n = chunk.len();
        let (_, resp) = backend.write(Command::Batch(chunk)).await?;
        let CommandResponse::Batch(responses) = resp else {
            return Err(Error::Raft(format!("unexpected answer to an anti-entropy batch: {resp:?}")));
        };
        for (d, resp) in done.by_ref().take(n).zip(responses) {
            if let CommandResponse::Failed(msg) = resp {
                failure = Some(msg);
                continue;
            }
            match d {
                Done::Service(id, rev, checks) => {
                    agent.state.mark_service_synced(&id, rev);
                    for (cid, crev) in checks {
                        agent.state.mark_check_synced(&cid, crev);
                    }
                }
                Done::NodeChecks(checks) => {
                    for (cid, crev) in checks {
                        agent.state.mark_check_synced(&cid, crev);
                    }
                }
                Done::Removed(s, c) => agent.state.forget_removed(s.as_deref(), c.as_deref()),
            }
        }
    }
    match failure {
        Some(msg) => Err(Error::BadRequest(format!("catalog refused a sync: {msg}"))),
        None => Ok(()),
    }
}

fn same_service(local: &ServiceInstance, catalog: &ServiceInstance) -> bool {
    let mut c = catalog.clone();
    c.node.clear();
    c.create_index = 0;
    c.modify_index = 0;
    &c == local
}

fn same_check(local: &HealthCheck, catalog: &HealthCheck) -> bool {
    let mut c = catalog.clone();
    c.create_index = 0;
    c.modify_index = 0;
    &c == local
}

/// Compares the catalog with the local state; marks what differs and queues removals of what
/// the agent does not know. Returns whether the node entry itself needs writing.
fn compare_full(agent: &LocalAgent, catalog: NodeState, snap: &mut Snapshot) -> bool {
    let me = node_registration(agent);
    let NodeState { node, services, checks } = catalog;
    let node_dirty = match node {
        None => true,
        Some(n) => {
            n.address != me.address
                || n.id != me.id
                || n.tagged_addresses != me.tagged_addresses
                || n.meta != me.meta
                || n.ext != me.ext
        }
    };
    for s in &services {
        match snap.services.get_mut(&s.id) {
            None if s.id == CONSUL_SERVICE => {}
            None => {
                snap.removed_services.insert(s.id.clone());
            }
            // EnableTagOverride: tags edited in the catalog become the local tags.
            Some(local) if local.service.enable_tag_override && local.service.tags != s.tags => {
                agent.state.adopt_tags(&s.id, &s.tags);
                local.service.tags = s.tags.clone();
                if !same_service(&local.service, s) {
                    agent.state.mark_dirty(Some(&s.id), None);
                    local.synced_rev = 0;
                }
            }
            Some(local) if !same_service(&local.service, s) => {
                agent.state.mark_dirty(Some(&s.id), None);
                local.synced_rev = 0;
            }
            Some(_) => {}
        }
    }
    for s in snap.services.values_mut() {
        if !services.iter().any(|c| c.id == s.service.id) {
            agent.state.mark_dirty(Some(&s.service.id), None);
            s.synced_rev = 0;
        }
    }
    let rows: BTreeMap<String, HealthCheck> =
        snap.checks.iter().map(|(id, c)| (id.clone(), c.to_health_check(&me.node, &snap.services))).collect();
    for c in &checks {
        if c.check_id == SERF_HEALTH || (c.service_id == CONSUL_SERVICE && !snap.services.contains_key(CONSUL_SERVICE))
        {
            continue;
        }
        match rows.get(&c.check_id) {
            None => {
                snap.removed_checks.insert(c.check_id.clone());
            }
            Some(local) if !same_check(local, c) => {
                agent.state.mark_dirty(None, Some(&c.check_id));
                if let Some(l) = snap.checks.get_mut(&c.check_id) {
                    l.synced_rev = 0;
                    l.defer_until = None;
                }
            }
            Some(_) => {}
        }
    }
    for (id, l) in snap.checks.iter_mut() {
        if !checks.iter().any(|c| &c.check_id == id) {
            agent.state.mark_dirty(None, Some(id));
            l.synced_rev = 0;
            l.defer_until = None;
        }
    }
    node_dirty
}

/// Runs anti-entropy until `shutdown`.
pub(crate) async fn run(agent: Arc<LocalAgent>, backend: Backend, timing: SyncTiming, shutdown: CancellationToken) {
    let mut next_full = Instant::now();
    let mut backoff = Duration::from_millis(250);
    loop {
        let now = Instant::now();
        let mut full = now >= next_full;
        let mut read_failed = false;
        // A full round compares everything; the others push what is pending only.
        let mut snap = if full { agent.state.snapshot() } else { agent.state.pending_snapshot() };
        let node_dirty = if full {
            // A client agent reads the catalog from a server, which can fail; then this round
            // pushes the local changes only and the comparison is retried later.
            let read = tokio::select! {
                r = backend.read_node(&agent.node.name) => r,
                _ = shutdown.cancelled() => return,
            };
            match read {
                Ok(catalog) => compare_full(&agent, catalog, &mut snap),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "anti-entropy: reading the catalog failed");
                    full = false;
                    read_failed = true;
                    next_full = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_RETRY);
                    false
                }
            }
        } else {
            false
        };
        let round_rev = snap.rev;
        let plan = plan_changes(&node_registration(&agent), &snap, node_dirty);
        let deferred = plan.next_deferred;
        // A write can wait for a leader for up to rpc_hold_timeout; shutdown must not.
        let result = tokio::select! {
            r = execute(&agent, &backend, plan) => r,
            _ = shutdown.cancelled() => return,
        };
        let wake = match result {
            Ok(()) => {
                agent.state.mark_round_synced(round_rev);
                if !read_failed {
                    backoff = Duration::from_millis(250);
                }
                if full {
                    // Spread full syncs of many agents (Consul staggers them too).
                    let stagger = rand::thread_rng().gen_range(0..=timing.ae_interval.as_millis() as u64 / 16);
                    next_full = Instant::now() + timing.ae_interval + Duration::from_millis(stagger);
                }
                let d = deferred.map(Instant::from_std).unwrap_or(next_full);
                d.min(next_full)
            }
            Err(e) => {
                if e.is_retryable() {
                    tracing::debug!(error = %e, full, "anti-entropy sync failed; retrying");
                } else {
                    tracing::warn!(error = %e, full, "anti-entropy sync failed; retrying");
                }
                // No leader yet (start-up, election): retry soon, the write already waited for
                // one. Anything else backs off up to Consul's 15 s.
                let wake = Instant::now() + if e.is_retryable() { Duration::from_millis(500) } else { backoff };
                backoff = (backoff * 2).min(MAX_RETRY);
                if full {
                    next_full = wake;
                }
                wake
            }
        };
        tokio::select! {
            _ = agent.state.sync_requested() => {}
            _ = tokio::time::sleep_until(wake) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Deregisters services with a check critical for longer than its
/// `DeregisterCriticalServiceAfter` (raised to `deregister_min`), every `reap_interval`.
pub(crate) async fn reap(agent: Arc<LocalAgent>, timing: SyncTiming, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(timing.reap_interval) => {}
            _ = shutdown.cancelled() => return,
        }
        let snap = agent.state.snapshot();
        for c in snap.checks.values() {
            let (Some(after), Some(since)) = (c.def.deregister_critical_service_after, c.critical_since) else {
                continue;
            };
            if c.status != CRITICAL || c.def.service_id.is_empty() || since.elapsed() < after.max(timing.deregister_min)
            {
                continue;
            }
            tracing::info!(service = %c.def.service_id, check = %c.def.id, "deregistering service: check critical for longer than DeregisterCriticalServiceAfter");
            if let Err(e) = agent.deregister_service(&c.def.service_id) {
                if !matches!(e, Error::NotFound(_)) {
                    tracing::warn!(service = %c.def.service_id, error = %e, "could not deregister critical service");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::{CheckDefinition, LocalCheck, LocalService, Source};

    fn check(id: &str, service: &str, rev: u64, synced: u64, defer: Option<std::time::Instant>) -> LocalCheck {
        LocalCheck {
            def: CheckDefinition::manual(id, id, "", service, "passing"),
            source: Source::Api,
            status: "passing".into(),
            output: String::new(),
            rev,
            synced_rev: synced,
            defer_until: defer,
            critical_since: None,
            generation: rev,
            latency: None,
            latency_at_change: None,
        }
    }

    /// Anti-entropy compares the extras too: a catalog copy whose locality differs from the
    /// local definition (or lost it) is rewritten.
    #[test]
    fn a_locality_difference_is_a_difference() {
        use crate::state::ext_fields::{Locality, ServiceExt};
        let located = |zone: &str| ServiceExt {
            locality: Some(Locality { region: "r".into(), zone: zone.into() }),
            ..ServiceExt::default()
        };
        let local =
            ServiceInstance { id: "web".into(), service: "web".into(), ext: located("a"), ..Default::default() };
        let mut catalog = ServiceInstance { node: "n".into(), create_index: 3, modify_index: 4, ..local.clone() };
        assert!(same_service(&local, &catalog));
        catalog.ext = located("b");
        assert!(!same_service(&local, &catalog));
        catalog.ext = ServiceExt::default();
        assert!(!same_service(&local, &catalog));
    }

    #[test]
    fn one_settlement_per_command_and_deferred_output_waits() {
        let node = Node { node: "n".into(), address: "10.0.0.1".into(), ..Node::default() };
        let mut snap = Snapshot::default();
        let later = std::time::Instant::now() + Duration::from_secs(60);
        snap.services.insert(
            "web".into(),
            LocalService {
                service: ServiceInstance { id: "web".into(), service: "web".into(), ..Default::default() },
                source: Source::Api,
                rev: 2,
                synced_rev: 0,
            },
        );
        snap.checks.insert("a".into(), check("a", "", 3, 0, None));
        snap.checks.insert("b".into(), check("b", "", 4, 1, None));
        snap.checks.insert("c".into(), check("c", "", 5, 1, Some(later)));
        snap.checks.insert("w".into(), check("w", "web", 6, 0, None));
        snap.removed_services.insert("old".into());
        let plan = plan_changes(&node, &snap, false);
        assert_eq!(plan.commands.len(), plan.done.len());
        // Removal, the service with its check, the node checks a and b (c waits).
        assert_eq!(plan.commands.len(), 3);
        let node_checks = plan.commands.iter().find_map(|c| match c {
            Command::CatalogRegister(r) if r.service.is_none() => {
                Some(r.checks.iter().map(|c| c.check_id.clone()).collect::<Vec<_>>())
            }
            _ => None,
        });
        assert_eq!(node_checks, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(plan.next_deferred, Some(later));
        // Nothing pending: nothing to write (a never-synced check is not deferred).
        let mut quiet = Snapshot::default();
        quiet.checks.insert("n".into(), check("n", "", 1, 0, Some(later)));
        assert_eq!(plan_changes(&node, &quiet, false).commands.len(), 1);
        quiet.checks.insert("n".into(), check("n", "", 1, 1, None));
        assert!(plan_changes(&node, &quiet, false).commands.is_empty());
    }
}
