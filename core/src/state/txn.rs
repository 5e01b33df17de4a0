//! KV operations and atomic transactions.
//!
//! Operations run against a [`KvOverlay`]: a copy-on-write view over the committed state that
//! records sets and deletes without touching it. A transaction commits the overlay only when
//! every operation succeeded, so a rolled-back transaction leaves the state — and every index —
//! exactly as it was. Error texts follow Consul's `state/txn.go` and `state/kvs.go`.
//!
//! Catalog operations (`Node`, `Service`, `Check`) run against a private copy of the catalog,
//! taken at the first catalog write, through the same [`Catalog::register`] and
//! [`Catalog::deregister`] that `/v1/catalog` uses; the copy replaces the catalog only when the
//! whole transaction succeeded. Session deletes are checked while the transaction runs and
//! applied after its changes are committed.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::catalog::{Catalog, DeregisterRequest, HealthCheck, Node, RegisterRequest, ServiceInstance};
use super::kv_table::KvRecord;
use super::{KvEntry, StateData};
use crate::state::command::{KvOp, KvVerb};

/// One transaction operation.
///
/// Part of the Raft log encoding (postcard): new variants go at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// A KV operation.
    Kv(KvOp),
    /// A node operation (`TxnNodeOp`); `node.modify_index` is the index for `cas`/`delete-cas`.
    Node {
        /// What to do.
        verb: CatalogVerb,
        /// The node (looked up by ID when it has one, else by name, for `get`).
        node: Node,
    },
    /// A service operation (`TxnServiceOp`); `service.modify_index` is the index for
    /// `cas`/`delete-cas`.
    Service {
        /// What to do.
        verb: CatalogVerb,
        /// The node the instance is on.
        node: String,
        /// The instance (only `id` matters for `get` and the deletes).
        service: ServiceInstance,
    },
    /// A check operation (`TxnCheckOp`); `check.modify_index` is the index for
    /// `cas`/`delete-cas`.
    Check {
        /// What to do.
        verb: CatalogVerb,
        /// The check (only `node` and `check_id` matter for `get` and the deletes).
        check: HealthCheck,
    },
    /// Destroy a session (`TxnSessionOp`, whose only verb is `delete`).
    SessionDelete {
        /// Session ID.
        id: String,
        /// The proposer's clock (unix ms), starting the lock-delays of the locks it held.
        now_ms: u64,
    },
}

impl TxnOp {
    /// Whether the operation only reads.
    pub fn is_read(&self) -> bool {
        match self {
            TxnOp::Kv(op) => op.verb.is_read(),
            TxnOp::Node { verb, .. } | TxnOp::Service { verb, .. } | TxnOp::Check { verb, .. } => {
                *verb == CatalogVerb::Get
            }
            TxnOp::SessionDelete { .. } => false,
        }
    }

    /// The proposer's clock carried by the operation, if any (for lock-delays).
    pub fn now_ms(&self) -> Option<u64> {
        match self {
            TxnOp::Kv(op) => op.now_ms,
            TxnOp::SessionDelete { now_ms, .. } => Some(*now_ms),
            _ => None,
        }
    }

    /// Rough encoded size, for batching.
    pub fn approx_size(&self) -> usize {
        match self {
            TxnOp::Kv(op) => op.key.len() + op.value.len() + 32,
            TxnOp::Node { .. } => 256,
            TxnOp::Service { service, .. } => 256 + service.tags.iter().map(String::len).sum::<usize>(),
            TxnOp::Check { check, .. } => 256 + check.definition.len() + check.output.len(),
            TxnOp::SessionDelete { .. } => 64,
        }
    }
}

/// The verbs of node, service and check operations (`api.NodeOp`, `ServiceOp`, `CheckOp`).
///
/// Part of the Raft log encoding (postcard): new variants go at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CatalogVerb {
    /// Create or update.
    Set,
    /// Create or update only if `ModifyIndex` matches (0: only if absent).
    Cas,
    /// Read; fails if absent.
    Get,
    /// Remove (absent is fine).
    Delete,
    /// Remove only if present with a matching `ModifyIndex`.
    DeleteCas,
}

impl CatalogVerb {
    /// Parses the wire spelling (`"set"`, `"delete-cas"`, …).
    pub fn parse(s: &str) -> Option<CatalogVerb> {
        Some(match s {
            "set" => CatalogVerb::Set,
            "cas" => CatalogVerb::Cas,
            "get" => CatalogVerb::Get,
            "delete" => CatalogVerb::Delete,
            "delete-cas" => CatalogVerb::DeleteCas,
            _ => return None,
        })
    }
}

/// One result entry of a transaction that may hold catalog operations (`TxnResult`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnEntry {
    /// A KV result.
    Kv(TxnResult),
    /// The node as read or as stored.
    Node(Node),
    /// The service instance as read or as stored.
    Service(ServiceInstance),
    /// The check as read or as stored.
    Check(HealthCheck),
}

/// The outcome of a transaction holding catalog or session operations. (KV-only transactions
/// answer [`TxnOutcome`], whose encoding is already in remembered responses.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnReport {
    /// Results, in operation order (empty on rollback).
    pub results: Vec<TxnEntry>,
    /// Errors (empty on commit).
    pub errors: Vec<TxnError>,
}

impl TxnReport {
    /// Rough in-memory size, for bounds on remembered results.
    pub fn approx_size(&self) -> usize {
        let results: usize = self
            .results
            .iter()
            .map(|r| match r {
                TxnEntry::Kv(r) => 64 + r.entry.key.len() + r.entry.value.len(),
                TxnEntry::Check(c) => 256 + c.definition.len() + c.output.len(),
                TxnEntry::Node(_) | TxnEntry::Service(_) => 256,
            })
            .sum();
        results + self.errors.iter().map(|e| 16 + e.what.len()).sum::<usize>()
    }
}

impl From<TxnOutcome> for TxnReport {
    fn from(o: TxnOutcome) -> Self {
        TxnReport { results: o.results.into_iter().map(TxnEntry::Kv).collect(), errors: o.errors }
    }
}

/// One result entry of a transaction (`TxnResult.KV`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResult {
    /// The entry as it is after the operation.
    pub entry: KvEntry,
    /// Whether the value is reported (only `get` and `get-tree` report it; other verbs answer
    /// `"Value": null` like Consul).
    pub with_value: bool,
}

pub use crate::error::TxnError;

/// The outcome of a transaction: results when it committed, errors when it rolled back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOutcome {
    /// Results, in operation order (empty on rollback).
    pub results: Vec<TxnResult>,
    /// Errors (empty on commit).
    pub errors: Vec<TxnError>,
}

impl TxnOutcome {
    /// Rough in-memory size (keys, values, error texts), for bounds on remembered results.
    pub fn approx_size(&self) -> usize {
        let results: usize = self.results.iter().map(|r| 64 + r.entry.key.len() + r.entry.value.len()).sum();
        let errors: usize = self.errors.iter().map(|e| 16 + e.what.len()).sum();
        results + errors
    }
}

/// A copy-on-write view over the committed KV state.
#[derive(Debug)]
pub struct KvOverlay<'a> {
    base: &'a StateData,
    /// Keys written (`Some`) or deleted (`None`) by operations so far.
    writes: BTreeMap<String, Option<KvRecord>>,
}

/// The result a write or a check reports: the entry without its value (they answer
/// `"Value": null`), so the report shares nothing with what is stored.
fn without_value(key: &str, record: &KvRecord) -> Vec<TxnResult> {
    let entry = KvEntry {
        key: key.to_string(),
        create_index: record.create_index,
        modify_index: record.modify_index,
        lock_index: record.lock_index,
        flags: record.flags,
        value: Bytes::new(),
        session: record.session.clone(),
    };
    vec![TxnResult { entry, with_value: false }]
}

/// The net effect of an overlay, detached from the state it was read from.
#[derive(Debug, Default)]
pub struct KvChanges {
    writes: BTreeMap<String, Option<KvRecord>>,
}

impl<'a> KvOverlay<'a> {
    /// A view with no changes yet.
    pub fn new(base: &'a StateData) -> Self {
        KvOverlay { base, writes: BTreeMap::new() }
    }

    fn get(&self, key: &str) -> Option<&KvRecord> {
        match self.writes.get(key) {
            Some(w) => w.as_ref(),
            None => self.base.kvs.get(key),
        }
    }

    /// Every live entry whose key starts with `prefix`, in key order, with the overlay applied.
    fn tree(&self, prefix: &str) -> Vec<KvEntry> {
        let mut out: BTreeMap<&str, &KvRecord> = self.base.kvs.prefix(prefix).collect();
        for (k, w) in self.writes.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)) {
            match w {
                Some(r) => {
                    out.insert(k.as_str(), r);
                }
                None => {
                    out.remove(k.as_str());
                }
            }
        }
        out.into_iter().map(|(k, r)| r.to_entry(k)).collect()
    }

    fn session_exists(&self, session: &str) -> bool {
        self.base.sessions.contains_key(session)
    }

    /// Records `record` as the new state of `key` and returns the result the write reports.
    fn put(&mut self, key: &str, record: KvRecord) -> Vec<TxnResult> {
        let report = without_value(key, &record);
        self.writes.insert(key.to_string(), Some(record));
        report
    }

    /// What `op` makes of its key at `index`, before any lock rules. The value is copied out of
    /// the command rather than shared with it: a shared `Bytes` keeps the whole decoded buffer
    /// and a reference-count header alive for as long as the key lives.
    fn new_record(&self, op: &KvOp, index: u64) -> KvRecord {
        let value = Bytes::copy_from_slice(&op.value);
        match self.get(&op.key) {
            Some(existing) => KvRecord {
                create_index: existing.create_index,
                modify_index: index,
                lock_index: existing.lock_index,
                flags: op.flags,
                value,
                session: existing.session.clone(),
            },
            None => KvRecord {
                create_index: index,
                modify_index: index,
                lock_index: 0,
                flags: op.flags,
                value,
                session: None,
            },
        }
    }

    /// Applies one operation at Raft index `index`. `Ok` carries the results to report;
    /// `Err` the reason it failed (the overlay is then unchanged by this operation).
    pub fn apply_op(&mut self, op: &KvOp, index: u64) -> Result<Vec<TxnResult>, String> {
        let key = op.key.as_str();
        let report = |record: &KvRecord| without_value(key, record);
        match op.verb {
            KvVerb::Set => {
                let record = self.new_record(op, index);
                Ok(self.put(key, record))
            }
            KvVerb::Cas => {
                let current = self.get(key).map(|e| e.modify_index);
                let ok = match current {
                    None => op.index == 0,
                    Some(m) => op.index != 0 && m == op.index,
                };
                if !ok {
                    return Err(format!("failed to set key {key:?}, index is stale"));
                }
                let record = self.new_record(op, index);
                Ok(self.put(key, record))
            }
            KvVerb::Lock => {
                let session = op.session.as_deref().unwrap_or_default();
                if session.is_empty() {
                    return Err(format!("missing session for lock of key {key:?}"));
                }
                if !self.session_exists(session) {
                    return Err(format!("invalid session {session:?}"));
                }
                if let Some(now) = op.now_ms {
                    if super::session::in_lock_delay(&self.base.lock_delays, key, now) {
                        return Err(format!("failed to lock key {key:?}, lock delay is in effect"));
                    }
                }
                let mut record = self.new_record(op, index);
                match record.session.as_deref() {
                    Some(holder) if holder == session => {}
                    Some(_) => return Err(format!("failed to lock key {key:?}, lock is already held")),
                    None => {
                        record.lock_index += 1;
                        record.session = Some(session.to_string());
                    }
                }
                Ok(self.put(key, record))
            }
            KvVerb::Unlock => {
                let session = op.session.as_deref().unwrap_or_default();
                let mut record = self.new_record(op, index);
                if record.session.as_deref() != Some(session) || session.is_empty() {
                    return Err(format!(
                        "failed to unlock key {key:?}, lock isn't held, or is held by another session"
                    ));
                }
                record.session = None;
                Ok(self.put(key, record))
            }
            KvVerb::Get => match self.get(key) {
                Some(e) => Ok(vec![TxnResult { entry: e.to_entry(key), with_value: true }]),
                None => Err(format!("key {key:?} doesn't exist")),
            },
            KvVerb::GetTree => {
                Ok(self.tree(key).into_iter().map(|entry| TxnResult { entry, with_value: true }).collect())
            }
            KvVerb::CheckIndex => match self.get(key) {
                Some(e) if e.modify_index == op.index => Ok(report(e)),
                Some(e) => Err(format!("current modify index {} != {}", e.modify_index, op.index)),
                None => Err(format!("key {key:?} doesn't exist")),
            },
            KvVerb::CheckSession => match self.get(key) {
                Some(e) if e.session.is_some() && e.session == op.session => Ok(report(e)),
                Some(e) => Err(format!(
                    "failed session check for key {key:?}, current session {:?} != {:?}",
                    e.session.clone().unwrap_or_default(),
                    op.session.clone().unwrap_or_default()
                )),
                None => Err(format!("key {key:?} doesn't exist")),
            },
            KvVerb::CheckNotExists => match self.get(key) {
                Some(_) => Err(format!("key {key:?} exists")),
                None => Ok(Vec::new()),
            },
            KvVerb::Delete => {
                if self.get(key).is_some() {
                    self.writes.insert(key.to_string(), None);
                }
                Ok(Vec::new())
            }
            KvVerb::DeleteTree => {
                for entry in self.tree(key) {
                    self.writes.insert(entry.key, None);
                }
                Ok(Vec::new())
            }
            KvVerb::DeleteCas => match self.get(key) {
                Some(e) if op.index != 0 && e.modify_index == op.index => {
                    self.writes.insert(key.to_string(), None);
                    Ok(Vec::new())
                }
                _ => Err(format!("failed to delete key {key:?}, index is stale")),
            },
        }
    }

    /// Runs every operation in order (see [`TxnRun::run`]); KV operations only need this view,
    /// but any operation is accepted.
    pub fn run_txn(&mut self, ops: &[TxnOp], index: u64) -> TxnOutcome {
        let mut run = TxnRun::new(self.base);
        std::mem::swap(&mut run.kv.writes, &mut self.writes);
        let report = run.run(ops, index);
        std::mem::swap(&mut run.kv.writes, &mut self.writes);
        TxnOutcome {
            results: report
                .results
                .into_iter()
                .filter_map(|e| match e {
                    TxnEntry::Kv(r) => Some(r),
                    _ => None,
                })
                .collect(),
            errors: report.errors,
        }
    }

    /// Detaches the recorded changes from the borrowed state.
    pub fn finish(self) -> KvChanges {
        KvChanges { writes: self.writes }
    }
}

/// A transaction in progress: KV changes in an overlay, catalog changes in a private copy of
/// the catalog (taken at the first catalog write, so reads and KV-only transactions copy
/// nothing), session deletes listed for after the commit.
#[derive(Debug)]
pub struct TxnRun<'a> {
    kv: KvOverlay<'a>,
    catalog: Option<Catalog>,
    /// Watch keys the catalog changes touched.
    catalog_keys: Vec<String>,
    /// Nodes whose catalog entries changed: their sessions are re-checked after the commit.
    nodes: BTreeSet<String>,
    /// Sessions to destroy, with the proposer's clock.
    sessions: Vec<(String, u64)>,
}

/// The net effect of a [`TxnRun`], detached from the state it was read from.
#[derive(Debug, Default)]
pub struct TxnChanges {
    kv: KvChanges,
    catalog: Option<Catalog>,
    catalog_keys: Vec<String>,
    nodes: BTreeSet<String>,
    sessions: Vec<(String, u64)>,
}

impl<'a> TxnRun<'a> {
    /// A transaction with no changes yet.
    pub fn new(base: &'a StateData) -> Self {
        TxnRun {
            kv: KvOverlay::new(base),
            catalog: None,
            catalog_keys: Vec::new(),
            nodes: BTreeSet::new(),
            sessions: Vec::new(),
        }
    }

    fn catalog(&self) -> &Catalog {
        self.catalog.as_ref().unwrap_or(&self.kv.base.catalog)
    }

    fn catalog_mut(&mut self) -> &mut Catalog {
        let base = self.kv.base;
        self.catalog.get_or_insert_with(|| base.catalog.clone())
    }

    /// Registers through the catalog's own registration, so a transaction changes the catalog,
    /// its indexes and its watch keys exactly as `/v1/catalog/register` would.
    fn register(&mut self, req: &RegisterRequest, index: u64) -> Result<(), String> {
        let keys = self.catalog_mut().register(req, index)?;
        if !keys.is_empty() {
            self.nodes.insert(req.node.node.clone());
        }
        self.catalog_keys.extend(keys);
        Ok(())
    }

    /// Deregisters as `/v1/catalog/deregister` does (a node takes its services and checks along,
    /// a service its checks).
    fn deregister(&mut self, req: &DeregisterRequest, index: u64) {
        let keys = self.catalog_mut().deregister(req, index);
        if !keys.is_empty() {
            self.nodes.insert(req.node.clone());
        }
        self.catalog_keys.extend(keys);
    }

    /// The registered node `name`, for registering services and checks on it without changing
    /// it (Consul: "Missing node registration" when absent).
    fn existing_node(&self, name: &str) -> Result<Node, String> {
        self.catalog().nodes.get(name).cloned().ok_or_else(|| "Missing node registration".to_string())
    }

    fn node_op(&mut self, verb: CatalogVerb, node: &Node, index: u64) -> Result<Option<TxnEntry>, String> {
        let name = node.node.as_str();
        let lookup = |cat: &Catalog| -> Option<Node> {
            if node.id.is_empty() {
                cat.nodes.get(name).cloned()
            } else {
                cat.nodes.values().find(|n| n.id == node.id).cloned()
            }
        };
        let current = self.catalog().nodes.get(name).map(|n| n.modify_index);
        match verb {
            CatalogVerb::Get => {
                lookup(self.catalog()).map(|n| Some(TxnEntry::Node(n))).ok_or(format!("node {name:?} doesn't exist"))
            }
            CatalogVerb::Set | CatalogVerb::Cas => {
                if verb == CatalogVerb::Cas && !cas_matches(current, node.modify_index) {
                    return Err(format!("failed to set node {name:?}, index is stale"));
                }
                self.register(&RegisterRequest { node: node.clone(), ..RegisterRequest::default() }, index)?;
                Ok(lookup(self.catalog()).map(TxnEntry::Node))
            }
            CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                if verb == CatalogVerb::DeleteCas && (current.is_none() || current != Some(node.modify_index)) {
                    return Err(format!("failed to delete node {name:?}, index is stale"));
                }
                self.deregister(&DeregisterRequest { node: name.to_string(), ..DeregisterRequest::default() }, index);
                Ok(None)
            }
        }
    }

    fn service_op(
        &mut self,
        verb: CatalogVerb,
        node: &str,
        service: &ServiceInstance,
        index: u64,
    ) -> Result<Option<TxnEntry>, String> {
        let id = service.id.as_str();
        let key = (node.to_string(), id.to_string());
        let stored = |cat: &Catalog| cat.services.get(&key).cloned();
        let current = self.catalog().services.get(&key).map(|s| s.modify_index);
        match verb {
            CatalogVerb::Get => stored(self.catalog())
                .map(|s| Some(TxnEntry::Service(s)))
                .ok_or(format!("service {id:?} on node {node:?} doesn't exist")),
            CatalogVerb::Set | CatalogVerb::Cas => {
                if verb == CatalogVerb::Cas && !cas_matches(current, service.modify_index) {
                    return Err(format!("failed to set service {id:?} on node {node:?}, index is stale"));
                }
                let req = RegisterRequest {
                    node: self.existing_node(node)?,
                    skip_node_update: true,
                    service: Some(service.clone()),
                    checks: Vec::new(),
                };
                self.register(&req, index)?;
                Ok(stored(self.catalog()).map(TxnEntry::Service))
            }
            CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                if verb == CatalogVerb::DeleteCas && (current.is_none() || current != Some(service.modify_index)) {
                    return Err(format!("failed to delete service {id:?} on node {node:?}, index is stale"));
                }
                let req =
                    DeregisterRequest { node: node.to_string(), service_id: Some(id.to_string()), check_id: None };
                self.deregister(&req, index);
                Ok(None)
            }
        }
    }

    fn check_op(&mut self, verb: CatalogVerb, check: &HealthCheck, index: u64) -> Result<Option<TxnEntry>, String> {
        let (node, id) = (check.node.as_str(), check.check_id.as_str());
        let key = (node.to_string(), id.to_string());
        let stored = |cat: &Catalog| cat.checks.get(&key).cloned();
        let current = self.catalog().checks.get(&key).map(|c| c.modify_index);
        match verb {
            CatalogVerb::Get => stored(self.catalog())
                .map(|c| Some(TxnEntry::Check(c)))
                .ok_or(format!("check {id:?} on node {node:?} doesn't exist")),
            CatalogVerb::Set | CatalogVerb::Cas => {
                if verb == CatalogVerb::Cas && !cas_matches(current, check.modify_index) {
                    return Err(format!("failed to set check {id:?} on node {node:?}, index is stale"));
                }
                let req = RegisterRequest {
                    node: self.existing_node(node)?,
                    skip_node_update: true,
                    service: None,
                    checks: vec![check.clone()],
                };
                self.register(&req, index)?;
                Ok(stored(self.catalog()).map(TxnEntry::Check))
            }
            CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                if verb == CatalogVerb::DeleteCas && (current.is_none() || current != Some(check.modify_index)) {
                    return Err(format!("failed to delete check {id:?} on node {node:?}, index is stale"));
                }
                let req =
                    DeregisterRequest { node: node.to_string(), service_id: None, check_id: Some(id.to_string()) };
                self.deregister(&req, index);
                Ok(None)
            }
        }
    }

    fn session_delete(&mut self, id: &str, now_ms: u64) -> Result<(), String> {
        let gone = self.sessions.iter().any(|(s, _)| s == id);
        if gone || !self.kv.base.sessions.contains_key(id) {
            return Err("failed to delete session: failed deleting session: not found".into());
        }
        self.sessions.push((id.to_string(), now_ms));
        Ok(())
    }

    /// Runs every operation in order at Raft index `index`; stops collecting results at the
    /// first error but keeps checking the rest so the caller sees every failing operation, as
    /// Consul does. On any error every change is dropped.
    pub fn run(&mut self, ops: &[TxnOp], index: u64) -> TxnReport {
        let mut report = TxnReport::default();
        for (op_index, op) in ops.iter().enumerate() {
            let result = match op {
                TxnOp::Kv(kv) => self.kv.apply_op(kv, index).map(|r| r.into_iter().map(TxnEntry::Kv).collect()),
                TxnOp::Node { verb, node } => self.node_op(*verb, node, index).map(Vec::from_iter),
                TxnOp::Service { verb, node, service } => {
                    self.service_op(*verb, node, service, index).map(Vec::from_iter)
                }
                TxnOp::Check { verb, check } => self.check_op(*verb, check, index).map(Vec::from_iter),
                TxnOp::SessionDelete { id, now_ms } => self.session_delete(id, *now_ms).map(|()| Vec::new()),
            };
            match result {
                Ok(results) => report.results.extend(results),
                Err(what) => report.errors.push(TxnError { op_index, what }),
            }
        }
        if !report.errors.is_empty() {
            report.results.clear();
            self.kv.writes.clear();
            self.catalog = None;
            self.catalog_keys.clear();
            self.nodes.clear();
            self.sessions.clear();
        }
        report
    }

    /// Detaches the recorded changes from the borrowed state.
    pub fn finish(self) -> TxnChanges {
        TxnChanges {
            kv: self.kv.finish(),
            catalog: self.catalog,
            catalog_keys: self.catalog_keys,
            nodes: self.nodes,
            sessions: self.sessions,
        }
    }
}

/// Consul's compare-and-set rule for catalog entries: index 0 creates only when absent, any
/// other index updates only the entry with that `ModifyIndex`.
fn cas_matches(current: Option<u64>, wanted: u64) -> bool {
    match current {
        None => wanted == 0,
        Some(m) => wanted != 0 && m == wanted,
    }
}

/// Watch keys a committed transaction changed: KV keys (prefix-notified) and exact keys
/// (catalog, coordinates).
#[derive(Debug, Default)]
pub struct TxnChanged {
    /// KV keys.
    pub kv: Vec<String>,
    /// Exact watch keys.
    pub exact: Vec<String>,
}

impl TxnChanges {
    /// Writes the changes into `data` at `index`, with what catalog writes and session destroys
    /// do besides: a removed node loses its coordinates, sessions whose node or checks are gone
    /// are invalidated, destroyed sessions release or delete their locks.
    pub fn commit(self, data: &mut StateData, index: u64) -> TxnChanged {
        let mut changed = TxnChanged { kv: self.kv.commit(data, index), exact: self.catalog_keys };
        if let Some(catalog) = self.catalog {
            data.catalog = catalog;
        }
        for node in &self.nodes {
            if !data.catalog.nodes.contains_key(node) && data.coordinates.remove_node(node, index) {
                changed.exact.push(super::coordinate::WATCH_COORDINATES.to_string());
            }
        }
        for (id, now_ms) in &self.sessions {
            changed.kv.extend(super::session::invalidate(data, id, index, Some(*now_ms)));
        }
        for node in &self.nodes {
            changed.kv.extend(super::invalidate_unsupported_sessions(data, node, index));
        }
        changed.exact.sort();
        changed.exact.dedup();
        changed
    }
}

impl KvChanges {
    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Writes the changes into `data` at `index`, leaving tombstones for deleted keys.
    /// Returns the keys that changed (for watch notification).
    pub fn commit(self, data: &mut StateData, index: u64) -> Vec<String> {
        if self.writes.is_empty() {
            return Vec::new();
        }
        let mut changed = Vec::with_capacity(self.writes.len());
        for (key, write) in self.writes {
            match write {
                Some(entry) => {
                    data.tombstones.remove(&key);
                    data.kvs.insert(key.clone(), entry);
                }
                None => {
                    if data.kvs.remove(&key).is_some() {
                        data.tombstones.insert(key.clone(), index);
                    }
                }
            }
            changed.push(key);
        }
        data.kv_index = data.kv_index.max(index);
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(verb: KvVerb, key: &str) -> KvOp {
        KvOp::new(verb, key)
    }

    fn commit(data: &mut StateData, ops: &[TxnOp], index: u64) -> TxnOutcome {
        let mut overlay = KvOverlay::new(data);
        let outcome = overlay.run_txn(ops, index);
        let changes = overlay.finish();
        changes.commit(data, index);
        outcome
    }

    #[test]
    fn cas_zero_creates_only_when_absent() {
        let mut data = StateData::default();
        let cas0 = TxnOp::Kv(op(KvVerb::Cas, "k").with_value(b"1".to_vec()));
        assert!(commit(&mut data, std::slice::from_ref(&cas0), 2).errors.is_empty());
        let again = commit(&mut data, &[cas0], 3);
        assert_eq!(again.errors[0].what, "failed to set key \"k\", index is stale");
        assert_eq!(data.kvs["k"].modify_index, 2);
    }

    #[test]
    fn rollback_changes_nothing() {
        let mut data = StateData::default();
        commit(&mut data, &[TxnOp::Kv(op(KvVerb::Set, "a").with_value(b"1".to_vec()))], 2);
        let before = data.clone();
        let outcome = commit(
            &mut data,
            &[
                TxnOp::Kv(op(KvVerb::Set, "b").with_value(b"2".to_vec())),
                TxnOp::Kv(op(KvVerb::Delete, "a")),
                TxnOp::Kv(op(KvVerb::CheckIndex, "a").with_index(99)),
                TxnOp::Kv(op(KvVerb::CheckNotExists, "zz")),
            ],
            3,
        );
        assert_eq!(outcome.errors.len(), 1);
        assert_eq!(outcome.errors[0].op_index, 2);
        assert!(outcome.results.is_empty());
        assert_eq!(data, before);
    }

    #[test]
    fn txn_sees_its_own_writes() {
        let mut data = StateData::default();
        let outcome = commit(
            &mut data,
            &[
                TxnOp::Kv(op(KvVerb::Set, "p/a").with_value(b"1".to_vec())),
                TxnOp::Kv(op(KvVerb::Set, "p/b").with_value(b"2".to_vec())),
                TxnOp::Kv(op(KvVerb::Delete, "p/a")),
                TxnOp::Kv(op(KvVerb::GetTree, "p/")),
            ],
            4,
        );
        assert!(outcome.errors.is_empty());
        let keys: Vec<_> = outcome.results.iter().filter(|r| r.with_value).map(|r| r.entry.key.clone()).collect();
        assert_eq!(keys, vec!["p/b".to_string()]);
        assert!(!data.kvs.contains_key("p/a"));
        // p/a never existed in committed state, so no tombstone is left for it.
        assert!(!data.tombstones.contains_key("p/a"));
    }

    #[test]
    fn delete_tree_leaves_tombstones() {
        let mut data = StateData::default();
        commit(
            &mut data,
            &[TxnOp::Kv(op(KvVerb::Set, "t/1")), TxnOp::Kv(op(KvVerb::Set, "t/2")), TxnOp::Kv(op(KvVerb::Set, "u"))],
            2,
        );
        commit(&mut data, &[TxnOp::Kv(op(KvVerb::DeleteTree, "t/"))], 5);
        assert_eq!(data.tombstones.get("t/1"), Some(&5));
        assert_eq!(data.tombstones.get("t/2"), Some(&5));
        assert!(data.kvs.contains_key("u"));
        assert_eq!(data.kv_index, 5);
    }

    #[test]
    fn lock_needs_a_session() {
        let mut data = StateData::default();
        let outcome = commit(&mut data, &[TxnOp::Kv(op(KvVerb::Lock, "l").with_session("nope"))], 2);
        assert_eq!(outcome.errors[0].what, "invalid session \"nope\"");
        data.sessions
            .insert("s1".into(), super::super::Session { id: "s1".into(), node: "n".into(), ..Default::default() });
        data.sessions
            .insert("s2".into(), super::super::Session { id: "s2".into(), node: "n".into(), ..Default::default() });
        assert!(commit(&mut data, &[TxnOp::Kv(op(KvVerb::Lock, "l").with_session("s1"))], 3).errors.is_empty());
        assert_eq!(data.kvs["l"].lock_index, 1);
        // Re-acquire by the holder does not bump LockIndex.
        assert!(commit(&mut data, &[TxnOp::Kv(op(KvVerb::Lock, "l").with_session("s1"))], 4).errors.is_empty());
        assert_eq!(data.kvs["l"].lock_index, 1);
        let held = commit(&mut data, &[TxnOp::Kv(op(KvVerb::Lock, "l").with_session("s2"))], 5);
        assert_eq!(held.errors[0].what, "failed to lock key \"l\", lock is already held");
        assert!(commit(&mut data, &[TxnOp::Kv(op(KvVerb::Unlock, "l").with_session("s1"))], 6).errors.is_empty());
        assert_eq!(data.kvs["l"].session, None);
    }

    /// Runs `ops` on `data` at `index` the way the state machine does (see `State::apply`).
    fn apply(data: &mut StateData, ops: &[TxnOp], index: u64) -> (TxnReport, TxnChanged) {
        let mut run = TxnRun::new(data);
        let report = run.run(ops, index);
        let changes = run.finish();
        let changed = if report.errors.is_empty() { changes.commit(data, index) } else { TxnChanged::default() };
        (report, changed)
    }

    fn node_op(verb: CatalogVerb, name: &str, modify_index: u64) -> TxnOp {
        let node = Node {
            node: name.into(),
            address: "192.0.2.1".into(),
            datacenter: "dc1".into(),
            modify_index,
            ..Node::default()
        };
        TxnOp::Node { verb, node }
    }

    fn service_op(verb: CatalogVerb, node: &str, id: &str, modify_index: u64) -> TxnOp {
        let service = ServiceInstance {
            node: node.into(),
            id: id.into(),
            service: "web".into(),
            port: 80,
            modify_index,
            ..ServiceInstance::default()
        };
        TxnOp::Service { verb, node: node.into(), service }
    }

    fn check_op(verb: CatalogVerb, node: &str, id: &str, service_id: &str, modify_index: u64) -> TxnOp {
        let check = HealthCheck {
            node: node.into(),
            check_id: id.into(),
            name: id.into(),
            status: "passing".into(),
            service_id: service_id.into(),
            modify_index,
            ..HealthCheck::default()
        };
        TxnOp::Check { verb, check }
    }

    fn kv_set(key: &str) -> TxnOp {
        TxnOp::Kv(op(KvVerb::Set, key).with_value(b"v".to_vec()))
    }

    fn errors(report: &TxnReport) -> Vec<(usize, &str)> {
        report.errors.iter().map(|e| (e.op_index, e.what.as_str())).collect()
    }

    /// A node with service `web1` and service check `c1`, registered at index 2.
    fn seeded() -> StateData {
        let mut data = StateData::default();
        let (report, _) = apply(
            &mut data,
            &[
                node_op(CatalogVerb::Set, "n1", 0),
                service_op(CatalogVerb::Set, "n1", "web1", 0),
                check_op(CatalogVerb::Set, "n1", "c1", "web1", 0),
            ],
            2,
        );
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        data
    }

    #[test]
    fn set_returns_what_was_stored_and_moves_catalog_indexes() {
        let mut data = StateData::default();
        let (report, changed) = apply(
            &mut data,
            &[node_op(CatalogVerb::Set, "n1", 0), service_op(CatalogVerb::Set, "n1", "web1", 0), kv_set("k")],
            7,
        );
        assert!(report.errors.is_empty());
        assert!(matches!(&report.results[0], TxnEntry::Node(n) if n.node == "n1" && n.create_index == 7));
        assert!(matches!(&report.results[1], TxnEntry::Service(s) if s.id == "web1" && s.modify_index == 7));
        assert!(matches!(&report.results[2], TxnEntry::Kv(r) if r.entry.key == "k"));
        assert_eq!(
            (data.catalog.nodes_index, data.catalog.services_index, data.catalog.service_index("web")),
            (7, 7, 7)
        );
        assert_eq!(data.kvs["k"].modify_index, 7);
        // The same watch keys a catalog registration notifies, plus the KV key.
        assert!(changed.exact.contains(&super::super::catalog::watch_service("web")));
        assert!(changed.exact.contains(&super::super::catalog::watch_nodes()));
        assert_eq!(changed.kv, vec!["k".to_string()]);
    }

    #[test]
    fn get_reads_and_fails_when_absent() {
        let mut data = seeded();
        let (report, _) = apply(
            &mut data,
            &[
                node_op(CatalogVerb::Get, "n1", 0),
                service_op(CatalogVerb::Get, "n1", "web1", 0),
                check_op(CatalogVerb::Get, "n1", "c1", "", 0),
            ],
            3,
        );
        assert!(report.errors.is_empty());
        assert!(matches!(&report.results[2], TxnEntry::Check(c) if c.service_name == "web" && c.create_index == 2));
        let (report, _) = apply(
            &mut data,
            &[
                node_op(CatalogVerb::Get, "nope", 0),
                service_op(CatalogVerb::Get, "n1", "nope", 0),
                check_op(CatalogVerb::Get, "n1", "nope", "", 0),
            ],
            4,
        );
        assert_eq!(
            errors(&report),
            vec![
                (0, "node \"nope\" doesn't exist"),
                (1, "service \"nope\" on node \"n1\" doesn't exist"),
                (2, "check \"nope\" on node \"n1\" doesn't exist"),
            ]
        );
    }

    #[test]
    fn cas_and_delete_cas_compare_modify_index() {
        let mut data = seeded();
        let before = data.clone();
        let (report, _) = apply(
            &mut data,
            &[
                node_op(CatalogVerb::Cas, "n1", 0),
                service_op(CatalogVerb::Cas, "n1", "web1", 9),
                check_op(CatalogVerb::Cas, "n1", "c1", "web1", 1),
                node_op(CatalogVerb::DeleteCas, "n1", 3),
                service_op(CatalogVerb::DeleteCas, "n1", "absent", 0),
                check_op(CatalogVerb::DeleteCas, "n1", "c1", "", 5),
                node_op(CatalogVerb::Cas, "fresh", 4),
            ],
            3,
        );
        assert_eq!(
            errors(&report),
            vec![
                (0, "failed to set node \"n1\", index is stale"),
                (1, "failed to set service \"web1\" on node \"n1\", index is stale"),
                (2, "failed to set check \"c1\" on node \"n1\", index is stale"),
                (3, "failed to delete node \"n1\", index is stale"),
                (4, "failed to delete service \"absent\" on node \"n1\", index is stale"),
                (5, "failed to delete check \"c1\" on node \"n1\", index is stale"),
                (6, "failed to set node \"fresh\", index is stale"),
            ]
        );
        assert_eq!(data, before);
        // Matching indexes succeed: cas 0 creates, cas with the current index updates.
        let mut renamed = service_op(CatalogVerb::Cas, "n1", "web1", 2);
        if let TxnOp::Service { service, .. } = &mut renamed {
            service.port = 81;
        }
        let (report, _) = apply(&mut data, &[node_op(CatalogVerb::Cas, "n2", 0), renamed], 4);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(data.catalog.services[&("n1".to_string(), "web1".to_string())].port, 81);
        let (report, _) = apply(&mut data, &[check_op(CatalogVerb::DeleteCas, "n1", "c1", "", 2)], 5);
        assert!(report.errors.is_empty());
        assert!(data.catalog.checks.is_empty());
    }

    #[test]
    fn service_and_check_need_the_node() {
        let mut data = StateData::default();
        let (report, _) = apply(
            &mut data,
            &[service_op(CatalogVerb::Set, "ghost", "web1", 0), check_op(CatalogVerb::Set, "ghost", "c", "", 0)],
            2,
        );
        assert_eq!(errors(&report), vec![(0, "Missing node registration"), (1, "Missing node registration")]);
        // A node set earlier in the same transaction counts.
        let (report, _) = apply(
            &mut data,
            &[node_op(CatalogVerb::Set, "ghost", 0), service_op(CatalogVerb::Set, "ghost", "web1", 0)],
            3,
        );
        assert!(report.errors.is_empty());
    }

    #[test]
    fn failing_catalog_op_after_kv_set_rolls_both_back() {
        let mut data = seeded();
        let before = data.clone();
        let (report, changed) = apply(
            &mut data,
            &[kv_set("k"), node_op(CatalogVerb::Set, "n2", 0), service_op(CatalogVerb::Get, "n1", "missing", 0)],
            3,
        );
        assert_eq!(errors(&report), vec![(2, "service \"missing\" on node \"n1\" doesn't exist")]);
        assert!(report.results.is_empty());
        assert!(changed.kv.is_empty() && changed.exact.is_empty());
        assert_eq!(data, before);
    }

    #[test]
    fn failing_kv_op_after_node_set_rolls_both_back() {
        let mut data = seeded();
        let before = data.clone();
        let (report, _) = apply(
            &mut data,
            &[node_op(CatalogVerb::Set, "n2", 0), kv_set("k"), TxnOp::Kv(op(KvVerb::CheckIndex, "k").with_index(99))],
            3,
        );
        assert_eq!(errors(&report), vec![(2, "current modify index 3 != 99")]);
        assert_eq!(data, before);
        assert!(!data.catalog.nodes.contains_key("n2"));
    }

    #[test]
    fn deleting_a_node_takes_its_services_checks_and_sessions() {
        let mut data = seeded();
        data.sessions
            .insert("s1".into(), super::super::Session { id: "s1".into(), node: "n1".into(), ..Default::default() });
        apply(&mut data, &[TxnOp::Kv(op(KvVerb::Lock, "l").with_session("s1"))], 3);
        let (report, changed) = apply(&mut data, &[node_op(CatalogVerb::Delete, "n1", 0)], 4);
        assert!(report.errors.is_empty() && report.results.is_empty());
        assert!(data.catalog.nodes.is_empty() && data.catalog.services.is_empty() && data.catalog.checks.is_empty());
        assert!(data.catalog.instances("web").is_empty());
        assert_eq!(data.catalog.service_index("web"), 4);
        assert!(!data.sessions.contains_key("s1"), "the node's session ends with it");
        assert_eq!(data.kvs["l"].session, None);
        assert!(changed.kv.contains(&"l".to_string()));
        assert!(changed.exact.contains(&super::super::catalog::watch_service("web")));
    }

    #[test]
    fn deleting_a_service_takes_its_checks() {
        let mut data = seeded();
        let (report, _) = apply(&mut data, &[service_op(CatalogVerb::Delete, "n1", "web1", 0)], 3);
        assert!(report.errors.is_empty());
        assert!(data.catalog.services.is_empty() && data.catalog.checks.is_empty());
        assert!(data.catalog.nodes.contains_key("n1"));
        // Deleting what is absent succeeds, as in Consul.
        let (report, _) = apply(
            &mut data,
            &[service_op(CatalogVerb::Delete, "n1", "web1", 0), check_op(CatalogVerb::Delete, "n1", "c1", "", 0)],
            4,
        );
        assert!(report.errors.is_empty());
    }

    #[test]
    fn session_delete_releases_locks_and_needs_the_session() {
        let mut data = StateData::default();
        data.sessions
            .insert("s1".into(), super::super::Session { id: "s1".into(), node: "n".into(), ..Default::default() });
        apply(&mut data, &[TxnOp::Kv(op(KvVerb::Lock, "l").with_session("s1"))], 2);
        let del = TxnOp::SessionDelete { id: "s1".into(), now_ms: 0 };
        let (report, _) = apply(&mut data, &[del.clone(), del.clone()], 3);
        assert_eq!(errors(&report), vec![(1, "failed to delete session: failed deleting session: not found")]);
        assert!(data.sessions.contains_key("s1"));
        let (report, changed) = apply(&mut data, &[del], 4);
        assert!(report.errors.is_empty());
        assert!(!data.sessions.contains_key("s1"));
        assert_eq!(data.kvs["l"].session, None);
        assert_eq!(changed.kv, vec!["l".to_string()]);
    }

    #[test]
    fn reads_copy_nothing() {
        let data = seeded();
        let mut run = TxnRun::new(&data);
        let report = run.run(&[node_op(CatalogVerb::Get, "n1", 0)], 0);
        assert_eq!(report.results.len(), 1);
        assert!(run.catalog.is_none());
    }
}
