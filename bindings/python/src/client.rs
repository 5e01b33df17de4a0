//! `NativeClient`: one agent's HTTP API.
use std::sync::Arc;

use bytes::Bytes;
use consul_sdk::{
    Client, ClientConfig, Discovery, Error, EventFilter, HealthFilter, LeaderElection, Lock, LockOptions, PutOptions,
    QueryOptions, Registration, WatchOptions, WatchSpec,
};
use pyo3::prelude::*;

use crate::{convert::*, error::*, handles::*, runtime::*};

/// A connection to one agent's HTTP API.
#[pyclass(frozen, module = "consul_rs._native")]
pub(crate) struct NativeClient {
    client: Client,
}

#[pymethods]
impl NativeClient {
    /// A client; the TLS options left unset fall back to Consul's variables (`CONSUL_HTTP_SSL`,
    /// `CONSUL_CACERT`, `CONSUL_CAPATH`, `CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`,
    /// `CONSUL_TLS_SERVER_NAME`, `CONSUL_HTTP_SSL_VERIFY`), resolved by the SDK.
    #[new]
    #[pyo3(signature = (address=None, token=None, datacenter=None, timeout=10.0, token_file=None, ca_file=None,
                        ca_path=None, client_cert=None, client_key=None, tls_server_name=None,
                        insecure_skip_verify=false, https=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        address: Option<String>,
        token: Option<String>,
        datacenter: Option<String>,
        timeout: f64,
        token_file: Option<String>,
        ca_file: Option<String>,
        ca_path: Option<String>,
        client_cert: Option<String>,
        client_key: Option<String>,
        tls_server_name: Option<String>,
        insecure_skip_verify: bool,
        https: Option<bool>,
    ) -> PyResult<Self> {
        let mut config = ClientConfig::default();
        if let Some(a) = address {
            config.address = a;
        }
        // The SDK resolves token_file > token > CONSUL_HTTP_TOKEN_FILE > CONSUL_HTTP_TOKEN.
        config.token = token;
        config.token_file = token_file;
        config.datacenter = datacenter;
        config.ca_file = ca_file;
        config.ca_path = ca_path;
        config.client_cert = client_cert;
        config.client_key = client_key;
        config.tls_server_name = tls_server_name;
        config.insecure_skip_verify = insecure_skip_verify;
        config.https = https;
        config.timeout = secs("timeout", timeout).map_err(|e| to_py_err(py, e))?;
        if config.timeout.is_zero() {
            return Err(to_py_err(py, Error::invalid("timeout", "must be positive")));
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
        checks: Vec<CheckTuple>,
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
            other => return Err(to_py_err(py, Error::invalid("kind", format!("unknown watch kind {other:?}")))),
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

    /// Starts campaigning for leadership of `key` on the SDK runtime.
    fn elect(&self, py: Python<'_>, key: String, value: Vec<u8>, ttl: f64) -> PyResult<NativeElection> {
        let opts = secs("ttl", ttl)
            .map(|ttl| LockOptions { value: Bytes::from(value), ttl, ..LockOptions::default() })
            .map_err(|e| to_py_err(py, e))?;
        let rt = sdk_runtime(py)?;
        let _guard = rt.enter();
        let election = LeaderElection::start(&self.client, &key, opts).map_err(|e| to_py_err(py, e))?;
        Ok(NativeElection { election: Arc::new(election) })
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
        checks: Vec<CheckTuple>,
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
