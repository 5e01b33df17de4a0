//! Runs a gossip [`Engine`] for real: UDP on the serf_lan port for probes and gossip, TCP (the
//! serf_lan RPC listener) for joins and periodic push/pull, tokio timers for foca's timers.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use foca::Timer;
use parking_lot::Mutex;
use rand::seq::SliceRandom;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::engine::{
    Counters, Engine, EngineError, GossipConfig, Member, MemberStatus, NodeIdentity, Outbox, RttObserver, SyncState,
    MAX_PACKET,
};
use super::events::UserEvent;
use super::keyring::Keyring;
use super::MemberInfo;
use crate::rpc::{RpcClient, Service};

/// How long a graceful leave waits for the intent to spread (Serf's `LeavePropagateDelay`).
const LEAVE_PROPAGATE: Duration = Duration::from_secs(1);
/// Time allowed for a join or push/pull exchange (memberlist's LAN `TCPTimeout` is 10 s).
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// How often failed and left members are checked for reaping (Serf's `ReapInterval`).
const REAP_INTERVAL: Duration = Duration::from_secs(15);

/// Why a join failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// No address given answered.
    #[error("failed to join any of {addrs:?}: {reasons}")]
    NoneAnswered {
        /// The addresses tried.
        addrs: Vec<String>,
        /// What went wrong with each.
        reasons: String,
    },
}

/// A keyring operation, applied by every member of the pool (`consul keyring`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KeyringOp {
    /// Report installed keys.
    List,
    /// Install a key.
    Install(String),
    /// Make an installed key the primary one.
    Use(String),
    /// Remove a non-primary key.
    Remove(String),
}

/// One member's answer to a [`KeyringOp`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyringReply {
    /// Installed keys after the operation.
    pub keys: Vec<String>,
    /// The primary key after the operation.
    pub primary: Option<String>,
    /// Why the operation failed there.
    pub error: Option<String>,
}

/// The pool's answers to a [`KeyringOp`], tallied like Consul's `KeyringResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyringSummary {
    /// Members asked (this agent included).
    pub num_nodes: usize,
    /// Key → how many members have it installed.
    pub keys: std::collections::BTreeMap<String, usize>,
    /// Key → how many members use it as primary.
    pub primary_keys: std::collections::BTreeMap<String, usize>,
    /// Member → error, for members that failed or did not answer.
    pub messages: std::collections::BTreeMap<String, String>,
}

/// Time allowed for each member's answer to a keyring operation.
const KEYRING_TIMEOUT: Duration = Duration::from_secs(5);

/// Timers armed by the engine, on their way to the timer task.
type TimerQueue = mpsc::UnboundedReceiver<(Instant, Timer<NodeIdentity>)>;

/// A running gossip pool member. Cheap to share (`Arc`).
pub struct Gossip {
    engine: Mutex<Engine>,
    socket: Arc<UdpSocket>,
    timers_tx: mpsc::UnboundedSender<(Instant, Timer<NodeIdentity>)>,
    timers_rx: Mutex<Option<TimerQueue>>,
    rpc: RpcClient,
    keyring: Arc<Keyring>,
    config: GossipConfig,
    members_rx: watch::Receiver<u64>,
    events_rx: watch::Receiver<u64>,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip").field("addr", &self.socket.local_addr().ok()).finish()
    }
}

impl Gossip {
    /// Binds the UDP socket at `bind` (the serf_lan TCP listener's address and port).
    pub async fn bind(
        bind: SocketAddr,
        me: MemberInfo,
        config: GossipConfig,
        keyring: Arc<Keyring>,
        rpc: RpcClient,
    ) -> std::io::Result<Arc<Gossip>> {
        let socket = Arc::new(UdpSocket::bind(bind).await?);
        let engine = Engine::new(me, config.clone(), keyring.clone(), rand::random(), Instant::now().into_std());
        let (timers_tx, timers_rx) = mpsc::unbounded_channel();
        Ok(Arc::new(Gossip {
            members_rx: engine.member_changes(),
            events_rx: engine.event_changes(),
            engine: Mutex::new(engine),
            socket,
            timers_tx,
            timers_rx: Mutex::new(Some(timers_rx)),
            rpc,
            keyring,
            config,
        }))
    }

    /// Feeds probe round trips to the network-coordinate client.
    pub fn set_rtt_observer(&self, observer: Arc<dyn RttObserver>) {
        self.engine.lock().set_rtt_observer(observer);
    }

    /// The keyring (for `consul keyring`).
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// The timing in use.
    pub fn config(&self) -> &GossipConfig {
        &self.config
    }

    /// Every member known, this agent included.
    pub fn members(&self) -> Vec<Member> {
        self.engine.lock().members()
    }

    /// This agent's current identity.
    pub fn me(&self) -> MemberInfo {
        self.engine.lock().me().clone()
    }

    /// Members' state changes (a counter).
    pub fn member_changes(&self) -> watch::Receiver<u64> {
        self.members_rx.clone()
    }

    /// User event arrivals (a counter).
    pub fn event_changes(&self) -> watch::Receiver<u64> {
        self.events_rx.clone()
    }

    /// Traffic and drop counters.
    pub fn counters(&self) -> Counters {
        self.engine.lock().counters()
    }

    /// Lifeguard's local health multiplier.
    pub fn local_health(&self) -> u32 {
        self.engine.lock().local_health()
    }

    /// Recent user events, oldest first.
    pub fn events(&self) -> Vec<UserEvent> {
        self.engine.lock().events()
    }

    fn with_engine<T>(&self, f: impl FnOnce(&mut Engine, std::time::Instant, &mut Outbox) -> T) -> T {
        let mut out = Outbox::default();
        let r = f(&mut self.engine.lock(), std::time::Instant::now(), &mut out);
        self.dispatch(out);
        r
    }

    fn dispatch(&self, out: Outbox) {
        for (to, packet) in out.sends {
            if packet.len() > MAX_PACKET {
                // Never expected (foca's limit leaves room for the envelope); sent anyway, as the
                // local network may still carry it, but worth knowing about.
                tracing::debug!(%to, len = packet.len(), "gossip packet larger than the UDP budget");
            }
            // UDP: a full socket buffer drops the packet, which SWIM tolerates by design.
            if let Err(e) = self.socket.try_send_to(&packet, to) {
                tracing::trace!(%to, error = %e, "gossip send");
            }
        }
        let now = Instant::now();
        for (after, timer) in out.timers {
            let _ = self.timers_tx.send((now + after, timer));
        }
    }

    /// Fires a user event into the pool.
    pub fn fire_event(&self, ev: UserEvent) -> Result<UserEvent, EngineError> {
        self.with_engine(|e, now, out| e.fire_event(now, ev, out))
    }

    /// Marks a failed member left (`prune`: forget it).
    pub fn force_leave(&self, name: &str, prune: bool) -> Result<(), EngineError> {
        self.with_engine(|e, now, out| e.force_leave(now, name, prune, out))
    }

    /// Changes this agent's tags (spread as a new incarnation of the same member).
    pub fn update_identity(&self, info: MemberInfo) {
        self.with_engine(|e, now, out| e.update_identity(now, info, out));
    }

    /// Leaves gracefully: spreads the intent, waits for it to propagate, then goes quiet.
    pub async fn leave(&self) {
        self.with_engine(|e, now, out| e.leave(now, out));
        tokio::time::sleep(LEAVE_PROPAGATE).await;
    }

    /// Joins the pools of the agents at `addrs` (`host` or `host:port`): a push/pull with each.
    /// Returns how many answered, or why none did.
    pub async fn join(&self, addrs: &[String]) -> Result<usize, JoinError> {
        let mut joined = 0;
        let mut reasons = Vec::new();
        let me = self.me().serf_addr;
        for addr in addrs {
            let targets = match crate::membership::cluster::resolve_with_port(addr, self.config.default_port).await {
                Ok(t) if !t.is_empty() => t,
                Ok(_) => {
                    reasons.push(format!("{addr}: no address"));
                    continue;
                }
                Err(e) => {
                    reasons.push(format!("{addr}: cannot resolve: {e}"));
                    continue;
                }
            };
            for target in targets {
                if target == me {
                    // Joining oneself succeeds at once, as with memberlist: this agent is already
                    // in its own pool (Consul's own client tests join the agent to itself).
                    joined += 1;
                    break;
                }
                match self.push_pull(target).await {
                    Ok(()) => {
                        joined += 1;
                        break;
                    }
                    Err(e) => reasons.push(format!("{target}: {e}")),
                }
            }
        }
        if joined == 0 && !addrs.is_empty() {
            return Err(JoinError::NoneAnswered { addrs: addrs.to_vec(), reasons: reasons.join("; ") });
        }
        Ok(joined)
    }

    /// One push/pull exchange with the agent at `target`.
    async fn push_pull(&self, target: SocketAddr) -> Result<(), String> {
        let sealed = {
            let engine = self.engine.lock();
            let body = postcard::to_stdvec(&engine.sync_state()).map_err(|e| e.to_string())?;
            engine.seal_stream(&body)
        };
        let answer =
            match self.rpc.call::<_, Result<Vec<u8>, String>>(target, Service::Gossip, &sealed, SYNC_TIMEOUT).await {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(m)) => return Err(format!("refused: {m}")),
                Err(e) => return Err(e.to_string()),
            };
        let state = self.open_state(&answer).map_err(|e| format!("cannot read its answer: {e}"))?;
        let peer = state.members.iter().find(|m| m.id().0.serf_addr == target).map(|m| m.id().0.clone());
        self.with_engine(|e, now, out| {
            e.apply_sync(now, state, out);
            if let Some(p) = peer {
                e.announce(now, p, out);
            }
        });
        Ok(())
    }

    fn open_state(&self, sealed: &[u8]) -> Result<SyncState, String> {
        let plain = self.engine.lock().open_stream(sealed).map_err(|e| e.to_string())?;
        postcard::from_bytes(&plain).map_err(|e| format!("undecodable state: {e}"))
    }

    /// Answers a push/pull or join that arrived on the serf_lan TCP port (the
    /// [`Service::Gossip`] RPC service): our sealed state, or why theirs was refused.
    pub fn handle_sync(&self, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let state = match self.open_state(sealed) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "rejected a gossip push/pull (check the `encrypt` key)");
                return Err(e);
            }
        };
        let mine = {
            let engine = self.engine.lock();
            postcard::to_stdvec(&engine.sync_state()).map(|b| engine.seal_stream(&b))
        };
        self.with_engine(|e, now, out| e.apply_sync(now, state, out));
        mine.map_err(|e| e.to_string())
    }

    fn apply_keyring(&self, op: &KeyringOp) -> KeyringReply {
        let r = match op {
            KeyringOp::List => Ok(()),
            KeyringOp::Install(k) => self.keyring.install(k),
            KeyringOp::Use(k) => self.keyring.use_key(k),
            KeyringOp::Remove(k) => self.keyring.remove(k),
        };
        KeyringReply {
            keys: self.keyring.list(),
            primary: self.keyring.primary(),
            error: r.err().map(|e| e.to_string()),
        }
    }

    /// Applies `op` here and on every alive member; tallies the answers.
    pub async fn keyring_op(&self, op: KeyringOp) -> Result<KeyringSummary, super::keyring::KeyringError> {
        if !self.keyring.enabled() {
            return Err(super::keyring::KeyringError::NotEnabled);
        }
        if let KeyringOp::Install(k) | KeyringOp::Use(k) | KeyringOp::Remove(k) = &op {
            super::keyring::decode_key(k)?;
        }
        let me = self.me();
        let mut summary = KeyringSummary::default();
        let tally = |name: &str, reply: KeyringReply, s: &mut KeyringSummary| {
            s.num_nodes += 1;
            for k in reply.keys {
                *s.keys.entry(k).or_default() += 1;
            }
            if let Some(p) = reply.primary {
                *s.primary_keys.entry(p).or_default() += 1;
            }
            if let Some(e) = reply.error {
                s.messages.insert(name.to_string(), e);
            }
        };
        // Here first: an installed key must be known locally before replies sealed with it arrive.
        tally(&me.name, self.apply_keyring(&op), &mut summary);
        let sealed = {
            let engine = self.engine.lock();
            match postcard::to_stdvec(&op) {
                Ok(b) => engine.seal_stream(&b),
                Err(e) => return Err(super::keyring::KeyringError::File("keyring op".into(), e.to_string())),
            }
        };
        let peers: Vec<MemberInfo> = self
            .members()
            .into_iter()
            .filter(|m| m.status == MemberStatus::Alive && m.info.name != me.name)
            .map(|m| m.info)
            .collect();
        let calls = peers.into_iter().map(|peer| {
            let sealed = &sealed;
            async move {
                let call = self.rpc.call::<_, Result<Vec<u8>, String>>(
                    peer.serf_addr,
                    Service::Keyring,
                    sealed,
                    KEYRING_TIMEOUT,
                );
                let answer = match call.await {
                    Ok(Ok(bytes)) => self
                        .engine
                        .lock()
                        .open_stream(&bytes)
                        .map_err(|e| e.to_string())
                        .and_then(|plain| postcard::from_bytes::<KeyringReply>(&plain).map_err(|e| e.to_string())),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(e.to_string()),
                };
                (peer.name, answer)
            }
        });
        for (name, answer) in futures::future::join_all(calls).await {
            match answer {
                Ok(reply) => tally(&name, reply, &mut summary),
                Err(e) => {
                    summary.num_nodes += 1;
                    summary.messages.insert(name, e);
                }
            }
        }
        Ok(summary)
    }

    /// This member's own keys only, tallied like a pool's answer (`?local-only`).
    pub fn keyring_local(&self) -> Result<KeyringSummary, super::keyring::KeyringError> {
        if !self.keyring.enabled() {
            return Err(super::keyring::KeyringError::NotEnabled);
        }
        let reply = self.apply_keyring(&KeyringOp::List);
        let mut summary = KeyringSummary { num_nodes: 1, ..KeyringSummary::default() };
        for k in reply.keys {
            summary.keys.insert(k, 1);
        }
        if let Some(p) = reply.primary {
            summary.primary_keys.insert(p, 1);
        }
        Ok(summary)
    }

    /// Answers a keyring operation another member sent, sealed with a key we hold (the
    /// [`Service::Keyring`] RPC service): our sealed reply, or why it was refused.
    pub fn handle_keyring(&self, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let op = self
            .engine
            .lock()
            .open_stream(sealed)
            .map_err(|e| e.to_string())
            .and_then(|plain| postcard::from_bytes::<KeyringOp>(&plain).map_err(|e| e.to_string()));
        let op = match op {
            Ok(op) => op,
            Err(e) => {
                tracing::warn!(error = %e, "rejected a keyring operation");
                return Err(e);
            }
        };
        tracing::info!(?op, "keyring operation from the pool");
        let reply = self.apply_keyring(&op);
        let engine = self.engine.lock();
        postcard::to_stdvec(&reply).map(|b| engine.seal_stream(&b)).map_err(|e| e.to_string())
    }

    /// Runs the receive loop, timers, push/pull and reaping until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        self.with_engine(|e, now, out| e.start(now, out));
        let Some(timers_rx) = self.timers_rx.lock().take() else { return };
        tokio::join!(
            self.clone().receive_loop(shutdown.clone()),
            self.clone().timer_loop(timers_rx, shutdown.clone()),
            self.clone().push_pull_loop(shutdown.clone()),
            self.clone().reap_loop(shutdown),
        );
    }

    async fn receive_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, from) = tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // ICMP errors surface here on some platforms; keep serving.
                        tracing::trace!(error = %e, "gossip recv");
                        continue;
                    }
                },
                _ = shutdown.cancelled() => return,
            };
            let r = self.with_engine(|e, now, out| e.handle_packet(now, &buf[..n], out));
            if let Err(e) = r {
                tracing::debug!(%from, error = %e, "dropped a gossip packet");
            }
        }
    }

    async fn timer_loop(self: Arc<Self>, mut rx: TimerQueue, shutdown: CancellationToken) {
        let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
        let mut pending: HashMap<u64, Timer<NodeIdentity>> = HashMap::new();
        let mut seq = 0u64;
        loop {
            let next = heap.peek().map(|Reverse((at, _))| *at);
            tokio::select! {
                t = rx.recv() => match t {
                    Some((at, timer)) => {
                        seq += 1;
                        heap.push(Reverse((at, seq)));
                        pending.insert(seq, timer);
                    }
                    None => return,
                },
                _ = async { match next { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                    let now = Instant::now();
                    while let Some(Reverse((at, id))) = heap.peek().copied() {
                        if at > now {
                            break;
                        }
                        heap.pop();
                        if let Some(timer) = pending.remove(&id) {
                            self.with_engine(|e, now, out| e.handle_timer(now, timer, out));
                        }
                    }
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn push_pull_loop(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            // memberlist scales the interval with the pool so the total rate stays bounded.
            let n = self.engine.lock().alive_count();
            tokio::select! {
                _ = tokio::time::sleep(self.config.push_pull_period(n)) => {}
                _ = shutdown.cancelled() => return,
            }
            let me = self.me().name;
            let peers: Vec<SocketAddr> = self
                .members()
                .into_iter()
                .filter(|m| m.status == MemberStatus::Alive && m.info.name != me)
                .map(|m| m.info.serf_addr)
                .collect();
            let Some(peer) = peers.choose(&mut rand::thread_rng()).copied() else { continue };
            if let Err(e) = self.push_pull(peer).await {
                tracing::debug!(%peer, error = %e, "push/pull failed");
            }
        }
    }

    async fn reap_loop(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REAP_INTERVAL) => {}
                _ = shutdown.cancelled() => return,
            }
            let gone = self.engine.lock().reap(std::time::Instant::now());
            for name in gone {
                tracing::info!(member = %name, "gossip: reaped member");
            }
        }
    }
}
