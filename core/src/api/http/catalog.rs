//! `/v1/catalog/*` (`agent/catalog_endpoint.go`) and `/v1/health/*` (`agent/health_endpoint.go`):
//! catalog writes go through Raft; every read is a blocking query under the requested
//! consistency mode, watching only the service, node or table it reads.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Map, Value};

use super::coordinate::{near_node, sort_near};
use super::query::{QueryParams, ReadParams};
use super::{blocking, health_render, json as json_response, read_body, set_read_meta, Ctx};
use crate::acl::rules::{Need, Resource};
use crate::api::authz::RequestAcl;
use crate::filter::{schema, Filter};
use crate::state::catalog::{
    aggregate_status, service_entries, valid_status, watch_checks, watch_node, watch_nodes, watch_service,
    watch_services, DeregisterRequest, HealthCheck, Node, ServiceInstance, MEASURED_LATENCY, PASSING,
};
use crate::state::command::{Command, CommandResponse};
use crate::state::ext_fields::ServiceExt;
use crate::state::watch::WatchTarget;
use crate::state::StateData;
use crate::wire::body::{parse_object, Obj};
use crate::wire::catalog::parse_register;
use crate::Error;

/// Largest catalog request body.
const MAX_BODY: usize = 1024 * 1024;

/// `Node` JSON (`Locality` only when set, as Consul's `omitempty`).
pub(crate) fn node_json(n: &Node) -> Value {
    let mut v = json!({
        "ID": n.id, "Node": n.node, "Address": n.address, "Datacenter": n.datacenter,
        "TaggedAddresses": n.tagged_addresses, "Meta": n.meta,
        "CreateIndex": n.create_index, "ModifyIndex": n.modify_index,
    });
    add_node_ext(&mut v, n);
    v
}

/// Adds a node's `Locality` to its JSON when set.
pub(crate) fn add_node_ext(v: &mut Value, n: &Node) {
    if let (Some(l), Some(m)) = (&n.ext.locality, v.as_object_mut()) {
        m.insert("Locality".into(), json!(l));
    }
}

fn tagged_json(s: &ServiceInstance) -> Value {
    let m: Map<String, Value> =
        s.tagged_addresses.iter().map(|(k, a)| (k.clone(), json!({"Address": a.address, "Port": a.port}))).collect();
    Value::Object(m)
}

/// Adds the fields kept beside the original encoding (`SocketPath`, `Proxy`, `Connect`,
/// `Locality`) to a service's JSON, each only when set (Consul's `omitempty`). `catalog` names
/// them as `structs.ServiceNode` does (`ServiceProxy`, ...), which has no socket path.
pub(crate) fn add_service_ext(v: &mut Value, ext: &ServiceExt, catalog: bool) {
    let Some(m) = v.as_object_mut() else { return };
    let prefix = if catalog { "Service" } else { "" };
    if !catalog && !ext.socket_path.is_empty() {
        m.insert("SocketPath".into(), json!(ext.socket_path));
    }
    if let Some(p) = &ext.proxy {
        m.insert(format!("{prefix}Proxy"), crate::wire::connect::render_proxy(p, false));
    }
    if let Some(c) = ext.connect.as_ref().and_then(crate::wire::connect::render_connect) {
        m.insert(format!("{prefix}Connect"), c);
    }
    if let Some(l) = &ext.locality {
        m.insert(format!("{prefix}Locality"), json!(l));
    }
}

/// Fills in what `structs.NodeService` / `structs.ServiceNode` always encode when the service has
/// none (`prefix` is `"Service"` for the catalog's field names): an empty proxy configuration
/// (`ConnectProxyConfig` with its non-pointer members) and an empty `Connect`.
pub(crate) fn add_node_service_defaults(v: &mut Value, prefix: &str) {
    let Some(m) = v.as_object_mut() else { return };
    m.entry(format!("{prefix}Proxy")).or_insert_with(|| json!({"Mode": "", "MeshGateway": {}, "Expose": {}}));
    m.entry(format!("{prefix}Connect")).or_insert_with(|| json!({}));
}

/// `structs.NodeService` JSON (catalog node services, health and prepared query entries):
/// [`service_json`] with the empty `Proxy` and `Connect` Consul always encodes.
pub(crate) fn node_service_json(s: &ServiceInstance, datacenter: &str) -> Value {
    let mut v = service_json(s, datacenter);
    add_node_service_defaults(&mut v, "");
    v
}

/// `AgentService` JSON (the read shape: `Service` holds the name).
pub(crate) fn service_json(s: &ServiceInstance, datacenter: &str) -> Value {
    let mut v = json!({
        "Kind": s.kind, "ID": s.id, "Service": s.service, "Tags": s.tags, "Meta": s.meta,
        "Port": s.port, "Address": s.address, "TaggedAddresses": tagged_json(s),
        "Weights": {"Passing": s.weights.passing, "Warning": s.weights.warning},
        "EnableTagOverride": s.enable_tag_override, "Datacenter": datacenter,
        "CreateIndex": s.create_index, "ModifyIndex": s.modify_index,
    });
    add_service_ext(&mut v, &s.ext, false);
    v
}

/// `HealthCheck` JSON.
///
/// A latency measured by the agent's probe travels inside the stored definition
/// ([`MEASURED_LATENCY`]) and is rendered at the top level as `Latency`, only when present.
pub(crate) fn check_json(c: &HealthCheck) -> Value {
    let mut definition: Value = serde_json::from_str(&c.definition).unwrap_or_else(|_| json!({}));
    let latency = definition.as_object_mut().and_then(|d| d.remove(MEASURED_LATENCY));
    let mut v = json!({
        "Node": c.node, "CheckID": c.check_id, "Name": c.name, "Status": c.status, "Notes": c.notes,
        "Output": c.output, "ServiceID": c.service_id, "ServiceName": c.service_name,
        "ServiceTags": c.service_tags, "Type": c.check_type, "Interval": c.interval, "Timeout": c.timeout,
        "ExposedPort": 0, "Definition": definition,
        "CreateIndex": c.create_index, "ModifyIndex": c.modify_index,
    });
    if let Some(latency) = latency {
        v["Latency"] = latency;
    }
    v
}

fn catalog_service_json(n: &Node, s: &ServiceInstance) -> Value {
    let mut v = json!({
        "ID": n.id, "Node": n.node, "Address": n.address, "Datacenter": n.datacenter,
        "TaggedAddresses": n.tagged_addresses, "NodeMeta": n.meta,
        "ServiceKind": s.kind, "ServiceID": s.id, "ServiceName": s.service, "ServiceTags": s.tags,
        "ServiceAddress": s.address, "ServiceMeta": s.meta,
        "ServicePort": s.port, "ServiceWeights": {"Passing": s.weights.passing, "Warning": s.weights.warning},
        "ServiceEnableTagOverride": s.enable_tag_override, "ServiceSocketPath": s.ext.socket_path,
        "CreateIndex": s.create_index, "ModifyIndex": s.modify_index,
    });
    // `structs.ServiceNode`: tagged addresses only when set; socket path, proxy and connect
    // always (the last two empty when unset).
    if !s.tagged_addresses.is_empty() {
        v["ServiceTaggedAddresses"] = tagged_json(s);
    }
    add_service_ext(&mut v, &s.ext, true);
    add_node_service_defaults(&mut v, "Service");
    v
}

/// `?node-meta=key:value` filters (repeatable; all must match).
pub(super) fn node_meta_filter(q: &QueryParams) -> Result<Vec<(String, String)>, Error> {
    q.all("node-meta")
        .map(|v| {
            v.split_once(':')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| Error::BadRequest(format!("Invalid node-meta filter {v:?}: expected key:value")))
        })
        .collect()
}

fn node_matches(n: &Node, filters: &[(String, String)]) -> bool {
    filters.iter().all(|(k, v)| n.meta.get(k) == Some(v))
}

fn has_tags(s: &ServiceInstance, tags: &[String]) -> bool {
    tags.iter().all(|t| s.tags.iter().any(|st| st.eq_ignore_ascii_case(t)))
}

pub(super) struct ReadCtx {
    pub(super) params: ReadParams,
    pub(super) pretty: bool,
    pub(super) q: QueryParams,
    /// The request's token: reads show only what it may read.
    pub(super) acl: Arc<RequestAcl>,
}

/// The request's `?filter=`, compiled for the endpoint's items.
pub(super) fn filter_for(rc: &ReadCtx, schema: &schema::Schema) -> Result<Option<Filter>, Error> {
    crate::filter::from_query(rc.q.get("filter"), schema)
}

/// Whether `item` passes the (optional) filter.
pub(super) fn keep(filter: &Option<Filter>, item: &Value) -> bool {
    filter.as_ref().is_none_or(|f| f.matches(item))
}

pub(super) fn read_ctx(ctx: &Ctx, acl: Arc<RequestAcl>, uri: &Uri) -> Result<ReadCtx, Error> {
    let q = QueryParams::from_uri(uri);
    q.check_dc(&ctx.config.datacenter)?;
    let params = ReadParams::parse(&q, ctx.config.default_query_time, ctx.config.max_query_time)?;
    Ok(ReadCtx { params, pretty: q.pretty(), q, acl })
}

/// Whether a check may be shown: its node readable, and its service too if it has one.
pub(super) fn check_visible(acl: &RequestAcl, c: &HealthCheck) -> bool {
    acl.visible(Resource::Node, &c.node)
        && (c.service_name.is_empty() || acl.visible(Resource::Service, &c.service_name))
}

async fn blocking_json(
    ctx: &Ctx,
    rc: &ReadCtx,
    watch: String,
    query: impl Fn(&StateData) -> (u64, Value),
) -> Result<Response, Error> {
    blocking_json_on(ctx, rc, &[WatchTarget::Key(watch)], query).await
}

/// [`blocking_json`] woken by any of `targets`.
pub(super) async fn blocking_json_on(
    ctx: &Ctx,
    rc: &ReadCtx,
    targets: &[WatchTarget],
    query: impl Fn(&StateData) -> (u64, Value),
) -> Result<Response, Error> {
    let (index, body, meta) = blocking::run(ctx, &rc.params, targets, query).await?;
    let mut resp = json_response(StatusCode::OK, &body, rc.pretty);
    set_read_meta(resp.headers_mut(), index, &meta);
    Ok(resp)
}

/// `GET /v1/catalog/datacenters`: every datacenter the WAN pool knows, nearest first (median
/// estimated RTT to its servers), this one first on a tie; only this one without a WAN pool.
pub(super) async fn datacenters(State(ctx): State<Ctx>, uri: Uri) -> Response {
    let q = QueryParams::from_uri(&uri);
    let dcs = match ctx.cluster.wan() {
        Some(pool) => pool.datacenters(),
        None => vec![ctx.config.datacenter.clone()],
    };
    json_response(StatusCode::OK, &dcs, q.pretty())
}

/// `GET /v1/catalog/nodes`.
pub(super) async fn nodes(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Result<Response, Error> {
    let rc = read_ctx(&ctx, acl, &uri)?;
    let filters = node_meta_filter(&rc.q)?;
    let filter = filter_for(&rc, &schema::NODE)?;
    let near = near_node(&ctx, &rc.q);
    blocking_json(&ctx, &rc, watch_nodes(), |d| {
        let mut nodes: Vec<&Node> = d
            .catalog
            .nodes
            .values()
            .filter(|n| node_matches(n, &filters) && rc.acl.visible(Resource::Node, &n.node))
            .collect();
        sort_near(d, near.as_deref(), &mut nodes, |n| &n.node);
        let list: Vec<Value> = nodes.into_iter().map(node_json).filter(|v| keep(&filter, v)).collect();
        (d.catalog.nodes_index, Value::Array(list))
    })
    .await
}

/// `GET /v1/catalog/services`: service names with the union of their tags.
pub(super) async fn services(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Result<Response, Error> {
    let rc = read_ctx(&ctx, acl, &uri)?;
    let filters = node_meta_filter(&rc.q)?;
    // Consul filters the instances (`ServiceNode`s) before folding them into name → tags.
    let filter = filter_for(&rc, &schema::CATALOG_SERVICE)?;
    blocking_json(&ctx, &rc, watch_services(), |d| {
        let mut out: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
        for s in d.catalog.services.values() {
            let node = d.catalog.nodes.get(&s.node).filter(|n| node_matches(n, &filters));
            if node.is_some_and(|n| filter.as_ref().is_none_or(|f| f.matches(&catalog_service_json(n, s)))) {
                out.entry(s.service.clone()).or_default().extend(s.tags.iter().cloned());
            }
        }
        out.retain(|name, _| rc.acl.visible(Resource::Service, name));
        (d.catalog.services_index, json!(out))
    })
    .await
}

/// `GET /v1/catalog/service/:service`.
pub(super) async fn service(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    service_rows(ctx, acl, name, uri, false).await
}

/// `GET /v1/catalog/connect/:service`: the Connect-capable instances of the service (its
/// connect proxies and Connect-native instances), as `/v1/catalog/service` lists instances.
pub(super) async fn connect(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    service_rows(ctx, acl, name, uri, true).await
}

/// The index of a service's instances: its own, or (`connect`) that of the whole service and
/// check tables, where its proxies (of other names) live.
fn service_watch(d: &StateData, name: &str, connect: bool) -> u64 {
    if connect {
        d.catalog.services_index.max(d.catalog.checks_index)
    } else {
        d.catalog.service_index(name)
    }
}

/// What wakes a blocking read of a service's instances (see [`service_watch`]).
fn service_targets(name: &str, connect: bool) -> Vec<WatchTarget> {
    if connect {
        vec![WatchTarget::Key(watch_services()), WatchTarget::Key(watch_checks())]
    } else {
        vec![WatchTarget::Key(watch_service(name))]
    }
}

async fn service_rows(
    ctx: Ctx,
    acl: Arc<RequestAcl>,
    name: String,
    uri: Uri,
    connect: bool,
) -> Result<Response, Error> {
    let rc = read_ctx(&ctx, acl, &uri)?;
    let filters = node_meta_filter(&rc.q)?;
    let tags: Vec<String> = rc.q.all("tag").map(str::to_string).collect();
    let filter = filter_for(&rc, &schema::CATALOG_SERVICE)?;
    let near = near_node(&ctx, &rc.q);
    blocking_json_on(&ctx, &rc, &service_targets(&name, connect), |d| {
        let instances: Vec<&ServiceInstance> = if connect {
            crate::state::prepared_query::execute::connect_entries(d, &name).into_iter().map(|(_, s, _)| s).collect()
        } else {
            d.catalog.instances(&name)
        };
        let mut found: Vec<(&Node, &ServiceInstance)> = instances
            .into_iter()
            .filter(|s| has_tags(s, &tags))
            .filter_map(|s| d.catalog.nodes.get(&s.node).filter(|n| node_matches(n, &filters)).map(|n| (n, s)))
            .filter(|(n, s)| rc.acl.visible(Resource::Service, &s.service) && rc.acl.visible(Resource::Node, &n.node))
            .collect();
        sort_near(d, near.as_deref(), &mut found, |(n, _)| &n.node);
        let list: Vec<Value> =
            found.into_iter().map(|(n, s)| catalog_service_json(n, s)).filter(|v| keep(&filter, v)).collect();
        (service_watch(d, &name, connect), Value::Array(list))
    })
    .await
}

/// `GET /v1/catalog/node/:node`: the node and its services keyed by ID (`null` if unknown).
pub(super) async fn node(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    let rc = read_ctx(&ctx, acl, &uri)?;
    let filter = filter_for(&rc, &schema::AGENT_SERVICE)?;
    let dc = ctx.config.datacenter.clone();
    blocking_json(&ctx, &rc, watch_node(&name), |d| {
        let body = match d.catalog.nodes.get(&name).filter(|_| rc.acl.visible(Resource::Node, &name)) {
            None => Value::Null,
            Some(n) => {
                let services: Map<String, Value> = d
                    .catalog
                    .node_services(&name)
                    .into_iter()
                    .filter(|s| rc.acl.visible(Resource::Service, &s.service))
                    .map(|s| (s.id.clone(), node_service_json(s, &dc)))
                    .filter(|(_, v)| keep(&filter, v))
                    .collect();
                json!({"Node": node_json(n), "Services": services})
            }
        };
        (d.catalog.node_index(&name), body)
    })
    .await
}

/// `GET /v1/catalog/node-services/:node`: the node and its services as a list.
pub(super) async fn node_services(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    let rc = read_ctx(&ctx, acl, &uri)?;
    let filter = filter_for(&rc, &schema::AGENT_SERVICE)?;
    let dc = ctx.config.datacenter.clone();
    blocking_json(&ctx, &rc, watch_node(&name), |d| {
        let body = match d.catalog.nodes.get(&name).filter(|_| rc.acl.visible(Resource::Node, &name)) {
            None => Value::Null,
            Some(n) => {
                let services: Vec<Value> = d
                    .catalog
                    .node_services(&name)
                    .into_iter()
                    .filter(|s| rc.acl.visible(Resource::Service, &s.service))
                    .map(|s| node_service_json(s, &dc))
                    .filter(|v| keep(&filter, v))
                    .collect();
                json!({"Node": node_json(n), "Services": services})
            }
        };
        (d.catalog.node_index(&name), body)
    })
    .await
}

/// `GET /v1/health/node/:node`.
pub(super) async fn health_node(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    let rc = read_ctx(&ctx, acl, &uri)?;
    let filter = filter_for(&rc, &schema::HEALTH_CHECK)?;
    blocking_json(&ctx, &rc, watch_node(&name), |d| {
        let list: Vec<Value> = d
            .catalog
            .node_checks(&name)
            .into_iter()
            .filter(|c| check_visible(&rc.acl, c))
            .map(check_json)
            .filter(|v| keep(&filter, v))
            .collect();
        (d.catalog.node_index(&name), Value::Array(list))
    })
    .await
}

/// `GET /v1/health/checks/:service`.
pub(super) async fn health_checks(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    let rc = read_ctx(&ctx, acl, &uri)?;
    let filters = node_meta_filter(&rc.q)?;
    let filter = filter_for(&rc, &schema::HEALTH_CHECK)?;
    let near = near_node(&ctx, &rc.q);
    blocking_json(&ctx, &rc, watch_service(&name), |d| {
        let mut checks: Vec<&HealthCheck> = d
            .catalog
            .checks
            .values()
            .filter(|c| c.service_name == name)
            .filter(|c| d.catalog.nodes.get(&c.node).is_some_and(|n| node_matches(n, &filters)))
            .filter(|c| check_visible(&rc.acl, c))
            .collect();
        sort_near(d, near.as_deref(), &mut checks, |c| &c.node);
        let list: Vec<Value> = checks.into_iter().map(check_json).filter(|v| keep(&filter, v)).collect();
        (d.catalog.service_index(&name), Value::Array(list))
    })
    .await
}

/// `GET /v1/health/service/:service`: `[ServiceEntry]`, with `?passing` keeping only instances
/// whose every check (node checks included) passes.
pub(super) async fn health_service(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    health_entries(ctx, acl, name, uri, false).await
}

/// `GET /v1/health/connect/:service`: `[ServiceEntry]` of the service's Connect-capable
/// instances (its connect proxies and Connect-native instances).
pub(super) async fn health_connect(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    health_entries(ctx, acl, name, uri, true).await
}

async fn health_entries(
    ctx: Ctx,
    acl: Arc<RequestAcl>,
    name: String,
    uri: Uri,
    connect: bool,
) -> Result<Response, Error> {
    let rc = read_ctx(&ctx, acl, &uri)?;
    let filters = node_meta_filter(&rc.q)?;
    let tags: Vec<String> = rc.q.all("tag").map(str::to_string).collect();
    let passing = rc.q.has("passing");
    let filter = filter_for(&rc, &schema::SERVICE_ENTRY)?;
    let dc = ctx.config.datacenter.clone();
    let near = near_node(&ctx, &rc.q);
    let (index, body, meta) = blocking::run(&ctx, &rc.params, &service_targets(&name, connect), |d| {
        let all = if connect {
            crate::state::prepared_query::execute::connect_entries(d, &name)
        } else {
            service_entries(d, &name)
        };
        let mut entries: Vec<_> = all
            .into_iter()
            .filter(|(n, s, _)| node_matches(n, &filters) && has_tags(s, &tags))
            .filter(|(_, _, checks)| !passing || aggregate_status(checks.iter().copied()) == PASSING)
            .filter(|(n, s, _)| {
                rc.acl.visible(Resource::Service, &s.service) && rc.acl.visible(Resource::Node, &n.node)
            })
            .collect();
        sort_near(d, near.as_deref(), &mut entries, |(n, _, _)| &n.node);
        for (_, _, checks) in &mut entries {
            checks.retain(|c| check_visible(&rc.acl, c));
        }
        // Written straight from the state store, without a `Value` tree per entry; a filter
        // reads only the fields it names (see `health_render`).
        let matched = filter.as_ref().map_or(Ok(()), |f| health_render::retain_matching(&mut entries, f, &dc));
        let body = matched.and_then(|()| health_render::entries_json(&entries, &dc, rc.pretty));
        (service_watch(d, &name, connect), body)
    })
    .await?;
    let mut resp = super::json_encoded(StatusCode::OK, body);
    set_read_meta(resp.headers_mut(), index, &meta);
    Ok(resp)
}

/// `GET /v1/health/state/:state` (`any`, `passing`, `warning`, `critical`).
pub(super) async fn health_state(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(state): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    if state != "any" && !valid_status(&state) {
        return Err(Error::BadRequest(format!("Invalid check state {state:?}: use any, passing, warning or critical")));
    }
    let rc = read_ctx(&ctx, acl, &uri)?;
    let filters = node_meta_filter(&rc.q)?;
    let filter = filter_for(&rc, &schema::HEALTH_CHECK)?;
    let near = near_node(&ctx, &rc.q);
    blocking_json(&ctx, &rc, watch_checks(), |d| {
        let mut checks: Vec<&HealthCheck> = d
            .catalog
            .checks
            .values()
            .filter(|c| state == "any" || c.status == state)
            .filter(|c| d.catalog.nodes.get(&c.node).is_some_and(|n| node_matches(n, &filters)))
            .filter(|c| check_visible(&rc.acl, c))
            .collect();
        sort_near(d, near.as_deref(), &mut checks, |c| &c.node);
        let list: Vec<Value> = checks.into_iter().map(check_json).filter(|v| keep(&filter, v)).collect();
        (d.catalog.checks_index, Value::Array(list))
    })
    .await
}

fn write_result(result: (u64, CommandResponse), pretty: bool) -> Result<Response, Error> {
    match result {
        (_, CommandResponse::Ok) => Ok(json_response(StatusCode::OK, &true, pretty)),
        (_, other) => Err(Error::Raft(format!("unexpected result {other:?}"))),
    }
}

/// `PUT /v1/catalog/register`.
pub(super) async fn register(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    q.check_dc(&ctx.config.datacenter)?;
    let bytes = read_body(body, &headers, MAX_BODY, "the catalog request size limit").await?;
    let req = parse_register(&bytes, &ctx.config.datacenter)?;
    ctx.consensus()?.state().read(|d| require_register(&acl, d, &req))?;
    write_result(ctx.consensus()?.write(Command::CatalogRegister(Box::new(req))).await?, q.pretty())
}

/// `PUT /v1/catalog/deregister`.
pub(super) async fn deregister(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    q.check_dc(&ctx.config.datacenter)?;
    let bytes = read_body(body, &headers, MAX_BODY, "the catalog request size limit").await?;
    let req = parse_deregister(&bytes)?;
    ctx.consensus()?.state().read(|d| require_deregister(&acl, d, &req))?;
    write_result(ctx.consensus()?.write(Command::CatalogDeregister(req)).await?, q.pretty())
}

/// Parses a `PUT /v1/catalog/deregister` body (`Node`, optional `ServiceID` or `CheckID`).
pub(super) fn parse_deregister(bytes: &[u8]) -> Result<DeregisterRequest, Error> {
    let map = parse_object(bytes)?;
    let o = Obj::new(&map, "");
    let node = o.string(&["Node"])?;
    if node.is_empty() {
        return Err(Error::BadRequest("Must provide node".into()));
    }
    let service_id = Some(o.string(&["ServiceID"])?).filter(|s| !s.is_empty());
    let check_id = Some(o.string(&["CheckID"])?).filter(|s| !s.is_empty());
    Ok(DeregisterRequest { node, service_id, check_id })
}

/// What a catalog registration needs (Consul's `vetRegisterWithACL`): `node:write` when it
/// creates or changes the node, `service:write` on the service it registers (and on the name an
/// existing instance with that ID had), and on each check's service — `node:write` for node checks.
pub(crate) fn require_register(
    acl: &RequestAcl,
    d: &StateData,
    req: &crate::state::catalog::RegisterRequest,
) -> Result<(), Error> {
    let existing = d.catalog.nodes.get(&req.node.node);
    let changes_node = match existing {
        None => true,
        Some(_) if req.skip_node_update => false,
        Some(n) => {
            n.address != req.node.address
                || n.meta != req.node.meta
                || n.tagged_addresses != req.node.tagged_addresses
                || (!req.node.id.is_empty() && n.id != req.node.id)
        }
    };
    if changes_node {
        acl.require(Resource::Node, &req.node.node, Need::Write)?;
    }
    if let Some(s) = &req.service {
        acl.require(Resource::Service, &s.service, Need::Write)?;
        let previous = d.catalog.node_services(&req.node.node).into_iter().find(|old| old.id == s.id);
        if let Some(old) = previous.filter(|old| old.service != s.service) {
            acl.require(Resource::Service, &old.service, Need::Write)?;
        }
    }
    for c in &req.checks {
        if c.service_name.is_empty() && c.service_id.is_empty() {
            acl.require(Resource::Node, &req.node.node, Need::Write)?;
        } else {
            let service = if c.service_name.is_empty() {
                d.catalog
                    .node_services(&req.node.node)
                    .into_iter()
                    .chain(req.service.iter())
                    .find(|s| s.id == c.service_id)
                    .map(|s| s.service.clone())
                    .unwrap_or_default()
            } else {
                c.service_name.clone()
            };
            acl.require(Resource::Service, &service, Need::Write)?;
        }
    }
    Ok(())
}

/// What a catalog deregistration needs (Consul's `vetDeregisterWithACL`): `service:write` on
/// the service removed or on a removed check's service, `node:write` for node checks and nodes.
pub(crate) fn require_deregister(acl: &RequestAcl, d: &StateData, req: &DeregisterRequest) -> Result<(), Error> {
    let service_of =
        |id: &str| d.catalog.node_services(&req.node).into_iter().find(|s| s.id == id).map(|s| s.service.clone());
    if let Some(id) = &req.service_id {
        return match service_of(id) {
            Some(name) => acl.require(Resource::Service, &name, Need::Write),
            // Nothing to remove; Consul still needs write on the node to say so.
            None => acl.require(Resource::Node, &req.node, Need::Write),
        };
    }
    if let Some(id) = &req.check_id {
        let check = d.catalog.node_checks(&req.node).into_iter().find(|c| c.check_id == *id).cloned();
        return match check {
            Some(c) if !c.service_name.is_empty() => acl.require(Resource::Service, &c.service_name, Need::Write),
            _ => acl.require(Resource::Node, &req.node, Need::Write),
        };
    }
    acl.require(Resource::Node, &req.node, Need::Write)
}
