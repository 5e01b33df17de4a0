//! A service's `Proxy` (`structs.ConnectProxyConfig`) and `Connect` (`structs.ServiceConnect`)
//! decoded as Consul decodes them, validated as `NodeService.Validate` validates a
//! `connect-proxy`, and written back in the two shapes Consul answers with: the catalog's
//! (`structs`, [`ProxyConfig::catalog_json`]) and the agent endpoints' (`api.AgentService`,
//! [`ProxyConfig::agent_json`]).
//!
//! Field names match ignoring case, and each multi-word field also takes the snake_case
//! spelling Consul's decode hooks and config files accept (`destination_service_name`, ...).
//! The opaque `Config` maps (of the proxy and of each upstream) keep their keys as given: they
//! belong to the proxy implementation, not to Consul.
//!
//! The normalized catalog shape is what the state store keeps in
//! [`ServiceExt::proxy`](crate::state::ext_fields::ServiceExt) and
//! [`ServiceExt::connect`](crate::state::ext_fields::ServiceExt); values written before it
//! (kept as registered) are decoded again when rendered.

use serde::Serialize;
use serde_json::{Map, Value};

use super::body::Obj;
use crate::Error;

/// The `Kind` of a connect proxy.
pub const CONNECT_PROXY: &str = "connect-proxy";

/// The suffix of a sidecar's service name and ID (`structs.SidecarProxySuffix`).
pub const SIDECAR_SUFFIX: &str = "-sidecar-proxy";

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

/// `MeshGatewayConfig`: how a proxy reaches other datacenters (`Mode` empty: the default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MeshGateway {
    /// `local`, `remote`, `none` or empty (kept as given: Consul does not check it here).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

/// `TransparentProxyConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TransparentProxy {
    /// Port of the outbound listener traffic is redirected to.
    #[serde(skip_serializing_if = "is_zero")]
    pub outbound_listener_port: u16,
    /// Whether the proxy's address may be dialed directly.
    #[serde(skip_serializing_if = "is_false")]
    pub dialed_directly: bool,
}

/// `AccessLogsConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccessLogs {
    /// Whether access logs are written.
    #[serde(rename = "Enabled", skip_serializing_if = "is_false")]
    pub enabled: bool,
    /// Whether listener (connection) logs are left out.
    #[serde(rename = "DisableListenerLogs", skip_serializing_if = "is_false")]
    pub disable_listener_logs: bool,
    /// `stdout`, `stderr` or `file`.
    #[serde(rename = "Type", skip_serializing_if = "String::is_empty")]
    pub log_type: String,
    /// The file of type `file`.
    #[serde(rename = "Path", skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// A JSON format string.
    #[serde(rename = "JSONFormat", skip_serializing_if = "String::is_empty")]
    pub json_format: String,
    /// A text format string.
    #[serde(rename = "TextFormat", skip_serializing_if = "String::is_empty")]
    pub text_format: String,
}

/// One `Expose.Paths` entry: an HTTP path of the local service the proxy exposes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExposePath {
    /// Port the proxy listens on for it.
    #[serde(skip_serializing_if = "is_zero")]
    pub listener_port: u16,
    /// The HTTP path.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// The local service's port serving it.
    #[serde(skip_serializing_if = "is_zero")]
    pub local_path_port: u16,
    /// `http` or `http2` (empty: http).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Whether the agent derived it from a check (`Expose.Checks`).
    #[serde(skip_serializing_if = "is_false")]
    pub parsed_from_check: bool,
}

/// `ExposeConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Expose {
    /// Expose the service's HTTP and gRPC checks through the proxy.
    #[serde(skip_serializing_if = "is_false")]
    pub checks: bool,
    /// Paths exposed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<ExposePath>,
}

/// `Upstream`: a service (or prepared query) the proxy makes reachable on a local listener.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Upstream {
    /// `service` (the agent's default) or `prepared_query`.
    pub destination_type: String,
    /// Namespace (Enterprise).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_namespace: String,
    /// Partition (Enterprise).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_partition: String,
    /// Cluster peer.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_peer: String,
    /// The service or prepared query.
    pub destination_name: String,
    /// Its datacenter (empty: the local one).
    pub datacenter: String,
    /// Address of the local listener (empty: 127.0.0.1).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_bind_address: String,
    /// Port of the local listener.
    #[serde(skip_serializing_if = "is_zero")]
    pub local_bind_port: u16,
    /// A unix socket instead of a port.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_bind_socket_path: String,
    /// The socket's file mode.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_bind_socket_mode: String,
    /// Opaque configuration of the proxy implementation, keys as given.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
    /// Mesh gateway mode for this upstream.
    pub mesh_gateway: MeshGateway,
    /// Whether it came from central configuration rather than the registration.
    #[serde(skip_serializing_if = "is_false")]
    pub centrally_configured: bool,
}

/// `ConnectProxyConfig`: what a `connect-proxy` service proxies and how.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProxyConfig {
    /// The name of the service it proxies for (required of a connect proxy).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_service_name: String,
    /// The ID of the local instance it proxies for.
    #[serde(rename = "DestinationServiceID", skip_serializing_if = "String::is_empty")]
    pub destination_service_id: String,
    /// Address of that instance.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_service_address: String,
    /// Port of that instance.
    #[serde(skip_serializing_if = "is_zero")]
    pub local_service_port: u16,
    /// Unix socket of that instance.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_service_socket_path: String,
    /// `transparent`, `direct` or empty (kept as given).
    pub mode: String,
    /// Transparent proxy settings (rendered only when set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transparent_proxy: Option<TransparentProxy>,
    /// Opaque configuration of the proxy implementation, keys as given.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
    /// What the proxy makes reachable locally.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<Upstream>,
    /// Mesh gateway mode.
    pub mesh_gateway: MeshGateway,
    /// Paths exposed without mTLS.
    pub expose: Expose,
    /// Access logs (rendered only when set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_logs: Option<AccessLogs>,
}

/// `ServiceConnect` of a service: Connect-native, or a sidecar to register beside it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceConnect {
    /// The service speaks Connect itself.
    #[serde(skip_serializing_if = "is_false")]
    pub native: bool,
    /// The sidecar's definition (a service registration whose fields all have defaults), as
    /// given; the local agent turns it into a `<id>-sidecar-proxy` service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sidecar_service: Option<Map<String, Value>>,
}

impl ServiceConnect {
    /// Whether nothing is set (Consul renders `{}` in the catalog and nothing on the agent).
    pub fn is_empty(&self) -> bool {
        !self.native && self.sidecar_service.is_none()
    }
}

/// A nested object; a config file's HCL block may arrive as a one-element list of objects.
fn nested<'a>(o: Obj<'a>, names: &[&str]) -> Result<Option<&'a Map<String, Value>>, Error> {
    match o.get(names) {
        Some(Value::Array(items)) if items.len() == 1 && items[0].is_object() => Ok(items[0].as_object()),
        _ => o.object(names),
    }
}

/// A list of objects; a config file's repeated HCL block arrives as such a list, a single one
/// possibly as an object.
fn nested_list<'a>(o: Obj<'a>, names: &[&str]) -> Result<Vec<&'a Map<String, Value>>, Error> {
    match o.get(names) {
        Some(Value::Object(m)) => Ok(vec![m]),
        _ => o.objects(names),
    }
}

fn port(o: Obj<'_>, names: &[&str]) -> Result<u16, Error> {
    Ok(o.int(names, 0, 65535)?.unwrap_or(0) as u16)
}

fn mesh_gateway(o: Obj<'_>) -> Result<MeshGateway, Error> {
    Ok(match nested(o, &["MeshGateway", "mesh_gateway"])? {
        Some(m) => MeshGateway { mode: Obj::new(m, "MeshGateway").string(&["Mode"])? },
        None => MeshGateway::default(),
    })
}

fn opaque(o: Obj<'_>) -> Result<Map<String, Value>, Error> {
    Ok(nested(o, &["Config"])?.cloned().unwrap_or_default())
}

/// Decodes a `Proxy` object.
pub fn parse_proxy(m: &Map<String, Value>) -> Result<ProxyConfig, Error> {
    let o = Obj::new(m, "Proxy");
    let transparent_proxy = nested(o, &["TransparentProxy", "transparent_proxy"])?
        .map(|t| {
            let t = Obj::new(t, "Proxy.TransparentProxy");
            Ok::<_, Error>(TransparentProxy {
                outbound_listener_port: port(t, &["OutboundListenerPort", "outbound_listener_port"])?,
                dialed_directly: t.boolean(&["DialedDirectly", "dialed_directly"])?,
            })
        })
        .transpose()?
        .filter(|t| *t != TransparentProxy::default());
    let access_logs = nested(o, &["AccessLogs", "access_logs"])?
        .map(|a| {
            let a = Obj::new(a, "Proxy.AccessLogs");
            Ok::<_, Error>(AccessLogs {
                enabled: a.boolean(&["Enabled"])?,
                disable_listener_logs: a.boolean(&["DisableListenerLogs", "disable_listener_logs"])?,
                log_type: a.string(&["Type"])?,
                path: a.string(&["Path"])?,
                json_format: a.string(&["JSONFormat", "json_format"])?,
                text_format: a.string(&["TextFormat", "text_format"])?,
            })
        })
        .transpose()?
        .filter(|a| *a != AccessLogs::default());
    let expose = match nested(o, &["Expose"])? {
        None => Expose::default(),
        Some(e) => {
            let e = Obj::new(e, "Proxy.Expose");
            let paths = nested_list(e, &["Paths"])?
                .into_iter()
                .map(|p| {
                    let p = Obj::new(p, "Proxy.Expose.Paths");
                    Ok(ExposePath {
                        listener_port: port(p, &["ListenerPort", "listener_port"])?,
                        path: p.string(&["Path"])?,
                        local_path_port: port(p, &["LocalPathPort", "local_path_port"])?,
                        protocol: p.string(&["Protocol"])?,
                        parsed_from_check: p.boolean(&["ParsedFromCheck", "parsed_from_check"])?,
                    })
                })
                .collect::<Result<_, Error>>()?;
            Expose { checks: e.boolean(&["Checks"])?, paths }
        }
    };
    let upstreams = nested_list(o, &["Upstreams"])?
        .into_iter()
        .map(|u| parse_upstream(Obj::new(u, "Proxy.Upstreams")))
        .collect::<Result<_, Error>>()?;
    Ok(ProxyConfig {
        destination_service_name: o.string(&["DestinationServiceName", "destination_service_name"])?,
        destination_service_id: o.string(&["DestinationServiceID", "destination_service_id"])?,
        local_service_address: o.string(&["LocalServiceAddress", "local_service_address"])?,
        local_service_port: port(o, &["LocalServicePort", "local_service_port"])?,
        local_service_socket_path: o.string(&["LocalServiceSocketPath", "local_service_socket_path"])?,
        mode: o.string(&["Mode"])?,
        transparent_proxy,
        config: opaque(o)?,
        upstreams,
        mesh_gateway: mesh_gateway(o)?,
        expose,
        access_logs,
    })
}

fn parse_upstream(u: Obj<'_>) -> Result<Upstream, Error> {
    Ok(Upstream {
        destination_type: u.string(&["DestinationType", "destination_type"])?,
        destination_namespace: u.string(&["DestinationNamespace", "destination_namespace"])?,
        destination_partition: u.string(&["DestinationPartition", "destination_partition"])?,
        destination_peer: u.string(&["DestinationPeer", "destination_peer"])?,
        destination_name: u.string(&["DestinationName", "destination_name"])?,
        datacenter: u.string(&["Datacenter"])?,
        local_bind_address: u.string(&["LocalBindAddress", "local_bind_address"])?,
        local_bind_port: port(u, &["LocalBindPort", "local_bind_port"])?,
        local_bind_socket_path: u.string(&["LocalBindSocketPath", "local_bind_socket_path"])?,
        local_bind_socket_mode: u.string(&["LocalBindSocketMode", "local_bind_socket_mode"])?,
        config: opaque(u)?,
        mesh_gateway: mesh_gateway(u)?,
        centrally_configured: u.boolean(&["CentrallyConfigured", "centrally_configured"])?,
    })
}

/// Decodes a `Connect` object.
pub fn parse_connect(m: &Map<String, Value>) -> Result<ServiceConnect, Error> {
    let o = Obj::new(m, "Connect");
    Ok(ServiceConnect {
        native: o.boolean(&["Native"])?,
        sidecar_service: nested(o, &["SidecarService", "sidecar_service"])?.cloned(),
    })
}

/// The agent's defaults for a registered proxy (applied when the agent adds it to its local
/// state, as Consul's agent does): upstreams are of type `service` unless given.
pub fn agent_defaults(p: &mut ProxyConfig) {
    for u in &mut p.upstreams {
        if u.destination_type.is_empty() {
            u.destination_type = "service".into();
        }
    }
}

/// Consul's merge of a sidecar proxy's configuration with the (absent) central defaults
/// (`configentry.MergeServiceConfig`): a `service` upstream without a mesh gateway mode takes
/// the proxy's. Only sidecars (proxies naming the service they front) are merged, and other
/// upstream types (`prepared_query`) are left alone.
pub fn merge_defaults(p: &mut ProxyConfig) {
    if p.destination_service_name.is_empty() && p.destination_service_id.is_empty() {
        return;
    }
    let mode = p.mesh_gateway.mode.clone();
    for u in &mut p.upstreams {
        if !matches!(u.destination_type.as_str(), "" | "service") {
            continue;
        }
        if u.mesh_gateway.mode.is_empty() {
            u.mesh_gateway.mode = mode.clone();
        }
    }
}

impl ProxyConfig {
    /// Decodes a stored `Proxy` (normalized or, if written before normalization, as
    /// registered); `None` if it cannot be read.
    pub fn from_stored(v: &Value) -> Option<ProxyConfig> {
        v.as_object().and_then(|m| parse_proxy(m).ok())
    }

    /// The `structs.ConnectProxyConfig` shape: the catalog's `ServiceProxy`, the health
    /// endpoint's `Service.Proxy`, and what the state store keeps.
    pub fn catalog_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| Value::Object(Map::new()))
    }

    /// The `api.AgentServiceConnectProxyConfig` shape of `/v1/agent/service(s)`: `Mode`,
    /// an upstream's `DestinationType` and `Datacenter` only when set, no
    /// `CentrallyConfigured`, and every exposed path with its `ParsedFromCheck`.
    pub fn agent_json(&self) -> Value {
        let mut v = self.catalog_json();
        let Some(m) = v.as_object_mut() else { return v };
        if self.mode.is_empty() {
            m.remove("Mode");
        }
        if let Some(Value::Array(ups)) = m.get_mut("Upstreams") {
            for u in ups.iter_mut().filter_map(Value::as_object_mut) {
                u.remove("CentrallyConfigured");
                for key in ["DestinationType", "Datacenter"] {
                    if u.get(key).and_then(Value::as_str) == Some("") {
                        u.remove(key);
                    }
                }
            }
        }
        if let Some(Value::Array(paths)) = m.get_mut("Expose").and_then(|e| e.get_mut("Paths")) {
            for p in paths.iter_mut().filter_map(Value::as_object_mut) {
                p.entry("ParsedFromCheck").or_insert(Value::Bool(false));
            }
        }
        v
    }
}

/// How a stored `Proxy` renders: in the agent's or the catalog's shape; a value that cannot be
/// decoded renders as stored.
pub fn render_proxy(stored: &Value, agent: bool) -> Value {
    match ProxyConfig::from_stored(stored) {
        Some(p) if agent => p.agent_json(),
        Some(p) => p.catalog_json(),
        None => stored.clone(),
    }
}

/// How a stored `Connect` renders (`None`: nothing to render, Consul's empty `Connect`).
pub fn render_connect(stored: &Value) -> Option<Value> {
    match stored.as_object().map(parse_connect) {
        Some(Ok(c)) if c.is_empty() => None,
        Some(Ok(c)) => serde_json::to_value(&c).ok(),
        _ => Some(stored.clone()),
    }
}

/// Consul's validation of a `connect-proxy` registration (`NodeService.Validate`): every
/// problem, in Consul's words. `port` and `socket_path` are the service's own.
pub fn validate_connect_proxy(
    proxy: Option<&ProxyConfig>,
    connect: Option<&ServiceConnect>,
    port: u16,
    socket_path: &str,
) -> Vec<String> {
    let mut errors = Vec::new();
    let empty = ProxyConfig::default();
    let p = proxy.unwrap_or(&empty);
    if p.destination_service_name.trim().is_empty() {
        errors.push("Proxy.DestinationServiceName must be non-empty for Connect proxy services".to_string());
    }
    if p.destination_service_name == "*" {
        errors.push("Proxy.DestinationServiceName must not be a wildcard for Connect proxy services".to_string());
    }
    if port == 0 && socket_path.is_empty() {
        errors.push("Port or SocketPath must be set for a connect-proxy".to_string());
    }
    if connect.is_some_and(|c| c.native) {
        errors.push("A Proxy cannot also be Connect Native, only typical services".to_string());
    }
    let mut bound = std::collections::BTreeSet::new();
    for u in &p.upstreams {
        if !matches!(u.destination_type.as_str(), "" | "service" | "prepared_query") {
            errors.push(format!("unknown upstream destination type: {:?}", u.destination_type));
        }
        if u.destination_name.is_empty() {
            errors.push("upstream destination name cannot be empty".to_string());
        }
        if u.destination_name == "*" && !u.centrally_configured {
            errors.push("upstream destination name cannot be a wildcard".to_string());
        }
        if u.local_bind_port == 0 && u.local_bind_socket_path.is_empty() && !u.centrally_configured {
            errors.push("upstream local bind port or local socket path must be defined and nonzero".to_string());
        }
        if u.local_bind_port != 0 && !u.local_bind_socket_path.is_empty() {
            errors.push("only one of upstream local bind port or local socket path can be defined and nonzero".into());
        }
        if u.centrally_configured {
            continue;
        }
        let addr = if !u.local_bind_socket_path.is_empty() {
            u.local_bind_socket_path.clone()
        } else {
            let host = if u.local_bind_address.is_empty() { "127.0.0.1" } else { &u.local_bind_address };
            join_host_port(host, u.local_bind_port)
        };
        if !bound.insert(addr.clone()) {
            errors.push(format!(
                "upstreams cannot contain duplicates by local bind address and port or unix path; {addr:?} is \
                 specified twice"
            ));
        }
    }
    for path in &p.expose.paths {
        if !matches!(path.protocol.as_str(), "" | "http" | "http2") {
            errors.push(format!(
                "protocol '{}' not supported for path: {}, must be in: [http http2]",
                path.protocol, path.path
            ));
        }
    }
    errors
}

/// `host:port`, with IPv6 addresses in brackets (Go's `net.JoinHostPort`).
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Consul's message for validation problems (`Validation failed: ` and a `multierror` list);
/// `None` when there are none.
pub fn validation_error(errors: &[String]) -> Option<Error> {
    if errors.is_empty() {
        return None;
    }
    let head =
        if errors.len() == 1 { "1 error occurred:".to_string() } else { format!("{} errors occurred:", errors.len()) };
    let list: String = errors.iter().map(|e| format!("\t* {e}\n")).collect();
    Some(Error::BadRequest(format!("Validation failed: {head}\n{list}\n")))
}

#[cfg(test)]
mod tests;
