//! ACL enforcement (Consul: docs/security/acl/*.mdx, agent/acl_endpoint.go and the ACL checks in
//! each endpoint): default deny, 403 messages naming accessor/permission/resource, denied writes
//! change nothing, list filtering with `X-Consul-Results-Filtered-By-ACLs`, a txn with a denied
//! op refused whole, management-only snapshots, and DNS answering only what its token may read.

use std::time::Duration;

use consul_core::config::AgentConfig;
use consul_tests::client::{Api, Resp};
use consul_tests::dns::ask;
use consul_tests::eventually;
use consul_tests::inproc::{Cluster, Options};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use reqwest::Method;
use serde_json::{json, Value};

const ROOT: &str = "9b0e2c55-60f2-4d0b-a7d1-4c1f7b3e0a01";

fn deny_by_default(c: &mut AgentConfig) {
    c.acl.default_allow = false;
}

fn opts() -> Options {
    Options { acl: true, initial_management: Some(ROOT.into()), tweak: Some(deny_by_default), ..Options::default() }
}

async fn send(api: &Api, method: Method, path: &str, body: Option<Value>) -> Resp {
    api.request(method, path, body.map(|b| b.to_string().into_bytes())).await.expect("request")
}

fn with(path: &str, token: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}token={token}")
}

fn ok(r: &Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn header<'a>(r: &'a Resp, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

/// A token holding one policy with `rules`; returns (AccessorID, SecretID).
async fn token_with(api: &Api, name: &str, rules: &str) -> (String, String) {
    let p =
        ok(&send(api, Method::PUT, &with("/v1/acl/policy", ROOT), Some(json!({"Name": name, "Rules": rules}))).await);
    let t = ok(&send(
        api,
        Method::PUT,
        &with("/v1/acl/token", ROOT),
        Some(json!({"Description": name, "Policies": [{"ID": p["ID"]}]})),
    )
    .await);
    (t["AccessorID"].as_str().expect("accessor").into(), t["SecretID"].as_str().expect("secret").into())
}

async fn started() -> Cluster {
    let c = Cluster::start_with(1, opts()).await;
    let api = c.api(0);
    eventually(Duration::from_secs(20), "initial management token", || async {
        let r = api.get(&with("/v1/acl/token/self", ROOT)).await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_kv_txn_and_snapshot_enforcement() {
    let c = started().await;
    let api = c.api(0);
    let (accessor, app) = token_with(&api, "app", r#"key_prefix "app/" { policy = "write" }"#).await;

    // Allowed where the rules say, with the default-policy header on every answer.
    let r = send(&api, Method::PUT, &with("/v1/kv/app/x", &app), Some(json!("v"))).await;
    assert_eq!(ok(&r), json!(true));
    assert_eq!(header(&r, "X-Consul-Default-ACL-Policy"), Some("deny"));
    ok(&api.get(&with("/v1/kv/app/x", &app)).await.expect("get"));

    // Denied elsewhere, naming accessor, permission and key; nothing written.
    let r = send(&api, Method::PUT, &with("/v1/kv/other", &app), Some(json!("v"))).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let want =
        format!("Permission denied: token with AccessorID '{accessor}' lacks permission 'key:write' on \"other\"");
    assert_eq!(r.text().trim(), want);
    assert_eq!(
        api.get(&with("/v1/kv/other", ROOT)).await.expect("get").status,
        404,
        "the denied write changed nothing"
    );
    let r = send(&api, Method::DELETE, &with("/v1/kv/?recurse", &app), None).await;
    assert_eq!(r.status, 403, "recursive delete needs write on every key: {}", r.text());

    // `/v1/agent/metrics` needs agent:read on the node, as in Consul.
    let r = api.get(&with("/v1/agent/metrics", &app)).await.expect("metrics");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("agent:read"), "{}", r.text());
    ok(&api.get(&with("/v1/agent/metrics", ROOT)).await.expect("metrics"));

    // No token: anonymous under default deny. An unknown token: ACL not found.
    assert_eq!(api.get("/v1/kv/app/x").await.expect("get").status, 403);
    let r = api.get(&with("/v1/kv/app/x", "7c3e9a4d-0000-4000-8000-000000000000")).await.expect("get");
    assert_eq!((r.status, r.text().trim()), (403, "ACL not found"));
    // Other header spellings.
    let r = api
        .request_with_headers(Method::GET, "/v1/kv/app/x", None, &[("X-Consul-Token", app.as_str())])
        .await
        .expect("get");
    assert_eq!(r.status, 200, "{}", r.text());
    let bearer = format!("Bearer {app}");
    let r = api
        .request_with_headers(Method::GET, "/v1/kv/app/x", None, &[("Authorization", bearer.as_str())])
        .await
        .expect("get");
    assert_eq!(r.status, 200, "{}", r.text());

    // Recursive reads are filtered key by key once the prefix may be listed.
    ok(&send(&api, Method::PUT, &with("/v1/kv/app/hidden", ROOT), Some(json!("h"))).await);
    let (_, narrow) = token_with(
        &api,
        "narrow",
        r#"key_prefix "app/" { policy = "read" }
           key "app/hidden" { policy = "deny" }"#,
    )
    .await;
    let r = api.get(&with("/v1/kv/app/?recurse", &narrow)).await.expect("recurse");
    let keys: Vec<String> =
        ok(&r).as_array().expect("list").iter().map(|e| e["Key"].as_str().unwrap_or("").into()).collect();
    assert_eq!(keys, ["app/x"]);
    assert_eq!(header(&r, "X-Consul-Results-Filtered-By-ACLs"), Some("true"));

    // A txn with one denied op is refused whole and applies nothing.
    let ops = json!([
        {"KV": {"Verb": "set", "Key": "app/t1", "Value": "dg=="}},
        {"KV": {"Verb": "set", "Key": "forbidden", "Value": "dg=="}},
    ]);
    let r = send(&api, Method::PUT, &with("/v1/txn", &app), Some(ops)).await;
    assert_eq!(r.status, 409, "{}", r.text());
    let errors = r.json()["Errors"].clone();
    assert_eq!(errors[0]["OpIndex"], 1);
    assert!(errors[0]["What"].as_str().unwrap_or("").contains("lacks permission 'key:write' on \"forbidden\""));
    assert_eq!(api.get(&with("/v1/kv/app/t1", ROOT)).await.expect("get").status, 404);

    // Snapshots hold every secret: management only.
    assert_eq!(api.get(&with("/v1/snapshot", &app)).await.expect("snapshot").status, 403);
    assert_eq!(api.get(&with("/v1/snapshot", ROOT)).await.expect("snapshot").status, 200);
    // The ACL API itself needs acl:read / acl:write.
    assert_eq!(api.get(&with("/v1/acl/policies", &app)).await.expect("policies").status, 403);
    // Joining makes the agent resolve and dial any address it is given: agent:write, as in
    // Consul; refused before any connection is attempted.
    let r = send(&api, Method::PUT, &with("/v1/agent/join/127.0.0.9:1", &app), None).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("agent:write"), "{}", r.text());
    let r = send(&api, Method::PUT, "/v1/agent/join/127.0.0.9:1", None).await;
    assert_eq!(r.status, 403, "anonymous: {}", r.text());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_catalog_filtering_and_dns() {
    let c = started().await;
    let api = c.api(0);
    for (node, addr, svc) in [("n1", "10.2.0.1", "web"), ("n2", "10.2.0.2", "db")] {
        let body = json!({"Node": node, "Address": addr, "Service": {"Service": svc, "Port": 80}});
        ok(&send(&api, Method::PUT, &with("/v1/catalog/register", ROOT), Some(body)).await);
    }
    let (_, web) = token_with(
        &api,
        "web-reader",
        r#"service "web" { policy = "read" }
           node_prefix "" { policy = "read" }"#,
    )
    .await;
    let r = api.get(&with("/v1/catalog/services", &web)).await.expect("services");
    let names: Vec<String> = ok(&r).as_object().expect("map").keys().cloned().collect();
    assert_eq!(names, ["web"]);
    assert_eq!(header(&r, "X-Consul-Results-Filtered-By-ACLs"), Some("true"));
    assert_eq!(ok(&api.get(&with("/v1/health/service/db", &web)).await.expect("db")), json!([]));
    assert_eq!(
        ok(&api.get(&with("/v1/health/service/web", &web)).await.expect("web")).as_array().map(Vec::len),
        Some(1)
    );

    // Registering needs service:write (and node:write for a new node); a refusal changes nothing.
    let body = json!({"Node": "n3", "Address": "10.2.0.3", "Service": {"Service": "web", "Port": 81}});
    let r = send(&api, Method::PUT, &with("/v1/catalog/register", &web), Some(body)).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("lacks permission 'node:write' on \"n3\""), "{}", r.text());
    assert_eq!(ok(&api.get(&with("/v1/catalog/node/n3", ROOT)).await.expect("node")), Value::Null);

    // DNS answers as the anonymous token (no DNS/default token configured): default deny hides
    // everything. Once the agent's DNS token may read web, web resolves and db still does not.
    let server = c.agent(0).dns_addr().expect("dns");
    let m = ask(server, "web.service.consul.", RecordType::A, None, false).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let ptr = "1.0.2.10.in-addr.arpa.";
    let m = ask(server, ptr, RecordType::PTR, None, false).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "PTR hides nodes the DNS token cannot read");
    let r = send(&api, Method::PUT, &with("/v1/agent/token/dns", ROOT), Some(json!({"Token": web}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let m = ask(server, "web.service.consul.", RecordType::A, None, false).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 1);
    let m = ask(server, "db.service.consul.", RecordType::A, None, false).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = ask(server, ptr, RecordType::PTR, None, false).await;
    assert!(matches!(&m.answers[..], [r] if r.data.to_string() == "n1.node.dc1.consul."), "{m:?}");

    // The agent cache keeps each token's answer apart, and a HIT is still only for a valid token.
    let r = api.get(&with("/v1/catalog/services?cached", ROOT)).await.expect("services");
    assert_eq!(ok(&r).as_object().map(|m| m.len()), Some(3), "consul, web and db");
    for expect in ["MISS", "HIT"] {
        let r = api.get(&with("/v1/catalog/services?cached", &web)).await.expect("services");
        assert_eq!(header(&r, "X-Cache"), Some(expect));
        let names: Vec<String> = ok(&r).as_object().expect("map").keys().cloned().collect();
        assert_eq!(names, ["web"]);
        assert_eq!(header(&r, "X-Consul-Results-Filtered-By-ACLs"), Some("true"));
    }
    let r = api.get(&with("/v1/catalog/services?cached", "00000000-0000-0000-0000-000000000bad")).await.expect("bad");
    assert_eq!(r.status, 403, "{}", r.text());
    // Setting agent tokens is agent:write on the node (web's token has only service rights).
    let r = send(&api, Method::PUT, &with("/v1/agent/token/dns", &web), Some(json!({"Token": ""}))).await;
    assert_eq!(r.status, 403, "{}", r.text());
    c.shutdown().await;
}

/// A client agent (no ACL tables of its own) with default deny: it asks a server what each
/// token may do, enforces that on its own endpoints, forwards data requests with the token,
/// syncs its services under its agent token (a service the agent token may not write stays
/// out of the catalog while the others sync), and filters DNS by its own DNS token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_client_agent_resolves_tokens_through_the_servers() {
    use consul_core::agent::Agent;
    use consul_core::config::Ports;
    use consul_core::gossip::GossipConfig;
    use std::net::{IpAddr, Ipv4Addr};

    let c = started().await;
    let s = c.api(0);
    let (_, agent_secret) = token_with(
        &s,
        "cli-agent",
        r#"node "cli" { policy = "write" }
           service "api" { policy = "write" }
           node_prefix "" { policy = "read" }
           service_prefix "" { policy = "read" }"#,
    )
    .await;
    let (_, reader) = token_with(&s, "reader", r#"key_prefix "pub/" { policy = "read" }"#).await;
    ok(&send(&s, Method::PUT, &with("/v1/kv/pub/a", ROOT), Some(json!("1"))).await);

    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = AgentConfig {
        node_name: "cli".into(),
        server: false,
        data_dir: Some(dir.path().to_path_buf()),
        bind_addr: lo,
        client_addr: lo,
        ports: Ports::any(),
        retry_join: vec![c.agent(0).serf_addr().to_string()],
        retry_interval: Duration::from_millis(200),
        gossip_lan: GossipConfig::dev(),
        ..AgentConfig::default()
    };
    config.acl.enabled = true;
    config.acl.default_allow = false;
    config.acl.token_ttl = Duration::from_millis(500);
    config.acl.tokens.agent = Some(agent_secret.clone());
    config.acl.tokens.dns = Some(agent_secret.clone());
    let client = Agent::start(config).await.expect("a client agent with ACLs starts");
    client.wait_for_leader(Duration::from_secs(20)).await.expect("the client reaches a leader");
    let cl = Api::new(client.http_addr());

    // The client's own endpoints: unknown token, no token, allowed token.
    let r = send(&cl, Method::GET, &with("/v1/agent/services", "00000000-0000-0000-0000-00000000dead"), None).await;
    assert_eq!((r.status, r.text().trim()), (403, "ACL not found"));
    assert_eq!(header(&r, "X-Consul-Default-ACL-Policy"), Some("deny"));
    let api_reg = json!({"Name": "api", "Port": 9000});
    let r = send(&cl, Method::PUT, "/v1/agent/service/register", Some(api_reg.clone())).await;
    assert_eq!(r.status, 403, "anonymous may not register: {}", r.text());
    assert!(r.text().contains("service:write"), "{}", r.text());
    let r = send(&cl, Method::PUT, &with("/v1/agent/service/register", &agent_secret), Some(api_reg)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A management token may register "db" locally, but the agent token syncs it: refused.
    let db_reg = json!({"Name": "db", "Port": 5432});
    let r = send(&cl, Method::PUT, &with("/v1/agent/service/register", ROOT), Some(db_reg)).await;
    assert_eq!(r.status, 200, "{}", r.text());

    eventually(Duration::from_secs(20), "api from node cli in the catalog", || {
        let s = s.clone();
        async move {
            let r = s.get(&with("/v1/catalog/service/api", ROOT)).await.ok()?.json();
            (r.as_array()?.first()?["Node"] == "cli").then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let db = ok(&send(&s, Method::GET, &with("/v1/catalog/service/db", ROOT), None).await);
    assert_eq!(db, json!([]), "the agent token may not write service db");

    // Data requests through the client: the server judges the forwarded token.
    let r = send(&cl, Method::GET, &with("/v1/kv/pub/a", &reader), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = send(&cl, Method::PUT, &with("/v1/kv/pub/a", &reader), Some(json!("2"))).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = send(&cl, Method::GET, "/v1/kv/pub/a", None).await;
    assert_eq!(r.status, 403, "anonymous reads nothing under default deny: {}", r.text());

    // A token deleted on the servers stops working on the client once its cache lapses.
    let (accessor, temp) = token_with(&s, "temp", r#"node_prefix "" { policy = "read" }"#).await;
    ok(&send(&cl, Method::GET, &with("/v1/agent/members", &temp), None).await);
    ok(&send(&s, Method::DELETE, &with(&format!("/v1/acl/token/{accessor}"), ROOT), None).await);
    eventually(Duration::from_secs(10), "the deleted token is refused by the client", || {
        let cl = cl.clone();
        let temp = temp.clone();
        async move {
            let r = cl.get(&with("/v1/agent/members", &temp)).await.ok()?;
            (r.status == 403).then_some(())
        }
    })
    .await;

    // DNS on the client answers what its DNS token (the agent token) may read.
    let dns = client.dns_addr().expect("dns");
    let answer = ask(dns, "api.service.consul.", RecordType::SRV, None, false).await;
    assert_eq!(answer.answers.len(), 1, "{answer:?}");

    client.shutdown().await.expect("client shutdown");
}
