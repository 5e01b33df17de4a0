//! The gossip CLI against real agents: `members`, `join`, `force-leave`, `leave`, `event`,
//! `watch -type=event`, `keygen` and `keyring`, with Consul's output and exit codes.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use consul_tests::process::{binary, stdout, DevAgent};
use consul_tests::{eventually, free_port};
use serde_json::Value;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The rows of a `members` table, split on whitespace.
fn rows(o: &Output) -> Vec<Vec<String>> {
    stdout(o).lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
}

/// A client agent (`-server=false`) process, killed on drop.
struct ClientAgent {
    child: Child,
    http: u16,
    _dir: tempfile::TempDir,
}

impl ClientAgent {
    fn start(node: &str) -> ClientAgent {
        let dir = tempfile::tempdir().expect("tempdir");
        let http = free_port();
        let child = Command::new(binary())
            .args(["agent", "-server=false", "-node", node, "-bind=127.0.0.1", "-client=127.0.0.1"])
            .arg(format!("-data-dir={}", dir.path().display()))
            .arg(format!("-http-port={http}"))
            .arg(format!("-serf-lan-port={}", free_port()))
            .arg(format!("-dns-port={}", free_port()))
            .args(["-log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn client agent");
        ClientAgent { child, http, _dir: dir }
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(binary())
            .args(args)
            .env("CONSUL_HTTP_ADDR", format!("127.0.0.1:{}", self.http))
            .output()
            .expect("run cli")
    }
}

impl Drop for ClientAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_members_join_and_force_leave() {
    let agent = DevAgent::start().await;
    let me = agent.api.get("/v1/agent/members").await.expect("members").json();
    let me = &me.as_array().expect("list")[0];
    let (name, port) = (me["Name"].as_str().expect("name").to_string(), me["Port"].as_u64().expect("port"));

    // The dev agent: one alive server, Consul's nine columns.
    let out = agent.cli(&["members"]);
    assert!(out.status.success(), "{out:?}");
    let table = rows(&out);
    assert_eq!(table[0], ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Partition", "Segment"]);
    assert_eq!(table.len(), 2, "{}", stdout(&out));
    let row = &table[1];
    assert_eq!((row[0].as_str(), row[1].as_str()), (name.as_str(), format!("127.0.0.1:{port}").as_str()));
    assert_eq!(&row[2..4], ["alive", "server"]);
    assert_eq!(&row[5..], ["2", "dc1", "default", "<all>"]);

    // -detailed prints the tags; a -status matching nothing prints nothing and exits 2.
    let out = agent.cli(&["members", "-detailed"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(rows(&out)[0], ["Node", "Address", "Status", "Tags"]);
    assert!(stdout(&out).contains("role=consul") && stdout(&out).contains("dc=dc1"), "{}", stdout(&out));
    let out = agent.cli(&["members", "-status=(failed|left)"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(stdout(&out), "");
    let out = agent.cli(&["members", "-status", "alive"]);
    assert!(out.status.success(), "{out:?}");
    let out = agent.cli(&["members", "-status=("]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("Failed to compile status regexp"), "{}", stderr(&out));

    // A client agent joins through the CLI; the server lists it after itself, as a client.
    let client = ClientAgent::start("cli-client");
    let target = format!("127.0.0.1:{port}");
    let mut joined = None;
    for _ in 0..100 {
        let out = client.cli(&["join", &target]);
        if out.status.success() {
            joined = Some(out);
            break;
        }
        // The client's HTTP API may not be up yet.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = joined.expect("join succeeds");
    assert_eq!(stdout(&out), "Successfully joined cluster by contacting 1 nodes.\n");
    eventually(Duration::from_secs(20), "the server lists the client", || {
        let out = agent.cli(&["members"]);
        let table = rows(&out);
        let name = name.clone();
        async move {
            (table.len() == 3
                && table[1][0] == name
                && table[2][..4] == ["cli-client".to_string(), table[2][1].clone(), "alive".into(), "client".into()]
                && table[2].last().map(String::as_str) == Some("<default>"))
            .then_some(())
        }
    })
    .await;

    // Joining an address where nothing listens: Consul's two lines, exit 1.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let out = agent.cli(&["join", &nowhere]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(err.starts_with(&format!("Error joining address '{nowhere}': ")), "{err}");
    assert!(err.ends_with("Failed to join any nodes.\n"), "{err}");
    assert_eq!(stdout(&out), "");
    let out = agent.cli(&["join"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("At least one address to join must be specified."), "{}", stderr(&out));

    // force-leave: an unknown node is an error; a known one succeeds silently.
    let out = agent.cli(&["force-leave", "no-such-node"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("Error force leaving: "), "{}", stderr(&out));
    drop(client);
    let out = agent.cli(&["force-leave", "cli-client"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "");
    eventually(Duration::from_secs(20), "the client is no longer alive", || {
        let out = agent.cli(&["members", "-status=alive"]);
        async move { (rows(&out).len() == 2).then_some(()) }
    })
    .await;
}

/// Reads whole JSON documents from a `watch` printing to stdout (each ends with a top-level
/// `]` or is `[]`).
fn documents(child: &mut Child) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        let mut doc = String::new();
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            doc.push_str(&line);
            doc.push('\n');
            if line == "]" || line == "[]" {
                let v: Value = serde_json::from_str(&doc).expect("watch prints JSON");
                doc.clear();
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

fn event_ids(v: &Value) -> Vec<String> {
    v.as_array().expect("list").iter().map(|e| e["ID"].as_str().expect("ID").to_string()).collect()
}

fn fired_id(o: &Output) -> String {
    assert!(o.status.success(), "{o:?}");
    let out = stdout(o);
    out.strip_prefix("Event ID: ").and_then(|s| s.strip_suffix('\n')).expect("Event ID line").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_event_fire_list_and_watch() {
    let agent = DevAgent::start().await;
    let first = fired_id(&agent.cli(&["event", "-name=deploy", "v1"]));
    let list = agent.api.get("/v1/event/list?name=deploy").await.expect("list").json();
    assert_eq!(event_ids(&list), vec![first.clone()]);
    assert_eq!(list[0]["Payload"], "djE=");

    // The watch prints the agent's deploy events at start, then only the new ones, whatever
    // the (hash) index does; other names are not shown.
    let mut watch = agent
        .command(&["watch", "-type=event", "-name", "deploy"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let docs = documents(&mut watch);
    let wait = Duration::from_secs(15);
    let start = docs.recv_timeout(wait).expect("the watch prints at start");
    assert_eq!(event_ids(&start), vec![first.clone()]);
    let mut fired = Vec::new();
    for (name, payload) in [("deploy", "v2"), ("other", "x"), ("deploy", "v3"), ("deploy", "v4")] {
        let id = fired_id(&agent.cli(&["event", "-name", name, payload]));
        if name == "deploy" {
            fired.push(id);
        }
    }
    let mut seen = Vec::new();
    while seen.len() < fired.len() {
        let doc = docs.recv_timeout(wait).expect("the watch prints each new event");
        let ids = event_ids(&doc);
        assert!(!ids.is_empty(), "a run without new events: {doc}");
        assert!(!ids.contains(&first), "an old event delivered again: {doc}");
        seen.extend(ids);
    }
    assert_eq!(seen, fired);
    let _ = watch.kill();
    let _ = watch.wait();

    // Refusals before anything is sent.
    let big = "x".repeat(513);
    let out = agent.cli(&["event", "-name=deploy", &big]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("513 bytes") && stderr(&out).contains("512"), "{}", stderr(&out));
    let out = agent.cli(&["event", "payload-without-name"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("Event name must be specified"), "{}", stderr(&out));
    let out = agent.cli(&["event", "-name=x", "-tag=v1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "Cannot provide tag filter without service filter.\n");
    // The agent refuses reserved names; the CLI reports its answer.
    let out = agent.cli(&["event", "-name=_rexec"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("Error firing event: Unexpected response code: 400"), "{}", stderr(&out));
}

#[test]
fn t70_keygen_prints_a_32_byte_key() {
    let out = Command::new(binary()).arg("keygen").output().expect("run keygen");
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let key = text.strip_suffix('\n').expect("one line");
    let raw = base64::engine::general_purpose::STANDARD.decode(key).expect("base64");
    assert_eq!(raw.len(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_leave_stops_the_agent() {
    let mut agent = DevAgent::start().await;
    let out = agent.cli(&["leave"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "Graceful leave complete\n");
    let status = agent.wait_exit(Duration::from_secs(30)).await.expect("the agent exits after leave");
    assert!(status.success(), "{status:?}");
    // Nothing answers any more: the CLI says so and exits 1.
    let out = agent.cli(&["leave"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("Error leaving: "), "{}", stderr(&out));
}

/// Key rotation with the CLI on an encrypted agent: install, use, remove, each step visible in
/// `-list` / `-list-primary` in Consul's format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_keyring_rotation() {
    let keygen = || {
        let out = Command::new(binary()).arg("keygen").output().expect("run keygen");
        stdout(&out).trim().to_string()
    };
    let (old, new) = (keygen(), keygen());
    let agent = DevAgent::start_with(&["-encrypt", &old]).await;
    let list = |flag: &str| {
        let out = agent.cli(&["keyring", flag]);
        assert!(out.status.success(), "{out:?}");
        stdout(&out)
    };
    let block = |keys: &[&str]| {
        let mut keys = keys.to_vec();
        keys.sort();
        let lines: String = keys.iter().map(|k| format!("  {k} [1/1]\n")).collect();
        // A server answers for its WAN pool first, then its datacenter's LAN pool.
        format!("\nWAN:\n{lines}\ndc1 (LAN):\n{lines}")
    };
    let listing = "==> Gathering installed encryption keys...\n";
    let primary = "==> Gathering installed primary encryption keys...\n";
    assert_eq!(list("-list"), format!("{listing}{}", block(&[&old])));

    let out = agent.cli(&["keyring", "-install", &new]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "==> Installing new gossip encryption key...\n");
    assert_eq!(list("-list"), format!("{listing}{}", block(&[&old, &new])));
    assert_eq!(list("-list-primary"), format!("{primary}{}", block(&[&old])));

    let out = agent.cli(&["keyring", &format!("-use={new}")]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "==> Changing primary gossip encryption key...\n");
    assert_eq!(list("-list-primary"), format!("{primary}{}", block(&[&new])));

    let out = agent.cli(&["keyring", "-remove", &old]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "==> Removing gossip encryption key...\n");
    assert_eq!(list("-list"), format!("{listing}{}", block(&[&new])));

    // The primary key cannot be removed: the agent's error, exit 1.
    let out = agent.cli(&["keyring", "-remove", &new]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).starts_with("error: Unexpected response code: "), "{}", stderr(&out));
    assert_eq!(list("-list"), format!("{listing}{}", block(&[&new])));

    // Exactly one action per run.
    let out = agent.cli(&["keyring"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("Usage: consul-rs keyring"), "{}", stderr(&out));
    let out = agent.cli(&["keyring", "-list", "-install", &old]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "Only a single action is allowed\n");
    assert_eq!(stdout(&out), "");
}

/// Without an `encrypt` key there is no keyring: the agent says so and the CLI exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_keyring_without_encryption() {
    let agent = DevAgent::start().await;
    let out = agent.cli(&["keyring", "-list"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
}
