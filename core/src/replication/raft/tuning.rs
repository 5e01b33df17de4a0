//! Raft timing and compaction settings, in Consul's terms.

use std::time::Duration;

/// Raft timing and compaction (`performance.raft_multiplier`, `raft_snapshot_*`, `raft_trailing_logs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTuning {
    /// `performance.raft_multiplier` (1–10). Consul's default is 5; timings scale linearly.
    pub raft_multiplier: u32,
    /// `raft_snapshot_threshold`: take a snapshot after this many new log entries (16384).
    pub snapshot_threshold: u64,
    /// `raft_trailing_logs`: log entries kept behind a snapshot for slow followers (10240).
    pub trailing_logs: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning { raft_multiplier: 5, snapshot_threshold: 16384, trailing_logs: 10240 }
    }
}

impl RaftTuning {
    /// Heartbeat interval. Our base timings (at multiplier 1: heartbeat 50 ms, election
    /// 300–600 ms) are tighter than hashicorp/raft's because openraft's leader lease keeps
    /// followers from starting elections while heartbeats arrive. A follower campaigns once
    /// the lease (the maximum election timeout) plus a random election timeout passed since the
    /// last heartbeat: 0.9–1.2 s at multiplier 1, 4.5–6 s at Consul's default of 5, where
    /// Consul itself waits 5–10 s (hashicorp/raft's heartbeat timeout × 5, randomised up to 2×).
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(50 * u64::from(self.raft_multiplier.clamp(1, 10)))
    }

    /// Minimum election timeout.
    pub fn election_timeout_min(&self) -> Duration {
        Duration::from_millis(300 * u64::from(self.raft_multiplier.clamp(1, 10)))
    }

    /// Maximum election timeout.
    pub fn election_timeout_max(&self) -> Duration {
        Duration::from_millis(600 * u64::from(self.raft_multiplier.clamp(1, 10)))
    }

    /// How long after the last quorum acknowledgement the leader may still answer
    /// default-mode reads on its own (Consul's "leader lease" reads). Half the minimum
    /// election timeout: no other leader can be elected before followers' election timers,
    /// which restart on every heartbeat, run out.
    pub fn leader_lease(&self) -> Duration {
        self.election_timeout_min() / 2
    }
}
