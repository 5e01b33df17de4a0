//! The gossip engine: foca's SWIM plus what Consul's Serf/memberlist add on top, with no I/O.
//!
//! Everything here is driven by calls that carry the current time and return what to send and
//! which timers to arm (an [`Outbox`]). The tokio driver ([`super::driver`]) feeds it real
//! sockets and clocks; the simulation tests feed it an in-memory network and virtual time, so
//! the very code that runs in production is what the 100-member simulations measure.
//!
//! Added around foca:
//! - **Lifeguard local health** (LHA-Probe, the "local health multiplier", LHM): a failed probe
//!   of ours raises it, a timely ack lowers it, and while it is raised our probe interval and
//!   probe timeout stretch by `1 + LHM` (up to `awareness_max_multiplier`). A node that is itself
//!   slow or overloaded thus probes less eagerly and stops accusing healthy peers. foca exposes
//!   no nacks and no "I was suspected" signal, so those two LHM inputs are not used.
//! - **Lifeguard dynamic suspicion** (LHA-Suspicion): a member whose own probes fail
//!   broadcasts who it suspects (foca's suspect updates do not carry their originator); every
//!   member counts the distinct originators and runs each suspicion timer from
//!   `suspicion_max_timeout_mult ×` the minimum down to the minimum as confirmations arrive
//!   (memberlist's formula), so one unhealthy accuser cannot fail a member quickly.
//! - Suspicion timeout scaled to the pool size as memberlist does
//!   (`suspicion_mult × max(1, log10 N) × probe_interval`), retransmissions `retransmit_mult ×
//!   ceil(log10(N + 1))`, both re-applied as the pool grows or shrinks.
//! - Serf's member states: alive / leaving / left / failed, told apart by leave intents
//!   broadcast before a graceful leave (foca itself only knows "down").
//! - The packet envelope: a magic byte, this node's network coordinate (for Vivaldi RTT
//!   estimates), then foca's payload; sealed with the keyring's primary key when encryption is
//!   on. Garbage, truncated, replayed-across-keys or wrongly-keyed packets are dropped and
//!   counted, never acted on.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foca::{Foca, Notification, OwnedNotification, PostcardCodec, Runtime, Timer};
use parking_lot::Mutex;
use rand_foca::{rngs::StdRng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::events::{check_event_size, Broadcast, Handler, Received, UserEvent};
use super::keyring::{Keyring, KeyringError, OVERHEAD};
use super::MemberInfo;

/// First byte of a plaintext packet (a sealed one starts with the seal version, 1).
const PLAIN_MAGIC: u8 = 0xC5;
/// Packet kind: a foca message.
const KIND_FOCA: u8 = 0;
/// Stream kind: a push/pull [`SyncState`].
const KIND_SYNC: u8 = 1;
/// Largest UDP packet we send (memberlist's `UDPBufferSize`).
pub const MAX_PACKET: usize = 1400;
/// Sealed packets remembered for replay detection (minutes of traffic for a busy member).
const REPLAY_WINDOW: usize = 65536;
/// Room kept for the envelope: magic, kind, coordinate, seal.
const ENVELOPE_ROOM: usize = 2 + 1 + 128 + OVERHEAD;

/// Gossip timing and behaviour (memberlist's LAN defaults unless noted).
#[derive(Debug, Clone, PartialEq)]
pub struct GossipConfig {
    /// Time between probes of a random member (1 s).
    pub probe_interval: Duration,
    /// Time to wait for an ack before indirect probes (500 ms).
    pub probe_timeout: Duration,
    /// Time between gossip rounds (200 ms).
    pub gossip_interval: Duration,
    /// Members gossiped to per round (3).
    pub gossip_nodes: usize,
    /// Suspicion timeout multiplier (4).
    pub suspicion_mult: u32,
    /// Upper bound of the Lifeguard-stretched suspicion timeout, as a multiple of it (6).
    pub suspicion_max_timeout_mult: u32,
    /// Retransmission multiplier (4).
    pub retransmit_mult: u32,
    /// Members asked to probe indirectly (3).
    pub indirect_checks: usize,
    /// Full state exchange over TCP with one random member (30 s).
    pub push_pull_interval: Duration,
    /// Lifeguard: largest local health multiplier (8).
    pub awareness_max_multiplier: u32,
    /// How long failed members are retried before being reaped (Consul: 72 h).
    pub reconnect_timeout: Duration,
    /// How long left members are remembered (24 h).
    pub tombstone_timeout: Duration,
    /// Refuse plaintext packets when a key is installed (`encrypt_verify_incoming`).
    pub verify_incoming: bool,
    /// Seal outgoing packets when a key is installed (`encrypt_verify_outgoing`).
    pub verify_outgoing: bool,
    /// The port a join address without one is taken to mean (serf_lan 8301, serf_wan 8302).
    pub default_port: u16,
}

impl GossipConfig {
    /// memberlist's `DefaultLANConfig` with Consul's overrides.
    pub fn lan() -> Self {
        GossipConfig {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            retransmit_mult: 4,
            indirect_checks: 3,
            push_pull_interval: Duration::from_secs(30),
            awareness_max_multiplier: 8,
            reconnect_timeout: Duration::from_secs(72 * 3600),
            tombstone_timeout: Duration::from_secs(24 * 3600),
            verify_incoming: true,
            verify_outgoing: true,
            default_port: 8301,
        }
    }

    /// memberlist's `DefaultWANConfig` (the pool of servers of every datacenter): 5 s probes
    /// with a 3 s timeout, suspicion multiplier 6, gossip to 4 members every 500 ms, push/pull
    /// every 60 s; joins default to the serf_wan port.
    pub fn wan() -> Self {
        GossipConfig {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            gossip_interval: Duration::from_millis(500),
            gossip_nodes: 4,
            suspicion_mult: 6,
            push_pull_interval: Duration::from_secs(60),
            default_port: 8302,
            ..GossipConfig::lan()
        }
    }

    /// What `-dev` uses for the WAN pool: the same quick timing as its LAN pool.
    pub fn dev_wan() -> Self {
        GossipConfig { default_port: 8302, ..GossipConfig::dev() }
    }

    /// What `-dev` uses: 100 ms probes and gossip, suspicion multiplier 3.
    pub fn dev() -> Self {
        GossipConfig {
            probe_interval: Duration::from_millis(100),
            probe_timeout: Duration::from_millis(100),
            gossip_interval: Duration::from_millis(100),
            suspicion_mult: 3,
            ..GossipConfig::lan()
        }
    }

    /// The suspicion timeout for a pool of `n` members, before Lifeguard stretching.
    pub fn suspicion_timeout(&self, n: usize) -> Duration {
        let scale = (n.max(1) as f64).log10().max(1.0);
        self.probe_interval.mul_f64(self.suspicion_mult as f64 * scale)
    }

    /// How many times an update is retransmitted in a pool of `n` members.
    pub fn retransmits(&self, n: usize) -> usize {
        (self.retransmit_mult as usize) * ((n as f64 + 1.0).log10().ceil() as usize).max(1)
    }

    /// The push/pull period in a pool of `n`: memberlist stretches it by `ceil(log2(n / 32))`
    /// beyond 32 members so the pool's total TCP sync rate stays bounded.
    pub fn push_pull_period(&self, n: usize) -> Duration {
        let scale = if n > 32 { ((n as f64 / 32.0).log2().ceil() as u32).max(1) } else { 1 };
        self.push_pull_interval * scale
    }

    /// Independent suspicions Lifeguard waits for before using the shortest suspicion timeout
    /// (memberlist: `suspicion_mult - 2`, or none in pools too small to provide them).
    pub fn expected_confirmations(&self, n: usize) -> usize {
        let k = self.suspicion_mult.saturating_sub(2) as usize;
        if n < k + 2 {
            0
        } else {
            k
        }
    }

    /// Lifeguard's dynamic suspicion timeout (memberlist `remainingSuspicionTime`): the
    /// longest (`suspicion_max_timeout_mult ×` the minimum) with no confirmation, falling
    /// logarithmically to the minimum as `confirmations` independent suspicions arrive.
    pub fn dynamic_suspicion_timeout(&self, n: usize, confirmations: usize) -> Duration {
        let min = self.suspicion_timeout(n);
        let k = self.expected_confirmations(n);
        if k == 0 {
            return min;
        }
        let max = min * self.suspicion_max_timeout_mult.max(1);
        let frac = ((confirmations as f64) + 1.0).ln() / ((k as f64) + 1.0).ln();
        let raw = max.as_secs_f64() - frac * (max.as_secs_f64() - min.as_secs_f64());
        Duration::from_secs_f64(raw.max(min.as_secs_f64()))
    }

    /// The expected upper bound on failure detection in a pool of `n`: the probe periods in
    /// which the expected independent suspicions arrive, the probe timeout and the shortest
    /// suspicion timeout (what the tests and benchmarks compare against).
    pub fn detection_bound(&self, n: usize) -> Duration {
        self.probe_interval * (1 + self.expected_confirmations(n) as u32)
            + self.probe_timeout
            + self.suspicion_timeout(n)
    }

    fn foca(&self, n: usize) -> foca::Config {
        let nz = |v: usize| NonZeroUsize::new(v.max(1)).unwrap_or(NonZeroUsize::MIN);
        let tx = u8::try_from(self.retransmits(n)).unwrap_or(u8::MAX);
        foca::Config {
            probe_period: self.probe_interval,
            probe_rtt: self.probe_timeout,
            num_indirect_probes: nz(self.indirect_checks),
            max_transmissions: NonZeroU8::new(tx.max(1)).unwrap_or(NonZeroU8::MIN),
            suspect_to_down_after: self.suspicion_timeout(n),
            remove_down_after: Some(self.reconnect_timeout),
            max_packet_size: nz(MAX_PACKET - ENVELOPE_ROOM),
            notify_down_members: true,
            periodic_announce: Some(foca::PeriodicParams {
                frequency: self.push_pull_interval,
                num_members: NonZeroUsize::MIN,
            }),
            // Serf's reconnect: keep trying failed members (every 30 s) until reaped.
            periodic_announce_to_down_members: Some(foca::PeriodicParams {
                frequency: Duration::from_secs(30),
                num_members: NonZeroUsize::MIN,
            }),
            periodic_gossip: Some(foca::PeriodicParams {
                frequency: self.gossip_interval,
                num_members: nz(self.gossip_nodes),
            }),
        }
    }
}

/// A member's identity in the pool: its [`MemberInfo`] (name, addresses, role, tags).
/// Two identities with the same node ID (persisted in the data dir) are the same node; the
/// larger `incarnation` (start time, bumped on every rejoin or tag change) wins, so a restarted
/// node replaces its old self. The ID is also what foca compares on every update, so it must be
/// cheap: a `Copy` UUID, not the name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity(pub MemberInfo);

impl foca::Identity for NodeIdentity {
    type Addr = uuid::Uuid;

    fn renew(&self) -> Option<Self> {
        let mut next = self.0.clone();
        next.incarnation += 1;
        Some(NodeIdentity(next))
    }

    fn addr(&self) -> uuid::Uuid {
        self.0.node_id
    }

    fn win_addr_conflict(&self, other: &Self) -> bool {
        (self.0.incarnation, self.0.node_id) > (other.0.incarnation, other.0.node_id)
    }
}

/// Serf's member status, with its wire codes (`/v1/agent/members` `Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberStatus {
    /// Reachable.
    Alive,
    /// Announced it is leaving.
    Leaving,
    /// Left gracefully (or was force-left).
    Left,
    /// Declared dead by the pool.
    Failed,
}

impl MemberStatus {
    /// Serf's numeric status.
    pub fn code(self) -> u8 {
        match self {
            MemberStatus::Alive => 1,
            MemberStatus::Leaving => 2,
            MemberStatus::Left => 3,
            MemberStatus::Failed => 4,
        }
    }

    /// Serf's status name.
    pub fn name(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Left => "left",
            MemberStatus::Failed => "failed",
        }
    }
}

/// A member as this agent sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Identity and tags.
    pub info: MemberInfo,
    /// Status.
    pub status: MemberStatus,
    /// When the status last changed.
    pub since: Instant,
}

/// Receives round-trip times of probes for network coordinates.
pub trait RttObserver: Send + Sync + std::fmt::Debug {
    /// This node's coordinate, encoded, to put in outgoing packets (at most 128 bytes).
    fn local_coordinate(&self) -> Vec<u8>;
    /// A probe of `peer`, whose packets carry `coordinate`, was acked after `rtt`.
    fn observe(&self, peer: &str, coordinate: &[u8], rtt: Duration);
}

/// What the engine wants done: packets to send and timers to arm.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Packets, ready for the wire.
    pub sends: Vec<(SocketAddr, Vec<u8>)>,
    /// Timers: fire `handle_timer` with the value after the delay.
    pub timers: Vec<(Duration, Timer<NodeIdentity>)>,
    raw_sends: Vec<(NodeIdentity, Vec<u8>)>,
    raw_timers: Vec<(Duration, Timer<NodeIdentity>)>,
    notes: Vec<OwnedNotification<NodeIdentity>>,
}

impl Runtime<NodeIdentity> for Outbox {
    fn notify(&mut self, notification: Notification<'_, NodeIdentity>) {
        self.notes.push(notification.to_owned());
    }

    fn send_to(&mut self, to: NodeIdentity, data: &[u8]) {
        self.raw_sends.push((to, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<NodeIdentity>, after: Duration) {
        self.raw_timers.push((after, event));
    }
}

/// Traffic and drop counters (exported as metrics, shown in `/v1/agent/self`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Packets accepted.
    pub packets_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Bytes accepted.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Packets dropped as garbage, truncated or undecodable.
    pub dropped_malformed: u64,
    /// Packets no installed key opened (wrong key, tampering).
    pub dropped_decrypt: u64,
    /// Plaintext packets refused because encryption is required.
    pub dropped_plaintext: u64,
    /// Sealed packets seen before (replays).
    pub dropped_replayed: u64,
}

/// Why a packet was dropped.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// Not one of ours or cut short.
    #[error("malformed gossip packet: {0}")]
    Malformed(String),
    /// No key opened it.
    #[error("gossip packet rejected: {0}")]
    Decrypt(KeyringError),
    /// Plaintext while encryption is required.
    #[error("plaintext gossip packet refused: encryption is required (encrypt_verify_incoming)")]
    Plaintext,
    /// A sealed packet seen before.
    #[error("replayed gossip packet dropped")]
    Replayed,
}

/// The state one member sends another in a push/pull exchange (over TCP, sealed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncState {
    /// foca's membership table (alive, suspect and down identities with incarnations).
    pub members: Vec<foca::Member<NodeIdentity>>,
    /// Recent user events.
    pub events: Vec<UserEvent>,
    /// Leave intents: (name, incarnation, prune).
    pub leaving: Vec<(String, u64, bool)>,
    /// Sender's event Lamport clock.
    pub event_clock: u64,
}

/// Errors of engine operations called by the API.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No member of that name.
    #[error("no member named {0:?}")]
    UnknownMember(String),
    /// foca refused.
    #[error("gossip: {0}")]
    Foca(String),
    /// A bad user event.
    #[error("{0}")]
    BadEvent(String),
    /// A user event over Serf's size limit (name, payload and filters together).
    #[error("{0}")]
    EventTooLarge(String),
}

/// A suspicion timer this node runs (Lifeguard shortens it as confirmations arrive).
#[derive(Debug)]
struct PendingSuspicion {
    start: Instant,
    deadline: Instant,
    timer: Timer<NodeIdentity>,
}

/// The engine. Owns foca; not `Sync` — the driver wraps it in a mutex.
pub struct Engine {
    foca: Foca<NodeIdentity, PostcardCodec, StdRng, Handler>,
    me: NodeIdentity,
    config: GossipConfig,
    keyring: Arc<Keyring>,
    members: BTreeMap<String, Member>,
    received: Arc<Mutex<Received>>,
    lhm: u32,
    probes: HashMap<(String, u8), Instant>,
    sender_coordinate: Option<Vec<u8>>,
    rtt: Option<Arc<dyn RttObserver>>,
    counters: Counters,
    now: Instant,
    sized_for: usize,
    members_tx: Arc<watch::Sender<u64>>,
    events_tx: Arc<watch::Sender<u64>>,
    /// Suspected member → originator → when their suspicion reached us.
    originators: HashMap<String, HashMap<String, Instant>>,
    suspicions: HashMap<String, PendingSuspicion>,
    seen_nonces: std::collections::HashSet<[u8; 12]>,
    nonce_order: std::collections::VecDeque<[u8; 12]>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("me", &self.me.0.name).field("members", &self.members.len()).finish()
    }
}

impl Engine {
    /// A pool of one: this node.
    pub fn new(me: MemberInfo, config: GossipConfig, keyring: Arc<Keyring>, seed: u64, now: Instant) -> Engine {
        let received = Arc::new(Mutex::new(Received::default()));
        let events_tx = Arc::new(watch::channel(0u64).0);
        let handler = Handler { received: received.clone(), events_tx: events_tx.clone() };
        let me = NodeIdentity(me);
        let foca = Foca::with_custom_broadcast(
            me.clone(),
            config.foca(1),
            StdRng::seed_from_u64(seed),
            PostcardCodec,
            handler,
        );
        let mut members = BTreeMap::new();
        members.insert(me.0.name.clone(), Member { info: me.0.clone(), status: MemberStatus::Alive, since: now });
        Engine {
            foca,
            me,
            config,
            keyring,
            members,
            received,
            lhm: 0,
            probes: HashMap::new(),
            sender_coordinate: None,
            rtt: None,
            counters: Counters::default(),
            now,
            sized_for: 1,
            members_tx: Arc::new(watch::channel(0u64).0),
            events_tx,
            originators: HashMap::new(),
            suspicions: HashMap::new(),
            seen_nonces: Default::default(),
            nonce_order: Default::default(),
        }
    }

    /// Independent suspicions of `name` beyond the first, from the recent window.
    fn confirmations(&self, name: &str) -> usize {
        let window = self.config.suspicion_timeout(self.sized_for) * self.config.suspicion_max_timeout_mult.max(1);
        self.originators
            .get(name)
            .map(|o| o.values().filter(|t| self.now.saturating_duration_since(**t) <= window).count())
            .unwrap_or(0)
            .saturating_sub(1)
    }

    /// Records newly heard originators and pulls pending suspicion deadlines in accordingly.
    fn absorb_suspicions(&mut self, out: &mut Outbox) {
        let fresh = std::mem::take(&mut self.received.lock().new_suspects);
        if fresh.is_empty() {
            return;
        }
        let now = self.now;
        for (target, from) in &fresh {
            self.originators.entry(target.clone()).or_default().insert(from.clone(), now);
        }
        for (target, _) in fresh {
            let c = self.confirmations(&target);
            let timeout = self.config.dynamic_suspicion_timeout(self.sized_for, c);
            let Some(p) = self.suspicions.get_mut(&target) else { continue };
            let deadline = p.start + timeout;
            if deadline + Duration::from_millis(1) < p.deadline {
                // The earlier copy fires the verdict; the later one finds it settled (a no-op).
                p.deadline = deadline;
                out.timers.push((deadline.saturating_duration_since(now), p.timer.clone()));
            }
        }
        if self.originators.len() > 4 * self.members.len() + 64 {
            let window = self.config.suspicion_timeout(self.sized_for) * self.config.suspicion_max_timeout_mult.max(1);
            self.originators.retain(|_, o| {
                o.retain(|_, t| now.saturating_duration_since(*t) <= window);
                !o.is_empty()
            });
        }
    }

    /// Feeds probe RTTs to `observer` and carries its coordinate in our packets.
    pub fn set_rtt_observer(&mut self, observer: Arc<dyn RttObserver>) {
        self.rtt = Some(observer);
    }

    /// Bumped whenever a member changes; wakes reconciliation and `members` watchers.
    pub fn member_changes(&self) -> watch::Receiver<u64> {
        self.members_tx.subscribe()
    }

    /// Bumped whenever a user event arrives; wakes `/v1/event/list` blocking queries.
    pub fn event_changes(&self) -> watch::Receiver<u64> {
        self.events_tx.subscribe()
    }

    /// This node's current identity.
    pub fn me(&self) -> &MemberInfo {
        &self.me.0
    }

    /// The configuration.
    pub fn config(&self) -> &GossipConfig {
        &self.config
    }

    /// Lifeguard's local health multiplier (0 = healthy).
    pub fn local_health(&self) -> u32 {
        self.lhm
    }

    /// Traffic counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Every member this node knows, itself included, by name.
    pub fn members(&self) -> Vec<Member> {
        self.members.values().cloned().collect()
    }

    /// What this node believes about `name`.
    pub fn status_of(&self, name: &str) -> Option<MemberStatus> {
        self.members.get(name).map(|m| m.status)
    }

    /// Whether this node holds the user event with this ID.
    pub fn has_event(&self, id: &str) -> bool {
        self.received.lock().recent.iter().any(|e| e.id == id)
    }

    /// Members currently alive (itself included).
    pub fn alive_count(&self) -> usize {
        self.members.values().filter(|m| m.status == MemberStatus::Alive).count()
    }

    /// The recent user events, oldest first.
    pub fn events(&self) -> Vec<UserEvent> {
        self.received.lock().recent.iter().cloned().collect()
    }

    /// A packet arrived.
    pub fn handle_packet(&mut self, now: Instant, data: &[u8], out: &mut Outbox) -> Result<(), PacketError> {
        self.now = now;
        let result = self.open_packet(data).and_then(|plain| {
            let payload = self.parse_envelope(&plain)?;
            self.foca.handle_data(payload, &mut *out).map_err(|e| PacketError::Malformed(e.to_string()))
        });
        match &result {
            Ok(()) => {
                self.counters.packets_in += 1;
                self.counters.bytes_in += data.len() as u64;
            }
            Err(PacketError::Malformed(_)) => self.counters.dropped_malformed += 1,
            Err(PacketError::Decrypt(_)) => self.counters.dropped_decrypt += 1,
            Err(PacketError::Plaintext) => self.counters.dropped_plaintext += 1,
            Err(PacketError::Replayed) => self.counters.dropped_replayed += 1,
        }
        self.flush(out);
        self.sender_coordinate = None;
        result
    }

    fn open_packet(&mut self, data: &[u8]) -> Result<Vec<u8>, PacketError> {
        match data.first() {
            Some(&PLAIN_MAGIC) => {
                if self.keyring.enabled() && self.config.verify_incoming {
                    Err(PacketError::Plaintext)
                } else {
                    Ok(data.to_vec())
                }
            }
            Some(_) if self.keyring.enabled() => {
                let plain = self.keyring.open(data).map_err(PacketError::Decrypt)?;
                // Authentic but already seen: a replay. Every seal draws a fresh random nonce,
                // so a repeated nonce means a repeated packet.
                if let Some(nonce) = Keyring::nonce_of(data) {
                    if !self.seen_nonces.insert(nonce) {
                        return Err(PacketError::Replayed);
                    }
                    self.nonce_order.push_back(nonce);
                    if self.nonce_order.len() > REPLAY_WINDOW {
                        if let Some(old) = self.nonce_order.pop_front() {
                            self.seen_nonces.remove(&old);
                        }
                    }
                }
                if plain.first() != Some(&PLAIN_MAGIC) {
                    return Err(PacketError::Malformed("sealed content is not a gossip packet".into()));
                }
                Ok(plain)
            }
            Some(_) => Err(PacketError::Malformed("encrypted packet but no key installed (set `encrypt`)".into())),
            None => Err(PacketError::Malformed("empty packet".into())),
        }
    }

    fn parse_envelope<'a>(&mut self, plain: &'a [u8]) -> Result<&'a [u8], PacketError> {
        let short = || PacketError::Malformed("truncated envelope".into());
        let kind = *plain.get(1).ok_or_else(short)?;
        if kind != KIND_FOCA {
            return Err(PacketError::Malformed(format!("unknown packet kind {kind}")));
        }
        let clen = *plain.get(2).ok_or_else(short)? as usize;
        let coord = plain.get(3..3 + clen).ok_or_else(short)?;
        self.sender_coordinate = (clen > 0).then(|| coord.to_vec());
        let payload = &plain[3 + clen..];
        if payload.is_empty() {
            return Err(short());
        }
        Ok(payload)
    }

    fn seal(&self, payload: &[u8]) -> Vec<u8> {
        let coord = self.rtt.as_ref().map(|r| r.local_coordinate()).filter(|c| c.len() <= 128).unwrap_or_default();
        let mut plain = Vec::with_capacity(3 + coord.len() + payload.len());
        plain.push(PLAIN_MAGIC);
        plain.push(KIND_FOCA);
        plain.push(coord.len() as u8);
        plain.extend_from_slice(&coord);
        plain.extend_from_slice(payload);
        if self.keyring.enabled() && self.config.verify_outgoing {
            // Sealing only fails without a key, which `enabled` just ruled out.
            self.keyring.seal(&plain).unwrap_or(plain)
        } else {
            plain
        }
    }

    /// Seals a push/pull message like a packet (plaintext when encryption is off).
    pub fn seal_stream(&self, body: &[u8]) -> Vec<u8> {
        let mut plain = Vec::with_capacity(2 + body.len());
        plain.push(PLAIN_MAGIC);
        plain.push(KIND_SYNC);
        plain.extend_from_slice(body);
        if self.keyring.enabled() && self.config.verify_outgoing {
            self.keyring.seal(&plain).unwrap_or(plain)
        } else {
            plain
        }
    }

    /// Opens a push/pull message; counted like packets.
    pub fn open_stream(&mut self, data: &[u8]) -> Result<Vec<u8>, PacketError> {
        let r = self.open_packet(data).and_then(|plain| {
            if plain.get(1) != Some(&KIND_SYNC) {
                return Err(PacketError::Malformed("not a push/pull message".into()));
            }
            Ok(plain[2..].to_vec())
        });
        match &r {
            Ok(_) => {}
            Err(PacketError::Malformed(_)) => self.counters.dropped_malformed += 1,
            Err(PacketError::Decrypt(_)) => self.counters.dropped_decrypt += 1,
            Err(PacketError::Plaintext) => self.counters.dropped_plaintext += 1,
            Err(PacketError::Replayed) => self.counters.dropped_replayed += 1,
        }
        r
    }

    /// A timer armed earlier fired.
    pub fn handle_timer(&mut self, now: Instant, timer: Timer<NodeIdentity>, out: &mut Outbox) {
        self.now = now;
        if let Err(e) = self.foca.handle_timer(timer, &mut *out) {
            tracing::debug!(error = %e, "gossip timer");
        }
        self.flush(out);
    }

    /// Starts the protocol's periodic work (call once, after creation).
    pub fn start(&mut self, now: Instant, out: &mut Outbox) {
        self.now = now;
        // foca arms its periodic timers when it first has a member; gossip() arms nothing
        // and is harmless alone.
        let _ = self.foca.gossip(&mut *out);
        self.flush(out);
    }

    /// Asks `peer` (known by identity, e.g. from a push/pull) to include us.
    pub fn announce(&mut self, now: Instant, peer: MemberInfo, out: &mut Outbox) {
        self.now = now;
        if let Err(e) = self.foca.announce(NodeIdentity(peer), &mut *out) {
            tracing::debug!(error = %e, "gossip announce");
        }
        self.flush(out);
    }

    /// Our state for a push/pull exchange.
    pub fn sync_state(&self) -> SyncState {
        let r = self.received.lock();
        // foca's table holds the others; we add ourselves so the peer learns of us too (at
        // incarnation 0: a peer holding fresher news about us keeps it, and we refute as usual).
        let me = foca::Member::new(self.me.clone(), 0, foca::State::Alive);
        SyncState {
            members: std::iter::once(me).chain(self.foca.iter_membership_state().cloned()).collect(),
            events: r.recent.iter().cloned().collect(),
            leaving: r.leaving.iter().map(|((n, i), p)| (n.clone(), *i, *p)).collect(),
            event_clock: r.clock,
        }
    }

    /// Merges a peer's push/pull state.
    pub fn apply_sync(&mut self, now: Instant, state: SyncState, out: &mut Outbox) {
        self.now = now;
        {
            let mut r = self.received.lock();
            for (n, i, p) in state.leaving {
                let e = r.leaving.entry((n, i)).or_insert(p);
                *e |= p;
            }
            let mut new_events = false;
            for ev in &state.events {
                new_events |= r.accept_event(ev);
            }
            r.clock = r.clock.max(state.event_clock);
            if new_events {
                let n = r.accepted;
                drop(r);
                self.events_tx.send_replace(n);
            }
        }
        let me = self.me.0.name.clone();
        // Our own entry in their table is their view of us: foca refutes stale suspicion itself.
        let members = state.members.into_iter().filter(|m| m.id().0.name != me || m.id() == &self.me);
        if let Err(e) = self.foca.apply_many(members, true, &mut *out) {
            tracing::debug!(error = %e, "applying push/pull state");
        }
        self.flush(out);
    }

    /// Announces a graceful leave and leaves the pool; peers will list us as `left`.
    pub fn leave(&mut self, now: Instant, out: &mut Outbox) {
        self.now = now;
        let b = Broadcast::Leave { name: self.me.0.name.clone(), incarnation: self.me.0.incarnation, prune: false };
        self.broadcast(&b);
        if let Some(m) = self.members.get_mut(&self.me.0.name) {
            m.status = MemberStatus::Leaving;
        }
        // Spread the intent first, then the departure.
        let _ = self.foca.gossip(&mut *out);
        if let Err(e) = self.foca.leave_cluster(&mut *out) {
            tracing::debug!(error = %e, "gossip leave");
        }
        if let Some(m) = self.members.get_mut(&self.me.0.name) {
            m.status = MemberStatus::Left;
        }
        self.flush(out);
    }

    /// Marks a failed member as left (`prune`: forget it at once), everywhere.
    pub fn force_leave(&mut self, now: Instant, name: &str, prune: bool, out: &mut Outbox) -> Result<(), EngineError> {
        self.now = now;
        let m = self.members.get(name).ok_or_else(|| EngineError::UnknownMember(name.to_string()))?;
        let b = Broadcast::Leave { name: name.to_string(), incarnation: m.info.incarnation, prune };
        self.broadcast(&b);
        self.settle_leaves();
        let _ = self.foca.gossip(&mut *out);
        self.flush(out);
        Ok(())
    }

    /// Fires a user event: stamps its Lamport time, records it here and spreads it.
    pub fn fire_event(&mut self, now: Instant, mut ev: UserEvent, out: &mut Outbox) -> Result<UserEvent, EngineError> {
        self.now = now;
        // Checked here, before the clock ticks, so an event that could not travel is refused to
        // its caller instead of being dropped by the broadcast queue afterwards.
        check_event_size(&ev).map_err(EngineError::EventTooLarge)?;
        ev.ltime = self.received.lock().tick();
        let bytes = postcard::to_stdvec(&Broadcast::Event(ev.clone()))
            .map_err(|e| EngineError::BadEvent(format!("encoding the event: {e}")))?;
        self.foca.add_broadcast(&bytes).map_err(|e| EngineError::BadEvent(format!("the event was refused: {e}")))?;
        let _ = self.foca.gossip(&mut *out);
        self.flush(out);
        Ok(ev)
    }

    fn broadcast(&mut self, b: &Broadcast) {
        match postcard::to_stdvec(b) {
            Ok(bytes) => {
                if let Err(e) = self.foca.add_broadcast(&bytes) {
                    tracing::warn!(error = %e, "gossip broadcast refused");
                }
            }
            Err(e) => tracing::warn!(error = %e, "gossip broadcast encoding"),
        }
    }

    /// Forgets failed members past the reconnect timeout and left ones past the tombstone
    /// timeout; returns their names.
    pub fn reap(&mut self, now: Instant) -> Vec<String> {
        self.now = now;
        let (reconnect, tombstone) = (self.config.reconnect_timeout, self.config.tombstone_timeout);
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| match m.status {
                MemberStatus::Failed => now.saturating_duration_since(m.since) >= reconnect,
                MemberStatus::Left => now.saturating_duration_since(m.since) >= tombstone,
                _ => false,
            })
            .filter(|m| m.info.name != self.me.0.name)
            .map(|m| m.info.name.clone())
            .collect();
        for n in &gone {
            self.members.remove(n);
        }
        // Leave intents only matter while their member is listed; forget the rest.
        {
            let members = &self.members;
            self.received.lock().leaving.retain(|(name, _), _| members.contains_key(name));
        }
        if !gone.is_empty() {
            self.members_tx.send_modify(|v| *v += 1);
        }
        gone
    }

    /// Changes this node's tags (role, raft state…): rejoins under a newer incarnation, which
    /// peers see as a rename of the same member.
    pub fn update_identity(&mut self, now: Instant, mut info: MemberInfo, out: &mut Outbox) {
        self.now = now;
        info.incarnation = info.incarnation.max(self.me.0.incarnation + 1);
        let id = NodeIdentity(info);
        if let Err(e) = self.foca.change_identity(id.clone(), &mut *out) {
            tracing::warn!(error = %e, "changing gossip identity");
            return;
        }
        self.me = id;
        self.members.insert(
            self.me.0.name.clone(),
            Member { info: self.me.0.clone(), status: MemberStatus::Alive, since: now },
        );
        self.flush(out);
    }

    fn settle_leaves(&mut self) {
        let leaving = self.received.lock().leaving.clone();
        let mut changed = false;
        for ((name, inc), prune) in leaving {
            let Some(m) = self.members.get_mut(&name) else { continue };
            if m.info.incarnation != inc || name == self.me.0.name {
                continue;
            }
            match m.status {
                MemberStatus::Failed | MemberStatus::Left if prune => {
                    self.members.remove(&name);
                    changed = true;
                }
                MemberStatus::Failed => {
                    m.status = MemberStatus::Left;
                    m.since = self.now;
                    changed = true;
                }
                MemberStatus::Alive => {
                    m.status = MemberStatus::Leaving;
                    changed = true;
                }
                _ => {}
            }
        }
        if changed {
            self.members_tx.send_modify(|v| *v += 1);
        }
    }

    /// Turns foca's raw output into wire packets and scaled timers; applies notifications.
    fn flush(&mut self, out: &mut Outbox) {
        let mut changed = false;
        for note in std::mem::take(&mut out.notes) {
            changed |= self.apply_note(note);
        }
        let leaves_pending = !self.received.lock().leaving.is_empty();
        if leaves_pending {
            self.settle_leaves();
        }
        if changed {
            self.members_tx.send_modify(|v| *v += 1);
            self.resize();
        }
        self.absorb_suspicions(out);
        let stretch = 1 + self.lhm;
        for (after, timer) in std::mem::take(&mut out.raw_timers) {
            let after = match &timer {
                Timer::ProbeRandomMember(_) | Timer::SendIndirectProbe { .. } => after * stretch,
                Timer::ChangeSuspectToDown { member_id, .. } => {
                    // Lifeguard: start from the longest timeout the confirmations so far allow.
                    let name = member_id.0.name.clone();
                    let timeout = self.config.dynamic_suspicion_timeout(self.sized_for, self.confirmations(&name));
                    let pending =
                        PendingSuspicion { start: self.now, deadline: self.now + timeout, timer: timer.clone() };
                    self.suspicions.insert(name, pending);
                    timeout
                }
                _ => after,
            };
            out.timers.push((after, timer));
        }
        for (to, data) in std::mem::take(&mut out.raw_sends) {
            let packet = self.seal(&data);
            self.counters.packets_out += 1;
            self.counters.bytes_out += packet.len() as u64;
            out.sends.push((to.0.serf_addr, packet));
        }
    }

    fn apply_note(&mut self, note: OwnedNotification<NodeIdentity>) -> bool {
        let now = self.now;
        match note {
            OwnedNotification::MemberUp(id) => {
                let leaving = self.received.lock().leaving.contains_key(&(id.0.name.clone(), id.0.incarnation));
                let status = if leaving { MemberStatus::Leaving } else { MemberStatus::Alive };
                tracing::debug!(member = %id.0.name, "gossip: member up");
                self.members.insert(id.0.name.clone(), Member { info: id.0, status, since: now });
                true
            }
            OwnedNotification::MemberDown(id) => {
                let left = self.received.lock().leaving.contains_key(&(id.0.name.clone(), id.0.incarnation));
                match self.members.get_mut(&id.0.name) {
                    Some(m) if m.info.incarnation <= id.0.incarnation => {
                        m.status = if left { MemberStatus::Left } else { MemberStatus::Failed };
                        m.since = now;
                        self.suspicions.remove(&id.0.name);
                        self.originators.remove(&id.0.name);
                        tracing::info!(member = %id.0.name, status = m.status.name(), "gossip: member down");
                        true
                    }
                    _ => false,
                }
            }
            OwnedNotification::Rename(_, new) => {
                self.members
                    .insert(new.0.name.clone(), Member { info: new.0, status: MemberStatus::Alive, since: now });
                true
            }
            OwnedNotification::DataSent(h) => {
                if let foca::Message::Ping(n) = h.message {
                    self.probes.insert((h.dst.0.name.clone(), n), now);
                    if self.probes.len() > 1024 {
                        self.probes.retain(|_, t| now.saturating_duration_since(*t) < Duration::from_secs(60));
                    }
                }
                false
            }
            OwnedNotification::DataReceived(h) => {
                if let foca::Message::Ack(n) = h.message {
                    if let Some(sent) = self.probes.remove(&(h.src.0.name.clone(), n)) {
                        self.lhm = self.lhm.saturating_sub(1);
                        let rtt = now.saturating_duration_since(sent);
                        if let (Some(obs), Some(coord)) = (&self.rtt, &self.sender_coordinate) {
                            obs.observe(&h.src.0.name, coord, rtt);
                        }
                    }
                }
                false
            }
            OwnedNotification::ProbeFailed(_, id) => {
                self.lhm = (self.lhm + 1).min(self.config.awareness_max_multiplier.saturating_sub(1));
                // Tell the pool this is an independent suspicion (for Lifeguard's confirmations).
                let b = Broadcast::Suspect {
                    name: id.0.name.clone(),
                    incarnation: id.0.incarnation,
                    from: self.me.0.name.clone(),
                };
                self.broadcast(&b);
                tracing::debug!(member = %id.0.name, lhm = self.lhm, "gossip: probe failed");
                false
            }
            OwnedNotification::Rejoin(id) => {
                tracing::info!(incarnation = id.0.incarnation, "gossip: rejoined under a new incarnation");
                self.me = id.clone();
                self.members.insert(id.0.name.clone(), Member { info: id.0, status: MemberStatus::Alive, since: now });
                true
            }
            OwnedNotification::Defunct => {
                tracing::warn!("gossip: this node was declared down and cannot rejoin");
                false
            }
            OwnedNotification::Active | OwnedNotification::Idle => false,
        }
    }

    fn resize(&mut self) {
        let n = self.members.values().filter(|m| m.status == MemberStatus::Alive).count().max(1);
        // Re-tune only when the pool changed by a lot: the timeouts move with log10(n).
        if n == self.sized_for || (n > self.sized_for / 2 && n < self.sized_for * 2 && n.abs_diff(self.sized_for) < 8) {
            return;
        }
        self.sized_for = n;
        if let Err(e) = self.foca.set_config(self.config.foca(n)) {
            tracing::debug!(error = %e, "gossip re-tune");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(i: u8) -> MemberInfo {
        MemberInfo {
            node_id: uuid::Uuid::from_u128(i as u128 + 1),
            name: format!("n{i}"),
            datacenter: "dc1".into(),
            rpc_addr: SocketAddr::from(([127, 0, 0, 1], 8300)),
            serf_addr: SocketAddr::from(([127, 0, 0, i], 8301)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8500)),
            server: true,
            bootstrap_expect: 0,
            raft_initialized: false,
            incarnation: 1,
            wan_addr: None,
        }
    }

    #[test]
    fn dynamic_suspicion_shrinks_with_confirmations_like_memberlist() {
        let c = GossipConfig::lan();
        let s = |n, k| c.dynamic_suspicion_timeout(n, k).as_secs_f64();
        assert_eq!(c.suspicion_timeout(100), Duration::from_secs(8));
        assert!((s(100, 0) - 48.0).abs() < 1e-9);
        assert!((s(100, 1) - (48.0 - 40.0 * 2f64.ln() / 3f64.ln())).abs() < 1e-9);
        assert!((s(100, 2) - 8.0).abs() < 1e-9);
        assert!((s(100, 9) - 8.0).abs() < 1e-9, "never below the minimum");
        // Too few members to expect confirmations: the minimum at once.
        assert_eq!(c.dynamic_suspicion_timeout(3, 0), c.suspicion_timeout(3));
        assert_eq!(c.detection_bound(100), Duration::from_millis(3000 + 500 + 8000));
    }

    #[test]
    fn rolling_encryption_follows_the_verify_flags() {
        let now = Instant::now();
        let key = super::super::keyring::generate_key();
        let keyed = || Arc::new(Keyring::new(std::slice::from_ref(&key), None, "").expect("test setup"));
        let plain_ring = Arc::new(Keyring::new(&[], None, "").expect("test setup"));
        let cfg = |incoming, outgoing| GossipConfig {
            verify_incoming: incoming,
            verify_outgoing: outgoing,
            ..GossipConfig::lan()
        };
        // Step 1 of a rollout: keys installed, neither verified: plaintext out, both accepted in.
        let mut step1 = Engine::new(info(1), cfg(false, false), keyed(), 1, now);
        let old = Engine::new(info(2), GossipConfig::lan(), plain_ring, 2, now);
        let from_old = old.seal_stream(b"hi");
        assert_eq!(step1.open_stream(&from_old).expect("plaintext accepted"), b"hi");
        let from_step1 = step1.seal_stream(b"hi");
        assert_eq!(from_step1, from_old, "nothing is encrypted yet");
        // Step 2: outgoing encrypted; incoming still lenient.
        let mut step2 = Engine::new(info(3), cfg(false, true), keyed(), 3, now);
        let sealed = step2.seal_stream(b"hi");
        assert_ne!(sealed, from_old);
        assert_eq!(step1.open_stream(&sealed).expect("sealed accepted"), b"hi");
        assert_eq!(step2.open_stream(&from_old).expect("plaintext still accepted"), b"hi");
        // Step 3: both verified: plaintext refused and counted.
        let mut step3 = Engine::new(info(4), GossipConfig::lan(), keyed(), 4, now);
        assert!(matches!(step3.open_stream(&from_old), Err(PacketError::Plaintext)));
        assert_eq!(step3.counters().dropped_plaintext, 1);
        assert_eq!(step3.open_stream(&sealed).expect("sealed"), b"hi");
        // The same sealed message twice is a replay.
        assert!(matches!(step3.open_stream(&sealed), Err(PacketError::Replayed)));
        assert_eq!(step3.counters().dropped_replayed, 1);
    }

    #[test]
    fn failed_members_are_reaped_after_the_reconnect_timeout_left_ones_after_the_tombstone() {
        let t0 = Instant::now();
        let ring = Arc::new(Keyring::new(&[], None, "").expect("test setup"));
        let cfg = GossipConfig {
            reconnect_timeout: Duration::from_secs(100),
            tombstone_timeout: Duration::from_secs(10),
            ..GossipConfig::lan()
        };
        let mut e = Engine::new(info(1), cfg, ring, 1, t0);
        for (i, status) in [(2, MemberStatus::Failed), (3, MemberStatus::Left), (4, MemberStatus::Alive)] {
            e.members.insert(format!("n{i}"), Member { info: info(i), status, since: t0 });
        }
        e.received.lock().leaving.insert(("n3".into(), 1), false);
        assert!(e.reap(t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(e.reap(t0 + Duration::from_secs(11)), vec!["n3".to_string()]);
        assert!(e.received.lock().leaving.is_empty(), "its leave intent goes with it");
        assert_eq!(e.reap(t0 + Duration::from_secs(101)), vec!["n2".to_string()]);
        assert_eq!(e.status_of("n4"), Some(MemberStatus::Alive), "alive members stay");
        assert_eq!(e.status_of("n1"), Some(MemberStatus::Alive), "and so does this node");
    }

    #[test]
    fn push_pull_makes_two_engines_see_each_other() {
        let now = Instant::now();
        let ring = Arc::new(Keyring::new(&[], None, "").expect("test setup"));
        let mut a = Engine::new(info(1), GossipConfig::lan(), ring.clone(), 1, now);
        let mut b = Engine::new(info(2), GossipConfig::lan(), ring, 2, now);
        let mut out = Outbox::default();
        let sa = a.sync_state();
        b.apply_sync(now, sa, &mut out);
        let sb = b.sync_state();
        a.apply_sync(now, sb, &mut out);
        assert_eq!(a.alive_count(), 2, "{:?}", a.members());
        assert_eq!(b.alive_count(), 2, "{:?}", b.members());
    }
}
