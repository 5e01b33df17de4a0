//! The built-in Connect CA over HTTP (`agent/connect_ca_endpoint.go`, `agent/agent_endpoint.go`):
//!
//! - `GET /v1/connect/ca/roots` (servers; `?pem=true` for the PEM chain) and
//!   `GET /v1/agent/connect/ca/roots` (every agent): the trusted roots, blocking on changes.
//! - `GET`/`PUT /v1/connect/ca/configuration` (servers, `operator:write`): the provider
//!   configuration; a change of key type or size rotates the root.
//! - `GET /v1/agent/connect/ca/leaf/<service>` (every agent, `service:write`): a SPIFFE leaf
//!   certificate for the service. The agent makes the key and a signing request; a server signs
//!   it with the active root (`PUT /v1/internal/connect/ca/sign/<service>`, internal), so the key
//!   never leaves the agent. The agent keeps the leaf until the roots change or three quarters
//!   of its lifetime passed, and a blocking request (`?index=`) waits for the next one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use super::catalog::read_ctx;
use super::proxy::{call_server, HttpRequest};
use super::query::{QueryParams, ReadParams};
use super::{blocking, json as json_response, read_body, set_read_meta, text, ApiContext, Ctx};
use crate::acl::rules::{Need, Resource, Scalar};
use crate::api::authz::RequestAcl;
use crate::duration::{format_go_duration, parse_go_duration};
use crate::replication::backend::Backend;
use crate::replication::ca_upkeep;
use crate::replication::consensus::{Consensus, Consistency};
use crate::state::command::Command;
use crate::state::connect_ca::{CaConfig, CaOp, CaTables, WATCH_CA};
use crate::state::watch::WatchTarget;
use crate::tls::connect_ca::{self as crypto, CaKeyType};
use crate::wire::timestamp::format_secs;
use crate::Error;

/// Consul's answer when `connect.enabled` is false.
const NOT_ENABLED: &str = "Connect must be enabled in order to use this endpoint";
/// Largest signing request accepted.
const MAX_CSR: usize = 16 * 1024;

fn not_enabled(ctx: &ApiContext) -> Option<Response> {
    (!ctx.config.connect.enabled).then(|| text(StatusCode::INTERNAL_SERVER_ERROR, NOT_ENABLED))
}

/// `IndexedCARoots`: the roots without their keys.
fn roots_json(ca: &CaTables) -> Value {
    let td = if ca.cluster_id.is_empty() { String::new() } else { crypto::trust_domain(&ca.cluster_id) };
    let roots: Vec<Value> = ca
        .roots
        .iter()
        .map(|r| {
            json!({
                "ID": r.id,
                "Name": r.name,
                "SerialNumber": r.serial_number,
                "SigningKeyID": r.signing_key_id,
                "ExternalTrustDomain": td,
                "NotBefore": format_secs(r.not_before),
                "NotAfter": format_secs(r.not_after),
                "RootCert": r.root_cert,
                "IntermediateCerts": null,
                "Active": r.active,
                "PrivateKeyType": r.private_key_type,
                "PrivateKeyBits": r.private_key_bits,
                "CreateIndex": r.create_index,
                "ModifyIndex": r.modify_index,
            })
        })
        .collect();
    json!({"ActiveRootID": ca.active().map(|r| r.id.clone()).unwrap_or_default(), "TrustDomain": td, "Roots": roots})
}

/// `GET /v1/connect/ca/roots` on a server (blocking; `?pem=true`: the certificates as PEM).
pub(super) async fn roots(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Result<Response, Error> {
    if let Some(r) = not_enabled(&ctx) {
        return Ok(r);
    }
    let rc = read_ctx(&ctx, acl, &uri)?;
    let pem = match rc.q.get("pem") {
        None | Some("") => false,
        Some(v) => parse_go_bool(v)
            .ok_or_else(|| Error::BadRequest("The 'pem' query parameter must be a boolean value".into()))?,
    };
    let targets = [WatchTarget::Key(WATCH_CA.to_string())];
    let (index, body, meta) =
        blocking::run(&ctx, &rc.params, &targets, |d| (d.connect_ca.roots_index, roots_json(&d.connect_ca))).await?;
    let mut resp = if pem {
        let chain: String = body["Roots"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["RootCert"].as_str())
            .map(|c| if c.ends_with('\n') { c.to_string() } else { format!("{c}\n") })
            .collect();
        (StatusCode::OK, [(header::CONTENT_TYPE, "application/pem-certificate-chain")], chain).into_response()
    } else {
        json_response(StatusCode::OK, &body, rc.pretty)
    };
    set_read_meta(resp.headers_mut(), index, &meta);
    Ok(resp)
}

/// `GET /v1/agent/connect/ca/roots`: a server answers from its replica; a client agent asks a
/// server (blocking queries included).
pub(super) async fn agent_roots(
    state: State<Ctx>,
    acl: Extension<Arc<RequestAcl>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Error> {
    if let Some(r) = not_enabled(&state.0) {
        return Ok(r);
    }
    if state.0.backend.consensus().is_some() {
        return roots(state, acl, uri).await;
    }
    let path = match uri.query() {
        Some(q) => format!("/v1/connect/ca/roots?{q}"),
        None => "/v1/connect/ca/roots".to_string(),
    };
    let uri: Uri = path.parse().map_err(|e| Error::BadRequest(format!("bad request URI: {e}")))?;
    Ok(super::proxy::forward(state, Method::GET, uri, headers, Body::empty()).await)
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn config_json(c: &CaConfig) -> Value {
    let config: Value = serde_json::from_str(&c.config_json).unwrap_or_else(|_| json!({}));
    let state = if c.state.is_empty() { Value::Null } else { json!(c.state) };
    json!({
        "Provider": c.provider,
        "Config": config,
        "State": state,
        "ForceWithoutCrossSigning": false,
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    })
}

/// `GET /v1/connect/ca/configuration` (`operator:write`, as in Consul: the configuration may
/// hold secrets).
pub(super) async fn config_get(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Result<Response, Error> {
    if let Some(r) = not_enabled(&ctx) {
        return Ok(r);
    }
    acl.require_scalar(Scalar::Operator, Need::Write)?;
    let rc = read_ctx(&ctx, acl, &uri)?;
    let targets = [WatchTarget::Key(WATCH_CA.to_string())];
    let (index, body, meta) = blocking::run(&ctx, &rc.params, &targets, |d| {
        (d.connect_ca.config_index, d.connect_ca.config.as_ref().map(config_json))
    })
    .await?;
    let Some(body) = body else {
        return Err(Error::Storage("the Connect CA is not initialized yet (no leader?)".into()));
    };
    let mut resp = json_response(StatusCode::OK, &body, rc.pretty);
    set_read_meta(resp.headers_mut(), index, &meta);
    Ok(resp)
}

/// Finds a provider-config key in any of Consul's spellings (`LeafCertTTL`, `leaf_cert_ttl`).
fn config_value<'a>(m: &'a Map<String, Value>, canonical: &str) -> Option<&'a Value> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('_', "");
    let want = norm(canonical);
    m.iter().find(|(k, _)| norm(k) == want).map(|(_, v)| v)
}

/// A duration in a provider config: a Go duration string or nanoseconds.
fn config_duration(m: &Map<String, Value>, key: &str) -> Result<Option<Duration>, Error> {
    match config_value(m, key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => {
            parse_go_duration(s).map(Some).map_err(|e| Error::BadRequest(format!("error parsing {key}: {e}")))
        }
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|ns| Some(Duration::from_nanos(ns)))
            .ok_or_else(|| Error::BadRequest(format!("error parsing {key}: {n} is not a duration"))),
        Some(other) => Err(Error::BadRequest(format!("error parsing {key}: {other} is not a duration"))),
    }
}

/// `PUT /v1/connect/ca/configuration` (`operator:write`). The provider must be `consul`; the
/// TTLs are checked as Consul checks them; a different `PrivateKeyType`/`PrivateKeyBits` than
/// the active root's rotates to a new root (the old one stays trusted). `State` is read-only.
pub(super) async fn config_set(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    if let Some(r) = not_enabled(&ctx) {
        return Ok(r);
    }
    acl.require_scalar(Scalar::Operator, Need::Write)?;
    QueryParams::from_uri(&uri).check_dc(&ctx.config.datacenter)?;
    let body = read_body(body, &headers, 1024 * 1024, "the CA configuration limit").await?;
    let req: Value =
        serde_json::from_slice(&body).map_err(|e| Error::BadRequest(format!("Request decode failed: {e}")))?;
    let Value::Object(req) = req else {
        return Err(Error::BadRequest("Request decode failed: the body must be a JSON object".into()));
    };
    let provider = req.get("Provider").and_then(Value::as_str).unwrap_or_default();
    if provider != "consul" {
        return Err(Error::BadRequest(format!(
            "unknown CA provider {provider:?}: only the built-in \"consul\" provider is supported"
        )));
    }
    let config = match req.get("Config") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(Error::BadRequest("Request decode failed: Config must be an object".into())),
    };
    for key in ["PrivateKey", "RootCert"] {
        if config_value(&config, key).and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
            return Err(Error::BadRequest(format!(
                "{key}: providing the CA's own key and root certificate is not supported; the built-in CA \
                 generates them (change PrivateKeyType/PrivateKeyBits to rotate)"
            )));
        }
    }
    let hour = Duration::from_secs(3600);
    if let Some(ttl) = config_duration(&config, "LeafCertTTL")? {
        if ttl < hour || ttl > 8760 * hour {
            return Err(Error::BadRequest("LeafCertTTL must be between 1h0m0s and 8760h0m0s".into()));
        }
    }
    config_duration(&config, "IntermediateCertTTL")?;
    let root_ttl = config_duration(&config, "RootCertTTL")?;
    if root_ttl.is_some_and(|t| t < hour) {
        return Err(Error::BadRequest("RootCertTTL must be at least 1h0m0s".into()));
    }
    let kind = config_value(&config, "PrivateKeyType").and_then(Value::as_str).filter(|s| !s.is_empty());
    let bits = config_value(&config, "PrivateKeyBits").and_then(Value::as_u64).filter(|b| *b != 0);
    let key_type = CaKeyType::from_consul(kind.unwrap_or("ec"), bits.unwrap_or(256)).map_err(Error::BadRequest)?;

    let consensus = ctx.consensus()?;
    let (current, active) = consensus.state().read(|d| {
        (d.connect_ca.config.clone(), d.connect_ca.active().map(|r| (r.private_key_type.clone(), r.private_key_bits)))
    });
    let (Some(current), Some(active)) = (current, active) else {
        return Err(Error::Storage("the Connect CA is not initialized yet (no leader?)".into()));
    };
    if let Some(state) = req.get("State").filter(|s| !s.is_null()) {
        let same = serde_json::from_value::<std::collections::BTreeMap<String, String>>(state.clone())
            .is_ok_and(|s| s == current.state);
        if !same {
            return Err(Error::BadRequest(
                "Provider State is read-only. It must be omitted or identical to the current value".into(),
            ));
        }
    }
    // Consul's provider reports `test_state` from its configuration as its state (an
    // undocumented hook its own client tests use); otherwise the state carries over.
    let state = match config.get("test_state") {
        Some(Value::Object(m)) => m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect(),
        _ => current.state.clone(),
    };
    let (want_kind, want_bits) = key_type.consul_names();
    let new_root = if (active.0.as_str(), active.1) != (want_kind, want_bits) {
        let cluster_id = consensus.state().read(|d| d.connect_ca.cluster_id.clone());
        let ttl = root_ttl.unwrap_or(ctx.config.connect.root_cert_ttl);
        let now = UNIX_EPOCH + Duration::from_millis(consensus.clock().unix_ms());
        Some(Box::new(ca_upkeep::new_root(&cluster_id, key_type, ttl, now).map_err(Error::Storage)?))
    } else {
        None
    };
    let new = CaConfig { provider: "consul".into(), config_json: Value::Object(config).to_string(), state, ..current };
    consensus.write(Command::ConnectCa(CaOp::SetConfig { config: new, new_root })).await?;
    Ok(StatusCode::OK.into_response())
}

/// A leaf as issued and kept by the agent.
#[derive(Clone)]
struct Leaf {
    serial: String,
    cert_pem: String,
    key_pem: String,
    service_uri: String,
    valid_after: i64,
    valid_before: i64,
    /// The root that signed it.
    root_id: String,
    /// What blocking requests compare `?index=` with.
    index: u64,
}

impl Leaf {
    /// Renewed once three quarters of its lifetime passed (Consul renews between 60 and 90 %).
    fn renew_at(&self) -> i64 {
        self.valid_after + (self.valid_before - self.valid_after) * 3 / 4
    }
}

/// The leaf certificates an agent holds, by service name.
#[derive(Default)]
pub struct LeafCache {
    leaves: Mutex<HashMap<String, Leaf>>,
    /// The last index handed out (each new leaf gets a higher one).
    last_index: Mutex<u64>,
}

impl std::fmt::Debug for LeafCache {
    // Never print the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafCache").field("services", &self.leaves.lock().len()).finish()
    }
}

/// What a signing server answers (`/v1/internal/connect/ca/sign/<service>`).
fn signed_json(leaf: &crypto::NewLeaf, root_id: &str, roots_index: u64) -> Value {
    json!({
        "SerialNumber": leaf.serial,
        "CertPEM": leaf.cert_pem,
        "ServiceURI": leaf.service_uri,
        "ValidAfter": leaf.valid_after,
        "ValidBefore": leaf.valid_before,
        "RootID": root_id,
        "RootsIndex": roots_index,
    })
}

/// `PUT /v1/internal/connect/ca/sign/<service>` (servers, `service:write`): signs the public key
/// of the PEM signing request in the body as `service`, with the active root. Internal: agents
/// call it for `/v1/agent/connect/ca/leaf/<service>`.
pub(super) async fn sign(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(service): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    if let Some(r) = not_enabled(&ctx) {
        return Ok(r);
    }
    acl.require(Resource::Service, &service, Need::Write)?;
    let csr = read_body(body, &headers, MAX_CSR, "the signing request limit").await?;
    let csr = std::str::from_utf8(&csr).map_err(|_| Error::BadRequest("the signing request is not PEM text".into()))?;
    let signed = sign_with_active_root(&ctx, ctx.consensus()?, &service, csr)?;
    Ok(json_response(StatusCode::OK, &signed, false))
}

/// Signs `csr` as `service` with the active root of this server's replica; the answer of the
/// internal sign endpoint.
fn sign_with_active_root(ctx: &ApiContext, c: &Consensus, service: &str, csr: &str) -> Result<Value, Error> {
    let now = UNIX_EPOCH + Duration::from_millis(c.clock().unix_ms());
    c.state().read(|d| {
        let ca = &d.connect_ca;
        let root = ca.active().ok_or_else(|| Error::Storage("the Connect CA is not initialized yet".into()))?;
        let ttl = leaf_ttl(ca).unwrap_or(ctx.config.connect.leaf_cert_ttl);
        let dc = &ctx.config.datacenter;
        crypto::sign_leaf_request(&root.root_cert, &root.private_key, &ca.cluster_id, dc, service, csr, ttl, now)
            .map(|leaf| signed_json(&leaf, &root.id, ca.roots_index))
            .map_err(Error::BadRequest)
    })
}

/// The leaf TTL of the CA configuration in the replica.
fn leaf_ttl(ca: &CaTables) -> Option<Duration> {
    let cfg: Value = serde_json::from_str(&ca.config.as_ref()?.config_json).ok()?;
    config_duration(cfg.as_object()?, "LeafCertTTL").ok().flatten()
}

/// The active root's ID and the roots index, read where this agent reads: its replica, or a
/// server. With `wait_past`, blocks (up to `wait`) until the roots index passes it.
async fn active_root(
    ctx: &ApiContext,
    headers: &HeaderMap,
    wait_past: Option<(u64, Duration)>,
) -> Result<(String, u64), Error> {
    match &ctx.backend {
        Backend::Server(_) => {
            // The local replica, without a read barrier: roots change rarely, and a rotation
            // reaches every server's replica before a leaf signed by the new root exists.
            let (index, wait) = wait_past.unwrap_or((0, Duration::ZERO));
            let params = ReadParams { index, wait, consistency: Consistency::Stale };
            let targets = [WatchTarget::Key(WATCH_CA.to_string())];
            let (index, id, _) = blocking::run(ctx, &params, &targets, |d| {
                (d.connect_ca.roots_index, d.connect_ca.active().map(|r| r.id.clone()).unwrap_or_default())
            })
            .await?;
            Ok((id, index))
        }
        Backend::Client(remote) => {
            let uri = match wait_past {
                Some((index, wait)) => {
                    format!("/v1/connect/ca/roots?index={index}&wait={}", format_go_duration(wait))
                }
                None => "/v1/connect/ca/roots".to_string(),
            };
            let timeout = wait_past.map_or(Duration::from_secs(30), |(_, w)| w + Duration::from_secs(30));
            let resp = call_server(remote, &forwarded(headers, "GET", uri, Vec::new()), timeout).await?;
            let body: Value = server_json(&resp)?;
            let index = header_u64(&resp.headers, "x-consul-index");
            Ok((body["ActiveRootID"].as_str().unwrap_or_default().to_string(), index))
        }
    }
}

fn header_u64(headers: &[(String, String)], name: &str) -> u64 {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.parse().ok()).unwrap_or(0)
}

/// The request to send a server on behalf of the client (its token travels along).
fn forwarded(headers: &HeaderMap, method: &str, uri: String, body: Vec<u8>) -> HttpRequest {
    let keep = ["x-consul-token", "authorization"];
    let headers = headers
        .iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    HttpRequest { method: method.into(), uri, headers, body }
}

/// A server's JSON answer, or its error as ours.
fn server_json(resp: &super::proxy::HttpResponse) -> Result<Value, Error> {
    let body = String::from_utf8_lossy(&resp.body);
    match resp.status {
        200 => serde_json::from_str(&body).map_err(|e| Error::Rpc(format!("undecodable answer from a server: {e}"))),
        403 => Err(Error::PermissionDenied(body.trim().to_string())),
        400 => Err(Error::BadRequest(body.trim().to_string())),
        _ => Err(Error::Storage(body.trim().to_string())),
    }
}

/// Issues a new leaf for `service`: the key and request here, the signature by a server.
async fn issue(ctx: &ApiContext, headers: &HeaderMap, service: &str, roots_index: u64) -> Result<Leaf, Error> {
    let (key_pem, csr_pem) = crypto::leaf_request().map_err(Error::Storage)?;
    let path = format!("/v1/internal/connect/ca/sign/{}", encode_path_segment(service));
    let signed = match &ctx.backend {
        // The same signing as the internal endpoint, without a network hop.
        Backend::Server(c) => sign_with_active_root(ctx, c, service, &csr_pem)?,
        Backend::Client(remote) => {
            let req = forwarded(headers, "PUT", path, csr_pem.into_bytes());
            server_json(&call_server(remote, &req, Duration::from_secs(30)).await?)?
        }
    };
    let field = |k: &str| signed[k].as_str().unwrap_or_default().to_string();
    let int = |k: &str| signed[k].as_i64().unwrap_or_default();
    Ok(Leaf {
        serial: field("SerialNumber"),
        cert_pem: field("CertPEM"),
        key_pem,
        service_uri: field("ServiceURI"),
        valid_after: int("ValidAfter"),
        valid_before: int("ValidBefore"),
        root_id: field("RootID"),
        index: signed["RootsIndex"].as_u64().unwrap_or(roots_index),
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode_path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn leaf_json(service: &str, l: &Leaf) -> Value {
    json!({
        "SerialNumber": l.serial,
        "CertPEM": l.cert_pem,
        "PrivateKeyPEM": l.key_pem,
        "Service": service,
        "ServiceURI": l.service_uri,
        "ValidAfter": format_secs(l.valid_after),
        "ValidBefore": format_secs(l.valid_before),
        "CreateIndex": l.index,
        "ModifyIndex": l.index,
    })
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// `GET /v1/agent/connect/ca/leaf/<service>` (`service:write`): the service's leaf
/// certificate with its private key. With `?index=` equal to the leaf's index, waits (up to
/// `?wait`) for a new one — after a root rotation, or when the current one is due for renewal.
pub(super) async fn agent_leaf(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(service): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Error> {
    if let Some(r) = not_enabled(&ctx) {
        return Ok(r);
    }
    if service.is_empty() || service.contains('/') {
        return Err(Error::BadRequest(format!("invalid service name {service:?}")));
    }
    acl.require(Resource::Service, &service, Need::Write)?;
    let q = QueryParams::from_uri(&uri);
    q.check_dc(&ctx.config.datacenter)?;
    let params = ReadParams::parse(&q, ctx.config.default_query_time, ctx.config.max_query_time)?;
    let deadline = tokio::time::Instant::now() + params.wait;
    loop {
        let (root_id, roots_index) = active_root(&ctx, &headers, None).await?;
        if root_id.is_empty() {
            return Err(Error::Storage("the Connect CA is not initialized yet (no leader?)".into()));
        }
        let cached = ctx.leaf_certs.leaves.lock().get(&service).cloned();
        let leaf = match cached.filter(|l| l.root_id == root_id && unix_now() < l.renew_at()) {
            Some(l) => l,
            None => {
                let mut leaf = issue(&ctx, &headers, &service, roots_index).await?;
                let mut last = ctx.leaf_certs.last_index.lock();
                leaf.index = leaf.index.max(*last + 1);
                *last = leaf.index;
                ctx.leaf_certs.leaves.lock().insert(service.clone(), leaf.clone());
                leaf
            }
        };
        let now = tokio::time::Instant::now();
        if params.index == 0 || leaf.index > params.index || now >= deadline {
            let mut resp = json_response(StatusCode::OK, &leaf_json(&service, &leaf), q.pretty());
            resp.headers_mut().insert("X-Consul-Index", HeaderValue::from(leaf.index.max(1)));
            return Ok(resp);
        }
        // Wait for a root change or the renewal time, whichever comes first.
        let renew_in = Duration::from_secs(u64::try_from(leaf.renew_at() - unix_now()).unwrap_or(0));
        let wait = deadline.saturating_duration_since(now).min(renew_in).max(Duration::from_millis(10));
        tokio::select! {
            r = active_root(&ctx, &headers, Some((roots_index, wait))) => { r?; }
            _ = ctx.shutdown.cancelled() => return Err(Error::Storage("the agent is shutting down".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_config_keys_in_any_spelling() {
        let m: Map<String, Value> =
            serde_json::from_value(json!({"leaf_cert_ttl": "2h", "RootCertTTL": 3_600_000_000_000u64}))
                .expect("test value");
        assert_eq!(config_duration(&m, "LeafCertTTL").expect("test value"), Some(Duration::from_secs(7200)));
        assert_eq!(config_duration(&m, "RootCertTTL").expect("test value"), Some(Duration::from_secs(3600)));
        assert_eq!(config_duration(&m, "IntermediateCertTTL").expect("test value"), None);
        let bad: Map<String, Value> = serde_json::from_value(json!({"LeafCertTTL": "soon"})).expect("test value");
        assert!(config_duration(&bad, "LeafCertTTL").expect_err("test error").to_string().contains("LeafCertTTL"));
    }

    #[test]
    fn go_bools() {
        assert_eq!(parse_go_bool("true"), Some(true));
        assert_eq!(parse_go_bool("0"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
    }
}
