//! `consul-rs validate` on good and bad configurations, and the agent's `watches` block with
//! script and HTTP handlers (Consul: commands/validate.mdx, agent/watches.mdx).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use consul_tests::process::{binary, DevAgent};
use consul_tests::{eventually, free_port};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write config");
    p.display().to_string()
}

fn validate(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(binary()).arg("validate").args(args).output().expect("run validate");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn t97_validate_good_and_bad_configs() {
    let good = tempfile::tempdir().expect("tempdir");
    write(good.path(), "10-base.json", r#"{"data_dir": "/tmp/consul-rs-t97", "server": true, "bootstrap_expect": 3}"#);
    write(
        good.path(),
        "20-more.hcl",
        "ports {\n  http = 9500\n}\nwatches = [{\n  type = \"key\"\n  key = \"a\"\n  args = [\"/bin/true\"]\n}]\n",
    );
    write(good.path(), "README.md", "not configuration");
    let dir = good.path().display().to_string();
    let (code, out, err) = validate(&[&dir]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out.trim(), "Configuration is valid!");
    let (code, out, _) = validate(&["-quiet", &dir]);
    assert_eq!((code, out.as_str()), (Some(0), ""));

    let bad = tempfile::tempdir().expect("tempdir");
    let json = write(
        bad.path(),
        "a.json",
        "{\n  \"data_dir\": \"/tmp/x\",\n  \"bootstrap_expct\": 3,\n  \"ports\": {\"http\": \"abc\", \"server\": 70000},\n  \"retry_interval\": 30,\n  \"watches\": [{\"type\": \"key\", \"args\": [\"true\"]}]\n}\n",
    );
    let hcl = write(bad.path(), "b.hcl", "server = true\nlog_levl = \"info\"\n");
    let (code, out, err) = validate(&[&json, &hcl]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(!out.contains("valid!"), "{out}");
    assert!(err.starts_with("Config validation failed: 6 problems:"), "{err}");
    for want in [
        format!("{json}:3:3: unknown key \"bootstrap_expct\""),
        format!("{json}:4:13: ports.http: expected a number"),
        format!("{json}:4:28: ports.server: 70000 is not a valid port"),
        format!("{json}:5:3: retry_interval: expected a duration string"),
        format!("{json}:6:3: watches[0].key: Must specify a single key to watch"),
        format!("{hcl}:2:1: unknown key \"log_levl\""),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }

    let syntax = write(bad.path(), "c.json", "{\n  \"server\": true,,\n}\n");
    let (code, _, err) = validate(&[&syntax]);
    assert_eq!(code, Some(1));
    assert!(err.contains(&format!("{syntax}:2:18: cannot parse")), "{err}");
    let (code, _, err) = validate(&[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("Must specify at least one config file or directory"), "{err}");
}

/// The lines the handler script has written so far.
fn runs(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out).unwrap_or_default().lines().map(str::to_string).collect()
}

/// A key watch from a config file runs its script once at start (the key is missing: empty
/// input) and once per change, with the entry's JSON on stdin and `CONSUL_INDEX` set; a reload
/// with other definitions replaces the watch.
#[tokio::test]
async fn t97_key_watch_runs_its_script_once_per_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("runs");
    let script = format!("printf 'run %s %s\\n' \"$CONSUL_INDEX\" \"$(cat)\" >> '{}'", out.display());
    let config = dir.path().join("watches.json");
    let body = |key: &str| {
        serde_json::json!({"watches": [{"type": "key", "key": key, "args": ["sh", "-c", script]}]}).to_string()
    };
    std::fs::write(&config, body("t97/k")).expect("write");
    let agent = DevAgent::start_with(&[&format!("-config-file={}", config.display())]).await;
    eventually(Duration::from_secs(30), "the first run (missing key)", || async {
        (runs(&out).len() == 1).then_some(())
    })
    .await;
    assert!(runs(&out)[0].starts_with("run "), "{:?}", runs(&out));
    let values = ["one", "two", "three"];
    for (i, v) in values.iter().enumerate() {
        agent.api.put_ok("t97/k", *v).await;
        // Each change is seen before the next one is made, so none can be coalesced.
        eventually(Duration::from_secs(30), "a run per change", || async { (runs(&out).len() >= i + 2).then_some(()) })
            .await;
    }
    // Another key changing fires nothing.
    agent.api.put_ok("t97/other", "x").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lines = runs(&out);
    assert_eq!(lines.len(), 1 + values.len(), "{lines:#?}");
    for (line, v) in lines[1..].iter().zip(values) {
        let b64 = base64_of(v);
        assert!(line.contains(&format!("\"Value\":\"{b64}\"")), "{line}");
        let index: u64 = line.split(' ').nth(1).and_then(|i| i.parse().ok()).expect("CONSUL_INDEX");
        assert!(index > 0, "{line}");
    }

    // Reload with a watch on another key: the old one stops, the new one fires at once.
    std::fs::write(&config, body("t97/new")).expect("write");
    let r = agent.api.request(reqwest::Method::PUT, "/v1/agent/reload", None).await.expect("reload");
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(Duration::from_secs(30), "the new watch's first run", || async {
        (runs(&out).len() == 5).then_some(())
    })
    .await;
    agent.api.put_ok("t97/k", "four").await;
    agent.api.put_ok("t97/new", "five").await;
    eventually(Duration::from_secs(30), "a run for the new key", || async { (runs(&out).len() >= 6).then_some(()) })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lines = runs(&out);
    assert_eq!(lines.len(), 6, "the old watch stopped: {lines:#?}");
    assert!(lines[5].contains(&base64_of("five")), "{lines:#?}");

    // SIGHUP reloads the same way: back to the first key, whose current value fires at once.
    std::fs::write(&config, body("t97/k")).expect("write");
    let hup = Command::new("kill").args(["-HUP", &agent.pid().to_string()]).status().expect("kill");
    assert!(hup.success());
    eventually(Duration::from_secs(30), "the reloaded watch's first run", || async {
        (runs(&out).len() >= 7).then_some(())
    })
    .await;
    assert!(runs(&out)[6].contains(&base64_of("four")), "{:#?}", runs(&out));
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// One request received by the test's HTTP listener: head (lower-cased) and body.
async fn read_request(s: &mut tokio::net::TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                return Some((head, body));
            }
        }
    }
}

/// An HTTP handler gets each result as a POST with the JSON body, `X-Consul-Index` and the
/// configured headers.
#[tokio::test]
async fn t97_http_handler_gets_body_and_index() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(req) = read_request(&mut s).await {
                    let _ = tx.send(req);
                    if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("watches.hcl");
    std::fs::write(
        &config,
        format!(
            "watches = [{{\n  type = \"key\"\n  key = \"t97/h\"\n  handler_type = \"http\"\n  http_handler_config = {{\n    path = \"http://127.0.0.1:{port}/hook\"\n    header = {{ \"x-t97\" = [\"yes\"] }}\n    timeout = \"5s\"\n  }}\n}}]\n"
        ),
    )
    .expect("write");
    let agent = DevAgent::start_with(&[&format!("-config-file={}", config.display())]).await;
    agent.api.put_ok("t97/h", "hello").await;
    let want = base64_of("hello");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (head, body) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let req = tokio::time::timeout(left, rx.recv()).await.expect("the handler is called").expect("listener runs");
        if req.1.contains(&want) {
            break req;
        }
    };
    assert!(head.starts_with("post /hook http/1.1"), "{head}");
    assert!(head.contains("x-t97: yes"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let index: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("x-consul-index:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("X-Consul-Index");
    assert!(index > 0, "{head}");
    let v: serde_json::Value = serde_json::from_str(body.trim()).expect("JSON body");
    assert_eq!(v["Key"], "t97/h", "{body}");
    drop(agent);
    server.abort();
}

/// A bad watch definition refuses the start, naming the watch and the field.
#[tokio::test]
async fn t97_bad_watch_refuses_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("w.json");
    std::fs::write(
        &config,
        r#"{"watches": [{"type": "nodes", "args": ["true"]}, {"type": "checks", "state": "sad", "args": ["true"]}]}"#,
    )
    .expect("write");
    let mut child = Command::new(binary())
        .args(["agent", "-dev", "-client", "127.0.0.1", "-bind=127.0.0.1"])
        .arg(format!("-http-port={}", free_port()))
        .arg(format!("-server-port={}", free_port()))
        .arg(format!("-serf-lan-port={}", free_port()))
        .arg(format!("-dns-port={}", free_port()))
        .arg(format!("-config-file={}", config.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = child.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(status.is_some_and(|s| !s.success()), "the agent must refuse to start: {err}");
    assert!(err.contains("watches[1].state"), "{err}");
    assert!(err.contains("sad"), "{err}");
}
