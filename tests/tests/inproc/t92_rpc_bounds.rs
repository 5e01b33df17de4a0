//! The agent-to-agent TCP ports (server RPC, serf_lan) bounded in memory, time and
//! connections (issue #25 item 3): junk length prefixes cost no memory, half-open connections
//! are closed after `limits.rpc_handshake_timeout` and idle ones after the idle timeout, and a
//! client IP holds at most `limits.rpc_max_conns_per_client` (Consul's default, 100) per port —
//! while a real cluster keeps forming and serving writes.
//!
//! Consul reference: agent configuration, `limits.rpc_handshake_timeout` (5 s) and
//! `limits.rpc_max_conns_per_client` (100).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use consul_core::config::AgentConfig;
use consul_tests::inproc::{Cluster, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The preamble every consul-rs RPC connection opens with (`core/src/rpc/wire.rs`).
const PREAMBLE: [u8; 5] = *b"CRPC\x01";

/// This process's resident set (the in-process agents included), in KiB.
fn rss_kib() -> u64 {
    consul_tests::process::rss_kib(std::process::id())
}

use consul_tests::closed_within;

/// A connection past the preamble exchange.
async fn opened(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&PREAMBLE).await.expect("preamble");
    let mut ack = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut ack)).await.expect("ack in time").expect("ack");
    assert_eq!(ack, PREAMBLE);
    s
}

/// The attacker probe of issue #25: connections sending the length prefix `0f ff ff ff`
/// (256 MiB) then junk, on both ports, and connections that pass the preamble and announce a
/// 256 MiB Raft frame (within Raft's limit) without sending it. None of it is allocated: the
/// process grows by far less than 64 MB, and the junk connections are closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t92_junk_length_prefixes_cost_no_memory_and_are_closed() {
    let c = Cluster::start(1).await;
    c.leader().await;
    let (rpc, serf) = (c.agent(0).rpc_addr(), c.agent(0).serf_addr());
    let before = rss_kib();
    // 2 MiB each, 50 at a time: a port that buffered the announced frame would hold 100 MB.
    let junk = vec![0xabu8; 2 * 1024 * 1024];
    for round in 0..4 {
        let mut conns = Vec::new();
        for i in 0..50 {
            let addr = if i % 2 == 0 { rpc } else { serf };
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(&[0x0f, 0xff, 0xff, 0xff]).await.expect("prefix");
            let _ = s.write_all(&junk).await;
            conns.push(s);
        }
        for (i, s) in conns.iter_mut().enumerate() {
            assert!(closed_within(s, Duration::from_secs(5)).await, "round {round}: junk connection {i} left open");
        }
    }
    // Past the preamble: headers announcing 256 MiB Raft frames, held open.
    let mut announced = Vec::new();
    for _ in 0..50 {
        let mut s = opened(rpc).await;
        let mut header = Vec::new();
        header.extend_from_slice(&(256u32 * 1024 * 1024).to_be_bytes());
        header.push(0); // Service::Raft
        header.extend_from_slice(&1u64.to_be_bytes());
        s.write_all(&header).await.expect("header");
        announced.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 64, "RSS grew by {grown_mib} MiB");
    // The agent still serves.
    c.api(0).put_ok("still/serving", "yes").await;
    drop(announced);
}

fn short_timeouts(c: &mut AgentConfig) {
    c.limits.rpc_handshake_timeout = Duration::from_millis(500);
    c.limits.rpc_idle_timeout = Duration::from_secs(1);
}

/// Half-open connections (connected, silent) are closed after `limits.rpc_handshake_timeout`,
/// idle ones (preamble, then nothing) after the idle timeout with a GoAway frame, on both
/// ports; the cluster's own connections go idle too, and forwarded writes through a follower
/// keep working across those closes (the client re-dials, nothing runs twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t92_half_open_and_idle_connections_are_closed_after_the_timeouts() {
    let c = Cluster::start_with(3, Options { tweak: Some(short_timeouts), ..Options::default() }).await;
    let leader = c.leader().await;
    let follower = c.followers().await[0];
    for addr in [c.agent(leader).rpc_addr(), c.agent(follower).serf_addr()] {
        let started = Instant::now();
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        let mut idle = opened(addr).await;
        assert!(closed_within(&mut silent, Duration::from_secs(5)).await, "{addr}: half-open connection left open");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(400), "{addr}: closed before the handshake timeout ({waited:?})");
        let mut go_away = [0u8; 13];
        tokio::time::timeout(Duration::from_secs(5), idle.read_exact(&mut go_away))
            .await
            .expect("GoAway in time")
            .expect("GoAway");
        assert_eq!(&go_away[..5], &[0, 0, 0, 0, 2], "{addr}: a GoAway frame");
        assert!(closed_within(&mut idle, Duration::from_secs(5)).await, "{addr}: idle connection left open");
        assert!(started.elapsed() >= Duration::from_millis(900), "{addr}: idle close before the idle timeout");
    }
    // Writes forwarded by a follower, with idle closes in between, each applied once.
    let api = c.api(follower);
    for i in 0..4 {
        let key = format!("idle/{i}");
        api.put_ok(&key, format!("v{i}")).await;
        tokio::time::sleep(Duration::from_millis(1300)).await;
    }
    let listed = c.api(leader).get("/v1/kv/idle/?keys").await.expect("list").json();
    assert_eq!(listed.as_array().map(Vec::len), Some(4), "{listed}");
}

/// With Consul's default cap of 100, the 101st connection from one IP is closed at once (the
/// cluster's own connections from 127.0.0.1 count too) on both ports, while the cluster keeps
/// serving writes; closing the held connections frees the slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t92_the_default_per_client_cap_holds_while_the_cluster_serves() {
    let c = Cluster::start(3).await;
    let leader = c.leader().await;
    assert_eq!(c.agent(leader).config().limits.rpc_max_conns_per_client, 100);
    for addr in [c.agent(leader).rpc_addr(), c.agent(leader).serf_addr()] {
        let mut held = Vec::new();
        for _ in 0..101 {
            held.push(TcpStream::connect(addr).await.expect("connect"));
        }
        // Refused ones are closed at once; admitted ones wait (5 s handshake timeout).
        let checks = held.iter_mut().map(|s| closed_within(s, Duration::from_millis(1500)));
        let closed = futures::future::join_all(checks).await;
        let refused = closed.iter().filter(|c| **c).count();
        let admitted = closed.len() - refused;
        assert!(refused >= 1, "{addr}: all 101 connections admitted");
        assert!((90..=100).contains(&admitted), "{addr}: {admitted} admitted, {refused} refused");
        c.api(leader).put_ok("cap/held", "yes").await;
        drop(held);
    }
    // Slots freed: a new connection is admitted and speaks the protocol.
    let addr = c.agent(leader).rpc_addr();
    consul_tests::eventually(Duration::from_secs(5), "a freed slot", || async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(&PREAMBLE).await.ok()?;
        let mut ack = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut ack)).await.ok()?.ok()?;
        (ack == PREAMBLE).then_some(())
    })
    .await;
    let follower = c.followers().await[0];
    c.api(follower).put_ok("cap/after", "yes").await;
}

/// Large legitimate messages still pass the limits and the large-frame budget: 12 values of
/// 500 KiB (AppendEntries batches over 1 MiB) and a `/v1/snapshot` restore of about 6 MB
/// through a follower (one Forward frame, then one Raft entry to every server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t92_large_legitimate_frames_still_pass() {
    let c = Cluster::start(3).await;
    let leader = c.leader().await;
    let follower = c.followers().await[0];
    let value = |i: usize| -> Vec<u8> { (0..500 * 1024).map(|j| ((i * 31 + j * 7) % 251) as u8).collect() };
    let writes = (0..12).map(|i| {
        let api = c.api(leader);
        async move { api.put_ok(&format!("big/{i:02}"), value(i)).await }
    });
    futures::future::join_all(writes).await;
    let snap = c.api(leader).get("/v1/snapshot").await.expect("save");
    assert_eq!(snap.status, 200);
    c.api(leader).kv_delete("big/", "?recurse").await.expect("delete");
    let r =
        c.api(follower).request(reqwest::Method::PUT, "/v1/snapshot", Some(snap.body.clone())).await.expect("restore");
    assert_eq!(r.status, 200, "{}", r.text());
    for i in 0..3 {
        let api = c.api(i);
        let got = consul_tests::eventually(Duration::from_secs(20), "the restored value everywhere", || {
            let api = api.clone();
            async move {
                let r = api.kv_get("big/11", "?raw&stale").await.ok()?;
                (r.status == 200).then_some(r.body)
            }
        })
        .await;
        assert!(got == value(11), "server {i}: restored value differs");
    }
}
