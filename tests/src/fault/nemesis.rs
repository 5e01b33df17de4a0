//! The seeded nemesis: process faults against a [`ProcCluster`], drawn from a
//! [`rand::rngs::StdRng`] so a schedule's choices replay from its seed (timing, and so what the
//! faults hit, still depends on the machine).

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;

use super::history::History;
use super::workload::read_burst;
use crate::process::ProcCluster;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 a random server, restart it after `kill_downtime`.
    KillRandom,
    /// kill -9 the leader, restart it after `kill_downtime`.
    KillLeader,
    /// kill -9 the leader and restart it within `fast_restart` (≤ 0.5 s), before a successor
    /// is elected.
    FastLeaderRestart,
    /// SIGSTOP a random server for `pause`, then SIGCONT.
    PauseRandom,
    /// SIGSTOP the leader for `pause`, then SIGCONT.
    PauseLeader,
    /// kill -9 two of three servers (quorum lost), restart both after `kill_downtime`.
    KillTwo,
    /// SIGTERM each server in turn, restarting it before the next.
    RollingTerm,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 7] = [
        Fault::KillRandom,
        Fault::KillLeader,
        Fault::FastLeaderRestart,
        Fault::PauseRandom,
        Fault::PauseLeader,
        Fault::KillTwo,
        Fault::RollingTerm,
    ];
}

/// What the nemesis does and how fast.
#[derive(Debug, Clone)]
pub struct NemesisConfig {
    /// Faults to draw from (uniformly).
    pub faults: Vec<Fault>,
    /// Quiet time between faults (ms, inclusive range).
    pub gap_ms: (u64, u64),
    /// How long a killed server stays down.
    pub kill_downtime_ms: (u64, u64),
    /// How soon a fast-restarted leader comes back.
    pub fast_restart_ms: (u64, u64),
    /// How long a paused server stays stopped.
    pub pause_ms: (u64, u64),
    /// After each restart, send default-mode reads to every server for this long (recorded).
    pub read_burst: Option<Duration>,
}

impl NemesisConfig {
    /// Every fault, at the default pace.
    pub fn mixed() -> Self {
        NemesisConfig {
            faults: Fault::ALL.to_vec(),
            gap_ms: (500, 2000),
            kill_downtime_ms: (200, 3000),
            fast_restart_ms: (50, 500),
            pause_ms: (1000, 4000),
            read_burst: Some(Duration::from_millis(1500)),
        }
    }
}

/// Runs faults against a cluster until a deadline.
pub struct Nemesis<'a> {
    cluster: &'a mut ProcCluster,
    cfg: NemesisConfig,
    rng: StdRng,
    start: Instant,
    history: History,
    keys: usize,
    burst_client: usize,
    bursts: Vec<JoinHandle<()>>,
    /// What was done, one line per step with its time since the schedule started.
    pub log: Vec<String>,
    /// Faults injected.
    pub faults: usize,
}

impl<'a> Nemesis<'a> {
    /// A nemesis seeded with `seed`; read bursts are recorded into `history` as clients
    /// `burst_client..burst_client + servers`, over `keys` keys.
    pub fn new(
        cluster: &'a mut ProcCluster,
        cfg: NemesisConfig,
        seed: u64,
        history: History,
        keys: usize,
        burst_client: usize,
    ) -> Self {
        Nemesis {
            cluster,
            cfg,
            rng: StdRng::seed_from_u64(seed),
            start: Instant::now(),
            history,
            keys,
            burst_client,
            bursts: Vec::new(),
            log: Vec::new(),
            faults: 0,
        }
    }

    fn note(&mut self, what: String) {
        self.log.push(format!("t={:>6}ms {what}", self.start.elapsed().as_millis()));
    }

    fn draw(&mut self, (lo, hi): (u64, u64)) -> Duration {
        Duration::from_millis(self.rng.gen_range(lo..=hi))
    }

    /// Injects faults until `until`, then returns (the cluster may be left damaged: see
    /// [`Nemesis::heal`]).
    pub async fn run(&mut self, until: Instant) {
        loop {
            let gap = self.draw(self.cfg.gap_ms);
            if Instant::now() + gap >= until {
                break;
            }
            tokio::time::sleep(gap).await;
            let fault = *self.cfg.faults.choose(&mut self.rng).expect("at least one fault");
            self.inject(fault).await;
        }
    }

    /// Continues every stopped server, restarts every dead one, waits for bursts to end.
    pub async fn heal(&mut self) {
        for i in 0..self.cluster.len() {
            if self.cluster.is_stopped(i) {
                self.cluster.signal(i, "CONT");
                self.note(format!("heal: CONT s{i}"));
            }
            if self.cluster.pid(i).is_some() && !self.cluster.is_running(i) {
                // Exited on its own: not a linearizability violation, but worth seeing.
                self.note(format!("heal: s{i} had exited by itself"));
                self.cluster.kill9(i);
            }
            if self.cluster.pid(i).is_none() {
                self.cluster.restart(i);
                self.note(format!("heal: restart s{i}"));
            }
        }
        for b in self.bursts.drain(..) {
            let _ = b.await;
        }
    }

    /// The leader, polled for up to 5 s (an election may be under way).
    async fn leader(&mut self) -> Option<usize> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(l) = self.cluster.leader_index().await {
                if !self.cluster.is_stopped(l) && self.cluster.pid(l).is_some() {
                    return Some(l);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    fn restart(&mut self, i: usize) {
        self.cluster.restart(i);
        self.note(format!("restart s{i}"));
        if let Some(dur) = self.cfg.read_burst {
            let burst = read_burst(self.cluster.view(), self.history.clone(), self.keys, self.burst_client, dur);
            self.bursts.push(burst);
        }
    }

    async fn kill_and_restart(&mut self, victims: &[usize], downtime: Duration, why: &str) {
        for &i in victims {
            self.cluster.kill9(i);
            self.note(format!("kill -9 s{i} ({why})"));
        }
        tokio::time::sleep(downtime).await;
        for &i in victims {
            self.restart(i);
        }
    }

    /// Injects one fault.
    pub async fn inject(&mut self, fault: Fault) {
        let n = self.cluster.len();
        match fault {
            Fault::KillRandom => {
                let i = self.rng.gen_range(0..n);
                let down = self.draw(self.cfg.kill_downtime_ms);
                self.kill_and_restart(&[i], down, "random").await;
            }
            Fault::KillLeader | Fault::FastLeaderRestart => {
                let down = if fault == Fault::KillLeader {
                    self.draw(self.cfg.kill_downtime_ms)
                } else {
                    self.draw(self.cfg.fast_restart_ms)
                };
                let Some(l) = self.leader().await else {
                    self.note(format!("{fault:?}: no leader, skipped"));
                    return;
                };
                let why = if fault == Fault::KillLeader { "leader" } else { "leader, fast restart" };
                self.kill_and_restart(&[l], down, why).await;
            }
            Fault::PauseRandom | Fault::PauseLeader => {
                let pause = self.draw(self.cfg.pause_ms);
                let target =
                    if fault == Fault::PauseLeader { self.leader().await } else { Some(self.rng.gen_range(0..n)) };
                let Some(i) = target.filter(|&i| self.cluster.pid(i).is_some()) else {
                    self.note(format!("{fault:?}: no target, skipped"));
                    return;
                };
                self.cluster.signal(i, "STOP");
                self.note(format!("SIGSTOP s{i} for {}ms", pause.as_millis()));
                tokio::time::sleep(pause).await;
                self.cluster.signal(i, "CONT");
                self.note(format!("SIGCONT s{i}"));
            }
            Fault::KillTwo => {
                let mut all: Vec<usize> = (0..n).collect();
                all.shuffle(&mut self.rng);
                let down = self.draw(self.cfg.kill_downtime_ms);
                self.kill_and_restart(&all[..2.min(n)], down, "two of three").await;
            }
            Fault::RollingTerm => {
                for i in 0..n {
                    let cluster = &mut *self.cluster;
                    let took = tokio::task::block_in_place(|| cluster.terminate(i, Duration::from_secs(15)));
                    match took {
                        Some(d) => self.note(format!("SIGTERM s{i}: exited in {}ms", d.as_millis())),
                        None => self.note(format!("SIGTERM s{i}: did not exit in 15 s, killed")),
                    }
                    self.restart(i);
                    // Wait until it is back in the cluster before taking down the next one.
                    let view = self.cluster.view();
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while Instant::now() < deadline && view.leader_seen_by(i).await.is_none() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        self.faults += 1;
    }
}
