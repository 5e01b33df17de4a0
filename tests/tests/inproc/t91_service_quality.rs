//! Service-quality health (issue #21). Latency: `LatencyWarning` / `LatencyCritical` on checks;
//! a local HTTP service whose response delay the test controls moves its check passing →
//! warning → critical → passing, with outputs naming the measured latency and the threshold
//! crossed, and `?passing` and DNS follow. Metrics: a `Metrics` check scrapes a Prometheus page
//! whose values the test controls and holds it to rules on values and rates. Bad thresholds and
//! rules are a 400 naming the field and register nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// A Go duration (`"812ms"`, `"1.2s"`, `"950µs"`) in milliseconds; NaN when not one.
fn go_ms(v: &Value) -> f64 {
    let s = v.as_str().unwrap_or("");
    let split = s.find(|c: char| c.is_ascii_alphabetic() || c == 'µ').unwrap_or(s.len());
    let n: f64 = s[..split].parse().unwrap_or(f64::NAN);
    match &s[split..] {
        "ms" => n,
        "s" => n * 1000.0,
        "µs" | "us" => n / 1000.0,
        _ => f64::NAN,
    }
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

/// Registers a service with each check of `cases`: every one must be a 400 containing its
/// expected text, and nothing named `name` may be registered.
async fn assert_refused(api: &Api, name: &str, cases: Vec<(Value, &str)>) {
    for (check, want) in cases {
        let reg = json!({"Name": name, "Check": check});
        let r = register(api, &reg).await;
        assert_eq!(r.status, 400, "{reg}: {}", r.text());
        assert!(r.text().contains(want), "{reg}: {}", r.text());
    }
    let services = api.get("/v1/agent/services").await.expect("services").json();
    assert!(services.get(name).is_none(), "nothing registered: {services}");
}

async fn register(api: &Api, body: &Value) -> consul_tests::client::Resp {
    api.request(Method::PUT, "/v1/agent/service/register", Some(body.to_string().into_bytes())).await.expect("put")
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
    let r = register(&api, &reg).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = "service:slow1";
    let passing = wait_status(&api, id, "passing").await;
    assert!(!passing["Output"].as_str().unwrap_or("").contains("latency"), "{passing}");
    assert!(go_ms(&passing["Latency"]) < 400.0, "{passing}");
    // The thresholds are part of the check's definition, in the catalog too.
    let rows = api.get("/v1/health/checks/slow").await.expect("checks").json();
    assert_eq!(rows[0]["Definition"]["LatencyWarning"], "400ms", "{rows}");
    assert_eq!(rows[0]["Definition"]["LatencyCritical"], "1.5s", "{rows}");

    delay.store(800, Ordering::SeqCst);
    let warning = wait_status(&api, id, "warning").await;
    let out = warning["Output"].as_str().unwrap_or("").to_string();
    assert!(out.contains("200 OK, latency ") && out.contains(" > warning 400ms"), "{out}");
    // The measured latency is a field of its own: live on the agent, and in the catalog copy
    // written with the warning (not inside the definition).
    let measured = go_ms(&warning["Latency"]);
    assert!(measured >= 400.0, "{warning}");
    let in_catalog = eventually(Duration::from_secs(10), "the catalog copy carries the latency", || async {
        let rows = api.get("/v1/health/service/slow").await.ok()?.json();
        let c = rows[0]["Checks"].as_array()?.iter().find(|c| c["CheckID"] == id)?.clone();
        (c["Status"] == "warning").then_some(c)
    })
    .await;
    assert!(go_ms(&in_catalog["Latency"]) >= 400.0, "{in_catalog}");
    assert!(in_catalog["Definition"].get("Latency").is_none(), "{in_catalog}");
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
    assert_refused(
        &api,
        "bad",
        vec![
            (json!({"TTL": "10s", "LatencyWarning": "1s"}), "LatencyWarning applies only to HTTP, TCP, UDP and gRPC"),
            (json!({"TCP": "127.0.0.1:1", "Interval": "1s", "LatencyCritical": "fast"}), "Invalid LatencyCritical"),
            (
                json!({"TCP": "127.0.0.1:1", "Interval": "1s", "LatencyWarning": "2s", "LatencyCritical": "1s"}),
                "LatencyWarning (2s) must be shorter than LatencyCritical (1s)",
            ),
        ],
    )
    .await;
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
    let r = register(&api, &reg).await;
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

/// Serves `page` (which the test rewrites) as Prometheus text.
async fn metrics_server(page: Arc<Mutex<String>>) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            let body = page.lock().expect("lock").clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
            });
        }
    });
    (port, task)
}

fn exposition(queue: u64, errors: u64) -> String {
    format!(
        "# TYPE queue_depth gauge\nqueue_depth{{queue=\"jobs\"}} {queue}\nqueue_depth{{queue=\"other\"}} 1000\n\
         # TYPE errors_total counter\nerrors_total{{code=\"500\"}} {errors}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t91_metrics_check_holds_a_service_to_its_rules() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    let page = Arc::new(Mutex::new(exposition(3, 0)));
    let (port, server) = metrics_server(page.clone()).await;
    let reg = json!({"Name": "worker", "ID": "worker1", "Port": port, "Check": {
        "Metrics": format!("http://127.0.0.1:{port}/metrics"), "Interval": "1s", "Timeout": "2s",
        "Rules": [
            {"Metric": "queue_depth", "Labels": {"queue": "jobs"}, "Warning": "> 20", "Critical": "> 100"},
            {"Metric": "errors_total", "Labels": {"code": "500"}, "Rate": "3s", "Critical": "> 5"},
        ],
    }});
    let r = register(&api, &reg).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = "service:worker1";
    let ok = wait_status(&api, id, "passing").await;
    assert_eq!(ok["Type"], "metrics", "{ok}");
    assert!(ok["Output"].as_str().unwrap_or("").contains("queue_depth{queue=\"jobs\"} = 3 (ok)"), "{ok}");
    // The rate rule judges from the second scrape on (until then it says it is waiting).
    eventually(Duration::from_secs(10), "the rate rule has two scrapes", || async {
        let out = check(&api, id).await["Output"].as_str().unwrap_or("").to_string();
        out.contains("rate(errors_total{code=\"500\"}[3s]) = 0.000/s (ok)").then_some(())
    })
    .await;

    *page.lock().expect("lock") = exposition(25, 0);
    let w = wait_status(&api, id, "warning").await;
    assert!(w["Output"].as_str().unwrap_or("").contains("queue_depth{queue=\"jobs\"} = 25 (warning: > 20)"), "{w}");
    eventually(Duration::from_secs(10), "?passing leaves the warning instance out", || async {
        let l = api.get("/v1/health/service/worker?passing").await.ok()?.json();
        (l.as_array()?.is_empty()).then_some(())
    })
    .await;

    *page.lock().expect("lock") = exposition(200, 0);
    let cr = wait_status(&api, id, "critical").await;
    assert!(cr["Output"].as_str().unwrap_or("").contains("= 200 (critical: > 100)"), "{cr}");

    // Back to a short queue, but errors climb at about 50/s: the rate rule holds it critical.
    *page.lock().expect("lock") = exposition(3, 0);
    let climbing = {
        let page = page.clone();
        tokio::spawn(async move {
            let mut errors = 0;
            loop {
                errors += 10;
                *page.lock().expect("lock") = exposition(3, errors);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let by_rate = eventually(Duration::from_secs(30), "critical by the error rate", || async {
        let c = check(&api, id).await;
        let out = c["Output"].as_str().unwrap_or("").to_string();
        (c["Status"] == "critical" && out.contains("= 3 (ok)") && out.contains("(critical: > 5)")).then_some(c)
    })
    .await;
    assert!(by_rate["Output"].as_str().unwrap_or("").contains("rate(errors_total{code=\"500\"}[3s])"), "{by_rate}");
    climbing.abort();
    let _ = climbing.await;
    // Once the counter stops, the window empties and the check passes again.
    wait_status(&api, id, "passing").await;
    eventually(Duration::from_secs(10), "?passing answers it again", || async {
        let l = api.get("/v1/health/service/worker?passing").await.ok()?.json();
        (l.as_array()?.len() == 1).then_some(())
    })
    .await;

    // The rules are part of the check's definition.
    let rows = api.get("/v1/health/checks/worker").await.expect("checks").json();
    assert_eq!(rows[0]["Definition"]["Rules"][1]["Rate"], "3s", "{rows}");
    assert_eq!(rows[0]["Type"], "metrics", "{rows}");
    server.abort();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t91_bad_metrics_rules_are_refused_by_name() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    assert_refused(
        &api,
        "badm",
        vec![
        (json!({"Metrics": "http://127.0.0.1:1/m", "Interval": "1s"}), "Rules: a Metrics check needs a list of rules"),
        (
            json!({"Metrics": "http://127.0.0.1:1/m", "Interval": "1s", "Rules": [{"Metric": "up", "Warning": "lots"}]}),
            "Rules[0].Warning: expected a comparison",
        ),
        (
            json!({"Metrics": "http://127.0.0.1:1/m", "Interval": "10s", "Rules": [{"Metric": "up", "Critical": "> 1", "Rate": "1s"}]}),
            "Rules[0].Rate",
        ),
        (
            json!({"Metrics": "ftp://127.0.0.1/m", "Interval": "1s", "Rules": [{"Metric": "up", "Critical": "== 0"}]}),
            "Invalid Metrics",
        ),
        (
            json!({"Metrics": "http://127.0.0.1:1/m", "Rules": [{"Metric": "up", "Critical": "== 0"}]}),
            "Interval is required",
        ),
        ],
    )
    .await;
    c.shutdown().await;
}
