//! Handles on background work: watches, discoveries, locks, elections, registrations.
//!
//! Each is a uniffi object the Kotlin layer closes deterministically (`AutoCloseable`); when a
//! handle is only collected (uniffi's cleaner frees it), `Drop` here still stops its background
//! task, and gives up what it holds (a lock's key and session, a registration, a leadership) on
//! the SDK runtime rather than leaving it to the TTL.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use consul_sdk::{Discovery, ElectionEvent, LeaderElection, Lock, Registration, Strategy, Watch, WatchValue};

use crate::convert::*;
use crate::error::FfiResult;
use crate::runtime::run;

/// Handles alive on the Rust side (watches, discoveries, locks, registrations, elections): what
/// the JVM suite reads to see that handles it only dropped were freed by the cleaner.
static LIVE: AtomicU64 = AtomicU64::new(0);

/// The number of native handles alive now (diagnostics, and the cleaner test).
#[uniffi::export]
pub fn live_handles() -> u64 {
    LIVE.load(Ordering::SeqCst)
}

/// Counts one live handle from construction to drop.
#[derive(Debug)]
struct Counted;

impl Counted {
    fn new() -> Self {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `fut` on the SDK runtime without waiting (from `Drop`); nothing when there is none.
fn detach(fut: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(rt) = consul_sdk::runtime::runtime() {
        rt.spawn(fut);
    }
}

/// One watch delivery: `kind` says which field carries the result (`key`: `pair`; `key_prefix`:
/// `pairs`; `service`: `entries`; `checks`: `checks`; `services`: `services`; `nodes`: `nodes`;
/// `events`: `events`).
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiWatchEvent {
    /// `X-Consul-Index` of the result.
    pub index: u64,
    /// The watch kind.
    pub kind: String,
    /// A key's pair (`None`: the key does not exist).
    pub pair: Option<FfiKvPair>,
    /// A prefix's pairs.
    pub pairs: Vec<FfiKvPair>,
    /// A service's instances.
    pub entries: Vec<FfiServiceEntry>,
    /// A service's checks.
    pub checks: Vec<FfiHealthCheck>,
    /// Service names and tags.
    pub services: HashMap<String, Vec<String>>,
    /// Nodes.
    pub nodes: Vec<FfiNode>,
    /// User events, oldest first.
    pub events: Vec<FfiUserEvent>,
}

fn watch_event(ev: consul_sdk::WatchEvent) -> FfiWatchEvent {
    let mut out = FfiWatchEvent {
        index: ev.index,
        kind: String::new(),
        pair: None,
        pairs: vec![],
        entries: vec![],
        checks: vec![],
        services: HashMap::new(),
        nodes: vec![],
        events: vec![],
    };
    let kind = match &ev.value {
        WatchValue::Kv(p) => {
            out.pair = p.as_ref().map(Into::into);
            "key"
        }
        WatchValue::KvList(l) => {
            out.pairs = l.iter().map(Into::into).collect();
            "key_prefix"
        }
        WatchValue::Service(l) => {
            out.entries = l.iter().map(Into::into).collect();
            "service"
        }
        WatchValue::Checks(l) => {
            out.checks = l.iter().map(Into::into).collect();
            "checks"
        }
        WatchValue::Services(m) => {
            out.services = m.clone().into_iter().collect();
            "services"
        }
        WatchValue::Nodes(l) => {
            out.nodes = l.iter().map(Into::into).collect();
            "nodes"
        }
        WatchValue::Events(l) => {
            out.events = l.iter().map(Into::into).collect();
            "events"
        }
        // The bindings never start raw watches.
        WatchValue::Raw(_) => "raw",
    };
    out.kind = kind.to_string();
    out
}

/// A running watch.
#[derive(Debug, uniffi::Object)]
pub struct FfiWatch {
    watch: Arc<Watch>,
    _counted: Counted,
}

impl FfiWatch {
    pub(crate) fn new(watch: Watch) -> Self {
        FfiWatch { watch: Arc::new(watch), _counted: Counted::new() }
    }
}

impl Drop for FfiWatch {
    fn drop(&mut self) {
        self.watch.close();
    }
}

#[uniffi::export]
impl FfiWatch {
    /// The next changed result (the first call: the current one); `None` once closed. With
    /// `timeout_secs`, `TIMEOUT` when nothing changes in time.
    pub async fn next(&self, timeout_secs: Option<f64>) -> FfiResult<Option<FfiWatchEvent>> {
        let timeout = opt_secs("timeout", timeout_secs)?;
        let w = self.watch.clone();
        run(async move {
            let ev = match timeout {
                Some(t) => w.next_timeout(t).await?,
                None => w.next().await?,
            };
            Ok(ev.map(watch_event))
        })
        .await
    }

    /// Stops the watch; pending and later `next` calls answer `None`. Idempotent. (Not `close`:
    /// uniffi's Kotlin objects already have `close()`, which frees the handle.)
    pub fn stop(&self) {
        self.watch.close();
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.watch.is_closed()
    }
}

/// A live set of a service's passing instances.
#[derive(Debug, uniffi::Object)]
pub struct FfiDiscovery {
    discovery: Arc<Discovery>,
    _counted: Counted,
}

impl FfiDiscovery {
    pub(crate) fn new(discovery: Discovery) -> Self {
        FfiDiscovery { discovery: Arc::new(discovery), _counted: Counted::new() }
    }
}

impl Drop for FfiDiscovery {
    fn drop(&mut self) {
        self.discovery.close();
    }
}

#[uniffi::export]
impl FfiDiscovery {
    /// Waits until the first result arrived (`TIMEOUT` after `timeout_secs`).
    pub async fn ready(&self, timeout_secs: f64) -> FfiResult<()> {
        let t = secs("timeout", timeout_secs)?;
        let d = self.discovery.clone();
        run(async move { Ok(d.ready(t).await?) }).await
    }

    /// One instance by `strategy` (a name `Strategy.parse` reads), `None` when none is healthy;
    /// `key` is for `consistent_hash`. Answered locally.
    pub fn pick(&self, strategy: String, key: Option<String>) -> FfiResult<Option<FfiServiceEntry>> {
        let s: Strategy = strategy.parse()?;
        Ok(self.discovery.pick(s, key.as_deref())?.as_ref().map(Into::into))
    }

    /// The current instances.
    pub fn instances(&self) -> Vec<FfiServiceEntry> {
        self.discovery.instances().iter().map(Into::into).collect()
    }

    /// Reports a call to the instance (`node`, `service_id`): latency in seconds and success
    /// (drives `least_latency` and outlier ejection).
    pub fn report(&self, node: String, service_id: String, latency_secs: f64, ok: bool) -> FfiResult<()> {
        let l = secs("latency", latency_secs)?;
        Ok(self.discovery.report_instance(&node, &service_id, l, ok)?)
    }

    /// The index of the current set.
    pub fn index(&self) -> u64 {
        self.discovery.index()
    }

    /// Stops tracking. Idempotent.
    pub fn stop(&self) {
        self.discovery.close();
    }
}

/// A held lock.
#[derive(Debug, uniffi::Object)]
pub struct FfiLock {
    lock: Arc<Lock>,
    _counted: Counted,
}

impl FfiLock {
    pub(crate) fn new(lock: Lock) -> Self {
        FfiLock { lock: Arc::new(lock), _counted: Counted::new() }
    }
}

impl Drop for FfiLock {
    fn drop(&mut self) {
        // Collected without release(): give the key up now rather than after the session TTL.
        if self.lock.is_held() {
            let l = self.lock.clone();
            detach(async move {
                let _ = l.release().await;
            });
        }
    }
}

#[uniffi::export]
impl FfiLock {
    /// Whether the lock is still held (its session alive and renewed).
    pub fn is_held(&self) -> bool {
        self.lock.is_held()
    }

    /// The locked key.
    pub fn key(&self) -> String {
        self.lock.key().to_string()
    }

    /// The session holding the lock.
    pub fn session(&self) -> String {
        self.lock.session().to_string()
    }

    /// Waits until the lock is lost (its session expired or was destroyed) or released.
    pub async fn lost(&self) -> FfiResult<()> {
        let l = self.lock.clone();
        run(async move {
            l.lost().await;
            Ok(())
        })
        .await
    }

    /// Releases the key and destroys the session. Idempotent.
    pub async fn release(&self) -> FfiResult<()> {
        let l = self.lock.clone();
        run(async move { Ok(l.release().await?) }).await
    }
}

/// A service registration kept alive.
#[derive(Debug, uniffi::Object)]
pub struct FfiRegistration {
    reg: Arc<Registration>,
    _counted: Counted,
}

impl FfiRegistration {
    pub(crate) fn new(reg: Registration) -> Self {
        FfiRegistration { reg: Arc::new(reg), _counted: Counted::new() }
    }
}

impl Drop for FfiRegistration {
    fn drop(&mut self) {
        if !self.reg.is_closed() {
            let r = self.reg.clone();
            detach(async move {
                let _ = r.close().await;
            });
        }
    }
}

#[uniffi::export]
impl FfiRegistration {
    /// The registered service ID.
    pub fn service_id(&self) -> String {
        self.reg.service_id().to_string()
    }

    /// The IDs of its checks.
    pub fn check_ids(&self) -> Vec<String> {
        self.reg.check_ids().to_vec()
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.reg.is_closed()
    }

    /// Stops the keep-alive and deregisters. Idempotent.
    pub async fn deregister(&self) -> FfiResult<()> {
        let r = self.reg.clone();
        run(async move { Ok(r.close().await?) }).await
    }
}

/// A running leader election.
#[derive(Debug, uniffi::Object)]
pub struct FfiElection {
    election: Arc<LeaderElection>,
    _counted: Counted,
}

impl FfiElection {
    pub(crate) fn new(election: LeaderElection) -> Self {
        FfiElection { election: Arc::new(election), _counted: Counted::new() }
    }
}

impl Drop for FfiElection {
    fn drop(&mut self) {
        if !self.election.is_resigned() {
            let e = self.election.clone();
            detach(async move {
                let _ = e.resign().await;
            });
        }
    }
}

#[uniffi::export]
impl FfiElection {
    /// Whether this process holds leadership now.
    pub fn is_leader(&self) -> bool {
        self.election.is_leader()
    }

    /// The election's key.
    pub fn key(&self) -> String {
        self.election.key().to_string()
    }

    /// The next change, `elected` or `lost`; `None` once resigned and every change was
    /// returned, or after `timeout_secs` without a change.
    pub async fn next_event(&self, timeout_secs: Option<f64>) -> FfiResult<Option<String>> {
        let t = opt_secs("timeout", timeout_secs)?;
        let e = self.election.clone();
        run(async move {
            let ev = match t {
                Some(t) => tokio::time::timeout(t, e.next_event()).await.ok().flatten(),
                None => e.next_event().await,
            };
            Ok(ev.map(|ev| {
                match ev {
                    ElectionEvent::Elected => "elected",
                    ElectionEvent::Lost => "lost",
                }
                .to_string()
            }))
        })
        .await
    }

    /// Whether `resign` was called.
    pub fn is_resigned(&self) -> bool {
        self.election.is_resigned()
    }

    /// Stops campaigning and gives up leadership. Idempotent.
    pub async fn resign(&self) -> FfiResult<()> {
        let e = self.election.clone();
        run(async move { Ok(e.resign().await?) }).await
    }
}
