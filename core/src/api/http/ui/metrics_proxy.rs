//! `/v1/internal/ui/metrics-proxy/*`: a read-only proxy from the console to one metrics
//! backend (`ui_config.metrics_proxy`), as Consul's `UIMetricsProxy` is.
//!
//! The request needs read on every node and service (the metrics describe them all); the token
//! is checked here and stripped before forwarding, the configured headers are added, and only
//! paths in the allowlist go through (Prometheus' query paths by default with the `prometheus`
//! provider). Served by the agent itself, like the console.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::settings::UiSettings;
use crate::acl::rules::{Need, Resource};
use crate::api::authz::RequestAcl;

/// The route's prefix; what follows it is appended to `base_url`.
pub(crate) const PREFIX: &str = "/v1/internal/ui/metrics-proxy";

/// How long one proxied request may take.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The largest answer passed back (a range query over many series is big, but bounded).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Request headers that carry the caller's Consul token: never sent to the backend.
const TOKEN_HEADERS: &[&str] = &["x-consul-token", "authorization"];

/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// The proxy as one agent runs it.
#[derive(Debug)]
pub(crate) struct MetricsProxy {
    ui: UiSettings,
    allowlist: Vec<String>,
    client: Option<reqwest::Client>,
}

impl MetricsProxy {
    pub(crate) fn new(ui: &UiSettings) -> MetricsProxy {
        let client = ui.metrics_proxy.base_url.as_ref().and_then(|_| {
            reqwest::Client::builder()
                .timeout(TIMEOUT)
                .connect_timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .tls_backend_preconfigured(crate::tls::plain_client_tls())
                .build()
                .ok()
        });
        MetricsProxy { allowlist: ui.metrics_proxy_allowlist(), ui: ui.clone(), client }
    }
}

/// Why a request is not forwarded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 404: the console or the proxy is off.
    Disabled(&'static str),
    /// 403: the path is not in the allowlist.
    NotAllowed,
    /// 400: the path escapes `base_url`.
    Invalid,
}

/// Removes `.` and `..` segments and empty segments from a URL path (Go's `path.Clean`, which
/// Consul applies before comparing with the allowlist).
fn clean_path(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// The backend URL for `sub_path` (what follows [`PREFIX`]) and `query`, or why not.
pub(crate) fn target(
    ui: &UiSettings,
    allowlist: &[String],
    sub_path: &str,
    query: Option<&str>,
) -> Result<String, Refusal> {
    if !ui.serves() {
        return Err(Refusal::Disabled("UI is not enabled"));
    }
    let Some(base) = ui.metrics_proxy.base_url.as_deref() else {
        return Err(Refusal::Disabled("Metrics proxy is not enabled"));
    };
    let joined = format!("{base}{sub_path}");
    let uri: Uri = joined.parse().map_err(|_| Refusal::Invalid)?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(Refusal::Invalid);
    };
    let path = clean_path(uri.path());
    if !allowlist.is_empty() && !allowlist.contains(&path) {
        return Err(Refusal::NotAllowed);
    }
    let mut url = format!("{scheme}://{authority}{path}");
    if !url.starts_with(base.trim_end_matches('/')) {
        return Err(Refusal::Invalid);
    }
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
    }
    Ok(url)
}

fn plain(status: StatusCode, body: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{body}\n")).into_response()
}

/// `GET /v1/internal/ui/metrics-proxy/*path`.
pub(crate) async fn forward(
    State(proxy): State<Arc<MetricsProxy>>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let sub_path = uri.path().strip_prefix(PREFIX).unwrap_or_default();
    let url = match target(&proxy.ui, &proxy.allowlist, sub_path, uri.query()) {
        Ok(url) => url,
        Err(Refusal::Disabled(why)) => return plain(StatusCode::NOT_FOUND, why),
        Err(Refusal::NotAllowed) => return StatusCode::FORBIDDEN.into_response(),
        Err(Refusal::Invalid) => return plain(StatusCode::BAD_REQUEST, "Invalid path."),
    };
    // The metrics cover every node and service: the token must read them all.
    for r in [Resource::Node, Resource::Service] {
        if let Err(e) = acl.require(r, "", Need::Read) {
            return e.into_response();
        }
    }
    let Some(client) = &proxy.client else {
        return plain(StatusCode::BAD_GATEWAY, "metrics proxy: no HTTP client");
    };
    let mut req = client.get(&url);
    for (name, value) in &headers {
        let n = name.as_str();
        if TOKEN_HEADERS.contains(&n) || HOP_BY_HOP.contains(&n) || n == "host" {
            continue;
        }
        req = req.header(name, value);
    }
    for (name, value) in &proxy.ui.metrics_proxy.add_headers {
        req = req.header(name.as_str(), value.as_str());
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, &format!("metrics proxy: {}", e.without_url())),
    };
    let status = resp.status();
    let upstream_headers = resp.headers().clone();
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return plain(StatusCode::BAD_GATEWAY, "metrics proxy: the backend's answer is too large");
    }
    let body = match resp.bytes().await {
        Ok(b) if b.len() <= MAX_BODY => b,
        Ok(_) => return plain(StatusCode::BAD_GATEWAY, "metrics proxy: the backend's answer is too large"),
        Err(e) => return plain(StatusCode::BAD_GATEWAY, &format!("metrics proxy: {}", e.without_url())),
    };
    let mut out = (status, Body::from(body)).into_response();
    for (name, value) in &upstream_headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            out.headers_mut().append(HeaderName::from(name), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ui(base: Option<&str>, provider: &str) -> UiSettings {
        let mut ui = UiSettings { enabled: true, metrics_provider: provider.into(), ..UiSettings::default() };
        ui.metrics_proxy.base_url = base.map(str::to_string);
        ui
    }

    #[test]
    fn only_allowed_paths_under_the_base_are_forwarded() {
        let prom = ui(Some("http://prom:9090"), "prometheus");
        let allow = prom.metrics_proxy_allowlist();
        assert_eq!(
            target(&prom, &allow, "/api/v1/query", Some("query=up")),
            Ok("http://prom:9090/api/v1/query?query=up".to_string())
        );
        assert_eq!(
            target(&prom, &allow, "/api/v1/query_range", None),
            Ok("http://prom:9090/api/v1/query_range".into())
        );
        assert_eq!(target(&prom, &allow, "//api/./v1/x/../query", None), Ok("http://prom:9090/api/v1/query".into()));
        assert_eq!(target(&prom, &allow, "/api/v1/admin/tsdb/delete_series", None), Err(Refusal::NotAllowed));
        assert_eq!(target(&prom, &allow, "/../../etc/passwd", None), Err(Refusal::NotAllowed));

        // No provider and no list: any path, but never out of the base path.
        let open = ui(Some("http://m:1/prefix"), "");
        assert_eq!(target(&open, &[], "/a/b", None), Ok("http://m:1/prefix/a/b".into()));
        assert_eq!(target(&open, &[], "/../other", None), Err(Refusal::Invalid));

        assert!(matches!(target(&ui(None, "prometheus"), &allow, "/api/v1/query", None), Err(Refusal::Disabled(_))));
        let off = UiSettings { enabled: false, ..prom.clone() };
        assert_eq!(target(&off, &allow, "/api/v1/query", None), Err(Refusal::Disabled("UI is not enabled")));
    }
}
