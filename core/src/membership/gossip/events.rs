//! User events and leave intents: what the pool spreads besides membership.
//!
//! Both ride on foca's custom broadcasts (piggybacked on probes and gossip, retransmitted
//! `retransmit_mult × log(N+1)` times). Events carry a Lamport time (`LTime`) that orders them
//! and bounds de-duplication: an agent remembers the IDs seen in the last [`DEDUP_WINDOW`]
//! Lamport ticks, drops anything older, and keeps the newest [`EVENT_BUFFER`] events for
//! `/v1/event/list` — Serf's `EventBuffer` and Consul's 256-event list.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Lamport ticks within which duplicate events are recognised (Serf's `EventBuffer`).
pub const DEDUP_WINDOW: u64 = 512;
/// Events kept for `/v1/event/list` (Consul's `userEventSize`).
pub const EVENT_BUFFER: usize = 256;
/// Largest user event as it travels, name, payload, filters and ID together: Serf's
/// `UserEventSizeLimit`, which Consul applies to its whole encoded event (so the payload itself
/// is limited to what the rest leaves).
pub const MAX_EVENT_SIZE: usize = 512;

/// The size `ev` has on the wire, counted with the largest Lamport time so that the answer
/// does not depend on when it is fired.
pub fn encoded_event_size(ev: &UserEvent) -> usize {
    let worst = UserEvent { ltime: u64::MAX, ..ev.clone() };
    postcard::to_stdvec(&Broadcast::Event(worst)).map(|b| b.len()).unwrap_or(usize::MAX)
}

/// Why `ev` cannot be fired, if it is too large to travel: names the sizes.
pub fn check_event_size(ev: &UserEvent) -> Result<(), String> {
    let size = encoded_event_size(ev);
    if size > MAX_EVENT_SIZE {
        return Err(format!(
            "user event exceeds the {MAX_EVENT_SIZE}-byte limit: {size} bytes encoded (name {} bytes, payload {} \
             bytes, node/service/tag filters {}/{}/{} bytes)",
            ev.name.len(),
            ev.payload.len(),
            ev.node_filter.len(),
            ev.service_filter.len(),
            ev.tag_filter.len()
        ));
    }
    Ok(())
}

/// A user event as it travels and as `/v1/event/list` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    /// Event UUID (hyphenated).
    pub id: String,
    /// Event name.
    pub name: String,
    /// Raw payload.
    pub payload: Vec<u8>,
    /// Node name regex (empty: every node).
    pub node_filter: String,
    /// Service name regex.
    pub service_filter: String,
    /// Tag regex.
    pub tag_filter: String,
    /// Format version (Consul's is 1).
    pub version: u32,
    /// Lamport time.
    pub ltime: u64,
}

/// A gossip broadcast (wire format: postcard; add variants at the end).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Broadcast {
    /// A user event.
    Event(UserEvent),
    /// A member is leaving on purpose (or was force-left): when it goes down it is `left`,
    /// not `failed`. `prune` drops it from member lists at once.
    Leave { name: String, incarnation: u64, prune: bool },
    /// `from`'s own probes of a member failed: an independent suspicion, which Lifeguard's
    /// dynamic suspicion timeout counts (foca's suspect updates do not say who originated them).
    Suspect { name: String, incarnation: u64, from: String },
}

/// Identifies a broadcast so foca can tell fresh from already-spread items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BroadcastKey {
    Event(u64, String),
    Leave(String, u64),
    Suspect(String, u64, String),
}

impl foca::Invalidates for BroadcastKey {
    fn invalidates(&self, other: &Self) -> bool {
        self == other
    }
}

/// What the broadcasts have told this agent; shared by the engine and its broadcast handler.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Lamport clock of events.
    pub clock: u64,
    seen: BTreeMap<u64, HashSet<String>>,
    /// Newest events, oldest first.
    pub recent: VecDeque<UserEvent>,
    /// (name, incarnation) of members that announced a leave; value: prune.
    pub leaving: BTreeMap<(String, u64), bool>,
    /// Events accepted so far (for watchers).
    pub accepted: u64,
    /// Independent suspicions seen since the engine last looked: (suspected, originator).
    pub new_suspects: Vec<(String, String)>,
    seen_suspects: HashSet<(String, u64, String)>,
}

impl Received {
    /// Records an event; `false` if it is a duplicate or too old to tell.
    pub(crate) fn accept_event(&mut self, ev: &UserEvent) -> bool {
        if self.clock > DEDUP_WINDOW && ev.ltime < self.clock - DEDUP_WINDOW {
            return false;
        }
        if !self.seen.entry(ev.ltime).or_default().insert(ev.id.clone()) {
            return false;
        }
        // Lamport: our clock moves past every time we witness.
        self.clock = self.clock.max(ev.ltime + 1);
        let floor = self.clock.saturating_sub(DEDUP_WINDOW);
        self.seen = self.seen.split_off(&floor);
        self.recent.push_back(ev.clone());
        while self.recent.len() > EVENT_BUFFER {
            self.recent.pop_front();
        }
        self.accepted += 1;
        true
    }

    /// The next Lamport time for an event fired here.
    pub(crate) fn tick(&mut self) -> u64 {
        let t = self.clock;
        self.clock += 1;
        t
    }
}

/// foca's view of the broadcasts: decode, de-duplicate, and say whether to spread further.
#[derive(Debug)]
pub(crate) struct Handler {
    pub received: Arc<Mutex<Received>>,
    pub events_tx: Arc<watch::Sender<u64>>,
}

/// A broadcast that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("undecodable gossip broadcast: {0}")]
pub(crate) struct BadBroadcast(String);

impl<T> foca::BroadcastHandler<T> for Handler {
    type Key = BroadcastKey;
    type Error = BadBroadcast;

    fn receive_item(&mut self, data: &[u8], _sender: Option<&T>) -> Result<Option<BroadcastKey>, BadBroadcast> {
        let b: Broadcast = postcard::from_bytes(data).map_err(|e| BadBroadcast(e.to_string()))?;
        let mut r = self.received.lock();
        Ok(match b {
            Broadcast::Event(ev) => {
                if data.len() > MAX_EVENT_SIZE || ev.name.is_empty() {
                    return Err(BadBroadcast("event too large or unnamed".into()));
                }
                let key = BroadcastKey::Event(ev.ltime, ev.id.clone());
                if r.accept_event(&ev) {
                    let n = r.accepted;
                    drop(r);
                    self.events_tx.send_replace(n);
                    Some(key)
                } else {
                    None
                }
            }
            Broadcast::Suspect { name, incarnation, from } => {
                if r.seen_suspects.len() > 65536 {
                    // Bounded memory; a re-spread duplicate after this only re-counts one originator.
                    r.seen_suspects.clear();
                }
                if r.seen_suspects.insert((name.clone(), incarnation, from.clone())) {
                    r.new_suspects.push((name.clone(), from.clone()));
                    Some(BroadcastKey::Suspect(name, incarnation, from))
                } else {
                    None
                }
            }
            Broadcast::Leave { name, incarnation, prune } => {
                let k = (name.clone(), incarnation);
                if r.leaving.get(&k) == Some(&prune) || (r.leaving.get(&k) == Some(&true)) {
                    None
                } else {
                    r.leaving.insert(k, prune);
                    Some(BroadcastKey::Leave(name, incarnation))
                }
            }
        })
    }
}

/// `/v1/event/list`'s index: Consul folds the newest event's UUID into 64 bits (`IDToIndex`:
/// XOR of its halves). Not monotonic; meaningful only to the agent that answered.
pub fn id_to_index(id: &str) -> u64 {
    match uuid::Uuid::parse_str(id) {
        Ok(u) => {
            let (hi, lo) = u.as_u64_pair();
            hi ^ lo
        }
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, ltime: u64) -> UserEvent {
        UserEvent {
            id: id.into(),
            name: "deploy".into(),
            payload: vec![],
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            version: 1,
            ltime,
        }
    }

    #[test]
    fn duplicates_and_stale_events_are_dropped() {
        let mut r = Received::default();
        assert!(r.accept_event(&ev("a", 5)));
        assert!(!r.accept_event(&ev("a", 5)));
        assert!(r.accept_event(&ev("b", 5)));
        assert_eq!(r.clock, 6);
        assert!(r.accept_event(&ev("c", 2000)));
        assert!(!r.accept_event(&ev("d", 10)), "older than the window");
        assert_eq!(r.recent.len(), 3);
    }

    #[test]
    fn buffer_keeps_the_newest() {
        let mut r = Received::default();
        for i in 0..300u64 {
            assert!(r.accept_event(&ev(&format!("e{i}"), i)));
        }
        assert_eq!(r.recent.len(), EVENT_BUFFER);
        assert_eq!(r.recent.front().map(|e| e.ltime), Some(300 - EVENT_BUFFER as u64));
    }

    #[test]
    fn index_folds_the_uuid() {
        assert_eq!(id_to_index("00000000-0000-0001-0000-000000000002"), 3);
        assert_eq!(id_to_index("garbage"), 0);
    }
}
