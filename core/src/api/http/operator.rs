//! `/v1/status/*` (`agent/status_endpoint.go`) and `/v1/operator/raft/*`
//! (`agent/operator_endpoint.go`).

use std::sync::Arc;

use axum::Extension;

use crate::acl::rules::{Need, Scalar};
use crate::api::authz::RequestAcl;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json as json_value;

use super::query::{QueryParams, ReadParams};
use super::{blocking, json, set_read_meta, Ctx};
use crate::replication::raft;
use crate::Error;

/// `GET /v1/status/leader`: the leader's server RPC address, `""` when there is none.
pub(super) async fn status_leader(State(ctx): State<Ctx>, uri: Uri) -> Response {
    let q = QueryParams::from_uri(&uri);
    if let Err(e) = q.check_dc(&ctx.config.datacenter) {
        return e.into_response();
    }
    let consensus = match ctx.consensus() {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let leader = consensus.leader().map(|(_, n)| n.rpc_addr).unwrap_or_default();
    json(StatusCode::OK, &leader, q.pretty())
}

/// `GET /v1/status/peers`: the voters' server RPC addresses.
pub(super) async fn status_peers(State(ctx): State<Ctx>, uri: Uri) -> Response {
    let q = QueryParams::from_uri(&uri);
    if let Err(e) = q.check_dc(&ctx.config.datacenter) {
        return e.into_response();
    }
    let consensus = match ctx.consensus() {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let config = raft::configuration(&consensus.metrics());
    let peers: Vec<String> =
        config.servers.into_iter().filter(|(_, _, voter)| *voter).map(|(_, n, _)| n.rpc_addr).collect();
    json(StatusCode::OK, &peers, q.pretty())
}

/// `GET /v1/operator/raft/configuration`.
pub(super) async fn raft_configuration(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Response {
    let q = QueryParams::from_uri(&uri);
    let result = async {
        q.check_dc(&ctx.config.datacenter)?;
        acl.require_scalar(Scalar::Operator, Need::Read)?;
        let params = ReadParams::parse(&q, ctx.config.default_query_time, ctx.config.max_query_time)?;
        let consensus = ctx.consensus()?;
        let meta = consensus.read_barrier(params.consistency).await?;
        // The blocking form (a consul-rs extension; Consul answers at once and its clients send
        // no `index`): the index is the Raft membership's log index, as `X-Consul-Index`
        // reports it (never below 1).
        let membership_index = |m: &raft::Metrics| m.membership_config.log_id().map(|l| l.index).unwrap_or(0).max(1);
        let metrics = blocking::on_watch(&ctx, consensus.raft().metrics(), &params, membership_index).await;
        let config = raft::configuration(&metrics);
        let last_index = metrics.last_log_index.unwrap_or(0);
        let self_id = consensus.self_id();
        let servers: Vec<_> = config
            .servers
            .iter()
            .map(|(id, node, voter)| {
                let matched = if *id == self_id {
                    Some(last_index)
                } else {
                    metrics.replication.as_ref().and_then(|r| r.get(id).copied().flatten()).map(|l| l.index)
                };
                json_value!({
                    "ID": node.node_id,
                    "Node": node.name,
                    "Address": node.rpc_addr,
                    "Leader": config.leader == Some(*id),
                    "Voter": voter,
                    "ProtocolVersion": "3",
                    "LastIndex": matched.unwrap_or(0),
                })
            })
            .collect();
        let mut resp = json(StatusCode::OK, &json_value!({ "Servers": servers, "Index": config.index }), q.pretty());
        set_read_meta(resp.headers_mut(), config.index, &meta);
        Ok::<_, Error>(resp)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `DELETE /v1/operator/raft/peer?id=…|address=…`.
pub(super) async fn raft_remove_peer(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Response {
    let q = QueryParams::from_uri(&uri);
    let result = async {
        q.check_dc(&ctx.config.datacenter)?;
        acl.require_scalar(Scalar::Operator, Need::Write)?;
        let id = q.get("id").filter(|s| !s.is_empty());
        let address = q.get("address").filter(|s| !s.is_empty());
        let config = raft::configuration(&ctx.consensus()?.metrics());
        let found = match (id, address) {
            (Some(_), Some(_)) => {
                return Err(Error::BadRequest("Must specify only one of ?id or ?address".into()));
            }
            (Some(id), None) => config
                .servers
                .iter()
                .find(|(_, n, _)| n.node_id == id)
                .ok_or_else(|| Error::BadRequest(format!("id {id:?} was not found in the Raft configuration"))),
            (None, Some(addr)) => {
                config.servers.iter().find(|(_, n, _)| n.rpc_addr == addr).ok_or_else(|| {
                    Error::BadRequest(format!("address {addr:?} was not found in the Raft configuration"))
                })
            }
            (None, None) => {
                return Err(Error::BadRequest(
                    "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove".into(),
                ));
            }
        }?;
        ctx.consensus()?.remove_peer(found.0).await?;
        Ok(StatusCode::OK.into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
