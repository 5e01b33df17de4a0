//! `?dc=<another datacenter>`: the request is sent whole to a server of that datacenter and
//! answered there as a local request (Consul forwards the RPC behind every endpoint that takes
//! `?dc`; sending the HTTP request is the same thing one layer up, and keeps validation, errors,
//! headers, status codes and blocking-query semantics exactly the remote server's).
//!
//! One layer in front of the whole router does it, before the token is resolved: as in Consul
//! the remote datacenter decides what the token may do. On a server, a datacenter the WAN pool
//! knows is reached over the server RPC port ([`crate::api::remote_dc`], service `Http`, the
//! one client agents use for their own servers); an unknown one, or one whose servers are all
//! failed, answers 500 "No path to datacenter: <dc>" at once. A client agent has no WAN pool and
//! sends the request to a server of its own datacenter, which forwards it on.
//!
//! Agent-local endpoints are never forwarded (`/v1/agent/*`, the event list, the keyring, the
//! datacenter lists), as in Consul, where they either ignore `?dc` or do their own fan-out.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::proxy::{self, HttpRequest};
use super::query::QueryParams;
use super::{read_body, Ctx};
use crate::replication::backend::Backend;
use crate::rpc::Service;
use crate::Error;

/// Set on a request forwarded from another datacenter (its value: that datacenter). A request
/// carrying it that still names a foreign datacenter is refused rather than forwarded again, so
/// a misconfigured pool cannot bounce a request between datacenters.
pub(super) const FORWARDED_FROM: &str = "x-consul-rs-forwarded-from-dc";

/// Paths served only over the server RPC port.
pub(super) const INTERNAL_PREFIX: &str = "/v1/internal/consul-rs/";

/// Paths whose `?dc` this agent answers itself.
fn agent_local(path: &str) -> bool {
    !path.starts_with("/v1/")
        || path.starts_with("/v1/agent/")
        || matches!(
            path,
            "/v1/event/list" | "/v1/operator/keyring" | "/v1/catalog/datacenters" | "/v1/coordinate/datacenters"
        )
}

/// The foreign datacenter a request names, if it names one and is for an endpoint Consul
/// forwards.
fn foreign_dc(ctx: &Ctx, req: &Request) -> Option<String> {
    // Most requests name no datacenter: skip decoding their query string.
    if agent_local(req.uri().path()) || !req.uri().query().is_some_and(|q| q.contains("dc=")) {
        return None;
    }
    let q = QueryParams::from_uri(req.uri());
    q.get("dc").filter(|dc| ctx.datacenters.is_remote(dc)).map(str::to_string)
}

/// The layer: forwards requests naming another datacenter, passes the rest on.
pub(super) async fn layer(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    // Internal endpoints exist only for requests that came over the server RPC port; a public
    // request must not reach them by being proxied or forwarded there.
    if req.uri().path().starts_with(INTERNAL_PREFIX) && req.extensions().get::<proxy::ViaServerRpc>().is_none() {
        return super::not_found(req.uri().clone()).await;
    }
    let Some(dc) = foreign_dc(&ctx, &req) else { return next.run(req).await };
    if req.headers().contains_key(FORWARDED_FROM) {
        return Error::NoPathToDatacenter(dc).into_response();
    }
    let (parts, body) = req.into_parts();
    if matches!(ctx.backend, Backend::Client(_)) {
        // Our servers know the other datacenters.
        return proxy::forward(State(ctx.clone()), parts.method, parts.uri, parts.headers, body).await;
    }
    match forward(&ctx, &dc, parts, body).await {
        Ok(r) => proxy::into_response(r),
        Err(e) => e.into_response(),
    }
}

async fn forward(
    ctx: &Ctx,
    dc: &str,
    parts: axum::http::request::Parts,
    body: Body,
) -> Result<proxy::HttpResponse, Error> {
    // Fail before reading the body: an unknown datacenter costs nothing.
    let Some(dc) = ctx.datacenters.known(dc) else { return Err(Error::NoPathToDatacenter(dc.to_string())) };
    let body =
        read_body(body, &parts.headers, proxy::MAX_FORWARDED_BODY, "the cross-datacenter forwarding limit").await?;
    let mut headers = proxy::forwarded_headers(&parts.headers);
    headers.push((FORWARDED_FROM.to_string(), ctx.config.datacenter.clone()));
    let uri =
        parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| parts.uri.path().to_string());
    let req = HttpRequest { method: parts.method.to_string(), uri, headers, body: body.to_vec() };
    let timeout = proxy::timeout_for(&parts.uri, ctx.config.default_query_time, ctx.config.max_query_time);
    send(ctx, &dc, &req, timeout).await
}

/// Sends `req` to a server of `dc` and decodes its answer. Reads may be retried at another
/// server of `dc`; anything else only when it never arrived.
pub(super) async fn send(
    ctx: &Ctx,
    dc: &str,
    req: &HttpRequest,
    timeout: std::time::Duration,
) -> Result<proxy::HttpResponse, Error> {
    let repeatable = matches!(req.method.as_str(), "GET" | "HEAD");
    let body = postcard::to_allocvec(req).map_err(|e| Error::Rpc(e.to_string()))?;
    let answer = tokio::select! {
        r = ctx.datacenters.call(dc, Service::Http, body, timeout, repeatable) => r?,
        _ = ctx.shutdown.cancelled() => return Err(Error::ShuttingDown),
    };
    proxy::decode_answer(&answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_local_paths_are_not_forwarded() {
        for p in ["/v1/agent/self", "/v1/agent/service/register", "/v1/event/list", "/v1/catalog/datacenters", "/ui/"] {
            assert!(agent_local(p), "{p}");
        }
        for p in [
            "/v1/kv/a",
            "/v1/catalog/nodes",
            "/v1/health/service/web",
            "/v1/event/fire/x",
            "/v1/query/q/execute",
            "/v1/status/leader",
            "/v1/internal/ui/services",
            "/v1/txn",
            "/v1/operator/raft/configuration",
        ] {
            assert!(!agent_local(p), "{p}");
        }
    }
}
