//! Clusters of real `consul-rs` processes, started with Consul's own flag spellings.
//!
//! The binary is found next to the test executable's directory (`target/<profile>/consul-rs`),
//! or at `$CONSUL_RS_BIN`. Every child is killed when the cluster is dropped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::client::Api;
use crate::{eventually, free_port};

/// Path of the `consul-rs` binary under test.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("CONSUL_RS_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> → target/<profile>/consul-rs
    let path = exe.parent().and_then(|d| d.parent()).map(|d| d.join("consul-rs")).expect("target dir");
    assert!(path.exists(), "{} not found: build it first (cargo build --workspace --bins)", path.display());
    path
}

/// Ports of one server process.
#[derive(Debug, Clone, Copy)]
pub struct ProcPorts {
    /// HTTP.
    pub http: u16,
    /// Server RPC.
    pub server: u16,
    /// serf_lan.
    pub serf: u16,
    /// DNS.
    pub dns: u16,
}

/// How [`ProcCluster::start_with`] runs its servers.
#[derive(Debug, Clone, Copy)]
pub struct ProcOptions {
    /// `performance.raft_multiplier` (1 = fastest elections, Consul's default is 5).
    pub raft_multiplier: u32,
    /// Send each server's stderr (its log, at `info`) to `server.log` in its temp dir instead of
    /// the test's stderr, so a failing test can print the tail of every server's log.
    pub log_to_file: bool,
    /// An `acl` block (JSON object) for every server's config file.
    pub acl_json: Option<&'static str>,
    /// An `autopilot` block (JSON object) for every server's config file.
    pub autopilot_json: Option<&'static str>,
}

impl Default for ProcOptions {
    fn default() -> Self {
        ProcOptions { raft_multiplier: 1, log_to_file: false, acl_json: None, autopilot_json: None }
    }
}

/// The addresses of a [`ProcCluster`]'s servers, detached from it so tasks can find the leader
/// while the cluster itself is owned (and mutated) elsewhere. Ports never change on restart.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// HTTP address of each server.
    pub http: Vec<SocketAddr>,
    /// Server RPC address of each server (what `/v1/status/leader` reports).
    pub rpc: Vec<String>,
    probe: reqwest::Client,
}

impl ClusterView {
    /// Which server is leader: asks every server `/v1/status/leader` (1 s timeout each, so a
    /// stopped or dead server only delays the answer) and matches the reported RPC address with
    /// the servers'. A server that names itself wins over what others report, since a freshly
    /// restarted follower may still name a dead leader. `None` when nobody knows a leader.
    pub async fn leader_index(&self) -> Option<usize> {
        let asks = self.http.iter().map(|addr| {
            let req = self.probe.get(format!("http://{addr}/v1/status/leader"));
            async move {
                let body = req.send().await.ok()?.json::<serde_json::Value>().await.ok()?;
                body.as_str().map(str::to_string)
            }
        });
        let answers = futures::future::join_all(asks).await;
        let find = |addr: &str| self.rpc.iter().position(|r| r == addr);
        let self_named = answers.iter().enumerate().find(|(i, a)| a.as_deref() == Some(self.rpc[*i].as_str()));
        if let Some((i, _)) = self_named {
            return Some(i);
        }
        answers.iter().flatten().find_map(|a| find(a))
    }

    /// The leader server `i` names (its RPC address), if it answers and knows one.
    pub async fn leader_seen_by(&self, i: usize) -> Option<String> {
        let resp = self.probe.get(format!("http://{}/v1/status/leader", self.http[i])).send().await.ok()?;
        let leader = resp.json::<serde_json::Value>().await.ok()?.as_str()?.to_string();
        (!leader.is_empty()).then_some(leader)
    }
}

/// A cluster of `consul-rs agent -server` processes.
#[derive(Debug)]
pub struct ProcCluster {
    children: Vec<Option<Child>>,
    ports: Vec<ProcPorts>,
    dirs: Vec<TempDir>,
    /// Servers currently held by SIGSTOP (continued before they are killed).
    stopped: Vec<bool>,
    n: usize,
    opts: ProcOptions,
}

impl ProcCluster {
    /// Starts `n` server processes with `-bootstrap-expect n` joined to the first one.
    pub async fn start(n: usize) -> ProcCluster {
        Self::start_with(n, ProcOptions::default()).await
    }

    /// Like [`ProcCluster::start`], with a raft multiplier and optionally logs to files.
    pub async fn start_with(n: usize, opts: ProcOptions) -> ProcCluster {
        let mut c =
            ProcCluster { children: Vec::new(), ports: Vec::new(), dirs: Vec::new(), stopped: vec![false; n], n, opts };
        for _ in 0..n {
            c.ports.push(ProcPorts { http: free_port(), server: free_port(), serf: free_port(), dns: free_port() });
            c.dirs.push(tempfile::tempdir().expect("tempdir"));
            c.children.push(None);
        }
        for i in 0..n {
            c.spawn(i);
        }
        c.wait_for_voters(n).await;
        c
    }

    fn spawn(&mut self, i: usize) {
        let p = self.ports[i];
        let dir = self.dirs[i].path();
        let config = dir.join("config.json");
        let acl = self.opts.acl_json.map(|a| format!(r#", "acl": {a}"#)).unwrap_or_default();
        let autopilot = self.opts.autopilot_json.map(|a| format!(r#", "autopilot": {a}"#)).unwrap_or_default();
        let config_json = format!(
            r#"{{"performance": {{"raft_multiplier": {}}}, "retry_interval": "200ms"{acl}{autopilot}}}"#,
            self.opts.raft_multiplier
        );
        std::fs::write(&config, config_json).expect("write config");
        let mut cmd = Command::new(binary());
        // Mix both Go-flag spellings, as client-library test harnesses do.
        cmd.arg("agent")
            .arg("-server")
            .arg(format!("-bootstrap-expect={}", self.n))
            .args(["-data-dir", &dir.join("data").display().to_string()])
            .args(["-node", &format!("proc{i}")])
            .arg("-bind=127.0.0.1")
            .args(["-client", "127.0.0.1"])
            .arg(format!("-http-port={}", p.http))
            .args(["-server-port", &p.server.to_string()])
            .arg(format!("-serf-lan-port={}", p.serf))
            // Every server gets its own WAN pool port (Consul's 8302 would be shared).
            .arg(format!("-serf-wan-port={}", free_port()))
            .arg(format!("-dns-port={}", p.dns))
            .arg(format!("-config-file={}", config.display()))
            .args(["-log-level", if self.opts.log_to_file { "info" } else { "warn" }]);
        for (j, other) in self.ports.iter().enumerate() {
            if j != i {
                cmd.arg(format!("-retry-join=127.0.0.1:{}", other.serf));
            }
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        if self.opts.log_to_file {
            // Appended across restarts, so the log shows every incarnation of the server.
            let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(i)).expect("log file");
            cmd.stderr(Stdio::from(log));
        } else {
            cmd.stderr(Stdio::inherit());
        }
        self.children[i] = Some(cmd.spawn().expect("spawn consul-rs"));
        self.stopped[i] = false;
    }

    /// Where server `i` logs when started with [`ProcOptions::log_to_file`].
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dirs[i].path().join("server.log")
    }

    /// The last `lines` lines of server `i`'s log file (empty if it logs to stderr), each cut
    /// to 300 characters (openraft logs whole state dumps on one line).
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let all: Vec<String> = log.lines().map(|l| l.chars().take(300).collect()).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The addresses of the servers, for tasks that run beside the cluster's owner.
    pub fn view(&self) -> ClusterView {
        ClusterView {
            http: (0..self.len())
                .map(|i| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.ports[i].http))
                .collect(),
            rpc: (0..self.len()).map(|i| self.rpc_addr(i)).collect(),
            probe: reqwest::Client::builder()
                .timeout(Duration::from_secs(1))
                .tls_backend_preconfigured(consul_core::tls::plain_client_tls())
                .build()
                .expect("reqwest client"),
        }
    }

    /// Which server is leader (see [`ClusterView::leader_index`]).
    pub async fn leader_index(&self) -> Option<usize> {
        self.view().leader_index().await
    }

    /// The process id of server `i`, if it is running.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(Child::id)
    }

    /// Whether server `i` has a live process (running or stopped).
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.children[i].as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Whether server `i` is held by SIGSTOP.
    pub fn is_stopped(&self, i: usize) -> bool {
        self.stopped[i]
    }

    /// Sends `kill -<sig>` (e.g. `STOP`, `CONT`, `TERM`) to server `i`; false if it has no
    /// process or `kill` failed. Tracks STOP/CONT so the cluster never leaves a stopped child.
    pub fn signal(&mut self, i: usize, sig: &str) -> bool {
        let Some(pid) = self.pid(i) else { return false };
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        match sig {
            "STOP" if ok => self.stopped[i] = true,
            "CONT" => self.stopped[i] = false,
            _ => {}
        }
        ok
    }

    /// SIGTERMs server `i` and waits up to `timeout` for it to exit (then kill -9s it); how long
    /// it took to exit on its own, or `None` if it had to be killed (or was not running).
    pub fn terminate(&mut self, i: usize, timeout: Duration) -> Option<Duration> {
        if self.stopped[i] {
            self.signal(i, "CONT");
        }
        let start = Instant::now();
        if !self.signal(i, "TERM") {
            self.kill9(i);
            return None;
        }
        let mut child = self.children[i].take()?;
        while start.elapsed() < timeout {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// An API client for server `i`.
    pub fn api(&self, i: usize) -> Api {
        Api::new(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.ports[i].http))
    }

    /// Waits until every running server reports `n` voters and a leader.
    pub async fn wait_for_voters(&self, n: usize) {
        for i in 0..self.children.len() {
            if self.children[i].is_none() {
                continue;
            }
            let api = self.api(i);
            eventually(Duration::from_secs(60), &format!("server {i} sees {n} voters and a leader"), || {
                let api = api.clone();
                async move {
                    let peers = api.get("/v1/status/peers").await.ok()?.json();
                    let leader = api.get("/v1/status/leader").await.ok()?.json();
                    (peers.as_array()?.len() == n && leader.as_str().is_some_and(|s| !s.is_empty())).then_some(())
                }
            })
            .await;
        }
    }

    /// Starts one more server that joins the running ones (the leader adds it to Raft); returns
    /// its index.
    pub fn add_server(&mut self) -> usize {
        self.ports.push(ProcPorts { http: free_port(), server: free_port(), serf: free_port(), dns: free_port() });
        self.dirs.push(tempfile::tempdir().expect("tempdir"));
        self.children.push(None);
        self.stopped.push(false);
        let i = self.children.len() - 1;
        self.spawn(i);
        i
    }

    /// `kill -9` server `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // SIGKILL ends a stopped process too; nothing is left stopped.
        self.stopped[i] = false;
    }

    /// Restarts server `i` from its data dir on the same ports.
    pub fn restart(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "server {i} is running");
        self.spawn(i);
    }

    /// The HTTP address of server `i` (`127.0.0.1:port`, for `-http-addr`).
    pub fn http_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i].http)
    }

    /// The server RPC address of server `i` (what `/v1/status/leader` reports).
    pub fn rpc_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i].server)
    }

    /// The serf_lan address of server `i`.
    pub fn serf_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.ports[i].serf)
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Whether the cluster has no servers.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            if self.stopped[i] {
                self.signal(i, "CONT");
            }
            self.kill9(i);
        }
    }
}

/// A `consul-rs agent -dev` process on free loopback ports, killed on drop.
#[derive(Debug)]
pub struct DevAgent {
    child: Child,
    /// HTTP port.
    pub http: u16,
    /// DNS port.
    pub dns: u16,
    /// A client for its HTTP API.
    pub api: Api,
}

impl DevAgent {
    /// Starts the agent and waits until it has a leader.
    pub async fn start() -> DevAgent {
        Self::start_with(&[]).await
    }

    /// Like [`DevAgent::start`], with more agent flags (e.g. `-encrypt=KEY`).
    pub async fn start_with(extra: &[&str]) -> DevAgent {
        let http = free_port();
        let dns = free_port();
        let child = Command::new(binary())
            .args(["agent", "-dev", "-client", "127.0.0.1", "-bind=127.0.0.1"])
            .arg(format!("-http-port={http}"))
            .arg(format!("-server-port={}", free_port()))
            .arg(format!("-serf-lan-port={}", free_port()))
            .arg(format!("-serf-wan-port={}", free_port()))
            .arg(format!("-dns-port={dns}"))
            .args(["-log-level", "warn"])
            .args(extra)
            .stdout(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn dev agent");
        let api = Api::new(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), http));
        let probe = api.clone();
        eventually(Duration::from_secs(30), "dev agent has a leader", || {
            let api = probe.clone();
            async move {
                let leader = api.get("/v1/status/leader").await.ok()?.json();
                leader.as_str().is_some_and(|s| !s.is_empty()).then_some(())
            }
        })
        .await;
        DevAgent { child, http, dns, api }
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The agent's resident set size in KiB (`VmRSS` in `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// A `consul-rs` CLI command aimed at this agent (through `CONSUL_HTTP_ADDR`).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary());
        c.args(args).env("CONSUL_HTTP_ADDR", format!("127.0.0.1:{}", self.http)).env_remove("CONSUL_HTTP_TOKEN");
        c
    }

    /// Runs a CLI command to completion.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run cli")
    }

    /// Waits up to `timeout` for the agent process to exit on its own (after
    /// `consul-rs leave`); its exit status, or `None` if it is still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for DevAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The resident set size of process `pid` in KiB (`VmRSS` in `/proc/<pid>/status`); 0 when
/// it cannot be read.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// A command's standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A datacenter of real processes: `servers` servers and `clients` client agents, each on its
/// own loopback address (127.0.0.10, .11, …), all started with one `-retry-join` address (the
/// first server's), optionally with a gossip key. Every child is killed when dropped.
#[derive(Debug)]
pub struct Datacenter {
    children: Vec<Option<Child>>,
    ports: Vec<ProcPorts>,
    dirs: Vec<TempDir>,
    servers: usize,
    encrypt: Option<String>,
    /// Where each agent's stderr goes (to read its log).
    pub logs: Vec<PathBuf>,
}

impl Datacenter {
    /// Starts the agents and waits for the servers to elect a leader.
    pub async fn start(servers: usize, clients: usize, encrypt: Option<&str>) -> Datacenter {
        let n = servers + clients;
        let mut dc = Datacenter {
            children: Vec::new(),
            ports: Vec::new(),
            dirs: Vec::new(),
            servers,
            encrypt: encrypt.map(str::to_string),
            logs: Vec::new(),
        };
        for i in 0..n {
            dc.ports.push(ProcPorts { http: free_port(), server: free_port(), serf: free_port(), dns: free_port() });
            let dir = tempfile::tempdir().expect("tempdir");
            dc.logs.push(dir.path().join("stderr.log"));
            dc.dirs.push(dir);
            dc.children.push(None);
            let _ = i;
        }
        for i in 0..n {
            let key = dc.encrypt.clone();
            dc.spawn(i, key.as_deref());
        }
        dc.wait_for_leader().await;
        dc
    }

    /// The loopback address agent `i` binds.
    pub fn ip(i: usize) -> String {
        format!("127.0.0.{}", 10 + i)
    }

    /// Node name of agent `i` (`server0`…, `client0`…).
    pub fn name(&self, i: usize) -> String {
        if i < self.servers {
            format!("server{i}")
        } else {
            format!("client{}", i - self.servers)
        }
    }

    /// Starts agent `i` with gossip key `key` (which may differ from the datacenter's).
    pub fn spawn(&mut self, i: usize, key: Option<&str>) {
        let p = self.ports[i];
        let dir = self.dirs[i].path();
        let config = dir.join("config.json");
        std::fs::write(&config, r#"{"performance": {"raft_multiplier": 1}, "retry_interval": "200ms"}"#)
            .expect("write config");
        let mut cmd = Command::new(binary());
        cmd.arg("agent");
        if i < self.servers {
            cmd.arg("-server").arg(format!("-bootstrap-expect={}", self.servers));
        }
        cmd.args(["-data-dir", &dir.join("data").display().to_string()])
            .args(["-node", &self.name(i)])
            .arg(format!("-bind={}", Self::ip(i)))
            .args(["-client", "127.0.0.1"])
            .arg(format!("-http-port={}", p.http))
            .args(["-server-port", &p.server.to_string()])
            .arg(format!("-serf-lan-port={}", p.serf))
            // Every server gets its own WAN pool port (Consul's 8302 would be shared).
            .arg(format!("-serf-wan-port={}", free_port()))
            .arg(format!("-dns-port={}", p.dns))
            .arg(format!("-config-file={}", config.display()))
            .arg(format!("-retry-join={}:{}", Self::ip(0), self.ports[0].serf))
            .args(["-log-level", "info"]);
        if let Some(k) = key {
            cmd.arg(format!("-encrypt={k}"));
        }
        let log = std::fs::File::create(&self.logs[i]).expect("log file");
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::from(log));
        self.children[i] = Some(cmd.spawn().expect("spawn consul-rs"));
    }

    /// Adds one more agent slot (not started); returns its index.
    pub fn add_slot(&mut self) -> usize {
        self.ports.push(ProcPorts { http: free_port(), server: free_port(), serf: free_port(), dns: free_port() });
        let dir = tempfile::tempdir().expect("tempdir");
        self.logs.push(dir.path().join("stderr.log"));
        self.dirs.push(dir);
        self.children.push(None);
        self.children.len() - 1
    }

    /// Waits until every running server sees the same leader.
    pub async fn wait_for_leader(&self) {
        for i in 0..self.servers {
            if self.children[i].is_none() {
                continue;
            }
            let api = self.api(i);
            eventually(Duration::from_secs(60), &format!("server {i} knows a leader"), || {
                let api = api.clone();
                async move {
                    let leader = api.get("/v1/status/leader").await.ok()?.json();
                    leader.as_str().is_some_and(|s| !s.is_empty()).then_some(())
                }
            })
            .await;
        }
    }

    /// An API client for agent `i`.
    pub fn api(&self, i: usize) -> Api {
        Api::new(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.ports[i].http))
    }

    /// Ports of agent `i`.
    pub fn ports(&self, i: usize) -> ProcPorts {
        self.ports[i]
    }

    /// `kill -9` agent `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGINT to agent `i` and waits for it to exit; its exit status.
    pub fn interrupt(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let mut child = self.children[i].take()?;
        let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
        for _ in 0..200 {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Restarts agent `i` from its data dir with the datacenter's key.
    pub fn restart(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "agent {i} is running");
        let key = self.encrypt.clone();
        self.spawn(i, key.as_deref());
    }

    /// A `consul-rs` CLI command aimed at agent `i`.
    pub fn cli(&self, i: usize, args: &[&str]) -> Output {
        Command::new(binary())
            .args(args)
            .env("CONSUL_HTTP_ADDR", format!("127.0.0.1:{}", self.ports[i].http))
            .env_remove("CONSUL_HTTP_TOKEN")
            .output()
            .expect("run cli")
    }

    /// Agent `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.logs[i]).unwrap_or_default()
    }
}

impl Drop for Datacenter {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill9(i);
        }
    }
}
