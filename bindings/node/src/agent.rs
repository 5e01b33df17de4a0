//! `NativeAgent`: a consul-rs node embedded in the Node process. The agent drives its own tokio
//! runtime; starting, joining and stopping block on it, so they run on plain threads and answer
//! through callbacks, never on the JS thread (except `shutdownSync`, for process exit).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use consul_sdk::agent::{AgentConfig, Ports};
use consul_sdk::{EmbeddedAgent, Error, ErrorCode};
use napi_derive::napi;

use crate::call::{js_err, spawn_blocking, Callback, Result};
use crate::convert::{millis, JsMember};

/// How to start an embedded agent (`index.js` fills in every default).
#[napi(object)]
pub struct AgentOpts {
    pub node_name: String,
    pub dev: bool,
    pub server: bool,
    pub bootstrap_expect: u32,
    pub data_dir: Option<String>,
    pub datacenter: String,
    pub bind_addr: String,
    pub http_port: u32,
    pub serf_lan_port: u32,
    pub serf_wan_port: u32,
    pub server_port: u32,
    pub dns_port: u32,
    pub retry_join: Vec<String>,
    pub raft_multiplier: u32,
    /// The `acl` option as JSON (`index.js` stringifies it): Consul's `acl { … }` keys.
    pub acl_json: Option<String>,
    /// Consul config-file keys as JSON (`index.js` gathers `tls`, `ports.https`, `ports.http =
    /// -1` and the `config` option): read by the binary's own parser in the SDK.
    pub config_json: Option<String>,
}

/// How a client reaches the agent's API (`index.js`'s `Agent#client` uses it).
#[napi(object)]
pub struct JsClientOptions {
    pub address: String,
    pub https: bool,
    pub ca_file: Option<String>,
    pub ca_path: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

fn port(arg: &str, p: u32) -> consul_sdk::Result<u16> {
    u16::try_from(p).map_err(|_| Error::invalid(arg, format!("{p} is out of range 0-65535")))
}

fn config(o: AgentOpts) -> consul_sdk::Result<AgentConfig> {
    if o.node_name.is_empty() {
        return Err(Error::invalid("nodeName", "must not be empty"));
    }
    if !o.server && (o.dev || o.bootstrap_expect > 0) {
        return Err(Error::invalid("server", "a client agent (server: false) cannot use dev or bootstrapExpect"));
    }
    if !(1..=10).contains(&o.raft_multiplier) {
        return Err(Error::invalid("raftMultiplier", "must be between 1 and 10"));
    }
    let ip: std::net::IpAddr =
        o.bind_addr.parse().map_err(|e| Error::invalid("bindAddr", format!("{:?}: {e}", o.bind_addr)))?;
    let ports = Ports {
        http: Some(port("ports.http", o.http_port)?),
        https: None,
        dns: port("ports.dns", o.dns_port)?,
        server: port("ports.server", o.server_port)?,
        serf_lan: port("ports.serfLan", o.serf_lan_port)?,
    };
    let base = if o.dev { AgentConfig::dev() } else { AgentConfig::default() };
    let mut config = AgentConfig {
        node_name: o.node_name,
        datacenter: o.datacenter,
        server: o.server,
        bootstrap: o.server && (o.dev || o.bootstrap_expect == 1),
        bootstrap_expect: if o.bootstrap_expect == 1 { 0 } else { o.bootstrap_expect },
        data_dir: o.data_dir.map(Into::into),
        bind_addr: ip,
        client_addr: ip,
        ports,
        retry_join: o.retry_join,
        // Embedded clusters form in one process: retry joins quickly.
        retry_interval: Duration::from_millis(200),
        ..base
    };
    config.raft.raft_multiplier = o.raft_multiplier;
    // The WAN pool (servers only) binds any free port by default, like the others.
    config.wan.port = Some(port("ports.serfWan", o.serf_wan_port)?);
    config.wan.port_set = true;
    if let Some(text) = o.config_json {
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::invalid("config", e))?;
        config = consul_sdk::agent::with_config_keys(config, &v)?;
    }
    if let Some(text) = o.acl_json {
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::invalid("acl", e))?;
        config.acl = consul_sdk::agent::acl_settings(&v)?;
    }
    Ok(config)
}

/// A node embedded in this process.
#[napi]
pub struct NativeAgent {
    agent: Arc<Mutex<Option<EmbeddedAgent>>>,
    http_addr: String,
    https_addr: Option<String>,
    serf_addr: String,
    dns_addr: Option<String>,
    node_name: String,
    client_config: consul_sdk::ClientConfig,
}

type Shared = Arc<Mutex<Option<EmbeddedAgent>>>;

/// Runs `f` with the running agent, or fails with `SHUTDOWN`.
fn with_agent<T>(agent: &Shared, f: impl FnOnce(&mut EmbeddedAgent) -> consul_sdk::Result<T>) -> consul_sdk::Result<T> {
    let mut guard = agent.lock().map_err(|_| Error::new(ErrorCode::Internal, "agent lock poisoned"))?;
    match guard.as_mut() {
        Some(a) => f(a),
        None => Err(Error::new(ErrorCode::Shutdown, "the agent is shut down")),
    }
}

fn take(agent: &Shared) -> Option<EmbeddedAgent> {
    agent.lock().ok().and_then(|mut a| a.take())
}

#[napi]
impl NativeAgent {
    /// Starts a node; answers the `NativeAgent` once its listeners are up.
    #[napi]
    pub fn start(opts: AgentOpts, cb: Callback<'_>) -> Result<()> {
        let config = config(opts).map_err(js_err)?;
        spawn_blocking(cb, move || {
            let agent = EmbeddedAgent::start(config)?;
            Ok(NativeAgent {
                http_addr: agent.http_addr().to_string(),
                https_addr: agent.https_addr().map(|a| a.to_string()),
                client_config: agent.client_config().clone(),
                serf_addr: agent.serf_addr().to_string(),
                dns_addr: agent.dns_addr().map(|a| a.to_string()),
                node_name: agent.node_name().to_string(),
                agent: Arc::new(Mutex::new(Some(agent))),
            })
        })
    }

    /// `host:port` of the HTTP API.
    #[napi(getter)]
    pub fn http_addr(&self) -> String {
        self.http_addr.clone()
    }

    /// `host:port` of the HTTPS API, when it serves one.
    #[napi(getter)]
    pub fn https_addr(&self) -> Option<String> {
        self.https_addr.clone()
    }

    /// How a client reaches the API: plain HTTP, or HTTPS with the agent's own CA and
    /// certificate for an HTTPS-only agent.
    #[napi(getter)]
    pub fn client_options(&self) -> JsClientOptions {
        let c = &self.client_config;
        JsClientOptions {
            address: c.address.clone(),
            https: c.https.unwrap_or(false),
            ca_file: c.ca_file.clone(),
            ca_path: c.ca_path.clone(),
            client_cert: c.client_cert.clone(),
            client_key: c.client_key.clone(),
        }
    }

    /// `host:port` of serf_lan (what other agents join).
    #[napi(getter)]
    pub fn serf_addr(&self) -> String {
        self.serf_addr.clone()
    }

    /// `host:port` of the DNS interface, unless disabled.
    #[napi(getter)]
    pub fn dns_addr(&self) -> Option<String> {
        self.dns_addr.clone()
    }

    /// The node name.
    #[napi(getter)]
    pub fn node_name(&self) -> String {
        self.node_name.clone()
    }

    /// Whether the agent is running.
    #[napi(getter)]
    pub fn running(&self) -> bool {
        self.agent.lock().map(|a| a.is_some()).unwrap_or(false)
    }

    /// Answers once the agent knows a cluster leader (`TIMEOUT` after `timeout_ms`).
    #[napi]
    pub fn wait_for_leader(&self, timeout_ms: f64, cb: Callback<'_>) -> Result<()> {
        let t = millis("timeoutMs", timeout_ms).map_err(js_err)?;
        let agent = self.agent.clone();
        spawn_blocking(cb, move || {
            // Sliced, so a concurrent shutdown is not held up by the agent lock.
            let deadline = std::time::Instant::now() + t;
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match with_agent(&agent, |a| a.wait_for_leader(left.min(Duration::from_millis(200)))) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.code == ErrorCode::Timeout && !left.is_zero() => continue,
                    Err(e) if e.code == ErrorCode::Timeout => {
                        return Err(Error::new(ErrorCode::Timeout, format!("no leader within {t:?}")))
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    }

    /// Joins the gossip pool of the agent at `address` (its serf_lan `host:port`).
    #[napi]
    pub fn join(&self, address: String, cb: Callback<'_>) -> Result<()> {
        let agent = self.agent.clone();
        spawn_blocking(cb, move || with_agent(&agent, |a| a.join(&address)))
    }

    /// Members of the agent's LAN pool, itself included.
    #[napi]
    pub fn members(&self, cb: Callback<'_>) -> Result<()> {
        let agent = self.agent.clone();
        spawn_blocking(cb, move || {
            with_agent(&agent, |a| a.members()).map(|m| m.into_iter().map(JsMember::from).collect::<Vec<_>>())
        })
    }

    /// Leaves the pool gracefully, then shuts down.
    #[napi]
    pub fn leave(&self, cb: Callback<'_>) -> Result<()> {
        let agent = self.agent.clone();
        spawn_blocking(cb, move || {
            let Some(mut a) = take(&agent) else { return Ok(()) };
            let left = a.leave();
            if left.is_err() {
                a.shutdown()?;
            }
            left
        })
    }

    /// Stops the agent. Idempotent.
    #[napi]
    pub fn shutdown(&self, cb: Callback<'_>) -> Result<()> {
        let agent = self.agent.clone();
        spawn_blocking(cb, move || match take(&agent) {
            Some(mut a) => a.shutdown(),
            None => Ok(()),
        })
    }

    /// [`NativeAgent::shutdown`] on the JS thread (process exit, where nothing async runs).
    #[napi(catch_unwind)]
    pub fn shutdown_sync(&self) -> Result<()> {
        match take(&self.agent) {
            Some(mut a) => a.shutdown().map_err(js_err),
            None => Ok(()),
        }
    }
}
