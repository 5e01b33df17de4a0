//! `/v1/agent/self`, `/v1/agent/members`, `join`, `leave`, `force-leave`, `/v1/agent/version`
//! (`agent/agent_endpoint.go`). The agent's services and checks are in `agent_local.rs`.

use std::sync::Arc;

use axum::Extension;

use crate::acl::rules::{Need, Resource, Scalar};
use crate::api::authz::RequestAcl;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json as json_value, Value};

use super::query::{QueryParams, ReadParams};
use super::{blocking, json, ApiContext, Ctx};
use crate::local::CheckKind;
use crate::membership::gossip::engine::EngineError;
use crate::membership::gossip::MemberInfo;
use crate::membership::gossip::MemberStatus;
use crate::replication::raft::ServerState;
use crate::Error;

/// Consul's `AgentMember` shape for one member.
pub(crate) fn member_json(m: &MemberInfo, status: MemberStatus) -> Value {
    let expect = m.bootstrap_expect;
    let mut v = json_value!({
        "Name": m.name,
        "Addr": m.serf_addr.ip().to_string(),
        "Port": m.serf_addr.port(),
        "Tags": {
            "role": if m.server { "consul" } else { "node" },
            "dc": m.datacenter,
            "id": m.node_id.to_string(),
            "port": m.rpc_addr.port().to_string(),
            "expect": expect.to_string(),
            "build": format!("{}:consul-rs", crate::VERSION),
            "vsn": "2", "vsn_min": "2", "vsn_max": "3",
            "raft_vsn": "3",
        },
        "Status": status.code(),
        "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
        "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
    });
    if let Some(wan) = m.wan_addr {
        v["Tags"]["wan_join_port"] = Value::String(wan.port().to_string());
    }
    v
}

/// `GET /v1/agent/self`.
pub(super) async fn agent_self(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Response {
    let q = QueryParams::from_uri(&uri);
    if let Err(e) = acl.require(Resource::Agent, &ctx.config.node_name, Need::Read) {
        return e.into_response();
    }
    let me = ctx.cluster.me();
    let local = ctx.local.state.snapshot();
    let gossip = ctx.cluster.gossip();
    let counters = gossip.counters();
    let body = json_value!({
        "Config": {
            "Datacenter": ctx.config.datacenter,
            "PrimaryDatacenter": ctx.config.datacenter,
            "NodeName": me.name,
            "NodeID": me.node_id.to_string(),
            "Server": me.server,
            "Revision": "consul-rs",
            "Version": crate::VERSION,
            "BuildDate": "",
        },
        "DebugConfig": {
            "Bootstrap": ctx.config.bootstrap,
            "BootstrapExpect": ctx.config.bootstrap_expect,
            "DevMode": ctx.config.dev,
            // `consul debug` reads it to decide whether to capture profiles.
            "EnableDebug": ctx.config.enable_debug,
            "ACLsEnabled": ctx.config.acl.enabled,
            "ClientAddrs": [ctx.config.client_addr.to_string()],
            "HTTPAddrs": ctx.http_listeners,
            "RPCBindAddr": format!("tcp://{}", me.rpc_addr),
            "SerfBindAddrLAN": format!("tcp://{}", me.serf_addr),
            // What other agents join (Consul's own client tests join through it).
            "SerfAdvertiseAddrLAN": format!("tcp://{}", me.serf_addr),
            "RPCAdvertiseAddr": format!("tcp://{}", me.rpc_addr),
            "NodeName": me.name,
            "Datacenter": ctx.config.datacenter,
            "ServerMode": me.server,
            "NodeMeta": ctx.local.node.meta,
            "DataDir": ctx.config.data_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default(),
            "RetryJoinLAN": ctx.config.retry_join,
        },
        "Coord": ctx.coordinates.as_ref().map(|c| c.get()),
        "Member": member_json(&me, MemberStatus::Alive),
        "Stats": {
            "agent": {
                "check_monitors": local.checks.values().filter(|c| matches!(c.def.kind, CheckKind::Script { .. })).count().to_string(),
                "check_ttls": local.checks.values().filter(|c| matches!(c.def.kind, CheckKind::Ttl { .. })).count().to_string(),
                "checks": local.checks.len().to_string(),
                "services": local.services.len().to_string(),
            },
            "consul": consul_stats(&ctx, &me),
            "raft": raft_stats(&ctx),
            "serf_lan": {
                "members": ctx.cluster.members().len().to_string(),
                "health_score": gossip.local_health().to_string(),
                "encrypted": gossip.keyring().enabled().to_string(),
                "packets_in": counters.packets_in.to_string(),
                "packets_out": counters.packets_out.to_string(),
                "dropped_malformed": counters.dropped_malformed.to_string(),
                "dropped_decrypt": counters.dropped_decrypt.to_string(),
                "dropped_plaintext": counters.dropped_plaintext.to_string(),
                "dropped_replayed": counters.dropped_replayed.to_string(),
            },
            "build": { "version": crate::VERSION, "revision": "consul-rs", "prerelease": "" },
        },
        "Meta": ctx.local.node.meta,
    });
    json(StatusCode::OK, &body, q.pretty())
}

fn consul_stats(ctx: &ApiContext, me: &MemberInfo) -> Value {
    let Some(c) = ctx.backend.consensus() else {
        return json_value!({ "server": "false", "known_servers": ctx.cluster.servers().len().to_string() });
    };
    let leader = c.is_leader();
    json_value!({
        "bootstrap": ctx.config.bootstrap.to_string(),
        "known_datacenters": "1",
        "leader": leader.to_string(),
        "leader_addr": c.leader().map(|(_, n)| n.rpc_addr).unwrap_or_default(),
        "server": me.server.to_string(),
    })
}

fn raft_stats(ctx: &ApiContext) -> Value {
    let Some(c) = ctx.backend.consensus() else { return Value::Null };
    let metrics = c.metrics();
    let state = match metrics.state {
        ServerState::Leader => "Leader",
        ServerState::Follower => "Follower",
        ServerState::Candidate => "Candidate",
        ServerState::Learner => "Learner",
        ServerState::Shutdown => "Shutdown",
    };
    json_value!({
        "state": state,
        "term": metrics.current_term.to_string(),
        "last_log_index": metrics.last_log_index.unwrap_or(0).to_string(),
        "applied_index": metrics.last_applied.map(|l| l.index).unwrap_or(0).to_string(),
        "commit_index": metrics.last_applied.map(|l| l.index).unwrap_or(0).to_string(),
        "last_snapshot_index": metrics.snapshot.map(|l| l.index).unwrap_or(0).to_string(),
        "num_peers": crate::replication::raft::configuration(&metrics).servers.len().saturating_sub(1).to_string(),
        "protocol_version": "3",
    })
}

/// `GET /v1/agent/members` (`?wan`, `?segment`): the members this agent knows of.
pub(super) async fn agent_members(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Response {
    let q = QueryParams::from_uri(&uri);
    let filter = match crate::filter::from_query(q.get("filter"), &crate::filter::schema::MEMBER) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let wan = q.has("wan") && q.get("wan") != Some("false") && q.get("wan") != Some("0");
    let params = match ReadParams::parse(&q, ctx.config.default_query_time, ctx.config.max_query_time) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let changes = if wan {
        ctx.cluster.wan().map(|pool| pool.gossip().member_changes())
    } else {
        Some(ctx.cluster.gossip().member_changes())
    };
    // The blocking form (a consul-rs extension that Consul's clients, which send no `index`,
    // never see): the index is this agent's count of gossip membership changes (joins, leaves,
    // failures, updates) plus one; the count restarts with the agent.
    let index = match changes {
        Some(rx) => blocking::on_watch(&ctx, rx, &params, |n| n.saturating_add(1)).await.saturating_add(1),
        // A client agent has no WAN pool, so nothing ever changes.
        None => 1,
    };
    // No network segments exist here: only the default ("") and `_all` name the LAN pool.
    let segment_ok = matches!(q.get("segment"), None | Some("") | Some("_all"));
    let mut members: Vec<Value> = if wan {
        // The WAN pool's members (`node.dc`); a client agent has none, as in Consul.
        match ctx.cluster.wan() {
            Some(pool) => pool
                .members()
                .iter()
                .filter(|m| {
                    // ACL rules name the node, not its `node.dc` WAN name.
                    let node = m.info.name.strip_suffix(&format!(".{}", m.info.datacenter));
                    acl.visible(Resource::Node, node.unwrap_or(&m.info.name))
                })
                .map(|m| member_json(&m.info, m.status))
                .collect(),
            None => Vec::new(),
        }
    } else if segment_ok {
        ctx.cluster
            .members()
            .iter()
            .filter(|m| acl.visible(Resource::Node, &m.info.name))
            .map(|m| member_json(&m.info, m.status))
            .collect()
    } else {
        Vec::new()
    };
    if let Some(f) = &filter {
        members.retain(|m| f.matches(m));
    }
    let mut resp = json(StatusCode::OK, &members, q.pretty());
    if let Ok(v) = axum::http::HeaderValue::from_str(&index.to_string()) {
        resp.headers_mut().insert("X-Consul-Index", v);
    }
    resp
}

/// `PUT /v1/agent/join/:address` (`?wan`).
pub(super) async fn agent_join(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(address): Path<String>,
    uri: Uri,
) -> Response {
    let q = QueryParams::from_uri(&uri);
    if let Err(e) = acl.require(Resource::Agent, &ctx.config.node_name, Need::Write) {
        return e.into_response();
    }
    let wan = q.has("wan") && q.get("wan") != Some("false") && q.get("wan") != Some("0");
    if address.is_empty() {
        return Error::BadRequest("missing address to join".into()).into_response();
    }
    let joined = if wan {
        let Some(pool) = ctx.cluster.wan() else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "Must be a server to join WAN cluster\n").into_response();
        };
        pool.join(std::slice::from_ref(&address)).await
    } else {
        ctx.cluster.join(std::slice::from_ref(&address)).await
    };
    match joined {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => Error::Rpc(e.to_string()).into_response(),
    }
}

/// `PUT /v1/agent/leave`: leave the pool gracefully; the agent then shuts down.
pub(super) async fn agent_leave(State(ctx): State<Ctx>, Extension(acl): Extension<Arc<RequestAcl>>) -> Response {
    if let Err(e) = acl.require(Resource::Agent, &ctx.config.node_name, Need::Write) {
        return e.into_response();
    }
    ctx.cluster.leave().await;
    ctx.left.cancel();
    StatusCode::OK.into_response()
}

/// `PUT /v1/agent/force-leave/:node` (`?prune`, `?wan`): mark a failed member as left.
pub(super) async fn agent_force_leave(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(node): Path<String>,
    uri: Uri,
) -> Response {
    let q = QueryParams::from_uri(&uri);
    if let Err(e) = acl.require_scalar(Scalar::Operator, Need::Write) {
        return e.into_response();
    }
    let prune = q.has("prune") && q.get("prune") != Some("false") && q.get("prune") != Some("0");
    let gossip = if q.has("wan") && q.get("wan") != Some("false") && q.get("wan") != Some("0") {
        match ctx.cluster.wan() {
            Some(pool) => pool.gossip(),
            None => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Must be a server to force-leave a node from the WAN cluster\n",
                )
                    .into_response()
            }
        }
    } else {
        ctx.cluster.gossip()
    };
    match gossip.force_leave(&node, prune) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e @ EngineError::UnknownMember(_)) => {
            (StatusCode::NOT_FOUND, format!("agent: No node found with name '{node}' ({e})\n")).into_response()
        }
        Err(e) => Error::Rpc(e.to_string()).into_response(),
    }
}

/// `GET /v1/agent/version`.
pub(super) async fn agent_version(State(ctx): State<Ctx>, uri: Uri) -> Response {
    let q = QueryParams::from_uri(&uri);
    let body = json_value!({
        "SHA": "", "BuildDate": "", "HumanVersion": crate::VERSION, "FIPS": "",
        "Datacenter": ctx.config.datacenter,
    });
    json(StatusCode::OK, &body, q.pretty())
}

/// `PUT /v1/agent/token/:kind` with `{"Token": "…"}`: replaces one of the agent's ACL tokens
/// (`default`, `agent`, `agent_recovery`, `replication`, `config_file_service_registration`, `dns`
/// and the legacy names). Needs `agent:write` on this node, as Consul's handler checks (so the
/// agent recovery token can set them); kept in `<data_dir>/acl-tokens.json` when
/// `acl.enable_token_persistence` is set.
pub(super) async fn agent_token(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(kind): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Response, Error> {
    if !ctx.acl.enabled() {
        return Err(Error::AclDisabled);
    }
    acl.require(Resource::Agent, &ctx.local.node.name, Need::Write)?;
    let bytes = super::read_body(body, &headers, 64 * 1024, "the agent token request limit").await?;
    let token = parse_agent_token(&bytes)?;
    ctx.acl.set_agent_token(&kind, Some(token))?;
    if ctx.acl.settings().enable_token_persistence {
        if let Some(dir) = &ctx.config.data_dir {
            ctx.acl.persist_agent_tokens(dir)?;
        }
    }
    Ok(StatusCode::OK.into_response())
}

/// The `{"Token": "<secret>"}` body of `PUT /v1/agent/token/:kind` (absent or null: clear it).
pub(super) fn parse_agent_token(bytes: &[u8]) -> Result<String, Error> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| Error::BadRequest(format!("Request decode failed: {e}")))?;
    match v.get("Token") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(Error::BadRequest(format!("Request decode failed: Token must be a string, got {other}"))),
    }
}
