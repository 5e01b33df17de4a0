//! The Consul-compatible `/v1` HTTP API.
//!
//! Paths, parameters, JSON field names, headers and status codes follow Consul's
//! (`agent/http_register.go` and the endpoint files named in each module). Errors are plain
//! text; unknown paths answer 404 and wrong methods 405 with an `Allow` header, like Consul.

mod acl;
mod agent;
mod agent_local;
mod autopilot;
mod blocking;
pub mod cache;
pub(crate) mod catalog;
pub mod connect_ca;
mod content_hash;
mod coordinate;
mod debug;
/// Distance ordering, also used by the DNS interface's prepared-query answers.
pub(crate) use coordinate::sort_near;
mod event;
pub(crate) mod fuzz;
mod health_render;
mod host;
mod https;
mod internal_ui;
pub(crate) use https::HANDSHAKE_TIMEOUT as HTTPS_HANDSHAKE_TIMEOUT;
mod keyring;
mod kv;
mod metrics;
mod monitor;
mod operator;
mod prepared_query;
/// Prepared-query failover to other datacenters, also used by DNS prepared-query lookups.
pub(crate) use prepared_query::failover as prepared_query_failover;
pub mod proxy;
mod query;
mod remote;
mod serve;
pub use serve::{serve_http, DEFAULT_HEADER_READ_TIMEOUT};
mod session;
pub mod snapshot;
mod txn;
pub mod ui;
pub mod unix_socket;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::membership::cluster::Cluster;
use crate::replication::backend::Backend;
use crate::replication::consensus::{Consensus, ReadMeta};
use crate::Error;

pub use https::serve_https;
pub use query::{token, QueryParams, ReadParams};
pub use txn::MAX_TXN_OPS;

/// What the HTTP API needs of the agent's configuration (the agent builds it from its own).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `datacenter`.
    pub datacenter: String,
    /// `node_name`.
    pub node_name: String,
    /// `server`.
    pub server: bool,
    /// `-dev`.
    pub dev: bool,
    /// `bootstrap`.
    pub bootstrap: bool,
    /// `bootstrap_expect`.
    pub bootstrap_expect: u32,
    /// `data_dir`.
    pub data_dir: Option<std::path::PathBuf>,
    /// `client_addr`.
    pub client_addr: std::net::IpAddr,
    /// `retry_join`.
    pub retry_join: Vec<String>,
    /// `limits { … }`.
    pub limits: Limits,
    /// `default_query_time`.
    pub default_query_time: std::time::Duration,
    /// `max_query_time`.
    pub max_query_time: std::time::Duration,
    /// `disable_coordinates`.
    pub disable_coordinates: bool,
    /// `acl { … }`.
    pub acl: crate::api::authz::AclSettings,
    /// `http_config.response_headers`: added to every response that does not set them.
    pub response_headers: Vec<(String, String)>,
    /// `http_config.use_cache`: `?cached` reads use the agent cache (Consul's default, true).
    pub use_cache: bool,
    /// `connect { … }`: the built-in CA.
    pub connect: crate::tls::connect_ca::ConnectSettings,
    /// `ui_config { … }`: the web console.
    pub ui: ui::UiSettings,
    /// `enable_debug`: serve `/debug/pprof/*` without ACLs.
    pub enable_debug: bool,
}

/// Request size and connection limits (`limits { … }`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// `kv_max_value_size` (512 KiB).
    pub kv_max_value_size: usize,
    /// `txn_max_req_len` (512 KiB).
    pub txn_max_req_len: usize,
    /// `http_max_conns_per_client`: open HTTP(S) connections allowed per client IP (0: no
    /// limit; Consul's default, 200).
    pub http_max_conns_per_client: usize,
    /// `http_read_header_timeout` (a consul-rs extension): how long a client may take to send
    /// a request's head, and how long a keep-alive connection may stay idle (30 s).
    pub http_read_header_timeout: std::time::Duration,
    /// `rpc_max_conns_per_client`: open connections allowed per client IP on each of the
    /// server RPC and serf_lan TCP ports (0: no limit; Consul's default, 100).
    pub rpc_max_conns_per_client: usize,
    /// `rpc_handshake_timeout`: how long a new connection to the server RPC or serf_lan port
    /// may take for its TLS handshake and its protocol preamble, each (Consul's default, 5 s;
    /// 0: none, as in Consul — a silent connection then lasts until `rpc_idle_timeout`).
    pub rpc_handshake_timeout: std::time::Duration,
    /// How long a connection to those ports may stay with no request running and nothing
    /// arriving before the agent closes it (not a Consul setting: yamux keepalives bound this
    /// there; 3 minutes).
    pub rpc_idle_timeout: std::time::Duration,
    /// `rpc_rate`: requests a second a client agent may send to the servers (Consul's default,
    /// -1, and 0 mean no limit).
    pub rpc_rate: f64,
    /// `rpc_max_burst`: the bucket size for `rpc_rate` (Consul's default, 1000).
    pub rpc_max_burst: u32,
    /// `snapshot_max_size` (a consul-rs extension): the largest uncompressed state a snapshot
    /// restore accepts (256 MiB, the largest Raft entry the server RPC port carries).
    pub snapshot_max_size: u64,
    /// `snapshot_max_inflate_ratio` (a consul-rs extension): how far an uploaded snapshot may
    /// inflate (200:1).
    pub snapshot_max_inflate_ratio: u64,
}

impl Limits {
    /// What a snapshot restore may inflate to.
    pub fn snapshot_restore(&self) -> crate::state::archive::RestoreLimits {
        crate::state::archive::RestoreLimits {
            max_state_bytes: self.snapshot_max_size,
            max_inflate_ratio: self.snapshot_max_inflate_ratio,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            kv_max_value_size: 512 * 1024,
            txn_max_req_len: 512 * 1024,
            http_max_conns_per_client: 200,
            http_read_header_timeout: serve::DEFAULT_HEADER_READ_TIMEOUT,
            rpc_max_conns_per_client: 100,
            rpc_handshake_timeout: crate::rpc::HANDSHAKE_TIMEOUT,
            rpc_idle_timeout: crate::rpc::IDLE_TIMEOUT,
            rpc_rate: -1.0,
            rpc_max_burst: 1000,
            snapshot_max_size: crate::state::archive::RestoreLimits::default().max_state_bytes,
            snapshot_max_inflate_ratio: crate::state::archive::RestoreLimits::default().max_inflate_ratio,
        }
    }
}

/// Everything a handler needs.
#[derive(Debug)]
pub struct ApiContext {
    /// The replica (servers) or the way to the servers (client agents).
    pub backend: Backend,
    /// Membership.
    pub cluster: Arc<Cluster>,
    /// What the API needs of the agent's configuration.
    pub config: ApiSettings,
    /// Cancelled when the agent shuts down: ends blocking queries early.
    pub shutdown: CancellationToken,
    /// The address the HTTP listener is bound to.
    pub http_addr: SocketAddr,
    /// The plain-HTTP listeners as Consul lists them in `DebugConfig.HTTPAddrs`
    /// (`tcp://127.0.0.1:8500`, `unix:///path`).
    pub http_listeners: Vec<String>,
    /// The agent's own services and checks.
    pub local: Arc<crate::local::LocalAgent>,
    /// Cancelled once `PUT /v1/agent/leave` has left the pool: the agent should now stop.
    pub left: CancellationToken,
    /// This agent's network coordinate (`None` with `disable_coordinates`).
    pub coordinates: Option<Arc<crate::coordinate::CoordinateClient>>,
    /// Resolves request tokens (everything allowed when ACLs are off).
    pub acl: Arc<crate::api::authz::AclResolver>,
    /// The agent's TLS (reloaded by `PUT /v1/agent/reload`), when configured.
    pub tls: Option<Arc<crate::tls::AgentTls>>,
    /// The Connect leaf certificates this agent issued for its services.
    pub leaf_certs: connect_ca::LeafCache,
    /// One snapshot restore at a time.
    pub restores: snapshot::RestoreGate,
    /// The agent cache behind `?cached` reads.
    pub cache: Arc<cache::AgentCache>,
    /// This agent's log lines, for `/v1/agent/monitor`.
    pub logs: crate::logs::LogHub,
    /// `/debug/pprof/heap`'s profiler, when the host program has one ([`crate::debug`]).
    pub heap_profiler: Option<crate::debug::HeapProfiler>,
    /// This agent's metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Key sets fetched for `jwt` auth methods with a `JWKSURL`.
    pub jwks: crate::api::jwt_auth::JwksCache,
    /// The other datacenters (`?dc=`, prepared-query failover).
    pub datacenters: Arc<crate::api::remote_dc::Datacenters>,
}

impl ApiContext {
    /// The local replica; an error on client agents, whose data requests are proxied to a
    /// server before reaching any handler that calls this.
    pub fn consensus(&self) -> Result<&Arc<Consensus>, Error> {
        self.backend.consensus().ok_or_else(|| Error::BadRequest("this request must be served by a server".into()))
    }
}

type Ctx = Arc<ApiContext>;

/// Builds the router. Agent endpoints (`/v1/agent/*`, `/v1/event/*`) are served by every agent
/// itself; data endpoints by servers from their replica, and by client agents by forwarding the
/// request to a server ([`proxy`]).
pub fn router(ctx: Ctx) -> Router {
    let agent = Router::new()
        .route("/v1/agent/self", get(agent::agent_self))
        .route("/v1/agent/members", get(agent::agent_members))
        .route("/v1/agent/version", get(agent::agent_version))
        .route("/v1/agent/monitor", get(monitor::monitor))
        .route("/debug/pprof/", get(debug::index))
        .route("/debug/pprof/{name}", get(debug::profile))
        .route("/v1/agent/host", get(host::host))
        .route("/v1/agent/metrics", get(metrics::agent_metrics))
        .route("/v1/agent/services", get(agent_local::services))
        .route("/v1/agent/service/register", put(agent_local::register_service))
        .route("/v1/agent/service/deregister/{*id}", put(agent_local::deregister_service))
        .route("/v1/agent/service/maintenance/{*id}", put(agent_local::service_maintenance))
        .route("/v1/agent/service/{*id}", get(agent_local::service))
        .route("/v1/agent/checks", get(agent_local::checks))
        .route("/v1/agent/check/register", put(agent_local::register_check))
        .route("/v1/agent/check/deregister/{*id}", put(agent_local::deregister_check))
        .route("/v1/agent/check/pass/{*id}", put(agent_local::check_pass))
        .route("/v1/agent/check/warn/{*id}", put(agent_local::check_warn))
        .route("/v1/agent/check/fail/{*id}", put(agent_local::check_fail))
        .route("/v1/agent/check/update/{*id}", put(agent_local::check_update))
        .route("/v1/agent/maintenance", put(agent_local::node_maintenance))
        .route("/v1/agent/health/service/name/{*name}", get(agent_local::health_by_name))
        .route("/v1/agent/health/service/id/{*id}", get(agent_local::health_by_id))
        .route("/v1/agent/reload", put(agent_local::reload))
        .route("/v1/agent/join/{*address}", put(agent::agent_join))
        .route("/v1/agent/leave", put(agent::agent_leave))
        .route("/v1/agent/token/{kind}", put(agent::agent_token))
        .route("/v1/agent/force-leave/{*node}", put(agent::agent_force_leave))
        .route("/v1/event/fire/{*name}", put(event::fire))
        .route("/v1/event/list", get(event::list))
        .route("/v1/agent/connect/ca/roots", get(connect_ca::agent_roots))
        .route("/v1/agent/connect/ca/leaf/{*service}", get(connect_ca::agent_leaf))
        .route(
            "/v1/operator/keyring",
            get(keyring::keyring).post(keyring::keyring).put(keyring::keyring).delete(keyring::keyring),
        );
    // Every routed request is timed (`consul.api.http`); fallbacks are not, as in Consul.
    let timed = axum::middleware::from_fn_with_state(ctx.clone(), metrics::record);
    let router = if ctx.backend.consensus().is_some() {
        agent.merge(data_routes()).route_layer(timed).fallback(not_found)
    } else {
        agent.route_layer(timed).fallback(proxy::forward)
    };
    // The console is served by every agent itself and, as in Consul, not timed.
    let router = router.merge(ui::routes(&ctx));
    // The cache sits inside `authorize`: a HIT is only served to a token that resolves, and a
    // fetch goes through the whole router again (proxying to a server on client agents).
    let app = router
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), cache::layer))
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), authorize))
        // Outside `authorize`: another datacenter's servers resolve the token of a request
        // for that datacenter, as in Consul.
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), remote::layer))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(ctx.clone());
    ctx.cache.set_fetcher(app.clone());
    app
}

/// Consul's `Request finished` debug line for every request (what `/v1/agent/monitor` at
/// `debug` shows of API activity). The query string is left out: it may carry a token.
async fn log_request(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    tracing::debug!(
        target: "consul_core::agent::http",
        method = %method,
        url = %path,
        latency = ?started.elapsed(),
        "Request finished"
    );
    resp
}

/// Paths Consul answers without resolving the request's token (the console's pages and files
/// among them: the data they load is checked by the API).
fn needs_no_token(path: &str, ui: &ui::UiSettings) -> bool {
    ui::is_console_path(ui, path)
        || path.starts_with("/v1/status/")
        || matches!(
            path,
            "/v1/acl/login"
                | "/v1/acl/bootstrap"
                | "/v1/agent/version"
                | "/v1/catalog/datacenters"
                | "/v1/coordinate/datacenters"
        )
}

/// Resolves the request's token (`?token=`, `X-Consul-Token`, `Authorization: Bearer`) into a
/// [`RequestAcl`] handlers take as an extension; answers 403 "ACL not found" for an unknown
/// token. Adds `X-Consul-Default-ACL-Policy` when ACLs are on, and
/// `X-Consul-Results-Filtered-By-ACLs` when the handler left something out.
async fn authorize(
    axum::extract::State(ctx): axum::extract::State<Ctx>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use crate::api::authz::{Authz, RequestAcl};
    let resolved = if !ctx.acl.enabled() || needs_no_token(req.uri().path(), &ctx.config.ui) {
        Ok(Authz::disabled())
    } else {
        let q = QueryParams::from_uri(req.uri());
        let secret = token(&q, req.headers());
        let now = crate::replication::session_ttl::now_ms();
        match &ctx.backend {
            Backend::Server(c) => c.state().read(|d| ctx.acl.resolve(secret.as_deref(), &d.acl, now)),
            // A client agent asks a server what the token may do (cached for the ACL TTLs).
            Backend::Client(remote) => {
                ctx.acl.resolve_remote(secret.as_deref(), now, |s| async move { remote.resolve_token(s).await }).await
            }
        }
    };
    let acl = match resolved {
        Ok(authz) => Arc::new(RequestAcl::new(authz)),
        Err(e) => return with_acl_headers(&ctx, e.into_response(), false),
    };
    if let Err(e) = require_acl_permission(&acl, req.method(), req.uri().path()) {
        return with_acl_headers(&ctx, e.into_response(), false);
    }
    req.extensions_mut().insert(acl.clone());
    let resp = next.run(req).await;
    with_acl_headers(&ctx, resp, acl.was_filtered())
}

/// The ACL API's own permissions, one table for all of `/v1/acl/*` (Consul's ACL endpoints):
/// reads need `acl:read`, changes `acl:write`; bootstrap, login, logout and `token/self` need
/// only a token (or none).
fn require_acl_permission(acl: &crate::api::authz::RequestAcl, method: &Method, path: &str) -> Result<(), Error> {
    use crate::acl::rules::{Need, Scalar};
    let Some(rest) = path.strip_prefix("/v1/acl/") else {
        return Ok(());
    };
    if matches!(rest, "bootstrap" | "login" | "logout" | "token/self") {
        return Ok(());
    }
    let read = *method == Method::GET || rest.starts_with("templated-policy/preview/");
    acl.require_scalar(Scalar::Acl, if read { Need::Read } else { Need::Write })
}

/// The headers every response carries: the ACL ones, and `http_config.response_headers` where
/// the handler did not set the header itself (Consul sets them before its handlers run).
fn with_acl_headers(ctx: &ApiContext, mut resp: Response, filtered: bool) -> Response {
    for (name, value) in &ctx.config.response_headers {
        if let (Ok(name), Ok(value)) =
            (axum::http::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
        {
            resp.headers_mut().entry(name).or_insert(value);
        }
    }
    if ctx.acl.enabled() {
        let policy = if ctx.acl.settings().default_allow { "allow" } else { "deny" };
        resp.headers_mut().insert("X-Consul-Default-ACL-Policy", HeaderValue::from_static(policy));
        if filtered {
            resp.headers_mut().insert("X-Consul-Results-Filtered-By-ACLs", HeaderValue::from_static("true"));
        }
    }
    resp
}

/// The endpoints a server answers from its replica.
fn data_routes() -> Router<Ctx> {
    Router::new()
        .route("/v1/kv/", get(kv::get_kv).put(kv::put_kv).delete(kv::delete_kv))
        .route("/v1/kv/{*key}", get(kv::get_kv).put(kv::put_kv).delete(kv::delete_kv))
        .route("/v1/txn", put(txn::txn))
        .route("/v1/status/leader", get(operator::status_leader))
        .route("/v1/status/peers", get(operator::status_peers))
        .route("/v1/operator/raft/configuration", get(operator::raft_configuration))
        .route("/v1/operator/raft/peer", delete(operator::raft_remove_peer))
        .route("/v1/operator/raft/transfer-leader", post(autopilot::transfer_leader))
        .route("/v1/operator/autopilot/configuration", get(autopilot::config_get).put(autopilot::config_set))
        .route("/v1/operator/autopilot/health", get(autopilot::health))
        .route("/v1/operator/autopilot/state", get(autopilot::state))
        .route("/v1/operator/usage", get(autopilot::usage))
        .route("/v1/catalog/register", put(catalog::register))
        .route("/v1/catalog/deregister", put(catalog::deregister))
        .route("/v1/catalog/datacenters", get(catalog::datacenters))
        .route("/v1/catalog/nodes", get(catalog::nodes))
        .route("/v1/catalog/services", get(catalog::services))
        .route("/v1/catalog/service/{service}", get(catalog::service))
        .route("/v1/catalog/connect/{service}", get(catalog::connect))
        .route("/v1/catalog/node/{node}", get(catalog::node))
        .route("/v1/catalog/node-services/{node}", get(catalog::node_services))
        .route("/v1/health/node/{node}", get(catalog::health_node))
        .route("/v1/health/checks/{service}", get(catalog::health_checks))
        .route("/v1/health/service/{service}", get(catalog::health_service))
        .route("/v1/health/connect/{service}", get(catalog::health_connect))
        .route("/v1/health/state/{state}", get(catalog::health_state))
        .route("/v1/session/create", put(session::create))
        .route("/v1/session/destroy/{id}", put(session::destroy))
        .route("/v1/session/renew/{id}", put(session::renew))
        .route("/v1/session/info/{id}", get(session::info))
        .route("/v1/session/node/{node}", get(session::node))
        .route("/v1/session/list", get(session::list))
        .route("/v1/snapshot", get(snapshot::snapshot_save).put(snapshot::snapshot_restore))
        .route("/v1/coordinate/datacenters", get(coordinate::datacenters))
        .route("/v1/coordinate/nodes", get(coordinate::nodes))
        .route("/v1/coordinate/node/{node}", get(coordinate::node))
        .route("/v1/coordinate/update", put(coordinate::update))
        .route("/v1/connect/ca/roots", get(connect_ca::roots))
        .route("/v1/connect/ca/configuration", get(connect_ca::config_get).put(connect_ca::config_set))
        .route("/v1/internal/connect/ca/sign/{service}", put(connect_ca::sign))
        .route("/v1/internal/ui/services", get(internal_ui::services))
        .route("/v1/internal/ui/nodes", get(internal_ui::nodes))
        .route("/v1/internal/ui/node/{node}", get(internal_ui::node))
        .route("/v1/internal/ui/catalog-overview", get(internal_ui::catalog_overview))
        .route("/v1/internal/ui/service-topology/{service}", get(internal_ui::service_topology))
        .route("/v1/internal/ui/service-topology/", get(internal_ui::missing_service_name))
        .route("/v1/internal/ui/gateway-services-nodes/{gateway}", get(internal_ui::gateway_services_nodes))
        .route("/v1/internal/ui/gateway-services-nodes/", get(internal_ui::missing_gateway_name))
        .route("/v1/internal/ui/gateway-intentions/{gateway}", get(internal_ui::gateway_intentions))
        .route("/v1/internal/ui/gateway-intentions/", get(internal_ui::missing_gateway_name))
        .route(prepared_query::EXECUTE_REMOTE_PATH, post(prepared_query::execute_remote))
        .route("/v1/query", get(prepared_query::list).post(prepared_query::create))
        .route("/v1/query/{*rest}", get(prepared_query::get).put(prepared_query::update).delete(prepared_query::delete))
        .merge(acl_routes())
}

/// `/v1/acl/*`. `/v1/acl/rules/translate` is left out on purpose: Consul removed it in 1.15 and
/// answers 404, as the fallback does.
fn acl_routes() -> Router<Ctx> {
    Router::new()
        .route("/v1/acl/bootstrap", put(acl::bootstrap))
        .route("/v1/acl/token", put(acl::token_create))
        .route("/v1/acl/token/self", get(acl::token_self))
        .route("/v1/acl/token/{id}", get(acl::token_read).put(acl::token_update).delete(acl::token_delete))
        .route("/v1/acl/token/{id}/clone", put(acl::token_clone))
        .route("/v1/acl/tokens", get(acl::token_list))
        .route("/v1/acl/policy", put(acl::policy_create))
        .route("/v1/acl/policy/name/{name}", get(acl::policy_read_by_name))
        .route("/v1/acl/policy/{id}", get(acl::policy_read).put(acl::policy_update).delete(acl::policy_delete))
        .route("/v1/acl/policies", get(acl::policy_list))
        .route("/v1/acl/role", put(acl::role_create))
        .route("/v1/acl/role/name/{name}", get(acl::role_read_by_name))
        .route("/v1/acl/role/{id}", get(acl::role_read).put(acl::role_update).delete(acl::role_delete))
        .route("/v1/acl/roles", get(acl::role_list))
        .route("/v1/acl/templated-policies", get(acl::templated_policy_list))
        .route("/v1/acl/templated-policy/name/{*name}", get(acl::templated_policy_read))
        .route("/v1/acl/templated-policy/preview/{*name}", post(acl::templated_policy_preview))
        .route("/v1/acl/auth-method", put(acl::auth_method_create))
        .route(
            "/v1/acl/auth-method/{name}",
            get(acl::auth_method_read).put(acl::auth_method_update).delete(acl::auth_method_delete),
        )
        .route("/v1/acl/auth-methods", get(acl::auth_method_list))
        .route("/v1/acl/binding-rule", put(acl::binding_rule_create))
        .route(
            "/v1/acl/binding-rule/{id}",
            get(acl::binding_rule_read).put(acl::binding_rule_update).delete(acl::binding_rule_delete),
        )
        .route("/v1/acl/binding-rules", get(acl::binding_rule_list))
        .route("/v1/acl/login", post(acl::login))
        .route("/v1/acl/logout", post(acl::logout))
        .route("/v1/acl/replication", get(acl::replication))
}

async fn not_found(uri: Uri) -> Response {
    text(StatusCode::NOT_FOUND, format!("Not found: no handler for path {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    text(StatusCode::METHOD_NOT_ALLOWED, format!("method {method} not allowed for {}", uri.path()))
}

/// A plain-text response.
fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut body: String = body.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        text(status, self.to_string())
    }
}

/// A JSON response, pretty-printed when the request had `?pretty`.
fn json<T: Serialize>(status: StatusCode, value: &T, pretty: bool) -> Response {
    json_encoded(status, json_bytes(value, pretty))
}

/// `value` encoded as every JSON answer is (`?pretty`: indented, with a final newline).
fn json_bytes<T: Serialize>(value: &T, pretty: bool) -> serde_json::Result<Vec<u8>> {
    if pretty {
        let mut bytes = serde_json::to_vec_pretty(value)?;
        bytes.push(b'\n');
        Ok(bytes)
    } else {
        serde_json::to_vec(value)
    }
}

/// A JSON answer from already encoded bytes.
fn json_encoded(status: StatusCode, body: serde_json::Result<Vec<u8>>) -> Response {
    match body {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], Body::from(bytes)).into_response(),
        Err(e) => Error::Storage(format!("encoding response: {e}")).into_response(),
    }
}

/// Adds Consul's read metadata headers. `X-Consul-Index` is never 0 (`setIndex` in Consul).
fn set_read_meta(headers: &mut HeaderMap, index: u64, meta: &ReadMeta) {
    headers.insert("X-Consul-Index", HeaderValue::from(index.max(1)));
    headers.insert("X-Consul-KnownLeader", HeaderValue::from_static(if meta.known_leader { "true" } else { "false" }));
    headers.insert("X-Consul-LastContact", HeaderValue::from(meta.last_contact_ms));
    headers.insert("X-Consul-Effective-Consistency", HeaderValue::from_static(meta.consistency.as_header()));
    headers.insert("X-Consul-Query-Backend", HeaderValue::from_static("blocking-query"));
}

/// Adds the `QueryMeta` fields Consul embeds in some bodies (prepared-query execute and
/// explain, read-only transactions, operator usage) to `body`.
pub(super) fn add_query_meta(
    body: &mut serde_json::Value,
    index: u64,
    meta: &ReadMeta,
    acl: &crate::api::authz::RequestAcl,
) {
    if let Some(obj) = body.as_object_mut() {
        let last_contact_ns =
            if meta.last_contact_ms == u64::MAX { 0 } else { meta.last_contact_ms.saturating_mul(1_000_000) };
        use serde_json::json;
        obj.insert("Index".into(), json!(index.max(1)));
        obj.insert("LastContact".into(), json!(last_contact_ns));
        obj.insert("KnownLeader".into(), json!(meta.known_leader));
        obj.insert("ConsistencyLevel".into(), json!(meta.consistency.as_header()));
        obj.insert("NotModified".into(), json!(false));
        obj.insert("Backend".into(), json!(0));
        obj.insert("ResultsFilteredByACLs".into(), json!(acl.was_filtered()));
    }
}

/// Reads a request body of at most `limit` bytes; a larger one is a 413 naming both sizes.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize, what: &str) -> Result<bytes::Bytes, Error> {
    let too_large =
        |n: String| Error::TooLarge(format!("Request body({n} bytes) too large, max size: {limit} bytes. See {what}."));
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|len| *len > limit as u64) {
        drain(body).await;
        return Err(too_large(len.to_string()));
    }
    use http_body_util::BodyExt;
    let mut collected = Vec::new();
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::BadRequest(format!("failed to read request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > limit {
                drain(body).await;
                return Err(too_large(format!("more than {limit}")));
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(bytes::Bytes::from(collected))
}

/// Reads and discards what is left of a refused body (up to 64 MiB, 10 s), so the client gets to
/// finish sending and reads our error instead of a connection reset.
async fn drain(mut body: Body) {
    use http_body_util::BodyExt;
    let mut left: usize = 64 * 1024 * 1024;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map(|d| d.len()).unwrap_or(0);
            if n >= left {
                break;
            }
            left -= n;
        }
    })
    .await;
}
