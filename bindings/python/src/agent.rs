//! `NativeAgent`: a node embedded in this process.
use std::time::Duration;

use consul_sdk::agent::{AgentConfig, Ports};
use consul_sdk::{EmbeddedAgent, Error, ErrorCode};
use pyo3::prelude::*;

use crate::{convert::*, error::*};

/// A node embedded in this process.
#[pyclass(frozen, module = "consul_rs._native")]
pub(crate) struct NativeAgent {
    agent: std::sync::Mutex<Option<EmbeddedAgent>>,
    pid: u32,
    http_addr: String,
    https_addr: Option<String>,
    serf_addr: String,
    node_name: String,
    /// How a client reaches the API (HTTPS with the agent's CA and certificate when HTTPS-only).
    client_config: consul_sdk::ClientConfig,
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
                        http_port=0, serf_lan_port=0, serf_wan_port=0, server_port=0, dns_port=0, retry_join=vec![], raft_multiplier=1, acl_json=None, config_json=None))]
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
        serf_wan_port: u16,
        server_port: u16,
        dns_port: u16,
        retry_join: Vec<String>,
        raft_multiplier: u32,
        acl_json: Option<String>,
        config_json: Option<String>,
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
            ports: Ports {
                http: Some(http_port),
                https: None,
                dns: dns_port,
                server: server_port,
                serf_lan: serf_lan_port,
            },
            retry_join,
            retry_interval: Duration::from_millis(200),
            ..base
        };
        config.raft.raft_multiplier = raft_multiplier;
        // The WAN pool (servers only) binds any free port by default, like the others.
        config.wan.port = Some(serf_wan_port);
        config.wan.port_set = true;
        if let Some(text) = config_json {
            // Consul config-file keys (`tls`, `ports.https`, the `config` mapping), read by the
            // binary's own parser in the SDK.
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| to_py_err(py, Error::invalid("config", e)))?;
            config = consul_sdk::agent::with_config_keys(config, &v).map_err(|e| to_py_err(py, e))?;
        }
        if let Some(text) = acl_json {
            // The `acl` mapping arrives as JSON (json.dumps in _agent.py); the SDK maps it once
            // for every binding.
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| to_py_err(py, Error::invalid("acl", e)))?;
            config.acl = consul_sdk::agent::acl_settings(&v).map_err(|e| to_py_err(py, e))?;
        }
        let agent = py.detach(|| EmbeddedAgent::start(config)).map_err(|e| to_py_err(py, e))?;
        Ok(NativeAgent {
            http_addr: agent.http_addr().to_string(),
            https_addr: agent.https_addr().map(|a| a.to_string()),
            client_config: agent.client_config().clone(),
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

    /// `host:port` of the HTTPS API, when it serves one.
    #[getter]
    fn https_addr(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.check_pid(py)?;
        Ok(self.https_addr.clone())
    }

    /// How a client reaches the API: `(address, https, ca_file, ca_path, client_cert,
    /// client_key)`; HTTPS with the agent's own CA and certificate for an HTTPS-only agent.
    #[allow(clippy::type_complexity)]
    #[getter]
    fn client_options(
        &self,
        py: Python<'_>,
    ) -> PyResult<(String, bool, Option<String>, Option<String>, Option<String>, Option<String>)> {
        self.check_pid(py)?;
        let c = &self.client_config;
        Ok((
            c.address.clone(),
            c.https.unwrap_or(false),
            c.ca_file.clone(),
            c.ca_path.clone(),
            c.client_cert.clone(),
            c.client_key.clone(),
        ))
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
