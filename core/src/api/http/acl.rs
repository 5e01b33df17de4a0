//! `/v1/acl/*` (Consul's `agent/acl_endpoint.go`, with the validation of
//! `agent/consul/acl_endpoint.go` and `agent/consul/auth/token_writer.go`): tokens, policies,
//! roles, templated policies, auth methods, binding rules, bootstrap, login and logout.
//!
//! Handlers validate what needs no state (UUIDs, names, rules syntax, TTL bounds) and choose
//! every ID, secret and time before proposing; the state machine checks what depends on the
//! replicated tables (see [`crate::state::acl`]). Who may call what (`acl:read`/`acl:write`) is
//! enforced elsewhere: these handlers only do the work.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json as json_value, Map, Value};

use super::query::{token as request_token, QueryParams, ReadParams};
use super::{blocking, json, read_body, set_read_meta, Ctx};
use crate::api::auth_method::{AuthMethodConfig, LoginFailure, TYPES as AUTH_METHOD_TYPES};
use crate::duration::{format_go_duration, parse_go_duration};
use crate::replication::session_ttl::now_ms;
use crate::state::acl::{
    AclApplied, AclAuthMethod, AclBindingRule, AclLink, AclOp, AclPolicy, AclRole, AclTables, AclToken, NodeIdentity,
    ServiceIdentity, TemplatedPolicyRef, RESERVED_ID_PREFIX, WATCH_ACL,
};
use crate::state::command::{Command, CommandResponse};
use crate::state::watch::WatchTarget;
use crate::wire::body::{parse_object, Obj};
use crate::wire::selector::{interpolate, Selector, Vars};
use crate::wire::timestamp;
use crate::Error;

/// Largest ACL request body.
const MAX_BODY: usize = 1024 * 1024;
/// Shortest token TTL (`ACLTokenMinExpirationTTL`).
const MIN_TTL_MS: u64 = 60_000;
/// Longest token TTL (`ACLTokenMaxExpirationTTL`).
const MAX_TTL_MS: u64 = 24 * 3_600_000;
/// The bootstrap reset file under `data_dir`.
const RESET_FILE: &str = "acl-bootstrap-reset";

fn bad(msg: impl Into<String>) -> Error {
    Error::BadRequest(msg.into())
}

/// The one call into the rules layer: whether `text` is valid ACL rules.
fn validate_rules(text: &str) -> Result<(), Error> {
    crate::acl::rules::Rules::parse(text).map(|_| ()).map_err(|e| bad(format!("Failed to parse ACL rules: {e}")))
}

fn enabled(ctx: &Ctx) -> Result<(), Error> {
    if ctx.config.acl.enabled {
        Ok(())
    } else {
        Err(Error::AclDisabled)
    }
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// `^[A-Za-z0-9\-_]{1,max}$`: policy, role and auth method names.
fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `^[a-z0-9]([a-z0-9\-_]*[a-z0-9])?$`: service and node identity names.
fn valid_identity_name(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_';
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty() && b.len() <= 256 && b.iter().all(inner) && b.first().is_some_and(edge) && b.last().is_some_and(edge)
}

/// Reads a JSON object body; malformed JSON is a 400 `<what> decoding failed: …`, Consul's
/// wording per endpoint. Unknown fields are ignored, as Consul's decoder does.
async fn body_object(body: Body, headers: &HeaderMap, what: &str) -> Result<Map<String, Value>, Error> {
    let bytes = read_body(body, headers, MAX_BODY, "the ACL request size limit").await?;
    decode_object(&bytes, what)
}

/// The decoding half of [`body_object`]: blank is an empty object, else a JSON object.
pub(super) fn decode_object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    parse_object(bytes).map_err(|e| {
        let detail = e.to_string();
        let detail = detail.strip_prefix("Request decode failed: ").unwrap_or(&detail).to_string();
        match what {
            "Login" => bad(format!("Failed to decode request body: {detail}")),
            _ => bad(format!("{what} decoding failed: {detail}")),
        }
    })
}

async fn write(ctx: &Ctx, op: AclOp) -> Result<AclApplied, Error> {
    match ctx.consensus()?.write(Command::Acl(op)).await? {
        (_, CommandResponse::Acl(applied)) => Ok(applied),
        (_, other) => Err(Error::Raft(format!("unexpected result {other:?}"))),
    }
}

/// A (possibly blocking) read of the ACL tables; `pick` gets the tables and the reader's clock.
async fn read(
    ctx: &Ctx,
    uri: &Uri,
    pick: impl Fn(&AclTables, u64) -> (u64, Result<Value, Error>),
) -> Result<Response, Error> {
    enabled(ctx)?;
    let q = QueryParams::from_uri(uri);
    q.check_dc(&ctx.config.datacenter)?;
    let params = ReadParams::parse(&q, ctx.config.default_query_time, ctx.config.max_query_time)?;
    let now = now_ms();
    let targets = [WatchTarget::Key(WATCH_ACL.to_string())];
    let (index, result, meta) = blocking::run(ctx, &params, &targets, |d| pick(&d.acl, now)).await?;
    let mut resp = json(StatusCode::OK, &result?, q.pretty());
    set_read_meta(resp.headers_mut(), index, &meta);
    Ok(resp)
}

/// [`read`] for a list endpoint: the items it picks are narrowed by the request's `?filter=`,
/// compiled for `schema`.
async fn read_list(
    ctx: &Ctx,
    uri: &Uri,
    schema: &crate::filter::Schema,
    pick: impl Fn(&AclTables, u64) -> (u64, Result<Value, Error>),
) -> Result<Response, Error> {
    enabled(ctx)?;
    let filter = crate::filter::from_query(QueryParams::from_uri(uri).get("filter"), schema)?;
    read(ctx, uri, |acl, now| {
        let (index, result) = pick(acl, now);
        let result = result.map(|mut v| {
            crate::filter::retain(&mut v, filter.as_ref());
            v
        });
        (index, result)
    })
    .await
}

fn write_prelude(ctx: &Ctx, uri: &Uri) -> Result<QueryParams, Error> {
    enabled(ctx)?;
    let q = QueryParams::from_uri(uri);
    q.check_dc(&ctx.config.datacenter)?;
    Ok(q)
}

// ---- JSON out ------------------------------------------------------------------------------

fn insert_nonempty(o: &mut Map<String, Value>, key: &str, v: Value) {
    let empty = match &v {
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Null => true,
        _ => false,
    };
    if !empty {
        o.insert(key.into(), v);
    }
}

fn policy_links(acl: &AclTables, links: &[AclLink]) -> Value {
    Value::Array(
        links.iter().filter_map(|l| acl.policy(&l.id).map(|p| json_value!({"ID": p.id, "Name": p.name}))).collect(),
    )
}

fn role_links(acl: &AclTables, links: &[AclLink]) -> Value {
    Value::Array(
        links.iter().filter_map(|l| acl.role(&l.id).map(|r| json_value!({"ID": r.id, "Name": r.name}))).collect(),
    )
}

fn service_identities_json(ids: &[ServiceIdentity]) -> Value {
    Value::Array(
        ids.iter()
            .map(|s| {
                let mut o = Map::new();
                o.insert("ServiceName".into(), json_value!(s.service_name));
                insert_nonempty(&mut o, "Datacenters", json_value!(s.datacenters));
                Value::Object(o)
            })
            .collect(),
    )
}

fn node_identities_json(ids: &[NodeIdentity]) -> Value {
    Value::Array(ids.iter().map(|n| json_value!({"NodeName": n.node_name, "Datacenter": n.datacenter})).collect())
}

fn templated_json(ids: &[TemplatedPolicyRef]) -> Value {
    Value::Array(
        ids.iter()
            .map(|t| {
                let mut o = Map::new();
                o.insert("TemplateName".into(), json_value!(t.template_name));
                if let Some(n) = &t.name_var {
                    o.insert("TemplateVariables".into(), json_value!({ "Name": n }));
                }
                insert_nonempty(&mut o, "Datacenters", json_value!(t.datacenters));
                Value::Object(o)
            })
            .collect(),
    )
}

/// `structs.ACLToken` (or, with `stub`, `ACLTokenListStub`, which has the same fields here).
fn token_json(acl: &AclTables, t: &AclToken) -> Value {
    let mut o = Map::new();
    o.insert("AccessorID".into(), json_value!(t.accessor_id));
    o.insert("SecretID".into(), json_value!(t.secret_id));
    o.insert("Description".into(), json_value!(t.description));
    insert_nonempty(&mut o, "Policies", policy_links(acl, &t.policies));
    insert_nonempty(&mut o, "Roles", role_links(acl, &t.roles));
    insert_nonempty(&mut o, "ServiceIdentities", service_identities_json(&t.service_identities));
    insert_nonempty(&mut o, "NodeIdentities", node_identities_json(&t.node_identities));
    insert_nonempty(&mut o, "TemplatedPolicies", templated_json(&t.templated_policies));
    o.insert("Local".into(), json_value!(t.local));
    insert_nonempty(&mut o, "AuthMethod", json_value!(t.auth_method));
    if let Some(exp) = t.expiration_time_ms {
        o.insert("ExpirationTime".into(), json_value!(timestamp::format_ms(exp)));
    }
    o.insert("CreateTime".into(), json_value!(timestamp::format_ms(t.create_time_ms)));
    o.insert("Hash".into(), json_value!(t.hash));
    o.insert("CreateIndex".into(), json_value!(t.create_index));
    o.insert("ModifyIndex".into(), json_value!(t.modify_index));
    Value::Object(o)
}

fn policy_json(p: &AclPolicy, with_rules: bool) -> Value {
    let mut o = Map::new();
    o.insert("ID".into(), json_value!(p.id));
    o.insert("Name".into(), json_value!(p.name));
    o.insert("Description".into(), json_value!(p.description));
    if with_rules {
        o.insert("Rules".into(), json_value!(p.rules));
    }
    // A policy (`structs.ACLPolicy`) leaves out empty datacenters; a list entry
    // (`ACLPolicyListStub`) always has them, null when empty.
    if with_rules {
        insert_nonempty(&mut o, "Datacenters", json_value!(p.datacenters));
    } else {
        let dcs = if p.datacenters.is_empty() { Value::Null } else { json_value!(p.datacenters) };
        o.insert("Datacenters".into(), dcs);
    }
    o.insert("Hash".into(), json_value!(p.hash));
    o.insert("CreateIndex".into(), json_value!(p.create_index));
    o.insert("ModifyIndex".into(), json_value!(p.modify_index));
    Value::Object(o)
}

fn role_json(acl: &AclTables, r: &AclRole) -> Value {
    let mut o = Map::new();
    o.insert("ID".into(), json_value!(r.id));
    o.insert("Name".into(), json_value!(r.name));
    o.insert("Description".into(), json_value!(r.description));
    insert_nonempty(&mut o, "Policies", policy_links(acl, &r.policies));
    insert_nonempty(&mut o, "ServiceIdentities", service_identities_json(&r.service_identities));
    insert_nonempty(&mut o, "NodeIdentities", node_identities_json(&r.node_identities));
    insert_nonempty(&mut o, "TemplatedPolicies", templated_json(&r.templated_policies));
    o.insert("Hash".into(), json_value!(r.hash));
    o.insert("CreateIndex".into(), json_value!(r.create_index));
    o.insert("ModifyIndex".into(), json_value!(r.modify_index));
    Value::Object(o)
}

fn auth_method_json(m: &AclAuthMethod, with_config: bool) -> Value {
    let mut o = Map::new();
    o.insert("Name".into(), json_value!(m.name));
    o.insert("Type".into(), json_value!(m.method_type));
    insert_nonempty(&mut o, "DisplayName", json_value!(m.display_name));
    insert_nonempty(&mut o, "Description", json_value!(m.description));
    if m.max_token_ttl_ns > 0 {
        o.insert(
            "MaxTokenTTL".into(),
            json_value!(format_go_duration(std::time::Duration::from_nanos(m.max_token_ttl_ns))),
        );
    }
    insert_nonempty(&mut o, "TokenLocality", json_value!(m.token_locality));
    if with_config {
        o.insert("Config".into(), serde_json::from_str(&m.config_json).unwrap_or(Value::Null));
    }
    o.insert("CreateIndex".into(), json_value!(m.create_index));
    o.insert("ModifyIndex".into(), json_value!(m.modify_index));
    Value::Object(o)
}

fn binding_rule_json(r: &AclBindingRule) -> Value {
    let mut o = Map::new();
    o.insert("ID".into(), json_value!(r.id));
    o.insert("Description".into(), json_value!(r.description));
    o.insert("AuthMethod".into(), json_value!(r.auth_method));
    o.insert("Selector".into(), json_value!(r.selector));
    o.insert("BindType".into(), json_value!(r.bind_type));
    o.insert("BindName".into(), json_value!(r.bind_name));
    if let Some(n) = &r.bind_vars_name {
        o.insert("BindVars".into(), json_value!({ "Name": n }));
    }
    o.insert("CreateIndex".into(), json_value!(r.create_index));
    o.insert("ModifyIndex".into(), json_value!(r.modify_index));
    Value::Object(o)
}

fn applied_json(ctx: &Ctx, applied: AclApplied) -> Result<Value, Error> {
    let state = ctx.consensus()?.state();
    Ok(state.read(|d| match applied {
        AclApplied::Token(t) => token_json(&d.acl, &t),
        AclApplied::Policy(p) => policy_json(&p, true),
        AclApplied::Role(r) => role_json(&d.acl, &r),
        AclApplied::AuthMethod(m) => auth_method_json(&m, true),
        AclApplied::BindingRule(r) => binding_rule_json(&r),
        AclApplied::Done => Value::Bool(true),
    }))
}

// ---- JSON in -------------------------------------------------------------------------------

fn parse_links(o: &Obj<'_>, field: &str) -> Result<Vec<AclLink>, Error> {
    o.objects(&[field])?
        .into_iter()
        .map(|m| {
            let l = Obj::new(m, field);
            Ok(AclLink { id: l.string(&["ID"])?, name: l.string(&["Name"])? })
        })
        .collect()
}

fn parse_service_identities(o: &Obj<'_>, what: &str) -> Result<Vec<ServiceIdentity>, Error> {
    let mut out: Vec<ServiceIdentity> = Vec::new();
    for m in o.objects(&["ServiceIdentities"])? {
        let s = Obj::new(m, "ServiceIdentities");
        let id =
            ServiceIdentity { service_name: s.string(&["ServiceName"])?, datacenters: s.strings(&["Datacenters"])? };
        if id.service_name.is_empty() {
            return Err(bad(format!("Service identity is missing the service name field on this {what}")));
        }
        if !valid_identity_name(&id.service_name) {
            return Err(bad(format!(
                "Service identity {:?} has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed",
                id.service_name
            )));
        }
        if !out.iter().any(|x| x.service_name == id.service_name) {
            out.push(id);
        }
    }
    Ok(out)
}

fn parse_node_identities(o: &Obj<'_>, what: &str) -> Result<Vec<NodeIdentity>, Error> {
    let mut out: Vec<NodeIdentity> = Vec::new();
    for m in o.objects(&["NodeIdentities"])? {
        let n = Obj::new(m, "NodeIdentities");
        let id = NodeIdentity { node_name: n.string(&["NodeName"])?, datacenter: n.string(&["Datacenter"])? };
        if id.node_name.is_empty() {
            return Err(bad(format!("Node identity is missing the node name field on this {what}")));
        }
        if id.datacenter.is_empty() {
            return Err(bad(format!("Node identity is missing the datacenter field on this {what}")));
        }
        if !valid_identity_name(&id.node_name) {
            return Err(bad(
                "Node identity has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed",
            ));
        }
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

fn parse_templated(o: &Obj<'_>) -> Result<Vec<TemplatedPolicyRef>, Error> {
    let mut out = Vec::new();
    for m in o.objects(&["TemplatedPolicies"])? {
        let t = Obj::new(m, "TemplatedPolicies");
        let name = t.string(&["TemplateName"])?;
        let vars = t.object(&["TemplateVariables"])?;
        let name_var = match vars {
            Some(v) => Some(Obj::new(v, "TemplateVariables").string(&["Name"])?).filter(|s| !s.is_empty()),
            None => None,
        };
        let template = crate::acl::builtin::templated_policy(&name)
            .ok_or_else(|| bad(format!("no such ACL templated policy with Name {name:?}")))?;
        template
            .render(name_var.as_deref())
            .map_err(|e| bad(format!("validation error for templated policy {name:?}: {e}")))?;
        out.push(TemplatedPolicyRef { template_name: name, name_var, datacenters: t.strings(&["Datacenters"])? });
    }
    Ok(out)
}

/// A Go duration given as a string or a number of nanoseconds.
fn parse_duration_ns(o: &Obj<'_>, field: &str) -> Result<i128, Error> {
    match o.get(&[field]) {
        None => Ok(0),
        Some(Value::String(s)) if s.is_empty() => Ok(0),
        Some(Value::String(s)) => {
            let (neg, body) = match s.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, s.as_str()),
            };
            let d = parse_go_duration(body).map_err(|e| bad(format!("Request decode failed: {field}: {e}")))?;
            let ns = d.as_nanos() as i128;
            Ok(if neg { -ns } else { ns })
        }
        Some(Value::Number(n)) => {
            n.as_i64().map(i128::from).ok_or_else(|| bad(format!("Request decode failed: {field}: not a duration")))
        }
        Some(_) => Err(bad(format!("Request decode failed: {field}: expected a duration"))),
    }
}

/// The fields a token write takes from its body.
pub(super) fn parse_token_body(o: &Obj<'_>) -> Result<(AclToken, i128, Option<u64>), Error> {
    if !o.string(&["Rules"])?.is_empty() {
        return Err(bad("Rules cannot be specified for this token"));
    }
    if !o.string(&["Type"])?.is_empty() {
        return Err(bad("Type cannot be specified for this token"));
    }
    let local = o.boolean(&["Local"])?;
    let service_identities = parse_service_identities(o, "token")?;
    if local {
        if let Some(s) = service_identities.iter().find(|s| !s.datacenters.is_empty()) {
            return Err(bad(format!(
                "Service identity {:?} cannot specify a list of datacenters on a local token",
                s.service_name
            )));
        }
    }
    let expiration = match o.string(&["ExpirationTime"])? {
        s if s.is_empty() => None,
        s => Some(timestamp::parse_ms(&s).map_err(|e| bad(format!("Request decode failed: ExpirationTime: {e}")))?),
    };
    let ttl = parse_duration_ns(o, "ExpirationTTL")?;
    let token = AclToken {
        accessor_id: o.string(&["AccessorID"])?,
        secret_id: o.string(&["SecretID"])?,
        description: o.string(&["Description"])?,
        policies: parse_links(o, "Policies")?,
        roles: parse_links(o, "Roles")?,
        service_identities,
        node_identities: parse_node_identities(o, "token")?,
        templated_policies: parse_templated(o)?,
        local,
        auth_method: o.string(&["AuthMethod"])?,
        expiration_time_ms: expiration,
        ..AclToken::default()
    };
    Ok((token, ttl, expiration))
}

pub(super) fn validate_token_id(id: &str, field: &str) -> Result<(), Error> {
    if id.starts_with(RESERVED_ID_PREFIX) {
        return Err(bad(format!("Invalid Token: {field} - UUIDs with the prefix {RESERVED_ID_PREFIX:?} are reserved")));
    }
    if !is_uuid(id) {
        return Err(bad(format!("Invalid Token: {field} - not a valid UUID")));
    }
    Ok(())
}

/// Applies Consul's create-time expiry rules; returns the expiry (unix ms) if any.
pub(super) fn creation_expiry(ttl_ns: i128, expiration: Option<u64>, now: u64) -> Result<Option<u64>, Error> {
    if ttl_ns < 0 {
        return Err(bad(format!(
            "Token Expiration TTL '-{}' should be > 0",
            format_go_duration(std::time::Duration::from_nanos(ttl_ns.unsigned_abs() as u64))
        )));
    }
    let expiry = if ttl_ns > 0 {
        if expiration.is_some() {
            return Err(bad("Token Expiration TTL and Expiration Time cannot both be set"));
        }
        Some(now.saturating_add((ttl_ns / 1_000_000) as u64))
    } else {
        expiration
    };
    if let Some(exp) = expiry {
        if exp < now {
            return Err(bad("ExpirationTime cannot be before CreateTime"));
        }
        let fmt = |ms: u64| format_go_duration(std::time::Duration::from_millis(ms));
        let expires_in = exp - now;
        if expires_in > MAX_TTL_MS {
            return Err(bad(format!(
                "ExpirationTime cannot be more than {} in the future (was {})",
                fmt(MAX_TTL_MS),
                fmt(expires_in)
            )));
        }
        if expires_in < MIN_TTL_MS {
            return Err(bad(format!(
                "ExpirationTime cannot be less than {} in the future (was {})",
                fmt(MIN_TTL_MS),
                fmt(expires_in)
            )));
        }
    }
    Ok(expiry)
}

// ---- bootstrap -----------------------------------------------------------------------------

/// Marks a bootstrap a follower handed to the leader, so it is handed on at most once.
const FORWARDED_MARK: &str = "x-consul-rs-acl-forwarded";

/// `PUT /v1/acl/bootstrap`: the first management token; afterwards 403 with the reset index.
/// Answered by the leader, which reads the reset file in its own data dir (as Consul does).
pub(super) async fn bootstrap(State(ctx): State<Ctx>, uri: Uri, headers: HeaderMap) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    let consensus = ctx.consensus()?;
    if !consensus.is_leader() && !headers.contains_key(FORWARDED_MARK) {
        let req = super::proxy::HttpRequest {
            method: "PUT".into(),
            uri: uri.path_and_query().map_or("/v1/acl/bootstrap", |p| p.as_str()).to_string(),
            headers: vec![(FORWARDED_MARK.into(), "1".into())],
            body: Vec::new(),
        };
        let answer: Result<super::proxy::HttpResponse, String> =
            consensus.call_leader(crate::rpc::Service::Http, &req, std::time::Duration::from_secs(30)).await?;
        return Ok(super::proxy::into_response(answer.map_err(Error::Rpc)?));
    }
    let reset_path = ctx.config.data_dir.as_ref().map(|d| d.join(RESET_FILE));
    let reset_index = reset_path
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let now = now_ms();
    let token = AclToken {
        accessor_id: new_uuid(),
        secret_id: new_uuid(),
        description: "Bootstrap Token (Global Management)".into(),
        create_time_ms: now,
        ..AclToken::default()
    };
    let applied = write(&ctx, AclOp::Bootstrap { token: Box::new(token), reset_index }).await?;
    if reset_index > 0 {
        // The reset was used up: one reset allows one bootstrap, as in Consul.
        if let Some(p) = reset_path {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(json(StatusCode::OK, &applied_json(&ctx, applied)?, q.pretty()))
}

// ---- tokens --------------------------------------------------------------------------------

/// `PUT /v1/acl/token`.
pub(super) async fn token_create(
    State(ctx): State<Ctx>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    let map = body_object(body, &headers, "Token").await?;
    let (mut token, ttl, expiration) = parse_token_body(&Obj::new(&map, ""))?;
    if token.accessor_id.is_empty() {
        token.accessor_id = new_uuid();
    } else {
        validate_token_id(&token.accessor_id, "AccessorID")?;
    }
    if token.secret_id.is_empty() {
        token.secret_id = new_uuid();
    } else {
        validate_token_id(&token.secret_id, "SecretID")?;
    }
    if !token.auth_method.is_empty() {
        return Err(bad("AuthMethod field is disallowed outside of login"));
    }
    let now = now_ms();
    token.create_time_ms = now;
    token.expiration_time_ms = creation_expiry(ttl, expiration, now)?;
    token.expiration_ttl_ns = u64::try_from(ttl).unwrap_or(0);
    let applied = write(&ctx, AclOp::TokenSet { token: Box::new(token), create: true, now_ms: now }).await?;
    Ok(json(StatusCode::OK, &applied_json(&ctx, applied)?, q.pretty()))
}

/// `PUT /v1/acl/token/{id}`.
pub(super) async fn token_update(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    let map = body_object(body, &headers, "Token").await?;
    let (mut token, ttl, _) = parse_token_body(&Obj::new(&map, ""))?;
    if !token.accessor_id.is_empty() && token.accessor_id != id {
        return Err(bad("Token Accessor ID in URL and payload do not match"));
    }
    token.accessor_id = id;
    if !is_uuid(&token.accessor_id) {
        return Err(bad("AccessorID is not a valid UUID"));
    }
    if ttl != 0 {
        return Err(bad(format!("Cannot change expiration time of {}", token.accessor_id)));
    }
    let now = now_ms();
    let applied = write(&ctx, AclOp::TokenSet { token: Box::new(token), create: false, now_ms: now }).await?;
    Ok(json(StatusCode::OK, &applied_json(&ctx, applied)?, q.pretty()))
}

/// `PUT /v1/acl/token/{id}/clone`.
pub(super) async fn token_clone(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    let map = body_object(body, &headers, "Token").await?;
    let description = Obj::new(&map, "").string(&["Description"])?;
    let now = now_ms();
    let source = ctx.consensus()?.state().read(|d| d.acl.token_by_accessor(&id, now).cloned());
    let source = source.ok_or(Error::AclNotFound)?;
    if !source.auth_method.is_empty() {
        return Err(bad("Cannot clone a token created from an auth method"));
    }
    let token = AclToken {
        accessor_id: new_uuid(),
        secret_id: new_uuid(),
        description: if description.is_empty() { source.description.clone() } else { description },
        create_time_ms: now,
        hash: String::new(),
        create_index: 0,
        modify_index: 0,
        ..source
    };
    let applied = write(&ctx, AclOp::TokenSet { token: Box::new(token), create: true, now_ms: now }).await?;
    Ok(json(StatusCode::OK, &applied_json(&ctx, applied)?, q.pretty()))
}

/// `GET /v1/acl/token/{id}` (with `?expanded`, the policies and roles it resolves to).
pub(super) async fn token_read(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> Result<Response, Error> {
    let expanded = QueryParams::from_uri(&uri).has("expanded");
    let agent = AgentDefaults {
        default_allow: ctx.config.acl.default_allow,
        down_policy: ctx.config.acl.down_policy.as_str(),
        node: ctx.config.node_name.clone(),
    };
    read(&ctx, &uri, |acl, now| {
        let result = match acl.token_by_accessor(&id, now) {
            None => Err(Error::AclNotFound),
            Some(t) if expanded => Ok(expanded_json(acl, t, &agent)),
            Some(t) => Ok(token_json(acl, t)),
        };
        (acl.tokens_index, result)
    })
    .await
}

/// What `?expanded` reports of the agent that resolved the token.
struct AgentDefaults {
    default_allow: bool,
    down_policy: &'static str,
    node: String,
}

fn expanded_json(acl: &AclTables, t: &AclToken, agent: &AgentDefaults) -> Value {
    let roles: Vec<&AclRole> = t.roles.iter().filter_map(|l| acl.role(&l.id)).collect();
    let mut policy_ids: Vec<&str> = t.policies.iter().map(|l| l.id.as_str()).collect();
    for r in &roles {
        policy_ids.extend(r.policies.iter().map(|l| l.id.as_str()));
    }
    policy_ids.dedup();
    let mut seen = std::collections::BTreeSet::new();
    let policies: Vec<Value> = policy_ids
        .into_iter()
        .filter(|id| seen.insert(*id))
        .filter_map(|id| acl.policy(id).map(|p| policy_json(p, true)))
        .collect();
    let mut v = token_json(acl, t);
    if let Some(o) = v.as_object_mut() {
        o.insert("ExpandedPolicies".into(), Value::Array(policies));
        o.insert("ExpandedRoles".into(), Value::Array(roles.iter().map(|r| role_json(acl, r)).collect()));
        o.insert("NamespaceDefaultPolicyIDs".into(), Value::Null);
        o.insert("NamespaceDefaultRoleIDs".into(), Value::Null);
        o.insert("AgentACLDefaultPolicy".into(), json_value!(if agent.default_allow { "allow" } else { "deny" }));
        o.insert("AgentACLDownPolicy".into(), json_value!(agent.down_policy));
        o.insert("ResolvedByAgent".into(), json_value!(agent.node));
    }
    v
}

/// `GET /v1/acl/token/self`: the token the request carries.
pub(super) async fn token_self(State(ctx): State<Ctx>, uri: Uri, headers: HeaderMap) -> Result<Response, Error> {
    let secret = request_token(&QueryParams::from_uri(&uri), &headers).unwrap_or_else(|| "anonymous".into());
    read(&ctx, &uri, |acl, now| {
        let result = acl.token_by_secret(&secret, now).map(|t| token_json(acl, t)).ok_or(Error::AclNotFound);
        (acl.tokens_index, result)
    })
    .await
}

/// `DELETE /v1/acl/token/{id}`.
pub(super) async fn token_delete(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    if !is_uuid(&id) {
        return Err(bad("Token ID is missing or an invalid UUID"));
    }
    // A token may not delete itself (Consul's rule: the caller would lock itself out mid-request).
    if let Some(secret) = request_token(&q, &headers) {
        let own = ctx.consensus()?.state().read(|d| d.acl.tokens.get(&id).is_some_and(|t| t.secret_id == secret));
        if own {
            return Err(bad("Deletion of the request's authorization token is not permitted"));
        }
    }
    write(&ctx, AclOp::TokenDelete { accessor_id: id }).await?;
    Ok(json(StatusCode::OK, &true, q.pretty()))
}

/// `GET /v1/acl/tokens` (`?policy`, `?role`, `?authmethod`, `?servicename`).
pub(super) async fn token_list(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    let filter = |k: &str| q.get(k).filter(|v| !v.is_empty()).map(str::to_string);
    let (policy, role, method, service) =
        (filter("policy"), filter("role"), filter("authmethod"), filter("servicename"));
    read_list(&ctx, &uri, &crate::filter::schema::ACL_TOKEN, |acl, now| {
        let list: Vec<Value> = acl
            .tokens
            .values()
            .filter(|t| !t.is_expired(now))
            .filter(|t| policy.as_ref().is_none_or(|p| t.policies.iter().any(|l| &l.id == p)))
            .filter(|t| role.as_ref().is_none_or(|r| t.roles.iter().any(|l| &l.id == r)))
            .filter(|t| method.as_ref().is_none_or(|m| &t.auth_method == m))
            .filter(|t| service.as_ref().is_none_or(|s| t.service_identities.iter().any(|i| &i.service_name == s)))
            .map(|t| token_json(acl, t))
            .collect();
        (acl.tokens_index, Ok(Value::Array(list)))
    })
    .await
}

// ---- policies ------------------------------------------------------------------------------

pub(super) fn parse_policy(map: &Map<String, Value>) -> Result<AclPolicy, Error> {
    let o = Obj::new(map, "");
    let policy = AclPolicy {
        id: o.string(&["ID"])?,
        name: o.string(&["Name"])?,
        description: o.string(&["Description"])?,
        rules: o.string(&["Rules"])?,
        datacenters: o.strings(&["Datacenters"])?,
        ..AclPolicy::default()
    };
    if !valid_name(&policy.name, 128) {
        return Err(bad("Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"));
    }
    validate_rules(&policy.rules)?;
    Ok(policy)
}

/// `PUT /v1/acl/policy`.
pub(super) async fn policy_create(
    State(ctx): State<Ctx>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    let mut policy = parse_policy(&body_object(body, &headers, "Policy").await?)?;
    if !policy.id.is_empty() {
        return Err(bad("Cannot specify the ID when creating a new policy"));
    }
    policy.id = new_uuid();
    let applied = write(&ctx, AclOp::PolicySet(Box::new(policy))).await?;
    Ok(json(StatusCode::OK, &applied_json(&ctx, applied)?, q.pretty()))
}

/// `PUT /v1/acl/policy/{id}`.
pub(super) async fn policy_update(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    let mut policy = parse_policy(&body_object(body, &headers, "Policy").await?)?;
    if !policy.id.is_empty() && policy.id != id {
        return Err(bad("Policy ID in URL and payload do not match"));
    }
    if !is_uuid(&id) {
        return Err(bad("Policy ID invalid UUID"));
    }
    if !ctx.consensus()?.state().read(|d| d.acl.policies.contains_key(&id)) {
        return Err(bad(format!("cannot find policy {id}")));
    }
    policy.id = id;
    let applied = write(&ctx, AclOp::PolicySet(Box::new(policy))).await?;
    Ok(json(StatusCode::OK, &applied_json(&ctx, applied)?, q.pretty()))
}

/// `GET /v1/acl/policy/{id}`.
pub(super) async fn policy_read(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> Result<Response, Error> {
    read(&ctx, &uri, |acl, _| {
        (acl.policies_index, acl.policy(&id).map(|p| policy_json(p, true)).ok_or(Error::AclNotFound))
    })
    .await
}

/// `GET /v1/acl/policy/name/{name}`.
pub(super) async fn policy_read_by_name(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    read(&ctx, &uri, |acl, _| {
        (acl.policies_index, acl.policy_by_name(&name).map(|p| policy_json(p, true)).ok_or(Error::AclNotFound))
    })
    .await
}

/// `DELETE /v1/acl/policy/{id}`.
pub(super) async fn policy_delete(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    if !is_uuid(&id) {
        return Err(bad("Policy ID is missing or an invalid UUID"));
    }
    write(&ctx, AclOp::PolicyDelete { id }).await?;
    Ok(json(StatusCode::OK, &true, q.pretty()))
}

/// `GET /v1/acl/policies`.
pub(super) async fn policy_list(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, Error> {
    read_list(&ctx, &uri, &crate::filter::schema::ACL_POLICY, |acl, _| {
        (acl.policies_index, Ok(Value::Array(acl.policies.values().map(|p| policy_json(p, false)).collect())))
    })
    .await
}

// ---- roles ---------------------------------------------------------------------------------

pub(super) fn parse_role(map: &Map<String, Value>) -> Result<AclRole, Error> {
    let o = Obj::new(map, "");
    let role = AclRole {
        id: o.string(&["ID"])?,
        name: o.string(&["Name"])?,
        description: o.string(&["Description"])?,
        policies: parse_links(&o, "Policies")?,
        service_identities: parse_service_identities(&o, "role")?,
        node_identities: parse_node_identities(&o, "role")?,
        templated_policies: parse_templated(&o)?,
        ..AclRole::default()
    };
    if role.name.is_empty() {
        return Err(bad("Role name is missing"));
    }
    if !valid_name(&role.name, 256) {
        return Err(bad("Invalid Role: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"));
    }
    Ok(role)
}

/// `PUT /v1/acl/role`.
pub(super) async fn role_create(
    State(ctx): State<Ctx>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    let mut role = parse_role(&body_object(body, &headers, "Role").await?)?;
    if !role.id.is_empty() {
        return Err(bad("Cannot specify the ID when creating a new role"));
    }
    role.id = new_uuid();
    let applied = write(&ctx, AclOp::RoleSet(Box::new(role))).await?;
    Ok(json(StatusCode::OK, &applied_json(&ctx, applied)?, q.pretty()))
}

/// `PUT /v1/acl/role/{id}`.
pub(super) async fn role_update(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    let mut role = parse_role(&body_object(body, &headers, "Role").await?)?;
    if !role.id.is_empty() && role.id != id {
        return Err(bad("Role ID in URL and payload do not match"));
    }
    if !ctx.consensus()?.state().read(|d| d.acl.roles.contains_key(&id)) {
        return Err(bad(format!("cannot find role {id}")));
    }
    role.id = id;
    let applied = write(&ctx, AclOp::RoleSet(Box::new(role))).await?;
    Ok(json(StatusCode::OK, &applied_json(&ctx, applied)?, q.pretty()))
}

/// `GET /v1/acl/role/{id}`.
pub(super) async fn role_read(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> Result<Response, Error> {
    read(&ctx, &uri, |acl, _| (acl.roles_index, acl.role(&id).map(|r| role_json(acl, r)).ok_or(Error::AclNotFound)))
        .await
}

/// `GET /v1/acl/role/name/{name}`.
pub(super) async fn role_read_by_name(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    read(&ctx, &uri, |acl, _| {
        (acl.roles_index, acl.role_by_name(&name).map(|r| role_json(acl, r)).ok_or(Error::AclNotFound))
    })
    .await
}

/// `DELETE /v1/acl/role/{id}`.
pub(super) async fn role_delete(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    write(&ctx, AclOp::RoleDelete { id }).await?;
    Ok(json(StatusCode::OK, &true, q.pretty()))
}

/// `GET /v1/acl/roles` (`?policy`).
pub(super) async fn role_list(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, Error> {
    let policy = QueryParams::from_uri(&uri).get("policy").filter(|p| !p.is_empty()).map(str::to_string);
    read_list(&ctx, &uri, &crate::filter::schema::ACL_ROLE, |acl, _| {
        let list = acl
            .roles
            .values()
            .filter(|r| policy.as_ref().is_none_or(|p| r.policies.iter().any(|l| &l.id == p)))
            .map(|r| role_json(acl, r))
            .collect();
        (acl.roles_index, Ok(Value::Array(list)))
    })
    .await
}

// ---- templated policies --------------------------------------------------------------------

fn templated_policy_json(t: &crate::acl::builtin::TemplatedPolicy) -> Value {
    // The raw template is the rendering with the variable left as Consul writes it.
    let template = t.render(t.schema.map(|_| "{{.Name}}")).unwrap_or_default();
    json_value!({
        "TemplateName": t.name,
        "Schema": t.schema.unwrap_or_default(),
        "Template": template,
        "Description": t.description,
    })
}

/// `GET /v1/acl/templated-policies`.
pub(super) async fn templated_policy_list(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    let map: Map<String, Value> = crate::acl::builtin::templated_policies()
        .iter()
        .map(|t| (t.name.to_string(), templated_policy_json(t)))
        .collect();
    Ok(json(StatusCode::OK, &map, q.pretty()))
}

/// `GET /v1/acl/templated-policy/name/{name}`.
pub(super) async fn templated_policy_read(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    let t = crate::acl::builtin::templated_policy(&name)
        .ok_or_else(|| Error::NotFound(format!("Invalid templated policy Name: {name}")))?;
    Ok(json(StatusCode::OK, &templated_policy_json(t), q.pretty()))
}

/// `POST /v1/acl/templated-policy/preview/{name}`: the policy the template renders to.
pub(super) async fn templated_policy_preview(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    let t = crate::acl::builtin::templated_policy(&name)
        .ok_or_else(|| Error::NotFound(format!("Invalid templated policy Name: {name}")))?;
    let map = body_object(body, &headers, "Request").await?;
    let var = Some(Obj::new(&map, "").string(&["Name"])?).filter(|s| !s.is_empty());
    let rules =
        t.render(var.as_deref()).map_err(|e| bad(format!("validation error for templated policy: {name:?}: {e}")))?;
    let policy = AclPolicy {
        name: format!("synthetic-policy-{}", &new_uuid()[..8]),
        description: format!("synthetic policy generated from templated policy: {name}"),
        rules,
        ..AclPolicy::default()
    };
    Ok(json(StatusCode::OK, &policy_json(&policy, true), q.pretty()))
}

// ---- auth methods --------------------------------------------------------------------------

pub(super) fn parse_auth_method(map: &Map<String, Value>) -> Result<AclAuthMethod, Error> {
    let o = Obj::new(map, "");
    let name = o.string(&["Name"])?;
    let method_type = o.string(&["Type"])?;
    if name.is_empty() {
        return Err(bad("Invalid Auth Method: no Name is set"));
    }
    if !valid_name(&name, 128) {
        return Err(bad("Invalid Auth Method: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"));
    }
    if !AUTH_METHOD_TYPES.contains(&method_type.as_str()) {
        return Err(bad(format!("Invalid Auth Method: Type should be one of: [{}]", AUTH_METHOD_TYPES.join(" "))));
    }
    let locality = o.string(&["TokenLocality"])?;
    if !matches!(locality.as_str(), "" | "local" | "global") {
        return Err(bad(format!(
            "Invalid Auth Method: TokenLocality should be one of 'local' or 'global', not {locality:?}"
        )));
    }
    let ttl = parse_duration_ns(&o, "MaxTokenTTL")?;
    if ttl != 0 {
        let fmt = |ms: u64| format_go_duration(std::time::Duration::from_millis(ms));
        if ttl < i128::from(MIN_TTL_MS) * 1_000_000 {
            return Err(bad(format!("Invalid Auth Method: MaxTokenTTL should be at least {}", fmt(MIN_TTL_MS))));
        }
        if ttl > i128::from(MAX_TTL_MS) * 1_000_000 {
            return Err(bad(format!("Invalid Auth Method: MaxTokenTTL should be at most {}", fmt(MAX_TTL_MS))));
        }
    }
    let config = o.get(&["Config"]).cloned().unwrap_or(Value::Null);
    AuthMethodConfig::parse(&method_type, &config).map_err(|e| bad(format!("Invalid Auth Method: {e}")))?;
    Ok(AclAuthMethod {
        name,
        method_type,
        display_name: o.string(&["DisplayName"])?,
        description: o.string(&["Description"])?,
        max_token_ttl_ns: u64::try_from(ttl).unwrap_or(0),
        token_locality: locality,
        config_json: config.to_string(),
        ..AclAuthMethod::default()
    })
}

/// Fetches what the method's config points at (a `JWKSURL` key set), holding no lock.
async fn check_reachable(ctx: &Ctx, method: &AclAuthMethod) -> Result<(), Error> {
    let config: Value = serde_json::from_str(&method.config_json).unwrap_or(Value::Null);
    let cfg =
        AuthMethodConfig::parse(&method.method_type, &config).map_err(|e| bad(format!("Invalid Auth Method: {e}")))?;
    cfg.check_reachable(&ctx.jwks).await.map_err(|e| bad(format!("Invalid Auth Method: {e}")))
}

/// `PUT /v1/acl/auth-method`.
pub(super) async fn auth_method_create(
    State(ctx): State<Ctx>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    let method = parse_auth_method(&body_object(body, &headers, "AuthMethod").await?)?;
    check_reachable(&ctx, &method).await?;
    let applied = write(&ctx, AclOp::AuthMethodSet(Box::new(method))).await?;
    Ok(json(StatusCode::OK, &applied_json(&ctx, applied)?, q.pretty()))
}

/// `PUT /v1/acl/auth-method/{name}`.
pub(super) async fn auth_method_update(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    let mut map = body_object(body, &headers, "AuthMethod").await?;
    match Obj::new(&map, "").string(&["Name"])? {
        n if n.is_empty() => {
            map.insert("Name".into(), json_value!(name.clone()));
        }
        n if n != name => return Err(bad("Auth Method Name in URL and payload do not match")),
        _ => {}
    }
    let method = parse_auth_method(&map)?;
    if !ctx.consensus()?.state().read(|d| d.acl.auth_methods.contains_key(&name)) {
        return Err(bad(format!("cannot find auth method {name}")));
    }
    check_reachable(&ctx, &method).await?;
    let applied = write(&ctx, AclOp::AuthMethodSet(Box::new(method))).await?;
    Ok(json(StatusCode::OK, &applied_json(&ctx, applied)?, q.pretty()))
}

/// `GET /v1/acl/auth-method/{name}`.
pub(super) async fn auth_method_read(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    read(&ctx, &uri, |acl, _| {
        let r = acl.auth_methods.get(&name).map(|m| auth_method_json(m, true)).ok_or(Error::AclNotFound);
        (acl.auth_methods_index, r)
    })
    .await
}

/// `DELETE /v1/acl/auth-method/{name}`.
pub(super) async fn auth_method_delete(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    write(&ctx, AclOp::AuthMethodDelete { name }).await?;
    Ok(json(StatusCode::OK, &true, q.pretty()))
}

/// `GET /v1/acl/auth-methods`.
pub(super) async fn auth_method_list(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, Error> {
    read_list(&ctx, &uri, &crate::filter::schema::ACL_AUTH_METHOD, |acl, _| {
        let list = acl.auth_methods.values().map(|m| auth_method_json(m, false)).collect();
        (acl.auth_methods_index, Ok(Value::Array(list)))
    })
    .await
}

// ---- binding rules -------------------------------------------------------------------------

const BIND_TYPES: &[&str] = &["service", "node", "role", "policy", "templated-policy"];

fn parse_binding_rule(ctx: &Ctx, map: &Map<String, Value>) -> Result<AclBindingRule, Error> {
    let o = Obj::new(map, "");
    let vars = o.object(&["BindVars"])?;
    let rule = AclBindingRule {
        id: o.string(&["ID"])?,
        description: o.string(&["Description"])?,
        auth_method: o.string(&["AuthMethod"])?,
        selector: o.string(&["Selector"])?,
        bind_type: o.string(&["BindType"])?,
        bind_name: o.string(&["BindName"])?,
        bind_vars_name: match vars {
            Some(v) => Some(Obj::new(v, "BindVars").string(&["Name"])?).filter(|s| !s.is_empty()),
            None => None,
        },
        ..AclBindingRule::default()
    };
    if rule.auth_method.is_empty() {
        return Err(bad("Invalid Binding Rule: no AuthMethod is set"));
    }
    if rule.bind_type.is_empty() {
        return Err(bad("Invalid Binding Rule: no BindType is set"));
    }
    if !BIND_TYPES.contains(&rule.bind_type.as_str()) {
        return Err(bad(format!("Invalid Binding Rule: unknown BindType {:?}", rule.bind_type)));
    }
    if rule.bind_name.is_empty() {
        return Err(bad("Invalid Binding Rule: no BindName is set"));
    }
    let selector =
        Selector::parse(&rule.selector).map_err(|e| bad(format!("invalid Binding Rule: Selector is invalid: {e}")))?;
    // BindName must interpolate with the method's variables (each set to a valid dummy name).
    let method = ctx.consensus()?.state().read(|d| d.acl.auth_methods.get(&rule.auth_method).cloned());
    let method =
        method.ok_or_else(|| bad(format!("Invalid Binding Rule: unknown auth method {:?}", rule.auth_method)))?;
    let config: Value = serde_json::from_str(&method.config_json).unwrap_or(Value::Null);
    let dummy =
        AuthMethodConfig::parse(&method.method_type, &config).map(|cfg| cfg.placeholder_vars()).unwrap_or_default();
    if let Some(field) = selector.fields().into_iter().find(|f| !dummy.fields.contains_key(*f)) {
        return Err(bad(format!(
            "invalid Binding Rule: Selector is invalid: {field:?} is not a field of {} auth methods",
            method.method_type
        )));
    }
    interpolate(&rule.bind_name, &dummy).map_err(|e| bad(format!("Invalid Binding Rule: invalid BindName: {e}")))?;
    Ok(rule)
}

/// `PUT /v1/acl/binding-rule`.
pub(super) async fn binding_rule_create(
    State(ctx): State<Ctx>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    let mut rule = parse_binding_rule(&ctx, &body_object(body, &headers, "BindingRule").await?)?;
    if !rule.id.is_empty() {
        return Err(bad("Cannot specify the ID when creating a new binding rule"));
    }
    rule.id = new_uuid();
    let applied = write(&ctx, AclOp::BindingRuleSet(Box::new(rule))).await?;
    Ok(json(StatusCode::OK, &applied_json(&ctx, applied)?, q.pretty()))
}

/// `PUT /v1/acl/binding-rule/{id}`.
pub(super) async fn binding_rule_update(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    let mut rule = parse_binding_rule(&ctx, &body_object(body, &headers, "BindingRule").await?)?;
    if !rule.id.is_empty() && rule.id != id {
        return Err(bad("BindingRule ID in URL and payload do not match"));
    }
    if !ctx.consensus()?.state().read(|d| d.acl.binding_rules.contains_key(&id)) {
        return Err(bad(format!("cannot find binding rule {id}")));
    }
    rule.id = id;
    let applied = write(&ctx, AclOp::BindingRuleSet(Box::new(rule))).await?;
    Ok(json(StatusCode::OK, &applied_json(&ctx, applied)?, q.pretty()))
}

/// `GET /v1/acl/binding-rule/{id}`.
pub(super) async fn binding_rule_read(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    read(&ctx, &uri, |acl, _| {
        (acl.binding_rules_index, acl.binding_rules.get(&id).map(binding_rule_json).ok_or(Error::AclNotFound))
    })
    .await
}

/// `DELETE /v1/acl/binding-rule/{id}`.
pub(super) async fn binding_rule_delete(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    write(&ctx, AclOp::BindingRuleDelete { id }).await?;
    Ok(json(StatusCode::OK, &true, q.pretty()))
}

/// `GET /v1/acl/binding-rules` (`?authmethod`).
pub(super) async fn binding_rule_list(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, Error> {
    let method = QueryParams::from_uri(&uri).get("authmethod").filter(|m| !m.is_empty()).map(str::to_string);
    read_list(&ctx, &uri, &crate::filter::schema::ACL_BINDING_RULE, |acl, _| {
        let list = acl
            .binding_rules
            .values()
            .filter(|r| method.as_ref().is_none_or(|m| &r.auth_method == m))
            .map(binding_rule_json)
            .collect();
        (acl.binding_rules_index, Ok(Value::Array(list)))
    })
    .await
}

// ---- login / logout ------------------------------------------------------------------------

/// What the matching binding rules grant, applied to a new token. Links to roles and policies
/// that do not exist are skipped (Consul's `AllowMissingLinks` for logins).
fn bind(acl: &AclTables, method: &str, vars: &Vars, datacenter: &str, token: &mut AclToken) -> Result<(), Error> {
    for rule in acl.binding_rules.values().filter(|r| r.auth_method == method) {
        let Ok(selector) = Selector::parse(&rule.selector) else { continue };
        if !selector.matches(vars) {
            continue;
        }
        let name = interpolate(&rule.bind_name, vars)
            .map_err(|e| bad(format!("cannot compute {:?} bind name for bind target: {e}", rule.bind_type)))?;
        match rule.bind_type.as_str() {
            "service"
                if valid_identity_name(&name) && !token.service_identities.iter().any(|s| s.service_name == name) =>
            {
                token.service_identities.push(ServiceIdentity { service_name: name, datacenters: Vec::new() });
            }
            "node" if valid_identity_name(&name) => {
                token.node_identities.push(NodeIdentity { node_name: name, datacenter: datacenter.to_string() });
            }
            "role" => {
                if let Some(r) = acl.role_by_name(&name) {
                    token.roles.push(AclLink { id: r.id.clone(), name: String::new() });
                }
            }
            "policy" => {
                if let Some(p) = acl.policy_by_name(&name) {
                    token.policies.push(AclLink { id: p.id.clone(), name: String::new() });
                }
            }
            "templated-policy" => {
                let var = match &rule.bind_vars_name {
                    Some(v) => Some(interpolate(v, vars).map_err(|e| bad(format!("cannot compute BindVars: {e}")))?),
                    None => None,
                };
                token.templated_policies.push(TemplatedPolicyRef {
                    template_name: name,
                    name_var: var,
                    datacenters: Vec::new(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// `POST /v1/acl/login`: exchanges a bearer JWT for a token built from the binding rules.
pub(super) async fn login(State(ctx): State<Ctx>, uri: Uri, headers: HeaderMap, body: Body) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    let map = body_object(body, &headers, "Login").await?;
    let o = Obj::new(&map, "");
    let method_name = o.string(&["AuthMethod"])?;
    let bearer = o.string(&["BearerToken"])?;
    let meta = o.string_map(&["Meta"])?;
    if method_name.is_empty() {
        return Err(bad("Invalid Login request: Missing auth method name"));
    }
    if bearer.is_empty() {
        return Err(bad("Invalid Login request: Missing auth method bearer token"));
    }
    let state = ctx.consensus()?.state().clone();
    let method = state.read(|d| d.acl.auth_methods.get(&method_name).cloned()).ok_or(Error::AclNotFound)?;
    let config: Value = serde_json::from_str(&method.config_json).unwrap_or(Value::Null);
    let cfg =
        AuthMethodConfig::parse(&method.method_type, &config).map_err(|e| bad(format!("Invalid Auth Method: {e}")))?;
    // No state lock is held here: a kubernetes login waits on the cluster's API server.
    let vars = cfg.login(&bearer, now_ms() / 1000, &ctx.jwks).await.map_err(|e| match e {
        LoginFailure::Rejected(m) => Error::PermissionDenied(m),
        LoginFailure::Unavailable(m) => Error::Upstream(m),
    })?;
    let now = now_ms();
    let mut description = "token created via login".to_string();
    if !meta.is_empty() {
        description.push_str(": ");
        description.push_str(&serde_json::to_string(&meta).unwrap_or_default());
    }
    let mut token = AclToken {
        accessor_id: new_uuid(),
        secret_id: new_uuid(),
        description,
        local: method.token_locality != "global",
        auth_method: method.name.clone(),
        create_time_ms: now,
        ..AclToken::default()
    };
    if method.max_token_ttl_ns > 0 {
        token.expiration_time_ms = Some(now.saturating_add(method.max_token_ttl_ns / 1_000_000));
    }
    state.read(|d| bind(&d.acl, &method.name, &vars, &ctx.config.datacenter, &mut token))?;
    let grants = token.policies.len()
        + token.roles.len()
        + token.service_identities.len()
        + token.node_identities.len()
        + token.templated_policies.len();
    if grants == 0 {
        // Consul refuses to mint a token without privileges.
        return Err(Error::PermissionDenied("no binding rule of the auth method grants anything to this login".into()));
    }
    let applied = write(&ctx, AclOp::TokenSet { token: Box::new(token), create: true, now_ms: now }).await?;
    Ok(json(StatusCode::OK, &applied_json(&ctx, applied)?, q.pretty()))
}

/// `POST /v1/acl/logout`: deletes the request's token if a login created it.
pub(super) async fn logout(State(ctx): State<Ctx>, uri: Uri, headers: HeaderMap) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    let secret = request_token(&q, &headers).ok_or(Error::AclNotFound)?;
    let now = now_ms();
    let token = ctx.consensus()?.state().read(|d| d.acl.token_by_secret(&secret, now).cloned());
    let token = token.ok_or(Error::AclNotFound)?;
    if token.auth_method.is_empty() {
        return Err(Error::PermissionDenied("token wasn't created via login".into()));
    }
    write(&ctx, AclOp::TokenDelete { accessor_id: token.accessor_id }).await?;
    Ok(json(StatusCode::OK, &true, q.pretty()))
}

/// `GET /v1/acl/replication`: this is the primary datacenter, which replicates nothing.
pub(super) async fn replication(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, Error> {
    let q = write_prelude(&ctx, &uri)?;
    let zero = "0001-01-01T00:00:00Z";
    let body = json_value!({
        "Enabled": false,
        "Running": false,
        "SourceDatacenter": ctx.config.datacenter,
        "ReplicationType": "",
        "ReplicatedIndex": 0,
        "ReplicatedRoleIndex": 0,
        "ReplicatedTokenIndex": 0,
        "LastSuccess": zero,
        "LastError": zero,
        "LastErrorMessage": "",
    });
    Ok(json(StatusCode::OK, &body, q.pretty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("web-1_x", 128) && !valid_name("", 128) && !valid_name("a b", 128));
        assert!(!valid_name(&"a".repeat(129), 128));
        assert!(valid_identity_name("web-1") && !valid_identity_name("Web") && !valid_identity_name("-a"));
    }

    #[test]
    fn expiry_rules() {
        let now = 1_000_000_000;
        assert_eq!(creation_expiry(0, None, now).ok(), Some(None));
        assert_eq!(creation_expiry(120_000_000_000, None, now).ok(), Some(Some(now + 120_000)));
        let msg = |r: Result<Option<u64>, Error>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            msg(creation_expiry(30_000_000_000, None, now)),
            "ExpirationTime cannot be less than 1m0s in the future (was 30s)"
        );
        assert!(msg(creation_expiry(25 * 3_600_000_000_000, None, now))
            .starts_with("ExpirationTime cannot be more than 24h0m0s"));
        assert_eq!(
            msg(creation_expiry(120_000_000_000, Some(now + 1), now)),
            "Token Expiration TTL and Expiration Time cannot both be set"
        );
        assert!(msg(creation_expiry(-1_000_000_000, None, now)).contains("should be > 0"));
        assert_eq!(msg(creation_expiry(0, Some(now - 1), now)), "ExpirationTime cannot be before CreateTime");
    }

    #[test]
    fn token_ids() {
        assert!(validate_token_id("00000000-0000-0000-0000-000000000009", "SecretID").is_err());
        assert!(validate_token_id("nope", "SecretID").is_err());
        assert!(validate_token_id(&new_uuid(), "SecretID").is_ok());
    }

    #[test]
    fn rules_must_parse() {
        assert!(validate_rules("key_prefix \"\" { policy = \"read\" }").is_ok());
        assert!(validate_rules("{\"key_prefix\": {\"\": {\"policy\": \"read\"}}}").is_ok());
        let e = validate_rules("key_prefix \"\" { policy = ").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("Failed to parse ACL rules: "), "{e}");
    }
}
