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
/// Largest `meta.json` accepted: a few hundred bytes in practice.
const MAX_META_BYTES: u64 = 64 * 1024;
/// Largest `SHA256SUMS` accepted: two lines in practice.
const MAX_SUMS_BYTES: u64 = 4 * 1024;
/// Tar headers, padding and the end-of-archive blocks on top of the members' own bytes.
const TAR_OVERHEAD: u64 = 64 * 1024;

/// How far a restore may inflate an uploaded archive (`limits.snapshot_max_size`,
/// `limits.snapshot_max_inflate_ratio`). A restore holds the decoded state in memory once, so
/// these bound the memory an upload can make the agent spend, whatever its headers claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreLimits {
    /// Largest `state.bin` (the uncompressed state) accepted, in bytes.
    pub max_state_bytes: u64,
    /// Largest ratio of inflated to uploaded bytes. Gzip'd state compresses well under 20:1 in
    /// practice (postcard-encoded keys, values and indexes); a bomb of zeros inflates about
    /// 1000:1, the most deflate can do.
    pub max_inflate_ratio: u64,
}

impl Default for RestoreLimits {
    fn default() -> Self {
        // 256 MiB: a restored state travels as one Raft entry, and the server RPC port takes no
        // larger frame (`rpc::wire::request_max`); refusing here says why before any work.
        RestoreLimits { max_state_bytes: 256 * 1024 * 1024, max_inflate_ratio: 200 }
    }
}

impl RestoreLimits {
    /// The most bytes an archive of `compressed_len` bytes may inflate to.
    pub fn inflate_cap(&self, compressed_len: u64) -> u64 {
        let by_ratio = compressed_len.saturating_mul(self.max_inflate_ratio.max(1));
        by_ratio.min(self.max_state_bytes.saturating_add(MAX_META_BYTES + MAX_SUMS_BYTES + TAR_OVERHEAD))
    }
}

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
    // meta.json first: a reader learns the state's size before it inflates any of it.
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

/// Reads and verifies an archive held in memory, under the default [`RestoreLimits`].
pub fn read_archive(bytes: &[u8]) -> Result<(ArchiveMeta, StateData)> {
    read_archive_from(bytes, bytes.len() as u64, &RestoreLimits::default())
}

/// A reader that fails once more than `left` bytes have come through it, so no tar header
/// can make the gzip stream inflate past the cap.
struct Capped<R> {
    inner: R,
    left: u64,
    cap: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // One probe byte tells a stream that ends exactly at the cap from one that goes on.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(std::io::Error::other(format!("it inflates to more than {} bytes", self.cap))),
            };
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Reads and verifies an archive of `compressed_len` bytes from `reader` without trusting
/// anything it claims: every member's size is checked before it is inflated (`meta.json` and
/// `SHA256SUMS` are small; `state.bin` must match `meta.json`'s `Size` and fit `limits`), the
/// whole stream is inflated through a cap derived from `limits`, the gzip trailer (CRC-32 and
/// length) is read and checked, and both SHA-256 sums are verified before the state is
/// decoded. Any damage is a [`Error::BadRequest`] naming what is wrong; nothing is applied here.
pub fn read_archive_from<R: Read>(
    reader: R,
    compressed_len: u64,
    limits: &RestoreLimits,
) -> Result<(ArchiveMeta, StateData)> {
    let bad = |m: String| Error::BadRequest(format!("invalid snapshot archive: {m}"));
    let cap = limits.inflate_cap(compressed_len);
    let gz = flate2::read::GzDecoder::new(reader);
    let mut tar = tar::Archive::new(Capped { inner: gz, left: cap, cap });
    let (mut meta, mut meta_json, mut state_bin, mut sums) = (None::<ArchiveMeta>, None, None, None);
    {
        let entries = tar.entries().map_err(|e| bad(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad(e.to_string()))?;
            let name = entry.path().map_err(|e| bad(e.to_string()))?.to_string_lossy().into_owned();
            let declared = entry.size();
            let limit = match name.as_str() {
                "meta.json" if meta_json.is_none() => MAX_META_BYTES,
                "SHA256SUMS" if sums.is_none() => MAX_SUMS_BYTES,
                "state.bin" if state_bin.is_none() => {
                    let Some(meta) = &meta else {
                        return Err(bad("state.bin comes before meta.json".into()));
                    };
                    if declared != meta.size {
                        return Err(bad(format!("state.bin holds {declared} bytes but meta.json says {}", meta.size)));
                    }
                    limits.max_state_bytes.min(cap)
                }
                "meta.json" | "SHA256SUMS" | "state.bin" => return Err(bad(format!("{name} appears twice"))),
                other => return Err(bad(format!("unexpected member {other:?}"))),
            };
            if declared > limit {
                return Err(Error::TooLarge(format!(
                    "snapshot archive member {name} is {declared} bytes, over the limit of {limit} bytes for an \
                     archive of {compressed_len} bytes (limits.snapshot_max_size {}, limits.snapshot_max_inflate_ratio {})",
                    limits.max_state_bytes, limits.max_inflate_ratio
                )));
            }
            // Bounded by `limit` just above; the tar reader stops at the declared size.
            let mut buf = Vec::with_capacity(declared as usize);
            entry.read_to_end(&mut buf).map_err(|e| bad(format!("{name}: {e}")))?;
            match name.as_str() {
                "meta.json" => {
                    meta = Some(serde_json::from_slice(&buf).map_err(|e| bad(format!("meta.json: {e}")))?);
                    meta_json = Some(buf);
                }
                "state.bin" => state_bin = Some(buf),
                _ => sums = Some(buf),
            }
        }
    }
    // The tar reader stops at the end-of-archive blocks: inflate the rest so the gzip decoder
    // reaches its trailer and checks the CRC-32 and length (a cut-off archive fails here).
    std::io::copy(&mut tar.into_inner(), &mut std::io::sink()).map_err(|e| bad(format!("gzip stream: {e}")))?;
    let meta = meta.ok_or_else(|| bad("missing meta.json".into()))?;
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

    fn sample() -> (ArchiveMeta, Vec<u8>) {
        let mut state = StateData { kv_index: 9, ..StateData::default() };
        for i in 0..200 {
            state.tombstones.insert(format!("key/{i}"), i);
        }
        let bin = postcard::to_allocvec(&state).expect("encode");
        (ArchiveMeta { id: "1-9-1".into(), index: 9, term: 1, version: ARCHIVE_VERSION, size: bin.len() as u64 }, bin)
    }

    /// gzip(tar) of raw members, each with the size its header claims and the bytes given.
    fn raw_archive(members: &[(&str, u64, &[u8])]) -> Vec<u8> {
        let mut tar = Vec::new();
        for (name, claimed, bytes) in members {
            let mut header = tar::Header::new_gnu();
            header.set_path(name).expect("path");
            header.set_size(*claimed);
            header.set_mode(0o644);
            header.set_cksum();
            tar.extend_from_slice(header.as_bytes());
            tar.extend_from_slice(bytes);
            tar.resize(tar.len().div_ceil(512) * 512, 0);
        }
        tar.extend_from_slice(&[0u8; 1024]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("gzip");
        gz.finish().expect("gzip")
    }

    /// The #25 bomb: a small archive whose tar header claims a 3 GiB `state.bin`. Refused on
    /// the header, before a byte of it is inflated.
    #[test]
    fn a_member_claiming_more_than_the_limits_is_refused_before_inflating() {
        let (mut meta, _) = sample();
        meta.size = 3 << 30;
        let meta_json = serde_json::to_vec(&meta).expect("meta");
        let bomb =
            raw_archive(&[("meta.json", meta_json.len() as u64, &meta_json), ("state.bin", 3 << 30, &[0u8; 4096])]);
        let e = read_archive(&bomb).expect_err("bomb").to_string();
        assert!(e.contains("state.bin") && e.contains("over the limit"), "{e}");
        assert_eq!(read_archive(&bomb).expect_err("bomb").http_status(), 413);
        // The header must also agree with meta.json.
        meta.size = 10;
        let meta_json = serde_json::to_vec(&meta).expect("meta");
        let lie = raw_archive(&[("meta.json", meta_json.len() as u64, &meta_json), ("state.bin", 4096, &[0u8; 4096])]);
        assert!(read_archive(&lie).expect_err("lie").to_string().contains("meta.json says 10"));
        // And state.bin may not come first (nothing to check its size against).
        let early = raw_archive(&[("state.bin", 4096, &[0u8; 4096])]);
        assert!(read_archive(&early).expect_err("order").to_string().contains("before meta.json"));
        let huge_meta = raw_archive(&[("meta.json", 1 << 20, &[b' '; 1 << 20])]);
        assert!(read_archive(&huge_meta).expect_err("meta").to_string().contains("meta.json"));
    }

    /// Inflation is capped by ratio to the upload, whatever the headers say.
    #[test]
    fn inflation_is_capped_by_ratio_and_absolute_size() {
        let (meta, bin) = sample();
        let archive = write_archive(&meta, &bin).expect("archive");
        let len = archive.len() as u64;
        let tight = RestoreLimits { max_state_bytes: 1 << 30, max_inflate_ratio: 1 };
        let e = read_archive_from(archive.as_slice(), len, &tight).expect_err("ratio").to_string();
        assert!(e.contains("limit") || e.contains("inflates"), "{e}");
        let small = RestoreLimits { max_state_bytes: bin.len() as u64 - 1, max_inflate_ratio: 1000 };
        assert!(read_archive_from(archive.as_slice(), len, &small).is_err());
        let exact = RestoreLimits { max_state_bytes: bin.len() as u64, max_inflate_ratio: 1000 };
        assert!(read_archive_from(archive.as_slice(), len, &exact).is_ok());
        assert_eq!(
            RestoreLimits::default().inflate_cap(1 << 40),
            (256 << 20) + MAX_META_BYTES + MAX_SUMS_BYTES + TAR_OVERHEAD
        );
    }

    /// The gzip trailer (CRC-32 and length) is read and checked: an archive with it cut off
    /// or altered is refused even though the tar members and SHA256SUMS are intact.
    #[test]
    fn the_gzip_trailer_is_verified() {
        let (meta, bin) = sample();
        let archive = write_archive(&meta, &bin).expect("archive");
        assert!(read_archive(&archive).is_ok());
        let cut = &archive[..archive.len() - 8];
        let e = read_archive(cut).expect_err("no trailer").to_string();
        assert!(e.contains("gzip"), "{e}");
        let mut flipped = archive.clone();
        let crc_at = archive.len() - 8;
        flipped[crc_at] ^= 0xff;
        let e = read_archive(&flipped).expect_err("bad crc").to_string();
        assert!(e.contains("gzip"), "{e}");
    }

    /// A member named twice cannot replace the one already checked.
    #[test]
    fn duplicate_and_unknown_members_are_refused() {
        let (meta, _) = sample();
        let meta_json = serde_json::to_vec(&meta).expect("meta");
        let twice = raw_archive(&[
            ("meta.json", meta_json.len() as u64, &meta_json),
            ("meta.json", meta_json.len() as u64, &meta_json),
        ]);
        assert!(read_archive(&twice).expect_err("twice").to_string().contains("appears twice"));
        let odd = raw_archive(&[("etc/passwd", 4, b"root")]);
        assert!(read_archive(&odd).expect_err("odd").to_string().contains("unexpected member"));
    }
}
