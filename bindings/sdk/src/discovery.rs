//! Client-side discovery: a live, watch-backed set of a service's healthy instances, and
//! selection among them answered locally — no network round trip per pick.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::balancer::{instance_key, Balancer, BalancerConfig, InstanceKey};
use crate::client::Client;
use crate::error::{Error, ErrorCode, Result};
use crate::locality::{self, LocalityPolicy, Ring};
use crate::types::{HealthFilter, Locality, QueryOptions, ServiceEntry};
use crate::watch::{Watch, WatchOptions, WatchSpec, WatchValue};

/// How often a discovery that has served a [`Strategy::Nearest`] pick checks whether network
/// coordinates changed, and then re-reads the RTT order (a blocking query on the service does
/// not wake for coordinate changes). Agents publish coordinates every 15 s at the most often.
const NEAR_REFRESH: Duration = Duration::from_secs(5);

/// How [`Discovery::pick`] chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Each instance in turn.
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// At random, in proportion to each instance's `Weights.Passing`.
    Weighted,
    /// The same instance for the same key while it is there; when instances come or go only
    /// the keys of those instances move (rendezvous hashing).
    ConsistentHash,
    /// The instance nearest to the local agent by estimated round-trip time (network
    /// coordinates; the set is read with `?near=` the local agent's node). When the agent or
    /// the instances' nodes have no coordinates yet, Consul leaves the order alone, and this
    /// falls back to round-robin.
    Nearest,
    /// The lower-latency of two random instances by the latencies the application reports
    /// ([`Discovery::report`]); see [`crate::balancer`].
    LeastLatency,
    /// The caller's zone first, then its region, then anywhere, each ring with a strategy of
    /// its own ([`Discovery::set_locality_policy`]; see [`crate::locality`]).
    Locality,
}

impl Strategy {
    /// Parses `round_robin`, `random`, `weighted`, `consistent_hash`, `nearest`, `least_latency`
    /// (dashes allowed).
    pub fn parse(s: &str) -> Result<Strategy> {
        Ok(match s.replace('-', "_").as_str() {
            "round_robin" => Strategy::RoundRobin,
            "random" => Strategy::Random,
            "weighted" => Strategy::Weighted,
            "consistent_hash" => Strategy::ConsistentHash,
            "nearest" => Strategy::Nearest,
            "least_latency" => Strategy::LeastLatency,
            "locality" => Strategy::Locality,
            other => return Err(Error::invalid("strategy", format!("unknown strategy {other:?}"))),
        })
    }
}

/// The current set, as the discovery task last read it.
#[derive(Debug, Default)]
struct Current {
    index: u64,
    list: Vec<ServiceEntry>,
    /// Whether `list` is in RTT order: the local agent's node and the first instance's node
    /// have coordinates (instances without one sort last, so then some instance has one).
    by_distance: bool,
}

/// The healthy instances of one service, kept current by a watch. Instances come nearest
/// first when network coordinates exist.
#[derive(Debug)]
pub struct Discovery {
    current: Arc<RwLock<Current>>,
    cursor: AtomicUsize,
    cancel: CancellationToken,
    ready: tokio::sync::watch::Receiver<bool>,
    /// Set by the first [`Strategy::Nearest`] pick: only then is the RTT order kept fresh.
    near_wanted: Arc<AtomicBool>,
    /// Reported latencies and outcomes: least-latency picks and outlier ejection.
    balancer: parking_lot::Mutex<Balancer>,
    /// How [`Strategy::Locality`] picks.
    locality_policy: RwLock<LocalityPolicy>,
    /// The local agent's locality, as its node's catalog entry says (read by the tracker).
    agent_locality: Arc<RwLock<Option<Locality>>>,
    /// Set by the first use of the caller's locality (see [`Tracker::locality_wanted`]).
    locality_wanted: Arc<AtomicBool>,
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn rendezvous(key: &str, e: &ServiceEntry) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    e.node.node.hash(&mut h);
    e.service.id.hash(&mut h);
    h.finish()
}

/// The index in `list` that `strategy` picks; `cursor` drives round-robin. `list` is not empty.
fn choose(
    list: &[ServiceEntry],
    by_distance: bool,
    strategy: Strategy,
    key: Option<&str>,
    cursor: &AtomicUsize,
) -> Result<usize> {
    Ok(match strategy {
        Strategy::Nearest if by_distance => 0,
        // `Locality` picks by its rings' strategies before this is reached.
        Strategy::RoundRobin | Strategy::Nearest | Strategy::Locality => {
            cursor.fetch_add(1, Ordering::Relaxed) % list.len()
        }
        // Chosen by the balancer before this is reached; a uniform pick if it ever is.
        Strategy::Random | Strategy::LeastLatency => rand::thread_rng().gen_range(0..list.len()),
        Strategy::Weighted => {
            let weights: Vec<u64> = list.iter().map(|e| e.service.weights.passing.max(0) as u64).collect();
            let total: u64 = weights.iter().sum();
            if total == 0 {
                rand::thread_rng().gen_range(0..list.len())
            } else {
                let mut r = rand::thread_rng().gen_range(0..total);
                weights
                    .iter()
                    .position(|w| {
                        if r < *w {
                            true
                        } else {
                            r -= w;
                            false
                        }
                    })
                    .unwrap_or(0)
            }
        }
        Strategy::ConsistentHash => {
            let key = key.ok_or_else(|| Error::invalid("key", "consistent_hash needs a key"))?;
            (0..list.len()).max_by_key(|i| rendezvous(key, &list[*i])).unwrap_or(0)
        }
    })
}

/// The local agent's node name (`/v1/agent/self`), which `?near=` names.
async fn local_node(client: &Client) -> Option<String> {
    let me = client.agent_self().await.ok()?;
    me.pointer("/Config/NodeName").and_then(|v| v.as_str()).filter(|n| !n.is_empty()).map(str::to_string)
}

/// Whether `list` came sorted by distance from `source`, with the coordinate table's index.
async fn sorted_by_distance(client: &Client, source: Option<&str>, list: &[ServiceEntry]) -> (Option<u64>, bool) {
    let (Some(source), Some(first)) = (source, list.first()) else { return (None, false) };
    let q = QueryOptions::default();
    match client.coordinate_exists(source, &q).await {
        Ok((meta, true)) => {
            let first_known = client.coordinate_exists(&first.node.node, &q).await.is_ok_and(|(_, known)| known);
            (Some(meta.index), first_known)
        }
        Ok((meta, false)) => (Some(meta.index), false),
        Err(_) => (None, false),
    }
}

/// What the background task of one discovery needs.
struct Tracker {
    client: Client,
    service: String,
    tag: Option<String>,
    current: Arc<RwLock<Current>>,
    ready: tokio::sync::watch::Sender<bool>,
    near_wanted: Arc<AtomicBool>,
    /// The local agent's node, once known.
    source: Option<String>,
    /// The coordinate table's index when the order was last checked.
    coord_index: Option<u64>,
    /// Where the local agent runs, once read.
    agent_locality: Arc<RwLock<Option<Locality>>>,
    /// Set once the caller's locality is needed: only then is a missing one asked for again.
    locality_wanted: Arc<AtomicBool>,
}

impl Tracker {
    fn watch(&self) -> Watch {
        let spec = WatchSpec::Service { name: self.service.clone(), passing_only: true, tag: self.tag.clone() };
        // The node name rather than `_agent`: a client agent forwards the read to a server,
        // which would read `_agent` as itself.
        let near = self.source.clone().unwrap_or_else(|| "_agent".into());
        self.client.watch(spec, WatchOptions { near: Some(near), ..WatchOptions::default() })
    }

    /// Takes a new set and says whether it is in RTT order.
    async fn publish(&mut self, index: u64, list: Vec<ServiceEntry>) {
        // The agent's node may reach the catalog after discovery started: ask again until known.
        if self.agent_locality.read().is_none() {
            self.read_agent_locality().await;
        }
        let (coord_index, by_distance) = sorted_by_distance(&self.client, self.source.as_deref(), &list).await;
        self.coord_index = coord_index;
        *self.current.write() = Current { index, list, by_distance };
        let _ = self.ready.send(true);
    }

    /// A refresh tick of a discovery used with [`Strategy::Nearest`]. Returns a new watch when
    /// the local node has just become known (the old one asked for `_agent`).
    async fn refresh(&mut self) -> Option<Watch> {
        let Some(source) = self.source.clone() else {
            self.source = local_node(&self.client).await;
            return self.source.is_some().then(|| self.watch());
        };
        let q = QueryOptions::default();
        let Ok((meta, _)) = self.client.coordinate_exists(&source, &q).await else { return None };
        if self.coord_index == Some(meta.index) {
            return None;
        }
        let filter = HealthFilter { passing: true, tag: self.tag.clone() };
        let q = QueryOptions { near: Some(source), ..QueryOptions::default() };
        let Ok((meta, list)) = self.client.health_service(&self.service, &filter, &q).await else { return None };
        // A newer set from the watch wins; it is in the current order anyway.
        if meta.index >= self.current.read().index {
            self.publish(meta.index, list).await;
        }
        None
    }

    /// Reads the local agent's locality from its node's catalog entry.
    async fn read_agent_locality(&self) {
        let Some(node) = &self.source else { return };
        if let Ok(Some(l)) = self.client.node_locality(node).await {
            *self.agent_locality.write() = Some(l);
        }
    }

    async fn run(mut self, stop: CancellationToken) {
        self.source = tokio::select! {
            s = local_node(&self.client) => s,
            _ = stop.cancelled() => return,
        };
        tokio::select! {
            _ = self.read_agent_locality() => {}
            _ = stop.cancelled() => return,
        }
        let mut watch = self.watch();
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + NEAR_REFRESH, NEAR_REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                ev = watch.next() => match ev {
                    Ok(Some(ev)) => {
                        if let WatchValue::Service(list) = ev.value {
                            tokio::select! {
                                _ = self.publish(ev.index, list) => {}
                                _ = stop.cancelled() => break,
                            }
                        }
                    }
                    Ok(None) | Err(_) => break,
                },
                // Always armed: a branch guard would be read once, before a watch wait of minutes.
                _ = tick.tick() => {
                    // The leader may register the agent's node before the agent's own sync adds
                    // its locality: once locality picks are used, ask again until it is known.
                    if self.locality_wanted.load(Ordering::Relaxed) && self.agent_locality.read().is_none() {
                        tokio::select! {
                            _ = self.read_agent_locality() => {}
                            _ = stop.cancelled() => break,
                        }
                    }
                    if !self.near_wanted.load(Ordering::Relaxed) {
                        continue;
                    }
                    let replaced = tokio::select! {
                        w = self.refresh() => w,
                        _ = stop.cancelled() => break,
                    };
                    if let Some(w) = replaced {
                        watch.close();
                        watch = w;
                    }
                }
            }
        }
        watch.close();
    }
}

impl Discovery {
    /// Starts tracking the passing instances of `service` (optionally with `tag`), on the current
    /// tokio runtime.
    pub fn start(client: &Client, service: &str, tag: Option<&str>) -> Result<Discovery> {
        if service.is_empty() {
            return Err(Error::invalid("service", "must not be empty"));
        }
        let current: Arc<RwLock<Current>> = Arc::default();
        let cancel = CancellationToken::new();
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let near_wanted = Arc::new(AtomicBool::new(false));
        let agent_locality: Arc<RwLock<Option<Locality>>> = Arc::default();
        let locality_wanted = Arc::new(AtomicBool::new(false));
        let tracker = Tracker {
            client: client.clone(),
            service: service.to_string(),
            tag: tag.map(str::to_string),
            current: current.clone(),
            ready: ready_tx,
            near_wanted: near_wanted.clone(),
            source: None,
            coord_index: None,
            agent_locality: agent_locality.clone(),
            locality_wanted: locality_wanted.clone(),
        };
        tokio::spawn(tracker.run(cancel.clone()));
        Ok(Discovery {
            current,
            cursor: AtomicUsize::new(0),
            cancel,
            ready,
            near_wanted,
            balancer: parking_lot::Mutex::new(Balancer::new(BalancerConfig::default())),
            locality_policy: RwLock::new(LocalityPolicy::default()),
            agent_locality,
            locality_wanted,
        })
    }

    /// Waits until the first result has arrived.
    pub async fn ready(&self, timeout: std::time::Duration) -> Result<()> {
        let mut rx = self.ready.clone();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|r| *r)).await;
        match waited {
            Err(_) => Err(Error::new(ErrorCode::Timeout, "no discovery result yet")),
            Ok(Err(_)) => Err(Error::new(ErrorCode::Cancelled, "discovery stopped")),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// The current healthy instances, nearest first when network coordinates exist.
    pub fn instances(&self) -> Vec<ServiceEntry> {
        self.current.read().list.clone()
    }

    /// The index of the current set.
    pub fn index(&self) -> u64 {
        self.current.read().index
    }

    /// Picks one instance; `key` is required by [`Strategy::ConsistentHash`]. `None` when there
    /// is no healthy instance.
    pub fn pick(&self, strategy: Strategy, key: Option<&str>) -> Result<Option<ServiceEntry>> {
        if strategy == Strategy::Nearest {
            self.near_wanted.store(true, Ordering::Relaxed);
        }
        let cur = self.current.read();
        if cur.list.is_empty() {
            return Ok(None);
        }
        let now = std::time::Instant::now();
        let balancer = self.balancer.lock();
        let mut eligible = balancer.eligible(&cur.list, now);
        let mut strategy = strategy;
        if strategy == Strategy::Locality {
            // Before taking the policy's lock: `caller_locality` reads it too.
            let caller = self.caller_locality();
            let policy = self.locality_policy.read();
            let (ring, within) = locality::candidates(&cur.list, &eligible, caller.as_ref(), policy.min_healthy);
            eligible = within;
            strategy = policy.strategy(ring);
            if strategy == Strategy::Nearest {
                self.near_wanted.store(true, Ordering::Relaxed);
            }
        }
        if eligible.is_empty() {
            return Ok(None);
        }
        if strategy == Strategy::LeastLatency {
            let i = balancer.least_latency(&cur.list, &eligible, now, &mut rand::thread_rng());
            return Ok(i.and_then(|i| cur.list.get(i).cloned()));
        }
        drop(balancer);
        if eligible.len() == cur.list.len() {
            let i = choose(&cur.list, cur.by_distance, strategy, key, &self.cursor)?;
            return Ok(cur.list.get(i).cloned());
        }
        // Some instances are ejected: choose among the rest, in the same order.
        let rest: Vec<ServiceEntry> = eligible.iter().map(|i| cur.list[*i].clone()).collect();
        let i = choose(&rest, cur.by_distance, strategy, key, &self.cursor)?;
        Ok(rest.into_iter().nth(i))
    }

    /// Reports how a call to `instance` went: its latency and whether it succeeded. Drives
    /// [`Strategy::LeastLatency`] and outlier ejection (every strategy leaves ejected
    /// instances out).
    pub fn report(&self, instance: &ServiceEntry, latency: Duration, ok: bool) {
        self.report_key(instance_key(instance), latency, ok);
    }

    /// [`Discovery::report`] by the instance's node name and service ID.
    pub fn report_instance(&self, node: &str, service_id: &str, latency: Duration, ok: bool) -> Result<()> {
        if node.is_empty() || service_id.is_empty() {
            return Err(Error::invalid("instance", "needs its node name and service ID"));
        }
        self.report_key((node.to_string(), service_id.to_string()), latency, ok);
        Ok(())
    }

    fn report_key(&self, key: InstanceKey, latency: Duration, ok: bool) {
        let cur = self.current.read();
        let mut b = self.balancer.lock();
        b.report(key, latency, ok, std::time::Instant::now(), cur.list.len());
        b.retain_if_grown(&cur.list);
    }

    /// Replaces how [`Strategy::Locality`] picks (refused, naming the field, when invalid).
    pub fn set_locality_policy(&self, policy: LocalityPolicy) -> Result<()> {
        policy.validate()?;
        *self.locality_policy.write() = policy;
        Ok(())
    }

    /// How [`Strategy::Locality`] picks now.
    pub fn locality_policy(&self) -> LocalityPolicy {
        self.locality_policy.read().clone()
    }

    /// The caller's locality that [`Strategy::Locality`] uses: the policy's, else the local
    /// agent's (`None` while neither is known).
    pub fn caller_locality(&self) -> Option<Locality> {
        self.locality_wanted.store(true, Ordering::Relaxed);
        self.locality_policy.read().locality.clone().or_else(|| self.agent_locality.read().clone())
    }

    /// The ring of `instance` seen from [`Discovery::caller_locality`].
    pub fn ring_of(&self, instance: &ServiceEntry) -> Ring {
        match self.caller_locality() {
            Some(caller) => locality::ring_of(&caller, locality::instance_locality(instance)),
            None => Ring::Any,
        }
    }

    /// Replaces the balancer's tuning (what it learnt so far is kept).
    pub fn set_balancer_config(&self, config: BalancerConfig) -> Result<()> {
        config.validate()?;
        self.balancer.lock().set_config(config);
        Ok(())
    }

    /// The balancer's current tuning.
    pub fn balancer_config(&self) -> BalancerConfig {
        self.balancer.lock().config().clone()
    }

    /// Whether `instance` is ejected now.
    pub fn is_ejected(&self, instance: &ServiceEntry) -> bool {
        self.balancer.lock().is_ejected(&instance_key(instance), std::time::Instant::now())
    }

    /// [`Discovery::is_ejected`] by the instance's node name and service ID.
    pub fn is_ejected_instance(&self, node: &str, service_id: &str) -> bool {
        let key = (node.to_string(), service_id.to_string());
        self.balancer.lock().is_ejected(&key, std::time::Instant::now())
    }

    /// The decayed average latency reported for `instance`, when there are reports.
    pub fn latency(&self, instance: &ServiceEntry) -> Option<Duration> {
        let ms = self.balancer.lock().latency_ms(&instance_key(instance), std::time::Instant::now())?;
        Some(Duration::from_secs_f64(ms / 1000.0))
    }

    /// Stops tracking.
    pub fn close(&self) {
        self.cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(nodes: &[&str]) -> Vec<ServiceEntry> {
        nodes
            .iter()
            .map(|n| {
                let mut e = ServiceEntry::default();
                e.node.node = n.to_string();
                e.service.id = format!("web-{n}");
                e
            })
            .collect()
    }

    #[test]
    fn nearest_takes_the_first_of_an_rtt_ordered_set() {
        let list = entries(&["near", "mid", "far"]);
        let cursor = AtomicUsize::new(0);
        for _ in 0..5 {
            assert_eq!(choose(&list, true, Strategy::Nearest, None, &cursor).expect("pick"), 0);
        }
    }

    #[test]
    fn nearest_round_robins_without_coordinates() {
        let list = entries(&["a", "b", "c"]);
        let cursor = AtomicUsize::new(0);
        let picked: Vec<usize> =
            (0..6).map(|_| choose(&list, false, Strategy::Nearest, None, &cursor).expect("pick")).collect();
        assert_eq!(picked, vec![0, 1, 2, 0, 1, 2]);
        // Other strategies ignore the order's origin.
        assert_eq!(choose(&list, true, Strategy::RoundRobin, None, &cursor).expect("pick"), 0);
        assert!(choose(&list, true, Strategy::ConsistentHash, None, &cursor).is_err());
    }

    #[test]
    fn strategies_parse() {
        assert_eq!(Strategy::parse("nearest").expect("nearest"), Strategy::Nearest);
        assert_eq!(Strategy::parse("round-robin").expect("rr"), Strategy::RoundRobin);
        assert_eq!(Strategy::parse("closest").expect_err("unknown").code, ErrorCode::InvalidArgument);
    }
}
