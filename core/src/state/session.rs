//! Sessions (Consul's `agent/consul/state/session.go`): replicated session entries, their
//! deterministic invalidation, and lock-delays.
//!
//! A session is invalidated (destroyed) when it is destroyed through the API, when its TTL
//! lapses (the leader proposes that), when its node is deregistered, or when a linked check goes
//! `critical` or is deregistered. Invalidating releases (`release`) or deletes (`delete`) every
//! KV entry it holds and starts a lock-delay on those keys.
//!
//! Lock-delays are wall-clock based in Consul (leader memory). Here they are replicated and
//! compared against timestamps the proposer stamps into commands, so every server decides alike:
//! an invalidation that carries a timestamp ends its delay at `now + LockDelay`; one caused by a
//! catalog change (which carries no timestamp) leaves a *pending* delay that starts at the next
//! timestamped command — never shorter than asked, only possibly a little longer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::catalog::CRITICAL;
use super::StateData;

/// Default lock-delay (15 s).
pub const DEFAULT_LOCK_DELAY_NS: u64 = 15_000_000_000;
/// Longest lock-delay allowed (60 s, `structs.MaxLockDelay`).
pub const MAX_LOCK_DELAY_NS: u64 = 60_000_000_000;
/// The check every session is linked to by default; accepted while gossip does not register it.
pub const SERF_HEALTH: &str = "serfHealth";
/// Watch key of the session table (every session read waits on it).
pub const WATCH_SESSIONS: &str = "\u{1}sessions";

/// What happens to held locks when a session is invalidated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Behavior {
    /// Release the locks (the default).
    #[default]
    Release,
    /// Delete the held keys.
    Delete,
}

impl Behavior {
    /// Parses `release` / `delete` (empty: the default).
    pub fn parse(s: &str) -> Option<Behavior> {
        match s {
            "" | "release" => Some(Behavior::Release),
            "delete" => Some(Behavior::Delete),
            _ => None,
        }
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Behavior::Release => "release",
            Behavior::Delete => "delete",
        }
    }
}

/// A service check a session is linked to (`structs.ServiceCheck`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCheck {
    /// Check ID.
    pub id: String,
    /// Namespace (always empty in OSS).
    pub namespace: String,
}

/// A session (`structs.Session`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Session UUID, chosen by the server that received the create (before Raft).
    pub id: String,
    /// Name.
    pub name: String,
    /// Node the session belongs to.
    pub node: String,
    /// Lock-delay in nanoseconds.
    pub lock_delay_ns: u64,
    /// What invalidation does to held locks.
    pub behavior: Behavior,
    /// TTL as given (a Go duration string, or empty for none).
    pub ttl: String,
    /// Node checks the session is linked to.
    pub node_checks: Vec<String>,
    /// Service checks the session is linked to.
    pub service_checks: Vec<ServiceCheck>,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
    /// Fields added after this encoding settled (the deprecated `Checks`): they travel beside
    /// it (see [`super::ext_fields`]).
    #[serde(skip)]
    pub ext: super::ext_fields::SessionExt,
}

/// A lock-delay on one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockDelay {
    /// Ends at this unix time in ms.
    Until(u64),
    /// Lasts this many ms from the next timestamped command (the invalidation had no clock).
    Pending(u64),
}

impl Session {
    /// Every check ID the session is linked to (the deprecated `Checks`, node and service
    /// checks: Consul's `Session.CheckIDs`).
    fn linked_checks(&self) -> impl Iterator<Item = &str> {
        self.ext
            .checks
            .iter()
            .map(String::as_str)
            .chain(self.node_checks.iter().map(String::as_str))
            .chain(self.service_checks.iter().map(|c| c.id.as_str()))
    }
}

/// Why a session may not be created on the current catalog, if it may not. Deterministic: runs in
/// apply. Consul's wording.
pub fn create_error(data: &StateData, s: &Session) -> Option<String> {
    if !data.catalog.nodes.contains_key(&s.node) {
        return Some(format!("Missing node registration: node {:?} is not in the catalog", s.node));
    }
    for id in s.linked_checks() {
        match data.catalog.checks.get(&(s.node.clone(), id.to_string())) {
            None if id == SERF_HEALTH => {}
            None => return Some(format!("Missing check '{id}' registration")),
            Some(c) if c.status == CRITICAL => return Some(format!("Check '{id}' is in critical state")),
            Some(_) => {}
        }
    }
    if data.sessions.contains_key(&s.id) {
        return Some(format!("Session ID {:?} is already in use", s.id));
    }
    None
}

/// Sessions on `node` that the catalog no longer supports: the node is gone, or a linked check
/// is gone (except the tolerated default `serfHealth`) or critical.
pub fn unsupported_on_node(data: &StateData, node: &str) -> Vec<String> {
    let node_exists = data.catalog.nodes.contains_key(node);
    data.sessions
        .values()
        .filter(|s| s.node == node)
        .filter(|s| {
            !node_exists
                || s.linked_checks().any(|id| match data.catalog.checks.get(&(node.to_string(), id.to_string())) {
                    None => id != SERF_HEALTH,
                    Some(c) => c.status == CRITICAL,
                })
        })
        .map(|s| s.id.clone())
        .collect()
}

/// Turns pending lock-delays into deadlines from `now_ms` and forgets expired ones.
pub fn settle_lock_delays(data: &mut StateData, now_ms: u64) {
    if data.lock_delays.is_empty() {
        return;
    }
    data.lock_delays.retain(|_, d| {
        if let LockDelay::Pending(ms) = *d {
            *d = LockDelay::Until(now_ms.saturating_add(ms));
        }
        matches!(*d, LockDelay::Until(end) if end > now_ms)
    });
}

/// Whether a lock-delay on `key` is still running at `now_ms`.
pub fn in_lock_delay(lock_delays: &BTreeMap<String, LockDelay>, key: &str, now_ms: u64) -> bool {
    match lock_delays.get(key) {
        Some(LockDelay::Until(end)) => now_ms < *end,
        Some(LockDelay::Pending(_)) => true,
        None => false,
    }
}

/// Destroys session `id` at `index`: releases or deletes every key it holds and starts their
/// lock-delays (from `now_ms` when known). Returns the KV keys that changed; destroying an
/// unknown session changes nothing.
pub fn invalidate(data: &mut StateData, id: &str, index: u64, now_ms: Option<u64>) -> Vec<String> {
    let Some(session) = data.sessions.remove(id) else {
        return Vec::new();
    };
    data.session_index = index;
    let held: Vec<String> =
        data.kvs.iter().filter(|(_, e)| e.session.as_deref() == Some(id)).map(|(k, _)| k.to_string()).collect();
    let delay_ms = session.lock_delay_ns / 1_000_000;
    for key in &held {
        match session.behavior {
            Behavior::Release => {
                data.kvs.update(key, |entry| {
                    entry.session = None;
                    entry.modify_index = index;
                });
            }
            Behavior::Delete => {
                data.kvs.remove(key);
                data.tombstones.insert(key.clone(), index);
            }
        }
        if delay_ms > 0 {
            let delay = match now_ms {
                Some(now) => LockDelay::Until(now.saturating_add(delay_ms)),
                None => LockDelay::Pending(delay_ms),
            };
            data.lock_delays.insert(key.clone(), delay);
        }
    }
    if !held.is_empty() {
        data.kv_index = data.kv_index.max(index);
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::catalog::{DeregisterRequest, HealthCheck, Node, RegisterRequest, PASSING};
    use crate::state::command::{Command, CommandResponse, KvOp, KvVerb};
    use crate::state::StateStore;

    fn register(store: &StateStore, node: &str, checks: &[(&str, &str)], index: u64) {
        let req = RegisterRequest {
            node: Node { node: node.into(), address: "127.0.0.1".into(), ..Node::default() },
            checks: checks
                .iter()
                .map(|(id, status)| HealthCheck {
                    check_id: (*id).into(),
                    name: (*id).into(),
                    status: (*status).into(),
                    ..HealthCheck::default()
                })
                .collect(),
            ..Default::default()
        };
        assert_eq!(store.apply(&Command::CatalogRegister(Box::new(req)), index), CommandResponse::Ok);
    }

    fn create(
        store: &StateStore,
        id: &str,
        node: &str,
        behavior: Behavior,
        checks: &[&str],
        index: u64,
    ) -> CommandResponse {
        let s = Session {
            id: id.into(),
            node: node.into(),
            lock_delay_ns: DEFAULT_LOCK_DELAY_NS,
            behavior,
            node_checks: checks.iter().map(|c| c.to_string()).collect(),
            ..Session::default()
        };
        store.apply(&Command::SessionCreate(Box::new(s)), index)
    }

    fn lock(key: &str, session: &str, now_ms: u64) -> Command {
        Command::Kv(KvOp::new(KvVerb::Lock, key).with_session(session).with_value(b"v".to_vec()).with_now_ms(now_ms))
    }

    fn entry(store: &StateStore, key: &str) -> Option<crate::state::KvEntry> {
        store.read(|d| d.kvs.entry(key))
    }

    /// `PUT /v1/session/create` refuses unknown nodes and missing or critical checks, but
    /// tolerates the default `serfHealth` while gossip does not register it.
    #[test]
    fn create_validates_node_and_checks() {
        let store = StateStore::new();
        assert!(
            matches!(create(&store, "s1", "n1", Behavior::Release, &[SERF_HEALTH], 2), CommandResponse::Failed(e) if e.to_string().contains("Missing node registration"))
        );
        register(&store, "n1", &[("c1", PASSING), ("bad", CRITICAL)], 3);
        assert_eq!(create(&store, "s1", "n1", Behavior::Release, &[SERF_HEALTH, "c1"], 4), CommandResponse::Ok);
        assert!(matches!(create(&store, "s2", "n1", Behavior::Release, &["nope"], 5), CommandResponse::Failed(_)));
        assert!(
            matches!(create(&store, "s3", "n1", Behavior::Release, &["bad"], 6), CommandResponse::Failed(e) if e.to_string().contains("critical"))
        );
        store.read(|d| {
            assert_eq!(d.sessions.len(), 1);
            assert_eq!((d.sessions["s1"].create_index, d.session_index), (4, 4));
        });
    }

    /// `?acquire=`/`?release=`: LockIndex counts acquisitions, re-acquire by the holder keeps it,
    /// another session gets `false`, an unknown session an error.
    #[test]
    fn acquire_release_and_lock_index() {
        let store = StateStore::new();
        register(&store, "n1", &[], 2);
        create(&store, "a", "n1", Behavior::Release, &[], 3);
        create(&store, "b", "n1", Behavior::Release, &[], 4);
        assert_eq!(store.apply(&lock("k", "a", 1000), 5), CommandResponse::Bool(true));
        assert_eq!(store.apply(&lock("k", "a", 1000), 6), CommandResponse::Bool(true));
        let e = entry(&store, "k").expect("k");
        assert_eq!((e.lock_index, e.modify_index, e.session.as_deref()), (1, 6, Some("a")));
        assert_eq!(store.apply(&lock("k", "b", 1000), 7), CommandResponse::Bool(false));
        assert!(
            matches!(store.apply(&lock("k", "zz", 1000), 8), CommandResponse::Failed(crate::error::ApplyError::UnknownSession(id)) if id == "zz")
        );
        let release = |s: &str| Command::Kv(KvOp::new(KvVerb::Unlock, "k").with_session(s));
        assert_eq!(store.apply(&release("b"), 9), CommandResponse::Bool(false));
        assert_eq!(store.apply(&release("a"), 10), CommandResponse::Bool(true));
        assert_eq!(store.apply(&lock("k", "b", 1000), 11), CommandResponse::Bool(true));
        assert_eq!(entry(&store, "k").map(|e| e.lock_index), Some(2));
    }

    /// Destroying a session releases its locks (LockIndex unchanged) and starts a lock-delay
    /// that only the proposer's timestamp ends.
    #[test]
    fn destroy_releases_with_lock_delay() {
        let store = StateStore::new();
        register(&store, "n1", &[], 2);
        create(&store, "a", "n1", Behavior::Release, &[], 3);
        create(&store, "b", "n1", Behavior::Release, &[], 4);
        store.apply(&lock("k", "a", 1000), 5);
        store.apply(&Command::SessionDestroy { id: "a".into(), now_ms: 10_000 }, 6);
        let e = entry(&store, "k").expect("k");
        assert_eq!((e.session, e.lock_index, e.modify_index), (None, 1, 6));
        // 15 s lock-delay from 10 000 ms.
        assert_eq!(store.apply(&lock("k", "b", 24_999), 7), CommandResponse::Bool(false));
        assert_eq!(store.apply(&lock("k", "b", 25_000), 8), CommandResponse::Bool(true));
        assert_eq!(entry(&store, "k").map(|e| e.lock_index), Some(2));
        store.read(|d| assert!(d.lock_delays.is_empty()));
    }

    /// Behavior `delete` deletes held keys, leaving tombstones.
    #[test]
    fn behavior_delete_deletes_keys() {
        let store = StateStore::new();
        register(&store, "n1", &[], 2);
        create(&store, "a", "n1", Behavior::Delete, &[], 3);
        store.apply(&lock("eph", "a", 1000), 4);
        store.apply(&Command::SessionDestroy { id: "a".into(), now_ms: 2000 }, 5);
        assert!(entry(&store, "eph").is_none());
        store.read(|d| assert_eq!(d.tombstones.get("eph"), Some(&5)));
    }

    /// Deregistering the node invalidates its sessions; the pending lock-delay starts at the next
    /// timestamped command.
    #[test]
    fn node_deregister_invalidates() {
        let store = StateStore::new();
        register(&store, "n1", &[], 2);
        register(&store, "n2", &[], 3);
        create(&store, "a", "n1", Behavior::Release, &[SERF_HEALTH], 4);
        create(&store, "b", "n2", Behavior::Release, &[], 5);
        store.apply(&lock("k", "a", 1000), 6);
        store.apply(&Command::CatalogDeregister(DeregisterRequest { node: "n1".into(), ..Default::default() }), 7);
        store.read(|d| assert!(!d.sessions.contains_key("a") && d.sessions.contains_key("b")));
        assert_eq!(entry(&store, "k").and_then(|e| e.session), None);
        assert_eq!(store.apply(&lock("k", "b", 50_000), 8), CommandResponse::Bool(false));
        assert_eq!(store.apply(&lock("k", "b", 65_000), 9), CommandResponse::Bool(true));
    }

    /// A linked check going critical, or being deregistered, invalidates the session.
    #[test]
    fn check_critical_or_removed_invalidates() {
        let store = StateStore::new();
        register(&store, "n1", &[("c1", PASSING), ("c2", PASSING)], 2);
        create(&store, "a", "n1", Behavior::Release, &["c1"], 3);
        create(&store, "b", "n1", Behavior::Release, &["c2"], 4);
        create(&store, "c", "n1", Behavior::Release, &[], 5);
        register(&store, "n1", &[("c1", CRITICAL)], 6);
        store.read(|d| assert!(!d.sessions.contains_key("a") && d.sessions.contains_key("b")));
        let dereg = DeregisterRequest { node: "n1".into(), check_id: Some("c2".into()), ..Default::default() };
        store.apply(&Command::CatalogDeregister(dereg), 7);
        store.read(|d| {
            assert_eq!(d.sessions.keys().collect::<Vec<_>>(), vec!["c"]);
            assert_eq!(d.session_index, 7);
        });
    }
}
