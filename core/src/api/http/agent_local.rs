//! The agent's own services and checks (`agent/agent_endpoint.go`): registration,
//! deregistration, TTL updates, maintenance mode, local health, hash-blocking service reads and
//! `PUT /v1/agent/reload`. Registrations change the local state only; anti-entropy carries them
//! to the catalog.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Map, Value};

use super::catalog::{check_json, service_json};
use super::content_hash::agent_service_content_hash;
use super::query::QueryParams;
use super::{json as json_response, read_body, text, ApiContext, Ctx};
use crate::acl::rules::{Need, Resource};
use crate::api::authz::RequestAcl;
use crate::duration::parse_go_duration;
use crate::local::{aggregate, parse_check_registration, parse_service_registration, LocalCheck, Snapshot, Source};
use crate::state::catalog::{valid_status, CRITICAL, PASSING, WARNING};
use crate::Error;

/// Largest registration body.
const MAX_BODY: usize = 1024 * 1024;

fn ok_empty() -> Response {
    StatusCode::OK.into_response()
}

async fn body_json(body: Body, headers: &HeaderMap) -> Result<Value, Error> {
    let bytes = read_body(body, headers, MAX_BODY, "the agent request size limit").await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::BadRequest("Request decode failed: empty body".into()));
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::BadRequest(format!("Request decode failed: {e}")))
}

fn check_dc(ctx: &Ctx, q: &QueryParams) -> Result<(), Error> {
    q.check_dc(&ctx.config.datacenter)
}

/// Consul's `AgentService` as the agent endpoints write it: `Kind` and `TaggedAddresses` only
/// when set (`omitempty`, so clients read `null`), and no Raft indexes (the local copy has none).
fn agent_service_json(ctx: &Ctx, s: &crate::state::catalog::ServiceInstance) -> Value {
    let mut v = service_json(s, &ctx.config.datacenter);
    if let Some(m) = v.as_object_mut() {
        m.remove("CreateIndex");
        m.remove("ModifyIndex");
        if s.kind.is_empty() {
            m.remove("Kind");
        }
        if m.get("TaggedAddresses").and_then(Value::as_object).is_some_and(|t| t.is_empty()) {
            m.remove("TaggedAddresses");
        }
        // `buildAgentService`: a proxy configuration only on connect proxies and gateways (an
        // empty one when none was given), `Connect` only as `{"Native": true}`.
        if s.kind == "connect-proxy" || s.kind.ends_with("-gateway") {
            let rendered = s.ext.proxy.as_ref().map(|p| crate::wire::connect::render_proxy(p, true));
            m.insert("Proxy".into(), agent_proxy_json(rendered.as_ref()));
        } else {
            m.remove("Proxy");
        }
        if s.ext.connect_native() {
            m.insert("Connect".into(), json!({"Native": true}));
        } else {
            m.remove("Connect");
        }
    }
    v
}

/// `api.AgentServiceConnectProxyConfig` as Consul writes it from a registered proxy block
/// (`ConnectProxyConfig.ToAPI`), from the agent rendering of the stored proxy
/// ([`crate::wire::connect::render_proxy`]): its struct members (`MeshGateway`, `Expose`, an upstream's
/// `MeshGateway`) are always present, an exposed path always has `ParsedFromCheck`, and
/// `EnvoyExtensions` is never copied.
fn agent_proxy_json(proxy: Option<&Value>) -> Value {
    let mut p = proxy.and_then(Value::as_object).cloned().unwrap_or_default();
    p.remove("EnvoyExtensions");
    p.entry("MeshGateway").or_insert_with(|| json!({}));
    let expose = p.entry("Expose").or_insert_with(|| json!({}));
    if let Some(Value::Array(paths)) = expose.get_mut("Paths") {
        for path in paths.iter_mut().filter_map(Value::as_object_mut) {
            path.entry("ParsedFromCheck").or_insert(Value::Bool(false));
        }
    }
    if let Some(Value::Array(upstreams)) = p.get_mut("Upstreams") {
        for u in upstreams.iter_mut().filter_map(Value::as_object_mut) {
            u.entry("MeshGateway").or_insert_with(|| json!({}));
        }
    }
    Value::Object(p)
}

/// A local check as the agent reports it: the catalog row, with the latency of the last probe
/// rather than the one the catalog copy holds.
fn agent_check_json(ctx: &Ctx, c: &LocalCheck, snap: &Snapshot) -> Value {
    let mut v = check_json(&c.to_health_check(&ctx.local.node.name, &snap.services));
    if let Some(took) = c.latency {
        v["Latency"] = crate::duration::format_go_duration(took).into();
    }
    v
}

type Acl = Extension<Arc<RequestAcl>>;

/// The service name of the local instance `id`.
fn local_service_name(ctx: &Ctx, id: &str) -> Option<String> {
    ctx.local.state.service(id).map(|s| s.service.service.clone())
}

/// Write on what a local check belongs to: its service, or this agent's node. An unknown
/// check needs nothing here (the call answers 404 on its own).
fn require_check_write(ctx: &Ctx, acl: &RequestAcl, check_id: &str) -> Result<(), Error> {
    let Some(check) = ctx.local.state.check(check_id) else {
        return Ok(());
    };
    require_check_target(ctx, acl, &check.def.service_id)
}

/// Write on a check's target: the service with local ID `service_id`, or the node (empty ID).
fn require_check_target(ctx: &Ctx, acl: &RequestAcl, service_id: &str) -> Result<(), Error> {
    if service_id.is_empty() {
        return acl.require(Resource::Node, &ctx.local.node.name, Need::Write);
    }
    let name = local_service_name(ctx, service_id).unwrap_or_else(|| service_id.to_string());
    acl.require(Resource::Service, &name, Need::Write)
}

/// Runs a change of the local state, which writes definition files, on the blocking pool: its
/// fsyncs must not hold one of the runtime's few workers, and concurrent registrations then
/// share the file system's journal commits instead of queueing behind each other.
async fn on_disk<T: Send + 'static>(
    ctx: &Ctx,
    change: impl FnOnce(&crate::local::LocalAgent) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let local = ctx.local.clone();
    tokio::task::spawn_blocking(move || change(&local))
        .await
        .map_err(|e| Error::Storage(format!("the local state change did not finish: {e}")))?
}

/// `PUT /v1/agent/service/register`.
pub(super) async fn register_service(
    State(ctx): State<Ctx>,
    Extension(acl): Acl,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    check_dc(&ctx, &q)?;
    let v = body_json(body, &headers).await?;
    let def = parse_service_registration(&v)?;
    acl.require(Resource::Service, &def.service.service, Need::Write)?;
    // A sidecar is a service of its own name: writing it needs its own permission, as in Consul.
    if let Some(sidecar) = crate::local::sidecar::build(&def)? {
        acl.require(Resource::Service, &sidecar.service.service, Need::Write)?;
    }
    if let Some(old) = local_service_name(&ctx, &def.service.id).filter(|old| *old != def.service.service) {
        acl.require(Resource::Service, &old, Need::Write)?;
    }
    let replace = q.has("replace-existing-checks");
    on_disk(&ctx, move |local| local.register_service(def, Source::Api, replace)).await?;
    in_catalog(&ctx).await;
    Ok(ok_empty())
}

/// `PUT /v1/agent/service/deregister/:id`.
pub(super) async fn deregister_service(
    State(ctx): State<Ctx>,
    Extension(acl): Acl,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    if let Some(name) = local_service_name(&ctx, &id) {
        acl.require(Resource::Service, &name, Need::Write)?;
    }
    on_disk(&ctx, move |local| local.deregister_service(&id)).await?;
    in_catalog(&ctx).await;
    Ok(ok_empty())
}

/// `GET /v1/agent/services`: service ID → `AgentService`.
pub(super) async fn services(State(ctx): State<Ctx>, Extension(acl): Acl, uri: Uri) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    let filter = crate::filter::from_query(q.get("filter"), &crate::filter::schema::AGENT_SERVICE)?;
    let snap = ctx.local.state.snapshot();
    let out: Map<String, Value> = snap
        .services
        .iter()
        .filter(|(_, s)| acl.visible(Resource::Service, &s.service.service))
        .map(|(id, s)| (id.clone(), agent_service_json(&ctx, &s.service)))
        .filter(|(_, v)| filter.as_ref().is_none_or(|f| f.matches(v)))
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Object(out), q.pretty()))
}

/// `GET /v1/agent/service/:id`: the local definition with `ContentHash`; `?hash=` blocks until
/// the hash differs (or `?wait` runs out).
pub(super) async fn service(
    State(ctx): State<Ctx>,
    Extension(acl): Acl,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    if let Some(name) = local_service_name(&ctx, &id) {
        acl.require(Resource::Service, &name, Need::Read)?;
    }
    let wait = match q.get("wait") {
        None => ctx.config.default_query_time,
        Some(w) => parse_go_duration(w)
            .map_err(|_| Error::BadRequest(format!("Invalid wait time {w:?}")))?
            .min(ctx.config.max_query_time),
    };
    let wait = if wait.is_zero() { ctx.config.default_query_time } else { wait };
    let want = q.get("hash").filter(|h| !h.is_empty()).map(str::to_string);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut changes = ctx.local.state.subscribe();
        let Some(s) = ctx.local.state.service(&id) else {
            return Err(Error::NotFound(format!("unknown service ID: {id}")));
        };
        let mut body = agent_service_json(&ctx, &s.service);
        let hash = agent_service_content_hash(&body);
        let done = want.as_deref() != Some(hash.as_str()) || tokio::time::Instant::now() >= deadline;
        if done {
            if let Value::Object(m) = &mut body {
                m.insert("ContentHash".into(), Value::String(hash.clone()));
            }
            let mut resp = json_response(StatusCode::OK, &body, q.pretty());
            if let Ok(h) = HeaderValue::from_str(&hash) {
                resp.headers_mut().insert("X-Consul-ContentHash", h);
            }
            return Ok(resp);
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = ctx.shutdown.cancelled() => {}
        }
    }
}

/// `GET /v1/agent/checks`: check ID → `AgentCheck`.
pub(super) async fn checks(State(ctx): State<Ctx>, Extension(acl): Acl, uri: Uri) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    let filter = crate::filter::from_query(q.get("filter"), &crate::filter::schema::HEALTH_CHECK)?;
    let snap = ctx.local.state.snapshot();
    let visible = |c: &LocalCheck| match snap.services.get(&c.def.service_id) {
        Some(s) => acl.visible(Resource::Service, &s.service.service),
        None => acl.visible(Resource::Node, &ctx.local.node.name),
    };
    let out: Map<String, Value> = snap
        .checks
        .iter()
        .filter(|(_, c)| visible(c))
        .map(|(id, c)| (id.clone(), agent_check_json(&ctx, c, &snap)))
        .filter(|(_, v)| filter.as_ref().is_none_or(|f| f.matches(v)))
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Object(out), q.pretty()))
}

/// `PUT /v1/agent/check/register`.
pub(super) async fn register_check(
    State(ctx): State<Ctx>,
    Extension(acl): Acl,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    check_dc(&ctx, &q)?;
    let v = body_json(body, &headers).await?;
    let def = parse_check_registration(&v)?;
    require_check_target(&ctx, &acl, &def.service_id)?;
    require_check_write(&ctx, &acl, &def.id)?;
    on_disk(&ctx, move |local| local.register_check(def, Source::Api)).await?;
    in_catalog(&ctx).await;
    Ok(ok_empty())
}

/// `PUT /v1/agent/check/deregister/:id`.
pub(super) async fn deregister_check(
    State(ctx): State<Ctx>,
    Extension(acl): Acl,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    require_check_write(&ctx, &acl, &id)?;
    on_disk(&ctx, move |local| local.deregister_check(&id)).await?;
    in_catalog(&ctx).await;
    Ok(ok_empty())
}

async fn ttl(ctx: &Ctx, acl: &RequestAcl, id: &str, uri: &Uri, status: &str) -> Result<Response, Error> {
    require_check_write(ctx, acl, id)?;
    let q = QueryParams::from_uri(uri);
    let note = q.get("note").unwrap_or_default().to_string();
    ctx.local.update_ttl(id, status, note)?;
    in_catalog(ctx).await;
    Ok(ok_empty())
}

/// How long a server agent's change handler waits for its change to reach the catalog.
const CATALOG_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// On a server agent, waits (up to [`CATALOG_WAIT`]) until the change just made is in the
/// catalog, so a client that registers and then reads the catalog or health endpoints sees it
/// (Consul's own clients and test harnesses do exactly that). The change stands either way: a
/// sync that takes longer (no leader) finishes in the background, as in Consul.
async fn in_catalog(ctx: &ApiContext) {
    if ctx.backend.consensus().is_some() {
        let rev = ctx.local.state.current_rev();
        ctx.local.state.wait_synced(rev, CATALOG_WAIT).await;
    }
}

/// `PUT /v1/agent/check/pass/:id?note=`.
pub(super) async fn check_pass(
    State(ctx): State<Ctx>,
    Extension(acl): Acl,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    ttl(&ctx, &acl, &id, &uri, PASSING).await
}

/// `PUT /v1/agent/check/warn/:id?note=`.
pub(super) async fn check_warn(
    State(ctx): State<Ctx>,
    Extension(acl): Acl,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    ttl(&ctx, &acl, &id, &uri, WARNING).await
}

/// `PUT /v1/agent/check/fail/:id?note=`.
pub(super) async fn check_fail(
    State(ctx): State<Ctx>,
    Extension(acl): Acl,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    ttl(&ctx, &acl, &id, &uri, CRITICAL).await
}

/// `PUT /v1/agent/check/update/:id` with `{"Status": …, "Output": …}`.
pub(super) async fn check_update(
    State(ctx): State<Ctx>,
    Extension(acl): Acl,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    require_check_write(&ctx, &acl, &id)?;
    let v = body_json(body, &headers).await?;
    let Value::Object(m) = &v else {
        return Err(Error::BadRequest("Request decode failed: expected a JSON object".into()));
    };
    let o = crate::wire::body::Obj::new(m, "");
    let status = o.string(&["Status"])?;
    if !valid_status(&status) {
        return Err(Error::BadRequest(format!("Invalid check status: {status:?}")));
    }
    ctx.local.update_ttl(&id, &status, o.string(&["Output"])?)?;
    in_catalog(&ctx).await;
    Ok(ok_empty())
}

/// `?enable=true|false` (required) and `?reason=`.
fn maintenance_params(uri: &Uri) -> Result<(bool, String), Error> {
    maintenance_query(&QueryParams::from_uri(uri))
}

/// The decoding half of [`maintenance_params`].
pub(super) fn maintenance_query(q: &QueryParams) -> Result<(bool, String), Error> {
    let enable = match q.get("enable") {
        None | Some("") => return Err(Error::BadRequest("Missing value for enable".into())),
        // Go's strconv.ParseBool spellings.
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" || v == "t" || v == "T" => true,
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" || v == "f" || v == "F" => false,
        Some(v) => return Err(Error::BadRequest(format!("Invalid value for enable: {v:?}"))),
    };
    Ok((enable, q.get("reason").unwrap_or_default().to_string()))
}

/// `PUT /v1/agent/service/maintenance/:id?enable=&reason=`.
pub(super) async fn service_maintenance(
    State(ctx): State<Ctx>,
    Extension(acl): Acl,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    if let Some(name) = local_service_name(&ctx, &id) {
        acl.require(Resource::Service, &name, Need::Write)?;
    }
    maintenance_params(&uri)
        .and_then(|(enable, reason)| ctx.local.service_maintenance(&id, enable, &reason).map(|()| ok_empty()))
}

/// `PUT /v1/agent/maintenance?enable=&reason=`.
pub(super) async fn node_maintenance(State(ctx): State<Ctx>, Extension(acl): Acl, uri: Uri) -> Result<Response, Error> {
    acl.require(Resource::Node, &ctx.local.node.name, Need::Write)?;
    maintenance_params(&uri)
        .and_then(|(enable, reason)| ctx.local.node_maintenance(enable, &reason).map(|()| ok_empty()))
}

fn status_code(status: &str) -> StatusCode {
    match status {
        PASSING => StatusCode::OK,
        WARNING => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn rank(status: &str) -> u8 {
    match status {
        "maintenance" => 3,
        CRITICAL => 2,
        WARNING => 1,
        _ => 0,
    }
}

/// One `{AggregatedStatus, Service, Checks}` entry: the service's checks and the node's.
fn health_entry(ctx: &Ctx, snap: &Snapshot, id: &str) -> Option<(&'static str, Value)> {
    let s = snap.services.get(id)?;
    let checks: Vec<&LocalCheck> =
        snap.checks.values().filter(|c| c.def.service_id == id || c.def.service_id.is_empty()).collect();
    let status = aggregate(checks.iter().copied());
    let body = json!({
        "AggregatedStatus": status,
        "Service": agent_service_json(ctx, &s.service),
        "Checks": checks.iter().map(|c| health_entry_check_json(ctx, c, snap)).collect::<Vec<_>>(),
    });
    Some((status, body))
}

/// A check as the agent health endpoints show it: Consul builds these as `api.HealthCheck`,
/// which has no `Interval` and `Timeout`, unlike `/v1/agent/checks` and the catalog.
fn health_entry_check_json(ctx: &Ctx, c: &LocalCheck, snap: &Snapshot) -> Value {
    let mut v = agent_check_json(ctx, c, snap);
    if let Some(o) = v.as_object_mut() {
        o.remove("Interval");
        o.remove("Timeout");
    }
    v
}

fn health_response(status: &'static str, body: Value, q: &QueryParams) -> Response {
    let code = status_code(status);
    if q.get("format") == Some("text") {
        return text(code, status);
    }
    json_response(code, &body, q.pretty())
}

/// `GET /v1/agent/health/service/id/:id`: 200 passing, 429 warning, 503 critical or maintenance.
pub(super) async fn health_by_id(
    State(ctx): State<Ctx>,
    Extension(acl): Acl,
    Path(id): Path<String>,
    uri: Uri,
) -> Response {
    let q = QueryParams::from_uri(&uri);
    if let Some(Err(e)) = local_service_name(&ctx, &id).map(|name| acl.require(Resource::Service, &name, Need::Read)) {
        return e.into_response();
    }
    let snap = ctx.local.state.snapshot();
    match health_entry(&ctx, &snap, &id) {
        Some((status, body)) => health_response(status, body, &q),
        None => text(StatusCode::NOT_FOUND, format!("ServiceId {id} not found")),
    }
}

/// `GET /v1/agent/health/service/name/:name`: every local instance of `name`; the status code
/// follows the worst of them.
pub(super) async fn health_by_name(
    State(ctx): State<Ctx>,
    Extension(acl): Acl,
    Path(name): Path<String>,
    uri: Uri,
) -> Response {
    let q = QueryParams::from_uri(&uri);
    if let Err(e) = acl.require(Resource::Service, &name, Need::Read) {
        return e.into_response();
    }
    let snap = ctx.local.state.snapshot();
    let ids: Vec<&String> = snap.services.iter().filter(|(_, s)| s.service.service == name).map(|(id, _)| id).collect();
    if ids.is_empty() {
        return text(StatusCode::NOT_FOUND, format!("ServiceName {name} Not Found"));
    }
    let mut worst = PASSING;
    let mut entries = Vec::new();
    for id in ids {
        if let Some((status, body)) = health_entry(&ctx, &snap, id) {
            if rank(status) > rank(worst) {
                worst = status;
            }
            entries.push(body);
        }
    }
    health_response(worst, Value::Array(entries), &q)
}

/// `PUT /v1/agent/reload`: re-reads the config files' services and checks.
pub(super) async fn reload(State(ctx): State<Ctx>, Extension(acl): Acl) -> Result<Response, Error> {
    acl.require(Resource::Agent, &ctx.local.node.name, Need::Write)?;
    if let Some(tls) = &ctx.tls {
        tls.reload().map_err(|e| Error::BadRequest(format!("Failed reloading config: tls: {e}")))?;
    }
    ctx.local.reload_from_config().await.map(|()| ok_empty())
}
