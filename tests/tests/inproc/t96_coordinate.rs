//! Network coordinates (Consul: api-docs/coordinate.mdx, `?near=` on catalog and health):
//! updates through the API, reads, blocking, sorting, snapshots, the agent's own sync, and
//! `disable_coordinates`.

use std::time::Duration;

use consul_core::coordinate::{Coordinate, CoordinateConfig};
use consul_tests::client::{Api, Resp};
use consul_tests::inproc::{Cluster, Options};
use reqwest::Method;
use serde_json::{json, Value};

async fn put(api: &Api, path: &str, body: impl Into<Vec<u8>>) -> Resp {
    api.request(Method::PUT, path, Some(body.into())).await.expect("request")
}

fn coord(x_ms: f64) -> Value {
    json!({"Vec": [x_ms / 1000.0, 0, 0, 0, 0, 0, 0, 0], "Error": 0.2, "Adjustment": 0, "Height": 0})
}

async fn set_coord(api: &Api, node: &str, x_ms: f64) {
    let r =
        put(api, "/v1/coordinate/update", json!({"Node": node, "Segment": "", "Coord": coord(x_ms)}).to_string()).await;
    assert_eq!((r.status, r.text()), (200, String::new()), "update {node}");
}

async fn register(api: &Api, node: &str) {
    let body = json!({
        "Node": node, "Address": "192.0.2.1",
        "Service": {"ID": format!("web-{node}"), "Service": "web", "Port": 80},
        "Check": {"CheckID": format!("web-{node}"), "Name": "web", "Status": "passing", "ServiceID": format!("web-{node}")},
    });
    let r = put(api, "/v1/catalog/register", body.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Equal up to JSON float parsing (serde_json's default parser may be one ULP off).
fn assert_close(a: &Coordinate, b: &Coordinate) {
    let pairs =
        a.vec.iter().zip(&b.vec).chain([(&a.error, &b.error), (&a.adjustment, &b.adjustment), (&a.height, &b.height)]);
    for (x, y) in pairs {
        assert!((x - y).abs() <= 1e-12 * x.abs().max(1.0), "{a:?} != {b:?}");
    }
}

fn names(v: &Value, field: impl Fn(&Value) -> &Value) -> Vec<String> {
    v.as_array().expect("array").iter().map(|e| field(e).as_str().unwrap_or_default().to_string()).collect()
}

/// Only the test nodes (`n*`), in the order given: the agents' own nodes are in the catalog too.
fn test_nodes(list: Vec<String>) -> Vec<String> {
    list.into_iter().filter(|n| n.starts_with('n') && !n.starts_with("node")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_coordinate_update_read_block_near_and_snapshot() {
    let c = Cluster::start(3).await;
    let api = c.api(0);
    for n in ["n1", "n2", "n3", "n4"] {
        register(&api, n).await;
    }
    // n1 at 0 ms, n3 at 2 ms, n2 at 10 ms; n4 has none.
    set_coord(&api, "n1", 0.0).await;
    set_coord(&api, "n2", 10.0).await;
    set_coord(&api, "n3", 2.0).await;
    // A node that is not in the catalog is accepted and ignored, as in Consul.
    set_coord(&api, "ghost", 1.0).await;

    let follower = c.api(c.followers().await[0]);
    let all = consul_tests::eventually(Duration::from_secs(10), "follower has the coordinates", || {
        let follower = follower.clone();
        async move {
            let r = follower.get("/v1/coordinate/nodes?stale").await.ok()?;
            (r.json().as_array()?.len() == 3).then_some(r)
        }
    })
    .await;
    assert!(all.index().is_some_and(|i| i > 1));
    let v = all.json();
    assert_eq!(names(&v, |e| &e["Node"]), vec!["n1", "n2", "n3"]);
    assert_eq!(v[1]["Segment"], "");
    assert_eq!(v[1]["Coord"]["Vec"].as_array().map(Vec::len), Some(8));
    assert_eq!(v[1]["Coord"]["Vec"][0], 0.01);
    assert_eq!(v[1]["Coord"]["Error"], 0.2);
    for key in ["Adjustment", "Height"] {
        assert!(v[1]["Coord"].get(key).is_some(), "{key} missing");
    }

    let one = api.get("/v1/coordinate/node/n2").await.expect("node");
    assert_eq!(one.status, 200);
    assert_eq!(names(&one.json(), |e| &e["Node"]), vec!["n2"]);
    for missing in ["n4", "ghost"] {
        let r = api.get(&format!("/v1/coordinate/node/{missing}")).await.expect("node");
        assert_eq!(r.status, 404, "{missing}");
        assert!(r.index().is_some(), "404 still carries X-Consul-Index");
    }
    assert_eq!(api.get("/v1/coordinate/nodes?segment=other").await.expect("nodes").json(), json!([]));

    // Bad bodies: 400 with a plain-text reason, nothing stored.
    for (body, needle) in [
        ("not json".to_string(), "Request decode failed"),
        (json!({"Node": "n4", "Coord": {"Vec": [0, 0, 0], "Error": 1}}).to_string(), "incompatible coordinate"),
        (json!({"Node": "n4", "Coord": {"Vec": [0, 0, 0, 0, 0, 0, 0, "x"]}}).to_string(), "Vec[7]"),
        (json!({"Node": "n4", "Coord": {"Vec": [0, 0, 0, 0, 0, 0, 0, 0], "Height": -1}}).to_string(), "Height"),
        (json!({"Node": "n4"}).to_string(), "Coord"),
        (json!({"Coord": coord(1.0)}).to_string(), "node"),
    ] {
        let r = put(&api, "/v1/coordinate/update", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.header("content-type").unwrap_or_default().starts_with("text/plain"));
        assert!(r.text().contains(needle), "{body}: {}", r.text());
    }
    assert_eq!(api.get("/v1/coordinate/node/n4").await.expect("node").status, 404);

    // A blocking read wakes on an update.
    let idx = api.get("/v1/coordinate/nodes").await.expect("nodes").index().expect("index");
    let waiter = {
        let api = c.api(1);
        tokio::spawn(async move { api.get(&format!("/v1/coordinate/nodes?index={idx}&wait=30s")).await.expect("get") })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "blocked until a change");
    set_coord(&api, "n3", 3.0).await;
    let woke = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("woken").expect("join");
    assert!(woke.index() > Some(idx));
    assert_eq!(woke.json()[2]["Coord"]["Vec"][0], 0.003);

    // ?near= sorts nearest first; nodes without a coordinate go last in their usual order.
    let r = api.get("/v1/catalog/nodes?near=n1").await.expect("nodes").json();
    assert_eq!(test_nodes(names(&r, |e| &e["Node"])), vec!["n1", "n3", "n2", "n4"]);
    let first = names(&r, |e| &e["Node"]);
    assert_eq!(&first[..3], &["n1", "n3", "n2"], "coordinate-less agent nodes go after");
    let r = api.get("/v1/catalog/service/web?near=n2").await.expect("service").json();
    assert_eq!(names(&r, |e| &e["Node"]), vec!["n2", "n3", "n1", "n4"]);
    let r = follower.get("/v1/health/service/web?near=n3&passing&stale").await.expect("health").json();
    assert_eq!(names(&r, |e| &e["Node"]["Node"]), vec!["n3", "n1", "n2", "n4"]);
    let r = api.get("/v1/health/checks/web?near=n2").await.expect("checks").json();
    assert_eq!(names(&r, |e| &e["Node"]), vec!["n2", "n3", "n1", "n4"]);
    // A source without a coordinate (or unknown) leaves the usual order.
    let r = api.get("/v1/catalog/service/web?near=n4").await.expect("service").json();
    assert_eq!(names(&r, |e| &e["Node"]), vec!["n1", "n2", "n3", "n4"]);
    let r = api.get("/v1/catalog/service/web?near=_agent").await.expect("service").json();
    assert_eq!(names(&r, |e| &e["Node"]), vec!["n1", "n2", "n3", "n4"]);

    // Snapshot, then change things, then restore: the saved coordinates come back.
    let snap = api.get("/v1/snapshot").await.expect("save");
    assert_eq!(snap.status, 200);
    set_coord(&api, "n1", 50.0).await;
    let r = put(&api, "/v1/catalog/deregister", json!({"Node": "n2"}).to_string()).await;
    assert_eq!(r.status, 200);
    assert_eq!(api.get("/v1/coordinate/node/n2").await.expect("node").status, 404, "deregistering drops it");
    let before = api.get("/v1/coordinate/nodes").await.expect("nodes").index().expect("index");
    let r = c.api(2).request(Method::PUT, "/v1/snapshot", Some(snap.body.clone())).await.expect("restore");
    assert_eq!(r.status, 200, "{}", r.text());
    for i in 0..3 {
        let a = c.api(i);
        let r = consul_tests::eventually(Duration::from_secs(10), "restored coordinates", || {
            let a = a.clone();
            async move {
                let r = a.get("/v1/coordinate/nodes?stale").await.ok()?;
                (r.json().as_array()?.len() == 3).then_some(r)
            }
        })
        .await;
        assert!(r.index() > Some(before), "index moves forward across a restore");
        let v = r.json();
        assert_eq!(names(&v, |e| &e["Node"]), vec!["n1", "n2", "n3"]);
        assert_eq!(v[0]["Coord"]["Vec"][0], 0.0);
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_agent_publishes_its_own_coordinate() {
    let opts =
        Options { tweak: Some(|c| c.sync_coordinate_interval_min = Duration::from_millis(100)), ..Options::default() };
    let c = Cluster::start_with(1, opts).await;
    let api = c.api(0);
    let agent = c.agent(0);
    let client = agent.coordinates().expect("coordinates enabled");
    // Nothing observed yet: nothing published.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.get("/v1/coordinate/node/node0").await.expect("node").status, 404);

    // What the gossip layer does on each probe: feed a peer's coordinate and the RTT.
    let mut peer = Coordinate::new(&CoordinateConfig::default());
    peer.vec[0] = 0.004;
    let mine = client.update("peer", &peer, Duration::from_millis(5)).expect("update");
    let published = consul_tests::eventually(Duration::from_secs(10), "the agent publishes", || {
        let api = api.clone();
        async move {
            let r = api.get("/v1/coordinate/node/node0").await.ok()?;
            (r.status == 200).then(|| r.json())
        }
    })
    .await;
    let stored: Coordinate = serde_json::from_value(published[0]["Coord"].clone()).expect("coordinate");
    assert_close(&stored, &mine);
    let me = api.get("/v1/agent/self").await.expect("self").json();
    let own: Coordinate = serde_json::from_value(me["Coord"].clone()).expect("Coord in agent/self");
    assert_close(&own, &client.get());

    // The agent's node is now a valid ?near=_agent source.
    register(&api, "n1").await;
    register(&api, "n2").await;
    set_coord(&api, "n1", 100.0).await;
    set_coord(&api, "n2", 1.0).await;
    let r = api.get("/v1/catalog/nodes?near=_agent").await.expect("nodes").json();
    assert_eq!(names(&r, |e| &e["Node"]), vec!["node0", "n2", "n1"]);

    // The datacenter map lists this server.
    let dcs = api.get("/v1/coordinate/datacenters").await.expect("dcs").json();
    assert_eq!(dcs[0]["Datacenter"], "dc1");
    assert_eq!(dcs[0]["AreaID"], "wan");
    assert_eq!(dcs[0]["Coordinates"][0]["Node"], "node0");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_disable_coordinates() {
    let opts = Options { tweak: Some(|c| c.disable_coordinates = true), ..Options::default() };
    let c = Cluster::start_with(1, opts).await;
    let api = c.api(0);
    assert!(c.agent(0).coordinates().is_none());
    for path in ["/v1/coordinate/nodes", "/v1/coordinate/datacenters", "/v1/coordinate/node/node0"] {
        let r = api.get(path).await.expect("get");
        assert_eq!((r.status, r.text().trim()), (401, "Coordinate support disabled"), "{path}");
    }
    let r = put(&api, "/v1/coordinate/update", json!({"Node": "node0", "Coord": coord(1.0)}).to_string()).await;
    assert_eq!(r.status, 401);
    assert_eq!(api.get("/v1/agent/self").await.expect("self").json()["Coord"], Value::Null);
    c.shutdown().await;
}
