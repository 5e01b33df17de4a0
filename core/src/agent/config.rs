//! The runtime configuration of one agent.
//!
//! This is the already-validated, fully-defaulted form: the `consul-rs` binary turns CLI flags
//! and Consul-style JSON/HCL files into an [`AgentConfig`], and embedders build one directly.
//! Defaults follow Consul's `agent/config/default.go` unless a comment says otherwise.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use uuid::Uuid;

/// Everything an [`crate::agent::Agent`] needs to start.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Datacenter name (`datacenter`, default `dc1`). Lower-cased like Consul does.
    pub datacenter: String,
    /// This node's name (`node_name`, default: the host name).
    pub node_name: String,
    /// This node's UUID (`node_id`); `None` means: read `<data_dir>/node-id`, or make and
    /// persist a random one.
    pub node_id: Option<Uuid>,
    /// Whether this agent is a server (holds a Raft replica). A client agent (`false`) keeps
    /// no replicated state: it joins the gossip pool, runs its own checks and anti-entropy, and
    /// forwards every other request to a server. Consul's default is a client agent; `-server`,
    /// `server = true` and `-dev` make a server.
    pub server: bool,
    /// `-dev`: keep all state in memory and bootstrap a single-node cluster at once.
    pub dev: bool,
    /// `bootstrap`: make this server leader of a new single-server cluster.
    pub bootstrap: bool,
    /// `bootstrap_expect`: wait until this many servers have joined, then form the cluster.
    pub bootstrap_expect: u32,
    /// `data_dir`: where the Raft log, snapshots and node id live. Required unless `dev`.
    pub data_dir: Option<PathBuf>,
    /// `bind_addr`: address the server RPC and serf_lan listeners bind to.
    pub bind_addr: IpAddr,
    /// `advertise_addr`: address other servers use to reach this one (default: `bind_addr`).
    pub advertise_addr: Option<IpAddr>,
    /// `client_addr`: address the HTTP (and later DNS) listeners bind to.
    pub client_addr: IpAddr,
    /// Listener ports; 0 picks a free port (handy for tests and embedding).
    pub ports: Ports,
    /// `ports.sidecar_min_port`..=`ports.sidecar_max_port`: the ports sidecar proxies are given
    /// when they name none (default 21000–21255; `None`: no automatic assignment).
    pub sidecar_ports: Option<crate::local::sidecar::SidecarPorts>,
    /// `retry_join`: addresses (`host` or `host:port`, serf_lan port by default) of agents to
    /// join, retried every `retry_interval` until one answers.
    pub retry_join: Vec<String>,
    /// `retry_interval` (default 30 s; `-dev` and tests use less).
    pub retry_interval: Duration,
    /// `retry_max`: give up after this many rounds (0 = forever).
    pub retry_max: u32,
    /// Raft timing and log-compaction knobs.
    pub raft: RaftTuning,
    /// `autopilot {}`: seeds the replicated autopilot configuration when this server is the
    /// cluster's first leader.
    pub autopilot: crate::state::autopilot::AutopilotConfig,
    /// Size limits on requests.
    pub limits: Limits,
    /// `default_query_time`: blocking-query wait when the client gives none (300 s).
    pub default_query_time: Duration,
    /// `max_query_time`: the longest blocking-query wait honoured (600 s).
    pub max_query_time: Duration,
    /// `performance.rpc_hold_timeout`: how long a request waits for a leader (7 s).
    pub rpc_hold_timeout: Duration,
    /// `tombstone_ttl`: how long KV delete tombstones are kept before the leader reaps them (15 min).
    pub tombstone_ttl: Duration,
    /// `enable_script_checks`: allow script checks from any source, the HTTP API included
    /// (default false: a script check registered over HTTP is remote code execution).
    pub enable_script_checks: bool,
    /// `enable_debug`: serve the process's profiles at `/debug/pprof/*` to anyone who can reach
    /// the HTTP API (with ACLs on, operator-read tokens get them whatever this says).
    pub enable_debug: bool,
    /// Takes heap profiles for `/debug/pprof/heap`: only the host program knows its allocator
    /// (the `consul-rs` binary supplies one; `None` answers that endpoint 501).
    pub heap_profiler: Option<crate::debug::HeapProfiler>,
    /// `enable_local_script_checks`: allow script checks defined in config files only.
    pub enable_local_script_checks: bool,
    /// `services`/`service` blocks of the config files: registered at start, replaced on reload.
    pub services: Vec<crate::local::ServiceDefinition>,
    /// `checks`/`check` blocks of the config files.
    pub checks: Vec<crate::local::CheckDefinition>,
    /// `watches`: watch plans the agent runs with handlers (the SDK's runner starts them once
    /// the HTTP API is up; the core only carries them).
    pub watches: Vec<crate::agent::watches::WatchDef>,
    /// Anti-entropy full-sync period (Consul's `ae_interval`, 1 min; tests use less).
    pub ae_interval: Duration,
    /// `check_update_interval`: how long an output-only check change may wait before it is
    /// synced to the catalog (5 min; 0 syncs every change at once).
    pub check_update_interval: Duration,
    /// How often services critical for longer than their `DeregisterCriticalServiceAfter` are
    /// looked for (Consul's `check_reap_interval`, 30 s).
    pub check_reap_interval: Duration,
    /// The smallest `DeregisterCriticalServiceAfter` honoured; smaller values are raised to it
    /// (Consul's `check_deregister_interval_min`, 1 min).
    pub check_deregister_interval_min: Duration,
    /// The DNS interface (`domain`, `alt_domain`, `recursors`, `dns_config { … }`).
    pub dns: DnsConfig,
    /// `encrypt`: the base64 gossip key (16, 24 or 32 bytes); `None` leaves gossip in the clear.
    /// Ignored when `data_dir/serf/local.keyring` exists (rotated keys win, as in Consul).
    pub encrypt: Option<String>,
    /// `encrypt_verify_incoming` (true): refuse plaintext gossip when a key is installed.
    pub encrypt_verify_incoming: bool,
    /// `encrypt_verify_outgoing` (true): encrypt outgoing gossip when a key is installed.
    pub encrypt_verify_outgoing: bool,
    /// `disable_keyring_file`: keep the keyring in memory only.
    pub disable_keyring_file: bool,
    /// `gossip_lan { … }` timing, `reconnect_timeout`.
    pub gossip_lan: crate::membership::gossip::GossipConfig,
    /// The WAN pool of servers (`ports.serf_wan`, `serf_wan`, `advertise_addr_wan`,
    /// `retry_join_wan`, `gossip_wan { … }`, `reconnect_timeout_wan`).
    pub wan: WanSettings,
    /// `disable_coordinates`: no network coordinates at all — the agent neither keeps nor
    /// publishes one, `/v1/coordinate/*` answers 401, `?near=` does not sort.
    pub disable_coordinates: bool,
    /// `acl { … }` (and the legacy top-level `acl_*` keys).
    pub acl: crate::api::authz::AclSettings,
    /// `tls { … }` (and the pre-1.12 top-level TLS keys): HTTPS and the server RPC port.
    pub tls: crate::tls::TlsConfig,
    /// `connect { enabled, ca_config { … } }`: the built-in Connect CA.
    pub connect: ConnectSettings,
    /// `node_meta`: metadata of this node in the catalog (`-node-meta key:value`).
    pub node_meta: std::collections::BTreeMap<String, String>,
    /// `locality { region, zone }`: this node's locality in the catalog, and the default of
    /// the services registered on it.
    pub locality: Option<crate::state::ext_fields::Locality>,
    /// The Docker engine Docker checks use, as `DOCKER_HOST` spells it (`unix:///path`); `None`
    /// reads `DOCKER_HOST` from the environment when the agent starts, else
    /// `/var/run/docker.sock`.
    pub docker_host: Option<String>,
    /// `addresses.http = "unix:///path"`: the HTTP API is (also) served on this Unix socket,
    /// with `unix_sockets { mode, user, group }`. When `addresses.http` names only the socket,
    /// `ports.http` is `None` and there is no TCP listener for HTTP, as in Consul.
    pub http_unix_socket: Option<crate::api::http::unix_socket::UnixSocketConfig>,
    /// Shortest period between two coordinate publications by this agent (Consul's
    /// `sync_coordinate_interval_min`, 15 s; tests use less). The period grows with the
    /// cluster size so the whole datacenter stays near `sync_coordinate_rate_target`.
    pub sync_coordinate_interval_min: Duration,
    /// Coordinate publications per second the whole datacenter aims for (64).
    pub sync_coordinate_rate_target: f64,
    /// `http_config.response_headers`: added to every HTTP(S) API response that does not set
    /// the header itself (names and values checked when the configuration is read).
    pub http_response_headers: Vec<(String, String)>,
    /// `http_config.use_cache` (default true): whether `?cached` reads use the agent cache.
    pub http_use_cache: bool,
    /// Where `/v1/agent/monitor` reads this agent's log lines: a hub the host program feeds
    /// with [`crate::logs::layer`] in its `tracing` subscriber. `None`: a hub nothing feeds
    /// (monitors stay open but see no lines).
    pub log_hub: Option<crate::logs::LogHub>,
    /// `telemetry { … }`.
    pub telemetry: crate::metrics::TelemetrySettings,
    /// `ui_config { … }`: the web console (off unless asked for; the `consul-rs` binary turns
    /// it on for `-dev`, as Consul does, while embedded agents leave it off).
    pub ui: crate::api::http::ui::UiSettings,
}

pub use crate::tls::connect_ca::ConnectSettings;

/// The servers' WAN pool settings. Client agents have no WAN pool and ignore them.
#[derive(Debug, Clone, PartialEq)]
pub struct WanSettings {
    /// `ports.serf_wan` (8302; 0 picks a free port; `None`: `-1`, no WAN pool).
    pub port: Option<u16>,
    /// Whether `ports.serf_wan` was set. When it was not and the default port is taken (several
    /// agents on one host), the server runs without a WAN pool and says so in its log.
    pub port_set: bool,
    /// `serf_wan` (`-serf-wan-bind`): the address the WAN pool binds (default: `bind_addr`).
    pub bind_addr: Option<IpAddr>,
    /// `advertise_addr_wan` (`-advertise-wan`): the address other datacenters' servers reach
    /// this one at (default: `advertise_addr`).
    pub advertise_addr: Option<IpAddr>,
    /// `retry_join_wan` and `start_join_wan` (`-retry-join-wan`, `-join-wan`).
    pub retry_join: Vec<String>,
    /// `retry_interval_wan` (30 s).
    pub retry_interval: Duration,
    /// `retry_max_wan` (0 = forever).
    pub retry_max: u32,
    /// `gossip_wan { … }` timing and `reconnect_timeout_wan`.
    pub gossip: crate::membership::gossip::GossipConfig,
}

impl Default for WanSettings {
    fn default() -> Self {
        WanSettings {
            port: Some(crate::membership::wan::DEFAULT_SERF_WAN_PORT),
            port_set: false,
            bind_addr: None,
            advertise_addr: None,
            retry_join: Vec::new(),
            retry_interval: Duration::from_secs(30),
            retry_max: 0,
            gossip: crate::membership::gossip::GossipConfig::wan(),
        }
    }
}

/// Listener ports (`ports { … }` in Consul's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// HTTP API (default 8500; `None`: off, `ports.http = -1`, for an HTTPS-only agent).
    pub http: Option<u16>,
    /// HTTPS API (`ports.https`, conventionally 8501; `None`, the default: off).
    pub https: Option<u16>,
    /// DNS (default 8600); served from the DNS issue on.
    pub dns: u16,
    /// Server RPC: Raft replication and request forwarding (default 8300).
    pub server: u16,
    /// serf_lan: cluster joins (default 8301).
    pub serf_lan: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Ports { http: Some(8500), https: None, dns: 8600, server: 8300, serf_lan: 8301 }
    }
}

impl Ports {
    /// All ports 0: every listener picks a free port. For tests and embedding.
    pub fn any() -> Self {
        Ports { http: Some(0), https: None, dns: 0, server: 0, serf_lan: 0 }
    }
}

pub use crate::api::dns::DnsConfig;
pub use crate::api::http::{ApiSettings, Limits};
pub use crate::replication::raft::RaftTuning;

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            datacenter: "dc1".to_string(),
            node_name: default_node_name(),
            node_id: None,
            server: false,
            dev: false,
            bootstrap: false,
            bootstrap_expect: 0,
            data_dir: None,
            bind_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            advertise_addr: None,
            client_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: Ports::default(),
            sidecar_ports: Some(crate::local::sidecar::SidecarPorts::default()),
            retry_join: Vec::new(),
            retry_interval: Duration::from_secs(30),
            retry_max: 0,
            raft: RaftTuning::default(),
            autopilot: Default::default(),
            limits: Limits::default(),
            default_query_time: Duration::from_secs(300),
            max_query_time: Duration::from_secs(600),
            rpc_hold_timeout: Duration::from_secs(7),
            tombstone_ttl: Duration::from_secs(15 * 60),
            enable_script_checks: false,
            enable_debug: false,
            heap_profiler: None,
            enable_local_script_checks: false,
            services: Vec::new(),
            checks: Vec::new(),
            watches: Vec::new(),
            ae_interval: Duration::from_secs(60),
            check_update_interval: Duration::from_secs(5 * 60),
            check_reap_interval: Duration::from_secs(30),
            check_deregister_interval_min: Duration::from_secs(60),
            dns: DnsConfig::default(),
            encrypt: None,
            encrypt_verify_incoming: true,
            encrypt_verify_outgoing: true,
            disable_keyring_file: false,
            gossip_lan: crate::membership::gossip::GossipConfig::lan(),
            wan: WanSettings::default(),
            disable_coordinates: false,
            acl: crate::api::authz::AclSettings::default(),
            tls: crate::tls::TlsConfig::default(),
            connect: ConnectSettings::default(),
            docker_host: None,
            http_unix_socket: None,
            node_meta: Default::default(),
            locality: None,
            sync_coordinate_interval_min: Duration::from_secs(15),
            sync_coordinate_rate_target: 64.0,
            http_response_headers: Vec::new(),
            http_use_cache: true,
            log_hub: None,
            ui: Default::default(),
            telemetry: Default::default(),
        }
    }
}

impl AgentConfig {
    /// The configuration `consul agent -dev` uses: an in-memory server on 127.0.0.1 that
    /// bootstraps itself, with fast Raft timings.
    pub fn dev() -> Self {
        AgentConfig {
            dev: true,
            server: true,
            bootstrap: true,
            bind_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            raft: RaftTuning { raft_multiplier: 1, ..RaftTuning::default() },
            retry_interval: Duration::from_secs(1),
            gossip_lan: crate::membership::gossip::GossipConfig::dev(),
            wan: WanSettings {
                retry_interval: Duration::from_secs(1),
                gossip: crate::membership::gossip::GossipConfig::dev_wan(),
                ..WanSettings::default()
            },
            ..AgentConfig::default()
        }
    }

    /// A configuration for tests and embedding: like [`AgentConfig::dev`] but every port 0.
    pub fn dev_any_port() -> Self {
        let dev = AgentConfig::dev();
        AgentConfig { ports: Ports::any(), wan: WanSettings { port: Some(0), ..dev.wan.clone() }, ..dev }
    }

    /// The address other servers reach this one at, given the port actually bound.
    pub fn advertise_ip(&self) -> IpAddr {
        match (self.advertise_addr, self.bind_addr) {
            (Some(ip), _) => ip,
            (None, ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            (None, ip) => ip,
        }
    }

    /// Socket address helper for the listeners.
    pub fn bind(&self, ip: IpAddr, port: u16) -> SocketAddr {
        SocketAddr::new(ip, port)
    }

    /// Checks what cannot be checked field by field; the message names the offending key.
    pub fn validate(&self) -> Result<(), crate::error::Error> {
        use crate::error::Error;
        if !self.dev && self.data_dir.is_none() {
            return Err(Error::Config("data_dir: required unless -dev is given".into()));
        }

        if self.bootstrap && self.bootstrap_expect > 0 {
            return Err(Error::Config("bootstrap and bootstrap_expect: cannot both be set".into()));
        }
        if !self.server && (self.bootstrap || self.bootstrap_expect > 0) {
            return Err(Error::Config("bootstrap_expect: only servers can bootstrap (set server)".into()));
        }
        if !(1..=10).contains(&self.raft.raft_multiplier) {
            return Err(Error::Config(format!(
                "performance.raft_multiplier: {} is outside 1..=10",
                self.raft.raft_multiplier
            )));
        }
        if self.datacenter.is_empty()
            || !self.datacenter.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::Config(format!(
                "datacenter: {:?} must be non-empty and contain only letters, digits, '-' and '_'",
                self.datacenter
            )));
        }
        if self.ports.http.is_none() && self.ports.https.is_none() && self.http_unix_socket.is_none() {
            return Err(Error::Config(
                "ports.http: -1 turns HTTP off, which needs ports.https on (or addresses.http on a Unix socket)".into(),
            ));
        }
        self.tls.validate(self.ports.https.is_some()).map_err(Error::Config)?;
        self.connect.key_type().map_err(|e| Error::Config(format!("connect.ca_config: {e}")))?;
        validate_node_meta(&self.node_meta).map_err(|e| Error::Config(format!("node_meta: {e}")))?;
        if let Some(id) = &self.connect.cluster_id {
            if Uuid::parse_str(id).is_err() {
                return Err(Error::Config(format!("connect.ca_config.cluster_id: {id:?} is not a UUID")));
            }
        }
        if self.connect.leaf_cert_ttl < Duration::from_secs(3600)
            || self.connect.leaf_cert_ttl > Duration::from_secs(365 * 86400)
        {
            return Err(Error::Config("connect.ca_config.leaf_cert_ttl: must be between 1h0m0s and 8760h0m0s".into()));
        }
        if self.node_name.is_empty() {
            return Err(Error::Config("node_name: must not be empty".into()));
        }
        if self.default_query_time.is_zero() || self.max_query_time.is_zero() {
            return Err(Error::Config("default_query_time/max_query_time: must be positive".into()));
        }
        if self.ae_interval.is_zero() || self.check_reap_interval.is_zero() {
            return Err(Error::Config("ae_interval/check_reap_interval: must be positive".into()));
        }
        if let Some(key) = &self.encrypt {
            crate::membership::gossip::keyring::decode_key(key).map_err(|e| Error::Config(format!("encrypt: {e}")))?;
        }
        if self.gossip_lan.probe_interval.is_zero()
            || self.gossip_lan.probe_timeout.is_zero()
            || self.gossip_lan.gossip_interval.is_zero()
            || self.gossip_lan.suspicion_mult == 0
        {
            return Err(Error::Config(
                "gossip_lan: probe_interval, probe_timeout, gossip_interval and suspicion_mult must be positive".into(),
            ));
        }
        let w = &self.wan.gossip;
        if w.probe_interval.is_zero()
            || w.probe_timeout.is_zero()
            || w.gossip_interval.is_zero()
            || w.suspicion_mult == 0
        {
            return Err(Error::Config(
                "gossip_wan: probe_interval, probe_timeout, gossip_interval and suspicion_mult must be positive".into(),
            ));
        }
        if self.sync_coordinate_interval_min.is_zero() {
            return Err(Error::Config("sync_coordinate_interval_min: must be positive".into()));
        }
        if !(self.sync_coordinate_rate_target.is_finite() && self.sync_coordinate_rate_target > 0.0) {
            return Err(Error::Config(format!(
                "sync_coordinate_rate_target: {} must be a positive number",
                self.sync_coordinate_rate_target
            )));
        }
        if self.raft.snapshot_threshold == 0 {
            return Err(Error::Config("raft_snapshot_threshold: must be positive".into()));
        }
        Ok(())
    }
}

fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "consul-rs".to_string())
}

impl AgentConfig {
    /// What the local agent needs of this configuration.
    pub fn local_config(&self) -> crate::local::LocalConfig {
        crate::local::LocalConfig {
            persist_dir: self.data_dir.clone().filter(|_| !self.dev),
            check_update_interval: self.check_update_interval,
            enable_script_checks: self.enable_script_checks,
            enable_local_script_checks: self.enable_local_script_checks,
            sidecar_ports: self.sidecar_ports,
            services: self.services.clone(),
            checks: self.checks.clone(),
            docker_socket: match &self.docker_host {
                Some(h) => crate::local::checks::docker::socket_from(Some(h)),
                None => crate::local::checks::docker::socket_from(std::env::var("DOCKER_HOST").ok().as_deref()),
            },
        }
    }

    /// What the HTTP API needs of this configuration.
    pub fn api_settings(&self) -> ApiSettings {
        ApiSettings {
            datacenter: self.datacenter.clone(),
            node_name: self.node_name.clone(),
            server: self.server,
            dev: self.dev,
            bootstrap: self.bootstrap,
            bootstrap_expect: self.bootstrap_expect,
            data_dir: self.data_dir.clone(),
            client_addr: self.client_addr,
            retry_join: self.retry_join.clone(),
            limits: self.limits,
            default_query_time: self.default_query_time,
            max_query_time: self.max_query_time,
            disable_coordinates: self.disable_coordinates,
            response_headers: self.http_response_headers.clone(),
            use_cache: self.http_use_cache,
            acl: self.acl.clone(),
            connect: self.connect.clone(),
            ui: self.ui.clone(),
            enable_debug: self.enable_debug,
        }
    }
}

/// Consul's rules for node metadata (`structs.ValidateNodeMetadata`): at most 64 pairs, keys of
/// letters, digits, `-` and `_` up to 128 characters and not starting with the reserved
/// `consul-`, values up to 512 characters.
pub fn validate_node_meta(meta: &std::collections::BTreeMap<String, String>) -> Result<(), String> {
    if meta.len() > 64 {
        return Err(format!("{} pairs: at most 64 are allowed", meta.len()));
    }
    for (k, v) in meta {
        if k.is_empty() {
            return Err("key cannot be blank".into());
        }
        if !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("key {k:?} contains invalid characters (letters, digits, '-' and '_' only)"));
        }
        if k.len() > 128 {
            return Err(format!("key {k:?} is longer than 128 characters"));
        }
        if k.starts_with("consul-") {
            return Err(format!("key {k:?} uses the reserved prefix \"consul-\""));
        }
        if v.len() > 512 {
            return Err(format!("value of {k:?} is longer than 512 characters"));
        }
    }
    Ok(())
}
