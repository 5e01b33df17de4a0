//! The agent: one consul-rs node as a library value.
//!
//! [`Agent::start`] binds every listener (port 0 picks a free one), opens storage, starts Raft,
//! the RPC and HTTP servers and the cluster tasks on the caller's tokio runtime, and returns a
//! handle; [`Agent::shutdown`] stops them all. Nothing is process-global, so a test or an
//! embedding program can run many agents side by side.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::cluster::{Cluster, FormationConfig};
use crate::command::Command;
use crate::config::AgentConfig;
use crate::consensus::Consensus;
use crate::coordinate::{self, CoordinateClient};
use crate::http::{self, ApiContext};
use crate::local::{self, LocalAgent, NodeInfo};
use crate::raft::{self, log_store::LogStore, network::NetworkFactory, state_machine::StateMachine};
use crate::rpc::{self, messages::MemberInfo, RpcClient};
use crate::state::StateStore;
use crate::{Error, Result};

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    node_id: Uuid,
    http_addr: SocketAddr,
    dns_addr: Option<SocketAddr>,
    rpc_addr: SocketAddr,
    serf_addr: SocketAddr,
    consensus: Arc<Consensus>,
    cluster: Arc<Cluster>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    log_store: LogStore,
    local: Arc<LocalAgent>,
    coordinates: Option<Arc<CoordinateClient>>,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind { what, addr, source })
}

/// Binds the DNS UDP socket and TCP listener on the same port (with port 0, the TCP listener
/// follows the port the UDP socket got, retrying if that port is taken for TCP).
async fn bind_dns(addr: SocketAddr) -> Result<(tokio::net::UdpSocket, TcpListener)> {
    let err = |source| Error::Bind { what: "DNS", addr, source };
    for _ in 0..16 {
        let udp = tokio::net::UdpSocket::bind(addr).await.map_err(err)?;
        let port = udp.local_addr().map_err(err)?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() != 0 => return Err(err(e)),
            Err(_) => continue,
        }
    }
    Err(err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no port free for both UDP and TCP")))
}

/// Reads `<data_dir>/node-id`, or writes a new random one there.
fn load_node_id(config: &AgentConfig) -> Result<Uuid> {
    if let Some(id) = config.node_id {
        return Ok(id);
    }
    let Some(dir) = config.data_dir.as_deref().filter(|_| !config.dev) else {
        return Ok(Uuid::new_v4());
    };
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => Uuid::parse_str(text.trim())
            .map_err(|e| Error::Config(format!("node_id: {} holds an invalid UUID: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Uuid::new_v4();
            write_durably(&path, id.to_string().as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(Error::Storage(format!("{}: {e}", path.display()))),
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let err = |e: std::io::Error| Error::Storage(format!("{}: {e}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let mut f = std::fs::File::create(path).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

impl Agent {
    /// Starts an agent. Fails with a clear error on invalid configuration or a port in use.
    pub async fn start(config: AgentConfig) -> Result<Agent> {
        config.validate()?;
        let node_id = load_node_id(&config)?;
        let raft_id = raft::raft_id(&node_id);
        let rpc_listener = bind("server RPC", SocketAddr::new(config.bind_addr, config.ports.server)).await?;
        let serf_listener = bind("serf_lan", SocketAddr::new(config.bind_addr, config.ports.serf_lan)).await?;
        let http_listener = bind("HTTP", SocketAddr::new(config.client_addr, config.ports.http)).await?;
        let dns_sockets = match config.dns.enabled {
            true => Some(bind_dns(SocketAddr::new(config.client_addr, config.ports.dns)).await?),
            false => None,
        };
        let dns_addr = dns_sockets.as_ref().and_then(|(udp, _)| udp.local_addr().ok());
        let local = |l: &TcpListener, what: &'static str, want: SocketAddr| {
            l.local_addr().map_err(|source| Error::Bind { what, addr: want, source })
        };
        let advertise = config.advertise_ip();
        let rpc_addr = SocketAddr::new(
            advertise,
            local(&rpc_listener, "server RPC", SocketAddr::new(config.bind_addr, config.ports.server))?.port(),
        );
        let serf_addr = SocketAddr::new(
            advertise,
            local(&serf_listener, "serf_lan", SocketAddr::new(config.bind_addr, config.ports.serf_lan))?.port(),
        );
        let http_addr = local(&http_listener, "HTTP", SocketAddr::new(config.client_addr, config.ports.http))?;

        let shutdown = CancellationToken::new();
        // Network coordinates: fed by gossip probes, published by the sync task below.
        let coordinates = (!config.disable_coordinates).then(|| Arc::new(CoordinateClient::new()));
        let raft_dir = match (&config.data_dir, config.dev) {
            (Some(dir), false) => Some(dir.join("raft")),
            _ => None,
        };
        let log_store = LogStore::open(raft_dir.as_deref())?;
        let state = Arc::new(StateStore::new());
        let sm = StateMachine::open(state.clone(), log_store.clone())?;
        let rpc_client = RpcClient::new(shutdown.clone());
        let raft =
            raft::start(raft_id, &config.raft, NetworkFactory::new(rpc_client.clone()), log_store.clone(), sm).await?;
        let consensus = Consensus::new(raft, state, rpc_client.clone(), raft_id, config.raft, config.rpc_hold_timeout);

        let incarnation = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let me = MemberInfo {
            node_id,
            name: config.node_name.clone(),
            datacenter: config.datacenter.clone(),
            rpc_addr,
            serf_addr,
            http_addr,
            server: config.server,
            bootstrap_expect: config.bootstrap_expect,
            raft_initialized: false,
            incarnation,
        };
        let formation = FormationConfig {
            bootstrap: config.bootstrap || config.dev,
            bootstrap_expect: config.bootstrap_expect,
            retry_join: config.retry_join.clone(),
            retry_interval: config.retry_interval,
            retry_max: config.retry_max,
        };
        let cluster = Cluster::new(me, consensus.clone(), rpc_client, formation);

        let node_info = NodeInfo {
            name: config.node_name.clone(),
            id: node_id.to_string(),
            address: advertise.to_string(),
            datacenter: config.datacenter.clone(),
        };
        let local = match LocalAgent::start(&config, node_info, consensus.clone(), shutdown.clone()) {
            Ok(l) => l,
            Err(e) => {
                shutdown.cancel();
                raft::shutdown(consensus.raft()).await;
                log_store.close();
                return Err(e);
            }
        };

        let mut tasks = Vec::new();
        let timing = local::sync::SyncTiming {
            ae_interval: config.ae_interval,
            reap_interval: config.check_reap_interval,
            deregister_min: config.check_deregister_interval_min,
        };
        tasks.push(tokio::spawn(local::sync::run(local.clone(), consensus.clone(), timing, shutdown.clone())));
        tasks.push(tokio::spawn(local::sync::reap(local.clone(), timing, shutdown.clone())));
        tasks.push(tokio::spawn(consensus.clone().watch_metrics(shutdown.clone())));
        tasks.push(tokio::spawn(consensus.clone().run_proposer(shutdown.clone())));
        let rpc_handler: rpc::Handler = {
            let c = consensus.clone();
            Arc::new(move |req| c.handle_rpc(req))
        };
        tasks.push(tokio::spawn(rpc::serve(rpc_listener, rpc_handler, shutdown.clone())));
        let serf_handler: rpc::Handler = {
            let c = cluster.clone();
            Arc::new(move |req| c.handle_rpc(req))
        };
        tasks.push(tokio::spawn(rpc::serve(serf_listener, serf_handler, shutdown.clone())));
        tasks.push(tokio::spawn(cluster.clone().run(shutdown.clone())));
        tasks.push(tokio::spawn(reap_tombstones(consensus.clone(), config.tombstone_ttl, shutdown.clone())));
        tasks.push(tokio::spawn(crate::session_ttl::reap_sessions(consensus.clone(), shutdown.clone())));

        if let Some(client) = &coordinates {
            let members: coordinate::sync::MemberCount = {
                let cluster = cluster.clone();
                Arc::new(move || cluster.members().len())
            };
            let timing = coordinate::sync::SyncTiming {
                interval_min: config.sync_coordinate_interval_min,
                rate_target: config.sync_coordinate_rate_target,
            };
            let sync = coordinate::sync::run(
                client.clone(),
                consensus.clone(),
                config.node_name.clone(),
                config.server,
                members,
                timing,
                shutdown.clone(),
            );
            tasks.push(tokio::spawn(sync));
        }

        if let Some((udp, tcp)) = dns_sockets {
            let dns = Arc::new(crate::dns::DnsContext::new(
                consensus.clone(),
                config.dns.clone(),
                config.datacenter.clone(),
                shutdown.clone(),
            ));
            tasks.push(tokio::spawn(crate::dns::serve_udp(udp, dns.clone())));
            tasks.push(tokio::spawn(crate::dns::serve_tcp(tcp, dns)));
        }

        let ctx = Arc::new(ApiContext {
            consensus: consensus.clone(),
            cluster: cluster.clone(),
            config: config.clone(),
            shutdown: shutdown.clone(),
            http_addr,
            local: local.clone(),
            coordinates: coordinates.clone(),
        });
        let app = http::router(ctx);
        let http_shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let serve = axum::serve(http_listener, app).with_graceful_shutdown(http_shutdown.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        }));
        tracing::info!(node = %config.node_name, %node_id, %http_addr, %rpc_addr, %serf_addr, "agent started");
        Ok(Agent {
            config,
            node_id,
            http_addr,
            dns_addr,
            rpc_addr,
            serf_addr,
            consensus,
            cluster,
            shutdown,
            tasks,
            log_store,
            local,
            coordinates,
        })
    }

    /// The HTTP API address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The DNS address (UDP and TCP), unless DNS is disabled.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns_addr
    }

    /// The server RPC address (as advertised).
    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc_addr
    }

    /// The serf_lan address (as advertised): what other agents `-retry-join`.
    pub fn serf_addr(&self) -> SocketAddr {
        self.serf_addr
    }

    /// This node's UUID.
    pub fn node_id(&self) -> Uuid {
        self.node_id
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.config.node_name
    }

    /// The configuration the agent runs with.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// The consensus facade (for embedding and tests).
    pub fn consensus(&self) -> &Arc<Consensus> {
        &self.consensus
    }

    /// The cluster view.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// The agent's own services and checks.
    pub fn local(&self) -> &Arc<LocalAgent> {
        &self.local
    }

    /// This agent's network coordinate client, which the gossip layer feeds with probe round
    /// trips (`update(peer, &peer_coord, rtt)`) and reads to piggyback on its acks; `None`
    /// with `disable_coordinates`.
    pub fn coordinates(&self) -> Option<&Arc<CoordinateClient>> {
        self.coordinates.as_ref()
    }

    /// Replaces the config-file services and checks (`consul reload`); API-registered ones stay.
    pub fn reload(&self, services: Vec<local::ServiceDefinition>, checks: Vec<local::CheckDefinition>) -> Result<()> {
        self.local.reload(services, checks)
    }

    /// Sets how `PUT /v1/agent/reload` re-reads the config files (the binary owns parsing them).
    pub fn set_reload_handler(&self, handler: local::ReloadHandler) {
        self.local.set_reload_handler(handler);
    }

    /// Whether this agent is the Raft leader.
    pub fn is_leader(&self) -> bool {
        self.consensus.is_leader()
    }

    /// Waits until some leader is known, or `timeout` passes.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.consensus.leader().is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::NoLeader)
    }

    /// Takes a Raft snapshot now and compacts the log behind it.
    pub async fn snapshot_now(&self) -> Result<()> {
        raft::trigger_snapshot(self.consensus.raft()).await
    }

    /// Stops every listener and task, then Raft and storage. Blocking queries in flight return
    /// their current result.
    pub async fn shutdown(mut self) -> Result<()> {
        self.stop().await;
        Ok(())
    }

    async fn stop(&mut self) {
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            if tokio::time::timeout(Duration::from_secs(10), task).await.is_err() {
                tracing::warn!("a task did not stop within 10 s");
            }
        }
        raft::shutdown(self.consensus.raft()).await;
        self.log_store.close();
        tracing::info!(node = %self.config.node_name, "agent stopped");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Without an explicit shutdown, at least stop the listeners and background tasks.
        self.shutdown.cancel();
    }
}

/// On the leader, drops tombstones older than `ttl` (Consul's tombstone GC, 30 s granularity):
/// it remembers the highest tombstone index it saw at each tick and, once a remembered tick is
/// `ttl` old, reaps everything up to that index through Raft.
async fn reap_tombstones(consensus: Arc<Consensus>, ttl: Duration, shutdown: CancellationToken) {
    let granularity = Duration::from_secs(30).min(ttl / 2).max(Duration::from_millis(100));
    let mut seen: std::collections::VecDeque<(Instant, u64)> = Default::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(granularity) => {}
            _ = shutdown.cancelled() => return,
        }
        if !consensus.is_leader() {
            seen.clear();
            continue;
        }
        let max = consensus.state().read(|d| d.tombstones.values().copied().max());
        if let Some(max) = max {
            if seen.back().map(|(_, i)| *i) != Some(max) {
                seen.push_back((Instant::now(), max));
            }
        }
        let mut up_to = None;
        while seen.front().is_some_and(|(t, _)| t.elapsed() >= ttl) {
            up_to = seen.pop_front().map(|(_, i)| i);
        }
        if let Some(up_to) = up_to {
            if let Err(e) = consensus.write(Command::ReapTombstones { up_to }).await {
                tracing::warn!(error = %e, "tombstone reaping failed; will retry");
                seen.push_front((Instant::now() - ttl, up_to));
            }
        }
    }
}
