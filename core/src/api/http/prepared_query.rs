//! `/v1/query` (Consul's `agent/prepared_query_endpoint.go` and the server side in
//! `agent/consul/prepared_query_endpoint.go`): create, list, read, update and delete prepared
//! queries, execute them (`/execute`) and show what a name resolves to (`/explain`).
//!
//! ACLs follow Consul: a named query or template is governed by `query`/`query_prefix` rules
//! on its name (write to create, change or delete it, read to see it); an unnamed static query
//! is reachable by whoever has its ID and listed only to `acl:write` tokens. Stored tokens show
//! as `<hidden>` to anyone without `acl:write`. Execution needs no query permission: its
//! instances are filtered by the query's own token when it has one, else by the caller's.
//!
//! Failover (Consul's `queryFailover`): when the local datacenter has no instance the caller may
//! see, execution tries `Failover.NearestN` other datacenters nearest first (WAN RTT order), then
//! the `Failover.Datacenters` not already tried, in the listed order, skipping datacenters the
//! WAN pool does not know; the first that has instances answers. Each is sent the *resolved
//! definition* (Consul's `ExecuteRemote`) over the server RPC port, to an internal path served
//! only there ([`EXECUTE_REMOTE_PATH`]), and runs it against its own catalog with the caller's
//! token (and the query's own token, when it has one). The answer names the datacenter that
//! answered (`Datacenter`) and how many were tried (`Failovers`). `Failover.Targets` (peers) is
//! stored and returned only: there is no peering.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use rand::seq::SliceRandom;
use serde_json::{json, Map, Value};

use super::catalog::{check_json, node_json, node_service_json};
use super::coordinate::sort_near;
use super::query::{QueryParams, ReadParams};
use super::{add_query_meta, blocking, json as json_response, read_body, set_read_meta, Ctx};
use crate::acl::rules::{Need, Resource, Scalar};
use crate::api::authz::{Authz, RequestAcl};
use crate::api::remote_dc::{failover_order, Datacenters};
use crate::replication::consensus::ReadMeta;
use crate::state::catalog::{HealthCheck, Node, ServiceInstance};
use crate::state::command::{Command, CommandResponse};
use crate::state::prepared_query::execute::{self, ResolveError};
use crate::state::prepared_query::{
    Failover, FailoverTarget, PreparedQuery, PreparedQueryOp, QueryTemplate, ServiceQuery, REDACTED_TOKEN,
    WATCH_QUERIES,
};
use crate::state::watch::WatchTarget;
use crate::wire::body::{parse_object, validate_meta, Obj};
use crate::Error;

/// Largest query definition accepted.
const MAX_BODY: usize = 512 * 1024;

/// A string list that keeps JSON null apart from `[]`.
fn opt_strings(o: &Obj<'_>, name: &str) -> Result<Option<Vec<String>>, Error> {
    o.get(&[name]).map(|_| o.strings(&[name])).transpose()
}

/// A string map that keeps JSON null apart from `{}`.
fn opt_map(o: &Obj<'_>, name: &str) -> Result<Option<std::collections::BTreeMap<String, String>>, Error> {
    o.get(&[name]).map(|_| o.string_map(&[name])).transpose()
}

/// Parses a definition (`PreparedQuery` JSON; field names compared without case). The ID and
/// indexes are left for the caller.
pub(crate) fn parse_definition(bytes: &[u8]) -> Result<PreparedQuery, Error> {
    let map = if bytes.iter().all(u8::is_ascii_whitespace) { Map::new() } else { parse_object(bytes)? };
    let decode = |e: Error| match e {
        Error::BadRequest(m) if !m.starts_with("Request decode failed") => {
            Error::BadRequest(format!("Request decode failed: {m}"))
        }
        other => other,
    };
    let o = Obj::new(&map, "");
    let empty = Map::new();
    let svc_map = o.object(&["Service"]).map_err(decode)?.unwrap_or(&empty);
    let s = Obj::new(svc_map, "Service");
    let fo_map = s.object(&["Failover"]).map_err(decode)?.unwrap_or(&empty);
    let f = Obj::new(fo_map, "Service.Failover");
    let targets = match f.get(&["Targets"]) {
        None => None,
        Some(_) => Some(
            f.objects(&["Targets"])
                .map_err(decode)?
                .into_iter()
                .map(|t| {
                    let t = Obj::new(t, "Service.Failover.Targets");
                    Ok(FailoverTarget { peer: t.string(&["Peer"])?, datacenter: t.string(&["Datacenter"])? })
                })
                .collect::<Result<Vec<_>, Error>>()
                .map_err(decode)?,
        ),
    };
    let nearest_n = f.int(&["NearestN"], i64::from(i32::MIN), i64::from(i32::MAX)).map_err(decode)?.unwrap_or(0);
    let service = ServiceQuery {
        service: s.string(&["Service"]).map_err(decode)?,
        sameness_group: s.string(&["SamenessGroup"]).map_err(decode)?,
        failover: Failover { nearest_n, datacenters: opt_strings(&f, "Datacenters").map_err(decode)?, targets },
        only_passing: s.boolean(&["OnlyPassing"]).map_err(decode)?,
        ignore_check_ids: opt_strings(&s, "IgnoreCheckIDs").map_err(decode)?,
        near: s.string(&["Near"]).map_err(decode)?,
        tags: opt_strings(&s, "Tags").map_err(decode)?,
        node_meta: opt_map(&s, "NodeMeta").map_err(decode)?,
        service_meta: opt_map(&s, "ServiceMeta").map_err(decode)?,
        connect: s.boolean(&["Connect"]).map_err(decode)?,
        peer: s.string(&["Peer"]).map_err(decode)?,
    };
    if let Some(meta) = &service.node_meta {
        // A filter may name Consul's own `consul-` keys (`ValidateNodeMetadata(.., true)`).
        let checked: std::collections::BTreeMap<String, String> =
            meta.iter().filter(|(k, _)| !k.starts_with("consul-")).map(|(k, v)| (k.clone(), v.clone())).collect();
        validate_meta("NodeMeta", &checked).map_err(|e| Error::BadRequest(format!("Invalid prepared query: {e}")))?;
    }
    let t_map = o.object(&["Template"]).map_err(decode)?.unwrap_or(&empty);
    let t = Obj::new(t_map, "Template");
    let dns_map = o.object(&["DNS"]).map_err(decode)?.unwrap_or(&empty);
    let dns = Obj::new(dns_map, "DNS");
    Ok(PreparedQuery {
        id: o.string(&["ID"]).map_err(decode)?,
        name: o.string(&["Name"]).map_err(decode)?,
        session: o.string(&["Session"]).map_err(decode)?,
        token: o.string(&["Token"]).map_err(decode)?,
        template: QueryTemplate {
            kind: t.string(&["Type"]).map_err(decode)?,
            regexp: t.string(&["Regexp"]).map_err(decode)?,
            remove_empty_tags: t.boolean(&["RemoveEmptyTags"]).map_err(decode)?,
        },
        service,
        dns_ttl: dns.string(&["TTL"]).map_err(decode)?,
        create_index: 0,
        modify_index: 0,
    })
}

/// `PreparedQuery` JSON, with the token shown as given (the caller redacts).
pub(crate) fn query_json(q: &PreparedQuery, token: &str) -> Value {
    let s = &q.service;
    let targets: Option<Vec<Value>> = s
        .failover
        .targets
        .as_ref()
        .map(|ts| ts.iter().map(|t| json!({"Peer": t.peer, "Datacenter": t.datacenter})).collect());
    json!({
        "ID": q.id,
        "Name": q.name,
        "Session": q.session,
        "Token": token,
        "Template": {"Type": q.template.kind, "Regexp": q.template.regexp, "RemoveEmptyTags": q.template.remove_empty_tags},
        "Service": {
            "Service": s.service,
            "SamenessGroup": s.sameness_group,
            "Failover": {"NearestN": s.failover.nearest_n, "Datacenters": s.failover.datacenters, "Targets": targets},
            "OnlyPassing": s.only_passing,
            "IgnoreCheckIDs": s.ignore_check_ids,
            "Near": s.near,
            "Tags": s.tags,
            "NodeMeta": s.node_meta,
            "ServiceMeta": s.service_meta,
            "Peer": s.peer,
            "Connect": s.connect,
        },
        "DNS": {"TTL": q.dns_ttl},
        "CreateIndex": q.create_index,
        "ModifyIndex": q.modify_index,
    })
}

/// The token as the caller may see it: in full with `acl:write`, else `<hidden>` when set.
fn shown_token<'a>(acl: &RequestAcl, q: &'a PreparedQuery) -> &'a str {
    if q.token.is_empty() || !acl.enabled() || acl.authz().allows_scalar(Scalar::Acl, Need::Write) {
        &q.token
    } else {
        REDACTED_TOKEN
    }
}

/// Whether the caller may see `q` in a list (Consul's `filterPreparedQueries`).
fn listable(acl: &RequestAcl, q: &PreparedQuery) -> bool {
    if !acl.enabled() || acl.authz().allows_scalar(Scalar::Acl, Need::Write) {
        return true;
    }
    let ok = q.acl_prefix().is_some_and(|name| acl.authz().allows(Resource::Query, name, Need::Read));
    if !ok {
        acl.mark_filtered();
    }
    ok
}

fn with_meta(mut resp: Response, index: u64, meta: &ReadMeta) -> Response {
    set_read_meta(resp.headers_mut(), index, meta);
    resp
}

/// `POST /v1/query`: `{"ID": ...}`.
pub(super) async fn create(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    q.check_dc(&ctx.config.datacenter)?;
    let bytes = read_body(body, &headers, MAX_BODY, "the prepared query size limit").await?;
    let mut query = parse_definition(&bytes)?;
    if !query.id.is_empty() {
        return Err(Error::BadRequest("ID must be empty when creating a new prepared query".into()));
    }
    if let Some(name) = query.acl_prefix() {
        acl.require(Resource::Query, name, Need::Write)?;
    }
    // Chosen here, before Raft, so applying stays deterministic.
    query.id = loop {
        let id = uuid::Uuid::new_v4().to_string();
        if !ctx.consensus()?.state().read(|d| d.prepared_queries.by_id.contains_key(&id)) {
            break id;
        }
    };
    let id = query.id.clone();
    write(&ctx, PreparedQueryOp::Create(Box::new(query))).await?;
    Ok(json_response(StatusCode::OK, &json!({ "ID": id }), q.pretty()))
}

async fn write(ctx: &Ctx, op: PreparedQueryOp) -> Result<(), Error> {
    match ctx.consensus()?.write(Command::PreparedQuery(op)).await? {
        (_, CommandResponse::Ok) => Ok(()),
        (_, CommandResponse::Failed(e)) => Err(e.into()),
        (_, other) => Err(Error::Raft(format!("unexpected result {other:?}"))),
    }
}

/// `write` on the name of the stored query `id` when ACL rules govern it; 404 when it does
/// not exist.
fn require_existing_write(ctx: &Ctx, acl: &RequestAcl, id: &str) -> Result<(), Error> {
    let prefix =
        ctx.consensus()?.state().read(|d| d.prepared_queries.by_id.get(id).map(|q| q.acl_prefix().map(str::to_string)));
    match prefix {
        None => Err(Error::NotFound(format!("Cannot modify non-existent prepared query: '{id}'"))),
        Some(Some(name)) => acl.require(Resource::Query, &name, Need::Write),
        Some(None) => Ok(()),
    }
}

/// `GET /v1/query`: every query the caller may see, as a blocking query; `?filter=` applies
/// to the `PreparedQuery` JSON.
pub(super) async fn list(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    q.check_dc(&ctx.config.datacenter)?;
    let params = ReadParams::parse(&q, ctx.config.default_query_time, ctx.config.max_query_time)?;
    let filter = crate::filter::from_query(q.get("filter"), &crate::filter::schema::PREPARED_QUERY)?;
    let targets = [WatchTarget::Key(WATCH_QUERIES.to_string())];
    let (index, body, meta) = blocking::run(&ctx, &params, &targets, |d| {
        let list: Vec<Value> = d
            .prepared_queries
            .by_id
            .values()
            .filter(|pq| listable(&acl, pq))
            .map(|pq| query_json(pq, shown_token(&acl, pq)))
            .filter(|v| filter.as_ref().is_none_or(|f| f.matches(v)))
            .collect();
        (d.prepared_queries.index, list)
    })
    .await?;
    Ok(with_meta(json_response(StatusCode::OK, &body, q.pretty()), index, &meta))
}

/// What `/v1/query/<rest>` addresses.
enum Target<'a> {
    Query(&'a str),
    Execute(&'a str),
    Explain(&'a str),
}

fn target(rest: &str) -> Target<'_> {
    if let Some(id) = rest.strip_suffix("/execute") {
        Target::Execute(id)
    } else if let Some(id) = rest.strip_suffix("/explain") {
        Target::Explain(id)
    } else {
        Target::Query(rest)
    }
}

fn only_get(uri: &Uri) -> Response {
    let mut resp = super::text(StatusCode::METHOD_NOT_ALLOWED, format!("method not allowed for {}", uri.path()));
    resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
    resp
}

/// `GET /v1/query/:id`, `/v1/query/:id_or_name/execute` and `/v1/query/:id_or_name/explain`.
pub(super) async fn get(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(rest): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Error> {
    match target(&rest) {
        Target::Query(id) => read(&ctx, &acl, id, &uri).await,
        Target::Execute(id) => run(&ctx, &acl, id, &uri, &headers).await,
        Target::Explain(id) => explain(&ctx, &acl, id, &uri).await,
    }
}

/// `GET /v1/query/:id`: `[PreparedQuery]`; 404 for an unknown ID, 403 when ACL rules govern
/// the query and the caller may not read it.
async fn read(ctx: &Ctx, acl: &RequestAcl, id: &str, uri: &Uri) -> Result<Response, Error> {
    let q = QueryParams::from_uri(uri);
    q.check_dc(&ctx.config.datacenter)?;
    let params = ReadParams::parse(&q, ctx.config.default_query_time, ctx.config.max_query_time)?;
    let targets = [WatchTarget::Key(WATCH_QUERIES.to_string())];
    let (index, found, meta) = blocking::run(ctx, &params, &targets, |d| {
        (d.prepared_queries.index, d.prepared_queries.by_id.get(id).cloned())
    })
    .await?;
    let Some(pq) = found else { return Err(Error::NotFound("Query not found".into())) };
    if let Some(name) = pq.acl_prefix() {
        acl.require(Resource::Query, name, Need::Read)?;
    }
    let body = [query_json(&pq, shown_token(acl, &pq))];
    Ok(with_meta(json_response(StatusCode::OK, &body, q.pretty()), index, &meta))
}

fn resolve_error(e: ResolveError) -> Error {
    match e {
        ResolveError::NotFound => Error::NotFound(e.to_string()),
        ResolveError::TemplateById | ResolveError::Render(_) => Error::BadRequest(e.to_string()),
    }
}

/// `GET /v1/query/:id_or_name/explain`: `{"Query": <rendered query>}` plus the read metadata.
async fn explain(ctx: &Ctx, acl: &RequestAcl, id_or_name: &str, uri: &Uri) -> Result<Response, Error> {
    let q = QueryParams::from_uri(uri);
    q.check_dc(&ctx.config.datacenter)?;
    let params = ReadParams::parse(&q, ctx.config.default_query_time, ctx.config.max_query_time)?;
    let meta = ctx.consensus()?.read_barrier(params.consistency).await?;
    let (index, resolved) =
        ctx.consensus()?.state().read(|d| (d.prepared_queries.index, execute::resolve(d, id_or_name, "")));
    let pq = resolved.map_err(resolve_error)?;
    if !listable(acl, &pq) {
        return Err(crate::acl::authorizer::Denied::resource(Resource::Query, &pq.name, Need::Read)
            .into_error(acl.authz().accessor()));
    }
    let mut body = json!({ "Query": query_json(&pq, shown_token(acl, &pq)) });
    add_query_meta(&mut body, index, &meta, acl);
    Ok(with_meta(json_response(StatusCode::OK, &body, q.pretty()), index, &meta))
}

/// The node to sort by distance from: `?near=`, else the query's `Near`; `_agent` is this
/// agent. `None` when coordinates are off.
fn near_source(ctx: &Ctx, q: &QueryParams, pq: &PreparedQuery) -> Option<String> {
    if ctx.config.disable_coordinates {
        return None;
    }
    let near = q.get("near").filter(|n| !n.is_empty()).unwrap_or(&pq.service.near);
    match near {
        "" | "_ip" => None,
        "_agent" => Some(ctx.config.node_name.clone()),
        node => Some(node.to_string()),
    }
}

/// One instance an execution found, owned (it may come from another datacenter).
pub(crate) type Found = (Node, ServiceInstance, Vec<HealthCheck>);

/// What one datacenter's execution of a query answered.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Executed {
    /// The datacenter that answered.
    pub datacenter: String,
    /// Its instances, filtered, ordered and limited.
    pub nodes: Vec<Found>,
}

/// The instances `pq` finds in `d` that the caller (`acl`, or the query's own token when it
/// has one) may see, shuffled, sorted near `source` when given, cut to `limit` (0: all).
fn select(
    ctx: &Ctx,
    d: &crate::state::StateData,
    acl: &RequestAcl,
    pq: &PreparedQuery,
    connect: bool,
    source: Option<&str>,
    limit: i64,
) -> Result<Vec<Found>, Error> {
    let now = crate::replication::session_ttl::now_ms();
    // The query's own token, when it has one, decides what the answer may show.
    let query_authz: Option<Arc<Authz>> = if pq.token.is_empty() || !acl.enabled() {
        None
    } else {
        Some(ctx.acl.resolve(Some(&pq.token), &d.acl, now)?)
    };
    let visible = |r: Resource, name: &str| match &query_authz {
        Some(a) => a.allows(r, name, Need::Read),
        None => acl.visible(r, name),
    };
    let mut entries: Vec<_> = execute::instances(d, pq, connect)
        .into_iter()
        .filter(|(n, s, _)| visible(Resource::Node, &n.node) && visible(Resource::Service, &s.service))
        .collect();
    entries.shuffle(&mut rand::thread_rng());
    sort_near(d, source, &mut entries, |(n, _, _)| &n.node);
    // The source node itself goes first when it is among the nearest (Consul looks at the
    // first ten).
    if let Some(src) = source {
        if let Some(pos) = entries.iter().take(10).position(|(n, _, _)| n.node == *src) {
            entries.swap(0, pos);
        }
    }
    if limit > 0 {
        entries.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    Ok(entries
        .into_iter()
        .map(|(n, s, checks)| {
            let checks = checks
                .into_iter()
                .filter(|c| c.service_name.is_empty() || visible(Resource::Service, &c.service_name))
                .cloned()
                .collect();
            (n.clone(), s.clone(), checks)
        })
        .collect())
}

/// `GET /v1/query/:id_or_name/execute`: `PreparedQueryExecuteResponse`. With no instance
/// here, the query fails over to other datacenters ([`failover`]).
async fn run(ctx: &Ctx, acl: &RequestAcl, id_or_name: &str, uri: &Uri, headers: &HeaderMap) -> Result<Response, Error> {
    let q = QueryParams::from_uri(uri);
    q.check_dc(&ctx.config.datacenter)?;
    let params = ReadParams::parse(&q, ctx.config.default_query_time, ctx.config.max_query_time)?;
    let limit = parse_limit(&q)?;
    let connect = q.has("connect") && q.get("connect") != Some("false");
    // Execute blocks (`?index=`) like a health query: it wakes when the query table or the
    // service it answers for changes. That also lets the agent cache keep `?cached` answers
    // current with a blocking refresh.
    let service =
        ctx.consensus()?.state().read(|d| execute::resolve(d, id_or_name, "").ok().map(|pq| pq.service.service));
    let mut targets = vec![WatchTarget::Key(WATCH_QUERIES.to_string())];
    if let Some(service) = &service {
        targets.push(WatchTarget::Key(crate::state::catalog::watch_service(service)));
    }
    let (index, result, meta) = blocking::run(ctx, &params, &targets, |d| {
        let pq = match execute::resolve(d, id_or_name, "") {
            Ok(pq) => pq,
            Err(e) => return (d.prepared_queries.index, Err(resolve_error(e))),
        };
        let source = near_source(ctx, &q, &pq);
        let index = d.prepared_queries.index.max(d.catalog.service_index(&pq.service.service));
        (index, select(ctx, d, acl, &pq, connect, source.as_deref(), limit).map(|nodes| (pq, nodes)))
    })
    .await?;
    let (pq, nodes) = result?;
    let mut executed = Executed { datacenter: ctx.config.datacenter.clone(), nodes };
    let mut failovers = 0;
    if executed.nodes.is_empty() {
        let token = super::token(&q, headers);
        let (found, tried) = failover(&ctx.datacenters, &pq, limit, connect, token.as_deref()).await;
        failovers = tried;
        if let Some(found) = found {
            executed = found;
        }
    }
    let dc = executed.datacenter.clone();
    let nodes: Vec<Value> = executed
        .nodes
        .iter()
        .map(|(n, s, checks)| {
            let checks: Vec<Value> = checks.iter().map(check_json).collect();
            json!({"Node": node_json(n), "Service": node_service_json(s, &dc), "Checks": checks})
        })
        .collect();
    let mut body = json!({
        "Service": pq.service.service,
        "Nodes": nodes,
        "DNS": {"TTL": pq.dns_ttl},
        "Datacenter": dc,
        "PeerName": "",
        "Failovers": failovers,
    });
    add_query_meta(&mut body, index, &meta, acl);
    Ok(with_meta(json_response(StatusCode::OK, &body, q.pretty()), index, &meta))
}

fn parse_limit(q: &QueryParams) -> Result<i64, Error> {
    match q.get("limit").filter(|l| !l.is_empty()) {
        None => Ok(0),
        Some(l) => l.parse::<i64>().map_err(|e| Error::BadRequest(format!("Bad limit: {e}"))),
    }
}

/// Where another datacenter runs a query definition for us (Consul's
/// `PreparedQuery.ExecuteRemote`). Served only to requests that came over the server RPC port
/// ([`super::proxy::ViaServerRpc`]); on the public HTTP port it does not exist.
pub(super) const EXECUTE_REMOTE_PATH: &str = "/v1/internal/consul-rs/query/execute-remote";

/// The body of an [`EXECUTE_REMOTE_PATH`] request.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RemoteExecute {
    /// The definition, as resolved (templates rendered) where the query lives.
    query: PreparedQuery,
    /// `?limit`, applied remotely to save bandwidth.
    limit: i64,
    /// `?connect`.
    connect: bool,
}

/// Runs a query definition another datacenter sent: its instances here, shuffled and limited
/// (no distance sort: the caller is elsewhere), as the caller's token and the query's own token
/// allow. Answers an [`Executed`], postcard-encoded.
pub(super) async fn execute_remote(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    via: Option<Extension<super::proxy::ViaServerRpc>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    if via.is_none() {
        return Err(Error::NotFound(format!("Not found: no handler for path {EXECUTE_REMOTE_PATH}")));
    }
    let bytes = read_body(body, &headers, MAX_BODY * 2, "the prepared query size limit").await?;
    let req: RemoteExecute =
        serde_json::from_slice(&bytes).map_err(|e| Error::BadRequest(format!("Request decode failed: {e}")))?;
    let consensus = ctx.consensus()?;
    consensus.read_barrier(crate::replication::consensus::Consistency::Default).await?;
    let nodes = consensus.state().read(|d| select(&ctx, d, &acl, &req.query, req.connect, None, req.limit))?;
    let executed = Executed { datacenter: ctx.config.datacenter.clone(), nodes };
    let bytes = postcard::to_allocvec(&executed).map_err(|e| Error::Rpc(e.to_string()))?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// How long a remote execution may take.
const REMOTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `pq` in datacenter `dc` as `token`.
pub(crate) async fn execute_in(
    datacenters: &Datacenters,
    dc: &str,
    pq: &PreparedQuery,
    limit: i64,
    connect: bool,
    token: Option<&str>,
) -> Result<Executed, Error> {
    let body = RemoteExecute { query: pq.clone(), limit, connect };
    let body = serde_json::to_vec(&body).map_err(|e| Error::Rpc(e.to_string()))?;
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(t) = token {
        headers.push(("x-consul-token".to_string(), t.to_string()));
    }
    let req = super::proxy::HttpRequest { method: "POST".into(), uri: EXECUTE_REMOTE_PATH.into(), headers, body };
    let req = postcard::to_allocvec(&req).map_err(|e| Error::Rpc(e.to_string()))?;
    // Running a query changes nothing: safe to ask another server after any failure.
    let answer = datacenters.call(dc, crate::rpc::Service::Http, req, REMOTE_TIMEOUT, true).await?;
    let resp = super::proxy::decode_answer(&answer)?;
    if resp.status != 200 {
        let text = String::from_utf8_lossy(&resp.body).trim().to_string();
        return Err(Error::Rpc(format!("datacenter {dc} answered {}: {text}", resp.status)));
    }
    postcard::from_bytes(&resp.body).map_err(|e| Error::Rpc(format!("undecodable answer from datacenter {dc}: {e}")))
}

/// Consul's `queryFailover`: the datacenters of [`failover_order`] in turn until one has an
/// instance; a datacenter that fails is logged and skipped. Answers what the last datacenter
/// that answered found (`None`: none answered) and how many datacenters were tried.
pub(crate) async fn failover(
    datacenters: &Datacenters,
    pq: &PreparedQuery,
    limit: i64,
    connect: bool,
    token: Option<&str>,
) -> (Option<Executed>, usize) {
    let f = &pq.service.failover;
    let listed = f.datacenters.as_deref().unwrap_or_default();
    if f.nearest_n <= 0 && listed.is_empty() {
        return (None, 0);
    }
    let order = failover_order(&datacenters.others_by_distance(), f.nearest_n, listed);
    let mut found = None;
    let mut tried = 0;
    for dc in order {
        tried += 1;
        match execute_in(datacenters, &dc, pq, limit, connect, token).await {
            Ok(e) => {
                let done = !e.nodes.is_empty();
                found = Some(e);
                if done {
                    break;
                }
            }
            Err(e) => tracing::warn!(datacenter = %dc, error = %e, "Failed querying for service in datacenter"),
        }
    }
    (found, tried)
}

/// `PUT /v1/query/:id`: replaces the definition (the ID comes from the path).
pub(super) async fn update(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(rest): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let Target::Query(id) = target(&rest) else { return Ok(only_get(&uri)) };
    let q = QueryParams::from_uri(&uri);
    q.check_dc(&ctx.config.datacenter)?;
    let bytes = read_body(body, &headers, MAX_BODY, "the prepared query size limit").await?;
    let mut query = parse_definition(&bytes)?;
    query.id = id.to_string();
    if let Some(name) = query.acl_prefix() {
        acl.require(Resource::Query, name, Need::Write)?;
    }
    require_existing_write(&ctx, &acl, id)?;
    write(&ctx, PreparedQueryOp::Update(Box::new(query))).await?;
    Ok(StatusCode::OK.into_response())
}

/// `DELETE /v1/query/:id`.
pub(super) async fn delete(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(rest): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    let Target::Query(id) = target(&rest) else { return Ok(only_get(&uri)) };
    let q = QueryParams::from_uri(&uri);
    q.check_dc(&ctx.config.datacenter)?;
    require_existing_write(&ctx, &acl, id)?;
    write(&ctx, PreparedQueryOp::Delete { id: id.to_string() }).await?;
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_round_trips_nulls_and_values() {
        let body = br#"{"Name":"q","Service":{"Service":"redis","NodeMeta":{"k":"v"},"Tags":null,
            "IgnoreCheckIDs":[],"Failover":{"NearestN":2,"Datacenters":null,"Targets":null}},
            "DNS":{"TTL":"10s"},"Template":{"Type":"name_prefix_match","Regexp":"^q-(.*)$","RemoveEmptyTags":true}}"#;
        let q = parse_definition(body).expect("parses");
        let v = query_json(&q, &q.token);
        assert_eq!(v["Service"]["Tags"], Value::Null);
        assert_eq!(v["Service"]["IgnoreCheckIDs"], json!([]));
        assert_eq!(v["Service"]["NodeMeta"], json!({"k": "v"}));
        assert_eq!(v["Service"]["ServiceMeta"], Value::Null);
        assert_eq!(v["Service"]["Failover"], json!({"NearestN": 2, "Datacenters": null, "Targets": null}));
        assert_eq!(v["Template"], json!({"Type": "name_prefix_match", "Regexp": "^q-(.*)$", "RemoveEmptyTags": true}));
        assert_eq!(v["DNS"], json!({"TTL": "10s"}));
        // Field names compare without case, as Go's decoder does.
        let reserved = br#"{"Name":"x","Service":{"Service":"s","NodeMeta":{"consul-network-segment":""}}}"#;
        assert!(parse_definition(reserved).is_ok(), "a filter may name consul- keys");
        let bad_meta = br#"{"Name":"x","Service":{"Service":"s","NodeMeta":{"bad key":"v"}}}"#;
        assert!(
            matches!(parse_definition(bad_meta), Err(Error::BadRequest(m)) if m.starts_with("Invalid prepared query"))
        );
        let lower = parse_definition(br#"{"name":"x","service":{"service":"s"}}"#).expect("parses");
        assert_eq!((lower.name.as_str(), lower.service.service.as_str()), ("x", "s"));
    }

    #[test]
    fn malformed_definitions_are_400() {
        for body in [&br#"[1]"#[..], br#"{"Service":"x"}"#, br#"{"Service":{"Tags":"x"}}"#, br#"{"Name":1}"#] {
            match parse_definition(body) {
                Err(Error::BadRequest(m)) => assert!(m.starts_with("Request decode failed"), "{m}"),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }
}
