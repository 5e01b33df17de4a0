//! Docker checks (`DockerContainerID` + `Args`): the arguments run inside the container through
//! the Docker Engine API on its unix socket (`POST /containers/<id>/exec`, `POST
//! /exec/<id>/start`, `GET /exec/<id>/json`), as Consul's checker does; exit 0 passing, 1
//! warning, anything else critical; stdout and stderr (demultiplexed) become the output, capped at
//! 4 KiB. The socket is `DOCKER_HOST` when it names a `unix://` path, else
//! `/var/run/docker.sock`. As in Consul, a check is accepted while that socket is absent (Docker
//! often starts after the agent at boot, and checks from config files must not stop the agent
//! starting); until the engine appears the check is critical and its output names the socket.
//! A `DOCKER_HOST` that is not a `unix://` path is refused at registration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};

use super::Outcome;
use crate::local::def::MAX_OUTPUT;
use crate::state::catalog::{CRITICAL, PASSING, WARNING};

/// Where Docker listens when `DOCKER_HOST` does not say.
pub(crate) const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The Docker engine socket named by a `DOCKER_HOST` value (`None`: the default socket).
pub(crate) fn socket_from(docker_host: Option<&str>) -> Result<PathBuf, String> {
    match docker_host.map(str::trim).filter(|h| !h.is_empty()) {
        None => Ok(PathBuf::from(DEFAULT_SOCKET)),
        Some(h) => match h.strip_prefix("unix://") {
            Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => Err(format!("DOCKER_HOST {h:?}: only unix:// sockets are supported for Docker checks")),
        },
    }
}

/// Why a Docker check cannot run on this agent right now, if it cannot.
pub(crate) fn unavailable(socket: &Path) -> Option<String> {
    (!socket.exists()).then(|| {
        format!(
            "Docker checks need the Docker engine socket {}, which does not exist on this agent \
             (start Docker, or set DOCKER_HOST=unix:///path/to/docker.sock)",
            socket.display()
        )
    })
}

/// Runs `args` in `container` and maps the exit code.
pub(super) async fn check(socket: &Path, container: &str, args: &[String], timeout: Duration) -> Outcome {
    if let Some(why) = unavailable(socket) {
        return (CRITICAL, why);
    }
    match tokio::time::timeout(timeout, exec(socket, container, args)).await {
        Err(_) => (CRITICAL, format!("Timed out ({timeout:?}) running check in container {container}")),
        Ok(Err(e)) => (CRITICAL, e),
        Ok(Ok((code, output))) => {
            let status = match code {
                0 => PASSING,
                1 => WARNING,
                _ => CRITICAL,
            };
            (status, output)
        }
    }
}

async fn exec(socket: &Path, container: &str, args: &[String]) -> Result<(i64, String), String> {
    let create = json!({"AttachStdout": true, "AttachStderr": true, "Tty": false, "Cmd": args});
    let path = format!("/containers/{}/exec", encode(container));
    let (status, body) = request(socket, "POST", &path, Some(&create), MAX_OUTPUT).await?;
    match status {
        201 | 200 => {}
        404 => return Err(format!("docker exec: no such container {container:?}")),
        _ => return Err(format!("docker exec create failed ({status}): {}", String::from_utf8_lossy(&body).trim())),
    }
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["Id"].as_str().map(str::to_string))
        .ok_or("docker exec create: no exec ID in the answer")?;
    // The output arrives as the exec runs; reading it to the end waits for the command.
    let (status, stream) = request(
        socket,
        "POST",
        &format!("/exec/{id}/start"),
        Some(&json!({"Detach": false, "Tty": false})),
        usize::MAX,
    )
    .await?;
    if status != 200 {
        return Err(format!("docker exec start failed ({status}): {}", String::from_utf8_lossy(&stream).trim()));
    }
    let output = demux(&stream);
    let (status, body) = request(socket, "GET", &format!("/exec/{id}/json"), None, 64 * 1024).await?;
    if status != 200 {
        return Err(format!("docker exec inspect failed ({status})"));
    }
    let code = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["ExitCode"].as_i64())
        .ok_or("docker exec inspect: no ExitCode in the answer")?;
    Ok((code, output))
}

/// Docker's multiplexed stream (8-byte headers: stream, 3 zero bytes, big-endian length)
/// into text, capped at [`MAX_OUTPUT`]. A stream without headers is taken as it is.
fn demux(raw: &[u8]) -> String {
    let mut out = Vec::new();
    let mut rest = raw;
    while rest.len() >= 8 && matches!(rest[0], 0..=2) && rest[1..4] == [0, 0, 0] {
        let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let end = (8 + len).min(rest.len());
        out.extend_from_slice(&rest[8..end]);
        rest = &rest[end..];
    }
    if out.is_empty() && !rest.is_empty() {
        out.extend_from_slice(rest);
    }
    out.truncate(MAX_OUTPUT);
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a container name or ID for a path segment.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One HTTP/1.1 request to the engine; the status and up to `limit` bytes of the body (the rest
/// is read and dropped, so the engine is never blocked on a full socket).
async fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
    limit: usize,
) -> Result<(u16, Vec<u8>), String> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("cannot reach the Docker engine at {}: {e}", socket.display()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| format!("Docker engine: {e}"))?;
    tokio::spawn(conn);
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("Host", "docker")
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .map_err(|e| format!("Docker request: {e}"))?;
    let resp = sender.send_request(req).await.map_err(|e| format!("Docker engine: {e}"))?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("Docker engine: {e}"))?;
        if let Ok(data) = frame.into_data() {
            let room = limit.saturating_sub(out.len()).min(MAX_OUTPUT * 4);
            out.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    Ok((status, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_spellings() {
        assert_eq!(socket_from(None).expect("default"), PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(socket_from(Some("unix:///tmp/d.sock")).expect("unix"), PathBuf::from("/tmp/d.sock"));
        assert!(socket_from(Some("tcp://127.0.0.1:2375")).expect_err("tcp").contains("unix://"));
        assert!(unavailable(Path::new("/nonexistent/docker.sock")).expect("missing").contains("DOCKER_HOST"));
    }

    #[test]
    fn output_is_demultiplexed_and_capped() {
        let mut raw = vec![1, 0, 0, 0, 0, 0, 0, 3];
        raw.extend_from_slice(b"out");
        raw.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 4]);
        raw.extend_from_slice(b" err");
        assert_eq!(demux(&raw), "out err");
        assert_eq!(demux(b"plain text"), "plain text");
        let big = vec![b'x'; MAX_OUTPUT * 2];
        assert_eq!(demux(&big).len(), MAX_OUTPUT);
    }
}
