//! `?filter=` expressions on every endpoint that takes them (Consul: api-docs/features/filtering.mdx;
//! go-bexpr grammar): a matching and a non-matching filter per endpoint, the JSON fields each
//! endpoint answers with are exactly what its schema lets a filter select, malformed input and
//! unknown selectors are 400s naming the position, blocking queries keep working, and a client
//! agent passes the filter through to the servers.

use std::collections::BTreeSet;
use std::time::Duration;

use consul_core::filter::schema::{self, Schema};
use consul_tests::client::{Api, Resp};
use consul_tests::inproc::{Cluster, Options};
use reqwest::Method;
use serde_json::{json, Value};

async fn put(api: &Api, path: &str, body: Value) -> Resp {
    let r = api.request(Method::PUT, path, Some(body.to_string().into_bytes())).await.expect("request");
    assert_eq!(r.status, 200, "PUT {path}: {}", r.text());
    r
}

/// Percent-encodes a filter for the query string.
fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

async fn filtered(api: &Api, path: &str, filter: &str) -> Resp {
    let sep = if path.contains('?') { '&' } else { '?' };
    api.get(&format!("{path}{sep}filter={}", enc(filter))).await.expect("get")
}

/// The values of `field` in a list answer, or the keys of a map answer (`field` empty).
fn names(v: &Value, field: &str) -> BTreeSet<String> {
    match v {
        Value::Array(items) => items.iter().map(|i| pick(i, field)).collect(),
        Value::Object(m) => m.keys().cloned().collect(),
        _ => BTreeSet::new(),
    }
}

fn pick(item: &Value, path: &str) -> String {
    let v = path.split('.').fold(item, |v, k| &v[k]);
    v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Every field in the endpoint's JSON is a selector of its schema (`Definition`, an opaque
/// copy of the check definition, aside), so a filter can reach everything the client sees.
fn assert_schema_covers(endpoint: &str, item: &Value, schema: &Schema) {
    let Some(obj) = item.as_object() else { return };
    for key in obj.keys() {
        if key == "Definition" {
            continue;
        }
        assert!(
            schema.fields.iter().any(|(f, _)| f == key),
            "{endpoint}: field {key:?} is not in the {} schema",
            schema.name
        );
    }
}

fn register(node: &str, rack: &str, id: &str, status: &str, tags: &[&str], version: &str) -> Value {
    json!({
        "Node": node, "Address": "192.0.2.10", "NodeMeta": {"rack": rack},
        "Service": {"ID": id, "Service": "web", "Tags": tags, "Port": 8080, "Meta": {"version": version}},
        "Check": {"CheckID": format!("{id}-check"), "Name": "web health", "Status": status, "ServiceID": id},
    })
}

/// One endpoint check: path, the field that names an item (empty: the keys of a map answer),
/// the schema, a filter and what it keeps, and a filter that keeps nothing.
type Case = (&'static str, &'static str, &'static Schema, &'static str, BTreeSet<String>, &'static str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t71_filter_on_catalog_health_agent_and_session_endpoints() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    put(&api, "/v1/catalog/register", register("n1", "r1", "web1", "passing", &["primary"], "1")).await;
    put(&api, "/v1/catalog/register", register("n2", "r2", "web2", "critical", &["secondary"], "2")).await;
    put(
        &api,
        "/v1/agent/service/register",
        json!({"Name": "api", "ID": "api1", "Tags": ["v1"], "Port": 9000, "Check": {"TTL": "1m"}}),
    )
    .await;
    put(&api, "/v1/agent/service/register", json!({"Name": "api", "ID": "api2", "Tags": ["v2"], "Port": 9001})).await;
    put(&api, "/v1/session/create", json!({"Name": "lock-a", "Node": "n1", "NodeChecks": []})).await;
    put(&api, "/v1/session/create", json!({"Name": "lock-b", "Node": "n1", "NodeChecks": [], "Behavior": "delete"}))
        .await;

    let cases: Vec<Case> = vec![
        ("/v1/catalog/nodes", "Node", &schema::NODE, "Meta.rack == r1", set(&["n1"]), "Meta.rack == r9"),
        (
            "/v1/catalog/nodes",
            "Node",
            &schema::NODE,
            "Meta[\"rack\"] matches `^r[12]$`",
            set(&["n1", "n2"]),
            "rack not in Meta and Node == n1",
        ),
        (
            "/v1/catalog/service/web",
            "ServiceID",
            &schema::CATALOG_SERVICE,
            "ServiceMeta.version == 2",
            set(&["web2"]),
            "ServicePort != 8080",
        ),
        (
            "/v1/catalog/service/web",
            "ServiceID",
            &schema::CATALOG_SERVICE,
            "primary in ServiceTags or NodeMeta.rack == r2",
            set(&["web1", "web2"]),
            "ServiceTags is empty",
        ),
        (
            "/v1/health/node/n2",
            "CheckID",
            &schema::HEALTH_CHECK,
            "Status == critical",
            set(&["web2-check"]),
            "Status == passing",
        ),
        (
            "/v1/health/checks/web",
            "CheckID",
            &schema::HEALTH_CHECK,
            "Status == passing and ServiceTags contains primary",
            set(&["web1-check"]),
            "Name != `web health`",
        ),
        (
            "/v1/health/state/any",
            "CheckID",
            &schema::HEALTH_CHECK,
            "ServiceName == web and Status == critical",
            set(&["web2-check"]),
            "ServiceName == nope",
        ),
        (
            "/v1/health/service/web",
            "Service.ID",
            &schema::SERVICE_ENTRY,
            "Checks.Status == critical",
            set(&["web2"]),
            "Checks.Status == warning",
        ),
        (
            "/v1/health/service/web",
            "Service.ID",
            &schema::SERVICE_ENTRY,
            "not (Checks.Status == critical) and Node.Meta.rack == r1 and Service.Tags contains primary",
            set(&["web1"]),
            "Service.Port == 1",
        ),
        ("/v1/agent/services", "", &schema::AGENT_SERVICE, "Port == 9001", set(&["api2"]), "Tags contains v3"),
        (
            "/v1/agent/checks",
            "",
            &schema::HEALTH_CHECK,
            "ServiceID == api1",
            set(&["service:api1"]),
            "Status == warning",
        ),
        (
            "/v1/agent/members",
            "Name",
            &schema::MEMBER,
            "Tags.role == consul and Name == node0",
            set(&["node0"]),
            "Status != 1",
        ),
        (
            "/v1/session/list",
            "Name",
            &schema::SESSION,
            "Name == lock-a",
            set(&["lock-a"]),
            "Behavior == release and Name == lock-b",
        ),
        ("/v1/session/node/n1", "Name", &schema::SESSION, "Behavior == delete", set(&["lock-b"]), "TTL is not empty"),
    ];
    for (path, field, schema, yes, want, no) in &cases {
        let all = api.get(path).await.expect("get");
        assert_eq!(all.status, 200, "{path}: {}", all.text());
        let all = all.json();
        let items: Vec<Value> = match &all {
            Value::Array(a) => a.clone(),
            Value::Object(m) => m.values().cloned().collect(),
            _ => vec![],
        };
        assert!(!items.is_empty(), "{path} answers something unfiltered");
        for item in &items {
            assert_schema_covers(path, item, schema);
        }
        let r = filtered(&api, path, yes).await;
        assert_eq!(r.status, 200, "{path} ?filter={yes}: {}", r.text());
        assert_eq!(&names(&r.json(), field), want, "{path} ?filter={yes}");
        let r = filtered(&api, path, no).await;
        assert_eq!(r.status, 200, "{path} ?filter={no}: {}", r.text());
        assert_eq!(names(&r.json(), field), BTreeSet::new(), "{path} ?filter={no}");
    }

    // `/v1/catalog/services` filters the instances, then folds them into name → tags.
    let r = filtered(&api, "/v1/catalog/services", "ServiceTags contains primary").await;
    assert_eq!(r.json(), json!({"web": ["primary"]}));
    let r = filtered(&api, "/v1/catalog/services", "ServiceName == nope").await;
    assert_eq!(r.json(), json!({}));
    // `/v1/catalog/node[-services]/:node` filters the node's services.
    let node = filtered(&api, "/v1/catalog/node/n1", "Service == web and Meta.version == 1").await.json();
    assert_eq!(names(&node["Services"], ""), set(&["web1"]));
    assert_schema_covers("catalog/node", &node["Services"]["web1"], &schema::AGENT_SERVICE);
    let node = filtered(&api, "/v1/catalog/node/n1", "Port == 1").await.json();
    assert_eq!((node["Node"]["Node"].as_str(), node["Services"].clone()), (Some("n1"), json!({})));
    let list = filtered(&api, "/v1/catalog/node-services/n2", "ID == web2").await.json();
    assert_eq!(names(&list["Services"], "ID"), set(&["web2"]));
    let list = filtered(&api, "/v1/catalog/node-services/n2", "ID == web1").await.json();
    assert_eq!(list["Services"], json!([]));

    // Malformed expressions and unknown selectors: 400, naming the position.
    let bad: &[(&str, &str, &str)] = &[
        ("/v1/health/service/web", "Service.Port ==", "at 1:16: expected a value after \"==\""),
        ("/v1/health/service/web", "Checks.Bogus == x", "unknown selector \"Checks.Bogus\" at 1:8"),
        ("/v1/catalog/nodes", "Meta.rack == r1 and (Node == n1", "at 1:32: expected \")\""),
        ("/v1/catalog/service/web", "ServiceTags == primary", "operator \"==\" does not apply"),
        ("/v1/catalog/services", "ServicePort == abc", "is an integer"),
        (
            "/v1/agent/services",
            "Servce == api",
            "unknown selector \"Servce\" at 1:1: \"Servce\" is not one of \"Service\"",
        ),
        ("/v1/agent/checks", "Status matches \"(\"", "invalid regular expression"),
        ("/v1/agent/members", "Name ==", "at 1:8"),
        ("/v1/session/list", "Name = x", "at 1:6"),
        ("/v1/health/state/any", "Status ===", "at 1:10"),
    ];
    for (path, filter, want) in bad {
        let r = filtered(&api, path, filter).await;
        assert_eq!(r.status, 400, "{path} ?filter={filter}: {}", r.text());
        assert!(r.text().starts_with("Failed to create boolean expression evaluator: "), "{}", r.text());
        assert!(r.text().contains(want), "{path} ?filter={filter}: {:?} should contain {want:?}", r.text());
    }
    let deep = format!("{}Node == a{}", "(".repeat(200), ")".repeat(200));
    let r = filtered(&api, "/v1/catalog/nodes", &deep).await;
    assert!(r.status == 400 && r.text().contains("nested more than 64"), "{}", r.text());
    // An empty filter is no filter.
    assert_eq!(api.get("/v1/catalog/service/web?filter=").await.expect("get").json().as_array().map(Vec::len), Some(2));
    c.shutdown().await;
}

/// Filtering is applied to the answer; the index is the unfiltered one, so a change the filter
/// hides still wakes a blocking query, which returns the same filtered set with a higher index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t71_filter_with_a_blocking_query() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    put(&api, "/v1/catalog/register", register("n1", "r1", "web1", "passing", &["primary"], "1")).await;
    put(&api, "/v1/catalog/register", register("n2", "r2", "web2", "passing", &["secondary"], "1")).await;
    let path = "/v1/health/service/web";
    let first = filtered(&api, path, "Service.Tags contains primary").await;
    let idx = first.index().expect("index");
    assert_eq!(names(&first.json(), "Service.ID"), set(&["web1"]));
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = filtered(&api, &format!("{path}?index={idx}&wait=20s"), "Service.Tags contains primary").await;
            (r, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // web2 goes critical: filtered out, but part of what the query watches.
    put(&api, "/v1/catalog/register", register("n2", "r2", "web2", "critical", &["secondary"], "1")).await;
    let (r, took) = waiter.await.expect("join");
    assert!(took < Duration::from_secs(10), "the hidden change woke the query ({took:?})");
    assert!(r.index().expect("index") > idx);
    assert_eq!(names(&r.json(), "Service.ID"), set(&["web1"]));
    c.shutdown().await;
}

/// ACL list endpoints (Consul: api-docs/acl/{tokens,policies,roles,auth-methods,binding-rules}.mdx
/// "filter" parameter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t71_filter_on_acl_lists() {
    const ROOT: &str = "6a1a4d3c-1f7e-4bde-9d2e-3b9a40c8e111";
    let c = Cluster::start_with(1, Options { acl: true, initial_management: Some(ROOT.into()), ..Options::default() })
        .await;
    let api = c.api(0).with_token(ROOT);
    consul_tests::eventually(Duration::from_secs(20), "ACLs initialized", || async {
        let r = api.get("/v1/acl/token/self").await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    let pa = put(
        &api,
        "/v1/acl/policy",
        json!({"Name": "p-a", "Rules": "key_prefix \"\" { policy = \"read\" }", "Datacenters": ["dc1"]}),
    )
    .await
    .json();
    put(&api, "/v1/acl/policy", json!({"Name": "p-b", "Description": "second"})).await;
    put(&api, "/v1/acl/role", json!({"Name": "r-a", "Policies": [{"ID": pa["ID"]}]})).await;
    put(&api, "/v1/acl/role", json!({"Name": "r-b", "ServiceIdentities": [{"ServiceName": "web"}]})).await;
    put(&api, "/v1/acl/token", json!({"Description": "tok-a", "Policies": [{"Name": "p-a"}]})).await;
    put(
        &api,
        "/v1/acl/token",
        json!({"Description": "tok-b", "Local": true, "ServiceIdentities": [{"ServiceName": "db"}]}),
    )
    .await;
    let cases: &[(&str, &str, &Schema, &str, &[&str])] = &[
        ("/v1/acl/policies", "Name", &schema::ACL_POLICY, "dc1 in Datacenters", &["p-a"]),
        ("/v1/acl/policies", "Name", &schema::ACL_POLICY, "Description == second", &["p-b"]),
        ("/v1/acl/roles", "Name", &schema::ACL_ROLE, "Policies.Name == p-a", &["r-a"]),
        ("/v1/acl/roles", "Name", &schema::ACL_ROLE, "ServiceIdentities.ServiceName == web", &["r-b"]),
        ("/v1/acl/tokens", "Description", &schema::ACL_TOKEN, "Local == true", &["tok-b"]),
        (
            "/v1/acl/tokens",
            "Description",
            &schema::ACL_TOKEN,
            "Policies.Name == p-a and Description matches \"^tok\"",
            &["tok-a"],
        ),
    ];
    for (path, field, schema, filter, want) in cases {
        for item in api.get(path).await.expect("get").json().as_array().into_iter().flatten() {
            assert_schema_covers(path, item, schema);
        }
        let r = filtered(&api, path, filter).await;
        assert_eq!(r.status, 200, "{path} ?filter={filter}: {}", r.text());
        assert_eq!(names(&r.json(), field), set(want), "{path} ?filter={filter}");
    }
    for path in ["/v1/acl/tokens", "/v1/acl/policies", "/v1/acl/roles", "/v1/acl/auth-methods", "/v1/acl/binding-rules"]
    {
        let r = filtered(&api, path, "Nope == 1").await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(r.text().contains("unknown selector \"Nope\" at 1:1"), "{path}: {}", r.text());
        assert_eq!(filtered(&api, path, "CreateIndex == 0").await.json(), json!([]), "{path}");
    }
    c.shutdown().await;
}

/// A client agent forwards data requests with their query string, filter included, and filters
/// its own services and checks itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t71_filter_through_a_client_agent() {
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
    put(&api, "/v1/catalog/register", register("n1", "r1", "web1", "passing", &["primary"], "1")).await;
    put(&api, "/v1/catalog/register", register("n2", "r2", "web2", "critical", &["secondary"], "2")).await;
    let r = filtered(&api, "/v1/health/service/web", "Service.Meta.version == \"2\"").await;
    assert_eq!(names(&r.json(), "Service.ID"), set(&["web2"]));
    let r = filtered(&api, "/v1/catalog/nodes", "Node ==").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("at 1:8"), "{}", r.text());
    put(&api, "/v1/agent/service/register", json!({"Name": "local", "ID": "local1", "Port": 1})).await;
    put(&api, "/v1/agent/service/register", json!({"Name": "local", "ID": "local2", "Port": 2})).await;
    assert_eq!(names(&filtered(&api, "/v1/agent/services", "Port == 2").await.json(), ""), set(&["local2"]));
    let members = filtered(&api, "/v1/agent/members", "Tags.role == node").await.json();
    assert_eq!(names(&members, "Name"), set(&["cli"]));
    client.shutdown().await.expect("shutdown");
    server.shutdown().await.expect("shutdown");
}
