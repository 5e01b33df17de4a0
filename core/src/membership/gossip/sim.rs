//! A deterministic simulation of a gossip pool: many [`Engine`]s (the production code) over an
//! in-memory network with virtual time, seeded randomness, per-member latency, packet loss and
//! crashes. Used by the tests (failure detection, false positives, convergence) and by the
//! gossip benchmark (`consul-rs-gossip-bench`), so both measure exactly what agents run.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foca::Timer;
use rand::{Rng, SeedableRng};

use super::engine::{Engine, GossipConfig, MemberStatus, NodeIdentity, Outbox};
use super::events::UserEvent;
use super::keyring::Keyring;
use super::MemberInfo;

/// Network and pool settings of a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Members.
    pub members: usize,
    /// Gossip timing (every member the same).
    pub gossip: GossipConfig,
    /// One-way latency of every packet.
    pub latency: Duration,
    /// Uniform extra latency in `[0, jitter)`.
    pub jitter: Duration,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Seed of every random choice (the engines' and the network's).
    pub seed: u64,
}

impl SimConfig {
    /// `members` on a LAN: 1 ms ± 1 ms one way, no loss, memberlist's LAN timing.
    pub fn lan(members: usize, seed: u64) -> Self {
        SimConfig {
            members,
            gossip: GossipConfig::lan(),
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(1),
            loss: 0.0,
            seed,
        }
    }
}

enum Event {
    Deliver {
        to: usize,
        data: Vec<u8>,
    },
    Timer {
        node: usize,
        timer: Timer<NodeIdentity>,
    },
    /// The driver's periodic TCP push/pull with a random alive member.
    PushPull {
        node: usize,
    },
}

/// A running simulation.
pub struct Sim {
    engines: Vec<Engine>,
    names: Vec<String>,
    by_addr: HashMap<SocketAddr, usize>,
    crashed: Vec<bool>,
    /// Extra one-way delay of packets to and from each member (a slow member).
    slow: Vec<Duration>,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    events: HashMap<u64, Event>,
    seq: u64,
    now: Duration,
    base: Instant,
    config: SimConfig,
    rng: rand::rngs::StdRng,
    bytes_sent: u64,
    packets_sent: u64,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").field("members", &self.engines.len()).field("now", &self.now).finish()
    }
}

fn member(i: usize) -> MemberInfo {
    let ip = IpAddr::V4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8));
    MemberInfo {
        node_id: uuid::Uuid::from_u128(i as u128 + 1),
        name: format!("node-{i}"),
        datacenter: "dc1".into(),
        rpc_addr: SocketAddr::new(ip, 8300),
        serf_addr: SocketAddr::new(ip, 8301),
        http_addr: SocketAddr::new(ip, 8500),
        server: false,
        bootstrap_expect: 0,
        raft_initialized: false,
        incarnation: 1,
        wan_addr: None,
    }
}

impl Sim {
    /// Creates the members; each joins member 0 with a push/pull, as `retry_join` would.
    pub fn new(config: SimConfig) -> Sim {
        let base = Instant::now();
        let ring = Arc::new(Keyring::new(&[], None, "").unwrap_or_else(|_| unreachable!("an empty keyring is valid")));
        let mut sim = Sim {
            engines: Vec::new(),
            names: Vec::new(),
            by_addr: HashMap::new(),
            crashed: vec![false; config.members],
            slow: vec![Duration::ZERO; config.members],
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            now: Duration::ZERO,
            base,
            rng: rand::rngs::StdRng::seed_from_u64(config.seed),
            bytes_sent: 0,
            packets_sent: 0,
            config,
        };
        for i in 0..sim.config.members {
            let info = member(i);
            sim.by_addr.insert(info.serf_addr, i);
            sim.names.push(info.name.clone());
            let seed = sim.config.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
            let mut e = Engine::new(info, sim.config.gossip.clone(), ring.clone(), seed, base);
            let mut out = Outbox::default();
            e.start(base, &mut out);
            sim.engines.push(e);
            sim.absorb(i, out);
        }
        for i in 1..sim.config.members {
            sim.push_pull(i, 0);
        }
        // Periodic push/pull, at a random phase per member like the driver's.
        for i in 0..sim.config.members {
            let phase = sim.config.gossip.push_pull_interval.mul_f64(sim.rng.gen::<f64>());
            sim.push(phase, Event::PushPull { node: i });
        }
        sim
    }

    /// A full-state exchange between two members (what a join or periodic push/pull does over TCP).
    pub fn push_pull(&mut self, a: usize, b: usize) {
        let now = self.instant();
        let sa = self.engines[a].sync_state();
        let mut out = Outbox::default();
        self.engines[b].apply_sync(now, sa, &mut out);
        self.absorb(b, out);
        let sb = self.engines[b].sync_state();
        let mut out = Outbox::default();
        self.engines[a].apply_sync(now, sb, &mut out);
        let peer = self.engines[b].me().clone();
        self.engines[a].announce(now, peer, &mut out);
        self.absorb(a, out);
    }

    fn instant(&self) -> Instant {
        self.base + self.now
    }

    fn push(&mut self, at: Duration, ev: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn absorb(&mut self, from: usize, out: Outbox) {
        for (after, timer) in out.timers {
            self.push(self.now + after, Event::Timer { node: from, timer });
        }
        for (addr, data) in out.sends {
            self.bytes_sent += data.len() as u64;
            self.packets_sent += 1;
            let Some(&to) = self.by_addr.get(&addr) else { continue };
            if self.config.loss > 0.0 && self.rng.gen_bool(self.config.loss.min(1.0)) {
                continue;
            }
            let jitter = if self.config.jitter.is_zero() {
                Duration::ZERO
            } else {
                self.config.jitter.mul_f64(self.rng.gen::<f64>())
            };
            let delay = self.config.latency + jitter + self.slow[from] + self.slow[to];
            self.push(self.now + delay, Event::Deliver { to, data });
        }
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Duration) {
        while let Some(Reverse((at, id))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            let Some(ev) = self.events.remove(&id) else { continue };
            let now = self.instant();
            match ev {
                Event::Deliver { to, data } => {
                    if self.crashed[to] {
                        continue;
                    }
                    let mut out = Outbox::default();
                    // Dropped packets are counted by the engine; nothing else to do here.
                    let _ = self.engines[to].handle_packet(now, &data, &mut out);
                    self.absorb(to, out);
                }
                Event::PushPull { node } => {
                    let interval = self.config.gossip.push_pull_period(self.engines[node].alive_count());
                    self.push(self.now + interval, Event::PushPull { node });
                    if self.crashed[node] {
                        continue;
                    }
                    let me = self.names[node].clone();
                    let peers: Vec<usize> = self.engines[node]
                        .members()
                        .into_iter()
                        .filter(|m| m.status == MemberStatus::Alive && m.info.name != me)
                        .filter_map(|m| self.by_addr.get(&m.info.serf_addr).copied())
                        .collect();
                    if peers.is_empty() {
                        continue;
                    }
                    let peer = peers[self.rng.gen_range(0..peers.len())];
                    // A TCP exchange with a dead or unreachable peer fails; nothing is learned.
                    if !self.crashed[peer] {
                        self.push_pull(node, peer);
                    }
                }
                Event::Timer { node, timer } => {
                    if self.crashed[node] {
                        continue;
                    }
                    let mut out = Outbox::default();
                    self.engines[node].handle_timer(now, timer, &mut out);
                    self.absorb(node, out);
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` more virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Runs in steps of `step` until `done` holds or `limit` passes; the time it took, if it did.
    pub fn run_until_true(
        &mut self,
        step: Duration,
        limit: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now - start < limit {
            if done(self) {
                return Some(self.now - start);
            }
            self.run_for(step);
        }
        done(self).then(|| self.now - start)
    }

    /// Current virtual time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Member `i`'s name.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Member `i`'s engine.
    pub fn engine(&self, i: usize) -> &Engine {
        &self.engines[i]
    }

    /// Stops member `i` dead: it neither sends nor receives any more.
    pub fn crash(&mut self, i: usize) {
        self.crashed[i] = true;
    }

    /// Delays every packet to and from member `i` by `extra` (each way).
    pub fn make_slow(&mut self, i: usize, extra: Duration) {
        self.slow[i] = extra;
    }

    /// Members (not crashed) that list `name` with `status`.
    pub fn count_seeing(&self, name: &str, status: MemberStatus) -> usize {
        self.engines.iter().enumerate().filter(|(i, e)| !self.crashed[*i] && e.status_of(name) == Some(status)).count()
    }

    /// Members (not crashed) other than `i` itself.
    pub fn live_others(&self, i: usize) -> usize {
        self.crashed.iter().enumerate().filter(|(j, c)| *j != i && !**c).count()
    }

    /// Whether every live member knows every other live member as alive.
    pub fn converged(&self) -> bool {
        let live = self.crashed.iter().filter(|c| !**c).count();
        self.engines.iter().enumerate().filter(|(i, _)| !self.crashed[*i]).all(|(_, e)| e.alive_count() == live)
    }

    /// Fires a user event at member `i`; returns its ID.
    pub fn fire_event(&mut self, i: usize, name: &str) -> String {
        let id = uuid::Uuid::from_u128(self.rng.gen()).to_string();
        let ev = UserEvent {
            id: id.clone(),
            name: name.into(),
            payload: vec![],
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            version: 1,
            ltime: 0,
        };
        let now = self.instant();
        let mut out = Outbox::default();
        if let Err(e) = self.engines[i].fire_event(now, ev, &mut out) {
            tracing::warn!(error = %e, "sim: event refused");
        }
        self.absorb(i, out);
        id
    }

    /// Live members holding the event `id`.
    pub fn count_with_event(&self, id: &str) -> usize {
        self.engines.iter().enumerate().filter(|(i, e)| !self.crashed[*i] && e.has_event(id)).count()
    }

    /// Bytes and packets sent so far by all members.
    pub fn traffic(&self) -> (u64, u64) {
        (self.bytes_sent, self.packets_sent)
    }
}

/// Rounds the epidemic (push) model predicts for one update to reach all `n` members when each
/// infected member tells `fanout` random others per round: `log_{fanout+1}(n) + ln(n)/fanout`
/// (Pittel's estimate, the model memberlist's docs and Serf's convergence simulator use).
pub fn epidemic_rounds(n: usize, fanout: usize) -> f64 {
    let (n, f) = (n.max(2) as f64, fanout.max(1) as f64);
    n.ln() / (f + 1.0).ln() + n.ln() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn converge(sim: &mut Sim) {
        let t = sim.run_until_true(Duration::from_millis(100), Duration::from_secs(120), Sim::converged);
        let counts: Vec<(usize, Vec<(String, MemberStatus)>)> = (0..sim.engines.len())
            .filter(|i| sim.engine(*i).alive_count() < sim.engines.len())
            .map(|i| {
                let odd = sim.engine(i).members().into_iter().filter(|m| m.status != MemberStatus::Alive);
                (i, odd.map(|m| (m.info.name, m.status)).collect())
            })
            .collect();
        assert!(t.is_some(), "the pool did not converge by {:?}: {counts:?}", sim.now());
    }

    #[test]
    fn a_killed_member_is_declared_failed_by_all_within_the_bound() {
        let n = 100;
        let mut sim = Sim::new(SimConfig::lan(n, 7));
        converge(&mut sim);
        let victim = 42;
        sim.crash(victim);
        let name = sim.name(victim).to_string();
        let cfg = GossipConfig::lan();
        // Detection (probe period + timeout + suspicion) plus spreading the verdict.
        let bound = cfg.detection_bound(n) + cfg.probe_interval * 4;
        let first = sim
            .run_until_true(Duration::from_millis(50), bound * 2, |s| s.count_seeing(&name, MemberStatus::Failed) > 0)
            .expect("someone declares the crashed member failed");
        let rest = sim
            .run_until_true(Duration::from_millis(50), bound * 2, |s| {
                s.count_seeing(&name, MemberStatus::Failed) == s.live_others(victim)
            })
            .expect("every member declares the crashed one failed");
        let took = first + rest;
        eprintln!("first failure verdict after {first:?}, everyone after {took:?} (bound {bound:?})");
        assert!(took <= bound, "took {took:?}, bound {bound:?}");
        // And nobody else was declared failed along the way.
        for i in (0..n).filter(|i| *i != victim) {
            assert_eq!(sim.count_seeing(sim.name(i), MemberStatus::Failed), 0, "false positive on {i}");
        }
    }

    #[test]
    fn a_slow_member_is_not_declared_failed() {
        let n = 100;
        let mut sim = Sim::new(SimConfig::lan(n, 11));
        converge(&mut sim);
        let slow = 17;
        // Round trips of 900 ms: every direct probe of it times out (500 ms), but it is alive
        // and refutes suspicion in time.
        sim.make_slow(slow, Duration::from_millis(450));
        let name = sim.name(slow).to_string();
        let mut ever_failed = false;
        for _ in 0..600 {
            sim.run_for(Duration::from_millis(100));
            ever_failed |= sim.count_seeing(&name, MemberStatus::Failed) > 0;
        }
        assert!(!ever_failed, "a slow but alive member was declared failed");
        let views: Vec<Option<MemberStatus>> = (0..n).map(|i| sim.engine(i).status_of(&name)).collect();
        assert_eq!(sim.count_seeing(&name, MemberStatus::Alive), n, "{views:?}");
    }

    #[test]
    fn events_spread_to_everyone_about_as_fast_as_the_epidemic_model_says() {
        let n = 100;
        let mut sim = Sim::new(SimConfig::lan(n, 3));
        converge(&mut sim);
        let id = sim.fire_event(0, "deploy");
        let cfg = GossipConfig::lan();
        let took = sim
            .run_until_true(Duration::from_millis(10), Duration::from_secs(30), |s| s.count_with_event(&id) == n)
            .expect("the event reaches every member");
        let model = cfg.gossip_interval.mul_f64(epidemic_rounds(n, cfg.gossip_nodes));
        // Piggybacking on probes only helps; allow 3× for the model's idealisations.
        assert!(took <= model * 3, "took {took:?}, model {model:?}");
        // Exactly once: a second copy is not recorded again.
        for i in 0..n {
            assert_eq!(sim.engine(i).events().iter().filter(|e| e.id == id).count(), 1);
        }
    }
}
