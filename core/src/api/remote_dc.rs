//! Requests for another datacenter (Consul's `forwardDC` in `agent/consul/rpc.go`): which
//! datacenters exist, which of their servers to ask, and the call itself.
//!
//! A server learns the other datacenters from the WAN pool ([`WanPool`]): every member is a
//! server, named `<node>.<dc>`, carrying its RPC address. A request for datacenter `dc` goes
//! to an alive server of `dc` picked at random (Consul's router picks one too); when that server
//! cannot be reached, the request tries the next one only if it is safe to repeat (a read, or a
//! request that never left this agent), like a client agent's requests to its own servers
//! (`replication::backend`). A datacenter the pool does not know, or whose servers are all
//! failed, answers at once with "No path to datacenter", as in Consul; nothing waits for a
//! server to appear, so a dead datacenter never makes a caller hang.
//!
//! Client agents have no WAN pool: their foreign-datacenter requests go whole to a server of
//! their own datacenter, which forwards them on (see `http::remote`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::seq::SliceRandom;
use tokio_util::sync::CancellationToken;

use crate::membership::gossip::MemberStatus;
use crate::membership::wan::WanPool;
use crate::rpc::{RpcClient, Service};
use crate::tls::AgentTls;
use crate::Error;

/// The other datacenters as this agent sees them, and the way to their servers.
#[derive(Debug)]
pub struct Datacenters {
    local: String,
    wan: Option<Arc<WanPool>>,
    dial: Dial,
}

/// How other datacenters' server ports are reached.
#[derive(Debug)]
enum Dial {
    /// Plaintext: one client for every datacenter.
    Plain(RpcClient),
    /// TLS (`verify_outgoing`): one client per datacenter, each verifying its servers as
    /// `server.<that datacenter>.<domain>` (`verify_server_hostname` across datacenters).
    Tls { shutdown: CancellationToken, tls: Arc<AgentTls>, clients: Mutex<HashMap<String, RpcClient>> },
}

impl Datacenters {
    /// `local` is this agent's datacenter; `wan` the server's WAN pool (`None` on client agents
    /// and on servers running without one); `tls` the agent's TLS, used for the server ports of
    /// other datacenters as for its own.
    pub fn new(
        local: String,
        wan: Option<Arc<WanPool>>,
        shutdown: CancellationToken,
        tls: Option<Arc<AgentTls>>,
    ) -> Arc<Self> {
        let dial = match tls {
            Some(tls) => Dial::Tls { shutdown, tls, clients: Mutex::default() },
            None => Dial::Plain(RpcClient::new(shutdown)),
        };
        Arc::new(Datacenters { local, wan, dial })
    }

    /// The RPC client for the servers of `dc`.
    fn client_for(&self, dc: &str) -> RpcClient {
        match &self.dial {
            Dial::Plain(rpc) => rpc.clone(),
            Dial::Tls { shutdown, tls, clients } => clients
                .lock()
                .entry(dc.to_string())
                .or_insert_with(|| RpcClient::with_tls_for_datacenter(shutdown.clone(), tls.clone(), dc))
                .clone(),
        }
    }

    /// This agent's datacenter.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// Whether `dc` names a datacenter other than this one (empty means this one; datacenter
    /// names compare without case, as Consul's `?dc` does here).
    pub fn is_remote(&self, dc: &str) -> bool {
        !dc.is_empty() && !dc.eq_ignore_ascii_case(&self.local)
    }

    /// Whether this agent can forward at all (servers with a WAN pool).
    pub fn can_forward(&self) -> bool {
        self.wan.is_some()
    }

    /// The name of datacenter `dc` as the WAN pool spells it, if the pool knows it (any server
    /// not gone for good).
    pub fn known(&self, dc: &str) -> Option<String> {
        let wan = self.wan.as_ref()?;
        wan.members()
            .into_iter()
            .filter(|m| m.status != MemberStatus::Left)
            .map(|m| m.info.datacenter)
            .find(|d| d.eq_ignore_ascii_case(dc))
    }

    /// RPC addresses of the alive servers of `dc`, shuffled.
    pub fn servers(&self, dc: &str) -> Vec<SocketAddr> {
        let Some(wan) = &self.wan else { return Vec::new() };
        let mut list: Vec<SocketAddr> = wan
            .members()
            .into_iter()
            .filter(|m| m.status == MemberStatus::Alive && m.info.server && m.info.datacenter.eq_ignore_ascii_case(dc))
            .map(|m| m.info.rpc_addr)
            .collect();
        list.shuffle(&mut rand::thread_rng());
        list
    }

    /// The other datacenters, nearest first (Consul's `GetOtherDatacentersByDistance`).
    pub fn others_by_distance(&self) -> Vec<String> {
        let Some(wan) = &self.wan else { return Vec::new() };
        wan.datacenters().into_iter().filter(|d| self.is_remote(d)).collect()
    }

    /// Sends an encoded `service` request to a server of `dc`; its encoded answer. Tries the
    /// alive servers of `dc` in turn while the failure says the request never arrived, or
    /// while it is `repeatable`.
    pub async fn call(
        &self,
        dc: &str,
        service: Service,
        body: Vec<u8>,
        timeout: Duration,
        repeatable: bool,
    ) -> Result<Vec<u8>, Error> {
        let servers = self.servers(dc);
        if servers.is_empty() {
            return Err(Error::NoPathToDatacenter(dc.to_string()));
        }
        let rpc = self.client_for(dc);
        let mut last = None;
        for addr in servers {
            match rpc.call_raw(addr, service, body.clone(), timeout).await {
                Ok(answer) => return Ok(answer),
                Err(e) if !repeatable && !e.not_delivered() => {
                    return Err(Error::OutcomeUnknown(format!("datacenter {dc}, server {addr}: {e}")));
                }
                Err(e) => {
                    tracing::debug!(datacenter = dc, %addr, error = %e, "server of another datacenter unreachable");
                    last = Some(e);
                }
            }
        }
        let reason = last.map(|e| e.to_string()).unwrap_or_default();
        Err(Error::Rpc(format!("forwarding to datacenter {dc}: {reason}")))
    }
}

/// The datacenters a prepared query fails over to, in order (Consul's `queryFailover`): the
/// `nearest_n` nearest of `others` (the other datacenters by distance), then the listed ones
/// not already chosen, skipping any the WAN pool does not know (`others` is what it knows).
pub fn failover_order(others: &[String], nearest_n: i64, listed: &[String]) -> Vec<String> {
    let n = usize::try_from(nearest_n).unwrap_or(0);
    let mut order: Vec<String> = others.iter().take(n).cloned().collect();
    for dc in listed {
        let Some(known) = others.iter().find(|o| o.eq_ignore_ascii_case(dc)) else {
            tracing::debug!(datacenter = %dc, "skipping unknown datacenter in prepared query");
            continue;
        };
        if !order.iter().any(|o| o == known) {
            order.push(known.clone());
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dcs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn failover_tries_nearest_n_then_listed_once_each() {
        let others = dcs(&["dc3", "dc2", "dc4"]);
        // Nearest two first, then the listed ones not already tried, in the listed order.
        assert_eq!(failover_order(&others, 2, &dcs(&["dc4", "dc2"])), ["dc3", "dc2", "dc4"]);
        // Only the listed ones, unknown datacenters skipped.
        assert_eq!(failover_order(&others, 0, &dcs(&["dc9", "dc4", "dc3"])), ["dc4", "dc3"]);
        // NearestN larger than the known datacenters, or negative.
        assert_eq!(failover_order(&others, 10, &[]), ["dc3", "dc2", "dc4"]);
        assert!(failover_order(&others, -1, &[]).is_empty());
        // Listed names match without case and are answered as the pool spells them.
        assert_eq!(failover_order(&others, 0, &dcs(&["DC2"])), ["dc2"]);
        // No other datacenter: nowhere to go.
        assert!(failover_order(&[], 3, &dcs(&["dc2"])).is_empty());
    }

    #[test]
    fn without_a_wan_pool_nothing_is_remote_reachable() {
        let d = Datacenters::new("dc1".into(), None, CancellationToken::new(), None);
        assert!(d.is_remote("dc2") && !d.is_remote("DC1") && !d.is_remote(""));
        assert!(!d.can_forward());
        assert_eq!(d.known("dc2"), None);
        assert!(d.servers("dc2").is_empty());
        assert!(d.others_by_distance().is_empty());
    }
}
