//! `GET /v1/agent/metrics` (`AgentMetrics` in Consul's `agent/agent_endpoint.go`) and the
//! middleware that times every API request as `consul.api.http`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::query::QueryParams;
use super::{json, text, Ctx};
use crate::acl::rules::{Need, Resource};
use crate::api::authz::RequestAcl;

/// The Prometheus text exposition format's content type.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /v1/agent/metrics[?format=prometheus]`: needs `agent:read` on this node.
pub(super) async fn agent_metrics(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Response {
    if let Err(e) = acl.require(Resource::Agent, &ctx.config.node_name, Need::Read) {
        return e.into_response();
    }
    let q = QueryParams::from_uri(&uri);
    if q.get("format") == Some("prometheus") {
        return match ctx.metrics.prometheus_text() {
            Some(body) => (StatusCode::OK, [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], body).into_response(),
            // Consul's words and status for a sink that was never set up.
            None => text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Prometheus is not enabled since its retention time is not positive",
            ),
        };
    }
    json(StatusCode::OK, &ctx.metrics.summary(), q.has("pretty"))
}

/// Consul's `path` label of an endpoint: its registered pattern without the leading slash and
/// with `/` as `_` (a prefix pattern keeps its trailing `_`: `/v1/kv/…` is `v1_kv_`).
pub(crate) fn path_label(route: &str) -> String {
    let pattern = route.split('{').next().unwrap_or(route);
    pattern.trim_start_matches('/').replace('/', "_")
}

/// The server-side endpoint timers Consul records around the RPCs behind these routes.
fn endpoint_timer(method: &Method, route: &str) -> Option<&'static str> {
    match (method.as_str(), route) {
        ("PUT" | "DELETE", "/v1/kv/" | "/v1/kv/{*key}") => Some("kvs.apply"),
        ("PUT", "/v1/txn") => Some("txn.apply"),
        ("PUT", "/v1/catalog/register") => Some("catalog.register"),
        ("PUT", "/v1/catalog/deregister") => Some("catalog.deregister"),
        ("PUT", "/v1/session/create" | "/v1/session/destroy/{id}") => Some("session.apply"),
        _ => None,
    }
}

/// Times each routed request: `consul.api.http` (labels `method`, `path`) on every agent, and
/// on servers the endpoint's own timer (`consul.kvs.apply`, `consul.txn.apply`, …).
pub(super) async fn record(
    State(ctx): State<Ctx>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !ctx.metrics.enabled() {
        return next.run(req).await;
    }
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let method = req.method().clone();
    let start = Instant::now();
    let resp = next.run(req).await;
    if let Some(route) = route {
        let label = path_label(&route);
        ctx.metrics.measure_since("api.http", &[("method", method.as_str()), ("path", &label)], start);
        if ctx.backend.consensus().is_some() {
            if let Some(name) = endpoint_timer(&method, &route) {
                ctx.metrics.measure_since(name, &[], start);
            }
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_labels_are_consuls() {
        assert_eq!(path_label("/v1/kv/{*key}"), "v1_kv_");
        assert_eq!(path_label("/v1/kv/"), "v1_kv_");
        assert_eq!(path_label("/v1/txn"), "v1_txn");
        assert_eq!(path_label("/v1/catalog/service/{service}"), "v1_catalog_service_");
        assert_eq!(path_label("/v1/acl/token/{id}/clone"), "v1_acl_token_");
        assert_eq!(endpoint_timer(&Method::PUT, "/v1/kv/{*key}"), Some("kvs.apply"));
        assert_eq!(endpoint_timer(&Method::GET, "/v1/kv/{*key}"), None);
    }
}
