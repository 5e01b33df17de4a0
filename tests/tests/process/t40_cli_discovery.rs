//! The service-discovery CLI against a dev agent: `catalog datacenters|nodes|services` (§7.1,
//! endpoints §1.6) over nodes and services registered with `PUT /v1/catalog/register`, and
//! `watch` (§7.1, blocking queries §2.1) printing results or feeding a handler.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use consul_tests::process::{binary, stdout, DevAgent};
use serde_json::{json, Value};

/// Catalog writes used by these tests.
trait CatalogWrites {
    async fn put(&self, path: &str, body: Value);
    async fn register(&self, node: &str, id: &str, meta: Value, service: Option<Value>);
}

impl CatalogWrites for DevAgent {
    async fn put(&self, path: &str, body: Value) {
        let resp =
            self.api.request(reqwest::Method::PUT, path, Some(body.to_string().into_bytes())).await.expect("request");
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
    }

    async fn register(&self, node: &str, id: &str, meta: Value, service: Option<Value>) {
        let mut body = json!({"Node": node, "ID": id, "Address": format!("10.1.0.{}", node.len()), "NodeMeta": meta,
                              "TaggedAddresses": {"wan": "198.51.100.1"}});
        if let Some(s) = service {
            body["Service"] = s;
        }
        self.put("/v1/catalog/register", body).await;
    }
}

/// A running `consul-rs watch`, its stdout read line by line on a thread; killed on drop.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(agent: &DevAgent, args: &[&str]) -> Watch {
        let mut child = agent.command(args).stdout(Stdio::piped()).stdin(Stdio::null()).spawn().expect("spawn watch");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watch { child, lines }
    }

    /// The next printed JSON document (the output is indented over several lines).
    fn next_json(&self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let mut text = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    text.push_str(&line);
                    text.push('\n');
                    if let Ok(v) = serde_json::from_str::<Value>(&text) {
                        return v;
                    }
                }
                Err(e) => panic!("no complete JSON within {timeout:?} ({e}); got so far: {text:?}"),
            }
        }
    }

    /// Nothing more is printed for `d`.
    fn quiet_for(&self, d: Duration) {
        if let Ok(line) = self.lines.recv_timeout(d) {
            panic!("unexpected output: {line:?}");
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ID1: &str = "0e8ffa51-5a8c-4f41-9c3f-2b1c8e0b2a77";
const ID2: &str = "7d1c44a0-93d1-4b7e-8c6a-000000000002";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_catalog_commands_list_registered_nodes_and_services() {
    let agent = DevAgent::start().await;
    agent
        .register(
            "node-a",
            ID1,
            json!({"rack": "r1"}),
            Some(json!({"ID": "web-1", "Service": "web", "Tags": ["v1", "primary"], "Port": 80})),
        )
        .await;
    agent.register("node-bb", ID2, json!({"rack": "r2"}), Some(json!({"Service": "db", "Tags": ["pg"]}))).await;
    agent.register("node-bb", ID2, json!({"rack": "r2"}), Some(json!({"ID": "web-2", "Service": "web"}))).await;
    agent.register("node-a", ID1, json!({"rack": "r1"}), Some(json!({"ID": "web-3", "Service": "web"}))).await;

    let out = agent.cli(&["catalog", "datacenters"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "dc1\n");

    // The agent may register its own node (and a `consul` service) too; leave those out.
    let own = agent.api.get("/v1/agent/self").await.expect("self").json()["Config"]["NodeName"]
        .as_str()
        .expect("node name")
        .to_string();
    let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let rows = |o: &Output| -> Vec<Vec<String>> {
        stdout(o).lines().map(cols).filter(|c| c.first().is_some_and(|n| *n != own && n != "consul")).collect()
    };
    let out = agent.cli(&["catalog", "nodes"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        rows(&out),
        [
            vec!["Node", "ID", "Address", "DC"],
            vec!["node-a", "0e8ffa51", "10.1.0.6", "dc1"],
            vec!["node-bb", "7d1c44a0", "10.1.0.7", "dc1"]
        ],
        "{}",
        stdout(&out)
    );

    // -service: nodes providing it; -node-meta: filtered; -detailed: full ID, tagged addresses, meta.
    let out = agent.cli(&["catalog", "nodes", "-service=db"]);
    assert_eq!(stdout(&out).lines().skip(1).map(|l| cols(l)[0].clone()).collect::<Vec<_>>(), ["node-bb"]);
    let out = agent.cli(&["catalog", "nodes", "-service", "web"]);
    assert_eq!(stdout(&out).lines().count(), 3, "each node once: {}", stdout(&out));
    let out = agent.cli(&["catalog", "nodes", "-node-meta", "rack=r1", "-detailed"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.lines().next().is_some_and(|h| h.contains("TaggedAddresses") && h.ends_with("Meta")), "{text}");
    let row = text.lines().nth(1).expect("a row");
    assert!(row.starts_with("node-a") && row.contains(ID1), "{text}");
    assert!(row.contains("wan=198.51.100.1") && row.ends_with("rack=r1"), "{text}");
    assert_eq!(text.lines().count(), 2, "{text}");
    let out = agent.cli(&["catalog", "nodes", "-service=nope"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("No nodes match"));

    let out = agent.cli(&["catalog", "services"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(rows(&out), [["db"], ["web"]], "{}", stdout(&out));
    let out = agent.cli(&["catalog", "services", "-tags"]);
    assert_eq!(rows(&out), [vec!["db", "pg"], vec!["web", "primary,v1"]], "{}", stdout(&out));
    let out = agent.cli(&["catalog", "services", "-node=node-a", "-tags"]);
    assert_eq!(stdout(&out).lines().map(cols).collect::<Vec<_>>(), [vec!["web", "primary,v1"]]);
    let out = agent.cli(&["catalog", "services", "-node-meta=rack=r2"]);
    assert_eq!(stdout(&out), "db\nweb\n");

    // Errors: a bad -node-meta, an unreachable agent.
    let out = agent.cli(&["catalog", "services", "-node-meta=novalue"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = Command::new(binary()).args(["catalog", "nodes", "-http-addr=127.0.0.1:1"]).output().expect("cli");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Error listing nodes"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t41_watch_key_and_service_print_initial_then_changed_results() {
    let agent = DevAgent::start().await;
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };

    // A key that does not exist yet prints nothing until it is written.
    let watch = Watch::start(&agent, &["watch", "-type=key", "-key=watch/later"]);
    watch.quiet_for(Duration::from_millis(500));
    agent.api.put_ok("watch/later", "now").await;
    assert_eq!(watch.next_json(Duration::from_secs(20))["Value"], b64("now"));
    drop(watch);

    agent.api.put_ok("watch/k", "one").await;
    let watch = Watch::start(&agent, &["watch", "-type=key", "-key", "watch/k"]);
    let first = watch.next_json(Duration::from_secs(20));
    assert_eq!(first["Key"], "watch/k");
    assert_eq!(first["Value"], b64("one"));
    // A write elsewhere does not fire the key watch.
    agent.api.put_ok("watch/other", "x").await;
    watch.quiet_for(Duration::from_millis(700));
    agent.api.put_ok("watch/k", "two").await;
    let second = watch.next_json(Duration::from_secs(20));
    assert_eq!(second["Value"], b64("two"));
    assert!(second["ModifyIndex"].as_u64() > first["ModifyIndex"].as_u64());
    drop(watch);

    let web = |id: &str| json!({"ID": id, "Service": "web", "Port": 80});
    agent.register("n1", ID1, json!({}), Some(web("web-1"))).await;
    let watch = Watch::start(&agent, &["watch", "-type=service", "-service=web"]);
    let first = watch.next_json(Duration::from_secs(20));
    assert_eq!(first.as_array().map(Vec::len), Some(1), "{first}");
    assert_eq!(first[0]["Service"]["ID"], "web-1");
    assert_eq!(first[0]["Node"]["Node"], "n1");
    agent.register("n2", ID2, json!({}), Some(web("web-2"))).await;
    let second = watch.next_json(Duration::from_secs(20));
    let mut ids: Vec<&str> =
        second.as_array().expect("list").iter().filter_map(|e| e["Service"]["ID"].as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["web-1", "web-2"]);

    // SIGTERM ends the watch cleanly (exit 0).
    let mut watch = watch;
    let killed = Command::new("kill").args(["-TERM", &watch.child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let status = consul_tests::eventually(Duration::from_secs(10), "watch exits", || {
        let status = watch.child.try_wait().ok().flatten();
        async move { status }
    })
    .await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t42_watch_handler_gets_the_json_on_stdin() {
    let agent = DevAgent::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("seen.jsonl");
    agent.api.put_ok("handler/a", "1").await;
    let handler = format!("cat >> '{}'", file.display());
    let _watch = Watch::start(&agent, &["watch", "-type=keyprefix", "-prefix=handler/", &handler]);
    let read = |n: usize| {
        let file = file.clone();
        move || {
            let file = file.clone();
            async move {
                let text = std::fs::read_to_string(&file).ok()?;
                let docs: Vec<Value> =
                    text.lines().map(|l| serde_json::from_str(l).expect("one JSON document per run")).collect();
                (docs.len() >= n).then_some(docs)
            }
        }
    };
    let docs = consul_tests::eventually(Duration::from_secs(20), "handler ran once", read(1)).await;
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0][0]["Key"], "handler/a");
    agent.api.put_ok("handler/b", "2").await;
    let docs = consul_tests::eventually(Duration::from_secs(20), "handler ran again", read(2)).await;
    let keys: Vec<&str> = docs[1].as_array().expect("list").iter().filter_map(|p| p["Key"].as_str()).collect();
    assert_eq!(keys, ["handler/a", "handler/b"]);
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t43_services_register_deregister_from_flags_and_files() {
    let agent = DevAgent::start().await;
    let out = agent.cli(&[
        "services",
        "register",
        "-name=web",
        "-id",
        "web-1",
        "-tag",
        "v1",
        "-tag=primary",
        "-port",
        "8080",
        "-address=10.0.0.9",
        "-meta",
        "env=prod",
        "-tagged-address",
        "wan=203.0.113.1:80",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "Registered service: web\n");
    let svc = agent.api.get("/v1/agent/service/web-1").await.expect("get").json();
    assert_eq!(svc["Service"], "web");
    assert_eq!(svc["Port"], 8080);
    assert_eq!(svc["Address"], "10.0.0.9");
    assert_eq!(svc["Tags"], json!(["v1", "primary"]));
    assert_eq!(svc["Meta"], json!({"env": "prod"}));
    assert_eq!(svc["TaggedAddresses"]["wan"], json!({"Address": "203.0.113.1", "Port": 80}));

    // Files: HCL `service` block (snake_case, embedded check) and JSON `services` list (PascalCase).
    let dir = tempfile::tempdir().expect("tempdir");
    let hcl = dir.path().join("api.hcl");
    std::fs::write(
        &hcl,
        "service {\n  name = \"api\"\n  port = 9000\n  enable_tag_override = true\n  check {\n    id = \"api-ttl\"\n    ttl = \"30s\"\n  }\n}\n",
    )
    .expect("write");
    let json_file = dir.path().join("db.json");
    std::fs::write(&json_file, r#"{"services": [{"Name": "db", "ID": "db-1", "Port": 5432}, {"name": "cache"}]}"#)
        .expect("write");
    let files = [hcl.display().to_string(), json_file.display().to_string()];
    let out = agent.cli(&["services", "register", &files[0], &files[1]]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "Registered service: api\nRegistered service: db\nRegistered service: cache\n");
    let services = agent.api.get("/v1/agent/services").await.expect("get").json();
    let mut ids: Vec<&String> = services.as_object().expect("map").keys().collect();
    ids.sort();
    assert_eq!(ids, ["api", "cache", "db-1", "web-1"]);
    assert_eq!(services["api"]["EnableTagOverride"], true);
    let checks = agent.api.get("/v1/agent/checks").await.expect("get").json();
    assert_eq!(checks["api-ttl"]["ServiceID"], "api");

    // Deregistration by -id and by the same files (ID, else name).
    let out = agent.cli(&["services", "deregister", "-id=web-1"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "Deregistered service: web-1\n");
    let out = agent.cli(&["services", "deregister", &files[0], &files[1]]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "Deregistered service: api\nDeregistered service: db-1\nDeregistered service: cache\n");
    assert_eq!(agent.api.get("/v1/agent/services").await.expect("get").json(), json!({}));

    // Errors exit 1 with the agent's message.
    let out = agent.cli(&["services", "deregister", "-id=nope"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Error deregistering service \"nope\""), "{out:?}");
    let out = agent.cli(&["services", "register"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t44_maint_and_reload() {
    let agent = DevAgent::start().await;
    assert!(agent.cli(&["services", "register", "-name=web", "-id=web-1"]).status.success());
    let out = agent.cli(&["maint"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "");

    let out = agent.cli(&["maint", "-enable", "-reason", "kernel upgrade"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "Node maintenance is now enabled\n");
    let out = agent.cli(&["maint", "-enable", "-service=web-1", "-reason=deploy"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "Service maintenance is now enabled for \"web-1\"\n");
    let checks = agent.api.get("/v1/agent/checks").await.expect("get").json();
    assert_eq!(checks["_node_maintenance"]["Status"], "critical");
    assert_eq!(checks["_service_maintenance:web-1"]["Notes"], "deploy");

    let node = agent.api.get("/v1/agent/self").await.expect("self").json()["Config"]["NodeName"]
        .as_str()
        .expect("node name")
        .to_string();
    let out = agent.cli(&["maint"]);
    assert_eq!(
        stdout(&out),
        format!("Node:\n  Name:   {node}\n  Reason: kernel upgrade\n\nService:\n  ID:     web-1\n  Reason: deploy\n\n")
    );

    assert_eq!(stdout(&agent.cli(&["maint", "-disable"])), "Node maintenance is now disabled\n");
    assert_eq!(
        stdout(&agent.cli(&["maint", "-disable", "-service", "web-1"])),
        "Service maintenance is now disabled for \"web-1\"\n"
    );
    assert_eq!(stdout(&agent.cli(&["maint"])), "");
    let out = agent.cli(&["maint", "-enable", "-service=nope"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Error enabling service maintenance"), "{out:?}");

    let out = agent.cli(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "Configuration reload triggered\n");
}
