//! The Raft state machine: applies committed entries to the [`StateStore`] and makes snapshots.
//!
//! The state itself lives in memory (like Consul's go-memdb); durability comes from the Raft log
//! plus the latest snapshot, which is stored in the same redb database as the log. On start the
//! snapshot is loaded and openraft re-applies the log entries after it, up to the saved
//! committed index.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::log_store::{LogStore, KEY_SNAPSHOT};
use super::{NodeId, ServerNode, TypeConfig};
use crate::state::command::CommandResponse;
use crate::state::{deserialize_state, StateData, StateStore};

type StoreResult<T> = Result<T, StorageError<NodeId>>;

fn sm_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::new(&e)).into()
}

fn snap_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::new(&e)).into()
}

/// A snapshot as stored on disk.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, ServerNode>,
    data: Vec<u8>,
}

/// The state machine handed to openraft.
#[derive(Debug)]
pub struct StateMachine {
    state: Arc<StateStore>,
    store: LogStore,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, ServerNode>,
    snapshot_seq: u64,
}

impl StateMachine {
    /// Opens the state machine, restoring the latest stored snapshot into `state`.
    pub fn open(state: Arc<StateStore>, store: LogStore) -> Result<StateMachine, crate::Error> {
        let mut sm =
            StateMachine { state, store, last_applied: None, membership: StoredMembership::default(), snapshot_seq: 0 };
        let stored = sm.store.get_meta(KEY_SNAPSHOT).map_err(|e| crate::Error::Storage(e.to_string()))?;
        if let Some(bytes) = stored {
            let snap: StoredSnapshot =
                postcard::from_bytes(&bytes).map_err(|e| crate::Error::Storage(format!("snapshot: {e}")))?;
            let data = deserialize_state(&snap.data).map_err(|e| crate::Error::Storage(format!("snapshot: {e}")))?;
            sm.state.replace(data);
            sm.last_applied = snap.meta.last_log_id;
            sm.membership = snap.meta.last_membership;
        }
        Ok(sm)
    }
}

/// Builds a snapshot from a copy of the state taken when the builder was made, so applies can
/// go on while it is serialised and written.
#[derive(Debug)]
pub struct SnapshotBuilder {
    data: StateData,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, ServerNode>,
    snapshot_id: String,
    store: LogStore,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        let data = postcard::to_allocvec(&self.data).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: self.snapshot_id.clone(),
        };
        let stored = StoredSnapshot { meta: meta.clone(), data };
        let bytes = postcard::to_allocvec(&stored).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        self.store.put_meta_durable(KEY_SNAPSHOT, bytes).await?;
        tracing::info!(snapshot = %meta.snapshot_id, "snapshot built");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(stored.data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> StoreResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, ServerNode>)> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<CommandResponse>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        let mut last = None;
        for entry in entries {
            let index = entry.log_id.index;
            self.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {
                    self.state.note_applied(index);
                    responses.push(CommandResponse::Ok);
                }
                EntryPayload::Normal(cmd) => responses.push(self.state.apply(&cmd, index)),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    self.state.note_applied(index);
                    responses.push(CommandResponse::Ok);
                }
            }
            last = Some(index);
        }
        if let Some(index) = last {
            self.state.publish_applied(index);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        let last = self.last_applied;
        SnapshotBuilder {
            data: self.state.read(|d| d.clone()),
            last_applied: last,
            membership: self.membership.clone(),
            snapshot_id: format!(
                "{}-{}-{}",
                last.map(|l| l.leader_id.term).unwrap_or(0),
                last.map(|l| l.index).unwrap_or(0),
                self.snapshot_seq
            ),
            store: self.store.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, ServerNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        let bytes = snapshot.into_inner();
        let data = deserialize_state(&bytes).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let stored = StoredSnapshot { meta: meta.clone(), data: bytes };
        let encoded = postcard::to_allocvec(&stored).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        self.store.put_meta_durable(KEY_SNAPSHOT, encoded).await?;
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        self.state.replace(data);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.state.publish_applied(index);
        tracing::info!(snapshot = %meta.snapshot_id, index, "installed snapshot from leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        match self.store.get_meta(KEY_SNAPSHOT)? {
            Some(bytes) => {
                let stored: StoredSnapshot = postcard::from_bytes(&bytes).map_err(|e| snap_err(ErrorVerb::Read, e))?;
                Ok(Some(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) }))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The dedup window as the state machine sees it: a tracked write repeated in the log is
    //! applied once, across a restart (snapshot + log replay) and a snapshot install.
    #![allow(clippy::unwrap_used)]

    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};

    use super::*;
    use crate::state::command::{Command, KvOp, KvVerb, RequestId};

    const SELF: NodeId = 1;

    fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, SELF), index), payload: EntryPayload::Normal(cmd) }
    }

    fn tracked(seq: u64, cmd: Command) -> Command {
        Command::Tracked { id: RequestId { origin: 42, seq }, cmd: Box::new(cmd) }
    }

    fn put(key: &str, value: &'static str) -> Command {
        Command::Kv(KvOp::new(KvVerb::Set, key).with_value(value.as_bytes()))
    }

    fn value(state: &StateStore, key: &str) -> Option<(String, u64)> {
        state.read(|d| d.kvs.get(key).map(|e| (String::from_utf8_lossy(&e.value).into_owned(), e.modify_index)))
    }

    #[tokio::test]
    async fn a_repeated_request_applies_once_and_answers_the_first_result() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(Some(dir.path()), SELF).unwrap();
        let state = Arc::new(StateStore::new());
        let mut sm = StateMachine::open(state.clone(), store.clone()).unwrap();
        // The story of issue 12: PUT A (tracked), CAS A→B acknowledged, then PUT A proposed again
        // by a retry. The retry must not overwrite B.
        let responses = sm
            .apply(vec![
                entry(1, tracked(1, put("k", "A"))),
                entry(2, tracked(2, Command::Kv(KvOp::new(KvVerb::Cas, "k").with_value(&b"B"[..]).with_index(1)))),
                entry(3, tracked(1, put("k", "A"))),
            ])
            .await
            .unwrap();
        assert_eq!(responses[0], CommandResponse::Bool(true));
        assert_eq!(responses[1], CommandResponse::Bool(true));
        assert_eq!(
            responses[2],
            CommandResponse::Replayed { index: 1, response: Box::new(CommandResponse::Bool(true)) }
        );
        assert_eq!(value(&state, "k"), Some(("B".into(), 2)));
        store.close();
    }

    #[tokio::test]
    async fn the_window_survives_a_restart_from_snapshot_and_log() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LogStore::open(Some(dir.path()), SELF).unwrap();
            let state = Arc::new(StateStore::new());
            let mut sm = StateMachine::open(state, store.clone()).unwrap();
            sm.apply(vec![entry(1, tracked(1, put("k", "A")))]).await.unwrap();
            sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
            store.close();
        }
        // Restart: the snapshot (holding the window) is loaded; the retry arrives afterwards.
        let store = LogStore::open(Some(dir.path()), SELF).unwrap();
        let state = Arc::new(StateStore::new());
        let mut sm = StateMachine::open(state.clone(), store.clone()).unwrap();
        assert_eq!(value(&state, "k"), Some(("A".into(), 1)));
        sm.apply(vec![entry(2, put("k", "B"))]).await.unwrap();
        let r = sm.apply(vec![entry(3, tracked(1, put("k", "A")))]).await.unwrap();
        assert!(matches!(r[0], CommandResponse::Replayed { index: 1, .. }), "{r:?}");
        assert_eq!(value(&state, "k"), Some(("B".into(), 2)));
        store.close();
    }

    #[tokio::test]
    async fn an_installed_snapshot_brings_the_window_along() {
        let leader_dir = tempfile::tempdir().unwrap();
        let leader_store = LogStore::open(Some(leader_dir.path()), SELF).unwrap();
        let mut leader = StateMachine::open(Arc::new(StateStore::new()), leader_store.clone()).unwrap();
        leader.apply(vec![entry(1, tracked(7, put("k", "A")))]).await.unwrap();
        let snap = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();

        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(Some(dir.path()), 2).unwrap();
        let state = Arc::new(StateStore::new());
        let mut follower = StateMachine::open(state.clone(), store.clone()).unwrap();
        follower.install_snapshot(&snap.meta, snap.snapshot).await.unwrap();
        let r = follower.apply(vec![entry(2, tracked(7, put("k", "A")))]).await.unwrap();
        assert!(matches!(r[0], CommandResponse::Replayed { index: 1, .. }), "{r:?}");
        assert_eq!(value(&state, "k"), Some(("A".into(), 1)), "the replay must not bump ModifyIndex");
        leader_store.close();
        store.close();
    }

    #[tokio::test]
    async fn a_request_older_than_the_window_is_refused_not_reapplied() {
        let store = LogStore::open(None, SELF).unwrap();
        let state = Arc::new(StateStore::new());
        let mut sm = StateMachine::open(state.clone(), store.clone()).unwrap();
        let n = crate::state::dedup::MAX_ENTRIES as u64 + 1;
        let entries: Vec<_> = (1..=n).map(|seq| entry(seq, tracked(seq, put("k", "x")))).collect();
        sm.apply(entries).await.unwrap();
        let r = sm.apply(vec![entry(n + 1, tracked(1, put("k", "late")))]).await.unwrap();
        assert_eq!(r[0], CommandResponse::Expired);
        assert_eq!(value(&state, "k"), Some(("x".into(), n)));
        store.close();
    }
}
