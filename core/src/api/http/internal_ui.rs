//! `/v1/internal/ui/*`: the summaries Consul's web console reads (`agent/ui_endpoint.go`):
//! one line per service with its health counts, the node dump, one node, and the catalog
//! overview. Served from the replica like the catalog reads (client agents forward them), as
//! blocking queries, filtered by `?filter=` and by the token's read rights.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};

use super::catalog::{
    blocking_json_on, check_json, check_visible, filter_for, keep, node_json, node_service_json, read_ctx,
};
use super::{blocking, json as json_response, set_read_meta, Ctx};
use crate::acl::rules::{Need, Resource, Scalar};
use crate::api::authz::RequestAcl;
use crate::filter::schema;
use crate::state::catalog::{watch_checks, watch_node, watch_nodes, watch_services, HealthCheck, Node, CRITICAL};
use crate::state::catalog::{PASSING, WARNING};
use crate::state::watch::WatchTarget;
use crate::state::StateData;
use crate::Error;

/// The service meta key naming where a registration came from (`structs.MetaExternalSource`).
const EXTERNAL_SOURCE: &str = "external-source";

/// What a read of the whole catalog watches, and its index.
fn catalog_targets() -> Vec<WatchTarget> {
    vec![WatchTarget::Key(watch_nodes()), WatchTarget::Key(watch_services()), WatchTarget::Key(watch_checks())]
}

fn catalog_index(d: &StateData) -> u64 {
    d.catalog.nodes_index.max(d.catalog.services_index).max(d.catalog.checks_index)
}

/// One service name's line (`ServiceListingSummary`), being accumulated.
#[derive(Default)]
struct Summary {
    kind: String,
    datacenter: String,
    tags: BTreeSet<String>,
    nodes: BTreeSet<String>,
    external_sources: Vec<String>,
    instances: usize,
    /// Checks by (node, check ID), so a node check shared by two instances counts once.
    checks: BTreeMap<(String, String), String>,
    transparent_proxy: Option<bool>,
    connect_native: bool,
    has_proxy: bool,
}

impl Summary {
    /// Counts one instance `s` on `node`, with the checks of it the reader may see (node checks
    /// shared by several instances count once).
    fn add_instance(&mut self, s: &crate::state::catalog::ServiceInstance, node: &Node, checks: &[&HealthCheck]) {
        self.kind = s.kind.clone();
        self.datacenter = node.datacenter.clone();
        self.nodes.insert(node.node.clone());
        self.instances += 1;
        self.tags.extend(s.tags.iter().cloned());
        if let Some(src) = s.meta.get(EXTERNAL_SOURCE).filter(|v| !v.is_empty()) {
            if !self.external_sources.contains(src) {
                self.external_sources.push(src.clone());
            }
        }
        let native = s.ext.connect.as_ref().and_then(|c| c.get("Native")).and_then(Value::as_bool);
        self.connect_native |= native == Some(true);
        for c in checks {
            self.checks.insert((c.node.clone(), c.check_id.clone()), c.status.clone());
        }
    }

    /// The fields `ServiceSummary` and `ServiceTopologySummary` share, for the service `name`.
    fn to_json(&self, name: &str) -> Value {
        let count = |status: &str| self.checks.values().filter(|st| st.as_str() == status).count();
        let mut v = json!({
            "Name": name,
            "Datacenter": self.datacenter,
            "Tags": self.tags,
            "Nodes": self.nodes,
            "ExternalSources": self.external_sources,
            "InstanceCount": self.instances,
            "ChecksPassing": count(PASSING),
            "ChecksWarning": count(WARNING),
            "ChecksCritical": count(CRITICAL),
            "GatewayConfig": {},
            "TransparentProxy": self.transparent_proxy.unwrap_or(false),
            "ConnectNative": self.connect_native,
        });
        if !self.kind.is_empty() {
            v["Kind"] = json!(self.kind);
        }
        v
    }
}

/// A string field of a service's registered `Proxy`/`Connect` JSON.
fn ext_str<'a>(v: &'a Option<Value>, key: &str) -> &'a str {
    v.as_ref().and_then(|v| v.get(key)).and_then(Value::as_str).unwrap_or("")
}

/// `GET /v1/internal/ui/services`: `[ServiceListingSummary]`, sorted by name.
pub(super) async fn services(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Result<Response, Error> {
    let rc = read_ctx(&ctx, acl, &uri)?;
    let filter = filter_for(&rc, &schema::SERVICE_ENTRY)?;
    let dc = ctx.config.datacenter.clone();
    blocking_json_on(&ctx, &rc, &catalog_targets(), |d| {
        let mut sums: BTreeMap<String, Summary> = BTreeMap::new();
        for s in d.catalog.services.values() {
            let Some(node) = d.catalog.nodes.get(&s.node) else { continue };
            if !(rc.acl.visible(Resource::Service, &s.service) && rc.acl.visible(Resource::Node, &node.node)) {
                continue;
            }
            let checks: Vec<&HealthCheck> = d
                .catalog
                .node_checks(&s.node)
                .into_iter()
                .filter(|c| (c.service_id.is_empty() || c.service_id == s.id) && check_visible(&rc.acl, c))
                .collect();
            if filter.is_some() {
                let entry = json!({
                    "Node": node_json(node),
                    "Service": node_service_json(s, &dc),
                    "Checks": checks.iter().map(|c| check_json(c)).collect::<Vec<_>>(),
                });
                if !keep(&filter, &entry) {
                    continue;
                }
            }
            let sum = sums.entry(s.service.clone()).or_default();
            sum.add_instance(s, node, &checks);
            if s.kind == "connect-proxy" {
                let dest_name = ext_str(&s.ext.proxy, "DestinationServiceName").to_string();
                if dest_name.is_empty() || !rc.acl.visible(Resource::Service, &dest_name) {
                    continue;
                }
                let transparent = ext_str(&s.ext.proxy, "Mode") == "transparent";
                let dest = sums.entry(dest_name).or_default();
                dest.has_proxy = true;
                // Transparent only when every proxy instance is (the console warns otherwise).
                dest.transparent_proxy = Some(dest.transparent_proxy.unwrap_or(true) && transparent);
                for c in &checks {
                    dest.checks.insert((c.node.clone(), c.check_id.clone()), c.status.clone());
                }
            }
        }
        let list: Vec<Value> = sums
            .into_iter()
            // A proxy's destination with no instance of its own still gets a line, as in Consul.
            .map(|(name, s)| {
                let mut v = s.to_json(&name);
                v["ConnectedWithProxy"] = json!(s.has_proxy);
                v["ConnectedWithGateway"] = json!(false);
                v
            })
            .collect();
        (catalog_index(d), Value::Array(list))
    })
    .await
}

/// `structs.NodeInfo`: a node with its services and checks (what the token may read of them).
fn node_info(d: &StateData, node: &Node, acl: &RequestAcl, dc: &str) -> Value {
    let services: Vec<Value> = d
        .catalog
        .node_services(&node.node)
        .into_iter()
        .filter(|s| acl.visible(Resource::Service, &s.service))
        .map(|s| node_service_json(s, dc))
        .collect();
    let checks: Vec<Value> =
        d.catalog.node_checks(&node.node).into_iter().filter(|c| check_visible(acl, c)).map(check_json).collect();
    json!({
        "ID": node.id, "Node": node.node, "Address": node.address, "Datacenter": node.datacenter,
        "TaggedAddresses": node.tagged_addresses, "Meta": node.meta,
        "Services": services, "Checks": checks,
    })
}

/// `GET /v1/internal/ui/nodes`: the node dump, sorted by node name.
pub(super) async fn nodes(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Result<Response, Error> {
    let rc = read_ctx(&ctx, acl, &uri)?;
    let filter = filter_for(&rc, &schema::NODE_INFO)?;
    let dc = ctx.config.datacenter.clone();
    blocking_json_on(&ctx, &rc, &catalog_targets(), |d| {
        let list: Vec<Value> = d
            .catalog
            .nodes
            .values()
            .filter(|n| rc.acl.visible(Resource::Node, &n.node))
            .map(|n| node_info(d, n, &rc.acl, &dc))
            .filter(|v| keep(&filter, v))
            .collect();
        (catalog_index(d), Value::Array(list))
    })
    .await
}

/// `GET /v1/internal/ui/node/:node`: one node's `NodeInfo`; 404 when it is not there (or the
/// token may not read it).
pub(super) async fn node(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    let rc = read_ctx(&ctx, acl, &uri)?;
    let dc = ctx.config.datacenter.clone();
    let targets = [WatchTarget::Key(watch_node(&name)), WatchTarget::Key(watch_nodes())];
    let (index, body, meta) = blocking::run(&ctx, &rc.params, &targets, |d| {
        let info = d
            .catalog
            .nodes
            .get(&name)
            .filter(|n| rc.acl.visible(Resource::Node, &n.node))
            .map(|n| node_info(d, n, &rc.acl, &dc));
        (d.catalog.node_index(&name), info)
    })
    .await?;
    let mut resp = match body {
        Some(info) => json_response(StatusCode::OK, &info, rc.pretty),
        None => StatusCode::NOT_FOUND.into_response(),
    };
    set_read_meta(resp.headers_mut(), index, &meta);
    Ok(resp)
}

/// `GET /v1/internal/ui/catalog-overview`: nodes, service instances and checks counted by
/// status (`structs.CatalogSummary`). Needs `operator:read`, as in Consul.
pub(super) async fn catalog_overview(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Result<Response, Error> {
    acl.require_scalar(Scalar::Operator, Need::Read)?;
    let rc = read_ctx(&ctx, acl, &uri)?;
    blocking_json_on(&ctx, &rc, &catalog_targets(), |d| (catalog_index(d), overview(d))).await
}

/// The service kinds `service-topology` accepts (`structs.ServiceKindTypical`, ingress).
const TOPOLOGY_KINDS: &[&str] = &["", "ingress-gateway"];

/// Where an upstream came from (`structs.TopologySourceRegistration`): a proxy's registration.
const SOURCE_REGISTRATION: &str = "registration";

/// The upstream service names a proxy registration lists (`Proxy.Upstreams`, service
/// destinations in this datacenter; prepared queries and other datacenters are left out).
fn proxy_upstreams<'a>(s: &'a crate::state::catalog::ServiceInstance, dc: &str) -> Vec<&'a str> {
    let Some(list) = s.ext.proxy.as_ref().and_then(|p| p.get("Upstreams")).and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter(|u| matches!(u.get("DestinationType").and_then(Value::as_str).unwrap_or(""), "" | "service"))
        .filter(|u| u.get("Datacenter").and_then(Value::as_str).is_none_or(|d| d.is_empty() || d == dc))
        .filter_map(|u| u.get("DestinationName").and_then(Value::as_str))
        .filter(|n| !n.is_empty())
        .collect()
}

/// `ServiceTopologySummary` lines for `names`: each a `ServiceSummary` of the name's instances
/// that the token may read (sidecars left out, as Consul's `prepSummaryOutput` does), with the
/// intention decision (no intentions exist here: the default) and where the link came from.
fn topology_summaries(d: &StateData, names: &BTreeSet<String>, acl: &RequestAcl, default_allow: bool) -> Vec<Value> {
    let mut out = Vec::new();
    for name in names {
        if !acl.visible(Resource::Service, name) {
            continue;
        }
        let mut sum = Summary::default();
        for s in d.catalog.services.values().filter(|s| &s.service == name) {
            let Some(node) = d.catalog.nodes.get(&s.node) else { continue };
            if !acl.visible(Resource::Node, &node.node) {
                continue;
            }
            let checks: Vec<&HealthCheck> = d
                .catalog
                .node_checks(&s.node)
                .into_iter()
                .filter(|c| (c.service_id.is_empty() || c.service_id == s.id) && check_visible(acl, c))
                .collect();
            sum.add_instance(s, node, &checks);
        }
        if !TOPOLOGY_KINDS.contains(&sum.kind.as_str()) {
            continue;
        }
        let mut v = sum.to_json(name);
        v["Source"] = json!(SOURCE_REGISTRATION);
        v["Intention"] = json!({
            "DefaultAllow": default_allow,
            "Allowed": default_allow,
            "HasPermissions": false,
            "ExternalSource": "",
            "HasExact": false,
        });
        out.push(v);
    }
    out
}

/// A service's topology (`ServiceTopology`) from the catalog: its upstreams are what its proxies'
/// registrations list, its downstreams the services whose proxies list it. No config entries
/// exist here, so the protocol is always Consul's default, `tcp`.
/// `default_allow` is Consul's `IntentionDefaultAllow`: what decides a connection no intention
/// matches, the agent's `acl.default_policy` (allow with ACLs off), whatever the token.
fn topology(d: &StateData, service: &str, acl: &RequestAcl, dc: &str, default_allow: bool) -> Value {
    let mut upstreams = BTreeSet::new();
    let mut downstreams = BTreeSet::new();
    let mut proxies = 0usize;
    let mut transparent = 0usize;
    for s in d.catalog.services.values().filter(|s| s.kind == "connect-proxy") {
        let dest = ext_str(&s.ext.proxy, "DestinationServiceName");
        let ups = proxy_upstreams(s, dc);
        if dest == service {
            proxies += 1;
            if ext_str(&s.ext.proxy, "Mode") == "transparent" {
                transparent += 1;
            }
            upstreams.extend(ups.iter().map(|u| u.to_string()));
        }
        if !dest.is_empty() && ups.contains(&service) {
            downstreams.insert(dest.to_string());
        }
    }
    json!({
        "Protocol": "tcp",
        // Only when every proxy of the service is transparent (the console warns otherwise).
        "TransparentProxy": proxies > 0 && transparent == proxies,
        "Upstreams": topology_summaries(d, &upstreams, acl, default_allow),
        "Downstreams": topology_summaries(d, &downstreams, acl, default_allow),
        "FilteredByACLs": acl.was_filtered(),
    })
}

/// `GET /v1/internal/ui/service-topology/:service?kind=`: the service's upstreams and
/// downstreams. `kind` is required (`""` or `ingress-gateway`); the token needs `service:read`
/// on the service, and upstreams or downstreams it may not read are left out
/// (`FilteredByACLs`).
pub(super) async fn service_topology(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(service): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    let rc = read_ctx(&ctx, acl, &uri)?;
    let Some(kind) = rc.q.get("kind") else {
        return Err(Error::BadRequest("Missing service kind".into()));
    };
    if !TOPOLOGY_KINDS.contains(&kind) {
        return Err(Error::BadRequest(format!("Unsupported service kind {kind:?}")));
    }
    rc.acl.require(Resource::Service, &service, Need::Read)?;
    let dc = ctx.config.datacenter.clone();
    let default_allow = !ctx.config.acl.enabled || ctx.config.acl.default_allow;
    blocking_json_on(&ctx, &rc, &catalog_targets(), |d| {
        (catalog_index(d), topology(d, &service, &rc.acl, &dc, default_allow))
    })
    .await
}

/// The answer for a gateway path with no name (`/v1/internal/ui/gateway-…/`).
pub(super) async fn missing_gateway_name() -> Error {
    Error::BadRequest("Missing gateway name".into())
}

/// The answer for `/v1/internal/ui/service-topology/` with no name.
pub(super) async fn missing_service_name() -> Error {
    Error::BadRequest("Missing service name".into())
}

/// What the two gateway endpoints list: services linked to the gateway by an
/// `ingress-gateway` or `terminating-gateway` config entry, and the intentions towards them.
/// Neither config entries nor intentions exist here, so both lists are empty whatever the
/// catalog holds; the query still checks the token and blocks like Consul's (nothing wakes it
/// before `wait` runs out).
async fn gateway_list(ctx: &Ctx, acl: Arc<RequestAcl>, gateway: &str, uri: &Uri) -> Result<Response, Error> {
    let rc = read_ctx(ctx, acl, uri)?;
    rc.acl.require(Resource::Service, gateway, Need::Read)?;
    // Consul's blocking queries report at least index 1.
    blocking_json_on(ctx, &rc, &[], |_| (1, Value::Array(Vec::new()))).await
}

/// `GET /v1/internal/ui/gateway-services-nodes/:gateway`: the gateway's linked services as
/// `ServiceSummary` lines (needs `service:read` on the gateway).
pub(super) async fn gateway_services_nodes(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(gateway): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    gateway_list(&ctx, acl, &gateway, &uri).await
}

/// `GET /v1/internal/ui/gateway-intentions/:gateway`: intentions whose destination is one of
/// the gateway's linked services (needs `service:read` on the gateway).
pub(super) async fn gateway_intentions(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(gateway): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    gateway_list(&ctx, acl, &gateway, &uri).await
}

/// Counts of one kind of thing by status (`structs.HealthSummary`).
#[derive(Default)]
struct Counts {
    passing: u64,
    warning: u64,
    critical: u64,
}

impl Counts {
    fn add(&mut self, status: &str) {
        match status {
            PASSING => self.passing += 1,
            WARNING => self.warning += 1,
            CRITICAL => self.critical += 1,
            _ => {}
        }
    }

    fn json(&self, name: Option<&str>) -> Value {
        let mut v = json!({
            "Total": self.passing + self.warning + self.critical,
            "Passing": self.passing, "Warning": self.warning, "Critical": self.critical,
        });
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            v["Name"] = json!(n);
        }
        v
    }
}

/// The worst of some statuses (passing when there are none).
fn worst<'a>(statuses: impl IntoIterator<Item = &'a str>) -> &'static str {
    let mut w = PASSING;
    for s in statuses {
        if s == CRITICAL {
            return CRITICAL;
        }
        if s == WARNING {
            w = WARNING;
        }
    }
    w
}

/// Consul's overview: checks by name; service instances by name, each as healthy as its worst
/// service check; nodes all together, each as healthy as its worst node check.
fn overview(d: &StateData) -> Value {
    let mut checks: BTreeMap<&str, Counts> = BTreeMap::new();
    for c in d.catalog.checks.values() {
        checks.entry(c.name.as_str()).or_default().add(&c.status);
    }
    let mut services: BTreeMap<&str, Counts> = BTreeMap::new();
    for s in d.catalog.services.values() {
        let own = d.catalog.node_checks(&s.node).into_iter().filter(|c| c.service_id == s.id);
        services.entry(s.service.as_str()).or_default().add(worst(own.map(|c| c.status.as_str())));
    }
    let mut nodes = Counts::default();
    for n in d.catalog.nodes.values() {
        let own = d.catalog.node_checks(&n.node).into_iter().filter(|c| c.service_id.is_empty());
        nodes.add(worst(own.map(|c| c.status.as_str())));
    }
    json!({
        "Nodes": if d.catalog.nodes.is_empty() { json!([]) } else { json!([nodes.json(None)]) },
        "Services": services.iter().map(|(n, c)| c.json(Some(n))).collect::<Vec<_>>(),
        "Checks": checks.iter().map(|(n, c)| c.json(Some(n))).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_status_wins() {
        assert_eq!(worst([]), PASSING);
        assert_eq!(worst([PASSING, WARNING]), WARNING);
        assert_eq!(worst([WARNING, CRITICAL, PASSING]), CRITICAL);
        let mut c = Counts::default();
        for s in [PASSING, PASSING, WARNING, CRITICAL, "bogus"] {
            c.add(s);
        }
        assert_eq!(c.json(Some("x")), json!({"Name": "x", "Total": 4, "Passing": 2, "Warning": 1, "Critical": 1}));
        assert_eq!(c.json(None).get("Name"), None);
    }
}
