//! The replicated state store: what every server holds in memory and rebuilds from Raft.
//!
//! Every mutation arrives as a [`Command`] in a committed Raft log entry and is applied here
//! deterministically, stamped with the entry's Raft index — the `CreateIndex`/`ModifyIndex`
//! Consul clients see. Reads take a short shared lock; blocking queries wait on the
//! [`watch::WatchHub`], which is notified only for the keys a write touched.
//!
//! Owns the data model and how each [`command::Command`] changes it (including the exactly-once
//! [`dedup`] window and the [`acl`] tables), and the `/v1/snapshot` archive format. The bottom
//! data layer: it may call only the leaf modules (`error`, `duration`, `coordinate`); nothing
//! here knows about Raft, the network or HTTP.

pub mod acl;
pub mod archive;
pub mod autopilot;
pub mod catalog;
pub mod command;
pub mod connect_ca;
pub mod coordinate;
pub mod dedup;
pub mod ext_fields;
pub mod ext_tables;
pub mod kv;
pub mod kv_table;
pub mod prepared_query;
pub mod session;
pub mod txn;
pub mod watch;

use std::collections::BTreeMap;

use bytes::Bytes;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::error::ApplyError;
use crate::state::command::{Command, CommandResponse};
use txn::{KvOverlay, TxnOutcome, TxnRun};
use watch::WatchHub;

/// One KV entry with Consul's metadata (`api/kv.go` `KVPair`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// Raft index of the write that created the key.
    pub create_index: u64,
    /// Raft index of the last write to the key.
    pub modify_index: u64,
    /// Number of times a session acquired the key.
    pub lock_index: u64,
    /// Opaque client flags.
    pub flags: u64,
    /// The value.
    pub value: Bytes,
    /// The session holding the lock, if any.
    pub session: Option<String>,
}

pub use session::Session;

/// The whole replicated state. Serialised into Raft snapshots and `/v1/snapshot` archives as its
/// fields in order, then the [`ext_tables`] envelope that carries everything added since.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateData {
    /// KV entries by key.
    pub kvs: kv_table::KvTable,
    /// Tombstones of deleted keys: key → Raft index of the delete. They keep prefix indexes
    /// moving forward so a prefix watch wakes on deletes; the leader reaps old ones.
    pub tombstones: BTreeMap<String, u64>,
    /// Sessions by ID.
    pub sessions: BTreeMap<String, Session>,
    /// Nodes, services and checks.
    pub catalog: catalog::Catalog,
    /// Highest index of any KV or tombstone change (Consul's `kvs` table index).
    pub kv_index: u64,
    /// Highest Raft index applied to this state.
    pub last_index: u64,
    /// Index of the last change to the session table.
    pub session_index: u64,
    /// Running lock-delays by KV key (see [`session`]).
    pub lock_delays: BTreeMap<String, session::LockDelay>,
    /// Network coordinates by (node, segment).
    pub coordinates: coordinate::CoordinateTable,
    /// Results of recent client writes by request id: what makes every write apply once.
    /// Kept across `/v1/snapshot` restores (it describes the log, not the data).
    pub dedup: dedup::DedupWindow,
    /// ACL tokens, policies, roles, auth methods, binding rules and the bootstrap state.
    pub acl: acl::AclTables,
    /// The built-in Connect CA: roots (with the active signing key) and configuration.
    pub connect_ca: connect_ca::CaTables,
    /// The autopilot configuration, once the first leader seeded it.
    pub autopilot: Option<autopilot::AutopilotConfig>,
    /// Extension tables written by a newer version, kept to be saved again unchanged.
    pub unknown_tables: ext_tables::UnknownTables,
    /// Prepared queries (an [`ext_tables`] table).
    pub prepared_queries: prepared_query::PreparedQueries,
}

/// The fields every snapshot since the autopilot configuration carries, in their saved order.
/// New fields never go here: they are tables of the [`ext_tables`] envelope that follows.
macro_rules! state_fields {
    ($m:ident) => {
        $m!(
            kvs,
            tombstones,
            sessions,
            catalog,
            kv_index,
            last_index,
            session_index,
            lock_delays,
            coordinates,
            dedup,
            acl,
            connect_ca,
            autopilot
        )
    };
}

impl Serialize for StateData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeStruct};
        let ext = ext_tables::gather(self).map_err(S::Error::custom)?;
        let mut out = serializer.serialize_struct("StateData", 14)?;
        macro_rules! put {
            ($($f:ident),*) => { $(out.serialize_field(stringify!($f), &self.$f)?;)* };
        }
        state_fields!(put);
        out.serialize_field("ext", &ext)?;
        out.end()
    }
}

/// [`StateData`] as saved: the fixed fields, then the extension envelope.
#[derive(Deserialize)]
struct StateDataWire {
    kvs: kv_table::KvTable,
    tombstones: BTreeMap<String, u64>,
    sessions: BTreeMap<String, Session>,
    catalog: catalog::Catalog,
    kv_index: u64,
    last_index: u64,
    session_index: u64,
    lock_delays: BTreeMap<String, session::LockDelay>,
    coordinates: coordinate::CoordinateTable,
    dedup: dedup::DedupWindow,
    acl: acl::AclTables,
    connect_ca: connect_ca::CaTables,
    autopilot: Option<autopilot::AutopilotConfig>,
    ext: Vec<ext_tables::ExtEntry>,
}

impl<'de> Deserialize<'de> for StateData {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let w = StateDataWire::deserialize(deserializer)?;
        macro_rules! take {
            ($($f:ident),*) => { StateData { $($f: w.$f,)* ..Default::default() } };
        }
        let mut data = state_fields!(take);
        ext_tables::scatter(&mut data, w.ext).map_err(D::Error::custom)?;
        Ok(data)
    }
}

/// The in-memory state store shared by the Raft state machine (writer) and the HTTP API (readers).
#[derive(Debug)]
pub struct StateStore {
    data: RwLock<StateData>,
    watches: WatchHub,
    /// Highest Raft index applied, published after each applied batch; read barriers wait on it.
    applied: tokio::sync::watch::Sender<u64>,
}

impl Default for StateStore {
    fn default() -> Self {
        StateStore { data: RwLock::default(), watches: WatchHub::default(), applied: tokio::sync::watch::channel(0).0 }
    }
}

impl StateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes that everything up to `index` has been applied.
    pub fn publish_applied(&self, index: u64) {
        self.applied.send_if_modified(|current| {
            let moved = index > *current;
            if moved {
                *current = index;
            }
            moved
        });
    }

    /// Waits until everything up to `index` has been applied, or `timeout` passes.
    /// Returns whether the index was reached.
    pub async fn wait_applied(&self, index: u64, timeout: std::time::Duration) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= index)).await.is_ok_and(|r| r.is_ok())
    }

    /// Runs `f` against a consistent view of the state.
    pub fn read<T>(&self, f: impl FnOnce(&StateData) -> T) -> T {
        f(&self.data.read())
    }

    /// The watch hub blocking queries subscribe to.
    pub fn watches(&self) -> &WatchHub {
        &self.watches
    }

    /// Highest Raft index applied.
    pub fn last_index(&self) -> u64 {
        self.data.read().last_index
    }

    /// Applies one committed command at Raft index `index`. Deterministic: the same commands at
    /// the same indexes give the same state on every server.
    pub fn apply(&self, cmd: &Command, index: u64) -> CommandResponse {
        if let Command::Batch(cmds) = cmd {
            return CommandResponse::Batch(cmds.iter().map(|c| self.apply(c, index)).collect());
        }
        if let Command::WithExt { cmd, ext } = cmd {
            let mut cmd = (**cmd).clone();
            ext_fields::attach(&mut cmd, &ext.0);
            return self.apply(&cmd, index);
        }
        if let Command::Tracked { id, cmd } = cmd {
            // Look up, apply, record: three lock scopes are fine, the state machine is the only
            // writer and applies one entry at a time.
            let seen = self.data.read().dedup.lookup(id);
            return match seen {
                dedup::Lookup::Applied { index: first, response } => {
                    self.note_applied(index);
                    CommandResponse::Replayed { index: first, response: Box::new(response) }
                }
                dedup::Lookup::Expired => {
                    self.note_applied(index);
                    CommandResponse::Expired
                }
                dedup::Lookup::New => {
                    let response = self.apply(cmd, index);
                    self.data.write().dedup.record(*id, index, response.clone());
                    response
                }
            };
        }
        let mut changed: Vec<String> = Vec::new();
        // Catalog changes notify exact watch keys only (they are not KV keys).
        let mut changed_exact: Vec<String> = Vec::new();
        let sessions_changed;
        let mut acl_changed = false;
        let mut ca_changed = false;
        let mut autopilot_changed = false;
        let mut queries_changed = false;
        let response = {
            let mut data = self.data.write();
            data.last_index = data.last_index.max(index);
            let session_index = data.session_index;
            let response = match cmd {
                Command::Kv(op) => 'kv: {
                    if let Some(now) = op.now_ms {
                        session::settle_lock_delays(&mut data, now);
                    }
                    // Consul answers an error, not `false`, for a lock with an unknown session.
                    if op.verb == crate::state::command::KvVerb::Lock {
                        if let Some(id) = op.session.as_deref().filter(|s| !s.is_empty()) {
                            if !data.sessions.contains_key(id) {
                                break 'kv CommandResponse::Failed(ApplyError::UnknownSession(id.to_string()));
                            }
                        }
                    }
                    let mut overlay = KvOverlay::new(&data);
                    let ok = overlay.apply_op(op, index).is_ok();
                    let changes = overlay.finish();
                    if ok {
                        changed = changes.commit(&mut data, index);
                    }
                    CommandResponse::Bool(ok)
                }
                Command::Txn(ops) => {
                    if let Some(now) = ops.iter().filter_map(txn::TxnOp::now_ms).max() {
                        session::settle_lock_delays(&mut data, now);
                    }
                    let mut run = TxnRun::new(&data);
                    let report = run.run(ops, index);
                    let changes = run.finish();
                    if report.errors.is_empty() {
                        let committed = changes.commit(&mut data, index);
                        changed = committed.kv;
                        changed_exact = committed.exact;
                    }
                    // KV-only transactions keep answering the response shape remembered (and
                    // snapshotted) by request deduplication before catalog operations existed.
                    if ops.iter().all(|op| matches!(op, txn::TxnOp::Kv(_))) {
                        CommandResponse::Txn(TxnOutcome {
                            results: report
                                .results
                                .into_iter()
                                .filter_map(|e| match e {
                                    txn::TxnEntry::Kv(r) => Some(r),
                                    _ => None,
                                })
                                .collect(),
                            errors: report.errors,
                        })
                    } else {
                        CommandResponse::TxnReport(report)
                    }
                }
                Command::Restore(restored) => {
                    changed = restore(&mut data, restored, index);
                    CommandResponse::Ok
                }
                Command::ReapTombstones { up_to } => {
                    data.tombstones.retain(|_, idx| *idx > *up_to);
                    CommandResponse::Ok
                }
                Command::Noop => CommandResponse::Ok,
                Command::CatalogRegister(req) => match data.catalog.register(req, index) {
                    Ok(keys) => {
                        changed_exact = keys;
                        changed = invalidate_unsupported_sessions(&mut data, &req.node.node, index);
                        CommandResponse::Ok
                    }
                    Err(e) => CommandResponse::Failed(ApplyError::InvalidRegistration(e)),
                },
                Command::CatalogDeregister(req) => {
                    changed_exact = data.catalog.deregister(req, index);
                    let whole_node = req.service_id.is_none() && req.check_id.is_none();
                    if whole_node && data.coordinates.remove_node(&req.node, index) {
                        changed_exact.push(coordinate::WATCH_COORDINATES.to_string());
                    }
                    changed = invalidate_unsupported_sessions(&mut data, &req.node, index);
                    CommandResponse::Ok
                }
                Command::SessionCreate(s) => match session::create_error(&data, s) {
                    Some(e) => CommandResponse::Failed(ApplyError::SessionRefused(e)),
                    None => {
                        let mut s = (**s).clone();
                        s.create_index = index;
                        s.modify_index = index;
                        data.sessions.insert(s.id.clone(), s);
                        data.session_index = index;
                        CommandResponse::Ok
                    }
                },
                Command::SessionDestroy { id, now_ms } => {
                    session::settle_lock_delays(&mut data, *now_ms);
                    changed = session::invalidate(&mut data, id, index, Some(*now_ms));
                    CommandResponse::Ok
                }
                Command::CoordinateBatchUpdate(updates) => {
                    let data = &mut *data;
                    if data.coordinates.batch_update(&data.catalog, updates, index) {
                        changed_exact.push(coordinate::WATCH_COORDINATES.to_string());
                    }
                    CommandResponse::Ok
                }
                Command::Acl(op) => match acl::apply(&mut data, op, index) {
                    Ok(applied) => {
                        acl_changed = true;
                        CommandResponse::Acl(applied)
                    }
                    Err(e) => CommandResponse::Failed(e),
                },
                Command::ConnectCa(op) => {
                    ca_changed = connect_ca::apply(&mut data, op, index);
                    CommandResponse::Ok
                }
                Command::Autopilot(op) => {
                    autopilot_changed = autopilot::apply(&mut data, op, index);
                    CommandResponse::Bool(autopilot_changed)
                }
                Command::PreparedQuery(op) => match prepared_query::apply(&mut data, op, index) {
                    Ok(changed) => {
                        queries_changed = changed;
                        CommandResponse::Ok
                    }
                    Err(e) => CommandResponse::Failed(ApplyError::PreparedQueryInvalid(e)),
                },
                // Handled above, before taking the lock.
                Command::Batch(_) | Command::Tracked { .. } | Command::WithExt { .. } => CommandResponse::Ok,
            };
            sessions_changed = data.session_index != session_index;
            // A session's prepared queries end with it.
            if sessions_changed && prepared_query::drop_orphans(&mut data, index) {
                queries_changed = true;
            }
            response
        };
        if matches!(cmd, Command::Restore(_)) {
            self.watches.notify_all();
        } else {
            for key in &changed {
                self.watches.notify_key(key);
            }
            for key in &changed_exact {
                self.watches.notify_exact(key);
            }
            if sessions_changed {
                self.watches.notify_exact(session::WATCH_SESSIONS);
            }
            if acl_changed {
                self.watches.notify_exact(acl::WATCH_ACL);
            }
            if ca_changed {
                self.watches.notify_exact(connect_ca::WATCH_CA);
            }
            if autopilot_changed {
                self.watches.notify_exact(autopilot::WATCH_AUTOPILOT);
            }
            if queries_changed {
                self.watches.notify_exact(prepared_query::WATCH_QUERIES);
            }
        }
        response
    }

    /// Records that `index` was applied without a command (Raft blank or membership entries).
    pub fn note_applied(&self, index: u64) {
        let mut data = self.data.write();
        data.last_index = data.last_index.max(index);
    }

    /// Serialises the whole state (for Raft snapshots and `/v1/snapshot`).
    pub fn serialize(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(&*self.data.read())
    }

    /// Replaces the whole state (Raft snapshot install or start-up) and wakes every watcher.
    pub fn replace(&self, data: StateData) {
        *self.data.write() = data;
        self.watches.notify_all();
    }
}

/// Decodes a serialised state, also as written before the autopilot configuration, the Connect
/// CA or the ACL tables existed (newest shape first).
pub fn deserialize_state(bytes: &[u8]) -> Result<StateData, postcard::Error> {
    let mut data: StateData = match postcard::from_bytes(bytes) {
        Ok(data) => data,
        Err(e) => match postcard::from_bytes::<StateDataBeforeExt>(bytes) {
            Ok(old) => StateData::from(old),
            Err(_) => match postcard::from_bytes::<StateDataBeforeAutopilot>(bytes) {
                Ok(old) => StateData::from(old),
                Err(_) => match postcard::from_bytes::<StateDataBeforeCa>(bytes) {
                    Ok(old) => StateData::from(old),
                    Err(_) => postcard::from_bytes::<StateDataBeforeAcl>(bytes).map(StateData::from).map_err(|_| e)?,
                },
            },
        },
    };
    data.catalog.rebuild();
    data.acl.rebuild();
    Ok(data)
}

/// [`StateData`] before the extension envelope (see [`StateDataBeforeAcl`] for why): the last
/// compatibility shape, since every later addition is an [`ext_tables`] table.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StateDataBeforeExt {
    kvs: kv_table::KvTable,
    tombstones: BTreeMap<String, u64>,
    sessions: BTreeMap<String, Session>,
    catalog: catalog::Catalog,
    kv_index: u64,
    last_index: u64,
    session_index: u64,
    lock_delays: BTreeMap<String, session::LockDelay>,
    coordinates: coordinate::CoordinateTable,
    dedup: dedup::DedupWindow,
    acl: acl::AclTables,
    connect_ca: connect_ca::CaTables,
    autopilot: Option<autopilot::AutopilotConfig>,
}

impl From<StateDataBeforeExt> for StateData {
    fn from(w: StateDataBeforeExt) -> Self {
        macro_rules! take {
            ($($f:ident),*) => { StateData { $($f: w.$f,)* ..Default::default() } };
        }
        state_fields!(take)
    }
}

/// [`StateData`] before the `autopilot` field (see [`StateDataBeforeAcl`] for why).
#[derive(Debug, Default, Serialize, Deserialize)]
struct StateDataBeforeAutopilot {
    kvs: kv_table::KvTable,
    tombstones: BTreeMap<String, u64>,
    sessions: BTreeMap<String, Session>,
    catalog: catalog::Catalog,
    kv_index: u64,
    last_index: u64,
    session_index: u64,
    lock_delays: BTreeMap<String, session::LockDelay>,
    coordinates: coordinate::CoordinateTable,
    dedup: dedup::DedupWindow,
    acl: acl::AclTables,
    connect_ca: connect_ca::CaTables,
}

impl From<StateDataBeforeAutopilot> for StateData {
    fn from(old: StateDataBeforeAutopilot) -> Self {
        StateData {
            kvs: old.kvs,
            tombstones: old.tombstones,
            sessions: old.sessions,
            catalog: old.catalog,
            kv_index: old.kv_index,
            last_index: old.last_index,
            session_index: old.session_index,
            lock_delays: old.lock_delays,
            coordinates: old.coordinates,
            dedup: old.dedup,
            acl: old.acl,
            connect_ca: old.connect_ca,
            autopilot: None,
            ..Default::default()
        }
    }
}

/// [`StateData`] before the `connect_ca` field (see [`StateDataBeforeAcl`] for why).
#[derive(Debug, Default, Serialize, Deserialize)]
struct StateDataBeforeCa {
    kvs: kv_table::KvTable,
    tombstones: BTreeMap<String, u64>,
    sessions: BTreeMap<String, Session>,
    catalog: catalog::Catalog,
    kv_index: u64,
    last_index: u64,
    session_index: u64,
    lock_delays: BTreeMap<String, session::LockDelay>,
    coordinates: coordinate::CoordinateTable,
    dedup: dedup::DedupWindow,
    acl: acl::AclTables,
}

impl From<StateDataBeforeCa> for StateData {
    fn from(old: StateDataBeforeCa) -> Self {
        StateData {
            kvs: old.kvs,
            tombstones: old.tombstones,
            sessions: old.sessions,
            catalog: old.catalog,
            kv_index: old.kv_index,
            last_index: old.last_index,
            session_index: old.session_index,
            lock_delays: old.lock_delays,
            coordinates: old.coordinates,
            dedup: old.dedup,
            acl: old.acl,
            connect_ca: connect_ca::CaTables::default(),
            autopilot: None,
            ..Default::default()
        }
    }
}

/// [`StateData`] before the `acl` field: postcard has no field names, so `#[serde(default)]`
/// cannot fill a missing trailing field and snapshots written by older versions need this
/// shape to load.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StateDataBeforeAcl {
    kvs: kv_table::KvTable,
    tombstones: BTreeMap<String, u64>,
    sessions: BTreeMap<String, Session>,
    catalog: catalog::Catalog,
    kv_index: u64,
    last_index: u64,
    session_index: u64,
    lock_delays: BTreeMap<String, session::LockDelay>,
    coordinates: coordinate::CoordinateTable,
    dedup: dedup::DedupWindow,
}

impl From<StateDataBeforeAcl> for StateData {
    fn from(old: StateDataBeforeAcl) -> Self {
        StateData {
            kvs: old.kvs,
            tombstones: old.tombstones,
            sessions: old.sessions,
            catalog: old.catalog,
            kv_index: old.kv_index,
            last_index: old.last_index,
            session_index: old.session_index,
            lock_delays: old.lock_delays,
            coordinates: old.coordinates,
            dedup: old.dedup,
            acl: acl::AclTables::default(),
            connect_ca: connect_ca::CaTables::default(),
            autopilot: None,
            ..Default::default()
        }
    }
}

/// Invalidates the sessions on `node` that the catalog no longer supports (node gone, linked
/// check gone or critical); returns the KV keys that changed.
fn invalidate_unsupported_sessions(data: &mut StateData, node: &str, index: u64) -> Vec<String> {
    let mut changed = Vec::new();
    for id in session::unsupported_on_node(data, node) {
        changed.extend(session::invalidate(data, &id, index, None));
    }
    changed
}

/// Applies a snapshot restore at `index`. Every restored entry is re-stamped with `index` as its
/// ModifyIndex and every key that disappears gets a tombstone at `index`, so every index a
/// watcher sees afterwards is larger than any it saw before: restores never make
/// `X-Consul-Index` go backwards.
fn restore(data: &mut StateData, restored: &StateData, index: u64) -> Vec<String> {
    let mut changed: Vec<String> = data.kvs.keys().map(str::to_string).collect();
    let mut kvs = restored.kvs.clone();
    kvs.restamp(index);
    let mut tombstones = restored.tombstones.clone();
    for key in data.kvs.keys() {
        if !kvs.contains_key(key) {
            tombstones.insert(key.to_string(), index);
        }
    }
    for idx in tombstones.values_mut() {
        *idx = (*idx).min(index);
    }
    changed.extend(kvs.keys().map(str::to_string));
    data.kvs = kvs;
    data.tombstones = tombstones;
    data.sessions = restored.sessions.clone();
    data.lock_delays = restored.lock_delays.clone();
    data.session_index = index;
    // The catalog comes back as saved, with every index moved to the restore's so blocking
    // catalog and health queries see a change and never an index going backwards.
    let mut cat = restored.catalog.clone();
    cat.rebuild();
    cat.nodes_index = index;
    cat.services_index = index;
    cat.checks_index = index;
    let names: Vec<String> =
        cat.services.values().map(|s| s.service.clone()).chain(data.catalog.service_indexes.keys().cloned()).collect();
    for name in names {
        cat.service_indexes.insert(name, index);
    }
    let nodes: Vec<String> = cat.nodes.keys().cloned().chain(data.catalog.node_indexes.keys().cloned()).collect();
    for name in nodes {
        cat.node_indexes.insert(name, index);
    }
    data.catalog = cat;
    let mut coordinates = restored.coordinates.clone();
    coordinates.retain_catalog_nodes(&data.catalog);
    coordinates.index = index;
    data.coordinates = coordinates;
    // ACL objects come back as saved; every table index moves to the restore's.
    let mut acl = restored.acl.clone();
    acl.rebuild();
    acl.tokens_index = index;
    acl.policies_index = index;
    acl.roles_index = index;
    acl.auth_methods_index = index;
    acl.binding_rules_index = index;
    data.acl = acl;
    // The CA comes back as saved (its keys included); a restore without one leaves the leader
    // to bootstrap a new root.
    let mut ca = restored.connect_ca.clone();
    ca.restamp(index);
    data.connect_ca = ca;
    // A snapshot from before autopilot existed keeps the running configuration.
    if let Some(mut ap) = restored.autopilot.clone() {
        ap.modify_index = index;
        ap.create_index = ap.create_index.min(index);
        data.autopilot = Some(ap);
    }
    data.unknown_tables = restored.unknown_tables.clone();
    data.prepared_queries = prepared_query::restored(&restored.prepared_queries, index);
    data.kv_index = index;
    data.last_index = data.last_index.max(index);
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::command::{KvOp, KvVerb};

    fn set(key: &str, value: &str) -> Command {
        Command::Kv(KvOp::new(KvVerb::Set, key).with_value(value.as_bytes().to_vec()))
    }

    #[test]
    fn apply_stamps_indexes() {
        let store = StateStore::new();
        assert_eq!(store.apply(&set("a", "1"), 5), CommandResponse::Bool(true));
        assert_eq!(store.apply(&set("a", "2"), 7), CommandResponse::Bool(true));
        store.read(|d| {
            let e = &d.kvs["a"];
            assert_eq!((e.create_index, e.modify_index, e.value.as_ref()), (5, 7, b"2".as_ref()));
            assert_eq!(d.kv_index, 7);
        });
    }

    #[test]
    fn batch_commands_apply_independently_at_one_index() {
        let store = StateStore::new();
        let cas_fail = Command::Kv(KvOp::new(KvVerb::Cas, "a").with_index(99));
        let batch = Command::Batch(vec![set("a", "1"), cas_fail, set("b", "2")]);
        let resp = store.apply(&batch, 9);
        let expected = vec![CommandResponse::Bool(true), CommandResponse::Bool(false), CommandResponse::Bool(true)];
        assert_eq!(resp, CommandResponse::Batch(expected));
        store.read(|d| {
            assert_eq!(d.kvs["a"].modify_index, 9);
            assert_eq!(d.kvs["b"].modify_index, 9);
            assert_eq!(d.kvs["a"].value.as_ref(), b"1");
        });
    }

    #[test]
    fn restore_keeps_indexes_monotonic() {
        let store = StateStore::new();
        store.apply(&set("old", "x"), 10);
        let mut snap = StateData::default();
        snap.kvs.insert(
            "new".into(),
            kv_table::KvRecord {
                create_index: 3,
                modify_index: 3,
                lock_index: 0,
                flags: 0,
                value: Bytes::from_static(b"v"),
                session: None,
            },
        );
        store.apply(&Command::Restore(Box::new(snap)), 12);
        store.read(|d| {
            assert_eq!(d.kvs["new"].modify_index, 12);
            assert_eq!(d.tombstones["old"], 12);
            assert!(!d.kvs.contains_key("old"));
            assert_eq!(d.kv_index, 12);
        });
    }

    /// A snapshot written before the ACL tables existed still loads (with empty ACL tables).
    #[test]
    fn state_before_acl_loads() {
        let mut old = StateDataBeforeAcl { kv_index: 7, last_index: 9, ..Default::default() };
        old.tombstones.insert("gone".into(), 3);
        let bytes = postcard::to_allocvec(&old).expect("serialize");
        let back = deserialize_state(&bytes).expect("deserialize");
        assert_eq!((back.kv_index, back.last_index, back.tombstones.get("gone")), (7, 9, Some(&3)));
        assert_eq!(back.acl, acl::AclTables::default());
    }

    #[test]
    fn state_before_connect_ca_loads() {
        let mut old = StateDataBeforeCa { kv_index: 4, last_index: 11, ..Default::default() };
        old.acl.tokens_index = 10;
        let bytes = postcard::to_allocvec(&old).expect("serialize");
        let back = deserialize_state(&bytes).expect("deserialize");
        assert_eq!((back.kv_index, back.last_index, back.acl.tokens_index), (4, 11, 10));
        assert_eq!(back.connect_ca, connect_ca::CaTables::default());
    }

    #[test]
    fn state_before_autopilot_loads() {
        let mut old = StateDataBeforeAutopilot { kv_index: 6, last_index: 12, ..Default::default() };
        old.connect_ca.cluster_id = "cluster".into();
        old.acl.tokens_index = 9;
        let bytes = postcard::to_allocvec(&old).expect("serialize");
        let back = deserialize_state(&bytes).expect("deserialize");
        assert_eq!((back.kv_index, back.last_index, back.acl.tokens_index), (6, 12, 9));
        assert_eq!(back.connect_ca.cluster_id, "cluster");
        assert_eq!(back.autopilot, None);
    }

    #[test]
    fn state_before_ext_envelope_loads() {
        let mut old = StateDataBeforeExt { kv_index: 8, last_index: 13, ..Default::default() };
        old.autopilot = Some(autopilot::AutopilotConfig::default());
        let bytes = postcard::to_allocvec(&old).expect("serialize");
        let back = deserialize_state(&bytes).expect("deserialize");
        assert_eq!((back.kv_index, back.last_index), (8, 13));
        assert_eq!(back.autopilot, Some(autopilot::AutopilotConfig::default()));
        assert!(back.unknown_tables.0.is_empty());
    }

    #[test]
    fn serialization_round_trips() {
        let store = StateStore::new();
        store.apply(&set("a/b", "1"), 3);
        let bytes = store.serialize().expect("serialize");
        let back = deserialize_state(&bytes).expect("deserialize");
        assert_eq!(back, store.read(|d| d.clone()));
    }
}
