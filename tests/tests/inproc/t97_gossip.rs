//! Gossip in one process: an encrypted server and a client agent. The client forwards KV, DNS
//! and blocking queries to the server; garbage, truncated, plaintext and replayed packets on the
//! gossip port are dropped and counted; a join to nowhere fails clearly; oversized events are
//! refused; a graceful leave deregisters the client.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use consul_core::agent::Agent;
use consul_core::config::{AgentConfig, Ports};
use consul_core::gossip::keyring::{generate_key, Keyring};
use consul_core::gossip::GossipConfig;
use consul_tests::client::Api;
use consul_tests::eventually;
use hickory_proto::rr::RecordType;

fn api(a: &Agent) -> Api {
    Api::new(a.http_addr())
}

async fn stat(api: &Api, key: &str) -> u64 {
    let s = api.get("/v1/agent/self").await.expect("self").json();
    s["Stats"]["serf_lan"][key].as_str().and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t97_client_agent_forwards_and_gossip_input_is_checked() {
    let key = generate_key();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let server = Agent::start(AgentConfig {
        node_name: "srv".into(),
        encrypt: Some(key.clone()),
        sync_coordinate_interval_min: Duration::from_millis(300),
        ..AgentConfig::dev_any_port()
    })
    .await
    .expect("server");
    server.wait_for_leader(Duration::from_secs(10)).await.expect("leader");
    let dir = tempfile::tempdir().expect("tempdir");
    let client = Agent::start(AgentConfig {
        node_name: "cli".into(),
        server: false,
        data_dir: Some(dir.path().to_path_buf()),
        bind_addr: lo,
        client_addr: lo,
        ports: Ports::any(),
        retry_join: vec![server.serf_addr().to_string()],
        retry_interval: Duration::from_millis(200),
        encrypt: Some(key.clone()),
        gossip_lan: GossipConfig::dev(),
        sync_coordinate_interval_min: Duration::from_millis(300),
        ..AgentConfig::default()
    })
    .await
    .expect("client");
    assert!(!client.is_server() && client.consensus().is_none());
    client.wait_for_leader(Duration::from_secs(20)).await.expect("the client reaches a leader");
    let (s, c) = (api(&server), api(&client));

    // Data requests through the client agent are served by the server.
    c.put_ok("fwd/a", "1").await;
    assert_eq!(s.kv_get("fwd/a", "").await.expect("get").kv_value(), Some(b"1".to_vec()));
    let r = c.kv_get("fwd/missing", "").await.expect("get");
    assert_eq!(r.status, 404);
    let r = c.request(reqwest::Method::PUT, "/v1/kv/fwd/big?cas=notanumber", Some(b"x".to_vec())).await.expect("put");
    assert_eq!(r.status, 400, "the server's validation answers through the client: {}", r.text());
    let idx = c.kv_get("fwd/a", "").await.expect("get").index().expect("index");
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move { c.kv_get("fwd/a", &format!("?index={idx}&wait=20s")).await.expect("blocking") })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "the blocking query is held by the server");
    s.put_ok("fwd/a", "2").await;
    let r = tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").expect("join");
    assert_eq!(r.kv_value(), Some(b"2".to_vec()));

    // The client's own node and services reach the catalog, and DNS on the client resolves them.
    let reg = serde_json::json!({"Name": "api", "Port": 9000});
    let r = c
        .request(reqwest::Method::PUT, "/v1/agent/service/register", Some(reg.to_string().into_bytes()))
        .await
        .expect("reg");
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(Duration::from_secs(10), "api on node cli with a passing serfHealth", || {
        let s = s.clone();
        async move {
            let h = s.get("/v1/health/service/api").await.ok()?.json();
            let entry = h.as_array()?.first()?.clone();
            let serf =
                entry["Checks"].as_array()?.iter().any(|c| c["CheckID"] == "serfHealth" && c["Status"] == "passing");
            (entry["Node"]["Node"] == "cli" && serf).then_some(())
        }
    })
    .await;
    let dns = client.dns_addr().expect("dns");
    let answer = consul_tests::dns::ask(dns, "api.service.consul.", RecordType::SRV, None, false).await;
    assert_eq!(answer.answers.len(), 1, "{answer:?}");

    // Probe round trips feed network coordinates, which both agents publish to the catalog.
    eventually(Duration::from_secs(20), "coordinates of both nodes from gossip RTTs", || {
        let s = s.clone();
        async move {
            let nodes = s.get("/v1/coordinate/nodes").await.ok()?.json();
            let names: Vec<&str> = nodes.as_array()?.iter().filter_map(|n| n["Node"].as_str()).collect();
            (names.contains(&"srv") && names.contains(&"cli")).then_some(())
        }
    })
    .await;
    let me = c.get("/v1/agent/self").await.expect("self").json();
    assert!(me["Coord"]["Vec"].as_array().is_some_and(|v| v.len() == 8), "{}", me["Coord"]);

    // Garbage on the gossip port is dropped and counted; the agent keeps serving.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let target: SocketAddr = server.serf_addr();
    let before = stat(&s, "dropped_malformed").await + stat(&s, "dropped_decrypt").await;
    for packet in [&b""[..], b"\x00", b"\x01short", &[0xffu8; 1400], &[0x01; 64]] {
        udp.send_to(packet, target).await.expect("send");
    }
    // Plaintext while encryption is required.
    udp.send_to(b"\xc5\x00\x00garbage", target).await.expect("send");
    // A packet sealed with our key but holding nonsense, sent twice: the copy is a replay.
    let ring = Keyring::new(std::slice::from_ref(&key), None, "").expect("ring");
    let sealed = ring.seal(b"\xc5\x00\x00not a foca message").expect("seal");
    udp.send_to(&sealed, target).await.expect("send");
    udp.send_to(&sealed, target).await.expect("send");
    eventually(Duration::from_secs(5), "drops counted", || {
        let s = s.clone();
        async move {
            let bad = stat(&s, "dropped_malformed").await + stat(&s, "dropped_decrypt").await;
            let plain = stat(&s, "dropped_plaintext").await;
            let replayed = stat(&s, "dropped_replayed").await;
            (bad >= before + 5 && plain >= 1 && replayed >= 1).then_some(())
        }
    })
    .await;
    s.put_ok("still/alive", "yes").await;

    // A join to an address nobody answers fails with a clear message.
    let r = s.request(reqwest::Method::PUT, "/v1/agent/join/127.0.0.1:1", None).await.expect("join");
    assert_eq!(r.status, 500);
    assert!(r.text().contains("failed to join"), "{}", r.text());

    // Events: oversized refused with 413, reserved names with 400; a blocking list on the
    // client wakes for an event fired at the server.
    let r = s.request(reqwest::Method::PUT, "/v1/event/fire/big", Some(vec![b'x'; 513])).await.expect("fire");
    assert_eq!(r.status, 413, "{}", r.text());
    let r = s.request(reqwest::Method::PUT, "/v1/event/fire/_internal", None).await.expect("fire");
    assert_eq!(r.status, 400);
    let r = s.request(reqwest::Method::PUT, "/v1/event/fire/x?node=(", None).await.expect("fire");
    assert_eq!(r.status, 400, "a bad regex is named: {}", r.text());
    let first = c.get("/v1/event/list").await.expect("list");
    let idx = first.index().expect("index");
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move { c.get(&format!("/v1/event/list?index={idx}&wait=20s")).await.expect("list") })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fired =
        s.request(reqwest::Method::PUT, "/v1/event/fire/deploy", Some(b"v1".to_vec())).await.expect("fire").json();
    let got = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("woken").expect("join").json();
    assert_eq!(got.as_array().and_then(|l| l.last()).map(|e| e["ID"].clone()), Some(fired["ID"].clone()));

    // Graceful leave: the server sees `left`, the node leaves the catalog, the client's owner
    // is told to stop.
    let r = c.request(reqwest::Method::PUT, "/v1/agent/leave", None).await.expect("leave");
    assert_eq!(r.status, 200);
    tokio::time::timeout(Duration::from_secs(5), client.left()).await.expect("left() resolves");
    eventually(Duration::from_secs(10), "cli left and deregistered", || {
        let s = s.clone();
        async move {
            let m = s.get("/v1/agent/members").await.ok()?.json();
            let left = m.as_array()?.iter().any(|m| m["Name"] == "cli" && m["Status"] == 3);
            let nodes = s.get("/v1/catalog/nodes").await.ok()?.json();
            let gone = !nodes.as_array()?.iter().any(|n| n["Node"] == "cli");
            (left && gone).then_some(())
        }
    })
    .await;
    client.shutdown().await.expect("client shutdown");
    server.shutdown().await.expect("server shutdown");
}
