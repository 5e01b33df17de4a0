//! Prepared queries (Consul: api-docs/query.mdx, agent/prepared_query_endpoint.go): CRUD through
//! any server, execution over HTTP and DNS, templates, ACL rules, and persistence across a
//! restart and a snapshot restore.

use std::time::Duration;

use consul_tests::client::{Api, Resp};
use consul_tests::dns::ask;
use consul_tests::eventually;
use consul_tests::inproc::{Cluster, Options};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use reqwest::Method;
use serde_json::{json, Value};

async fn send(api: &Api, method: Method, path: &str, body: Option<Value>) -> Resp {
    api.request(method, path, body.map(|b| b.to_string().into_bytes())).await.expect("request")
}

/// A 200 with no body (query updates and deletes answer nothing, as Consul).
fn done(r: &Resp) {
    assert_eq!(r.status, 200, "{}", r.text());
}

fn ok(r: &Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

async fn register(api: &Api, node: &str, addr: &str, tags: &[&str], status: &str) {
    let body = json!({
        "Node": node, "Address": addr, "NodeMeta": {"rack": node},
        "Service": {"ID": "db1", "Service": "db", "Tags": tags, "Port": 5432},
        "Check": {"CheckID": "db-check", "Name": "db-check", "Status": status, "ServiceID": "db1"},
    });
    ok(&send(api, Method::PUT, "/v1/catalog/register", Some(body)).await);
}

fn nodes(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v["Nodes"]
        .as_array()
        .expect("Nodes")
        .iter()
        .map(|e| e["Node"]["Node"].as_str().expect("node").to_string())
        .collect();
    n.sort();
    n
}

fn a_ips(m: &hickory_proto::op::Message) -> Vec<String> {
    consul_tests::dns::a_records(m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t81_queries_through_followers_http_and_dns() {
    let c = Cluster::start(3).await;
    let followers = c.followers().await;
    let (f1, f2) = (followers[0], followers[1]);
    let api = c.api(f1);
    register(&api, "n1", "10.2.0.1", &["primary", "v1"], "passing").await;
    register(&api, "n2", "10.2.0.2", &["v1"], "warning").await;
    register(&api, "n3", "10.2.0.3", &["v2"], "critical").await;

    // Created on a follower; read back from another server.
    let def = json!({"Name": "db-main", "Service": {"Service": "db", "Tags": ["v1"]}, "DNS": {"TTL": "15s"}});
    let id = ok(&send(&api, Method::POST, "/v1/query", Some(def)).await)["ID"].as_str().expect("ID").to_string();
    let other = c.api(f2);
    let read = eventually(Duration::from_secs(10), "the other follower sees the query", || {
        let other = other.clone();
        let path = format!("/v1/query/{id}?stale");
        async move { other.get(&path).await.ok().filter(|r| r.status == 200) }
    })
    .await;
    let got = &read.json()[0];
    assert_eq!((got["ID"].as_str(), got["Name"].as_str()), (Some(id.as_str()), Some("db-main")));
    assert_eq!(got["Service"]["Tags"], json!(["v1"]));
    assert_eq!(got["Service"]["ServiceMeta"], Value::Null);
    assert!(read.index().is_some());

    // Execute by ID and by name: critical instances never, warning ones unless OnlyPassing.
    let leader = c.api(c.leader().await);
    let by_id = ok(&send(&leader, Method::GET, &format!("/v1/query/{id}/execute"), None).await);
    assert_eq!(nodes(&by_id), ["n1", "n2"]);
    assert_eq!((by_id["Service"].as_str(), by_id["Datacenter"].as_str()), (Some("db"), Some("dc1")));
    assert_eq!((by_id["Failovers"].as_u64(), by_id["DNS"]["TTL"].as_str()), (Some(0), Some("15s")));
    assert_eq!(by_id["Nodes"][0]["Service"]["Port"], 5432);
    let by_name = ok(&send(&leader, Method::GET, "/v1/query/db-main/execute?limit=1", None).await);
    assert_eq!(by_name["Nodes"].as_array().map(Vec::len), Some(1));
    assert_eq!(send(&leader, Method::GET, "/v1/query/nothing/execute", None).await.status, 404);
    // `?near=` puts the named node first (results are otherwise shuffled).
    for _ in 0..5 {
        let near = ok(&send(&leader, Method::GET, "/v1/query/db-main/execute?near=n2", None).await);
        assert_eq!(near["Nodes"][0]["Node"]["Node"], "n2");
    }

    // Update (OnlyPassing), list with a filter, explain.
    let upd = json!({
        "Name": "db-main", "Service": {"Service": "db", "Tags": ["v1"], "OnlyPassing": true}, "DNS": {"TTL": "15s"},
    });
    done(&send(&leader, Method::PUT, &format!("/v1/query/{id}"), Some(upd)).await);
    assert_eq!(nodes(&ok(&send(&leader, Method::GET, &format!("/v1/query/{id}/execute"), None).await)), ["n1"]);
    let list = ok(&send(&leader, Method::GET, "/v1/query?filter=Service.OnlyPassing%20%3D%3D%20true", None).await);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let none = ok(&send(&leader, Method::GET, "/v1/query?filter=Name%20%3D%3D%20other", None).await);
    assert_eq!(none, json!([]));
    let explained = ok(&send(&leader, Method::GET, "/v1/query/db-main/explain", None).await);
    assert_eq!(explained["Query"]["ID"].as_str(), Some(id.as_str()));

    // A template: `db-<tag>` answers the instances carrying that tag, `!` negates.
    let tpl = json!({
        "Name": "tag-", "Template": {"Type": "name_prefix_match", "Regexp": "^tag-(!?)(.+)$"},
        "Service": {"Service": "db", "Tags": ["${match(1)}${match(2)}"]},
    });
    ok(&send(&leader, Method::POST, "/v1/query", Some(tpl)).await);
    assert_eq!(nodes(&ok(&send(&leader, Method::GET, "/v1/query/tag-primary/execute", None).await)), ["n1"]);
    assert_eq!(nodes(&ok(&send(&leader, Method::GET, "/v1/query/tag-!primary/execute", None).await)), ["n2"]);
    let rendered = ok(&send(&leader, Method::GET, "/v1/query/tag-v1/explain", None).await);
    assert_eq!(rendered["Query"]["Service"]["Tags"], json!(["v1"]));

    // Invalid definitions are 400 with Consul's message, and change nothing.
    let dup =
        send(&leader, Method::POST, "/v1/query", Some(json!({"Name": "DB-MAIN", "Service": {"Service": "x"}}))).await;
    assert_eq!(dup.status, 400, "{}", dup.text());
    assert!(dup.text().contains("aliases an existing query name"), "{}", dup.text());
    let bad = send(&leader, Method::POST, "/v1/query", Some(json!({"Name": "x", "Service": {}}))).await;
    assert_eq!((bad.status, bad.text().trim()), (400, "Invalid prepared query: Must provide a Service name to query"));
    assert_eq!(ok(&send(&leader, Method::GET, "/v1/query", None).await).as_array().map(Vec::len), Some(2));

    // DNS on a follower: the query's TTL; templates by name; unknown queries NXDOMAIN.
    let dns = c.agent(f2).dns_addr().expect("dns");
    let m = eventually(Duration::from_secs(10), "DNS answers the query", || async move {
        let m = ask(dns, "db-main.query.consul.", RecordType::A, None, false).await;
        (!m.answers.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(a_ips(&m), ["10.2.0.1"]);
    assert!(m.answers.iter().all(|r| r.ttl == 15));
    assert_eq!(
        a_ips(&ask(dns, "tag-v1.query.dc1.consul.", RecordType::A, None, false).await),
        ["10.2.0.1", "10.2.0.2"]
    );
    let srv = ask(dns, "tag-v1.query.consul.", RecordType::SRV, None, false).await;
    assert_eq!(srv.answers.len(), 2);
    assert_eq!(
        ask(dns, "missing.query.consul.", RecordType::A, None, false).await.metadata.response_code,
        ResponseCode::NXDomain
    );

    // Delete.
    assert_eq!(send(&leader, Method::DELETE, &format!("/v1/query/{id}"), None).await.status, 200);
    assert_eq!(send(&leader, Method::GET, &format!("/v1/query/{id}"), None).await.status, 404);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t81_queries_survive_restart_and_snapshot_restore() {
    let mut c = Cluster::start(3).await;
    let api = c.api(0);
    register(&api, "n1", "10.3.0.1", &[], "passing").await;
    // A blocking list wakes on a create, with a larger index.
    let before = api.get("/v1/query").await.expect("list");
    let index = before.index().expect("index");
    let watcher = {
        let api = c.api(1);
        tokio::spawn(async move { api.get(&format!("/v1/query?index={index}&wait=30s")).await.expect("list") })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let def = json!({"Name": "keep", "Service": {"Service": "db"}});
    let id = ok(&send(&api, Method::POST, "/v1/query", Some(def)).await)["ID"].as_str().expect("ID").to_string();
    let woke = tokio::time::timeout(Duration::from_secs(20), watcher).await.expect("woken").expect("join");
    assert!(woke.index() > Some(index));
    assert_eq!(woke.json().as_array().map(Vec::len), Some(1));
    let snap = api.get("/v1/snapshot").await.expect("save");
    assert_eq!(snap.status, 200);
    done(&send(&api, Method::DELETE, &format!("/v1/query/{id}"), None).await);
    ok(&send(&api, Method::POST, "/v1/query", Some(json!({"Name": "later", "Service": {"Service": "db"}}))).await);
    let r = api.request(Method::PUT, "/v1/snapshot", Some(snap.body.clone())).await.expect("restore");
    assert_eq!(r.status, 200, "{}", r.text());
    let names = |v: Value| -> Vec<String> {
        v.as_array().expect("list").iter().map(|q| q["Name"].as_str().expect("name").to_string()).collect()
    };
    assert_eq!(names(ok(&send(&api, Method::GET, "/v1/query", None).await)), ["keep"]);

    for i in 0..3 {
        c.stop(i).await;
    }
    for i in 0..3 {
        c.restart(i).await;
    }
    c.wait_for_voters(3).await;
    for i in 0..3 {
        let api = c.api(i);
        let r = eventually(Duration::from_secs(30), "query after restart", || {
            let api = api.clone();
            async move { api.get("/v1/query/keep/execute").await.ok().filter(|r| r.status == 200) }
        })
        .await;
        assert_eq!(nodes(&r.json()), ["n1"], "server {i}");
    }
    c.shutdown().await;
}

const ROOT: &str = "7c1b3a55-60f2-4d0b-a7d1-4c1f7b3e0a81";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t81_query_acl_rules_and_token_redaction() {
    fn deny(c: &mut consul_core::config::AgentConfig) {
        c.acl.default_allow = false;
    }
    let opts = Options { acl: true, initial_management: Some(ROOT.into()), tweak: Some(deny), ..Options::default() };
    let c = Cluster::start_with(1, opts).await;
    let root = c.api(0).with_token(ROOT);
    eventually(Duration::from_secs(20), "initial management token", || async {
        let r = root.get("/v1/acl/token/self").await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    let policy = json!({"Name": "q", "Rules": r#"query_prefix "app-" { policy = "write" } service_prefix "" { policy = "read" } node_prefix "" { policy = "read" }"#});
    let p = ok(&send(&root, Method::PUT, "/v1/acl/policy", Some(policy)).await);
    let t = ok(&send(&root, Method::PUT, "/v1/acl/token", Some(json!({"Policies": [{"ID": p["ID"]}]}))).await);
    let app = c.api(0).with_token(t["SecretID"].as_str().expect("secret"));
    register(&root, "n1", "10.4.0.1", &[], "passing").await;

    // Writes need `query:write` on the name.
    let denied =
        send(&app, Method::POST, "/v1/query", Some(json!({"Name": "other", "Service": {"Service": "db"}}))).await;
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert!(denied.text().contains("query:write"), "{}", denied.text());
    let mine = json!({"Name": "app-db", "Token": ROOT, "Service": {"Service": "db"}});
    let id = ok(&send(&app, Method::POST, "/v1/query", Some(mine)).await)["ID"].as_str().expect("ID").to_string();
    let root_only =
        ok(&send(&root, Method::POST, "/v1/query", Some(json!({"Name": "ops", "Service": {"Service": "db"}}))).await);

    // Reads: the stored token is hidden without acl:write; queries the token may not read are
    // left out of lists and refused by ID.
    let listed = send(&app, Method::GET, "/v1/query", None).await;
    let list = ok(&listed);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["Token"].as_str(), Some("<hidden>"));
    assert_eq!(listed.headers.get("X-Consul-Results-Filtered-By-ACLs").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(ok(&send(&root, Method::GET, &format!("/v1/query/{id}"), None).await)[0]["Token"].as_str(), Some(ROOT));
    let other_id = root_only["ID"].as_str().expect("ID");
    assert_eq!(send(&app, Method::GET, &format!("/v1/query/{other_id}"), None).await.status, 403);
    assert_eq!(send(&app, Method::DELETE, &format!("/v1/query/{other_id}"), None).await.status, 403);

    // Execution needs no query permission; the anonymous token reads nothing itself, but the
    // query's stored token decides what it shows.
    let anon = c.api(0);
    assert_eq!(nodes(&ok(&send(&anon, Method::GET, "/v1/query/app-db/execute", None).await)), ["n1"]);
    assert_eq!(nodes(&ok(&send(&anon, Method::GET, "/v1/query/ops/execute", None).await)), Vec::<String>::new());

    // DNS runs a query the same way: as its stored token when it has one, else as the DNS
    // token (here none: anonymous, which reads nothing under `deny`).
    let dns = c.agent(0).dns_addr().expect("dns");
    assert_eq!(a_ips(&ask(dns, "app-db.query.consul.", RecordType::A, None, false).await), ["10.4.0.1"]);
    let ops = ask(dns, "ops.query.consul.", RecordType::A, None, false).await;
    assert!(ops.answers.is_empty(), "{ops:?}");
    c.shutdown().await;
}

/// A client agent forwards the query endpoints to a server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t81_queries_through_a_client_agent() {
    use consul_core::agent::Agent;
    use consul_core::config::AgentConfig;
    let server =
        Agent::start(AgentConfig { node_name: "srv".into(), ..AgentConfig::dev_any_port() }).await.expect("server");
    server.wait_for_leader(Duration::from_secs(10)).await.expect("leader");
    let dir = tempfile::tempdir().expect("tempdir");
    let client = Agent::start(consul_tests::inproc::client_agent_config("cli", dir.path(), server.serf_addr()))
        .await
        .expect("client");
    client.wait_for_leader(Duration::from_secs(20)).await.expect("the client reaches a leader");
    let api = Api::new(client.http_addr());
    register(&api, "n1", "10.5.0.1", &[], "passing").await;
    let def = json!({"Name": "via-client", "Service": {"Service": "db"}});
    let id = ok(&send(&api, Method::POST, "/v1/query", Some(def)).await)["ID"].as_str().expect("ID").to_string();
    assert_eq!(ok(&send(&api, Method::GET, &format!("/v1/query/{id}"), None).await)[0]["Name"], "via-client");
    assert_eq!(nodes(&ok(&send(&api, Method::GET, "/v1/query/via-client/execute", None).await)), ["n1"]);
    done(&send(&api, Method::DELETE, &format!("/v1/query/{id}"), None).await);
    assert_eq!(ok(&send(&api, Method::GET, "/v1/query", None).await), json!([]));
    client.shutdown().await.expect("shutdown");
    server.shutdown().await.expect("shutdown");
}

/// Execute blocks on `?index=` until its service changes, and `?cached` answers it from the
/// agent cache (MISS, then HIT), kept current by that blocking refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t81_execute_blocks_and_is_cached() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    register(&api, "n1", "10.0.1.1", &["primary"], "passing").await;
    let created =
        ok(&send(&api, Method::POST, "/v1/query", Some(json!({"Name": "db-q", "Service": {"Service": "db"}}))).await);
    assert!(created["ID"].as_str().is_some_and(|id| !id.is_empty()), "{created}");

    let first = send(&api, Method::GET, "/v1/query/db-q/execute", None).await;
    let index: u64 = first.header("X-Consul-Index").and_then(|v| v.parse().ok()).expect("index");
    assert_eq!(nodes(&ok(&first)), ["n1"]);

    // A blocking execute returns when an instance of its service comes.
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move { api.get(&format!("/v1/query/db-q/execute?index={index}&wait=20s")).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    register(&api, "n2", "10.0.1.2", &["primary"], "passing").await;
    let woke =
        tokio::time::timeout(Duration::from_secs(15), waiter).await.expect("in time").expect("join").expect("get");
    assert_eq!(nodes(&ok(&woke)), ["n1", "n2"]);
    let later: u64 = woke.header("X-Consul-Index").and_then(|v| v.parse().ok()).expect("index");
    assert!(later > index, "{later} > {index}");

    let miss = send(&api, Method::GET, "/v1/query/db-q/execute?cached", None).await;
    assert_eq!(miss.header("X-Cache").as_deref(), Some("MISS"));
    assert_eq!(nodes(&ok(&miss)), ["n1", "n2"]);
    let hit = send(&api, Method::GET, "/v1/query/db-q/execute?cached", None).await;
    assert_eq!(hit.header("X-Cache").as_deref(), Some("HIT"));
    assert_eq!(nodes(&ok(&hit)), ["n1", "n2"]);

    // The background refresh sees a third instance without the client asking to fetch.
    register(&api, "n3", "10.0.1.3", &["primary"], "passing").await;
    eventually(Duration::from_secs(15), "the cached execute to show n3", || async {
        let r = send(&api, Method::GET, "/v1/query/db-q/execute?cached", None).await;
        (r.header("X-Cache").as_deref() == Some("HIT") && nodes(&r.json()) == ["n1", "n2", "n3"]).then_some(())
    })
    .await;
}
