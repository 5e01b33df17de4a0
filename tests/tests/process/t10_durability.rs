//! Durability: every acknowledged write survives kill -9 of every server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use consul_tests::process::ProcCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_kill9_every_server_loses_no_acknowledged_write() {
    let mut c = ProcCluster::start(3).await;
    // Writers on every server keep writing while the servers are killed; only writes answered
    // `true` count as acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..6 {
        let api = c.api(w % 3);
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 2000 {
                let key = format!("durable/{w}/{i}");
                if let Ok(r) = api.kv_put(&key, format!("v{i}"), "").await {
                    if r.status == 200 && r.text().trim() == "true" {
                        acked.push(key);
                    }
                }
                i += 1;
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..c.len() {
        c.kill9(i);
    }
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.expect("writer"));
    }
    assert!(acked.len() > 20, "the load ran ({} acknowledged writes)", acked.len());
    for i in 0..c.len() {
        c.restart(i);
    }
    c.wait_for_voters(3).await;
    let api = c.api(0);
    let keys = consul_tests::eventually(Duration::from_secs(30), "keys readable after restart", || {
        let api = api.clone();
        async move { api.kv_get("durable/", "?keys&consistent").await.ok().filter(|r| r.status == 200) }
    })
    .await
    .json();
    let present: std::collections::HashSet<String> =
        keys.as_array().expect("array").iter().filter_map(|k| k.as_str().map(String::from)).collect();
    let lost: Vec<&String> = acked.iter().filter(|k| !present.contains(*k)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    // Every server has the same data.
    for i in 1..c.len() {
        let r = c.api(i).kv_get("durable/", "?keys&consistent").await.expect("keys");
        assert_eq!(r.json(), keys, "server {i} differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_five_servers_kill9_leader_reelect_and_rejoin() {
    let mut c = ProcCluster::start(5).await;
    let leader_addr = c.api(0).get("/v1/status/leader").await.expect("leader").json();
    let leader = (0..c.len())
        .find(|i| {
            let peers_of_i = c.rpc_addr(*i);
            leader_addr.as_str() == Some(peers_of_i.as_str())
        })
        .expect("leader is one of ours");
    let writer = (leader + 1) % c.len();
    for i in 0..40 {
        c.api(writer).put_ok(&format!("five/{i}"), "v").await;
    }
    c.kill9(leader);
    // The survivors elect a new leader and keep accepting writes.
    let api = c.api(writer);
    consul_tests::eventually(Duration::from_secs(30), "a new leader", || {
        let api = api.clone();
        let old = leader_addr.clone();
        async move {
            let now = api.get("/v1/status/leader").await.ok()?.json();
            (now.as_str().is_some_and(|s| !s.is_empty()) && now != old).then_some(())
        }
    })
    .await;
    for i in 40..50 {
        c.api(writer).put_ok(&format!("five/{i}"), "v").await;
    }
    c.restart(leader);
    let back = c.api(leader);
    let keys = consul_tests::eventually(Duration::from_secs(30), "restarted server catches up", || {
        let back = back.clone();
        async move {
            let r = back.kv_get("five/", "?keys&stale").await.ok()?;
            (r.json().as_array()?.len() == 50).then_some(r)
        }
    })
    .await;
    assert_eq!(keys.json().as_array().map(Vec::len), Some(50));
}

/// Agent registrations are journalled with a shared fsync: every registration (and TTL status)
/// answered 200 survives kill -9 mid-load, and a deregistration answered 200 stays gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_kill9_loses_no_acknowledged_agent_registration() {
    let mut c = ProcCluster::start(1).await;
    let api = c.api(0);
    for i in 0..20 {
        let reg = serde_json::json!({"Name": "gone", "ID": format!("gone-{i}")});
        let r = api.request(reqwest::Method::PUT, "/v1/agent/service/register", Some(reg.to_string().into())).await;
        assert_eq!(r.expect("register").status, 200);
    }
    let r = api.request(reqwest::Method::PUT, "/v1/agent/service/deregister/gone-7", None).await;
    assert_eq!(r.expect("deregister").status, 200);
    let stop = Arc::new(AtomicBool::new(false));
    let mut registrars = Vec::new();
    for w in 0..16 {
        let api = api.clone();
        let stop = stop.clone();
        registrars.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 5000 {
                let id = format!("svc-{w}-{i}");
                let reg = serde_json::json!({"Name": format!("svc-{w}"), "ID": id, "Port": i,
                                             "Check": {"TTL": "1h", "Status": "warning"}});
                let body = Some(reg.to_string().into_bytes());
                if let Ok(r) = api.request(reqwest::Method::PUT, "/v1/agent/service/register", body).await {
                    if r.status == 200 {
                        acked.push(id);
                    }
                }
                i += 1;
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.kill9(0);
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for r in registrars {
        acked.extend(r.await.expect("registrar"));
    }
    assert!(acked.len() > 50, "the load ran ({} acknowledged registrations)", acked.len());
    c.restart(0);
    let api = c.api(0);
    let services = consul_tests::eventually(Duration::from_secs(30), "agent answering after restart", || {
        let api = api.clone();
        async move { api.get("/v1/agent/services").await.ok().filter(|r| r.status == 200) }
    })
    .await
    .json();
    let lost: Vec<&String> = acked.iter().filter(|id| services.get(id.as_str()).is_none()).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged registrations lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(services["svc-3-0"]["Port"], 0);
    assert!(services.get("gone-7").is_none(), "the deregistration survives too");
    assert!(services.get("gone-8").is_some());
    let checks = api.get("/v1/agent/checks").await.expect("checks").json();
    let id = &acked[acked.len() / 2];
    assert_eq!(checks[format!("service:{id}")]["Status"], "warning", "TTL checks come back with their status");
}
