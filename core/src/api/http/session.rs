//! `/v1/session/*` (Consul's `agent/session_endpoint.go`): create, destroy, renew, and blocking
//! reads of one session, a node's sessions and all sessions.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json as json_value, Value};

use super::query::{QueryParams, ReadParams};
use super::{blocking, json, read_body, set_read_meta, Ctx};
use crate::acl::rules::{Need, Resource};
use crate::api::authz::RequestAcl;
use crate::duration::{format_go_duration, parse_go_duration};
use crate::replication::session_ttl::{now_ms, TTL_MAX, TTL_MIN};
use crate::state::command::{Command, CommandResponse};
use crate::state::ext_fields::SessionExt;
use crate::state::session::{
    Behavior, ServiceCheck, Session, DEFAULT_LOCK_DELAY_NS, MAX_LOCK_DELAY_NS, SERF_HEALTH, WATCH_SESSIONS,
};
use crate::state::watch::WatchTarget;
use crate::state::StateData;
use crate::wire::body::{parse_object, Obj};
use crate::Error;

const MAX_BODY: usize = 64 * 1024;

/// Consul's `SessionEntry` JSON.
pub(crate) fn session_json(s: &Session) -> Value {
    let service_checks: Option<Vec<Value>> = (!s.service_checks.is_empty())
        .then(|| s.service_checks.iter().map(|c| json_value!({ "ID": c.id, "Namespace": c.namespace })).collect());
    let mut v = json_value!({
        "ID": s.id,
        "Name": s.name,
        "Node": s.node,
        "LockDelay": s.lock_delay_ns,
        "Behavior": s.behavior.as_str(),
        "TTL": s.ttl,
        "NodeChecks": s.node_checks,
        "ServiceChecks": service_checks,
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    });
    // The deprecated `Checks` is `omitempty` in Consul: absent, never `[]`.
    if !s.ext.checks.is_empty() {
        if let Some(obj) = v.as_object_mut() {
            obj.insert("Checks".into(), json_value!(s.ext.checks));
        }
    }
    v
}

/// Parses `LockDelay`: a Go duration string, or a number of nanoseconds where values below 1000
/// mean seconds (`lockDelayMinThreshold`).
fn parse_lock_delay(v: Option<&Value>) -> Result<u64, Error> {
    let bad = |m: String| Error::BadRequest(format!("Request decode failed: LockDelay: {m}"));
    let ns = match v {
        None => return Ok(DEFAULT_LOCK_DELAY_NS),
        Some(Value::String(s)) => {
            let d = parse_go_duration(s).map_err(|e| bad(format!("{s:?}: {e}")))?;
            u64::try_from(d.as_nanos()).map_err(|_| bad(format!("{s:?} is too long")))?
        }
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v < 1000 => v.saturating_mul(1_000_000_000),
            Some(v) => v,
            None => return Err(bad(format!("{n} must be a non-negative number of nanoseconds"))),
        },
        Some(_) => return Err(bad("expected a duration string or a number".into())),
    };
    if ns > MAX_LOCK_DELAY_NS {
        return Err(Error::BadRequest(format!(
            "Lock delay must be less than {}",
            format_go_duration(Duration::from_nanos(MAX_LOCK_DELAY_NS))
        )));
    }
    Ok(ns)
}

/// Parses a create body into a session (ID and indexes not yet set).
pub(super) fn parse_create(bytes: &[u8], default_node: &str) -> Result<Session, Error> {
    let map = if bytes.iter().all(u8::is_ascii_whitespace) { Default::default() } else { parse_object(bytes)? };
    let o = Obj::new(&map, "");
    let node = Some(o.string(&["Node"])?).filter(|n| !n.is_empty()).unwrap_or_else(|| default_node.to_string());
    let behavior_text = o.string(&["Behavior"])?;
    let behavior = Behavior::parse(&behavior_text)
        .ok_or_else(|| Error::BadRequest(format!("Invalid Behavior setting '{behavior_text}'")))?;
    let mut ttl = o.string(&["TTL"])?;
    if !ttl.is_empty() {
        let d = parse_go_duration(&ttl)
            .map_err(|e| Error::BadRequest(format!("Request decode failed: TTL: {ttl:?}: {e}")))?;
        if d.is_zero() {
            ttl.clear();
        } else if d < TTL_MIN || d > TTL_MAX {
            return Err(Error::BadRequest(format!(
                "Invalid Session TTL '{ttl}', must be between [{}={}]",
                format_go_duration(TTL_MIN),
                format_go_duration(TTL_MAX)
            )));
        }
    }
    // Consul starts from `Checks` and `NodeChecks` both [serfHealth], takes what the body gives
    // (null counts as empty), then settles the deprecated field against the new one
    // (`fixupEmptySessionChecks`): an empty `Checks` empties `NodeChecks`; a `Checks` of only
    // serfHealth, or beside an empty `NodeChecks`, is dropped. The session is linked to both.
    let given = |name: &str| -> Result<Vec<String>, Error> {
        match o.get(&[name]) {
            None => Ok(vec![SERF_HEALTH.to_string()]),
            Some(_) => o.strings(&[name]),
        }
    };
    let mut checks = given("Checks")?;
    let mut node_checks = given("NodeChecks")?;
    if checks.is_empty() {
        node_checks.clear();
    } else if checks == [SERF_HEALTH] || node_checks.is_empty() {
        checks.clear();
    }
    let service_checks = o
        .objects(&["ServiceChecks"])?
        .into_iter()
        .map(|c| {
            let c = Obj::new(c, "ServiceChecks");
            let id = c.string(&["ID"])?;
            if id.is_empty() {
                return Err(Error::BadRequest("Request decode failed: ServiceChecks.ID: missing".into()));
            }
            Ok(ServiceCheck { id, namespace: c.string(&["Namespace"])? })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Session {
        id: String::new(),
        name: o.string(&["Name"])?,
        node,
        lock_delay_ns: parse_lock_delay(o.get(&["LockDelay"]))?,
        behavior,
        ttl,
        node_checks,
        service_checks,
        create_index: 0,
        modify_index: 0,
        ext: SessionExt { checks },
    })
}

/// `PUT /v1/session/create`.
/// A refused create (missing node or check, critical check) is `Error::Apply`: a 500, as Consul.
pub(super) async fn create(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    q.check_dc(&ctx.config.datacenter)?;
    let bytes = read_body(body, &headers, MAX_BODY, "the session request size limit").await?;
    let mut session = parse_create(&bytes, &ctx.config.node_name)?;
    acl.require(Resource::Session, &session.node, Need::Write)?;
    // Chosen here, before Raft, so applying the command stays deterministic.
    session.id = uuid::Uuid::new_v4().to_string();
    let id = session.id.clone();
    match ctx.consensus()?.write(Command::SessionCreate(Box::new(session))).await? {
        (_, CommandResponse::Ok) => Ok(json(StatusCode::OK, &json_value!({ "ID": id }), q.pretty())),
        (_, other) => Err(Error::Raft(format!("unexpected result {other:?}"))),
    }
}

/// `PUT /v1/session/destroy/:id` (idempotent: an unknown ID is still `true`).
pub(super) async fn destroy(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    q.check_dc(&ctx.config.datacenter)?;
    if id.is_empty() {
        return Err(Error::BadRequest("Missing session".into()));
    }
    require_session_write(&ctx, &acl, &id)?;
    ctx.consensus()?.write(Command::SessionDestroy { id, now_ms: now_ms() }).await?;
    Ok(json(StatusCode::OK, &true, q.pretty()))
}

/// `PUT /v1/session/renew/:id`: the session as a one-element list, 404 if it does not exist.
pub(super) async fn renew(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    q.check_dc(&ctx.config.datacenter)?;
    require_session_write(&ctx, &acl, &id)?;
    match ctx.consensus()?.renew_session(&id).await? {
        Some(s) => Ok(json(StatusCode::OK, &[session_json(&s)], q.pretty())),
        None => Err(Error::NotFound(format!("Session id '{id}' not found"))),
    }
}

/// `session:write` on the node of session `id` (an unknown session needs nothing: destroying it
/// is a no-op and renewing it a 404).
fn require_session_write(ctx: &Ctx, acl: &RequestAcl, id: &str) -> Result<(), Error> {
    let node = ctx.consensus()?.state().read(|d| d.sessions.get(id).map(|s| s.node.clone()));
    match node {
        Some(node) => acl.require(Resource::Session, &node, Need::Write),
        None => Ok(()),
    }
}

async fn read_sessions(
    ctx: &Ctx,
    acl: &RequestAcl,
    uri: &Uri,
    pick: impl Fn(&StateData) -> Vec<Session>,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(uri);
    q.check_dc(&ctx.config.datacenter)?;
    let params = ReadParams::parse(&q, ctx.config.default_query_time, ctx.config.max_query_time)?;
    let filter = crate::filter::from_query(q.get("filter"), &crate::filter::schema::SESSION)?;
    let targets = [WatchTarget::Key(WATCH_SESSIONS.to_string())];
    let (index, sessions, meta) = blocking::run(ctx, &params, &targets, |d| {
        let mut sessions = pick(d);
        sessions.retain(|s| acl.visible(Resource::Session, &s.node));
        (d.session_index, sessions)
    })
    .await?;
    let body: Vec<Value> =
        sessions.iter().map(session_json).filter(|v| filter.as_ref().is_none_or(|f| f.matches(v))).collect();
    let mut resp = json(StatusCode::OK, &body, q.pretty());
    set_read_meta(resp.headers_mut(), index, &meta);
    Ok(resp)
}

/// `GET /v1/session/info/:id`: `[SessionEntry]`, or `[]` when unknown.
pub(super) async fn info(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(id): Path<String>,
    uri: Uri,
) -> Response {
    read_sessions(&ctx, &acl, &uri, |d| d.sessions.get(&id).cloned().into_iter().collect())
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/session/node/:node`.
pub(super) async fn node(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(node): Path<String>,
    uri: Uri,
) -> Response {
    read_sessions(&ctx, &acl, &uri, |d| d.sessions.values().filter(|s| s.node == node).cloned().collect())
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/session/list`.
pub(super) async fn list(State(ctx): State<Ctx>, Extension(acl): Extension<Arc<RequestAcl>>, uri: Uri) -> Response {
    read_sessions(&ctx, &acl, &uri, |d| d.sessions.values().cloned().collect())
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_defaults() {
        let s = parse_create(b"", "agent-1").expect("parse");
        assert_eq!(s.node, "agent-1");
        assert_eq!(s.lock_delay_ns, DEFAULT_LOCK_DELAY_NS);
        assert_eq!(s.behavior, Behavior::Release);
        assert_eq!(s.node_checks, vec![SERF_HEALTH.to_string()]);
        assert_eq!(s.ttl, "");
    }

    #[test]
    fn create_fields() {
        let body = br#"{"node":"n","Name":"x","LockDelay":"5s","Behavior":"delete","TTL":"30s","NodeChecks":[],
            "ServiceChecks":[{"ID":"svc:1"}]}"#;
        let s = parse_create(body, "a").expect("parse");
        assert_eq!((s.node.as_str(), s.name.as_str(), s.lock_delay_ns), ("n", "x", 5_000_000_000));
        assert_eq!((s.behavior, s.ttl.as_str()), (Behavior::Delete, "30s"));
        assert!(s.node_checks.is_empty());
        assert_eq!(s.service_checks[0].id, "svc:1");
        assert_eq!(parse_create(br#"{"LockDelay":7}"#, "a").map(|s| s.lock_delay_ns).ok(), Some(7_000_000_000));
        assert_eq!(parse_create(br#"{"LockDelay":2000000}"#, "a").map(|s| s.lock_delay_ns).ok(), Some(2_000_000));
    }

    /// `Checks` is Consul's deprecated `omitempty` field: absent, never `[]`, for a session
    /// created with no checks (the Go client's `CreateNoChecks` sends `"NodeChecks": []`).
    #[test]
    fn session_json_omits_empty_checks() {
        let no_checks = parse_create(br#"{"NodeChecks":[]}"#, "a").expect("parse");
        let v = session_json(&no_checks);
        assert_eq!(v.get("NodeChecks"), Some(&json_value!([])));
        assert_eq!(v.get("Checks"), None);
        assert_eq!(session_json(&parse_create(b"", "a").expect("parse")).get("Checks"), None);
        let two = parse_create(br#"{"NodeChecks":["serfHealth","n:1"]}"#, "a").expect("parse");
        assert_eq!(session_json(&two).get("Checks"), None);
    }

    /// The deprecated `Checks` is kept apart from `NodeChecks`, settled as Consul's
    /// `fixupEmptySessionChecks` does.
    #[test]
    fn deprecated_checks_are_settled_against_node_checks() {
        let parse = |b: &[u8]| parse_create(b, "a").expect("parse");
        let s = parse(b"{}");
        assert_eq!((s.ext.checks.len(), s.node_checks.clone()), (0, vec![SERF_HEALTH.to_string()]));
        let s = parse(br#"{"Checks":[]}"#);
        assert!(s.ext.checks.is_empty() && s.node_checks.is_empty());
        let s = parse(br#"{"Checks":["c1"]}"#);
        assert_eq!(
            (s.ext.checks.clone(), s.node_checks.clone()),
            (vec!["c1".to_string()], vec![SERF_HEALTH.to_string()])
        );
        assert_eq!(session_json(&s).get("Checks"), Some(&json_value!(["c1"])));
        let s = parse(br#"{"Checks":["c1"],"NodeChecks":[]}"#);
        assert!(s.ext.checks.is_empty() && s.node_checks.is_empty());
        let s = parse(br#"{"NodeChecks":["n1"]}"#);
        assert_eq!((s.ext.checks.len(), s.node_checks.clone()), (0, vec!["n1".to_string()]));
    }

    #[test]
    fn create_rejects_bad_values() {
        for body in [
            &br#"{"TTL":"5s"}"#[..],
            br#"{"TTL":"25h"}"#,
            br#"{"TTL":"soon"}"#,
            br#"{"Behavior":"explode"}"#,
            br#"{"LockDelay":"61s"}"#,
            br#"{"LockDelay":-1}"#,
            br#"{"ServiceChecks":[{}]}"#,
            br#"[1]"#,
        ] {
            assert!(matches!(parse_create(body, "a"), Err(Error::BadRequest(_))), "{}", String::from_utf8_lossy(body));
        }
    }
}
