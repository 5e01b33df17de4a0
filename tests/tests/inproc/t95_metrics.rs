//! Telemetry (Consul: `GET /v1/agent/metrics`, `telemetry { … }`): metrics named as Consul
//! names them are present and moving after KV, transaction, catalog and DNS traffic — in the
//! JSON interval view, in the Prometheus text (read with a Prometheus text parser), and as
//! statsd lines on a UDP listener.

use std::collections::HashSet;
use std::io::BufRead;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use consul_core::agent::Agent;
use consul_core::config::AgentConfig;
use consul_core::metrics::TelemetrySettings;
use consul_tests::client::Api;
use consul_tests::dns::ask;
use hickory_proto::rr::RecordType;
use prometheus_parse::{Scrape, Value};
use reqwest::Method;
use serde_json::json;

/// One round of every kind of traffic the test looks for.
async fn traffic(api: &Api, dns: SocketAddr, round: usize) {
    api.put_ok(&format!("metrics/{round}"), "v").await;
    let value = base64::engine::general_purpose::STANDARD.encode("t");
    let txn = json!([{"KV": {"Verb": "set", "Key": format!("metrics/txn/{round}"), "Value": value}}]);
    let r = api.request(Method::PUT, "/v1/txn", Some(txn.to_string().into_bytes())).await.expect("txn");
    assert_eq!(r.status, 200, "{}", r.text());
    let reg = json!({"Node": "ext", "Address": "10.9.0.1", "Service": {"ID": "web1", "Service": "web", "Port": 80}});
    let r = api.request(Method::PUT, "/v1/catalog/register", Some(reg.to_string().into_bytes())).await.expect("reg");
    assert_eq!(r.status, 200, "{}", r.text());
    ask(dns, "web.service.consul.", RecordType::A, None, false).await;
}

fn scrape(text: &str) -> Scrape {
    Scrape::parse(std::io::Cursor::new(text.as_bytes()).lines()).expect("valid Prometheus text")
}

/// The value of an unlabelled counter or a summary's `_count`/`_sum` series.
fn plain(s: &Scrape, metric: &str) -> Option<f64> {
    s.samples.iter().find(|x| x.metric == metric && x.labels.is_empty()).and_then(|x| match x.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
        _ => None,
    })
}

async fn prometheus(api: &Api) -> Scrape {
    let r = api.get("/v1/agent/metrics?format=prometheus").await.expect("metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("Content-Type").is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    scrape(&r.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t95_metrics_move_after_kv_txn_catalog_and_dns_traffic() {
    let statsd = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("statsd listener");
    let config = AgentConfig {
        node_name: "metrics-node".into(),
        telemetry: TelemetrySettings {
            prometheus_retention: Duration::from_secs(300),
            disable_hostname: true,
            statsd_address: Some(statsd.local_addr().expect("addr")),
            ..Default::default()
        },
        ..AgentConfig::dev_any_port()
    };
    let agent = Agent::start(config).await.expect("agent");
    agent.wait_for_leader(Duration::from_secs(20)).await.expect("leader");
    let api = Api::new(agent.http_addr());
    let dns = agent.dns_addr().expect("dns on");

    // JSON: the interval shown is the last finished one, so keep the traffic going until one
    // interval holds all of it.
    let wanted_samples = [
        "consul.kvs.apply",
        "consul.txn.apply",
        "consul.catalog.register",
        "consul.api.http",
        "consul.dns.domain_query",
        "consul.raft.commitTime",
    ];
    let mut round = 0;
    let summary = consul_tests::eventually(Duration::from_secs(60), "an interval with every metric", || {
        round += 1;
        let (api, round) = (&api, round);
        async move {
            traffic(api, dns, round).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
            let r = api.get("/v1/agent/metrics").await.expect("metrics");
            assert_eq!(r.status, 200, "{}", r.text());
            let j = r.json();
            let names = |field: &str| -> HashSet<String> {
                j[field]
                    .as_array()
                    .expect(field)
                    .iter()
                    .map(|v| v["Name"].as_str().expect("Name").to_string())
                    .collect()
            };
            let (samples, counters, gauges) = (names("Samples"), names("Counters"), names("Gauges"));
            let ok = wanted_samples.iter().all(|n| samples.contains(*n))
                && counters.contains("consul.raft.apply")
                && gauges.contains("consul.runtime.num_goroutines")
                && gauges.contains("consul.state.kv_entries");
            ok.then_some(j)
        }
    })
    .await;
    for field in ["Timestamp", "Gauges", "Points", "Counters", "Samples"] {
        assert!(summary.get(field).is_some(), "{field} missing: {summary}");
    }
    assert!(summary["Timestamp"].as_str().expect("Timestamp").ends_with(" +0000 UTC"));
    let http = summary["Samples"]
        .as_array()
        .expect("Samples")
        .iter()
        .find(|s| s["Name"] == "consul.api.http" && s["Labels"]["path"] == "v1_kv_" && s["Labels"]["method"] == "PUT")
        .unwrap_or_else(|| panic!("a PUT v1_kv_ sample: {summary}"));
    assert!(http["Count"].as_u64().expect("Count") >= 1);
    for key in ["Rate", "Sum", "Min", "Max", "Mean", "Stddev"] {
        assert!(http[key].is_number(), "{key} in {http}");
    }

    // Prometheus: cumulative, so the counters only grow with more traffic.
    let before = prometheus(&api).await;
    let applies = plain(&before, "consul_raft_apply").expect("consul_raft_apply counter");
    let kv_count = plain(&before, "consul_kvs_apply_count").expect("consul_kvs_apply summary");
    assert!(kv_count >= round as f64, "{kv_count} KV applies after {round} rounds");
    for metric in ["consul_txn_apply_count", "consul_catalog_register_count", "consul_raft_commitTime_count"] {
        assert!(plain(&before, metric).is_some_and(|v| v >= 1.0), "{metric}");
    }
    let kv_http = before.samples.iter().find(|s| {
        s.metric == "consul_api_http"
            && s.labels.get("method") == Some("PUT")
            && s.labels.get("path") == Some("v1_kv_")
            && matches!(s.value, Value::Summary(_))
    });
    assert!(kv_http.is_some(), "consul_api_http summary with method and path labels");
    let dns_q = before.samples.iter().find(|s| s.metric == "consul_dns_domain_query_count");
    assert_eq!(dns_q.and_then(|s| s.labels.get("node")), Some("metrics-node"));
    // Table sizes are sampled once a second.
    consul_tests::eventually(Duration::from_secs(30), "consul_state_kv_entries counts the keys", || async {
        let s = prometheus(&api).await;
        plain(&s, "consul_state_kv_entries").filter(|v| *v >= round as f64).map(|_| ())
    })
    .await;
    // The KV table's byte count, beside the entry count: each key costs at least its map slot
    // and its bytes, and the per-key gauge is the one divided by the other.
    let s = prometheus(&api).await;
    let (entries, bytes, per_key) = (
        plain(&s, "consul_state_kv_entries").expect("entries"),
        plain(&s, "consul_state_kv_bytes").expect("consul_state_kv_bytes gauge"),
        plain(&s, "consul_state_kv_bytes_per_key").expect("consul_state_kv_bytes_per_key gauge"),
    );
    assert!(per_key > 100.0 && per_key < 1000.0, "{per_key} bytes per key for small keys and values");
    assert!((bytes / entries - per_key).abs() < 1.0, "{bytes} bytes over {entries} keys is not {per_key}");

    for extra in 0..3 {
        traffic(&api, dns, 1000 + extra).await;
    }
    let after = prometheus(&api).await;
    assert!(plain(&after, "consul_raft_apply").expect("counter") >= applies + 3.0, "consul_raft_apply moves");
    assert!(plain(&after, "consul_kvs_apply_count").expect("summary") >= kv_count + 3.0, "kvs.apply moves");

    // statsd: timers and counters arrive as lines on the UDP listener.
    let mut seen = String::new();
    let mut buf = vec![0u8; 65536];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let lines: Vec<&str> = seen.lines().collect();
        let has = |prefix: &str, kind: &str| lines.iter().any(|l| l.starts_with(prefix) && l.ends_with(kind));
        if has("consul.kvs.apply:", "|ms")
            && has("consul.raft.apply:", "|c")
            && has("consul.api.http.PUT.v1_kv_:", "|ms")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "statsd lines missing; got:\n{seen}");
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), statsd.recv(&mut buf)).await {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    agent.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t95_metrics_prometheus_needs_a_retention_time() {
    let agent =
        Agent::start(AgentConfig { node_name: "no-prom".into(), ..AgentConfig::dev_any_port() }).await.expect("agent");
    let api = Api::new(agent.http_addr());
    let r = api.get("/v1/agent/metrics?format=prometheus").await.expect("metrics");
    assert_eq!(r.status, 415);
    assert_eq!(r.text().trim(), "Prometheus is not enabled since its retention time is not positive");
    let r = api.get("/v1/agent/metrics").await.expect("metrics");
    assert_eq!(r.status, 200, "the JSON view needs no retention");
    agent.shutdown().await.expect("shutdown");
}
