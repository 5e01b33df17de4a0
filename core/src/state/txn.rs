//! KV operations and atomic transactions.
//!
//! Operations run against a [`KvOverlay`]: a copy-on-write view over the committed state that
//! records sets and deletes without touching it. A transaction commits the overlay only when
//! every operation succeeded, so a rolled-back transaction leaves the state — and every index —
//! exactly as it was. Error texts follow Consul's `state/txn.go` and `state/kvs.go`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{KvEntry, StateData};
use crate::state::command::{KvOp, KvVerb};

/// One transaction operation. Only KV operations exist so far; catalog operations (`Node`,
/// `Service`, `Check`) join with the catalog issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// A KV operation.
    Kv(KvOp),
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
    writes: BTreeMap<String, Option<KvEntry>>,
}

/// The net effect of an overlay, detached from the state it was read from.
#[derive(Debug, Default)]
pub struct KvChanges {
    writes: BTreeMap<String, Option<KvEntry>>,
}

impl<'a> KvOverlay<'a> {
    /// A view with no changes yet.
    pub fn new(base: &'a StateData) -> Self {
        KvOverlay { base, writes: BTreeMap::new() }
    }

    fn get(&self, key: &str) -> Option<&KvEntry> {
        match self.writes.get(key) {
            Some(w) => w.as_ref(),
            None => self.base.kvs.get(key),
        }
    }

    /// Every live entry whose key starts with `prefix`, in key order, with the overlay applied.
    fn tree(&self, prefix: &str) -> Vec<KvEntry> {
        let mut out: BTreeMap<&str, &KvEntry> = self
            .base
            .kvs
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        for (k, w) in self.writes.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)) {
            match w {
                Some(e) => {
                    out.insert(k.as_str(), e);
                }
                None => {
                    out.remove(k.as_str());
                }
            }
        }
        out.into_values().cloned().collect()
    }

    fn session_exists(&self, session: &str) -> bool {
        self.base.sessions.contains_key(session)
    }

    fn put(&mut self, entry: KvEntry) {
        self.writes.insert(entry.key.clone(), Some(entry));
    }

    fn new_entry(&self, op: &KvOp, index: u64) -> KvEntry {
        match self.get(&op.key) {
            Some(existing) => KvEntry {
                key: op.key.clone(),
                create_index: existing.create_index,
                modify_index: index,
                lock_index: existing.lock_index,
                flags: op.flags,
                value: op.value.clone(),
                session: existing.session.clone(),
            },
            None => KvEntry {
                key: op.key.clone(),
                create_index: index,
                modify_index: index,
                lock_index: 0,
                flags: op.flags,
                value: op.value.clone(),
                session: None,
            },
        }
    }

    /// Applies one operation at Raft index `index`. `Ok` carries the results to report;
    /// `Err` the reason it failed (the overlay is then unchanged by this operation).
    pub fn apply_op(&mut self, op: &KvOp, index: u64) -> Result<Vec<TxnResult>, String> {
        let key = op.key.as_str();
        let report = |entry: KvEntry| vec![TxnResult { entry, with_value: false }];
        match op.verb {
            KvVerb::Set => {
                let entry = self.new_entry(op, index);
                self.put(entry.clone());
                Ok(report(entry))
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
                let entry = self.new_entry(op, index);
                self.put(entry.clone());
                Ok(report(entry))
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
                let mut entry = self.new_entry(op, index);
                match entry.session.as_deref() {
                    Some(holder) if holder == session => {}
                    Some(_) => return Err(format!("failed to lock key {key:?}, lock is already held")),
                    None => {
                        entry.lock_index += 1;
                        entry.session = Some(session.to_string());
                    }
                }
                self.put(entry.clone());
                Ok(report(entry))
            }
            KvVerb::Unlock => {
                let session = op.session.as_deref().unwrap_or_default();
                let mut entry = self.new_entry(op, index);
                if entry.session.as_deref() != Some(session) || session.is_empty() {
                    return Err(format!(
                        "failed to unlock key {key:?}, lock isn't held, or is held by another session"
                    ));
                }
                entry.session = None;
                self.put(entry.clone());
                Ok(report(entry))
            }
            KvVerb::Get => match self.get(key) {
                Some(e) => Ok(vec![TxnResult { entry: e.clone(), with_value: true }]),
                None => Err(format!("key {key:?} doesn't exist")),
            },
            KvVerb::GetTree => {
                Ok(self.tree(key).into_iter().map(|entry| TxnResult { entry, with_value: true }).collect())
            }
            KvVerb::CheckIndex => match self.get(key) {
                Some(e) if e.modify_index == op.index => Ok(report(e.clone())),
                Some(e) => Err(format!("current modify index {} != {}", e.modify_index, op.index)),
                None => Err(format!("key {key:?} doesn't exist")),
            },
            KvVerb::CheckSession => match self.get(key) {
                Some(e) if e.session.is_some() && e.session == op.session => Ok(report(e.clone())),
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

    /// Runs every operation in order; stops collecting results at the first error but keeps
    /// checking the rest so the caller sees every failing operation, as Consul does.
    pub fn run_txn(&mut self, ops: &[TxnOp], index: u64) -> TxnOutcome {
        let mut outcome = TxnOutcome::default();
        for (op_index, op) in ops.iter().enumerate() {
            let TxnOp::Kv(kv) = op;
            match self.apply_op(kv, index) {
                Ok(results) => outcome.results.extend(results),
                Err(what) => outcome.errors.push(TxnError { op_index, what }),
            }
        }
        if !outcome.errors.is_empty() {
            outcome.results.clear();
            self.writes.clear();
        }
        outcome
    }

    /// Detaches the recorded changes from the borrowed state.
    pub fn finish(self) -> KvChanges {
        KvChanges { writes: self.writes }
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
}
