//! The client workload: concurrent PUT / CAS / reads over a few keys, every request to a random
//! server (or only to followers, so writes are forwarded), every outcome recorded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::task::JoinHandle;

use super::history::{History, Kind, Op, Output};
use crate::process::ClusterView;

/// Which servers the clients talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Any server, chosen at random per request.
    Random,
    /// Only servers that are not the leader (as last seen), so every write is forwarded.
    Followers,
    /// Only the leader (as last seen), so writes are (almost) never forwarded.
    Leader,
}

/// A read's consistency mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// No query parameter: the leader answers from its state (lease-based in Consul).
    Default,
    /// `?consistent`: the leader confirms leadership with a quorum first.
    Consistent,
}

/// Workload parameters.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Concurrent clients.
    pub clients: usize,
    /// Keys (`fault/k0` …).
    pub keys: usize,
    /// Where requests go.
    pub target: Target,
    /// Pause between one client's operations, so per-key histories stay in the low thousands.
    pub pause: Duration,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig { clients: 8, keys: 5, target: Target::Random, pause: Duration::from_millis(3) }
    }
}

/// The name of key `i`.
pub fn key_name(i: usize) -> String {
    format!("fault/k{i}")
}

/// A read's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// 200: the value and its ModifyIndex.
    Value {
        /// The value.
        value: String,
        /// `ModifyIndex` of the entry.
        modify_index: u64,
    },
    /// 404.
    Absent,
}

/// An HTTP client with short timeouts: a request to a killed or stopped server must end quickly
/// (as an unknown outcome) rather than stall a client for the whole schedule.
#[derive(Debug, Clone)]
pub struct KvClient {
    http: reqwest::Client,
}

impl Default for KvClient {
    fn default() -> Self {
        Self::new()
    }
}

/// The outcome of a write.
#[derive(Debug)]
enum Write {
    /// 200 with `true`/`false`: definite.
    Answer(bool),
    /// The connection was never made: certainly not applied.
    NotSent,
    /// Anything else (timeout, broken connection, 5xx): may or may not have been applied.
    Unknown(String),
}

impl KvClient {
    /// A client with a 2.5 s request timeout.
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(2500))
            .connect_timeout(Duration::from_millis(500))
            .tls_backend_preconfigured(consul_core::tls::plain_client_tls())
            .build()
            .expect("reqwest client");
        KvClient { http }
    }

    /// `GET /v1/kv/<key><query>`: the value (or absence) and `X-Consul-Index`; `Err` when the
    /// read failed (such reads say nothing and are left out of the history).
    pub async fn read(&self, addr: SocketAddr, key: &str, query: &str) -> Result<(Read, u64), String> {
        let resp =
            self.http.get(format!("http://{addr}/v1/kv/{key}{query}")).send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let index = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        match status {
            404 => Ok((Read::Absent, index)),
            200 => {
                let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                let entry = v.get(0).ok_or("empty KV answer")?;
                let raw = entry.get("Value").and_then(Value::as_str).unwrap_or("");
                let value = base64::engine::general_purpose::STANDARD.decode(raw).map_err(|e| e.to_string())?;
                let modify_index = entry.get("ModifyIndex").and_then(Value::as_u64).ok_or("no ModifyIndex")?;
                Ok((Read::Value { value: String::from_utf8_lossy(&value).into_owned(), modify_index }, index))
            }
            s => Err(format!("HTTP {s}: {}", String::from_utf8_lossy(&body))),
        }
    }

    async fn write(&self, addr: SocketAddr, key: &str, value: &str, cas: Option<u64>) -> Write {
        let query = cas.map(|i| format!("?cas={i}")).unwrap_or_default();
        let sent = self.http.put(format!("http://{addr}/v1/kv/{key}{query}")).body(value.to_string()).send().await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Write::NotSent,
            Err(e) => return Write::Unknown(e.to_string()),
        };
        let status = resp.status().as_u16();
        match resp.text().await {
            Ok(body) if status == 200 && body.trim() == "true" => Write::Answer(true),
            Ok(body) if status == 200 && body.trim() == "false" => Write::Answer(false),
            Ok(body) => Write::Unknown(format!("HTTP {status}: {}", body.trim())),
            Err(e) => Write::Unknown(e.to_string()),
        }
    }
}

/// Records one read into `history` (failed reads are dropped); returns what it saw.
pub async fn recorded_read(
    kv: &KvClient,
    history: &History,
    client: usize,
    server: usize,
    addr: SocketAddr,
    key: &str,
    mode: ReadMode,
) -> Option<Read> {
    let query = match mode {
        ReadMode::Default => "",
        ReadMode::Consistent => "?consistent",
    };
    let call_ns = history.now_ns();
    let (read, index) = kv.read(addr, key, query).await.ok()?;
    let return_ns = history.now_ns();
    let (value, mi) = match &read {
        Read::Value { value, modify_index } => (value.clone(), *modify_index),
        Read::Absent => (String::new(), 0),
    };
    history.record(Op {
        client,
        key: key.to_string(),
        kind: Kind::Get,
        output: Some(Output::Read(value)),
        call_ns,
        return_ns: Some(return_ns),
        meta: format!(
            "s{server} {} index={index} modify={mi}",
            if query.is_empty() { "default" } else { "consistent" }
        ),
    });
    Some(read)
}

/// Records one write: `kind` is a PUT, or a CAS sent with `?cas=<cas_index>`.
async fn recorded_write(
    kv: &KvClient,
    history: &History,
    client: usize,
    (server, addr): (usize, SocketAddr),
    key: &str,
    kind: Kind,
    cas_index: Option<u64>,
) {
    let value = match &kind {
        Kind::Put { value } | Kind::Cas { value, .. } => value.clone(),
        Kind::Get => unreachable!("a read is not a write"),
    };
    let call_ns = history.now_ns();
    let outcome = kv.write(addr, key, &value, cas_index).await;
    let return_ns = history.now_ns();
    let meta = match cas_index {
        Some(index) => format!("s{server} cas={index}"),
        None => format!("s{server}"),
    };
    let (output, return_ns, meta) = match outcome {
        Write::NotSent => return,
        Write::Answer(ok) => (Some(Output::Written(ok)), Some(return_ns), meta),
        Write::Unknown(why) => (None, None, format!("{meta} unknown: {why}")),
    };
    history.record(Op { client, key: key.to_string(), kind, output, call_ns, return_ns, meta });
}

/// A running workload.
#[derive(Debug)]
pub struct Workload {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workload {
    /// Starts `cfg.clients` clients against `view`, recording into `history`.
    pub fn start(view: ClusterView, history: History, cfg: WorkloadConfig, seed: u64) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let leader = Arc::new(AtomicUsize::new(usize::MAX));
        let mut tasks = Vec::new();
        if cfg.target != Target::Random {
            // Tracks the leader so clients can avoid it; a stale answer for a few hundred ms
            // after a failover only means a few requests go to the new leader directly.
            let (view, stop, leader) = (view.clone(), stop.clone(), leader.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(l) = view.leader_index().await {
                        leader.store(l, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }));
        }
        for client in 0..cfg.clients {
            let (view, history, cfg, stop, leader) =
                (view.clone(), history.clone(), cfg.clone(), stop.clone(), leader.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed ^ (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let kv = KvClient::new();
                let mut counter = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let server = pick_server(&mut rng, view.http.len(), cfg.target, leader.load(Ordering::Relaxed));
                    let addr = view.http[server];
                    let key = key_name(rng.gen_range(0..cfg.keys));
                    counter += 1;
                    // Unique per history: a value read identifies the write that produced it.
                    let value = format!("c{client}-{counter}");
                    match rng.gen_range(0..100) {
                        0..=29 => {
                            let kind = Kind::Put { value };
                            recorded_write(&kv, &history, client, (server, addr), &key, kind, None).await;
                        }
                        30..=54 => {
                            // CAS: the index comes from a ?consistent read, recorded too.
                            let read =
                                recorded_read(&kv, &history, client, server, addr, &key, ReadMode::Consistent).await;
                            // A 404 means "absent": ?cas=0 succeeds only if the key still is.
                            let (expected, index) = match read {
                                Some(Read::Value { value, modify_index }) => (value, modify_index),
                                Some(Read::Absent) => (String::new(), 0),
                                None => {
                                    tokio::time::sleep(cfg.pause).await;
                                    continue;
                                }
                            };
                            let kind = Kind::Cas { expected, value };
                            recorded_write(&kv, &history, client, (server, addr), &key, kind, Some(index)).await;
                        }
                        55..=79 => {
                            recorded_read(&kv, &history, client, server, addr, &key, ReadMode::Default).await;
                        }
                        _ => {
                            recorded_read(&kv, &history, client, server, addr, &key, ReadMode::Consistent).await;
                        }
                    }
                    tokio::time::sleep(cfg.pause).await;
                }
            }));
        }
        Workload { stop, tasks }
    }

    /// Stops the clients and waits for their last requests (each ends within its timeout).
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// A server for the next request: any, or any but the leader.
fn pick_server(rng: &mut StdRng, n: usize, target: Target, leader: usize) -> usize {
    match target {
        Target::Leader if leader < n => leader,
        Target::Followers if leader < n => {
            let i = rng.gen_range(0..n - 1);
            if i >= leader {
                i + 1
            } else {
                i
            }
        }
        _ => rng.gen_range(0..n),
    }
}

/// Default-mode reads of every key from every server, as fast as they answer, for `dur`:
/// what a client sees right after a restart. All keys are read at once, so the first reads a
/// restarted server answers cover every key. Server `s`'s reads are recorded as client
/// `first_client + s` (one read per key at a time, so per key the client is sequential).
pub fn read_burst(
    view: ClusterView,
    history: History,
    keys: usize,
    first_client: usize,
    dur: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let kv = KvClient::new();
        let until = tokio::time::Instant::now() + dur;
        let readers = (0..view.http.len()).map(|s| {
            let (kv, history, addr) = (kv.clone(), history.clone(), view.http[s]);
            async move {
                while tokio::time::Instant::now() < until {
                    let reads = (0..keys).map(|k| {
                        let (kv, history) = (kv.clone(), history.clone());
                        async move {
                            let key = key_name(k);
                            recorded_read(&kv, &history, first_client + s, s, addr, &key, ReadMode::Default).await
                        }
                    });
                    let answered = futures::future::join_all(reads).await.iter().filter(|r| r.is_some()).count();
                    // Throttled so the history stays checkable; a server not up yet is retried
                    // every millisecond, so its very first answers are caught.
                    let pause = if answered == 0 { 1 } else { 3 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
        });
        futures::future::join_all(readers).await;
    })
}
