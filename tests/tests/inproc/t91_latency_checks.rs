//! Service-quality health (issue #21): `LatencyWarning` / `LatencyCritical` on checks. A local
//! HTTP service whose response delay the test controls moves its check passing → warning →
//! critical → passing, with outputs naming the measured latency and the threshold crossed, and
//! `?passing` and DNS follow. Bad thresholds are a 400 naming the field and register nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use consul_tests::client::Api;
use consul_tests::eventually;
use consul_tests::inproc::Cluster;
use hickory_proto::rr::{RData, RecordType};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Answers every request with 200 after `delay_ms`.
async fn slow_server(delay_ms: Arc<AtomicU64>) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            let delay = Duration::from_millis(delay_ms.load(Ordering::SeqCst));
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                tokio::time::sleep(delay).await;
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
            });
        }
    });
    (port, task)
}

async fn check(api: &Api, id: &str) -> Value {
    api.get("/v1/agent/checks").await.expect("checks").json()[id].clone()
}

async fn wait_status(api: &Api, id: &str, status: &str) -> Value {
    eventually(Duration::from_secs(30), &format!("{id} {status}"), || async {
        let c = check(api, id).await;
        (c["Status"] == status).then_some(c)
    })
    .await
}

async fn dns_answers(c: &Cluster, name: &str) -> usize {
    let dns = c.agent(0).dns_addr().expect("dns enabled");
    let m = consul_tests::dns::ask(dns, name, RecordType::A, None, false).await;
    m.answers.iter().filter(|r| matches!(r.data, RData::A(_))).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t91_latency_thresholds_move_a_check_and_discovery_follows() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    let delay = Arc::new(AtomicU64::new(0));
    let (port, server) = slow_server(delay.clone()).await;
    let reg = json!({"Name": "slow", "ID": "slow1", "Port": port, "Address": "127.0.0.1", "Check": {
        "HTTP": format!("http://127.0.0.1:{port}/health"), "Interval": "1s", "Timeout": "5s",
        "LatencyWarning": "400ms", "LatencyCritical": "1500ms",
    }});
    let r = api.request(Method::PUT, "/v1/agent/service/register", Some(reg.to_string().into_bytes())).await.expect("put");
    assert_eq!(r.status, 200, "{}", r.text());
    let id = "service:slow1";
    let passing = wait_status(&api, id, "passing").await;
    assert!(!passing["Output"].as_str().unwrap_or("").contains("latency"), "{passing}");
    // The thresholds are part of the check's definition, in the catalog too.
    let rows = api.get("/v1/health/checks/slow").await.expect("checks").json();
    assert_eq!(rows[0]["Definition"]["LatencyWarning"], "400ms", "{rows}");
    assert_eq!(rows[0]["Definition"]["LatencyCritical"], "1.5s", "{rows}");

    delay.store(800, Ordering::SeqCst);
    let warning = wait_status(&api, id, "warning").await;
    let out = warning["Output"].as_str().unwrap_or("").to_string();
    assert!(out.contains("200 OK, latency ") && out.contains(" > warning 400ms"), "{out}");
    // `?passing` leaves a warning instance out; DNS (only_passing off) still answers it.
    eventually(Duration::from_secs(10), "?passing leaves the warning instance out", || async {
        let l = api.get("/v1/health/service/slow?passing").await.ok()?.json();
        (l.as_array()?.is_empty()).then_some(())
    })
    .await;
    assert_eq!(dns_answers(&c, "slow.service.consul.").await, 1);

    delay.store(2000, Ordering::SeqCst);
    let critical = wait_status(&api, id, "critical").await;
    assert!(critical["Output"].as_str().unwrap_or("").contains(" > critical 1.5s"), "{critical}");
    eventually(Duration::from_secs(10), "DNS leaves the critical instance out", || async {
        (dns_answers(&c, "slow.service.consul.").await == 0).then_some(())
    })
    .await;

    delay.store(0, Ordering::SeqCst);
    wait_status(&api, id, "passing").await;
    eventually(Duration::from_secs(10), "?passing answers it again", || async {
        let l = api.get("/v1/health/service/slow?passing").await.ok()?.json();
        (l.as_array()?.len() == 1).then_some(())
    })
    .await;
    assert_eq!(dns_answers(&c, "slow.service.consul.").await, 1);
    server.abort();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t91_bad_latency_thresholds_are_refused_by_name() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    for (check, want) in [
        (json!({"TTL": "10s", "LatencyWarning": "1s"}), "LatencyWarning applies only to HTTP, TCP, UDP and gRPC"),
        (json!({"TCP": "127.0.0.1:1", "Interval": "1s", "LatencyCritical": "fast"}), "Invalid LatencyCritical"),
        (
            json!({"TCP": "127.0.0.1:1", "Interval": "1s", "LatencyWarning": "2s", "LatencyCritical": "1s"}),
            "LatencyWarning (2s) must be shorter than LatencyCritical (1s)",
        ),
    ] {
        let reg = json!({"Name": "bad", "Check": check});
        let r = api.request(Method::PUT, "/v1/agent/service/register", Some(reg.to_string().into_bytes())).await.expect("put");
        assert_eq!(r.status, 400, "{reg}: {}", r.text());
        assert!(r.text().contains(want), "{reg}: {}", r.text());
    }
    let services = api.get("/v1/agent/services").await.expect("services").json();
    assert!(services.get("bad").is_none(), "nothing registered: {services}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t91_udp_latency_is_judged_only_on_replies() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    // One service echoes after 600 ms; the other never answers (Consul counts silence as passing).
    let echo = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let echo_addr = echo.local_addr().expect("addr");
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let echo_task = tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            tokio::time::sleep(Duration::from_millis(600)).await;
            let _ = echo.send_to(&buf[..n], from).await;
        }
    });
    let reg = json!({"Name": "udp", "Checks": [
        {"UDP": echo_addr.to_string(), "Interval": "1s", "Timeout": "3s", "LatencyWarning": "300ms"},
        {"UDP": silent_addr.to_string(), "Interval": "1s", "Timeout": "1s", "LatencyWarning": "300ms"},
    ]});
    let r = api.request(Method::PUT, "/v1/agent/service/register", Some(reg.to_string().into_bytes())).await.expect("put");
    assert_eq!(r.status, 200, "{}", r.text());
    let slow = wait_status(&api, "service:udp:1", "warning").await;
    assert!(slow["Output"].as_str().unwrap_or("").contains("> warning 300ms"), "{slow}");
    let quiet = wait_status(&api, "service:udp:2", "passing").await;
    assert!(quiet["Output"].as_str().unwrap_or("").contains("no error within"), "{quiet}");
    // A few more rounds: silence never turns into a latency verdict.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(check(&api, "service:udp:2").await["Status"], "passing");
    echo_task.abort();
    drop(silent);
    c.shutdown().await;
}
