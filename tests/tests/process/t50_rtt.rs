//! `consul-rs rtt` against a dev agent (Consul's `command/rtt`): coordinates are written with
//! `PUT /v1/coordinate/update`, and the command prints Consul's line or Consul's errors.

use std::time::Duration;

use consul_tests::process::{stdout, DevAgent};
use serde_json::{json, Value};

async fn put(agent: &DevAgent, path: &str, body: Value) -> u16 {
    let r = agent.api.request(reqwest::Method::PUT, path, Some(body.to_string().into_bytes())).await.expect("request");
    r.status
}

fn coord(x_ms: f64) -> Value {
    json!({"Vec": [x_ms / 1000.0, 0, 0, 0, 0, 0, 0, 0], "Error": 0.2, "Adjustment": 0, "Height": 0})
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_rtt_prints_consuls_estimate() {
    let agent = DevAgent::start().await;
    for node in ["n-a", "n-b"] {
        let body = json!({"Node": node, "Address": "10.1.0.1"});
        assert_eq!(put(&agent, "/v1/catalog/register", body).await, 200);
    }
    assert_eq!(put(&agent, "/v1/coordinate/update", json!({"Node": "n-a", "Coord": coord(0.0)})).await, 200);
    assert_eq!(put(&agent, "/v1/coordinate/update", json!({"Node": "n-b", "Coord": coord(1.234)})).await, 200);
    // The agent's own node appears in the catalog after its first anti-entropy run; until then
    // its coordinate update is ignored, so repeat it until it sticks.
    let own = agent.api.get("/v1/agent/self").await.expect("self").json()["Config"]["NodeName"]
        .as_str()
        .expect("node name")
        .to_string();
    consul_tests::eventually(Duration::from_secs(20), "own node has a coordinate", || {
        let (agent, own) = (&agent, own.clone());
        async move {
            put(agent, "/v1/coordinate/update", json!({"Node": own, "Coord": coord(3.0)})).await;
            let r = agent.api.get(&format!("/v1/coordinate/node/{own}")).await.ok()?;
            (r.status == 200).then_some(())
        }
    })
    .await;

    let out = agent.cli(&["rtt", "n-a", "n-b"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "Estimated n-a <-> n-b rtt: 1.234 ms (using LAN coordinates)\n");

    // The second node defaults to the agent's own; -http-addr works like CONSUL_HTTP_ADDR.
    let addr = format!("-http-addr=127.0.0.1:{}", agent.http);
    let out = agent.cli(&["rtt", &addr, "n-b"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), format!("Estimated n-b <-> {own} rtt: 1.766 ms (using LAN coordinates)\n"));

    // Errors, worded as Consul's, exit 1.
    let out = agent.cli(&["rtt", "n-a", "nowhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim(), "Could not find a coordinate for node \"nowhere\"");
    let out = agent.cli(&["rtt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("One or two node names must be specified"), "{}", stderr(&out));
    let out = agent.cli(&["rtt", "a", "b", "c"]);
    assert_eq!(out.status.code(), Some(1));

    // -wan: node names are <node>.<datacenter>; this datacenter's servers are listed.
    let out = agent.cli(&["rtt", "-wan", &format!("{own}.dc1")]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).ends_with("(using WAN coordinates)\n"), "{}", stdout(&out));
    let out = agent.cli(&["rtt", "-wan", "plainname"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("<node name>.<datacenter>"), "{}", stderr(&out));
}
