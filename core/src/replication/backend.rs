//! Where an agent's writes and catalog reads go: its own Raft replica (servers) or, over RPC,
//! a server of its datacenter (client agents).
//!
//! A client agent keeps no replicated state. It learns the servers from a [`ServerSource`] (the
//! gossip pool's alive servers of its datacenter) and sends each request to one of them, trying the
//! next on a connection failure and waiting up to `rpc_hold_timeout` for a server to appear.
//! Writes go to the leader (a server that is not the leader answers with the leader's address,
//! which the client remembers and retries at); default and `consistent` reads go to that leader
//! too when it is known, `stale` reads to any server. Any server would serve every mode
//! correctly — default and `consistent` reads confirm the leader's index first — the leader
//! just saves a hop.
//!
//! A request is sent to another server after a failure only when that cannot apply it twice:
//! when it never left this agent ([`crate::rpc::RpcError::not_delivered`]), or when it is safe
//! to repeat — a read, or a write carrying its request id (writes are tracked here, where they
//! enter the cluster, see [`crate::state::dedup`]). A forwarded HTTP request that changes state
//! and whose connection broke after it was sent is answered with an "outcome unknown" error.

use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom;
use tokio::time::Instant;

use crate::replication::consensus::Consensus;
use crate::replication::forward::{ForwardRequest, ForwardResponse, WireError};
use crate::rpc::{RpcClient, Service};
use crate::state::catalog::NodeState;
use crate::state::command::{Command, CommandResponse, RequestIds};
use crate::{Error, Result};

/// Time allowed for one forwarded request that is not a blocking query.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a client agent learns the servers of its datacenter. The membership layer implements
/// it over the gossip pool; replication only asks.
pub trait ServerSource: Send + Sync + std::fmt::Debug {
    /// RPC addresses of the servers believed alive, in any order.
    fn servers(&self) -> Vec<std::net::SocketAddr>;
}

/// Where a client agent with ACLs finds the token its own writes carry (the agent token,
/// else the default token; it may change at runtime through `/v1/agent/token/*`).
pub trait AgentTokenSource: Send + Sync + std::fmt::Debug {
    /// The token for the agent's own writes (`None`: anonymous).
    fn agent_write_token(&self) -> Option<String>;
}

/// The servers of a client agent's datacenter, reached over RPC.
#[derive(Debug)]
pub struct Remote {
    rpc: RpcClient,
    source: Arc<dyn ServerSource>,
    hold_timeout: Duration,
    /// The leader's RPC address as last learned from a redirect: writes and non-`stale` reads
    /// go there first, saving the hop a follower would add.
    leader_hint: parking_lot::Mutex<Option<std::net::SocketAddr>>,
    /// Request ids for this agent's writes (anti-entropy, coordinates).
    ids: RequestIds,
    /// Set when ACLs are on: the agent's writes then go as [`ForwardRequest::AgentWrite`]
    /// under this token, and the receiving server checks it.
    tokens: std::sync::OnceLock<Arc<dyn AgentTokenSource>>,
    /// `limits.rpc_rate`/`rpc_max_burst` on everything this agent sends to the servers.
    rate: Option<crate::rate_limit::RateLimiter>,
}

impl Remote {
    /// The servers `source` names.
    pub fn new(
        rpc: RpcClient,
        source: Arc<dyn ServerSource>,
        hold_timeout: Duration,
        rate: Option<crate::rate_limit::RateLimiter>,
    ) -> Arc<Remote> {
        Arc::new(Remote {
            rate,
            rpc,
            source,
            hold_timeout,
            leader_hint: parking_lot::Mutex::new(None),
            ids: RequestIds::new(),
            tokens: std::sync::OnceLock::new(),
        })
    }

    /// Makes the agent's own writes carry a token from `source` (ACLs on). Set once, before
    /// the agent's first write; later calls are ignored.
    pub fn set_token_source(&self, source: Arc<dyn AgentTokenSource>) {
        let _ = self.tokens.set(source);
    }

    /// The ACL objects a server holds for `secret` (`None`: no such token).
    pub async fn resolve_token(&self, secret: String) -> Result<Option<crate::state::acl::AclTables>> {
        match self.forward(ForwardRequest::ResolveToken(secret)).await? {
            ForwardResponse::Acl(found) => Ok(found.map(|t| {
                let mut t = *t;
                t.rebuild();
                t
            })),
            other => Err(Error::Rpc(format!("unexpected answer to a token lookup: {other:?}"))),
        }
    }

    /// RPC addresses of alive servers, shuffled so load spreads.
    pub fn servers(&self) -> Vec<std::net::SocketAddr> {
        let mut list = self.source.servers();
        list.shuffle(&mut rand::thread_rng());
        list
    }

    /// Sends an encoded request to `service` on some server, trying each in turn and waiting
    /// (up to the hold timeout) for one to be known; the encoded answer. With `prefer_leader`
    /// the leader learned from redirects goes first. Unless `repeatable`, a request that may
    /// have reached a server is not sent to another (see the module docs).
    pub async fn call_raw(
        &self,
        service: Service,
        body: Vec<u8>,
        timeout: Duration,
        prefer_leader: bool,
        repeatable: bool,
    ) -> Result<Vec<u8>> {
        if let Some(rate) = self.rate.as_ref().filter(|r| !r.allow()) {
            return Err(Error::Busy(format!(
                "rate limit exceeded: this agent may send {} RPC requests a second to the servers (limits.rpc_rate, \
                 limits.rpc_max_burst)",
                rate.rate()
            )));
        }
        let first = if prefer_leader { *self.leader_hint.lock() } else { None };
        let deadline = Instant::now() + self.hold_timeout;
        let mut last_error = None;
        loop {
            let mut servers = self.servers();
            if let Some(pos) = first.and_then(|f| servers.iter().position(|s| *s == f)) {
                servers.swap(0, pos);
            }
            for addr in servers {
                match self.rpc.call_raw(addr, service, body.clone(), timeout).await {
                    Ok(resp) => return Ok(resp),
                    Err(e) if !repeatable && !e.not_delivered() => {
                        return Err(Error::OutcomeUnknown(format!("server {addr}: {e}")));
                    }
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "server unreachable; trying another");
                        last_error = Some(e.to_string());
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Rpc(match last_error {
                    Some(e) => format!("no server answered: {e}"),
                    None => "No known Consul servers".to_string(),
                }));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A forwarded request, following `NotLeader` redirects to the leader. Every forwarded
    /// request is safe to repeat (writes carry their request id).
    async fn forward(&self, req: ForwardRequest) -> Result<ForwardResponse> {
        let deadline = Instant::now() + self.hold_timeout;
        let body = postcard::to_allocvec(&req).map_err(|e| Error::Rpc(e.to_string()))?;
        let decode = |bytes: Vec<u8>| -> Result<std::result::Result<ForwardResponse, WireError>> {
            postcard::from_bytes(&bytes).map_err(|e| Error::Rpc(format!("undecodable answer from a server: {e}")))
        };
        let mut resp = decode(self.call_raw(Service::Forward, body.clone(), CALL_TIMEOUT, true, true).await?)?;
        loop {
            match resp {
                Ok(f) => return Ok(f),
                Err(WireError::NotLeader(leader)) => {
                    if Instant::now() >= deadline {
                        return Err(Error::NoLeader);
                    }
                    let leader_addr: Option<std::net::SocketAddr> =
                        leader.and_then(|(_, node)| node.rpc_addr.parse().ok());
                    *self.leader_hint.lock() = leader_addr;
                    let answer = match leader_addr {
                        Some(addr) => match self.rpc.call_raw(addr, Service::Forward, body.clone(), CALL_TIMEOUT).await
                        {
                            Ok(r) => r,
                            Err(_) => self.call_raw(Service::Forward, body.clone(), CALL_TIMEOUT, false, true).await?,
                        },
                        None => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            self.call_raw(Service::Forward, body.clone(), CALL_TIMEOUT, false, true).await?
                        }
                    };
                    resp = decode(answer)?;
                }
                Err(e) => return Err(e.into_error()),
            }
        }
    }
}

/// An agent's access to the catalog: local Raft or remote servers.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A server: its own replica.
    Server(Arc<Consensus>),
    /// A client agent: the servers, over RPC.
    Client(Arc<Remote>),
}

impl Backend {
    /// Writes through Raft (forwarded to the leader as needed).
    pub async fn write(&self, cmd: Command) -> Result<(u64, CommandResponse)> {
        match self {
            Backend::Server(c) => c.write(cmd).await,
            // A transport failure here may follow attempts that reached a server (each retried
            // with the same request id): the write's fate is unknown, never "not applied".
            Backend::Client(r) => {
                // Extras of services and sessions leave this process beside their records.
                let command = r.ids.track(crate::state::ext_fields::carry(cmd));
                let req = match r.tokens.get() {
                    Some(source) => ForwardRequest::AgentWrite { token: source.agent_write_token(), command },
                    None => ForwardRequest::Write(command),
                };
                match r.forward(req).await.map_err(|e| match e {
                    Error::Rpc(m) => Error::OutcomeUnknown(m),
                    e => e,
                })? {
                    ForwardResponse::Written(index, resp) => crate::replication::consensus::settle_write(index, resp),
                    other => Err(Error::Rpc(format!("unexpected answer to a write: {other:?}"))),
                }
            }
        }
    }

    /// What the catalog holds for one node: a server's own replica (anti-entropy compares with
    /// it and repairs any difference next round anyway), a default-consistency read on a server
    /// for client agents.
    pub async fn read_node(&self, node: &str) -> Result<NodeState> {
        match self {
            Backend::Server(c) => Ok(c.state().read(|d| d.catalog.node_state(node))),
            Backend::Client(r) => match r.forward(ForwardRequest::ReadNodeExt(node.to_string())).await? {
                ForwardResponse::NodeExt(state, ext) => {
                    let mut state = *state;
                    if let Some(n) = state.node.as_mut() {
                        n.ext = ext.0.node;
                    }
                    for (s, e) in state.services.iter_mut().zip(ext.0.services) {
                        s.ext = e;
                    }
                    Ok(state)
                }
                ForwardResponse::Node(state) => Ok(*state),
                other => Err(Error::Rpc(format!("unexpected answer to a node read: {other:?}"))),
            },
        }
    }

    /// The local replica, on servers.
    pub fn consensus(&self) -> Option<&Arc<Consensus>> {
        match self {
            Backend::Server(c) => Some(c),
            Backend::Client(_) => None,
        }
    }
}
