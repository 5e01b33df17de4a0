//! `consul-rs-failover-bench`: how long a 3-server cluster is unavailable for writes after its
//! leader is killed with `kill -9`, for consul-rs and etcd, measured the same way.
//!
//! The tool starts a 3-server cluster of real processes on 127.0.0.1 (free ports, temporary
//! data dirs, fsync on), then `--runs` times: waits until the cluster is healthy and caught up,
//! finds the leader, records t0 and SIGKILLs it, and sends a PUT every `--interval-ms` (each
//! with a `--timeout-ms` deadline, the next one at once after a failure) to one fixed surviving
//! server. The failover time is t0 → the acknowledgement of the first write that succeeds.
//! The killed server is then restarted from its data dir and the next run waits until it has
//! rejoined. Per scenario it prints one JSON line (`--json`) or a table; `table` renders the
//! side-by-side markdown table of BENCHMARKS.md from such JSON lines. See `bench/README.md`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

/// Leader-failover benchmark: kill -9 the leader of a 3-server cluster, time until the next
/// acknowledged write.
#[derive(Parser, Debug)]
#[command(name = "consul-rs-failover-bench", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Optional sub-command; without one the tool runs a scenario.
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Scenario options (used when no sub-command is given).
    #[command(flatten)]
    run: RunArgs,
}

/// Sub-commands.
#[derive(Subcommand, Debug)]
enum Cmd {
    /// Read JSON lines of `--json` runs and print a markdown table (median, p90, p99, min, max)
    /// with consul-rs/etcd ratios.
    Table {
        /// JSONL files; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// The system under test.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum System {
    /// consul-rs servers (`consul-rs agent -server -bootstrap-expect 3`), Consul KV API.
    Consul,
    /// etcd members (static `--initial-cluster`), v3 JSON gateway.
    Etcd,
}

/// Options of one scenario.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// System under test.
    #[arg(long, value_enum, default_value = "consul")]
    system: System,
    /// consul-rs `performance.raft_multiplier` (Consul's default is 5).
    #[arg(long, default_value_t = 5)]
    raft_multiplier: u32,
    /// Leader kills to time.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// `consul-rs` binary (default: next to this executable).
    #[arg(long)]
    consul_bin: Option<PathBuf>,
    /// `etcd` binary.
    #[arg(long, default_value = "etcd")]
    etcd_bin: PathBuf,
    /// etcd `--heartbeat-interval` in ms (etcd's default).
    #[arg(long, default_value_t = 100)]
    etcd_heartbeat_ms: u64,
    /// etcd `--election-timeout` in ms (etcd's default).
    #[arg(long, default_value_t = 1000)]
    etcd_election_ms: u64,
    /// Parent of the temporary data dirs (a real disk, so that fsync means something).
    #[arg(long, default_value = "/tmp")]
    data_root: PathBuf,
    /// Spacing of write attempts after the kill, in ms.
    #[arg(long, default_value_t = 10)]
    interval_ms: u64,
    /// Per-write timeout in ms; a timed-out write is followed at once by the next.
    #[arg(long, default_value_t = 500)]
    timeout_ms: u64,
    /// A run gives up after this many seconds without an acknowledged write.
    #[arg(long, default_value_t = 30)]
    give_up_s: u64,
    /// Seconds to wait after the killed server has rejoined, before the next kill.
    #[arg(long, default_value_t = 2.0)]
    pause_s: f64,
    /// Deadline in seconds for the cluster to become healthy (start-up and each rejoin).
    #[arg(long, default_value_t = 90)]
    ready_timeout_s: u64,
    /// Overlapping writes: start an attempt every `--interval-ms` even while earlier ones are
    /// outstanding (default: one at a time, the next at once after a failure).
    #[arg(long)]
    overlap: bool,
    /// Print one JSON line on stdout (the human-readable report then goes to stderr).
    #[arg(long)]
    json: bool,
    /// Copy the server logs into this directory before the temp dir is removed.
    #[arg(long)]
    keep_logs: Option<PathBuf>,
    /// Free text copied into the JSON line (failover.sh puts the measured commit there).
    #[arg(long)]
    label: Option<String>,
}

// ------------------------------------------------------------------------------------------
// Processes

/// One server of the cluster: its ports, data dir, log file and (while running) its process.
#[derive(Debug)]
struct Member {
    name: String,
    /// HTTP API (consul-rs) or client URL (etcd) port.
    http_port: u16,
    /// Server RPC port (consul-rs; what `/v1/status/leader` reports) or peer port (etcd).
    peer_port: u16,
    /// serf_lan port (consul-rs only).
    serf_port: u16,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A 3-server cluster of real processes. Dropping it SIGKILLs every process it started and
/// (through the [`tempfile::TempDir`]) removes every data dir, on normal exit, error, panic
/// (unwinding) or Ctrl-C (the run future is dropped).
#[derive(Debug)]
struct Cluster {
    system: System,
    members: Vec<Member>,
    bin: PathBuf,
    args: Vec<String>,
    keep_logs: Option<PathBuf>,
    // Last field: dropped after `Drop::drop` has killed the processes that write into it.
    tmp: tempfile::TempDir,
}

/// Ports are taken from below Linux's ephemeral range (32768–60999): a killed server is
/// restarted on the same ports, and a port from the ephemeral range could meanwhile be taken
/// by some outgoing connection. Handed out in sequence from a random start, so never twice.
fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let start = std::process::id().wrapping_mul(7919).wrapping_add(nanos) % SPAN;
        let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        // consul-rs uses the serf port for TCP and UDP, so both must be free.
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port on 127.0.0.1 between {LOW} and {}", LOW + SPAN)
}

impl Cluster {
    /// Creates the data dirs and config files and starts all three servers.
    fn start(a: &RunArgs) -> Result<Cluster> {
        let tmp = tempfile::Builder::new()
            .prefix("consul-rs-failover.")
            .tempdir_in(&a.data_root)
            .with_context(|| format!("temp dir in {}", a.data_root.display()))?;
        let bin = match a.system {
            System::Consul => match &a.consul_bin {
                Some(b) => b.clone(),
                None => std::env::current_exe()?
                    .parent()
                    .map(|d| d.join("consul-rs"))
                    .ok_or_else(|| anyhow!("no directory for current_exe"))?,
            },
            System::Etcd => a.etcd_bin.clone(),
        };
        let mut members = Vec::new();
        for i in 1..=3 {
            let name = match a.system {
                System::Consul => format!("n{i}"),
                System::Etcd => format!("e{i}"),
            };
            let dir = tmp.path().join(&name);
            std::fs::create_dir_all(&dir)?;
            members.push(Member {
                log: tmp.path().join(format!("{name}.log")),
                name,
                http_port: free_port()?,
                peer_port: free_port()?,
                serf_port: if a.system == System::Consul { free_port()? } else { 0 },
                dir,
                child: None,
            });
        }
        let args = match a.system {
            System::Consul => {
                let config = tmp.path().join("config.json");
                std::fs::write(&config, json!({"performance": {"raft_multiplier": a.raft_multiplier}}).to_string())?;
                vec![config.display().to_string()]
            }
            System::Etcd => vec![a.etcd_heartbeat_ms.to_string(), a.etcd_election_ms.to_string()],
        };
        let mut c = Cluster { system: a.system, members, bin, args, keep_logs: a.keep_logs.clone(), tmp };
        for i in 0..3 {
            c.spawn(i)?;
        }
        Ok(c)
    }

    /// Starts (or restarts, from its data dir and on the same ports) server `i`.
    fn spawn(&mut self, i: usize) -> Result<()> {
        let m = &self.members[i];
        let mut cmd = Command::new(&self.bin);
        match self.system {
            System::Consul => {
                // As README's "A three-server cluster" and tests/src/process.rs; every server
                // retry-joins the other two so any of them can be the one that was restarted.
                cmd.args(["agent", "-server", "-bootstrap-expect", "3", "-node", &m.name])
                    .args(["-data-dir", &m.dir.display().to_string()])
                    .args(["-bind", "127.0.0.1", "-client", "127.0.0.1"])
                    .args(["-http-port", &m.http_port.to_string()])
                    .args(["-server-port", &m.peer_port.to_string()])
                    .args(["-serf-lan-port", &m.serf_port.to_string()])
                    .args(["-dns-port", "-1"])
                    .args(["-config-file", &self.args[0]]);
                for (j, other) in self.members.iter().enumerate() {
                    if j != i {
                        cmd.arg(format!("-retry-join=127.0.0.1:{}", other.serf_port));
                    }
                }
            }
            System::Etcd => {
                let initial: Vec<String> =
                    self.members.iter().map(|o| format!("{}=http://127.0.0.1:{}", o.name, o.peer_port)).collect();
                let client = format!("http://127.0.0.1:{}", m.http_port);
                let peer = format!("http://127.0.0.1:{}", m.peer_port);
                // run.sh's flags plus the (default) timing made explicit. fsync per commit is
                // etcd's default. On a restart etcd finds its WAL and ignores --initial-*.
                cmd.args(["--name", &m.name, "--data-dir", &m.dir.display().to_string()])
                    .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
                    .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
                    .args(["--initial-cluster", &initial.join(",")])
                    .args(["--initial-cluster-token", "consul-rs-failover-bench", "--initial-cluster-state", "new"])
                    .args(["--heartbeat-interval", &self.args[0], "--election-timeout", &self.args[1]])
                    .args(["--logger", "zap", "--log-outputs", "stderr"]);
            }
        }
        // Append: a restarted server's log follows its earlier life in the same file.
        let log = File::options().create(true).append(true).open(&m.log)?;
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let child = cmd.spawn().with_context(|| format!("starting {}", self.bin.display()))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Sends SIGKILL to server `i` without waiting for it (see [`Cluster::reap`]).
    fn kill9(&mut self, i: usize) -> Result<()> {
        let child = self.members[i].child.as_mut().ok_or_else(|| anyhow!("server {i} is not running"))?;
        child.kill().context("kill -9")?;
        Ok(())
    }

    /// Waits for a killed server `i` to be gone.
    fn reap(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Fails if a server that should be running has exited, with the tail of its log.
    fn check_alive(&mut self) -> Result<()> {
        for i in 0..self.members.len() {
            let exited = match self.members[i].child.as_mut() {
                Some(c) => c.try_wait()?,
                None => None,
            };
            if let Some(status) = exited {
                self.members[i].child = None;
                bail!("{} exited ({status}); log tail:\n{}", self.members[i].name, self.log_tail(i, 20));
            }
        }
        Ok(())
    }

    /// Last `lines` lines of server `i`'s log.
    fn log_tail(&self, i: usize, lines: usize) -> String {
        let Ok(f) = File::open(&self.members[i].log) else { return String::new() };
        let all: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Byte length of server `i`'s log now (to show only what a run added, see `log_since`).
    fn log_len(&self, i: usize) -> u64 {
        std::fs::metadata(&self.members[i].log).map(|m| m.len()).unwrap_or(0)
    }

    /// Server `i`'s log from byte `from` on, at most `max` lines (the last ones).
    fn log_since(&self, i: usize, from: u64, max: usize) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.members[i].log) {
            if f.seek(SeekFrom::Start(from)).is_ok() {
                let _ = f.read_to_string(&mut s);
            }
        }
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(max)..].join("\n")
    }

    fn base(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].http_port)
    }

    fn running(&self) -> Vec<usize> {
        (0..self.members.len()).filter(|&i| self.members[i].child.is_some()).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.reap(i);
        }
        if let Some(dir) = &self.keep_logs {
            if std::fs::create_dir_all(dir).is_ok() {
                for m in &self.members {
                    let _ = std::fs::copy(&m.log, dir.join(format!("{}.log", m.name)));
                }
            }
        }
        // `tmp` (the data dirs and logs) is removed when the field is dropped right after this.
    }
}

// ------------------------------------------------------------------------------------------
// Talking to the servers

/// Why one write attempt failed.
#[derive(Debug)]
enum WriteFail {
    /// No answer within `--timeout-ms`.
    Timeout,
    /// Connection refused/reset/closed: expected while servers come and go.
    Connection(String),
    /// Anything else (an HTTP error status or an unexpected body): reported.
    Other(String),
}

/// Coarse form of an error message for counting: digits dropped so that e.g. two addresses
/// or indexes do not make two categories.
fn category(msg: &str) -> String {
    let mut s: String = msg.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect();
    s.truncate(200);
    s
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A u64 from etcd's JSON gateway (64-bit integers come as strings) or a plain number.
fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// What the cluster looks like from its servers.
#[derive(Debug)]
struct View {
    /// Index of the member every running server names as leader.
    leader: usize,
    /// Applied index per running member.
    applied: BTreeMap<usize, u64>,
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    system: System,
    timeout: Duration,
}

impl Client {
    fn new(system: System, timeout: Duration) -> Result<Client> {
        // One idle connection per host is all a sequential writer needs; no proxy on loopback.
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(timeout)
            .tls_backend_preconfigured(consul_core::tls::plain_client_tls())
            .build()?;
        Ok(Client { http, system, timeout })
    }

    /// One write of key `failover/<seq>` to `base`.
    async fn put(&self, base: &str, seq: u64) -> std::result::Result<(), WriteFail> {
        let key = format!("failover/{seq}");
        let req = match self.system {
            System::Consul => self.http.put(format!("{base}/v1/kv/{key}")).body("x"),
            System::Etcd => {
                self.http.post(format!("{base}/v3/kv/put")).json(&json!({"key": b64(&key), "value": b64("x")}))
            }
        };
        let resp = req.timeout(self.timeout).send().await.map_err(classify)?;
        let status = resp.status();
        let body = resp.text().await.map_err(classify)?;
        let ok = status.is_success()
            && match self.system {
                System::Consul => body.trim() == "true",
                // A successful put answers {"header": {...}}; errors carry "error"/"code".
                System::Etcd => serde_json::from_str::<Value>(&body).ok().is_some_and(|v| v.get("header").is_some()),
            };
        if ok {
            Ok(())
        } else {
            Err(WriteFail::Other(format!("HTTP {}: {}", status.as_u16(), body.trim())))
        }
    }

    async fn get_json(&self, url: String) -> Result<Value> {
        let r = self.http.get(url).timeout(Duration::from_secs(2)).send().await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    async fn post_json(&self, url: String, body: Value) -> Result<Value> {
        let r = self.http.post(url).json(&body).timeout(Duration::from_secs(2)).send().await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// Leader and applied indexes as seen by every running server; `Err` unless all of them
    /// answer, agree on one running leader and (consul-rs) list 3 voters.
    async fn view(&self, c: &Cluster) -> Result<View> {
        let running = c.running();
        let mut leaders = Vec::new();
        let mut applied = BTreeMap::new();
        // etcd member ids, known only from each member's own answer.
        let mut ids = BTreeMap::new();
        for &i in &running {
            let base = c.base(i);
            match self.system {
                System::Consul => {
                    let leader = self.get_json(format!("{base}/v1/status/leader")).await?;
                    let addr = leader.as_str().unwrap_or_default().to_string();
                    let peers = self.get_json(format!("{base}/v1/status/peers")).await?;
                    let n = peers.as_array().map_or(0, Vec::len);
                    if n != 3 {
                        bail!("{} lists {n} voters", c.members[i].name);
                    }
                    let me = self.get_json(format!("{base}/v1/agent/self")).await?;
                    let idx = as_u64(&me["Stats"]["raft"]["applied_index"])
                        .ok_or_else(|| anyhow!("no Stats.raft.applied_index"))?;
                    applied.insert(i, idx);
                    let li = c.members.iter().position(|m| format!("127.0.0.1:{}", m.peer_port) == addr);
                    leaders.push(li.map(|l| l as u64));
                }
                System::Etcd => {
                    let st = self.post_json(format!("{base}/v3/maintenance/status"), json!({})).await?;
                    let leader_id = as_u64(&st["leader"]).unwrap_or(0);
                    let me_id = as_u64(&st["header"]["member_id"]).unwrap_or(0);
                    // 3.4 reports raftAppliedIndex; fall back to raftIndex (committed) if absent.
                    let idx = as_u64(&st["raftAppliedIndex"]).or_else(|| as_u64(&st["raftIndex"])).unwrap_or(0);
                    applied.insert(i, idx);
                    ids.insert(i, me_id);
                    // Resolved to a member index after the loop, once every id is known.
                    leaders.push((leader_id != 0).then_some(leader_id));
                }
            }
        }
        let leader = match self.system {
            System::Consul => {
                let first = leaders.first().copied().flatten().ok_or_else(|| anyhow!("no leader"))? as usize;
                if leaders.iter().any(|l| *l != Some(first as u64)) {
                    bail!("servers disagree on the leader: {leaders:?}");
                }
                first
            }
            System::Etcd => {
                let id = leaders.first().copied().flatten().ok_or_else(|| anyhow!("no leader"))?;
                if leaders.iter().any(|l| *l != Some(id)) {
                    bail!("members disagree on the leader");
                }
                ids.iter()
                    .find(|(_, v)| **v == id)
                    .map(|(k, _)| *k)
                    .ok_or_else(|| anyhow!("leader is not a running member"))?
            }
        };
        if !running.contains(&leader) {
            bail!("leader {} is not running", c.members[leader].name);
        }
        Ok(View { leader, applied })
    }

    /// Waits until all three servers run, agree on a leader, a write through the leader
    /// succeeds and every server has applied it (a restarted server has caught up).
    async fn wait_healthy(&self, c: &mut Cluster, deadline: Duration, seq: &mut u64) -> Result<usize> {
        let until = Instant::now() + deadline;
        let mut last_err = String::new();
        let mut target: Option<u64> = None;
        loop {
            c.check_alive()?;
            if Instant::now() > until {
                bail!("cluster not healthy after {deadline:?}: {last_err}");
            }
            match self.view(c).await {
                Ok(v) if c.running().len() == 3 => match target {
                    None => {
                        *seq += 1;
                        match self.put(&c.base(v.leader), *seq).await {
                            // Every server must apply at least what the leader had applied
                            // after this write was acknowledged.
                            Ok(()) => match self.view(c).await {
                                Ok(v2) => target = v2.applied.get(&v2.leader).copied(),
                                Err(e) => last_err = e.to_string(),
                            },
                            Err(e) => last_err = format!("probe write: {e:?}"),
                        }
                    }
                    Some(t) => {
                        if v.applied.values().all(|&a| a >= t) {
                            return Ok(v.leader);
                        }
                        last_err = format!("not caught up to {t}: {:?}", v.applied);
                    }
                },
                Ok(_) => last_err = "not all servers running".into(),
                Err(e) => last_err = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn classify(e: reqwest::Error) -> WriteFail {
    if e.is_timeout() {
        WriteFail::Timeout
    } else {
        // Refused, reset, closed mid-response: the transport, not the server's answer.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg = format!("{msg}: {s}");
            src = s.source();
        }
        WriteFail::Connection(msg)
    }
}

// ------------------------------------------------------------------------------------------
// One scenario

/// Outcome of one leader kill.
#[derive(Debug, serde::Serialize)]
struct Sample {
    run: usize,
    killed: String,
    writer_to: String,
    /// Leader after the failover (`null` if it could not be read).
    new_leader: Option<String>,
    /// t0 → acknowledgement of the first successful write; `null` if none within `--give-up-s`.
    failover_ms: Option<f64>,
    /// t0 → when that write was sent.
    first_ok_sent_ms: Option<f64>,
    attempts: u64,
    timeouts: u64,
    connection_errors: u64,
    other_errors: u64,
}

impl Sample {
    /// Counts one failed attempt, and its message per kind.
    fn count(&mut self, e: WriteFail, conn: &mut BTreeMap<String, u64>, other: &mut BTreeMap<String, u64>) {
        match e {
            WriteFail::Timeout => self.timeouts += 1,
            WriteFail::Connection(m) => {
                self.connection_errors += 1;
                *conn.entry(category(&m)).or_default() += 1;
            }
            WriteFail::Other(m) => {
                self.other_errors += 1;
                *other.entry(category(&m)).or_default() += 1;
            }
        }
    }
}

/// Most write attempts outstanding at once with `--overlap` (500 ms timeout / 10 ms spacing
/// needs 50).
const MAX_IN_FLIGHT: usize = 64;

/// Nearest-rank percentile (`p` in 0–100) of sorted values: for 20 samples p90 is the 18th
/// value and p99 the largest.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The scenario's name and the timing it runs with, for the report.
fn timing(a: &RunArgs) -> (String, String) {
    match a.system {
        System::Consul => {
            // From the engine's own rules, so the report follows any change to them.
            let t = consul_core::config::RaftTuning { raft_multiplier: a.raft_multiplier, ..Default::default() };
            (
                format!("consul-rs m={}", a.raft_multiplier),
                format!(
                    "raft_multiplier {}: heartbeat {} ms, election timeout {}–{} ms",
                    a.raft_multiplier,
                    t.heartbeat().as_millis(),
                    t.election_timeout_min().as_millis(),
                    t.election_timeout_max().as_millis()
                ),
            )
        }
        System::Etcd => {
            ("etcd".into(), format!("heartbeat {} ms, election timeout {} ms", a.etcd_heartbeat_ms, a.etcd_election_ms))
        }
    }
}

fn version(a: &RunArgs, c: &Cluster) -> String {
    let arg = match a.system {
        System::Consul => "version",
        System::Etcd => "--version",
    };
    Command::new(&c.bin)
        .arg(arg)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default()
}

async fn run_scenario(a: &RunArgs) -> Result<Value> {
    let (mut scenario, timing_text) = timing(a);
    if a.overlap {
        scenario.push_str(", overlapping writes");
    }
    let client = Client::new(a.system, Duration::from_millis(a.timeout_ms))?;
    let mut cluster = Cluster::start(a)?;
    let ver = version(a, &cluster);
    eprintln!("[failover] {scenario} ({timing_text}); data in {}", cluster.tmp.path().display());
    let ready = Duration::from_secs(a.ready_timeout_s);
    let mut seq = 0u64;
    let mut samples: Vec<Sample> = Vec::new();
    let mut unexpected: BTreeMap<String, u64> = BTreeMap::new();
    let mut connection_kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut notes: Vec<String> = Vec::new();

    for run in 1..=a.runs {
        let leader = client.wait_healthy(&mut cluster, ready, &mut seq).await?;
        let survivor = (leader + 1) % 3;
        let base = cluster.base(survivor);
        // Open the writer's connection to the survivor before t0, so the first post-kill
        // attempt does not pay a TCP handshake the steady state would not.
        seq += 1;
        client.put(&base, seq).await.map_err(|e| anyhow!("warm-up write to survivor: {e:?}"))?;
        let log_marks: Vec<u64> = (0..3).map(|i| cluster.log_len(i)).collect();

        let t0 = Instant::now();
        cluster.kill9(leader)?;
        let interval = Duration::from_millis(a.interval_ms);
        let give_up = Duration::from_secs(a.give_up_s);
        let mut next = t0;
        let mut s = Sample {
            run,
            killed: cluster.members[leader].name.clone(),
            writer_to: cluster.members[survivor].name.clone(),
            new_leader: None,
            failover_ms: None,
            first_ok_sent_ms: None,
            attempts: 0,
            timeouts: 0,
            connection_errors: 0,
            other_errors: 0,
        };
        if a.overlap {
            // Open loop: a new attempt every `interval` whether or not earlier ones have
            // answered, so the result is not rounded up to a multiple of the timeout when a
            // server silently drops requests that arrived while it had no leader.
            let mut inflight = tokio::task::JoinSet::new();
            while t0.elapsed() < give_up {
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()), if inflight.len() < MAX_IN_FLIGHT => {
                        let sent = Instant::now();
                        next = sent + interval;
                        seq += 1;
                        s.attempts += 1;
                        let (c, b, n) = (client.clone(), base.clone(), seq);
                        inflight.spawn(async move { (sent, c.put(&b, n).await) });
                    }
                    Some(res) = inflight.join_next(), if !inflight.is_empty() => match res {
                        Ok((sent, Ok(()))) => {
                            s.failover_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
                            s.first_ok_sent_ms = Some((sent - t0).as_secs_f64() * 1000.0);
                            break;
                        }
                        Ok((_, Err(e))) => s.count(e, &mut connection_kinds, &mut unexpected),
                        Err(e) => bail!("writer task: {e}"),
                    },
                }
            }
            inflight.abort_all();
        } else {
            while t0.elapsed() < give_up {
                // Attempts start at most every `interval`; one that failed after the interval
                // (a timeout) is followed at once.
                tokio::time::sleep_until(next.into()).await;
                let sent = Instant::now();
                next = sent + interval;
                seq += 1;
                s.attempts += 1;
                match client.put(&base, seq).await {
                    Ok(()) => {
                        s.failover_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
                        s.first_ok_sent_ms = Some((sent - t0).as_secs_f64() * 1000.0);
                        break;
                    }
                    Err(e) => s.count(e, &mut connection_kinds, &mut unexpected),
                }
            }
        }
        cluster.reap(leader);
        // The other survivor may learn of the new leader a moment after the write succeeded.
        for _ in 0..20 {
            if let Ok(v) = client.view(&cluster).await {
                s.new_leader = Some(cluster.members[v.leader].name.clone());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match s.failover_ms {
            Some(ms) => eprintln!(
                "[failover] run {run}/{}: killed {} (leader), writes to {}: {:.0} ms, new leader {}, {} attempts ({} timeouts, {} connection, {} other errors)",
                a.runs,
                s.killed,
                s.writer_to,
                ms,
                s.new_leader.as_deref().unwrap_or("?"),
                s.attempts,
                s.timeouts,
                s.connection_errors,
                s.other_errors
            ),
            None => {
                let mut note = format!(
                    "run {run}: no acknowledged write within {} s after killing {}",
                    a.give_up_s, s.killed
                );
                for i in (0..3).filter(|&i| i != leader) {
                    note.push_str(&format!(
                        "\n--- {} log during the run:\n{}",
                        cluster.members[i].name,
                        cluster.log_since(i, log_marks[i], 30)
                    ));
                }
                eprintln!("[failover] {note}");
                notes.push(note);
            }
        }
        // A failover far slower than the ones before it is worth a look at the survivor's
        // log; keep its last lines (needs a few samples to know what is normal).
        if samples.len() >= 3 && s.failover_ms.is_some_and(|ms| ms > 2.0 * median_so_far(&samples)) {
            let i = survivor;
            notes.push(format!(
                "run {run}: {:.0} ms; {} log during the run:\n{}",
                s.failover_ms.unwrap_or_default(),
                cluster.members[i].name,
                cluster.log_since(i, log_marks[i], 15)
            ));
        }
        samples.push(s);

        cluster.spawn(leader)?;
        // Also after the last run: a restarted server that never catches up is a finding too.
        let name = cluster.members[leader].name.clone();
        client
            .wait_healthy(&mut cluster, ready, &mut seq)
            .await
            .with_context(|| format!("after restarting {name} (run {run})"))?;
        tokio::time::sleep(Duration::from_secs_f64(a.pause_s)).await;
    }

    let mut ok: Vec<f64> = samples.iter().filter_map(|s| s.failover_ms).collect();
    ok.sort_by(f64::total_cmp);
    let failed = samples.len() - ok.len();
    Ok(json!({
        "tool": "consul-rs-failover-bench",
        "scenario": scenario,
        "system": match a.system { System::Consul => "consul-rs", System::Etcd => "etcd" },
        "raft_multiplier": (a.system == System::Consul).then_some(a.raft_multiplier),
        "timing": timing_text,
        "version": ver,
        "label": a.label,
        "runs": samples.len(),
        "ok": ok.len(),
        "failed": failed,
        "writer": if a.overlap { "overlapping" } else { "sequential" },
        "interval_ms": a.interval_ms,
        "timeout_ms": a.timeout_ms,
        "samples_ms": samples.iter().map(|s| s.failover_ms.map(round2)).collect::<Vec<_>>(),
        "median_ms": round2(median(&ok)),
        "p90_ms": round2(percentile(&ok, 90.0)),
        "p99_ms": round2(percentile(&ok, 99.0)),
        "min_ms": round2(ok.first().copied().unwrap_or(f64::NAN)),
        "max_ms": round2(ok.last().copied().unwrap_or(f64::NAN)),
        "unexpected_errors": unexpected,
        "connection_errors": connection_kinds,
        "details": samples,
        "notes": notes,
    }))
}

fn median_so_far(samples: &[Sample]) -> f64 {
    let mut v: Vec<f64> = samples.iter().filter_map(|s| s.failover_ms).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else {
        median(&v)
    }
}

// ------------------------------------------------------------------------------------------
// Reports

fn ms(v: &Value) -> String {
    v.as_f64().map_or_else(|| "—".into(), |x| format!("{x:.0}"))
}

fn render_text(r: &Value) -> String {
    let mut out = format!(
        "{} ({}), {}: {} of {} runs with an acknowledged write\n\n| run | killed | writes to | new leader | failover ms | first ok sent at ms | attempts | timeouts | conn errors | other errors |\n|--:|---|---|---|--:|--:|--:|--:|--:|--:|\n",
        r["scenario"].as_str().unwrap_or_default(),
        r["timing"].as_str().unwrap_or_default(),
        r["version"].as_str().unwrap_or_default(),
        r["ok"],
        r["runs"]
    );
    for d in r["details"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            d["run"],
            d["killed"].as_str().unwrap_or_default(),
            d["writer_to"].as_str().unwrap_or_default(),
            d["new_leader"].as_str().unwrap_or("?"),
            ms(&d["failover_ms"]),
            ms(&d["first_ok_sent_ms"]),
            d["attempts"],
            d["timeouts"],
            d["connection_errors"],
            d["other_errors"]
        ));
    }
    out.push_str(&format!(
        "\nmedian {} ms, p90 {} ms, p99 {} ms, min {} ms, max {} ms\n",
        ms(&r["median_ms"]),
        ms(&r["p90_ms"]),
        ms(&r["p99_ms"]),
        ms(&r["min_ms"]),
        ms(&r["max_ms"])
    ));
    for (key, title) in [("unexpected_errors", "unexpected write errors"), ("connection_errors", "connection errors")] {
        if let Some(m) = r[key].as_object().filter(|m| !m.is_empty()) {
            out.push_str(&format!("{title}:\n"));
            for (msg, n) in m {
                out.push_str(&format!("  {n} × {msg}\n"));
            }
        }
    }
    for n in r["notes"].as_array().into_iter().flatten() {
        out.push_str(&format!("note: {}\n", n.as_str().unwrap_or_default()));
    }
    out
}

/// The BENCHMARKS.md table: one row per scenario, ratios against the etcd row.
fn render_table(results: &[Value]) -> String {
    // Against the (last) etcd row measured with the same writer.
    let etcd = |r: &Value| results.iter().rev().find(|e| e["system"] == "etcd" && e["writer"] == r["writer"]);
    let ratio = |r: &Value, key: &str| -> String {
        match (r[key].as_f64(), etcd(r).and_then(|e| e[key].as_f64())) {
            (Some(a), Some(b)) if b > 0.0 && r["system"] != "etcd" => format!("{:.2}×", a / b),
            _ => "—".into(),
        }
    };
    let mut out = String::from(
        "| scenario | timing | ok/runs | median ms | p90 ms | p99 ms | min ms | max ms | median ratio (/etcd) | p99 ratio (/etcd) | unexpected errors |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n",
    );
    for r in results {
        let errs = r["unexpected_errors"]
            .as_object()
            .filter(|m| !m.is_empty())
            .map(|m| m.iter().map(|(k, v)| format!("{v}× {k}")).collect::<Vec<_>>().join("; "))
            .unwrap_or_else(|| "none".into());
        out.push_str(&format!(
            "| {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r["scenario"].as_str().unwrap_or_default(),
            r["timing"].as_str().unwrap_or_default(),
            r["ok"],
            r["runs"],
            ms(&r["median_ms"]),
            ms(&r["p90_ms"]),
            ms(&r["p99_ms"]),
            ms(&r["min_ms"]),
            ms(&r["max_ms"]),
            ratio(r, "median_ms"),
            ratio(r, "p99_ms"),
            errs.replace('|', "\\|")
        ));
    }
    out
}

fn table(files: &[PathBuf]) -> Result<()> {
    let mut results = Vec::new();
    for f in files {
        let text = if f == Path::new("-") {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        } else {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).with_context(|| f.display().to_string())?;
            if v["tool"] == "consul-rs-failover-bench" {
                results.push(v);
            }
        }
    }
    print!("{}", render_table(&results));
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Cmd::Table { files }) = &cli.command {
        return table(files);
    }
    let a = cli.run;
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    // Ok(Err(signal exit code)) when interrupted.
    let outcome: Result<std::result::Result<Value, i32>> = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // On Ctrl-C/TERM `select!` drops the scenario future, and with it the cluster guard,
        // which kills every server and removes the temp dir before we exit.
        tokio::select! {
            r = run_scenario(&a) => r.map(Ok),
            _ = tokio::signal::ctrl_c() => Ok(Err(130)),
            _ = term.recv() => Ok(Err(143)),
        }
    });
    let result = match outcome? {
        Ok(v) => v,
        Err(code) => {
            eprintln!("[failover] interrupted: servers killed, temp dir removed");
            std::process::exit(code);
        }
    };
    if a.json {
        println!("{}", serde_json::to_string(&result)?);
        // The readable report too, where it does not mix with the JSON.
        eprint!("{}", render_text(&result));
    } else {
        print!("{}", render_text(&result));
    }
    if let Some(m) = result["unexpected_errors"].as_object().filter(|m| !m.is_empty()) {
        eprintln!("[failover] unexpected write errors (not timeouts/connection errors): {m:?}");
    }
    if result["failed"].as_u64().unwrap_or(0) > 0 {
        eprintln!("[failover] {} run(s) without an acknowledged write within {} s", result["failed"], a.give_up_s);
    }
    Ok(())
}
