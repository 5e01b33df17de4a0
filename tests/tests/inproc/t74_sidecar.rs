//! Sidecar proxies (`Connect.SidecarService`, Consul's agent/sidecar_service.go) registered
//! through the agent API and through config-file service definitions: both services on the
//! agent and in the catalog with Consul's proxy defaults and checks, answering Connect
//! prepared queries, surviving a restart, and going away with their parent.

use std::time::Duration;

use consul_core::config::AgentConfig;
use consul_tests::dns::ask;
use consul_tests::inproc::{Cluster, Options};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use reqwest::Method;
use serde_json::json;

use crate::agent_api::{get_json, len, put, put_ok, wait_json};

fn fast(c: &mut AgentConfig) {
    c.ae_interval = Duration::from_millis(500);
}

fn with_config_sidecar(c: &mut AgentConfig) {
    fast(c);
    // As a config file's `service { name = "cfgweb" port = 8080 connect { sidecar_service {} } }`
    // reaches the agent (snake_case keys, HCL blocks as one-element lists).
    let def = consul_core::local::parse_service_registration(&json!({
        "name": "cfgweb", "port": 8080, "connect": [{"sidecar_service": [{}]}]
    }))
    .expect("definition");
    c.services = vec![def];
    c.sidecar_ports = Some(consul_core::local::sidecar::SidecarPorts { min: 21500, max: 21501 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t74_api_sidecar_registers_syncs_answers_connect_and_goes_with_its_parent() {
    let mut c = Cluster::start_with(1, Options { tweak: Some(fast), ..Options::default() }).await;
    let api = c.api(0);
    put_ok(
        &api,
        "/v1/agent/service/register",
        Some(json!({"Name": "web", "Port": 8080, "Tags": ["v1"], "Connect": {"SidecarService": {}}})),
    )
    .await;

    let services = get_json(&api, "/v1/agent/services").await;
    let web = &services["web"];
    assert!(web.get("Connect").is_none(), "the parent keeps no sidecar definition: {web}");
    assert!(web.get("Proxy").is_none(), "{web}");
    let sidecar = &services["web-sidecar-proxy"];
    assert_eq!(sidecar["Kind"], "connect-proxy", "{sidecar}");
    assert_eq!(sidecar["Service"], "web-sidecar-proxy");
    assert_eq!(sidecar["Port"], 21000, "first port of the default range");
    assert_eq!(sidecar["Tags"], json!(["v1"]), "tags inherited");
    assert_eq!(
        sidecar["Proxy"],
        json!({"DestinationServiceName": "web", "DestinationServiceID": "web", "LocalServiceAddress": "127.0.0.1",
               "LocalServicePort": 8080, "MeshGateway": {}, "Expose": {}})
    );
    let checks = get_json(&api, "/v1/agent/checks").await;
    let listening = &checks["service:web-sidecar-proxy:1"];
    assert_eq!(listening["Name"], "Connect Sidecar Listening", "{checks}");
    assert_eq!((listening["Type"].as_str(), listening["Interval"].as_str()), (Some("tcp"), Some("10s")));
    let alias = &checks["service:web-sidecar-proxy:2"];
    assert_eq!((alias["Name"].as_str(), alias["Type"].as_str()), (Some("Connect Sidecar Aliasing web"), Some("alias")));

    // A second sidecar takes the next free port; its own upstreams are decoded.
    put_ok(
        &api,
        "/v1/agent/service/register",
        Some(json!({"name": "api", "port": 9090, "connect": {"sidecar_service": {
            "proxy": {"upstreams": [{"destination_name": "web", "local_bind_port": 9191}]},
            "check": {"ttl": "1h", "status": "passing"}}}})),
    )
    .await;
    let api_sidecar = get_json(&api, "/v1/agent/service/api-sidecar-proxy").await;
    assert_eq!(api_sidecar["Port"], 21001);
    assert_eq!(
        api_sidecar["Proxy"]["Upstreams"],
        json!([{"DestinationType": "service", "DestinationName": "web", "LocalBindPort": 9191, "MeshGateway": {}}])
    );
    // Its own check replaces the default ones.
    let checks = get_json(&api, "/v1/agent/checks").await;
    assert_eq!(checks["service:api-sidecar-proxy"]["Status"], "passing", "{checks}");
    assert!(checks.get("service:api-sidecar-proxy:1").is_none());
    // Re-registering the parent keeps the sidecar's port.
    put_ok(
        &api,
        "/v1/agent/service/register",
        Some(json!({"Name": "web", "Port": 8081, "Connect": {"SidecarService": {}}})),
    )
    .await;
    let sidecar = get_json(&api, "/v1/agent/service/web-sidecar-proxy").await;
    assert_eq!((sidecar["Port"].as_u64(), sidecar["Proxy"]["LocalServicePort"].as_u64()), (Some(21000), Some(8081)));

    // Invalid nested definitions and proxies are 400s with Consul's messages; nothing changes.
    let r = put(
        &api,
        "/v1/agent/service/register",
        Some(json!({"Name": "bad", "Port": 1, "Connect": {"SidecarService": {"ID": "mine"}}})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("A SidecarService cannot specify an ID as this is managed by the agent"), "{}", r.text());
    let r =
        put(&api, "/v1/agent/service/register", Some(json!({"Name": "p", "Kind": "connect-proxy", "Port": 1}))).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Proxy.DestinationServiceName must be non-empty"), "{}", r.text());
    assert!(get_json(&api, "/v1/agent/services").await.get("bad").is_none());

    // The catalog has the sidecar in Consul's catalog shape.
    let rows = wait_json(&api, "/v1/catalog/service/web-sidecar-proxy", "sidecar in the catalog", |v| {
        len(v) == 1 && v[0]["ServiceProxy"]["LocalServicePort"] == 8081
    })
    .await;
    assert_eq!(rows[0]["ServiceKind"], "connect-proxy");
    assert_eq!(
        rows[0]["ServiceProxy"],
        json!({"DestinationServiceName": "web", "DestinationServiceID": "web", "LocalServiceAddress": "127.0.0.1",
               "LocalServicePort": 8081, "Mode": "", "MeshGateway": {}, "Expose": {}})
    );
    assert_eq!(rows[0]["ServiceConnect"], json!({}));
    let web_rows = wait_json(&api, "/v1/catalog/service/web", "web in the catalog", |v| len(v) == 1).await;
    assert_eq!(web_rows[0]["ServiceConnect"], json!({}), "no sidecar definition in the catalog");
    // Health entries carry `structs.NodeService`: the proxy in the catalog's shape, and the
    // empty `Proxy`/`Connect` Consul always encodes.
    let health = get_json(&api, "/v1/health/service/web-sidecar-proxy").await;
    assert_eq!(health[0]["Service"]["Proxy"], rows[0]["ServiceProxy"], "{health}");
    assert_eq!(health[0]["Service"]["Connect"], json!({}));
    let health = get_json(&api, "/v1/health/service/web").await;
    assert_eq!(health[0]["Service"]["Proxy"], json!({"Mode": "", "MeshGateway": {}, "Expose": {}}), "{health}");
    assert_eq!(health[0]["Service"]["Connect"], json!({}));

    // A Connect prepared query for api answers its (passing) sidecar; web's sidecar fails its
    // TCP check (nothing listens on it), so it would be left out as Consul leaves it out.
    let r = api
        .request(
            Method::POST,
            "/v1/query",
            Some(json!({"Name": "apiq", "Service": {"Service": "api"}}).to_string().into_bytes()),
        )
        .await
        .expect("create query");
    assert_eq!(r.status, 200, "{}", r.text());
    let answered = wait_json(&api, "/v1/query/apiq/execute?connect=true", "connect query answers the sidecar", |v| {
        v["Nodes"].as_array().is_some_and(|n| n.len() == 1)
    })
    .await;
    assert_eq!(answered["Nodes"][0]["Service"]["ID"], "api-sidecar-proxy", "{answered}");
    assert_eq!(answered["Nodes"][0]["Service"]["Proxy"]["DestinationServiceName"], "api");
    // So do /v1/catalog/connect and /v1/health/connect.
    let rows = get_json(&api, "/v1/catalog/connect/web").await;
    assert_eq!(len(&rows), 1, "{rows}");
    assert_eq!(rows[0]["ServiceID"], "web-sidecar-proxy");
    let rows = get_json(&api, "/v1/health/connect/api?passing").await;
    assert_eq!(len(&rows), 1, "{rows}");
    assert_eq!(rows[0]["Service"]["ID"], "api-sidecar-proxy");
    assert_eq!(get_json(&api, "/v1/catalog/connect/nothing").await, json!([]));
    // So does DNS: `api.connect.consul` SRV points at the sidecar's port.
    let server = c.agent(0).dns_addr().expect("dns enabled");
    let srv = ask(server, "api.connect.consul.", RecordType::SRV, None, false).await;
    let ports: Vec<u16> = srv
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(s.port),
            _ => None,
        })
        .collect();
    assert_eq!(ports, [21001], "{srv:?}");
    let none = ask(server, "nothing.connect.consul.", RecordType::SRV, None, false).await;
    assert_eq!(none.metadata.response_code, ResponseCode::NXDomain);
    let plain = get_json(&api, "/v1/query/apiq/execute").await;
    assert_eq!(plain["Nodes"][0]["Service"]["ID"], "api", "without ?connect the service itself: {plain}");

    // The sidecar survives a restart like any API-registered service (same port, same checks).
    c.stop(0).await;
    c.restart(0).await;
    let api = c.api(0);
    let services = get_json(&api, "/v1/agent/services").await;
    assert_eq!(services["web-sidecar-proxy"]["Port"], 21000, "{services}");
    assert_eq!(services["web-sidecar-proxy"]["Proxy"]["DestinationServiceID"], "web");
    assert!(get_json(&api, "/v1/agent/checks").await.get("service:web-sidecar-proxy:2").is_some());

    // Deregistering the parent takes the sidecar with it, locally and from the catalog.
    put_ok(&api, "/v1/agent/service/deregister/web", None).await;
    let services = get_json(&api, "/v1/agent/services").await;
    assert!(services.get("web").is_none() && services.get("web-sidecar-proxy").is_none(), "{services}");
    assert!(services.get("api-sidecar-proxy").is_some(), "other sidecars stay");
    assert!(get_json(&api, "/v1/agent/checks").await.get("service:web-sidecar-proxy:1").is_none());
    wait_json(&api, "/v1/catalog/service/web-sidecar-proxy", "sidecar gone from the catalog", |v| len(v) == 0).await;
    wait_json(&api, "/v1/catalog/service/web", "web gone from the catalog", |v| len(v) == 0).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t74_config_file_sidecar_uses_the_configured_range_and_follows_reloads() {
    let c = Cluster::start_with(1, Options { tweak: Some(with_config_sidecar), ..Options::default() }).await;
    let api = c.api(0);
    let services = get_json(&api, "/v1/agent/services").await;
    assert_eq!(services["cfgweb-sidecar-proxy"]["Port"], 21500, "{services}");
    assert_eq!(services["cfgweb-sidecar-proxy"]["Proxy"]["LocalServicePort"], 8080);
    wait_json(&api, "/v1/catalog/service/cfgweb-sidecar-proxy", "config sidecar in the catalog", |v| len(v) == 1).await;

    // The range has one port left; a third sidecar finds none.
    put_ok(
        &api,
        "/v1/agent/service/register",
        Some(json!({"Name": "two", "Port": 1, "Connect": {"SidecarService": {}}})),
    )
    .await;
    assert_eq!(get_json(&api, "/v1/agent/service/two-sidecar-proxy").await["Port"], 21501);
    let r = put(
        &api,
        "/v1/agent/service/register",
        Some(json!({"Name": "three", "Port": 1, "Connect": {"SidecarService": {}}})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("no port provided for sidecar_service and none left in the configured range [21500, 21501]"),
        "{}",
        r.text()
    );
    assert!(get_json(&api, "/v1/agent/services").await.get("three").is_none(), "nothing registered");

    // A reload with the same file keeps the sidecar and its port; one without the service drops both.
    let same = consul_core::local::parse_service_registration(&json!({
        "name": "cfgweb", "port": 8080, "connect": {"sidecar_service": {}}
    }))
    .expect("definition");
    c.agent(0).reload(vec![same], vec![]).expect("reload");
    assert_eq!(get_json(&api, "/v1/agent/service/cfgweb-sidecar-proxy").await["Port"], 21500);
    c.agent(0).reload(vec![], vec![]).expect("reload");
    let services = get_json(&api, "/v1/agent/services").await;
    let mut ids: Vec<&str> = services.as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
    ids.sort_unstable();
    assert_eq!(ids, ["two", "two-sidecar-proxy"]);
    wait_json(&api, "/v1/catalog/service/cfgweb-sidecar-proxy", "config sidecar gone", |v| len(v) == 0).await;
    c.shutdown().await;
}

const ROOT: &str = "11111111-2222-3333-4444-555555555555";

fn deny_by_default(c: &mut AgentConfig) {
    c.acl.default_allow = false;
}

/// A token with `service "web" { policy = "write" }` may register web but not web's sidecar
/// (a service of its own name); adding write on `web-sidecar-proxy` (what Consul's service
/// identity grants) allows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t74_registering_a_sidecar_needs_write_on_its_name() {
    let c = Cluster::start_with(
        1,
        Options {
            acl: true,
            initial_management: Some(ROOT.into()),
            tweak: Some(deny_by_default),
            ..Options::default()
        },
    )
    .await;
    let api = c.api(0);
    let with = |path: &str, token: &str| format!("{path}?token={token}");
    wait_json(&api, &with("/v1/acl/token/self", ROOT), "initial management token", |v| v["SecretID"] == ROOT).await;
    let token = |rules: &'static str| {
        let api = api.clone();
        async move {
            let p = put(
                &api,
                &with("/v1/acl/policy", ROOT),
                Some(json!({"Name": format!("p{}", rules.len()), "Rules": rules})),
            )
            .await;
            assert_eq!(p.status, 200, "{}", p.text());
            let t = put(&api, &with("/v1/acl/token", ROOT), Some(json!({"Policies": [{"ID": p.json()["ID"]}]}))).await;
            assert_eq!(t.status, 200, "{}", t.text());
            t.json()["SecretID"].as_str().expect("secret").to_string()
        }
    };
    let web_only = token(r#"service "web" { policy = "write" }"#).await;
    let body = json!({"Name": "web", "Port": 8080, "Connect": {"SidecarService": {}}});
    let r = put(&api, &with("/v1/agent/service/register", &web_only), Some(body.clone())).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("web-sidecar-proxy"), "{}", r.text());
    assert!(get_json(&api, &with("/v1/agent/services", ROOT)).await.get("web").is_none(), "nothing registered");
    let both = token(r#"service "web" { policy = "write" } service "web-sidecar-proxy" { policy = "write" }"#).await;
    put_ok(&api, &with("/v1/agent/service/register", &both), Some(body)).await;
    assert!(get_json(&api, &with("/v1/agent/services", ROOT)).await.get("web-sidecar-proxy").is_some());
    c.shutdown().await;
}
