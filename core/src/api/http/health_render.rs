//! `/v1/health/service` answers serialized straight from the state store.
//!
//! Why: the general path builds a `serde_json::Value` tree per entry (node, service, checks) and
//! then serializes it. For a service with 1,000 instances that is tens of thousands of small
//! allocations per request, most of the query's time. These borrowed views write the same bytes
//! without building it; a `?filter=` reads only the fields it names (their projection).
//!
//! Same bytes, not just the same JSON: `serde_json`'s maps sort their keys, so every view below
//! declares its fields in sorted order, and the tests compare the two renderings byte for byte.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::filter::{project, Filter};
use crate::state::catalog::{HealthCheck, Node, ServiceAddress, ServiceInstance, Weights};
use crate::state::ext_fields::Locality;

/// An empty object (`{}`).
#[derive(Serialize)]
struct Empty {}

/// `structs.Node` as health entries show it (see `catalog::node_json`).
#[derive(Serialize)]
struct NodeView<'a> {
    #[serde(rename = "Address")]
    address: &'a str,
    #[serde(rename = "CreateIndex")]
    create_index: u64,
    #[serde(rename = "Datacenter")]
    datacenter: &'a str,
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "Locality", skip_serializing_if = "Option::is_none")]
    locality: Option<&'a Locality>,
    #[serde(rename = "Meta")]
    meta: &'a BTreeMap<String, String>,
    #[serde(rename = "ModifyIndex")]
    modify_index: u64,
    #[serde(rename = "Node")]
    node: &'a str,
    #[serde(rename = "TaggedAddresses")]
    tagged_addresses: &'a BTreeMap<String, String>,
}

impl<'a> NodeView<'a> {
    fn of(n: &'a Node) -> Self {
        NodeView {
            address: &n.address,
            create_index: n.create_index,
            datacenter: &n.datacenter,
            id: &n.id,
            locality: n.ext.locality.as_ref(),
            meta: &n.meta,
            modify_index: n.modify_index,
            node: &n.node,
            tagged_addresses: &n.tagged_addresses,
        }
    }
}

/// A service's tagged address.
#[derive(Serialize)]
struct AddressView<'a> {
    #[serde(rename = "Address")]
    address: &'a str,
    #[serde(rename = "Port")]
    port: u16,
}

/// Tagged addresses, keyed as stored.
struct TaggedView<'a>(&'a BTreeMap<String, ServiceAddress>);

impl Serialize for TaggedView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, a)| (k, AddressView { address: &a.address, port: a.port })))
    }
}

#[derive(Serialize)]
struct WeightsView {
    #[serde(rename = "Passing")]
    passing: i32,
    #[serde(rename = "Warning")]
    warning: i32,
}

/// The proxy configuration Consul always encodes for a service without one.
#[derive(Serialize)]
struct EmptyProxy {
    #[serde(rename = "Expose")]
    expose: Empty,
    #[serde(rename = "MeshGateway")]
    mesh_gateway: Empty,
    #[serde(rename = "Mode")]
    mode: &'static str,
}

/// A rare part (a proxy or Connect block) rendered by the general path, or its empty default.
#[derive(Serialize)]
#[serde(untagged)]
enum PartView<D> {
    Set(Value),
    Default(D),
}

/// `structs.NodeService` (see `catalog::node_service_json`).
#[derive(Serialize)]
struct ServiceView<'a> {
    #[serde(rename = "Address")]
    address: &'a str,
    #[serde(rename = "Connect")]
    connect: PartView<Empty>,
    #[serde(rename = "CreateIndex")]
    create_index: u64,
    #[serde(rename = "Datacenter")]
    datacenter: &'a str,
    #[serde(rename = "EnableTagOverride")]
    enable_tag_override: bool,
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "Kind")]
    kind: &'a str,
    #[serde(rename = "Locality", skip_serializing_if = "Option::is_none")]
    locality: Option<&'a Locality>,
    #[serde(rename = "Meta")]
    meta: &'a BTreeMap<String, String>,
    #[serde(rename = "ModifyIndex")]
    modify_index: u64,
    #[serde(rename = "Port")]
    port: u16,
    #[serde(rename = "Proxy")]
    proxy: PartView<EmptyProxy>,
    #[serde(rename = "Service")]
    service: &'a str,
    #[serde(rename = "SocketPath", skip_serializing_if = "str::is_empty")]
    socket_path: &'a str,
    #[serde(rename = "TaggedAddresses")]
    tagged_addresses: TaggedView<'a>,
    #[serde(rename = "Tags")]
    tags: &'a [String],
    #[serde(rename = "Weights")]
    weights: WeightsView,
}

impl<'a> ServiceView<'a> {
    fn of(s: &'a ServiceInstance, datacenter: &'a str) -> Self {
        let Weights { passing, warning } = s.weights;
        let proxy = match &s.ext.proxy {
            Some(p) => PartView::Set(crate::wire::connect::render_proxy(p, false)),
            None => PartView::Default(EmptyProxy { expose: Empty {}, mesh_gateway: Empty {}, mode: "" }),
        };
        let connect = match s.ext.connect.as_ref().and_then(crate::wire::connect::render_connect) {
            Some(c) => PartView::Set(c),
            None => PartView::Default(Empty {}),
        };
        ServiceView {
            address: &s.address,
            connect,
            create_index: s.create_index,
            datacenter,
            enable_tag_override: s.enable_tag_override,
            id: &s.id,
            kind: &s.kind,
            locality: s.ext.locality.as_ref(),
            meta: &s.meta,
            modify_index: s.modify_index,
            port: s.port,
            proxy,
            service: &s.service,
            socket_path: &s.ext.socket_path,
            tagged_addresses: TaggedView(&s.tagged_addresses),
            tags: &s.tags,
            weights: WeightsView { passing, warning },
        }
    }
}

/// A check's stored definition (JSON text), parsed only when written: a filter that does not
/// read it never pays for the parse. As in `catalog::check_json`, unreadable text is `{}`.
enum DefinitionView<'a> {
    Text(&'a str),
    Parsed(Value),
}

impl Serialize for DefinitionView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DefinitionView::Text(text) => parse_definition(text).serialize(s),
            DefinitionView::Parsed(v) => v.serialize(s),
        }
    }
}

fn parse_definition(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::Object(Default::default()))
}

/// `structs.HealthCheck` (see `catalog::check_json`): the definition's keys come out sorted, as
/// parsed, and a measured latency is lifted out of it to the top level.
#[derive(Serialize)]
struct CheckView<'a> {
    #[serde(rename = "CheckID")]
    check_id: &'a str,
    #[serde(rename = "CreateIndex")]
    create_index: u64,
    #[serde(rename = "Definition")]
    definition: DefinitionView<'a>,
    #[serde(rename = "ExposedPort")]
    exposed_port: u16,
    #[serde(rename = "Interval")]
    interval: &'a str,
    #[serde(rename = "Latency", skip_serializing_if = "Option::is_none")]
    latency: Option<Value>,
    #[serde(rename = "ModifyIndex")]
    modify_index: u64,
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Node")]
    node: &'a str,
    #[serde(rename = "Notes")]
    notes: &'a str,
    #[serde(rename = "Output")]
    output: &'a str,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
    #[serde(rename = "ServiceName")]
    service_name: &'a str,
    #[serde(rename = "ServiceTags")]
    service_tags: &'a [String],
    #[serde(rename = "Status")]
    status: &'a str,
    #[serde(rename = "Timeout")]
    timeout: &'a str,
    #[serde(rename = "Type")]
    check_type: &'a str,
}

impl<'a> CheckView<'a> {
    fn of(c: &'a HealthCheck) -> Self {
        // Only a definition that may hold a measured latency is parsed up front (to lift it out);
        // the text cannot hold the key without holding its name.
        let (definition, latency) = if c.definition.contains(crate::state::catalog::MEASURED_LATENCY) {
            let mut parsed = parse_definition(&c.definition);
            let latency = parsed.as_object_mut().and_then(|d| d.remove(crate::state::catalog::MEASURED_LATENCY));
            (DefinitionView::Parsed(parsed), latency)
        } else {
            (DefinitionView::Text(&c.definition), None)
        };
        CheckView {
            check_id: &c.check_id,
            create_index: c.create_index,
            definition,
            exposed_port: 0,
            interval: &c.interval,
            latency,
            modify_index: c.modify_index,
            name: &c.name,
            node: &c.node,
            notes: &c.notes,
            output: &c.output,
            service_id: &c.service_id,
            service_name: &c.service_name,
            service_tags: &c.service_tags,
            status: &c.status,
            timeout: &c.timeout,
            check_type: &c.check_type,
        }
    }
}

/// One `ServiceEntry`.
#[derive(Serialize)]
struct EntryView<'a> {
    #[serde(rename = "Checks")]
    checks: Vec<CheckView<'a>>,
    #[serde(rename = "Node")]
    node: NodeView<'a>,
    #[serde(rename = "Service")]
    service: ServiceView<'a>,
}

impl<'a> EntryView<'a> {
    fn of(n: &'a Node, s: &'a ServiceInstance, checks: &[&'a HealthCheck], datacenter: &'a str) -> Self {
        EntryView {
            checks: checks.iter().map(|c| CheckView::of(c)).collect(),
            node: NodeView::of(n),
            service: ServiceView::of(s, datacenter),
        }
    }
}

/// One health entry: an instance, its node, and its checks (node checks included).
pub(super) type Entry<'a> = (&'a Node, &'a ServiceInstance, Vec<&'a HealthCheck>);

/// `[ServiceEntry]` of entries (already filtered, sorted, and with only visible checks).
struct EntriesView<'e, 'a> {
    entries: &'e [Entry<'a>],
    datacenter: &'e str,
}

impl Serialize for EntriesView<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.entries.iter().map(|(n, s, checks)| EntryView::of(n, s, checks, self.datacenter)))
    }
}

/// The answer's bytes for `entries` (already filtered, sorted, and with only visible checks):
/// what encoding the general path's `Value` gave, `?pretty` included.
pub(super) fn entries_json(entries: &[Entry<'_>], datacenter: &str, pretty: bool) -> serde_json::Result<Vec<u8>> {
    super::json_bytes(&EntriesView { entries, datacenter }, pretty)
}

/// Keeps the entries `filter` passes, each tested against just the fields the filter reads
/// (its [`crate::filter::Projection`]), not a whole `Value` of the entry.
pub(super) fn retain_matching(
    entries: &mut Vec<Entry<'_>>,
    filter: &Filter,
    datacenter: &str,
) -> serde_json::Result<()> {
    let projection = filter.projection();
    let mut err = None;
    entries.retain(|(n, s, checks)| match project(&EntryView::of(n, s, checks, datacenter), &projection) {
        Ok(v) => filter.matches(&v),
        Err(e) => {
            err.get_or_insert(e);
            false
        }
    });
    err.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::super::catalog::{check_json, node_json, node_service_json};
    use super::*;
    use crate::state::ext_fields::{NodeExt, ServiceExt};

    /// The general path's rendering of one entry (what [`entries_json`] must match).
    fn entry_value(n: &Node, s: &ServiceInstance, checks: &[&HealthCheck], datacenter: &str) -> Value {
        serde_json::json!({
            "Node": node_json(n),
            "Service": node_service_json(s, datacenter),
            "Checks": checks.iter().map(|c| check_json(c)).collect::<Vec<_>>(),
        })
    }

    fn node(locality: bool) -> Node {
        Node {
            id: "0b0e2b16-0000-4000-8000-000000000001".into(),
            node: "n1".into(),
            address: "10.0.0.1".into(),
            datacenter: "dc1".into(),
            tagged_addresses: [("lan".to_string(), "10.0.0.1".to_string()), ("wan".into(), "1.2.3.4".into())].into(),
            meta: [("rack".to_string(), "r\"1\u{e9}".to_string())].into(),
            create_index: 3,
            modify_index: 9,
            ext: NodeExt { locality: locality.then(|| Locality { region: "eu".into(), zone: "".into() }) },
        }
    }

    fn services() -> Vec<ServiceInstance> {
        let plain = ServiceInstance {
            node: "n1".into(),
            id: "web-1".into(),
            service: "web".into(),
            tags: vec!["a".into(), "b\n".into()],
            port: 8080,
            weights: Weights { passing: 3, warning: 1 },
            create_index: 4,
            modify_index: 5,
            ..ServiceInstance::default()
        };
        let rich = ServiceInstance {
            kind: "connect-proxy".into(),
            id: "web-1-sidecar-proxy".into(),
            address: "10.0.0.2".into(),
            meta: [("version".to_string(), "2".to_string())].into(),
            tagged_addresses: [("lan_ipv4".to_string(), ServiceAddress { address: "10.0.0.2".into(), port: 21000 })]
                .into(),
            enable_tag_override: true,
            ext: ServiceExt {
                locality: Some(Locality { region: "eu".into(), zone: "a".into() }),
                socket_path: "/run/web.sock".into(),
                proxy: serde_json::from_value(serde_json::json!({
                    "DestinationServiceName": "web", "LocalServicePort": 8080,
                    "Upstreams": [{"DestinationName": "db", "LocalBindPort": 9191}]
                }))
                .map(Some)
                .expect("a proxy configuration"),
                ..ServiceExt::default()
            },
            ..plain.clone()
        };
        vec![plain, rich]
    }

    fn checks() -> Vec<HealthCheck> {
        let base = HealthCheck {
            node: "n1".into(),
            check_id: "service:web-1".into(),
            name: "Service 'web' check".into(),
            status: "passing".into(),
            output: "HTTP GET http://x: 200 OK \u{1}".into(),
            service_id: "web-1".into(),
            service_name: "web".into(),
            service_tags: vec!["a".into()],
            check_type: "http".into(),
            interval: "10s".into(),
            timeout: "1s".into(),
            definition: r#"{"HTTP":"http://x","Header":{"B":["1"],"A":["2"]},"Interval":"10s"}"#.into(),
            create_index: 4,
            modify_index: 7,
            ..HealthCheck::default()
        };
        let with_latency = HealthCheck {
            check_id: "lat".into(),
            definition: format!(r#"{{"TCP":"x:1","{}":"1.5ms"}}"#, crate::state::catalog::MEASURED_LATENCY),
            ..base.clone()
        };
        let unreadable = HealthCheck { check_id: "odd".into(), definition: "not json".into(), ..base.clone() };
        let empty = HealthCheck { check_id: "serfHealth".into(), definition: String::new(), ..base.clone() };
        vec![base, with_latency, unreadable, empty]
    }

    /// A filter answers the same over an entry's projection as over its whole JSON, for
    /// selectors through every part of the entry.
    #[test]
    fn filters_answer_the_same_on_projections() {
        let checks = checks();
        let check_refs: Vec<&HealthCheck> = checks.iter().collect();
        let nodes = [node(false), node(true)];
        let services = services();
        let mut entries: Vec<Entry<'_>> = Vec::new();
        for n in &nodes {
            for s in &services {
                for k in [0, 1, 2, check_refs.len()] {
                    entries.push((n, s, check_refs[..k].to_vec()));
                }
            }
        }
        let exprs = [
            r#"Service.Tags contains "a" and Checks.Status == passing"#,
            r#"Node.Meta.rack matches "^r" or Service.Port == 8080"#,
            r#"Service.Kind == "connect-proxy" and Service.Proxy.DestinationServiceName == web"#,
            r#"Service.Weights.Passing == 3 and not (Checks.Type == tcp)"#,
            r#"Checks.ServiceTags contains a and Node.TaggedAddresses.wan == "1.2.3.4""#,
            r#"Service.Meta is empty or Service.TaggedAddresses is not empty"#,
            r#"Checks is empty"#,
            r#"Node.Locality.Region == eu and Service.Locality.Zone == a"#,
            r#"Checks.Output contains "200" and Checks.Interval == "10s" and Service.Proxy.LocalServicePort == 8080"#,
            r#"Service.SocketPath != "" and Service.EnableTagOverride == true"#,
        ];
        for expr in exprs {
            let f = Filter::compile(expr, &crate::filter::schema::SERVICE_ENTRY).expect(expr);
            let want: Vec<bool> = entries.iter().map(|(n, s, c)| f.matches(&entry_value(n, s, c, "dc1"))).collect();
            let mut kept = entries.clone();
            retain_matching(&mut kept, &f, "dc1").expect("filter");
            let got: Vec<bool> = entries
                .iter()
                .map(|e| {
                    kept.iter().any(|k| std::ptr::eq(k.1, e.1) && std::ptr::eq(k.0, e.0) && k.2.len() == e.2.len())
                })
                .collect();
            assert_eq!(got, want, "{expr}");
            assert!(
                want.iter().any(|&w| w) || expr.contains("Checks is empty") || expr.contains("Locality"),
                "{expr} keeps something"
            );
        }
    }

    /// Every shape — with and without locality, proxy, Connect, tagged addresses, socket path,
    /// measured latency, odd definitions and characters JSON escapes — renders to exactly the
    /// general path's bytes.
    #[test]
    fn renders_the_same_bytes_as_the_value_path() {
        let checks = checks();
        let check_refs: Vec<&HealthCheck> = checks.iter().collect();
        for locality in [false, true] {
            let n = node(locality);
            for s in &services() {
                for k in 0..=check_refs.len() {
                    let entries = vec![(&n, s, check_refs[..k].to_vec())];
                    let value = Value::Array(vec![entry_value(&n, s, &check_refs[..k], "dc1")]);
                    for pretty in [false, true] {
                        let fast = entries_json(&entries, "dc1", pretty).expect("render");
                        let slow = super::super::json_bytes(&value, pretty).expect("render");
                        assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&slow), "pretty {pretty}");
                    }
                }
            }
        }
        assert_eq!(entries_json(&[], "dc1", false).expect("render"), b"[]");
        // The rare parts were really exercised.
        let (n, rich) = (node(true), &services()[1]);
        let all = String::from_utf8(entries_json(&[(&n, rich, check_refs.clone())], "dc1", false).expect("render"))
            .expect("utf8");
        for part in [
            "\"Latency\":\"1.5ms\"",
            "\"DestinationServiceName\":\"web\"",
            "\"SocketPath\"",
            "\"Locality\"",
            "lan_ipv4",
        ] {
            assert!(all.contains(part), "{part} in {all}");
        }
    }
}
