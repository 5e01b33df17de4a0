//! Autopilot, leadership transfer and usage against real `consul-rs` processes: a failed
//! server (kill -9) is removed from Raft, a replacement joins as a non-voter and is promoted
//! after `server_stabilization_time`; `transfer-leader` moves leadership; the configuration
//! API with `?cas=`, the health and state shapes, and the CLI commands.

use std::process::{Command, Output};
use std::time::Duration;

use consul_tests::client::Api;
use consul_tests::eventually;
use consul_tests::process::{binary, stdout, DevAgent, ProcCluster, ProcOptions};
use reqwest::Method;
use serde_json::Value;

fn cli(c: &ProcCluster, i: usize, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .arg(format!("-http-addr={}", c.http_addr(i)))
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .output()
        .expect("run cli")
}

/// The Raft configuration's servers as (node name, ID, voter, leader).
async fn raft_servers(api: &Api) -> Option<Vec<(String, String, bool, bool)>> {
    let r = api.get("/v1/operator/raft/configuration").await.ok()?;
    (r.status == 200).then_some(())?;
    let v = r.json();
    Some(
        v["Servers"]
            .as_array()?
            .iter()
            .map(|s| {
                (
                    s["Node"].as_str().unwrap_or_default().to_string(),
                    s["ID"].as_str().unwrap_or_default().to_string(),
                    s["Voter"].as_bool().unwrap_or(false),
                    s["Leader"].as_bool().unwrap_or(false),
                )
            })
            .collect(),
    )
}

async fn leader_name(api: &Api) -> Option<String> {
    raft_servers(api).await?.into_iter().find(|s| s.3).map(|s| s.0)
}

/// A running server other than `except`, to ask.
fn other(c: &mut ProcCluster, except: &[usize]) -> usize {
    (0..c.len()).find(|i| !except.contains(i) && c.is_running(*i)).expect("a running server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t88_autopilot_removes_a_dead_server_and_promotes_its_replacement() {
    let opts = ProcOptions {
        autopilot_json: Some(r#"{"server_stabilization_time": "4s"}"#),
        log_to_file: true,
        ..ProcOptions::default()
    };
    let mut c = ProcCluster::start_with(3, opts).await;
    let api = c.api(0);

    // The first leader seeded the configuration from its config file.
    let conf = eventually(Duration::from_secs(30), "autopilot configuration", || {
        let api = api.clone();
        async move {
            let r = api.get("/v1/operator/autopilot/configuration").await.ok()?;
            (r.status == 200).then(|| r.json())
        }
    })
    .await;
    assert_eq!(conf["ServerStabilizationTime"], "4s", "{conf}");
    assert_eq!(conf["LastContactThreshold"], "200ms", "{conf}");
    assert_eq!(conf["CleanupDeadServers"], true);
    assert_eq!(conf["MaxTrailingLogs"], 250);

    // Healthy: every server, one failure tolerated.
    let health = eventually(Duration::from_secs(60), "a healthy cluster", || {
        let api = api.clone();
        async move {
            let r = api.get("/v1/operator/autopilot/health").await.ok()?;
            (r.status == 200).then(|| r.json())
        }
    })
    .await;
    assert_eq!(health["Healthy"], true);
    assert_eq!(health["FailureTolerance"], 1, "{health}");
    let servers = health["Servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 3);
    for s in servers {
        for key in ["ID", "Name", "Address", "SerfStatus", "Version", "LastContact", "StableSince"] {
            assert!(s[key].is_string(), "{key} in {s}");
        }
        assert_eq!(s["SerfStatus"], "alive");
        assert_eq!(s["Voter"], true);
    }
    assert_eq!(servers.iter().filter(|s| s["Leader"] == true).count(), 1);

    let state = api.get("/v1/operator/autopilot/state").await.expect("state");
    assert_eq!(state.status, 200, "{}", state.text());
    let state = state.json();
    assert_eq!(state["Voters"].as_array().map(Vec::len), Some(3), "{state}");
    let leader_id = state["Leader"].as_str().expect("leader").to_string();
    let leader_entry = &state["Servers"][&leader_id];
    assert_eq!(leader_entry["Status"], "leader", "{state}");
    assert_eq!(leader_entry["NodeStatus"], "alive");
    assert!(state["OptimisticFailureTolerance"].is_number());

    // CLI: get-config, state.
    let out = cli(&c, 1, &["operator", "autopilot", "get-config"]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("ServerStabilizationTime = 4s"), "{}", stdout(&out));
    let out = cli(&c, 1, &["operator", "autopilot", "state"]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains(&format!("Leader:                       {leader_id}")), "{}", stdout(&out));

    // Transfer to a named follower.
    let leader_now = eventually(Duration::from_secs(30), "a leader", || {
        let api = api.clone();
        async move { leader_name(&api).await }
    })
    .await;
    let servers = raft_servers(&api).await.expect("configuration");
    let (target_name, target_id, ..) = servers.iter().find(|s| s.0 != leader_now).cloned().expect("a follower");
    let r = api
        .request(Method::POST, &format!("/v1/operator/raft/transfer-leader?id={target_id}"), None)
        .await
        .expect("transfer");
    let logs = if r.status == 200 {
        String::new()
    } else {
        (0..3).map(|i| c.log_tail(i, 60)).collect::<Vec<_>>().join("\n=====\n")
    };
    assert_eq!(r.status, 200, "{} {servers:?}\n{logs}", r.text());
    assert_eq!(r.json()["Success"], true);
    eventually(Duration::from_secs(30), "the named server leads", || {
        let api = api.clone();
        let target = target_name.clone();
        async move { (leader_name(&api).await? == target).then_some(()) }
    })
    .await;
    // And through the CLI, to any other voter.
    let out = cli(&c, 0, &["operator", "raft", "transfer-leader"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).trim(), "Success");
    eventually(Duration::from_secs(30), "leadership moved again", || {
        let api = api.clone();
        let target = target_name.clone();
        async move { leader_name(&api).await.filter(|l| *l != target).map(|_| ()) }
    })
    .await;

    // Kill -9 a follower: autopilot removes it.
    let leader = eventually(Duration::from_secs(30), "a leader", || async { c.leader_index().await }).await;
    let victim = (0..3).find(|i| *i != leader).expect("a follower");
    c.kill9(victim);
    let asker = other(&mut c, &[victim]);
    let api = c.api(asker);
    let victim_name = format!("proc{victim}");
    eventually(Duration::from_secs(30), "the dead server is removed from raft", || {
        let api = api.clone();
        let victim = victim_name.clone();
        async move {
            let servers = raft_servers(&api).await?;
            (servers.len() == 2 && servers.iter().all(|s| s.0 != victim)).then_some(())
        }
    })
    .await;

    // A replacement joins as a non-voter, then becomes a voter once stable.
    let new = c.add_server();
    let new_name = format!("proc{new}");
    eventually(Duration::from_secs(60), "the new server joins as a non-voter", || {
        let api = api.clone();
        let name = new_name.clone();
        async move { raft_servers(&api).await?.iter().any(|s| s.0 == name && !s.2).then_some(()) }
    })
    .await;
    eventually(Duration::from_secs(60), "the new server is promoted", || {
        let api = api.clone();
        let name = new_name.clone();
        async move {
            let servers = raft_servers(&api).await?;
            (servers.len() == 3 && servers.iter().all(|s| s.2) && servers.iter().any(|s| s.0 == name)).then_some(())
        }
    })
    .await;
    c.wait_for_voters(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t88_autopilot_configuration_cas_and_cli_set_config() {
    let agent = DevAgent::start().await;
    let api = &agent.api;
    let conf = eventually(Duration::from_secs(30), "autopilot configuration", || async {
        let r = api.get("/v1/operator/autopilot/configuration").await.ok()?;
        (r.status == 200).then(|| r.json())
    })
    .await;
    let index = conf["ModifyIndex"].as_u64().expect("ModifyIndex");
    assert_eq!(conf["CreateIndex"], index);

    let mut changed = conf.clone();
    changed["MinQuorum"] = Value::from(3);
    let body = serde_json::to_vec(&changed).expect("json");
    let path = format!("/v1/operator/autopilot/configuration?cas={}", index + 1000);
    let r = api.request(Method::PUT, &path, Some(body.clone())).await.expect("put");
    assert_eq!((r.status, r.text().trim()), (200, "false"), "a stale CAS is refused");
    let path = format!("/v1/operator/autopilot/configuration?cas={index}");
    let r = api.request(Method::PUT, &path, Some(body.clone())).await.expect("put");
    assert_eq!((r.status, r.text().trim()), (200, "true"));
    let now = api.get("/v1/operator/autopilot/configuration").await.expect("get").json();
    assert_eq!(now["MinQuorum"], 3);
    assert!(now["ModifyIndex"].as_u64() > Some(index));
    assert_eq!(now["CreateIndex"], index);
    // The same CAS index again is now stale.
    let r = api.request(Method::PUT, &path, Some(body)).await.expect("put");
    assert_eq!(r.text().trim(), "false");
    // Bad input is a 400 naming the problem and changes nothing.
    let r = api
        .request(
            Method::PUT,
            "/v1/operator/autopilot/configuration",
            Some(br#"{"LastContactThreshold":"soon"}"#.to_vec()),
        )
        .await
        .expect("put");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("LastContactThreshold"), "{}", r.text());
    let r = api.request(Method::PUT, "/v1/operator/autopilot/configuration?cas=x", Some(b"{}".to_vec())).await;
    assert_eq!(r.expect("put").status, 400);

    let out =
        agent.cli(&["operator", "autopilot", "set-config", "-max-trailing-logs=42", "-last-contact-threshold=1s"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).trim(), "Configuration updated!");
    let out = agent.cli(&["operator", "autopilot", "get-config"]);
    let text = stdout(&out);
    assert!(text.contains("MaxTrailingLogs = 42\n"), "{text}");
    assert!(text.contains("LastContactThreshold = 1s\n"), "{text}");
    assert!(text.contains("MinQuorum = 3\n"), "set-config keeps what it was not told to change: {text}");

    // A single server has nobody to hand leadership to.
    let r = api.request(Method::POST, "/v1/operator/raft/transfer-leader", None).await.expect("post");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("no other voter"), "{}", r.text());
    let out = agent.cli(&["operator", "raft", "transfer-leader"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Error transfering leadership"), "{out:?}");

    // A single healthy server: health 200, no failure tolerance.
    let health = eventually(Duration::from_secs(30), "healthy", || async {
        let r = api.get("/v1/operator/autopilot/health").await.ok()?;
        (r.status == 200).then(|| r.json())
    })
    .await;
    assert_eq!((health["Healthy"].as_bool(), health["FailureTolerance"].as_u64()), (Some(true), Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t88_usage_counts_service_instances() {
    let agent = DevAgent::start().await;
    let api = &agent.api;
    for (id, name) in [("web1", "web"), ("web2", "web"), ("db1", "db")] {
        let body = serde_json::json!({"ID": id, "Name": name, "Port": 80});
        let r = api
            .request(Method::PUT, "/v1/agent/service/register", Some(serde_json::to_vec(&body).expect("json")))
            .await
            .expect("register");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let usage = eventually(Duration::from_secs(30), "usage counts the services", || async {
        let v = api.get("/v1/operator/usage").await.ok()?.json();
        let dc = v["Usage"]["dc1"].clone();
        (dc["BillableServiceInstances"] == 3).then_some(dc)
    })
    .await;
    // `consul` itself is a service instance but not a billable one.
    assert_eq!(usage["Services"], 3, "{usage}");
    assert_eq!(usage["ServiceInstances"], 4, "{usage}");
    assert_eq!(usage["ConnectServiceInstances"]["connect-proxy"], 0, "{usage}");
    let out = agent.cli(&["operator", "usage", "instances"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("Billable Service Instances Total: 3"), "{text}");
    assert!(text.contains("dc1 Billable Service Instances: 3"), "{text}");
}
