//! `consul-rs lock` against a real three-server cluster (Consul: commands/lock.mdx): contenders
//! never run their commands at the same time; `-n 2` lets two run at once but never three.

use std::process::{Command, Stdio};
use std::time::Duration;

use consul_tests::process::{binary, ProcCluster};
use reqwest::Method;

/// Sessions need the agents' nodes in the catalog (until agents register themselves).
async fn register_nodes(c: &ProcCluster) {
    for i in 0..c.len() {
        let body = format!(r#"{{"Node":"proc{i}","Address":"127.0.0.1"}}"#);
        let r = c.api(0).request(Method::PUT, "/v1/catalog/register", Some(body.into_bytes())).await.expect("register");
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

/// Starts one `lock` process per server (round robin) running `script` with `$ID` set, waits for
/// all, and returns the lines they appended to `log`.
fn run_contenders(
    c: &ProcCluster,
    count: usize,
    extra: &[&str],
    prefix: &str,
    log: &std::path::Path,
    hold: &str,
) -> Vec<String> {
    let script = format!(r#"echo "start $ID" >> {log}; sleep {hold}; echo "end $ID" >> {log}"#, log = log.display());
    let children: Vec<_> = (0..count)
        .map(|i| {
            let addr = c.http_addr(i % c.len());
            Command::new(binary())
                .arg("lock")
                .args(extra)
                .arg(format!("-http-addr={addr}"))
                .args([prefix, &script])
                .env("ID", i.to_string())
                .env("SHELL", "/bin/sh")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn lock")
        })
        .collect();
    for mut child in children {
        let status = child.wait().expect("wait lock");
        assert!(status.success(), "lock exited with {status}");
    }
    std::fs::read_to_string(log).expect("read log").lines().map(str::to_string).collect()
}

/// Highest number of commands running at once, from the start/end marks.
fn max_concurrency(lines: &[String]) -> usize {
    let (mut running, mut max) = (0usize, 0usize);
    for l in lines {
        if l.starts_with("start") {
            running += 1;
            max = max.max(running);
        } else {
            running = running.saturating_sub(1);
        }
    }
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_lock_contenders_never_overlap_and_semaphore_allows_n() {
    let c = ProcCluster::start(3).await;
    register_nodes(&c).await;
    let dir = tempfile::tempdir().expect("tempdir");

    let log = dir.path().join("lock.log");
    let lines = run_contenders(&c, 3, &[], "t30/lock", &log, "1");
    assert_eq!(lines.len(), 6, "{lines:?}");
    for pair in lines.chunks(2) {
        let id = pair[0].strip_prefix("start ").expect("start mark");
        assert_eq!(pair[1], format!("end {id}"), "commands interleaved: {lines:?}");
    }

    let log = dir.path().join("sem.log");
    let lines = run_contenders(&c, 3, &["-n", "2"], "t30/sem", &log, "3");
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert_eq!(max_concurrency(&lines), 2, "two holders at once, never three: {lines:?}");

    // Everything is cleaned up: no sessions left, no lock held.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sessions = c.api(0).get("/v1/session/list").await.expect("list").json();
    assert_eq!(sessions, serde_json::json!([]));
}
