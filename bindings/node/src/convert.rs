//! The SDK's result types as plain JS objects (camelCase fields, `Buffer` values, numbers for
//! indexes: Raft indexes stay far below 2^53), and the option objects `index.js` passes in.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use napi::bindgen_prelude::Buffer;
use napi_derive::napi;

use consul_sdk::{
    AgentMember, AgentService, CheckArgs, CheckType, Consistency, DurationArg, Error, HealthCheck, KvPair, Node,
    RegistrationSpec, ServiceEntry, ServiceRegistration, Strategy, UserEvent, WatchEvent, WatchValue,
};

use crate::call::{js_err, Result};

/// A KV entry.
#[napi(object, use_nullable = true)]
pub struct JsKvPair {
    pub key: String,
    pub value: Option<Buffer>,
    pub flags: f64,
    pub create_index: f64,
    pub modify_index: f64,
    pub lock_index: f64,
    pub session: Option<String>,
}

impl From<KvPair> for JsKvPair {
    fn from(p: KvPair) -> Self {
        JsKvPair {
            key: p.key,
            value: p.value.map(|v| Buffer::from(v.to_vec())),
            flags: p.flags as f64,
            create_index: p.create_index as f64,
            modify_index: p.modify_index as f64,
            lock_index: p.lock_index as f64,
            session: p.session,
        }
    }
}

fn map(m: BTreeMap<String, String>) -> HashMap<String, String> {
    m.into_iter().collect()
}

/// A catalog node.
#[napi(object)]
pub struct JsNode {
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: HashMap<String, String>,
    pub meta: HashMap<String, String>,
    /// Where the node runs (its agent's `locality`).
    pub locality: Option<JsLocality>,
}

/// Where a node or service runs: a region and a zone in it.
#[napi(object)]
pub struct JsLocality {
    pub region: String,
    pub zone: String,
}

impl From<consul_sdk::Locality> for JsLocality {
    fn from(l: consul_sdk::Locality) -> Self {
        JsLocality { region: l.region, zone: l.zone }
    }
}

impl From<Node> for JsNode {
    fn from(n: Node) -> Self {
        JsNode {
            id: n.id,
            node: n.node,
            address: n.address,
            datacenter: n.datacenter,
            tagged_addresses: map(n.tagged_addresses),
            meta: map(n.meta),
            locality: n.locality.map(JsLocality::from),
        }
    }
}

/// SRV weights.
#[napi(object)]
pub struct JsWeights {
    pub passing: i32,
    pub warning: i32,
}

/// A service instance.
#[napi(object)]
pub struct JsService {
    pub id: String,
    pub service: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: u32,
    pub meta: HashMap<String, String>,
    pub weights: JsWeights,
    /// Where the instance runs (defaults to its agent's locality).
    pub locality: Option<JsLocality>,
}

impl From<AgentService> for JsService {
    fn from(s: AgentService) -> Self {
        JsService {
            id: s.id,
            service: s.service,
            tags: s.tags,
            address: s.address,
            port: u32::from(s.port),
            meta: map(s.meta),
            weights: JsWeights { passing: s.weights.passing, warning: s.weights.warning },
            locality: s.locality.map(JsLocality::from),
        }
    }
}

/// A health check and its status.
#[napi(object)]
pub struct JsHealthCheck {
    pub node: String,
    pub check_id: String,
    pub name: String,
    pub status: String,
    pub output: String,
    pub service_id: String,
    pub service_name: String,
    /// Measured probe latency (Go duration) on checks with latency thresholds.
    pub latency: Option<String>,
}

impl From<HealthCheck> for JsHealthCheck {
    fn from(c: HealthCheck) -> Self {
        JsHealthCheck {
            node: c.node,
            check_id: c.check_id,
            name: c.name,
            status: c.status,
            output: c.output,
            service_id: c.service_id,
            service_name: c.service_name,
            latency: c.latency,
        }
    }
}

/// One instance with its node and checks.
#[napi(object)]
pub struct JsServiceEntry {
    pub node: JsNode,
    pub service: JsService,
    pub checks: Vec<JsHealthCheck>,
    /// Where to connect: the service's address, else its node's.
    pub address: String,
    /// The service port.
    pub port: u32,
}

impl From<ServiceEntry> for JsServiceEntry {
    fn from(e: ServiceEntry) -> Self {
        JsServiceEntry {
            address: e.address().to_string(),
            port: u32::from(e.service.port),
            node: e.node.into(),
            service: e.service.into(),
            checks: e.checks.into_iter().map(Into::into).collect(),
        }
    }
}

/// A gossip pool member.
#[napi(object)]
pub struct JsMember {
    pub name: String,
    pub addr: String,
    pub port: u32,
    pub tags: HashMap<String, String>,
    pub status: i32,
    pub status_text: String,
}

impl From<AgentMember> for JsMember {
    fn from(m: AgentMember) -> Self {
        JsMember {
            status_text: m.status_name().to_string(),
            name: m.name,
            addr: m.addr,
            port: u32::from(m.port),
            tags: map(m.tags),
            status: m.status,
        }
    }
}

/// A user event.
#[napi(object, use_nullable = true)]
pub struct JsUserEvent {
    pub id: String,
    pub name: String,
    pub payload: Option<Buffer>,
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
    pub version: u32,
    pub ltime: f64,
}

impl From<UserEvent> for JsUserEvent {
    fn from(e: UserEvent) -> Self {
        JsUserEvent {
            id: e.id,
            name: e.name,
            payload: e.payload.map(|p| Buffer::from(p.to_vec())),
            node_filter: e.node_filter,
            service_filter: e.service_filter,
            tag_filter: e.tag_filter,
            version: e.version,
            ltime: e.ltime as f64,
        }
    }
}

/// One watch delivery; exactly the field named by `kind` is set.
#[napi(object)]
pub struct JsWatchEvent {
    pub index: f64,
    /// `key`, `keyPrefix`, `service`, `checks`, `services`, `nodes` or `events`.
    pub kind: String,
    pub pair: Option<JsKvPair>,
    pub pairs: Option<Vec<JsKvPair>>,
    pub entries: Option<Vec<JsServiceEntry>>,
    pub checks: Option<Vec<JsHealthCheck>>,
    pub services: Option<HashMap<String, Vec<String>>>,
    pub nodes: Option<Vec<JsNode>>,
    pub events: Option<Vec<JsUserEvent>>,
}

impl From<WatchEvent> for JsWatchEvent {
    fn from(ev: WatchEvent) -> Self {
        let mut out = JsWatchEvent {
            index: ev.index as f64,
            kind: String::new(),
            pair: None,
            pairs: None,
            entries: None,
            checks: None,
            services: None,
            nodes: None,
            events: None,
        };
        out.kind = match ev.value {
            WatchValue::Kv(p) => {
                out.pair = p.map(Into::into);
                "key"
            }
            WatchValue::KvList(l) => {
                out.pairs = Some(l.into_iter().map(Into::into).collect());
                "keyPrefix"
            }
            WatchValue::Service(v) => {
                out.entries = Some(v.into_iter().map(Into::into).collect());
                "service"
            }
            WatchValue::Checks(v) => {
                out.checks = Some(v.into_iter().map(Into::into).collect());
                "checks"
            }
            WatchValue::Services(v) => {
                out.services = Some(v.into_iter().collect());
                "services"
            }
            WatchValue::Nodes(v) => {
                out.nodes = Some(v.into_iter().map(Into::into).collect());
                "nodes"
            }
            WatchValue::Events(v) => {
                out.events = Some(v.into_iter().map(Into::into).collect());
                "events"
            }
            // Node never starts a raw watch (the CLI's kind).
            WatchValue::Raw(_) => "raw",
        }
        .to_string();
        out
    }
}

/// A check as `index.js` passes it (built by `Check.http/tcp/grpc/ttl`).
#[napi(object)]
pub struct JsCheck {
    /// `http`, `tcp`, `grpc` or `ttl`.
    pub kind: String,
    /// URL, `host:port`, gRPC target; unused for TTL checks.
    pub target: Option<String>,
    pub ttl_ms: Option<f64>,
    pub interval_ms: Option<f64>,
    pub timeout_ms: Option<f64>,
    pub deregister_critical_after_ms: Option<f64>,
}

/// A service registration as `index.js` passes it.
#[napi(object)]
pub struct JsRegistration {
    pub name: String,
    pub id: Option<String>,
    pub address: Option<String>,
    pub port: Option<u32>,
    pub tags: Option<Vec<String>>,
    pub meta: Option<HashMap<String, String>>,
    pub checks: Option<Vec<JsCheck>>,
}

/// Milliseconds from JS as a duration, refusing negative, NaN and infinite values by name.
pub fn millis(arg: &str, ms: f64) -> consul_sdk::Result<Duration> {
    consul_sdk::duration::from_millis(arg, ms)
}

/// [`millis`] for optional values.
pub fn opt_millis(arg: &str, ms: Option<f64>) -> consul_sdk::Result<Option<Duration>> {
    ms.map(|m| millis(arg, m)).transpose()
}

/// A whole non-negative number from JS (`cas`, `flags`, ...).
pub fn whole(arg: &str, v: Option<f64>) -> consul_sdk::Result<Option<u64>> {
    match v {
        None => Ok(None),
        Some(n) if n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 => Ok(Some(n as u64)),
        Some(n) => Err(Error::invalid(arg, format!("{n} is not a non-negative integer"))),
    }
}

/// A consistency mode by name, parsed by the SDK.
pub fn consistency(c: &str) -> consul_sdk::Result<Consistency> {
    c.parse()
}

impl JsCheck {
    /// The SDK's neutral check arguments (durations are milliseconds here, seconds there).
    fn args(&self) -> CheckArgs {
        let secs = |ms: Option<f64>| ms.map(|ms| DurationArg::Secs(ms / 1000.0));
        CheckArgs {
            kind: self.kind.clone(),
            target: self.target.clone(),
            ttl: secs(self.ttl_ms),
            interval: secs(self.interval_ms),
            timeout: secs(self.timeout_ms),
            deregister_critical_after: secs(self.deregister_critical_after_ms),
        }
    }

    /// The validated check (the SDK's rules and messages).
    pub fn into_sdk(self) -> consul_sdk::Result<consul_sdk::CheckDefinition> {
        self.args().resolve()
    }
}

impl JsRegistration {
    /// The SDK registration, with every value checked by the SDK (the same rules and messages
    /// as the Python and C packages).
    pub fn into_sdk(self) -> consul_sdk::Result<ServiceRegistration> {
        RegistrationSpec {
            name: self.name,
            id: self.id,
            address: self.address,
            port: self.port.map(f64::from),
            tags: self.tags.unwrap_or_default(),
            meta: self.meta.unwrap_or_default().into_iter().collect(),
            checks: self.checks.unwrap_or_default().iter().map(JsCheck::args).collect(),
        }
        .resolve()
    }
}

/// Milliseconds from a Go duration string (`"10s"`, `"1m30s"`), parsed by the SDK: the one
/// implementation behind `index.js`'s durations.
// Called from JS only (napi registers it); rustc cannot see that use.
#[allow(dead_code)]
#[napi]
pub fn parse_duration(text: String, name: String) -> Result<f64> {
    let d = consul_sdk::duration::parse(&name, &text).map_err(js_err)?;
    Ok(d.as_secs_f64() * 1000.0)
}

/// A number of milliseconds checked by the SDK (finite, not negative); answers it unchanged.
// Called from JS only (napi registers it); rustc cannot see that use.
#[allow(dead_code)]
#[napi]
pub fn check_millis(ms: f64, name: String) -> Result<f64> {
    millis(&name, ms).map_err(js_err)?;
    Ok(ms)
}

/// Checks one check as `register` will (the SDK's rules and messages).
// Called from JS only (napi registers it); rustc cannot see that use.
#[allow(dead_code)]
#[napi]
pub fn validate_check(check: JsCheck) -> Result<()> {
    check.into_sdk().map(|_| ()).map_err(js_err)
}

/// Checks a registration as `register` will, without sending it.
// Called from JS only (napi registers it); rustc cannot see that use.
#[allow(dead_code)]
#[napi]
pub fn validate_registration(reg: JsRegistration) -> Result<()> {
    reg.into_sdk().map(|_| ()).map_err(js_err)
}

/// Checks an option by name as the SDK parses it: `kind` is `consistency`, `strategy` or
/// `check`.
// Called from JS only (napi registers it); rustc cannot see that use.
#[allow(dead_code)]
#[napi]
pub fn validate_option(kind: String, value: String) -> Result<()> {
    let r = match kind.as_str() {
        "consistency" => value.parse::<Consistency>().map(|_| ()),
        "strategy" => value.parse::<Strategy>().map(|_| ()),
        "check" => value.parse::<CheckType>().map(|_| ()),
        other => Err(Error::invalid("kind", format!("unknown option kind {other:?}"))),
    };
    r.map_err(js_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use consul_sdk::{CheckKind, ErrorCode};

    #[test]
    fn numbers_from_js_are_checked_by_name() {
        assert_eq!(millis("waitMs", 1500.0).ok(), Some(Duration::from_millis(1500)));
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let e = millis("waitMs", bad).expect_err("refused");
            assert_eq!(e.code, ErrorCode::InvalidArgument);
            assert!(e.message.starts_with("waitMs:"), "{}", e.message);
        }
        assert_eq!(whole("cas", Some(7.0)).ok(), Some(Some(7)));
        assert_eq!(whole("cas", None).ok(), Some(None));
        assert!(whole("cas", Some(1.5)).is_err() && whole("cas", Some(-1.0)).is_err());
        assert!(consistency("quorum").is_err());
    }

    #[test]
    fn registrations_are_validated() {
        let reg = |port, checks| JsRegistration {
            name: "web".into(),
            id: None,
            address: None,
            port,
            tags: None,
            meta: None,
            checks: Some(checks),
        };
        let check = |kind: &str, target: Option<&str>, ttl_ms| JsCheck {
            kind: kind.into(),
            target: target.map(Into::into),
            ttl_ms,
            interval_ms: Some(1000.0),
            timeout_ms: None,
            deregister_critical_after_ms: None,
        };
        let ok = reg(Some(80), vec![check("ttl", None, Some(10_000.0)), check("tcp", Some("127.0.0.1:80"), None)])
            .into_sdk()
            .expect("valid");
        assert_eq!(ok.port, Some(80));
        assert_eq!(ok.checks[0].kind, CheckKind::Ttl { ttl: Duration::from_secs(10) });
        let refused = |r: JsRegistration, arg: &str| {
            let e = r.into_sdk().expect_err("refused");
            assert!(e.message.starts_with(arg), "{} should name {arg}", e.message);
        };
        refused(reg(Some(70_000), vec![]), "port");
        refused(reg(None, vec![check("ttl", None, Some(0.0))]), "ttl");
        refused(reg(None, vec![check("http", None, None)]), "check");
        refused(reg(None, vec![check("script", Some("x"), None)]), "check");
    }
}
