//! Catalog operations in transactions (`Node`, `Service`, `Check`, `Session` in `/v1/txn`,
//! Consul: api-docs/txn.mdx): atomic with KV operations, visible through the catalog and health
//! endpoints, waking blocking queries as catalog registrations do.

use std::time::Duration;

use base64::Engine;
use consul_tests::client::{Api, Resp};
use consul_tests::eventually;
use consul_tests::inproc::Cluster;
use reqwest::Method;
use serde_json::{json, Value};

async fn txn(api: &Api, query: &str, ops: Value) -> Resp {
    api.request(Method::PUT, &format!("/v1/txn{query}"), Some(ops.to_string().into_bytes())).await.expect("txn")
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Sets node `node`, service `id` (named `web`) with a passing check, and KV key `key`.
fn register_ops(node: &str, id: &str, key: &str) -> Value {
    json!([
        {"Node": {"Verb": "set", "Node": {"Node": node, "Address": "192.0.2.20", "Meta": {"rack": "r1"}}}},
        {"Service": {"Verb": "set", "Node": node, "Service": {"ID": id, "Service": "web", "Port": 8080, "Tags": ["t"]}}},
        {"Check": {"Verb": "set", "Check": {"Node": node, "CheckID": format!("{id}-check"), "Name": "web health",
            "Status": "passing", "ServiceID": id}}},
        {"KV": {"Verb": "set", "Key": key, "Value": b64("on")}},
    ])
}

fn instances(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|i| i["ServiceID"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_txn_catalog_and_kv_commit_together_through_a_follower() {
    let c = Cluster::start(3).await;
    let follower = c.api(c.followers().await[0]);
    let leader = c.api(c.leader().await);
    let r = txn(&follower, "", register_ops("n1", "web1", "cfg/web")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let index = r.index().expect("X-Consul-Index");
    let body = r.json();
    let results = body["Results"].as_array().expect("results");
    assert_eq!(results.len(), 4, "{body}");
    assert_eq!(results[0]["Node"]["Node"], "n1");
    assert_eq!(results[0]["Node"]["Meta"], json!({"rack": "r1"}));
    assert_eq!(results[0]["Node"]["Datacenter"], "dc1");
    assert_eq!(results[1]["Service"]["ID"], "web1");
    assert_eq!(results[1]["Service"]["Service"], "web");
    assert_eq!(results[1]["Service"]["ModifyIndex"].as_u64(), Some(index));
    assert_eq!(results[2]["Check"]["CheckID"], "web1-check");
    assert_eq!(results[2]["Check"]["ServiceName"], "web");
    assert_eq!(results[3]["KV"]["Key"], "cfg/web");

    // Everything is visible, on the leader and (once applied there) on the follower.
    for api in [&leader, &follower] {
        let inst = eventually(Duration::from_secs(5), "the instance", || async {
            let v = api.get("/v1/catalog/service/web").await.ok()?.json();
            (instances(&v) == ["web1"]).then_some(v)
        })
        .await;
        assert_eq!(inst[0]["Address"], "192.0.2.20");
        assert_eq!(inst[0]["ServicePort"], 8080);
        let health = api.get("/v1/health/service/web?passing").await.expect("health").json();
        assert_eq!(health[0]["Checks"][0]["CheckID"], "web1-check", "{health}");
        assert_eq!(api.kv_get("cfg/web", "").await.expect("kv").kv_value(), Some(b"on".to_vec()));
    }

    // A read-only transaction (all gets) is answered under the requested consistency.
    let reads = json!([
        {"Node": {"Verb": "get", "Node": {"Node": "n1"}}},
        {"Service": {"Verb": "get", "Node": "n1", "Service": {"ID": "web1"}}},
        {"Check": {"Verb": "get", "Check": {"Node": "n1", "CheckID": "web1-check"}}},
        {"KV": {"Verb": "get", "Key": "cfg/web"}},
    ]);
    let r = txn(&follower, "?stale", reads.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["Results"][2]["Check"]["Status"], "passing");
    let r = txn(&follower, "?consistent", reads).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["Results"][3]["KV"]["Value"], json!(b64("on")));

    // Deleting the node takes its services and checks, as a catalog deregistration does.
    let r = txn(&follower, "", json!([{"Node": {"Verb": "delete", "Node": {"Node": "n1"}}}])).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["Results"], json!([]));
    let inst = leader.get("/v1/catalog/service/web").await.expect("service").json();
    assert_eq!(inst, json!([]));
    assert_eq!(leader.get("/v1/health/node/n1").await.expect("checks").json(), json!([]));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_txn_catalog_failing_op_rolls_back_kv_and_catalog() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    assert_eq!(txn(&api, "", register_ops("n1", "web1", "k1")).await.status, 200);
    let before = api.get("/v1/catalog/service/web").await.expect("service");
    let svc_index = before.json()[0]["ModifyIndex"].as_u64().expect("ModifyIndex");

    let ops = json!([
        {"KV": {"Verb": "set", "Key": "k2", "Value": b64("x")}},
        {"Node": {"Verb": "set", "Node": {"Node": "n2", "Address": "192.0.2.21"}}},
        {"Service": {"Verb": "delete", "Node": "n1", "Service": {"ID": "web1"}}},
        {"Service": {"Verb": "cas", "Node": "n1", "Service": {"ID": "web1", "Service": "web", "ModifyIndex": svc_index + 100}}},
        {"Check": {"Verb": "get", "Check": {"Node": "n1", "CheckID": "missing"}}},
    ]);
    let r = txn(&api, "", ops).await;
    assert_eq!(r.status, 409, "{}", r.text());
    let body = r.json();
    assert!(body["Results"].is_null());
    let errors = body["Errors"].as_array().expect("errors");
    let at: Vec<_> = errors.iter().map(|e| e["OpIndex"].as_u64()).collect();
    assert_eq!(at, vec![Some(3), Some(4)], "{body}");
    assert_eq!(errors[0]["What"], "failed to set service \"web1\" on node \"n1\", index is stale");
    assert_eq!(errors[1]["What"], "check \"missing\" on node \"n1\" doesn't exist");
    // Nothing happened: no KV key, no node, the service still there with its index.
    assert_eq!(api.kv_get("k2", "").await.expect("kv").status, 404);
    assert_eq!(api.get("/v1/catalog/node/n2").await.expect("node").json(), Value::Null);
    let after = api.get("/v1/catalog/service/web").await.expect("service").json();
    assert_eq!(after[0]["ModifyIndex"].as_u64(), Some(svc_index));

    // With the right index the cas goes through, and delete-cas with the new one removes it.
    let ops = json!([{"Service": {"Verb": "cas", "Node": "n1",
        "Service": {"ID": "web1", "Service": "web", "Port": 9090, "ModifyIndex": svc_index}}}]);
    let r = txn(&api, "", ops).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let new_index = r.json()["Results"][0]["Service"]["ModifyIndex"].as_u64().expect("ModifyIndex");
    assert!(new_index > svc_index);
    let ops =
        json!([{"Service": {"Verb": "delete-cas", "Node": "n1", "Service": {"ID": "web1", "ModifyIndex": new_index}}}]);
    assert_eq!(txn(&api, "", ops).await.status, 200);
    assert_eq!(api.get("/v1/catalog/service/web").await.expect("service").json(), json!([]));
    assert_eq!(api.get("/v1/health/node/n1").await.expect("checks").json(), json!([]), "service checks go too");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_txn_catalog_wakes_blocking_catalog_and_health_queries() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    assert_eq!(txn(&api, "", register_ops("n1", "web1", "k1")).await.status, 200);
    let idx = api.get("/v1/catalog/service/web").await.expect("service").index().expect("index");
    let health_idx = api.get("/v1/health/service/web").await.expect("health").index().expect("index");
    let wait = |path: String| {
        let api = api.clone();
        tokio::spawn(async move { api.get(&path).await.expect("get") })
    };
    let catalog_waiter = wait(format!("/v1/catalog/service/web?index={idx}&wait=30s"));
    let health_waiter = wait(format!("/v1/health/service/web?index={health_idx}&wait=30s"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!catalog_waiter.is_finished() && !health_waiter.is_finished());
    let r = txn(&api, "", register_ops("n2", "web2", "k2")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let woke = tokio::time::timeout(Duration::from_secs(10), catalog_waiter).await.expect("woken").expect("join");
    assert!(woke.index() > Some(idx));
    assert_eq!(instances(&woke.json()), ["web1", "web2"]);
    let woke = tokio::time::timeout(Duration::from_secs(10), health_waiter).await.expect("woken").expect("join");
    assert!(woke.index() > Some(health_idx));
    assert_eq!(woke.json().as_array().map(Vec::len), Some(2));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_txn_catalog_bad_input_is_400_naming_the_field() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    let cases = [
        (json!([{"Node": {"Verb": "explode", "Node": {"Node": "n"}}}]), "unknown Node verb"),
        (json!([{"Node": {"Node": {"Node": "n"}}}]), "Node.Verb"),
        (json!([{"Node": {"Verb": "set", "Node": {"Address": "192.0.2.1"}}}]), "Node.Node.Node"),
        (json!([{"Service": {"Verb": "set", "Service": {"Service": "web"}}}]), "Service.Node"),
        (json!([{"Service": {"Verb": "set", "Node": "n", "Service": {"Port": 80}}}]), "Service"),
        (json!([{"Service": {"Verb": "get", "Node": "n", "Service": {}}}]), "Service.Service.ID"),
        (json!([{"Check": {"Verb": "set", "Check": {"CheckID": "c"}}}]), "Check.Check.Node"),
        (json!([{"Check": {"Verb": "set", "Check": {"Node": "n", "CheckID": "c", "Status": "bogus"}}}]), "status"),
        (json!([{"Session": {"Verb": "renew", "Session": {"ID": "x"}}}]), "unknown Session verb"),
        (json!([{"KV": {"Verb": "get", "Key": "a"}, "Node": {"Verb": "get"}}]), "more than one operation"),
        (json!([{"Nope": {}}]), "missing operation"),
    ];
    for (ops, needle) in cases {
        let r = txn(&api, "", ops.clone()).await;
        assert_eq!(r.status, 400, "{ops}: {}", r.text());
        assert!(r.text().contains(needle), "{ops}: {:?} lacks {needle:?}", r.text());
        assert!(r.text().contains("operation 0"), "{ops}: {:?}", r.text());
    }
    // Services and checks need their node; the whole transaction is refused.
    let ops = json!([
        {"KV": {"Verb": "set", "Key": "k", "Value": b64("v")}},
        {"Service": {"Verb": "set", "Node": "ghost", "Service": {"Service": "web"}}},
    ]);
    let r = txn(&api, "", ops).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["Errors"], json!([{"OpIndex": 1, "What": "Missing node registration"}]));
    assert_eq!(api.kv_get("k", "").await.expect("kv").status, 404);
    // The 128-operation limit counts catalog operations too.
    let many: Vec<_> = (0..129).map(|i| json!({"Node": {"Verb": "get", "Node": {"Node": format!("n{i}")}}})).collect();
    assert_eq!(txn(&api, "", Value::Array(many)).await.status, 413);
    c.shutdown().await;
}

const ROOT: &str = "4d2f7a10-3c1b-4e5a-9f60-7b8c9d0e1f12";

fn acl_opts() -> consul_tests::inproc::Options {
    fn deny_by_default(c: &mut consul_core::config::AgentConfig) {
        c.acl.default_allow = false;
    }
    consul_tests::inproc::Options {
        acl: true,
        initial_management: Some(ROOT.into()),
        tweak: Some(deny_by_default),
        ..Default::default()
    }
}

/// A token whose one policy holds `rules`; returns its SecretID.
async fn token_with(api: &Api, name: &str, rules: &str) -> String {
    let p = txn_put(api, "/v1/acl/policy", json!({"Name": name, "Rules": rules})).await;
    let t = txn_put(api, "/v1/acl/token", json!({"Description": name, "Policies": [{"ID": p["ID"]}]})).await;
    t["SecretID"].as_str().expect("secret").into()
}

async fn txn_put(api: &Api, path: &str, body: Value) -> Value {
    let r = api.request(Method::PUT, &format!("{path}?token={ROOT}"), Some(body.to_string().into_bytes())).await;
    let r = r.expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_txn_catalog_ops_need_catalog_write_permissions() {
    let c = Cluster::start_with(1, acl_opts()).await;
    let api = c.api(0);
    eventually(Duration::from_secs(20), "initial management token", || async {
        let r = api.get(&format!("/v1/acl/token/self?token={ROOT}")).await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    let web = token_with(&api, "web", r#"node "n1" { policy = "write" } service "web" { policy = "write" }"#).await;
    let r = txn(&api, &format!("?token={web}"), register_ops("n1", "web1", "k")).await;
    // The KV op is denied (no key rule): the whole transaction is refused, nothing written.
    assert_eq!(r.status, 409, "{}", r.text());
    let errors = r.json()["Errors"].clone();
    assert_eq!(errors.as_array().map(Vec::len), Some(1), "{errors}");
    assert_eq!(errors[0]["OpIndex"], 3);
    assert_eq!(api.get(&format!("/v1/catalog/node/n1?token={ROOT}")).await.expect("node").json(), Value::Null);
    // Without the KV op it goes through; a service the token may not write is refused.
    let ops = register_ops("n1", "web1", "k");
    let catalog_only = Value::Array(ops.as_array().expect("ops")[..3].to_vec());
    assert_eq!(txn(&api, &format!("?token={web}"), catalog_only).await.status, 200);
    let db = json!([{"Service": {"Verb": "set", "Node": "n1", "Service": {"ID": "db1", "Service": "db"}}}]);
    let r = txn(&api, &format!("?token={web}"), db).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("service:write"), "{}", r.text());
    c.shutdown().await;
}
