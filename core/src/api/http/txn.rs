//! `PUT /v1/txn` (Consul's `agent/txn_endpoint.go`): up to 128 operations applied atomically.
//! A transaction that only reads is answered locally under the requested consistency mode; any
//! write sends the whole transaction through Raft. Rollback answers 409 with per-op errors.

use axum::body::Body;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine;
use serde_json::{json as json_value, Map, Value};

use super::kv::KvPairJson;
use super::query::QueryParams;
use super::{json, read_body, set_read_meta, Ctx};
use crate::acl::rules::{Need, Resource};
use crate::api::authz::RequestAcl;
use crate::state::command::{Command, CommandResponse, KvOp, KvVerb};
use crate::state::kv::validate_key;
use crate::state::txn::{KvOverlay, TxnOp, TxnOutcome};
use crate::Error;

/// Most operations one transaction may hold (Consul 1.14+).
pub const MAX_TXN_OPS: usize = 128;

/// `PUT /v1/txn`.
pub(super) async fn txn(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let q = QueryParams::from_uri(&uri);
    match txn_inner(&ctx, &acl, &q, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn txn_inner(
    ctx: &Ctx,
    acl: &RequestAcl,
    q: &QueryParams,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    q.check_dc(&ctx.config.datacenter)?;
    let limits = ctx.config.limits;
    let limit = limits.txn_max_req_len.max(limits.kv_max_value_size);
    let bytes = read_body(body, headers, limit, "the txn_max_req_len limit (limits.txn_max_req_len)").await?;
    let ops = parse_ops(&bytes, limits.kv_max_value_size)?;
    let pretty = q.pretty();
    // A transaction with any operation the token may not do is refused whole, before anything
    // runs, with one error per refused operation (Consul's 409 shape).
    let denied = denied_ops(acl, &ops);
    if !denied.is_empty() {
        return Ok(render(&TxnOutcome { results: Vec::new(), errors: denied }, pretty));
    }
    let read_only = ops.iter().all(|TxnOp::Kv(op)| op.verb.is_read());
    if read_only {
        let consistency = q.consistency()?;
        let meta = ctx.consensus()?.read_barrier(consistency).await?;
        let (index, outcome) = ctx.consensus()?.state().read(|d| {
            let mut overlay = KvOverlay::new(d);
            (d.last_index, overlay.run_txn(&ops, 0))
        });
        let mut resp = render(&outcome, pretty);
        set_read_meta(resp.headers_mut(), index, &meta);
        return Ok(resp);
    }
    match ctx.consensus()?.write(Command::Txn(ops)).await? {
        (index, CommandResponse::Txn(outcome)) => {
            let mut resp = render(&outcome, pretty);
            resp.headers_mut().insert("X-Consul-Index", index.max(1).into());
            Ok(resp)
        }
        (_, other) => Err(Error::Raft(format!("unexpected result {other:?}"))),
    }
}

/// The operations of `ops` the request's token may not perform, as transaction errors.
fn denied_ops(acl: &RequestAcl, ops: &[TxnOp]) -> Vec<crate::error::TxnError> {
    ops.iter()
        .enumerate()
        .filter_map(|(i, TxnOp::Kv(op))| {
            let allowed = match op.verb {
                KvVerb::GetTree => acl.require(Resource::Key, &op.key, Need::List),
                KvVerb::DeleteTree => acl.authz().require_key_write_prefix(&op.key),
                verb if verb.is_read() => acl.require(Resource::Key, &op.key, Need::Read),
                _ => acl.require(Resource::Key, &op.key, Need::Write),
            };
            allowed.err().map(|e| crate::error::TxnError { op_index: i, what: e.to_string() })
        })
        .collect()
}

fn render(outcome: &TxnOutcome, pretty: bool) -> Response {
    if outcome.errors.is_empty() {
        let results: Vec<Value> = outcome
            .results
            .iter()
            .map(|r| json_value!({ "KV": KvPairJson::from_entry(&r.entry, r.with_value) }))
            .collect();
        json(StatusCode::OK, &json_value!({ "Results": results, "Errors": null }), pretty)
    } else {
        let errors: Vec<Value> =
            outcome.errors.iter().map(|e| json_value!({ "OpIndex": e.op_index, "What": e.what })).collect();
        json(StatusCode::CONFLICT, &json_value!({ "Results": null, "Errors": errors }), pretty)
    }
}

/// Finds a field by name ignoring case, as Consul's decoder (mapstructure) does.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v).filter(|v| !v.is_null())
}

pub(super) fn parse_ops(body: &[u8], max_value: usize) -> Result<Vec<TxnOp>, Error> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("Failed to parse body: {e}")))?;
    let Value::Array(items) = value else {
        return Err(Error::BadRequest("Failed to parse body: expected a JSON array of operations".into()));
    };
    if items.len() > MAX_TXN_OPS {
        return Err(Error::TooLarge(format!(
            "Transaction contains too many operations ({} > {MAX_TXN_OPS})",
            items.len()
        )));
    }
    items.iter().enumerate().map(|(i, item)| parse_op(i, item, max_value)).collect()
}

fn parse_op(i: usize, item: &Value, max_value: usize) -> Result<TxnOp, Error> {
    let bad = |m: String| Error::BadRequest(format!("operation {i}: {m}"));
    let obj = item.as_object().ok_or_else(|| bad("expected an object".into()))?;
    for kind in ["Node", "Service", "Check", "Session"] {
        if field(obj, kind).is_some() {
            return Err(bad(format!("{kind} operations are not supported yet; only KV operations are")));
        }
    }
    let kv = field(obj, "KV").and_then(Value::as_object).ok_or_else(|| bad("missing KV operation".into()))?;
    let verb_text = field(kv, "Verb").and_then(Value::as_str).ok_or_else(|| bad("missing Verb".into()))?;
    let verb = KvVerb::parse(verb_text).ok_or_else(|| bad(format!("unknown KV verb {verb_text:?}")))?;
    let key = match field(kv, "Key") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad("Key must be a string".into())),
    };
    if !matches!(verb, KvVerb::GetTree | KvVerb::DeleteTree) || !key.is_empty() {
        validate_key(&key).map_err(bad)?;
    }
    let value = match field(kv, "Value") {
        None => Vec::new(),
        Some(Value::String(s)) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| bad(format!("Value is not valid base64: {e}")))?,
        Some(_) => return Err(bad("Value must be a base64 string".into())),
    };
    if value.len() > max_value {
        return Err(Error::TooLarge(format!(
            "operation {i}: value for key {key:?} is {} bytes, over the {max_value}-byte limit",
            value.len()
        )));
    }
    let number = |name: &str| -> Result<u64, Error> {
        match field(kv, name) {
            None => Ok(0),
            Some(v) => v.as_u64().ok_or_else(|| bad(format!("{name} must be an unsigned integer"))),
        }
    };
    let mut op = KvOp::new(verb, key).with_value(value).with_flags(number("Flags")?).with_index(number("Index")?);
    match field(kv, "Session") {
        None => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::String(s)) => op = op.with_session(s.clone()),
        Some(_) => return Err(bad("Session must be a string".into())),
    }
    // A lock, unlock or check-session without a Session is not a malformed request: like Consul,
    // the transaction runs and reports that operation's error ("missing session") with the others.
    if verb == KvVerb::Lock {
        op = op.with_now_ms(crate::replication::session_ttl::now_ms());
    }
    Ok(TxnOp::Kv(op))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively() {
        let body = br#"[{"kv":{"verb":"set","key":"a","value":"aGk=","flags":3}},{"KV":{"Verb":"get-tree","Key":""}}]"#;
        let ops = parse_ops(body, 1024).expect("parse");
        let TxnOp::Kv(first) = &ops[0];
        assert_eq!(
            (first.verb, first.key.as_str(), first.value.as_ref(), first.flags),
            (KvVerb::Set, "a", b"hi".as_ref(), 3)
        );
    }

    #[test]
    fn rejects_bad_operations() {
        assert!(matches!(parse_ops(b"{}", 10), Err(Error::BadRequest(_))));
        assert!(matches!(parse_ops(br#"[{"KV":{"Verb":"explode","Key":"a"}}]"#, 10), Err(Error::BadRequest(_))));
        assert!(matches!(
            parse_ops(br#"[{"KV":{"Verb":"set","Key":"a","Value":"!!"}}]"#, 10),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            parse_ops(br#"[{"KV":{"Verb":"set","Key":"a","Value":"aGVsbG8="}}]"#, 2),
            Err(Error::TooLarge(_))
        ));
        let lock = parse_ops(br#"[{"KV":{"Verb":"lock","Key":"a"}}]"#, 10).expect("a lock without a session parses");
        let TxnOp::Kv(lock) = &lock[0];
        assert_eq!((lock.verb, lock.session.as_deref()), (KvVerb::Lock, None));
        assert!(matches!(parse_ops(br#"[{"Node":{"Verb":"get"}}]"#, 10), Err(Error::BadRequest(_))));
        let many = format!("[{}]", vec![r#"{"KV":{"Verb":"get","Key":"a"}}"#; 129].join(","));
        assert!(matches!(parse_ops(many.as_bytes(), 10), Err(Error::TooLarge(_))));
    }
}
