//! `log_file`: the agent's log written to a file that rotates by size and age, named and
//! pruned as Consul's `logging/logfile.go` does.
//!
//! The active file keeps its name (`consul.log`, or the name `log_file` gives); a rotation
//! renames it to `<stem>-<unix nanos of its creation><ext>` (`consul-1700000000000000000.log`)
//! and opens a new one. `log_rotate_max_files` then keeps that many rotated files (0: keep all;
//! -1: delete every rotated file).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Consul's default `log_rotate_duration`.
pub const DEFAULT_ROTATE_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Where and when to rotate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileConfig {
    /// `log_file`: a file path, or a directory when it ends in `/` (then `consul.log` in it).
    pub path: PathBuf,
    /// `log_rotate_bytes`: rotate once the active file holds this many bytes (0: never by size).
    pub rotate_bytes: u64,
    /// `log_rotate_duration`: rotate a file this old (0 means the 24h default, as in Consul).
    pub rotate_duration: Duration,
    /// `log_rotate_max_files`: rotated files to keep (0: all; negative: none).
    pub rotate_max_files: i64,
}

/// The rotating writer (an `io::Write`; wrap it in a `Mutex` for `tracing_subscriber`).
#[derive(Debug)]
pub struct LogFile {
    dir: PathBuf,
    name: String,
    stem: String,
    ext: String,
    rotate_bytes: u64,
    duration: Duration,
    max_files: i64,
    file: Option<File>,
    written: u64,
    created: SystemTime,
}

impl LogFile {
    /// Opens (appending) the active file, creating its directory.
    pub fn open(config: &LogFileConfig) -> io::Result<LogFile> {
        let text = config.path.to_string_lossy();
        let (dir, name) = if text.ends_with('/') || text.is_empty() {
            (config.path.clone(), "consul.log".to_string())
        } else {
            let name = config.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (config.path.parent().map(Path::to_path_buf).unwrap_or_default(), name)
        };
        let (stem, ext) = match name.rfind('.').filter(|i| *i > 0) {
            Some(i) => (name[..i].to_string(), name[i..].to_string()),
            None => (name.clone(), ".log".to_string()),
        };
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(&dir)?;
        }
        let duration = if config.rotate_duration.is_zero() { DEFAULT_ROTATE_DURATION } else { config.rotate_duration };
        let mut f = LogFile {
            dir,
            name,
            stem,
            ext,
            rotate_bytes: config.rotate_bytes,
            duration,
            max_files: config.rotate_max_files,
            file: None,
            written: 0,
            created: SystemTime::now(),
        };
        f.open_new()?;
        Ok(f)
    }

    /// The active file's path.
    pub fn active_path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    fn open_new(&mut self) -> io::Result<()> {
        let file = OpenOptions::new().create(true).append(true).open(self.active_path())?;
        self.file = Some(file);
        self.written = 0;
        self.created = SystemTime::now();
        Ok(())
    }

    /// The name a rotated file created at `created` gets.
    fn rotated_name(&self, created: SystemTime) -> String {
        let nanos = created.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        format!("{}-{nanos}{}", self.stem, self.ext)
    }

    fn rotate_if_due(&mut self) -> io::Result<()> {
        let by_size = self.rotate_bytes > 0 && self.written >= self.rotate_bytes;
        let by_age = self.created.elapsed().unwrap_or_default() >= self.duration;
        if !(by_size || by_age) {
            return Ok(());
        }
        self.file = None;
        std::fs::rename(self.active_path(), self.dir.join(self.rotated_name(self.created)))?;
        self.open_new()?;
        self.prune()
    }

    /// The rotated files, oldest first (their names differ only in equal-width timestamps).
    pub fn rotated_files(&self) -> io::Result<Vec<PathBuf>> {
        let dir = if self.dir.as_os_str().is_empty() { Path::new(".") } else { &self.dir };
        let prefix = format!("{}-", self.stem);
        let mut names: Vec<String> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.strip_prefix(&prefix)
                    .and_then(|r| r.strip_suffix(&self.ext))
                    .is_some_and(|ts| !ts.is_empty() && ts.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        names.sort();
        Ok(names.into_iter().map(|n| self.dir.join(n)).collect())
    }

    fn prune(&self) -> io::Result<()> {
        if self.max_files == 0 {
            return Ok(());
        }
        let files = self.rotated_files()?;
        let keep = usize::try_from(self.max_files).unwrap_or(0);
        let excess = files.len().saturating_sub(keep);
        for f in &files[..excess] {
            std::fs::remove_file(f)?;
        }
        Ok(())
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // As Consul: the check comes before the write, so a file ends past the limit by at most
        // one record, and records are never split across files.
        self.rotate_if_due()?;
        if self.file.is_none() {
            self.open_new()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("log file not open"));
        };
        let n = file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, bytes: u64, max: i64) -> LogFileConfig {
        LogFileConfig {
            path: PathBuf::from(format!("{}/", dir.display())),
            rotate_bytes: bytes,
            rotate_duration: Duration::ZERO,
            rotate_max_files: max,
        }
    }

    #[test]
    fn a_directory_gets_consul_log_and_rotated_names_carry_nanos() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut f = LogFile::open(&config(dir.path(), 10, 0)).expect("open");
        assert_eq!(f.active_path(), dir.path().join("consul.log"));
        f.write_all(b"0123456789abc\n").expect("write");
        f.write_all(b"second\n").expect("write");
        let rotated = f.rotated_files().expect("list");
        assert_eq!(rotated.len(), 1);
        let name = rotated[0].file_name().expect("name").to_string_lossy().into_owned();
        assert!(name.starts_with("consul-") && name.ends_with(".log"), "{name}");
        assert_eq!(std::fs::read_to_string(&rotated[0]).expect("read"), "0123456789abc\n");
        assert_eq!(std::fs::read_to_string(f.active_path()).expect("read"), "second\n");
    }

    #[test]
    fn a_named_file_without_extension_rotates_to_dot_log() {
        let dir = tempfile::tempdir().expect("tmp");
        let c = LogFileConfig { path: dir.path().join("agent"), ..config(dir.path(), 1, 0) };
        let mut f = LogFile::open(&c).expect("open");
        f.write_all(b"a\n").expect("write");
        f.write_all(b"b\n").expect("write");
        let rotated = f.rotated_files().expect("list");
        let name = rotated[0].file_name().expect("name").to_string_lossy().into_owned();
        assert!(name.starts_with("agent-") && name.ends_with(".log"), "{name}");
        assert!(dir.path().join("agent").exists());
    }

    #[test]
    fn max_files_prunes_the_oldest_and_minus_one_keeps_none() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut f = LogFile::open(&config(dir.path(), 1, 2)).expect("open");
        for i in 0..6 {
            f.write_all(format!("line {i}\n").as_bytes()).expect("write");
        }
        let rotated = f.rotated_files().expect("list");
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        assert_eq!(std::fs::read_to_string(&rotated[1]).expect("read"), "line 4\n");

        let dir = tempfile::tempdir().expect("tmp");
        let mut f = LogFile::open(&config(dir.path(), 1, -1)).expect("open");
        for i in 0..4 {
            f.write_all(format!("line {i}\n").as_bytes()).expect("write");
        }
        assert!(f.rotated_files().expect("list").is_empty());

        let dir = tempfile::tempdir().expect("tmp");
        let mut f = LogFile::open(&config(dir.path(), 1, 0)).expect("open");
        for i in 0..4 {
            f.write_all(format!("line {i}\n").as_bytes()).expect("write");
        }
        assert_eq!(f.rotated_files().expect("list").len(), 3);
    }

    #[test]
    fn appends_to_an_existing_active_file() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("consul.log"), "old\n").expect("seed");
        let mut f = LogFile::open(&config(dir.path(), 0, 0)).expect("open");
        f.write_all(b"new\n").expect("write");
        assert_eq!(std::fs::read_to_string(f.active_path()).expect("read"), "old\nnew\n");
    }
}
