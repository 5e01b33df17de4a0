//! Check runners against real local servers the tests start and stop (Consul:
//! docs/services/usage/checks.mdx, checks-configuration-reference.mdx): HTTP status mapping and
//! request shape, thresholds, TCP, UDP, gRPC health, script, alias; and the done-when:
//! a service with an HTTP check enters `/v1/health/service/:name?passing` within one interval of
//! its endpoint coming up and leaves it within one interval of the endpoint going down.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consul_core::config::AgentConfig;
use consul_tests::client::{Api, Resp};
use consul_tests::inproc::{Cluster, Options};
use consul_tests::{eventually, free_port};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

async fn put(api: &Api, path: &str, body: Value) -> Resp {
    api.request(Method::PUT, path, Some(body.to_string().into_bytes())).await.expect("request")
}

async fn register(api: &Api, body: Value) {
    let r = put(api, "/v1/agent/service/register", body).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn check(api: &Api, id: &str) -> Value {
    api.get("/v1/agent/checks").await.expect("checks").json()[id].clone()
}

async fn wait_status(api: &Api, id: &str, status: &str) -> Value {
    eventually(Duration::from_secs(20), &format!("{id} {status}"), || async {
        let c = check(api, id).await;
        (c["Status"] == status).then_some(c)
    })
    .await
}

async fn passing_count(api: &Api, service: &str) -> Option<usize> {
    let r = api.get(&format!("/v1/health/service/{service}?passing")).await.ok()?;
    Some(r.json().as_array()?.len())
}

/// A tiny HTTP/1.1 server answering every request with `code` and a short body; it records the
/// last request it saw.
struct HttpServer {
    code: Arc<AtomicU16>,
    last: Arc<Mutex<String>>,
    task: Option<JoinHandle<()>>,
}

impl HttpServer {
    async fn start(port: u16, code: u16) -> HttpServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind http");
        let code = Arc::new(AtomicU16::new(code));
        let last = Arc::new(Mutex::new(String::new()));
        let (c, l) = (code.clone(), last.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else { return };
                let (c, l) = (c.clone(), l.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Headers, then as much body as Content-Length says.
                    loop {
                        let Ok(n) = conn.read(&mut chunk).await else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let want = text
                                .lines()
                                .find_map(|h| {
                                    h.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                                })
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + want {
                                break;
                            }
                        }
                    }
                    *l.lock().expect("lock") = String::from_utf8_lossy(&buf).to_string();
                    let code = c.load(Ordering::SeqCst);
                    let body = format!("hello {code}");
                    let resp = format!(
                        "HTTP/1.1 {code} Status\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                });
            }
        });
        HttpServer { code, last, task: Some(task) }
    }

    fn set(&self, code: u16) {
        self.code.store(code, Ordering::SeqCst);
    }

    async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t91_http_check_done_when_service_follows_its_endpoint_within_one_interval() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    let port = free_port();
    let interval = Duration::from_secs(1);
    register(
        &api,
        json!({"Name": "web", "Port": port,
        "Check": {"HTTP": format!("http://127.0.0.1:{port}/health"), "Interval": "1s", "Timeout": "500ms"}}),
    )
    .await;
    // Let the check run at least once against the closed port (steady state).
    eventually(Duration::from_secs(10), "first run", || async {
        let c = check(&api, "service:web").await;
        (c["Output"].as_str().is_some_and(|o| !o.is_empty())).then_some(())
    })
    .await;
    assert_eq!(passing_count(&api, "web").await, Some(0));

    let mut server = HttpServer::start(port, 200).await;
    let up = Instant::now();
    eventually(Duration::from_secs(10), "web passing", || async {
        (passing_count(&api, "web").await == Some(1)).then_some(())
    })
    .await;
    let took = up.elapsed();
    // One interval for the check to see it, plus slack for the sync through Raft, polling and a
    // loaded test machine.
    let slack = Duration::from_secs(1);
    assert!(took < interval + slack, "passing after {took:?}");

    server.stop().await;
    let down = Instant::now();
    eventually(Duration::from_secs(10), "web gone", || async {
        (passing_count(&api, "web").await == Some(0)).then_some(())
    })
    .await;
    let took = down.elapsed();
    assert!(took < interval + slack, "removed after {took:?}");
    let out = check(&api, "service:web").await["Output"].as_str().unwrap_or_default().to_string();
    assert!(out.contains(&format!("127.0.0.1:{port}")), "{out}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t92_http_status_mapping_request_shape_and_thresholds() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    let port = free_port();
    let mut server = HttpServer::start(port, 200).await;
    let body = json!({"Name": "api", "Check": {
        "HTTP": format!("http://127.0.0.1:{port}/health"), "Method": "POST", "Header": {"X-Test": ["yes"]},
        "Body": "ping", "Interval": "1s", "SuccessBeforePassing": 2, "FailuresBeforeWarning": 1,
        "FailuresBeforeCritical": 2}});
    register(&api, body).await;
    let c0 = wait_status(&api, "service:api", "passing").await;
    let out = c0["Output"].as_str().unwrap_or_default();
    assert!(out.starts_with(&format!("HTTP POST http://127.0.0.1:{port}/health: 200 OK")), "{out}");
    assert!(out.ends_with("Output: hello 200"), "{out}");
    assert_eq!(c0["Type"], "http");
    assert_eq!(c0["Definition"]["Method"], "POST");
    let req = server.last.lock().expect("lock").clone();
    assert!(req.starts_with("POST /health HTTP/1.1"), "{req}");
    assert!(req.to_ascii_lowercase().contains("x-test: yes"), "{req}");
    assert!(req.ends_with("ping"), "{req}");

    // Record the statuses the check goes through.
    let seen = Arc::new(Mutex::new(vec!["passing".to_string()]));
    let watcher = {
        let (api, seen) = (api.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let s = check(&api, "service:api").await["Status"].as_str().unwrap_or_default().to_string();
                {
                    let mut v = seen.lock().expect("lock");
                    if v.last() != Some(&s) {
                        v.push(s);
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    server.set(500);
    wait_status(&api, "service:api", "critical").await;
    server.set(200);
    let back = Instant::now();
    wait_status(&api, "service:api", "passing").await;
    assert!(back.elapsed() >= Duration::from_millis(900), "SuccessBeforePassing=2 needs two runs");
    server.set(429);
    wait_status(&api, "service:api", "warning").await;
    // Let the watcher see the last state too before stopping it.
    eventually(Duration::from_secs(10), "watcher saw the last warning", || async {
        let v = seen.lock().expect("lock").clone();
        (v.len() >= 5 && v.last().map(String::as_str) == Some("warning")).then_some(())
    })
    .await;
    watcher.abort();
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        ["passing", "warning", "critical", "passing", "warning"],
        "FailuresBeforeWarning=1, FailuresBeforeCritical=2"
    );
    server.stop().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_tcp_and_udp_checks() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let tcp_addr = tcp.local_addr().expect("addr");
    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    let udp_addr = udp.local_addr().expect("addr");
    register(
        &api,
        json!({"Name": "net", "Checks": [
            {"TCP": tcp_addr.to_string(), "Interval": "1s", "Timeout": "500ms"},
            {"UDP": udp_addr.to_string(), "Interval": "1s", "Timeout": "300ms"},
        ]}),
    )
    .await;
    let t = wait_status(&api, "service:net:1", "passing").await;
    assert_eq!(t["Type"], "tcp");
    let u = wait_status(&api, "service:net:2", "passing").await;
    assert_eq!(u["Type"], "udp");
    // The UDP check's datagram arrived.
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), udp.recv(&mut buf)).await.expect("datagram").expect("recv");
    assert!(n > 0);
    drop(tcp);
    drop(udp);
    wait_status(&api, "service:net:1", "critical").await;
    // Nothing listens any more: ICMP port unreachable comes back as an error.
    let u = wait_status(&api, "service:net:2", "critical").await;
    assert!(u["Output"].as_str().is_some_and(|o| o.contains(&udp_addr.to_string())), "{u}");
    c.shutdown().await;
}

// --- a gRPC health server on a real HTTP/2 implementation (the h2 crate) ---

/// Answers `grpc.health.v1.Health/Check`: the whole server (`""`) and `"db"` answer `status`
/// (1 SERVING, 2 NOT_SERVING); other services SERVICE_UNKNOWN (3).
async fn grpc_conn(conn: TcpStream, status: Arc<AtomicU8>) -> Result<(), h2::Error> {
    let mut h2c = h2::server::handshake(conn).await?;
    while let Some(req) = h2c.accept().await {
        let (request, mut respond) = req?;
        let status = status.clone();
        tokio::spawn(async move {
            assert_eq!(request.uri().path(), "/grpc.health.v1.Health/Check");
            assert_eq!(request.method(), http::Method::POST);
            assert_eq!(request.headers().get("content-type").map(|v| v.as_bytes()), Some(&b"application/grpc"[..]));
            let mut body = request.into_body();
            let mut data = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk?;
                let _ = body.flow_control().release_capacity(chunk.len());
                data.extend_from_slice(&chunk);
            }
            // 5-byte gRPC prefix, then HealthCheckRequest{service (field 1)}.
            let pb = data.get(5..).unwrap_or_default();
            let service = if pb.len() > 2 { String::from_utf8_lossy(&pb[2..]).to_string() } else { String::new() };
            let code = if service.is_empty() || service == "db" { status.load(Ordering::SeqCst) } else { 3 };
            let response = http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .body(())
                .expect("response");
            let mut send = respond.send_response(response, false)?;
            send.send_data(bytes::Bytes::from(vec![0, 0, 0, 0, 2, 0x08, code]), false)?;
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            send.send_trailers(trailers)?;
            Ok::<(), h2::Error>(())
        });
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t94_grpc_health_check() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let status = Arc::new(AtomicU8::new(1));
    let server = {
        let status = status.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(grpc_conn(conn, status.clone()));
            }
        })
    };
    register(
        &api,
        json!({"Name": "rpc", "Checks": [
            {"GRPC": addr.to_string(), "Interval": "1s", "Timeout": "1s"},
            {"GRPC": format!("{addr}/db"), "Interval": "1s"},
            {"GRPC": format!("{addr}/nope"), "Interval": "1s", "Status": "passing"},
        ]}),
    )
    .await;
    let g = wait_status(&api, "service:rpc:1", "passing").await;
    assert_eq!(g["Type"], "grpc");
    wait_status(&api, "service:rpc:2", "passing").await;
    let unknown = wait_status(&api, "service:rpc:3", "critical").await;
    assert!(unknown["Output"].as_str().is_some_and(|o| o.contains("SERVICE_UNKNOWN")), "{unknown}");
    status.store(2, Ordering::SeqCst);
    let ns = wait_status(&api, "service:rpc:1", "critical").await;
    assert!(ns["Output"].as_str().is_some_and(|o| o.contains("NOT_SERVING")), "{ns}");
    status.store(1, Ordering::SeqCst);
    wait_status(&api, "service:rpc:1", "passing").await;
    server.abort();
    let _ = server.await;
    wait_status(&api, "service:rpc:1", "critical").await;
    c.shutdown().await;
}

fn scripts_enabled(c: &mut AgentConfig) {
    c.enable_script_checks = true;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t95_script_check_exit_codes() {
    let c = Cluster::start_with(1, Options { tweak: Some(scripts_enabled), ..Options::default() }).await;
    let api = c.api(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let code = dir.path().join("code");
    std::fs::write(&code, "0").expect("write");
    let script = format!("echo out; exit $(cat {})", code.display());
    register(&api, json!({"Name": "job", "Check": {"Args": ["/bin/sh", "-c", script], "Interval": "1s"}})).await;
    let s = wait_status(&api, "service:job", "passing").await;
    assert_eq!(s["Output"], "out\n");
    assert_eq!(s["Type"], "script");
    std::fs::write(&code, "1").expect("write");
    wait_status(&api, "service:job", "warning").await;
    std::fs::write(&code, "3").expect("write");
    wait_status(&api, "service:job", "critical").await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_alias_checks_mirror_local_and_remote_services() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    register(&api, json!({"Name": "backend", "Check": {"TTL": "1h", "Status": "passing"}})).await;
    register(&api, json!({"Name": "frontend", "Check": {"AliasService": "backend"}})).await;
    let a = wait_status(&api, "service:frontend", "passing").await;
    assert_eq!(a["Type"], "alias");
    let r = api.request(Method::PUT, "/v1/agent/check/fail/service:backend?note=boom", None).await.expect("fail");
    assert_eq!(r.status, 200);
    let a = wait_status(&api, "service:frontend", "critical").await;
    assert!(a["Output"].as_str().is_some_and(|o| o.contains("boom")), "{a}");
    api.request(Method::PUT, "/v1/agent/check/pass/service:backend", None).await.expect("pass");
    wait_status(&api, "service:frontend", "passing").await;
    api.request(Method::PUT, "/v1/agent/service/deregister/backend", None).await.expect("deregister");
    wait_status(&api, "service:frontend", "critical").await;

    // A service on another node, known from the catalog.
    let ext = |status: &str| {
        json!({"Node": "ext", "Address": "192.0.2.7", "Service": {"ID": "pay1", "Service": "pay", "Port": 1},
               "Check": {"CheckID": "pay-check", "ServiceID": "pay1", "Status": status}})
    };
    assert_eq!(put(&api, "/v1/catalog/register", ext("critical")).await.status, 200);
    let r =
        put(&api, "/v1/agent/check/register", json!({"Name": "pay-alias", "AliasNode": "ext", "AliasService": "pay1"}))
            .await;
    assert_eq!(r.status, 200, "{}", r.text());
    wait_status(&api, "pay-alias", "critical").await;
    assert_eq!(put(&api, "/v1/catalog/register", ext("passing")).await.status, 200);
    wait_status(&api, "pay-alias", "passing").await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t97_hundreds_of_checks_run_cheaply_and_never_block_each_other() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let accept = tokio::spawn(async move {
        while let Ok((s, _)) = tcp.accept().await {
            drop(s);
        }
    });
    // A server that accepts and never answers: its HTTP check hangs until its timeout.
    let hang = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hang_addr = hang.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hang.accept().await {
            held.push(s);
        }
    });
    register(
        &api,
        json!({"Name": "slow", "Check": {"HTTP": format!("http://{hang_addr}/"), "Interval": "1s", "Timeout": "30s"}}),
    )
    .await;
    let n = 200;
    let checks: Vec<Value> = (0..n).map(|_| json!({"TCP": addr.to_string(), "Interval": "1s"})).collect();
    register(&api, json!({"Name": "many", "Checks": checks})).await;
    assert!(c.agent(0).local().running_checks() > n);
    eventually(Duration::from_secs(10), "all 200 checks passing", || async {
        let v = api.get("/v1/agent/checks").await.ok()?.json();
        let passing = v.as_object()?.values().filter(|c| c["ServiceID"] == "many" && c["Status"] == "passing").count();
        (passing == n).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "many passing in the catalog", || async {
        (passing_count(&api, "many").await == Some(1)).then_some(())
    })
    .await;
    assert_eq!(check(&api, "service:slow").await["Status"], "critical", "still waiting on its hanging server");
    accept.abort();
    hold.abort();
    c.shutdown().await;
}

/// An HTTPS server with a self-signed certificate for 127.0.0.1 answering every request 200.
async fn https_server() -> (u16, JoinHandle<()>) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("cert");
    let der = rustls::pki_types::CertificateDer::from(cert.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ =
                    tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nsecure ok").await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t98_https_checks_verify_or_skip_verification() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    let (port, server) = https_server().await;
    let url = format!("https://127.0.0.1:{port}/health");
    register(
        &api,
        json!({"Name": "tls-skip", "Port": port, "Check": {"CheckID": "skip", "HTTP": url, "Interval": "1s", "TLSSkipVerify": true}}),
    )
    .await;
    register(
        &api,
        json!({"Name": "tls-verify", "Port": port, "Check": {"CheckID": "verify", "HTTP": url, "Interval": "1s"}}),
    )
    .await;
    let skip = wait_status(&api, "skip", "passing").await;
    assert!(skip["Output"].as_str().is_some_and(|o| o.contains("200") && o.contains("secure ok")), "{skip}");
    // A self-signed certificate does not verify against the web PKI roots.
    let verify = eventually(Duration::from_secs(20), "verify check ran", || async {
        let c = check(&api, "verify").await;
        c["Output"].as_str().is_some_and(|o| !o.is_empty()).then_some(c)
    })
    .await;
    assert_eq!(verify["Status"], "critical");
    assert!(verify["Output"].as_str().is_some_and(|o| o.contains("TLS handshake")), "{verify}");
    server.abort();
    c.shutdown().await;
}
