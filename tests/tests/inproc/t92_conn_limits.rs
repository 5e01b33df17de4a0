//! `limits.http_max_conns_per_client` and `limits.rpc_max_conns_per_client`: a client IP past
//! the limit is turned away (HTTP with Consul's 429), other connections keep working, and a
//! freed slot admits the next connection; and `limits.rpc_rate` on a client agent's requests
//! to the servers.

use std::time::Duration;

use consul_core::config::AgentConfig;
use consul_tests::inproc::{Cluster, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn limited(c: &mut AgentConfig) {
    c.limits.http_max_conns_per_client = 2;
    c.limits.rpc_max_conns_per_client = 1;
}

/// One HTTP/1.1 request on an open connection; the status line of the answer (empty when the
/// connection fails or says nothing within 5 s).
async fn status_line(stream: &mut TcpStream, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    if stream.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string(),
        _ => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t92_http_connections_past_the_per_client_limit_get_429() {
    let c = Cluster::start_with(1, Options { tweak: Some(limited), ..Options::default() }).await;
    c.leader().await;
    let addr = c.agent(0).http_addr();
    // Two keep-alive connections are served… (once the harness's own probe connections, which
    // count against the same limit, have been closed and noticed by the agent).
    let (mut a, b) = consul_tests::eventually(Duration::from_secs(10), "two connections admitted", || async {
        let mut a = TcpStream::connect(addr).await.ok()?;
        let mut b = TcpStream::connect(addr).await.ok()?;
        let ok = status_line(&mut a, "/v1/status/leader").await == "HTTP/1.1 200 OK"
            && status_line(&mut b, "/v1/status/leader").await == "HTTP/1.1 200 OK";
        ok.then_some((a, b))
    })
    .await;
    // …a third from the same IP is answered 429 and closed.
    let mut third = TcpStream::connect(addr).await.expect("connect");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_string(&mut answer)).await.expect("closed").ok();
    assert!(answer.starts_with("HTTP/1.1 429 Too Many Requests"), "{answer:?}");
    // The admitted ones keep working; closing one frees its slot.
    assert_eq!(status_line(&mut a, "/v1/status/leader").await, "HTTP/1.1 200 OK");
    drop(b);
    let admitted = consul_tests::eventually(Duration::from_secs(5), "a freed slot", || async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        (status_line(&mut s, "/v1/agent/self").await == "HTTP/1.1 200 OK").then_some(())
    })
    .await;
    assert_eq!(admitted, ());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t92_rpc_connections_past_the_per_client_limit_are_closed() {
    let c = Cluster::start_with(1, Options { tweak: Some(limited), ..Options::default() }).await;
    c.leader().await;
    let addr = c.agent(0).rpc_addr();
    let mut held = TcpStream::connect(addr).await.expect("connect");
    // Give the server a moment to count the first connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = TcpStream::connect(addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "the second RPC connection is closed at once: {n:?}");
    // The first stays open (a read waits rather than seeing the end of the stream).
    let still_open = tokio::time::timeout(Duration::from_millis(300), held.read(&mut buf)).await;
    assert!(still_open.is_err(), "the admitted RPC connection was closed: {still_open:?}");
}

/// `limits.rpc_rate` / `rpc_max_burst` on a client agent: once its bucket is empty, requests
/// it would send to the servers get 429 naming the limit (Consul's `ErrRPCRateExceeded`), and
/// tokens come back at the rate. The server itself is not limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t92_a_client_agents_rpc_rate_is_limited() {
    use consul_core::agent::Agent;
    let server =
        Agent::start(AgentConfig { node_name: "srv".into(), ..AgentConfig::dev_any_port() }).await.expect("server");
    server.wait_for_leader(Duration::from_secs(10)).await.expect("leader");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = consul_tests::inproc::client_agent_config("cli", dir.path(), server.serf_addr());
    config.limits.rpc_rate = 2.0;
    config.limits.rpc_max_burst = 5;
    let client = Agent::start(config).await.expect("client");
    client.wait_for_leader(Duration::from_secs(20)).await.expect("the client reaches a leader");
    let c = consul_tests::client::Api::new(client.http_addr());
    let s = consul_tests::client::Api::new(server.http_addr());
    let mut statuses = Vec::new();
    for i in 0..30 {
        let r = c.kv_put(&format!("rate/{i}"), "x", "").await.expect("put");
        if r.status == 429 {
            assert!(r.text().contains("limits.rpc_rate"), "{}", r.text());
        }
        statuses.push(r.status);
    }
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(limited >= 20, "a burst of 5 at 2/s admits only a handful of 30 quick writes: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    // Nothing refused was written; the server itself is not limited.
    let stored = s.get("/v1/kv/rate/?keys").await.expect("keys").json();
    assert_eq!(stored.as_array().map(Vec::len), Some(statuses.iter().filter(|s| **s == 200).count()));
    for i in 0..30 {
        s.put_ok(&format!("server/{i}"), "x").await;
    }
    // Tokens return at the rate.
    consul_tests::eventually(Duration::from_secs(10), "a token comes back", || {
        let c = c.clone();
        async move { (c.kv_put("rate/later", "x", "").await.ok()?.status == 200).then_some(()) }
    })
    .await;
    client.shutdown().await.expect("client shutdown");
    server.shutdown().await.expect("server shutdown");
}
