//! The `/v1/snapshot` archive: a gzip'd tar holding `meta.json`, `state.bin` (the serialised
//! state) and `SHA256SUMS`, the same layout Consul uses, so `snapshot inspect` style tooling
//! finds what it expects. The checksums are verified before anything is restored.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::{deserialize_state, StateData};
use crate::{Error, Result};

/// Archive metadata (`meta.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArchiveMeta {
    /// Snapshot id.
    #[serde(rename = "ID")]
    pub id: String,
    /// Raft index the state reflects.
    pub index: u64,
    /// Raft term at that index.
    pub term: u64,
    /// Archive format version.
    pub version: u32,
    /// Size of `state.bin`.
    pub size: u64,
}

/// Current archive format version.
pub const ARCHIVE_VERSION: u32 = 1;
/// Largest accepted archive or member, to bound memory on restore.
pub const MAX_ARCHIVE_BYTES: u64 = 1024 * 1024 * 1024;

/// Builds an archive from serialised state.
pub fn write_archive(meta: &ArchiveMeta, state_bin: &[u8]) -> Result<Vec<u8>> {
    let meta_json = serde_json::to_vec_pretty(meta).map_err(|e| Error::Storage(e.to_string()))?;
    let sums = format!(
        "{}  meta.json\n{}  state.bin\n",
        hex::encode(Sha256::digest(&meta_json)),
        hex::encode(Sha256::digest(state_bin))
    );
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in
        [("meta.json", meta_json.as_slice()), ("state.bin", state_bin), ("SHA256SUMS", sums.as_bytes())]
    {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes).map_err(|e| Error::Storage(e.to_string()))?;
    }
    let gz = tar.into_inner().map_err(|e| Error::Storage(e.to_string()))?;
    let mut out = gz.finish().map_err(|e| Error::Storage(e.to_string()))?;
    out.flush().map_err(|e| Error::Storage(e.to_string()))?;
    Ok(out)
}

/// Reads and verifies an archive. Any damage is a [`Error::BadRequest`] naming what is wrong.
pub fn read_archive(bytes: &[u8]) -> Result<(ArchiveMeta, StateData)> {
    let bad = |m: String| Error::BadRequest(format!("invalid snapshot archive: {m}"));
    let gz = flate2::read::GzDecoder::new(bytes);
    let mut tar = tar::Archive::new(gz.take(MAX_ARCHIVE_BYTES));
    let (mut meta_json, mut state_bin, mut sums) = (None, None, None);
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let name = entry.path().map_err(|e| bad(e.to_string()))?.to_string_lossy().into_owned();
        let mut buf = Vec::new();
        entry.read_to_end(&mut buf).map_err(|e| bad(e.to_string()))?;
        match name.as_str() {
            "meta.json" => meta_json = Some(buf),
            "state.bin" => state_bin = Some(buf),
            "SHA256SUMS" => sums = Some(buf),
            other => return Err(bad(format!("unexpected member {other:?}"))),
        }
    }
    let meta_json = meta_json.ok_or_else(|| bad("missing meta.json".into()))?;
    let state_bin = state_bin.ok_or_else(|| bad("missing state.bin".into()))?;
    let sums = String::from_utf8(sums.ok_or_else(|| bad("missing SHA256SUMS".into()))?)
        .map_err(|_| bad("SHA256SUMS is not text".into()))?;
    for (name, data) in [("meta.json", &meta_json), ("state.bin", &state_bin)] {
        let expected = sums
            .lines()
            .find_map(|l| l.split_once("  ").filter(|(_, n)| *n == name).map(|(h, _)| h.to_string()))
            .ok_or_else(|| bad(format!("SHA256SUMS has no line for {name}")))?;
        if hex::encode(Sha256::digest(data)) != expected {
            return Err(bad(format!("checksum mismatch for {name}")));
        }
    }
    let meta: ArchiveMeta = serde_json::from_slice(&meta_json).map_err(|e| bad(format!("meta.json: {e}")))?;
    if meta.version != ARCHIVE_VERSION {
        return Err(bad(format!("unsupported version {}", meta.version)));
    }
    let state = deserialize_state(&state_bin).map_err(|e| bad(format!("state.bin: {e}")))?;
    Ok((meta, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let mut state = StateData { kv_index: 7, ..StateData::default() };
        state.tombstones.insert("x".into(), 3);
        let bin = postcard::to_allocvec(&state).expect("encode");
        let meta =
            ArchiveMeta { id: "1-7-1".into(), index: 7, term: 1, version: ARCHIVE_VERSION, size: bin.len() as u64 };
        let archive = write_archive(&meta, &bin).expect("archive");
        let (meta2, state2) = read_archive(&archive).expect("read");
        assert_eq!(meta2, meta);
        assert_eq!(state2, state);
        assert!(read_archive(b"not a gzip").is_err());
        let mut truncated = archive.clone();
        truncated.truncate(archive.len() / 2);
        assert!(read_archive(&truncated).is_err());
    }
}
