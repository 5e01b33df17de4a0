//! Handles on background work: watches, discovery, locks, elections, registrations.
use std::sync::Arc;

use consul_sdk::{
    Discovery, ElectionEvent, Error, ErrorCode, LeaderElection, Locality, Lock, Registration, Strategy, Watch,
    WatchValue,
};
use pyo3::prelude::*;

use crate::{convert::*, error::*, runtime::*};

/// A running watch.
#[pyclass(frozen, module = "consul_rs._native")]
pub(crate) struct NativeWatch {
    pub(crate) watch: Arc<Watch>,
}

pub(crate) fn watch_event(py: Python<'_>, ev: Option<consul_sdk::WatchEvent>) -> PyResult<Py<PyAny>> {
    let Some(ev) = ev else { return Ok(py.None()) };
    let (kind, payload) = match &ev.value {
        WatchValue::Kv(p) => ("key", kv_opt(py, p.as_ref())?),
        WatchValue::KvList(l) => ("key_prefix", kv_list(py, l)?),
        WatchValue::Service(v) => ("service", json_text(py, v)?),
        WatchValue::Checks(v) => ("checks", json_text(py, v)?),
        WatchValue::Services(v) => ("services", json_text(py, v)?),
        WatchValue::Nodes(v) => ("nodes", json_text(py, v)?),
        WatchValue::Events(v) => ("events", event_list(py, v)?),
        WatchValue::Raw(v) => ("raw", json_text(py, v)?),
    };
    obj(py, (ev.index, kind, payload))
}

#[pymethods]
impl NativeWatch {
    /// The next changed result as `(index, kind, payload)`, or `None` once closed. With a
    /// `timeout`, raises `ConsulTimeoutError` if nothing changes in time.
    #[pyo3(signature = (timeout=None, is_async=false))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>, is_async: bool) -> PyResult<Py<PyAny>> {
        let timeout = opt_secs("timeout", timeout).map_err(|e| to_py_err(py, e))?;
        let w = self.watch.clone();
        go(
            py,
            is_async,
            async move {
                match timeout {
                    Some(t) => w.next_timeout(t).await,
                    None => w.next().await,
                }
            },
            Box::new(watch_event),
        )
    }

    /// Stops the watch; pending and later `next` calls return `None`. Idempotent.
    fn close(&self) {
        self.watch.close();
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.watch.is_closed()
    }
}

/// A live set of a service's passing instances.
#[pyclass(frozen, module = "consul_rs._native")]
pub(crate) struct NativeDiscovery {
    pub(crate) discovery: Arc<Discovery>,
}

#[pymethods]
impl NativeDiscovery {
    /// Waits (GIL released) until the first result arrived.
    #[pyo3(signature = (timeout=10.0, is_async=false))]
    fn ready(&self, py: Python<'_>, timeout: f64, is_async: bool) -> PyResult<Py<PyAny>> {
        let t = secs("timeout", timeout).map_err(|e| to_py_err(py, e))?;
        let d = self.discovery.clone();
        go(py, is_async, async move { d.ready(t).await }, plain())
    }

    /// One instance as JSON text, or `None` when none is healthy. Answered locally.
    #[pyo3(signature = (strategy="round_robin", key=None))]
    fn pick(&self, py: Python<'_>, strategy: &str, key: Option<&str>) -> PyResult<Option<String>> {
        let s: Strategy = strategy.parse().map_err(|e| to_py_err(py, e))?;
        let picked = self.discovery.pick(s, key).map_err(|e| to_py_err(py, e))?;
        picked
            .map(|e| serde_json::to_string(&e))
            .transpose()
            .map_err(|e| to_py_err(py, Error::new(ErrorCode::Internal, e.to_string())))
    }

    /// The current instances, JSON text.
    fn instances(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        json_text(py, &self.discovery.instances())
    }

    /// Reports a call to the instance (`node`, `service_id`): its latency in seconds and
    /// whether it succeeded (drives `least_latency` and outlier ejection).
    fn report(&self, py: Python<'_>, node: &str, service_id: &str, latency: f64, ok: bool) -> PyResult<()> {
        let l = secs("latency", latency).map_err(|e| to_py_err(py, e))?;
        self.discovery.report_instance(node, service_id, l, ok).map_err(|e| to_py_err(py, e))
    }

    /// Replaces the balancer's tuning; `None` keeps a field's current value.
    #[pyo3(signature = (ewma_alpha=None, decay_half_life=None, consecutive_failures=None, max_error_rate=None,
                        error_window=None, min_requests=None, base_ejection=None, max_ejection=None,
                        max_ejected_share=None))]
    #[allow(clippy::too_many_arguments)]
    fn configure_balancer(
        &self,
        py: Python<'_>,
        ewma_alpha: Option<f64>,
        decay_half_life: Option<f64>,
        consecutive_failures: Option<u32>,
        max_error_rate: Option<f64>,
        error_window: Option<f64>,
        min_requests: Option<u32>,
        base_ejection: Option<f64>,
        max_ejection: Option<f64>,
        max_ejected_share: Option<f64>,
    ) -> PyResult<()> {
        let err = |e| to_py_err(py, e);
        let mut c = self.discovery.balancer_config();
        c.ewma_alpha = ewma_alpha.unwrap_or(c.ewma_alpha);
        c.decay_half_life = opt_secs("decay_half_life", decay_half_life).map_err(err)?.unwrap_or(c.decay_half_life);
        c.consecutive_failures = consecutive_failures.unwrap_or(c.consecutive_failures);
        c.max_error_rate = max_error_rate.unwrap_or(c.max_error_rate);
        c.error_window = opt_secs("error_window", error_window).map_err(err)?.unwrap_or(c.error_window);
        c.min_requests = min_requests.unwrap_or(c.min_requests);
        c.base_ejection = opt_secs("base_ejection", base_ejection).map_err(err)?.unwrap_or(c.base_ejection);
        c.max_ejection = opt_secs("max_ejection", max_ejection).map_err(err)?.unwrap_or(c.max_ejection);
        c.max_ejected_share = max_ejected_share.unwrap_or(c.max_ejected_share);
        self.discovery.set_balancer_config(c).map_err(err)
    }

    /// Replaces how `locality` picks; `None` keeps a field's current value. `region`/`zone`
    /// set the caller's locality (both empty: the local agent's again).
    #[pyo3(signature = (min_healthy=None, zone_strategy=None, region_strategy=None, other_strategy=None,
                        region=None, zone=None))]
    #[allow(clippy::too_many_arguments)]
    fn set_locality_policy(
        &self,
        py: Python<'_>,
        min_healthy: Option<usize>,
        zone_strategy: Option<&str>,
        region_strategy: Option<&str>,
        other_strategy: Option<&str>,
        region: Option<String>,
        zone: Option<String>,
    ) -> PyResult<()> {
        let err = |e| to_py_err(py, e);
        let mut p = self.discovery.locality_policy();
        p.min_healthy = min_healthy.unwrap_or(p.min_healthy);
        p.zone = zone_strategy.map(str::parse).transpose().map_err(err)?.unwrap_or(p.zone);
        p.region = region_strategy.map(str::parse).transpose().map_err(err)?.unwrap_or(p.region);
        p.other = other_strategy.map(str::parse).transpose().map_err(err)?.unwrap_or(p.other);
        if region.is_some() || zone.is_some() {
            let l = Locality { region: region.unwrap_or_default(), zone: zone.unwrap_or_default() };
            p.locality = (!l.region.is_empty() || !l.zone.is_empty()).then_some(l);
        }
        self.discovery.set_locality_policy(p).map_err(err)
    }

    /// The caller's `(region, zone)` that `locality` picks use, or `None` while unknown.
    fn caller_locality(&self) -> Option<(String, String)> {
        self.discovery.caller_locality().map(|l| (l.region, l.zone))
    }

    /// Whether the instance is ejected now.
    fn is_ejected(&self, node: &str, service_id: &str) -> bool {
        self.discovery.is_ejected_instance(node, service_id)
    }

    /// The index of the current set.
    #[getter]
    fn index(&self) -> u64 {
        self.discovery.index()
    }

    /// Stops tracking. Idempotent.
    fn close(&self) {
        self.discovery.close();
    }
}

/// A held lock.
#[pyclass(frozen, module = "consul_rs._native")]
pub(crate) struct NativeLock {
    pub(crate) lock: Arc<Lock>,
}

#[pymethods]
impl NativeLock {
    /// Whether the lock is still held.
    #[getter]
    fn held(&self) -> bool {
        self.lock.is_held()
    }

    /// The locked key.
    #[getter]
    fn key(&self) -> String {
        self.lock.key().to_string()
    }

    /// The session holding the lock.
    #[getter]
    fn session(&self) -> String {
        self.lock.session().to_string()
    }

    /// Releases the key and destroys the session. Idempotent.
    #[pyo3(signature = (is_async=false))]
    fn release(&self, py: Python<'_>, is_async: bool) -> PyResult<Py<PyAny>> {
        let l = self.lock.clone();
        go(py, is_async, async move { l.release().await }, plain())
    }
}

/// A service registration kept alive.
#[pyclass(frozen, module = "consul_rs._native")]
pub(crate) struct NativeRegistration {
    pub(crate) reg: Arc<Registration>,
}

#[pymethods]
impl NativeRegistration {
    /// The registered service ID.
    #[getter]
    fn service_id(&self) -> String {
        self.reg.service_id().to_string()
    }

    /// The IDs of its checks.
    #[getter]
    fn check_ids(&self) -> Vec<String> {
        self.reg.check_ids().to_vec()
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.reg.is_closed()
    }

    /// Stops the keep-alive and deregisters. Idempotent.
    #[pyo3(signature = (is_async=false))]
    fn close(&self, py: Python<'_>, is_async: bool) -> PyResult<Py<PyAny>> {
        let r = self.reg.clone();
        go(py, is_async, async move { r.close().await }, plain())
    }
}

/// A running leader election (the SDK's [`consul_sdk::LeaderElection`]).
#[pyclass(frozen, module = "consul_rs._native")]
pub(crate) struct NativeElection {
    pub(crate) election: Arc<LeaderElection>,
}

#[pymethods]
impl NativeElection {
    /// Whether this process holds leadership now.
    #[getter]
    fn is_leader(&self) -> bool {
        self.election.is_leader()
    }

    /// The next change, `"elected"` or `"lost"`; `None` after `timeout` seconds without one or
    /// once resigned. Blocks with the GIL released.
    fn next_event(&self, py: Python<'_>, timeout: f64) -> PyResult<Py<PyAny>> {
        let t = secs("timeout", timeout).map_err(|e| to_py_err(py, e))?;
        let e = self.election.clone();
        let fut = async move {
            let ev = tokio::time::timeout(t, e.next_event()).await.ok().flatten();
            Ok::<_, Error>(ev.map(|ev| match ev {
                ElectionEvent::Elected => "elected",
                ElectionEvent::Lost => "lost",
            }))
        };
        go(py, false, fut, plain())
    }

    /// Whether `resign` was called.
    #[getter]
    fn resigned(&self) -> bool {
        self.election.is_resigned()
    }

    /// Stops campaigning and gives up leadership. Idempotent.
    fn resign(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let e = self.election.clone();
        go(py, false, async move { e.resign().await }, plain())
    }
}
