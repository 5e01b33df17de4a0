//! Snapshots: log compaction with a new server catching up from a snapshot, and
//! `/v1/snapshot` save/restore (Consul: api-docs/snapshot.mdx).

use std::time::Duration;

use consul_tests::inproc::{Cluster, Options};
use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_compaction_then_new_server_catches_up_from_snapshot() {
    let opts = Options { snapshot_threshold: 50, trailing_logs: 5, ..Options::default() };
    let mut c = Cluster::start_with(3, opts).await;
    for i in 0..200 {
        c.api(i % 3).put_ok(&format!("snap/{i:03}"), format!("v{i}")).await;
    }
    let leader = c.leader().await;
    c.agent(leader).snapshot_now().await.expect("snapshot");
    // The leader's log no longer starts at the beginning.
    consul_tests::eventually(Duration::from_secs(10), "log purged behind the snapshot", || async {
        let m = c.agent(leader).consensus().expect("server").metrics();
        (m.purged.map(|p| p.index).unwrap_or(0) > 100).then_some(())
    })
    .await;
    let new = c.add_server().await;
    c.wait_for_voters(4).await;
    let api = c.api(new);
    consul_tests::eventually(Duration::from_secs(30), "new server has every key", || {
        let api = api.clone();
        async move {
            let r = api.kv_get("snap/", "?keys&stale").await.ok()?;
            (r.json().as_array()?.len() == 200).then_some(())
        }
    })
    .await;
    assert_eq!(api.kv_get("snap/123", "?raw&stale").await.expect("get").body, b"v123");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t61_snapshot_save_and_restore() {
    let c = Cluster::start(3).await;
    let api = c.api(0);
    api.put_ok("keep", "original").await;
    api.put_ok("gone-later", "x").await;
    let snap = api.get("/v1/snapshot").await.expect("save");
    assert_eq!(snap.status, 200);
    assert_eq!(snap.header("content-type").as_deref(), Some("application/x-gzip"));
    let snap_index = snap.index().expect("index");

    api.put_ok("keep", "changed").await;
    api.put_ok("added-later", "y").await;
    assert_eq!(api.kv_delete("gone-later", "").await.expect("delete").text().trim(), "true");
    let before_restore = api.kv_get("keep", "").await.expect("get").index().expect("index");
    assert!(before_restore > snap_index);

    // A watcher on a key must see the restore as a change with a larger index.
    let watcher = {
        let api = c.api(1);
        tokio::spawn(
            async move { api.kv_get("keep", &format!("?index={before_restore}&wait=30s")).await.expect("get") },
        )
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = c.api(2).request(Method::PUT, "/v1/snapshot", Some(snap.body.clone())).await.expect("restore");
    assert_eq!(r.status, 200, "{}", r.text());
    let woke = tokio::time::timeout(Duration::from_secs(10), watcher).await.expect("watcher woken").expect("join");
    assert!(woke.index() > Some(before_restore), "indexes stay monotonic across a restore");
    assert_eq!(woke.kv_value().as_deref(), Some(b"original".as_ref()));
    for i in 0..3 {
        let a = c.api(i);
        assert_eq!(a.kv_get("keep", "?raw").await.expect("get").body, b"original");
        assert_eq!(a.kv_get("gone-later", "?raw").await.expect("get").body, b"x");
        assert_eq!(a.kv_get("added-later", "").await.expect("get").status, 404);
    }
    // Damaged archives are refused and change nothing.
    let mut bad = snap.body.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let r = api.request(Method::PUT, "/v1/snapshot", Some(bad)).await.expect("restore");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = api.request(Method::PUT, "/v1/snapshot", Some(b"garbage".to_vec())).await.expect("restore");
    assert_eq!(r.status, 400);
    assert_eq!(api.kv_get("keep", "?raw").await.expect("get").body, b"original");
    c.shutdown().await;
}
