//! Service and check definitions: what `/v1/agent/service/register`, `/v1/agent/check/register`
//! and the `service`/`check` blocks of config files describe (Consul's `structs.ServiceDefinition`,
//! `structs.CheckType`, `api.AgentServiceRegistration`, `api.AgentCheckRegistration`).
//!
//! Field names match Consul's case-insensitively, and the snake_case spellings of config files
//! (`deregister_critical_service_after`, `script_args`, …) are accepted too, so a config block can
//! be posted to the API as-is. Every problem is a 400 naming the field; nothing is applied.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::duration::format_go_duration;
use crate::state::catalog::{valid_status, ServiceInstance, CRITICAL};
use crate::wire::body::Obj;
use crate::Error;

/// Consul's `checks.MinInterval`: shorter intervals are raised to this.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Default timeout of HTTP, TCP, UDP and gRPC checks.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default timeout of script checks (killed when it passes).
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `Timeout` accepted: a probe that may hang for hours holds its task, socket and
/// buffers for that long, and would mask every later failure.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest `Interval` accepted (a check that runs less than daily tells nothing timely).
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Longest `TTL` and `DeregisterCriticalServiceAfter` accepted: far beyond any real use, and
/// short enough that every deadline computed from them stays representable.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Largest check output kept (`check_output_max_size`, 4 KiB).
pub const MAX_OUTPUT: usize = 4096;

/// A service with its embedded checks (`structs.ServiceDefinition`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDefinition {
    /// The service instance (its `node` is left empty: it is this agent's node).
    pub service: ServiceInstance,
    /// Its checks, IDs and `service_id` already filled in.
    pub checks: Vec<CheckDefinition>,
}

/// What a check does (one per check type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckKind {
    /// No runner: the status changes only through the API (maintenance checks).
    Manual,
    /// Passive: the application reports through `/v1/agent/check/pass|warn|fail|update`;
    /// critical once `ttl` passes without a report.
    Ttl {
        /// How long a report stays valid.
        ttl: Duration,
    },
    /// An HTTP request: 2xx passing, 429 warning, anything else critical.
    Http {
        /// The URL.
        url: String,
        /// Method (default GET).
        method: String,
        /// Request headers.
        header: BTreeMap<String, Vec<String>>,
        /// Request body.
        body: String,
        /// Skip TLS verification (kept for the definition; this build checks plain HTTP only).
        tls_skip_verify: bool,
        /// TLS server name (kept for the definition).
        tls_server_name: String,
        /// Do not follow redirects.
        disable_redirects: bool,
    },
    /// A TCP connect.
    Tcp {
        /// `host:port`.
        address: String,
    },
    /// A UDP datagram: passing unless an error (ICMP port unreachable) comes back.
    Udp {
        /// `host:port`.
        address: String,
    },
    /// `grpc.health.v1.Health/Check` over HTTP/2 (plaintext).
    Grpc {
        /// `host:port` or `host:port/service`.
        target: String,
        /// TLS requested (refused at registration by this build).
        use_tls: bool,
    },
    /// A program: exit 0 passing, 1 warning, anything else critical.
    Script {
        /// Program and arguments.
        args: Vec<String>,
    },
    /// A program run inside a Docker container through the Docker engine (`DockerContainerID`
    /// plus `Args`): exit 0 passing, 1 warning, anything else critical.
    Docker {
        /// The container.
        container_id: String,
        /// `Shell` (kept for the definition; `Args` run as given).
        shell: String,
        /// Program and arguments.
        args: Vec<String>,
    },
    /// Scrapes a Prometheus text endpoint and holds it to rules (consul-rs's service-quality
    /// extension; see [`crate::local::metric_rules`]).
    Metrics {
        /// `http://` or `https://` URL of the page.
        url: String,
        /// Request headers.
        header: BTreeMap<String, Vec<String>>,
        /// Skip TLS verification (`https://`).
        tls_skip_verify: bool,
        /// TLS server name (`https://`).
        tls_server_name: String,
        /// The rules.
        rules: Vec<crate::local::metric_rules::MetricRule>,
    },
    /// Mirrors the health of another service (on this node or another).
    Alias {
        /// The aliased service ID.
        service: String,
        /// The node it runs on (empty: this node).
        node: String,
    },
}

impl CheckKind {
    /// Consul's `Type` string for the catalog row.
    pub fn type_name(&self) -> &'static str {
        match self {
            CheckKind::Manual => "",
            CheckKind::Ttl { .. } => "ttl",
            CheckKind::Http { .. } => "http",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Udp { .. } => "udp",
            CheckKind::Grpc { .. } => "grpc",
            CheckKind::Script { .. } => "script",
            CheckKind::Docker { .. } => "docker",
            CheckKind::Alias { .. } => "alias",
            CheckKind::Metrics { .. } => "metrics",
        }
    }

    /// Whether the check runs on an interval.
    pub fn is_interval(&self) -> bool {
        matches!(
            self,
            CheckKind::Http { .. }
                | CheckKind::Tcp { .. }
                | CheckKind::Udp { .. }
                | CheckKind::Grpc { .. }
                | CheckKind::Script { .. }
                | CheckKind::Docker { .. }
                | CheckKind::Metrics { .. }
        )
    }
}

/// One check (`structs.CheckDefinition` + `structs.CheckType`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckDefinition {
    /// Check ID, unique on this agent.
    pub id: String,
    /// Name.
    pub name: String,
    /// Notes.
    pub notes: String,
    /// The local service it belongs to (empty: a node check).
    pub service_id: String,
    /// Initial status (default critical).
    pub status: String,
    /// What the check does.
    pub kind: CheckKind,
    /// Run interval (interval types only; at least [`MIN_INTERVAL`]).
    pub interval: Duration,
    /// Timeout (`None`: the type's default).
    pub timeout: Option<Duration>,
    /// Deregister the service once this check has been critical this long.
    pub deregister_critical_service_after: Option<Duration>,
    /// Consecutive successes needed before passing.
    pub success_before_passing: u32,
    /// Consecutive failures needed before warning.
    pub failures_before_warning: u32,
    /// Consecutive failures needed before critical.
    pub failures_before_critical: u32,
    /// A probe that succeeds but takes longer than this reports `warning` (HTTP, TCP, UDP and
    /// gRPC checks; consul-rs's service-quality extension, `LatencyWarning`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_warning: Option<Duration>,
    /// A probe that succeeds but takes longer than this reports `critical` (`LatencyCritical`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_critical: Option<Duration>,
}

impl CheckDefinition {
    /// A check without a runner (maintenance checks).
    pub fn manual(id: &str, name: &str, notes: &str, service_id: &str, status: &str) -> Self {
        CheckDefinition {
            id: id.into(),
            name: name.into(),
            notes: notes.into(),
            service_id: service_id.into(),
            status: status.into(),
            kind: CheckKind::Manual,
            interval: Duration::ZERO,
            timeout: None,
            deregister_critical_service_after: None,
            success_before_passing: 0,
            failures_before_warning: 0,
            failures_before_critical: 0,
            latency_warning: None,
            latency_critical: None,
        }
    }

    /// The effective timeout.
    pub fn effective_timeout(&self) -> Duration {
        match (&self.kind, self.timeout) {
            (_, Some(t)) if !t.is_zero() => t,
            (CheckKind::Script { .. } | CheckKind::Docker { .. }, _) => DEFAULT_SCRIPT_TIMEOUT,
            _ => DEFAULT_TIMEOUT,
        }
    }

    /// `Interval` as rendered in catalog rows ("" for types without one).
    pub fn interval_string(&self) -> String {
        if self.interval.is_zero() {
            String::new()
        } else {
            format_go_duration(self.interval)
        }
    }

    /// `Timeout` as rendered in catalog rows.
    pub fn timeout_string(&self) -> String {
        match self.timeout {
            Some(t) if !t.is_zero() => format_go_duration(t),
            _ => String::new(),
        }
    }

    /// Consul's `HealthCheckDefinition` JSON (`Definition` in catalog rows).
    pub fn definition_json(&self) -> Value {
        let mut d = json!({
            "Interval": format_go_duration(self.interval),
            "Timeout": format_go_duration(self.timeout.unwrap_or_default()),
            "DeregisterCriticalServiceAfter":
                format_go_duration(self.deregister_critical_service_after.unwrap_or_default()),
        });
        let Value::Object(m) = &mut d else { return d };
        match &self.kind {
            CheckKind::Http { url, method, header, body, tls_skip_verify, tls_server_name, disable_redirects } => {
                m.insert("HTTP".into(), json!(url));
                m.insert("Method".into(), json!(method));
                m.insert("Header".into(), json!(header));
                m.insert("Body".into(), json!(body));
                m.insert("TLSSkipVerify".into(), json!(tls_skip_verify));
                m.insert("TLSServerName".into(), json!(tls_server_name));
                m.insert("DisableRedirects".into(), json!(disable_redirects));
            }
            CheckKind::Tcp { address } => {
                m.insert("TCP".into(), json!(address));
            }
            CheckKind::Udp { address } => {
                m.insert("UDP".into(), json!(address));
            }
            CheckKind::Grpc { target, use_tls } => {
                m.insert("GRPC".into(), json!(target));
                m.insert("GRPCUseTLS".into(), json!(use_tls));
            }
            CheckKind::Script { args } => {
                m.insert("ScriptArgs".into(), json!(args));
            }
            CheckKind::Docker { container_id, shell, args } => {
                m.insert("DockerContainerID".into(), json!(container_id));
                m.insert("Shell".into(), json!(shell));
                m.insert("ScriptArgs".into(), json!(args));
            }
            CheckKind::Alias { service, node } => {
                m.insert("AliasService".into(), json!(service));
                m.insert("AliasNode".into(), json!(node));
            }
            CheckKind::Ttl { ttl } => {
                m.insert("TTL".into(), json!(format_go_duration(*ttl)));
            }
            CheckKind::Metrics { url, header, tls_skip_verify, tls_server_name, rules } => {
                m.insert("Metrics".into(), json!(url));
                m.insert("Header".into(), json!(header));
                m.insert("TLSSkipVerify".into(), json!(tls_skip_verify));
                m.insert("TLSServerName".into(), json!(tls_server_name));
                m.insert("Rules".into(), Value::Array(rules.iter().map(|r| r.to_json()).collect()));
            }
            CheckKind::Manual => {}
        }
        // Only when set, so definitions without them keep Consul's exact shape.
        if let Some(w) = self.latency_warning {
            m.insert("LatencyWarning".into(), json!(format_go_duration(w)));
        }
        if let Some(c) = self.latency_critical {
            m.insert("LatencyCritical".into(), json!(format_go_duration(c)));
        }
        d
    }
}

/// Where a registration came from: script checks are allowed from config files under
/// `enable_local_script_checks`, from the API only under `enable_script_checks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// `/v1/agent/*/register` (persisted under the data dir).
    Api,
    /// A config file (replaced on reload; not persisted).
    Config,
}

fn bad(msg: String) -> Error {
    Error::BadRequest(msg)
}

/// A duration field: a Go duration string, or a number of nanoseconds (Go's JSON form).
fn duration(o: &Obj<'_>, names: &[&str], label: &str) -> Result<Option<Duration>, Error> {
    match o.get(names) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => {
            crate::duration::parse_go_duration(s).map(Some).map_err(|e| bad(format!("Invalid {label}: {e}")))
        }
        Some(Value::Number(n)) => match n.as_u64() {
            Some(ns) => Ok(Some(Duration::from_nanos(ns))),
            None => Err(bad(format!("Invalid {label}: {n} is not a non-negative number of nanoseconds"))),
        },
        Some(_) => Err(bad(format!("Invalid {label}: expected a duration string like \"10s\""))),
    }
}

fn count(o: &Obj<'_>, names: &[&str]) -> Result<u32, Error> {
    Ok(o.int(names, 0, i64::from(u32::MAX))?.unwrap_or(0) as u32)
}

/// `Header`: `{"Name": ["v1", "v2"]}` (a single string value is taken as a one-element list).
fn headers(o: &Obj<'_>) -> Result<BTreeMap<String, Vec<String>>, Error> {
    let mut out = BTreeMap::new();
    let Some(v) = o.get(&["Header", "header"]) else { return Ok(out) };
    let Value::Object(m) = v else { return Err(bad("Invalid Header: expected an object of string lists".into())) };
    for (k, v) in m {
        let values = match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad(format!("Invalid Header.{k}: expected a list of strings")))?,
            _ => return Err(bad(format!("Invalid Header.{k}: expected a list of strings"))),
        };
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return Err(bad(format!("Invalid Header {k:?}: not a valid HTTP header name")));
        }
        if values.iter().any(|v| reqwest::header::HeaderValue::from_str(v).is_err()) {
            return Err(bad(format!("Invalid Header.{k}: values must be printable text without line breaks")));
        }
        out.insert(k.clone(), values);
    }
    Ok(out)
}

/// Whether a check object carries nothing (`"Check": {}` is skipped like Consul does).
fn is_empty_object(m: &Map<String, Value>) -> bool {
    m.values().all(|v| match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
    })
}

fn host_port(label: &str, s: &str) -> Result<String, Error> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_string()),
        _ => Err(bad(format!("Invalid {label} {s:?}: expected host:port"))),
    }
}

/// Parses the check part of a registration (`AgentServiceCheck` / `AgentCheckRegistration`).
/// `default_id` and `default_name` apply to checks embedded in a service registration.
pub(crate) fn parse_check(o: Obj<'_>, default_id: &str, default_name: &str) -> Result<CheckDefinition, Error> {
    let id = match o.string(&["CheckID", "check_id", "ID"])? {
        id if id.is_empty() => match default_id {
            "" => o.string(&["Name"])?,
            d => d.to_string(),
        },
        id => id,
    };
    let name = match o.string(&["Name"])? {
        n if n.is_empty() => default_name.to_string(),
        n => n,
    };
    if name.is_empty() {
        return Err(bad("Missing check name (Name)".into()));
    }
    if id.is_empty() {
        return Err(bad("Missing check ID (CheckID)".into()));
    }
    let status = match o.string(&["Status"])? {
        s if s.is_empty() => CRITICAL.to_string(),
        s if valid_status(&s) => s,
        s => return Err(bad(format!("Invalid Status {s:?}: use passing, warning or critical"))),
    };
    let interval = duration(&o, &["Interval"], "Interval")?;
    let timeout = duration(&o, &["Timeout"], "Timeout")?;
    let ttl = duration(&o, &["TTL"], "TTL")?;
    let dereg = duration(
        &o,
        &["DeregisterCriticalServiceAfter", "deregister_critical_service_after"],
        "DeregisterCriticalServiceAfter",
    )?;
    for (field, value, max) in [
        ("Interval", interval, MAX_INTERVAL),
        ("Timeout", timeout, MAX_TIMEOUT),
        ("TTL", ttl, MAX_TTL),
        ("DeregisterCriticalServiceAfter", dereg, MAX_TTL),
    ] {
        if let Some(d) = value.filter(|d| *d > max) {
            return Err(bad(format!(
                "Invalid check: {field} {} is longer than the maximum of {}",
                format_go_duration(d),
                format_go_duration(max)
            )));
        }
    }
    let docker = o.string(&["DockerContainerID", "docker_container_id"])?;
    for (field, names) in [("H2PING", &["H2PING", "h2ping"][..]), ("OSService", &["OSService", "os_service"][..])] {
        if !o.string(names)?.is_empty() {
            return Err(bad(format!("Invalid check: {field} checks are not supported by consul-rs")));
        }
    }
    if o.get(&["Script", "script"]).is_some() {
        return Err(bad("Invalid check: Script was removed in Consul 1.1; use Args (ScriptArgs)".into()));
    }
    if o.boolean(&["TCPUseTLS", "tcp_use_tls"])? {
        return Err(bad("Invalid check: TCPUseTLS is not supported by consul-rs".into()));
    }
    let args = o.strings(&["ScriptArgs", "Args", "script_args"])?;
    if !docker.is_empty() && args.is_empty() {
        return Err(bad("Invalid check: DockerContainerID checks need Args (the command run in the container)".into()));
    }
    let http = o.string(&["HTTP"])?;
    let tcp = o.string(&["TCP"])?;
    let udp = o.string(&["UDP"])?;
    let grpc = o.string(&["GRPC"])?;
    let alias_service = o.string(&["AliasService", "alias_service"])?;
    let alias_node = o.string(&["AliasNode", "alias_node"])?;
    let metrics = o.string(&["Metrics"])?;
    let defined = [
        !metrics.is_empty(),
        !args.is_empty(),
        !http.is_empty(),
        !tcp.is_empty(),
        !udp.is_empty(),
        !grpc.is_empty(),
        ttl.is_some(),
        !alias_service.is_empty(),
    ];
    match defined.iter().filter(|d| **d).count() {
        0 => {
            return Err(bad(
                "Invalid check: must provide TTL, or Args/HTTP/TCP/UDP/GRPC/Metrics with an Interval, or AliasService"
                    .into(),
            ))
        }
        1 => {}
        _ => {
            return Err(bad(
                "Invalid check: give only one of Args, HTTP, TCP, UDP, GRPC, Metrics, TTL, AliasService".into()
            ))
        }
    }
    let kind = if let Some(ttl) = ttl {
        if ttl.is_zero() {
            return Err(bad("Invalid check: TTL must be > 0 for TTL checks".into()));
        }
        CheckKind::Ttl { ttl }
    } else if !http.is_empty() {
        let lower = http.to_ascii_lowercase();
        let scheme_len = if lower.starts_with("https://") { "https://".len() } else { "http://".len() };
        if !(lower.starts_with("http://") || lower.starts_with("https://")) || http.len() <= scheme_len {
            return Err(bad(format!("Invalid HTTP {http:?}: expected an http:// or https:// URL")));
        }
        if reqwest::Url::parse(&http).is_err() {
            return Err(bad(format!("Invalid HTTP {http:?}: not a valid URL")));
        }
        let method = match o.string(&["Method"])? {
            m if m.is_empty() => "GET".to_string(),
            m if m.bytes().all(|b| b.is_ascii_alphabetic()) => m.to_ascii_uppercase(),
            m => return Err(bad(format!("Invalid Method {m:?}"))),
        };
        CheckKind::Http {
            url: http,
            method,
            header: headers(&o)?,
            body: o.string(&["Body"])?,
            tls_skip_verify: o.boolean(&["TLSSkipVerify", "tls_skip_verify"])?,
            tls_server_name: o.string(&["TLSServerName", "tls_server_name"])?,
            disable_redirects: o.boolean(&["DisableRedirects", "disable_redirects"])?,
        }
    } else if !metrics.is_empty() {
        let lower = metrics.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) || reqwest::Url::parse(&metrics).is_err() {
            return Err(bad(format!("Invalid Metrics {metrics:?}: expected an http:// or https:// URL")));
        }
        let rules =
            crate::local::metric_rules::parse_rules(o.get(&["Rules", "rules"]), interval.unwrap_or(MIN_INTERVAL))
                .map_err(|e| bad(format!("Invalid check: {e}")))?;
        CheckKind::Metrics {
            url: metrics,
            header: headers(&o)?,
            tls_skip_verify: o.boolean(&["TLSSkipVerify", "tls_skip_verify"])?,
            tls_server_name: o.string(&["TLSServerName", "tls_server_name"])?,
            rules,
        }
    } else if !tcp.is_empty() {
        CheckKind::Tcp { address: host_port("TCP", &tcp)? }
    } else if !udp.is_empty() {
        CheckKind::Udp { address: host_port("UDP", &udp)? }
    } else if !grpc.is_empty() {
        let use_tls = o.boolean(&["GRPCUseTLS", "grpc_use_tls"])?;
        if use_tls {
            return Err(bad("Invalid check: GRPCUseTLS is not supported by this build of consul-rs".into()));
        }
        let addr = grpc.split_once('/').map_or(grpc.as_str(), |(a, _)| a);
        host_port("GRPC", addr)?;
        CheckKind::Grpc { target: grpc, use_tls }
    } else if !args.is_empty() && !docker.is_empty() {
        let shell = match o.string(&["Shell", "shell"])? {
            s if s.is_empty() => "/bin/sh".to_string(),
            s => s,
        };
        CheckKind::Docker { container_id: docker, shell, args }
    } else if !args.is_empty() {
        CheckKind::Script { args }
    } else {
        CheckKind::Alias { service: alias_service, node: alias_node }
    };
    let interval = match (&kind, interval) {
        (k, None) if k.is_interval() => {
            return Err(bad(format!("Invalid check: Interval is required for {} checks", k.type_name())))
        }
        (k, Some(i)) if k.is_interval() => i.max(MIN_INTERVAL),
        _ => Duration::ZERO,
    };
    let failures_before_critical = count(&o, &["FailuresBeforeCritical", "failures_before_critical"])?;
    let failures_before_warning = match o.get(&["FailuresBeforeWarning", "failures_before_warning"]) {
        None => failures_before_critical,
        Some(_) => count(&o, &["FailuresBeforeWarning", "failures_before_warning"])?,
    };
    if failures_before_warning > failures_before_critical {
        return Err(bad(format!(
            "Invalid check: FailuresBeforeWarning ({failures_before_warning}) must not exceed FailuresBeforeCritical ({failures_before_critical})"
        )));
    }
    let (latency_warning, latency_critical) = latency_thresholds(&o, &kind, timeout)?;
    Ok(CheckDefinition {
        id,
        name,
        notes: o.string(&["Notes"])?,
        service_id: o.string(&["ServiceID", "service_id"])?,
        status,
        kind,
        interval,
        timeout,
        deregister_critical_service_after: dereg.filter(|d| !d.is_zero()),
        success_before_passing: count(&o, &["SuccessBeforePassing", "success_before_passing"])?,
        failures_before_warning,
        failures_before_critical,
        latency_warning,
        latency_critical,
    })
}

/// `LatencyWarning` / `LatencyCritical`: positive, warning below critical, both below the
/// probe's timeout (a slower probe fails anyway), and only on checks whose probe is a timed
/// round trip.
fn latency_thresholds(
    o: &Obj<'_>,
    kind: &CheckKind,
    timeout: Option<Duration>,
) -> Result<(Option<Duration>, Option<Duration>), Error> {
    let warning = duration(o, &["LatencyWarning", "latency_warning"], "LatencyWarning")?;
    let critical = duration(o, &["LatencyCritical", "latency_critical"], "LatencyCritical")?;
    if warning.is_none() && critical.is_none() {
        return Ok((None, None));
    }
    let field = if warning.is_some() { "LatencyWarning" } else { "LatencyCritical" };
    if !matches!(kind, CheckKind::Http { .. } | CheckKind::Tcp { .. } | CheckKind::Udp { .. } | CheckKind::Grpc { .. })
    {
        return Err(bad(format!(
            "Invalid check: {field} applies only to HTTP, TCP, UDP and gRPC checks, not {} checks",
            kind.type_name()
        )));
    }
    let limit = match timeout {
        Some(t) if !t.is_zero() => t,
        _ => DEFAULT_TIMEOUT,
    };
    for (name, value) in [("LatencyWarning", warning), ("LatencyCritical", critical)] {
        match value {
            Some(v) if v.is_zero() => return Err(bad(format!("Invalid check: {name} must be greater than 0"))),
            Some(v) if v >= limit => {
                return Err(bad(format!(
                    "Invalid check: {name} ({}) must be shorter than the check's Timeout ({}): a slower probe \
                     fails anyway",
                    format_go_duration(v),
                    format_go_duration(limit)
                )))
            }
            _ => {}
        }
    }
    if let (Some(w), Some(c)) = (warning, critical) {
        if w >= c {
            return Err(bad(format!(
                "Invalid check: LatencyWarning ({}) must be shorter than LatencyCritical ({})",
                format_go_duration(w),
                format_go_duration(c)
            )));
        }
    }
    Ok((warning, critical))
}

/// Parses `AgentCheckRegistration` (the body of `/v1/agent/check/register`, or a `check` block).
pub fn parse_check_registration(v: &Value) -> Result<CheckDefinition, Error> {
    let Value::Object(m) = v else { return Err(bad("Request decode failed: expected a JSON object".into())) };
    parse_check(Obj::new(m, ""), "", "")
}

const KINDS: &[&str] =
    &["", "typical", "connect-proxy", "mesh-gateway", "terminating-gateway", "ingress-gateway", "api-gateway"];

/// Parses `AgentServiceRegistration` (the body of `/v1/agent/service/register`, or a `service`
/// block): the service and its embedded `Check`/`Checks` with IDs `service:<id>` (one check) or
/// `service:<id>:1`, `:2`, … (several).
///
/// A `connect-proxy` is validated as Consul validates it, and a `Connect.SidecarService` is
/// checked by building the sidecar it asks for ([`super::sidecar`]).
pub fn parse_service_registration(v: &Value) -> Result<ServiceDefinition, Error> {
    let def = parse_service_fields(v)?;
    let mut errors = super::sidecar::validate_sidecar(&def)?;
    errors.extend(validate_kind(&def.service));
    match crate::wire::connect::validation_error(&errors) {
        Some(e) => Err(e),
        None => Ok(def),
    }
}

/// `NodeService.Validate` of what this agent accepts: a connect proxy's rules.
pub(crate) fn validate_kind(s: &ServiceInstance) -> Vec<String> {
    use crate::wire::connect::{parse_connect, validate_connect_proxy, ProxyConfig, CONNECT_PROXY};
    if s.kind != CONNECT_PROXY {
        return Vec::new();
    }
    let proxy = s.ext.proxy.as_ref().and_then(ProxyConfig::from_stored);
    let connect = s.ext.connect.as_ref().and_then(|c| c.as_object()).and_then(|c| parse_connect(c).ok());
    validate_connect_proxy(proxy.as_ref(), connect.as_ref(), s.port, &s.ext.socket_path)
}

/// A service registration's fields with the agent's defaults, not yet validated.
pub(crate) fn parse_service_fields(v: &Value) -> Result<ServiceDefinition, Error> {
    let Value::Object(m) = v else { return Err(bad("Request decode failed: expected a JSON object".into())) };
    let o = Obj::new(m, "");
    let mut service = crate::wire::catalog::parse_service(o, &["Name"])?;
    if !KINDS.contains(&service.kind.as_str()) {
        return Err(bad(format!("Invalid Kind {:?}: use one of {}", service.kind, KINDS[2..].join(", "))));
    }
    if service.kind == "typical" {
        service.kind.clear();
    }
    // The agent's defaults for a proxy (`ServiceDefinition.NodeService`) and their merge with
    // the (absent) central configuration, as Consul's agent stores them.
    if let Some(mut p) = service.ext.proxy.as_ref().and_then(crate::wire::connect::ProxyConfig::from_stored) {
        crate::wire::connect::agent_defaults(&mut p);
        if service.kind == crate::wire::connect::CONNECT_PROXY {
            crate::wire::connect::merge_defaults(&mut p);
        }
        service.ext.proxy = Some(p.catalog_json());
    }
    let mut raw: Vec<&Map<String, Value>> = Vec::new();
    if let Some(c) = o.object(&["Check"])? {
        raw.push(c);
    }
    raw.extend(o.objects(&["Checks"])?);
    raw.retain(|c| !is_empty_object(c));
    let many = raw.len() > 1;
    let mut checks = Vec::new();
    for (i, c) in raw.into_iter().enumerate() {
        let default_id =
            if many { format!("service:{}:{}", service.id, i + 1) } else { format!("service:{}", service.id) };
        let default_name = format!("Service '{}' check", service.service);
        let mut check = parse_check(Obj::new(c, "Check"), &default_id, &default_name)?;
        check.service_id = service.id.clone();
        checks.push(check);
    }
    let mut ids: Vec<&str> = checks.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(bad("Invalid Checks: two checks have the same CheckID".into()));
    }
    Ok(ServiceDefinition { service, checks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_with_embedded_checks_gets_consul_ids() {
        let v = json!({
            "Name": "web", "Port": 80,
            "Check": {"HTTP": "http://127.0.0.1:80/health", "Interval": "10s"},
            "Checks": [{"TCP": "127.0.0.1:80", "interval": "5s"}, {"CheckID": "own", "TTL": "30s"}],
        });
        let d = parse_service_registration(&v).expect("parse");
        assert_eq!(d.service.id, "web");
        let ids: Vec<_> = d.checks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["service:web:1", "service:web:2", "own"]);
        assert!(d.checks.iter().all(|c| c.service_id == "web"));
        assert_eq!(d.checks[0].name, "Service 'web' check");
        let single =
            parse_service_registration(&json!({"name": "db", "id": "db1", "check": {"ttl": "5s"}})).expect("parse");
        assert_eq!(single.checks[0].id, "service:db1");
    }

    #[test]
    fn snake_case_fields_are_accepted() {
        let v = json!({
            "name": "api", "enable_tag_override": true,
            "checks": [{"args": ["/bin/true"], "interval": "10s", "deregister_critical_service_after": "90m",
                        "failures_before_critical": 3, "success_before_passing": 2}],
        });
        let d = parse_service_registration(&v).expect("parse");
        assert!(d.service.enable_tag_override);
        let w = parse_service_registration(&json!({"name": "w", "weights": {"passing": 3}})).expect("parse");
        assert_eq!((w.service.weights.passing, w.service.weights.warning), (3, 0), "Warning left out is 0");
        let c = &d.checks[0];
        assert_eq!(c.kind, CheckKind::Script { args: vec!["/bin/true".into()] });
        assert_eq!(c.deregister_critical_service_after, Some(Duration::from_secs(90 * 60)));
        assert_eq!((c.success_before_passing, c.failures_before_warning, c.failures_before_critical), (2, 3, 3));
    }

    #[test]
    fn bad_registrations_name_the_field() {
        let cases = [
            (json!({"Port": 80}), "Name"),
            (json!({"Name": "x", "Port": 70000}), "Port"),
            (json!({"Name": "x", "Check": {"Interval": "10s"}}), "must provide TTL"),
            (json!({"Name": "x", "Check": {"HTTP": "http://a/", "Interval": "soon"}}), "Interval"),
            (json!({"Name": "x", "Check": {"HTTP": "http://a/"}}), "Interval is required"),
            (json!({"Name": "x", "Check": {"TTL": "0s"}}), "TTL must be > 0"),
            (json!({"Name": "x", "Check": {"TCP": "nohost", "Interval": "1s"}}), "TCP"),
            (json!({"Name": "x", "Check": {"TTL": "1s", "Status": "sick"}}), "Status"),
            (json!({"Name": "x", "Kind": "weird"}), "Kind"),
            (json!({"Name": "x", "Weights": {"Warning": 2}}), "Passing must be greater than 0"),
            (
                json!({"Name": "x", "Check": {"TTL": "1s", "FailuresBeforeWarning": 3, "FailuresBeforeCritical": 1}}),
                "FailuresBeforeWarning",
            ),
            (json!({"Name": "x", "Check": {"DockerContainerID": "abc", "Interval": "1s"}}), "DockerContainerID"),
            (
                json!({"Name": "x", "Check": {"HTTP": "http://a/", "Interval": "1s", "Header": {"a b": ["c"]}}}),
                "Header",
            ),
            (
                json!({"Name": "x", "Check": {"HTTP": "http://a/", "Interval": "1s", "Header": {"A": ["x\ny"]}}}),
                "Header.A",
            ),
            (json!({"Name": "x", "Check": {"HTTP": "ftp://a/", "Interval": "1s"}}), "http://"),
        ];
        for (v, want) in cases {
            let err = parse_service_registration(&v).expect_err(&v.to_string()).to_string();
            assert!(err.contains(want), "{v}: {err}");
        }
        let err = parse_check_registration(&json!({"TTL": "5s"})).expect_err("no name").to_string();
        assert!(err.contains("Name"), "{err}");
    }

    #[test]
    fn absurd_durations_are_refused_by_name() {
        for (field, value, max) in [
            ("Interval", "25h", "24h"),
            ("Timeout", "999999h", "1h"),
            ("TTL", "9000h", "8760h"),
            ("DeregisterCriticalServiceAfter", "9000h", "8760h"),
        ] {
            let mut check = json!({"Name": "c", "HTTP": "http://127.0.0.1:1/", "Interval": "10s"});
            if field == "TTL" {
                check = json!({"Name": "c", "TTL": "10s"});
            }
            check[field] = json!(value);
            let e = parse_check_registration(&check).expect_err(field).to_string();
            assert!(e.contains(field) && e.contains(max), "{field}: {e}");
        }
        let ok = json!({"Name": "c", "HTTP": "http://127.0.0.1:1/", "Interval": "24h", "Timeout": "1h"});
        assert!(parse_check_registration(&ok).is_ok());
    }

    #[test]
    fn latency_thresholds_are_parsed_shown_and_checked() {
        let c = parse_check_registration(&json!({
            "Name": "l", "HTTP": "http://127.0.0.1:1/", "Interval": "1s", "Timeout": "2s",
            "LatencyWarning": "150ms", "latency_critical": "300ms",
        }))
        .expect("ok");
        assert_eq!(
            (c.latency_warning, c.latency_critical),
            (Some(Duration::from_millis(150)), Some(Duration::from_millis(300)))
        );
        let d = c.definition_json();
        assert_eq!((d["LatencyWarning"].as_str(), d["LatencyCritical"].as_str()), (Some("150ms"), Some("300ms")));
        // Unset, they are not in the definition (Consul's shape).
        let plain =
            parse_check_registration(&json!({"Name": "p", "TCP": "127.0.0.1:1", "Interval": "1s"})).expect("ok");
        assert!(plain.definition_json().get("LatencyWarning").is_none());
        // Persisted definitions written before the fields existed still load.
        let mut old = serde_json::to_value(&plain).expect("encode");
        assert!(old.get("latency_warning").is_none());
        old.as_object_mut().expect("object").remove("latency_critical");
        let back: CheckDefinition = serde_json::from_value(old).expect("decode");
        assert_eq!(back, plain);

        for (check, want) in [
            (json!({"TTL": "10s", "LatencyWarning": "1s"}), "LatencyWarning applies only to HTTP, TCP, UDP and gRPC"),
            (
                json!({"TCP": "127.0.0.1:1", "Interval": "1s", "LatencyCritical": "0s"}),
                "LatencyCritical must be greater than 0",
            ),
            (json!({"TCP": "127.0.0.1:1", "Interval": "1s", "LatencyWarning": "soon"}), "Invalid LatencyWarning"),
            (
                json!({"TCP": "127.0.0.1:1", "Interval": "1s", "LatencyWarning": "300ms", "LatencyCritical": "200ms"}),
                "LatencyWarning (300ms) must be shorter than LatencyCritical (200ms)",
            ),
            (
                json!({"TCP": "127.0.0.1:1", "Interval": "1s", "Timeout": "1s", "LatencyCritical": "2s"}),
                "LatencyCritical (2s) must be shorter than the check's Timeout (1s)",
            ),
            (json!({"UDP": "127.0.0.1:1", "Interval": "1s", "LatencyWarning": "10s"}), "Timeout (10s)"),
        ] {
            let mut v = check.clone();
            v["Name"] = json!("c");
            let e = parse_check_registration(&v).expect_err(&v.to_string()).to_string();
            assert!(e.contains(want), "{v}: {e}");
        }
    }

    #[test]
    fn intervals_are_raised_to_the_minimum() {
        let c = parse_check_registration(&json!({"Name": "t", "TCP": "127.0.0.1:1", "Interval": "10ms"})).expect("ok");
        assert_eq!(c.interval, MIN_INTERVAL);
        assert_eq!(c.effective_timeout(), DEFAULT_TIMEOUT);
        assert_eq!(c.status, CRITICAL);
    }
}
