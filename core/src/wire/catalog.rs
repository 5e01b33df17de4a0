//! Catalog registrations as Consul's clients send them (`structs.RegisterRequest` and its
//! `Service`/`Check` parts), parsed into the state store's catalog types. Shared by
//! `/v1/catalog/register`, the agent's own registration endpoints and config files.

use super::body::{parse_object, validate_meta, Obj};
use crate::state::catalog::{
    valid_status, HealthCheck, Node, RegisterRequest, ServiceAddress, ServiceInstance, Weights, CRITICAL,
};
use crate::Error;

/// Parses a `Check` object of a catalog registration.
pub(crate) fn parse_check(o: Obj<'_>, node: &str) -> Result<HealthCheck, Error> {
    let status = match o.string(&["Status"])? {
        s if s.is_empty() => CRITICAL.to_string(),
        s if valid_status(&s) => s,
        s => return Err(Error::BadRequest(format!("Invalid check status {s:?}: use passing, warning or critical"))),
    };
    let check_id = match o.string(&["CheckID", "ID"])? {
        id if id.is_empty() => o.string(&["Name"])?,
        id => id,
    };
    if check_id.is_empty() {
        return Err(Error::BadRequest("Check: missing CheckID or Name".into()));
    }
    let definition = o.get(&["Definition"]).map(|v| v.to_string()).unwrap_or_else(|| "{}".into());
    Ok(HealthCheck {
        node: node.to_string(),
        name: match o.string(&["Name"])? {
            n if n.is_empty() => check_id.clone(),
            n => n,
        },
        check_id,
        status,
        notes: o.string(&["Notes"])?,
        output: o.string(&["Output"])?,
        service_id: o.string(&["ServiceID"])?,
        check_type: o.string(&["Type"])?,
        interval: o.string(&["Interval"])?,
        timeout: o.string(&["Timeout"])?,
        definition,
        ..HealthCheck::default()
    })
}

/// Parses the service part of a registration. `name_fields` is `["Service"]` for the catalog
/// shape and `["Name"]` for the agent shape. Multi-word fields also take their snake_case
/// spelling, as the agent endpoint and config files do.
pub(crate) fn parse_service(o: Obj<'_>, name_fields: &[&str]) -> Result<ServiceInstance, Error> {
    let name = o.string(name_fields)?;
    if name.is_empty() {
        return Err(Error::BadRequest(format!("Missing service name ({})", name_fields[0])));
    }
    let id = match o.string(&["ID"])? {
        id if id.is_empty() => name.clone(),
        id => id,
    };
    let meta = o.string_map(&["Meta"])?;
    validate_meta("Service.Meta", &meta)?;
    let port = o.int(&["Port"], 0, 65535)?.unwrap_or(0) as u16;
    let weights = match o.object(&["Weights"])? {
        None => Weights::default(),
        // The catalog shape: Consul stores weights it would not accept from the agent endpoint
        // as the defaults (`NodeService.ToServiceNode`). The Go client always sends
        // `"Weights": {"Passing": 0, "Warning": 0}` in a catalog registration.
        Some(w) if name_fields == ["Service"] => {
            let w = Obj::new(w, "Weights");
            let passing = w.int(&["Passing"], i64::MIN, i64::MAX)?.unwrap_or(0);
            let warning = w.int(&["Warning"], i64::MIN, i64::MAX)?.unwrap_or(0);
            if (1..=65535).contains(&passing) && (0..=65535).contains(&warning) {
                Weights { passing: passing as i32, warning: warning as i32 }
            } else {
                Weights::default()
            }
        }
        Some(w) => {
            let w = Obj::new(w, "Weights");
            Weights {
                passing: w.int(&["Passing"], 1, 65535)?.unwrap_or(1) as i32,
                warning: w.int(&["Warning"], 0, 65535)?.unwrap_or(1) as i32,
            }
        }
    };
    let mut tagged = std::collections::BTreeMap::new();
    if let Some(t) = o.object(&["TaggedAddresses", "tagged_addresses"])? {
        for (k, v) in t {
            let a =
                v.as_object().ok_or_else(|| Error::BadRequest(format!("TaggedAddresses.{k}: expected an object")))?;
            let a = Obj::new(a, "TaggedAddresses");
            tagged.insert(
                k.clone(),
                ServiceAddress {
                    address: a.string(&["Address"])?,
                    port: a.int(&["Port"], 0, 65535)?.unwrap_or(0) as u16,
                },
            );
        }
    }
    Ok(ServiceInstance {
        kind: o.string(&["Kind"])?,
        id,
        service: name,
        tags: o.strings(&["Tags"])?,
        address: o.string(&["Address"])?,
        port,
        meta,
        tagged_addresses: tagged,
        weights,
        enable_tag_override: o.boolean(&["EnableTagOverride", "enable_tag_override"])?,
        ..ServiceInstance::default()
    })
}

/// Parses the node part of a registration (`meta_field` is `NodeMeta` there) or a `Node` object
/// (`Meta`), stamped with `datacenter`. The name is required; indexes are left at 0.
pub(crate) fn parse_node(o: Obj<'_>, meta_field: &str, datacenter: &str) -> Result<Node, Error> {
    let node_name = o.string(&["Node"])?;
    if node_name.is_empty() {
        return Err(Error::BadRequest("Must provide node".into()));
    }
    let node_meta = o.string_map(&[meta_field])?;
    validate_meta(meta_field, &node_meta)?;
    let id = o.string(&["ID"])?;
    if !id.is_empty() && uuid::Uuid::parse_str(&id).is_err() {
        return Err(Error::BadRequest(format!("Invalid node ID {id:?}: must be a UUID")));
    }
    Ok(Node {
        id,
        node: node_name,
        address: o.string(&["Address"])?,
        datacenter: datacenter.to_string(),
        tagged_addresses: o.string_map(&["TaggedAddresses"])?,
        meta: node_meta,
        ..Node::default()
    })
}

/// Parses a catalog registration (`PUT /v1/catalog/register`).
pub(crate) fn parse_register(bytes: &[u8], datacenter: &str) -> Result<RegisterRequest, Error> {
    let map = parse_object(bytes)?;
    let o = Obj::new(&map, "");
    let node = parse_node(o, "NodeMeta", datacenter)?;
    let node_name = node.node.clone();
    let service = o.object(&["Service"])?.map(|s| parse_service(Obj::new(s, "Service"), &["Service"])).transpose()?;
    let mut checks = Vec::new();
    if let Some(c) = o.object(&["Check"])? {
        checks.push(parse_check(Obj::new(c, "Check"), &node_name)?);
    }
    for c in o.objects(&["Checks"])? {
        checks.push(parse_check(Obj::new(c, "Checks"), &node_name)?);
    }
    Ok(RegisterRequest { node, skip_node_update: o.boolean(&["SkipNodeUpdate"])?, service, checks })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights_of(service: &str) -> Result<Weights, Error> {
        let body = format!(r#"{{"Node": "n1", "Address": "192.0.2.1", "Service": {service}}}"#);
        parse_register(body.as_bytes(), "dc1").map(|r| r.service.expect("a service").weights)
    }

    /// Consul keeps valid weights of a catalog registration and stores invalid ones (the Go
    /// client's zero `{"Passing": 0, "Warning": 0}`, or none at all) as the defaults 1/1.
    #[test]
    fn catalog_weights_default_like_consuls() {
        let w = |p, w| Weights { passing: p, warning: w };
        assert_eq!(weights_of(r#"{"Service": "web"}"#).expect("valid"), w(1, 1));
        assert_eq!(
            weights_of(r#"{"Service": "web", "Weights": {"Passing": 0, "Warning": 0}}"#).expect("valid"),
            w(1, 1)
        );
        assert_eq!(
            weights_of(r#"{"Service": "web", "Weights": {"Passing": 3, "Warning": 2}}"#).expect("valid"),
            w(3, 2)
        );
        assert_eq!(weights_of(r#"{"Service": "web", "Weights": {"Passing": 5}}"#).expect("valid"), w(5, 0));
        assert_eq!(
            weights_of(r#"{"Service": "web", "Weights": {"Passing": 70000, "Warning": 1}}"#).expect("valid"),
            w(1, 1)
        );
        assert_eq!(
            weights_of(r#"{"Service": "web", "Weights": {"Passing": 2, "Warning": -1}}"#).expect("valid"),
            w(1, 1)
        );
        assert!(weights_of(r#"{"Service": "web", "Weights": {"Passing": "2"}}"#).is_err(), "not a number");
    }
}
