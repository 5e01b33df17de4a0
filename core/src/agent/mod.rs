//! The agent: one consul-rs node as a library value.
//!
//! [`Agent::start`] binds every listener (port 0 picks a free one), opens storage, starts Raft,
//! the RPC and HTTP servers and the cluster tasks on the caller's tokio runtime, and returns a
//! handle; [`Agent::shutdown`] stops them all. Nothing is process-global, so a test or an
//! embedding program can run many agents side by side.
//!
//! The top layer: it may call every other module, and nothing calls it (the API gets what it
//! needs of the configuration as plain values).

pub mod config;
pub mod config_file;
mod telemetry;
pub mod watches;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::agent::config::AgentConfig;
use crate::api::http::proxy::HttpRequest;
use crate::api::http::{self, ApiContext};
use crate::conn_limit::{ConnLimiter, LimitedHttpListener};
use crate::coordinate::CoordinateClient;
use crate::local::{self, LocalAgent, NodeInfo};
use crate::membership::cluster::{Cluster, FormationConfig};
use crate::membership::gossip::MemberInfo;
use crate::membership::gossip::{Gossip, Keyring};
use crate::membership::wan::WanPool;
use crate::replication::backend::{Backend, Remote};
use crate::replication::consensus::Consensus;
use crate::replication::raft::{self, log_store::LogStore, network::NetworkFactory, state_machine::StateMachine};
use crate::rpc::{self, RpcClient, Service};
use crate::state::command::Command;
use crate::state::StateStore;
use crate::{Error, Result};

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    node_id: Uuid,
    http_addr: SocketAddr,
    https_addr: Option<SocketAddr>,
    tls: Option<Arc<crate::tls::AgentTls>>,
    dns_addr: Option<SocketAddr>,
    rpc_addr: SocketAddr,
    serf_addr: SocketAddr,
    consensus: Option<Arc<Consensus>>,
    backend: Backend,
    cluster: Arc<Cluster>,
    shutdown: CancellationToken,
    left: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    log_store: Option<LogStore>,
    local: Arc<LocalAgent>,
    coordinates: Option<Arc<CoordinateClient>>,
    metrics: Arc<crate::metrics::Metrics>,
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

/// The bounds of an agent-to-agent port (server RPC, serf_lan) from `limits { … }`.
fn rpc_serve_options(
    name: &'static str,
    limits: &crate::api::http::Limits,
    tls: Option<Arc<crate::tls::AgentTls>>,
) -> rpc::ServeOptions {
    rpc::ServeOptions {
        tls,
        limiter: ConnLimiter::new(limits.rpc_max_conns_per_client),
        handshake_timeout: limits.rpc_handshake_timeout,
        idle_timeout: limits.rpc_idle_timeout,
        ..rpc::ServeOptions::new(name)
    }
}

/// The gossip keyring: `data_dir/serf/local.keyring` when it exists (rotated keys survive
/// restarts), else the `encrypt` key.
fn open_keyring(config: &AgentConfig) -> Result<Keyring> {
    let bad = |e: crate::membership::gossip::keyring::KeyringError| Error::Config(format!("encrypt: {e}"));
    match (&config.data_dir, config.dev || config.disable_keyring_file) {
        (Some(dir), false) => {
            Keyring::load_or_init(&dir.join("serf").join("local.keyring"), config.encrypt.as_deref(), "").map_err(bad)
        }
        _ => Keyring::new(config.encrypt.as_slice(), None, "").map_err(bad),
    }
}

/// The WAN keyring: `data_dir/serf/remote.keyring` when it exists, else the `encrypt` key.
fn open_wan_keyring(config: &AgentConfig) -> Result<Keyring> {
    let bad = |e: crate::membership::gossip::keyring::KeyringError| Error::Config(format!("encrypt: {e}"));
    match (&config.data_dir, config.dev || config.disable_keyring_file) {
        (Some(dir), false) => {
            Keyring::load_or_init(&dir.join("serf").join("remote.keyring"), config.encrypt.as_deref(), "").map_err(bad)
        }
        _ => Keyring::new(config.encrypt.as_slice(), None, "").map_err(bad),
    }
}

/// Starts a server's WAN pool member on `ports.serf_wan` (TCP for joins, push/pull and keyring
/// operations; UDP on the same port for probes and gossip). `None` when the pool is off
/// (`ports.serf_wan = -1`), or when the default port is taken and none was configured.
async fn start_wan(
    config: &AgentConfig,
    node_id: Uuid,
    rpc_addr: SocketAddr,
    http_addr: SocketAddr,
    incarnation: u64,
    shutdown: &CancellationToken,
) -> Result<Option<(Arc<WanPool>, Vec<JoinHandle<()>>)>> {
    let w = &config.wan;
    let Some(port) = w.port else { return Ok(None) };
    let bind_ip = w.bind_addr.unwrap_or(config.bind_addr);
    let want = SocketAddr::new(bind_ip, port);
    let mut me = MemberInfo {
        node_id,
        name: crate::membership::wan::wan_name(&config.node_name, &config.datacenter),
        datacenter: config.datacenter.clone(),
        rpc_addr,
        serf_addr: want,
        http_addr,
        server: true,
        bootstrap_expect: config.bootstrap_expect,
        raft_initialized: false,
        incarnation,
        wan_addr: None,
    };
    let mut gossip_config = w.gossip.clone();
    gossip_config.verify_incoming = config.encrypt_verify_incoming;
    gossip_config.verify_outgoing = config.encrypt_verify_outgoing;
    let keyring = Arc::new(open_wan_keyring(config)?);
    let advertise = w.advertise_addr.unwrap_or_else(|| config.advertise_ip());
    // TCP and UDP share the port; with port 0 the UDP socket follows the port TCP got, retried
    // if that one is taken for UDP.
    let mut attempt = 0;
    let (listener, gossip) = loop {
        attempt += 1;
        let bound = TcpListener::bind(want).await.and_then(|l| l.local_addr().map(|a| (l, a)));
        let (listener, udp_bind) = match bound {
            Ok(b) => b,
            Err(e) if !w.port_set && e.kind() == std::io::ErrorKind::AddrInUse => return Ok(wan_port_taken(want)),
            Err(source) => return Err(Error::Bind { what: "serf_wan", addr: want, source }),
        };
        me.serf_addr = SocketAddr::new(advertise, udp_bind.port());
        let rpc = RpcClient::new(shutdown.clone());
        match Gossip::bind(udp_bind, me.clone(), gossip_config.clone(), keyring.clone(), rpc).await {
            Ok(g) => break (listener, g),
            Err(e) if port == 0 && attempt < 16 && e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) if !w.port_set && e.kind() == std::io::ErrorKind::AddrInUse => return Ok(wan_port_taken(want)),
            Err(source) => return Err(Error::Bind { what: "serf_wan (UDP)", addr: udp_bind, source }),
        }
    };
    let bound = me.serf_addr;
    let join =
        crate::membership::wan::WanJoin { addrs: w.retry_join.clone(), interval: w.retry_interval, max: w.retry_max };
    let pool = WanPool::new(gossip.clone(), !config.disable_coordinates, join);
    let (g1, g2) = (gossip.clone(), gossip.clone());
    let router = rpc::Router::new()
        .route(Service::Gossip, move |sealed: Vec<u8>| std::future::ready(g1.handle_sync(&sealed)))
        .route(Service::Keyring, move |sealed: Vec<u8>| std::future::ready(g2.handle_keyring(&sealed)));
    let opts = rpc_serve_options("serf_wan", &config.limits, None);
    let tasks = vec![
        tokio::spawn(rpc::serve_with(listener, router, shutdown.clone(), opts)),
        tokio::spawn(gossip.run(shutdown.clone())),
    ];
    tracing::info!(addr = %bound, name = %pool.gossip().me().name, "WAN pool started");
    Ok(Some((pool, tasks)))
}

/// The default serf_wan port is taken and none was configured (several agents on one host):
/// the server runs without a WAN pool rather than not at all, and says so.
fn wan_port_taken<T>(addr: SocketAddr) -> Option<T> {
    tracing::warn!(%addr, "serf_wan: the default port is in use; running without a WAN pool \
        (set ports.serf_wan or -serf-wan-port to take part in one)");
    None
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
        let acl =
            Arc::new(crate::api::authz::AclResolver::new(config.acl.clone(), &config.datacenter, &config.node_name));
        let node_id = load_node_id(&config)?;
        let raft_id = raft::raft_id(&node_id);
        let rpc_listener = bind("server RPC", SocketAddr::new(config.bind_addr, config.ports.server)).await?;
        let serf_listener = bind("serf_lan", SocketAddr::new(config.bind_addr, config.ports.serf_lan)).await?;
        let tls = crate::tls::AgentTls::load(
            &config.tls,
            config.ports.https.is_some(),
            &config.datacenter,
            &config.dns.domain,
        )
        .map_err(|e| Error::Config(format!("tls: {e}")))?;
        let http_listener = match config.ports.http {
            Some(port) => Some(bind("HTTP", SocketAddr::new(config.client_addr, port)).await?),
            None => None,
        };
        let https_listener = match config.ports.https {
            Some(port) => Some(bind("HTTPS", SocketAddr::new(config.client_addr, port)).await?),
            None => None,
        };
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
        let api_addr = |l: &Option<TcpListener>, what, port: Option<u16>| match (l, port) {
            (Some(l), Some(port)) => local(l, what, SocketAddr::new(config.client_addr, port)).map(Some),
            _ => Ok(None),
        };
        let https_addr = api_addr(&https_listener, "HTTPS", config.ports.https)?;
        let tcp_http_addr = api_addr(&http_listener, "HTTP", config.ports.http)?;
        let http_unix = config.http_unix_socket.as_ref().map(|u| u.bind().map(|l| (l, u.path.clone()))).transpose()?;
        // The API's TCP address is HTTP's, else HTTPS's. An agent serving HTTP only on a Unix
        // socket (validation guarantees one of the three) has none: the client address with
        // port 0 stands in, which nothing listens on.
        let http_addr = tcp_http_addr.or(https_addr).unwrap_or_else(|| SocketAddr::new(config.client_addr, 0));
        let http_listeners: Vec<String> = tcp_http_addr
            .map(|a| format!("tcp://{a}"))
            .into_iter()
            .chain(http_unix.as_ref().map(|(_, p)| format!("unix://{}", p.display())))
            .collect();

        let shutdown = CancellationToken::new();
        let metrics = crate::metrics::Metrics::start(config.telemetry.clone(), &shutdown);
        // Network coordinates: fed by gossip probes, published by the sync task below.
        let coordinates = (!config.disable_coordinates).then(|| Arc::new(CoordinateClient::new()));
        // The server port (Raft, forwarding, client agents' requests) speaks TLS as configured;
        // the serf port stays plaintext, as in Consul.
        let rpc_client = RpcClient::with_tls(shutdown.clone(), tls.clone());
        let serf_rpc = RpcClient::new(shutdown.clone());
        let incarnation = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        // Servers only: client agents have no WAN pool.
        let (wan, wan_tasks) = match config.server {
            true => start_wan(&config, node_id, rpc_addr, http_addr, incarnation, &shutdown).await?,
            false => None,
        }
        .map_or((None, Vec::new()), |(pool, tasks)| (Some(pool), tasks));
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
            wan_addr: wan.as_ref().map(|w| w.gossip().me().serf_addr),
        };
        let keyring = Arc::new(open_keyring(&config)?);
        let mut gossip_config = config.gossip_lan.clone();
        gossip_config.verify_incoming = config.encrypt_verify_incoming;
        gossip_config.verify_outgoing = config.encrypt_verify_outgoing;
        // UDP shares the serf_lan TCP listener's port, on the bind address.
        let gossip_bind = SocketAddr::new(config.bind_addr, serf_addr.port());
        let gossip = Gossip::bind(gossip_bind, me, gossip_config, keyring, serf_rpc)
            .await
            .map_err(|source| Error::Bind { what: "serf_lan (UDP)", addr: gossip_bind, source })?;
        if let Some(c) = &coordinates {
            gossip.set_rtt_observer(c.clone());
        }

        // Servers open storage and start Raft; client agents reach the servers through gossip.
        let mut log_store = None;
        let backend = if config.server {
            let raft_dir = match (&config.data_dir, config.dev) {
                (Some(dir), false) => Some(dir.join("raft")),
                _ => None,
            };
            let store = LogStore::open(raft_dir.as_deref(), raft_id)?;
            let state = Arc::new(StateStore::new());
            let sm = StateMachine::open(state.clone(), store.clone())?;
            let node =
                raft::start(raft_id, &config.raft, NetworkFactory::new(rpc_client.clone()), store.clone(), sm).await?;
            log_store = Some(store);
            Backend::Server(Consensus::new(node, state, rpc_client.clone(), config.raft, config.rpc_hold_timeout))
        } else {
            let servers = crate::membership::gossip::GossipServers {
                gossip: gossip.clone(),
                datacenter: config.datacenter.clone(),
            };
            let rate = crate::rate_limit::RateLimiter::new(config.limits.rpc_rate, config.limits.rpc_max_burst);
            let remote = Remote::new(rpc_client.clone(), Arc::new(servers), config.rpc_hold_timeout, rate);
            if config.acl.enabled {
                // Before the first anti-entropy pass: the agent's writes carry its token.
                remote.set_token_source(acl.clone());
            }
            Backend::Client(remote)
        };
        let consensus = backend.consensus().cloned();

        let formation = FormationConfig {
            bootstrap: config.bootstrap || config.dev,
            bootstrap_expect: config.bootstrap_expect,
            retry_join: config.retry_join.clone(),
            retry_interval: config.retry_interval,
            retry_max: config.retry_max,
            autopilot: config.autopilot.clone(),
        };
        let cluster = Cluster::new(gossip.clone(), consensus.clone(), formation, wan);

        let node_info = NodeInfo {
            name: config.node_name.clone(),
            meta: config.node_meta.clone(),
            id: node_id.to_string(),
            address: advertise.to_string(),
            datacenter: config.datacenter.clone(),
            locality: config.locality.clone(),
        };
        let local = match LocalAgent::start(&config.local_config(), node_info, backend.clone(), shutdown.clone()) {
            Ok(l) => l,
            Err(e) => {
                if let Some(c) = &consensus {
                    c.close().await;
                }
                shutdown.cancel();
                if let Some(store) = &log_store {
                    store.close();
                }
                return Err(e);
            }
        };

        let mut tasks = wan_tasks;
        if let Some(wan) = cluster.wan() {
            tasks.push(tokio::spawn(wan.clone().run(gossip.clone(), shutdown.clone())));
        }
        let timing = local::sync::SyncTiming {
            ae_interval: config.ae_interval,
            reap_interval: config.check_reap_interval,
            deregister_min: config.check_deregister_interval_min,
        };
        tasks.push(tokio::spawn(local::sync::run(local.clone(), backend.clone(), timing, shutdown.clone())));
        tasks.push(tokio::spawn(local::sync::reap(local.clone(), timing, shutdown.clone())));
        tasks.push(tokio::spawn(telemetry::run(metrics.clone(), cluster.clone(), consensus.clone(), shutdown.clone())));
        if let Some(c) = &consensus {
            c.set_metrics(metrics.clone());
            tasks.push(tokio::spawn(c.clone().watch_metrics(shutdown.clone())));
            tasks.push(tokio::spawn(c.clone().run_proposer(shutdown.clone())));
            tasks.push(tokio::spawn(reap_tombstones(c.clone(), config.tombstone_ttl, shutdown.clone())));
            tasks.push(tokio::spawn(crate::replication::session_ttl::reap_sessions(c.clone(), shutdown.clone())));
            if config.acl.enabled {
                let initial = config.acl.tokens.initial_management.clone().filter(|s| !s.is_empty());
                tasks.push(tokio::spawn(crate::replication::acl_upkeep::run(c.clone(), initial, shutdown.clone())));
            }
            let connect = config.connect.clone();
            tasks.push(tokio::spawn(crate::replication::ca_upkeep::run(c.clone(), connect, shutdown.clone())));
        }
        // The serf_lan port: gossip push/pull and joins, keyring fan-out.
        let (g1, g2) = (gossip.clone(), gossip.clone());
        let serf_router = rpc::Router::new()
            .route(Service::Gossip, move |sealed: Vec<u8>| std::future::ready(g1.handle_sync(&sealed)))
            .route(Service::Keyring, move |sealed: Vec<u8>| std::future::ready(g2.handle_keyring(&sealed)));
        // Open to anyone who can reach it, like the server port, so bounded the same way.
        let serf_opts = rpc_serve_options("serf_lan", &config.limits, None);
        tasks.push(tokio::spawn(rpc::serve_with(serf_listener, serf_router, shutdown.clone(), serf_opts)));
        tasks.push(tokio::spawn(gossip.clone().run(shutdown.clone())));
        tasks.push(tokio::spawn(cluster.clone().run(shutdown.clone())));

        // The other datacenters, reached over the server port with its TLS settings.
        let datacenters = crate::api::remote_dc::Datacenters::new(
            config.datacenter.clone(),
            cluster.wan().cloned(),
            shutdown.clone(),
            tls.clone(),
        );
        // Servers resolve DNS queries their client agents forward, even with their own DNS port off.
        let dns = Arc::new(
            crate::api::dns::DnsContext::new(
                backend.clone(),
                config.dns.clone(),
                config.datacenter.clone(),
                shutdown.clone(),
                acl.clone(),
            )
            .with_metrics(metrics.clone(), &config.node_name)
            .with_node_name(&config.node_name)
            .with_datacenters(datacenters.clone()),
        );

        if let Some(client) = &coordinates {
            let members: crate::membership::coordinate_sync::MemberCount = {
                let cluster = cluster.clone();
                Arc::new(move || cluster.members().len())
            };
            let timing = crate::membership::coordinate_sync::SyncTiming {
                interval_min: config.sync_coordinate_interval_min,
                rate_target: config.sync_coordinate_rate_target,
            };
            let sync = crate::membership::coordinate_sync::run(
                client.clone(),
                backend.clone(),
                config.node_name.clone(),
                config.server,
                members,
                timing,
                shutdown.clone(),
            );
            tasks.push(tokio::spawn(sync));
        }

        if let Some((udp, tcp)) = dns_sockets {
            tasks.push(tokio::spawn(crate::api::dns::serve_udp(udp, dns.clone())));
            tasks.push(tokio::spawn(crate::api::dns::serve_tcp(tcp, dns.clone())));
        }

        let left = CancellationToken::new();
        let ctx = Arc::new(ApiContext {
            backend: backend.clone(),
            cluster: cluster.clone(),
            config: config.api_settings(),
            shutdown: shutdown.clone(),
            http_addr,
            http_listeners,
            local: local.clone(),
            left: left.clone(),
            coordinates: coordinates.clone(),
            acl: acl.clone(),
            tls: tls.clone(),
            leaf_certs: Default::default(),
            restores: Default::default(),
            cache: http::cache::AgentCache::new(shutdown.clone()),
            logs: config.log_hub.clone().unwrap_or_default(),
            heap_profiler: config.heap_profiler.clone(),
            metrics: metrics.clone(),
            jwks: Default::default(),
            datacenters: datacenters.clone(),
        });
        let app = http::router(ctx);
        if let Some(c) = &consensus {
            // The server port: Raft, forwarded writes and reads, and client agents' HTTP and DNS.
            let (c, app, dns) = (c.clone(), app.clone(), dns.clone());
            let (c2, app2, acl2) = (c.clone(), app.clone(), acl.clone());
            // `consul.rpc.request`: requests served on the server port (Raft's own traffic aside).
            let (m1, m2, m3) = (metrics.clone(), metrics.clone(), metrics.clone());
            let router = rpc::Router::new()
                .route(Service::Raft, move |req| {
                    let c = c.clone();
                    async move { c.handle_raft(req).await }
                })
                .route(Service::Forward, move |req| {
                    m1.incr_counter("rpc.request", &[], 1.0);
                    let (c, acl) = (c2.clone(), acl2.clone());
                    async move { crate::api::agent_writes::serve_forward(&c, &acl, req).await }
                })
                .route(Service::Http, move |req: HttpRequest| {
                    m2.incr_counter("rpc.request", &[], 1.0);
                    let app = app2.clone();
                    async move { http::proxy::serve_forwarded(app, req).await.map_err(|e| e.to_string()) }
                })
                .route(Service::Dns, move |q| {
                    m3.incr_counter("rpc.request", &[], 1.0);
                    let dns = dns.clone();
                    async move { crate::api::dns::answer_forwarded(&dns, q).await }
                });
            let opts = rpc_serve_options("server RPC", &config.limits, tls.clone());
            tasks.push(tokio::spawn(rpc::serve_with(rpc_listener, router, shutdown.clone(), opts)));
        } else {
            // A client agent holds no server port open; `rpc_addr` is only advertised.
            drop(rpc_listener);
        }
        // A -dev agent answers its first HTTP request only once it is in the catalog (its node,
        // serfHealth and the `consul` service): clients and test harnesses that see a leader read
        // the agent's own node at once. Requests wait in the listen backlog meanwhile.
        let registered = match (&consensus, config.dev) {
            (Some(c), true) => Some((c.clone(), config.node_name.clone())),
            _ => None,
        };
        let gate = {
            let shutdown = shutdown.clone();
            move || {
                let (registered, shutdown) = (registered.clone(), shutdown.clone());
                async move {
                    if let Some((c, node)) = registered {
                        wait_in_catalog(&c, &node, Duration::from_secs(10), &shutdown).await;
                    }
                }
            }
        };
        if let (Some(listener), Some(tls)) = (https_listener, &tls) {
            let limiter = ConnLimiter::new(config.limits.http_max_conns_per_client);
            let (app, tls, shutdown, gate) = (app.clone(), tls.clone(), shutdown.clone(), gate.clone());
            let header_read_timeout = config.limits.http_read_header_timeout;
            tasks.push(tokio::spawn(async move {
                gate().await;
                http::serve_https(listener, app, tls, shutdown, limiter, header_read_timeout).await
            }));
        }
        if let Some((listener, path)) = http_unix {
            let (app, shutdown, gate) = (app.clone(), shutdown.clone(), gate.clone());
            let header_read_timeout = config.limits.http_read_header_timeout;
            tasks.push(tokio::spawn(async move {
                gate().await;
                http::unix_socket::serve_unix(listener, path, app, header_read_timeout, shutdown).await
            }));
        }
        if let Some(listener) = http_listener {
            let http_shutdown = shutdown.clone();
            let listener =
                LimitedHttpListener::new(listener, ConnLimiter::new(config.limits.http_max_conns_per_client));
            let header_read_timeout = config.limits.http_read_header_timeout;
            tasks.push(tokio::spawn(async move {
                gate().await;
                http::serve_http(listener, app, header_read_timeout, http_shutdown).await
            }));
        }
        tracing::info!(node = %config.node_name, %node_id, %http_addr, %rpc_addr, %serf_addr, "agent started");
        Ok(Agent {
            config,
            node_id,
            http_addr,
            https_addr,
            tls,
            dns_addr,
            rpc_addr,
            serf_addr,
            consensus,
            backend,
            cluster,
            shutdown,
            left,
            tasks,
            log_store,
            local,
            coordinates,
            metrics,
        })
    }

    /// This agent's metrics.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// The HTTP API address: the plain-HTTP listener's, or the HTTPS one's when HTTP is off
    /// (`ports.http = -1`). An agent serving HTTP only on a Unix socket has no TCP address: the
    /// client address with port 0 stands in (see [`Agent::http_unix_socket`]).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The Unix socket the HTTP API is served on (`addresses.http = "unix:///path"`), if any.
    pub fn http_unix_socket(&self) -> Option<&std::path::Path> {
        self.config.http_unix_socket.as_ref().map(|u| u.path.as_path())
    }

    /// The HTTPS API address, when `ports.https` is on.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// Re-reads the TLS certificate, key and CA files (Consul does on `reload`/SIGHUP); new
    /// connections use them. On error nothing changes and the error names the file.
    pub fn reload_tls(&self) -> Result<()> {
        match &self.tls {
            Some(tls) => tls.reload().map_err(|e| Error::Config(format!("tls: {e}"))),
            None => Ok(()),
        }
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

    /// The consensus facade (for embedding and tests); `None` on client agents.
    pub fn consensus(&self) -> Option<&Arc<Consensus>> {
        self.consensus.as_ref()
    }

    /// Whether this agent is a server.
    pub fn is_server(&self) -> bool {
        self.consensus.is_some()
    }

    /// Completes once the agent has left the pool through `PUT /v1/agent/leave`; the owner
    /// should then call [`Agent::shutdown`] (the `consul-rs` binary exits).
    pub async fn left(&self) {
        self.left.cancelled().await
    }

    /// Leaves the gossip pool gracefully (peers list this agent as `left`, and a server is
    /// removed from the Raft configuration), then shuts down.
    pub async fn leave(self) -> Result<()> {
        self.cluster.leave().await;
        self.shutdown().await
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
        self.consensus.as_ref().is_some_and(|c| c.is_leader())
    }

    /// Waits until some leader is known, or `timeout` passes.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match &self.consensus {
                Some(c) if c.leader().is_some() => return Ok(()),
                Some(_) => {}
                // A client agent: some server it knows of reports a leader.
                None => {
                    if self.client_sees_leader().await {
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::NoLeader)
    }

    async fn client_sees_leader(&self) -> bool {
        let Backend::Client(remote) = &self.backend else { return false };
        let req = HttpRequest { method: "GET".into(), uri: "/v1/status/leader".into(), headers: vec![], body: vec![] };
        match http::proxy::call_server(remote, &req, Duration::from_secs(2)).await {
            Ok(r) => r.status == 200 && r.body.len() > 2,
            Err(_) => false,
        }
    }

    /// Takes a Raft snapshot now and compacts the log behind it.
    pub async fn snapshot_now(&self) -> Result<()> {
        match &self.consensus {
            Some(c) => raft::trigger_snapshot(c.raft()).await,
            None => Err(Error::BadRequest("client agents hold no Raft log".into())),
        }
    }

    /// Stops every listener and task, then Raft and storage. Blocking queries in flight return
    /// their current result.
    pub async fn shutdown(mut self) -> Result<()> {
        self.stop().await;
        Ok(())
    }

    async fn stop(&mut self) {
        // Raft first, while its connections still work: see `Consensus::close`.
        if let Some(c) = &self.consensus {
            c.close().await;
        }
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            if tokio::time::timeout(Duration::from_secs(10), task).await.is_err() {
                tracing::warn!("a task did not stop within 10 s");
            }
        }
        if let Some(store) = &self.log_store {
            store.close();
        }
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

/// Waits until `node` is in the catalog with its `serfHealth` check (the leader's member
/// reconciliation), `limit` passes, or the agent stops.
async fn wait_in_catalog(c: &Consensus, node: &str, limit: Duration, shutdown: &CancellationToken) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let done = c.state().read(|d| d.catalog.node_checks(node).iter().any(|chk| chk.check_id == "serfHealth"));
        if done || tokio::time::Instant::now() >= deadline || shutdown.is_cancelled() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
