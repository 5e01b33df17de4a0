//! The closed-loop load generator: request construction, per-client loops and aggregation.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use crate::args::{value_name, Config, Endpoint, Op, ReadKind, Target};
use crate::histogram::Histogram;

/// One fully specified HTTP request (minus the endpoint-specific parts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlannedRequest {
    /// HTTP method.
    pub(crate) method: Method,
    /// Path and query, relative to the endpoint's base path.
    pub(crate) path: String,
    /// Request body.
    pub(crate) body: Bytes,
    /// `Content-Type` to send, if any.
    pub(crate) content_type: Option<&'static str>,
}

/// How a response is judged successful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// 200 and body `true` (Consul PUT).
    StatusAndTrue,
    /// 200 only.
    Status,
    /// 200 and a non-empty `kvs` field (etcd range of an existing key).
    StatusAndKvs,
}

/// Builds the requests for one target/op/read combination.
#[derive(Debug, Clone)]
pub(crate) struct Planner {
    target: Target,
    op: Op,
    read: Option<ReadKind>,
    value: Bytes,
    value_b64: String,
    /// `?dc=` on every Consul request (a request for another datacenter, forwarded by the
    /// server it reaches).
    dc: Option<String>,
}

/// The benchmark's key name for index `n`.
pub(crate) fn key_name(n: u64) -> String {
    format!("bench/{n}")
}

/// A deterministic printable value of `size` bytes.
pub(crate) fn make_value(size: usize) -> Bytes {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..size).map(|i| ALPHABET[i % ALPHABET.len()]).collect::<Vec<u8>>().into()
}

impl Planner {
    /// A planner for `op` against `target`; `read` selects the GET consistency.
    pub(crate) fn new(target: Target, op: Op, read: Option<ReadKind>, value_size: usize) -> Self {
        let value = make_value(value_size);
        let value_b64 = B64.encode(&value);
        Self { target, op, read, value, value_b64, dc: None }
    }

    /// Sends every Consul request for datacenter `dc` (`?dc=`).
    pub(crate) fn with_dc(mut self, dc: Option<String>) -> Self {
        self.dc = dc;
        self
    }

    /// `path` with `?dc=` added when a datacenter is set.
    fn in_dc(&self, path: String) -> String {
        match &self.dc {
            None => path,
            Some(dc) if path.contains('?') => format!("{path}&dc={dc}"),
            Some(dc) => format!("{path}?dc={dc}"),
        }
    }

    /// A planner that writes (used for preloading before a GET run).
    pub(crate) fn writer(&self) -> Self {
        Self { op: Op::Put, read: None, ..self.clone() }
    }

    fn check(&self) -> Check {
        match (self.target, self.op) {
            (Target::Consul, Op::Put) => Check::StatusAndTrue,
            (Target::Etcd, Op::Get) => Check::StatusAndKvs,
            _ => Check::Status,
        }
    }

    /// The request for key index `n`.
    pub(crate) fn request(&self, n: u64) -> PlannedRequest {
        let key = key_name(n);
        match (self.target, self.op) {
            (Target::Consul, Op::Put) => PlannedRequest {
                method: Method::PUT,
                path: self.in_dc(format!("/v1/kv/{key}")),
                body: self.value.clone(),
                content_type: None,
            },
            (Target::Consul, Op::Get) => {
                let query = match self.read {
                    Some(ReadKind::Stale) => "?stale",
                    Some(ReadKind::Consistent) => "?consistent",
                    _ => "",
                };
                PlannedRequest {
                    method: Method::GET,
                    path: self.in_dc(format!("/v1/kv/{key}{query}")),
                    body: Bytes::new(),
                    content_type: None,
                }
            }
            (Target::Etcd, Op::Put) => PlannedRequest {
                method: Method::POST,
                path: "/v3/kv/put".to_string(),
                body: serde_json::json!({ "key": B64.encode(&key), "value": self.value_b64 }).to_string().into(),
                content_type: Some("application/json"),
            },
            (Target::Etcd, Op::Get) => {
                let mut body = serde_json::json!({ "key": B64.encode(&key) });
                if self.read == Some(ReadKind::Serializable) {
                    body["serializable"] = serde_json::Value::Bool(true);
                }
                PlannedRequest {
                    method: Method::POST,
                    path: "/v3/kv/range".to_string(),
                    body: body.to_string().into(),
                    content_type: Some("application/json"),
                }
            }
        }
    }
}

/// Small, fast PRNG (SplitMix64) for key selection; no cryptographic needs here.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next pseudo-random value.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform value in `0..n` (n > 0; the modulo bias is negligible for key spaces).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Error from one request attempt.
enum ReqError {
    /// The connection is unusable and must be re-established.
    Transport(String),
    /// The server answered, but not with success; the connection can be reused.
    Response(String),
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(ep: &Endpoint) -> Result<Sender> {
    let stream = TcpStream::connect(ep.addr).await.with_context(|| format!("connect {}", ep.url))?;
    stream.set_nodelay(true)?;
    match &ep.tls {
        Some(tls) => {
            // The server is named by its address (Consul's certificates carry 127.0.0.1).
            let name = rustls::pki_types::ServerName::from(ep.addr.ip());
            let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
                .connect(name, stream)
                .await
                .with_context(|| format!("TLS handshake {}", ep.url))?;
            http1(TokioIo::new(stream), ep).await
        }
        None => http1(TokioIo::new(stream), ep).await,
    }
}

async fn http1<IO>(io: IO, ep: &Endpoint) -> Result<Sender>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http1::handshake(io).await.with_context(|| format!("handshake {}", ep.url))?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes the connection.
        let _ = conn.await;
    });
    Ok(sender)
}

async fn send(
    sender: &mut Sender,
    ep: &Endpoint,
    req: PlannedRequest,
    check: Check,
) -> std::result::Result<(), ReqError> {
    let mut builder = Request::builder()
        .method(req.method)
        .uri(format!("{}{}", ep.base_path, req.path))
        .header(HOST, ep.host_header.as_str());
    if let Some(token) = &ep.token {
        builder = builder.header("X-Consul-Token", token.as_str());
    }
    if let Some(ct) = req.content_type {
        builder = builder.header(CONTENT_TYPE, ct);
    }
    let request =
        builder.body(Full::new(req.body)).map_err(|e| ReqError::Response(format!("building request: {e}")))?;
    sender.ready().await.map_err(|e| ReqError::Transport(format!("connection not ready: {e}")))?;
    let response = sender.send_request(request).await.map_err(|e| ReqError::Transport(format!("send: {e}")))?;
    let status = response.status();
    let body =
        response.into_body().collect().await.map_err(|e| ReqError::Transport(format!("reading body: {e}")))?.to_bytes();
    if status != StatusCode::OK {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(ReqError::Response(format!("HTTP {status}: {}", text.trim())));
    }
    let ok = match check {
        Check::Status => true,
        Check::StatusAndTrue => body.trim_ascii() == b"true",
        Check::StatusAndKvs => contains(&body, b"\"kvs\""),
    };
    if ok {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        Err(ReqError::Response(format!("unexpected body: {}", text.trim())))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What one client measured.
#[derive(Debug, Default)]
struct ClientStats {
    hist: Histogram,
    errors: u64,
    first_error: Option<String>,
}

impl ClientStats {
    fn error(&mut self, counted: bool, msg: String) {
        if counted {
            self.errors += 1;
        }
        if self.first_error.is_none() {
            self.first_error = Some(msg);
        }
    }
}

/// Timeline shared by all clients.
#[derive(Debug, Clone, Copy)]
struct Window {
    measure_from: Instant,
    end: Instant,
}

async fn client_loop(
    id: usize,
    ep: Endpoint,
    planner: Arc<Planner>,
    keys: u64,
    timeout: Duration,
    window: Window,
) -> ClientStats {
    let mut stats = ClientStats::default();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mut rng = SplitMix64::new(nanos ^ ((id as u64 + 1) << 32));
    let check = planner.check();
    let mut sender: Option<Sender> = None;
    loop {
        if Instant::now() >= window.end {
            break;
        }
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match tokio::time::timeout(timeout, connect(&ep)).await {
                Ok(Ok(s)) => sender.insert(s),
                failed => {
                    let msg = match failed {
                        Ok(Err(e)) => format!("{e:#}"),
                        _ => format!("connect {}: timed out", ep.url),
                    };
                    stats.error(Instant::now() >= window.measure_from, msg);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let req = planner.request(rng.below(keys));
        let t0 = Instant::now();
        let outcome = tokio::time::timeout(timeout, send(s, &ep, req, check)).await;
        let t1 = Instant::now();
        // An operation is measured when it *completes* inside the window: that is what makes
        // ops/duration an unbiased throughput for a closed loop.
        let counted = t1 >= window.measure_from && t1 <= window.end;
        match outcome {
            Ok(Ok(())) => {
                if counted {
                    stats.hist.record((t1 - t0).as_nanos() as u64);
                }
            }
            Ok(Err(ReqError::Response(msg))) => stats.error(counted, msg),
            Ok(Err(ReqError::Transport(msg))) => {
                sender = None;
                stats.error(counted, msg);
            }
            Err(_) => {
                sender = None;
                stats.error(counted, format!("request timed out after {timeout:?}"));
            }
        }
    }
    stats
}

/// Writes every key in the key space once, spreading the work over `concurrency` connections.
async fn preload(cfg: &Config, planner: &Planner, concurrency: usize) -> Result<()> {
    let writer = Arc::new(planner.writer());
    let concurrency = concurrency.clamp(1, 32).min(cfg.keys as usize);
    let mut tasks = Vec::with_capacity(concurrency);
    for c in 0..concurrency {
        let ep = cfg.endpoints[c % cfg.endpoints.len()].clone();
        let writer = Arc::clone(&writer);
        let (keys, timeout, stride) = (cfg.keys, cfg.timeout, concurrency as u64);
        tasks.push(tokio::spawn(async move {
            let check = writer.check();
            let mut sender: Option<Sender> = None;
            let mut n = c as u64;
            while n < keys {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let s = match sender.as_mut() {
                        Some(s) => s,
                        None => sender.insert(connect(&ep).await?),
                    };
                    let req = writer.request(n);
                    let msg = match tokio::time::timeout(timeout, send(s, &ep, req, check)).await {
                        Ok(Ok(())) => break,
                        Ok(Err(ReqError::Response(m))) => m,
                        Ok(Err(ReqError::Transport(m))) => {
                            sender = None;
                            m
                        }
                        Err(_) => {
                            sender = None;
                            "timed out".to_string()
                        }
                    };
                    if attempt >= 5 {
                        bail!("preloading {} via {}: {msg}", key_name(n), ep.url);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                n += stride;
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| anyhow!("preload task: {e}"))??;
    }
    Ok(())
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct LatencyUs {
    /// Fastest successful operation.
    pub(crate) min: f64,
    /// Mean.
    pub(crate) mean: f64,
    /// Median.
    pub(crate) p50: f64,
    /// 90th percentile.
    pub(crate) p90: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// 99.9th percentile.
    pub(crate) p999: f64,
    /// Slowest successful operation.
    pub(crate) max: f64,
}

/// One run's result; also the schema of a `--json` line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct RunResult {
    /// `consul` or `etcd`.
    pub(crate) target: String,
    /// `put` or `get`.
    pub(crate) op: String,
    /// The `--mode` given (meaningful for `get`).
    pub(crate) mode: String,
    /// Read semantics used for `get` (`leader`, `stale`, `consistent`, `linearizable`,
    /// `serializable`); absent for `put`.
    pub(crate) read: Option<String>,
    /// Concurrent closed-loop clients.
    pub(crate) clients: usize,
    /// Endpoints the clients were spread over.
    pub(crate) endpoints: Vec<String>,
    /// Value size in bytes.
    pub(crate) value_size: usize,
    /// Key space size.
    pub(crate) keys: u64,
    /// Warm-up before measuring, seconds.
    pub(crate) warmup_s: f64,
    /// Length of the measured window, seconds.
    pub(crate) duration_s: f64,
    /// Successful operations completed inside the window.
    pub(crate) ops: u64,
    /// Failed operations (bad status/body, transport error, timeout) inside the window.
    pub(crate) errors: u64,
    /// `ops / duration_s`.
    pub(crate) throughput_ops_s: f64,
    /// Latency of successful operations, microseconds.
    pub(crate) latency_us: LatencyUs,
    /// First error message seen (including warm-up), if any.
    pub(crate) first_error: Option<String>,
    /// `--tag`, if given.
    pub(crate) tag: Option<String>,
    /// Unix time (seconds) when measuring started.
    pub(crate) started_unix: u64,
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

/// Runs one benchmark as configured and returns its result.
pub(crate) async fn run(cfg: &Config) -> Result<RunResult> {
    let planner = Arc::new(Planner::new(cfg.target, cfg.op, cfg.read, cfg.value_size).with_dc(cfg.dc.clone()));
    if cfg.preload {
        preload(cfg, &planner, cfg.clients).await.context("preloading the key space")?;
    }
    let start = Instant::now();
    let window = Window { measure_from: start + cfg.warmup, end: start + cfg.warmup + cfg.duration };
    let started_unix = (SystemTime::now() + cfg.warmup).duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut tasks = Vec::with_capacity(cfg.clients);
    for id in 0..cfg.clients {
        let ep = cfg.endpoints[id % cfg.endpoints.len()].clone();
        tasks.push(tokio::spawn(client_loop(id, ep, Arc::clone(&planner), cfg.keys, cfg.timeout, window)));
    }
    let mut hist = Histogram::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let stats = t.await.map_err(|e| anyhow!("client task: {e}"))?;
        hist.merge(&stats.hist);
        errors += stats.errors;
        if first_error.is_none() {
            first_error = stats.first_error;
        }
    }
    let duration_s = cfg.duration.as_secs_f64();
    Ok(RunResult {
        target: value_name(&cfg.target),
        op: value_name(&cfg.op),
        mode: value_name(&cfg.mode),
        read: cfg.read.map(|r| r.as_str().to_string()),
        clients: cfg.clients,
        endpoints: cfg.endpoints.iter().map(|e| e.url.clone()).collect(),
        value_size: cfg.value_size,
        keys: cfg.keys,
        warmup_s: cfg.warmup.as_secs_f64(),
        duration_s,
        ops: hist.count(),
        errors,
        throughput_ops_s: (hist.count() as f64 / duration_s * 10.0).round() / 10.0,
        latency_us: LatencyUs {
            min: us(hist.min()),
            mean: us(hist.mean() as u64),
            p50: us(hist.value_at_quantile(0.50)),
            p90: us(hist.value_at_quantile(0.90)),
            p99: us(hist.value_at_quantile(0.99)),
            p999: us(hist.value_at_quantile(0.999)),
            max: us(hist.max()),
        },
        first_error,
        tag: cfg.tag.clone(),
        started_unix,
    })
}

/// Human-readable multi-line report.
pub(crate) fn render_text(r: &RunResult) -> String {
    let ms = |v: f64| format!("{:.3} ms", v / 1000.0);
    let l = &r.latency_us;
    let mut s = format!(
        "target={} op={}{} clients={} endpoints={} value={}B keys={}\n",
        r.target,
        r.op,
        r.read.as_deref().map(|m| format!(" read={m}")).unwrap_or_default(),
        r.clients,
        r.endpoints.len(),
        r.value_size,
        r.keys
    );
    s += &format!("window      {:.2} s (after {:.2} s warm-up)\n", r.duration_s, r.warmup_s);
    s += &format!("ops         {}\n", r.ops);
    s += &format!("throughput  {:.1} ops/s\n", r.throughput_ops_s);
    s += &format!("latency     p50 {}  p90 {}  p99 {}  max {}\n", ms(l.p50), ms(l.p90), ms(l.p99), ms(l.max));
    s += &format!("errors      {}\n", r.errors);
    if let Some(e) = &r.first_error {
        s += &format!("first error {e}\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(r: &PlannedRequest) -> serde_json::Value {
        serde_json::from_slice(&r.body).expect("json body")
    }

    #[test]
    fn consul_requests() {
        let p = Planner::new(Target::Consul, Op::Put, None, 5);
        let r = p.request(7);
        assert_eq!(r.method, Method::PUT);
        assert_eq!(r.path, "/v1/kv/bench/7");
        assert_eq!(&r.body[..], b"abcde");
        for (read, path) in [
            (ReadKind::Leader, "/v1/kv/bench/3"),
            (ReadKind::Stale, "/v1/kv/bench/3?stale"),
            (ReadKind::Consistent, "/v1/kv/bench/3?consistent"),
        ] {
            let r = Planner::new(Target::Consul, Op::Get, Some(read), 5).request(3);
            assert_eq!(r.method, Method::GET);
            assert_eq!(r.path, path);
            assert!(r.body.is_empty());
        }
    }

    /// `--dc`: every Consul request, the preload's writes included, names the datacenter.
    #[test]
    fn consul_requests_name_a_datacenter() {
        let r = Planner::new(Target::Consul, Op::Get, Some(ReadKind::Stale), 3).with_dc(Some("dc2".into())).request(3);
        assert_eq!(r.path, "/v1/kv/bench/3?stale&dc=dc2");
        let w = Planner::new(Target::Consul, Op::Get, Some(ReadKind::Leader), 3).with_dc(Some("dc2".into())).writer();
        assert_eq!(w.request(3).path, "/v1/kv/bench/3?dc=dc2");
    }

    #[test]
    fn etcd_requests() {
        let p = Planner::new(Target::Etcd, Op::Put, None, 3);
        let r = p.request(12);
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.path, "/v3/kv/put");
        let j = body_json(&r);
        assert_eq!(j["key"], B64.encode("bench/12"));
        assert_eq!(j["value"], B64.encode("abc"));

        let r = Planner::new(Target::Etcd, Op::Get, Some(ReadKind::Linearizable), 3).request(1);
        assert_eq!(r.path, "/v3/kv/range");
        let j = body_json(&r);
        assert_eq!(j["key"], B64.encode("bench/1"));
        assert!(j.get("serializable").is_none());

        let r = Planner::new(Target::Etcd, Op::Get, Some(ReadKind::Serializable), 3).request(1);
        assert_eq!(body_json(&r)["serializable"], true);

        let w = Planner::new(Target::Etcd, Op::Get, Some(ReadKind::Serializable), 3).writer();
        assert_eq!(w.request(1).path, "/v3/kv/put");
    }

    #[test]
    fn value_has_requested_size() {
        assert_eq!(make_value(0).len(), 0);
        assert_eq!(make_value(128).len(), 128);
        assert!(make_value(1000).iter().all(u8::is_ascii_alphanumeric));
    }

    #[test]
    fn rng_covers_key_space() {
        let mut rng = SplitMix64::new(42);
        let mut seen = [false; 16];
        for _ in 0..1000 {
            seen[rng.below(16) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn substring_search() {
        assert!(contains(br#"{"header":{},"kvs":[]}"#, b"\"kvs\""));
        assert!(!contains(br#"{"header":{}}"#, b"\"kvs\""));
        assert!(!contains(b"", b"\"kvs\""));
    }
}
