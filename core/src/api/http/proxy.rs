//! A client agent's data endpoints: every request its own API does not serve (KV, catalog,
//! health, sessions, txn, status, operator, snapshots, coordinates) is sent whole to a server
//! over RPC and answered there by the server's own API, so a client agent behaves exactly like
//! the server it reaches — same validation, errors, headers and blocking-query semantics.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::query::QueryParams;
use super::{read_body, Ctx};
use crate::duration::parse_go_duration;
use crate::replication::backend::{Backend, Remote};
use crate::rpc::Service;
use crate::Error;

/// An HTTP request a client agent forwards to a server.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HttpRequest {
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers worth forwarding (token, content type).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// A server's answer to a forwarded HTTP request.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// Has some server answer `req` (the [`Service::Http`] RPC service): the leader we know of
/// first unless the read is `?stale`. Only reads may be retried at another server after a
/// failure that might have reached the first (see `replication::backend`).
pub async fn call_server(remote: &Remote, req: &HttpRequest, timeout: Duration) -> Result<HttpResponse, Error> {
    let stale =
        req.uri.split_once('?').is_some_and(|(_, q)| q.split('&').any(|p| p == "stale" || p.starts_with("stale=")));
    let repeatable = matches!(req.method.as_str(), "GET" | "HEAD");
    let body = postcard::to_allocvec(req).map_err(|e| Error::Rpc(e.to_string()))?;
    let answer = remote.call_raw(Service::Http, body, timeout, !stale, repeatable).await?;
    decode_answer(&answer)
}

/// Decodes a server's answer to a [`Service::Http`] request.
pub(super) fn decode_answer(answer: &[u8]) -> Result<HttpResponse, Error> {
    let answer: Result<HttpResponse, String> =
        postcard::from_bytes(answer).map_err(|e| Error::Rpc(format!("undecodable answer from a server: {e}")))?;
    answer.map_err(Error::BadRequest)
}

/// The headers of `headers` a server needs to see (token, content type).
pub(super) fn forwarded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    FORWARDED_HEADERS
        .iter()
        .filter_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()).map(|v| (h.to_string(), v.to_string())))
        .collect()
}

/// Largest body a client agent forwards (snapshot restores are the big ones); the server
/// port's limit for the `Http` service is sized from it.
pub(super) const MAX_FORWARDED_BODY: usize = crate::rpc::FORWARDED_HTTP_BODY_MAX;
/// Headers a server needs to see.
const FORWARDED_HEADERS: [&str; 4] = ["x-consul-token", "authorization", "content-type", "x-consul-namespace"];

/// How long to wait for the server: a blocking query may be held for `wait` + `wait`/16.
pub(super) fn timeout_for(uri: &Uri, default_wait: Duration, max_wait: Duration) -> Duration {
    let q = QueryParams::from_uri(uri);
    if !q.has("index") {
        return Duration::from_secs(60);
    }
    let wait = q.get("wait").and_then(|w| parse_go_duration(w).ok()).unwrap_or(default_wait).min(max_wait);
    wait + wait / 16 + Duration::from_secs(10)
}

/// Forwards the request to a server.
pub(super) async fn forward(
    State(ctx): State<Ctx>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Backend::Client(remote) = &ctx.backend else {
        return Error::BadRequest(format!("no handler for path {}", uri.path())).into_response();
    };
    let body = match read_body(body, &headers, MAX_FORWARDED_BODY, "the client agent's forwarding limit").await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let req = HttpRequest {
        method: method.to_string(),
        uri: forwarded_uri(&uri, &ctx.config.node_name),
        headers: forwarded_headers(&headers),
        body: body.to_vec(),
    };
    let timeout = timeout_for(&uri, ctx.config.default_query_time, ctx.config.max_query_time);
    let answer = tokio::select! {
        r = call_server(remote, &req, timeout) => r,
        _ = ctx.shutdown.cancelled() => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    match answer {
        Ok(r) => into_response(r),
        Err(e) => {
            let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{e}\n")).into_response()
        }
    }
}

/// The path and query to send: `?near=_agent` means *this* agent, so it is spelled out as our
/// node name before a server (which would read it as itself) sees it.
fn forwarded_uri(uri: &Uri, node_name: &str) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else { return path.to_string() };
    let mut changed = false;
    let parts: Vec<String> = query
        .split('&')
        .map(|p| {
            if p == "near=_agent" {
                changed = true;
                format!("near={}", form_urlencoded::byte_serialize(node_name.as_bytes()).collect::<String>())
            } else {
                p.to_string()
            }
        })
        .collect();
    if changed {
        format!("{path}?{}", parts.join("&"))
    } else {
        format!("{path}?{query}")
    }
}

pub(super) fn into_response(r: HttpResponse) -> Response {
    let mut resp = Response::new(Body::from(r.body));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            resp.headers_mut().append(k, v);
        }
    }
    resp
}

/// Marks a request that arrived over the server RPC port (from a client agent of this
/// datacenter or a server of another): internal endpoints serve only those.
#[derive(Debug, Clone, Copy)]
pub struct ViaServerRpc;

/// On a server: serves a forwarded request (a client agent's, or another datacenter's) with
/// this agent's own router.
pub async fn serve_forwarded(router: axum::Router, req: HttpRequest) -> Result<HttpResponse, Error> {
    use tower::ServiceExt;
    let method = Method::from_bytes(req.method.as_bytes())
        .map_err(|e| Error::BadRequest(format!("forwarded request: bad method {:?}: {e}", req.method)))?;
    let mut builder = axum::http::Request::builder().method(method).uri(&req.uri);
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    let mut request = builder
        .header(header::CONTENT_LENGTH, req.body.len())
        .body(Body::from(req.body))
        .map_err(|e| Error::BadRequest(format!("forwarded request: {e}")))?;
    request.extensions_mut().insert(ViaServerRpc);
    let resp = router.oneshot(request).await.map_err(|e| Error::Rpc(format!("{e}")))?;
    let status = resp.status().as_u16();
    let headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(k, _)| *k != header::CONTENT_LENGTH && *k != header::TRANSFER_ENCODING)
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.to_string(), v.to_string())))
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| Error::Rpc(format!("reading the response: {e}")))?
        .to_bytes()
        .to_vec();
    Ok(HttpResponse { status, headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_agent_names_the_client_agent() {
        let u: Uri = "/v1/health/service/web?passing&near=_agent".parse().expect("uri");
        assert_eq!(forwarded_uri(&u, "client 1"), "/v1/health/service/web?passing&near=client+1");
        let u: Uri = "/v1/kv/a?index=5".parse().expect("uri");
        assert_eq!(forwarded_uri(&u, "c"), "/v1/kv/a?index=5");
        let u: Uri = "/v1/kv/a".parse().expect("uri");
        assert_eq!(forwarded_uri(&u, "c"), "/v1/kv/a");
    }
}
