//! The HTTP API on a Unix socket (`addresses.http = "unix:///path"`, `unix_sockets`): served
//! there alone (no TCP listener for HTTP), with the configured mode, reached by the CLI through
//! `CONSUL_HTTP_ADDR=unix://…`, listed in `/v1/agent/self`, and removed when the agent stops.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use consul_tests::process::binary;
use consul_tests::{eventually, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.0 request over the socket: the status line and the body.
async fn over_socket(socket: &std::path::Path, request: &str) -> Option<(String, String)> {
    let mut s = tokio::net::UnixStream::connect(socket).await.ok()?;
    s.write_all(request.as_bytes()).await.ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t88_http_api_on_a_unix_socket() {
    let dir = tempfile::tempdir().expect("tmp");
    let socket = dir.path().join("http.sock");
    // A socket file left by an earlier run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("stale socket"));
    let http_port = free_port();
    let config = serde_json::json!({
        "addresses": {"http": format!("unix://{}", socket.display())},
        "unix_sockets": {"mode": "0700"},
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).expect("config");
    let mut agent = Command::new(binary())
        .args(["agent", "-dev", "-client", "127.0.0.1", "-bind=127.0.0.1"])
        .arg(format!("-http-port={http_port}"))
        .arg(format!("-server-port={}", free_port()))
        .arg(format!("-serf-lan-port={}", free_port()))
        .arg(format!("-dns-port={}", free_port()))
        .arg(format!("-config-file={}", dir.path().join("config.json").display()))
        .args(["-log-level", "warn"])
        .stdout(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn agent");

    let leader = eventually(Duration::from_secs(30), "a leader, over the socket", || async {
        let (status, body) = over_socket(&socket, "GET /v1/status/leader HTTP/1.0\r\n\r\n").await?;
        (status.contains(" 200 ") && body.len() > 2).then_some(body)
    })
    .await;
    assert!(leader.starts_with('"'), "{leader}");
    let mode = std::fs::metadata(&socket).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "unix_sockets.mode is applied");
    // Only the socket was named: nothing listens on the HTTP port.
    assert!(std::net::TcpStream::connect(("127.0.0.1", http_port)).is_err(), "no TCP listener for HTTP");

    let (_, body) = over_socket(&socket, "GET /v1/agent/self HTTP/1.0\r\n\r\n").await.expect("self");
    let me: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(me["DebugConfig"]["HTTPAddrs"], serde_json::json!([format!("unix://{}", socket.display())]));

    // The CLI reaches it through CONSUL_HTTP_ADDR, as Consul's does.
    let cli = |args: &[&str]| {
        Command::new(binary())
            .args(args)
            .env("CONSUL_HTTP_ADDR", format!("unix://{}", socket.display()))
            .env_remove("CONSUL_HTTP_TOKEN")
            .output()
            .expect("cli")
    };
    let put = cli(&["kv", "put", "over/socket", "yes"]);
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    let get = cli(&["kv", "get", "over/socket"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "yes");
    let members = cli(&["members"]);
    assert!(String::from_utf8_lossy(&members.stdout).contains("alive"), "{members:?}");

    // A graceful stop removes the socket file.
    let leave = cli(&["leave"]);
    assert!(leave.status.success(), "{}", String::from_utf8_lossy(&leave.stderr));
    let exited = eventually(Duration::from_secs(30), "the agent exits after leave", || {
        let status = agent.try_wait().ok().flatten();
        async move { status }
    })
    .await;
    assert!(exited.success(), "{exited:?}");
    assert!(!socket.exists(), "the socket file is removed when the agent stops");
}

/// A path that is not a socket is refused at start, named, and left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t88_a_file_in_the_way_refuses_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "data").expect("write");
    let config = dir.path().join("config.hcl");
    std::fs::write(&config, format!("addresses {{\n  http = \"unix://{}\"\n}}\n", file.display())).expect("config");
    let out = Command::new(binary())
        .args(["agent", "-dev", "-client", "127.0.0.1", "-bind=127.0.0.1"])
        .arg(format!("-server-port={}", free_port()))
        .arg(format!("-serf-lan-port={}", free_port()))
        .arg(format!("-dns-port={}", free_port()))
        .arg(format!("-config-file={}", config.display()))
        .stdin(Stdio::null())
        .output()
        .expect("run agent");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("addresses.http") && err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).expect("kept"), "data");
}
