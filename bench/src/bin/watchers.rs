//! `consul-rs-watchers-bench`: many blocking queries, one write (issue #22's watch goals).
//!
//! Against one running agent (consul-rs or Consul; both speak the same KV API): parks
//! `--watchers` blocking `GET /v1/kv/<key>?index=…&wait=…`, each on its own HTTP/1.1
//! connection, spread round-robin over `--keys` keys, then PUTs every key once and times, for each
//! watcher, the span from the PUT of its key being sent to its own answer arriving. Repeats for
//! `--rounds` (each round parks again at the new index). Also reports the agent's resident memory
//! (`/proc/<pid>/status`) before the watchers connect and once they are all parked.
//!
//! Connections come from `--sources` loopback addresses (127.0.0.2, 127.0.0.3, …) so that an
//! agent's per-client-IP connection limit and the ephemeral port range of one address do not cap
//! the count. The process's open-file limit does: each watcher is one descriptor here and one in
//! the agent. Prints one JSON object.

#[path = "../proc_status.rs"]
mod proc_status;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpSocket;
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(about = "Blocking-query release latency and memory with many parked watchers")]
struct Args {
    /// Agent HTTP address.
    #[arg(long, default_value = "127.0.0.1:8500")]
    addr: SocketAddr,
    /// Agent process id (for its resident memory).
    #[arg(long)]
    pid: Option<u32>,
    /// Blocking queries to park.
    #[arg(long, default_value_t = 1_000)]
    watchers: usize,
    /// Keys they are spread over (watcher i waits on key i mod keys).
    #[arg(long, default_value_t = 1)]
    keys: usize,
    /// Write-and-release rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Loopback source addresses to spread connections over (127.0.0.2 onwards).
    #[arg(long, default_value_t = 8)]
    sources: u8,
    /// Seconds to let the agent park every query after the last one was sent.
    #[arg(long, default_value_t = 3)]
    settle: u64,
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// One keep-alive connection from `source`.
async fn connect(addr: SocketAddr, source: IpAddr) -> Result<Sender> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0)).with_context(|| format!("bind {source}"))?;
    let stream = socket.connect(addr).await.with_context(|| format!("connect {addr} from {source}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// GET `path`; the status and the `X-Consul-Index` header.
async fn get(sender: &mut Sender, addr: SocketAddr, path: &str) -> Result<(StatusCode, u64)> {
    let req = Request::get(path).header(hyper::header::HOST, addr.to_string()).body(Empty::new())?;
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let index =
        resp.headers().get("X-Consul-Index").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
    resp.into_body().collect().await?;
    Ok((status, index))
}

fn key_name(k: usize) -> String {
    format!("watch-bench/{k:06}")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.keys == 0 || args.watchers == 0 || args.sources == 0 {
        bail!("--watchers, --keys and --sources must be at least 1");
    }
    // Plain HTTP only; reqwest still wants a rustls configuration (see the workspace Cargo.toml).
    let http = reqwest::Client::builder()
        .no_proxy()
        .tls_backend_preconfigured(consul_core::tls::plain_client_tls())
        .build()?;
    let base = format!("http://{}", args.addr);
    let sources: Vec<IpAddr> = (0..args.sources).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i))).collect();
    // Every key exists before anyone waits on it, so each watcher parks on the key's own index.
    for k in 0..args.keys {
        let r = http.put(format!("{base}/v1/kv/{}", key_name(k))).body("0").send().await?;
        if !r.status().is_success() {
            bail!("seeding {}: HTTP {}", key_name(k), r.status());
        }
    }
    let rss_idle = proc_status::rss_kib(args.pid);

    // Each watcher: a connection, then per round one blocking GET at the index it last saw.
    // `round_tx` starts a round; each watcher answers with its latency in that round.
    let (round_tx, _) = watch::channel::<Option<(usize, Instant)>>(None);
    let sent = Arc::new(AtomicUsize::new(0));
    let (lat_tx, mut lat_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Result<f64, String>)>();
    // Release instants per key and round, filled in just before each PUT is sent.
    let put_times: Arc<std::sync::Mutex<Vec<Option<Instant>>>> = Arc::new(std::sync::Mutex::new(vec![None; args.keys]));
    let connect_started = Instant::now();
    let mut senders = Vec::with_capacity(args.watchers);
    for i in 0..args.watchers {
        senders.push(connect(args.addr, sources[i % sources.len()]).await.with_context(|| format!("watcher {i}"))?);
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    for (i, mut sender) in senders.into_iter().enumerate() {
        let key = key_name(i % args.keys);
        let (addr, sent, lat_tx, put_times) = (args.addr, sent.clone(), lat_tx.clone(), put_times.clone());
        let mut round_rx = round_tx.subscribe();
        let (rounds, n_keys) = (args.rounds, args.keys);
        tokio::spawn(async move {
            let mut index = match get(&mut sender, addr, &format!("/v1/kv/{key}")).await {
                Ok((StatusCode::OK, idx)) => idx,
                other => {
                    let _ = lat_tx.send((0, Err(format!("first read: {other:?}"))));
                    return;
                }
            };
            for round in 0..rounds {
                let path = format!("/v1/kv/{key}?index={index}&wait=5m");
                sent.fetch_add(1, Ordering::SeqCst);
                let outcome = get(&mut sender, addr, &path).await;
                let done = Instant::now();
                let result = match outcome {
                    Ok((StatusCode::OK, idx)) if idx > index => {
                        index = idx;
                        match put_times.lock().expect("lock")[i % n_keys] {
                            Some(t) => Ok(done.saturating_duration_since(t).as_secs_f64() * 1000.0),
                            None => Err("answered before the write".to_string()),
                        }
                    }
                    other => Err(format!("{other:?}")),
                };
                let failed = result.is_err();
                let _ = lat_tx.send((round, result));
                if failed {
                    return;
                }
                // Wait for the next round to start before parking again.
                if round_rx.wait_for(|r| r.is_some_and(|(n, _)| n > round)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(lat_tx);

    let mut rounds_out = Vec::new();
    let mut rss_parked = None;
    for round in 0..args.rounds {
        // Parked: every watcher has sent its blocking GET for this round; give the agent time to
        // read them all.
        let want = args.watchers * (round + 1);
        let deadline = Instant::now() + Duration::from_secs(120);
        while sent.load(Ordering::SeqCst) < want {
            if Instant::now() > deadline {
                bail!("only {} of {want} blocking queries were sent", sent.load(Ordering::SeqCst));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_secs(args.settle)).await;
        if round == 0 {
            rss_parked = proc_status::rss_kib(args.pid);
        }
        for k in 0..args.keys {
            put_times.lock().expect("lock")[k] = Some(Instant::now());
            let r = http.put(format!("{base}/v1/kv/{}", key_name(k))).body(format!("{}", round + 1)).send().await?;
            if !r.status().is_success() {
                bail!("PUT {}: HTTP {}", key_name(k), r.status());
            }
        }
        let mut lat = Vec::with_capacity(args.watchers);
        let mut errors = Vec::new();
        while lat.len() + errors.len() < args.watchers {
            match tokio::time::timeout(Duration::from_secs(60), lat_rx.recv()).await {
                Ok(Some((r, Ok(ms)))) if r == round => lat.push(ms),
                Ok(Some((_, Err(e)))) => errors.push(e),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        lat.sort_by(f64::total_cmp);
        rounds_out.push(json!({
            "round": round,
            "released": lat.len(),
            "errors": errors.len(),
            "first_error": errors.first(),
            "p50_ms": percentile(&lat, 0.50),
            "p99_ms": percentile(&lat, 0.99),
            "max_ms": lat.last().copied().unwrap_or(f64::NAN),
        }));
        let _ = round_tx.send(Some((round + 1, Instant::now())));
        for slot in put_times.lock().expect("lock").iter_mut() {
            *slot = None;
        }
    }
    let per_watcher = match (rss_idle, rss_parked) {
        (Some(a), Some(b)) => Some((b.saturating_sub(a) as f64 * 1024.0) / args.watchers as f64),
        _ => None,
    };
    println!(
        "{}",
        json!({
            "watchers": args.watchers,
            "keys": args.keys,
            "sources": args.sources,
            "connect_seconds": connect_secs,
            "rss_kib_before": rss_idle,
            "rss_kib_parked": rss_parked,
            "rss_bytes_per_parked_query": per_watcher,
            "rounds": rounds_out,
        })
    );
    Ok(())
}
