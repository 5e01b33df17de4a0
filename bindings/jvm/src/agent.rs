//! `FfiAgent`: a consul-rs node embedded in the JVM process.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use consul_sdk::agent::{AgentConfig, Ports};
use consul_sdk::{EmbeddedAgent, ErrorCode};

use crate::client::FfiClient;
use crate::convert::{secs, FfiMember};
use crate::error::{err, invalid, FfiResult};

/// How to start an embedded node: the options of the Python `Agent(...)` and the Node and C
/// agents (the Kotlin `Agent.Options` fills the defaults and the dev/temp-dir policy).
#[derive(Debug, Clone, uniffi::Record)]
pub struct AgentOptions {
    /// Node name.
    pub node_name: String,
    /// A dev node (in-memory, its own leader).
    pub dev: bool,
    /// A server (else a client agent).
    pub server: bool,
    /// Servers to wait for before bootstrapping (0: none; 1: bootstrap alone).
    pub bootstrap_expect: u32,
    /// Data directory (`None` for a dev node).
    pub data_dir: Option<String>,
    /// Datacenter.
    pub datacenter: String,
    /// Address to bind and serve on.
    pub bind_addr: String,
    /// HTTP API port (0: any free one).
    pub http_port: u16,
    /// serf_lan port (0: any free one).
    pub serf_lan_port: u16,
    /// serf_wan port (0: any free one).
    pub serf_wan_port: u16,
    /// Server RPC port (0: any free one).
    pub server_port: u16,
    /// DNS port (0: any free one).
    pub dns_port: u16,
    /// serf_lan addresses to join, retried until one answers.
    pub retry_join: Vec<String>,
    /// Raft timing multiplier.
    pub raft_multiplier: u32,
    /// Consul's `acl { … }` block as JSON.
    pub acl_json: Option<String>,
    /// Any other Consul config-file keys as JSON (`tls`, `ports`, `node_meta`, …), read by the
    /// binary's own parser.
    pub config_json: Option<String>,
}

/// A node embedded in this process.
#[derive(Debug, uniffi::Object)]
pub struct FfiAgent {
    agent: Mutex<Option<EmbeddedAgent>>,
    http_addr: String,
    serf_addr: String,
    node_name: String,
    client_config: consul_sdk::ClientConfig,
}

impl FfiAgent {
    fn with_agent<T>(&self, f: impl FnOnce(&EmbeddedAgent) -> consul_sdk::Result<T>) -> FfiResult<T> {
        let guard = self.agent.lock().map_err(|_| err(ErrorCode::Internal, "agent lock poisoned"))?;
        match guard.as_ref() {
            None => Err(err(ErrorCode::Shutdown, "the agent is shut down")),
            Some(a) => Ok(f(a)?),
        }
    }

    fn take(&self) -> Option<EmbeddedAgent> {
        match self.agent.lock() {
            Ok(mut a) => a.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }
}

/// Runs `f` on a plain thread when called inside a tokio runtime, where stopping an agent (which
/// blocks on, then drops, its own runtime) is not allowed.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(f).join()).unwrap_or_else(|p| std::panic::resume_unwind(p))
    } else {
        f()
    }
}

impl Drop for FfiAgent {
    fn drop(&mut self) {
        if let Some(mut a) = self.take() {
            off_runtime(move || {
                let _ = a.shutdown();
            });
        }
    }
}

#[uniffi::export]
impl FfiAgent {
    /// Starts a node and returns once it serves.
    #[uniffi::constructor]
    pub fn start(options: AgentOptions) -> FfiResult<Arc<Self>> {
        if options.node_name.is_empty() {
            return Err(invalid("node_name", "must not be empty"));
        }
        let ip: std::net::IpAddr =
            options.bind_addr.parse().map_err(|e| invalid("bind_addr", format!("{:?}: {e}", options.bind_addr)))?;
        if !options.server && (options.dev || options.bootstrap_expect > 0) {
            return Err(invalid("server", "a client agent (server=false) cannot use dev or bootstrap_expect"));
        }
        let base = if options.dev { AgentConfig::dev() } else { AgentConfig::default() };
        let server = options.server;
        let mut config = AgentConfig {
            node_name: options.node_name,
            server,
            datacenter: options.datacenter,
            bootstrap: server && (options.dev || options.bootstrap_expect == 1),
            bootstrap_expect: if options.bootstrap_expect == 1 { 0 } else { options.bootstrap_expect },
            data_dir: options.data_dir.map(Into::into),
            bind_addr: ip,
            client_addr: ip,
            ports: Ports {
                http: Some(options.http_port),
                https: None,
                dns: options.dns_port,
                server: options.server_port,
                serf_lan: options.serf_lan_port,
            },
            retry_join: options.retry_join,
            retry_interval: Duration::from_millis(200),
            ..base
        };
        config.raft.raft_multiplier = options.raft_multiplier;
        config.wan.port = Some(options.serf_wan_port);
        config.wan.port_set = true;
        if let Some(text) = options.config_json {
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| invalid("config", e))?;
            config = consul_sdk::agent::with_config_keys(config, &v)?;
        }
        if let Some(text) = options.acl_json {
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| invalid("acl", e))?;
            config.acl = consul_sdk::agent::acl_settings(&v)?;
        }
        let agent = EmbeddedAgent::start(config)?;
        Ok(Arc::new(FfiAgent {
            http_addr: agent.http_addr().to_string(),
            serf_addr: agent.serf_addr().to_string(),
            node_name: agent.node_name().to_string(),
            client_config: agent.client_config().clone(),
            agent: Mutex::new(Some(agent)),
        }))
    }

    /// `host:port` of the HTTP API.
    pub fn http_addr(&self) -> String {
        self.http_addr.clone()
    }

    /// `host:port` of serf_lan (what other agents `retry_join`).
    pub fn serf_addr(&self) -> String {
        self.serf_addr.clone()
    }

    /// The node name.
    pub fn node_name(&self) -> String {
        self.node_name.clone()
    }

    /// Whether the agent is running.
    pub fn is_running(&self) -> bool {
        self.agent.lock().map(|a| a.is_some()).unwrap_or(false)
    }

    /// A client for this agent's API (HTTPS with its own CA for an HTTPS-only agent); `token`
    /// beats the environment's.
    pub fn client(&self, token: Option<String>) -> FfiResult<Arc<FfiClient>> {
        let mut config = self.client_config.clone();
        if token.is_some() {
            config.token = token;
        }
        Ok(Arc::new(FfiClient { client: consul_sdk::agent::own_client(config)? }))
    }

    /// Waits until the agent knows a leader (`TIMEOUT` after `timeout_secs`). Blocking: the
    /// Kotlin layer calls it off the caller's coroutine dispatcher.
    pub fn wait_for_leader(&self, timeout_secs: f64) -> FfiResult<()> {
        let t = secs("timeout", timeout_secs)?;
        self.with_agent(|a| a.wait_for_leader(t))
    }

    /// Joins the gossip pool of the agent at `address` (`host[:port]` of its serf_lan).
    pub fn join(&self, address: String) -> FfiResult<()> {
        if address.is_empty() {
            return Err(invalid("address", "must not be empty"));
        }
        self.with_agent(|a| a.join(&address))
    }

    /// Members of this agent's LAN pool.
    pub fn members(&self) -> FfiResult<Vec<FfiMember>> {
        Ok(self.with_agent(|a| a.members())?.iter().map(Into::into).collect())
    }

    /// Leaves the pool gracefully, then stops.
    pub fn leave(&self) -> FfiResult<()> {
        match self.take() {
            Some(mut a) => Ok(off_runtime(move || a.leave())?),
            None => Err(err(ErrorCode::Shutdown, "the agent is shut down")),
        }
    }

    /// Stops the agent. Idempotent.
    pub fn shutdown(&self) -> FfiResult<()> {
        if let Some(mut a) = self.take() {
            off_runtime(move || a.shutdown())?;
        }
        Ok(())
    }
}
