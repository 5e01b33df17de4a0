//! The agent cache (`?cached`; Consul: docs/api-docs/features/caching.mdx, `agent/cache`):
//! `X-Cache: HIT|MISS` and `Age`, `Cache-Control: max-age` forcing a fetch, blocking cached
//! reads following catalog changes, `stale-if-error` on a client agent whose server is gone, and
//! `?node-meta` on the cached endpoints.

use std::time::Duration;

use consul_core::agent::Agent;
use consul_core::config::AgentConfig;
use consul_tests::client::Api;
use consul_tests::inproc::Cluster;
use reqwest::Method;
use serde_json::json;

async fn register(api: &Api, node: &str, addr: &str, rack: &str, id: &str) {
    let body = json!({
        "Node": node, "Address": addr, "NodeMeta": {"rack": rack},
        "Service": {"ID": id, "Service": "web", "Port": 80},
    });
    let r = api.request(Method::PUT, "/v1/catalog/register", Some(body.to_string().into_bytes())).await.expect("reg");
    assert_eq!(r.status, 200, "{}", r.text());
}

fn names(v: &serde_json::Value) -> Vec<String> {
    let mut n: Vec<String> =
        v.as_array().expect("array").iter().map(|e| e["Node"].as_str().unwrap_or_default().to_string()).collect();
    n.sort();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t72_cached_miss_hit_age_max_age_and_blocking() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    register(&api, "n1", "10.0.0.1", "r1", "web1").await;

    let miss = api.get("/v1/catalog/service/web?cached").await.expect("get");
    assert_eq!(miss.status, 200, "{}", miss.text());
    assert_eq!(miss.header("X-Cache").as_deref(), Some("MISS"));
    assert_eq!(miss.header("Age"), None, "Consul sets Age on hits only");
    assert_eq!(names(&miss.json()), ["n1"]);
    let index: u64 = miss.header("X-Consul-Index").and_then(|v| v.parse().ok()).expect("index");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let hit = api.get("/v1/catalog/service/web?cached").await.expect("get");
    assert_eq!(hit.header("X-Cache").as_deref(), Some("HIT"));
    assert!(hit.header("Age").and_then(|a| a.parse::<u64>().ok()).is_some_and(|a| a >= 1), "{:?}", hit.header("Age"));
    assert_eq!(hit.body, miss.body);
    assert_eq!(hit.header("X-Consul-Index"), miss.header("X-Consul-Index"));

    let fresh = api
        .request_with_headers(Method::GET, "/v1/catalog/service/web?cached", None, &[("Cache-Control", "max-age=0")])
        .await
        .expect("get");
    assert_eq!(fresh.header("X-Cache").as_deref(), Some("MISS"), "an entry older than max-age is fetched again");
    let ok = api
        .request_with_headers(Method::GET, "/v1/catalog/service/web?cached", None, &[("Cache-Control", "max-age=60")])
        .await
        .expect("get");
    assert_eq!(ok.header("X-Cache").as_deref(), Some("HIT"));

    // Uncached reads are untouched.
    assert_eq!(api.get("/v1/catalog/service/web").await.expect("get").header("X-Cache"), None);

    // A blocking cached read returns once the background refresh has seen the change.
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move { api.get(&format!("/v1/catalog/service/web?cached&index={index}&wait=20s")).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    register(&api, "n2", "10.0.0.2", "r2", "web2").await;
    let changed =
        tokio::time::timeout(Duration::from_secs(15), waiter).await.expect("in time").expect("join").expect("get");
    assert_eq!(names(&changed.json()), ["n1", "n2"]);
    assert!(changed.header("X-Consul-Index").and_then(|v| v.parse::<u64>().ok()).expect("index") > index);
    // And the plain cached read is current too, still a HIT: the refresh updated the entry.
    let hit = consul_tests::eventually(Duration::from_secs(5), "the entry follows the catalog", || {
        let api = api.clone();
        async move {
            let r = api.get("/v1/catalog/service/web?cached").await.ok()?;
            (names(&r.json()).len() == 2).then_some(r)
        }
    })
    .await;
    assert_eq!(hit.header("X-Cache").as_deref(), Some("HIT"));

    // Health service is cached too, and node-meta is part of the key.
    let h = api.get("/v1/health/service/web?cached&node-meta=rack:r2").await.expect("get");
    assert_eq!(h.header("X-Cache").as_deref(), Some("MISS"));
    assert_eq!(h.json().as_array().expect("array").len(), 1);
    let h = api.get("/v1/health/service/web?node-meta=rack:r2&cached").await.expect("get");
    assert_eq!(h.header("X-Cache").as_deref(), Some("HIT"), "parameter order does not matter");
    let all = api.get("/v1/health/service/web?cached").await.expect("get");
    assert_eq!(all.header("X-Cache").as_deref(), Some("MISS"));
    assert_eq!(all.json().as_array().expect("array").len(), 2);
    let cat = api.get("/v1/catalog/service/web?cached&node-meta=rack:r1").await.expect("get");
    assert_eq!(names(&cat.json()), ["n1"]);
    let svcs = api.get("/v1/catalog/services?cached&node-meta=rack:nope").await.expect("get");
    assert_eq!(svcs.json(), json!({}));

    // Conflicting flags are refused as in Consul.
    assert_eq!(api.get("/v1/catalog/services?cached&consistent").await.expect("get").status, 400);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t72_stale_if_error_through_a_client_agent() {
    let server =
        Agent::start(AgentConfig { node_name: "srv".into(), ..AgentConfig::dev_any_port() }).await.expect("server");
    server.wait_for_leader(Duration::from_secs(10)).await.expect("leader");
    let dir = tempfile::tempdir().expect("tempdir");
    let client = Agent::start(consul_tests::inproc::client_agent_config("cli", dir.path(), server.serf_addr()))
        .await
        .expect("client");
    client.wait_for_leader(Duration::from_secs(20)).await.expect("the client reaches a leader");
    let (s, c) = (Api::new(server.http_addr()), Api::new(client.http_addr()));
    register(&s, "n1", "10.0.0.1", "r1", "web1").await;

    let miss = c.get("/v1/health/service/web?cached").await.expect("get");
    assert_eq!(miss.status, 200, "{}", miss.text());
    assert_eq!(miss.header("X-Cache").as_deref(), Some("MISS"));
    let hit = c.get("/v1/health/service/web?cached").await.expect("get");
    assert_eq!(hit.header("X-Cache").as_deref(), Some("HIT"), "served by the client agent itself");

    server.shutdown().await.expect("server shutdown");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let path = "/v1/health/service/web?cached";
    let failed = c.request_with_headers(Method::GET, path, None, &[("Cache-Control", "max-age=0")]).await.expect("get");
    assert_eq!(failed.status, 500, "no server, no stale-if-error: {}", failed.text());
    let stale = c
        .request_with_headers(Method::GET, path, None, &[("Cache-Control", "max-age=0, stale-if-error=600")])
        .await
        .expect("get");
    assert_eq!(stale.status, 200, "{}", stale.text());
    assert_eq!(stale.header("X-Cache").as_deref(), Some("HIT"));
    assert_eq!(stale.body, miss.body);
    let too_old = c
        .request_with_headers(Method::GET, path, None, &[("Cache-Control", "max-age=0, stale-if-error=0")])
        .await
        .expect("get");
    assert_eq!(too_old.status, 500, "older than stale-if-error allows");
    client.shutdown().await.expect("client shutdown");
}

/// `http_config.use_cache = false`: `?cached` reads are answered as plain reads (no `X-Cache`,
/// always current), as in Consul.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t72_use_cache_false_bypasses_the_cache() {
    fn no_cache(c: &mut AgentConfig) {
        c.http_use_cache = false;
    }
    let c = Cluster::start_with(1, consul_tests::inproc::Options { tweak: Some(no_cache), ..Default::default() }).await;
    let api = c.api(0);
    register(&api, "n1", "10.0.0.1", "r1", "web1").await;
    let first = api.get("/v1/catalog/service/web?cached").await.expect("get");
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("X-Cache"), None);
    register(&api, "n2", "10.0.0.2", "r2", "web2").await;
    let second = api.get("/v1/catalog/service/web?cached").await.expect("get");
    assert_eq!((second.header("X-Cache"), names(&second.json())), (None, vec!["n1".to_string(), "n2".to_string()]));
    c.shutdown().await;
}
