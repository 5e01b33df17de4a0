//! `/v1/kv/` (Consul's `agent/kvs_endpoint.go`): GET with `recurse`, `keys`, `separator`, `raw`;
//! PUT with `flags`, `cas`, `acquire`, `release`; DELETE with `recurse`, `cas`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine;
use serde::Serialize;

use super::query::{QueryParams, ReadParams};
use super::{blocking, json, read_body, set_read_meta, Ctx};
use crate::acl::rules::{Need, Resource};
use crate::api::authz::RequestAcl;
use crate::state::command::{Command, CommandResponse, KvOp, KvVerb};
use crate::state::kv::{self as kvq, validate_key};
use crate::state::watch::WatchTarget;
use crate::state::KvEntry;
use crate::Error;

/// Consul's `KVPair` JSON shape.
#[derive(Debug, Serialize)]
pub(super) struct KvPairJson {
    #[serde(rename = "LockIndex")]
    lock_index: u64,
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Flags")]
    flags: u64,
    #[serde(rename = "Value")]
    value: Option<String>,
    #[serde(rename = "Session", skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    #[serde(rename = "CreateIndex")]
    create_index: u64,
    #[serde(rename = "ModifyIndex")]
    modify_index: u64,
}

impl KvPairJson {
    /// Renders an entry; `with_value` false gives `"Value": null` (txn write results).
    pub(super) fn from_entry(e: &KvEntry, with_value: bool) -> Self {
        let value =
            (with_value && !e.value.is_empty()).then(|| base64::engine::general_purpose::STANDARD.encode(&e.value));
        KvPairJson {
            lock_index: e.lock_index,
            key: e.key.clone(),
            flags: e.flags,
            value,
            session: e.session.clone(),
            create_index: e.create_index,
            modify_index: e.modify_index,
        }
    }
}

fn key_of(path: Option<Path<String>>) -> String {
    path.map(|Path(k)| k).unwrap_or_default()
}

/// `GET /v1/kv/:key`.
pub(super) async fn get_kv(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    path: Option<Path<String>>,
    uri: Uri,
) -> Result<Response, Error> {
    let (key, q) = (key_of(path), QueryParams::from_uri(&uri));
    let (ctx, q) = (&ctx, &q);
    q.check_dc(&ctx.config.datacenter)?;
    let params = ReadParams::parse(q, ctx.config.default_query_time, ctx.config.max_query_time)?;
    let pretty = q.pretty();
    if q.has("keys") || q.has("recurse") {
        // Listing needs `list` on the prefix (read, unless enable_key_list_policy); what is
        // listed is then filtered key by key.
        acl.require(Resource::Key, &key, Need::List)?;
    }
    if q.has("keys") {
        let separator = q.get("separator").or_else(|| q.get("seperator")).map(str::to_string);
        let target = [WatchTarget::Prefix(key.clone())];
        let (index, keys, meta) = blocking::run(ctx, &params, &target, |d| {
            let (index, mut keys) = kvq::keys(d, &key, separator.as_deref());
            keys.retain(|k| acl.visible(Resource::Key, k));
            (index, keys)
        })
        .await?;
        let status = if keys.is_empty() && !key.is_empty() { StatusCode::NOT_FOUND } else { StatusCode::OK };
        let mut resp = if status == StatusCode::NOT_FOUND {
            StatusCode::NOT_FOUND.into_response()
        } else {
            json(status, &keys, pretty)
        };
        set_read_meta(resp.headers_mut(), index, &meta);
        return Ok(resp);
    }
    if q.has("recurse") {
        // `?filter=` over the listed pairs is a consul-rs extension (Consul's KV endpoint ignores
        // it): the console lists the keys sessions hold with `Session != ""` without
        // downloading every value.
        let filter = crate::filter::from_query(q.get("filter"), &crate::filter::schema::KV_PAIR)?;
        let target = [WatchTarget::Prefix(key.clone())];
        let (index, entries, meta) = blocking::run(ctx, &params, &target, |d| {
            let (index, mut entries) = kvq::list(d, &key);
            entries.retain(|e| acl.visible(Resource::Key, &e.key));
            if let Some(f) = &filter {
                entries.retain(|e| serde_json::to_value(KvPairJson::from_entry(e, true)).is_ok_and(|v| f.matches(&v)));
            }
            (index, entries)
        })
        .await?;
        let mut resp = if entries.is_empty() {
            StatusCode::NOT_FOUND.into_response()
        } else {
            let body: Vec<KvPairJson> = entries.iter().map(|e| KvPairJson::from_entry(e, true)).collect();
            json(StatusCode::OK, &body, pretty)
        };
        set_read_meta(resp.headers_mut(), index, &meta);
        return Ok(resp);
    }
    if key.is_empty() {
        return Err(Error::BadRequest("Missing key name".into()));
    }
    acl.require(Resource::Key, &key, Need::Read)?;
    let target = [WatchTarget::Key(key.clone())];
    let (index, entry, meta) = blocking::run(ctx, &params, &target, |d| {
        let got = kvq::get(d, &key);
        (got.index, got.entry)
    })
    .await?;
    let mut resp = match entry {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(e) if q.has("raw") => {
            // Served as inert text: a stored value must never run as a page (CVE-2020-25864).
            let mut r = (StatusCode::OK, Body::from(e.value.clone())).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            h.insert("X-Content-Type-Options", HeaderValue::from_static("nosniff"));
            h.insert("Content-Security-Policy", HeaderValue::from_static("sandbox"));
            r
        }
        Some(e) => json(StatusCode::OK, &[KvPairJson::from_entry(&e, true)], pretty),
    };
    set_read_meta(resp.headers_mut(), index, &meta);
    Ok(resp)
}

/// `PUT /v1/kv/:key`.
pub(super) async fn put_kv(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    path: Option<Path<String>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    let result = async {
        q.check_dc(&ctx.config.datacenter)?;
        let key = key_of(path);
        if key.is_empty() {
            return Err(Error::BadRequest("Missing key name".into()));
        }
        validate_key(&key).map_err(Error::BadRequest)?;
        acl.require(Resource::Key, &key, Need::Write)?;
        let (flags, cas, acquire, release) = put_params(&q)?;
        let limit = ctx.config.limits.kv_max_value_size;
        let value = read_body(body, &headers, limit, "the kv_max_value_size limit (limits.kv_max_value_size)").await?;
        let op = match (cas, acquire, release) {
            (Some(index), _, _) => KvOp::new(KvVerb::Cas, key).with_index(index),
            (_, Some(session), _) => KvOp::new(KvVerb::Lock, key)
                .with_session(session)
                .with_now_ms(crate::replication::session_ttl::now_ms()),
            (_, _, Some(session)) => KvOp::new(KvVerb::Unlock, key).with_session(session),
            _ => KvOp::new(KvVerb::Set, key),
        }
        .with_value(value)
        .with_flags(flags);
        let (_, resp) = ctx.consensus()?.write(Command::Kv(op)).await?;
        Ok(resp)
    }
    .await;
    bool_response(result, q.pretty())
}

/// A PUT's `?flags`, `?cas` index, `?acquire` and `?release` sessions.
type PutParams = (u64, Option<u64>, Option<String>, Option<String>);

/// A PUT's query: `?flags`, and at most one of `?cas`, `?acquire`, `?release`.
pub(super) fn put_params(q: &QueryParams) -> Result<PutParams, Error> {
    let flags = q.u64("flags", "flags")?.unwrap_or(0);
    let cas = q.u64("cas", "cas index")?;
    let acquire = q.get("acquire").map(str::to_string);
    let release = q.get("release").map(str::to_string);
    if [cas.is_some(), acquire.is_some(), release.is_some()].iter().filter(|b| **b).count() > 1 {
        return Err(Error::BadRequest("Conflicting flags: cas=, acquire=, release= are mutually exclusive".into()));
    }
    Ok((flags, cas, acquire, release))
}

/// A DELETE's query: `?recurse` or `?cas`, not both.
pub(super) fn delete_params(q: &QueryParams) -> Result<(bool, Option<u64>), Error> {
    let recurse = q.has("recurse");
    let cas = q.u64("cas", "cas index")?;
    if recurse && cas.is_some() {
        return Err(Error::BadRequest("Conflicting flags: cas= and recurse are mutually exclusive".into()));
    }
    Ok((recurse, cas))
}

/// `DELETE /v1/kv/:key`.
pub(super) async fn delete_kv(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    path: Option<Path<String>>,
    uri: Uri,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    let result = async {
        q.check_dc(&ctx.config.datacenter)?;
        let key = key_of(path);
        let (recurse, cas) = delete_params(&q)?;
        if key.is_empty() && !recurse {
            return Err(Error::BadRequest("Missing key name".into()));
        }
        if recurse {
            acl.authz().require_key_write_prefix(&key)?;
        } else {
            acl.require(Resource::Key, &key, Need::Write)?;
        }
        let op = match (recurse, cas) {
            (true, _) => KvOp::new(KvVerb::DeleteTree, key),
            (false, Some(index)) => KvOp::new(KvVerb::DeleteCas, key).with_index(index),
            (false, None) => KvOp::new(KvVerb::Delete, key),
        };
        let (_, resp) = ctx.consensus()?.write(Command::Kv(op)).await?;
        Ok(resp)
    }
    .await;
    bool_response(result, q.pretty())
}

/// `true`/`false`. (An acquire with an unknown session is an error, not `false`, as in Consul:
/// it arrives as `Error::Apply`.)
fn bool_response(result: Result<CommandResponse, Error>, pretty: bool) -> Result<Response, Error> {
    match result? {
        CommandResponse::Bool(b) => Ok(json(StatusCode::OK, &b, pretty)),
        other => Err(Error::Raft(format!("unexpected result {other:?}"))),
    }
}
