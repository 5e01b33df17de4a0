//! The plain records crossing the boundary, and their conversions from SDK types. Numbers keep
//! Consul's widths (`u64` indexes and flags; the Kotlin layer shows them as `Long`, bit for bit).
use std::collections::HashMap;

use consul_sdk::{
    AgentMember, CheckArgs, Consistency, DurationArg, HealthCheck, KvPair, Node, RegistrationSpec, ServiceEntry,
    ServiceRegistration, Strategy, UserEvent,
};

use crate::error::{invalid, FfiResult};

/// A KV entry.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiKvPair {
    /// Key.
    pub key: String,
    /// Value (`None` for an empty value).
    pub value: Option<Vec<u8>>,
    /// Client flags.
    pub flags: u64,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last write.
    pub modify_index: u64,
    /// Times the key was acquired by a session.
    pub lock_index: u64,
    /// The session holding the key's lock.
    pub session: Option<String>,
}

impl From<&KvPair> for FfiKvPair {
    fn from(p: &KvPair) -> Self {
        FfiKvPair {
            key: p.key.clone(),
            value: p.value.as_ref().map(|v| v.to_vec()),
            flags: p.flags,
            create_index: p.create_index,
            modify_index: p.modify_index,
            lock_index: p.lock_index,
            session: p.session.clone(),
        }
    }
}

/// A read's answer with its `X-Consul-Index`.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiKvGet {
    /// `X-Consul-Index`.
    pub index: u64,
    /// The pair, `None` when the key does not exist.
    pub pair: Option<FfiKvPair>,
}

/// A list read's answer with its `X-Consul-Index`.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiKvList {
    /// `X-Consul-Index`.
    pub index: u64,
    /// The pairs.
    pub pairs: Vec<FfiKvPair>,
}

/// A node.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiNode {
    /// Node UUID.
    pub id: String,
    /// Node name.
    pub node: String,
    /// Address.
    pub address: String,
    /// Datacenter.
    pub datacenter: String,
    /// Metadata.
    pub meta: HashMap<String, String>,
}

impl From<&Node> for FfiNode {
    fn from(n: &Node) -> Self {
        FfiNode {
            id: n.id.clone(),
            node: n.node.clone(),
            address: n.address.clone(),
            datacenter: n.datacenter.clone(),
            meta: n.meta.clone().into_iter().collect(),
        }
    }
}

/// A health check.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiHealthCheck {
    /// Node.
    pub node: String,
    /// Check ID.
    pub check_id: String,
    /// Name.
    pub name: String,
    /// `passing`, `warning` or `critical`.
    pub status: String,
    /// Output of the last run.
    pub output: String,
    /// Service instance the check belongs to.
    pub service_id: String,
    /// Service name.
    pub service_name: String,
}

impl From<&HealthCheck> for FfiHealthCheck {
    fn from(c: &HealthCheck) -> Self {
        FfiHealthCheck {
            node: c.node.clone(),
            check_id: c.check_id.clone(),
            name: c.name.clone(),
            status: c.status.clone(),
            output: c.output.clone(),
            service_id: c.service_id.clone(),
            service_name: c.service_name.clone(),
        }
    }
}

/// One service instance with its node and checks.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiServiceEntry {
    /// The node.
    pub node: FfiNode,
    /// Instance ID.
    pub service_id: String,
    /// Service name.
    pub service: String,
    /// The address to connect to: the service's, else the node's.
    pub address: String,
    /// Port.
    pub port: u16,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata.
    pub meta: HashMap<String, String>,
    /// Its checks, node-level ones included.
    pub checks: Vec<FfiHealthCheck>,
    /// The worst status of its checks.
    pub status: String,
}

impl From<&ServiceEntry> for FfiServiceEntry {
    fn from(e: &ServiceEntry) -> Self {
        FfiServiceEntry {
            node: (&e.node).into(),
            service_id: e.service.id.clone(),
            service: e.service.service.clone(),
            address: e.address().to_string(),
            port: e.service.port,
            tags: e.service.tags.clone(),
            meta: e.service.meta.clone().into_iter().collect(),
            checks: e.checks.iter().map(Into::into).collect(),
            status: e.status().to_string(),
        }
    }
}

/// A gossip pool member.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiMember {
    /// Node name.
    pub name: String,
    /// Gossip address.
    pub addr: String,
    /// Gossip port.
    pub port: u16,
    /// Serf tags.
    pub tags: HashMap<String, String>,
    /// `alive`, `leaving`, `left`, `failed` or `none`.
    pub status: String,
}

impl From<&AgentMember> for FfiMember {
    fn from(m: &AgentMember) -> Self {
        FfiMember {
            name: m.name.clone(),
            addr: m.addr.clone(),
            port: m.port,
            tags: m.tags.clone().into_iter().collect(),
            status: m.status_name().to_string(),
        }
    }
}

/// A user event.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiUserEvent {
    /// Event UUID.
    pub id: String,
    /// Event name.
    pub name: String,
    /// Payload (`None` when empty).
    pub payload: Option<Vec<u8>>,
    /// Node name regex.
    pub node_filter: String,
    /// Service name regex.
    pub service_filter: String,
    /// Tag regex.
    pub tag_filter: String,
    /// Event format version.
    pub version: u32,
    /// Lamport time (0 in a fire answer).
    pub ltime: u64,
}

impl From<&UserEvent> for FfiUserEvent {
    fn from(e: &UserEvent) -> Self {
        FfiUserEvent {
            id: e.id.clone(),
            name: e.name.clone(),
            payload: e.payload.as_ref().map(|p| p.to_vec()),
            node_filter: e.node_filter.clone(),
            service_filter: e.service_filter.clone(),
            tag_filter: e.tag_filter.clone(),
            version: e.version,
            ltime: e.ltime,
        }
    }
}

/// A duration as a binding hands it over: seconds, or a Go duration string (`"1m30s"`), each
/// checked by the SDK with the message every binding shares.
#[derive(Debug, Clone, uniffi::Enum)]
pub enum FfiDuration {
    /// A number of seconds.
    Seconds {
        /// Seconds (must be finite and non-negative).
        value: f64,
    },
    /// A Go duration string.
    Text {
        /// The text.
        value: String,
    },
}

impl From<FfiDuration> for DurationArg {
    fn from(d: FfiDuration) -> Self {
        match d {
            FfiDuration::Seconds { value } => DurationArg::Secs(value),
            FfiDuration::Text { value } => DurationArg::Text(value),
        }
    }
}

/// A check of a registration, in the bindings' neutral shape.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiCheck {
    /// `ttl`, `http`, `tcp` or `grpc`.
    pub kind: String,
    /// URL, address or gRPC target (not for TTL checks).
    pub target: Option<String>,
    /// TTL (TTL checks).
    pub ttl: Option<FfiDuration>,
    /// How often the agent runs the check.
    pub interval: Option<FfiDuration>,
    /// How long one run may take.
    pub timeout: Option<FfiDuration>,
    /// Deregister the service after it has been critical this long.
    pub deregister_critical_after: Option<FfiDuration>,
}

/// A service registration, in the bindings' neutral shape (`consul_sdk::RegistrationSpec`).
#[derive(Debug, Clone, uniffi::Record)]
pub struct FfiRegistrationSpec {
    /// Service name.
    pub name: String,
    /// Instance ID (default: the name).
    pub id: Option<String>,
    /// Address (default: the node's).
    pub address: Option<String>,
    /// Port; an `i64` so that out-of-range values reach the SDK's check and its message.
    pub port: Option<i64>,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata.
    pub meta: HashMap<String, String>,
    /// Checks.
    pub checks: Vec<FfiCheck>,
}

/// The validated SDK registration.
pub(crate) fn registration(spec: FfiRegistrationSpec) -> FfiResult<ServiceRegistration> {
    Ok(RegistrationSpec {
        name: spec.name,
        id: spec.id,
        address: spec.address,
        // Exact for every i64 a port could plausibly be; the SDK refuses anything outside 0-65535.
        port: spec.port.map(|p| p as f64),
        tags: spec.tags,
        meta: spec.meta.into_iter().collect(),
        checks: spec
            .checks
            .into_iter()
            .map(|c| CheckArgs {
                kind: c.kind,
                target: c.target,
                ttl: c.ttl.map(Into::into),
                interval: c.interval.map(Into::into),
                timeout: c.timeout.map(Into::into),
                deregister_critical_after: c.deregister_critical_after.map(Into::into),
            })
            .collect(),
    }
    .resolve()?)
}

/// Checks a registration as `register` will, without sending anything.
#[uniffi::export]
pub fn validate_registration(spec: FfiRegistrationSpec) -> FfiResult<()> {
    registration(spec).map(|_| ())
}

/// A consistency mode by name (`default`, `stale`, `consistent`), parsed by the SDK.
pub(crate) fn consistency(c: &str) -> FfiResult<Consistency> {
    Ok(c.parse()?)
}

/// Checks an option by name as the SDK parses it: `kind` is `consistency`, `strategy` or
/// `check`; answers the canonical name (`consistent-hash` → `consistent_hash`).
#[uniffi::export]
pub fn parse_option(kind: String, value: String) -> FfiResult<String> {
    Ok(match kind.as_str() {
        "consistency" => match consistency(&value)? {
            Consistency::Default => "default",
            Consistency::Stale => "stale",
            Consistency::Consistent => "consistent",
        }
        .to_string(),
        "strategy" => strategy_name(value.parse::<Strategy>()?).to_string(),
        "check" => value.parse::<consul_sdk::CheckType>()?.as_str().to_string(),
        other => return Err(invalid("kind", format!("unknown option kind {other:?}"))),
    })
}

/// The canonical name of a strategy.
fn strategy_name(s: Strategy) -> &'static str {
    match s {
        Strategy::RoundRobin => "round_robin",
        Strategy::Random => "random",
        Strategy::Weighted => "weighted",
        Strategy::ConsistentHash => "consistent_hash",
        Strategy::Nearest => "nearest",
        Strategy::LeastLatency => "least_latency",
        Strategy::Locality => "locality",
    }
}

/// Seconds from the JVM (which passes `java.time.Duration`s as seconds), checked by the SDK.
pub(crate) fn secs(arg: &str, s: f64) -> FfiResult<std::time::Duration> {
    Ok(consul_sdk::duration::from_secs(arg, s)?)
}

/// [`secs`] for optional durations.
pub(crate) fn opt_secs(arg: &str, s: Option<f64>) -> FfiResult<Option<std::time::Duration>> {
    s.map(|s| secs(arg, s)).transpose()
}
