//! Catalog registrations as Consul's clients send them (`structs.RegisterRequest` and its
//! `Service`/`Check` parts), parsed into the state store's catalog types. Shared by
//! `/v1/catalog/register`, the agent's own registration endpoints and config files.

use super::body::{parse_object, validate_meta, Obj};
use super::connect;
use crate::state::catalog::{
    valid_status, HealthCheck, Node, RegisterRequest, ServiceAddress, ServiceInstance, Weights, CRITICAL,
};
use crate::state::ext_fields::{Locality, NodeExt, ServiceExt};
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
        // Consul stores a catalog check's Name as given (possibly empty); only the ID falls back
        // to the name.
        name: o.string(&["Name"])?,
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
        // The agent shape (`structs.ValidateWeights`): given weights need a passing weight, and
        // a warning weight left out is 0.
        Some(w) => {
            let w = Obj::new(w, "Weights");
            let passing = w
                .int(&["Passing"], 1, 65535)?
                .ok_or_else(|| Error::BadRequest("Invalid Weights: Passing must be greater than 0".into()))?;
            Weights { passing: passing as i32, warning: w.int(&["Warning"], 0, 65535)?.unwrap_or(0) as i32 }
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
        ext: parse_service_ext(o)?,
        ..ServiceInstance::default()
    })
}

/// The service fields kept beside the original encoding (see [`crate::state::ext_fields`]):
/// `Locality`, `SocketPath`, and `Proxy`/`Connect` decoded ([`super::connect`]) and kept in
/// Consul's catalog shape (`Connect` only when not empty).
fn parse_service_ext(o: Obj<'_>) -> Result<ServiceExt, Error> {
    let locality = parse_locality(o)?;
    let single = |names: &[&str]| match o.get(names) {
        Some(serde_json::Value::Array(a)) if a.len() == 1 && a[0].is_object() => Ok(a[0].as_object()),
        _ => o.object(names),
    };
    let proxy = single(&["Proxy"])?.map(connect::parse_proxy).transpose()?.map(|p| p.catalog_json());
    let connect = match single(&["Connect"])?.map(connect::parse_connect).transpose()? {
        Some(c) if !c.is_empty() => serde_json::to_value(&c).ok(),
        _ => None,
    };
    Ok(ServiceExt { locality, socket_path: o.string(&["SocketPath", "socket_path"])?, proxy, connect })
}

/// The check type a `Definition` implies, in the order Consul's `CheckType.Type()` tests them
/// (`""` when nothing identifies it).
fn type_from_definition(definition: &str) -> &'static str {
    let Ok(serde_json::Value::Object(d)) = serde_json::from_str::<serde_json::Value>(definition) else {
        return "";
    };
    let d = Obj::new(&d, "Definition");
    let has = |name: &str| match d.get(&[name]) {
        Some(serde_json::Value::String(s)) => !s.is_empty(),
        Some(serde_json::Value::Array(a)) => !a.is_empty(),
        Some(serde_json::Value::Number(n)) => n.as_f64().is_some_and(|n| n != 0.0),
        _ => false,
    };
    if has("GRPC") {
        "grpc"
    } else if has("HTTP") {
        "http"
    } else if has("TTL") {
        "ttl"
    } else if has("TCP") {
        "tcp"
    } else if has("UDP") {
        "udp"
    } else if has("AliasNode") || has("AliasService") {
        "alias"
    } else if has("Metrics") {
        "metrics"
    } else if has("DockerContainerID") && has("ScriptArgs") {
        "docker"
    } else if has("ScriptArgs") {
        "script"
    } else if has("H2PING") {
        "h2ping"
    } else if has("OSService") {
        "os_service"
    } else {
        ""
    }
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
        ext: NodeExt { locality: parse_locality(o)? },
        ..Node::default()
    })
}

/// A `Locality` object (`None` when absent).
fn parse_locality(o: Obj<'_>) -> Result<Option<Locality>, Error> {
    o.object(&["Locality"])?
        .map(|l| {
            let l = Obj::new(l, "Locality");
            Ok(Locality { region: l.string(&["Region"])?, zone: l.string(&["Zone"])? })
        })
        .transpose()
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
    // Consul's catalog endpoint fills in the type of a check registered directly (not through
    // an agent) from its definition.
    for check in &mut checks {
        if check.check_type.is_empty() {
            check.check_type = type_from_definition(&check.definition).to_string();
        }
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

    #[test]
    fn catalog_checks_keep_their_name_and_get_a_type() {
        let body = r#"{"Node": "n1", "Address": "192.0.2.1", "Checks": [
            {"CheckID": "a", "Definition": {"TCP": "1.1.1.1:80"}},
            {"CheckID": "b", "Type": "custom", "Definition": {"HTTP": "http://x"}},
            {"Name": "c", "Definition": {}}]}"#;
        let checks = parse_register(body.as_bytes(), "dc1").expect("valid").checks;
        let got: Vec<_> =
            checks.iter().map(|c| (c.check_id.as_str(), c.name.as_str(), c.check_type.as_str())).collect();
        assert_eq!(got, vec![("a", "", "tcp"), ("b", "", "custom"), ("c", "c", "")]);
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
