//! `consul-rs-catalog-bench`: the service-discovery benchmark of issue #3.
//!
//! Against one running agent: registers `--services` service instances, each with a TTL check,
//! through `/v1/agent/service/register` (`--instances` instances per service name), and reports
//! registration throughput, how long anti-entropy takes to show them all in the catalog, the
//! agent's resident memory before and after (from `/proc/<pid>/status`), the latency of
//! `/v1/health/service/:name` for a name with `--instances` instances (unfiltered, and with a
//! `?filter=` every instance passes: issue #17's cost budget), and the time from a
//! check flip to a parked blocking health query returning. Prints one JSON object.

#[path = "../proc_status.rs"]
mod proc_status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Service registration, health-query and check-flip benchmark for one agent")]
struct Args {
    /// Agent HTTP address.
    #[arg(long, default_value = "127.0.0.1:8500")]
    addr: String,
    /// Agent process id (for its resident memory).
    #[arg(long)]
    pid: Option<u32>,
    /// Service instances to register in all.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Instances per service name.
    #[arg(long, default_value_t = 1_000)]
    instances: usize,
    /// Concurrent registration requests.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds of health-query load.
    #[arg(long, default_value_t = 10)]
    query_seconds: u64,
    /// Concurrent health-query clients.
    #[arg(long, default_value_t = 4)]
    query_clients: usize,
    /// Check flips to time.
    #[arg(long, default_value_t = 20)]
    flips: usize,
}

/// The filter of the filtered health query: true for every registered instance, and touching
/// a tag list, a string and the checks list (issue #17's "filtered health query").
const FILTER: &str = "Service.Tags contains bench and Service.Service matches \"^svc-\" and Checks.Status == passing";

/// Percent-encodes a query-string value.
fn encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// `clients` closed-loop clients GET `path` for `window`; the latency of every request.
async fn query_load(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    window: Duration,
    clients: usize,
) -> Result<Vec<Duration>> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (http, url) = (http.clone(), format!("{base}{path}"));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while started.elapsed() < window {
                let t = Instant::now();
                let r = http.get(&url).send().await?;
                if !r.status().is_success() {
                    bail!("health query: {}", r.status());
                }
                let body = r.bytes().await?;
                if body.len() < 2 {
                    bail!("empty health answer");
                }
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    Ok(lat)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn index_of(resp: &reqwest::Response) -> u64 {
    resp.headers().get("X-Consul-Index").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let base = format!("http://{}", args.addr);
    if !args.addr.starts_with("127.") && !args.addr.starts_with("localhost") {
        bail!("--addr must be on 127.0.0.0/8");
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .tls_backend_preconfigured(consul_core::tls::plain_client_tls())
        .build()?;
    let rss_before = proc_status::rss_kib(args.pid);

    // 1. Registration throughput.
    let names = args.services.div_ceil(args.instances.max(1));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (http, base, next) = (http.clone(), base.clone(), next.clone());
        let (total, per) = (args.services, args.instances.max(1));
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let (svc, inst) = (n / per, n % per);
                let body = json!({
                    "ID": format!("svc-{svc}-{inst}"), "Name": format!("svc-{svc}"),
                    "Port": 10000 + (inst % 50000), "Tags": ["bench"],
                    "Check": {"CheckID": format!("chk-{svc}-{inst}"), "TTL": "30m", "Status": "passing"},
                });
                let r = http.put(format!("{base}/v1/agent/service/register")).json(&body).send().await?;
                if !r.status().is_success() {
                    bail!("register {n}: {} {}", r.status(), r.text().await.unwrap_or_default());
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let register_secs = started.elapsed().as_secs_f64();

    // 2. Until anti-entropy has synced everything to the catalog.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let r = http.get(format!("{base}/v1/catalog/service/svc-{}", names - 1)).send().await?;
        let list: serde_json::Value = r.json().await?;
        let want = args.services - (names - 1) * args.instances;
        if list.as_array().map(Vec::len) == Some(want) {
            break;
        }
        if Instant::now() > deadline {
            bail!("catalog did not show every instance within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let synced_secs = started.elapsed().as_secs_f64();
    let rss_after = proc_status::rss_kib(args.pid);

    // 3. Health-query latency for a name with `instances` instances, unfiltered and with a
    // `?filter=` that keeps every instance (so both answers are the same bytes and the
    // difference is the filter's cost: compiling it once, evaluating it 1,000 times). The two
    // alternate in slices so drift on a shared machine hits both alike.
    let window = Duration::from_secs(args.query_seconds);
    let plain_path = "/v1/health/service/svc-0?passing".to_string();
    let filtered_path = format!("/v1/health/service/svc-0?passing&filter={}", encode(FILTER));
    let count = |v: serde_json::Value| v.as_array().map_or(0, Vec::len);
    let plain_n = count(http.get(format!("{base}{plain_path}")).send().await?.json().await?);
    let filtered_n = count(http.get(format!("{base}{filtered_path}")).send().await?.json().await?);
    if plain_n != filtered_n || plain_n == 0 {
        bail!("the filter should keep all {plain_n} instances, kept {filtered_n}");
    }
    let (mut lat, mut filtered) = (Vec::new(), Vec::new());
    let slices = 4u32;
    for _ in 0..slices {
        lat.extend(query_load(&http, &base, &plain_path, window / slices, args.query_clients).await?);
        filtered.extend(query_load(&http, &base, &filtered_path, window / slices, args.query_clients).await?);
    }
    lat.sort();
    filtered.sort();
    let qps = lat.len() as f64 / window.as_secs_f64();
    let filtered_qps = filtered.len() as f64 / window.as_secs_f64();

    // 4. Check flip → parked blocking query returns.
    let mut flips = Vec::new();
    for k in 0..args.flips.min(args.instances) {
        let r = http.get(format!("{base}/v1/health/service/svc-0")).send().await?;
        let idx = index_of(&r);
        let parked = {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move {
                let r = http.get(format!("{base}/v1/health/service/svc-0?index={idx}&wait=60s")).send().await?;
                let _ = r.bytes().await?;
                Ok::<_, anyhow::Error>(Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let flipped_at = Instant::now();
        let r = http.put(format!("{base}/v1/agent/check/fail/chk-0-{k}")).send().await?;
        if !r.status().is_success() {
            bail!("check fail: {}", r.status());
        }
        let returned_at = parked.await??;
        flips.push(returned_at.duration_since(flipped_at));
        http.put(format!("{base}/v1/agent/check/pass/chk-0-{k}"))
            .send()
            .await?
            .error_for_status()
            .context("check pass")?;
    }
    flips.sort();

    let out = json!({
        "services": args.services,
        "instances_per_service": args.instances,
        "register_seconds": register_secs,
        "registrations_per_second": args.services as f64 / register_secs,
        "catalog_synced_seconds": synced_secs,
        "rss_kib_before": rss_before,
        "rss_kib_after": rss_after,
        "health_query": {"clients": args.query_clients, "qps": qps, "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99)},
        "health_query_filtered": {
            "filter": FILTER, "qps": filtered_qps, "p50_ms": percentile(&filtered, 0.5),
            "p99_ms": percentile(&filtered, 0.99),
            "p50_ratio": percentile(&filtered, 0.5) / percentile(&lat, 0.5).max(f64::MIN_POSITIVE),
        },
        "flip_to_wake": {"samples": flips.len(), "p50_ms": percentile(&flips, 0.5), "p99_ms": percentile(&flips, 0.99), "max_ms": percentile(&flips, 1.0)},
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
