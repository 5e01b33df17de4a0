//! Session TTLs: leader-local timers and the reaper that invalidates lapsed sessions.
//!
//! As in Consul, TTL timers live only in the leader's memory: a session lapses `2 × TTL`
//! (`SessionTTLMultiplier`) after its last renew, and a newly elected leader gives every TTL
//! session a full `2 × TTL` before it can lapse. Renewing is not a Raft write: it is a consistent
//! read of the session plus a reset of the leader's timer (followers forward it to the leader).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use tokio::time::Instant;

use crate::clock::{Clock, SharedClock, SystemClock};
use crate::duration::parse_go_duration;
use crate::replication::consensus::Consensus;
use crate::state::command::Command;

/// How much longer than its TTL a session lives without renewal.
pub const TTL_MULTIPLIER: u32 = 2;
/// Shortest TTL allowed (10 s).
pub const TTL_MIN: Duration = Duration::from_secs(10);
/// Longest TTL allowed (24 h).
pub const TTL_MAX: Duration = Duration::from_secs(86_400);
/// How often the reaper looks for lapsed sessions.
const TICK: Duration = Duration::from_millis(250);

/// The system clock in unix ms, stamped into lock and destroy commands for lock-delays by
/// callers that hold no [`Consensus`] (prefer `consensus.clock().unix_ms()`).
pub fn now_ms() -> u64 {
    SystemClock.unix_ms()
}

/// Last renew of each TTL session, as this server (when leader) saw it.
#[derive(Debug)]
pub struct SessionTimers {
    last_renew: Mutex<HashMap<String, Instant>>,
    clock: SharedClock,
}

impl Default for SessionTimers {
    fn default() -> Self {
        SessionTimers::new(SystemClock::shared())
    }
}

impl SessionTimers {
    /// Timers reading `clock`.
    pub fn new(clock: SharedClock) -> Self {
        SessionTimers { last_renew: Mutex::default(), clock }
    }

    /// Restarts the timer of session `id` (a renew on the leader).
    pub fn renew(&self, id: &str) {
        self.last_renew.lock().insert(id.to_string(), self.clock.now());
    }

    /// Forgets every timer (leadership lost or gained: each session then starts a full period).
    fn clear(&self) {
        self.last_renew.lock().clear();
    }
}

/// On the leader, invalidates every session whose TTL lapsed (runs until `shutdown`).
pub async fn reap_sessions(consensus: Arc<Consensus>, shutdown: CancellationToken) {
    let timers = consensus.session_timers();
    let mut was_leader = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.cancelled() => return,
        }
        if !consensus.is_leader() {
            if was_leader {
                timers.clear();
            }
            was_leader = false;
            continue;
        }
        if !was_leader {
            // A new leader gives every session a full period, as Consul does on fail-over.
            timers.clear();
            was_leader = true;
        }
        let with_ttl: Vec<(String, Duration)> = consensus.state().read(|d| {
            d.sessions
                .values()
                .filter(|s| !s.ttl.is_empty())
                .filter_map(|s| parse_go_duration(&s.ttl).ok().map(|ttl| (s.id.clone(), ttl)))
                .collect()
        });
        let now = timers.clock.now();
        let lapsed: Vec<String> = {
            let mut last = timers.last_renew.lock();
            last.retain(|id, _| with_ttl.iter().any(|(s, _)| s == id));
            with_ttl
                .iter()
                .filter(|(id, ttl)| {
                    let renewed = *last.entry(id.clone()).or_insert(now);
                    now.duration_since(renewed) >= *ttl * TTL_MULTIPLIER
                })
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in lapsed {
            tracing::info!(session = %id, "session TTL lapsed; invalidating");
            match consensus.write(Command::SessionDestroy { id: id.clone(), now_ms: consensus.clock().unix_ms() }).await
            {
                Ok(_) => {
                    timers.last_renew.lock().remove(&id);
                }
                Err(e) => tracing::warn!(session = %id, error = %e, "invalidating a lapsed session failed; will retry"),
            }
        }
    }
}
