//! What the console reads beyond Consul's plain API: the blocking forms of
//! `/v1/operator/raft/configuration` and `/v1/agent/members` (consul-rs extensions), `?filter=`
//! on a recursive KV read, and Consul's `/v1/internal/ui/service-topology`,
//! `gateway-services-nodes` and `gateway-intentions` on a catalog without mesh config entries.

use std::time::{Duration, Instant};

use consul_core::agent::Agent;
use consul_core::config::AgentConfig;
use consul_tests::client::{Api, Resp};
use consul_tests::inproc::{Cluster, Options};
use reqwest::Method;
use serde_json::{json, Value};

fn index(r: &Resp) -> u64 {
    r.index().unwrap_or_else(|| panic!("X-Consul-Index missing: {}", r.text()))
}

async fn get(api: &Api, path: &str) -> Resp {
    let r = api.get(path).await.expect("request");
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r
}

/// A blocking GET of `path` at `index` started in the background.
fn block(api: &Api, path: &str, index: u64, wait: &str) -> tokio::task::JoinHandle<(Resp, Duration)> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let (api, path) = (api.clone(), format!("{path}{sep}index={index}&wait={wait}"));
    tokio::spawn(async move {
        let started = Instant::now();
        let r = api.get(&path).await.expect("blocking request");
        (r, started.elapsed())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t98_raft_configuration_and_members_block_until_membership_changes() {
    let mut c = Cluster::start(1).await;
    let api = c.api(0);

    // Raft configuration: an index, a `wait` that runs out with the same index.
    let conf = get(&api, "/v1/operator/raft/configuration").await;
    let conf_index = index(&conf);
    assert_eq!(conf.json()["Index"].as_u64().map(|i| i.max(1)), Some(conf_index));
    let (r, took) = block(&api, "/v1/operator/raft/configuration", conf_index, "300ms").await.expect("join");
    assert_eq!((r.status, index(&r)), (200, conf_index), "{}", r.text());
    assert!(took >= Duration::from_millis(250), "answered after {took:?}, before the wait ran out");

    // Members: the same, over the gossip change counter.
    let members = get(&api, "/v1/agent/members").await;
    let members_index = index(&members);
    assert_eq!(members.json().as_array().map(Vec::len), Some(1));
    let (r, took) = block(&api, "/v1/agent/members", members_index, "300ms").await.expect("join");
    assert_eq!((r.status, index(&r)), (200, members_index));
    assert!(took >= Duration::from_millis(250), "answered after {took:?}");
    // A bad wait is refused as on every blocking endpoint.
    assert_eq!(api.get("/v1/agent/members?index=1&wait=soon").await.expect("bad wait").status, 400);

    // A second server joins: both blocked queries wake with a new index and the new member.
    let conf_wait = block(&api, "/v1/operator/raft/configuration", conf_index, "60s");
    let members_wait = block(&api, "/v1/agent/members", members_index, "60s");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!conf_wait.is_finished() && !members_wait.is_finished(), "nothing changed yet");
    c.add_server().await;

    let (r, took) = members_wait.await.expect("join");
    assert_eq!(r.status, 200);
    assert_ne!(index(&r), members_index);
    assert!(took < Duration::from_secs(50), "woken by the join, not the wait: {took:?}");
    assert!(r.json().as_array().is_some_and(|m| m.len() == 2), "{}", r.text());

    let (r, took) = conf_wait.await.expect("join");
    assert_eq!(r.status, 200);
    assert!(index(&r) > conf_index);
    assert!(took < Duration::from_secs(50), "woken by the new server, not the wait: {took:?}");
    assert_eq!(r.json()["Servers"].as_array().map(Vec::len), Some(2), "{}", r.text());
    c.shutdown().await;
}

async fn put(api: &Api, path: &str, body: Value) {
    let r = api.request(Method::PUT, path, Some(body.to_string().into_bytes())).await.expect("put");
    assert_eq!(r.status, 200, "{path}: {}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t98_kv_recurse_filters_and_still_blocks() {
    let agent = Agent::start(AgentConfig::dev_any_port()).await.expect("agent");
    agent.wait_for_leader(Duration::from_secs(30)).await.expect("leader");
    let api = Api::new(agent.http_addr());
    let session = api.request(Method::PUT, "/v1/session/create", Some(b"{}".to_vec())).await.expect("session").json()
        ["ID"]
        .as_str()
        .expect("id")
        .to_string();
    api.put_ok("locks/free", "x").await;
    assert_eq!(api.kv_put("locks/held", "x", &format!("?acquire={session}")).await.expect("acquire").text(), "true");

    let held = get(&api, "/v1/kv/?recurse&filter=Session%20!%3D%20%22%22").await;
    let keys: Vec<Value> = held.json().as_array().expect("list").iter().map(|e| e["Key"].clone()).collect();
    assert_eq!(keys, [json!("locks/held")]);
    assert_eq!(held.json()[0]["Session"], json!(session));
    let bad = api.get("/v1/kv/?recurse&filter=Nope%20%3D%3D%201").await.expect("bad filter");
    assert_eq!(bad.status, 400, "{}", bad.text());

    // Releasing the lock wakes the filtered blocking query, which then finds nothing (404).
    let wait = block(&api, "/v1/kv/?recurse&filter=Session%20!%3D%20%22%22", index(&held), "60s");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!wait.is_finished());
    api.kv_put("locks/held", "x", &format!("?release={session}")).await.expect("release");
    let (r, took) = wait.await.expect("join");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(took < Duration::from_secs(50));
    agent.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t98_service_topology_and_gateway_endpoints_answer_as_consul_without_a_mesh() {
    let agent = Agent::start(AgentConfig::dev_any_port()).await.expect("agent");
    agent.wait_for_leader(Duration::from_secs(30)).await.expect("leader");
    let api = Api::new(agent.http_addr());
    let node = |svc: Value| json!({"Node": "n1", "Address": "10.0.0.1", "Service": svc});
    put(&api, "/v1/catalog/register", node(json!({"ID": "web1", "Service": "web", "Tags": ["v1"]}))).await;
    put(&api, "/v1/catalog/register", node(json!({"ID": "db1", "Service": "db"}))).await;
    put(&api, "/v1/catalog/register", node(json!({"ID": "api1", "Service": "api"}))).await;
    let proxy = |id: &str, dest: &str, upstream: &str| {
        json!({"ID": id, "Service": format!("{dest}-sidecar-proxy"), "Kind": "connect-proxy", "Port": 21000,
               "Proxy": {"DestinationServiceName": dest, "Upstreams": [{"DestinationName": upstream, "LocalBindPort": 9191}]}})
    };
    put(&api, "/v1/catalog/register", node(proxy("web1-proxy", "web", "db"))).await;
    put(&api, "/v1/catalog/register", node(proxy("api1-proxy", "api", "web"))).await;

    // A plain service: tcp, no upstreams nor downstreams.
    let plain = get(&api, "/v1/internal/ui/service-topology/db?kind=").await;
    let db = plain.json();
    assert_eq!(db["Protocol"], "tcp");
    assert_eq!((&db["TransparentProxy"], &db["FilteredByACLs"]), (&json!(false), &json!(false)));
    assert_eq!(db["Downstreams"].as_array().map(|d| d[0]["Name"].clone()), Some(json!("web")));
    assert_eq!(db["Upstreams"], json!([]));

    // web: db upstream (from its proxy's registration), api downstream (api's proxy lists web).
    let r = get(&api, "/v1/internal/ui/service-topology/web?kind=").await;
    let web = r.json();
    let up = &web["Upstreams"][0];
    assert_eq!((&up["Name"], &up["InstanceCount"], &up["Source"]), (&json!("db"), &json!(1), &json!("registration")));
    assert_eq!(up["Intention"]["Allowed"], json!(true));
    assert_eq!(web["Downstreams"].as_array().map(|d| d.len()), Some(1));
    assert_eq!(web["Downstreams"][0]["Name"], "api");
    // Blocking: a wait on the same index runs out; a catalog change wakes it.
    // (The agent's own anti-entropy may still be writing its node: wait for a quiet moment.)
    let mut quiet = false;
    let mut at = index(&r);
    for _ in 0..20 {
        let (same, took) = block(&api, "/v1/internal/ui/service-topology/web?kind=", at, "300ms").await.expect("join");
        assert_eq!(same.status, 200);
        if index(&same) == at {
            assert!(took >= Duration::from_millis(250), "the same index came back after {took:?}");
            quiet = true;
            break;
        }
        at = index(&same);
    }
    assert!(quiet, "the catalog never stayed still for 300 ms");
    let r = get(&api, "/v1/internal/ui/service-topology/web?kind=").await;
    let woken = block(&api, "/v1/internal/ui/service-topology/web?kind=", index(&r), "60s");
    tokio::time::sleep(Duration::from_millis(200)).await;
    put(&api, "/v1/catalog/register", node(json!({"ID": "db2", "Service": "db", "Port": 2}))).await;
    let (r, took) = woken.await.expect("join");
    assert!(took < Duration::from_secs(50));
    assert_eq!(r.json()["Upstreams"][0]["InstanceCount"], json!(2));

    for (path, status, text) in [
        ("/v1/internal/ui/service-topology/web", 400, "Missing service kind"),
        ("/v1/internal/ui/service-topology/web?kind=connect-proxy", 400, "Unsupported service kind \"connect-proxy\""),
        ("/v1/internal/ui/service-topology/", 400, "Missing service name"),
        ("/v1/internal/ui/gateway-services-nodes/", 400, "Missing gateway name"),
        ("/v1/internal/ui/gateway-intentions/", 400, "Missing gateway name"),
    ] {
        let r = api.get(path).await.expect("request");
        assert_eq!((r.status, r.text().trim()), (status, text), "{path}");
    }
    // No gateway config entries exist: nothing is linked to any gateway, nor intended.
    for path in ["/v1/internal/ui/gateway-services-nodes/ingress", "/v1/internal/ui/gateway-intentions/ingress"] {
        let r = get(&api, path).await;
        assert_eq!(r.json(), json!([]), "{path}");
        assert!(index(&r) >= 1);
    }
    agent.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t98_service_topology_checks_the_token_and_filters_what_it_may_not_read() {
    const ROOT: &str = "5c1a39b6-3f0e-4a8c-9d61-7e2b4c0f9a17";
    let opts = Options {
        acl: true,
        initial_management: Some(ROOT.into()),
        tweak: Some(|c: &mut AgentConfig| c.acl.default_allow = false),
        ..Options::default()
    };
    let c = Cluster::start_with(1, opts).await;
    let root = c.api(0).with_token(ROOT);
    let node = |svc: Value| json!({"Node": "n1", "Address": "10.0.0.1", "Service": svc});
    put(&root, "/v1/catalog/register", node(json!({"ID": "web1", "Service": "web"}))).await;
    put(&root, "/v1/catalog/register", node(json!({"ID": "secret1", "Service": "secret"}))).await;
    let proxy = json!({"ID": "web1-proxy", "Service": "web-sidecar-proxy", "Kind": "connect-proxy", "Port": 21000,
                       "Proxy": {"DestinationServiceName": "web", "Upstreams": [{"DestinationName": "secret"}]}});
    put(&root, "/v1/catalog/register", node(proxy)).await;
    let policy = root
        .request(
            Method::PUT,
            "/v1/acl/policy",
            Some(json!({"Name": "web-only", "Rules": "service \"web\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }"}).to_string().into_bytes()),
        )
        .await
        .expect("policy")
        .json();
    let token = root
        .request(
            Method::PUT,
            "/v1/acl/token",
            Some(json!({"Policies": [{"ID": policy["ID"]}]}).to_string().into_bytes()),
        )
        .await
        .expect("token")
        .json();
    let limited = c.api(0).with_token(token["SecretID"].as_str().expect("secret"));

    // The management token sees the upstream; the limited one sees web but not secret.
    let all = get(&root, "/v1/internal/ui/service-topology/web?kind=").await.json();
    assert_eq!(all["Upstreams"][0]["Name"], "secret");
    assert_eq!(all["Upstreams"][0]["Intention"]["DefaultAllow"], json!(false), "default deny");
    let some = get(&limited, "/v1/internal/ui/service-topology/web?kind=").await;
    assert_eq!(some.json()["Upstreams"], json!([]));
    assert_eq!(some.json()["FilteredByACLs"], json!(true));
    assert_eq!(some.header("X-Consul-Results-Filtered-By-ACLs").as_deref(), Some("true"));
    for path in [
        "/v1/internal/ui/service-topology/secret?kind=",
        "/v1/internal/ui/gateway-services-nodes/secret",
        "/v1/internal/ui/gateway-intentions/secret",
    ] {
        assert_eq!(limited.get(path).await.expect("denied").status, 403, "{path}");
    }
    c.shutdown().await;
}
