//! Restart from the data dir: every server stopped, then started again with the same data.

use std::time::Duration;

use consul_tests::inproc::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_whole_cluster_restart_keeps_data() {
    let mut c = Cluster::start(3).await;
    for i in 0..30 {
        c.api(i % 3).put_ok(&format!("persist/{i}"), format!("v{i}")).await;
    }
    for i in 0..3 {
        c.stop(i).await;
    }
    for i in 0..3 {
        c.restart(i).await;
    }
    c.wait_for_voters(3).await;
    for i in 0..3 {
        let api = c.api(i);
        let keys = consul_tests::eventually(Duration::from_secs(20), "keys after restart", || {
            let api = api.clone();
            async move { api.kv_get("persist/", "?keys").await.ok().filter(|r| r.status == 200) }
        })
        .await;
        assert_eq!(keys.json().as_array().map(Vec::len), Some(30), "server {i}");
    }
    let r = c.api(1).kv_get("persist/7", "?raw").await.expect("get");
    assert_eq!(r.body, b"v7");
    // New writes after the restart get larger indexes than before.
    c.api(2).put_ok("persist/new", "x").await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t51_single_server_restart_keeps_data_and_node_id() {
    let mut c = Cluster::start(1).await;
    c.api(0).put_ok("solo", "1").await;
    let node_id = c.agent(0).node_id();
    c.stop(0).await;
    c.restart(0).await;
    assert_eq!(c.agent(0).node_id(), node_id, "node-id persists in the data dir");
    c.leader().await;
    assert_eq!(c.api(0).kv_get("solo", "?raw").await.expect("get").body, b"1");
    c.shutdown().await;
}
