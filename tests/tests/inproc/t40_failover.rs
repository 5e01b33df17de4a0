//! Leader loss: a new leader within seconds, no acknowledged write lost (Raft §5.4 safety).

use std::time::{Duration, Instant};

use consul_tests::inproc::Cluster;

async fn kill_leader_and_check(n: usize) {
    let mut c = Cluster::start(n).await;
    let leader = c.leader().await;
    let follower = c.followers().await[0];
    let api = c.api(follower);
    let mut acked = Vec::new();
    for i in 0..50 {
        api.put_ok(&format!("ack/{i}"), format!("v{i}")).await;
        acked.push(i);
    }
    let stopped_at = Instant::now();
    c.stop(leader).await;
    let new_leader = c.leader().await;
    let elected_in = stopped_at.elapsed();
    assert_ne!(new_leader, leader);
    assert!(elected_in < Duration::from_secs(10), "election took {elected_in:?}");
    // Writes keep working (a follower forwards to the new leader).
    for i in 50..60 {
        api.put_ok(&format!("ack/{i}"), format!("v{i}")).await;
        acked.push(i);
    }
    for i in c.running().collect::<Vec<_>>() {
        let keys = c.api(i).kv_get("ack/", "?keys&consistent").await.expect("keys").json();
        assert_eq!(keys.as_array().map(Vec::len), Some(acked.len()), "server {i} lost acknowledged writes");
    }
    // The old leader comes back and catches up.
    c.restart(leader).await;
    let back = c.api(leader);
    consul_tests::eventually(Duration::from_secs(20), "restarted leader catches up", || {
        let back = back.clone();
        async move {
            let r = back.kv_get("ack/", "?keys&stale").await.ok()?;
            (r.json().as_array()?.len() == 60).then_some(())
        }
    })
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_three_servers_survive_leader_loss() {
    kill_leader_and_check(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t41_five_servers_survive_leader_loss() {
    kill_leader_and_check(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t42_remove_dead_peer() {
    let mut c = Cluster::start(3).await;
    let victim = c.followers().await[0];
    let victim_addr = c.agent(victim).rpc_addr().to_string();
    c.stop(victim).await;
    let leader = c.leader().await;
    let api = c.api(leader);
    let r =
        api.request(reqwest::Method::DELETE, "/v1/operator/raft/peer?address=127.0.0.1:1", None).await.expect("delete");
    assert_eq!(r.status, 400, "unknown address is refused: {}", r.text());
    let r = api
        .request(reqwest::Method::DELETE, &format!("/v1/operator/raft/peer?address={victim_addr}"), None)
        .await
        .expect("delete");
    assert_eq!(r.status, 200, "{}", r.text());
    let peers = api.get("/v1/status/peers").await.expect("peers").json();
    assert_eq!(peers.as_array().map(Vec::len), Some(2));
    // Two voters left: writes still commit.
    api.put_ok("after-removal", "ok").await;
    c.shutdown().await;
}
