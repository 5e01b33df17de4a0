//! Clusters of real `consul-rs` processes, started with Consul's own flag spellings.
//!
//! The binary is found next to the test executable's directory (`target/<profile>/consul-rs`),
//! or at `$CONSUL_RS_BIN`. Every child is killed when the cluster is dropped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

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

/// A cluster of `consul-rs agent -server` processes.
#[derive(Debug)]
pub struct ProcCluster {
    children: Vec<Option<Child>>,
    ports: Vec<ProcPorts>,
    dirs: Vec<TempDir>,
    n: usize,
}

impl ProcCluster {
    /// Starts `n` server processes with `-bootstrap-expect n` joined to the first one.
    pub async fn start(n: usize) -> ProcCluster {
        let mut c = ProcCluster { children: Vec::new(), ports: Vec::new(), dirs: Vec::new(), n };
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
        std::fs::write(&config, r#"{"performance": {"raft_multiplier": 1}, "retry_interval": "200ms"}"#)
            .expect("write config");
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
            .arg(format!("-dns-port={}", p.dns))
            .arg(format!("-config-file={}", config.display()))
            .args(["-log-level", "warn"]);
        for (j, other) in self.ports.iter().enumerate() {
            if j != i {
                cmd.arg(format!("-retry-join=127.0.0.1:{}", other.serf));
            }
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
        self.children[i] = Some(cmd.spawn().expect("spawn consul-rs"));
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

    /// `kill -9` server `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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
