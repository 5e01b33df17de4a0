//! `consul_rs._native`: the thin PyO3 layer under the `consul_rs` Python package.
//!
//! Every operation exists once and runs either blocking (`is_async=False`: the GIL is released
//! and the wait is sliced so Ctrl-C is noticed) or as an awaitable (`is_async=True`: a tokio task
//! on the SDK runtime, aborted when the Python task is cancelled). Errors are mapped to the
//! exception classes of `consul_rs.errors` in one place, [`to_py_err`]. Results are plain tuples
//! and JSON text; the Python package turns them into dataclasses.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use consul_sdk::agent::{AgentConfig, Ports};
use consul_sdk::{
    AgentMember, CheckDefinition, CheckKind, Client, ClientConfig, Consistency, Discovery, EmbeddedAgent, Error,
    ErrorCode, EventFilter, HealthFilter, KvPair, Lock, LockOptions, PutOptions, QueryMeta, QueryOptions, Registration,
    ServiceRegistration, Strategy, UserEvent, Watch, WatchOptions, WatchSpec, WatchValue,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::IntoPyObjectExt;

/// How often a blocking wait wakes to let Python handle signals (Ctrl-C).
const SIGNAL_SLICE: Duration = Duration::from_millis(50);

/// The one mapping from SDK error codes to the exception classes of `consul_rs.errors`.
fn to_py_err(py: Python<'_>, e: Error) -> PyErr {
    let class = match e.code {
        ErrorCode::InvalidArgument => "InvalidArgumentError",
        ErrorCode::NotFound => "NotFoundError",
        ErrorCode::PermissionDenied => "PermissionDeniedError",
        ErrorCode::Conflict => "ConflictError",
        ErrorCode::Timeout => "ConsulTimeoutError",
        ErrorCode::Connection => "ConsulConnectionError",
        ErrorCode::NoLeader => "NoLeaderError",
        ErrorCode::Shutdown => "ShutdownError",
        ErrorCode::Forked => "ForkedError",
        ErrorCode::WouldDeadlock => "WouldDeadlockError",
        ErrorCode::TooLarge => "TooLargeError",
        _ => "ConsulError",
    };
    let made = py
        .import("consul_rs.errors")
        .and_then(|m| m.getattr(class))
        .and_then(|cls| cls.call1((e.message.clone(), e.code.as_str(), e.http_status)));
    match made {
        Ok(inst) => PyErr::from_value(inst),
        Err(import_failed) => import_failed,
    }
}

/// Set by the module's `atexit` hook: from then on no runtime thread attaches to Python. A
/// thread attaching while the interpreter finalizes is made to exit inside CPython (before
/// 3.13), which kills a Rust thread mid-unwind and crashes the process at exit. Process-wide
/// like the interpreter it guards.
static INTERPRETER_EXITING: AtomicBool = AtomicBool::new(false);
/// Runtime threads inside [`attach_unless_exiting`], which the exit hook waits for.
static ATTACHING: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` (which may attach to Python) on a runtime thread unless the interpreter is exiting;
/// `None` then, and `f` is dropped unrun.
fn attach_unless_exiting<R>(f: impl FnOnce() -> R) -> Option<R> {
    ATTACHING.fetch_add(1, Ordering::SeqCst);
    let out = if INTERPRETER_EXITING.load(Ordering::SeqCst) { None } else { Some(f()) };
    ATTACHING.fetch_sub(1, Ordering::SeqCst);
    out
}

/// The `atexit` hook (it runs before finalization, after `consul_rs`'s own hook has closed
/// watches and agents): stops runtime threads from attaching, then waits, detached, for those
/// already attaching, so none is left to attach during finalization.
#[pyfunction]
fn _before_exit(py: Python<'_>) {
    INTERPRETER_EXITING.store(true, Ordering::SeqCst);
    py.detach(|| {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while ATTACHING.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

fn sdk_runtime(py: Python<'_>) -> PyResult<Arc<tokio::runtime::Runtime>> {
    consul_sdk::runtime::runtime().map_err(|e| to_py_err(py, e))
}

/// Turns an SDK result into a Python object (runs with the GIL held).
type Convert<T> = Box<dyn FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send>;

/// The asyncio bridge's runtime: the SDK's per-process runtime (fork-aware, see
/// `consul_sdk::runtime`), so awaitables keep working in a forked child, and one runtime serves
/// sync and async calls alike.
struct SdkRuntime;

tokio::task_local! {
    static TASK_LOCALS: pyo3_async_runtimes::TaskLocals;
}

impl pyo3_async_runtimes::generic::Runtime for SdkRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match consul_sdk::runtime::runtime() {
            Ok(rt) => rt.spawn(fut),
            // Only if the SDK runtime cannot be built: fall back to the bridge's own.
            Err(_) => pyo3_async_runtimes::tokio::get_runtime().spawn(fut),
        }
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        // The bridge hands awaitables their results from here, attached to Python.
        let f = move || {
            let _ = attach_unless_exiting(f);
        };
        match consul_sdk::runtime::runtime() {
            Ok(rt) => rt.spawn_blocking(f),
            Err(_) => pyo3_async_runtimes::tokio::get_runtime().spawn_blocking(f),
        }
    }
}

impl pyo3_async_runtimes::generic::ContextExt for SdkRuntime {
    fn scope<F, R>(locals: pyo3_async_runtimes::TaskLocals, fut: F) -> std::pin::Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        Box::pin(TASK_LOCALS.scope(locals, fut))
    }

    fn get_task_locals() -> Option<pyo3_async_runtimes::TaskLocals> {
        TASK_LOCALS.try_with(|l| l.clone()).ok()
    }
}

/// Aborts a tokio task when dropped: an abandoned wait (Ctrl-C, asyncio cancellation) cancels
/// the request instead of leaving it running.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `fut` on the SDK runtime, blocking (GIL released, in signal-checked slices) or as an
/// awaitable, and converts its result.
fn go<T, F>(py: Python<'_>, is_async: bool, fut: F, convert: Convert<T>) -> PyResult<Py<PyAny>>
where
    T: Send + 'static,
    F: Future<Output = consul_sdk::Result<T>> + Send + 'static,
{
    let rt = sdk_runtime(py)?;
    if is_async {
        let handle = rt.spawn(fut);
        let guard = AbortOnDrop(handle.abort_handle());
        let aw = pyo3_async_runtimes::generic::future_into_py::<SdkRuntime, _, _>(py, async move {
            let _guard = guard;
            let out = handle.await;
            attach_unless_exiting(|| {
                Python::attach(|py| match out {
                    Ok(Ok(v)) => convert(py, v),
                    Ok(Err(e)) => Err(to_py_err(py, e)),
                    Err(j) => Err(to_py_err(py, Error::new(ErrorCode::Cancelled, format!("request ended: {j}")))),
                })
            })
            .unwrap_or_else(|| Err(pyo3::exceptions::PyRuntimeError::new_err("the interpreter is exiting")))
        })?;
        return Ok(aw.unbind());
    }
    let (tx, rx) = mpsc::sync_channel(1);
    let handle = rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    let _guard = AbortOnDrop(handle.abort_handle());
    let mut rx = rx;
    loop {
        let rx_ref = &mut rx;
        match py.detach(move || rx_ref.recv_timeout(SIGNAL_SLICE)) {
            Ok(Ok(v)) => return convert(py, v),
            Ok(Err(e)) => return Err(to_py_err(py, e)),
            Err(mpsc::RecvTimeoutError::Timeout) => py.check_signals()?,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(to_py_err(py, Error::new(ErrorCode::Internal, "the request task ended without an answer")))
            }
        }
    }
}

fn obj<'py, T: IntoPyObject<'py>>(py: Python<'py>, v: T) -> PyResult<Py<PyAny>> {
    v.into_py_any(py)
}

fn json_text<T: serde::Serialize>(py: Python<'_>, v: &T) -> PyResult<Py<PyAny>> {
    let s = serde_json::to_string(v).map_err(|e| to_py_err(py, Error::new(ErrorCode::Internal, e.to_string())))?;
    obj(py, s)
}

fn json_conv<T: serde::Serialize + Send + 'static>() -> Convert<T> {
    Box::new(|py, v| json_text(py, &v))
}

fn plain<T: for<'py> IntoPyObject<'py> + Send + 'static>() -> Convert<T> {
    Box::new(|py, v| obj(py, v))
}

/// A KV pair as `(key, value, flags, create_index, modify_index, lock_index, session)`.
fn kv_tuple(py: Python<'_>, p: &KvPair) -> PyResult<Py<PyAny>> {
    let value = p.value.as_ref().map(|v| PyBytes::new(py, v));
    obj(py, (p.key.as_str(), value, p.flags, p.create_index, p.modify_index, p.lock_index, p.session.as_deref()))
}

fn kv_opt(py: Python<'_>, p: Option<&KvPair>) -> PyResult<Py<PyAny>> {
    match p {
        Some(p) => kv_tuple(py, p),
        None => Ok(py.None()),
    }
}

fn kv_list(py: Python<'_>, l: &[KvPair]) -> PyResult<Py<PyAny>> {
    let items = l.iter().map(|p| kv_tuple(py, p)).collect::<PyResult<Vec<_>>>()?;
    obj(py, items)
}

/// A member as `(name, addr, port, tags, status)`.
fn member_tuple(py: Python<'_>, m: &AgentMember) -> PyResult<Py<PyAny>> {
    obj(py, (m.name.as_str(), m.addr.as_str(), m.port, m.tags.clone(), m.status))
}

fn member_list(py: Python<'_>, l: &[AgentMember]) -> PyResult<Py<PyAny>> {
    let items = l.iter().map(|m| member_tuple(py, m)).collect::<PyResult<Vec<_>>>()?;
    obj(py, items)
}

/// A user event as `(id, name, payload, node_filter, service_filter, tag_filter, version, ltime)`.
fn event_tuple(py: Python<'_>, e: &UserEvent) -> PyResult<Py<PyAny>> {
    let payload = e.payload.as_ref().map(|p| PyBytes::new(py, p));
    obj(
        py,
        (
            e.id.as_str(),
            e.name.as_str(),
            payload,
            e.node_filter.as_str(),
            e.service_filter.as_str(),
            e.tag_filter.as_str(),
            e.version,
            e.ltime,
        ),
    )
}

fn event_list(py: Python<'_>, l: &[UserEvent]) -> PyResult<Py<PyAny>> {
    let items = l.iter().map(|e| event_tuple(py, e)).collect::<PyResult<Vec<_>>>()?;
    obj(py, items)
}

fn consistency(c: &str) -> consul_sdk::Result<Consistency> {
    Ok(match c {
        "" | "default" => Consistency::Default,
        "stale" => Consistency::Stale,
        "consistent" => Consistency::Consistent,
        other => return Err(Error::invalid("consistency", format!("unknown mode {other:?}"))),
    })
}

fn secs(arg: &str, s: f64) -> consul_sdk::Result<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| Error::invalid(arg, format!("{s} is not a valid number of seconds")))
}

fn opt_secs(arg: &str, s: Option<f64>) -> consul_sdk::Result<Option<Duration>> {
    s.map(|s| secs(arg, s)).transpose()
}

fn query(py: Python<'_>, c: &str, index: Option<u64>, wait: Option<f64>) -> PyResult<QueryOptions> {
    let q = (|| {
        Ok::<_, Error>(QueryOptions {
            consistency: consistency(c)?,
            index,
            wait: opt_secs("wait", wait)?,
            datacenter: None,
            near: None,
        })
    })();
    q.map_err(|e| to_py_err(py, e))
}

fn meta_index(m: &QueryMeta) -> u64 {
    m.index
}

/// A check as the Python layer passes it: `(kind, target, interval, timeout, deregister_after)`.
type CheckArgs = (String, String, Option<f64>, Option<f64>, Option<f64>);

fn build_registration(
    name: String,
    id: Option<String>,
    address: Option<String>,
    port: Option<u16>,
    tags: Vec<String>,
    meta: std::collections::BTreeMap<String, String>,
    checks: Vec<CheckArgs>,
) -> consul_sdk::Result<ServiceRegistration> {
    if name.is_empty() {
        return Err(Error::invalid("name", "must not be empty"));
    }
    let checks = checks
        .into_iter()
        .map(|(kind, target, interval, timeout, dereg)| {
            let kind = match kind.as_str() {
                "http" => CheckKind::Http { url: target },
                "tcp" => CheckKind::Tcp { address: target },
                "grpc" => CheckKind::Grpc { target },
                "ttl" => CheckKind::Ttl { ttl: secs("ttl", target.parse::<f64>().unwrap_or(-1.0))? },
                other => return Err(Error::invalid("check", format!("unknown check kind {other:?}"))),
            };
            Ok(CheckDefinition {
                kind,
                interval: opt_secs("interval", interval)?,
                timeout: opt_secs("timeout", timeout)?,
                deregister_critical_after: opt_secs("deregister_critical_after", dereg)?,
            })
        })
        .collect::<consul_sdk::Result<Vec<_>>>()?;
    Ok(ServiceRegistration { id, name, tags, address, port, meta, checks })
}

/// A connection to one agent's HTTP API.
#[pyclass(frozen, module = "consul_rs._native")]
struct NativeClient {
    client: Client,
}

#[pymethods]
impl NativeClient {
    #[new]
    #[pyo3(signature = (address=None, token=None, datacenter=None, timeout=10.0))]
    fn new(
        py: Python<'_>,
        address: Option<String>,
        token: Option<String>,
        datacenter: Option<String>,
        timeout: f64,
    ) -> PyResult<Self> {
        let mut config = ClientConfig::default();
        if let Some(a) = address {
            config.address = a;
        }
        if token.is_some() {
            config.token = token;
        }
        config.datacenter = datacenter;
        config.timeout = secs("timeout", timeout).map_err(|e| to_py_err(py, e))?;
        if config.timeout.is_zero() {
            return Err(PyValueError::new_err("timeout: must be positive"));
        }
        let client = Client::new(config).map_err(|e| to_py_err(py, e))?;
        Ok(NativeClient { client })
    }

    /// The agent's base URL.
    #[getter]
    fn address(&self) -> String {
        self.client.address().to_string()
    }

    /// `(index, pair | None)` for one key.
    #[pyo3(signature = (key, consistency="", index=None, wait=None, is_async=false))]
    fn kv_get(
        &self,
        py: Python<'_>,
        key: String,
        consistency: &str,
        index: Option<u64>,
        wait: Option<f64>,
        is_async: bool,
    ) -> PyResult<Py<PyAny>> {
        let q = query(py, consistency, index, wait)?;
        let c = self.client.clone();
        go(
            py,
            is_async,
            async move { c.kv_get(&key, &q).await },
            Box::new(|py, (m, p)| obj(py, (meta_index(&m), kv_opt(py, p.as_ref())?))),
        )
    }

    /// `(index, [pair, ...])` for every key under `prefix`.
    #[pyo3(signature = (prefix, consistency="", index=None, wait=None, is_async=false))]
    fn kv_list(
        &self,
        py: Python<'_>,
        prefix: String,
        consistency: &str,
        index: Option<u64>,
        wait: Option<f64>,
        is_async: bool,
    ) -> PyResult<Py<PyAny>> {
        let q = query(py, consistency, index, wait)?;
        let c = self.client.clone();
        go(
            py,
            is_async,
            async move { c.kv_list(&prefix, &q).await },
            Box::new(|py, (m, l)| obj(py, (meta_index(&m), kv_list(py, &l)?))),
        )
    }

    /// Key names under `prefix`, folded at `separator`.
    #[pyo3(signature = (prefix, separator=None, consistency="", is_async=false))]
    fn kv_keys(
        &self,
        py: Python<'_>,
        prefix: String,
        separator: Option<String>,
        consistency: &str,
        is_async: bool,
    ) -> PyResult<Py<PyAny>> {
        let q = query(py, consistency, None, None)?;
        let c = self.client.clone();
        go(py, is_async, async move { c.kv_keys(&prefix, separator.as_deref(), &q).await.map(|(_, k)| k) }, plain())
    }

    /// Writes a key; `False` when a CAS or lock condition failed.
    #[pyo3(signature = (key, value, cas=None, flags=None, acquire=None, release=None, is_async=false))]
    #[allow(clippy::too_many_arguments)]
    fn kv_put(
        &self,
        py: Python<'_>,
        key: String,
        value: Vec<u8>,
        cas: Option<u64>,
        flags: Option<u64>,
        acquire: Option<String>,
        release: Option<String>,
        is_async: bool,
    ) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        let o = PutOptions { cas, flags, acquire, release };
        go(py, is_async, async move { c.kv_put(&key, Bytes::from(value), &o).await }, plain())
    }

    /// Deletes a key or, with `recurse`, a prefix; `False` when a CAS failed.
    #[pyo3(signature = (key, recurse=false, cas=None, is_async=false))]
    fn kv_delete(
        &self,
        py: Python<'_>,
        key: String,
        recurse: bool,
        cas: Option<u64>,
        is_async: bool,
    ) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        go(py, is_async, async move { c.kv_delete(&key, recurse, cas).await }, plain())
    }

    /// `/v1/txn` with a JSON operation list; answers JSON text.
    #[pyo3(signature = (ops_json, is_async=false))]
    fn txn(&self, py: Python<'_>, ops_json: &str, is_async: bool) -> PyResult<Py<PyAny>> {
        let ops: serde_json::Value =
            serde_json::from_str(ops_json).map_err(|e| to_py_err(py, Error::invalid("ops", e)))?;
        let c = self.client.clone();
        go(py, is_async, async move { c.txn(&ops).await }, json_conv())
    }

    /// The leader's address (`""` when there is none).
    #[pyo3(signature = (is_async=false))]
    fn status_leader(&self, py: Python<'_>, is_async: bool) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        go(py, is_async, async move { c.status_leader().await }, plain())
    }

    /// The voting servers.
    #[pyo3(signature = (is_async=false))]
    fn status_peers(&self, py: Python<'_>, is_async: bool) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        go(py, is_async, async move { c.status_peers().await }, plain())
    }

    /// Service names and tags, JSON text.
    #[pyo3(signature = (consistency="", is_async=false))]
    fn catalog_services(&self, py: Python<'_>, consistency: &str, is_async: bool) -> PyResult<Py<PyAny>> {
        let q = query(py, consistency, None, None)?;
        let c = self.client.clone();
        go(py, is_async, async move { c.catalog_services(&q).await.map(|(_, v)| v) }, json_conv())
    }

    /// Nodes, JSON text.
    #[pyo3(signature = (consistency="", is_async=false))]
    fn catalog_nodes(&self, py: Python<'_>, consistency: &str, is_async: bool) -> PyResult<Py<PyAny>> {
        let q = query(py, consistency, None, None)?;
        let c = self.client.clone();
        go(py, is_async, async move { c.catalog_nodes(&q).await.map(|(_, v)| v) }, json_conv())
    }

    /// Registers directly in the catalog (`/v1/catalog/register`) from JSON text.
    #[pyo3(signature = (registration_json, is_async=false))]
    fn catalog_register(&self, py: Python<'_>, registration_json: &str, is_async: bool) -> PyResult<Py<PyAny>> {
        let v: serde_json::Value =
            serde_json::from_str(registration_json).map_err(|e| to_py_err(py, Error::invalid("registration", e)))?;
        let c = self.client.clone();
        go(py, is_async, async move { c.catalog_register(&v).await }, plain())
    }

    /// Instances of a service with nodes and checks, JSON text.
    #[pyo3(signature = (name, passing=false, tag=None, consistency="", is_async=false))]
    fn health_service(
        &self,
        py: Python<'_>,
        name: String,
        passing: bool,
        tag: Option<String>,
        consistency: &str,
        is_async: bool,
    ) -> PyResult<Py<PyAny>> {
        let q = query(py, consistency, None, None)?;
        let c = self.client.clone();
        let f = HealthFilter { passing, tag };
        go(py, is_async, async move { c.health_service(&name, &f, &q).await.map(|(_, v)| v) }, json_conv())
    }

    /// Checks of a service, JSON text.
    #[pyo3(signature = (name, is_async=false))]
    fn health_checks(&self, py: Python<'_>, name: String, is_async: bool) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        let q = QueryOptions::default();
        go(py, is_async, async move { c.health_checks(&name, &q).await.map(|(_, v)| v) }, json_conv())
    }

    /// Checks in a state, JSON text.
    #[pyo3(signature = (state, is_async=false))]
    fn health_state(&self, py: Python<'_>, state: String, is_async: bool) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        let q = QueryOptions::default();
        go(py, is_async, async move { c.health_state(&state, &q).await.map(|(_, v)| v) }, json_conv())
    }

    /// `/v1/agent/self`, JSON text.
    #[pyo3(signature = (is_async=false))]
    fn agent_self(&self, py: Python<'_>, is_async: bool) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        go(py, is_async, async move { c.agent_self().await }, json_conv())
    }

    /// Registers a service with the agent.
    #[pyo3(signature = (name, id=None, address=None, port=None, tags=vec![], meta=Default::default(), checks=vec![], is_async=false))]
    #[allow(clippy::too_many_arguments)]
    fn service_register(
        &self,
        py: Python<'_>,
        name: String,
        id: Option<String>,
        address: Option<String>,
        port: Option<u16>,
        tags: Vec<String>,
        meta: std::collections::BTreeMap<String, String>,
        checks: Vec<CheckArgs>,
        is_async: bool,
    ) -> PyResult<Py<PyAny>> {
        let reg = build_registration(name, id, address, port, tags, meta, checks).map_err(|e| to_py_err(py, e))?;
        let c = self.client.clone();
        go(py, is_async, async move { c.service_register(&reg).await }, plain())
    }

    /// Deregisters a service from the agent.
    #[pyo3(signature = (service_id, is_async=false))]
    fn service_deregister(&self, py: Python<'_>, service_id: String, is_async: bool) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        go(py, is_async, async move { c.service_deregister(&service_id).await }, plain())
    }

    /// Reports a TTL check's status (`pass`, `warn`, `fail`).
    #[pyo3(signature = (check_id, status, note=None, is_async=false))]
    fn check_update_ttl(
        &self,
        py: Python<'_>,
        check_id: String,
        status: String,
        note: Option<String>,
        is_async: bool,
    ) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        go(py, is_async, async move { c.check_update_ttl(&check_id, &status, note.as_deref()).await }, plain())
    }

    /// The services registered on this agent (`/v1/agent/services`), JSON text.
    #[pyo3(signature = (is_async=false))]
    fn agent_services(&self, py: Python<'_>, is_async: bool) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        go(py, is_async, async move { c.agent_services().await }, json_conv())
    }

    /// The checks registered on this agent (`/v1/agent/checks`), JSON text.
    #[pyo3(signature = (is_async=false))]
    fn agent_checks(&self, py: Python<'_>, is_async: bool) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        go(py, is_async, async move { c.agent_checks().await }, json_conv())
    }

    /// Members of the agent's gossip pool as `(name, addr, port, tags, status)` tuples.
    #[pyo3(signature = (wan=false, is_async=false))]
    fn agent_members(&self, py: Python<'_>, wan: bool, is_async: bool) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        go(py, is_async, async move { c.agent_members(wan).await }, Box::new(|py, l| member_list(py, &l)))
    }

    /// Asks the agent to join the pool of the agent at `address` (`host[:port]` of its serf_lan).
    #[pyo3(signature = (address, wan=false, is_async=false))]
    fn agent_join(&self, py: Python<'_>, address: String, wan: bool, is_async: bool) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        go(py, is_async, async move { c.agent_join(&address, wan).await }, plain())
    }

    /// Asks the agent to leave its pool gracefully and stop.
    #[pyo3(signature = (is_async=false))]
    fn agent_leave(&self, py: Python<'_>, is_async: bool) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        go(py, is_async, async move { c.agent_leave().await }, plain())
    }

    /// Marks a failed member as left (`prune`: forget it).
    #[pyo3(signature = (node, prune=false, is_async=false))]
    fn agent_force_leave(&self, py: Python<'_>, node: String, prune: bool, is_async: bool) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        go(py, is_async, async move { c.agent_force_leave(&node, prune).await }, plain())
    }

    /// Fires a user event; answers it as an event tuple (see `event_list`).
    #[pyo3(signature = (name, payload=vec![], node=None, service=None, tag=None, is_async=false))]
    #[allow(clippy::too_many_arguments)]
    fn event_fire(
        &self,
        py: Python<'_>,
        name: String,
        payload: Vec<u8>,
        node: Option<String>,
        service: Option<String>,
        tag: Option<String>,
        is_async: bool,
    ) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        let filter = EventFilter { node, service, tag };
        go(
            py,
            is_async,
            async move { c.event_fire(&name, Bytes::from(payload), &filter).await },
            Box::new(|py, e| event_tuple(py, &e)),
        )
    }

    /// The agent's recent user events, oldest first, as
    /// `(id, name, payload, node_filter, service_filter, tag_filter, version, ltime)` tuples.
    #[pyo3(signature = (name=None, is_async=false))]
    fn event_list(&self, py: Python<'_>, name: Option<String>, is_async: bool) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        let q = QueryOptions::default();
        go(
            py,
            is_async,
            async move { c.event_list(name.as_deref(), &q).await.map(|(_, l)| l) },
            Box::new(|py, l| event_list(py, &l)),
        )
    }

    /// Creates a session from a JSON body; answers its ID.
    #[pyo3(signature = (body_json, is_async=false))]
    fn session_create(&self, py: Python<'_>, body_json: &str, is_async: bool) -> PyResult<Py<PyAny>> {
        let v: serde_json::Value =
            serde_json::from_str(body_json).map_err(|e| to_py_err(py, Error::invalid("session", e)))?;
        let c = self.client.clone();
        go(py, is_async, async move { c.session_create(&v).await }, plain())
    }

    /// Destroys a session.
    #[pyo3(signature = (session_id, is_async=false))]
    fn session_destroy(&self, py: Python<'_>, session_id: String, is_async: bool) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        go(py, is_async, async move { c.session_destroy(&session_id).await }, plain())
    }

    /// Renews a session.
    #[pyo3(signature = (session_id, is_async=false))]
    fn session_renew(&self, py: Python<'_>, session_id: String, is_async: bool) -> PyResult<Py<PyAny>> {
        let c = self.client.clone();
        go(py, is_async, async move { c.session_renew(&session_id).await }, plain())
    }

    /// Starts a watch: `kind` is `key`, `key_prefix`, `service`, `checks`, `services`, `nodes`,
    /// `events` (`target`: the event name, `""` for every event).
    #[pyo3(signature = (kind, target="", passing=false, tag=None, wait=300.0, consistency=""))]
    #[allow(clippy::too_many_arguments)]
    fn watch(
        &self,
        py: Python<'_>,
        kind: &str,
        target: &str,
        passing: bool,
        tag: Option<String>,
        wait: f64,
        consistency: &str,
    ) -> PyResult<NativeWatch> {
        let spec = match kind {
            "key" => WatchSpec::Key(target.to_string()),
            "key_prefix" => WatchSpec::KeyPrefix(target.to_string()),
            "service" => WatchSpec::Service { name: target.to_string(), passing_only: passing, tag },
            "checks" => WatchSpec::Checks { service: target.to_string() },
            "services" => WatchSpec::Services,
            "nodes" => WatchSpec::Nodes,
            "events" => WatchSpec::Events { name: Some(target.to_string()).filter(|t| !t.is_empty()) },
            other => return Err(PyValueError::new_err(format!("kind: unknown watch kind {other:?}"))),
        };
        if matches!(kind, "key" | "service" | "checks") && target.is_empty() {
            return Err(to_py_err(py, Error::invalid(if kind == "key" { "key" } else { "name" }, "must not be empty")));
        }
        let opts = (|| {
            Ok::<_, Error>(WatchOptions {
                wait: secs("wait", wait)?,
                consistency: self::consistency(consistency)?,
                ..WatchOptions::default()
            })
        })()
        .map_err(|e| to_py_err(py, e))?;
        let rt = sdk_runtime(py)?;
        let _enter = rt.enter();
        Ok(NativeWatch { watch: Arc::new(self.client.watch(spec, opts)) })
    }

    /// Starts tracking a service's passing instances.
    #[pyo3(signature = (service, tag=None))]
    fn discover(&self, py: Python<'_>, service: &str, tag: Option<String>) -> PyResult<NativeDiscovery> {
        let rt = sdk_runtime(py)?;
        let _enter = rt.enter();
        let d = Discovery::start(&self.client, service, tag.as_deref()).map_err(|e| to_py_err(py, e))?;
        Ok(NativeDiscovery { discovery: Arc::new(d) })
    }

    /// Acquires a lock on `key` (a session with `ttl`, renewed in the background).
    #[pyo3(signature = (key, value=vec![], ttl=15.0, lock_delay=None, wait=None, is_async=false))]
    #[allow(clippy::too_many_arguments)]
    fn lock(
        &self,
        py: Python<'_>,
        key: String,
        value: Vec<u8>,
        ttl: f64,
        lock_delay: Option<f64>,
        wait: Option<f64>,
        is_async: bool,
    ) -> PyResult<Py<PyAny>> {
        let opts = (|| {
            Ok::<_, Error>(LockOptions {
                value: Bytes::from(value),
                ttl: secs("ttl", ttl)?,
                lock_delay: opt_secs("lock_delay", lock_delay)?,
                wait: opt_secs("wait", wait)?,
                ..LockOptions::default()
            })
        })()
        .map_err(|e| to_py_err(py, e))?;
        let c = self.client.clone();
        go(
            py,
            is_async,
            async move { Lock::acquire(&c, &key, opts).await },
            Box::new(|py, lock| Ok(Py::new(py, NativeLock { lock: Arc::new(lock) })?.into_any())),
        )
    }

    /// Registers a service and keeps its TTL checks passing until closed.
    #[pyo3(signature = (name, id=None, address=None, port=None, tags=vec![], meta=Default::default(), checks=vec![], is_async=false))]
    #[allow(clippy::too_many_arguments)]
    fn register(
        &self,
        py: Python<'_>,
        name: String,
        id: Option<String>,
        address: Option<String>,
        port: Option<u16>,
        tags: Vec<String>,
        meta: std::collections::BTreeMap<String, String>,
        checks: Vec<CheckArgs>,
        is_async: bool,
    ) -> PyResult<Py<PyAny>> {
        let reg = build_registration(name, id, address, port, tags, meta, checks).map_err(|e| to_py_err(py, e))?;
        let c = self.client.clone();
        go(
            py,
            is_async,
            async move { Registration::start(&c, reg).await },
            Box::new(|py, r| Ok(Py::new(py, NativeRegistration { reg: Arc::new(r) })?.into_any())),
        )
    }
}

/// A running watch.
#[pyclass(frozen, module = "consul_rs._native")]
struct NativeWatch {
    watch: Arc<Watch>,
}

fn watch_event(py: Python<'_>, ev: Option<consul_sdk::WatchEvent>) -> PyResult<Py<PyAny>> {
    let Some(ev) = ev else { return Ok(py.None()) };
    let (kind, payload) = match &ev.value {
        WatchValue::Kv(p) => ("key", kv_opt(py, p.as_ref())?),
        WatchValue::KvList(l) => ("key_prefix", kv_list(py, l)?),
        WatchValue::Service(v) => ("service", json_text(py, v)?),
        WatchValue::Checks(v) => ("checks", json_text(py, v)?),
        WatchValue::Services(v) => ("services", json_text(py, v)?),
        WatchValue::Nodes(v) => ("nodes", json_text(py, v)?),
        WatchValue::Events(v) => ("events", event_list(py, v)?),
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
struct NativeDiscovery {
    discovery: Arc<Discovery>,
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
        let s = Strategy::parse(strategy).map_err(|e| to_py_err(py, e))?;
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
struct NativeLock {
    lock: Arc<Lock>,
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
struct NativeRegistration {
    reg: Arc<Registration>,
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

/// A node embedded in this process.
#[pyclass(frozen, module = "consul_rs._native")]
struct NativeAgent {
    agent: std::sync::Mutex<Option<EmbeddedAgent>>,
    pid: u32,
    http_addr: String,
    serf_addr: String,
    node_name: String,
}

impl NativeAgent {
    fn check_pid(&self, py: Python<'_>) -> PyResult<()> {
        if std::process::id() != self.pid {
            return Err(to_py_err(
                py,
                Error::new(
                    ErrorCode::Forked,
                    "this Agent was started by the parent process before fork(); start a new Agent in the child \
                     (or use multiprocessing's spawn/forkserver start methods)",
                ),
            ));
        }
        Ok(())
    }

    /// Runs `f` on the running agent with the GIL released.
    fn with_agent<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&EmbeddedAgent) -> consul_sdk::Result<T> + Send,
    ) -> PyResult<T> {
        self.check_pid(py)?;
        py.detach(|| {
            let guard = self.agent.lock().map_err(|_| Error::new(ErrorCode::Internal, "agent lock poisoned"))?;
            match guard.as_ref() {
                None => Err(Error::new(ErrorCode::Shutdown, "the agent is shut down")),
                Some(a) => f(a),
            }
        })
        .map_err(|e| to_py_err(py, e))
    }
}

#[pymethods]
impl NativeAgent {
    /// Starts a node and returns once it serves (GIL released while starting).
    #[new]
    #[pyo3(signature = (node_name, dev=true, server=true, bootstrap_expect=0, data_dir=None, datacenter="dc1", bind_addr="127.0.0.1",
                        http_port=0, serf_lan_port=0, server_port=0, dns_port=0, retry_join=vec![], raft_multiplier=1))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        node_name: String,
        dev: bool,
        server: bool,
        bootstrap_expect: u32,
        data_dir: Option<std::path::PathBuf>,
        datacenter: &str,
        bind_addr: &str,
        http_port: u16,
        serf_lan_port: u16,
        server_port: u16,
        dns_port: u16,
        retry_join: Vec<String>,
        raft_multiplier: u32,
    ) -> PyResult<Self> {
        let ip: std::net::IpAddr =
            bind_addr.parse().map_err(|e| to_py_err(py, Error::invalid("bind_addr", format!("{bind_addr:?}: {e}"))))?;
        let base = if dev { AgentConfig::dev() } else { AgentConfig::default() };
        if !server && (dev || bootstrap_expect > 0) {
            return Err(to_py_err(
                py,
                Error::invalid("server", "a client agent (server=False) cannot use dev or bootstrap_expect"),
            ));
        }
        let mut config = AgentConfig {
            node_name,
            server,
            datacenter: datacenter.to_string(),
            bootstrap: server && (dev || bootstrap_expect == 1),
            bootstrap_expect: if bootstrap_expect == 1 { 0 } else { bootstrap_expect },
            data_dir,
            bind_addr: ip,
            client_addr: ip,
            ports: Ports { http: http_port, dns: dns_port, server: server_port, serf_lan: serf_lan_port },
            retry_join,
            retry_interval: Duration::from_millis(200),
            ..base
        };
        config.raft.raft_multiplier = raft_multiplier;
        let agent = py.detach(|| EmbeddedAgent::start(config)).map_err(|e| to_py_err(py, e))?;
        Ok(NativeAgent {
            http_addr: agent.http_addr().to_string(),
            serf_addr: agent.serf_addr().to_string(),
            node_name: agent.node_name().to_string(),
            agent: std::sync::Mutex::new(Some(agent)),
            pid: std::process::id(),
        })
    }

    /// `host:port` of the HTTP API.
    #[getter]
    fn http_addr(&self, py: Python<'_>) -> PyResult<String> {
        self.check_pid(py)?;
        Ok(self.http_addr.clone())
    }

    /// `host:port` of serf_lan (what other agents `retry_join`).
    #[getter]
    fn serf_addr(&self, py: Python<'_>) -> PyResult<String> {
        self.check_pid(py)?;
        Ok(self.serf_addr.clone())
    }

    /// The node name.
    #[getter]
    fn node_name(&self) -> String {
        self.node_name.clone()
    }

    /// Whether the agent is running.
    #[getter]
    fn running(&self) -> bool {
        std::process::id() == self.pid && self.agent.lock().map(|a| a.is_some()).unwrap_or(false)
    }

    /// Waits (GIL released) until the agent knows a leader.
    #[pyo3(signature = (timeout=30.0))]
    fn wait_for_leader(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        self.check_pid(py)?;
        let t = secs("timeout", timeout).map_err(|e| to_py_err(py, e))?;
        let deadline = std::time::Instant::now() + t;
        // Sliced so Ctrl-C is noticed.
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let r = py.detach(|| {
                let guard = self.agent.lock().map_err(|_| Error::new(ErrorCode::Internal, "agent lock poisoned"))?;
                match guard.as_ref() {
                    None => Err(Error::new(ErrorCode::Shutdown, "the agent is shut down")),
                    Some(a) => a.wait_for_leader(left.min(Duration::from_millis(200))),
                }
            });
            match r {
                Ok(()) => return Ok(()),
                Err(e) if e.code == ErrorCode::Timeout && !left.is_zero() => py.check_signals()?,
                Err(e) if e.code == ErrorCode::Timeout => {
                    return Err(to_py_err(py, Error::new(ErrorCode::Timeout, format!("no leader within {t:?}"))))
                }
                Err(e) => return Err(to_py_err(py, e)),
            }
        }
    }

    /// Joins the gossip pool of the agent at `address` (`host[:port]` of its serf_lan).
    fn join(&self, py: Python<'_>, address: String) -> PyResult<()> {
        if address.is_empty() {
            return Err(to_py_err(py, Error::invalid("address", "must not be empty")));
        }
        self.with_agent(py, |a| a.join(&address))
    }

    /// Members of this agent's LAN pool as `(name, addr, port, tags, status)` tuples.
    fn members(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let members = self.with_agent(py, |a| a.members())?;
        member_list(py, &members)
    }

    /// Leaves the pool gracefully (peers list this node as left), then stops (GIL released).
    fn leave(&self, py: Python<'_>) -> PyResult<()> {
        self.check_pid(py)?;
        let taken = self.agent.lock().ok().and_then(|mut a| a.take());
        match taken {
            Some(mut agent) => py.detach(move || agent.leave()).map_err(|e| to_py_err(py, e)),
            None => Err(to_py_err(py, Error::new(ErrorCode::Shutdown, "the agent is shut down"))),
        }
    }

    /// Stops the agent (GIL released). Idempotent.
    fn shutdown(&self, py: Python<'_>) -> PyResult<()> {
        self.check_pid(py)?;
        let taken = self.agent.lock().ok().and_then(|mut a| a.take());
        if let Some(mut agent) = taken {
            py.detach(move || agent.shutdown()).map_err(|e| to_py_err(py, e))?;
        }
        Ok(())
    }
}

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Registered before `consul_rs` registers its own hook, so it runs after that one.
    m.py().import("atexit")?.call_method1("register", (wrap_pyfunction!(_before_exit, m)?,))?;
    m.add_class::<NativeClient>()?;
    m.add_class::<NativeWatch>()?;
    m.add_class::<NativeDiscovery>()?;
    m.add_class::<NativeLock>()?;
    m.add_class::<NativeRegistration>()?;
    m.add_class::<NativeAgent>()?;
    Ok(())
}
