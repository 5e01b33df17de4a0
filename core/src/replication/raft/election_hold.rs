//! Holds back a restarted server's first campaign until it has had the chance to hear from a
//! leader.
//!
//! openraft reads a server's own persisted vote back as uncommitted (see `log_store`), so a
//! restarted former leader campaigns one election timeout (300–600 ms at multiplier 1)
//! after it starts — usually before the current leader, whose replication to the dead
//! address is backing off, has reached it. Its log is behind, the others refuse it, and
//! openraft remembers "a peer has a longer log" until this node's *next* campaign, adding
//! `smaller_log_timeout` (2 × the maximum election timeout) to it. That next campaign is the
//! one after the next leader dies: the failover benchmark saw 2.2 s instead of 1.1 s whenever
//! both survivors had once been restarted leaders.
//!
//! So a server starts with elections off and turns them on once it follows a leader, or after
//! `2 × election_timeout_max` without one (a whole cluster restarting elects a leader that
//! much later), or at once when it is the only voter.

use std::time::Duration;

use super::{Raft, ServerState};

/// Turns elections off on `raft` and starts the task that turns them back on.
pub(super) fn spawn(raft: Raft, election_timeout_max: Duration) {
    raft.runtime_config().elect(false);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + election_timeout_max * 2;
        let mut metrics = raft.metrics();
        loop {
            let settled = {
                let m = metrics.borrow_and_update();
                let voters = m.membership_config.membership().voter_ids().count();
                let follows = m.current_leader.is_some_and(|l| l != m.id) && m.state == ServerState::Follower;
                voters <= 1 || follows || m.state == ServerState::Leader
            };
            if settled {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                changed = metrics.changed() => if changed.is_err() { return },
            }
        }
        raft.runtime_config().elect(true);
    });
}
