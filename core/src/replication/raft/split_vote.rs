//! Breaks split votes with fresh randomness in every round.
//!
//! openraft 0.9 draws a node's election timeout once, when the node starts. Two followers that
//! lose their leader at the same instant campaign at `lease + own timeout`; when their timeouts
//! lie within a round trip of each other they split the vote, and because the timeouts never
//! change they are likely to split again in the next round, and the next. The failover
//! benchmark saw this as 2.2 s replacements (two or three rounds) in 3 of 20 leader kills at
//! `raft_multiplier = 1`. etcd and hashicorp/raft redraw the timeout on every reset; this task
//! gives us the same: a node that is still a candidate, with no leader, a random pause after it
//! started campaigning in a term starts the next round itself.
//!
//! Safety is unchanged: the task only acts on a node that already gave up on its leader, and
//! what it sends is an ordinary vote request; followers that still hold a lease on a live
//! leader refuse it exactly as they refuse openraft's own campaigns.
//!
//! Liveness needs one more rule. A node whose log is behind is refused by every peer with a
//! longer log; openraft then holds its next campaign back by `smaller_log_timeout` so a node
//! with the longer log wins first. Cutting that wait short lets a lagging node raise the term
//! again and again and unseat each new leader (the simulator found exactly that), so the task
//! stands aside for the rest of a campaign in which a peer reported a longer log.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::network::VoteSignals;
use super::{Raft, ServerState};
use std::sync::Arc;

/// Starts the breaker for `raft`; it ends when the Raft node shuts down. `min_election` is the
/// minimum election timeout: the pause before a new round is drawn from a third of it to four
/// thirds of it, so it usually comes before openraft's own retry (one to two times it).
pub(super) fn spawn(raft: Raft, votes: Arc<VoteSignals>, min_election: Duration, seed: u64) {
    tokio::spawn(run(raft, votes, min_election, StdRng::seed_from_u64(seed)));
}

async fn run(raft: Raft, votes: Arc<VoteSignals>, min_election: Duration, mut rng: StdRng) {
    let mut metrics = raft.metrics();
    let (low, high) = (min_election / 3, min_election * 4 / 3);
    loop {
        let (state, term) = {
            let m = metrics.borrow_and_update();
            (m.state, m.current_term)
        };
        if state == ServerState::Candidate {
            let deadline = tokio::time::Instant::now() + rng.gen_range(low..high);
            // Wait out the pause unless the node leaves this campaign (won, lost to a leader,
            // or moved to another term) first.
            let still_campaigning = loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break true,
                    changed = metrics.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let m = metrics.borrow_and_update();
                        if m.state != ServerState::Candidate || m.current_term != term {
                            break false;
                        }
                    }
                }
            };
            if still_campaigning {
                let m = raft.metrics().borrow().clone();
                let behind = votes.saw_greater_log_since(term);
                if behind {
                    tracing::debug!(term, "a peer has a longer log: leaving the next round to openraft's timer");
                } else if m.state == ServerState::Candidate && m.current_term == term && m.current_leader.is_none() {
                    tracing::debug!(term, "no leader after a campaign: starting the next round");
                    if raft.trigger().elect().await.is_err() {
                        return; // shut down
                    }
                }
            }
            continue;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
