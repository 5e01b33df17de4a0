//! Persistence of API-registered services and checks under `<data_dir>/services/` and
//! `<data_dir>/checks/`: one JSON file per entry, named by a hash of its ID (IDs may hold any
//! character), written atomically (temp file, fsync, rename, fsync of the directory) so a crash
//! leaves either the old or the new file, never a torn one.

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

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| storage(dir, e))?;
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| storage(&tmp, e))?;
    f.write_all(bytes).map_err(|e| storage(&tmp, e))?;
    f.sync_all().map_err(|e| storage(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| storage(&path, e))?;
    // Make the rename itself durable.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
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
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
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

    pub(crate) fn save_service(&self, s: &PersistedService) -> Result<()> {
        let bytes = serde_json::to_vec(s).map_err(|e| storage(&self.services, e))?;
        write_atomic(&self.services, &file_name(&s.service.id), &bytes)
    }

    pub(crate) fn remove_service(&self, id: &str) -> Result<()> {
        remove(&self.services, &file_name(id))
    }

    pub(crate) fn save_check(&self, c: &PersistedCheck) -> Result<()> {
        let bytes = serde_json::to_vec(c).map_err(|e| storage(&self.checks, e))?;
        write_atomic(&self.checks, &file_name(&c.def.id), &bytes)
    }

    pub(crate) fn remove_check(&self, id: &str) -> Result<()> {
        remove(&self.checks, &file_name(id))
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
}
