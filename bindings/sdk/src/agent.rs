//! Embedding a full consul-rs node in the calling process.
//!
//! An [`EmbeddedAgent`] owns its own tokio runtime, so it keeps serving whatever the host
//! program's threads do, shuts down cleanly, and several can run side by side (a whole cluster
//! in one process). It is the same [`consul_core::agent::Agent`] the `consul-rs` binary runs.

use std::net::SocketAddr;
use std::time::Duration;

use consul_core::agent::Agent;
pub use consul_core::config::{AgentConfig, Ports};

use crate::client::{Client, ClientConfig};
use crate::error::{Error, ErrorCode, Result};
use crate::types::AgentMember;

/// A node running inside this process.
#[derive(Debug)]
pub struct EmbeddedAgent {
    runtime: Option<tokio::runtime::Runtime>,
    agent: Option<Agent>,
    http_addr: SocketAddr,
    serf_addr: SocketAddr,
    dns_addr: Option<SocketAddr>,
    node_name: String,
    pid: u32,
}

impl EmbeddedAgent {
    /// Starts a node and returns once its listeners are up. Blocking: call it from a thread, not
    /// from inside an async runtime.
    pub fn start(config: AgentConfig) -> Result<EmbeddedAgent> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::new(
                ErrorCode::WouldDeadlock,
                "EmbeddedAgent::start blocks; call it outside an async runtime",
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("consul-agent")
            .enable_all()
            .build()
            .map_err(|e| Error::new(ErrorCode::Internal, format!("cannot start the agent runtime: {e}")))?;
        let agent = runtime.block_on(Agent::start(config))?;
        Ok(EmbeddedAgent {
            http_addr: agent.http_addr(),
            serf_addr: agent.serf_addr(),
            dns_addr: agent.dns_addr(),
            node_name: agent.node_name().to_string(),
            runtime: Some(runtime),
            agent: Some(agent),
            pid: std::process::id(),
        })
    }

    fn check_process(&self) -> Result<()> {
        if std::process::id() != self.pid {
            return Err(Error::new(
                ErrorCode::Forked,
                "this agent belongs to the parent process (fork); start a new one",
            ));
        }
        if self.agent.is_none() {
            return Err(Error::new(ErrorCode::Shutdown, "the agent is shut down"));
        }
        Ok(())
    }

    /// The HTTP API address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The serf_lan address other agents join.
    pub fn serf_addr(&self) -> SocketAddr {
        self.serf_addr
    }

    /// The DNS address, unless DNS is disabled.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns_addr
    }

    /// The node name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Whether the agent is running.
    pub fn is_running(&self) -> bool {
        self.agent.is_some()
    }

    /// A client for this agent's HTTP API.
    pub fn client(&self) -> Result<Client> {
        Client::new(ClientConfig { address: format!("http://{}", self.http_addr), ..ClientConfig::default() })
    }

    /// Waits until the agent knows a cluster leader.
    pub fn wait_for_leader(&self, timeout: Duration) -> Result<()> {
        self.check_process()?;
        let (Some(rt), Some(agent)) = (&self.runtime, &self.agent) else {
            return Err(Error::new(ErrorCode::Shutdown, "the agent is shut down"));
        };
        rt.block_on(agent.wait_for_leader(timeout))
            .map_err(|_| Error::new(ErrorCode::Timeout, format!("no leader within {timeout:?}")))
    }

    /// Runs one HTTP call against this agent on its own runtime.
    fn call_self<T>(&self, f: impl AsyncFnOnce(Client) -> Result<T>) -> Result<T> {
        self.check_process()?;
        let Some(rt) = &self.runtime else {
            return Err(Error::new(ErrorCode::Shutdown, "the agent is shut down"));
        };
        let client = self.client()?;
        rt.block_on(f(client))
    }

    /// Joins the gossip pool of the agent at `address` (`host` or `host:port` of its serf_lan).
    pub fn join(&self, address: &str) -> Result<()> {
        self.call_self(async |c| c.agent_join(address, false).await)
    }

    /// Members of this agent's LAN gossip pool, itself included.
    pub fn members(&self) -> Result<Vec<AgentMember>> {
        self.call_self(async |c| c.agent_members(false).await)
    }

    /// Leaves the pool gracefully (others see `left`, not `failed`), then shuts down.
    pub fn leave(&mut self) -> Result<()> {
        self.call_self(async |c| c.agent_leave().await)?;
        self.shutdown()
    }

    /// Stops the agent. Idempotent.
    pub fn shutdown(&mut self) -> Result<()> {
        if std::process::id() != self.pid {
            // Never touch the parent's runtime threads from a forked child.
            if let Some(rt) = self.runtime.take() {
                std::mem::forget(rt);
            }
            if let Some(a) = self.agent.take() {
                std::mem::forget(a);
            }
            return Err(Error::new(ErrorCode::Forked, "this agent belongs to the parent process"));
        }
        if let (Some(rt), Some(agent)) = (self.runtime.as_ref(), self.agent.take()) {
            rt.block_on(agent.shutdown())?;
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
        Ok(())
    }
}

impl Drop for EmbeddedAgent {
    fn drop(&mut self) {
        if self.agent.is_some() || self.runtime.is_some() {
            if let Err(e) = self.shutdown() {
                tracing::debug!(error = %e, "embedded agent dropped");
            }
        }
    }
}
