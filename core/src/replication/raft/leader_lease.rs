//! The leader lease: when a leader may answer a default-mode read from its own state without a
//! round of heartbeats (Consul's "leader lease" reads).
//!
//! A follower that accepts an AppendEntries of leader term `T` refuses to vote for anyone else
//! for `election_timeout_max` after it received it (openraft's vote lease), and it received it
//! after the leader sent it. So once a quorum has acknowledged requests the leader *sent* at
//! time `s` or later, no other leader can exist before `s + election_timeout_min`; the lease
//! ([`super::RaftTuning::leader_lease`]) is half that, to absorb clock-rate drift.
//!
//! The times are taken here, at the network layer, when each request leaves. openraft keeps the
//! same fact internally but only publishes it as "milliseconds since" in its metrics, measured
//! when the metrics were emitted: a reader that converts that back to an instant after being
//! delayed — a process SIGSTOPped for seconds and then resumed, say — dates the last quorum
//! acknowledgement to *after* its pause and serves a stale read while a newer leader already
//! accepts writes (seen in the fault suite: seed 505036).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::NodeId;

/// A Raft vote (term and leader), as the lease compares it.
pub type Vote = openraft::Vote<NodeId>;

/// Per-peer record of the latest request a peer acknowledged as coming from its leader.
#[derive(Debug, Default)]
pub struct LeaderLease {
    acks: Mutex<HashMap<NodeId, Ack>>,
}

#[derive(Debug, Clone, Copy)]
struct Ack {
    vote: Vote,
    sent: Instant,
}

impl LeaderLease {
    /// Records that `peer` accepted `vote` as its leader in a request sent at `sent`.
    pub(super) fn record(&self, peer: NodeId, vote: Vote, sent: Instant) {
        let mut acks = self.acks.lock();
        match acks.get_mut(&peer) {
            // Answers to pipelined requests can arrive out of order: keep the latest send.
            Some(ack) if ack.vote == vote => ack.sent = ack.sent.max(sent),
            // A different vote (a new term of ours, or a late answer from an old one): only the
            // newest fact is kept; a stale one merely makes the lease look expired.
            _ => {
                acks.insert(peer, Ack { vote, sent });
            }
        }
    }

    /// When the latest request `peer` acknowledged was sent (autopilot's last contact).
    pub fn last_ack(&self, peer: NodeId) -> Option<Instant> {
        self.acks.lock().get(&peer).map(|a| a.sent)
    }

    /// Whether `leader`, holding `vote`, has the lease at `now`: in every configuration of
    /// `configs` (two while membership changes), a majority is the leader itself or acknowledged
    /// `vote` in a request sent less than `lease` ago.
    pub fn holds(
        &self,
        leader: NodeId,
        vote: &Vote,
        configs: &[BTreeSet<NodeId>],
        lease: Duration,
        now: Instant,
    ) -> bool {
        if configs.is_empty() {
            return false;
        }
        let acks = self.acks.lock();
        configs.iter().all(|voters| {
            let fresh = voters
                .iter()
                .filter(|id| {
                    **id == leader
                        || acks
                            .get(id)
                            .is_some_and(|a| a.vote == *vote && now.saturating_duration_since(a.sent) < lease)
                })
                .count();
            fresh * 2 > voters.len()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn vote(term: u64, leader: NodeId) -> Vote {
        let mut v = Vote::new(term, leader);
        v.commit();
        v
    }

    const LEASE: Duration = Duration::from_millis(500);

    #[tokio::test(start_paused = true)]
    async fn a_majority_of_fresh_acknowledgements_holds_the_lease() {
        let lease = LeaderLease::default();
        let voters = [BTreeSet::from([1, 2, 3])];
        let v = vote(4, 1);
        let t0 = Instant::now();
        assert!(!lease.holds(1, &v, &voters, LEASE, t0), "the leader alone is not a majority of three");
        lease.record(2, v, t0);
        assert!(lease.holds(1, &v, &voters, LEASE, t0 + Duration::from_millis(499)));
        assert!(!lease.holds(1, &v, &voters, LEASE, t0 + LEASE), "expires a lease after the send");
    }

    #[tokio::test(start_paused = true)]
    async fn the_lease_dates_from_the_send_not_from_when_anyone_looks() {
        // The leader was paused for 3 s after sending: its lease ran out meanwhile, however
        // promptly it then reads the answers.
        let lease = LeaderLease::default();
        let voters = [BTreeSet::from([1, 2, 3])];
        let v = vote(4, 1);
        let sent = Instant::now();
        tokio::time::advance(Duration::from_secs(3)).await;
        lease.record(2, v, sent);
        lease.record(3, v, sent);
        assert!(!lease.holds(1, &v, &voters, LEASE, Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn acknowledgements_of_another_vote_do_not_count() {
        let lease = LeaderLease::default();
        let voters = [BTreeSet::from([1, 2, 3])];
        let now = Instant::now();
        lease.record(2, vote(3, 1), now);
        lease.record(3, vote(3, 1), now);
        assert!(!lease.holds(1, &vote(4, 1), &voters, LEASE, now), "acknowledged an older term only");
        assert!(lease.holds(1, &vote(3, 1), &voters, LEASE, now));
    }

    #[tokio::test(start_paused = true)]
    async fn out_of_order_answers_keep_the_latest_send() {
        let lease = LeaderLease::default();
        let voters = [BTreeSet::from([1, 2, 3])];
        let v = vote(4, 1);
        let early = Instant::now();
        let late = early + Duration::from_millis(400);
        lease.record(2, v, late);
        lease.record(2, v, early);
        assert!(lease.holds(1, &v, &voters, LEASE, early + Duration::from_millis(600)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_joint_configuration_needs_a_majority_of_each() {
        let lease = LeaderLease::default();
        let joint = [BTreeSet::from([1, 2, 3]), BTreeSet::from([1, 4, 5])];
        let v = vote(4, 1);
        let now = Instant::now();
        lease.record(2, v, now);
        assert!(!lease.holds(1, &v, &joint, LEASE, now));
        lease.record(5, v, now);
        assert!(lease.holds(1, &v, &joint, LEASE, now));
        assert!(!lease.holds(1, &v, &[], LEASE, now), "no configuration, no lease");
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_voter_always_holds_it() {
        let lease = LeaderLease::default();
        assert!(lease.holds(1, &vote(2, 1), &[BTreeSet::from([1])], LEASE, Instant::now()));
    }
}
