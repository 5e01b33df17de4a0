//! In-process clusters: several [`Agent`]s in this test process, each with its own data dir and
//! fixed free ports on 127.0.0.1 (fixed so a restarted server comes back at the same address).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use consul_core::agent::Agent;
use consul_core::config::{AgentConfig, DnsConfig, Ports, RaftTuning};
use tempfile::TempDir;

use crate::client::Api;
use crate::{eventually, free_port};

/// Options for [`Cluster::start`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Raft snapshot threshold (small values exercise compaction).
    pub snapshot_threshold: u64,
    /// Trailing logs kept after a snapshot.
    pub trailing_logs: u64,
    /// How long KV tombstones live before the leader reaps them.
    pub tombstone_ttl: Duration,
    /// Adjusts each server's configuration (e.g. shorter anti-entropy intervals).
    pub tweak: Option<fn(&mut AgentConfig)>,
    /// DNS settings.
    pub dns: DnsConfig,
    /// Turns ACLs on (`acl.enabled = true`, default policy allow).
    pub acl: bool,
    /// `acl.tokens.initial_management` (only with `acl`).
    pub initial_management: Option<String>,
    /// The servers' `tls` settings (the plain HTTP port stays on for the harness).
    pub tls: Option<consul_core::tls::TlsConfig>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            snapshot_threshold: 16384,
            trailing_logs: 10240,
            tombstone_ttl: Duration::from_secs(15 * 60),
            tweak: None,
            dns: DnsConfig::default(),
            acl: false,
            initial_management: None,
            tls: None,
        }
    }
}

/// A cluster of in-process server agents.
#[derive(Debug)]
pub struct Cluster {
    agents: Vec<Option<Agent>>,
    configs: Vec<AgentConfig>,
    _dirs: Vec<TempDir>,
}

fn server_config(i: usize, n: usize, join: SocketAddr, dir: &TempDir, opts: &Options) -> AgentConfig {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut config = AgentConfig {
        node_name: format!("node{i}"),
        server: true,
        bootstrap: n == 1,
        bootstrap_expect: if n == 1 { 0 } else { n as u32 },
        data_dir: Some(dir.path().to_path_buf()),
        bind_addr: lo,
        client_addr: lo,
        ports: Ports {
            http: Some(free_port()),
            https: None,
            dns: 0,
            server: free_port(),
            serf_lan: if i == 0 { join.port() } else { free_port() },
        },
        retry_join: if i == 0 { vec![] } else { vec![join.to_string()] },
        retry_interval: Duration::from_millis(200),
        // A WAN pool on a free port: Consul's 8302 would be shared by every test server.
        wan: consul_core::agent::config::WanSettings { port: Some(0), ..Default::default() },
        raft: RaftTuning {
            raft_multiplier: 1,
            snapshot_threshold: opts.snapshot_threshold,
            trailing_logs: opts.trailing_logs,
        },
        tombstone_ttl: opts.tombstone_ttl,
        dns: opts.dns.clone(),
        ..AgentConfig::default()
    };
    if opts.acl {
        config.acl.enabled = true;
        config.acl.tokens.initial_management = opts.initial_management.clone();
    }
    if let Some(tls) = &opts.tls {
        config.tls = tls.clone();
    }
    if let Some(tweak) = opts.tweak {
        tweak(&mut config);
    }
    config
}

impl Cluster {
    /// Starts `n` servers that form one cluster (`bootstrap_expect = n`), and waits for a leader.
    pub async fn start(n: usize) -> Cluster {
        Self::start_with(n, Options::default()).await
    }

    /// [`Cluster::start`] with options.
    pub async fn start_with(n: usize, opts: Options) -> Cluster {
        crate::init_tracing();
        let mut join = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port());
        let mut cluster = Cluster { agents: Vec::new(), configs: Vec::new(), _dirs: Vec::new() };
        for i in 0..n {
            let dir = tempfile::tempdir().expect("tempdir");
            // `free_port` releases the port before the agent binds it, so a parallel test can
            // take it in between: pick new ports and try again.
            let mut attempt = 0;
            let (config, agent) = loop {
                let config = server_config(i, n, join, &dir, &opts);
                match Agent::start(config.clone()).await {
                    Ok(agent) => break (config, agent),
                    Err(consul_core::Error::Bind { .. }) if attempt < 5 => {
                        attempt += 1;
                        if i == 0 {
                            join.set_port(free_port());
                        }
                    }
                    Err(e) => panic!("agent start: {e}"),
                }
            };
            cluster.agents.push(Some(agent));
            cluster.configs.push(config);
            cluster._dirs.push(dir);
        }
        cluster.wait_for_voters(n).await;
        cluster
    }

    /// Adds one more server that joins the cluster (it must be added by the leader and catch up).
    pub async fn add_server(&mut self) -> usize {
        let i = self.agents.len();
        let join = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.configs[0].ports.serf_lan);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config =
            server_config(i, self.configs[0].bootstrap_expect.max(1) as usize, join, &dir, &Options::default());
        config.raft = self.configs[0].raft;
        config.bootstrap = false;
        let agent = Agent::start(config.clone()).await.expect("agent start");
        self.agents.push(Some(agent));
        self.configs.push(config);
        self._dirs.push(dir);
        i
    }

    /// Waits until the leader's configuration has `n` voters and every running agent knows the leader.
    pub async fn wait_for_voters(&self, n: usize) {
        let api = self.running().next().map(|i| self.api(i)).expect("no running agent");
        eventually(Duration::from_secs(30), &format!("{n} raft voters"), || {
            let api = api.clone();
            async move {
                let peers = api.get("/v1/status/peers").await.ok()?.json();
                (peers.as_array()?.len() == n).then_some(())
            }
        })
        .await;
        for i in self.running().collect::<Vec<_>>() {
            let agent = self.agent(i);
            agent.wait_for_leader(Duration::from_secs(20)).await.expect("leader");
        }
    }

    /// Indexes of running agents.
    pub fn running(&self) -> impl Iterator<Item = usize> + '_ {
        self.agents.iter().enumerate().filter(|(_, a)| a.is_some()).map(|(i, _)| i)
    }

    /// Agent `i` (panics if stopped).
    pub fn agent(&self, i: usize) -> &Agent {
        self.agents[i].as_ref().expect("agent is stopped")
    }

    /// Agent `i`'s data dir.
    pub fn data_dir(&self, i: usize) -> std::path::PathBuf {
        self.configs[i].data_dir.clone().unwrap_or_default()
    }

    /// An API client for agent `i`.
    pub fn api(&self, i: usize) -> Api {
        Api::new(self.configs[i].ports_http_addr())
    }

    /// The index of the current leader among running agents (waits up to 20 s for one).
    pub async fn leader(&self) -> usize {
        eventually(Duration::from_secs(20), "a leader", || async {
            self.running().find(|i| self.agent(*i).is_leader())
        })
        .await
    }

    /// Indexes of running followers.
    pub async fn followers(&self) -> Vec<usize> {
        let leader = self.leader().await;
        self.running().filter(|i| *i != leader).collect()
    }

    /// Stops agent `i` (its data dir stays).
    pub async fn stop(&mut self, i: usize) {
        if let Some(agent) = self.agents[i].take() {
            agent.shutdown().await.expect("shutdown");
        }
    }

    /// Restarts a stopped agent `i` from its data dir, on the same ports.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.agents[i].is_none(), "agent {i} is running");
        let mut config = self.configs[i].clone();
        config.retry_join = self.running().filter(|j| *j != i).map(|j| self.agent(j).serf_addr().to_string()).collect();
        let agent = Agent::start(config).await.expect("agent restart");
        self.agents[i] = Some(agent);
    }

    /// Shuts every agent down.
    pub async fn shutdown(mut self) {
        for i in 0..self.agents.len() {
            self.stop(i).await;
        }
    }
}

/// HTTP address from a config with a fixed HTTP port.
trait HttpAddr {
    fn ports_http_addr(&self) -> SocketAddr;
}

impl HttpAddr for AgentConfig {
    fn ports_http_addr(&self) -> SocketAddr {
        SocketAddr::new(self.client_addr, self.ports.http.unwrap_or_default())
    }
}

/// The configuration of a client agent (`server = false`) on 127.0.0.1 with free ports, keeping
/// its state in `data_dir` and joining the gossip pool at `join` (a serf address) with the dev
/// gossip timings. Adjust fields before `Agent::start`.
pub fn client_agent_config(name: &str, data_dir: &std::path::Path, join: SocketAddr) -> AgentConfig {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    AgentConfig {
        node_name: name.into(),
        server: false,
        data_dir: Some(data_dir.to_path_buf()),
        bind_addr: lo,
        client_addr: lo,
        ports: Ports::any(),
        retry_join: vec![join.to_string()],
        retry_interval: Duration::from_millis(200),
        gossip_lan: consul_core::gossip::GossipConfig::dev(),
        ..AgentConfig::default()
    }
}
