//! What Consul's agent fills in on a service it registers locally before storing it, so the
//! local copy (and the catalog copy anti-entropy makes of it) reads as Consul's does:
//! - `agent.addServiceInternal`: an IP `Address` gives default `lan_ipv4`/`wan_ipv4` (or
//!   `lan_ipv6`/`wan_ipv6`) tagged addresses at the service's address and port, unless given;
//! - `ServiceDefinition.NodeService`: every proxy upstream without a `DestinationType` is a
//!   `service` upstream;
//! - the service manager's merge of central config (`enable_central_service_config`, on by
//!   default) for a sidecar proxy: with no config entries, a `service` upstream without a mesh
//!   gateway mode takes the proxy's own `MeshGateway.Mode`.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::state::catalog::{ServiceAddress, ServiceInstance};

/// Applies the defaults above to `service` in place (idempotent).
pub(crate) fn apply(service: &mut ServiceInstance) {
    default_tagged_addresses(service);
    let sidecar = is_sidecar_proxy(service);
    if let Some(Value::Object(proxy)) = service.ext.proxy.as_mut() {
        default_upstreams(proxy, sidecar);
    }
}

/// `net.ParseIP(address)` is an IPv4 (`To4() != nil`, IPv4-mapped IPv6 included) or IPv6 one.
fn ip_version(address: &str) -> Option<u8> {
    match address.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some(4),
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Some(4),
        IpAddr::V6(_) => Some(6),
    }
}

fn default_tagged_addresses(service: &mut ServiceInstance) {
    let keys = match ip_version(&service.address) {
        Some(4) => ["lan_ipv4", "wan_ipv4"],
        Some(_) => ["lan_ipv6", "wan_ipv6"],
        None => return,
    };
    for key in keys {
        if !service.tagged_addresses.contains_key(key) {
            let addr = ServiceAddress { address: service.address.clone(), port: service.port };
            service.tagged_addresses.insert(key.to_string(), addr);
        }
    }
}

/// `NodeService.IsSidecarProxy`: a connect proxy naming the service it fronts.
fn is_sidecar_proxy(service: &ServiceInstance) -> bool {
    let proxy = service.ext.proxy.as_ref();
    let named = |k: &str| proxy.and_then(|p| p.get(k)).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    service.kind == "connect-proxy" && (named("DestinationServiceID") || named("DestinationServiceName"))
}

fn mesh_gateway_mode(o: &Map<String, Value>) -> &str {
    o.get("MeshGateway").and_then(|m| m.get("Mode")).and_then(Value::as_str).unwrap_or_default()
}

fn default_upstreams(proxy: &mut Map<String, Value>, sidecar: bool) {
    let proxy_mode = if sidecar { mesh_gateway_mode(proxy).to_string() } else { String::new() };
    let Some(Value::Array(upstreams)) = proxy.get_mut("Upstreams") else { return };
    for upstream in upstreams.iter_mut().filter_map(Value::as_object_mut) {
        let kind = upstream.get("DestinationType").and_then(Value::as_str).unwrap_or_default();
        if kind.is_empty() {
            upstream.insert("DestinationType".into(), json!("service"));
        } else if kind != "service" {
            continue;
        }
        if !proxy_mode.is_empty() && mesh_gateway_mode(upstream).is_empty() {
            upstream.insert("MeshGateway".into(), json!({"Mode": proxy_mode}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(kind: &str, address: &str, proxy: Option<Value>) -> ServiceInstance {
        let mut s = ServiceInstance { kind: kind.into(), address: address.into(), port: 80, ..Default::default() };
        s.ext.proxy = proxy;
        s
    }

    #[test]
    fn ip_addresses_get_default_tagged_addresses() {
        let mut s = service("", "10.0.0.5", None);
        s.tagged_addresses.insert("wan_ipv4".into(), ServiceAddress { address: "1.2.3.4".into(), port: 1 });
        apply(&mut s);
        let keys: Vec<_> = s.tagged_addresses.keys().map(String::as_str).collect();
        assert_eq!(keys, ["lan_ipv4", "wan_ipv4"]);
        assert_eq!(s.tagged_addresses["lan_ipv4"], ServiceAddress { address: "10.0.0.5".into(), port: 80 });
        assert_eq!(s.tagged_addresses["wan_ipv4"].address, "1.2.3.4", "a given one is kept");
        let mut s = service("", "::1", None);
        apply(&mut s);
        assert!(s.tagged_addresses.contains_key("lan_ipv6") && s.tagged_addresses.contains_key("wan_ipv6"));
        let mut s = service("", "::ffff:10.0.0.1", None);
        apply(&mut s);
        assert!(s.tagged_addresses.contains_key("lan_ipv4"), "IPv4-mapped is IPv4 to Go");
        for host in ["", "web.example.com"] {
            let mut s = service("", host, None);
            apply(&mut s);
            assert!(s.tagged_addresses.is_empty(), "{host:?}");
        }
    }

    #[test]
    fn upstreams_default_to_service_and_inherit_the_sidecars_mesh_gateway_mode() {
        let proxy = json!({
            "DestinationServiceName": "web", "MeshGateway": {"Mode": "remote"},
            "Upstreams": [
                {"DestinationName": "db"},
                {"DestinationName": "c", "MeshGateway": {"Mode": "local"}},
                {"DestinationType": "prepared_query", "DestinationName": "q"},
            ],
        });
        let mut s = service("connect-proxy", "", Some(proxy.clone()));
        apply(&mut s);
        let ups = &s.ext.proxy.as_ref().expect("proxy")["Upstreams"];
        assert_eq!(
            ups[0],
            json!({"DestinationName": "db", "DestinationType": "service", "MeshGateway": {"Mode": "remote"}})
        );
        assert_eq!(ups[1]["MeshGateway"], json!({"Mode": "local"}));
        assert_eq!(ups[2], json!({"DestinationType": "prepared_query", "DestinationName": "q"}));
        // Not a sidecar (names no destination): only the type default.
        let mut p = proxy;
        p.as_object_mut().expect("object").remove("DestinationServiceName");
        let mut s = service("connect-proxy", "", Some(p));
        apply(&mut s);
        assert_eq!(
            s.ext.proxy.as_ref().expect("proxy")["Upstreams"][0],
            json!({"DestinationName": "db", "DestinationType": "service"})
        );
    }
}
