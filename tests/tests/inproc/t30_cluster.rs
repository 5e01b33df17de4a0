//! Three-server clusters: forwarding, consistency modes, CAS races (Consul:
//! api-docs/features/consistency.mdx).

use std::collections::HashSet;
use std::time::Duration;

use consul_tests::inproc::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_follower_forwards_writes_and_reads_in_all_modes() {
    let c = Cluster::start(3).await;
    let followers = c.followers().await;
    let f = c.api(followers[0]);
    f.put_ok("fwd/key", "from-follower").await;
    for (query, mode) in [("", "leader"), ("?consistent", "consistent"), ("?stale", "stale")] {
        // stale reads may lag; default and consistent must see the write at once.
        let api = c.api(followers[1]);
        let r = if mode == "stale" {
            consul_tests::eventually(Duration::from_secs(5), "stale read catches up", || {
                let api = api.clone();
                async move { api.kv_get("fwd/key", query).await.ok().filter(|r| r.status == 200) }
            })
            .await
        } else {
            api.kv_get("fwd/key", query).await.expect("get")
        };
        assert_eq!(r.status, 200, "mode {mode}");
        assert_eq!(r.kv_value().as_deref(), Some(b"from-follower".as_ref()), "mode {mode}");
        assert_eq!(r.header("X-Consul-Effective-Consistency").as_deref(), Some(mode));
        assert_eq!(r.header("X-Consul-KnownLeader").as_deref(), Some("true"));
        assert!(r.header("X-Consul-LastContact").is_some());
    }
    // Every server reports the same leader and peers.
    let leader = c.api(0).get("/v1/status/leader").await.expect("leader").json();
    for i in 0..3 {
        assert_eq!(c.api(i).get("/v1/status/leader").await.expect("leader").json(), leader);
        assert_eq!(c.api(i).get("/v1/status/peers").await.expect("peers").json().as_array().map(Vec::len), Some(3));
    }
    let conf = c.api(followers[0]).get("/v1/operator/raft/configuration").await.expect("conf").json();
    let servers = conf["Servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 3);
    assert_eq!(servers.iter().filter(|s| s["Leader"].as_bool() == Some(true)).count(), 1);
    assert!(servers.iter().all(|s| s["Voter"].as_bool() == Some(true)));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t31_cas_race_has_exactly_one_winner() {
    let c = Cluster::start(3).await;
    c.api(0).put_ok("race", "start").await;
    for round in 0..5 {
        let idx = c.api(0).kv_get("race", "").await.expect("get").json()[0]["ModifyIndex"].as_u64().expect("idx");
        let mut tasks = Vec::new();
        for w in 0..12 {
            let api = c.api(w % 3);
            tasks.push(tokio::spawn(async move {
                let r = api.kv_put("race", format!("r{round}w{w}"), &format!("?cas={idx}")).await.expect("put");
                (w, r.text().trim() == "true")
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (w, won) = t.await.expect("join");
            if won {
                winners.push(w);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let value = c.api(1).kv_get("race", "?consistent&raw").await.expect("get").text();
        assert_eq!(value, format!("r{round}w{}", winners[0]));
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t32_concurrent_writes_through_every_server_all_land() {
    let c = Cluster::start(3).await;
    let mut tasks = Vec::new();
    for w in 0..24 {
        let api = c.api(w % 3);
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                api.put_ok(&format!("many/{w}/{i}"), "v").await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let keys = c.api(2).kv_get("many/", "?keys&consistent").await.expect("keys").json();
    let keys: HashSet<String> =
        keys.as_array().expect("array").iter().filter_map(|k| k.as_str().map(String::from)).collect();
    assert_eq!(keys.len(), 240);
    c.shutdown().await;
}
