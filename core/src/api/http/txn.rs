//! `PUT /v1/txn` (Consul's `agent/txn_endpoint.go`): up to 128 operations applied atomically.
//! A transaction that only reads is answered locally under the requested consistency mode; any
//! write sends the whole transaction through Raft. Rollback answers 409 with per-op errors.
//!
//! Operations are `KV`, `Node`, `Service`, `Check` (verbs `set`, `cas`, `get`, `delete`,
//! `delete-cas`) and `Session` (`delete`), all atomic together.

use axum::body::Body;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine;
use serde_json::{json as json_value, Map, Value};

use super::catalog::{check_json, require_deregister, require_register};
use super::kv::KvPairJson;
use super::query::QueryParams;
use super::{json, read_body, set_read_meta, Ctx};
use crate::acl::rules::{Need, Resource};
use crate::api::authz::RequestAcl;
use crate::replication::consensus::ReadMeta;
use crate::state::catalog::{DeregisterRequest, HealthCheck, Node, RegisterRequest, ServiceInstance};
use crate::state::command::{Command, CommandResponse, KvOp, KvVerb};
use crate::state::kv::validate_key;
use crate::state::txn::{CatalogVerb, TxnEntry, TxnOp, TxnReport, TxnRun};
use crate::state::StateData;
use crate::wire::body::Obj;
use crate::wire::catalog::{parse_check, parse_node, parse_service};
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
    let dc = ctx.config.datacenter.as_str();
    let ops = parse_ops(&bytes, limits.kv_max_value_size, dc)?;
    let pretty = q.pretty();
    // A transaction with any operation the token may not do is refused whole, before anything
    // runs, with one error per refused operation (Consul's 409 shape).
    let denied = ctx.consensus()?.state().read(|d| denied_ops(acl, d, &ops));
    if !denied.is_empty() {
        return Ok(render(&TxnReport { results: Vec::new(), errors: denied }, pretty, None));
    }
    if ops.iter().all(TxnOp::is_read) {
        let consistency = q.consistency()?;
        let meta = ctx.consensus()?.read_barrier(consistency).await?;
        let (index, report) = ctx.consensus()?.state().read(|d| (d.last_index, TxnRun::new(d).run(&ops, 0)));
        let mut resp = render(&report, pretty, Some((index, &meta, acl)));
        set_read_meta(resp.headers_mut(), index, &meta);
        return Ok(resp);
    }
    let (index, report) = match ctx.consensus()?.write(Command::Txn(ops)).await? {
        (index, CommandResponse::Txn(outcome)) => (index, TxnReport::from(outcome)),
        (index, CommandResponse::TxnReport(report)) => (index, report),
        (_, other) => return Err(Error::Raft(format!("unexpected result {other:?}"))),
    };
    let mut resp = render(&report, pretty, None);
    resp.headers_mut().insert("X-Consul-Index", index.max(1).into());
    Ok(resp)
}

/// The operations of `ops` the request's token may not perform, as transaction errors. Catalog
/// writes need what `/v1/catalog/register` and `/deregister` need; reads need read access to the
/// node or service read.
fn denied_ops(acl: &RequestAcl, d: &StateData, ops: &[TxnOp]) -> Vec<crate::error::TxnError> {
    ops.iter()
        .enumerate()
        .filter_map(|(i, op)| {
            let allowed = match op {
                TxnOp::Kv(op) => match op.verb {
                    KvVerb::GetTree => acl.require(Resource::Key, &op.key, Need::List),
                    KvVerb::DeleteTree => acl.authz().require_key_write_prefix(&op.key),
                    verb if verb.is_read() => acl.require(Resource::Key, &op.key, Need::Read),
                    _ => acl.require(Resource::Key, &op.key, Need::Write),
                },
                TxnOp::Node { verb, node } => match verb {
                    CatalogVerb::Get => acl.require(Resource::Node, &node.node, Need::Read),
                    // Consul's `vetNodeTxnOp`: a node write needs node:write even when it would
                    // change nothing (a catalog registration skips that case).
                    CatalogVerb::Set | CatalogVerb::Cas => acl.require(Resource::Node, &node.node, Need::Write),
                    CatalogVerb::Delete | CatalogVerb::DeleteCas => require_deregister(
                        acl,
                        d,
                        &DeregisterRequest { node: node.node.clone(), ..DeregisterRequest::default() },
                    ),
                },
                TxnOp::Service { verb, node, service } => match verb {
                    CatalogVerb::Get => {
                        let stored = d.catalog.services.get(&(node.clone(), service.id.clone()));
                        let name = stored.map_or(service.service.as_str(), |s| s.service.as_str());
                        acl.require(Resource::Service, name, Need::Read)
                    }
                    CatalogVerb::Set | CatalogVerb::Cas => {
                        let req = RegisterRequest {
                            node: Node { node: node.clone(), ..Node::default() },
                            skip_node_update: true,
                            service: Some(service.clone()),
                            checks: Vec::new(),
                        };
                        require_register(acl, d, &req)
                    }
                    CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                        let req = DeregisterRequest {
                            node: node.clone(),
                            service_id: Some(service.id.clone()),
                            check_id: None,
                        };
                        require_deregister(acl, d, &req)
                    }
                },
                TxnOp::Check { verb, check } => match verb {
                    CatalogVerb::Get => {
                        let stored = d.catalog.checks.get(&(check.node.clone(), check.check_id.clone()));
                        match stored.filter(|c| !c.service_name.is_empty()) {
                            Some(c) => acl.require(Resource::Service, &c.service_name, Need::Read),
                            None => acl.require(Resource::Node, &check.node, Need::Read),
                        }
                    }
                    CatalogVerb::Set | CatalogVerb::Cas => {
                        // A check on a service set earlier in this transaction belongs to that
                        // service (the state does not have it yet).
                        let earlier = ops[..i].iter().rev().find_map(|op| match op {
                            TxnOp::Service { verb: CatalogVerb::Set | CatalogVerb::Cas, node, service }
                                if *node == check.node && service.id == check.service_id =>
                            {
                                Some(service.clone())
                            }
                            _ => None,
                        });
                        let req = RegisterRequest {
                            node: Node { node: check.node.clone(), ..Node::default() },
                            skip_node_update: true,
                            service: earlier.filter(|_| !check.service_id.is_empty()),
                            checks: vec![check.clone()],
                        };
                        require_register(acl, d, &req)
                    }
                    CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                        let req = DeregisterRequest {
                            node: check.node.clone(),
                            service_id: None,
                            check_id: Some(check.check_id.clone()),
                        };
                        require_deregister(acl, d, &req)
                    }
                },
                TxnOp::SessionDelete { id, .. } => match d.sessions.get(id) {
                    Some(s) => acl.require(Resource::Session, &s.node, Need::Write),
                    // Nothing to destroy: the operation fails on its own ("not found").
                    None => Ok(()),
                },
            };
            allowed.err().map(|e| crate::error::TxnError { op_index: i, what: e.to_string() })
        })
        .collect()
}

/// A map as Consul's Go encoder writes a nil map: `null` when empty.
fn map_or_null<T: serde::Serialize>(m: &std::collections::BTreeMap<String, T>) -> Value {
    if m.is_empty() {
        Value::Null
    } else {
        json_value!(m)
    }
}

/// `structs.Node` as a transaction result.
fn node_result(n: &Node) -> Value {
    let mut v = json_value!({
        "ID": n.id, "Node": n.node, "Address": n.address, "Datacenter": n.datacenter,
        "TaggedAddresses": map_or_null(&n.tagged_addresses), "Meta": map_or_null(&n.meta),
        "CreateIndex": n.create_index, "ModifyIndex": n.modify_index,
    });
    super::catalog::add_node_ext(&mut v, n);
    v
}

/// `structs.NodeService` as a transaction result (no `Datacenter`, `TaggedAddresses` only when
/// set: the Go client decodes it into `CatalogService`, whose `TaggedAddresses` is a string map).
fn service_result(s: &ServiceInstance) -> Value {
    let mut v = json_value!({
        "ID": s.id, "Service": s.service,
        "Tags": if s.tags.is_empty() { Value::Null } else { json_value!(s.tags) },
        "Address": s.address, "Meta": map_or_null(&s.meta), "Port": s.port,
        "Weights": {"Passing": s.weights.passing, "Warning": s.weights.warning},
        "EnableTagOverride": s.enable_tag_override,
        "CreateIndex": s.create_index, "ModifyIndex": s.modify_index,
    });
    if !s.tagged_addresses.is_empty() {
        let tagged: Map<String, Value> = s
            .tagged_addresses
            .iter()
            .map(|(k, a)| (k.clone(), json_value!({"Address": a.address, "Port": a.port})))
            .collect();
        v["TaggedAddresses"] = Value::Object(tagged);
    }
    if !s.kind.is_empty() {
        v["Kind"] = json_value!(s.kind);
    }
    super::catalog::add_service_ext(&mut v, &s.ext, false);
    super::catalog::add_node_service_defaults(&mut v, "");
    v["PeerName"] = json_value!("");
    v
}

/// `structs.HealthCheck` as a transaction result: as the health endpoints show it, with a nil
/// `ServiceTags` (a node check's) as `null`, as Consul's encoder writes it.
fn check_result(c: &HealthCheck) -> Value {
    let mut v = check_json(c);
    if c.service_tags.is_empty() {
        v["ServiceTags"] = Value::Null;
    }
    v
}

/// The answer; a read-only transaction's (`read`) also carries Consul's `QueryMeta` fields, as
/// its `TxnReadResponse` does.
fn render(report: &TxnReport, pretty: bool, read: Option<(u64, &ReadMeta, &RequestAcl)>) -> Response {
    let with_meta = |mut body: Value| {
        if let Some((index, meta, acl)) = read {
            super::add_query_meta(&mut body, index, meta, acl);
        }
        body
    };
    if report.errors.is_empty() {
        let results: Vec<Value> = report
            .results
            .iter()
            .map(|r| match r {
                TxnEntry::Kv(r) => json_value!({ "KV": KvPairJson::from_entry(&r.entry, r.with_value) }),
                TxnEntry::Node(n) => json_value!({ "Node": node_result(n) }),
                TxnEntry::Service(s) => json_value!({ "Service": service_result(s) }),
                TxnEntry::Check(c) => json_value!({ "Check": check_result(c) }),
            })
            .collect();
        json(StatusCode::OK, &with_meta(json_value!({ "Results": results, "Errors": null })), pretty)
    } else {
        let errors: Vec<Value> =
            report.errors.iter().map(|e| json_value!({ "OpIndex": e.op_index, "What": e.what })).collect();
        json(StatusCode::CONFLICT, &with_meta(json_value!({ "Results": null, "Errors": errors })), pretty)
    }
}

/// Finds a field by name ignoring case, as Consul's decoder (mapstructure) does.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v).filter(|v| !v.is_null())
}

pub(super) fn parse_ops(body: &[u8], max_value: usize, dc: &str) -> Result<Vec<TxnOp>, Error> {
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
    items.iter().enumerate().map(|(i, item)| parse_op(i, item, max_value, dc)).collect()
}

fn parse_op(i: usize, item: &Value, max_value: usize, dc: &str) -> Result<TxnOp, Error> {
    let bad = |m: String| Error::BadRequest(format!("operation {i}: {m}"));
    let obj = item.as_object().ok_or_else(|| bad("expected an object".into()))?;
    let present: Vec<&str> =
        ["KV", "Node", "Service", "Check", "Session"].into_iter().filter(|k| field(obj, k).is_some()).collect();
    let kind = match present.as_slice() {
        [kind] => *kind,
        [] => return Err(bad("missing operation: expected one of KV, Node, Service, Check, Session".into())),
        _ => return Err(bad(format!("more than one operation in one entry: {}", present.join(", ")))),
    };
    // Errors from the shared catalog parsers name the field; prefix which operation it was.
    let in_op = |e: Error| match e {
        Error::BadRequest(m) => bad(m),
        other => other,
    };
    if kind != "KV" {
        let body =
            field(obj, kind).and_then(Value::as_object).ok_or_else(|| bad(format!("{kind} must be an object")))?;
        return parse_catalog_op(kind, Obj::new(body, kind), dc).map_err(in_op);
    }
    let kv = field(obj, "KV").and_then(Value::as_object).ok_or_else(|| bad("KV must be an object".into()))?;
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

/// Parses a `Node`, `Service`, `Check` or `Session` operation (`o` is its object, holding `Verb`).
fn parse_catalog_op(kind: &str, o: Obj<'_>, dc: &str) -> Result<TxnOp, Error> {
    let bad = |m: String| Error::BadRequest(m);
    let verb_text = o.string(&["Verb"])?;
    if verb_text.is_empty() {
        return Err(bad(format!("missing {kind}.Verb")));
    }
    if kind == "Session" {
        if verb_text != "delete" {
            return Err(bad(format!("unknown Session verb {verb_text:?}")));
        }
        let session = o.object(&["Session"])?.ok_or_else(|| bad("missing Session.Session".into()))?;
        let id = Obj::new(session, "Session.Session").string(&["ID"])?;
        if id.is_empty() {
            return Err(bad("missing Session.Session.ID".into()));
        }
        return Ok(TxnOp::SessionDelete { id, now_ms: crate::replication::session_ttl::now_ms() });
    }
    let verb = CatalogVerb::parse(&verb_text).ok_or_else(|| bad(format!("unknown {kind} verb {verb_text:?}")))?;
    // Only `set` and `cas` store an object; the other verbs need just what names it.
    let full = matches!(verb, CatalogVerb::Set | CatalogVerb::Cas);
    let modify_index =
        |o: Obj<'_>| -> Result<u64, Error> { Ok(o.int(&["ModifyIndex"], 0, i64::MAX)?.unwrap_or(0) as u64) };
    match kind {
        "Node" => {
            let body = o.object(&["Node"])?.ok_or_else(|| bad("missing Node.Node".into()))?;
            let n = Obj::new(body, "Node.Node");
            let mut node = parse_node(n, "Meta", dc).map_err(|e| match e {
                Error::BadRequest(m) if m == "Must provide node" => {
                    bad("missing Node.Node.Node (the node name)".into())
                }
                other => other,
            })?;
            let given_dc = n.string(&["Datacenter"])?;
            if !given_dc.is_empty() {
                node.datacenter = given_dc;
            }
            node.modify_index = modify_index(n)?;
            Ok(TxnOp::Node { verb, node })
        }
        "Service" => {
            let node = o.string(&["Node"])?;
            if node.is_empty() {
                return Err(bad("missing Service.Node".into()));
            }
            let body = o.object(&["Service"])?.ok_or_else(|| bad("missing Service.Service".into()))?;
            let s = Obj::new(body, "Service.Service");
            let mut service = if full {
                parse_service(s, &["Service"])?
            } else {
                let id = match s.string(&["ID"])? {
                    id if id.is_empty() => s.string(&["Service"])?,
                    id => id,
                };
                if id.is_empty() {
                    return Err(bad("missing Service.Service.ID".into()));
                }
                ServiceInstance { id, ..ServiceInstance::default() }
            };
            service.node = node.clone();
            service.modify_index = modify_index(s)?;
            Ok(TxnOp::Service { verb, node, service })
        }
        _ => {
            let body = o.object(&["Check"])?.ok_or_else(|| bad("missing Check.Check".into()))?;
            let c = Obj::new(body, "Check.Check");
            let node = c.string(&["Node"])?;
            if node.is_empty() {
                return Err(bad("missing Check.Check.Node".into()));
            }
            let mut check = if full {
                parse_check(c, &node)?
            } else {
                let check_id = c.string(&["CheckID"])?;
                if check_id.is_empty() {
                    return Err(bad("missing Check.Check.CheckID".into()));
                }
                HealthCheck { node, check_id, ..HealthCheck::default() }
            };
            check.modify_index = modify_index(c)?;
            Ok(TxnOp::Check { verb, check })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively() {
        let body = br#"[{"kv":{"verb":"set","key":"a","value":"aGk=","flags":3}},{"KV":{"Verb":"get-tree","Key":""}}]"#;
        let ops = parse_ops(body, 1024, "dc1").expect("parse");
        let TxnOp::Kv(first) = &ops[0] else { panic!("not a KV op: {:?}", ops[0]) };
        assert_eq!(
            (first.verb, first.key.as_str(), first.value.as_ref(), first.flags),
            (KvVerb::Set, "a", b"hi".as_ref(), 3)
        );
    }

    #[test]
    fn rejects_bad_operations() {
        assert!(matches!(parse_ops(b"{}", 10, "dc1"), Err(Error::BadRequest(_))));
        assert!(matches!(parse_ops(br#"[{"KV":{"Verb":"explode","Key":"a"}}]"#, 10, "dc1"), Err(Error::BadRequest(_))));
        assert!(matches!(
            parse_ops(br#"[{"KV":{"Verb":"set","Key":"a","Value":"!!"}}]"#, 10, "dc1"),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            parse_ops(br#"[{"KV":{"Verb":"set","Key":"a","Value":"aGVsbG8="}}]"#, 2, "dc1"),
            Err(Error::TooLarge(_))
        ));
        let lock =
            parse_ops(br#"[{"KV":{"Verb":"lock","Key":"a"}}]"#, 10, "dc1").expect("a lock without a session parses");
        let TxnOp::Kv(lock) = &lock[0] else { panic!("not a KV op: {:?}", lock[0]) };
        assert_eq!((lock.verb, lock.session.as_deref()), (KvVerb::Lock, None));
        assert!(matches!(parse_ops(br#"[{"Node":{"Verb":"get"}}]"#, 10, "dc1"), Err(Error::BadRequest(_))));
        assert!(matches!(
            parse_ops(br#"[{"KV":{"Verb":"get","Key":"a"},"Node":{}}]"#, 10, "dc1"),
            Err(Error::BadRequest(_))
        ));
        let many = format!("[{}]", vec![r#"{"KV":{"Verb":"get","Key":"a"}}"#; 129].join(","));
        assert!(matches!(parse_ops(many.as_bytes(), 10, "dc1"), Err(Error::TooLarge(_))));
    }
}
