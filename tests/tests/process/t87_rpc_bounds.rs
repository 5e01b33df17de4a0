//! The attacker probe of issue #25 item 3 against a real `consul-rs` server process in a
//! 3-server cluster: hundreds of connections to its server RPC and serf_lan ports sending the
//! 256 MiB length prefix `0f ff ff ff` and junk, plus connections that pass the preamble and
//! announce 256 MiB Raft frames without sending them. Its resident memory (`VmRSS` of the
//! process) grows by less than 64 MB, the junk connections are closed, the WARN lines about
//! them are rate-limited, and the cluster keeps serving writes.

use std::net::SocketAddr;
use std::time::Duration;

use consul_tests::closed_within;
use consul_tests::process::{rss_kib, ProcCluster, ProcOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t87_junk_on_the_agent_ports_costs_little_memory_and_few_log_lines() {
    let c = ProcCluster::start_with(3, ProcOptions { log_to_file: true, ..ProcOptions::default() }).await;
    let leader = consul_tests::eventually(Duration::from_secs(20), "a leader", || c.leader_index()).await;
    let target = (leader + 1) % 3;
    let pid = c.pid(target).expect("running");
    let rpc: SocketAddr = c.rpc_addr(target).parse().expect("rpc addr");
    let serf = c.serf_addr(target);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);
    // 2 MiB each, 50 at a time: a port that buffered the announced frame would hold 100 MB.
    let junk = vec![0x5au8; 2 * 1024 * 1024];
    let mut junk_conns = 0;
    for round in 0..8 {
        let mut conns = Vec::new();
        for i in 0..50 {
            let mut s = TcpStream::connect(if i % 2 == 0 { rpc } else { serf }).await.expect("connect");
            s.write_all(&[0x0f, 0xff, 0xff, 0xff]).await.expect("prefix");
            // The agent may close before all of it is written.
            let _ = s.write_all(&junk).await;
            conns.push(s);
        }
        for (i, s) in conns.iter_mut().enumerate() {
            assert!(closed_within(s, Duration::from_secs(5)).await, "round {round}: connection {i} left open");
        }
        junk_conns += conns.len();
    }
    // Past the preamble, 256 MiB Raft frames announced and never sent, held open.
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut s = TcpStream::connect(rpc).await.expect("connect");
        s.write_all(b"CRPC\x01").await.expect("preamble");
        let mut ack = [0u8; 5];
        s.read_exact(&mut ack).await.expect("ack");
        let mut header = (256u32 * 1024 * 1024).to_be_bytes().to_vec();
        header.push(0);
        header.extend_from_slice(&1u64.to_be_bytes());
        s.write_all(&header).await.expect("header");
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid);
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!("VmRSS {before} KiB -> {after} KiB after {junk_conns} junk connections and 40 announced 256 MiB frames");
    assert!(grown_mib < 64, "RSS grew by {grown_mib} MiB");
    // The cluster still serves, through the flooded server too.
    let r = c.api(target).kv_put("flood/after", "ok", "").await.expect("put");
    assert_eq!((r.status, r.text().trim()), (200, "true"));
    drop(held);
    // One WARN per listener per 10 s for the junk, not one per connection.
    let log = std::fs::read_to_string(c.log_path(target)).unwrap_or_default();
    let warns = log.lines().filter(|l| l.contains("WARN") && l.contains("RPC connection closed")).count();
    assert!(
        (1..=8).contains(&warns),
        "{warns} WARN lines for {junk_conns} junk connections:\n{}",
        c.log_tail(target, 20)
    );
}
