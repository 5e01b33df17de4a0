//! Native handles with background work: watches, discoveries, locks and registrations.
//!
//! Each has an idempotent, synchronous `close`/`release` so `index.js` can stop it from
//! `process.on('exit')`, where nothing asynchronous runs any more.

use std::sync::Arc;
use std::time::Duration;

use consul_sdk::{Discovery, ElectionEvent, Error, ErrorCode, LeaderElection, Lock, Registration, Strategy, Watch};
use napi_derive::napi;

use crate::call::{js_err, spawn, spawn_weak, Callback, Result};
use crate::convert::{millis, opt_millis, JsLocality, JsServiceEntry, JsWatchEvent};

/// Runs `fut` to completion from the JS thread, bounded by `timeout` (exit-time cleanup only:
/// the JS thread is not inside any tokio runtime, so this cannot deadlock).
fn block_on_bounded<T: Send + 'static>(
    timeout: Duration,
    fut: impl std::future::Future<Output = consul_sdk::Result<T>> + Send + 'static,
) -> consul_sdk::Result<T> {
    consul_sdk::runtime::block_on(async move {
        tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or_else(|_| Err(Error::new(ErrorCode::Timeout, format!("not done within {timeout:?}"))))
    })?
}

/// A running watch.
#[napi]
pub struct NativeWatch {
    watch: Arc<Watch>,
}

impl NativeWatch {
    pub(crate) fn new(watch: Watch) -> Self {
        NativeWatch { watch: Arc::new(watch) }
    }
}

#[napi]
impl NativeWatch {
    /// The next changed result, or `null` once closed. The pending call does not keep Node
    /// alive (`index.js` holds the watch's keep-alive handle).
    #[napi]
    pub fn next(&self, cb: Callback<'_>) -> Result<()> {
        let w = self.watch.clone();
        spawn_weak(cb, async move { Ok(w.next().await?.map(JsWatchEvent::from)) })
    }

    /// Stops the watch; pending and later `next` calls answer `null`. Idempotent.
    #[napi]
    pub fn close(&self) {
        self.watch.close();
    }

    /// Whether `close` was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.watch.is_closed()
    }
}

/// Balancer tuning (`Discovery.configureBalancer`); every field optional.
#[napi(object)]
pub struct JsBalancerOptions {
    pub ewma_alpha: Option<f64>,
    pub decay_half_life_ms: Option<f64>,
    pub consecutive_failures: Option<u32>,
    pub max_error_rate: Option<f64>,
    pub error_window_ms: Option<f64>,
    pub min_requests: Option<u32>,
    pub base_ejection_ms: Option<f64>,
    pub max_ejection_ms: Option<f64>,
    pub max_ejected_share: Option<f64>,
}

/// Locality-aware picking (`Discovery.setLocalityPolicy`); every field optional.
#[napi(object)]
pub struct JsLocalityPolicy {
    pub min_healthy: Option<u32>,
    pub zone_strategy: Option<String>,
    pub region_strategy: Option<String>,
    pub other_strategy: Option<String>,
    /// The caller's locality; `null` (or both parts empty): the local agent's again.
    pub locality: Option<JsLocality>,
}

/// A live set of a service's passing instances.
#[napi]
pub struct NativeDiscovery {
    discovery: Arc<Discovery>,
}

impl NativeDiscovery {
    pub(crate) fn new(d: Discovery) -> Self {
        NativeDiscovery { discovery: Arc::new(d) }
    }
}

#[napi]
impl NativeDiscovery {
    /// Answers once the first result arrived (`TIMEOUT` after `timeout_ms`).
    #[napi]
    pub fn ready(&self, timeout_ms: f64, cb: Callback<'_>) -> Result<()> {
        let t = millis("timeoutMs", timeout_ms).map_err(js_err)?;
        let d = self.discovery.clone();
        spawn(cb, async move { d.ready(t).await })
    }

    /// One instance, or `null` when none passes; answered locally.
    #[napi(catch_unwind)]
    pub fn pick(&self, strategy: String, key: Option<String>) -> Result<Option<JsServiceEntry>> {
        let s: Strategy = strategy.parse().map_err(js_err)?;
        Ok(self.discovery.pick(s, key.as_deref()).map_err(js_err)?.map(JsServiceEntry::from))
    }

    /// The current passing instances.
    #[napi]
    pub fn instances(&self) -> Vec<JsServiceEntry> {
        self.discovery.instances().into_iter().map(JsServiceEntry::from).collect()
    }

    /// Reports a call to the instance (`node`, `service_id`): its latency and whether it
    /// succeeded (drives `least_latency` and outlier ejection).
    #[napi(catch_unwind)]
    pub fn report(&self, node: String, service_id: String, latency_ms: f64, ok: bool) -> Result<()> {
        let l = millis("latencyMs", latency_ms).map_err(js_err)?;
        self.discovery.report_instance(&node, &service_id, l, ok).map_err(js_err)
    }

    /// Replaces the balancer's tuning; absent fields keep their current values.
    #[napi(catch_unwind)]
    pub fn configure_balancer(&self, o: JsBalancerOptions) -> Result<()> {
        let mut c = self.discovery.balancer_config();
        c.ewma_alpha = o.ewma_alpha.unwrap_or(c.ewma_alpha);
        c.decay_half_life =
            opt_millis("decayHalfLifeMs", o.decay_half_life_ms).map_err(js_err)?.unwrap_or(c.decay_half_life);
        c.consecutive_failures = o.consecutive_failures.unwrap_or(c.consecutive_failures);
        c.max_error_rate = o.max_error_rate.unwrap_or(c.max_error_rate);
        c.error_window = opt_millis("errorWindowMs", o.error_window_ms).map_err(js_err)?.unwrap_or(c.error_window);
        c.min_requests = o.min_requests.unwrap_or(c.min_requests);
        c.base_ejection = opt_millis("baseEjectionMs", o.base_ejection_ms).map_err(js_err)?.unwrap_or(c.base_ejection);
        c.max_ejection = opt_millis("maxEjectionMs", o.max_ejection_ms).map_err(js_err)?.unwrap_or(c.max_ejection);
        c.max_ejected_share = o.max_ejected_share.unwrap_or(c.max_ejected_share);
        self.discovery.set_balancer_config(c).map_err(js_err)
    }

    /// Replaces how `locality` picks; absent fields keep their current values.
    #[napi(catch_unwind)]
    pub fn set_locality_policy(&self, o: JsLocalityPolicy) -> Result<()> {
        let mut p = self.discovery.locality_policy();
        p.min_healthy = o.min_healthy.map_or(p.min_healthy, |n| n as usize);
        let parse = |s: Option<String>, current: Strategy| -> Result<Strategy> {
            s.map(|s| s.parse().map_err(js_err)).transpose().map(|s| s.unwrap_or(current))
        };
        p.zone = parse(o.zone_strategy, p.zone)?;
        p.region = parse(o.region_strategy, p.region)?;
        p.other = parse(o.other_strategy, p.other)?;
        if let Some(l) = o.locality {
            p.locality = (!l.region.is_empty() || !l.zone.is_empty())
                .then_some(consul_sdk::Locality { region: l.region, zone: l.zone });
        }
        self.discovery.set_locality_policy(p).map_err(js_err)
    }

    /// The caller's locality `locality` picks use (set, else the local agent's), or `null`.
    #[napi]
    pub fn caller_locality(&self) -> Option<JsLocality> {
        self.discovery.caller_locality().map(JsLocality::from)
    }

    /// Whether the instance is ejected now.
    #[napi]
    pub fn is_ejected(&self, node: String, service_id: String) -> bool {
        self.discovery.is_ejected_instance(&node, &service_id)
    }

    /// The index of the current set.
    #[napi(getter)]
    pub fn index(&self) -> f64 {
        self.discovery.index() as f64
    }

    /// Stops tracking. Idempotent.
    #[napi]
    pub fn close(&self) {
        self.discovery.close();
    }
}

/// A held lock.
#[napi]
pub struct NativeLock {
    lock: Arc<Lock>,
}

impl NativeLock {
    pub(crate) fn new(lock: Arc<Lock>) -> Self {
        NativeLock { lock }
    }
}

#[napi]
impl NativeLock {
    /// Whether the lock is still held.
    #[napi(getter)]
    pub fn held(&self) -> bool {
        self.lock.is_held()
    }

    /// The locked key.
    #[napi(getter)]
    pub fn key(&self) -> String {
        self.lock.key().to_string()
    }

    /// The session holding the lock.
    #[napi(getter)]
    pub fn session(&self) -> String {
        self.lock.session().to_string()
    }

    /// Answers when the lock is lost or released; does not keep Node alive.
    #[napi]
    pub fn lost(&self, cb: Callback<'_>) -> Result<()> {
        let l = self.lock.clone();
        spawn_weak(cb, async move {
            l.lost().await;
            Ok(())
        })
    }

    /// Releases the key and destroys the session. Idempotent.
    #[napi]
    pub fn release(&self, cb: Callback<'_>) -> Result<()> {
        let l = self.lock.clone();
        spawn(cb, async move { l.release().await })
    }

    /// [`NativeLock::release`] from the JS thread, at most `timeout_ms` (process exit).
    #[napi(catch_unwind)]
    pub fn release_sync(&self, timeout_ms: f64) -> Result<()> {
        let t = millis("timeoutMs", timeout_ms).map_err(js_err)?;
        let l = self.lock.clone();
        block_on_bounded(t, async move { l.release().await }).map_err(js_err)
    }
}

/// A running leader election (the SDK's [`LeaderElection`]).
#[napi]
pub struct NativeElection {
    election: Arc<LeaderElection>,
}

impl NativeElection {
    pub(crate) fn new(election: LeaderElection) -> Self {
        NativeElection { election: Arc::new(election) }
    }
}

#[napi]
impl NativeElection {
    /// Whether this process holds leadership now.
    #[napi(getter)]
    pub fn is_leader(&self) -> bool {
        self.election.is_leader()
    }

    /// Whether `resign` was called.
    #[napi(getter)]
    pub fn resigned(&self) -> bool {
        self.election.is_resigned()
    }

    /// Answers the next change, `"elected"` or `"lost"`, or `null` once resigned; does not
    /// keep Node alive (`index.js` holds the election's keep-alive handle).
    #[napi]
    pub fn next_event(&self, cb: Callback<'_>) -> Result<()> {
        let e = self.election.clone();
        spawn_weak(cb, async move {
            Ok(e.next_event().await.map(|ev| {
                match ev {
                    ElectionEvent::Elected => "elected",
                    ElectionEvent::Lost => "lost",
                }
                .to_string()
            }))
        })
    }

    /// Stops campaigning and gives up leadership. Idempotent.
    #[napi]
    pub fn resign(&self, cb: Callback<'_>) -> Result<()> {
        let e = self.election.clone();
        spawn(cb, async move { e.resign().await })
    }

    /// [`NativeElection::resign`] from the JS thread, at most `timeout_ms` (process exit).
    #[napi(catch_unwind)]
    pub fn resign_sync(&self, timeout_ms: f64) -> Result<()> {
        let t = millis("timeoutMs", timeout_ms).map_err(js_err)?;
        let e = self.election.clone();
        block_on_bounded(t, async move { e.resign().await }).map_err(js_err)
    }
}

/// A service registration kept alive.
#[napi]
pub struct NativeRegistration {
    reg: Arc<Registration>,
}

impl NativeRegistration {
    pub(crate) fn new(reg: Registration) -> Self {
        NativeRegistration { reg: Arc::new(reg) }
    }
}

#[napi]
impl NativeRegistration {
    /// The registered service ID.
    #[napi(getter)]
    pub fn service_id(&self) -> String {
        self.reg.service_id().to_string()
    }

    /// The IDs of its checks.
    #[napi(getter)]
    pub fn check_ids(&self) -> Vec<String> {
        self.reg.check_ids().to_vec()
    }

    /// Whether `close` was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.reg.is_closed()
    }

    /// Stops the keep-alive and deregisters. Idempotent.
    #[napi]
    pub fn close(&self, cb: Callback<'_>) -> Result<()> {
        let r = self.reg.clone();
        spawn(cb, async move { r.close().await })
    }

    /// [`NativeRegistration::close`] from the JS thread, at most `timeout_ms` (process exit).
    #[napi(catch_unwind)]
    pub fn close_sync(&self, timeout_ms: f64) -> Result<()> {
        let t = millis("timeoutMs", timeout_ms).map_err(js_err)?;
        let r = self.reg.clone();
        block_on_bounded(t, async move { r.close().await }).map_err(js_err)
    }
}
