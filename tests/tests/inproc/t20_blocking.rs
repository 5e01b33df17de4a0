//! Blocking queries (Consul: api-docs/features/blocking.mdx; agent/blockingquery).

use std::time::{Duration, Instant};

use consul_tests::inproc::{Cluster, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_blocking_get_wakes_on_its_key_only() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    api.put_ok("watched", "1").await;
    let idx = api.kv_get("watched", "").await.expect("get").index().expect("index");

    // An unrelated write must not wake the watcher: it sits out its whole wait.
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let r = api.kv_get("watched", &format!("?index={idx}&wait=1500ms")).await.expect("get");
            (start.elapsed(), r)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.put_ok("unrelated", "x").await;
    api.put_ok("watched-but-longer", "x").await;
    let (elapsed, r) = waiter.await.expect("join");
    assert!(elapsed >= Duration::from_millis(1400), "woken early after {elapsed:?} by an unrelated write");
    assert_eq!(r.index(), Some(idx), "timeout returns the unchanged index");

    // A write to the key wakes it promptly with a larger index and the new value.
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let r = api.kv_get("watched", &format!("?index={idx}&wait=30s")).await.expect("get");
            (start.elapsed(), r)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.put_ok("watched", "2").await;
    let (elapsed, r) = waiter.await.expect("join");
    assert!(elapsed < Duration::from_secs(10), "not woken by the write ({elapsed:?})");
    assert!(r.index() > Some(idx));
    assert_eq!(r.kv_value().as_deref(), Some(b"2".as_ref()));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t21_blocking_prefix_wakes_on_delete() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    api.put_ok("dir/a", "1").await;
    api.put_ok("dir/b", "1").await;
    let idx = api.kv_get("dir/", "?recurse").await.expect("get").index().expect("index");
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move { api.kv_get("dir/", &format!("?recurse&index={idx}&wait=30s")).await.expect("get") })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(api.kv_delete("dir/a", "").await.expect("delete").text().trim(), "true");
    let r = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("woken by delete").expect("join");
    assert!(r.index() > Some(idx), "a delete moves the prefix index (tombstone)");
    assert_eq!(r.json().as_array().map(Vec::len), Some(1));

    // Deleting the last key under a prefix still moves its index forward.
    let idx = r.index().expect("index");
    assert_eq!(api.kv_delete("dir/b", "").await.expect("delete").text().trim(), "true");
    let r = api.kv_get("dir/", &format!("?recurse&index={idx}&wait=5s")).await.expect("get");
    assert_eq!(r.status, 404);
    assert!(r.index() > Some(idx));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t22_blocking_on_missing_key_returns_when_created() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    let r = api.kv_get("later", "").await.expect("get");
    assert_eq!(r.status, 404);
    let idx = r.index().expect("404 carries X-Consul-Index");
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move { api.kv_get("later", &format!("?index={idx}&wait=30s")).await.expect("get") })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.put_ok("later", "here").await;
    let r = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("woken").expect("join");
    assert_eq!(r.status, 200);
    assert_eq!(r.kv_value().as_deref(), Some(b"here".as_ref()));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t23_tombstones_are_reaped_after_their_ttl() {
    let opts = Options { tombstone_ttl: Duration::from_secs(2), ..Options::default() };
    let c = Cluster::start_with(3, opts).await;
    let leader = c.leader().await;
    let api = c.api(leader);
    api.put_ok("tomb/a", "1").await;
    assert_eq!(api.kv_delete("tomb/a", "").await.expect("delete").text().trim(), "true");
    let count = |i: usize| c.agent(i).consensus().expect("server").state().read(|d| d.tombstones.len());
    // The leader applied the delete before acknowledging it; the TTL keeps it for 2 s.
    assert_eq!(count(leader), 1, "a delete leaves a tombstone");
    consul_tests::eventually(Duration::from_secs(15), "tombstones reaped on every server", || async {
        c.running().all(|i| count(i) == 0).then_some(())
    })
    .await;
    c.shutdown().await;
}
