//! Persistence of API-registered services and checks under `<data_dir>/services/` and
//! `<data_dir>/checks/`: one JSON file per entry, named by a hash of its ID (IDs may hold any
//! character), written atomically (temp file, fsync, rename, fsync of the directory) so a crash
//! leaves either the old or the new file, never a torn one.
//!
//! A write is split in three so that the fsyncs, the slow part, run outside the local state's
//! lock and concurrent registrations share the file system's journal commits:
//! [`Persist::stage_service`] and [`Persist::stage_check`] write and fsync a uniquely named temp
//! file (any thread, no lock); [`Staged::commit`] renames it into place (under the lock, so the
//! files follow the order in which memory changed); [`Persist::sync_dirs`] makes the renames
//! durable (after the lock, before the caller is answered).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::def::CheckDefinition;
use crate::state::catalog::ServiceInstance;
use crate::state::ext_fields::ServiceExt;
use crate::{Error, Result};

/// A persisted service.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// The two directories.
#[derive(Debug, Clone)]
pub(crate) struct Persist {
    services: PathBuf,
    checks: PathBuf,
}

fn file_name(id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    format!("{}.json", hex::encode(&digest[..16]))
}

fn storage(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("{}: {e}", path.display()))
}

/// A written and fsynced temp file, not yet in place. Dropped uncommitted, it is removed.
#[derive(Debug)]
pub(crate) struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl Staged {
    /// Renames the file into place (atomic; durable once [`Persist::sync_dirs`] returns).
    pub(crate) fn commit(mut self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.path).map_err(|e| storage(&self.path, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Temp files of concurrent writers of one entry must not collide: each gets its own name.
fn tmp_name(name: &str) -> String {
    format!("{name}.{:016x}.tmp", rand::random::<u64>())
}

fn stage(dir: &Path, name: &str, bytes: &[u8]) -> Result<Staged> {
    std::fs::create_dir_all(dir).map_err(|e| storage(dir, e))?;
    let staged = Staged { tmp: dir.join(tmp_name(name)), path: dir.join(name), committed: false };
    let mut f = std::fs::File::create(&staged.tmp).map_err(|e| storage(&staged.tmp, e))?;
    f.write_all(bytes).map_err(|e| storage(&staged.tmp, e))?;
    f.sync_all().map_err(|e| storage(&staged.tmp, e))?;
    Ok(staged)
}

fn sync_dir(dir: &Path) -> Result<()> {
    match std::fs::File::open(dir) {
        Ok(d) => d.sync_all().map_err(|e| storage(dir, e)),
        // Nothing was ever written there: nothing to make durable.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(storage(dir, e)),
    }
}

fn remove(dir: &Path, name: &str) -> Result<()> {
    let path = dir.join(name);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(storage(&path, e)),
    }
}

fn load_all<T: DeserializeOwned>(dir: &Path) -> Vec<T> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let all: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    // Temp files of writes a crash interrupted: never renamed into place, so never acknowledged.
    for tmp in all.iter().filter(|p| p.extension().is_some_and(|x| x == "tmp")) {
        let _ = std::fs::remove_file(tmp);
    }
    let mut paths: Vec<PathBuf> = all.into_iter().filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        match std::fs::read(&p)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(v) => out.push(v),
            // A file we cannot read is skipped, not fatal: the agent must still start.
            Err(e) => tracing::warn!(path = %p.display(), error = %e, "skipping unreadable persisted entry"),
        }
    }
    out
}

impl Persist {
    /// Persistence under `data_dir`.
    pub(crate) fn new(data_dir: &Path) -> Self {
        Persist { services: data_dir.join("services"), checks: data_dir.join("checks") }
    }

    /// Writes `s` to a temp file of its own, for [`Staged::commit`].
    pub(crate) fn stage_service(&self, s: &PersistedService) -> Result<Staged> {
        let bytes = serde_json::to_vec(s).map_err(|e| storage(&self.services, e))?;
        stage(&self.services, &file_name(&s.service.id), &bytes)
    }

    /// Writes `c` to a temp file of its own, for [`Staged::commit`].
    pub(crate) fn stage_check(&self, c: &PersistedCheck) -> Result<Staged> {
        let bytes = serde_json::to_vec(c).map_err(|e| storage(&self.checks, e))?;
        stage(&self.checks, &file_name(&c.def.id), &bytes)
    }

    /// Writes `s` in place at once (stage, commit, sync).
    pub(crate) fn save_service(&self, s: &PersistedService) -> Result<()> {
        self.stage_service(s)?.commit()?;
        sync_dir(&self.services)
    }

    /// Writes `c` in place at once (stage, commit, sync).
    pub(crate) fn save_check(&self, c: &PersistedCheck) -> Result<()> {
        self.stage_check(c)?.commit()?;
        sync_dir(&self.checks)
    }

    /// Removes a service's file (durable once [`Persist::sync_dirs`] returns).
    pub(crate) fn remove_service(&self, id: &str) -> Result<()> {
        remove(&self.services, &file_name(id))
    }

    /// Removes a check's file (durable once [`Persist::sync_dirs`] returns).
    pub(crate) fn remove_check(&self, id: &str) -> Result<()> {
        remove(&self.checks, &file_name(id))
    }

    /// Makes the renames and removals done so far durable.
    pub(crate) fn sync_dirs(&self) -> Result<()> {
        sync_dir(&self.services)?;
        sync_dir(&self.checks)
    }

    /// Everything persisted.
    pub(crate) fn load(&self) -> (Vec<PersistedService>, Vec<PersistedCheck>) {
        (load_all(&self.services), load_all(&self.checks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ext_fields::Locality;

    #[test]
    fn round_trips_and_removes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Persist::new(dir.path());
        let ext = ServiceExt {
            locality: Some(Locality { region: "r".into(), zone: "z".into() }),
            socket_path: "/s".into(),
            ..ServiceExt::default()
        };
        let svc = ServiceInstance { id: "a/b".into(), service: "web".into(), port: 80, ext, ..Default::default() };
        p.save_service(&PersistedService::new(svc.clone())).expect("save");
        let def = CheckDefinition::manual("c1", "c", "", "a/b", "passing");
        p.save_check(&PersistedCheck { def: def.clone(), status: "passing".into(), output: "ok".into() })
            .expect("save");
        let (s, c) = p.load();
        assert_eq!(s[0].clone().into_service(), svc);
        assert_eq!((c[0].def.clone(), c[0].output.as_str()), (def, "ok"));
        p.remove_service("a/b").expect("remove");
        p.remove_check("c1").expect("remove");
        p.remove_check("never").expect("absent is fine");
        let (s, c) = p.load();
        assert!(s.is_empty() && c.is_empty());
    }

    /// A staged write is invisible until committed, an abandoned one leaves nothing behind, and
    /// of two staged writes of one entry the one committed last is what loads.
    #[test]
    fn staged_writes_land_in_commit_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Persist::new(dir.path());
        let svc = |port| PersistedService::new(ServiceInstance { id: "w".into(), port, ..Default::default() });
        let first = p.stage_service(&svc(1)).expect("stage");
        let second = p.stage_service(&svc(2)).expect("stage");
        let json_files = || {
            std::fs::read_dir(dir.path().join("services"))
                .expect("dir")
                .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json")))
                .count()
        };
        assert_eq!(json_files(), 0, "staged is not yet in place");
        second.commit().expect("commit");
        first.commit().expect("commit");
        p.sync_dirs().expect("sync");
        let (s, _) = p.load();
        assert_eq!((s.len(), s[0].service.port), (1, 1));
        drop(p.stage_service(&svc(3)).expect("stage"));
        let names: Vec<_> = std::fs::read_dir(dir.path().join("services")).expect("dir").collect();
        assert_eq!(names.len(), 1, "the abandoned temp file is gone");
        // A temp file a crash left behind is cleared at load.
        std::fs::write(dir.path().join("services/x.json.0123456789abcdef.tmp"), b"{").expect("write");
        assert_eq!(p.load().0.len(), 1);
        assert_eq!(std::fs::read_dir(dir.path().join("services")).expect("dir").count(), 1);
    }
}
