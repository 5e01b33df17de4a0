//! An in-memory twin of the TCP transport, with faults: the network of the simulator and of
//! unit tests that need more than one server in one process.
//!
//! Nodes register a [`Router`] under an address. A call from one node to another is delayed,
//! maybe dropped, maybe cut by a partition. A request that was sent is delivered and handled in
//! a task of the peer's own — as the TCP server does — whether or not the caller still waits: a
//! caller that gives up (a timeout, a dropped future) does not take back what it sent.
//! A node that [crashes](MemoryNetwork::crash) stops answering at once: requests to it are
//! refused ([`RpcError::NotDelivered`]), handlers it was running are dropped mid-way and their
//! callers see [`RpcError::ConnectionLost`], exactly the ambiguity a real crash creates.
//!
//! Every random choice (drops, delays) comes from one seeded RNG owned by the network, so a
//! fault schedule is a function of the seed and the order in which calls are made.
//!
//! | what happens to a request            | the caller sees                 | did the peer act? |
//! |--------------------------------------|---------------------------------|-------------------|
//! | peer down or unknown, caller down    | `NotDelivered` at once          | no                |
//! | request dropped, or the link is cut  | `Timeout` at the deadline       | no                |
//! | peer crashed while handling it, or   | `ConnectionLost`                | maybe             |
//! | before its response arrived          |                                 |                   |
//! | response dropped, or the link is cut | `Timeout` at the deadline       | yes               |
//! | no handler / undecodable body        | `Refused`                       | no                |

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{Router, RpcClient, RpcError, Service, Transport};

/// Faults of one direction of one link (or of every link, as the default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkFaults {
    /// Probability that a message (request or response, drawn separately) is lost.
    pub drop: f64,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra one-way delay, uniform in `[0, jitter)`.
    pub jitter: Duration,
}

impl Default for LinkFaults {
    /// A perfect LAN: no loss, 1 ms one way.
    fn default() -> Self {
        LinkFaults { drop: 0.0, delay: Duration::from_millis(1), jitter: Duration::ZERO }
    }
}

/// Counters of what the network did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Calls made.
    pub calls: u64,
    /// Calls refused because the peer (or the caller) was down.
    pub refused: u64,
    /// Requests or responses lost to drops or cut links.
    pub lost: u64,
    /// Handlers dropped mid-way by a crash.
    pub broken: u64,
}

#[derive(Debug)]
struct Node {
    router: Arc<Router>,
    /// Cancelled when this incarnation of the node crashes.
    life: CancellationToken,
}

#[derive(Debug)]
struct Net {
    nodes: HashMap<SocketAddr, Node>,
    default_faults: LinkFaults,
    links: HashMap<(SocketAddr, SocketAddr), LinkFaults>,
    /// Directed links that carry nothing (partitions).
    cut: HashSet<(SocketAddr, SocketAddr)>,
    rng: StdRng,
    stats: NetStats,
}

impl Net {
    fn faults(&self, from: SocketAddr, to: SocketAddr) -> LinkFaults {
        self.links.get(&(from, to)).copied().unwrap_or(self.default_faults)
    }

    /// Draws whether one message on `from → to` is lost, and its delay.
    fn draw(&mut self, from: SocketAddr, to: SocketAddr) -> (bool, Duration) {
        let f = self.faults(from, to);
        let lost = self.cut.contains(&(from, to)) || (f.drop > 0.0 && self.rng.gen_bool(f.drop.min(1.0)));
        let jitter = if f.jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_micros(self.rng.gen_range(0..f.jitter.as_micros().max(1) as u64))
        };
        (lost, f.delay + jitter)
    }
}

/// A simulated network of [`Router`]s. Cheap to clone; clones share the network.
#[derive(Debug, Clone)]
pub struct MemoryNetwork {
    net: Arc<Mutex<Net>>,
}

impl MemoryNetwork {
    /// An empty network whose randomness derives from `seed`.
    pub fn new(seed: u64) -> Self {
        MemoryNetwork {
            net: Arc::new(Mutex::new(Net {
                nodes: HashMap::new(),
                default_faults: LinkFaults::default(),
                links: HashMap::new(),
                cut: HashSet::new(),
                rng: StdRng::seed_from_u64(seed),
                stats: NetStats::default(),
            })),
        }
    }

    /// Serves `router` at `addr` (a node starting, or restarting after a crash).
    pub fn register(&self, addr: SocketAddr, router: Router) {
        let mut net = self.net.lock();
        if let Some(old) = net.nodes.insert(addr, Node { router: Arc::new(router), life: CancellationToken::new() }) {
            old.life.cancel();
        }
    }

    /// Crashes the node at `addr`: it answers nothing from now on, its running handlers are
    /// dropped, and its own calls fail, until it is registered again.
    pub fn crash(&self, addr: SocketAddr) {
        if let Some(node) = self.net.lock().nodes.remove(&addr) {
            node.life.cancel();
        }
    }

    /// Whether a node is registered (up) at `addr`.
    pub fn is_up(&self, addr: SocketAddr) -> bool {
        self.net.lock().nodes.contains_key(&addr)
    }

    /// The faults of every link without its own setting.
    pub fn set_default_faults(&self, faults: LinkFaults) {
        self.net.lock().default_faults = faults;
    }

    /// The faults of the directed link `from → to`.
    pub fn set_link_faults(&self, from: SocketAddr, to: SocketAddr, faults: LinkFaults) {
        self.net.lock().links.insert((from, to), faults);
    }

    /// Cuts every link between different groups (both directions); links inside a group, and
    /// of nodes in no group, are unchanged.
    pub fn partition(&self, groups: &[Vec<SocketAddr>]) {
        let mut net = self.net.lock();
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i != j {
                    for x in a {
                        for y in b {
                            net.cut.insert((*x, *y));
                        }
                    }
                }
            }
        }
    }

    /// Cuts the directed link `from → to`: requests and responses travelling that way are lost
    /// (a response is checked when it would leave, so calls already in flight are hit too).
    pub fn cut(&self, from: SocketAddr, to: SocketAddr) {
        self.net.lock().cut.insert((from, to));
    }

    /// Cuts `addr` off from every node registered now (both directions).
    pub fn isolate(&self, addr: SocketAddr) {
        let mut net = self.net.lock();
        let others: Vec<SocketAddr> = net.nodes.keys().copied().filter(|a| *a != addr).collect();
        for o in others {
            net.cut.insert((addr, o));
            net.cut.insert((o, addr));
        }
    }

    /// Restores every cut link and removes every per-link fault setting.
    pub fn heal(&self) {
        let mut net = self.net.lock();
        net.cut.clear();
        net.links.clear();
    }

    /// What the network did so far.
    pub fn stats(&self) -> NetStats {
        self.net.lock().stats
    }

    /// The transport of the node at `from`.
    pub fn transport(&self, from: SocketAddr) -> Arc<dyn Transport> {
        Arc::new(MemoryTransport { network: self.clone(), from })
    }

    /// An RPC client sending from the node at `from`.
    pub fn client(&self, from: SocketAddr) -> RpcClient {
        RpcClient::with_transport(self.transport(from))
    }

    async fn call(
        &self,
        from: SocketAddr,
        to: SocketAddr,
        service: Service,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        // The same per-service limit as the TCP transport's, so the simulator sees what an
        // over-sized request does on a real port.
        let max = super::request_max(service);
        if body.len() > max {
            return Err(RpcError::Codec(format!(
                "{service:?} request of {} bytes exceeds the limit of {max}",
                body.len()
            )));
        }
        let (router, peer_life, caller_life, request, response) = {
            let mut net = self.net.lock();
            net.stats.calls += 1;
            let caller_life = net.nodes.get(&from).map(|n| n.life.clone());
            let peer = net.nodes.get(&to).map(|n| (n.router.clone(), n.life.clone()));
            let (Some(caller_life), Some((router, peer_life))) = (caller_life, peer) else {
                net.stats.refused += 1;
                return Err(RpcError::NotDelivered { addr: to, reason: "connection refused (node down)".into() });
            };
            // Both legs are drawn now, so the draws do not depend on when the handler finishes.
            let request = net.draw(from, to);
            let response = net.draw(to, from);
            (router, peer_life, caller_life, request, response)
        };
        // The request is on the wire: it arrives (or not) whether or not the caller keeps
        // waiting, and the peer handles it in its own task (as `serve_connection` does), which
        // only the peer's crash stops.
        let (tx, rx) = oneshot::channel();
        let (lost, delay) = request;
        let mut unanswered = None;
        if lost {
            self.net.lock().stats.lost += 1;
            // Keep the sender: the caller waits for an answer that never comes (a timeout).
            unanswered = Some(tx);
        } else {
            let life = peer_life.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = life.cancelled() => {}
                    _ = async {
                        tokio::time::sleep(delay).await;
                        let reply = router.dispatch(service, body).await;
                        let _ = tx.send(reply);
                    } => {}
                }
            });
        }
        let exchange = async {
            let _unanswered = unanswered;
            let reply = tokio::select! {
                r = rx => r,
                _ = caller_life.cancelled() => return std::future::pending().await,
            };
            let Ok(reply) = reply else {
                // The peer crashed before or while handling it.
                self.net.lock().stats.broken += 1;
                return Err(RpcError::ConnectionLost(to));
            };
            let (lost, delay) = response;
            let cut_now = self.net.lock().cut.contains(&(to, from));
            if lost || cut_now {
                self.net.lock().stats.lost += 1;
                return std::future::pending().await;
            }
            tokio::time::sleep(delay).await;
            // A response still in a crashed peer's buffers never arrives.
            if peer_life.is_cancelled() {
                self.net.lock().stats.broken += 1;
                return Err(RpcError::ConnectionLost(to));
            }
            reply.map_err(|reason| RpcError::Refused { addr: to, reason })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(RpcError::Timeout(to)),
        }
    }
}

/// One node's side of a [`MemoryNetwork`].
#[derive(Debug)]
struct MemoryTransport {
    network: MemoryNetwork,
    from: SocketAddr,
}

impl Transport for MemoryTransport {
    fn call_raw(
        &self,
        addr: SocketAddr,
        service: Service,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<u8>, RpcError>> {
        Box::pin(self.network.call(self.from, addr, service, body, timeout))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 8300))
    }

    fn counter_router(hits: Arc<AtomicU64>, work: Duration) -> Router {
        Router::new().route(Service::Forward, move |n: u64| {
            let hits = hits.clone();
            async move {
                tokio::time::sleep(work).await;
                hits.fetch_add(1, Ordering::SeqCst);
                n + 1
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn delivery_semantics_match_the_tcp_transport() {
        let net = MemoryNetwork::new(7);
        let hits = Arc::new(AtomicU64::new(0));
        net.register(addr(1), Router::new());
        net.register(addr(2), counter_router(hits.clone(), Duration::from_millis(50)));
        let client = net.client(addr(1));
        let t = Duration::from_secs(1);

        let answer: u64 = client.call(addr(2), Service::Forward, &41u64, t).await.unwrap();
        assert_eq!(answer, 42);

        // Unknown peer: certainly not delivered.
        let e = client.call::<_, u64>(addr(3), Service::Forward, &1u64, t).await.unwrap_err();
        assert!(e.not_delivered(), "{e}");

        // No handler for the service: refused, nothing ran.
        let e = client.call::<_, u64>(addr(2), Service::Raft, &1u64, t).await.unwrap_err();
        assert!(matches!(e, RpcError::Refused { .. }), "{e}");

        // The peer crashes while handling: ambiguous, and the handler did not finish.
        let before = hits.load(Ordering::SeqCst);
        let (r, ()) = tokio::join!(client.call::<_, u64>(addr(2), Service::Forward, &1u64, t), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            net.crash(addr(2));
        });
        assert!(matches!(r, Err(RpcError::ConnectionLost(_))), "{r:?}");
        assert_eq!(hits.load(Ordering::SeqCst), before);

        // Cut link: the caller times out (it cannot tell whether the peer got it).
        net.register(addr(2), counter_router(hits.clone(), Duration::ZERO));
        net.isolate(addr(2));
        let e = client.call::<_, u64>(addr(2), Service::Forward, &1u64, t).await.unwrap_err();
        assert!(matches!(e, RpcError::Timeout(_)), "{e}");
        net.heal();
        assert_eq!(client.call::<_, u64>(addr(2), Service::Forward, &1u64, t).await.unwrap(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_gives_up_does_not_cancel_the_peers_work() {
        let net = MemoryNetwork::new(1);
        let hits = Arc::new(AtomicU64::new(0));
        net.register(addr(1), Router::new());
        net.register(addr(2), counter_router(hits.clone(), Duration::from_millis(100)));
        let client = net.client(addr(1));
        let r = client.call::<_, u64>(addr(2), Service::Forward, &1u64, Duration::from_millis(10)).await;
        assert!(matches!(r, Err(RpcError::Timeout(_))));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(hits.load(Ordering::SeqCst), 1, "the request was acted on although the caller timed out");
    }

    #[tokio::test(start_paused = true)]
    async fn drops_follow_the_seed() {
        async fn outcomes(seed: u64) -> Vec<bool> {
            let net = MemoryNetwork::new(seed);
            net.set_default_faults(LinkFaults { drop: 0.3, ..LinkFaults::default() });
            net.register(addr(1), Router::new());
            net.register(addr(2), counter_router(Arc::default(), Duration::ZERO));
            let client = net.client(addr(1));
            let mut out = Vec::new();
            for i in 0..40u64 {
                out.push(client.call::<_, u64>(addr(2), Service::Forward, &i, Duration::from_millis(50)).await.is_ok());
            }
            out
        }
        let a = outcomes(5).await;
        assert_eq!(a, outcomes(5).await);
        assert!(a.iter().any(|ok| !ok) && a.iter().any(|ok| *ok));
    }
}
