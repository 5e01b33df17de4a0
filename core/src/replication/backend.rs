//! Where an agent's writes and catalog reads go: its own Raft replica (servers) or, over RPC,
//! a server of its datacenter (client agents).
//!
//! A client agent keeps no replicated state. It learns the servers from the gossip pool (members
//! tagged `role=consul` in its datacenter) and sends each request to one of them, trying the
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

use crate::membership::gossip::{Gossip, MemberStatus};
use crate::replication::consensus::Consensus;
use crate::rpc::messages::{ForwardRequest, ForwardResponse, HttpRequest, HttpResponse, WireError};
use crate::rpc::{Request, Response, RpcClient};
use crate::state::catalog::NodeState;
use crate::state::command::{Command, CommandResponse, RequestIds};
use crate::{Error, Result};

/// Time allowed for one forwarded request that is not a blocking query.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The servers of a client agent's datacenter, reached over RPC.
#[derive(Debug)]
pub struct Remote {
    rpc: RpcClient,
    gossip: Arc<Gossip>,
    datacenter: String,
    hold_timeout: Duration,
    /// The leader's RPC address as last learned from a redirect: writes and non-`stale` reads
    /// go there first, saving the hop a follower would add.
    leader_hint: parking_lot::Mutex<Option<std::net::SocketAddr>>,
    /// Request ids for this agent's writes (anti-entropy, coordinates).
    ids: RequestIds,
}

impl Remote {
    /// Servers as the gossip pool knows them.
    pub fn new(rpc: RpcClient, gossip: Arc<Gossip>, datacenter: String, hold_timeout: Duration) -> Arc<Remote> {
        Arc::new(Remote {
            rpc,
            gossip,
            datacenter,
            hold_timeout,
            leader_hint: parking_lot::Mutex::new(None),
            ids: RequestIds::new(),
        })
    }

    /// RPC addresses of alive servers, shuffled so load spreads.
    pub fn servers(&self) -> Vec<std::net::SocketAddr> {
        let mut list: Vec<_> = self
            .gossip
            .members()
            .into_iter()
            .filter(|m| m.status == MemberStatus::Alive && m.info.server && m.info.datacenter == self.datacenter)
            .map(|m| m.info.rpc_addr)
            .collect();
        list.shuffle(&mut rand::thread_rng());
        list
    }

    /// Sends `req` to some server, trying each in turn and waiting (up to the hold timeout)
    /// for one to be known. `req` must be safe to repeat (see the module docs).
    pub async fn call(&self, req: &Request, timeout: Duration) -> Result<Response> {
        self.call_preferring(req, timeout, None, true).await
    }

    /// Like [`Remote::call`], trying `first` (if it is a known alive server) before the others.
    /// Unless `repeatable`, a request that may have reached a server is not sent to another.
    async fn call_preferring(
        &self,
        req: &Request,
        timeout: Duration,
        first: Option<std::net::SocketAddr>,
        repeatable: bool,
    ) -> Result<Response> {
        let deadline = Instant::now() + self.hold_timeout;
        let mut last_error = None;
        loop {
            let mut servers = self.servers();
            if let Some(pos) = first.and_then(|f| servers.iter().position(|s| *s == f)) {
                servers.swap(0, pos);
            }
            for addr in servers {
                match self.rpc.call(addr, req.clone(), timeout).await {
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

    /// A forwarded request, following `NotLeader` redirects to the leader.
    async fn forward(&self, req: ForwardRequest) -> Result<ForwardResponse> {
        let deadline = Instant::now() + self.hold_timeout;
        let hint = *self.leader_hint.lock();
        let mut resp = self.call_preferring(&Request::Forward(req.clone()), CALL_TIMEOUT, hint, true).await?;
        loop {
            match resp {
                Response::Forward(f) => return Ok(f),
                Response::Error(WireError::BadRequest(m)) => return Err(Error::BadRequest(m)),
                Response::Error(WireError::Other(m)) => return Err(Error::Rpc(m)),
                Response::Error(WireError::OutcomeUnknown(m)) => return Err(Error::OutcomeUnknown(m)),
                Response::Error(WireError::NotLeader(leader)) => {
                    if Instant::now() >= deadline {
                        return Err(Error::NoLeader);
                    }
                    let leader_addr: Option<std::net::SocketAddr> =
                        leader.and_then(|(_, node)| node.rpc_addr.parse().ok());
                    *self.leader_hint.lock() = leader_addr;
                    resp = match leader_addr {
                        Some(addr) => match self.rpc.call(addr, Request::Forward(req.clone()), CALL_TIMEOUT).await {
                            Ok(r) => r,
                            Err(_) => self.call(&Request::Forward(req.clone()), CALL_TIMEOUT).await?,
                        },
                        None => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            self.call(&Request::Forward(req.clone()), CALL_TIMEOUT).await?
                        }
                    };
                }
                other => return Err(Error::Rpc(format!("unexpected answer from a server: {other:?}"))),
            }
        }
    }

    /// Serves an HTTP request on some server's API (the request's own timeout applies).
    pub async fn http(&self, req: HttpRequest, timeout: Duration) -> Result<HttpResponse> {
        // `?stale` reads may go to any server; the rest go to the leader when we know it
        // (any server would answer them correctly too, after asking the leader).
        let stale =
            req.uri.split_once('?').is_some_and(|(_, q)| q.split('&').any(|p| p == "stale" || p.starts_with("stale=")));
        let first = if stale { None } else { *self.leader_hint.lock() };
        // Reads may be asked of another server; a write that may have reached one may not.
        let repeatable = matches!(req.method.as_str(), "GET" | "HEAD");
        match self.call_preferring(&Request::Http(req), timeout, first, repeatable).await? {
            Response::Http(r) => Ok(r),
            Response::Error(WireError::BadRequest(m)) => Err(Error::BadRequest(m)),
            Response::Error(e) => Err(Error::Rpc(format!("{e:?}"))),
            other => Err(Error::Rpc(format!("unexpected answer from a server: {other:?}"))),
        }
    }

    /// Resolves a DNS query on some server.
    pub async fn dns(&self, packet: Vec<u8>, udp: bool) -> Result<Option<Vec<u8>>> {
        match self.call(&Request::Dns { packet, udp }, CALL_TIMEOUT).await? {
            Response::Dns(r) => Ok(r),
            other => Err(Error::Rpc(format!("unexpected answer from a server: {other:?}"))),
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
            Backend::Client(r) => match r.forward(ForwardRequest::Write(r.ids.track(cmd))).await? {
                ForwardResponse::Written(index, resp) => crate::replication::consensus::settle_write(index, resp),
                other => Err(Error::Rpc(format!("unexpected answer to a write: {other:?}"))),
            },
        }
    }

    /// What the catalog holds for one node: a server's own replica (anti-entropy compares with
    /// it and repairs any difference next round anyway), a default-consistency read on a server
    /// for client agents.
    pub async fn read_node(&self, node: &str) -> Result<NodeState> {
        match self {
            Backend::Server(c) => Ok(c.state().read(|d| d.catalog.node_state(node))),
            Backend::Client(r) => match r.forward(ForwardRequest::ReadNode(node.to_string())).await? {
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
