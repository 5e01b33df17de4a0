//! The agent's local state: the services and checks this node runs (Consul's `agent/local`).
//!
//! This is the source of truth for this node; the catalog holds a replica that anti-entropy
//! ([`sync`]) keeps equal to it. Every entry carries a revision and the revision last synced, so
//! the sync task knows what to push without ever marking a change made during an in-flight
//! write as synced. API-registered entries are persisted under the data dir (`persist`);
//! config-file entries are not (they come back from the config) and are replaced on reload.
//!
//! Owns the agent's registrations, their persistence, the check runners ([`checks`]) and
//! anti-entropy. May call: [`crate::replication`] (catalog writes and reads through a
//! [`crate::replication::backend::Backend`]), [`crate::wire`] (registration parsing),
//! [`crate::state`] and the leaf modules; what it needs of the agent's configuration arrives as a
//! [`LocalConfig`]. Never membership or the API.

pub(crate) mod checks;
pub mod def;
mod defaults;
pub mod metric_rules;
pub(crate) mod persist;
#[cfg(test)]
mod proxy_tests;
pub mod sidecar;
pub mod sync;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

pub use def::{
    parse_check_registration, parse_service_registration, CheckDefinition, CheckKind, ServiceDefinition, Source,
};
use persist::{Persist, PersistedCheck, PersistedService, Record};

use crate::local::checks::Runner;
use crate::replication::backend::Backend;
use crate::state::catalog::{HealthCheck, ServiceInstance, CRITICAL, MEASURED_LATENCY, PASSING, WARNING};
use crate::{Error, Result};

/// Check ID of node maintenance mode.
pub const NODE_MAINTENANCE: &str = "_node_maintenance";
/// Check ID prefix of service maintenance mode (`_service_maintenance:<service id>`).
pub const SERVICE_MAINTENANCE_PREFIX: &str = "_service_maintenance:";

/// One local service.
#[derive(Debug, Clone)]
pub struct LocalService {
    /// The service (`node` empty).
    pub service: ServiceInstance,
    /// Where it came from.
    pub source: Source,
    /// Bumped on every change.
    pub rev: u64,
    /// The revision the catalog holds (0: never synced).
    pub synced_rev: u64,
}

/// One local check and its current result.
#[derive(Debug, Clone)]
pub struct LocalCheck {
    /// The definition.
    pub def: CheckDefinition,
    /// Where it came from.
    pub source: Source,
    /// Current status.
    pub status: String,
    /// Current output.
    pub output: String,
    /// Bumped on every change.
    pub rev: u64,
    /// The revision the catalog holds.
    pub synced_rev: u64,
    /// For output-only changes: not synced before this instant (`check_update_interval`).
    pub defer_until: Option<Instant>,
    /// When the check last became critical (for `DeregisterCriticalServiceAfter`).
    pub critical_since: Option<Instant>,
    /// Registration generation: results of a runner from an older registration are ignored.
    pub generation: u64,
    /// Measured round trip of the last probe, kept for checks with latency thresholds only
    /// (`Latency` on `/v1/agent/checks`).
    pub latency: Option<Duration>,
    /// `latency` as it was when the status or output last changed: what the catalog copy
    /// carries. Copying every probe's figure would rewrite the catalog through Raft once per
    /// interval; a check over its threshold says the latency in its output, which does change.
    pub latency_at_change: Option<Duration>,
}

impl LocalCheck {
    /// The catalog row for this check on `node` (service name and tags filled in from `services`).
    pub fn to_health_check(&self, node: &str, services: &BTreeMap<String, LocalService>) -> HealthCheck {
        let svc = services.get(&self.def.service_id);
        HealthCheck {
            node: node.to_string(),
            check_id: self.def.id.clone(),
            name: self.def.name.clone(),
            status: self.status.clone(),
            notes: self.def.notes.clone(),
            output: self.output.clone(),
            service_id: self.def.service_id.clone(),
            service_name: svc.map(|s| s.service.service.clone()).unwrap_or_default(),
            service_tags: svc.map(|s| s.service.tags.clone()).unwrap_or_default(),
            check_type: self.def.kind.type_name().to_string(),
            interval: self.def.interval_string(),
            timeout: self.def.timeout_string(),
            definition: self.catalog_definition(),
            create_index: 0,
            modify_index: 0,
        }
    }

    /// The definition text the catalog stores: the definition, plus the measured latency under
    /// [`MEASURED_LATENCY`]. It travels inside the definition because the catalog's check
    /// record cannot gain a field without breaking its Raft encoding; rendering moves it back
    /// to the check's top level.
    fn catalog_definition(&self) -> String {
        let mut d = self.def.definition_json();
        if let (Some(took), Some(m)) = (self.latency_at_change, d.as_object_mut()) {
            m.insert(MEASURED_LATENCY.into(), crate::duration::format_go_duration(took).into());
        }
        d.to_string()
    }
}

#[derive(Debug, Default)]
struct Inner {
    services: BTreeMap<String, LocalService>,
    checks: BTreeMap<String, LocalCheck>,
    /// Removed locally, still to be removed from the catalog.
    removed_services: BTreeSet<String>,
    removed_checks: BTreeSet<String>,
    next_rev: u64,
    /// Services and checks that may differ from the catalog (every one whose `synced_rev` is
    /// not its `rev`, and perhaps a few more): a sync round copies these instead of everything,
    /// which would cost O(all) per round with thousands of services on one agent.
    pending_services: BTreeSet<String>,
    pending_checks: BTreeSet<String>,
}

impl Inner {
    fn rev(&mut self) -> u64 {
        self.next_rev += 1;
        self.next_rev
    }
}

/// What [`LocalState::add_service`] changed: checks added (with their generation) and IDs of
/// checks removed, for the runner.
pub(crate) type ServiceChange = (Vec<(CheckDefinition, u64)>, Vec<String>);

/// A consistent copy of the local state.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Services by ID.
    pub services: BTreeMap<String, LocalService>,
    /// Checks by ID.
    pub checks: BTreeMap<String, LocalCheck>,
    /// Removed services not yet removed from the catalog.
    pub removed_services: BTreeSet<String>,
    /// Removed checks not yet removed from the catalog.
    pub removed_checks: BTreeSet<String>,
    /// The latest revision this copy includes.
    pub rev: u64,
}

/// The agent's services and checks.
#[derive(Debug)]
pub struct LocalState {
    inner: Mutex<Inner>,
    persist: Option<Persist>,
    /// Set while the persisted entries are registered again at start: they are in the journal
    /// already, so re-registering them writes nothing.
    restoring: std::sync::atomic::AtomicBool,
    version: watch::Sender<u64>,
    sync: Notify,
    /// The revision up to which every change reached the catalog (a successful sync round).
    synced: watch::Sender<u64>,
    check_update_interval: Duration,
}

fn truncate_output(mut s: String) -> String {
    if s.len() > def::MAX_OUTPUT {
        let mut end = def::MAX_OUTPUT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl LocalState {
    /// An empty state; `persist_dir` is the data dir (`None` in `-dev`: memory only).
    pub fn new(persist_dir: Option<&std::path::Path>, check_update_interval: Duration) -> Self {
        LocalState {
            inner: Mutex::new(Inner::default()),
            persist: persist_dir.map(Persist::new),
            restoring: std::sync::atomic::AtomicBool::new(false),
            version: watch::channel(0).0,
            sync: Notify::new(),
            synced: watch::channel(0).0,
            check_update_interval,
        }
    }

    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
        self.sync.notify_one();
    }

    /// A receiver that changes whenever anything local changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Waits until a sync is requested (a local change).
    pub(crate) async fn sync_requested(&self) {
        self.sync.notified().await
    }

    /// A copy of everything.
    pub fn snapshot(&self) -> Snapshot {
        let g = self.inner.lock();
        Snapshot {
            services: g.services.clone(),
            checks: g.checks.clone(),
            removed_services: g.removed_services.clone(),
            removed_checks: g.removed_checks.clone(),
            rev: g.next_rev,
        }
    }

    /// A copy of what may differ from the catalog: the pending services and checks, the
    /// services those checks belong to (for their names and tags), and the removals. Enough
    /// for a sync round without a full comparison (see [`Inner::pending_services`]).
    pub(crate) fn pending_snapshot(&self) -> Snapshot {
        let g = self.inner.lock();
        let checks: BTreeMap<String, LocalCheck> =
            g.pending_checks.iter().filter_map(|id| Some((id.clone(), g.checks.get(id)?.clone()))).collect();
        let mut services = BTreeMap::new();
        for id in g.pending_services.iter().chain(checks.values().map(|c| &c.def.service_id)) {
            if let Some(s) = g.services.get(id) {
                services.entry(id.clone()).or_insert_with(|| s.clone());
            }
        }
        Snapshot {
            services,
            checks,
            removed_services: g.removed_services.clone(),
            removed_checks: g.removed_checks.clone(),
            rev: g.next_rev,
        }
    }

    /// The latest revision of any local change.
    pub fn current_rev(&self) -> u64 {
        self.inner.lock().next_rev
    }

    /// Records that a sync round pushed everything up to `rev` (its snapshot's revision).
    pub(crate) fn mark_round_synced(&self, rev: u64) {
        self.synced.send_if_modified(|s| {
            let moved = rev > *s;
            if moved {
                *s = rev;
            }
            moved
        });
    }

    /// Waits until the changes up to `rev` reached the catalog, or `timeout` passes; returns
    /// whether they did.
    pub async fn wait_synced(&self, rev: u64, timeout: Duration) -> bool {
        let mut rx = self.synced.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s >= rev)).await.is_ok_and(|r| r.is_ok())
    }

    /// One service.
    pub fn service(&self, id: &str) -> Option<LocalService> {
        self.inner.lock().services.get(id).cloned()
    }

    /// One check.
    pub fn check(&self, id: &str) -> Option<LocalCheck> {
        self.inner.lock().checks.get(id).cloned()
    }

    /// Appends `records` to the journal; returns the sequence number [`Self::sync_journal`] waits
    /// for (0: nothing to wait for). Called with the lock held and before memory changes, so the
    /// journal follows memory's order and a storage failure leaves memory untouched.
    fn journal(&self, records: &[Record]) -> Result<u64> {
        match &self.persist {
            Some(p) if !records.is_empty() && !self.restoring.load(std::sync::atomic::Ordering::Relaxed) => {
                p.append(records)
            }
            _ => Ok(0),
        }
    }

    /// Rewrites the journal with only the live entries once it has grown enough. Called with the
    /// lock held and after memory changed, so the live set includes the change just journalled.
    /// A failed rewrite loses nothing (the old journal stays), so it is logged, not returned.
    fn compact_if_due(&self, g: &Inner) {
        let Some(p) = self.persist.as_ref().filter(|p| p.wants_compaction()) else { return };
        let services = g.services.values().filter(|s| s.source == Source::Api);
        let checks = g.checks.values().filter(|c| c.source == Source::Api);
        let live = services
            .map(|s| Record::Service(PersistedService::new(s.service.clone())))
            .chain(checks.map(|c| Record::Check(PersistedCheck::of(c))));
        if let Err(e) = p.compact(live) {
            tracing::warn!(error = %e, "could not rewrite the local journal; it keeps growing until a rewrite succeeds");
        }
    }

    /// Waits until journal append `seq` is durable (after the lock: concurrent writers share
    /// one fsync).
    fn sync_journal(&self, seq: u64) -> Result<()> {
        match &self.persist {
            Some(p) if seq > 0 => p.sync(seq),
            _ => Ok(()),
        }
    }

    fn new_check(g: &mut Inner, def: CheckDefinition, source: Source) -> LocalCheck {
        let rev = g.rev();
        // Re-registering the same kind of check keeps its current result unless a status is given
        // explicitly, so re-registration does not flap health.
        let (status, output) = match g.checks.get(&def.id) {
            Some(old) if old.def.kind == def.kind && old.def.status == def.status => {
                (old.status.clone(), old.output.clone())
            }
            _ => (def.status.clone(), String::new()),
        };
        let critical_since = match g.checks.get(&def.id) {
            Some(old) if old.status == CRITICAL && status == CRITICAL => old.critical_since,
            _ => (status == CRITICAL).then(Instant::now),
        };
        LocalCheck {
            def,
            source,
            status,
            output,
            rev,
            synced_rev: 0,
            defer_until: None,
            critical_since,
            generation: rev,
            latency: None,
            latency_at_change: None,
        }
    }

    /// Adds or replaces a service and its checks. With `replace_existing_checks`, the service's
    /// checks not in `def` are removed. Returns the checks added (with their generation) and the
    /// IDs of checks removed, for the runner.
    pub(crate) fn add_service(
        &self,
        def: ServiceDefinition,
        source: Source,
        replace_existing_checks: bool,
    ) -> Result<ServiceChange> {
        let id = def.service.id.clone();
        let mut service = def.service;
        service.node.clear();
        // The new entries (their revisions and carried-over check results come from the
        // current state), journalled before memory changes: a storage failure leaves memory
        // untouched. The fsync waits until after the lock; see `persist`.
        let mut g = self.inner.lock();
        let mut checks: Vec<LocalCheck> = def.checks.into_iter().map(|c| Self::new_check(&mut g, c, source)).collect();
        let mut svc = LocalService { service, source, rev: 0, synced_rev: 0 };
        // Revisions are taken now, with the change: a sync round that copied the state before
        // must not count this change as synced.
        let rev = g.rev();
        svc.rev = rev;
        for c in &mut checks {
            c.rev = rev;
        }
        let removed: Vec<String> = if replace_existing_checks {
            g.checks
                .values()
                .filter(|c| c.def.service_id == id && !c.def.id.starts_with(SERVICE_MAINTENANCE_PREFIX))
                .filter(|c| !checks.iter().any(|n| n.def.id == c.def.id))
                .map(|c| c.def.id.clone())
                .collect()
        } else {
            Vec::new()
        };
        let mut records = Vec::new();
        if source == Source::Api {
            records.push(Record::Service(PersistedService::new(svc.service.clone())));
            records.extend(checks.iter().map(|c| Record::Check(PersistedCheck::of(c))));
        }
        records.extend(removed.iter().map(|cid| Record::RemoveCheck(cid.clone())));
        let seq = self.journal(&records)?;
        g.removed_services.remove(&id);
        g.pending_services.insert(id.clone());
        g.services.insert(id, svc);
        let mut added = Vec::new();
        for c in checks {
            g.removed_checks.remove(&c.def.id);
            g.pending_checks.insert(c.def.id.clone());
            added.push((c.def.clone(), c.generation));
            g.checks.insert(c.def.id.clone(), c);
        }
        for cid in &removed {
            g.checks.remove(cid);
            g.pending_checks.remove(cid);
            g.removed_checks.insert(cid.clone());
        }
        self.compact_if_due(&g);
        drop(g);
        self.sync_journal(seq)?;
        self.changed();
        Ok((added, removed))
    }

    /// Removes a service and its checks; returns the removed check IDs.
    pub(crate) fn remove_service(&self, id: &str) -> Result<Vec<String>> {
        let mut g = self.inner.lock();
        if !g.services.contains_key(id) {
            return Err(Error::NotFound(format!(
                "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
            )));
        }
        let checks: Vec<String> =
            g.checks.values().filter(|c| c.def.service_id == id).map(|c| c.def.id.clone()).collect();
        let mut records = vec![Record::RemoveService(id.to_string())];
        records.extend(checks.iter().map(|cid| Record::RemoveCheck(cid.clone())));
        let seq = self.journal(&records)?;
        g.services.remove(id);
        g.pending_services.remove(id);
        g.removed_services.insert(id.to_string());
        // A removal is a change too: waiting for it to reach the catalog waits for this one.
        g.rev();
        for cid in &checks {
            g.checks.remove(cid);
            g.pending_checks.remove(cid);
            // The catalog drops a service's checks with the service.
            g.removed_checks.remove(cid);
        }
        self.compact_if_due(&g);
        drop(g);
        self.sync_journal(seq)?;
        self.changed();
        Ok(checks)
    }

    /// Adds or replaces a check; returns its generation.
    pub(crate) fn add_check(&self, def: CheckDefinition, source: Source) -> Result<u64> {
        let mut g = self.inner.lock();
        if !def.service_id.is_empty() && !g.services.contains_key(&def.service_id) {
            return Err(Error::BadRequest(format!("ServiceID {:?} does not exist", def.service_id)));
        }
        let c = Self::new_check(&mut g, def, source);
        // As in `add_service`: journalled under the lock before memory changes, synced after.
        let record = (source == Source::Api).then(|| Record::Check(PersistedCheck::of(&c)));
        let seq = self.journal(record.as_slice())?;
        let generation = c.generation;
        g.removed_checks.remove(&c.def.id);
        g.pending_checks.insert(c.def.id.clone());
        g.checks.insert(c.def.id.clone(), c);
        self.compact_if_due(&g);
        drop(g);
        self.sync_journal(seq)?;
        self.changed();
        Ok(generation)
    }

    /// Removes a check.
    pub(crate) fn remove_check(&self, id: &str) -> Result<()> {
        let mut g = self.inner.lock();
        if !g.checks.contains_key(id) {
            return Err(Error::NotFound(format!(
                "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
            )));
        }
        let seq = self.journal(&[Record::RemoveCheck(id.to_string())])?;
        g.checks.remove(id);
        g.pending_checks.remove(id);
        g.removed_checks.insert(id.to_string());
        g.rev();
        self.compact_if_due(&g);
        drop(g);
        self.sync_journal(seq)?;
        self.changed();
        Ok(())
    }

    /// Sets a check's status and output. `generation`, when given, must match the current
    /// registration (a replaced check's old runner is ignored). Output-only changes are deferred
    /// by `check_update_interval`; status changes sync at once. Returns whether the check exists.
    pub(crate) fn update_check(&self, id: &str, generation: Option<u64>, status: &str, output: String) -> bool {
        let output = truncate_output(output);
        let mut g = self.inner.lock();
        let rev = g.rev();
        let Some(c) = g.checks.get_mut(id) else { return false };
        if generation.is_some_and(|gen| gen != c.generation) {
            return false;
        }
        let status_changed = c.status != status;
        let output_changed = c.output != output;
        if !status_changed && !output_changed {
            return true;
        }
        if status_changed {
            c.critical_since = (status == CRITICAL).then(Instant::now);
            c.defer_until = None;
        } else if c.defer_until.is_none() && !self.check_update_interval.is_zero() {
            c.defer_until = Some(Instant::now() + self.check_update_interval);
        }
        c.status = status.to_string();
        c.output = output;
        c.latency_at_change = c.latency;
        c.rev = rev;
        // TTL checks keep their status across restarts (Consul persists it too). Memory has
        // changed already: a journal failure only loses that across a restart, so it is logged.
        let record = (matches!(c.def.kind, CheckKind::Ttl { .. }) && c.source == Source::Api)
            .then(|| Record::Check(PersistedCheck::of(c)));
        g.pending_checks.insert(id.to_string());
        let seq = self.journal(record.as_slice()).unwrap_or_else(|e| {
            tracing::warn!(check = %id, error = %e, "could not persist TTL check state");
            0
        });
        self.compact_if_due(&g);
        drop(g);
        if let Err(e) = self.sync_journal(seq) {
            tracing::warn!(check = %id, error = %e, "could not persist TTL check state");
        }
        self.changed();
        true
    }

    /// Records the measured round trip of a probe of check `id` (from the runner of
    /// registration `generation`). Not a change by itself: see [`LocalCheck::latency_at_change`].
    pub(crate) fn record_latency(&self, id: &str, generation: u64, took: Duration) {
        let mut g = self.inner.lock();
        if let Some(c) = g.checks.get_mut(id).filter(|c| c.generation == generation) {
            c.latency = Some(took);
        }
    }

    /// Marks a service as synced at `rev` (unless it changed meanwhile).
    pub(crate) fn mark_service_synced(&self, id: &str, rev: u64) {
        let mut g = self.inner.lock();
        if let Some(s) = g.services.get_mut(id) {
            if s.rev == rev {
                s.synced_rev = rev;
                g.pending_services.remove(id);
            }
        }
    }

    /// Marks a check as synced at `rev`.
    pub(crate) fn mark_check_synced(&self, id: &str, rev: u64) {
        let mut g = self.inner.lock();
        if let Some(c) = g.checks.get_mut(id) {
            if c.rev == rev {
                c.synced_rev = rev;
                c.defer_until = None;
                g.pending_checks.remove(id);
            }
        }
    }

    /// Marks a service (or check) as out of sync: anti-entropy found the catalog differs.
    pub(crate) fn mark_dirty(&self, service: Option<&str>, check: Option<&str>) {
        let mut g = self.inner.lock();
        if let Some((id, s)) = service.and_then(|id| Some((id, g.services.get_mut(id)?))) {
            s.synced_rev = 0;
            g.pending_services.insert(id.to_string());
        }
        if let Some((id, c)) = check.and_then(|id| Some((id, g.checks.get_mut(id)?))) {
            c.synced_rev = 0;
            c.defer_until = None;
            g.pending_checks.insert(id.to_string());
        }
    }

    /// Takes the catalog's tags for a service with `EnableTagOverride` (other writers may edit
    /// them; the agent keeps what they set instead of reverting it).
    pub(crate) fn adopt_tags(&self, id: &str, tags: &[String]) {
        let mut g = self.inner.lock();
        let mut seq = Ok(0);
        if let Some(s) = g.services.get_mut(id) {
            if s.service.enable_tag_override && s.service.tags != tags {
                s.service.tags = tags.to_vec();
                let record =
                    (s.source == Source::Api).then(|| Record::Service(PersistedService::new(s.service.clone())));
                seq = self.journal(record.as_slice());
                self.compact_if_due(&g);
            }
        }
        drop(g);
        // Memory has changed already: a journal failure only loses the tags across a restart.
        if let Err(e) = seq.and_then(|seq| self.sync_journal(seq)) {
            tracing::warn!(service = %id, error = %e, "could not persist adopted tags");
        }
        self.version.send_modify(|v| *v += 1);
    }

    /// The catalog no longer holds a removed entry.
    pub(crate) fn forget_removed(&self, service: Option<&str>, check: Option<&str>) {
        let mut g = self.inner.lock();
        if let Some(s) = service {
            g.removed_services.remove(s);
        }
        if let Some(c) = check {
            g.removed_checks.remove(c);
        }
    }

    /// Everything persisted (nothing in `-dev`). Fails when the journal cannot be read or
    /// rewritten: starting without the agent's registrations would silently drop them.
    fn load(&self) -> Result<persist::Loaded> {
        self.persist.as_ref().map_or(Ok(persist::Loaded::default()), Persist::load)
    }
}

/// Aggregated health of a set of checks, maintenance first (Consul's agent health endpoints).
pub fn aggregate<'a>(checks: impl IntoIterator<Item = &'a LocalCheck>) -> &'static str {
    let mut worst = PASSING;
    for c in checks {
        if c.def.id == NODE_MAINTENANCE || c.def.id.starts_with(SERVICE_MAINTENANCE_PREFIX) {
            return "maintenance";
        }
        match c.status.as_str() {
            CRITICAL => worst = CRITICAL,
            WARNING if worst != CRITICAL => worst = WARNING,
            _ => {}
        }
    }
    worst
}

/// Re-reads the config files and returns their service and check definitions (set by the
/// binary, which owns config parsing).
pub type ReloadHandler = Arc<
    dyn Fn() -> BoxFuture<'static, std::result::Result<(Vec<ServiceDefinition>, Vec<CheckDefinition>), String>>
        + Send
        + Sync,
>;

/// This node's identity as registered in the catalog.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// `node_meta`: the node's metadata in the catalog.
    pub meta: BTreeMap<String, String>,
    /// Node UUID.
    pub id: String,
    /// Advertise address.
    pub address: String,
    /// Datacenter.
    pub datacenter: String,
    /// `locality`: the node's locality in the catalog, and the default of its services'.
    pub locality: Option<crate::state::ext_fields::Locality>,
}

/// The local state plus everything that acts on it: check runners, persistence and the rules
/// of the agent endpoints.
pub struct LocalAgent {
    /// The services and checks.
    pub state: Arc<LocalState>,
    runner: Runner,
    /// This node.
    pub node: NodeInfo,
    enable_script_checks: bool,
    enable_local_script_checks: bool,
    sidecar_ports: Option<sidecar::SidecarPorts>,
    reload_handler: Mutex<Option<ReloadHandler>>,
    reload_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for LocalAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAgent").field("node", &self.node).finish_non_exhaustive()
    }
}

/// What the local agent needs of the agent's configuration.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Where registrations persist (`data_dir`); `None` keeps them in memory (`-dev`).
    pub persist_dir: Option<std::path::PathBuf>,
    /// `check_update_interval`: unchanged check output is synced at most this often.
    pub check_update_interval: std::time::Duration,
    /// `enable_script_checks`.
    pub enable_script_checks: bool,
    /// `enable_local_script_checks`.
    pub enable_local_script_checks: bool,
    /// `ports.sidecar_min_port`..=`ports.sidecar_max_port`: where sidecars get their port
    /// (`None`: no automatic assignment).
    pub sidecar_ports: Option<sidecar::SidecarPorts>,
    /// `service` blocks of the config files.
    pub services: Vec<ServiceDefinition>,
    /// `check` blocks of the config files.
    pub checks: Vec<CheckDefinition>,
    /// The Docker engine socket for Docker checks (`DOCKER_HOST`; default
    /// `/var/run/docker.sock`), or why there is none.
    pub docker_socket: std::result::Result<std::path::PathBuf, String>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            persist_dir: None,
            check_update_interval: std::time::Duration::ZERO,
            enable_script_checks: false,
            enable_local_script_checks: false,
            sidecar_ports: Some(sidecar::SidecarPorts::default()),
            services: Vec::new(),
            checks: Vec::new(),
            docker_socket: Ok(checks::docker::DEFAULT_SOCKET.into()),
        }
    }
}

impl LocalAgent {
    /// Builds the local agent: loads persisted entries (not in `-dev`), adds the config-file
    /// definitions and starts their checks. Fails on a config definition that is not allowed.
    pub fn start(
        config: &LocalConfig,
        node: NodeInfo,
        backend: Backend,
        shutdown: CancellationToken,
    ) -> Result<Arc<LocalAgent>> {
        let state = Arc::new(LocalState::new(config.persist_dir.as_deref(), config.check_update_interval));
        let runner = Runner::new(state.clone(), backend, node.name.clone(), config.docker_socket.clone(), shutdown);
        let agent = Arc::new(LocalAgent {
            state,
            runner,
            node,
            enable_script_checks: config.enable_script_checks,
            enable_local_script_checks: config.enable_local_script_checks,
            sidecar_ports: config.sidecar_ports,
            reload_handler: Mutex::new(None),
            reload_lock: tokio::sync::Mutex::new(()),
        });
        let persisted = agent.state.load()?;
        // Already in the journal: registering them again must not write them again.
        agent.state.restoring.store(true, std::sync::atomic::Ordering::Relaxed);
        for s in persisted.services.into_values() {
            let id = s.service.id.clone();
            let def = ServiceDefinition { service: s.into_service(), checks: Vec::new() };
            if let Err(e) = agent.register_service(def, Source::Api, false) {
                tracing::warn!(service = %id, error = %e, "skipping persisted service");
            }
        }
        for c in persisted.checks.into_values() {
            let id = c.def.id.clone();
            let ttl = matches!(c.def.kind, CheckKind::Ttl { .. });
            match agent.register_check(c.def, Source::Api) {
                // TTL checks come back with the status they had (Consul persists it too).
                Ok(()) if ttl => {
                    agent.state.update_check(&id, None, &c.status, c.output);
                }
                Ok(()) => {}
                Err(e) => tracing::warn!(check = %id, error = %e, "skipping persisted check"),
            }
        }
        agent.state.restoring.store(false, std::sync::atomic::Ordering::Relaxed);
        for s in &config.services {
            agent
                .register_service(s.clone(), Source::Config, false)
                .map_err(|e| Error::Config(format!("service {:?}: {e}", s.service.id)))?;
        }
        for c in &config.checks {
            agent
                .register_check(c.clone(), Source::Config)
                .map_err(|e| Error::Config(format!("check {:?}: {e}", c.id)))?;
        }
        Ok(agent)
    }

    fn check_allowed(&self, c: &CheckDefinition, source: Source) -> Result<()> {
        if matches!(c.kind, CheckKind::Docker { .. }) {
            // An absent socket is not refused (the check reports it); an unusable DOCKER_HOST is.
            if let Err(why) = self.runner.docker_socket() {
                return Err(Error::BadRequest(format!("Invalid check: {why}")));
            }
        }
        // Docker checks run commands too: they need script checks enabled, as in Consul.
        if matches!(c.kind, CheckKind::Script { .. } | CheckKind::Docker { .. }) {
            let allowed = match source {
                Source::Api => self.enable_script_checks,
                Source::Config => self.enable_script_checks || self.enable_local_script_checks,
            };
            if !allowed {
                return Err(Error::BadRequest(match source {
                    Source::Api => format!(
                        "Invalid check {:?}: script checks are disabled on this agent for API registrations; \
                         to enable, configure 'enable_script_checks' to true",
                        c.id
                    ),
                    Source::Config => format!(
                        "Invalid check {:?}: script checks are disabled on this agent; to enable, configure \
                         'enable_script_checks' or 'enable_local_script_checks' to true",
                        c.id
                    ),
                }));
            }
        }
        Ok(())
    }

    /// What the agent fills in on a service before storing it: the agent's locality when the
    /// service gives none (Consul 1.17+), and Consul's registration defaults ([`defaults`]).
    fn fill_defaults(&self, service: &mut ServiceInstance) {
        if service.ext.locality.is_none() {
            service.ext.locality = self.node.locality.clone();
        }
        defaults::apply(service);
    }

    /// Registers (or replaces) a service with its checks, and the sidecar its
    /// `Connect.SidecarService` asks for ([`sidecar`]).
    pub fn register_service(
        &self,
        mut def: ServiceDefinition,
        source: Source,
        replace_existing_checks: bool,
    ) -> Result<()> {
        let sidecar = self.sidecar_for(&def)?;
        sidecar::strip(&mut def.service);
        if let Some(sidecar) = &sidecar {
            for c in &sidecar.checks {
                self.check_allowed(c, source)?;
            }
        }
        self.register_one(def, source, replace_existing_checks)?;
        match sidecar {
            Some(sidecar) => self.register_one(sidecar, source, replace_existing_checks),
            None => Ok(()),
        }
    }

    /// The complete sidecar `def` asks for: its port assigned and its default checks added.
    fn sidecar_for(&self, def: &ServiceDefinition) -> Result<Option<ServiceDefinition>> {
        let Some(mut sidecar) = sidecar::build(def)? else { return Ok(None) };
        if sidecar.service.port == 0 {
            let snap = self.state.snapshot();
            sidecar.service.port = sidecar::assign_port(
                self.sidecar_ports,
                &sidecar.service.id,
                snap.services.values().map(|s| &s.service),
            )?;
        }
        if sidecar.checks.is_empty() {
            sidecar.checks = sidecar::default_checks(&sidecar.service, &def.service.id)?;
        }
        Ok(Some(sidecar))
    }

    fn register_one(&self, mut def: ServiceDefinition, source: Source, replace_existing_checks: bool) -> Result<()> {
        self.fill_defaults(&mut def.service);
        for c in &def.checks {
            self.check_allowed(c, source)?;
        }
        let (added, removed) = self.state.add_service(def, source, replace_existing_checks)?;
        for id in removed {
            self.runner.stop(&id);
        }
        for (c, generation) in added {
            self.runner.start(c, generation);
        }
        Ok(())
    }

    /// Deregisters a service and its checks, and the sidecar registered with it.
    pub fn deregister_service(&self, id: &str) -> Result<()> {
        for cid in self.state.remove_service(id)? {
            self.runner.stop(&cid);
        }
        let sidecar_id = sidecar::sidecar_id(id);
        if self.state.service(&sidecar_id).is_some_and(|s| sidecar::is_sidecar_of(&s.service, id)) {
            for cid in self.state.remove_service(&sidecar_id)? {
                self.runner.stop(&cid);
            }
        }
        Ok(())
    }

    /// Registers (or replaces) a check.
    pub fn register_check(&self, def: CheckDefinition, source: Source) -> Result<()> {
        self.check_allowed(&def, source)?;
        let generation = self.state.add_check(def.clone(), source)?;
        self.runner.start(def, generation);
        Ok(())
    }

    /// Deregisters a check.
    pub fn deregister_check(&self, id: &str) -> Result<()> {
        self.state.remove_check(id)?;
        self.runner.stop(id);
        Ok(())
    }

    /// `/v1/agent/check/pass|warn|fail|update`: reports the result of a TTL check.
    pub fn update_ttl(&self, id: &str, status: &str, output: String) -> Result<()> {
        let Some(c) = self.state.check(id) else {
            return Err(Error::NotFound(format!(
                "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
            )));
        };
        if !matches!(c.def.kind, CheckKind::Ttl { .. }) {
            return Err(Error::BadRequest(format!("CheckID {id:?} does not have associated TTL")));
        }
        self.state.update_check(id, None, status, output);
        self.runner.reset_ttl(id);
        Ok(())
    }

    /// `/v1/agent/service/maintenance/:id`.
    pub fn service_maintenance(&self, id: &str, enable: bool, reason: &str) -> Result<()> {
        if self.state.service(id).is_none() {
            return Err(Error::NotFound(format!("Unknown service ID {id:?}")));
        }
        let cid = format!("{SERVICE_MAINTENANCE_PREFIX}{id}");
        if !enable {
            return match self.state.remove_check(&cid) {
                Ok(()) | Err(Error::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            };
        }
        let notes = if reason.is_empty() {
            "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
        } else {
            reason
        };
        let def = CheckDefinition::manual(&cid, "Service Maintenance Mode", notes, id, CRITICAL);
        self.state.add_check(def, Source::Api).map(|_| ())
    }

    /// `/v1/agent/maintenance`.
    pub fn node_maintenance(&self, enable: bool, reason: &str) -> Result<()> {
        if !enable {
            return match self.state.remove_check(NODE_MAINTENANCE) {
                Ok(()) | Err(Error::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            };
        }
        let notes = if reason.is_empty() {
            "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
        } else {
            reason
        };
        let def = CheckDefinition::manual(NODE_MAINTENANCE, "Node Maintenance Mode", notes, "", CRITICAL);
        self.state.add_check(def, Source::Api).map(|_| ())
    }

    /// Replaces the config-file services and checks with `services` and `checks`; entries
    /// registered through the API stay. Unchanged definitions keep running untouched.
    pub fn reload(&self, services: Vec<ServiceDefinition>, checks: Vec<CheckDefinition>) -> Result<()> {
        // Validate everything first so a bad file changes nothing.
        for c in services.iter().flat_map(|s| s.checks.iter()).chain(checks.iter()) {
            self.check_allowed(c, Source::Config)?;
        }
        let snap = self.state.snapshot();
        let sidecars: Vec<String> = services
            .iter()
            .filter(|s| sidecar::build(s).ok().flatten().is_some())
            .map(|s| sidecar::sidecar_id(&s.service.id))
            .collect();
        let wanted_services: BTreeSet<&str> =
            services.iter().map(|s| s.service.id.as_str()).chain(sidecars.iter().map(String::as_str)).collect();
        let wanted_checks: BTreeSet<&str> =
            services.iter().flat_map(|s| s.checks.iter()).chain(checks.iter()).map(|c| c.id.as_str()).collect();
        for (id, s) in &snap.services {
            if s.source == Source::Config && !wanted_services.contains(id.as_str()) {
                // A sidecar may already have gone with its parent.
                match self.deregister_service(id) {
                    Ok(()) | Err(Error::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        for (id, c) in &snap.checks {
            if c.source == Source::Config && !wanted_checks.contains(id.as_str()) {
                match self.deregister_check(id) {
                    Ok(()) | Err(Error::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let current: HashMap<&str, &CheckDefinition> = snap.checks.iter().map(|(k, c)| (k.as_str(), &c.def)).collect();
        for s in services {
            let same_service = snap.services.get(&s.service.id).is_some_and(|old| {
                let mut new = s.service.clone();
                new.node.clear();
                self.fill_defaults(&mut new);
                old.source == Source::Config && old.service == new
            });
            if same_service && s.checks.iter().all(|c| current.get(c.id.as_str()) == Some(&c)) {
                continue;
            }
            self.register_service(s, Source::Config, true)?;
        }
        for c in checks {
            if current.get(c.id.as_str()) == Some(&&c) {
                continue;
            }
            self.register_check(c, Source::Config)?;
        }
        Ok(())
    }

    /// Sets what `PUT /v1/agent/reload` runs to re-read the config files.
    pub fn set_reload_handler(&self, handler: ReloadHandler) {
        *self.reload_handler.lock() = Some(handler);
    }

    /// `PUT /v1/agent/reload`: re-reads the config files (when the embedding program set a
    /// handler) and applies their services and checks.
    pub async fn reload_from_config(&self) -> Result<()> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let handler = self.reload_handler.lock().clone();
        let Some(handler) = handler else { return Ok(()) };
        let (services, checks) =
            handler().await.map_err(|e| Error::BadRequest(format!("Failed reloading config: {e}")))?;
        self.reload(services, checks)
    }

    /// Number of checks with a running task (for tests and `/v1/agent/self`).
    pub fn running_checks(&self) -> usize {
        self.runner.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::catalog::ServiceInstance;

    fn ttl_check(id: &str, service: &str) -> CheckDefinition {
        let mut c = CheckDefinition::manual(id, id, "", service, CRITICAL);
        c.kind = CheckKind::Ttl { ttl: Duration::from_secs(60) };
        c
    }

    fn service(id: &str, checks: Vec<CheckDefinition>) -> ServiceDefinition {
        ServiceDefinition {
            service: ServiceInstance { id: id.into(), service: "web".into(), ..Default::default() },
            checks,
        }
    }

    #[test]
    fn sync_status_generations_and_deferral() {
        let st = LocalState::new(None, Duration::from_secs(300));
        let (added, removed) = st
            .add_service(service("w", vec![ttl_check("a", "w"), ttl_check("b", "w")]), Source::Api, false)
            .expect("add");
        assert_eq!((added.len(), removed.len()), (2, 0));
        let a = st.check("a").expect("a");
        assert_eq!(a.synced_rev, 0, "new entries are out of sync");
        assert!(a.critical_since.is_some());
        // A stale runner generation is ignored.
        assert!(!st.update_check("a", Some(a.generation + 100), PASSING, "x".into()));
        assert!(st.update_check("a", Some(a.generation), PASSING, "x".into()));
        let a = st.check("a").expect("a");
        assert_eq!((a.status.as_str(), a.critical_since, a.defer_until), (PASSING, None, None));
        st.mark_check_synced("a", a.rev);
        // Output-only: deferred. Status change: not deferred.
        st.update_check("a", None, PASSING, "y".into());
        let a2 = st.check("a").expect("a");
        assert!(a2.defer_until.is_some() && a2.synced_rev != a2.rev);
        st.update_check("a", None, WARNING, "z".into());
        assert!(st.check("a").expect("a").defer_until.is_none());
        // Marking synced at an old revision does nothing.
        st.mark_check_synced("a", a.rev);
        assert_ne!(st.check("a").expect("a").synced_rev, st.check("a").expect("a").rev);
        // Output is capped.
        st.update_check("b", None, PASSING, "x".repeat(10_000));
        assert_eq!(st.check("b").expect("b").output.len(), def::MAX_OUTPUT);
    }

    /// The live latency changes with every probe; the catalog copy takes it only with a change
    /// of status or output, so probes alone never rewrite the catalog.
    #[test]
    fn measured_latency_reaches_the_catalog_row_with_a_change() {
        let st = LocalState::new(None, Duration::ZERO);
        st.add_check(ttl_check("a", ""), Source::Api).expect("add");
        let generation = st.check("a").expect("a").generation;
        let row = |st: &LocalState| {
            let snap = st.snapshot();
            let c = &snap.checks["a"];
            (c.latency, serde_json::from_str::<serde_json::Value>(&c.to_health_check("n", &snap.services).definition))
        };
        st.record_latency("a", generation + 1, Duration::from_millis(9));
        assert_eq!(row(&st).0, None, "a stale runner's figure is ignored");
        st.record_latency("a", generation, Duration::from_millis(120));
        let (live, def) = row(&st);
        assert_eq!(live, Some(Duration::from_millis(120)));
        assert!(def.expect("json").get(MEASURED_LATENCY).is_none(), "not in the catalog before a change");
        st.update_check("a", None, WARNING, "slow".into());
        assert_eq!(row(&st).1.expect("json")[MEASURED_LATENCY], "120ms");
        st.record_latency("a", generation, Duration::from_millis(80));
        assert_eq!(row(&st).1.expect("json")[MEASURED_LATENCY], "120ms", "the same result keeps the copy");
    }

    #[test]
    fn replace_existing_checks_and_removal_bookkeeping() {
        let st = LocalState::new(None, Duration::ZERO);
        st.add_service(service("w", vec![ttl_check("a", "w"), ttl_check("b", "w")]), Source::Api, false).expect("add");
        let (_, removed) = st.add_service(service("w", vec![ttl_check("a", "w")]), Source::Api, true).expect("replace");
        assert_eq!(removed, ["b"]);
        let snap = st.snapshot();
        assert!(snap.removed_checks.contains("b") && !snap.checks.contains_key("b"));
        // Removing the service removes its checks with it (one catalog deregistration).
        assert_eq!(st.remove_service("w").expect("remove"), ["a"]);
        let snap = st.snapshot();
        assert!(snap.removed_services.contains("w") && snap.checks.is_empty());
        assert!(matches!(st.remove_service("w"), Err(Error::NotFound(_))));
        assert!(matches!(st.add_check(ttl_check("c", "w"), Source::Api), Err(Error::BadRequest(_))));
    }

    #[test]
    fn re_registration_keeps_the_current_result() {
        let st = LocalState::new(None, Duration::ZERO);
        st.add_check(ttl_check("a", ""), Source::Api).expect("add");
        st.update_check("a", None, PASSING, "ok".into());
        st.add_check(ttl_check("a", ""), Source::Api).expect("again");
        assert_eq!(st.check("a").expect("a").status, PASSING);
        let mut explicit = ttl_check("a", "");
        explicit.status = WARNING.into();
        st.add_check(explicit, Source::Api).expect("explicit");
        assert_eq!(st.check("a").expect("a").status, WARNING);
    }

    #[test]
    fn aggregate_puts_maintenance_first() {
        let st = LocalState::new(None, Duration::ZERO);
        st.add_check(ttl_check("a", ""), Source::Api).expect("add");
        st.add_check(CheckDefinition::manual(NODE_MAINTENANCE, "m", "", "", CRITICAL), Source::Api).expect("add");
        let snap = st.snapshot();
        assert_eq!(aggregate(snap.checks.values()), "maintenance");
        assert_eq!(aggregate(snap.checks.values().filter(|c| c.def.id == "a")), CRITICAL);
        assert_eq!(aggregate(std::iter::empty()), PASSING);
    }
}
