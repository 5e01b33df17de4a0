//! Persistence of API-registered services and checks: one append-only journal,
//! `<data_dir>/local.journal`, of checksummed records (a service or check written, or removed).
//!
//! Why a journal and not a file per entry (the layout before, still read at start and folded in):
//! a file per registration cost a temp file, an fsync, a rename and a directory fsync each, and
//! ext4's inode allocation for those temp files alone was a seventh of a registration's CPU time.
//! Now a registration appends one record while the local state's lock is held (a page-cache
//! write, microseconds, so the journal follows the order in which memory changed) and, after the
//! lock, waits for an fsync that covers it. That fsync is shared: whoever syncs first syncs
//! everything appended so far ([`Persist::sync`], a group commit), so 32 concurrent registrations
//! cost one or two fsyncs, not 64.
//!
//! Record layout: length (u32 LE) · CRC-32 of the payload (u32 LE) · payload (JSON of
//! [`Record`]). A crash can leave a torn last record; replay stops at the first record that is
//! short or fails its checksum and cuts the file there. Only records whose fsync had returned
//! were acknowledged, and those all precede any torn one.
//!
//! The journal is rewritten with only the live entries ([`Persist::compact`]) when it has grown to
//! twice its size after the previous rewrite (and at least [`COMPACT_MIN`]): temp file, fsync,
//! rename, directory fsync — so a crash leaves the old journal or the new one, never neither.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::def::CheckDefinition;
use crate::state::catalog::ServiceInstance;
use crate::state::ext_fields::ServiceExt;
use crate::{Error, Result};

/// The journal's file name inside the data dir.
const JOURNAL: &str = "local.journal";

/// A journal smaller than this is never rewritten: rewriting it would save nothing worth an fsync.
pub(crate) const COMPACT_MIN: u64 = 1 << 20;

/// Bytes before each payload: length and checksum.
const HEADER: usize = 8;

/// The largest payload replay accepts. A length above it is a torn or corrupt header, not a
/// record: a service definition is kilobytes.
const MAX_RECORD: usize = 64 << 20;

/// A persisted service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PersistedService {
    /// The service.
    pub(crate) service: ServiceInstance,
    /// Its fields kept beside the catalog encoding (`ServiceInstance::ext`, which the field
    /// above leaves out); absent in files written before they existed.
    #[serde(default, skip_serializing_if = "ServiceExt::is_default")]
    pub(crate) ext: ServiceExt,
}

impl PersistedService {
    /// `service` as saved, extras included.
    pub(crate) fn new(service: ServiceInstance) -> Self {
        let ext = service.ext.clone();
        PersistedService { service, ext }
    }

    /// The saved service, extras put back.
    pub(crate) fn into_service(self) -> ServiceInstance {
        ServiceInstance { ext: self.ext, ..self.service }
    }
}

/// A persisted check, with its last status (TTL checks keep theirs across restarts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PersistedCheck {
    /// The definition.
    pub(crate) def: CheckDefinition,
    /// Last status.
    pub(crate) status: String,
    /// Last output.
    pub(crate) output: String,
}

impl PersistedCheck {
    /// What is saved of `c`.
    pub(crate) fn of(c: &super::LocalCheck) -> Self {
        PersistedCheck { def: c.def.clone(), status: c.status.clone(), output: c.output.clone() }
    }
}

/// One change, as journalled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Record {
    /// A service written (added or replaced).
    Service(PersistedService),
    /// A check written (added, replaced, or its TTL status changed).
    Check(PersistedCheck),
    /// A service removed (its checks are removed by records of their own).
    RemoveService(String),
    /// A check removed.
    RemoveCheck(String),
}

/// Everything persisted, by ID.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Loaded {
    /// Services.
    pub(crate) services: BTreeMap<String, PersistedService>,
    /// Checks.
    pub(crate) checks: BTreeMap<String, PersistedCheck>,
}

impl Loaded {
    fn apply(&mut self, r: Record) {
        match r {
            Record::Service(s) => {
                self.services.insert(s.service.id.clone(), s);
            }
            Record::Check(c) => {
                self.checks.insert(c.def.id.clone(), c);
            }
            Record::RemoveService(id) => {
                self.services.remove(&id);
            }
            Record::RemoveCheck(id) => {
                self.checks.remove(&id);
            }
        }
    }

    /// The entries as records that rebuild them.
    fn records(&self) -> impl Iterator<Item = Record> + '_ {
        let services = self.services.values().cloned().map(Record::Service);
        services.chain(self.checks.values().cloned().map(Record::Check))
    }
}

/// The open journal.
#[derive(Debug)]
struct Journal {
    /// Shared so an fsync can run without holding the lock appends take.
    file: Arc<File>,
    /// Its length: where the next record goes, and where a failed append is cut back to.
    len: u64,
    /// Its length after the last rewrite: it is rewritten again at twice that.
    base_len: u64,
    /// Appends so far (a sequence number for [`Persist::sync`]).
    seq: u64,
}

/// The journal of one agent's data dir.
#[derive(Debug)]
pub(crate) struct Persist {
    dir: PathBuf,
    path: PathBuf,
    /// `None` until [`Persist::load`] or the first append opens it.
    journal: Mutex<Option<Journal>>,
    /// One fsync at a time; the others wait for it and usually find their record covered.
    sync_lock: Mutex<()>,
    /// The highest append sequence number known to be durable.
    synced: AtomicU64,
}

fn storage(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("{}: {e}", path.display()))
}

/// Appends `r`'s framed encoding to `buf`.
fn encode(r: &Record, buf: &mut Vec<u8>) -> Result<()> {
    let payload = serde_json::to_vec(r).map_err(|e| Error::Storage(format!("encoding a journal record: {e}")))?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l as usize <= MAX_RECORD)
        .ok_or_else(|| Error::Storage(format!("a journal record of {} bytes is too large", payload.len())))?;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    Ok(())
}

/// The records in `bytes` up to the first one that is short, corrupt or unreadable, and the
/// length of the well-formed prefix.
fn decode_all(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_RECORD {
            break;
        }
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        match serde_json::from_slice(payload) {
            Ok(r) => out.push(r),
            Err(_) => break,
        }
        at += HEADER + len;
    }
    (out, at)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| storage(dir, e))
}

/// Entries of the layout before the journal (`services/`, `checks/`: a JSON file each), and
/// the paths to remove once they are in the journal. Unreadable files are skipped, not fatal:
/// the agent must still start.
fn load_legacy<T: DeserializeOwned>(dir: &Path) -> (Vec<T>, Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return (Vec::new(), Vec::new()) };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths.iter().filter(|p| p.extension().is_some_and(|x| x == "json")) {
        match std::fs::read(p)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(v) => out.push(v),
            Err(e) => tracing::warn!(path = %p.display(), error = %e, "skipping unreadable persisted entry"),
        }
    }
    (out, paths)
}

impl Persist {
    /// The journal under `data_dir` (opened by [`Persist::load`] or the first append).
    pub(crate) fn new(data_dir: &Path) -> Self {
        Persist {
            dir: data_dir.to_path_buf(),
            path: data_dir.join(JOURNAL),
            journal: Mutex::new(None),
            sync_lock: Mutex::new(()),
            synced: AtomicU64::new(0),
        }
    }

    fn open(&self) -> Result<Journal> {
        std::fs::create_dir_all(&self.dir).map_err(|e| storage(&self.dir, e))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| storage(&self.path, e))?;
        let len = file.metadata().map_err(|e| storage(&self.path, e))?.len();
        Ok(Journal { file: Arc::new(file), len, base_len: len, seq: 0 })
    }

    /// Everything persisted: the journal replayed over any entries of the old one-file-per-entry
    /// layout, and the journal left open for appends. It is rewritten only when that pays: to
    /// fold in (and then remove) the old layout's files, or when most of its records are
    /// superseded. Otherwise start-up costs one read, plus a truncation and an fsync when a
    /// crash left a torn tail.
    pub(crate) fn load(&self) -> Result<Loaded> {
        let mut loaded = Loaded::default();
        let (services, service_files) = load_legacy::<PersistedService>(&self.dir.join("services"));
        let (checks, check_files) = load_legacy::<PersistedCheck>(&self.dir.join("checks"));
        services.into_iter().map(Record::Service).for_each(|r| loaded.apply(r));
        checks.into_iter().map(Record::Check).for_each(|r| loaded.apply(r));
        let (replayed, good, len) = match std::fs::read(&self.path) {
            Ok(bytes) => {
                let (records, good) = decode_all(&bytes);
                let replayed = records.len();
                records.into_iter().for_each(|r| loaded.apply(r));
                (replayed, good as u64, bytes.len() as u64)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, 0, 0),
            Err(e) => return Err(storage(&self.path, e)),
        };
        if good < len {
            tracing::warn!(
                path = %self.path.display(),
                offset = good,
                dropped = len - good,
                "cutting a torn or corrupt tail off the local journal (a write a crash interrupted)"
            );
        }
        let live = loaded.services.len() + loaded.checks.len();
        let legacy = !service_files.is_empty() || !check_files.is_empty();
        let mut journal = self.journal.lock();
        if legacy || (good >= COMPACT_MIN && replayed > 2 * live) {
            *journal = Some(self.rewrite(loaded.records())?);
        } else {
            let mut j = self.open()?;
            if good < len {
                j.file.set_len(good).and_then(|()| j.file.sync_all()).map_err(|e| storage(&self.path, e))?;
                (j.len, j.base_len) = (good, good);
            }
            *journal = Some(j);
        }
        // The old layout's entries are in the journal now, durably: their files can go.
        for p in service_files.iter().chain(&check_files) {
            let _ = std::fs::remove_file(p);
        }
        for d in ["services", "checks"] {
            let _ = std::fs::remove_dir(self.dir.join(d));
        }
        Ok(loaded)
    }

    /// Writes `records` as a whole new journal in place of the old one; returns it, open.
    fn rewrite(&self, records: impl Iterator<Item = Record>) -> Result<Journal> {
        std::fs::create_dir_all(&self.dir).map_err(|e| storage(&self.dir, e))?;
        let mut buf = Vec::new();
        for r in records {
            encode(&r, &mut buf)?;
        }
        let tmp = self.path.with_extension("journal.tmp");
        let written = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(storage(&tmp, e));
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| storage(&self.path, e))?;
        sync_dir(&self.dir)?;
        let mut j = self.open()?;
        j.base_len = j.len;
        Ok(j)
    }

    /// Appends `records` as one write; durable once [`Persist::sync`] with the returned sequence
    /// number returns. Called with the local state's lock held, so the journal's order is
    /// memory's. On failure nothing was appended (a partial write is cut back off).
    pub(crate) fn append(&self, records: &[Record]) -> Result<u64> {
        let mut buf = Vec::new();
        for r in records {
            encode(r, &mut buf)?;
        }
        let mut guard = self.journal.lock();
        let j = match &mut *guard {
            Some(j) => j,
            none => none.insert(self.open()?),
        };
        if let Err(e) = (&*j.file).write_all(&buf) {
            // Leave no partial record behind: the next append must start on a record boundary.
            let _ = j.file.set_len(j.len);
            return Err(storage(&self.path, e));
        }
        j.len += buf.len() as u64;
        j.seq += 1;
        Ok(j.seq)
    }

    /// Whether the journal has grown enough to be worth rewriting with only the live entries.
    pub(crate) fn wants_compaction(&self) -> bool {
        self.journal.lock().as_ref().is_some_and(|j| j.len >= COMPACT_MIN && j.len >= 2 * j.base_len)
    }

    /// Rewrites the journal with just `live` (the entries memory holds). Called with the local
    /// state's lock held, so no append can slip in between the copy and the swap; everything
    /// appended before is durable when it returns.
    pub(crate) fn compact(&self, live: impl Iterator<Item = Record>) -> Result<()> {
        let mut guard = self.journal.lock();
        let seq = guard.as_ref().map_or(0, |j| j.seq);
        let mut j = self.rewrite(live)?;
        j.seq = seq;
        *guard = Some(j);
        self.synced.fetch_max(seq, Ordering::AcqRel);
        Ok(())
    }

    /// Waits until append `seq` is durable, syncing the journal unless a concurrent caller's
    /// fsync already covered it (a group commit).
    pub(crate) fn sync(&self, seq: u64) -> Result<()> {
        if self.synced.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        let _one_at_a_time = self.sync_lock.lock();
        if self.synced.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        // Everything appended by now is covered by this fsync, not just `seq`.
        let (file, upto) = match self.journal.lock().as_ref() {
            Some(j) => (j.file.clone(), j.seq),
            None => return Ok(()),
        };
        file.sync_data().map_err(|e| storage(&self.path, e))?;
        self.synced.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }

    /// The journal's current length in bytes (for tests and metrics).
    #[cfg(test)]
    fn len(&self) -> u64 {
        self.journal.lock().as_ref().map_or(0, |j| j.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ext_fields::Locality;

    fn svc(id: &str, port: u16) -> PersistedService {
        PersistedService::new(ServiceInstance { id: id.into(), service: "web".into(), port, ..Default::default() })
    }

    fn check(id: &str, output: &str) -> PersistedCheck {
        let def = CheckDefinition::manual(id, "c", "", "", "passing");
        PersistedCheck { def, status: "passing".into(), output: output.into() }
    }

    fn write(p: &Persist, records: &[Record]) {
        let seq = p.append(records).expect("append");
        p.sync(seq).expect("sync");
    }

    #[test]
    fn round_trips_and_removes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Persist::new(dir.path());
        let ext = ServiceExt {
            locality: Some(Locality { region: "r".into(), zone: "z".into() }),
            socket_path: "/s".into(),
            ..ServiceExt::default()
        };
        let s = ServiceInstance { id: "a/b".into(), service: "web".into(), port: 80, ext, ..Default::default() };
        write(&p, &[Record::Service(PersistedService::new(s.clone())), Record::Check(check("c1", "ok"))]);
        // One journal per data dir at a time (a reload may rewrite the file): the reloaded one
        // carries on.
        let p = Persist::new(dir.path());
        let loaded = p.load().expect("load");
        assert_eq!(loaded.services["a/b"].clone().into_service(), s, "extras survive");
        assert_eq!(loaded.checks["c1"].output, "ok");
        write(&p, &[Record::RemoveService("a/b".into()), Record::RemoveCheck("c1".into())]);
        write(&p, &[Record::RemoveCheck("never".into())]);
        let loaded = Persist::new(dir.path()).load().expect("load");
        assert!(loaded.services.is_empty() && loaded.checks.is_empty());
    }

    /// The last write of an entry wins. A reload leaves a small journal as it is (start-up
    /// reads it, nothing more) and rewrites a large one that is mostly superseded records down to
    /// the live entries, which load the same again.
    #[test]
    fn replay_keeps_the_last_write_and_load_compacts_only_when_it_pays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Persist::new(dir.path());
        for port in 1..=100 {
            write(&p, &[Record::Service(svc("w", port))]);
        }
        write(&p, &[Record::Service(svc("x", 7))]);
        let small = p.len();
        let again = Persist::new(dir.path());
        let loaded = again.load().expect("load");
        assert_eq!(loaded.services.len(), 2);
        assert_eq!(loaded.services["w"].service.port, 100);
        assert_eq!(again.len(), small, "a small journal is not rewritten at start");
        // Grow it past the rewrite threshold with superseded writes of the same two entries.
        let batch: Vec<Record> = (1..=500).map(|port| Record::Service(svc("w", port))).collect();
        while again.len() < COMPACT_MIN {
            write(&again, &batch);
        }
        let before = again.len();
        let third = Persist::new(dir.path());
        let loaded = third.load().expect("load");
        assert_eq!(loaded.services["w"].service.port, 500);
        assert!(third.len() < before / 100, "rewritten: {} of {before} bytes", third.len());
        assert_eq!(Persist::new(dir.path()).load().expect("load"), loaded);
    }

    /// A crash mid-append leaves a short or garbled last record: replay keeps every record
    /// before it and cuts the file there, so later appends follow the good prefix.
    #[test]
    fn a_torn_tail_is_cut_off() {
        for tear in [1usize, 5, 9, 30] {
            let dir = tempfile::tempdir().expect("tempdir");
            let p = Persist::new(dir.path());
            write(&p, &[Record::Service(svc("a", 1))]);
            write(&p, &[Record::Service(svc("b", 2))]);
            let path = dir.path().join(JOURNAL);
            let full = std::fs::read(&path).expect("read");
            let mut third = Vec::new();
            encode(&Record::Service(svc("c", 3)), &mut third).expect("encode");
            let mut torn = full.clone();
            torn.extend_from_slice(&third[..tear.min(third.len() - 1)]);
            std::fs::write(&path, &torn).expect("write");
            let p = Persist::new(dir.path());
            let loaded = p.load().expect("load");
            assert_eq!(loaded.services.keys().collect::<Vec<_>>(), ["a", "b"], "tear at {tear}");
            write(&p, &[Record::Service(svc("d", 4))]);
            let loaded = Persist::new(dir.path()).load().expect("load");
            assert_eq!(loaded.services.keys().collect::<Vec<_>>(), ["a", "b", "d"], "tear at {tear}");
        }
    }

    /// A flipped byte fails the checksum: that record and everything after it are dropped, never
    /// loaded as something else.
    #[test]
    fn a_corrupt_record_fails_its_checksum() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Persist::new(dir.path());
        write(&p, &[Record::Service(svc("a", 1))]);
        let first = p.len() as usize;
        write(&p, &[Record::Service(svc("b", 2))]);
        let path = dir.path().join(JOURNAL);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[first + HEADER + 3] ^= 0x20;
        std::fs::write(&path, &bytes).expect("write");
        let loaded = Persist::new(dir.path()).load().expect("load");
        assert_eq!(loaded.services.keys().collect::<Vec<_>>(), ["a"]);
        // A length no record can have is a corrupt header, not a 4 GiB allocation.
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(Persist::new(dir.path()).load().expect("load").services.len(), 1);
    }

    /// Entries of the one-file-per-entry layout are folded into the journal and their files
    /// removed; a journal entry for the same ID (written after them) wins.
    #[test]
    fn the_old_layout_is_folded_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (sub, name, body) in [
            ("services", "1.json", serde_json::to_vec(&svc("old", 1)).expect("json")),
            ("services", "2.json", serde_json::to_vec(&svc("both", 2)).expect("json")),
            ("services", "3.json", b"{not json".to_vec()),
            ("checks", "4.json", serde_json::to_vec(&check("c", "from file")).expect("json")),
        ] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
            std::fs::write(dir.path().join(sub).join(name), body).expect("write");
        }
        std::fs::write(dir.path().join("services/x.json.0123456789abcdef.tmp"), b"{").expect("write");
        write(&Persist::new(dir.path()), &[Record::Service(svc("both", 20))]);
        let loaded = Persist::new(dir.path()).load().expect("load");
        assert_eq!(loaded.services.keys().collect::<Vec<_>>(), ["both", "old"]);
        assert_eq!(loaded.services["both"].service.port, 20, "the journal is newer");
        assert_eq!(loaded.checks["c"].output, "from file");
        assert!(!dir.path().join("services").exists() && !dir.path().join("checks").exists());
        assert_eq!(Persist::new(dir.path()).load().expect("load"), loaded, "now from the journal alone");
    }

    /// Compaction keeps exactly the live entries it is given, and appends after it land in the
    /// new journal.
    #[test]
    fn compaction_rewrites_the_live_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Persist::new(dir.path());
        p.load().expect("load");
        let mut live = Loaded::default();
        let mut n = 0u16;
        while !p.wants_compaction() {
            n = n.wrapping_add(1);
            let r = Record::Service(svc(&format!("s{}", n % 50), n));
            write(&p, std::slice::from_ref(&r));
            live.apply(r);
        }
        assert!(p.len() >= COMPACT_MIN);
        p.compact(live.records()).expect("compact");
        assert!(p.len() < COMPACT_MIN / 10 && !p.wants_compaction());
        write(&p, &[Record::RemoveService("s1".into())]);
        live.apply(Record::RemoveService("s1".into()));
        assert_eq!(Persist::new(dir.path()).load().expect("load"), live);
    }

    /// Many threads appending and syncing at once: every acknowledged record is in the journal,
    /// in one piece, and they shared fsyncs.
    #[test]
    fn concurrent_appends_share_syncs_and_all_land() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Arc::new(Persist::new(dir.path()));
        p.load().expect("load");
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        write(
                            &p,
                            &[
                                Record::Service(svc(&format!("t{t}-{i}"), i)),
                                Record::Check(check(&format!("c{t}-{i}"), "x")),
                            ],
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let loaded = Persist::new(dir.path()).load().expect("load");
        assert_eq!((loaded.services.len(), loaded.checks.len()), (400, 400));
    }

    /// A journal path that cannot be written is a clear storage error, and nothing is loaded
    /// from it.
    #[test]
    fn an_unwritable_data_dir_is_a_storage_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").expect("write");
        let p = Persist::new(&file.join("data"));
        let err = p.append(&[Record::Service(svc("a", 1))]).expect_err("not a directory");
        assert!(matches!(&err, Error::Storage(m) if m.contains("plain-file")), "{err}");
        assert!(p.load().is_err());
    }
}
