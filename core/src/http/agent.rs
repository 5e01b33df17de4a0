//! `/v1/agent/self`, `/v1/agent/members`, `/v1/agent/version` (`agent/agent_endpoint.go`).
//! The agent's services and checks are in `agent_local.rs`.

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::{json as json_value, Value};

use super::query::QueryParams;
use super::{json, Ctx};
use crate::local::CheckKind;
use crate::raft::ServerState;
use crate::rpc::messages::MemberInfo;

/// Consul's `AgentMember` shape for one member.
fn member_json(m: &MemberInfo, expect: u32) -> Value {
    json_value!({
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
        "Status": 1,
        "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
        "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
    })
}

/// `GET /v1/agent/self`.
pub(super) async fn agent_self(State(ctx): State<Ctx>, uri: Uri) -> Response {
    let q = QueryParams::from_uri(&uri);
    let me = ctx.cluster.me();
    let metrics = ctx.consensus.metrics();
    let leader_addr = ctx.consensus.leader().map(|(_, n)| n.rpc_addr).unwrap_or_default();
    let state = match metrics.state {
        ServerState::Leader => "Leader",
        ServerState::Follower => "Follower",
        ServerState::Candidate => "Candidate",
        ServerState::Learner => "Learner",
        ServerState::Shutdown => "Shutdown",
    };
    let local = ctx.local.state.snapshot();
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
            "ClientAddrs": [ctx.config.client_addr.to_string()],
            "HTTPAddrs": [format!("tcp://{}", ctx.http_addr)],
            "RPCBindAddr": format!("tcp://{}", me.rpc_addr),
            "SerfBindAddrLAN": format!("tcp://{}", me.serf_addr),
            "DataDir": ctx.config.data_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default(),
            "RetryJoinLAN": ctx.config.retry_join,
        },
        "Coord": ctx.coordinates.as_ref().map(|c| c.get()),
        "Member": member_json(&me, ctx.config.bootstrap_expect),
        "Stats": {
            "agent": {
                "check_monitors": local.checks.values().filter(|c| matches!(c.def.kind, CheckKind::Script { .. })).count().to_string(),
                "check_ttls": local.checks.values().filter(|c| matches!(c.def.kind, CheckKind::Ttl { .. })).count().to_string(),
                "checks": local.checks.len().to_string(),
                "services": local.services.len().to_string(),
            },
            "consul": {
                "bootstrap": ctx.config.bootstrap.to_string(),
                "known_datacenters": "1",
                "leader": (metrics.state == ServerState::Leader).to_string(),
                "leader_addr": leader_addr,
                "server": me.server.to_string(),
            },
            "raft": {
                "state": state,
                "term": metrics.current_term.to_string(),
                "last_log_index": metrics.last_log_index.unwrap_or(0).to_string(),
                "applied_index": metrics.last_applied.map(|l| l.index).unwrap_or(0).to_string(),
                "commit_index": metrics.last_applied.map(|l| l.index).unwrap_or(0).to_string(),
                "last_snapshot_index": metrics.snapshot.map(|l| l.index).unwrap_or(0).to_string(),
                "num_peers": crate::raft::configuration(&metrics).servers.len().saturating_sub(1).to_string(),
                "protocol_version": "3",
            },
            "build": { "version": crate::VERSION, "revision": "consul-rs", "prerelease": "" },
        },
        "Meta": {},
    });
    json(StatusCode::OK, &body, q.pretty())
}

/// `GET /v1/agent/members`: the members this agent knows of.
pub(super) async fn agent_members(State(ctx): State<Ctx>, uri: Uri) -> Response {
    let q = QueryParams::from_uri(&uri);
    let members: Vec<Value> = ctx.cluster.members().iter().map(|m| member_json(m, m.bootstrap_expect)).collect();
    json(StatusCode::OK, &members, q.pretty())
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
