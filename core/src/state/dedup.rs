//! The dedup window: exactly-once application of client writes.
//!
//! Every write that enters Raft on behalf of a client carries a [`RequestId`] chosen once, where
//! the request first reached a server or client agent, and kept across every retry and forward.
//! When a tracked command is applied, its result is remembered here under its id; applying the
//! same id again (a retry whose first attempt was in fact committed — the leader died after
//! appending it, or the connection broke after the request was sent) changes nothing and
//! answers the *original* result and index. This is the client-session table of the Raft
//! thesis (Ongaro, §6.3), keyed by request rather than by session.
//!
//! The window is part of the replicated state: it is changed only by applying log entries, in
//! log order, so every server holds the same window at the same index, and it travels in Raft
//! snapshots. It is bounded ([`MAX_ENTRIES`] results, [`MAX_RESPONSE_BYTES`] of results, and
//! [`MAX_ORIGINS`] origins), evicting oldest first. An evicted id is not forgotten silently:
//! each origin keeps a *floor*, one past the highest sequence number evicted, and an id below
//! its origin's floor that is not in the window is answered [`Lookup::Expired`] — "outcome
//! unknown" — rather than applied a second time.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::state::command::{CommandResponse, RequestId};

/// Results remembered at most (oldest evicted first).
pub const MAX_ENTRIES: usize = 65_536;
/// Approximate bytes of remembered results at most (big transaction results evict sooner).
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// Origins (agent incarnations) whose floors are kept at most; the least recently used goes.
pub const MAX_ORIGINS: usize = 4096;

/// What the window knows about a request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Never seen: apply it.
    New,
    /// Already applied at `index` with `response`: answer that, apply nothing.
    Applied {
        /// Raft index the first application happened at.
        index: u64,
        /// Its result.
        response: CommandResponse,
    },
    /// Older than what the window still remembers for its origin: it may or may not have been
    /// applied, so it must not be applied now.
    Expired,
}

/// One remembered result. Saved as the index and the whole [`CommandResponse`]; held in memory
/// as a [`Remembered`], since the window is full (65,536 results) on any busy server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "AppliedWire", into = "AppliedWire")]
struct Applied {
    index: u64,
    response: Remembered,
}

/// A result as the window holds it. Almost every tracked write answers `Ok` or a KV write's
/// `true`/`false`; those take no allocation, and the slot stays a quarter the size of a full
/// response (24 bytes against 64), which halved the window's heap on a write-heavy server.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Remembered {
    Ok,
    Bool(bool),
    Other(Box<CommandResponse>),
}

impl From<CommandResponse> for Remembered {
    fn from(r: CommandResponse) -> Self {
        match r {
            CommandResponse::Ok => Remembered::Ok,
            CommandResponse::Bool(b) => Remembered::Bool(b),
            other => Remembered::Other(Box::new(other)),
        }
    }
}

impl Remembered {
    fn to_response(&self) -> CommandResponse {
        match self {
            Remembered::Ok => CommandResponse::Ok,
            Remembered::Bool(b) => CommandResponse::Bool(*b),
            Remembered::Other(r) => (**r).clone(),
        }
    }

    /// Rough in-memory size, for the byte bound.
    fn size(&self) -> usize {
        match self {
            Remembered::Ok | Remembered::Bool(_) => 16,
            Remembered::Other(r) => response_size(r),
        }
    }
}

/// [`Applied`] as saved: the same fields as before the window held [`Remembered`].
#[derive(Serialize, Deserialize)]
#[serde(rename = "Applied")]
struct AppliedWire {
    index: u64,
    response: CommandResponse,
}

impl From<AppliedWire> for Applied {
    fn from(w: AppliedWire) -> Self {
        Applied { index: w.index, response: w.response.into() }
    }
}

impl From<Applied> for AppliedWire {
    fn from(a: Applied) -> Self {
        let response = match a.response {
            Remembered::Other(r) => *r,
            small => small.to_response(),
        };
        AppliedWire { index: a.index, response }
    }
}

/// Per-origin bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Origin {
    /// Sequence numbers below this were evicted (or belong to a forgotten past).
    floor: u64,
    /// Index of the last entry that touched this origin (for least-recently-used eviction).
    last_index: u64,
}

/// The replicated dedup window (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupWindow {
    results: BTreeMap<RequestId, Applied>,
    /// Ids in the order they were applied: eviction order.
    order: VecDeque<RequestId>,
    origins: BTreeMap<u64, Origin>,
    response_bytes: usize,
}

impl DedupWindow {
    /// What the window knows about `id`.
    pub fn lookup(&self, id: &RequestId) -> Lookup {
        if let Some(a) = self.results.get(id) {
            return Lookup::Applied { index: a.index, response: a.response.to_response() };
        }
        match self.origins.get(&id.origin) {
            Some(o) if id.seq < o.floor => Lookup::Expired,
            _ => Lookup::New,
        }
    }

    /// Remembers that `id` was applied at `index` with `response`, evicting the oldest results
    /// beyond the bounds.
    pub fn record(&mut self, id: RequestId, index: u64, response: CommandResponse) {
        let response = Remembered::from(response);
        self.response_bytes = self.response_bytes.saturating_add(response.size());
        self.results.insert(id, Applied { index, response });
        self.order.push_back(id);
        self.origins.entry(id.origin).or_default().last_index = index;
        while self.order.len() > MAX_ENTRIES || (self.response_bytes > MAX_RESPONSE_BYTES && self.order.len() > 1) {
            self.evict_oldest();
        }
        if self.origins.len() > MAX_ORIGINS {
            self.evict_idle_origin();
        }
    }

    fn evict_oldest(&mut self) {
        let Some(old) = self.order.pop_front() else { return };
        if let Some(a) = self.results.remove(&old) {
            self.response_bytes = self.response_bytes.saturating_sub(a.response.size());
        }
        let origin = self.origins.entry(old.origin).or_default();
        origin.floor = origin.floor.max(old.seq.saturating_add(1));
    }

    /// Drops the origin used least recently, with any results it still has. Deterministic: ties
    /// go to the smallest origin id.
    fn evict_idle_origin(&mut self) {
        let Some(victim) = self.origins.iter().min_by_key(|(id, o)| (o.last_index, **id)).map(|(id, _)| *id) else {
            return;
        };
        self.origins.remove(&victim);
        let gone: Vec<RequestId> = self.results.range(RequestId::origin_range(victim)).map(|(id, _)| *id).collect();
        for id in gone {
            if let Some(a) = self.results.remove(&id) {
                self.response_bytes = self.response_bytes.saturating_sub(a.response.size());
            }
        }
        self.order.retain(|id| id.origin != victim);
    }

    /// Number of results remembered.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }
}

/// Rough in-memory size of a result, for the byte bound.
fn response_size(r: &CommandResponse) -> usize {
    match r {
        CommandResponse::Ok | CommandResponse::Bool(_) | CommandResponse::Expired => 16,
        CommandResponse::Failed(e) => 16 + e.to_string().len(),
        CommandResponse::Batch(rs) => 16 + rs.iter().map(response_size).sum::<usize>(),
        CommandResponse::Replayed { response, .. } => 16 + response_size(response),
        CommandResponse::Txn(outcome) => 64 + outcome.approx_size(),
        CommandResponse::TxnReport(report) => 64 + report.approx_size(),
        CommandResponse::Acl(_) => 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(origin: u64, seq: u64) -> RequestId {
        RequestId { origin, seq }
    }

    #[test]
    fn applied_once_then_replayed() {
        let mut w = DedupWindow::default();
        assert_eq!(w.lookup(&id(1, 1)), Lookup::New);
        w.record(id(1, 1), 10, CommandResponse::Bool(true));
        assert_eq!(w.lookup(&id(1, 1)), Lookup::Applied { index: 10, response: CommandResponse::Bool(true) });
        assert_eq!(w.lookup(&id(1, 2)), Lookup::New);
        assert_eq!(w.lookup(&id(2, 1)), Lookup::New);
    }

    #[test]
    fn overflow_expires_instead_of_forgetting() {
        let mut w = DedupWindow::default();
        for seq in 0..(MAX_ENTRIES as u64 + 10) {
            w.record(id(7, seq), seq + 1, CommandResponse::Ok);
        }
        assert_eq!(w.len(), MAX_ENTRIES);
        // The ten oldest were evicted: a retry of one of them is "outcome unknown", never new.
        assert_eq!(w.lookup(&id(7, 0)), Lookup::Expired);
        assert_eq!(w.lookup(&id(7, 9)), Lookup::Expired);
        assert!(matches!(w.lookup(&id(7, 10)), Lookup::Applied { .. }));
        // Another origin is unaffected, and so are fresh ids of the same origin.
        assert_eq!(w.lookup(&id(8, 0)), Lookup::New);
        assert_eq!(w.lookup(&id(7, MAX_ENTRIES as u64 + 10)), Lookup::New);
    }

    #[test]
    fn byte_bound_evicts_big_results_first_in_line() {
        let mut w = DedupWindow::default();
        let big = CommandResponse::Failed(crate::error::ApplyError::SessionRefused("x".repeat(MAX_RESPONSE_BYTES / 2)));
        w.record(id(1, 1), 1, big.clone());
        w.record(id(1, 2), 2, big.clone());
        w.record(id(1, 3), 3, big);
        assert!(w.response_bytes <= MAX_RESPONSE_BYTES);
        assert_eq!(w.lookup(&id(1, 1)), Lookup::Expired);
        assert!(matches!(w.lookup(&id(1, 3)), Lookup::Applied { .. }));
    }

    #[test]
    fn idle_origins_are_dropped_least_recent_first() {
        let mut w = DedupWindow::default();
        for origin in 0..(MAX_ORIGINS as u64 + 1) {
            w.record(id(origin, 0), origin + 1, CommandResponse::Ok);
        }
        assert_eq!(w.origins.len(), MAX_ORIGINS);
        assert!(!w.origins.contains_key(&0));
        assert_eq!(w.lookup(&id(0, 0)), Lookup::New);
        assert!(matches!(w.lookup(&id(1, 0)), Lookup::Applied { .. }));
        assert_eq!(w.order.len(), w.results.len());
    }

    #[test]
    fn survives_serialisation() {
        let mut w = DedupWindow::default();
        w.record(id(3, 4), 5, CommandResponse::Bool(false));
        let bytes = postcard::to_allocvec(&w).expect("encode");
        let back: DedupWindow = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, w);
        assert_eq!(back.lookup(&id(3, 4)), Lookup::Applied { index: 5, response: CommandResponse::Bool(false) });
    }

    /// The window is saved as it was before it held compact results: every result whole.
    #[test]
    fn saved_form_holds_whole_responses() {
        #[derive(Deserialize, Serialize)]
        struct SavedWindow {
            results: BTreeMap<RequestId, AppliedWire>,
            order: VecDeque<RequestId>,
            origins: BTreeMap<u64, Origin>,
            response_bytes: usize,
        }
        let failed = CommandResponse::Failed(crate::error::ApplyError::UnknownSession("s".into()));
        let mut w = DedupWindow::default();
        w.record(id(1, 1), 5, CommandResponse::Ok);
        w.record(id(1, 2), 6, CommandResponse::Bool(true));
        w.record(id(1, 3), 7, failed.clone());
        let bytes = postcard::to_allocvec(&w).expect("encode");
        let saved: SavedWindow = postcard::from_bytes(&bytes).expect("decode as whole responses");
        let got: Vec<(u64, &CommandResponse)> = saved.results.values().map(|a| (a.index, &a.response)).collect();
        assert_eq!(got, [(5, &CommandResponse::Ok), (6, &CommandResponse::Bool(true)), (7, &failed)]);
        assert_eq!(postcard::to_allocvec(&saved).expect("re-encode"), bytes);
        assert_eq!(w.lookup(&id(1, 3)), Lookup::Applied { index: 7, response: failed });
    }
}
