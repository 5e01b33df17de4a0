//! Sidecar proxies (`connect { sidecar_service {} }`, Consul's `agent/sidecar_service.go`): a
//! service registered with `Connect.SidecarService` brings a `<id>-sidecar-proxy` service of
//! kind `connect-proxy` with it, every unset field filled from the parent, a port taken from
//! the agent's sidecar range, and two default checks (the proxy listening, and an alias of
//! the parent's health). The parent keeps no trace of the nested definition (Consul renders
//! its `Connect` empty); deregistering the parent deregisters the sidecar.

use serde_json::{Map, Value};

use super::def::{parse_check, parse_service_fields, validate_kind, CheckDefinition, ServiceDefinition};
use crate::state::catalog::ServiceInstance;
use crate::wire::body::Obj;
use crate::wire::connect::{join_host_port, parse_connect, ProxyConfig, ServiceConnect, CONNECT_PROXY, SIDECAR_SUFFIX};
use crate::Error;

/// The agent's range of sidecar ports (`ports.sidecar_min_port`..=`ports.sidecar_max_port`,
/// default 21000–21255); `None` when automatic assignment is disabled (either set to 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SidecarPorts {
    /// Lowest port assigned.
    pub min: u16,
    /// Highest port assigned.
    pub max: u16,
}

impl Default for SidecarPorts {
    fn default() -> Self {
        SidecarPorts { min: 21000, max: 21255 }
    }
}

/// The ID of the sidecar of service `id`.
pub fn sidecar_id(id: &str) -> String {
    format!("{id}{SIDECAR_SUFFIX}")
}

/// The parsed `Connect` of a service, if it has one.
fn connect_of(s: &ServiceInstance) -> Option<ServiceConnect> {
    s.ext.connect.as_ref().and_then(Value::as_object).and_then(|c| parse_connect(c).ok())
}

/// Sets `key` in `m`, replacing any spelling of it (keys match ignoring case).
fn set(m: &mut Map<String, Value>, names: &[&str], value: Value) {
    m.retain(|k, _| !names.iter().any(|n| k.eq_ignore_ascii_case(n)));
    m.insert(names[0].to_string(), value);
}

/// Consul's rules for a nested sidecar definition (`ServiceDefinition.Validate`), and the
/// problems of the sidecar it builds (as a `connect-proxy`, with a placeholder port when the
/// agent would assign one). Decode errors are returned as errors, rule violations as the list.
pub(crate) fn validate_sidecar(parent: &ServiceDefinition) -> Result<Vec<String>, Error> {
    let Some(nested) = connect_of(&parent.service).and_then(|c| c.sidecar_service) else {
        return Ok(Vec::new());
    };
    let o = Obj::new(&nested, "Connect.SidecarService");
    let mut errors = Vec::new();
    if !o.string(&["ID"])?.is_empty() {
        errors.push("A SidecarService cannot specify an ID as this is managed by the agent".to_string());
    }
    let inner = o.get(&["Connect"]).and_then(Value::as_object).map(parse_connect).transpose()?;
    if inner.is_some_and(|c| c.sidecar_service.is_some()) {
        errors.push("A SidecarService cannot have a nested SidecarService".to_string());
    }
    if errors.is_empty() {
        if let Some(mut sidecar) = build(parent)? {
            if sidecar.service.port == 0 {
                sidecar.service.port = 1;
            }
            errors.extend(validate_kind(&sidecar.service));
        }
    }
    Ok(errors)
}

/// The sidecar `parent` asks for, every default filled in but the port (0 when the agent is to
/// assign one) and the default checks (the local agent adds both when it registers it); `None`
/// when it asks for none.
pub fn build(parent: &ServiceDefinition) -> Result<Option<ServiceDefinition>, Error> {
    let Some(mut nested) = connect_of(&parent.service).and_then(|c| c.sidecar_service) else {
        return Ok(None);
    };
    let p = &parent.service;
    let id = sidecar_id(&p.id);
    set(&mut nested, &["ID"], Value::String(id.clone()));
    if Obj::new(&nested, "").string(&["Name"])?.is_empty() {
        set(&mut nested, &["Name"], Value::String(format!("{}{SIDECAR_SUFFIX}", p.service)));
    }
    if Obj::new(&nested, "").string(&["Kind"])?.is_empty() {
        set(&mut nested, &["Kind"], Value::String(CONNECT_PROXY.into()));
    }
    let mut def = parse_service_fields(&Value::Object(nested)).map_err(|e| match e {
        Error::BadRequest(m) => Error::BadRequest(format!("Connect.SidecarService: {m}")),
        other => other,
    })?;
    let s = &mut def.service;
    if s.meta.is_empty() {
        s.meta = p.meta.clone();
    }
    if s.tags.is_empty() {
        s.tags = p.tags.clone();
    }
    if s.address.is_empty() {
        s.address = p.address.clone();
    }
    let mut proxy = s.ext.proxy.as_ref().and_then(ProxyConfig::from_stored).unwrap_or_default();
    if proxy.destination_service_name.is_empty() {
        proxy.destination_service_name = p.service.clone();
    }
    if proxy.destination_service_id.is_empty() {
        proxy.destination_service_id = p.id.clone();
    }
    if proxy.local_service_socket_path.is_empty()
        && (proxy.local_service_address.is_empty() || proxy.local_service_port == 0)
    {
        if !p.ext.socket_path.is_empty() {
            proxy.local_service_socket_path = p.ext.socket_path.clone();
        } else {
            if proxy.local_service_address.is_empty() {
                proxy.local_service_address = "127.0.0.1".into();
            }
            if proxy.local_service_port == 0 {
                proxy.local_service_port = p.port;
            }
        }
    }
    s.ext.proxy = Some(proxy.catalog_json());
    Ok(Some(def))
}

/// The lowest free port of `range` for sidecar `id`: the one it already has if it is in the
/// range, else one no other local service in the range uses.
pub(crate) fn assign_port<'a>(
    range: Option<SidecarPorts>,
    id: &str,
    services: impl Iterator<Item = &'a ServiceInstance>,
) -> Result<u16, Error> {
    let Some(r) = range.filter(|r| r.min > 0 && r.max > 0) else {
        return Err(Error::BadRequest(
            "no port provided for sidecar_service and auto-assignment disabled in config".into(),
        ));
    };
    let mut used = std::collections::BTreeSet::new();
    for s in services {
        if (r.min..=r.max).contains(&s.port) {
            if s.id == id {
                return Ok(s.port);
            }
            used.insert(s.port);
        }
    }
    (r.min..=r.max).find(|p| !used.contains(p)).ok_or_else(|| {
        Error::BadRequest(format!(
            "no port provided for sidecar_service and none left in the configured range [{}, {}]",
            r.min, r.max
        ))
    })
}

/// Consul's two default checks of a sidecar: a TCP dial of the proxy every 10s, and an alias
/// of the parent's health.
pub(crate) fn default_checks(sidecar: &ServiceInstance, parent_id: &str) -> Result<Vec<CheckDefinition>, Error> {
    let proxy = sidecar.ext.proxy.as_ref().and_then(ProxyConfig::from_stored).unwrap_or_default();
    let host = if sidecar.address.is_empty() { proxy.local_service_address.as_str() } else { &sidecar.address };
    let specs = [
        serde_json::json!({
            "CheckID": format!("service:{}:1", sidecar.id), "Name": "Connect Sidecar Listening",
            "TCP": join_host_port(host, sidecar.port), "Interval": "10s",
        }),
        serde_json::json!({
            "CheckID": format!("service:{}:2", sidecar.id), "Name": format!("Connect Sidecar Aliasing {parent_id}"),
            "AliasService": parent_id,
        }),
    ];
    specs
        .iter()
        .filter_map(Value::as_object)
        .map(|m| {
            let mut c = parse_check(Obj::new(m, "Check"), "", "")?;
            c.service_id = sidecar.id.clone();
            Ok(c)
        })
        .collect()
}

/// `parent` without its nested sidecar definition, as Consul stores it (a `Connect` holding
/// only `Native`, or none).
pub(crate) fn strip(parent: &mut ServiceInstance) {
    if let Some(mut c) = connect_of(parent) {
        c.sidecar_service = None;
        parent.ext.connect = if c.is_empty() { None } else { serde_json::to_value(&c).ok() };
    }
}

/// Whether `s` is the sidecar this agent registered for service `parent_id`.
pub(crate) fn is_sidecar_of(s: &ServiceInstance, parent_id: &str) -> bool {
    s.id == sidecar_id(parent_id)
        && s.kind == CONNECT_PROXY
        && s.ext
            .proxy
            .as_ref()
            .and_then(ProxyConfig::from_stored)
            .is_some_and(|p| p.destination_service_id == parent_id)
}

#[cfg(test)]
mod tests;
