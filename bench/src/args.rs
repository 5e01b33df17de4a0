//! Command-line parsing and validation.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Closed-loop KV load generator for consul-rs (Consul HTTP API) and etcd (v3 JSON gateway).
#[derive(Parser, Debug)]
#[command(name = "consul-rs-bench", version, about, args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    /// Optional sub-command; without one the tool runs a benchmark.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// Benchmark options (used when no sub-command is given).
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// Sub-commands.
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Read JSON result lines (from `--json` runs) and print a markdown table of medians and
    /// consul-rs/etcd ratios.
    Summarize {
        /// JSONL files; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Which server API to speak.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Target {
    /// consul-rs / Consul: `/v1/kv/<key>`.
    Consul,
    /// etcd 3.4+: v3 JSON gRPC gateway (`/v3/kv/put`, `/v3/kv/range`).
    Etcd,
}

/// Which operation each client issues in its loop.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Op {
    /// Write a `--value-size` value to a random key.
    Put,
    /// Read a random key (the key space is preloaded first).
    Get,
}

/// Read consistency requested (Consul's names; mapped for etcd, see [`ReadKind`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// Consul default (leader-lease read); etcd linearizable range.
    Default,
    /// Consul `?stale`; etcd `serializable: true`.
    Stale,
    /// Consul `?consistent`; etcd linearizable range.
    Consistent,
}

/// The read semantics actually requested from the server for a GET run.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReadKind {
    /// Consul default mode: the leader answers from its lease.
    Leader,
    /// Consul `?stale`: any server answers from local state.
    Stale,
    /// Consul `?consistent`: the leader confirms leadership with a quorum first.
    Consistent,
    /// etcd default range: linearizable (ReadIndex through the leader).
    Linearizable,
    /// etcd `serializable: true`: the member answers from local state.
    Serializable,
}

impl ReadKind {
    /// Maps the requested `--mode` onto what `target` supports.
    pub(crate) fn for_target(target: Target, mode: Mode) -> Self {
        match (target, mode) {
            (Target::Consul, Mode::Default) => ReadKind::Leader,
            (Target::Consul, Mode::Stale) => ReadKind::Stale,
            (Target::Consul, Mode::Consistent) => ReadKind::Consistent,
            (Target::Etcd, Mode::Stale) => ReadKind::Serializable,
            (Target::Etcd, Mode::Default | Mode::Consistent) => ReadKind::Linearizable,
        }
    }

    /// Stable lower-case name used in output.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ReadKind::Leader => "leader",
            ReadKind::Stale => "stale",
            ReadKind::Consistent => "consistent",
            ReadKind::Linearizable => "linearizable",
            ReadKind::Serializable => "serializable",
        }
    }
}

/// Stable lower-case name of a clap value enum.
pub(crate) fn value_name<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
}

/// Benchmark options as typed on the command line.
#[derive(Args, Debug, Clone)]
pub(crate) struct RunArgs {
    /// Server API to speak.
    #[arg(long, value_enum, default_value_t = Target::Consul)]
    pub(crate) target: Target,
    /// Comma-separated HTTP base URLs (loopback only); clients are spread round-robin over
    /// them. Default: http://127.0.0.1:8500 (consul) or http://127.0.0.1:2379 (etcd).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub(crate) endpoints: Vec<String>,
    /// Concurrent closed-loop clients, each with its own keep-alive HTTP/1.1 connection.
    #[arg(long, default_value_t = 1)]
    pub(crate) clients: usize,
    /// Operation to issue.
    #[arg(long, value_enum, default_value_t = Op::Put)]
    pub(crate) op: Op,
    /// Read consistency for `--op get`.
    #[arg(long, value_enum, default_value_t = Mode::Default)]
    pub(crate) mode: Mode,
    /// Measured duration in seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Warm-up in seconds: requests run but are not measured.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) warmup: f64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 128)]
    pub(crate) value_size: usize,
    /// Key space size: keys are `bench/0` … `bench/<K-1>`, chosen uniformly at random.
    #[arg(long, default_value_t = 1000)]
    pub(crate) keys: u64,
    /// Print one machine-readable JSON line on stdout instead of the text report.
    #[arg(long)]
    pub(crate) json: bool,
    /// Per-request timeout in seconds (a timed-out request counts as an error).
    #[arg(long, default_value_t = 5.0)]
    pub(crate) timeout: f64,
    /// Tokio worker threads for the load generator itself.
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// Free-form label copied into the JSON result (e.g. a repeat number).
    #[arg(long)]
    pub(crate) tag: Option<String>,
    /// Skip preloading the key space before a GET run.
    #[arg(long)]
    pub(crate) no_preload: bool,
    /// ACL token sent as `X-Consul-Token` on every request (default: `CONSUL_HTTP_TOKEN`).
    #[arg(long)]
    pub(crate) token: Option<String>,
    /// Datacenter every Consul request names (`?dc=`): another one measures cross-datacenter
    /// forwarding.
    #[arg(long)]
    pub(crate) dc: Option<String>,
    /// CA bundle that signs the servers' certificates, for `https://` endpoints (default:
    /// `CONSUL_CACERT`).
    #[arg(long = "cacert")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Client certificate for servers with `verify_incoming` (default: `CONSUL_CLIENT_CERT`).
    #[arg(long = "client-cert")]
    pub(crate) client_cert: Option<PathBuf>,
    /// Its key (default: `CONSUL_CLIENT_KEY`).
    #[arg(long = "client-key")]
    pub(crate) client_key: Option<PathBuf>,
}

/// The TLS client of `https://` endpoints: rustls on ring, verifying the server against the CA.
#[derive(Clone)]
pub(crate) struct TlsClient {
    /// The rustls configuration (CA roots, optional client certificate).
    pub(crate) config: Arc<rustls::ClientConfig>,
}

impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for TlsClient {}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient")
    }
}

impl TlsClient {
    fn load(ca: &Path, cert: Option<&Path>, key: Option<&Path>) -> Result<TlsClient> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).with_context(|| format!("--cacert {}", ca.display()))? {
            roots.add(c.with_context(|| format!("--cacert {}", ca.display()))?)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match (cert, key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .with_context(|| format!("--client-cert {}", cert.display()))?
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("--client-cert {}", cert.display()))?;
                let key =
                    PrivateKeyDer::from_pem_file(key).with_context(|| format!("--client-key {}", key.display()))?;
                builder.with_client_auth_cert(chain, key)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => bail!("--client-cert and --client-key go together"),
        };
        Ok(TlsClient { config: Arc::new(config) })
    }
}

/// One HTTP endpoint the clients connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// The URL as given (normalised with an `http://` scheme).
    pub(crate) url: String,
    /// Resolved loopback socket address.
    pub(crate) addr: SocketAddr,
    /// Value of the `Host` header (`host:port` as written).
    pub(crate) host_header: String,
    /// Path prefix from the URL without a trailing slash (usually empty).
    pub(crate) base_path: String,
    /// `X-Consul-Token` for every request (`--token`).
    pub(crate) token: Option<String>,
    /// Whether the URL said `https://`.
    pub(crate) https: bool,
    /// The TLS client, for `https://` endpoints.
    pub(crate) tls: Option<TlsClient>,
}

/// Validated benchmark configuration.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Server API to speak.
    pub(crate) target: Target,
    /// Endpoints, clients assigned round-robin.
    pub(crate) endpoints: Vec<Endpoint>,
    /// Number of closed-loop clients.
    pub(crate) clients: usize,
    /// Operation.
    pub(crate) op: Op,
    /// Requested mode (as typed).
    pub(crate) mode: Mode,
    /// Read semantics actually used (GET only).
    pub(crate) read: Option<ReadKind>,
    /// Measured window.
    pub(crate) duration: Duration,
    /// Unmeasured warm-up.
    pub(crate) warmup: Duration,
    /// Value size in bytes.
    pub(crate) value_size: usize,
    /// Key space size.
    pub(crate) keys: u64,
    /// Emit JSON.
    pub(crate) json: bool,
    /// Per-request timeout.
    pub(crate) timeout: Duration,
    /// Runtime worker threads.
    pub(crate) threads: usize,
    /// Free-form label.
    pub(crate) tag: Option<String>,
    /// Preload the key space before GET runs.
    pub(crate) preload: bool,
    /// `?dc=` on every Consul request.
    pub(crate) dc: Option<String>,
}

fn seconds(name: &str, v: f64, allow_zero: bool) -> Result<Duration> {
    if !v.is_finite() || v < 0.0 || (!allow_zero && v == 0.0) {
        bail!("--{name} must be a {} number of seconds, got {v}", if allow_zero { "non-negative" } else { "positive" });
    }
    Ok(Duration::from_secs_f64(v))
}

/// Parses an HTTP base URL (`http://host:port[/prefix]`, scheme optional) and resolves it,
/// refusing any address outside the loopback range: this tool only ever loads servers on the
/// same machine.
pub(crate) fn parse_endpoint(raw: &str) -> Result<Endpoint> {
    let raw = raw.trim();
    if raw.is_empty() {
        bail!("empty endpoint");
    }
    let (https, rest) = match raw.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        Some((scheme, _)) => bail!("endpoint {raw:?}: only http:// and https:// are supported, not {scheme}://"),
        None => (false, raw),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        bail!("endpoint {raw:?}: expected http://host:port");
    }
    let has_port = if let Some(stripped) = authority.strip_prefix('[') {
        stripped.contains("]:")
    } else {
        authority.contains(':')
    };
    let default_port = if https { 443 } else { 80 };
    let host_port = if has_port { authority.to_string() } else { format!("{authority}:{default_port}") };
    let addrs: Vec<SocketAddr> =
        host_port.to_socket_addrs().with_context(|| format!("endpoint {raw:?}: cannot resolve {host_port}"))?.collect();
    let addr = addrs
        .iter()
        .find(|a| a.ip().is_loopback())
        .copied()
        .with_context(|| format!("endpoint {raw:?} resolves to {addrs:?}: only loopback addresses are allowed"))?;
    if addrs.iter().any(|a| !a.ip().is_loopback()) {
        bail!("endpoint {raw:?} resolves to {addrs:?}: only loopback addresses are allowed");
    }
    Ok(Endpoint {
        url: format!("{}://{authority}{}", if https { "https" } else { "http" }, path.trim_end_matches('/')),
        addr,
        host_header: authority.to_string(),
        base_path: path.trim_end_matches('/').to_string(),
        token: None,
        https,
        tls: None,
    })
}

impl RunArgs {
    /// Checks the options and resolves the endpoints.
    pub(crate) fn validate(&self) -> Result<Config> {
        if self.clients == 0 {
            bail!("--clients must be at least 1");
        }
        if self.keys == 0 {
            bail!("--keys must be at least 1");
        }
        if self.threads == 0 {
            bail!("--threads must be at least 1");
        }
        let defaults = match self.target {
            Target::Consul => "http://127.0.0.1:8500",
            Target::Etcd => "http://127.0.0.1:2379",
        };
        let raw: Vec<&str> = if self.endpoints.is_empty() {
            vec![defaults]
        } else {
            self.endpoints.iter().map(String::as_str).collect()
        };
        let mut endpoints =
            raw.into_iter().filter(|s| !s.trim().is_empty()).map(parse_endpoint).collect::<Result<Vec<_>>>()?;
        let token = self.token.clone().or_else(|| std::env::var("CONSUL_HTTP_TOKEN").ok()).filter(|t| !t.is_empty());
        let env_path = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let mut tls = None;
        if endpoints.iter().any(|e| e.https) {
            let ca = self.ca_file.clone().or_else(|| env_path("CONSUL_CACERT"));
            let ca = ca.context("https:// endpoints need --cacert (or CONSUL_CACERT)")?;
            let cert = self.client_cert.clone().or_else(|| env_path("CONSUL_CLIENT_CERT"));
            let key = self.client_key.clone().or_else(|| env_path("CONSUL_CLIENT_KEY"));
            tls = Some(TlsClient::load(&ca, cert.as_deref(), key.as_deref())?);
        }
        for ep in &mut endpoints {
            ep.token = token.clone();
            if ep.https {
                ep.tls = tls.clone();
            }
        }
        if endpoints.is_empty() {
            bail!("--endpoints is empty");
        }
        Ok(Config {
            target: self.target,
            endpoints,
            clients: self.clients,
            op: self.op,
            mode: self.mode,
            read: (self.op == Op::Get).then(|| ReadKind::for_target(self.target, self.mode)),
            duration: seconds("duration", self.duration, false)?,
            warmup: seconds("warmup", self.warmup, true)?,
            value_size: self.value_size,
            keys: self.keys,
            json: self.json,
            timeout: seconds("timeout", self.timeout, false)?,
            threads: self.threads,
            tag: self.tag.clone(),
            preload: self.op == Op::Get && !self.no_preload,
            dc: self.dc.clone().filter(|d| !d.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("consul-rs-bench").chain(args.iter().copied()))
    }

    fn config(args: &[&str]) -> Result<Config> {
        let cli = parse(args)?;
        assert!(cli.command.is_none());
        cli.run.validate()
    }

    #[test]
    fn defaults() {
        let c = config(&[]).expect("defaults are valid");
        assert_eq!(c.target, Target::Consul);
        assert_eq!(c.endpoints.len(), 1);
        assert_eq!(c.endpoints[0].url, "http://127.0.0.1:8500");
        assert_eq!(c.clients, 1);
        assert_eq!(c.op, Op::Put);
        assert_eq!(c.read, None);
        assert_eq!(c.duration, Duration::from_secs(10));
        assert_eq!(c.warmup, Duration::from_secs(2));
        assert_eq!(c.value_size, 128);
        assert_eq!(c.keys, 1000);
        assert!(!c.json);
        assert!(!c.preload);
    }

    #[test]
    fn full_command_line() {
        let c = config(&[
            "--target",
            "etcd",
            "--endpoints",
            "http://127.0.0.1:12379,127.0.0.2:22379/",
            "--clients",
            "64",
            "--op",
            "get",
            "--mode",
            "stale",
            "--duration",
            "1.5",
            "--warmup",
            "0",
            "--value-size",
            "256",
            "--keys",
            "10",
            "--json",
            "--tag",
            "r1",
        ])
        .expect("valid");
        assert_eq!(c.target, Target::Etcd);
        assert_eq!(c.endpoints.len(), 2);
        assert_eq!(c.endpoints[0].addr, "127.0.0.1:12379".parse().expect("addr"));
        assert_eq!(c.endpoints[1].url, "http://127.0.0.2:22379");
        assert_eq!(c.endpoints[1].host_header, "127.0.0.2:22379");
        assert_eq!(c.clients, 64);
        assert_eq!(c.op, Op::Get);
        assert_eq!(c.read, Some(ReadKind::Serializable));
        assert_eq!(c.duration, Duration::from_millis(1500));
        assert_eq!(c.warmup, Duration::ZERO);
        assert_eq!(c.value_size, 256);
        assert_eq!(c.keys, 10);
        assert!(c.json);
        assert!(c.preload);
        assert_eq!(c.tag.as_deref(), Some("r1"));
    }

    #[test]
    fn https_endpoints_need_a_ca() {
        let e = config(&["--endpoints", "https://127.0.0.1:8501"]).expect_err("no CA");
        assert!(format!("{e:#}").contains("--cacert"), "{e:#}");
        let e =
            config(&["--endpoints", "https://127.0.0.1:8501", "--cacert", "/nonexistent/ca.pem"]).expect_err("no file");
        assert!(format!("{e:#}").contains("/nonexistent/ca.pem"), "{e:#}");
        let ep = parse_endpoint("https://127.0.0.1").expect("valid");
        assert!(ep.https && ep.addr.port() == 443 && ep.url == "https://127.0.0.1");
        assert!(parse_endpoint("ftp://127.0.0.1:1").is_err());
    }

    #[test]
    fn repeated_endpoint_flag_also_works() {
        let c = config(&["--endpoints", "127.0.0.1:1", "--endpoints", "127.0.0.1:2,127.0.0.1:3"]).expect("valid");
        let ports: Vec<u16> = c.endpoints.iter().map(|e| e.addr.port()).collect();
        assert_eq!(ports, [1, 2, 3]);
    }

    #[test]
    fn etcd_mode_mapping() {
        use ReadKind::*;
        assert_eq!(ReadKind::for_target(Target::Etcd, Mode::Default), Linearizable);
        assert_eq!(ReadKind::for_target(Target::Etcd, Mode::Consistent), Linearizable);
        assert_eq!(ReadKind::for_target(Target::Etcd, Mode::Stale), Serializable);
        assert_eq!(ReadKind::for_target(Target::Consul, Mode::Default), Leader);
        assert_eq!(ReadKind::for_target(Target::Consul, Mode::Stale), Stale);
        assert_eq!(ReadKind::for_target(Target::Consul, Mode::Consistent), Consistent);
    }

    #[test]
    fn rejects_bad_values() {
        assert!(parse(&["--target", "zookeeper"]).is_err());
        assert!(parse(&["--op", "delete"]).is_err());
        assert!(parse(&["--mode", "eventual"]).is_err());
        assert!(parse(&["--clients", "-1"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(config(&["--clients", "0"]).is_err());
        assert!(config(&["--keys", "0"]).is_err());
        assert!(config(&["--duration", "0"]).is_err());
        assert!(config(&["--warmup", "-1"]).is_err());
        assert!(config(&["--duration", "NaN"]).is_err());
        assert!(config(&["--endpoints", "https://127.0.0.1:8501"]).is_err());
    }

    #[test]
    fn endpoints_must_be_loopback() {
        assert!(parse_endpoint("http://10.0.0.1:8500").is_err());
        assert!(parse_endpoint("192.168.1.1:8500").is_err());
        assert!(parse_endpoint("http://user@127.0.0.1:8500").is_err());
        assert!(parse_endpoint("http://127.0.0.13:8500").is_ok());
        let e = parse_endpoint("http://[::1]:8500/prefix/").expect("ipv6 loopback");
        assert_eq!(e.base_path, "/prefix");
        assert_eq!(e.host_header, "[::1]:8500");
        let e = parse_endpoint("127.0.0.1").expect("default port");
        assert_eq!(e.addr.port(), 80);
    }

    #[test]
    fn summarize_subcommand() {
        let cli = parse(&["summarize", "a.jsonl", "b.jsonl"]).expect("valid");
        match cli.command {
            Some(Command::Summarize { files }) => assert_eq!(files.len(), 2),
            None => panic!("expected summarize"),
        }
        assert!(parse(&["summarize"]).is_err());
    }
}
