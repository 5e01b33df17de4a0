//! The agent's own services and checks and anti-entropy (Consul: api-docs/agent/service.mdx,
//! api-docs/agent/check.mdx, api-docs/agent/index.mdx maintenance/reload,
//! docs/architecture/anti-entropy.mdx).

use std::time::Duration;

use consul_core::config::AgentConfig;
use consul_tests::client::Api;
use consul_tests::inproc::{Cluster, Options};
use serde_json::{json, Value};

use crate::agent_api::{get_json, len, put, put_ok, wait_json};

fn fast(c: &mut AgentConfig) {
    c.ae_interval = Duration::from_millis(500);
    c.check_reap_interval = Duration::from_millis(200);
    c.check_deregister_interval_min = Duration::from_millis(500);
}

fn fast_opts() -> Options {
    Options { tweak: Some(fast), ..Options::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_register_syncs_to_catalog_and_health_on_a_cluster() {
    let c = Cluster::start(3).await;
    let agent = c.api(1);
    let other = c.api(2);
    // Every agent registers its own node.
    let nodes = wait_json(&other, "/v1/catalog/nodes", "3 nodes", |v| len(v) == 3).await;
    let node1 = nodes.as_array().and_then(|n| n.iter().find(|n| n["Node"] == "node1")).cloned().expect("node1");
    assert_eq!(node1["ID"], c.agent(1).node_id().to_string());
    assert_eq!(node1["Address"], "127.0.0.1");
    // The leader reflects gossip membership into the catalog: a passing serfHealth per node.
    let serf = wait_json(&other, "/v1/health/state/passing", "serfHealth on every node", |v| {
        v.as_array().map(|a| a.iter().filter(|c| c["CheckID"] == "serfHealth").count()) == Some(3)
    })
    .await;
    assert!(serf.as_array().expect("array").iter().any(|c| c["Output"] == "Agent alive and reachable"));

    let reg = json!({"Name": "web", "ID": "web1", "Port": 8080, "Tags": ["v1"], "Meta": {"m": "x"},
                     "Check": {"TTL": "30s", "Notes": "app heartbeat"}});
    put_ok(&agent, "/v1/agent/service/register", Some(reg)).await;
    let services = get_json(&agent, "/v1/agent/services").await;
    assert_eq!(services["web1"]["Service"], "web");
    assert_eq!(services["web1"]["Port"], 8080);
    let checks = get_json(&agent, "/v1/agent/checks").await;
    assert_eq!(checks["service:web1"]["Status"], "critical", "new checks start critical");
    assert_eq!(checks["service:web1"]["Type"], "ttl");
    assert_eq!(checks["service:web1"]["ServiceName"], "web");

    let inst = wait_json(&other, "/v1/catalog/service/web", "web in the catalog", |v| len(v) == 1).await;
    assert_eq!(inst[0]["Node"], "node1");
    assert_eq!(inst[0]["ServiceTags"], json!(["v1"]));
    assert_eq!(len(&get_json(&other, "/v1/health/service/web?passing").await), 0);
    let row = &get_json(&other, "/v1/health/checks/web").await[0];
    assert_eq!((row["CheckID"].as_str(), row["Type"].as_str()), (Some("service:web1"), Some("ttl")));
    assert_eq!(row["Notes"], "app heartbeat");
    assert_eq!(row["Definition"]["TTL"], "30s");

    put_ok(&agent, "/v1/agent/check/pass/service:web1?note=all%20good", None).await;
    let healthy = wait_json(&other, "/v1/health/service/web?passing", "web passing", |v| len(v) == 1).await;
    let web_check =
        healthy[0]["Checks"].as_array().and_then(|c| c.iter().find(|c| c["CheckID"] == "service:web1")).cloned();
    assert_eq!(web_check.expect("service check")["Output"], "all good");

    // A blocking health query wakes when the check flips.
    let r = other.get("/v1/health/service/web?passing").await.expect("get");
    let idx = r.index().expect("index");
    let waiter = {
        let other = other.clone();
        tokio::spawn(async move {
            other.get(&format!("/v1/health/service/web?passing&index={idx}&wait=30s")).await.expect("get")
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished());
    put_ok(&agent, "/v1/agent/check/fail/service:web1?note=down", None).await;
    let r = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("woken").expect("join");
    assert!(r.index() > Some(idx));
    assert_eq!(r.json(), json!([]));

    put_ok(&agent, "/v1/agent/service/deregister/web1", None).await;
    assert_eq!(get_json(&agent, "/v1/agent/services").await, json!({}));
    assert_eq!(get_json(&agent, "/v1/agent/checks").await, json!({}));
    wait_json(&other, "/v1/catalog/service/web", "web gone", |v| len(v) == 0).await;
    // Only the leader-managed serfHealth check stays on the node.
    wait_json(&other, "/v1/health/node/node1", "its checks gone", |v| {
        v.as_array().is_some_and(|a| a.len() == 1 && a[0]["CheckID"] == "serfHealth")
    })
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t91_agent_health_endpoints_and_ttl_updates() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    put_ok(&api, "/v1/agent/service/register", Some(json!({"name": "api", "id": "api1", "check": {"ttl": "1m"}})))
        .await;
    put_ok(
        &api,
        "/v1/agent/service/register",
        Some(json!({"Name": "api", "ID": "api2", "Check": {"TTL": "1m", "Status": "passing"}})),
    )
    .await;

    let r = api.get("/v1/agent/health/service/id/api1").await.expect("get");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["AggregatedStatus"], "critical");
    assert_eq!(r.json()["Service"]["ID"], "api1");
    assert_eq!(api.get("/v1/agent/health/service/id/api2").await.expect("get").status, 200);
    put_ok(&api, "/v1/agent/check/warn/service:api1", None).await;
    let r = api.get("/v1/agent/health/service/id/api1?format=text").await.expect("get");
    assert_eq!((r.status, r.text().trim()), (429, "warning"));
    let r = api.get("/v1/agent/health/service/name/api").await.expect("get");
    assert_eq!(r.status, 429);
    assert_eq!(len(&r.json()), 2);
    put(&api, "/v1/agent/check/update/service:api1", Some(json!({"Status": "passing", "Output": "fine"}))).await;
    let r = api.get("/v1/agent/health/service/name/api?format=text").await.expect("get");
    assert_eq!((r.status, r.text().trim()), (200, "passing"));
    assert_eq!(get_json(&api, "/v1/agent/checks").await["service:api1"]["Output"], "fine");
    assert_eq!(api.get("/v1/agent/health/service/id/nope").await.expect("get").status, 404);
    assert_eq!(api.get("/v1/agent/health/service/name/nope").await.expect("get").status, 404);

    // Service maintenance: a critical `_service_maintenance:<id>` check with the reason.
    put_ok(&api, "/v1/agent/service/maintenance/api1?enable=true&reason=upgrading", None).await;
    let checks = get_json(&api, "/v1/agent/checks").await;
    let m = &checks["_service_maintenance:api1"];
    assert_eq!((m["Status"].as_str(), m["Notes"].as_str()), (Some("critical"), Some("upgrading")));
    let r = api.get("/v1/agent/health/service/id/api1?format=text").await.expect("get");
    assert_eq!((r.status, r.text().trim()), (503, "maintenance"));
    wait_json(&api, "/v1/health/service/api?passing", "api1 out of rotation", |v| len(v) == 1).await;
    put_ok(&api, "/v1/agent/service/maintenance/api1?enable=false", None).await;
    wait_json(&api, "/v1/health/service/api?passing", "api1 back", |v| len(v) == 2).await;
    assert_eq!(put(&api, "/v1/agent/service/maintenance/api1", None).await.status, 400, "enable is required");
    assert_eq!(put(&api, "/v1/agent/service/maintenance/zzz?enable=true", None).await.status, 404);

    // Node maintenance takes every service on the node out.
    put_ok(&api, "/v1/agent/maintenance?enable=true", None).await;
    let checks = get_json(&api, "/v1/agent/checks").await;
    assert_eq!(checks["_node_maintenance"]["Status"], "critical");
    wait_json(&api, "/v1/health/service/api?passing", "node in maintenance", |v| len(v) == 0).await;
    assert_eq!(api.get("/v1/agent/health/service/id/api2").await.expect("get").status, 503);
    put_ok(&api, "/v1/agent/maintenance?enable=false", None).await;
    wait_json(&api, "/v1/health/service/api?passing", "node back", |v| len(v) == 2).await;

    // Standalone checks: a node check and one bound to a service.
    put_ok(&api, "/v1/agent/check/register", Some(json!({"Name": "disk", "TTL": "1m", "Status": "warning"}))).await;
    put_ok(
        &api,
        "/v1/agent/check/register",
        Some(json!({"ID": "api1-extra", "Name": "extra", "ServiceID": "api1", "TTL": "1m"})),
    )
    .await;
    let checks = get_json(&api, "/v1/agent/checks").await;
    assert_eq!(checks["disk"]["Status"], "warning");
    assert_eq!(checks["api1-extra"]["ServiceID"], "api1");
    wait_json(&api, "/v1/health/node/node0", "node checks in the catalog", |v| {
        v.as_array().is_some_and(|a| a.iter().any(|c| c["CheckID"] == "disk"))
    })
    .await;
    put_ok(&api, "/v1/agent/check/deregister/disk", None).await;
    assert_eq!(put(&api, "/v1/agent/check/deregister/disk", None).await.status, 404);
    assert_eq!(put(&api, "/v1/agent/check/pass/nope", None).await.status, 404);
    wait_json(&api, "/v1/health/node/node0", "disk gone", |v| {
        v.as_array().is_some_and(|a| !a.iter().any(|c| c["CheckID"] == "disk"))
    })
    .await;

    // replace-existing-checks drops checks not in the new registration.
    put_ok(
        &api,
        "/v1/agent/service/register?replace-existing-checks",
        Some(json!({"Name": "api", "ID": "api1", "Checks": [{"TTL": "1m"}, {"TTL": "2m"}]})),
    )
    .await;
    let checks = get_json(&api, "/v1/agent/checks").await;
    let mut ids: Vec<&str> = checks.as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
    ids.sort_unstable();
    assert_eq!(ids, ["service:api1:1", "service:api1:2", "service:api2"]);
    let stats = &get_json(&api, "/v1/agent/self").await["Stats"]["agent"];
    assert_eq!((stats["services"].as_str(), stats["checks"].as_str()), (Some("2"), Some("3")));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t92_bad_registrations_are_refused_and_change_nothing() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    let cases = [
        (json!({"Port": 80}), "name"),
        (json!({"Name": "x", "Port": 70000}), "Port"),
        (json!({"Name": "x", "Check": {"Interval": "10s"}}), "TTL"),
        (json!({"Name": "x", "Check": {"HTTP": "http://127.0.0.1:1/", "Interval": "often"}}), "Interval"),
        (json!({"Name": "x", "Check": {"HTTP": "http://127.0.0.1:1/"}}), "Interval"),
        (json!({"Name": "x", "Check": {"TTL": "-5s"}}), "TTL"),
        (json!({"Name": "x", "Checks": [{"TTL": "5s"}, {"TCP": "nope", "Interval": "5s"}]}), "TCP"),
        (json!({"Name": "x", "Check": {"Args": ["/bin/true"], "Interval": "5s"}}), "enable_script_checks"),
        (json!({"Name": "x", "Meta": {"consul-reserved": "1"}}), "Meta"),
        (json!(["not", "an", "object"]), "object"),
    ];
    for (body, want) in cases {
        let r = put(&api, "/v1/agent/service/register", Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.text().contains(want), "{body}: {}", r.text());
    }
    let r =
        put(&api, "/v1/agent/check/register", Some(json!({"Name": "c", "TTL": "5s", "ServiceID": "missing"}))).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = put(&api, "/v1/agent/check/register", Some(json!({"TTL": "5s"}))).await;
    assert_eq!(r.status, 400, "{}", r.text());
    put_ok(&api, "/v1/agent/check/register", Some(json!({"Name": "tcp", "TCP": "127.0.0.1:1", "Interval": "1h"})))
        .await;
    assert_eq!(put(&api, "/v1/agent/check/pass/tcp", None).await.status, 400, "not a TTL check");
    let r = put(&api, "/v1/agent/check/update/tcp", Some(json!({"Status": "sideways"}))).await;
    assert_eq!(r.status, 400);
    put_ok(&api, "/v1/agent/check/deregister/tcp", None).await;
    assert_eq!(get_json(&api, "/v1/agent/services").await, json!({}));
    assert_eq!(get_json(&api, "/v1/agent/checks").await, json!({}));
    assert_eq!(put(&api, "/v1/agent/service/deregister/none", None).await.status, 404);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_registrations_persist_across_restart() {
    let mut c = Cluster::start(1).await;
    let api = c.api(0);
    let reg = json!({"Name": "db", "ID": "db/1", "Port": 5432, "Check": {"TTL": "10m"}});
    put_ok(&api, "/v1/agent/service/register", Some(reg)).await;
    put_ok(&api, "/v1/agent/check/register", Some(json!({"Name": "mem", "TTL": "10m"}))).await;
    put_ok(&api, "/v1/agent/check/pass/service:db%2F1?note=ok", None).await;
    c.stop(0).await;
    c.restart(0).await;
    c.leader().await;
    let api = c.api(0);
    let services = get_json(&api, "/v1/agent/services").await;
    assert_eq!(services["db/1"]["Port"], 5432);
    let checks = get_json(&api, "/v1/agent/checks").await;
    assert_eq!(checks["service:db/1"]["Status"], "passing", "TTL status survives a restart");
    assert_eq!(checks["service:db/1"]["Output"], "ok");
    assert_eq!(checks["mem"]["Status"], "critical");
    // (`mem` is a critical node check, so the instance as a whole is not passing.)
    wait_json(&api, "/v1/health/checks/db", "db's check passing in the catalog after restart", |v| {
        v[0]["Status"] == "passing" && v[0]["Output"] == "ok"
    })
    .await;
    // A deregistered service stays gone after another restart.
    put_ok(&api, "/v1/agent/service/deregister/db%2F1", None).await;
    c.stop(0).await;
    c.restart(0).await;
    assert_eq!(get_json(&c.api(0), "/v1/agent/services").await, json!({}));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t94_ttl_expiry_and_deregister_critical_service_after() {
    let c = Cluster::start_with(1, fast_opts()).await;
    let api = c.api(0);
    put_ok(
        &api,
        "/v1/agent/service/register",
        Some(json!({"Name": "beat", "Check": {"TTL": "1s", "Status": "passing"}})),
    )
    .await;
    wait_json(&api, "/v1/health/service/beat?passing", "beat passing", |v| len(v) == 1).await;
    let checks =
        wait_json(&api, "/v1/agent/checks", "TTL expired", |v| v["service:beat"]["Status"] == "critical").await;
    assert!(checks["service:beat"]["Output"].as_str().is_some_and(|o| o.starts_with("TTL expired")));
    wait_json(&api, "/v1/health/service/beat?passing", "beat critical in the catalog", |v| len(v) == 0).await;

    let reg = json!({"Name": "doomed", "Check": {"TTL": "1h", "DeregisterCriticalServiceAfter": "1s"}});
    put_ok(&api, "/v1/agent/service/register", Some(reg)).await;
    wait_json(&api, "/v1/catalog/service/doomed", "doomed registered", |v| len(v) == 1).await;
    wait_json(&api, "/v1/agent/services", "doomed reaped", |v| v.get("doomed").is_none()).await;
    wait_json(&api, "/v1/catalog/service/doomed", "doomed gone from the catalog", |v| len(v) == 0).await;
    assert!(get_json(&api, "/v1/agent/services").await.get("beat").is_some(), "no DeregisterCriticalServiceAfter");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t95_anti_entropy_makes_the_catalog_match_the_agent() {
    let c = Cluster::start_with(1, fast_opts()).await;
    let api = c.api(0);
    put_ok(&api, "/v1/agent/service/register", Some(json!({"Name": "mine", "Port": 1}))).await;
    wait_json(&api, "/v1/catalog/service/mine", "mine registered", |v| len(v) == 1).await;
    // Something the agent does not know, written straight to the catalog on its node, goes away...
    let stray = json!({"Node": "node0", "Address": "127.0.0.1", "Service": {"Service": "stray", "Port": 2},
                       "Check": {"CheckID": "stray-check", "Status": "passing"}});
    assert_eq!(put(&api, "/v1/catalog/register", Some(stray)).await.status, 200);
    wait_json(&api, "/v1/catalog/service/stray", "stray removed", |v| len(v) == 0).await;
    wait_json(&api, "/v1/health/node/node0", "stray check removed", |v| {
        v.as_array().is_some_and(|a| !a.iter().any(|c| c["CheckID"] == "stray-check"))
    })
    .await;
    // ...and what the agent owns comes back when removed behind its back.
    assert_eq!(
        put(&api, "/v1/catalog/deregister", Some(json!({"Node": "node0", "ServiceID": "mine"}))).await.status,
        200
    );
    wait_json(&api, "/v1/catalog/service/mine", "mine restored", |v| len(v) == 1).await;
    // The leader-managed `consul` service and `serfHealth` check are left alone too.
    let leader_managed = json!({"Node": "node0", "Address": "127.0.0.1", "Service": {"Service": "consul", "Port": 8300},
                                "Check": {"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing"}});
    assert_eq!(put(&api, "/v1/catalog/register", Some(leader_managed)).await.status, 200);
    // EnableTagOverride: tags edited in the catalog are kept, and adopted locally.
    put_ok(
        &api,
        "/v1/agent/service/register",
        Some(json!({"Name": "tagged", "Tags": ["a"], "EnableTagOverride": true})),
    )
    .await;
    wait_json(&api, "/v1/catalog/service/tagged", "tagged registered", |v| len(v) == 1).await;
    let edit = json!({"Node": "node0", "Address": "127.0.0.1",
                      "Service": {"Service": "tagged", "Tags": ["b"], "EnableTagOverride": true}});
    assert_eq!(put(&api, "/v1/catalog/register", Some(edit)).await.status, 200);
    wait_json(&api, "/v1/agent/services", "tags adopted", |v| v["tagged"]["Tags"] == json!(["b"])).await;
    assert_eq!(get_json(&api, "/v1/catalog/service/tagged").await[0]["ServiceTags"], json!(["b"]));
    // Other nodes (external services) are left alone.
    let ext = json!({"Node": "external", "Address": "192.0.2.1", "Service": {"Service": "ext", "Port": 3}});
    assert_eq!(put(&api, "/v1/catalog/register", Some(ext)).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(len(&get_json(&api, "/v1/catalog/service/ext").await), 1);
    assert_eq!(len(&get_json(&api, "/v1/catalog/service/consul").await), 1);
    let node_checks = get_json(&api, "/v1/health/node/node0").await;
    assert!(node_checks.as_array().is_some_and(|a| a.iter().any(|c| c["CheckID"] == "serfHealth")), "{node_checks}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_output_only_changes_are_deferred_status_changes_are_not() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    put_ok(&api, "/v1/agent/check/register", Some(json!({"Name": "out", "TTL": "1h"}))).await;
    put_ok(&api, "/v1/agent/check/pass/out?note=first", None).await;
    let row = |v: &Value| v.as_array().and_then(|a| a.iter().find(|c| c["CheckID"] == "out")).cloned();
    wait_json(&api, "/v1/health/node/node0", "first output synced", |v| row(v).is_some_and(|c| c["Output"] == "first"))
        .await;
    put_ok(&api, "/v1/agent/check/pass/out?note=second", None).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let v = get_json(&api, "/v1/health/node/node0").await;
    assert_eq!(row(&v).expect("row")["Output"], "first", "output-only change waits for check_update_interval");
    assert_eq!(get_json(&api, "/v1/agent/checks").await["out"]["Output"], "second");
    put_ok(&api, "/v1/agent/check/warn/out?note=third", None).await;
    wait_json(&api, "/v1/health/node/node0", "status change synced at once", |v| {
        row(v).is_some_and(|c| c["Status"] == "warning" && c["Output"] == "third")
    })
    .await;
    c.shutdown().await;
}

fn with_config_service(c: &mut AgentConfig) {
    fast(c);
    let def = consul_core::local::parse_service_registration(&json!({
        "name": "cfg", "port": 7000, "check": {"ttl": "1h", "status": "passing"}
    }))
    .expect("definition");
    c.services = vec![def];
    c.checks = vec![consul_core::local::parse_check_registration(
        &json!({"name": "cfg-node", "ttl": "1h", "status": "passing"}),
    )
    .expect("check")];
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t97_config_services_load_at_start_and_reload_replaces_them() {
    let c = Cluster::start_with(1, Options { tweak: Some(with_config_service), ..Options::default() }).await;
    let api = c.api(0);
    let services = get_json(&api, "/v1/agent/services").await;
    assert_eq!(services["cfg"]["Port"], 7000);
    assert!(get_json(&api, "/v1/agent/checks").await.get("cfg-node").is_some());
    wait_json(&api, "/v1/health/service/cfg?passing", "cfg in the catalog", |v| len(v) == 1).await;
    put_ok(&api, "/v1/agent/service/register", Some(json!({"Name": "api-registered"}))).await;

    // PUT /v1/agent/reload with no handler set changes nothing.
    put_ok(&api, "/v1/agent/reload", None).await;
    assert_eq!(get_json(&api, "/v1/agent/services").await.as_object().map(|m| m.len()), Some(2));

    // A reload handler (the binary re-reading its files) replaces config entries only.
    c.agent(0).set_reload_handler(std::sync::Arc::new(|| {
        Box::pin(async {
            let s = consul_core::local::parse_service_registration(&json!({"name": "cfg2", "port": 7001}))
                .map_err(|e| e.to_string())?;
            Ok((vec![s], vec![]))
        })
    }));
    put_ok(&api, "/v1/agent/reload", None).await;
    let services = get_json(&api, "/v1/agent/services").await;
    let mut ids: Vec<&str> = services.as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
    ids.sort_unstable();
    assert_eq!(ids, ["api-registered", "cfg2"]);
    assert_eq!(get_json(&api, "/v1/agent/checks").await, json!({}));
    wait_json(&api, "/v1/catalog/service/cfg", "cfg gone from the catalog", |v| len(v) == 0).await;
    wait_json(&api, "/v1/catalog/service/cfg2", "cfg2 in the catalog", |v| len(v) == 1).await;

    // A failing handler is a 400 and changes nothing.
    c.agent(0).set_reload_handler(std::sync::Arc::new(|| Box::pin(async { Err("bad file".to_string()) })));
    let r = put(&api, "/v1/agent/reload", None).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("bad file"));
    // Agent::reload directly, as the binary's SIGHUP path does.
    c.agent(0).reload(vec![], vec![]).expect("reload");
    assert_eq!(get_json(&api, "/v1/agent/services").await.as_object().map(|m| m.len()), Some(1));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t98_hash_blocking_on_agent_service() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    put_ok(&api, "/v1/agent/service/register", Some(json!({"Name": "h", "Port": 1}))).await;
    let r = api.get("/v1/agent/service/h").await.expect("get");
    assert_eq!(r.status, 200);
    let hash = r.header("X-Consul-ContentHash").expect("hash");
    assert_eq!(r.json()["ContentHash"], hash.as_str());
    assert_eq!(r.json()["Service"], "h");
    // Same hash: blocks until the wait runs out and returns the same hash.
    let t = std::time::Instant::now();
    let r = api.get(&format!("/v1/agent/service/h?hash={hash}&wait=300ms")).await.expect("get");
    assert!(t.elapsed() >= Duration::from_millis(250));
    assert_eq!(r.header("X-Consul-ContentHash"), Some(hash.clone()));
    // A change wakes the waiter with a new hash.
    let waiter = {
        let api = api.clone();
        let hash = hash.clone();
        tokio::spawn(async move { api.get(&format!("/v1/agent/service/h?hash={hash}&wait=30s")).await.expect("get") })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished());
    put_ok(&api, "/v1/agent/service/register", Some(json!({"Name": "h", "Port": 2}))).await;
    let r = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("woken").expect("join");
    assert_ne!(r.header("X-Consul-ContentHash"), Some(hash));
    assert_eq!(r.json()["Port"], 2);
    assert_eq!(api.get("/v1/agent/service/none").await.expect("get").status, 404);
    c.shutdown().await;
}

/// What clients of a fresh agent rely on: in -dev the agent's own node, its serfHealth check
/// and the `consul` service are in the catalog by the first answered request; on a server agent
/// a registration (and a TTL update, and a deregistration) is in the catalog when the call
/// returns, so the very next catalog or health read sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t98_the_catalog_is_current_when_calls_return() {
    use consul_core::agent::Agent;
    for round in 0..3 {
        let agent = Agent::start(AgentConfig { node_name: format!("fresh-{round}"), ..AgentConfig::dev_any_port() })
            .await
            .expect("agent");
        let api = Api::new(agent.http_addr());
        // The very first request: the node with serfHealth, and the consul service.
        let nodes = get_json(&api, "/v1/catalog/nodes").await;
        assert_eq!(nodes[0]["Node"], format!("fresh-{round}"), "{nodes}");
        let checks = get_json(&api, &format!("/v1/health/node/fresh-{round}")).await;
        assert!(checks.as_array().expect("checks").iter().any(|c| c["CheckID"] == "serfHealth"), "{checks}");
        assert_eq!(len(&get_json(&api, "/v1/catalog/service/consul").await), 1);

        for i in 0..20 {
            let name = format!("svc{i}");
            let body = json!({"Name": name, "Port": 8000 + i, "Check": {"TTL": "30s", "CheckID": format!("ttl{i}")}});
            put_ok(&api, "/v1/agent/service/register", Some(body)).await;
            let health = get_json(&api, &format!("/v1/health/service/{name}")).await;
            assert_eq!(len(&health), 1, "registered {name} is in health at once: {health}");
            put_ok(&api, &format!("/v1/agent/check/pass/ttl{i}"), None).await;
            let passing = get_json(&api, &format!("/v1/health/service/{name}?passing")).await;
            assert_eq!(len(&passing), 1, "the TTL pass is in the catalog at once: {passing}");
            put_ok(&api, &format!("/v1/agent/service/deregister/{name}"), None).await;
            assert_eq!(len(&get_json(&api, &format!("/v1/catalog/service/{name}")).await), 0);
        }
        agent.shutdown().await.expect("shutdown");
    }
}

/// `node_meta` is the node's metadata in the catalog (filters by `?node-meta=` find it) and in
/// `/v1/agent/self`; Consul's rules for keys and values are enforced at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t98_node_meta_is_in_the_catalog() {
    use consul_core::agent::Agent;
    let mut config = AgentConfig { node_name: "meta-node".into(), ..AgentConfig::dev_any_port() };
    config.node_meta.insert("rack".into(), "r1".into());
    config.node_meta.insert("zone".into(), "".into());
    let agent = Agent::start(config).await.expect("agent");
    let api = Api::new(agent.http_addr());
    let node = wait_json(&api, "/v1/catalog/node/meta-node", "node meta in the catalog", |v| {
        v["Node"]["Meta"]["rack"] == "r1"
    })
    .await;
    assert_eq!(node["Node"]["Meta"]["zone"], "");
    assert_eq!(len(&get_json(&api, "/v1/catalog/nodes?node-meta=rack:r1").await), 1);
    assert_eq!(len(&get_json(&api, "/v1/catalog/nodes?node-meta=rack:r2").await), 0);
    assert_eq!(get_json(&api, "/v1/agent/self").await["Meta"]["rack"], "r1");
    agent.shutdown().await.expect("shutdown");

    for (k, v, why) in
        [("consul-x", "1", "reserved"), ("a b", "1", "invalid characters"), ("k", &"v".repeat(513), "512")]
    {
        let mut config = AgentConfig::dev_any_port();
        config.node_meta.insert(k.into(), v.to_string());
        let e = Agent::start(config).await.expect_err("refused").to_string();
        assert!(e.contains("node_meta") && e.contains(why), "{e}");
    }
}
