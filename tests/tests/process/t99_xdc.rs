//! Requests across datacenters with real processes (one `-dev` server per datacenter, WAN
//! joined): `?dc=` forwarding of reads, writes and blocking queries, an unknown datacenter,
//! a client agent's foreign-datacenter request, DNS lookups naming another datacenter,
//! prepared-query failover over HTTP and DNS, and a dead datacenter failing fast.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use consul_tests::client::Api;
use consul_tests::process::binary;
use consul_tests::{eventually, free_port};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use serde_json::{json, Value};

use super::t99_wan::{put, wait_wan_members, Server, WAIT};

/// Two datacenters, dc1 and dc2, one server each, in one WAN pool.
async fn two_dcs() -> (Server, Server) {
    let s1 = Server::start("s1", "dc1", &[]).await;
    let s2 = Server::start("s2", "dc2", &[format!("-retry-join-wan={}", s1.wan_addr())]).await;
    for s in [&s1, &s2] {
        wait_wan_members(&s.api, &[("s1.dc1", 1), ("s2.dc2", 1)], "both servers in the WAN pool").await;
    }
    (s1, s2)
}

/// Registers external node `node` at `addr` with one `web` instance whose check is `status`.
async fn register_web(api: &Api, query: &str, node: &str, addr: &str, status: &str) {
    let body = json!({
        "Node": node, "Address": addr,
        "Service": {"ID": "web", "Service": "web", "Port": 80},
        "Check": {"CheckID": "web-check", "Name": "web", "ServiceID": "web", "Status": status},
    });
    let r = put(api, &format!("/v1/catalog/register{query}"), Some(&body.to_string())).await;
    assert_eq!((r.status, r.text().trim().to_string()), (200, "true".to_string()));
}

fn dns_addr(s: &Server) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), s.dns)
}

/// The A records' addresses of `name` asked of `s`, and the response code.
async fn dns_a(s: &Server, name: &str) -> (ResponseCode, Vec<String>) {
    let m = consul_tests::dns::ask(dns_addr(s), name, RecordType::A, None, false).await;
    (m.metadata.response_code, consul_tests::dns::a_records(&m))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_xdc_dc_param_forwards_reads_writes_and_blocking_queries() {
    let (s1, s2) = two_dcs().await;

    // A KV write through dc1 lands in dc2, and the other way round.
    assert_eq!(s1.api.kv_put("xdc/a", "from-dc1", "?dc=dc2").await.expect("put").json(), json!(true));
    let r = s2.api.kv_get("xdc/a", "").await.expect("get");
    assert_eq!(r.kv_value().as_deref(), Some(&b"from-dc1"[..]));
    assert_eq!(s1.api.kv_get("xdc/a", "").await.expect("get").status, 404, "dc1 has no such key");
    assert_eq!(s2.api.kv_put("xdc/b", "from-dc2", "?dc=dc1").await.expect("put").json(), json!(true));
    assert_eq!(s1.api.kv_get("xdc/b", "").await.expect("get").kv_value().as_deref(), Some(&b"from-dc2"[..]));

    // A read through dc1 answers dc2's data with dc2's headers; the datacenter name ignores case.
    let direct = s2.api.kv_get("xdc/a", "").await.expect("get");
    let via = s1.api.kv_get("xdc/a", "?dc=DC2").await.expect("get");
    assert_eq!(via.status, 200, "{}", via.text());
    assert_eq!(via.kv_value().as_deref(), Some(&b"from-dc1"[..]));
    assert_eq!(via.index(), direct.index());
    assert_eq!(via.header("x-consul-knownleader").as_deref(), Some("true"));

    // Catalog and health across datacenters.
    register_web(&s1.api, "?dc=dc2", "n2", "127.0.0.2", "passing").await;
    let nodes = s1.api.get("/v1/catalog/nodes?dc=dc2").await.expect("nodes").json();
    let names: Vec<&str> = nodes.as_array().expect("list").iter().filter_map(|n| n["Node"].as_str()).collect();
    assert!(names.contains(&"s2") && names.contains(&"n2") && !names.contains(&"s1"), "{nodes}");
    let health = s1.api.get("/v1/health/service/web?dc=dc2&passing").await.expect("health").json();
    assert_eq!(health[0]["Node"]["Node"], "n2", "{health}");
    assert_eq!(health[0]["Service"]["Datacenter"], "dc2", "{health}");
    assert_eq!(s1.api.get("/v1/health/service/web").await.expect("health").json(), json!([]));
    // Status and agent endpoints: status is forwarded, the agent's own are not.
    let leader = s1.api.get("/v1/status/leader?dc=dc2").await.expect("leader").json();
    let dc2_leader = s2.api.get("/v1/status/leader").await.expect("leader").json();
    assert_eq!(leader, dc2_leader);
    let me = s1.api.get("/v1/agent/self?dc=dc2").await.expect("self").json();
    assert_eq!(me["Config"]["NodeName"], "s1", "agent endpoints answer locally");

    // A user event fired through dc1 for dc2 reaches dc2's agents; the event list is each
    // agent's own (`?dc` ignored, as in Consul).
    let r = put(&s1.api, "/v1/event/fire/deploy?dc=dc2", Some("payload")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|e| e["Name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    eventually(WAIT, "dc2's server received the event", || {
        let api = s2.api.clone();
        async move { names(api.get("/v1/event/list").await.ok()?.json()).contains(&"deploy".to_string()).then_some(()) }
    })
    .await;
    let local = s1.api.get("/v1/event/list?dc=dc2").await.expect("list");
    assert_eq!(local.status, 200, "{}", local.text());
    assert!(!names(local.json()).contains(&"deploy".to_string()), "dc1 never saw dc2's event");

    // A blocking query through dc1 is released by a write in dc2.
    let r = s1.api.kv_get("xdc/watched", "?dc=dc2").await.expect("get");
    assert_eq!(r.status, 404);
    let index = r.index().expect("X-Consul-Index");
    let api = s1.api.clone();
    let started = Instant::now();
    let blocked =
        tokio::spawn(async move { api.kv_get("xdc/watched", &format!("?dc=dc2&index={index}&wait=30s")).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!blocked.is_finished(), "the blocking query waits");
    s2.api.put_ok("xdc/watched", "now").await;
    let r =
        tokio::time::timeout(Duration::from_secs(10), blocked).await.expect("released").expect("join").expect("get");
    assert_eq!(r.kv_value().as_deref(), Some(&b"now"[..]));
    assert!(r.index() > Some(index));
    assert!(started.elapsed() < Duration::from_secs(10));

    // An unknown datacenter: Consul's 500, at once.
    let started = Instant::now();
    let r = s1.api.kv_get("xdc/a", "?dc=dc9").await.expect("get");
    assert_eq!((r.status, r.text().trim()), (500, "No path to datacenter: dc9"));
    let r = s1.api.get("/v1/catalog/services?dc=dc9").await.expect("get");
    assert_eq!((r.status, r.text().trim()), (500, "No path to datacenter: dc9"));
    assert!(started.elapsed() < Duration::from_secs(2));

    // The internal remote-execution endpoint does not exist on the public port.
    let r = s1.api.request(reqwest::Method::POST, "/v1/internal/consul-rs/query/execute-remote?dc=dc2", None).await;
    assert_eq!(r.expect("post").status, 404);
}

/// A client agent (no WAN pool) joined to `server`'s LAN pool, killed on drop.
struct Client {
    child: Child,
    api: Api,
    dns: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Client {
    async fn start(server: &Server, dc: &str) -> Client {
        let dir = tempfile::tempdir().expect("tempdir");
        let (http, dns) = (free_port(), free_port());
        let child = Command::new(binary())
            .args(["agent", "-server=false", "-node", "c1", "-bind=127.0.0.1", "-client=127.0.0.1", "-datacenter", dc])
            .arg(format!("-data-dir={}", dir.path().display()))
            .arg(format!("-http-port={http}"))
            .arg(format!("-serf-lan-port={}", free_port()))
            .arg(format!("-dns-port={dns}"))
            .arg(format!("-retry-join=127.0.0.1:{}", server.lan))
            .args(["-log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn client agent");
        let api = Api::new(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), http));
        Client { child, api, dns: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), dns), _dir: dir }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_xdc_client_agent_and_dead_datacenter() {
    let (s1, mut s2) = two_dcs().await;
    s2.api.put_ok("xdc/k", "v2").await;
    // A client agent of dc1 sends `?dc=dc2` to its server, which forwards it on.
    let client = Client::start(&s1, "dc1").await;
    let api = client.api.clone();
    let r = eventually(WAIT, "the client agent reads dc2 through its server", || {
        let api = api.clone();
        async move { api.kv_get("xdc/k", "?dc=dc2").await.ok().filter(|r| r.status == 200) }
    })
    .await;
    assert_eq!(r.kv_value().as_deref(), Some(&b"v2"[..]));
    let r = client.api.kv_get("xdc/k", "?dc=dc9").await.expect("get");
    assert_eq!((r.status, r.text().trim()), (500, "No path to datacenter: dc9"));
    // Its DNS lookups for dc2 go to its server, which asks dc2.
    register_web(&s2.api, "", "n2", "127.0.0.2", "passing").await;
    let m = consul_tests::dns::ask(client.dns, "web.service.dc2.consul.", RecordType::A, None, false).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(matches!(m.answers.first().map(|r| &r.data), Some(RData::A(a)) if a.0.to_string() == "127.0.0.2"), "{m:?}");

    // dc2's server dies: requests for dc2 fail fast with an error naming it, dc1 keeps working.
    s2.kill9();
    for api in [&s1.api, &client.api] {
        let started = Instant::now();
        let r = api.kv_get("xdc/k", "?dc=dc2").await.expect("get");
        let took = started.elapsed();
        assert_eq!(r.status, 500, "{}", r.text());
        assert!(r.text().contains("dc2"), "{}", r.text());
        assert!(took < Duration::from_secs(3), "took {took:?}");
        assert_eq!(api.kv_put("xdc/local", "ok", "").await.expect("put").json(), json!(true));
    }
    // Once the WAN pool has declared it failed, Consul's "No path to datacenter".
    eventually(WAIT, "dc2 without an alive server", || {
        let api = s1.api.clone();
        async move {
            let r = api.kv_get("xdc/k", "?dc=dc2").await.ok()?;
            (r.status == 500 && r.text().trim() == "No path to datacenter: dc2").then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_xdc_dns_and_prepared_query_failover() {
    let (s1, s2) = two_dcs().await;
    register_web(&s1.api, "", "n1", "127.0.0.1", "critical").await;
    register_web(&s2.api, "", "n2", "127.0.0.2", "passing").await;

    // DNS through dc1's port for dc2's catalog, in each form Consul accepts.
    for name in ["web.service.dc2.consul.", "web.service.dc2.dc.consul.", "n2.node.dc2.consul."] {
        assert_eq!(dns_a(&s1, name).await, (ResponseCode::NoError, vec!["127.0.0.2".to_string()]), "{name}");
    }
    assert_eq!(dns_a(&s1, "web.service.dc9.consul.").await.0, ResponseCode::NXDomain);
    // dc1's own instance is critical: nothing here.
    assert!(dns_a(&s1, "web.service.consul.").await.1.is_empty());

    // A prepared query failing over to dc2.
    let def = json!({"Name": "webq", "Service": {"Service": "web", "Failover": {"Datacenters": ["dc9", "dc2"]}}});
    let r =
        s1.api.request(reqwest::Method::POST, "/v1/query", Some(def.to_string().into_bytes())).await.expect("create");
    assert_eq!(r.status, 200, "{}", r.text());
    let started = Instant::now();
    let out = s1.api.get("/v1/query/webq/execute").await.expect("execute").json();
    let failover_took = started.elapsed();
    assert_eq!(out["Datacenter"], "dc2", "{out}");
    assert_eq!(out["Failovers"], 1, "dc9 is unknown and skipped: {out}");
    assert_eq!(out["Nodes"][0]["Node"]["Node"], "n2", "{out}");
    assert_eq!(out["Nodes"][0]["Service"]["Datacenter"], "dc2", "{out}");
    assert!(failover_took < Duration::from_secs(5), "{failover_took:?}");
    // The same through DNS, and the query by name in dc2's own catalog does not exist.
    assert_eq!(dns_a(&s1, "webq.query.consul.").await, (ResponseCode::NoError, vec!["127.0.0.2".to_string()]));
    assert_eq!(s2.api.get("/v1/query/webq/execute").await.expect("execute").status, 404);

    // Back to dc1 once its instance passes.
    register_web(&s1.api, "", "n1", "127.0.0.1", "passing").await;
    let out = s1.api.get("/v1/query/webq/execute").await.expect("execute").json();
    assert_eq!((out["Datacenter"].clone(), out["Failovers"].clone()), (json!("dc1"), json!(0)), "{out}");
    assert_eq!(out["Nodes"][0]["Node"]["Node"], "n1", "{out}");
    assert_eq!(dns_a(&s1, "webq.query.consul.").await.1, ["127.0.0.1"]);

    // NearestN alone reaches dc2 too (the only other datacenter).
    register_web(&s1.api, "", "n1", "127.0.0.1", "critical").await;
    let def = json!({"Name": "nearq", "Service": {"Service": "web", "Failover": {"NearestN": 3}}});
    let r =
        s1.api.request(reqwest::Method::POST, "/v1/query", Some(def.to_string().into_bytes())).await.expect("create");
    assert_eq!(r.status, 200, "{}", r.text());
    let out = s1.api.get("/v1/query/nearq/execute").await.expect("execute").json();
    assert_eq!((out["Datacenter"].clone(), out["Failovers"].clone()), (json!("dc2"), json!(1)), "{out}");
    // Without failover, nothing.
    let def = json!({"Name": "plainq", "Service": {"Service": "web"}});
    let r =
        s1.api.request(reqwest::Method::POST, "/v1/query", Some(def.to_string().into_bytes())).await.expect("create");
    assert_eq!(r.status, 200);
    let out = s1.api.get("/v1/query/plainq/execute").await.expect("execute").json();
    assert_eq!(
        (out["Datacenter"].clone(), out["Failovers"].clone(), out["Nodes"].clone()),
        (json!("dc1"), json!(0), json!([]))
    );
    // Executing a dc2 query through dc1 (`?dc=dc2`) runs it there.
    let def = json!({"Name": "dc2q", "Service": {"Service": "web"}});
    let r =
        s2.api.request(reqwest::Method::POST, "/v1/query", Some(def.to_string().into_bytes())).await.expect("create");
    assert_eq!(r.status, 200);
    let out = s1.api.get("/v1/query/dc2q/execute?dc=dc2").await.expect("execute").json();
    assert_eq!(out["Datacenter"], "dc2", "{out}");
    let _: Value = out;
}

/// Three datacenters: `?dc=` reaches each, and failover walks `Failover.Datacenters` in order,
/// counting every datacenter tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_xdc_three_datacenters_failover_in_order() {
    let (s1, s2) = two_dcs().await;
    let s3 = Server::start("s3", "dc3", &[format!("-retry-join-wan={}", s1.wan_addr())]).await;
    let all = [("s1.dc1", 1), ("s2.dc2", 1), ("s3.dc3", 1)];
    for s in [&s1, &s2, &s3] {
        wait_wan_members(&s.api, &all, "three servers in the WAN pool").await;
    }
    for (dc, node) in [("dc2", "s2"), ("dc3", "s3")] {
        let nodes = s1.api.get(&format!("/v1/catalog/nodes?dc={dc}")).await.expect("nodes").json();
        assert_eq!(nodes[0]["Node"], node, "{nodes}");
    }
    // dc2 forwards to dc3 just as well: every server knows every datacenter.
    let nodes = s2.api.get("/v1/catalog/nodes?dc=dc3").await.expect("nodes").json();
    assert_eq!(nodes[0]["Node"], "s3", "{nodes}");

    register_web(&s1.api, "", "n1", "127.0.0.1", "critical").await;
    register_web(&s2.api, "", "n2", "127.0.0.2", "critical").await;
    register_web(&s3.api, "", "n3", "127.0.0.3", "passing").await;
    let def = json!({"Name": "webq", "Service": {"Service": "web", "Failover": {"Datacenters": ["dc2", "dc3"]}}});
    let r =
        s1.api.request(reqwest::Method::POST, "/v1/query", Some(def.to_string().into_bytes())).await.expect("create");
    assert_eq!(r.status, 200, "{}", r.text());
    let out = s1.api.get("/v1/query/webq/execute").await.expect("execute").json();
    assert_eq!((out["Datacenter"].clone(), out["Failovers"].clone()), (json!("dc3"), json!(2)), "{out}");
    assert_eq!(out["Nodes"][0]["Node"]["Node"], "n3", "{out}");
    assert_eq!(dns_a(&s1, "webq.query.consul.").await, (ResponseCode::NoError, vec!["127.0.0.3".to_string()]));
    // Nowhere healthy: the last datacenter's empty answer, every datacenter counted.
    register_web(&s3.api, "", "n3", "127.0.0.3", "critical").await;
    let out = s1.api.get("/v1/query/webq/execute").await.expect("execute").json();
    assert_eq!((out["Failovers"].clone(), out["Nodes"].clone()), (json!(2), json!([])), "{out}");
    assert_eq!(dns_a(&s1, "webq.query.consul.").await.0, ResponseCode::NXDomain);
}
