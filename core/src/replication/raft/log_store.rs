//! The durable Raft log, vote and snapshot store, on redb.
//!
//! ### Group commit
//! `append` hands its entries to one writer thread and returns at once; openraft is told the
//! entries are durable through the `LogFlushed` callback only after the redb transaction holding
//! them committed with `Durability::Immediate` (an fsync). The writer drains every queued request
//! into one transaction, so however many client writes arrive together, they share one fsync.
//!
//! ### Inline commit (simulation)
//! [`LogStore::open_inline`] runs the same redb code without the writer thread: every operation
//! commits inside the call that issued it. A simulation on tokio's paused clock then never races
//! a real thread, and the database it is given (usually [`LogStore::memory_database`]) outlives
//! the store, so a simulated crash drops the store and a restart re-opens it over the same
//! database, finding exactly what had been made durable.
//!
//! ### Correctness contract (what openraft relies on)
//! - Entries are readable as soon as `append` returns, flushed or not: unflushed entries sit in
//!   `pending` until their transaction commits. A reader looks at `pending` *before* opening its
//!   redb read transaction, so an entry is always in one or the other.
//! - The vote is durable before `save_vote` returns; truncation and snapshots likewise.
//! - Operations reach the disk in the order they were issued (one queue, one writer).
//! - The committed index is written without an fsync: losing it only means re-applying entries
//!   after a crash, which the state machine rebuilds from the snapshot anyway.
//!
//! ### No resuming leadership across a restart
//! openraft 0.9 restarts a node whose stored vote is a *committed* vote for itself straight
//! into the leader role, in the same term, with the commit index it last persisted — which
//! lags (see above). Such a leader's first lease and ReadIndex reads would be served from a
//! state older than writes the cluster already acknowledged (its "no-op" entry is an old one, so
//! nothing forces it to learn the real commit index first). [`LogStore::read_vote`] therefore
//! hands back our own vote as *uncommitted*: the node restarts as a follower that has voted for
//! itself in that term (so it still cannot vote for anyone else in it), and leads again only by
//! winning an election in a new term — whose blank entry must commit, and be applied, before it
//! answers any read.

// openraft's StorageError is large by design; boxing it here would only add an allocation.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{mpsc, Arc};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, ErrorSubject, ErrorVerb, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote,
};
use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::{NodeId, TypeConfig};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";
/// Key of the current state-machine snapshot (meta and data, see `state_machine`).
pub(crate) const KEY_SNAPSHOT: &str = "snapshot";

type StoreResult<T> = Result<T, StorageError<NodeId>>;

fn io_err(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    io_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    io_err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

fn msg_err(msg: String) -> StorageError<NodeId> {
    write_err(io::Error::other(msg))
}

enum WriterOp {
    Append { entries: Vec<(u64, LogId<NodeId>, Vec<u8>)>, done: LogFlushed<TypeConfig> },
    Truncate { from: u64, done: oneshot::Sender<Result<(), String>> },
    Purge { upto: u64, log_id: Vec<u8>, done: oneshot::Sender<Result<(), String>> },
    Put { key: &'static str, value: Vec<u8>, durable: bool, done: Option<oneshot::Sender<Result<(), String>>> },
}

impl WriterOp {
    fn durable(&self) -> bool {
        match self {
            WriterOp::Append { .. } | WriterOp::Truncate { .. } => true,
            WriterOp::Purge { .. } => false,
            WriterOp::Put { durable, .. } => *durable,
        }
    }
}

#[derive(Debug, Default)]
struct LogMeta {
    last_log_id: Option<LogId<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
}

#[derive(Debug)]
struct Shared {
    /// Taken on close so the file lock is released even while openraft still holds clones.
    db: Mutex<Option<Arc<Database>>>,
    /// Commit every operation in the caller instead of on the writer thread.
    inline: bool,
    writer: Mutex<Option<mpsc::Sender<WriterOp>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    pending: Mutex<BTreeMap<u64, Entry<TypeConfig>>>,
    meta: Mutex<LogMeta>,
}

/// redb's page cache for the log. Its default, 1 GiB, let a busy server's RSS grow by every
/// page it wrote (a heap profile after 100,000 PUTs showed a third of the heap there) although
/// the log is written once, read back soon after (apply, replication) and then purged; the
/// operating system's page cache keeps recent pages anyway. With the in-memory backend (`-dev`)
/// the cache would hold a second copy of what the backend already holds.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The redb-backed log store. Cheap to clone; clones share the database and writer.
#[derive(Debug, Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    /// This server's Raft id (see "No resuming leadership across a restart").
    self_id: NodeId,
}

impl LogStore {
    /// Opens (or creates) the store in `dir/raft.redb` for server `self_id`; `None` keeps
    /// everything in memory (`-dev`).
    pub fn open(dir: Option<&Path>, self_id: NodeId) -> Result<LogStore, crate::Error> {
        let db = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| crate::Error::Storage(format!("{}: {e}", dir.display())))?;
                Database::builder().set_cache_size(CACHE_BYTES).create(dir.join("raft.redb"))
            }
            None => Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create_with_backend(redb::backends::InMemoryBackend::new()),
        }
        .map_err(|e| crate::Error::Storage(format!("opening raft store: {e}")))?;
        LogStore::over(Arc::new(db), self_id, false)
    }

    /// A fresh in-memory database for [`LogStore::open_inline`].
    pub fn memory_database() -> Result<Arc<Database>, crate::Error> {
        Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map(Arc::new)
            .map_err(|e| crate::Error::Storage(format!("opening raft store: {e}")))
    }

    /// Opens the store over `db`, committing every operation inline (no writer thread; see
    /// "Inline commit"). Opening it again over the same database after dropping the store is a
    /// restart from the log.
    pub fn open_inline(db: Arc<Database>, self_id: NodeId) -> Result<LogStore, crate::Error> {
        LogStore::over(db, self_id, true)
    }

    fn over(db: Arc<Database>, self_id: NodeId, inline: bool) -> Result<LogStore, crate::Error> {
        {
            let txn = db.begin_write().map_err(|e| crate::Error::Storage(e.to_string()))?;
            txn.open_table(LOGS).map_err(|e| crate::Error::Storage(e.to_string()))?;
            txn.open_table(META).map_err(|e| crate::Error::Storage(e.to_string()))?;
            txn.commit().map_err(|e| crate::Error::Storage(e.to_string()))?;
        }
        let mut meta = LogMeta::default();
        {
            let txn = db.begin_read().map_err(|e| crate::Error::Storage(e.to_string()))?;
            let logs = txn.open_table(LOGS).map_err(|e| crate::Error::Storage(e.to_string()))?;
            let metas = txn.open_table(META).map_err(|e| crate::Error::Storage(e.to_string()))?;
            if let Some(v) = metas.get(KEY_LAST_PURGED).map_err(|e| crate::Error::Storage(e.to_string()))? {
                meta.last_purged = postcard::from_bytes(v.value()).map_err(|e| crate::Error::Storage(e.to_string()))?;
            }
            if let Some((_, v)) = logs.last().map_err(|e| crate::Error::Storage(e.to_string()))? {
                let entry: Entry<TypeConfig> =
                    postcard::from_bytes(v.value()).map_err(|e| crate::Error::Storage(e.to_string()))?;
                meta.last_log_id = Some(entry.log_id);
            }
            if meta.last_log_id.is_none() {
                meta.last_log_id = meta.last_purged;
            }
        }
        let shared = Arc::new(Shared {
            db: Mutex::new(Some(db.clone())),
            inline,
            writer: Mutex::new(None),
            writer_thread: Mutex::new(None),
            pending: Mutex::new(BTreeMap::new()),
            meta: Mutex::new(meta),
        });
        if !inline {
            let (tx, rx) = mpsc::channel();
            let weak = Arc::downgrade(&shared);
            let handle = std::thread::Builder::new()
                .name("raft-log-writer".into())
                .spawn(move || writer_loop(db, rx, weak))
                .map_err(|e| crate::Error::Storage(format!("spawning log writer: {e}")))?;
            *shared.writer.lock() = Some(tx);
            *shared.writer_thread.lock() = Some(handle);
        }
        Ok(LogStore { shared, self_id })
    }

    /// Drains the writer's queue, stops it and closes the database, releasing its file lock so
    /// the same data dir can be opened again at once (a restart in the same process).
    pub fn close(&self) {
        self.shared.writer.lock().take();
        if let Some(handle) = self.shared.writer_thread.lock().take() {
            let _ = handle.join();
        }
        self.shared.db.lock().take();
    }

    fn db(&self) -> StoreResult<Arc<Database>> {
        self.shared.db.lock().clone().ok_or_else(|| msg_err("log store closed".into()))
    }

    fn send(&self, op: WriterOp) -> StoreResult<()> {
        if self.shared.inline {
            let db = self.db()?;
            let batch = vec![op];
            let result = write_batch(&db, &batch);
            settle_batch(&self.shared, batch, &result);
            return Ok(());
        }
        match self.shared.writer.lock().as_ref() {
            Some(tx) => tx.send(op).map_err(|_| msg_err("log writer stopped".into())),
            None => Err(msg_err("log store closed".into())),
        }
    }

    async fn send_and_wait(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), String>>) -> WriterOp,
    ) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(msg_err(e)),
            Err(_) => Err(msg_err("log writer stopped".into())),
        }
    }

    /// Stores `value` under `key` in the metadata table and waits until it is durable.
    pub(crate) async fn put_meta_durable(&self, key: &'static str, value: Vec<u8>) -> StoreResult<()> {
        self.send_and_wait(|done| WriterOp::Put { key, value, durable: true, done: Some(done) }).await
    }

    /// Reads `key` from the metadata table.
    pub(crate) fn get_meta(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let txn = self.db()?.begin_read().map_err(read_err)?;
        let table = txn.open_table(META).map_err(read_err)?;
        let value = table.get(key).map_err(read_err)?.map(|v| v.value().to_vec());
        Ok(value)
    }

    /// Entries `start..end_exclusive` that are in the log.
    pub(crate) fn read_range(&self, start: u64, end_exclusive: u64) -> StoreResult<Vec<Entry<TypeConfig>>> {
        if start >= end_exclusive {
            return Ok(Vec::new());
        }
        // Pending first, then the database: see the module docs for why this order.
        let pending: BTreeMap<u64, Entry<TypeConfig>> =
            self.shared.pending.lock().range(start..end_exclusive).map(|(k, v)| (*k, v.clone())).collect();
        let mut out: BTreeMap<u64, Entry<TypeConfig>> = BTreeMap::new();
        let txn = self.db()?.begin_read().map_err(read_err)?;
        let table = txn.open_table(LOGS).map_err(read_err)?;
        for item in table.range(start..end_exclusive).map_err(read_err)? {
            let (k, v) = item.map_err(read_err)?;
            let entry: Entry<TypeConfig> = postcard::from_bytes(v.value()).map_err(read_err)?;
            out.insert(k.value(), entry);
        }
        out.extend(pending);
        Ok(out.into_values().collect())
    }
}

fn writer_loop(db: Arc<Database>, rx: mpsc::Receiver<WriterOp>, shared: std::sync::Weak<Shared>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let result = write_batch(&db, &batch);
        let Some(shared) = shared.upgrade() else {
            finish_batch(batch, &result);
            return;
        };
        settle_batch(&shared, batch, &result);
    }
}

/// After a batch's transaction: drops what it made durable from `pending`, then tells every
/// issuer the outcome (in that order, so a reader never misses an entry).
fn settle_batch(shared: &Shared, batch: Vec<WriterOp>, result: &Result<(), String>) {
    {
        if result.is_ok() {
            let mut pending = shared.pending.lock();
            for op in &batch {
                match op {
                    WriterOp::Append { entries, .. } => {
                        for (index, log_id, _) in entries {
                            if pending.get(index).map(|e| e.log_id) == Some(*log_id) {
                                pending.remove(index);
                            }
                        }
                    }
                    WriterOp::Truncate { from, .. } => {
                        pending.split_off(from);
                    }
                    _ => {}
                }
            }
        }
    }
    finish_batch(batch, result);
}

fn finish_batch(batch: Vec<WriterOp>, result: &Result<(), String>) {
    for op in batch {
        match op {
            WriterOp::Append { done, .. } => {
                done.log_io_completed(result.clone().map_err(io::Error::other));
            }
            WriterOp::Truncate { done, .. } | WriterOp::Purge { done, .. } => {
                let _ = done.send(result.clone());
            }
            WriterOp::Put { done, .. } => {
                if let Some(done) = done {
                    let _ = done.send(result.clone());
                }
            }
        }
    }
}

fn write_batch(db: &Database, batch: &[WriterOp]) -> Result<(), String> {
    let mut txn = db.begin_write().map_err(|e| e.to_string())?;
    let durability =
        if batch.iter().any(WriterOp::durable) { redb::Durability::Immediate } else { redb::Durability::None };
    txn.set_durability(durability).map_err(|e| e.to_string())?;
    {
        let mut logs = txn.open_table(LOGS).map_err(|e| e.to_string())?;
        let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
        for op in batch {
            match op {
                WriterOp::Append { entries, .. } => {
                    for (index, _, bytes) in entries {
                        logs.insert(*index, bytes.as_slice()).map_err(|e| e.to_string())?;
                    }
                }
                WriterOp::Truncate { from, .. } => {
                    logs.retain_in(*from.., |_, _| false).map_err(|e| e.to_string())?;
                }
                WriterOp::Purge { upto, log_id, .. } => {
                    logs.retain_in(..=*upto, |_, _| false).map_err(|e| e.to_string())?;
                    meta.insert(KEY_LAST_PURGED, log_id.as_slice()).map_err(|e| e.to_string())?;
                }
                WriterOp::Put { key, value, .. } => {
                    meta.insert(*key, value.as_slice()).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    txn.commit().map_err(|e| e.to_string())
}

fn to_bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TypeConfig>>> {
        let (start, end) = to_bounds(&range);
        self.read_range(start, end)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        let meta = self.shared.meta.lock();
        Ok(LogState { last_purged_log_id: meta.last_purged, last_log_id: meta.last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        let bytes = postcard::to_allocvec(vote).map_err(write_err)?;
        self.put_meta_durable(KEY_VOTE, bytes).await
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        let Some(bytes) = self.get_meta(KEY_VOTE)? else { return Ok(None) };
        let mut vote: Vote<NodeId> = postcard::from_bytes(&bytes).map_err(read_err)?;
        // openraft reads the vote only at start-up: see "No resuming leadership across a restart".
        if vote.leader_id.voted_for() == Some(self.self_id) {
            vote.committed = false;
        }
        Ok(Some(vote))
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        let bytes = postcard::to_allocvec(&committed).map_err(write_err)?;
        self.send(WriterOp::Put { key: KEY_COMMITTED, value: bytes, durable: false, done: None })
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        match self.get_meta(KEY_COMMITTED)? {
            Some(bytes) => Ok(postcard::from_bytes(&bytes).map_err(read_err)?),
            None => Ok(None),
        }
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        {
            let mut pending = self.shared.pending.lock();
            let mut meta = self.shared.meta.lock();
            for entry in entries {
                let bytes = postcard::to_allocvec(&entry).map_err(write_err)?;
                encoded.push((entry.log_id.index, entry.log_id, bytes));
                meta.last_log_id = Some(entry.log_id);
                pending.insert(entry.log_id.index, entry);
            }
        }
        self.send(WriterOp::Append { entries: encoded, done: callback })
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        let from = log_id.index;
        self.send_and_wait(|done| WriterOp::Truncate { from, done }).await?;
        self.shared.pending.lock().split_off(&from);
        let prev = if from == 0 { None } else { self.read_range(from - 1, from)?.pop().map(|e| e.log_id) };
        let mut meta = self.shared.meta.lock();
        meta.last_log_id = prev.or(meta.last_purged);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        let bytes = postcard::to_allocvec(&Some(log_id)).map_err(write_err)?;
        let upto = log_id.index;
        self.send_and_wait(|done| WriterOp::Purge { upto, log_id: bytes, done }).await?;
        let mut meta = self.shared.meta.lock();
        meta.last_purged = Some(log_id);
        if meta.last_log_id.map(|l| l.index) < Some(log_id.index) {
            meta.last_log_id = Some(log_id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A leader restarted in its own term must come back as a follower (see the module docs).
    #[tokio::test]
    async fn a_committed_vote_for_ourselves_is_read_back_uncommitted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = LogStore::open(Some(dir.path()), 1).unwrap();
            store.save_vote(&Vote::new_committed(3, 1)).await.unwrap();
            store.close();
        }
        let mut store = LogStore::open(Some(dir.path()), 1).unwrap();
        let vote = store.read_vote().await.unwrap().unwrap();
        assert_eq!(vote, Vote::new(3, 1), "same term, still our own vote, no longer committed");
        store.close();

        // Another server's restart keeps the committed vote for that leader: it must not campaign
        // before the leader's lease runs out, or it would unseat a healthy leader.
        let mut other = LogStore::open(Some(dir.path()), 2).unwrap();
        assert_eq!(other.read_vote().await.unwrap().unwrap(), Vote::new_committed(3, 1));
        other.close();
    }
}
