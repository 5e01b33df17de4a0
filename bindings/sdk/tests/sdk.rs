//! The SDK facade against a real embedded agent.

use std::time::{Duration, Instant};

use consul_sdk::agent::AgentConfig;
use consul_sdk::runtime::block_on;
use consul_sdk::{
    Client, ClientConfig, Discovery, EmbeddedAgent, ErrorCode, PutOptions, QueryOptions, Strategy, WatchOptions,
    WatchSpec, WatchValue,
};
use serde_json::json;

fn agent() -> (EmbeddedAgent, Client) {
    let agent = EmbeddedAgent::start(AgentConfig::dev_any_port()).expect("start");
    agent.wait_for_leader(Duration::from_secs(10)).expect("leader");
    let client = agent.client().expect("client");
    (agent, client)
}

#[test]
fn kv_round_trip_and_errors() {
    let (mut agent, c) = agent();
    let out = block_on(async move {
        let q = QueryOptions::default();
        assert!(c.kv_put("app/a", "1", &PutOptions::default()).await?);
        assert!(c.kv_put("app/b", &b"\x00\xff"[..], &PutOptions { flags: Some(9), ..PutOptions::default() }).await?);
        let (meta, pair) = c.kv_get("app/b", &q).await?;
        let pair = pair.expect("present");
        assert_eq!(pair.value.as_deref(), Some(&b"\x00\xff"[..]));
        assert_eq!(pair.flags, 9);
        assert!(meta.index >= pair.modify_index && meta.known_leader);
        assert!(!c.kv_put("app/a", "2", &PutOptions { cas: Some(0), ..PutOptions::default() }).await?);
        assert_eq!(c.kv_list("app/", &q).await?.1.len(), 2);
        assert_eq!(c.kv_keys("", Some("/"), &q).await?.1, vec!["app/".to_string()]);
        assert!(c.kv_get("missing", &q).await?.1.is_none());
        assert!(c.kv_delete("app/", true, None).await?);
        assert!(c.kv_list("app/", &q).await?.1.is_empty());
        let bad = c.kv_put("/lead", "x", &PutOptions::default()).await.expect_err("leading slash");
        assert_eq!(bad.code, ErrorCode::InvalidArgument);
        let conflict =
            c.txn(&json!([{"KV": {"Verb": "check-index", "Key": "nope", "Index": 5}}])).await.expect_err("rollback");
        assert_eq!((conflict.code, conflict.http_status), (ErrorCode::Conflict, Some(409)));
        assert!(!c.status_leader().await?.is_empty());
        Ok::<_, consul_sdk::Error>(())
    })
    .expect("runtime");
    out.expect("kv calls");
    agent.shutdown().expect("shutdown");
    agent.shutdown().expect("idempotent");
    assert!(!agent.is_running());
}

#[test]
fn unreachable_agent_is_a_connection_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let c = Client::new(ClientConfig {
        address: format!("127.0.0.1:{port}"),
        timeout: Duration::from_secs(2),
        ..ClientConfig::default()
    })
    .expect("client");
    let e =
        block_on(async move { c.kv_get("k", &QueryOptions::default()).await }).expect("runtime").expect_err("refused");
    assert_eq!(e.code, ErrorCode::Connection, "{e}");
}

#[test]
fn watch_wakes_on_put_and_skips_unchanged_results() {
    let (_agent, c) = agent();
    block_on(async move {
        let w = c.watch(WatchSpec::Key("cfg/feature".into()), WatchOptions::default());
        let first = w.next().await.expect("first").expect("event");
        assert_eq!(first.value, WatchValue::Kv(None), "the first event is the current state");
        let started = Instant::now();
        c.kv_put("cfg/other", "x", &PutOptions::default()).await.expect("put");
        c.kv_put("cfg/feature", "on", &PutOptions::default()).await.expect("put");
        let ev = w.next_timeout(Duration::from_secs(5)).await.expect("woken").expect("event");
        let WatchValue::Kv(Some(pair)) = ev.value else { panic!("unexpected {ev:?}") };
        assert_eq!(pair.value.as_deref(), Some(&b"on"[..]));
        assert!(started.elapsed() < Duration::from_secs(5));
        // Nothing changed: no event.
        assert_eq!(w.next_timeout(Duration::from_millis(300)).await.expect_err("timeout").code, ErrorCode::Timeout);
        w.close();
        assert!(w.next().await.expect("closed").is_none());
    })
    .expect("runtime");
}

#[test]
fn discovery_tracks_health_and_picks_locally() {
    let (_agent, c) = agent();
    block_on(async move {
        for i in 0..4 {
            c.catalog_register(&json!({
                "Node": format!("n{i}"), "Address": format!("10.5.0.{i}"),
                "Service": {"ID": format!("web{i}"), "Service": "web", "Port": 80, "Weights": {"Passing": if i == 0 { 100 } else { 1 }, "Warning": 1}},
                "Check": {"CheckID": format!("c{i}"), "Status": "passing", "ServiceID": format!("web{i}")},
            }))
            .await
            .expect("register");
        }
        let d = Discovery::start(&c, "web", None).expect("discovery");
        d.ready(Duration::from_secs(5)).await.expect("ready");
        assert_eq!(d.instances().len(), 4);
        let rr: std::collections::HashSet<String> =
            (0..4).map(|_| d.pick(Strategy::RoundRobin, None).expect("pick").expect("some").service.id).collect();
        assert_eq!(rr.len(), 4, "round robin visits every instance");
        let sticky = d.pick(Strategy::ConsistentHash, Some("user-42")).expect("pick").expect("some").service.id;
        for _ in 0..10 {
            assert_eq!(d.pick(Strategy::ConsistentHash, Some("user-42")).expect("pick").expect("some").service.id, sticky);
        }
        let heavy = (0..200).filter(|_| d.pick(Strategy::Weighted, None).ok().flatten().is_some_and(|e| e.service.id == "web0")).count();
        assert!(heavy > 150, "weights are honoured ({heavy}/200)");
        assert_eq!(d.pick(Strategy::ConsistentHash, None).expect_err("needs key").code, ErrorCode::InvalidArgument);
        // Another instance going critical leaves the sticky pick alone and drops out of the set.
        let victim = if sticky == "web1" { 2 } else { 1 };
        c.catalog_register(&json!({
            "Node": format!("n{victim}"), "Address": format!("10.5.0.{victim}"),
            "Check": {"CheckID": format!("c{victim}"), "Status": "critical", "ServiceID": format!("web{victim}")},
        }))
        .await
        .expect("flip");
        let deadline = Instant::now() + Duration::from_secs(5);
        while d.instances().len() != 3 {
            assert!(Instant::now() < deadline, "discovery did not drop the critical instance");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(d.pick(Strategy::ConsistentHash, Some("user-42")).expect("pick").expect("some").service.id, sticky);
        assert!(Strategy::parse("bogus").is_err());
    })
    .expect("runtime");
}

/// Issue #20: without a locality of its own, a `locality` pick takes the local agent's (its
/// `locality` config, read from its node's catalog entry): its zone first, then its region.
#[test]
fn locality_picks_default_to_the_agent_locality() {
    let mut config = AgentConfig::dev_any_port();
    config.locality = Some(consul_core::state::ext_fields::Locality { region: "eu".into(), zone: "eu-a".into() });
    let agent = EmbeddedAgent::start(config).expect("start");
    agent.wait_for_leader(Duration::from_secs(10)).expect("leader");
    let c = agent.client().expect("client");
    block_on(async move {
        let at = |node: &str, status: &str, region: &str, zone: &str| {
            json!({
                "Node": node, "Address": "10.5.1.1",
                "Service": {"ID": "db", "Service": "db", "Port": 5432, "Locality": {"Region": region, "Zone": zone}},
                "Check": {"CheckID": format!("c-{node}"), "Status": status, "ServiceID": "db"},
            })
        };
        for (node, region, zone) in [("z", "eu", "eu-a"), ("r", "eu", "eu-b"), ("o", "us", "us-a")] {
            c.catalog_register(&at(node, "passing", region, zone)).await.expect("register");
        }
        let d = Discovery::start(&c, "db", None).expect("discovery");
        d.ready(Duration::from_secs(5)).await.expect("ready");
        // The leader may register the agent's node a moment before the agent's sync adds its
        // locality; the discovery asks again on its refresh tick (5 s).
        let want = consul_sdk::Locality { region: "eu".into(), zone: "eu-a".into() };
        let deadline = Instant::now() + Duration::from_secs(15);
        while d.caller_locality().as_ref() != Some(&want) {
            assert!(Instant::now() < deadline, "the agent's locality was never read");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pick = || d.pick(Strategy::Locality, None).expect("pick").expect("some").node.node;
        assert!((0..10).all(|_| pick() == "z"));
        assert_eq!(
            d.ring_of(&d.instances().into_iter().find(|e| e.node.node == "o").expect("o")),
            consul_sdk::Ring::Any
        );
        c.catalog_register(&at("z", "critical", "eu", "eu-a")).await.expect("flip");
        let deadline = Instant::now() + Duration::from_secs(5);
        while d.instances().len() != 2 {
            assert!(Instant::now() < deadline, "discovery did not drop the critical instance");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!((0..10).all(|_| pick() == "r"), "the region takes over, not another region");
    })
    .expect("runtime");
    drop(agent);
}

#[test]
fn blocking_calls_refuse_inside_a_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
    rt.block_on(async {
        let e = block_on(async { 1 }).expect_err("would deadlock");
        assert_eq!(e.code, ErrorCode::WouldDeadlock);
        let e = EmbeddedAgent::start(AgentConfig::dev_any_port()).expect_err("would deadlock");
        assert_eq!(e.code, ErrorCode::WouldDeadlock);
    });
}

/// An embedded agent dropped, or shut down, on a thread that runs an async runtime stops
/// cleanly (tokio panics when a runtime is blocked on or shut down there, so the SDK must not do
/// either on that thread).
#[test]
fn an_agent_dropped_or_stopped_inside_a_runtime_stops_without_panicking() {
    let serving = |addr: std::net::SocketAddr| std::net::TcpStream::connect(addr).is_ok();
    let dropped = EmbeddedAgent::start(AgentConfig::dev_any_port()).expect("agent");
    let mut stopped = EmbeddedAgent::start(AgentConfig::dev_any_port()).expect("agent");
    let (a, b) = (dropped.http_addr(), stopped.http_addr());
    assert!(serving(a) && serving(b));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    rt.block_on(async move {
        drop(dropped);
        stopped.shutdown().expect("shutdown inside a runtime");
        stopped.shutdown().expect("and again: idempotent");
    });
    assert!(!serving(a), "the dropped agent's HTTP listener is closed");
    assert!(!serving(b), "the stopped agent's HTTP listener is closed");
}

#[test]
fn lock_options_are_validated_before_any_request() {
    // Consul's session TTL range is 10 s to 24 h; refused locally, naming the argument.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let c =
        Client::new(ClientConfig { address: format!("127.0.0.1:{port}"), ..ClientConfig::default() }).expect("client");
    let out = block_on(async move {
        let short = consul_sdk::LockOptions { ttl: Duration::from_secs(1), ..Default::default() };
        let e1 = consul_sdk::Lock::acquire(&c, "k", short).await.expect_err("ttl too short");
        let e2 = consul_sdk::Lock::acquire(&c, "", Default::default()).await.expect_err("empty key");
        (e1, e2)
    })
    .expect("runtime");
    assert_eq!(out.0.code, ErrorCode::InvalidArgument);
    assert!(out.0.message.starts_with("ttl"));
    assert_eq!(out.1.code, ErrorCode::InvalidArgument);
}

#[test]
fn registration_against_an_unreachable_agent_fails_cleanly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let c = Client::new(ClientConfig {
        address: format!("127.0.0.1:{port}"),
        timeout: Duration::from_secs(2),
        ..ClientConfig::default()
    })
    .expect("client");
    let reg = consul_sdk::ServiceRegistration { name: "web".into(), ..Default::default() };
    let e = block_on(async move { consul_sdk::Registration::start(&c, reg).await.map(|_| ()) })
        .expect("runtime")
        .expect_err("nothing listens");
    assert_eq!(e.code, ErrorCode::Connection);
}

/// Consul's lock recipe over `/v1/session/create` + `PUT /v1/kv/:key?acquire=` / `?release=`.
#[test]
fn lock_is_exclusive_and_released() {
    let (mut agent, c) = agent();
    let out = block_on(async move {
        // In Consul the agent's node is always in the catalog; sessions need it.
        let me = c.agent_self().await?["Config"]["NodeName"].as_str().unwrap_or_default().to_string();
        c.catalog_register(&json!({"Node": me, "Address": "127.0.0.1"})).await?;
        let opts = || consul_sdk::LockOptions {
            value: "holder".into(),
            lock_delay: Some(Duration::ZERO),
            ..Default::default()
        };
        let first = consul_sdk::Lock::acquire(&c, "locks/a", opts()).await?;
        assert!(first.is_held());
        let (_, pair) = c.kv_get("locks/a", &QueryOptions::default()).await?;
        let pair = pair.expect("locked key");
        assert_eq!((pair.session.as_deref(), pair.lock_index), (Some(first.session()), 1));
        let waited = consul_sdk::LockOptions { wait: Some(Duration::from_millis(500)), ..opts() };
        let refused = consul_sdk::Lock::acquire(&c, "locks/a", waited).await.expect_err("held elsewhere");
        assert_eq!(refused.code, ErrorCode::Timeout);
        let c2 = c.clone();
        let second = tokio::spawn(async move { consul_sdk::Lock::acquire(&c2, "locks/a", opts()).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.release().await?;
        first.release().await?; // idempotent
        assert!(!first.is_held());
        let second = tokio::time::timeout(Duration::from_secs(10), second)
            .await
            .map_err(|_| consul_sdk::Error::new(ErrorCode::Timeout, "second acquire"))?
            .map_err(|e| consul_sdk::Error::new(ErrorCode::Internal, e.to_string()))??;
        assert!(second.is_held());
        second.release().await?;
        let (_, pair) = c.kv_get("locks/a", &QueryOptions::default()).await?;
        assert_eq!(pair.expect("key stays").session, None);
        Ok::<_, consul_sdk::Error>(())
    })
    .expect("runtime");
    out.expect("lock calls");
    agent.shutdown().expect("shutdown");
}

/// Sets `node`'s LAN coordinate to `x` seconds from the origin along one axis.
async fn put_coordinate(http: &str, node: &str, x: f64) {
    let body = json!({"Node": node, "Coord": {"Vec": [x, 0, 0, 0, 0, 0, 0, 0], "Error": 0.2, "Adjustment": 0, "Height": 1e-5}});
    // Never `reqwest::Client::new()`: without a ready-made TLS configuration it panics.
    let resp = reqwest::Client::builder()
        .tls_backend_preconfigured(consul_core::tls::plain_client_tls())
        .build()
        .expect("reqwest client")
        .put(format!("{http}/v1/coordinate/update"))
        .body(body.to_string())
        .send()
        .await
        .expect("coordinate update");
    assert!(resp.status().is_success(), "coordinate update: {}", resp.status());
}

#[test]
fn nearest_follows_network_coordinates() {
    let (agent, c) = agent();
    let me = agent.node_name().to_string();
    let http = format!("http://{}", agent.http_addr());
    block_on(async move {
        // Node names against their distance, so name order is not RTT order.
        let nodes = [("na", 0.2), ("nb", 0.05), ("nc", 0.005)];
        for (n, _) in nodes {
            c.catalog_register(
                &json!({"Node": n, "Address": "10.6.0.1", "Service": {"ID": "db", "Service": "db", "Port": 5432}}),
            )
            .await
            .expect("register");
        }
        let before = Discovery::start(&c, "db", None).expect("discovery");
        before.ready(Duration::from_secs(5)).await.expect("ready");
        let pick = |d: &Discovery| d.pick(Strategy::Nearest, None).expect("pick").expect("some").node.node;
        let seen: std::collections::HashSet<String> = (0..3).map(|_| pick(&before)).collect();
        assert_eq!(seen.len(), 3, "no coordinates: round-robin");
        // Coordinates arrive (the agent's own at the origin); the running discovery re-reads the
        // order within its refresh period.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for (n, x) in nodes.iter().copied().chain([(me.as_str(), 0.0)]) {
                put_coordinate(&http, n, x).await;
            }
            if (0..3).all(|_| pick(&before) == "nc") {
                break;
            }
            assert!(Instant::now() < deadline, "nearest did not settle on the nearest node");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let order: Vec<String> = before.instances().into_iter().map(|e| e.node.node).collect();
        assert_eq!(order, ["nc", "nb", "na"], "instances come nearest first");
        // A discovery started now has the order at once.
        let after = Discovery::start(&c, "db", None).expect("discovery");
        after.ready(Duration::from_secs(5)).await.expect("ready");
        assert_eq!(pick(&after), "nc");
        assert_eq!(after.pick(Strategy::RoundRobin, None).expect("pick").expect("some").node.node, "nc");
        assert_eq!(after.pick(Strategy::RoundRobin, None).expect("pick").expect("some").node.node, "nb");
    })
    .expect("runtime");
}

#[test]
fn agent_services_and_checks_list_what_the_agent_holds() {
    use consul_sdk::{CheckDefinition, CheckKind, ServiceRegistration};
    let (mut agent, c) = agent();
    let out = block_on(async move {
        let reg = ServiceRegistration {
            id: Some("web-1".into()),
            name: "web".into(),
            port: Some(8080),
            tags: vec!["v1".into()],
            checks: vec![CheckDefinition {
                kind: CheckKind::Ttl { ttl: Duration::from_secs(30) },
                interval: None,
                timeout: None,
                deregister_critical_after: None,
            }],
            ..ServiceRegistration::default()
        };
        c.service_register(&reg).await?;
        let services = c.agent_services().await?;
        let web = services.get("web-1").expect("listed by instance ID");
        assert_eq!((web.service.as_str(), web.port, web.tags.clone()), ("web", 8080, vec!["v1".to_string()]));
        let checks = c.agent_checks().await?;
        let check = checks.get("service:web-1").expect("listed by check ID");
        assert_eq!((check.service_id.as_str(), check.status.as_str()), ("web-1", "critical"));
        c.service_deregister("web-1").await?;
        assert!(c.agent_services().await?.is_empty() && c.agent_checks().await?.is_empty());
        Ok::<_, consul_sdk::Error>(())
    })
    .expect("runtime");
    out.expect("agent calls");
    agent.shutdown().expect("shutdown");
}

#[test]
fn closing_a_registration_during_a_ttl_round_does_not_register_it_again() {
    use consul_sdk::{CheckDefinition, CheckKind, Registration, ServiceRegistration};
    let (mut agent, c) = agent();
    let out = block_on(async move {
        for i in 0..8u64 {
            let reg = ServiceRegistration {
                name: "flappy".into(),
                checks: vec![CheckDefinition {
                    kind: CheckKind::Ttl { ttl: Duration::from_millis(300) },
                    interval: None,
                    timeout: None,
                    deregister_critical_after: None,
                }],
                ..ServiceRegistration::default()
            };
            let r = Registration::start(&c, reg).await?;
            // Close at different points of the keep-alive's 100 ms rounds.
            tokio::time::sleep(Duration::from_millis(100 + i * 12)).await;
            r.close().await?;
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert!(c.agent_services().await?.is_empty(), "round {i}: registered again after close");
        }
        Ok::<_, consul_sdk::Error>(())
    })
    .expect("runtime");
    out.expect("registrations");
    agent.shutdown().expect("shutdown");
}

/// The configuration's `watches` run in an embedded agent too: a key watch's script runs once
/// at start and once per change, and stops with the agent.
#[test]
fn embedded_agent_runs_config_watches() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("runs");
    let script = format!("printf 'run %s\\n' \"$CONSUL_INDEX\" >> '{}'", out.display());
    let config = consul_sdk::agent::with_config_keys(
        AgentConfig::dev_any_port(),
        &json!({"watches": [{"type": "key", "key": "emb/k", "args": ["sh", "-c", script]}]}),
    )
    .expect("config");
    let mut agent = EmbeddedAgent::start(config).expect("start");
    agent.wait_for_leader(Duration::from_secs(10)).expect("leader");
    let c = agent.client().expect("client");
    let runs = || std::fs::read_to_string(&out).unwrap_or_default().lines().count();
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while runs() < n {
            assert!(Instant::now() < deadline, "{} runs, waiting for {n}", runs());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(1);
    for (i, v) in ["a", "b"].iter().enumerate() {
        let c = c.clone();
        block_on(async move { c.kv_put("emb/k", *v, &PutOptions::default()).await }).expect("runtime").expect("put");
        wait_for(i + 2);
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(runs(), 3);
    agent.shutdown().expect("shutdown");
}

#[test]
fn prepared_queries_create_execute_and_delete() {
    let (mut agent, c) = agent();
    let out = block_on(async move {
        let q = QueryOptions::default();
        c.catalog_register(&json!({"Node": "n1", "Address": "10.9.0.1", "Service": {"Service": "db", "Port": 1}}))
            .await?;
        let id = c.query_create(&json!({"Name": "db", "Service": {"Service": "db"}})).await?;
        assert_eq!(c.query_get(&id, &q).await?.1.expect("stored")["Name"], "db");
        assert_eq!(c.query_list(&q).await?.1.len(), 1);
        let r = c.query_execute("db", 1, Some("_agent")).await?;
        assert_eq!(r["Nodes"][0]["Node"]["Node"], "n1");
        c.query_update(&id, &json!({"Name": "db2", "Service": {"Service": "db"}})).await?;
        assert!(c.query_execute("db", 0, None).await.is_err(), "renamed");
        let bad = c.query_create(&json!({"Name": "x", "Service": {}})).await.expect_err("no service");
        assert_eq!(bad.http_status, Some(400));
        c.query_delete(&id).await?;
        assert!(c.query_get(&id, &q).await?.1.is_none());
        Ok::<_, consul_sdk::Error>(())
    })
    .expect("runtime");
    out.expect("query calls");
    agent.shutdown().expect("shutdown");
}
