//! `limits.http_max_conns_per_client` and `limits.rpc_max_conns_per_client`: a client IP past
//! the limit is turned away (HTTP with Consul's 429), other connections keep working, and a
//! freed slot admits the next connection.

use std::time::Duration;

use consul_core::config::AgentConfig;
use consul_tests::inproc::{Cluster, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn limited(c: &mut AgentConfig) {
    c.limits.http_max_conns_per_client = 2;
    c.limits.rpc_max_conns_per_client = 1;
}

/// One HTTP/1.1 request on an open connection; the status line of the answer.
async fn status_line(stream: &mut TcpStream, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t92_http_connections_past_the_per_client_limit_get_429() {
    let c = Cluster::start_with(1, Options { tweak: Some(limited), ..Options::default() }).await;
    c.leader().await;
    let addr = c.agent(0).http_addr();
    // Two keep-alive connections are served…
    let mut a = TcpStream::connect(addr).await.expect("connect");
    let mut b = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(status_line(&mut a, "/v1/status/leader").await, "HTTP/1.1 200 OK");
    assert_eq!(status_line(&mut b, "/v1/status/leader").await, "HTTP/1.1 200 OK");
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
