//! Logs: `/v1/agent/monitor` streams the agent's lines (at debug while the agent logs at warn,
//! JSON with `logjson`, 400 on an unknown level) and lets go when the client goes;
//! `consul-rs monitor` prints them; `log_file` rotates and prunes; `consul-rs debug` writes
//! Consul's bundle; `/v1/agent/host` has Consul's shape.

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use consul_tests::process::{binary, DevAgent};
use consul_tests::{eventually, free_port};
use serde_json::Value;

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(consul_core::tls::plain_client_tls())
        .build()
        .expect("reqwest client")
}

/// An open `/v1/agent/monitor` stream, read line by line.
struct MonitorStream {
    resp: reqwest::Response,
    pending: Vec<u8>,
}

impl MonitorStream {
    async fn open(agent: &DevAgent, query: &str) -> MonitorStream {
        let url = format!("http://127.0.0.1:{}/v1/agent/monitor?{query}", agent.http);
        let resp = http_client().get(url).send().await.expect("monitor request");
        assert_eq!(resp.status().as_u16(), 200);
        MonitorStream { resp, pending: Vec::new() }
    }

    /// The next whole line, waiting at most `wait`.
    async fn line(&mut self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return Some(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk()).await.ok()?.ok()??;
            self.pending.extend_from_slice(&chunk);
        }
    }

    /// Reads lines (causing activity with `poke` while waiting) until one satisfies `want`.
    async fn find(&mut self, agent: &DevAgent, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            assert!(tokio::time::Instant::now() < deadline, "no monitor line: {what}");
            poke(agent).await;
            while let Some(line) = self.line(Duration::from_millis(500)).await {
                if want(&line) {
                    return line;
                }
            }
        }
    }
}

/// Some API activity (each request is a `Request finished` debug line).
async fn poke(agent: &DevAgent) {
    let _ = agent.api.request(reqwest::Method::PUT, "/v1/kv/t96/poke", Some(b"x".to_vec())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_monitor_streams_debug_lines_while_the_agent_logs_at_warn() {
    // DevAgent runs with -log-level warn.
    let agent = DevAgent::start().await;
    let mut m = MonitorStream::open(&agent, "loglevel=debug").await;
    let line =
        m.find(&agent, "KV write at debug", |l| l.contains("Request finished") && l.contains("/v1/kv/t96/poke")).await;
    assert!(line.contains("[DEBUG]"), "{line}");
    assert!(line.contains("method=PUT"), "{line}");

    // The default level (INFO) does not get debug lines.
    let mut info = MonitorStream::open(&agent, "").await;
    poke(&agent).await;
    while let Some(l) = info.line(Duration::from_secs(2)).await {
        assert!(!l.contains("[DEBUG]"), "{l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_monitor_json_lines_and_unknown_level() {
    let agent = DevAgent::start().await;
    let bad = agent.api.get("/v1/agent/monitor?loglevel=bogus").await.expect("request");
    assert_eq!(bad.status, 400);
    assert_eq!(String::from_utf8_lossy(&bad.body).trim(), "Unknown log level: bogus");

    let mut m = MonitorStream::open(&agent, "loglevel=DEBUG&logjson").await;
    let line = m.find(&agent, "JSON line", |l| l.contains("Request finished")).await;
    let v: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(v["@level"], "debug");
    assert_eq!(v["@message"], "Request finished");
    assert!(v["@timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_monitor_stops_when_the_client_goes() {
    let agent = DevAgent::start().await;
    let mut watcher = MonitorStream::open(&agent, "loglevel=trace").await;
    for _ in 0..3 {
        let gone = MonitorStream::open(&agent, "loglevel=debug").await;
        drop(gone);
        // The agent notices at its next write to the closed connection, ends that stream and
        // says so on the monitors still open.
        watcher.find(&agent, "monitor closed", |l| l.contains("monitor closed")).await;
    }
    // A later monitor still works.
    let mut later = MonitorStream::open(&agent, "loglevel=debug").await;
    later.find(&agent, "a line on a later monitor", |l| l.contains("Request finished")).await;
}

/// A child process killed (and reaped) on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_monitor_cli_prints_lines() {
    let agent = DevAgent::start().await;
    let mut child = Reaped(
        agent
            .command(&["monitor", "-log-level=debug"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let found = eventually(Duration::from_secs(60), "monitor CLI prints a debug line", || {
        let rx = &rx;
        let agent = &agent;
        async move {
            poke(agent).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            rx.try_iter().find(|l| l.contains("Request finished"))
        }
    })
    .await;
    assert!(found.contains("[DEBUG]"), "{found}");

    // The agent goes: the command says so and exits 1, as Consul's does.
    drop(agent);
    let status = eventually(Duration::from_secs(30), "monitor CLI exits once the agent is gone", || {
        let status = child.0.try_wait().ok().flatten();
        async move {
            if status.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            status
        }
    })
    .await;
    assert_eq!(status.code(), Some(1));
    let rest: Vec<String> = rx.iter().collect();
    assert!(rest.iter().any(|l| l.contains("Remote side ended the monitor!")), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_log_file_rotates_by_size_and_prunes() {
    let dir = tempfile::tempdir().expect("tmp");
    let http = free_port();
    let _agent = Reaped(
        Command::new(binary())
            .args(["agent", "-dev", "-client", "127.0.0.1", "-bind=127.0.0.1", "-log-level=debug"])
            .arg(format!("-http-port={http}"))
            .arg(format!("-server-port={}", free_port()))
            .arg(format!("-serf-lan-port={}", free_port()))
            .arg(format!("-dns-port={}", free_port()))
            .arg(format!("-log-file={}/", dir.path().display()))
            .args(["-log-rotate-bytes=2000", "-log-rotate-max-files=2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn agent"),
    );
    let api = consul_tests::client::Api::new(([127, 0, 0, 1], http).into());
    let rotated = |dir: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.retain(|n| n != "consul.log");
        names.sort();
        names
    };
    // Requests at debug level fill the file; after two rotations there are two rotated files.
    let first = eventually(Duration::from_secs(60), "two rotated log files", || {
        let api = api.clone();
        let dir = dir.path().to_path_buf();
        async move {
            for _ in 0..20 {
                let _ = api.get("/v1/kv/t96?recurse").await;
            }
            let names = rotated(&dir);
            (names.len() >= 2).then_some(names)
        }
    })
    .await;
    assert_eq!(first.len(), 2, "{first:?}");
    // More rotations: still two files (the oldest pruned), newer than the first two.
    let names = eventually(Duration::from_secs(60), "pruned to the 2 newest rotated files", || {
        let api = api.clone();
        let dir = dir.path().to_path_buf();
        let first = first.clone();
        async move {
            for _ in 0..20 {
                let _ = api.get("/v1/kv/t96?recurse").await;
            }
            let names = rotated(&dir);
            assert!(names.len() <= 2, "not pruned: {names:?}");
            (names.len() == 2 && !names.contains(&first[0]) && !names.contains(&first[1])).then_some(names)
        }
    })
    .await;
    assert!(dir.path().join("consul.log").exists());
    for n in &names {
        let ts = n.strip_prefix("consul-").and_then(|r| r.strip_suffix(".log")).unwrap_or("");
        assert!(!ts.is_empty() && ts.bytes().all(|b| b.is_ascii_digit()), "{n}");
        let len = std::fs::metadata(dir.path().join(n)).expect("stat").len();
        assert!(len >= 2000, "{n} rotated at {len} bytes");
    }
    let active = std::fs::read_to_string(dir.path().join("consul.log")).expect("active log");
    assert!(active.len() < 2000 + 4096, "active file is {} bytes", active.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_debug_writes_consuls_bundle() {
    let agent = DevAgent::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("bundle");
    let o = agent.cli(&["debug", "-duration=10s", "-interval=5s", &format!("-output={}", out.display())]);
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(!out.exists(), "the directory is removed once archived");
    let f = std::fs::File::open(dir.path().join("bundle.tar.gz")).expect("archive");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut files = std::collections::BTreeMap::new();
    for e in archive.entries().expect("entries") {
        let mut e = e.expect("entry");
        let path = e.path().expect("path").to_string_lossy().into_owned();
        let mut text = String::new();
        if e.header().entry_type().is_file() {
            std::io::Read::read_to_string(&mut e, &mut text).expect("read entry");
            files.insert(path, text);
        }
    }
    for name in ["agent.json", "members.json", "host.json", "index.json", "metrics.json", "consul.log"] {
        assert!(files.contains_key(&format!("bundle/{name}")), "bundle/{name} missing: {:?}", files.keys());
    }
    let index: Value = serde_json::from_str(&files["bundle/index.json"]).expect("index");
    assert_eq!(index["Version"], 1);
    assert_eq!(index["Interval"], "5s");
    assert_eq!(index["Duration"], "12s");
    let agent_json: Value = serde_json::from_str(&files["bundle/agent.json"]).expect("agent.json");
    assert!(agent_json["Config"]["NodeName"].is_string());
    let members: Value = serde_json::from_str(&files["bundle/members.json"]).expect("members.json");
    assert!(members.as_array().is_some_and(|m| !m.is_empty()), "{members}");
    // The log was captured at TRACE: the debug command's own requests are in it.
    assert!(files["bundle/consul.log"].contains("Request finished"), "{}", files["bundle/consul.log"]);
    // One metrics line per interval, or a note that the agent has no metrics endpoint.
    assert!(!files["bundle/metrics.json"].trim().is_empty());

    // -archive=false leaves the directory; an existing output is refused.
    let out2 = dir.path().join("plain");
    let o = agent.cli(&[
        "debug",
        "-duration=10s",
        "-interval=5s",
        "-capture=agent",
        "-archive=false",
        &format!("-output={}", out2.display()),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out2.join("agent.json").exists() && out2.join("index.json").exists());
    let o = agent.cli(&["debug", "-duration=10s", "-interval=5s", &format!("-output={}", out2.display())]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("output directory already exists"));
    let o = agent.cli(&["debug", "-duration=2s", "-interval=1s"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("duration must be longer than 10s"));
}

/// With `enable_debug`, the binary serves a real heap profile (jemalloc's samples, symbolised)
/// and `debug` captures Consul's profile files: `profile.prof` and `trace.out` over the
/// duration, `heap.prof` and `goroutine.prof` at the start and at the end, each pair in a
/// directory named by its time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_debug_captures_profiles_when_enable_debug_is_set() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("debug.json");
    std::fs::write(&cfg, r#"{"enable_debug": true}"#).expect("config");
    let agent = DevAgent::start_with(&[&format!("-config-file={}", cfg.display())]).await;

    let heap = agent.api.get("/debug/pprof/heap").await.expect("heap");
    assert_eq!(heap.status, 200, "{}", heap.text());
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&heap.body[..]), &mut raw).expect("gzipped pprof");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("inuse_space"), "heap sample type");
    assert!(text.contains("consul_core::"), "symbolised stacks of the agent's own code");

    let out = dir.path().join("bundle");
    let o = agent.cli(&[
        "debug",
        "-duration=10s",
        "-interval=5s",
        "-capture=pprof",
        "-archive=false",
        &format!("-output={}", out.display()),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(!stdout.contains("Unable to capture pprof"), "{stdout}");
    for name in ["profile.prof", "trace.out"] {
        let len = std::fs::metadata(out.join(name)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{name} missing or empty");
    }
    let trace: Value = serde_json::from_slice(&std::fs::read(out.join("trace.out")).expect("trace")).expect("json");
    assert!(trace["traceEvents"].is_array());
    let snapshots: Vec<_> =
        std::fs::read_dir(&out).expect("bundle").flatten().filter(|e| e.path().is_dir()).map(|e| e.path()).collect();
    assert_eq!(snapshots.len(), 2, "one directory at the start, one at the end: {snapshots:?}");
    for d in &snapshots {
        for name in ["heap.prof", "goroutine.prof"] {
            let bytes = std::fs::read(d.join(name)).unwrap_or_default();
            assert_eq!(&bytes[..2.min(bytes.len())], &[0x1f, 0x8b], "{}/{name} is a gzipped profile", d.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_agent_host_has_consuls_shape() {
    let agent = DevAgent::start().await;
    let r = agent.api.get("/v1/agent/host").await.expect("host");
    assert_eq!(r.status, 200);
    let v = r.json();
    for k in ["Memory", "CPU", "Host", "Disk", "CollectionTime", "Errors"] {
        assert!(v.get(k).is_some(), "{k} missing: {v}");
    }
    assert!(v["Memory"]["total"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(v["CPU"].as_array().is_some_and(|c| !c.is_empty()), "{v}");
    assert!(v["Host"]["hostname"].is_string() && v["Host"]["bootTime"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(v["Disk"]["total"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(v["CollectionTime"].as_u64().unwrap_or(0) > 1_600_000_000_000_000_000, "{v}");
}
