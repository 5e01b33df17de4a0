//! User events: `PUT /v1/event/fire/:name`, `GET /v1/event/list` (`agent/event_endpoint.go`).
//!
//! Events spread by gossip and are kept per agent (the newest 256). Every agent receives every
//! event; the list shows only those whose node/service/tag filters match this agent, which is
//! how Consul targets events. The list's `X-Consul-Index` is derived from the newest event's ID
//! (not monotonic); a blocking list waits until that changes.

use std::sync::Arc;

use axum::Extension;

use crate::acl::rules::{Need, Resource};
use crate::api::authz::RequestAcl;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use regex::Regex;
use serde_json::{json as json_value, Value};

use super::query::{QueryParams, ReadParams};
use super::{json, read_body, Ctx};
use crate::membership::gossip::engine::EngineError;
use crate::membership::gossip::events::{id_to_index, UserEvent, MAX_EVENT_SIZE};
use crate::Error;

fn event_json(e: &UserEvent) -> Value {
    json_value!({
        "ID": e.id,
        "Name": e.name,
        "Payload": if e.payload.is_empty() { Value::Null } else { Value::String(base64::engine::general_purpose::STANDARD.encode(&e.payload)) },
        "NodeFilter": e.node_filter,
        "ServiceFilter": e.service_filter,
        "TagFilter": e.tag_filter,
        "Version": e.version,
        "LTime": e.ltime,
    })
}

fn compile(what: &str, pattern: &str) -> Result<Option<Regex>, Error> {
    if pattern.is_empty() {
        return Ok(None);
    }
    Regex::new(pattern).map(Some).map_err(|e| Error::BadRequest(format!("invalid {what} filter {pattern:?}: {e}")))
}

/// An event name: not empty, not starting with the reserved `_`.
pub(super) fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::BadRequest("Missing name".into()));
    }
    if name.starts_with('_') {
        return Err(Error::BadRequest(format!("event name {name:?}: names starting with '_' are reserved")));
    }
    if name.len() > MAX_EVENT_SIZE {
        return Err(Error::TooLarge(format!(
            "event name is {} bytes: a user event (name, payload and filters) is limited to {MAX_EVENT_SIZE} bytes",
            name.len()
        )));
    }
    Ok(())
}

/// The `?node`, `?service`, `?tag` filters of a fire, each a valid regex (tag needs service).
pub(super) fn fire_filters(q: &QueryParams) -> Result<(String, String, String), Error> {
    let node = q.get("node").unwrap_or_default().to_string();
    let service = q.get("service").unwrap_or_default().to_string();
    let tag = q.get("tag").unwrap_or_default().to_string();
    if !tag.is_empty() && service.is_empty() {
        return Err(Error::BadRequest("Cannot provide tag filter without service filter.".into()));
    }
    compile("node", &node)?;
    compile("service", &service)?;
    compile("tag", &tag)?;
    Ok((node, service, tag))
}

/// `PUT /v1/event/fire/:name` (`?node`, `?service`, `?tag` regexes; body = payload).
pub(super) async fn fire(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let q = QueryParams::from_uri(&uri);
    let result = async {
        q.check_dc(&ctx.config.datacenter)?;
        check_name(&name)?;
        acl.require(Resource::Event, &name, Need::Write)?;
        let (node, service, tag) = fire_filters(&q)?;
        let payload = read_body(body, &headers, MAX_EVENT_SIZE, "the 512-byte user event size limit").await?;
        let ev = UserEvent {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            payload: payload.to_vec(),
            node_filter: node,
            service_filter: service,
            tag_filter: tag,
            version: 1,
            ltime: 0,
        };
        // An event that cannot travel is refused here (413), never accepted and then dropped.
        let fired = ctx.cluster.gossip().fire_event(ev).map_err(|e| match e {
            EngineError::EventTooLarge(m) => Error::TooLarge(m),
            other => Error::BadRequest(other.to_string()),
        })?;
        // Like Consul, the answer carries LTime 0: the time is the pool's business.
        Ok::<_, Error>(UserEvent { ltime: 0, ..fired })
    }
    .await;
    match result {
        Ok(ev) => json(StatusCode::OK, &event_json(&ev), q.pretty()),
        Err(e) => e.into_response(),
    }
}

/// Whether an event addressed with these filters is meant for this agent.
fn for_this_agent(ctx: &super::ApiContext, e: &UserEvent) -> bool {
    let matches = |what: &str, p: &str, s: &str| compile(what, p).ok().flatten().is_none_or(|r| r.is_match(s));
    if !matches("node", &e.node_filter, &ctx.local.node.name) {
        return false;
    }
    if e.service_filter.is_empty() {
        return true;
    }
    let (Ok(Some(svc)), tag) = (compile("service", &e.service_filter), compile("tag", &e.tag_filter).ok().flatten())
    else {
        return false;
    };
    ctx.local.state.snapshot().services.values().any(|s| {
        svc.is_match(&s.service.service) && tag.as_ref().is_none_or(|t| s.service.tags.iter().any(|x| t.is_match(x)))
    })
}

/// `GET /v1/event/list` (`?name`; blocking on `?index`).
pub(super) async fn list(State(ctx): State<Ctx>, Extension(acl): Extension<Arc<RequestAcl>>, uri: Uri) -> Response {
    let q = QueryParams::from_uri(&uri);
    // `?dc` is ignored, as in Consul: the list is this agent's own events.
    let params = match ReadParams::parse(&q, ctx.config.default_query_time, ctx.config.max_query_time) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let name = q.get("name").map(str::to_string);
    let gossip = ctx.cluster.gossip().clone();
    let mut changes = gossip.event_changes();
    let deadline = tokio::time::Instant::now() + params.wait;
    let mut stopping = false;
    loop {
        changes.mark_unchanged();
        let events: Vec<UserEvent> = gossip
            .events()
            .into_iter()
            .filter(|e| name.as_deref().is_none_or(|n| e.name == n))
            .filter(|e| for_this_agent(&ctx, e))
            .filter(|e| acl.visible(Resource::Event, &e.name))
            .collect();
        // 1 for an empty list, the index sent back: a watcher blocking on it must then wait
        // for the first event instead of being answered at once, over and over.
        let index = events.last().map(|e| id_to_index(&e.id)).unwrap_or(0).max(1);
        let done = stopping || params.index == 0 || index != params.index || tokio::time::Instant::now() >= deadline;
        if done {
            let body: Vec<Value> = events.iter().map(event_json).collect();
            let mut resp = json(StatusCode::OK, &body, q.pretty());
            resp.headers_mut().insert("X-Consul-Index", HeaderValue::from(index));
            return resp;
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = ctx.shutdown.cancelled() => stopping = true,
        }
    }
}
