//! A datacenter of real processes formed by gossip: 3 servers and 3 client agents on their own
//! loopback addresses, one `-retry-join` address, an encryption key. Failure detection into the
//! catalog, session invalidation, graceful leave, a server restart, a wrong key, user events and
//! the client agents' forwarding (KV, catalog, DNS).

use std::time::{Duration, Instant};

use consul_core::gossip::GossipConfig;
use consul_tests::eventually;
use consul_tests::process::Datacenter;
use serde_json::{json, Value};

const SERVERS: usize = 3;
const CLIENTS: usize = 3;

fn members_by_status(v: &Value) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| (m["Name"].as_str().unwrap_or_default().to_string(), m["Status"].as_i64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

async fn serf_health(api: &consul_tests::client::Api, node: &str) -> Option<String> {
    let checks = api.get(&format!("/v1/health/node/{node}")).await.ok()?.json();
    checks
        .as_array()?
        .iter()
        .find(|c| c["CheckID"] == "serfHealth")
        .and_then(|c| c["Status"].as_str().map(String::from))
}

/// How long an event may take to reach every agent. Broadcasts are piggybacked a bounded number of
/// times (memberlist's `retransmit_mult × ⌈log10(n+1)⌉`, 4 in a pool of six), so now and then one
/// member misses all copies; the event then reaches it through the push/pull exchange, which
/// carries recent events and runs every 30 s. One push/pull period plus margin is the guarantee.
const EVENT_DELIVERY: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_three_servers_three_clients_one_datacenter() {
    let key = consul_core::gossip::keyring::generate_key();
    let mut dc = Datacenter::start(SERVERS, CLIENTS, Some(&key)).await;
    let n = SERVERS + CLIENTS;

    // Every agent lists all six as alive, clients included.
    for i in 0..n {
        let api = dc.api(i);
        eventually(Duration::from_secs(30), &format!("agent {i} sees {n} alive members"), || {
            let api = api.clone();
            async move {
                let m = api.get("/v1/agent/members").await.ok()?.json();
                let list = members_by_status(&m);
                (list.len() == n && list.iter().all(|(_, s)| *s == 1)).then_some(())
            }
        })
        .await;
    }
    // `consul-rs members` on a client agent lists all six.
    let out = dc.cli(SERVERS, &["members"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = consul_tests::process::stdout(&out);
    let rows: Vec<&str> = text.lines().skip(1).filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(rows.len(), n, "{text}");
    assert!(rows.iter().all(|r| r.contains(" alive ")), "{text}");
    assert_eq!(rows.iter().filter(|r| r.contains(" server ")).count(), SERVERS, "{text}");
    assert_eq!(rows.iter().filter(|r| r.contains(" client ")).count(), CLIENTS, "{text}");
    let members = dc.api(SERVERS).get("/v1/agent/members").await.expect("members").json();
    let roles: Vec<&str> =
        members.as_array().expect("array").iter().filter_map(|m| m["Tags"]["role"].as_str()).collect();
    assert_eq!(roles.iter().filter(|r| **r == "consul").count(), SERVERS);
    assert_eq!(roles.iter().filter(|r| **r == "node").count(), CLIENTS);
    let self_info = dc.api(SERVERS).get("/v1/agent/self").await.expect("self").json();
    assert_eq!(self_info["Config"]["Server"], false);
    assert_eq!(self_info["Stats"]["serf_lan"]["encrypted"], "true");

    // Client agents forward KV reads and writes to the servers.
    let (c0, c1, c2) = (dc.api(SERVERS), dc.api(SERVERS + 1), dc.api(SERVERS + 2));
    c0.put_ok("gossip/k", "from-client0").await;
    assert_eq!(c1.kv_get("gossip/k", "").await.expect("get").kv_value(), Some(b"from-client0".to_vec()));
    // A blocking query through a client agent wakes on a write through another.
    let idx = c1.kv_get("gossip/k", "").await.expect("get").index().expect("index");
    let waiter = {
        let c1 = c1.clone();
        tokio::spawn(
            async move { c1.kv_get("gossip/k", &format!("?index={idx}&wait=30s")).await.expect("blocking get") },
        )
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    c2.put_ok("gossip/k", "from-client2").await;
    let woke = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("woken").expect("join");
    assert_eq!(woke.kv_value(), Some(b"from-client2".to_vec()));

    // Services registered on a client agent reach the catalog (anti-entropy over RPC), with the
    // leader's serfHealth on every node.
    let reg = json!({"Name": "web", "ID": "web-c0", "Port": 8080});
    let r = c0
        .request(reqwest::Method::PUT, "/v1/agent/service/register", Some(reg.to_string().into_bytes()))
        .await
        .expect("register");
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(Duration::from_secs(60), "web on client0 in the catalog, serfHealth everywhere", || {
        let api = dc.api(1);
        async move {
            let svc = api.get("/v1/catalog/service/web").await.ok()?.json();
            let ok = svc.as_array()?.iter().any(|s| s["Node"] == "client0" && s["Address"] == Datacenter::ip(SERVERS));
            let checks = api.get("/v1/health/state/passing").await.ok()?.json();
            let serf = checks.as_array()?.iter().filter(|c| c["CheckID"] == "serfHealth").count();
            (ok && serf == n).then_some(())
        }
    })
    .await;
    // DNS through a client agent: the query is answered by a server.
    let dns = std::net::SocketAddr::from(([127, 0, 0, 1], dc.ports(SERVERS + 1).dns));
    let answer =
        consul_tests::dns::ask(dns, "web.service.consul.", hickory_proto::rr::RecordType::A, None, false).await;
    assert_eq!(answer.answers.len(), 1, "{answer:?}");

    // A session on client2 (default check serfHealth) holds a lock.
    let session = c2
        .request(
            reqwest::Method::PUT,
            "/v1/session/create",
            Some(json!({"Node": "client2", "LockDelay": "0s"}).to_string().into_bytes()),
        )
        .await
        .expect("session")
        .json()["ID"]
        .as_str()
        .expect("id")
        .to_string();
    let r = c2.kv_put("locks/leader", "client2", &format!("?acquire={session}")).await.expect("acquire");
    assert_eq!(r.text().trim(), "true");

    // Events reach every agent exactly once.
    let fired = c0
        .request(reqwest::Method::PUT, "/v1/event/fire/deploy?service=web", Some(b"v2".to_vec()))
        .await
        .expect("fire");
    assert_eq!(fired.status, 200, "{}", fired.text());
    let id = fired.json()["ID"].as_str().expect("id").to_string();
    for i in 0..n {
        let api = dc.api(i);
        let id = id.clone();
        // Only client0 runs `web`: the service filter keeps it off every other agent's list.
        let expect = usize::from(i == SERVERS);
        let list = eventually(Duration::from_secs(10), &format!("agent {i} received the event"), || {
            let api = api.clone();
            async move {
                let l = api.get("/v1/event/list?name=deploy").await.ok()?.json();
                // Every agent must have had time to receive it: check the unfiltered view too.
                Some(l)
            }
        })
        .await;
        let copies = list.as_array().expect("array").iter().filter(|e| e["ID"] == id.as_str()).count();
        if expect == 1 {
            let l = eventually(EVENT_DELIVERY, "client0 lists the event", || {
                let api = api.clone();
                let id = id.clone();
                async move {
                    let l = api.get("/v1/event/list?name=deploy").await.ok()?.json();
                    l.as_array()?.iter().any(|e| e["ID"] == id.as_str()).then_some(l)
                }
            })
            .await;
            assert_eq!(l.as_array().expect("array").iter().filter(|e| e["ID"] == id.as_str()).count(), 1);
            assert_eq!(l[0]["Payload"], "djI=");
        } else {
            assert_eq!(copies, 0, "agent {i} is not a target of the event");
        }
    }
    let everyone = c1.request(reqwest::Method::PUT, "/v1/event/fire/hello", None).await.expect("fire").json()["ID"]
        .as_str()
        .expect("id")
        .to_string();
    for i in 0..n {
        let api = dc.api(i);
        let id = everyone.clone();
        eventually(EVENT_DELIVERY, &format!("agent {i} got the unfiltered event once"), || {
            let api = api.clone();
            let id = id.clone();
            async move {
                let l = api.get("/v1/event/list?name=hello").await.ok()?.json();
                (l.as_array()?.iter().filter(|e| e["ID"] == id.as_str()).count() == 1).then_some(())
            }
        })
        .await;
    }

    // By now `deploy` (fired first) has spread too: still listed only where it is addressed.
    for i in (0..n).filter(|i| *i != SERVERS) {
        let l = dc.api(i).get("/v1/event/list?name=deploy").await.expect("list").json();
        assert_eq!(l.as_array().map(Vec::len), Some(0), "agent {i} is not a target of `deploy`: {l}");
    }

    // Key rotation across the datacenter without downtime: install, use, remove the old key.
    let new_key = consul_core::gossip::keyring::generate_key();
    for args in [
        vec!["keyring", "-install", new_key.as_str()],
        vec!["keyring", "-use", new_key.as_str()],
        vec!["keyring", "-remove", key.as_str()],
    ] {
        let out = dc.cli(SERVERS, &args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            consul_tests::process::stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = dc.cli(1, &["keyring", "-list"]);
    let listing = consul_tests::process::stdout(&out);
    assert!(listing.contains(&format!("{new_key} [{n}/{n}]")), "{listing}");
    assert!(!listing.contains(&key), "the old key is gone everywhere: {listing}");
    c2.put_ok("gossip/after-rotation", "ok").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..n {
        let m = dc.api(i).get("/v1/agent/members").await.expect("members").json();
        assert!(members_by_status(&m).iter().all(|(_, s)| *s == 1), "agent {i} after rotation: {m}");
    }

    // kill -9 client2: failed in the catalog within the detection bound, its lock released.
    let killed_at = Instant::now();
    dc.kill9(SERVERS + 2);
    let leader_api = dc.api(0);
    eventually(Duration::from_secs(30), "client2's serfHealth critical", || {
        let api = leader_api.clone();
        async move { (serf_health(&api, "client2").await? == "critical").then_some(()) }
    })
    .await;
    let detected = killed_at.elapsed();
    let bound = GossipConfig::lan().detection_bound(n) + Duration::from_secs(4);
    assert!(detected <= bound, "client2 marked critical after {detected:?}, bound {bound:?}");
    eprintln!("kill -9 → serfHealth critical in {detected:?} (bound {bound:?})");
    eventually(Duration::from_secs(10), "the lock held by client2's session is released", || {
        let api = leader_api.clone();
        async move {
            let r = api.kv_get("locks/leader", "").await.ok()?;
            r.json()[0]["Session"].is_null().then_some(())
        }
    })
    .await;
    for i in [0, 1, SERVERS] {
        let api = dc.api(i);
        eventually(Duration::from_secs(10), &format!("agent {i} lists client2 as failed"), || {
            let api = api.clone();
            async move {
                let members = api.get("/v1/agent/members").await.ok()?.json();
                members_by_status(&members).contains(&("client2".to_string(), 4)).then_some(())
            }
        })
        .await;
    }

    // Graceful leave (SIGINT: client agents leave on interrupt): deregistered, listed as left.
    let status = dc.interrupt(SERVERS + 1).expect("client1 exited");
    assert!(status.success(), "client1 exit status {status:?}");
    eventually(Duration::from_secs(20), "client1 deregistered and left", || {
        let api = leader_api.clone();
        async move {
            let nodes = api.get("/v1/catalog/nodes").await.ok()?.json();
            let gone = !nodes.as_array()?.iter().any(|n| n["Node"] == "client1");
            let members = api.get("/v1/agent/members").await.ok()?.json();
            (gone && members_by_status(&members).contains(&("client1".to_string(), 3))).then_some(())
        }
    })
    .await;

    // A server killed and restarted rejoins: alive again, three voters.
    dc.kill9(2);
    eventually(Duration::from_secs(30), "server2 seen failed", || {
        let api = leader_api.clone();
        async move {
            let members = api.get("/v1/agent/members").await.ok()?.json();
            members_by_status(&members).contains(&("server2".to_string(), 4)).then_some(())
        }
    })
    .await;
    dc.restart(2);
    eventually(Duration::from_secs(30), "server2 alive and a voter again", || {
        let api = leader_api.clone();
        async move {
            let members = api.get("/v1/agent/members").await.ok()?.json();
            let alive = members_by_status(&members).contains(&("server2".to_string(), 1));
            let peers = api.get("/v1/status/peers").await.ok()?.json();
            (alive && peers.as_array()?.len() == SERVERS && serf_health(&api, "server2").await? == "passing")
                .then_some(())
        }
    })
    .await;

    // An agent with the wrong key cannot join, and its log says why.
    let intruder = dc.add_slot();
    let wrong = consul_core::gossip::keyring::generate_key();
    dc.spawn(intruder, Some(&wrong));
    let intruder_log = eventually(Duration::from_secs(20), "the intruder logs why it cannot join", || {
        let log = dc.log(intruder);
        async move { (log.contains("join failed") && log.contains("key")).then_some(log) }
    })
    .await;
    assert!(intruder_log.contains("decrypt") || intruder_log.contains("key"), "{intruder_log}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let members = dc.api(0).get("/v1/agent/members").await.expect("members").json();
    assert!(
        !members_by_status(&members).iter().any(|(name, _)| name == &dc.name(intruder)),
        "the intruder got in: {members}"
    );
    let theirs = dc.api(intruder).get("/v1/agent/members").await.expect("members").json();
    assert_eq!(members_by_status(&theirs).len(), 1, "the intruder sees only itself: {theirs}");
    assert!(dc.log(0).contains("rejected"), "the server logs the rejected push/pull");

    // A server that leaves gracefully is removed from the Raft configuration.
    let r = dc.api(2).request(reqwest::Method::PUT, "/v1/agent/leave", None).await.expect("leave");
    assert_eq!(r.status, 200);
    eventually(Duration::from_secs(30), "server2 left and out of the raft configuration", || {
        let api = leader_api.clone();
        async move {
            let peers = api.get("/v1/status/peers").await.ok()?.json();
            let members = api.get("/v1/agent/members").await.ok()?.json();
            (peers.as_array()?.len() == SERVERS - 1
                && members_by_status(&members).contains(&("server2".to_string(), 3)))
            .then_some(())
        }
    })
    .await;
}
