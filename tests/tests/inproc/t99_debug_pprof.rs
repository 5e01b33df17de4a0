//! `/debug/pprof/*` as Consul gates and serves it: 404 with neither `enable_debug` nor ACLs; with
//! `enable_debug` the CPU profile, thread list, agent trace and command line; with ACLs,
//! `operator:read` needed whatever `enable_debug` says. (The heap profile needs the binary's
//! allocator: an embedded agent names why it has none; the binary's is tested in the server
//! crate and by the Go client's `TestAPI_DebugHeap`.)

use std::io::Read as _;
use std::time::Duration;

use consul_core::config::AgentConfig;
use consul_tests::client::{Api, Resp};
use consul_tests::eventually;
use consul_tests::inproc::{Cluster, Options};
use reqwest::Method;
use serde_json::{json, Value};

const ROOT: &str = "4d1f0c2e-7a55-4f3b-9e61-2b8c0d9a7e11";

fn debug_on(c: &mut AgentConfig) {
    c.enable_debug = true;
}

fn debug_on_deny_by_default(c: &mut AgentConfig) {
    c.enable_debug = true;
    c.acl.default_allow = false;
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut raw).expect("a gzipped profile");
    raw
}

async fn get(api: &Api, path: &str) -> Resp {
    api.get(path).await.expect("get")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_pprof_is_off_without_enable_debug_or_acls() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    for p in ["/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1", "/debug/pprof/goroutine"] {
        let r = get(&api, p).await;
        assert_eq!(r.status, 404, "{p}: {}", r.text());
        assert!(r.text().contains("enable_debug"), "{p}: {}", r.text());
    }
    let me: Value = get(&api, "/v1/agent/self").await.json();
    assert_eq!(me["DebugConfig"]["EnableDebug"], json!(false));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_pprof_serves_profiles_with_enable_debug() {
    let c = Cluster::start_with(1, Options { tweak: Some(debug_on), ..Options::default() }).await;
    let api = c.api(0);
    let me: Value = get(&api, "/v1/agent/self").await.json();
    assert_eq!(me["DebugConfig"]["EnableDebug"], json!(true));

    let index = get(&api, "/debug/pprof/").await;
    assert_eq!(index.status, 200);
    for name in ["profile", "heap", "goroutine", "trace", "cmdline"] {
        assert!(index.text().contains(&format!("href=\"{name}\"")), "{name} in {}", index.text());
    }

    // Some work for the profile to see, while it runs.
    let writer = {
        let api = api.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                let _ = api.request(Method::PUT, &format!("/v1/kv/pprof/{i}"), Some(b"v".to_vec())).await;
            }
        })
    };
    let cpu = get(&api, "/debug/pprof/profile?seconds=1").await;
    writer.await.expect("writer");
    assert_eq!(cpu.status, 200, "{}", cpu.text());
    assert_eq!(cpu.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/octet-stream"));
    let raw = gunzip(&cpu.body);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("nanoseconds") && text.contains("cpu"), "sample types in the profile");

    let threads = get(&api, "/debug/pprof/goroutine").await;
    assert_eq!(threads.status, 200);
    let raw = gunzip(&threads.body);
    assert!(String::from_utf8_lossy(&raw).contains("thread "), "thread frames");
    let text = get(&api, "/debug/pprof/goroutine?debug=1").await;
    assert!(text.text().starts_with("thread profile: total "), "{}", text.text());
    assert!(text.text().contains("live"), "async task count: {}", text.text());
    let bad = get(&api, "/debug/pprof/goroutine?debug=7").await;
    assert_eq!(bad.status, 400, "{}", bad.text());

    // The trace holds what the agent logged meanwhile (a KV write logs at DEBUG or TRACE).
    let tracer = {
        let api = api.clone();
        tokio::spawn(async move { get(&api, "/debug/pprof/trace?seconds=1").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..20 {
        let _ = api.request(Method::PUT, &format!("/v1/kv/traced/{i}"), Some(b"v".to_vec())).await;
    }
    let trace = tracer.await.expect("trace");
    assert_eq!(trace.status, 200, "{}", trace.text());
    let doc: Value = trace.json();
    let events = doc["traceEvents"].as_array().expect("traceEvents");
    assert!(events.iter().any(|e| e["ph"] == "M" && e["name"] == "process_name"));
    assert_eq!(doc["otherData"]["duration_seconds"], json!(1.0));

    // The embedded agent has no allocator profiler: said so, not a stub profile.
    let heap = get(&api, "/debug/pprof/heap").await;
    assert_eq!(heap.status, 404, "{}", heap.text());
    assert!(heap.text().contains("allocator"), "{}", heap.text());

    let unknown = get(&api, "/debug/pprof/mutexes").await;
    assert_eq!((unknown.status, unknown.text().trim_end()), (404, "Unknown profile: mutexes"));
    let long = get(&api, "/debug/pprof/profile?seconds=100000").await;
    assert_eq!(long.status, 400, "{}", long.text());
    assert!(long.text().contains("seconds"), "{}", long.text());
    let cmdline = get(&api, "/debug/pprof/cmdline").await;
    assert_eq!(cmdline.status, 200);
    assert!(!cmdline.text().is_empty());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_pprof_needs_operator_read_with_acls() {
    let opts = Options {
        acl: true,
        initial_management: Some(ROOT.into()),
        tweak: Some(debug_on_deny_by_default),
        ..Options::default()
    };
    let c = Cluster::start_with(1, opts).await;
    let api = c.api(0);
    eventually(Duration::from_secs(20), "initial management token", || async {
        let r = api.get(&format!("/v1/acl/token/self?token={ROOT}")).await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    // Anonymous: denied even though enable_debug is set.
    let r = get(&api, "/debug/pprof/goroutine").await;
    assert_eq!(r.status, 403, "{}", r.text());
    // A token with operator:read only.
    let policy: Value = api
        .request(
            Method::PUT,
            &format!("/v1/acl/policy?token={ROOT}"),
            Some(json!({"Name": "op-read", "Rules": "operator = \"read\""}).to_string().into_bytes()),
        )
        .await
        .expect("policy")
        .json();
    let token: Value = api
        .request(
            Method::PUT,
            &format!("/v1/acl/token?token={ROOT}"),
            Some(json!({"Policies": [{"ID": policy["ID"]}]}).to_string().into_bytes()),
        )
        .await
        .expect("token")
        .json();
    let secret = token["SecretID"].as_str().expect("secret");
    let r = get(&api.with_token(secret), "/debug/pprof/goroutine?debug=1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(&api.with_token(ROOT), "/debug/pprof/").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let me: Value = get(&api.with_token(ROOT), "/v1/agent/self").await.json();
    assert_eq!(me["DebugConfig"]["ACLsEnabled"], json!(true));
    c.shutdown().await;
}
