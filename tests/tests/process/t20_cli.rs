//! The `consul-rs` CLI: client commands against a dev agent, start-up errors.

use std::process::{Command, Stdio};
use std::time::Duration;

use consul_tests::client::Api;
use consul_tests::free_port;
use consul_tests::process::{binary, stdout, DevAgent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_kv_cli_round_trip() {
    let agent = DevAgent::start().await;
    let out = agent.cli(&["kv", "put", "cli/key", "hello"]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("Success! Data written to: cli/key"));
    let out = agent.cli(&["kv", "get", "cli/key"]);
    assert_eq!(stdout(&out).trim(), "hello");
    let out = agent.cli(&["kv", "get", "-recurse", "cli/"]);
    assert_eq!(stdout(&out).trim(), "cli/key:hello");
    let out = agent.cli(&["kv", "export", "cli/"]);
    let exported: serde_json::Value = serde_json::from_slice(&out.stdout).expect("export is JSON");
    assert_eq!(exported[0]["key"], "cli/key");
    let out = agent.cli(&["kv", "delete", "cli/key"]);
    assert!(out.status.success());
    let out = agent.cli(&["kv", "get", "cli/key"]);
    assert!(!out.status.success(), "missing key is an error");
    // -http-addr wins over the environment.
    let out = Command::new(binary())
        .args(["kv", "put", &format!("-http-addr=127.0.0.1:{}", agent.http), "cli/flag", "x"])
        .env("CONSUL_HTTP_ADDR", "127.0.0.1:1")
        .output()
        .expect("cli");
    assert!(out.status.success(), "{out:?}");
    let out = agent.cli(&["operator", "raft", "list-peers"]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("leader"));
    let out = agent.cli(&["version"]);
    assert!(stdout(&out).contains("Consul v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t21_snapshot_cli_save_inspect_restore() {
    let agent = DevAgent::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("backup.snap");
    assert!(agent.cli(&["kv", "put", "snap/a", "1"]).status.success());
    let out = agent.cli(&["snapshot", "save", &file.display().to_string()]);
    assert!(out.status.success(), "{out:?}");
    let out = agent.cli(&["snapshot", "inspect", &file.display().to_string()]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("Index"));
    assert!(agent.cli(&["kv", "put", "snap/a", "2"]).status.success());
    let out = agent.cli(&["snapshot", "restore", &file.display().to_string()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&agent.cli(&["kv", "get", "snap/a"])).trim(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t22_startup_errors_are_clear() {
    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let out = Command::new(binary())
        .args(["agent", "-dev", "-client=127.0.0.1", "-bind=127.0.0.1"])
        .arg(format!("-http-port={port}"))
        .arg(format!("-server-port={}", free_port()))
        .arg(format!("-serf-lan-port={}", free_port()))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&port.to_string()), "names the port: {err}");

    // An unknown config key names the key.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.json");
    std::fs::write(&cfg, r#"{"bootstrap_expct": 3}"#).expect("write");
    let out = Command::new(binary())
        .args(["agent", "-dev", &format!("-config-file={}", cfg.display())])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bootstrap_expct"));

    // A server without a data dir.
    let out = Command::new(binary()).args(["agent", "-server"]).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("data_dir"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t23_sigterm_shuts_down_gracefully_and_removes_the_pid_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("agent.pid");
    let http = free_port();
    let mut child = Command::new(binary())
        .args(["agent", "-dev", "-client", "127.0.0.1", "-bind=127.0.0.1", "-log-level", "warn"])
        .arg(format!("-http-port={http}"))
        .arg(format!("-server-port={}", free_port()))
        .arg(format!("-serf-lan-port={}", free_port()))
        .arg(format!("-dns-port={}", free_port()))
        .arg(format!("-pid-file={}", pid_file.display()))
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid_path = pid_file.clone();
    consul_tests::eventually(Duration::from_secs(30), "pid file written", || {
        let pid_path = pid_path.clone();
        async move { std::fs::read_to_string(&pid_path).ok().filter(|s| !s.trim().is_empty()) }
    })
    .await;
    let pid = std::fs::read_to_string(&pid_file).expect("pid");
    assert_eq!(pid.trim(), child.id().to_string());
    let killed = Command::new("kill").args(["-TERM", pid.trim()]).status().expect("kill");
    assert!(killed.success());
    let status = consul_tests::eventually(Duration::from_secs(20), "agent exits", || {
        let status = child.try_wait().ok().flatten();
        async move { status }
    })
    .await;
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    assert!(!pid_file.exists(), "pid file removed on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t24_dig_finds_only_healthy_instances() {
    let agent = DevAgent::start().await;
    let api = Api::new(format!("127.0.0.1:{}", agent.http).parse().expect("addr"));
    for (node, ip, status) in
        [("a", "10.9.0.1", "passing"), ("b", "10.9.0.2", "critical"), ("c", "10.9.0.3", "warning")]
    {
        let body = serde_json::json!({
            "Node": node, "Address": ip,
            "Service": {"ID": format!("web-{node}"), "Service": "web", "Port": 80},
            "Check": {"CheckID": format!("c-{node}"), "Status": status, "ServiceID": format!("web-{node}")},
        });
        let r = api
            .request(reqwest::Method::PUT, "/v1/catalog/register", Some(body.to_string().into_bytes()))
            .await
            .expect("register");
        assert_eq!(r.status, 200);
    }
    let dig = |args: &[&str]| {
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &agent.dns.to_string(), "+short", "+time=2", "+tries=1"])
            .args(args)
            .output()
            .expect("dig is installed (Debian bind9-dnsutils)");
        assert!(out.status.success(), "{out:?}");
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(dig(&["web.service.consul", "A"]), ["10.9.0.1", "10.9.0.3"]);
    let srv = dig(&["web.service.consul", "SRV"]);
    assert_eq!(srv.len(), 2, "{srv:?}");
    assert!(srv.iter().all(|l| l.starts_with("1 1 80 ") && l.ends_with(".node.dc1.consul.")), "{srv:?}");
    assert_eq!(dig(&["b.node.consul", "A"]), ["10.9.0.2"], "node lookups are not health-filtered");
    // Reverse lookups (PTR, Consul's `handlePtr`) name the node with that address.
    assert_eq!(dig(&["-x", "10.9.0.2"]), ["b.node.dc1.consul."]);
}
