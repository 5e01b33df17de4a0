//! What Consul's agent fills in on a service it registers locally before storing it, so the
//! local copy (and the catalog copy anti-entropy makes of it) reads as Consul's does
//! (`agent.addServiceInternal`): an IP `Address` gives default `lan_ipv4`/`wan_ipv4` (or
//! `lan_ipv6`/`wan_ipv6`) tagged addresses at the service's address and port, unless given.
//! A proxy's defaults (upstream types, the sidecar's mesh gateway mode) are applied where it is
//! decoded: [`crate::wire::connect::agent_defaults`] and [`crate::wire::connect::merge_defaults`].

use std::net::IpAddr;

use crate::state::catalog::{ServiceAddress, ServiceInstance};

/// Applies the defaults above to `service` in place (idempotent).
pub(crate) fn apply(service: &mut ServiceInstance) {
    default_tagged_addresses(service);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn service(address: &str) -> ServiceInstance {
        ServiceInstance { address: address.into(), port: 80, ..Default::default() }
    }

    #[test]
    fn ip_addresses_get_default_tagged_addresses() {
        let mut s = service("10.0.0.5");
        s.tagged_addresses.insert("wan_ipv4".into(), ServiceAddress { address: "1.2.3.4".into(), port: 1 });
        apply(&mut s);
        let keys: Vec<_> = s.tagged_addresses.keys().map(String::as_str).collect();
        assert_eq!(keys, ["lan_ipv4", "wan_ipv4"]);
        assert_eq!(s.tagged_addresses["lan_ipv4"], ServiceAddress { address: "10.0.0.5".into(), port: 80 });
        assert_eq!(s.tagged_addresses["wan_ipv4"].address, "1.2.3.4", "a given one is kept");
        let mut s = service("::1");
        apply(&mut s);
        assert!(s.tagged_addresses.contains_key("lan_ipv6") && s.tagged_addresses.contains_key("wan_ipv6"));
        let mut s = service("::ffff:10.0.0.1");
        apply(&mut s);
        assert!(s.tagged_addresses.contains_key("lan_ipv4"), "IPv4-mapped is IPv4 to Go");
        for host in ["", "web.example.com"] {
            let mut s = service(host);
            apply(&mut s);
            assert!(s.tagged_addresses.is_empty(), "{host:?}");
        }
    }
}
