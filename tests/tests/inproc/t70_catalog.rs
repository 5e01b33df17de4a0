//! Catalog and health endpoints (Consul: api-docs/catalog.mdx, api-docs/health.mdx).

use std::time::Duration;

use consul_tests::inproc::Cluster;
use reqwest::Method;
use serde_json::{json, Value};

async fn put_json(api: &consul_tests::client::Api, path: &str, body: Value) -> consul_tests::client::Resp {
    api.request(Method::PUT, path, Some(body.to_string().into_bytes())).await.expect("request")
}

fn register_body(node: &str, id: &str, status: &str, tags: &[&str]) -> Value {
    json!({
        "Node": node, "Address": "192.0.2.10", "NodeMeta": {"rack": "r1"},
        "Service": {"ID": id, "Service": "web", "Tags": tags, "Port": 8080, "Meta": {"version": "1"}},
        "Check": {"CheckID": format!("{id}-check"), "Name": "web health", "Status": status, "ServiceID": id},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_catalog_register_query_deregister() {
    let c = Cluster::start(3).await;
    let api = c.api(0);
    let r = put_json(&api, "/v1/catalog/register", register_body("n1", "web1", "passing", &["primary"])).await;
    assert_eq!((r.status, r.text().trim()), (200, "true"), "{}", r.text());
    let r = put_json(&api, "/v1/catalog/register", register_body("n2", "web2", "critical", &["secondary"])).await;
    assert_eq!(r.status, 200);

    let follower = c.api(c.followers().await[0]);
    // The leader also lists each server as the `consul` service (from gossip), as Consul does.
    let without_consul = |mut v: Value| {
        if let Some(o) = v.as_object_mut() {
            o.remove("consul");
        }
        v
    };
    let services = follower.get("/v1/catalog/services").await.expect("services").json();
    assert_eq!(without_consul(services), json!({"web": ["primary", "secondary"]}));
    let nodes = follower.get("/v1/catalog/nodes?node-meta=rack:r1").await.expect("nodes").json();
    assert_eq!(nodes.as_array().map(Vec::len), Some(2));
    let inst = follower.get("/v1/catalog/service/web?tag=primary").await.expect("service").json();
    assert_eq!(inst.as_array().map(Vec::len), Some(1));
    assert_eq!(inst[0]["ServiceID"], "web1");
    assert_eq!(inst[0]["ServicePort"], 8080);
    assert_eq!(inst[0]["Address"], "192.0.2.10");
    let node = follower.get("/v1/catalog/node/n1").await.expect("node").json();
    assert_eq!(node["Services"]["web1"]["Service"], "web");
    let all = follower.get("/v1/health/service/web").await.expect("health").json();
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    assert_eq!(all[0]["Checks"][0]["Status"], "passing");
    let passing = follower.get("/v1/health/service/web?passing").await.expect("health").json();
    assert_eq!(passing.as_array().map(Vec::len), Some(1));
    assert_eq!(passing[0]["Service"]["ID"], "web1");
    let critical = follower.get("/v1/health/state/critical").await.expect("state").json();
    assert_eq!(critical.as_array().map(Vec::len), Some(1));
    assert_eq!(follower.get("/v1/health/checks/web").await.expect("checks").json().as_array().map(Vec::len), Some(2));
    assert_eq!(follower.get("/v1/health/node/n2").await.expect("node checks").json()[0]["CheckID"], "web2-check");
    assert_eq!(follower.get("/v1/catalog/node/nope").await.expect("node").json(), Value::Null);

    let r = put_json(&api, "/v1/catalog/deregister", json!({"Node": "n1", "ServiceID": "web1"})).await;
    assert_eq!(r.status, 200);
    let inst = api.get("/v1/catalog/service/web").await.expect("service").json();
    assert_eq!(inst.as_array().map(Vec::len), Some(1));
    let r = put_json(&api, "/v1/catalog/deregister", json!({"Node": "n2"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(without_consul(api.get("/v1/catalog/services").await.expect("services").json()), json!({}));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t71_blocking_health_query_wakes_on_status_flip_only() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    put_json(&api, "/v1/catalog/register", register_body("n1", "web1", "passing", &[])).await;
    let r = api.get("/v1/health/service/web?passing").await.expect("health");
    let idx = r.index().expect("index");
    assert_eq!(r.json().as_array().map(Vec::len), Some(1));
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move {
            api.get(&format!("/v1/health/service/web?passing&index={idx}&wait=30s")).await.expect("get")
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // An unrelated service does not wake the watcher...
    let other = json!({"Node": "n9", "Address": "192.0.2.99", "Service": {"Service": "db", "Port": 5432}});
    put_json(&api, "/v1/catalog/register", other).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "woken by an unrelated service");
    // ...the check going critical does.
    put_json(&api, "/v1/catalog/register", register_body("n1", "web1", "critical", &[])).await;
    let r = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("woken").expect("join");
    assert!(r.index() > Some(idx));
    assert_eq!(r.json(), json!([]));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t72_invalid_registrations_are_refused_and_change_nothing() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    let cases = [
        json!({"Address": "1.2.3.4"}),
        json!({"Node": "n", "Address": "1.2.3.4", "Service": {"Port": 80}}),
        json!({"Node": "n", "Address": "1.2.3.4", "Service": {"Service": "s", "Port": 70000}}),
        json!({"Node": "n", "Address": "1.2.3.4", "Check": {"CheckID": "c", "Status": "bogus"}}),
        json!({"Node": "n", "Address": "1.2.3.4", "Check": {"CheckID": "c", "ServiceID": "missing"}}),
        json!({"Node": "n", "Address": "1.2.3.4", "NodeMeta": {"consul-x": "y"}}),
        json!({"Node": "n", "Address": "1.2.3.4", "ID": "not-a-uuid"}),
        json!({"Node": "n"}),
        json!("just a string"),
    ];
    for body in cases {
        let r = put_json(&api, "/v1/catalog/register", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(!r.text().trim().is_empty());
    }
    // Only the agent's own node (registered by anti-entropy) may be there.
    let nodes = api.get("/v1/catalog/nodes").await.expect("nodes").json();
    assert!(nodes.as_array().is_some_and(|a| a.iter().all(|n| n["Node"] == "node0")), "{nodes}");
    let r = api.get("/v1/health/state/sideways").await.expect("state");
    assert_eq!(r.status, 400);
    c.shutdown().await;
}
