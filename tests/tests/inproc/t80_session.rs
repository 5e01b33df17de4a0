//! Sessions and locks (Consul: api-docs/session.mdx, api-docs/kv.mdx `acquire`/`release`,
//! docs "Sessions": invalidation, lock-delay, TTL).

use std::time::{Duration, Instant};

use consul_tests::client::{Api, Resp};
use consul_tests::inproc::Cluster;
use reqwest::Method;
use serde_json::{json, Value};

async fn put(api: &Api, path: &str, body: Option<Value>) -> Resp {
    api.request(Method::PUT, path, body.map(|b| b.to_string().into_bytes())).await.expect("request")
}

async fn register_node(api: &Api, node: &str) {
    let r = put(api, "/v1/catalog/register", Some(json!({"Node": node, "Address": "127.0.0.1"}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn create(api: &Api, body: Value) -> String {
    let r = put(api, "/v1/session/create", Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["ID"].as_str().expect("ID").to_string()
}

async fn acquire(api: &Api, key: &str, session: &str) -> Resp {
    api.kv_put(key, "v", &format!("?acquire={session}")).await.expect("acquire")
}

async fn holder(api: &Api, key: &str) -> Option<String> {
    let r = api.kv_get(key, "?consistent").await.expect("get");
    if r.status == 404 {
        return None;
    }
    r.json()[0]["Session"].as_str().map(str::to_string)
}

async fn session_endpoints(n: usize) {
    let c = Cluster::start(n).await;
    let i = if n > 1 { c.followers().await[0] } else { 0 };
    let api = c.api(i);
    // A node not in the catalog: Consul's "Missing node registration". (The agent's own node is
    // registered by anti-entropy at start; registering it again here is harmless.)
    let r = put(&api, "/v1/session/create", Some(json!({"Node": "ghost"}))).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("Missing node registration"), "{}", r.text());
    register_node(&api, c.agent(i).node_name()).await;
    let default_node = put(&api, "/v1/session/create", None).await;
    assert_eq!(default_node.status, 200, "{}", default_node.text());
    let id = default_node.json()["ID"].as_str().expect("ID").to_string();
    let info = api.get(&format!("/v1/session/info/{id}")).await.expect("info").json();
    assert_eq!(info[0]["Node"].as_str(), Some(c.agent(i).node_name()));

    register_node(&api, "n1").await;
    let r = put(&api, "/v1/session/create", Some(json!({"Node": "n1", "TTL": "5s"}))).await;
    assert_eq!(r.status, 400, "TTL below 10s: {}", r.text());
    let list = api.get("/v1/session/list").await.expect("list");
    let idx = list.index().expect("index");
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move { api.get(&format!("/v1/session/list?index={idx}&wait=20s")).await.expect("list") })
    };
    let id =
        create(&api, json!({"Node": "n1", "Name": "web-lock", "TTL": "30s", "LockDelay": "5s", "Behavior": "delete"}))
            .await;
    let woke = waiter.await.expect("waiter");
    assert!(woke.index().expect("index") > idx);
    assert_eq!(woke.json().as_array().map(Vec::len), Some(2));

    let info = api.get(&format!("/v1/session/info/{id}")).await.expect("info").json();
    let s = &info[0];
    assert_eq!(
        (s["ID"].as_str(), s["Name"].as_str(), s["Node"].as_str()),
        (Some(id.as_str()), Some("web-lock"), Some("n1"))
    );
    assert_eq!(
        (s["LockDelay"].as_u64(), s["Behavior"].as_str(), s["TTL"].as_str()),
        (Some(5_000_000_000), Some("delete"), Some("30s"))
    );
    assert_eq!(s["NodeChecks"], json!(["serfHealth"]));
    assert!(s["CreateIndex"].as_u64().unwrap_or(0) > 0);
    let on_node = api.get("/v1/session/node/n1").await.expect("node").json();
    assert_eq!(on_node.as_array().map(Vec::len), Some(1));
    let renewed = put(&api, &format!("/v1/session/renew/{id}"), None).await;
    assert_eq!(renewed.status, 200);
    assert_eq!(renewed.json()[0]["ID"].as_str(), Some(id.as_str()));
    let missing = put(&api, "/v1/session/renew/00000000-0000-0000-0000-000000000000", None).await;
    assert_eq!(missing.status, 404);

    let r = put(&api, &format!("/v1/session/destroy/{id}"), None).await;
    assert_eq!((r.status, r.text().trim()), (200, "true"));
    let r = put(&api, &format!("/v1/session/destroy/{id}"), None).await;
    assert_eq!((r.status, r.text().trim()), (200, "true"), "destroy is idempotent");
    assert_eq!(api.get(&format!("/v1/session/info/{id}")).await.expect("info").json(), json!([]));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_session_endpoints_one_server() {
    session_endpoints(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_session_endpoints_three_servers() {
    session_endpoints(3).await;
}

/// Two contenders on different servers: exactly one holds; the holder re-acquires without a new
/// LockIndex; destroy releases and the lock-delay keeps the other out until it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t81_two_contenders_exactly_one_holds_and_lock_delay() {
    let c = Cluster::start(3).await;
    let (a, b) = (c.api(0), c.api(2));
    register_node(&a, "n1").await;
    let s1 = create(&a, json!({"Node": "n1", "LockDelay": "2s"})).await;
    let s2 = create(&b, json!({"Node": "n1", "LockDelay": "2s"})).await;
    let (r1, r2) = tokio::join!(acquire(&a, "svc/leader", &s1), acquire(&b, "svc/leader", &s2));
    let wins: Vec<bool> = [&r1, &r2].iter().map(|r| r.json().as_bool().expect("bool")).collect();
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "exactly one contender holds: {wins:?}");
    let (held_by, held_api, other, other_api) = if wins[0] {
        (s1.clone(), a.clone(), s2.clone(), b.clone())
    } else {
        (s2.clone(), b.clone(), s1.clone(), a.clone())
    };
    assert_eq!(holder(&a, "svc/leader").await.as_deref(), Some(held_by.as_str()));
    assert_eq!(acquire(&held_api, "svc/leader", &held_by).await.json(), json!(true));
    assert_eq!(a.kv_get("svc/leader", "").await.expect("get").json()[0]["LockIndex"], 1);
    // Release by a non-holder is false; an unknown session is an error.
    assert_eq!(
        other_api.kv_put("svc/leader", "", &format!("?release={other}")).await.expect("rel").json(),
        json!(false)
    );
    let bad = acquire(&a, "svc/leader", "00000000-0000-0000-0000-00000000dead").await;
    assert_eq!(bad.status, 500);
    assert!(bad.text().contains("invalid session"), "{}", bad.text());

    assert_eq!(put(&held_api, &format!("/v1/session/destroy/{held_by}"), None).await.status, 200);
    let released_at = Instant::now();
    assert_eq!(holder(&a, "svc/leader").await, None);
    assert_eq!(a.kv_get("svc/leader", "").await.expect("get").json()[0]["LockIndex"], 1);
    assert_eq!(acquire(&other_api, "svc/leader", &other).await.json(), json!(false), "lock-delay in effect");
    let mut got = false;
    while released_at.elapsed() < Duration::from_secs(6) {
        if acquire(&other_api, "svc/leader", &other).await.json() == json!(true) {
            got = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(got, "acquire succeeds once the lock-delay is over");
    assert!(released_at.elapsed() >= Duration::from_millis(1900), "not before the 2s lock-delay ended");
    assert_eq!(a.kv_get("svc/leader", "").await.expect("get").json()[0]["LockIndex"], 2);
    c.shutdown().await;
}

/// A session whose TTL lapses (2 × TTL without renew) is invalidated by the leader and its
/// lock released; renewing through a follower keeps a session alive past its TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t82_ttl_lapse_releases_and_follower_renew_keeps_alive() {
    let c = Cluster::start(3).await;
    let follower = c.api(c.followers().await[0]);
    register_node(&follower, "n1").await;
    let idle = create(&follower, json!({"Node": "n1", "TTL": "10s", "LockDelay": "0s"})).await;
    let kept = create(&follower, json!({"Node": "n1", "TTL": "10s"})).await;
    assert_eq!(acquire(&follower, "ttl/lock", &idle).await.json(), json!(true));
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(24) {
        let r = put(&follower, &format!("/v1/session/renew/{kept}"), None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    assert_eq!(follower.get(&format!("/v1/session/info/{idle}")).await.expect("info").json(), json!([]));
    assert_eq!(holder(&follower, "ttl/lock").await, None);
    let info = follower.get(&format!("/v1/session/info/{kept}")).await.expect("info").json();
    assert_eq!(info.as_array().map(Vec::len), Some(1), "renewed session is alive past 2 × TTL");
    // LockDelay 0: the key is free at once.
    assert_eq!(acquire(&follower, "ttl/lock", &kept).await.json(), json!(true));
    c.shutdown().await;
}

/// Deregistering the node invalidates its sessions; `delete` behavior removes held keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t83_node_deregister_invalidates_and_delete_behavior() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    register_node(&api, "n1").await;
    let s = create(&api, json!({"Node": "n1", "Behavior": "delete"})).await;
    assert_eq!(acquire(&api, "eph/key", &s).await.json(), json!(true));
    let r = put(&api, "/v1/catalog/deregister", Some(json!({"Node": "n1"}))).await;
    assert_eq!(r.status, 200);
    assert_eq!(api.get("/v1/session/list").await.expect("list").json(), json!([]));
    assert_eq!(api.kv_get("eph/key", "").await.expect("get").status, 404);
    c.shutdown().await;
}

/// `/v1/txn` verbs `lock`, `check-session`, `unlock` (Consul: api-docs/txn.mdx), and a blocking
/// read of a held key wakes when its session is destroyed (what lock waiters rely on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t84_txn_lock_verbs_and_blocking_wake_on_invalidation() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    register_node(&api, "n1").await;
    let s1 = create(&api, json!({"Node": "n1", "LockDelay": 0})).await;
    let s2 = create(&api, json!({"Node": "n1", "LockDelay": 0})).await;
    let txn = |ops: Value| {
        let api = api.clone();
        async move { put(&api, "/v1/txn", Some(ops)).await }
    };
    let r = txn(json!([{"KV": {"Verb": "lock", "Key": "t/k", "Value": "dg==", "Session": s1}},
                       {"KV": {"Verb": "check-session", "Key": "t/k", "Session": s1}}]))
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["Results"][0]["KV"]["LockIndex"], 1);
    let r = txn(json!([{"KV": {"Verb": "lock", "Key": "t/k", "Session": s2}}])).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.json()["Errors"][0]["What"].as_str().unwrap_or("").contains("already held"));
    let r = txn(json!([{"KV": {"Verb": "check-session", "Key": "t/k", "Session": s2}}])).await;
    assert_eq!(r.status, 409);
    let r = txn(json!([{"KV": {"Verb": "unlock", "Key": "t/k", "Session": s2}}])).await;
    assert_eq!(r.status, 409);
    let r = txn(json!([{"KV": {"Verb": "lock", "Key": "t/k", "Session": "nope"}}])).await;
    assert!(r.json()["Errors"][0]["What"].as_str().unwrap_or("").contains("invalid session"));
    // No Session at all: the operation's error, reported with the others' (Consul's; the Go
    // client's TestAPI_KVClientTxn), not a refused request.
    let r = txn(json!([{"KV": {"Verb": "lock", "Key": "t/k2", "Value": "dg=="}},
                       {"KV": {"Verb": "get", "Key": "t/k2"}}]))
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let errors = r.json()["Errors"].clone();
    assert_eq!(errors.as_array().map(Vec::len), Some(2), "{errors}");
    assert_eq!(errors[0]["OpIndex"], 0);
    assert!(errors[0]["What"].as_str().unwrap_or("").contains("missing session"), "{errors}");
    assert!(errors[1]["What"].as_str().unwrap_or("").contains("doesn't exist"), "{errors}");
    assert_eq!(txn(json!([{"KV": {"Verb": "unlock", "Key": "t/k", "Session": s1}}])).await.status, 200);
    assert_eq!(acquire(&api, "t/k", &s1).await.json(), json!(true));

    let idx = api.kv_get("t/k", "").await.expect("get").index().expect("index");
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move { api.kv_get("t/k", &format!("?index={idx}&wait=20s")).await.expect("get") })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    assert_eq!(put(&api, &format!("/v1/session/destroy/{s1}"), None).await.status, 200);
    let woke = waiter.await.expect("waiter");
    assert!(started.elapsed() < Duration::from_secs(5), "the waiter woke on the release");
    assert!(woke.json()[0].get("Session").is_none());
    c.shutdown().await;
}

/// A new leader gives every TTL session a full 2 × TTL (Consul re-arms its timers on
/// fail-over): a session 15 s into its 20 s window when the leader stops survives past the old
/// deadline, then lapses on the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t85_new_leader_rearms_ttl_timers() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    let api = c.api(c.followers().await[0]);
    register_node(&api, "n1").await;
    let s = create(&api, json!({"Node": "n1", "TTL": "10s"})).await;
    let created = Instant::now();
    tokio::time::sleep(Duration::from_secs(15)).await;
    c.stop(leader).await;
    let survivor = c.api(c.leader().await);
    tokio::time::sleep(Duration::from_secs(22).saturating_sub(created.elapsed())).await;
    let info = survivor.get(&format!("/v1/session/info/{s}")).await.expect("info").json();
    assert_eq!(info.as_array().map(Vec::len), Some(1), "alive past the old leader's deadline");
    consul_tests::eventually(Duration::from_secs(25), "the session lapses on the new leader", || {
        let survivor = survivor.clone();
        let s = s.clone();
        async move {
            let info = survivor.get(&format!("/v1/session/info/{s}")).await.ok()?.json();
            (info == json!([])).then_some(())
        }
    })
    .await;
    c.shutdown().await;
}
