//! Autopilot: how healthy each server is as the leader sees it, and the Raft membership
//! changes the leader makes from that (Consul's `raft-autopilot`).
//!
//! - A server is *healthy* when gossip reports it alive, it heard from the leader recently
//!   (`last_contact_threshold`), its log holds the leader's term and trails the leader's by at
//!   most `max_trailing_logs`. The leader itself is healthy while gossip reports it alive.
//! - A server that joined as a non-voter is promoted once it has been healthy without a break
//!   for `server_stabilization_time`.
//! - With `cleanup_dead_servers`, servers gossip reports failed are removed from the Raft
//!   configuration — non-voters always, voters only while fewer than half of the voters go at
//!   once, the healthy voters left keep a majority, and at least `min_quorum` voters remain.
//!
//! [`Tracker::assess`] and [`plan`] are pure: facts and the time in, health and actions out.
//! The `cluster` module gathers the facts on the leader and carries out the plan.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::replication::raft::NodeId;
use crate::state::autopilot::AutopilotConfig;

/// A server's gossip status, as Consul spells it in `SerfStatus`/`NodeStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SerfStatus {
    /// Reachable.
    Alive,
    /// Leaving gracefully.
    Leaving,
    /// Left gracefully.
    Left,
    /// Unreachable: failed the failure detector.
    Failed,
    /// Unknown to gossip.
    None,
}

impl SerfStatus {
    /// Consul's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SerfStatus::Alive => "alive",
            SerfStatus::Leaving => "leaving",
            SerfStatus::Left => "left",
            SerfStatus::Failed => "failed",
            SerfStatus::None => "none",
        }
    }
}

/// What the leader knows about one server of the Raft configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerFacts {
    /// Raft id.
    pub id: NodeId,
    /// Node UUID (Consul's raft server ID).
    pub node_id: String,
    /// Node name.
    pub name: String,
    /// Server RPC address.
    pub address: String,
    /// Gossip status.
    pub serf: SerfStatus,
    /// Whether it votes.
    pub voter: bool,
    /// Whether it is the leader.
    pub leader: bool,
    /// Time since it last acknowledged the leader (`None`: never since this leader's term).
    pub last_contact: Option<Duration>,
    /// Last log index known to be on it.
    pub last_index: u64,
    /// Term of that entry.
    pub last_term: u64,
    /// Gossip metadata shown in `/state` (`Meta`).
    pub meta: BTreeMap<String, String>,
}

/// Autopilot settings, from the replicated [`AutopilotConfig`] plus this cluster's timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Remove failed servers.
    pub cleanup_dead_servers: bool,
    /// Longest time without leader contact for a healthy server. Never below two heartbeat
    /// intervals: a follower hears from an idle leader only once per heartbeat interval, so a
    /// tighter threshold would make healthy servers flap.
    pub last_contact_threshold: Duration,
    /// Most entries a healthy server may trail the leader by.
    pub max_trailing_logs: u64,
    /// Fewest voters dead-server cleanup leaves.
    pub min_quorum: usize,
    /// How long a non-voter must be healthy before promotion.
    pub stabilization: Duration,
}

impl Settings {
    /// Settings from the replicated configuration; `heartbeat` is the Raft heartbeat interval.
    pub fn new(config: &AutopilotConfig, heartbeat: Duration) -> Self {
        Settings {
            cleanup_dead_servers: config.cleanup_dead_servers,
            last_contact_threshold: Duration::from_millis(config.last_contact_threshold_ms).max(heartbeat * 2),
            max_trailing_logs: config.max_trailing_logs,
            min_quorum: usize::try_from(config.min_quorum).unwrap_or(usize::MAX),
            stabilization: Duration::from_millis(config.server_stabilization_time_ms),
        }
    }
}

/// One server's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHealth {
    /// The facts it was judged on.
    pub facts: ServerFacts,
    /// Whether it is healthy.
    pub healthy: bool,
    /// Unix ms since which `healthy` has held (`StableSince`).
    pub stable_since_ms: u64,
    /// How long `healthy` has held.
    pub stable_for: Duration,
}

/// The whole cluster's health (`/v1/operator/autopilot/health` and `/state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterHealth {
    /// Every server healthy.
    pub healthy: bool,
    /// Healthy voters that could fail without losing quorum.
    pub failure_tolerance: usize,
    /// Voters gossip reports alive that could fail without losing quorum.
    pub optimistic_failure_tolerance: usize,
    /// Every server of the Raft configuration, by Raft id.
    pub servers: Vec<ServerHealth>,
    /// The leader's Raft id.
    pub leader: NodeId,
}

impl ClusterHealth {
    /// The voters' Raft ids.
    pub fn voters(&self) -> Vec<NodeId> {
        self.servers.iter().filter(|s| s.facts.voter).map(|s| s.facts.id).collect()
    }
}

/// Remembers, per server, since when it has been healthy or unhealthy.
#[derive(Debug, Default)]
pub struct Tracker {
    since: BTreeMap<NodeId, (bool, Instant, u64)>,
}

impl Tracker {
    /// Judges every server in `servers` against the leader's last log entry
    /// (`leader_index`, `leader_term`) at `now` (`now_unix_ms` on the wall clock).
    pub fn assess(
        &mut self,
        servers: Vec<ServerFacts>,
        leader_index: u64,
        leader_term: u64,
        settings: &Settings,
        now: Instant,
        now_unix_ms: u64,
    ) -> ClusterHealth {
        let ids: BTreeSet<NodeId> = servers.iter().map(|s| s.id).collect();
        self.since.retain(|id, _| ids.contains(id));
        let mut leader = 0;
        let mut out = Vec::with_capacity(servers.len());
        for facts in servers {
            let healthy = is_healthy(&facts, leader_index, leader_term, settings);
            if facts.leader {
                leader = facts.id;
            }
            let entry = self.since.entry(facts.id).or_insert((healthy, now, now_unix_ms));
            if entry.0 != healthy {
                *entry = (healthy, now, now_unix_ms);
            }
            let stable_for = now.saturating_duration_since(entry.1);
            out.push(ServerHealth { facts, healthy, stable_since_ms: entry.2, stable_for });
        }
        let voters = out.iter().filter(|s| s.facts.voter).count();
        let quorum = voters / 2 + 1;
        let healthy_voters = out.iter().filter(|s| s.facts.voter && s.healthy).count();
        let alive_voters = out.iter().filter(|s| s.facts.voter && s.facts.serf == SerfStatus::Alive).count();
        ClusterHealth {
            healthy: out.iter().all(|s| s.healthy),
            failure_tolerance: healthy_voters.saturating_sub(quorum),
            optimistic_failure_tolerance: alive_voters.saturating_sub(quorum),
            servers: out,
            leader,
        }
    }
}

fn is_healthy(s: &ServerFacts, leader_index: u64, leader_term: u64, settings: &Settings) -> bool {
    if s.serf != SerfStatus::Alive {
        return false;
    }
    if s.leader {
        return true;
    }
    s.last_contact.is_some_and(|c| c <= settings.last_contact_threshold)
        && s.last_term == leader_term
        && s.last_index.saturating_add(settings.max_trailing_logs) >= leader_index
}

/// The membership changes one autopilot pass makes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Non-voters to make voters.
    pub promote: Vec<NodeId>,
    /// Failed servers to remove from the Raft configuration.
    pub remove: Vec<NodeId>,
}

/// What to change given `health` (see the module docs for the rules).
pub fn plan(health: &ClusterHealth, settings: &Settings) -> Plan {
    let promote = health
        .servers
        .iter()
        .filter(|s| !s.facts.voter && s.healthy && s.stable_for >= settings.stabilization)
        .map(|s| s.facts.id)
        .collect();
    let mut remove = Vec::new();
    if settings.cleanup_dead_servers {
        let failed = |s: &&ServerHealth| s.facts.serf == SerfStatus::Failed && !s.facts.leader;
        remove.extend(health.servers.iter().filter(failed).filter(|s| !s.facts.voter).map(|s| s.facts.id));
        let mut voters = health.servers.iter().filter(|s| s.facts.voter).count();
        let healthy_voters = health.servers.iter().filter(|s| s.facts.voter && s.healthy).count();
        // Fewer than half of the voters at once: a majority must agree to each removal.
        let mut budget = voters.saturating_sub(1) / 2;
        for s in health.servers.iter().filter(failed).filter(|s| s.facts.voter) {
            let remaining = voters - 1;
            if budget == 0 || remaining < settings.min_quorum || healthy_voters < remaining / 2 + 1 {
                break;
            }
            remove.push(s.facts.id);
            voters = remaining;
            budget -= 1;
        }
    }
    Plan { promote, remove }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            cleanup_dead_servers: true,
            last_contact_threshold: Duration::from_millis(200),
            max_trailing_logs: 250,
            min_quorum: 0,
            stabilization: Duration::from_secs(10),
        }
    }

    fn server(id: NodeId, voter: bool, serf: SerfStatus) -> ServerFacts {
        ServerFacts {
            id,
            node_id: format!("node-{id}"),
            name: format!("s{id}"),
            address: format!("127.0.0.{id}:8300"),
            serf,
            voter,
            leader: id == 1,
            last_contact: Some(Duration::from_millis(10)),
            last_index: 300,
            last_term: 2,
            meta: BTreeMap::new(),
        }
    }

    fn assess(t: &mut Tracker, servers: Vec<ServerFacts>, now: Instant) -> ClusterHealth {
        t.assess(servers, 300, 2, &settings(), now, 0)
    }

    #[test]
    fn health_needs_gossip_contact_term_and_a_short_trail() {
        let mut t = Tracker::default();
        let now = Instant::now();
        let mut stale = server(2, true, SerfStatus::Alive);
        stale.last_contact = Some(Duration::from_secs(1));
        let mut behind = server(3, true, SerfStatus::Alive);
        behind.last_index = 10;
        let mut old_term = server(4, true, SerfStatus::Alive);
        old_term.last_term = 1;
        let never = ServerFacts { last_contact: None, ..server(5, true, SerfStatus::Alive) };
        let failed = server(6, true, SerfStatus::Failed);
        let ok = server(7, true, SerfStatus::Alive);
        let h =
            assess(&mut t, vec![server(1, true, SerfStatus::Alive), stale, behind, old_term, never, failed, ok], now);
        let healthy: Vec<bool> = h.servers.iter().map(|s| s.healthy).collect();
        assert_eq!(healthy, [true, false, false, false, false, false, true]);
        assert!(!h.healthy);
        // 7 voters, quorum 4, 2 healthy.
        assert_eq!((h.failure_tolerance, h.optimistic_failure_tolerance, h.leader), (0, 2, 1));
    }

    #[test]
    fn failure_tolerance_of_a_healthy_three_server_cluster_is_one() {
        let mut t = Tracker::default();
        let servers = (1..=3).map(|i| server(i, true, SerfStatus::Alive)).collect();
        let h = assess(&mut t, servers, Instant::now());
        assert!(h.healthy);
        assert_eq!((h.failure_tolerance, h.optimistic_failure_tolerance), (1, 1));
        assert_eq!(h.voters(), [1, 2, 3]);
    }

    #[test]
    fn a_non_voter_is_promoted_only_after_stabilization_without_a_break() {
        let mut t = Tracker::default();
        let start = Instant::now();
        let cluster = |learner_contact: Option<Duration>| {
            let mut learner = server(4, false, SerfStatus::Alive);
            learner.last_contact = learner_contact;
            vec![server(1, true, SerfStatus::Alive), server(2, true, SerfStatus::Alive), learner]
        };
        let healthy = Some(Duration::from_millis(5));
        let h = assess(&mut t, cluster(healthy), start);
        assert!(plan(&h, &settings()).promote.is_empty(), "not stable yet");
        let h = assess(&mut t, cluster(healthy), start + Duration::from_secs(6));
        assert!(plan(&h, &settings()).promote.is_empty());
        // One unhealthy observation restarts the clock.
        let h = assess(&mut t, cluster(None), start + Duration::from_secs(7));
        assert!(plan(&h, &settings()).promote.is_empty());
        let h = assess(&mut t, cluster(healthy), start + Duration::from_secs(8));
        assert!(plan(&h, &settings()).promote.is_empty());
        let h = assess(&mut t, cluster(healthy), start + Duration::from_secs(17));
        assert!(plan(&h, &settings()).promote.is_empty(), "9 s since it became healthy again");
        let h = assess(&mut t, cluster(healthy), start + Duration::from_secs(18));
        assert_eq!(plan(&h, &settings()).promote, [4]);
    }

    #[test]
    fn a_failed_voter_of_three_is_removed() {
        let mut t = Tracker::default();
        let servers = vec![
            server(1, true, SerfStatus::Alive),
            server(2, true, SerfStatus::Alive),
            server(3, true, SerfStatus::Failed),
        ];
        let h = assess(&mut t, servers, Instant::now());
        assert_eq!(plan(&h, &settings()).remove, [3]);
        let off = Settings { cleanup_dead_servers: false, ..settings() };
        assert!(plan(&h, &off).remove.is_empty());
        let min_quorum = Settings { min_quorum: 3, ..settings() };
        assert!(plan(&h, &min_quorum).remove.is_empty(), "would leave fewer voters than min_quorum");
    }

    #[test]
    fn removal_never_takes_half_the_voters_or_the_quorum() {
        let mut t = Tracker::default();
        // 5 voters, 3 failed: removing them would need the failed ones to agree.
        let mut servers: Vec<_> = (1..=2).map(|i| server(i, true, SerfStatus::Alive)).collect();
        servers.extend((3..=5).map(|i| server(i, true, SerfStatus::Failed)));
        let h = assess(&mut t, servers, Instant::now());
        assert!(plan(&h, &settings()).remove.is_empty());
        // 5 voters, 2 failed: both go (3 healthy remain, a majority of 3).
        let mut servers: Vec<_> = (1..=3).map(|i| server(i, true, SerfStatus::Alive)).collect();
        servers.extend((4..=5).map(|i| server(i, true, SerfStatus::Failed)));
        let h = assess(&mut t, servers, Instant::now());
        assert_eq!(plan(&h, &settings()).remove, [4, 5]);
        // 2 voters, 1 failed: removing it needs its own vote.
        let servers = vec![server(1, true, SerfStatus::Alive), server(2, true, SerfStatus::Failed)];
        let h = assess(&mut t, servers, Instant::now());
        assert!(plan(&h, &settings()).remove.is_empty());
    }

    #[test]
    fn failed_non_voters_are_always_removed_and_the_leader_never() {
        let mut t = Tracker::default();
        let mut leader = server(1, true, SerfStatus::Failed);
        leader.leader = true;
        let servers = vec![leader, server(2, false, SerfStatus::Failed)];
        let h = assess(&mut t, servers, Instant::now());
        assert_eq!(plan(&h, &settings()).remove, [2]);
    }

    #[test]
    fn settings_never_go_below_two_heartbeats() {
        let config = AutopilotConfig { last_contact_threshold_ms: 10, ..AutopilotConfig::default() };
        let s = Settings::new(&config, Duration::from_millis(250));
        assert_eq!(s.last_contact_threshold, Duration::from_millis(500));
        assert_eq!(s.stabilization, Duration::from_secs(10));
    }
}
