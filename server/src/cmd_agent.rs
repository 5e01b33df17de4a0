//! `consul-rs agent`: build the configuration (defaults, then config files in command-line
//! order, then flags), set up logging, start the agent, and run until SIGINT/SIGTERM.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{ArgAction, ArgMatches, Args};
use consul_core::agent::Agent;
use consul_core::logs::file::{LogFile, LogFileConfig};
use consul_core::logs::LogHub;
use serde_json::{json, Map, Value};

use crate::config_file::{Format, LoadFiles, Settings};

/// `agent` flags. Each one, when given, overrides the same setting from the config files.
#[derive(Debug, Clone, Args)]
pub(crate) struct AgentArgs {
    /// Development mode: in-memory server on 127.0.0.1 that bootstraps itself.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) dev: Option<bool>,
    /// Run as a server.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) server: Option<bool>,
    /// Bootstrap a single-server cluster with this server as leader.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) bootstrap: Option<bool>,
    /// Wait for this many servers, then bootstrap the cluster.
    #[arg(long = "bootstrap-expect", value_name = "N")]
    pub(crate) bootstrap_expect: Option<u32>,
    /// Where state is kept (required unless -dev).
    #[arg(long = "data-dir", value_name = "PATH")]
    pub(crate) data_dir: Option<PathBuf>,
    /// A JSON or HCL config file; repeatable, loaded in order.
    #[arg(long = "config-file", value_name = "PATH", action = ArgAction::Append)]
    pub(crate) config_file: Vec<PathBuf>,
    /// A directory of `.json` / `.hcl` config files; repeatable, each loaded in lexical order.
    #[arg(long = "config-dir", value_name = "PATH", action = ArgAction::Append)]
    pub(crate) config_dir: Vec<PathBuf>,
    /// Parse config files as this format whatever their extension (`json` or `hcl`).
    #[arg(long = "config-format", value_name = "FORMAT")]
    pub(crate) config_format: Option<String>,
    /// Node name (default: the host name).
    #[arg(long)]
    pub(crate) node: Option<String>,
    /// Node ID (a UUID).
    #[arg(long = "node-id")]
    pub(crate) node_id: Option<String>,
    /// Datacenter (default dc1).
    #[arg(long)]
    pub(crate) datacenter: Option<String>,
    /// Address for cluster traffic (server RPC, serf_lan).
    #[arg(long)]
    pub(crate) bind: Option<String>,
    /// Address advertised to other servers.
    #[arg(long)]
    pub(crate) advertise: Option<String>,
    /// Address for client listeners (HTTP, DNS).
    #[arg(long)]
    pub(crate) client: Option<String>,
    /// Agent to join, retried until it answers; repeatable.
    #[arg(long = "retry-join", value_name = "ADDR", action = ArgAction::Append)]
    pub(crate) retry_join: Vec<String>,
    /// Agent to join at start (treated like -retry-join); repeatable.
    #[arg(long = "join", value_name = "ADDR", action = ArgAction::Append)]
    pub(crate) join: Vec<String>,
    /// Time between join attempts (Go duration, e.g. 30s).
    #[arg(long = "retry-interval", value_name = "DURATION")]
    pub(crate) retry_interval: Option<String>,
    /// Give up joining after this many attempts (0: never).
    #[arg(long = "retry-max", value_name = "N")]
    pub(crate) retry_max: Option<u32>,
    /// HTTP API port.
    #[arg(long = "http-port", value_name = "PORT", allow_negative_numbers = true)]
    pub(crate) http_port: Option<i64>,
    /// HTTPS API port (-1, the default, leaves HTTPS off).
    #[arg(long = "https-port", value_name = "PORT", allow_negative_numbers = true)]
    pub(crate) https_port: Option<i64>,
    /// DNS port (-1 disables DNS).
    #[arg(long = "dns-port", value_name = "PORT", allow_negative_numbers = true)]
    pub(crate) dns_port: Option<i64>,
    /// DNS domain (default consul.).
    #[arg(long, value_name = "DOMAIN")]
    pub(crate) domain: Option<String>,
    /// A second DNS domain answered like the first.
    #[arg(long = "alt-domain", value_name = "DOMAIN")]
    pub(crate) alt_domain: Option<String>,
    /// Upstream DNS server for other domains; repeatable.
    #[arg(long = "recursor", value_name = "ADDR", action = ArgAction::Append)]
    pub(crate) recursor: Vec<String>,
    /// Node metadata `key:value` (the value may be empty); repeatable.
    #[arg(long = "node-meta", value_name = "KEY:VALUE", action = ArgAction::Append)]
    pub(crate) node_meta: Vec<String>,
    /// serf_wan (WAN pool of servers) port; -1 disables the WAN pool.
    #[arg(long = "serf-wan-port", value_name = "PORT", allow_negative_numbers = true)]
    pub(crate) serf_wan_port: Option<i64>,
    /// Address the WAN pool binds (default: -bind).
    #[arg(long = "serf-wan-bind", value_name = "ADDR")]
    pub(crate) serf_wan_bind: Option<String>,
    /// Address advertised to other datacenters' servers (default: -advertise).
    #[arg(long = "advertise-wan", value_name = "ADDR")]
    pub(crate) advertise_wan: Option<String>,
    /// A server of another datacenter to join over the WAN, retried until it answers; repeatable.
    #[arg(long = "retry-join-wan", value_name = "ADDR", action = ArgAction::Append)]
    pub(crate) retry_join_wan: Vec<String>,
    /// A server to join over the WAN at start (treated like -retry-join-wan); repeatable.
    #[arg(long = "join-wan", value_name = "ADDR", action = ArgAction::Append)]
    pub(crate) join_wan: Vec<String>,
    /// Time between WAN join attempts (Go duration, e.g. 30s).
    #[arg(long = "retry-interval-wan", value_name = "DURATION")]
    pub(crate) retry_interval_wan: Option<String>,
    /// Give up joining the WAN after this many attempts (0: never).
    #[arg(long = "retry-max-wan", value_name = "N")]
    pub(crate) retry_max_wan: Option<u32>,
    /// Server RPC port.
    #[arg(long = "server-port", value_name = "PORT", allow_negative_numbers = true)]
    pub(crate) server_port: Option<i64>,
    /// serf_lan (cluster join) port.
    #[arg(long = "serf-lan-port", value_name = "PORT", allow_negative_numbers = true)]
    pub(crate) serf_lan_port: Option<i64>,
    /// Log level: trace, debug, info, warn, err.
    #[arg(long = "log-level", value_name = "LEVEL")]
    pub(crate) log_level: Option<String>,
    /// Log JSON lines.
    #[arg(long = "log-json", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) log_json: Option<bool>,
    /// Also write the log to this file (a directory when it ends in `/`).
    #[arg(long = "log-file", value_name = "PATH")]
    pub(crate) log_file: Option<String>,
    /// Rotate the log file once it holds this many bytes.
    #[arg(long = "log-rotate-bytes", value_name = "BYTES")]
    pub(crate) log_rotate_bytes: Option<u64>,
    /// Rotate the log file at this age (Go duration, default 24h).
    #[arg(long = "log-rotate-duration", value_name = "DURATION")]
    pub(crate) log_rotate_duration: Option<String>,
    /// Rotated log files to keep (0: all, -1: none).
    #[arg(long = "log-rotate-max-files", value_name = "N", allow_negative_numbers = true)]
    pub(crate) log_rotate_max_files: Option<i64>,
    /// Write the process id to this file.
    #[arg(long = "pid-file", value_name = "PATH")]
    pub(crate) pid_file: Option<PathBuf>,
    /// Serve the web console (on in -dev).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) ui: Option<bool>,
    /// Serve the web console from this directory instead of the built-in one.
    #[arg(long = "ui-dir", value_name = "DIR")]
    pub(crate) ui_dir: Option<String>,
    /// Where the web console is served (default /ui/).
    #[arg(long = "ui-content-path", value_name = "PATH")]
    pub(crate) ui_content_path: Option<String>,
    /// Gossip encryption key (base64, as `consul-rs keygen` prints).
    #[arg(long)]
    pub(crate) encrypt: Option<String>,
    /// Allow script health checks, including ones registered over the HTTP API.
    #[arg(long = "enable-script-checks", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) enable_script_checks: Option<bool>,
    /// Allow script checks from local config files only.
    #[arg(long = "enable-local-script-checks", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) enable_local_script_checks: Option<bool>,
}

/// A config source named on the command line, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    File(PathBuf),
    Dir(PathBuf),
}

/// `-config-file` and `-config-dir` interleave: Consul loads them in command-line order, which
/// the two separate lists lose, so the order is recovered from clap's argument indices.
fn sources_in_order(args: &AgentArgs, matches: Option<&ArgMatches>) -> Vec<Source> {
    let indices =
        |id: &str| -> Vec<usize> { matches.and_then(|m| m.indices_of(id)).map(Iterator::collect).unwrap_or_default() };
    let file_idx = indices("config_file");
    let dir_idx = indices("config_dir");
    let mut tagged: Vec<(usize, Source)> = Vec::new();
    for (i, f) in args.config_file.iter().enumerate() {
        tagged.push((file_idx.get(i).copied().unwrap_or(i), Source::File(f.clone())));
    }
    for (i, d) in args.config_dir.iter().enumerate() {
        // Without indices (no matches), directories follow files: a stable, documented fallback.
        tagged.push((dir_idx.get(i).copied().unwrap_or(usize::MAX / 2 + i), Source::Dir(d.clone())));
    }
    tagged.sort_by_key(|(i, _)| *i);
    tagged.into_iter().map(|(_, s)| s).collect()
}

/// The flags as a config source, in the same key shape as a file, so they are validated and
/// applied by the same code and win by coming last.
fn flags_as_config(a: &AgentArgs) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    if let Some(v) = a.server {
        put("server", json!(v));
    }
    if let Some(v) = a.bootstrap {
        put("bootstrap", json!(v));
    }
    if let Some(v) = a.bootstrap_expect {
        put("bootstrap_expect", json!(v));
    }
    if let Some(v) = &a.data_dir {
        put("data_dir", json!(v.to_string_lossy()));
    }
    if let Some(v) = &a.node {
        put("node_name", json!(v));
    }
    if let Some(v) = &a.node_id {
        put("node_id", json!(v));
    }
    if let Some(v) = &a.datacenter {
        put("datacenter", json!(v));
    }
    if let Some(v) = &a.bind {
        put("bind_addr", json!(v));
    }
    if let Some(v) = &a.advertise {
        put("advertise_addr", json!(v));
    }
    if let Some(v) = &a.client {
        put("client_addr", json!(v));
    }
    let joins: Vec<&String> = a.retry_join.iter().chain(a.join.iter()).collect();
    if !joins.is_empty() {
        put("retry_join", json!(joins));
    }
    if let Some(v) = &a.retry_interval {
        put("retry_interval", json!(v));
    }
    if let Some(v) = a.retry_max {
        put("retry_max", json!(v));
    }
    let wan_joins: Vec<&String> = a.retry_join_wan.iter().chain(a.join_wan.iter()).collect();
    if !wan_joins.is_empty() {
        put("retry_join_wan", json!(wan_joins));
    }
    if let Some(v) = &a.retry_interval_wan {
        put("retry_interval_wan", json!(v));
    }
    if let Some(v) = a.retry_max_wan {
        put("retry_max_wan", json!(v));
    }
    if let Some(v) = &a.serf_wan_bind {
        put("serf_wan", json!(v));
    }
    if let Some(v) = &a.advertise_wan {
        put("advertise_addr_wan", json!(v));
    }
    if let Some(v) = &a.domain {
        put("domain", json!(v));
    }
    if let Some(v) = &a.alt_domain {
        put("alt_domain", json!(v));
    }
    if !a.recursor.is_empty() {
        put("recursors", json!(a.recursor));
    }
    if !a.node_meta.is_empty() {
        // Consul splits at the first ':'; a missing value is an empty one.
        let meta: Map<String, Value> = a
            .node_meta
            .iter()
            .map(|kv| match kv.split_once(':') {
                Some((k, v)) => (k.to_string(), json!(v)),
                None => (kv.clone(), json!("")),
            })
            .collect();
        put("node_meta", Value::Object(meta));
    }
    let mut ports = Map::new();
    for (k, v) in [
        ("http", a.http_port),
        ("https", a.https_port),
        ("dns", a.dns_port),
        ("server", a.server_port),
        ("serf_lan", a.serf_lan_port),
        ("serf_wan", a.serf_wan_port),
    ] {
        if let Some(p) = v {
            ports.insert(k.to_string(), json!(p));
        }
    }
    if !ports.is_empty() {
        put("ports", Value::Object(ports));
    }
    if let Some(v) = &a.log_level {
        put("log_level", json!(v));
    }
    if let Some(v) = a.log_json {
        put("log_json", json!(v));
    }
    if let Some(v) = &a.log_file {
        put("log_file", json!(v));
    }
    if let Some(v) = a.log_rotate_bytes {
        put("log_rotate_bytes", json!(v));
    }
    if let Some(v) = &a.log_rotate_duration {
        put("log_rotate_duration", json!(v));
    }
    if let Some(v) = a.log_rotate_max_files {
        put("log_rotate_max_files", json!(v));
    }
    if let Some(v) = &a.pid_file {
        put("pid_file", json!(v.to_string_lossy()));
    }
    // Consul's flags set the `ui_config` keys themselves (which win over the legacy ones).
    let mut ui = Map::new();
    if let Some(v) = a.ui {
        ui.insert("enabled".into(), json!(v));
    }
    if let Some(v) = &a.ui_dir {
        ui.insert("dir".into(), json!(v));
    }
    if let Some(v) = &a.ui_content_path {
        ui.insert("content_path".into(), json!(v));
    }
    if !ui.is_empty() {
        put("ui_config", Value::Object(ui));
    }
    if let Some(v) = &a.encrypt {
        put("encrypt", json!(v));
    }
    if let Some(v) = a.enable_script_checks {
        put("enable_script_checks", json!(v));
    }
    if let Some(v) = a.enable_local_script_checks {
        put("enable_local_script_checks", json!(v));
    }
    Value::Object(m)
}

/// Builds the settings: defaults, then each config source in order, then the flags.
pub(crate) fn build_settings(args: &AgentArgs, matches: Option<&ArgMatches>) -> Result<Settings> {
    let dev = args.dev.unwrap_or(false);
    let mut s = Settings::new(dev);
    if dev {
        s.enable_ui_by_default();
    }
    let format = args.config_format.as_deref().map(Format::from_flag).transpose()?;
    for source in sources_in_order(args, matches) {
        match source {
            Source::File(f) => s.apply_file(&f, format)?,
            Source::Dir(d) => s.apply_dir(&d, format)?,
        }
    }
    s.apply_value(&flags_as_config(args), "command-line flags")?;
    parse_log_level(&s.log_level)?;
    s.finish()?;
    s.agent.validate().map_err(|e| anyhow!("{e}"))?;
    Ok(s)
}

/// Consul's log level names (case-insensitive; `err` and `warning` are accepted) mapped to
/// tracing's.
pub(crate) fn parse_log_level(s: &str) -> Result<&'static str> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" | "" => "info",
        "warn" | "warning" => "warn",
        "err" | "error" => "error",
        other => bail!("config: log_level: {other:?} is not one of trace, debug, info, warn, err"),
    })
}

/// The tracing filter for a level. At debug/trace the libraries underneath (Raft heartbeats,
/// HTTP connection handling) would drown the agent's own messages and slow it down; they stay
/// at info unless RUST_LOG asks for more.
fn filter_directives(level: &str) -> String {
    if matches!(level, "trace" | "debug") {
        format!("{level},openraft=info,hyper=info,hyper_util=info,h2=info,tower=info,tower_http=info,redb=info,reqwest=info")
    } else {
        level.to_string()
    }
}

/// Installs the process's `tracing` subscriber: standard error (and `log_file`) at the
/// configured level, plus the layer that feeds `/v1/agent/monitor` at whatever level its open
/// monitors ask for. Each output has its own filter so a debug monitor sees debug lines while
/// standard error stays at `warn`.
fn init_logging(level: &str, json: bool, file: Option<LogFileConfig>) -> Result<LogHub> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer, Registry};
    type Boxed = Box<dyn Layer<Registry> + Send + Sync>;
    let directives = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => s,
        _ => filter_directives(level),
    };
    let filter = || EnvFilter::try_new(&directives).context("invalid RUST_LOG or log level");
    fn output<W>(json: bool, writer: W, filter: EnvFilter) -> Boxed
    where
        W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
    {
        let layer = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(false);
        if json {
            layer.json().with_filter(filter).boxed()
        } else {
            layer.with_filter(filter).boxed()
        }
    }
    let hub = LogHub::new();
    let mut layers: Vec<Boxed> = vec![output(json, std::io::stderr, filter()?)];
    if let Some(cfg) = file {
        let f = LogFile::open(&cfg).with_context(|| format!("cannot open log file {}", cfg.path.display()))?;
        layers.push(output(json, std::sync::Mutex::new(f), filter()?));
    }
    layers.push(consul_core::logs::layer(hub.clone()).boxed());
    tracing_subscriber::registry().with(layers).try_init().map_err(|e| anyhow!("cannot set up logging: {e}"))?;
    Ok(hub)
}

fn version_name(v: consul_core::tls::TlsVersion) -> &'static str {
    match v {
        consul_core::tls::TlsVersion::Tls12 => "TLSv1_2",
        consul_core::tls::TlsVersion::Tls13 => "TLSv1_3",
    }
}

/// Consul's banner: labels right-aligned, values quoted where Consul quotes them.
fn banner(s: &Settings, agent: &Agent) -> String {
    let a = &s.agent;
    let http = agent.http_addr();
    let rpc = agent.rpc_addr();
    let serf = agent.serf_addr();
    let dns = if s.dns_disabled { "-1".to_string() } else { a.ports.dns.to_string() };
    let port_or_off = |p: Option<u16>| p.map_or_else(|| "-1".to_string(), |p| p.to_string());
    let http_port = port_or_off(a.ports.http.map(|_| http.port()));
    let https_port = port_or_off(agent.https_addr().map(|a| a.port()));
    let node_id = agent.node_id();
    let rows: Vec<(&str, String)> = vec![
        ("Version", format!("'{}'", consul_core::VERSION)),
        ("Node ID", format!("'{node_id}'")),
        ("Node name", format!("'{}'", a.node_name)),
        ("Datacenter", format!("'{}' (Segment: '<all>')", a.datacenter)),
        ("Server", format!("{} (Bootstrap: {})", a.server, a.bootstrap || a.bootstrap_expect > 0)),
        ("Client Addr", format!("[{}] (HTTP: {http_port}, HTTPS: {https_port}, gRPC: -1, DNS: {dns})", http.ip())),
        ("Cluster Addr", format!("{} (LAN: {}, WAN: -1)", serf.ip(), serf.port())),
        ("Server RPC Addr", format!("{rpc}")),
        ("Gossip Encryption", a.encrypt.is_some().to_string()),
        ("Auto-Encrypt-TLS", "false".to_string()),
        (
            "HTTPS TLS",
            format!(
                "Verify Incoming: {}, Verify Outgoing: false, Min Version: {}",
                a.tls.https().verify_incoming,
                version_name(a.tls.https().min_version)
            ),
        ),
        (
            "gRPC TLS",
            format!(
                "Verify Incoming: false, Min Version: {}",
                version_name(a.tls.defaults.min_version.unwrap_or_default())
            ),
        ),
        (
            "Internal RPC TLS",
            format!(
                "Verify Incoming: {}, Verify Outgoing: {} (Verify Hostname: {}), Min Version: {}",
                a.tls.internal_rpc().verify_incoming,
                a.tls.internal_rpc().verify_outgoing,
                a.tls.internal_rpc().verify_server_hostname,
                version_name(a.tls.internal_rpc().min_version)
            ),
        ),
        ("Data Dir", a.data_dir.as_ref().map_or_else(|| "(in memory)".to_string(), |d| d.display().to_string())),
    ];
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k:>22}: {v}\n"));
    }
    out
}

fn write_pid_file(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, std::process::id().to_string())
        .with_context(|| format!("cannot write pid file {}", path.display()))
}

fn stdout_line(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (a harness that stopped reading) must not stop the agent.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Which signal ended the run. SIGHUP reloads the config-file services and checks of `agent`
/// (when given) and keeps waiting, like Consul.
async fn wait_for_signal(agent: Option<&Agent>) -> Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok("terminated"),
            _ = int.recv() => return Ok("interrupt"),
            // Consul reloads on SIGHUP. Services, checks and the TLS certificate files are
            // reloadable; other changed keys need a restart. (Without a handler the default
            // action would kill the agent.)
            _ = hup.recv() => match agent {
                Some(agent) => {
                    if let Err(e) = agent.reload_tls() {
                        tracing::error!(error = %e, "SIGHUP received: TLS reload failed; the previous certificates stay");
                    }
                    match agent.local().reload_from_config().await {
                        Ok(()) => tracing::info!("SIGHUP received: reloaded services and checks"),
                        Err(e) => tracing::error!(error = %e, "SIGHUP received: reload failed; nothing changed"),
                    }
                }
                None => tracing::warn!("SIGHUP received while shutting down; ignoring"),
            },
        }
    }
}

/// Starts the configuration's `watches` against `agent`'s own HTTP(S) API.
fn start_watches(settings: &Settings, agent: &Agent) -> Result<consul_sdk::ConfigWatches> {
    let config = consul_sdk::agent::own_client_config(agent);
    let client = consul_sdk::agent::own_client(config).map_err(|e| anyhow!("Error starting watches: {e}"))?;
    Ok(consul_sdk::ConfigWatches::start(&client, &settings.agent.watches))
}

/// Runs the agent until a signal arrives. Returns the process exit code.
pub(crate) async fn run(args: AgentArgs, matches: Option<&ArgMatches>) -> Result<u8> {
    let settings = build_settings(&args, matches)?;
    let level = parse_log_level(&settings.log_level)?;
    let log_hub = init_logging(level, settings.log_json, settings.log_file_config())?;

    for (key, reason) in &settings.no_effect {
        tracing::info!(key = %key, reason = %reason, "config key accepted, no effect here");
    }
    if settings.enable_script_checks {
        tracing::warn!("enable_script_checks: script checks can be registered over the HTTP API");
    }
    if settings.dns_disabled {
        tracing::info!("ports.dns = -1: DNS disabled");
    }

    stdout_line("==> Starting Consul agent...");
    let pid_file = settings.pid_file.clone();
    // Heap sampling runs only where someone may read it: `enable_debug`, or ACLs (operator
    // tokens may read profiles then, as in Consul).
    if settings.agent.enable_debug || settings.agent.acl.enabled {
        if let Err(e) = crate::heap_profile::activate() {
            tracing::warn!(error = %e, "heap profiles will be unavailable");
        }
    }
    let agent_config = consul_core::config::AgentConfig {
        log_hub: Some(log_hub),
        heap_profiler: Some(crate::heap_profile::profiler()),
        ..settings.agent.clone()
    };
    let agent = Agent::start(agent_config).await.map_err(|e| anyhow!("Error starting agent: {e}"))?;
    if let Some(p) = &pid_file {
        if let Err(e) = write_pid_file(p) {
            let _ = agent.shutdown().await;
            return Err(e);
        }
    }
    // Consul's order: the banner, the log header, then "Consul agent running!" once every
    // listener is up. Harnesses that scrape output look for that last line, so it goes to
    // stdout as well as to the log.
    stdout_line(&banner(&settings, &agent));
    stdout_line("==> Log data will now stream in as it occurs:\n");
    tracing::info!(http = %agent.http_addr(), rpc = %agent.rpc_addr(), serf_lan = %agent.serf_addr(), "Consul agent running!");
    stdout_line("==> Consul agent running!");

    // The `watches` of the configuration, against this agent's API; replaced on reload.
    let watches = match start_watches(&settings, &agent) {
        Ok(w) => std::sync::Arc::new(std::sync::Mutex::new(w)),
        Err(e) => {
            let _ = agent.shutdown().await;
            return Err(e);
        }
    };
    // `PUT /v1/agent/reload` and SIGHUP re-read the same config sources, flags included.
    {
        let args = args.clone();
        let matches = matches.cloned();
        let watches = watches.clone();
        let own_client = consul_sdk::agent::own_client_config(&agent);
        agent.set_reload_handler(std::sync::Arc::new(move || {
            let args = args.clone();
            let matches = matches.clone();
            let watches = watches.clone();
            let client = own_client.clone();
            Box::pin(async move {
                let s = build_settings(&args, matches.as_ref()).map_err(|e| format!("{e:#}"))?;
                // Consul stops every watch plan and starts the new definitions.
                let client = consul_sdk::agent::own_client(client).map_err(|e| e.to_string())?;
                let new = consul_sdk::ConfigWatches::start(&client, &s.agent.watches);
                if let Ok(mut w) = watches.lock() {
                    w.stop();
                    *w = new;
                }
                Ok((s.agent.services, s.agent.checks))
            })
        }));
    }
    let sig = tokio::select! {
        s = wait_for_signal(Some(&agent)) => s?,
        // `consul-rs leave` / `PUT /v1/agent/leave`: the agent already left the pool.
        _ = agent.left() => "leave",
    };
    stdout_line(&format!("==> Caught signal: {sig}"));
    // Consul's defaults: client agents leave the pool on SIGINT and SIGTERM (others see them
    // `left`, not `failed`); servers just stop (`skip_leave_on_interrupt`, `leave_on_terminate`).
    let leave = match sig {
        "interrupt" => !settings.skip_leave_on_interrupt,
        "terminated" => settings.leave_on_terminate,
        _ => false,
    };
    if leave {
        stdout_line("==> Gracefully leaving the cluster...");
        agent.cluster().leave().await;
    }
    stdout_line("==> Gracefully shutting down agent...");
    if let Ok(w) = watches.lock() {
        w.stop();
    }
    // A second signal while shutting down means "now": exit without waiting.
    tokio::spawn(async {
        if wait_for_signal(None).await.is_ok() {
            eprintln!("==> Second signal received, exiting immediately");
            std::process::exit(1);
        }
    });
    let result = agent.shutdown().await;
    if let Some(p) = &pid_file {
        if let Err(e) = std::fs::remove_file(p) {
            tracing::warn!(path = %p.display(), error = %e, "could not remove pid file");
        }
    }
    match result {
        Ok(()) => {
            stdout_line("==> Agent shutdown complete");
            Ok(0)
        }
        Err(e) => Err(anyhow!("Error shutting down agent: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory as _, FromArgMatches as _, Parser};

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        agent: AgentArgs,
    }

    fn parse(line: &str) -> (AgentArgs, ArgMatches) {
        let mut v = vec!["consul-rs".to_string(), "agent".to_string()];
        v.extend(line.split_whitespace().map(str::to_string));
        let norm = crate::argv::normalize(v).expect("argv");
        // Drop the "agent" word: the wrapper parses the agent flags at top level.
        let norm: Vec<String> = norm.into_iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, s)| s).collect();
        let m = Wrapper::command().try_get_matches_from(norm).expect("clap");
        let w = Wrapper::from_arg_matches(&m).expect("from matches");
        (w.agent, m)
    }

    #[test]
    fn harness_flags_space_form() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("c.json");
        std::fs::write(&cfg, r#"{"ports": {"http": 18500}, "node_name": "from-file"}"#).expect("write");
        let line = format!(
            "-node n1 -datacenter dc1 -bind 127.0.0.1 -client 127.0.0.1 -bootstrap -server -config-file {} -data-dir {} -pid-file {}",
            cfg.display(),
            dir.path().join("data").display(),
            dir.path().join("pid").display()
        );
        let (a, m) = parse(&line);
        let s = build_settings(&a, Some(&m)).expect("settings");
        assert_eq!(s.agent.node_name, "n1", "flags beat files");
        assert_eq!(s.agent.datacenter, "dc1");
        assert!(s.agent.bootstrap && s.agent.server && !s.agent.dev);
        assert_eq!(s.agent.ports.http, Some(18500));
        assert_eq!(s.agent.bind_addr.to_string(), "127.0.0.1");
        assert_eq!(s.pid_file.as_deref(), Some(dir.path().join("pid").as_path()));
    }

    #[test]
    fn harness_flags_equals_form() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.hcl"), "ports {\n dns = -1\n}\n").expect("write");
        let line =
            format!("-dev -client=127.0.0.1 -config-dir={} -data-dir=/tmp/x -log-level trace", dir.path().display());
        let (a, m) = parse(&line);
        let s = build_settings(&a, Some(&m)).expect("settings");
        assert!(s.agent.dev && s.agent.bootstrap);
        assert!(s.dns_disabled);
        assert_eq!(s.log_level, "trace");
    }

    #[test]
    fn config_sources_keep_command_line_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("d");
        std::fs::create_dir(&d).expect("mkdir");
        std::fs::write(d.join("x.json"), r#"{"node_name": "dir"}"#).expect("write");
        let f = dir.path().join("f.json");
        std::fs::write(&f, r#"{"node_name": "file"}"#).expect("write");
        let (a, m) = parse(&format!("-dev -config-dir {} -config-file {}", d.display(), f.display()));
        assert_eq!(build_settings(&a, Some(&m)).expect("s").agent.node_name, "file");
        let (a, m) = parse(&format!("-dev -config-file {} -config-dir {}", f.display(), d.display()));
        assert_eq!(build_settings(&a, Some(&m)).expect("s").agent.node_name, "dir");
    }

    #[test]
    fn bool_flags_override_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("f.json");
        std::fs::write(&f, r#"{"bootstrap": true, "server": true}"#).expect("write");
        let (a, m) = parse(&format!("-dev -config-file={} -bootstrap=false", f.display()));
        let s = build_settings(&a, Some(&m)).expect("settings");
        assert!(!s.agent.bootstrap);
    }

    #[test]
    fn errors_name_the_problem() {
        let (a, m) = parse("-dev -http-port=-1");
        let e = build_settings(&a, Some(&m)).expect_err("http -1").to_string();
        assert!(e.contains("ports.http"), "{e}");
        let (a, m) = parse("-dev -log-level loud");
        let e = build_settings(&a, Some(&m)).expect_err("level").to_string();
        assert!(e.contains("log_level"), "{e}");
        let (a, m) = parse("-dev -retry-interval 5");
        let e = build_settings(&a, Some(&m)).expect_err("duration").to_string();
        assert!(e.contains("retry_interval"), "{e}");
        let (a, m) = parse("-server");
        let e = build_settings(&a, Some(&m)).expect_err("no data dir").to_string();
        assert!(e.contains("data_dir"), "{e}");
    }

    #[test]
    fn join_and_retry_join_merge() {
        let (a, m) = parse("-dev -join 10.0.0.1 -retry-join=10.0.0.2 -retry-join 10.0.0.3");
        let s = build_settings(&a, Some(&m)).expect("settings");
        assert_eq!(s.agent.retry_join, vec!["10.0.0.2", "10.0.0.3", "10.0.0.1"]);
    }

    #[test]
    fn wan_flags_fill_the_wan_settings() {
        let (a, m) = parse(
            "-server -data-dir /tmp/x -serf-wan-port 18302 -serf-wan-bind 127.0.0.2 -advertise-wan 10.0.0.9 \
             -join-wan 10.0.0.1 -retry-join-wan=10.0.0.2:8302 -retry-interval-wan 2s -retry-max-wan 5",
        );
        let s = build_settings(&a, Some(&m)).expect("settings");
        let w = &s.agent.wan;
        assert_eq!((w.port, w.port_set), (Some(18302), true));
        assert_eq!(w.bind_addr, Some("127.0.0.2".parse().expect("ip")));
        assert_eq!(w.advertise_addr, Some("10.0.0.9".parse().expect("ip")));
        assert_eq!(w.retry_join, vec!["10.0.0.2:8302", "10.0.0.1"]);
        assert_eq!((w.retry_interval, w.retry_max), (std::time::Duration::from_secs(2), 5));
        let (a, m) = parse("-dev -serf-wan-port -1");
        assert_eq!(build_settings(&a, Some(&m)).expect("settings").agent.wan.port, None);
    }

    #[test]
    fn port_flags() {
        let (a, m) = parse("-dev -dns-port -1 -http-port 0 -server-port=18300 -serf-lan-port 18301");
        let s = build_settings(&a, Some(&m)).expect("settings");
        assert!(s.dns_disabled);
        assert_eq!(s.agent.ports.http, Some(0));
        assert_eq!((s.agent.ports.server, s.agent.ports.serf_lan), (18300, 18301));
    }

    #[test]
    fn log_file_flags_beat_the_file_and_default_as_consul() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("c.json");
        std::fs::write(&cfg, r#"{"log_file": "/var/log/x/", "log_rotate_bytes": 10, "log_rotate_max_files": 3}"#)
            .expect("write");
        let (a, m) = parse(&format!("-dev -config-file {}", cfg.display()));
        let s = build_settings(&a, Some(&m)).expect("settings");
        let f = s.log_file_config().expect("log file");
        assert_eq!(f.path, PathBuf::from("/var/log/x/"));
        assert_eq!((f.rotate_bytes, f.rotate_max_files), (10, 3));
        assert_eq!(f.rotate_duration, std::time::Duration::from_secs(24 * 3600));
        let line = format!(
            "-dev -config-file {} -log-file /tmp/a.log -log-rotate-bytes 99 -log-rotate-duration 1h -log-rotate-max-files -1",
            cfg.display()
        );
        let (a, m) = parse(&line);
        let f = build_settings(&a, Some(&m)).expect("settings").log_file_config().expect("log file");
        assert_eq!(f.path, PathBuf::from("/tmp/a.log"));
        assert_eq!((f.rotate_bytes, f.rotate_max_files), (99, -1));
        assert_eq!(f.rotate_duration, std::time::Duration::from_secs(3600));
        let (a, m) = parse("-dev");
        assert!(build_settings(&a, Some(&m)).expect("settings").log_file_config().is_none());
    }

    #[test]
    fn log_levels() {
        assert_eq!(parse_log_level("TRACE").expect("ok"), "trace");
        assert_eq!(parse_log_level("err").expect("ok"), "error");
        assert_eq!(parse_log_level("WARN").expect("ok"), "warn");
        assert!(parse_log_level("verbose").is_err());
        assert!(filter_directives("debug").contains("openraft=info"));
        assert_eq!(filter_directives("warn"), "warn");
    }
}
