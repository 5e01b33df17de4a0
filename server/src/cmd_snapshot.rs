//! `consul-rs snapshot save|restore|inspect`.
//!
//! A snapshot archive is a gzip'd tar holding `meta.json` (Raft snapshot metadata: at least
//! `ID`, `Index`, `Term`, `Version`), `state.bin` (the serialized state) and `SHA256SUMS`
//! (`<hex sha256>  <name>` lines for the other two). `inspect` and `save` verify the sums, so a
//! truncated or corrupted file is caught before anyone relies on it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{ArgAction, Args, Subcommand};
use sha2::{Digest, Sha256};

use crate::api::{Client, ClientFlags};

/// `snapshot` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Save a snapshot of the cluster state to a file.
    Save(SaveArgs),
    /// Restore the cluster state from a snapshot file.
    Restore(RestoreArgs),
    /// Show a snapshot file's metadata (offline).
    Inspect(InspectArgs),
}

/// `snapshot save` flags.
#[derive(Debug, Args)]
pub(crate) struct SaveArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Let any server answer, even without a leader.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    stale: bool,
    /// Where to write the snapshot.
    file: Option<PathBuf>,
}

/// `snapshot restore` flags.
#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// The snapshot to restore.
    file: Option<PathBuf>,
}

/// `snapshot inspect` flags.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The snapshot to inspect.
    file: Option<PathBuf>,
}

/// Runs a `snapshot` subcommand.
pub(crate) async fn run(cmd: SnapshotCommand) -> Result<()> {
    match cmd {
        SnapshotCommand::Save(a) => save(a).await,
        SnapshotCommand::Restore(a) => restore(a).await,
        SnapshotCommand::Inspect(a) => {
            let file = a.file.ok_or_else(|| anyhow!("Error! Missing FILE argument"))?;
            let f = std::fs::File::open(&file)
                .with_context(|| format!("Error opening snapshot file {}", file.display()))?;
            let info = inspect_archive(std::io::BufReader::new(f))
                .with_context(|| format!("Error verifying snapshot file {}", file.display()))?;
            print!("{}", info.render());
            Ok(())
        }
    }
}

/// What `inspect` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotInfo {
    /// Raft snapshot ID.
    pub(crate) id: String,
    /// Size of the state in bytes (`meta.json`'s `Size`, else the size of `state.bin`).
    pub(crate) size: u64,
    /// Raft index the snapshot covers.
    pub(crate) index: u64,
    /// Raft term of that index.
    pub(crate) term: u64,
    /// Snapshot format version.
    pub(crate) version: u64,
}

impl SnapshotInfo {
    /// The `inspect` layout: labels indented one space, values in a column six spaces past the
    /// longest label.
    pub(crate) fn render(&self) -> String {
        let rows = [
            ("ID", self.id.clone()),
            ("Size", self.size.to_string()),
            ("Index", self.index.to_string()),
            ("Term", self.term.to_string()),
            ("Version", self.version.to_string()),
        ];
        let width = " Version".len() + 6;
        rows.iter().map(|(k, v)| format!("{:<width$}{v}\n", format!(" {k}"))).collect()
    }
}

/// Reads and verifies an archive: every member listed in `SHA256SUMS` must match, and both
/// `meta.json` and `state.bin` must be present and listed.
pub(crate) fn inspect_archive<R: Read>(reader: R) -> Result<SnapshotInfo> {
    let gz = flate2::read::GzDecoder::new(reader);
    let mut archive = tar::Archive::new(gz);
    let mut hashes: BTreeMap<String, String> = BTreeMap::new();
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    let mut meta: Option<Vec<u8>> = None;
    let mut sums: Option<String> = None;
    for entry in archive.entries().context("not a gzip'd tar archive")? {
        let mut entry = entry.context("corrupt archive")?;
        let name = entry.path().context("corrupt archive entry name")?.to_string_lossy().into_owned();
        match name.as_str() {
            "meta.json" | "SHA256SUMS" => {
                let mut buf = Vec::new();
                entry.read_to_end(&mut buf).with_context(|| format!("corrupt archive member {name}"))?;
                if name == "meta.json" {
                    hashes.insert(name.clone(), hex::encode(Sha256::digest(&buf)));
                    sizes.insert(name, buf.len() as u64);
                    meta = Some(buf);
                } else {
                    sums = Some(String::from_utf8(buf).context("SHA256SUMS is not text")?);
                }
            }
            _ => {
                // Stream the (possibly large) state through the hash instead of holding it.
                let mut hasher = Sha256::new();
                let n =
                    std::io::copy(&mut entry, &mut hasher).with_context(|| format!("corrupt archive member {name}"))?;
                hashes.insert(name.clone(), hex::encode(hasher.finalize()));
                sizes.insert(name, n);
            }
        }
    }
    let sums = sums.ok_or_else(|| anyhow!("archive has no SHA256SUMS"))?;
    let meta = meta.ok_or_else(|| anyhow!("archive has no meta.json"))?;
    if !hashes.contains_key("state.bin") {
        bail!("archive has no state.bin");
    }
    let mut listed = BTreeMap::new();
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (sum, name) =
            line.split_once(char::is_whitespace).ok_or_else(|| anyhow!("malformed SHA256SUMS line {line:?}"))?;
        // `sha256sum` output puts "  " or " *" between sum and name.
        let name = name.trim_start().trim_start_matches('*');
        listed.insert(name.to_string(), sum.to_ascii_lowercase());
    }
    for required in ["meta.json", "state.bin"] {
        if !listed.contains_key(required) {
            bail!("SHA256SUMS has no entry for {required}");
        }
    }
    for (name, want) in &listed {
        let got = hashes.get(name).ok_or_else(|| anyhow!("SHA256SUMS lists {name}, which is not in the archive"))?;
        if got != want {
            bail!("checksum mismatch for {name}: SHA256SUMS says {want}, the content hashes to {got}");
        }
    }

    let meta: serde_json::Value = serde_json::from_slice(&meta).context("meta.json is not valid JSON")?;
    let num = |k: &str| meta.get(k).and_then(serde_json::Value::as_u64);
    let id = match meta.get("ID") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => bail!("meta.json has no ID"),
    };
    Ok(SnapshotInfo {
        id,
        size: num("Size").unwrap_or_else(|| sizes.get("state.bin").copied().unwrap_or(0)),
        index: num("Index").ok_or_else(|| anyhow!("meta.json has no numeric Index"))?,
        term: num("Term").ok_or_else(|| anyhow!("meta.json has no numeric Term"))?,
        version: num("Version").ok_or_else(|| anyhow!("meta.json has no numeric Version"))?,
    })
}

async fn save(a: SaveArgs) -> Result<()> {
    let file = a.file.ok_or_else(|| anyhow!("Error! Missing FILE argument"))?;
    let client = Client::new(&a.client)?;
    let q: Vec<(&str, Option<String>)> = if a.stale { vec![("stale", None)] } else { Vec::new() };
    let resp =
        client.call("GET", "/v1/snapshot", &q, None).await.map_err(|e| anyhow!("Error saving snapshot: {e:#}"))?;
    // Verify before the file takes its final name, so a bad download never looks like a backup.
    let info = inspect_archive(resp.body.as_slice()).context("Error verifying snapshot")?;
    write_atomically(&file, &resp.body)?;
    println!("Saved and verified snapshot to index {}", resp.index.unwrap_or(info.index));
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("Error writing snapshot to {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("Error moving snapshot into place at {}", path.display()))?;
    Ok(())
}

async fn restore(a: RestoreArgs) -> Result<()> {
    let file = a.file.ok_or_else(|| anyhow!("Error! Missing FILE argument"))?;
    let bytes = std::fs::read(&file).with_context(|| format!("Error opening snapshot file {}", file.display()))?;
    let client = Client::new(&a.client)?;
    client
        .call("PUT", "/v1/snapshot", &[], Some(bytes))
        .await
        .map_err(|e| anyhow!("Error restoring snapshot: {e:#}"))?;
    println!("Restored snapshot");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn build(meta: &[u8], state: &[u8], sums: Option<String>) -> Vec<u8> {
        let sums = sums.unwrap_or_else(|| {
            format!(
                "{}  meta.json\n{}  state.bin\n",
                hex::encode(Sha256::digest(meta)),
                hex::encode(Sha256::digest(state))
            )
        });
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        for (name, data) in [("meta.json", meta), ("state.bin", state), ("SHA256SUMS", sums.as_bytes())] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, name, data).expect("append");
        }
        let mut gz = tar.into_inner().expect("tar");
        gz.flush().expect("flush");
        gz.finish().expect("gz")
    }

    const META: &[u8] = br#"{"ID":"2-5-1477944140022","Index":5,"Term":2,"Version":1,"Size":667}"#;

    #[test]
    fn inspect_good_archive() {
        let archive = build(META, b"state bytes", None);
        let info = inspect_archive(archive.as_slice()).expect("inspect");
        assert_eq!(info, SnapshotInfo { id: "2-5-1477944140022".into(), size: 667, index: 5, term: 2, version: 1 });
        assert_eq!(
            info.render(),
            " ID           2-5-1477944140022\n Size         667\n Index        5\n Term         2\n Version      1\n"
        );
    }

    #[test]
    fn size_defaults_to_state_length() {
        let meta = br#"{"ID":"x","Index":1,"Term":1,"Version":1}"#;
        let info = inspect_archive(build(meta, b"12345", None).as_slice()).expect("inspect");
        assert_eq!(info.size, 5);
    }

    #[test]
    fn bad_checksum_is_an_error() {
        let sums = format!("{}  meta.json\n{}  state.bin\n", hex::encode(Sha256::digest(META)), "00".repeat(32));
        let err = format!("{:#}", inspect_archive(build(META, b"state", Some(sums)).as_slice()).expect_err("bad"));
        assert!(err.contains("checksum mismatch for state.bin"), "{err}");
    }

    #[test]
    fn missing_members_and_garbage() {
        let sums = format!("{}  meta.json\n", hex::encode(Sha256::digest(META)));
        let err = inspect_archive(build(META, b"s", Some(sums)).as_slice()).expect_err("unlisted").to_string();
        assert!(err.contains("no entry for state.bin"), "{err}");
        assert!(inspect_archive(&b"not an archive"[..]).is_err());
        let err = inspect_archive(build(b"{}", b"s", None).as_slice()).expect_err("no id").to_string();
        assert!(err.contains("no ID"), "{err}");
    }
}
