//! Hostile input against a real agent process, each case held to a memory and time budget
//! (issue #25): a snapshot bomb, concurrent and truncated restores, slow request heads
//! (slowloris) and the per-client connection cap, oversized user events, and a gRPC health
//! endpoint that announces a 4 GiB answer. RSS is read from `/proc/<pid>/status`.

use std::io::Write;
use std::time::{Duration, Instant};

use consul_tests::process::DevAgent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Most an agent's RSS may grow through one hostile case.
const RSS_BUDGET_KIB: u64 = 64 * 1024;

/// A dev agent with `hcl`-free JSON config `extra` (merged after `-dev`'s own settings).
async fn agent_with(config: serde_json::Value) -> (DevAgent, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("limits.json");
    std::fs::write(&path, config.to_string()).expect("config");
    let agent = DevAgent::start_with(&[&format!("-config-file={}", path.display())]).await;
    (agent, dir)
}

/// gzip(tar) whose members claim the sizes given, carrying the bytes given (padded to 512).
fn archive(members: &[(&str, u64, &[u8])], zeros_after: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for (name, claimed, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_path(name).expect("path");
        header.set_size(*claimed);
        header.set_mode(0o644);
        header.set_cksum();
        gz.write_all(header.as_bytes()).expect("gzip");
        gz.write_all(bytes).expect("gzip");
        gz.write_all(&vec![0u8; bytes.len().div_ceil(512) * 512 - bytes.len()]).expect("gzip");
    }
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..zeros_after / chunk.len() {
        gz.write_all(&chunk).expect("gzip");
    }
    gz.finish().expect("gzip")
}

/// The #25 snapshot bomb: a gzip of a few hundred KB whose tar header claims a 3 GiB
/// `state.bin` of zeros (and 512 MiB of zeros actually follow). Refused with 413 on the header,
/// the agent's RSS barely moves, and the state is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_snapshot_bomb_is_refused_within_budget() {
    let agent = DevAgent::start().await;
    agent.api.put_ok("before/bomb", "kept").await;
    let meta = serde_json::json!({"ID": "1-1-1", "Index": 1, "Term": 1, "Version": 1, "Size": 3u64 << 30});
    let meta = serde_json::to_vec(&meta).expect("meta");
    let bomb = archive(&[("meta.json", meta.len() as u64, &meta), ("state.bin", 3 << 30, &[])], 512 << 20);
    assert!(bomb.len() < 4 << 20, "{} bytes", bomb.len());
    let before = agent.rss_kib();
    let started = Instant::now();
    let r = agent.api.request(reqwest::Method::PUT, "/v1/snapshot", Some(bomb)).await.expect("restore");
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("state.bin"), "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    let grown = agent.rss_kib().saturating_sub(before);
    assert!(grown < RSS_BUDGET_KIB, "RSS grew by {grown} KiB");
    assert_eq!(agent.api.kv_get("before/bomb", "?raw").await.expect("get").text(), "kept");

    // Not gzip at all: refused on the first bytes.
    let r =
        agent.api.request(reqwest::Method::PUT, "/v1/snapshot", Some(b"PK\x03\x04 a zip".to_vec())).await.expect("zip");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("not a gzip stream"), "{}", r.text());

    // A real snapshot with its gzip trailer cut off: 400, nothing restored.
    let good = agent.api.get("/v1/snapshot").await.expect("save");
    assert_eq!(good.status, 200);
    agent.api.put_ok("after/save", "stays").await;
    let cut = good.body[..good.body.len() - 8].to_vec();
    let r = agent.api.request(reqwest::Method::PUT, "/v1/snapshot", Some(cut)).await.expect("cut");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("gzip"), "{}", r.text());
    assert_eq!(agent.api.kv_get("after/save", "?raw").await.expect("get").text(), "stays");
    // The whole one restores (and takes the state back to before `after/save`).
    let r = agent.api.request(reqwest::Method::PUT, "/v1/snapshot", Some(good.body.clone())).await.expect("restore");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(agent.api.kv_get("after/save", "").await.expect("get").status, 404);
}

/// One restore at a time: while one upload is in progress (its body held back), a second gets
/// 429; once the first connection goes, restores are admitted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_one_restore_at_a_time() {
    let agent = DevAgent::start().await;
    let good = agent.api.get("/v1/snapshot").await.expect("save");
    let head = format!("PUT /v1/snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", good.body.len());
    // The held upload and the second request race for the gate: on a loaded machine the second
    // can reach the handler first, and then the held one is the request refused. So each round
    // starts a fresh held upload, and a round in which the second request won is started over.
    let mut rounds = Vec::new();
    let (slow, refused) = loop {
        assert!(rounds.len() < 50, "a second restore during the first is never refused with 429: {rounds:?}");
        let mut slow = TcpStream::connect(("127.0.0.1", agent.http)).await.expect("connect");
        slow.write_all(head.as_bytes()).await.expect("head");
        slow.write_all(&good.body[..16]).await.expect("start");
        tokio::time::sleep(Duration::from_millis(50 * rounds.len() as u64)).await;
        let r = agent.api.request(reqwest::Method::PUT, "/v1/snapshot", Some(good.body.clone())).await.expect("second");
        if r.status == 429 {
            break (slow, r);
        }
        rounds.push((r.status, r.text()));
    };
    assert!(refused.text().contains("already in progress"), "{}", refused.text());
    // While the held upload lasts, every other restore is refused.
    let again = agent.api.request(reqwest::Method::PUT, "/v1/snapshot", Some(good.body.clone())).await.expect("third");
    assert_eq!(again.status, 429, "{}", again.text());
    drop(slow);
    consul_tests::eventually(Duration::from_secs(20), "restores are admitted again", || {
        let (api, body) = (agent.api.clone(), good.body.clone());
        async move {
            (api.request(reqwest::Method::PUT, "/v1/snapshot", Some(body)).await.ok()?.status == 200).then_some(())
        }
    })
    .await;
}

/// Slowloris: hundreds of connections that never finish their request head are closed after
/// `limits.http_read_header_timeout`, RSS stays within budget, and the agent keeps answering.
/// With the default `http_max_conns_per_client` (Consul's 200), the 201st connection from one
/// IP is answered 429 while the others are held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_slow_heads_are_closed_and_connections_capped() {
    let (agent, _dir) = agent_with(serde_json::json!({"limits": {"http_read_header_timeout": "2s"}})).await;
    let before = agent.rss_kib();
    let mut held = Vec::new();
    for _ in 0..200 {
        let mut c = TcpStream::connect(("127.0.0.1", agent.http)).await.expect("connect");
        c.write_all(b"GET /v1/kv/x HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.expect("write");
        held.push(c);
    }
    // Past the cap: refused with Consul's 429 text (the listener has counted all 200 by now,
    // since each was accepted before this connect returns an answer).
    let mut extra = TcpStream::connect(("127.0.0.1", agent.http)).await.expect("connect");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), extra.read_to_string(&mut answer)).await.expect("answered").ok();
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer:?}");
    let grown = agent.rss_kib().saturating_sub(before);
    assert!(grown < RSS_BUDGET_KIB, "RSS grew by {grown} KiB with 200 half-open connections");
    // Every held connection is closed by the agent after the timeout.
    let started = Instant::now();
    for c in &mut held {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(15), c.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "a half-sent head was still open {:?} after it began", started.elapsed());
    }
    drop(held);
    // The slots are free again and the agent answers.
    consul_tests::eventually(Duration::from_secs(10), "the agent answers after the flood", || {
        let api = agent.api.clone();
        async move { (api.get("/v1/status/leader").await.ok()?.status == 200).then_some(()) }
    })
    .await;
}

/// User events that cannot travel are refused at the door (413) instead of being accepted and
/// silently dropped; nothing reaches the event list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_oversized_events_are_refused() {
    let agent = DevAgent::start().await;
    let long = "e".repeat(5000);
    let r = agent.api.request(reqwest::Method::PUT, &format!("/v1/event/fire/{long}"), None).await.expect("fire");
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("512"), "{}", r.text());
    let filter = "n".repeat(600);
    let r =
        agent.api.request(reqwest::Method::PUT, &format!("/v1/event/fire/ok?node={filter}"), None).await.expect("fire");
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("filters"), "{}", r.text());
    let r = agent.api.request(reqwest::Method::PUT, "/v1/event/fire/ok", Some(vec![b'p'; 500])).await.expect("fire");
    assert_eq!(r.status, 413, "name + payload + ID over 512 bytes: {}", r.text());
    let listed = agent.api.get("/v1/event/list").await.expect("list").json();
    assert_eq!(listed, serde_json::json!([]), "nothing refused was kept");
    let r = agent.api.request(reqwest::Method::PUT, "/v1/event/fire/ok", Some(vec![b'p'; 300])).await.expect("fire");
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A "gRPC server" that announces a 4 GiB message and streams frames at whoever reads: the
/// agent's gRPC check goes critical naming the size, without buffering it; an absurd Timeout is
/// refused at registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_hostile_grpc_health_endpoint_within_budget() {
    let agent = DevAgent::start().await;
    let hostile = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = hostile.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = hostile.accept().await else { return };
            tokio::spawn(async move {
                let mut first = vec![0u8; 4096];
                let _ = conn.read(&mut first).await;
                // SETTINGS, HEADERS (:status 200), then a DATA frame announcing 0xffffffff bytes.
                let mut out = vec![0, 0, 0, 4, 0, 0, 0, 0, 0];
                out.extend([0, 0, 1, 1, 4, 0, 0, 0, 1, 0x88]);
                let mut data = vec![0x00, 0x40, 0x00, 0, 0, 0, 0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff];
                data.resize(9 + 16_384, 0);
                out.extend(&data);
                let mut more = vec![0x00, 0x40, 0x00, 0, 0, 0, 0, 0, 1];
                more.resize(9 + 16_384, 0);
                if conn.write_all(&out).await.is_err() {
                    return;
                }
                for _ in 0..100_000 {
                    if conn.write_all(&more).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let absurd = serde_json::json!({"Name": "g", "GRPC": addr.to_string(), "Interval": "1s", "Timeout": "999999h"});
    let r = agent
        .api
        .request(reqwest::Method::PUT, "/v1/agent/check/register", Some(absurd.to_string().into_bytes()))
        .await
        .expect("register");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("Timeout"), "{}", r.text());
    let before = agent.rss_kib();
    let check =
        serde_json::json!({"Name": "g", "CheckID": "g", "GRPC": addr.to_string(), "Interval": "1s", "Timeout": "30s"});
    let r = agent
        .api
        .request(reqwest::Method::PUT, "/v1/agent/check/register", Some(check.to_string().into_bytes()))
        .await
        .expect("register");
    assert_eq!(r.status, 200, "{}", r.text());
    let output = consul_tests::eventually(Duration::from_secs(20), "the hostile gRPC check runs", || {
        let api = agent.api.clone();
        async move {
            let checks = api.get("/v1/agent/checks").await.ok()?.json();
            let out = checks["g"]["Output"].as_str()?.to_string();
            out.contains("too large").then_some(out)
        }
    })
    .await;
    assert!(output.contains("4294967295"), "{output}");
    // A few more runs: still within budget.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let grown = agent.rss_kib().saturating_sub(before);
    assert!(grown < RSS_BUDGET_KIB, "RSS grew by {grown} KiB");
    server.abort();
}
