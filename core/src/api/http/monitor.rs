//! `GET /v1/agent/monitor?loglevel=&logjson`: the agent's log lines as they happen, one per
//! chunk of a streamed `text/plain` body, until the client goes or the agent stops (Consul's
//! `AgentMonitor`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;

use super::query::QueryParams;
use super::Ctx;
use crate::acl::rules::{Need, Resource};
use crate::api::authz::RequestAcl;
use crate::logs::{LogLevel, Monitor};
use crate::Error;

/// `GET /v1/agent/monitor`: needs `agent:read` on this node; `loglevel` defaults to `INFO`
/// (400 `Unknown log level: …` otherwise); `logjson` (any value) sends hclog's JSON lines.
pub(super) async fn monitor(State(ctx): State<Ctx>, Extension(acl): Extension<Arc<RequestAcl>>, uri: Uri) -> Response {
    if let Err(e) = acl.require(Resource::Agent, &ctx.config.node_name, Need::Read) {
        return e.into_response();
    }
    let q = QueryParams::from_uri(&uri);
    let name = q.get("loglevel").filter(|l| !l.is_empty()).unwrap_or("INFO");
    let Some(level) = LogLevel::parse(name) else {
        return Error::BadRequest(format!("Unknown log level: {name}")).into_response();
    };
    let json = q.has("logjson");
    let stream = MonitorStream { monitor: ctx.logs.subscribe(level), json, shutdown: ctx.shutdown.clone() };
    let body = futures::stream::unfold(stream, |mut s| async move {
        let record = tokio::select! {
            r = s.monitor.recv() => r?,
            _ = s.shutdown.cancelled() => return None,
        };
        let line = if s.json { record.json_line() } else { record.text_line() };
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), s))
    });
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], Body::from_stream(body)).into_response()
}

/// The state of one streamed monitor; dropped by the server once the client is gone, which
/// closes the monitor (and lowers the hub's level if it was the most verbose one).
struct MonitorStream {
    monitor: Monitor,
    json: bool,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Drop for MonitorStream {
    fn drop(&mut self) {
        let dropped = self.monitor.dropped();
        if dropped > 0 {
            tracing::warn!(dropped_count = dropped, "Dropped logs during monitor request");
        }
        tracing::debug!("monitor closed");
    }
}
