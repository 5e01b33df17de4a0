//! The HTTP API on a Unix socket: `addresses.http = "unix:///path"`, with the socket file's
//! owner, group and mode from `unix_sockets { user, group, mode }` (Consul's `agent/config`
//! `UnixSocket` settings and `agent.go` `listenSocket`).
//!
//! A socket file left behind by an earlier run is replaced, as Consul does; one that is not a
//! socket is refused rather than deleted. The file is removed when the agent stops.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::error::Error;

/// Where and how the HTTP API listens on a Unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixSocketConfig {
    /// The socket file (`unix:///path` without the scheme).
    pub path: PathBuf,
    /// `unix_sockets.mode`: the file's permission bits (Consul's octal string, e.g. `"0700"`).
    pub mode: Option<u32>,
    /// `unix_sockets.user`: owner, a numeric ID or a name from `/etc/passwd`.
    pub user: Option<String>,
    /// `unix_sockets.group`: group, a numeric ID or a name from `/etc/group`.
    pub group: Option<String>,
}

impl UnixSocketConfig {
    /// The socket at `path`, with the file's permissions left as the process makes them.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        UnixSocketConfig { path: path.into(), mode: None, user: None, group: None }
    }

    /// Parses Consul's `unix_sockets.mode` (an octal string such as `"0700"` or `"600"`).
    pub fn parse_mode(s: &str) -> Result<u32, String> {
        let digits = s.trim();
        if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| ('0'..='7').contains(&c)) {
            return Err(format!("{s:?} is not an octal file mode (like \"0700\")"));
        }
        u32::from_str_radix(digits, 8).map_err(|e| format!("{s:?}: {e}"))
    }

    /// Binds the socket and applies the owner, group and mode. Errors name the path.
    pub fn bind(&self) -> Result<UnixListener, Error> {
        let path = &self.path;
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            Error::Config(format!("addresses.http: {what} {}: {e}", path.display()))
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                std::fs::remove_file(path).map_err(|e| fail("removing the old socket", &e))?;
            }
            Ok(_) => return Err(fail("refusing to replace", &"it exists and is not a socket")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail("checking", &e)),
        }
        let listener = UnixListener::bind(path).map_err(|e| fail("binding", &e))?;
        let uid =
            self.user.as_deref().map(|u| lookup_id(u, "/etc/passwd")).transpose().map_err(|e| fail("user", &e))?;
        let gid =
            self.group.as_deref().map(|g| lookup_id(g, "/etc/group")).transpose().map_err(|e| fail("group", &e))?;
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::chown(path, uid, gid).map_err(|e| fail("changing the owner of", &e))?;
        }
        if let Some(mode) = self.mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| fail("setting the mode of", &e))?;
        }
        Ok(listener)
    }
}

/// A user or group: a numeric ID as is, else the name's ID from `file` (`/etc/passwd` or
/// `/etc/group`: `name:x:id:...`).
fn lookup_id(name_or_id: &str, file: &str) -> Result<u32, String> {
    if let Ok(id) = name_or_id.parse::<u32>() {
        return Ok(id);
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("{name_or_id:?}: reading {file}: {e}"))?;
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?;
            (name == name_or_id).then(|| id.parse::<u32>().ok()).flatten()
        })
        .next()
        .ok_or_else(|| format!("{name_or_id:?} is neither a numeric ID nor a name in {file}"))
}

/// Serves `app` on `listener` until `shutdown`, then removes the socket file.
pub(crate) async fn serve_unix(
    listener: UnixListener,
    path: PathBuf,
    app: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) {
    // Unix peers have no IP: connections are logged under the unspecified address and the
    // per-client connection limit (an IP's) does not apply; the socket's mode decides who
    // may connect at all.
    let peer = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
    let mut connections = super::serve::Connections::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "HTTP (unix socket) accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let serve = super::serve::serve_connection(stream, peer, app.clone(), header_read_timeout, shutdown.clone());
        connections.spawn(serve);
    }
    remove_socket(&path);
    connections.drain().await;
}

fn remove_socket(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "could not remove the HTTP API's unix socket");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal_strings() {
        assert_eq!(UnixSocketConfig::parse_mode("0700"), Ok(0o700));
        assert_eq!(UnixSocketConfig::parse_mode("600"), Ok(0o600));
        for bad in ["", "0800", "rwx", "07777", "-1"] {
            assert!(UnixSocketConfig::parse_mode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_by_number_or_name() {
        assert_eq!(lookup_id("0", "/nonexistent"), Ok(0));
        assert_eq!(lookup_id("root", "/etc/passwd"), Ok(0));
        let e = lookup_id("no-such-user-here", "/etc/passwd").expect_err("unknown");
        assert!(e.contains("no-such-user-here") && e.contains("/etc/passwd"), "{e}");
    }

    /// A stale socket is replaced, a regular file in the way is refused and left alone, and
    /// the mode is applied.
    #[tokio::test]
    async fn binding_replaces_stale_sockets_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("http.sock");
        let stale = std::os::unix::net::UnixListener::bind(&path).expect("stale");
        drop(stale);
        let config = UnixSocketConfig { mode: Some(0o600), ..UnixSocketConfig::at(&path) };
        let listener = config.bind().expect("replaces a stale socket");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(listener);

        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, "keep me").expect("write");
        let e = UnixSocketConfig::at(&file).bind().expect_err("a regular file");
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&file).expect("kept"), "keep me");
    }
}
