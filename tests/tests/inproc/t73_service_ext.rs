//! Fields added after the catalog's Raft encoding settled (node and service `Locality`, service
//! `SocketPath`, `Proxy`, `Connect`, the session's deprecated `Checks`): written through a
//! follower, read back from every server, and kept across snapshots and a whole-cluster restart.

use std::time::Duration;

use consul_tests::inproc::Cluster;
use consul_tests::{client::Api, eventually};
use reqwest::Method;
use serde_json::{json, Value};

const REGISTER: &str = r#"{
    "Node": "ext-node", "Address": "10.1.2.3",
    "Locality": {"Region": "eu-west-1", "Zone": "eu-west-1b"},
    "Service": {
        "ID": "web-proxy1", "Service": "web-proxy", "Kind": "connect-proxy", "Port": 8001,
        "SocketPath": "/run/web-proxy.sock",
        "Locality": {"Region": "us-west-1", "Zone": "us-west-1a"},
        "Proxy": {"DestinationServiceName": "web", "LocalServicePort": 8080,
                  "Upstreams": [{"DestinationName": "db", "LocalBindPort": 9191}]}
    },
    "Check": {"CheckID": "ext-alive", "Name": "alive", "Status": "passing"}
}"#;

const NATIVE: &str = r#"{
    "Node": "ext-node", "Address": "10.1.2.3", "SkipNodeUpdate": true,
    "Service": {"ID": "web1", "Service": "web", "Port": 8000, "Connect": {"Native": true}}
}"#;

async fn put(api: &Api, path: &str, body: &str) -> Value {
    let r = api.request(Method::PUT, path, Some(body.as_bytes().to_vec())).await.expect("request");
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    }
}

/// Reads `path` (stale, so each server answers from its own replica) until `ready` holds.
async fn read_until(api: &Api, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(30), path, || {
        let api = api.clone();
        let path = format!("{path}{}stale", if path.contains('?') { '&' } else { '?' });
        let ready = &ready;
        async move {
            let r = api.get(&path).await.ok().filter(|r| r.status == 200)?;
            let v = r.json();
            ready(&v).then_some(v)
        }
    })
    .await
}

/// Checks every extra field on server `i`.
async fn check_server(c: &Cluster, i: usize, session: &str) {
    let api = c.api(i);
    let svc = read_until(&api, "/v1/catalog/service/web-proxy", |v| v.as_array().is_some_and(|a| a.len() == 1)).await;
    let s = &svc[0];
    assert_eq!(s["ServiceLocality"], json!({"Region": "us-west-1", "Zone": "us-west-1a"}), "server {i}: {s}");
    assert_eq!(s["ServiceProxy"]["DestinationServiceName"], "web", "server {i}");
    assert_eq!(s["ServiceProxy"]["Upstreams"][0]["LocalBindPort"], 9191, "server {i}");

    let node = read_until(&api, "/v1/catalog/node/ext-node", |v| v["Services"]["web1"].is_object()).await;
    assert_eq!(node["Node"]["Locality"], json!({"Region": "eu-west-1", "Zone": "eu-west-1b"}), "server {i}");
    let proxy = &node["Services"]["web-proxy1"];
    assert_eq!(proxy["SocketPath"], "/run/web-proxy.sock", "server {i}: {proxy}");
    assert_eq!(proxy["Locality"]["Zone"], "us-west-1a", "server {i}");
    assert_eq!(node["Services"]["web1"]["Connect"], json!({"Native": true}), "server {i}");
    // An instance registered without extras shows none.
    assert!(node["Services"]["web1"].get("Locality").is_none(), "server {i}");

    let health = read_until(&api, "/v1/health/service/web-proxy", |v| v.as_array().is_some_and(|a| a.len() == 1)).await;
    assert_eq!(health[0]["Service"]["SocketPath"], "/run/web-proxy.sock", "server {i}");
    assert_eq!(health[0]["Node"]["Locality"]["Region"], "eu-west-1", "server {i}");

    let info =
        read_until(&api, &format!("/v1/session/info/{session}"), |v| v.as_array().is_some_and(|a| a.len() == 1)).await;
    assert_eq!(info[0]["Checks"], json!(["ext-alive"]), "server {i}: {}", info[0]);
    assert_eq!(info[0]["NodeChecks"], json!(["serfHealth"]), "server {i}");
    // A renew answered through the leader shows them too.
    let renewed = put(&api, &format!("/v1/session/renew/{session}"), "").await;
    assert_eq!(renewed[0]["Checks"], json!(["ext-alive"]), "server {i}: {renewed}");

    let usage = read_until(&api, "/v1/operator/usage", |_| true).await;
    let connect = &usage["Usage"]["dc1"]["ConnectServiceInstances"];
    assert_eq!((connect["connect-native"].as_u64(), connect["connect-proxy"].as_u64()), (Some(1), Some(1)), "{usage}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t73_extra_fields_replicate_and_survive_snapshots_and_restart() {
    let mut c = Cluster::start(3).await;
    let follower = c.followers().await[0];
    let api = c.api(follower);
    put(&api, "/v1/catalog/register", REGISTER).await;
    put(&api, "/v1/catalog/register", NATIVE).await;
    let created = put(&api, "/v1/session/create", r#"{"Node": "ext-node", "Checks": ["ext-alive"]}"#).await;
    let session = created["ID"].as_str().expect("session id").to_string();
    for i in 0..3 {
        check_server(&c, i, &session).await;
    }
    // Every server compacts its log into a snapshot, so the restart reads the extras back from
    // the snapshot's extension tables rather than by replaying the entries that carried them.
    for i in 0..3 {
        c.agent(i).snapshot_now().await.expect("snapshot");
    }
    for i in 0..3 {
        c.stop(i).await;
    }
    for i in 0..3 {
        c.restart(i).await;
    }
    c.wait_for_voters(3).await;
    for i in 0..3 {
        check_server(&c, i, &session).await;
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t73_agent_service_extras_sync_and_persist() {
    let mut c = Cluster::start(3).await;
    let follower = c.followers().await[0];
    let api = c.api(follower);
    let node = c.agent(follower).config().node_name.clone();
    let body = r#"{"Name": "cache", "Port": 6379, "SocketPath": "/run/cache.sock",
                   "Locality": {"Region": "ap-south-1", "Zone": "ap-south-1a"}}"#;
    put(&api, "/v1/agent/service/register", body).await;
    let local = api.get("/v1/agent/service/cache").await.expect("get").json();
    assert_eq!(local["SocketPath"], "/run/cache.sock", "{local}");
    assert_eq!(local["Locality"]["Zone"], "ap-south-1a", "{local}");
    // Anti-entropy carries the extras to the catalog.
    let path = "/v1/catalog/service/cache";
    let svc = read_until(&c.api(c.leader().await), path, |v| v.as_array().is_some_and(|a| a.len() == 1)).await;
    assert_eq!(svc[0]["ServiceLocality"]["Region"], "ap-south-1");
    // A locality change is a change anti-entropy syncs.
    let changed = body.replace("ap-south-1a", "ap-south-1b");
    put(&api, "/v1/agent/service/register", &changed).await;
    read_until(&c.api(c.leader().await), path, |v| v[0]["ServiceLocality"]["Zone"] == "ap-south-1b").await;
    // The agent's persisted definition keeps the extras across its restart.
    c.stop(follower).await;
    c.restart(follower).await;
    let api = c.api(follower);
    let local = eventually(Duration::from_secs(20), "service after restart", || {
        let api = api.clone();
        async move { api.get("/v1/agent/service/cache").await.ok().filter(|r| r.status == 200).map(|r| r.json()) }
    })
    .await;
    assert_eq!(local["SocketPath"], "/run/cache.sock", "{local}");
    assert_eq!(local["Locality"]["Zone"], "ap-south-1b", "{local}");
    // The restarted replica replays its log, passing through the first registration: wait for
    // the last one (a catalog stuck at the old zone times out here).
    read_until(&c.api(follower), "/v1/catalog/service/cache", |v| {
        v[0]["Node"] == node.as_str() && v[0]["ServiceLocality"]["Zone"] == "ap-south-1b"
    })
    .await;
    c.shutdown().await;
}

/// A client agent's `locality` config: its node's `Locality` in the catalog and the default of
/// the services registered on it, written and compared by anti-entropy over RPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t73_client_agent_locality_config() {
    use consul_core::agent::Agent;
    use consul_core::config::AgentConfig;
    use consul_core::state::ext_fields::Locality;
    let server =
        Agent::start(AgentConfig { node_name: "srv".into(), ..AgentConfig::dev_any_port() }).await.expect("server");
    server.wait_for_leader(Duration::from_secs(10)).await.expect("leader");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = consul_tests::inproc::client_agent_config("cli", dir.path(), server.serf_addr());
    config.locality = Some(Locality { region: "us-east-2".into(), zone: "us-east-2c".into() });
    let client = Agent::start(config).await.expect("client");
    client.wait_for_leader(Duration::from_secs(20)).await.expect("the client reaches a leader");
    let api = Api::new(client.http_addr());
    put(&api, "/v1/agent/service/register", r#"{"Name": "inherits", "Port": 1}"#).await;
    put(&api, "/v1/agent/service/register", r#"{"Name": "own", "Port": 2, "Locality": {"Region": "x"}}"#).await;
    let server_api = Api::new(server.http_addr());
    let node = read_until(&server_api, "/v1/catalog/node/cli", |v| v["Services"]["own"].is_object()).await;
    assert_eq!(node["Node"]["Locality"], json!({"Region": "us-east-2", "Zone": "us-east-2c"}), "{node}");
    assert_eq!(node["Services"]["inherits"]["Locality"]["Zone"], "us-east-2c", "{node}");
    assert_eq!(node["Services"]["own"]["Locality"], json!({"Region": "x"}), "{node}");
    client.shutdown().await.expect("shutdown");
    server.shutdown().await.expect("shutdown");
}
