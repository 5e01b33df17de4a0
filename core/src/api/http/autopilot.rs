//! `/v1/operator/autopilot/*`, `/v1/operator/raft/transfer-leader` and `/v1/operator/usage`
//! (`agent/operator_endpoint.go`), in Consul's JSON shapes (`api/operator_autopilot.go`,
//! `api/operator_raft.go`, `api/operator_usage.go`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::Extension;
use serde_json::{json as json_value, Map, Value};

use super::query::QueryParams;
use super::{json, read_body, set_read_meta, Ctx};
use crate::acl::rules::{Need, Scalar};
use crate::api::authz::RequestAcl;
use crate::duration::{format_go_duration, parse_go_duration};
use crate::replication::autopilot::{ClusterHealth, ServerHealth};
use crate::state::autopilot::{AutopilotConfig, AutopilotOp};
use crate::state::command::{Command, CommandResponse};
use crate::Error;

/// The JSON of a stored configuration (`api.AutopilotConfiguration`).
fn config_json(c: &AutopilotConfig) -> Value {
    json_value!({
        "CleanupDeadServers": c.cleanup_dead_servers,
        "LastContactThreshold": format_go_duration(Duration::from_millis(c.last_contact_threshold_ms)),
        "MaxTrailingLogs": c.max_trailing_logs,
        "MinQuorum": c.min_quorum,
        "ServerStabilizationTime": format_go_duration(Duration::from_millis(c.server_stabilization_time_ms)),
        "RedundancyZoneTag": c.redundancy_zone_tag,
        "DisableUpgradeMigration": c.disable_upgrade_migration,
        "UpgradeVersionTag": c.upgrade_version_tag,
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    })
}

/// A `ReadableDuration`: a Go duration string, or a number of nanoseconds.
fn duration_field(m: &Map<String, Value>, key: &str) -> Result<u64, Error> {
    let bad = |why: String| Error::BadRequest(format!("Error parsing autopilot config: {key}: {why}"));
    let d = match m.get(key) {
        None | Some(Value::Null) => Duration::ZERO,
        Some(Value::String(s)) => parse_go_duration(s).map_err(bad)?,
        Some(Value::Number(n)) => {
            let ns = n.as_f64().filter(|f| *f >= 0.0).ok_or_else(|| bad(format!("{n} is not a duration")))?;
            Duration::from_nanos(ns as u64)
        }
        Some(other) => return Err(bad(format!("{other} is not a duration"))),
    };
    Ok(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn uint_field(m: &Map<String, Value>, key: &str) -> Result<u64, Error> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v.as_u64().ok_or_else(|| {
            Error::BadRequest(format!("Error parsing autopilot config: {key}: {v} is not a non-negative integer"))
        }),
    }
}

fn bool_field(m: &Map<String, Value>, key: &str) -> Result<bool, Error> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(Error::BadRequest(format!("Error parsing autopilot config: {key}: {v} is not a boolean"))),
    }
}

fn string_field(m: &Map<String, Value>, key: &str) -> Result<String, Error> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(Error::BadRequest(format!("Error parsing autopilot config: {key}: {v} is not a string"))),
    }
}

/// Decodes a PUT body as Consul does: absent fields are zero values, not defaults.
pub(super) fn parse_config(body: &[u8]) -> Result<AutopilotConfig, Error> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("Error parsing autopilot config: {e}")))?;
    let Value::Object(m) = v else {
        return Err(Error::BadRequest("Error parsing autopilot config: the body must be a JSON object".into()));
    };
    Ok(AutopilotConfig {
        cleanup_dead_servers: bool_field(&m, "CleanupDeadServers")?,
        last_contact_threshold_ms: duration_field(&m, "LastContactThreshold")?,
        max_trailing_logs: uint_field(&m, "MaxTrailingLogs")?,
        min_quorum: uint_field(&m, "MinQuorum")?,
        server_stabilization_time_ms: duration_field(&m, "ServerStabilizationTime")?,
        redundancy_zone_tag: string_field(&m, "RedundancyZoneTag")?,
        disable_upgrade_migration: bool_field(&m, "DisableUpgradeMigration")?,
        upgrade_version_tag: string_field(&m, "UpgradeVersionTag")?,
        create_index: 0,
        modify_index: 0,
    })
}

/// `GET /v1/operator/autopilot/configuration`.
pub(super) async fn config_get(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    q.check_dc(&ctx.config.datacenter)?;
    acl.require_scalar(Scalar::Operator, Need::Read)?;
    let consensus = ctx.consensus()?;
    let meta = consensus.read_barrier(q.consistency()?).await?;
    let config = consensus
        .state()
        .read(|d| d.autopilot.clone())
        .ok_or_else(|| Error::Rpc("autopilot config not initialized yet".into()))?;
    let mut resp = json(StatusCode::OK, &config_json(&config), q.pretty());
    set_read_meta(resp.headers_mut(), config.modify_index, &meta);
    Ok(resp)
}

/// `PUT /v1/operator/autopilot/configuration[?cas=]`: `true`, or `false` when the CAS failed.
pub(super) async fn config_set(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    q.check_dc(&ctx.config.datacenter)?;
    acl.require_scalar(Scalar::Operator, Need::Write)?;
    let cas = match q.get("cas") {
        None => None,
        Some(s) => Some(s.parse::<u64>().map_err(|e| Error::BadRequest(format!("Error parsing cas value: {e}")))?),
    };
    let body = read_body(body, &headers, 64 * 1024, "the autopilot configuration limit").await?;
    let config = parse_config(&body)?;
    let (_, resp) = ctx.consensus()?.write(Command::Autopilot(AutopilotOp::Set { config, cas })).await?;
    // Without `?cas` Consul answers `true` whatever the store said.
    let stored = cas.is_none() || matches!(resp, CommandResponse::Bool(true));
    Ok(json(StatusCode::OK, &stored, q.pretty()))
}

fn stable_since(ms: u64) -> String {
    crate::wire::timestamp::format_ms(ms)
}

/// Time since the server last answered the leader; "0s" for the leader itself and for a
/// server that never answered this leader (its `Healthy` is false then).
fn last_contact(s: &ServerHealth) -> String {
    format_go_duration(s.facts.last_contact.unwrap_or(Duration::ZERO))
}

/// `ServerHealth` (`/health`).
fn server_health_json(s: &ServerHealth) -> Value {
    json_value!({
        "ID": s.facts.node_id,
        "Name": s.facts.name,
        "Address": s.facts.address,
        "SerfStatus": s.facts.serf.as_str(),
        "Version": crate::VERSION,
        "Leader": s.facts.leader,
        "LastContact": last_contact(s),
        "LastTerm": s.facts.last_term,
        "LastIndex": s.facts.last_index,
        "Healthy": s.healthy,
        "Voter": s.facts.voter,
        "StableSince": stable_since(s.stable_since_ms),
    })
}

/// `OperatorHealthReply`.
pub(super) fn health_json(h: &ClusterHealth) -> Value {
    json_value!({
        "Healthy": h.healthy,
        "FailureTolerance": h.failure_tolerance,
        "Servers": h.servers.iter().map(server_health_json).collect::<Vec<_>>(),
    })
}

/// `AutopilotState` (Consul 1.10+).
pub(super) fn state_json(h: &ClusterHealth) -> Value {
    let id_of = |raft_id: u64| {
        h.servers.iter().find(|s| s.facts.id == raft_id).map(|s| s.facts.node_id.clone()).unwrap_or_default()
    };
    let servers: Map<String, Value> = h
        .servers
        .iter()
        .map(|s| {
            let status = match (s.facts.leader, s.facts.voter) {
                (true, _) => "leader",
                (false, true) => "voter",
                (false, false) => "non-voter",
            };
            let v = json_value!({
                "ID": s.facts.node_id,
                "Name": s.facts.name,
                "Address": s.facts.address,
                "NodeStatus": s.facts.serf.as_str(),
                "Version": crate::VERSION,
                "LastContact": last_contact(s),
                "LastTerm": s.facts.last_term,
                "LastIndex": s.facts.last_index,
                "Healthy": s.healthy,
                "StableSince": stable_since(s.stable_since_ms),
                "ReadReplica": false,
                "Status": status,
                "Meta": s.facts.meta,
                "NodeType": "voter",
            });
            (s.facts.node_id.clone(), v)
        })
        .collect();
    json_value!({
        "Healthy": h.healthy,
        "FailureTolerance": h.failure_tolerance,
        "OptimisticFailureTolerance": h.optimistic_failure_tolerance,
        "Servers": servers,
        "Leader": id_of(h.leader),
        "Voters": h.voters().into_iter().map(id_of).collect::<Vec<_>>(),
    })
}

/// `GET /v1/operator/autopilot/health`: HTTP 429 when any server is unhealthy.
pub(super) async fn health(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    q.check_dc(&ctx.config.datacenter)?;
    acl.require_scalar(Scalar::Operator, Need::Read)?;
    let h = ctx.consensus()?.autopilot_health().await?;
    let status = if h.healthy { StatusCode::OK } else { StatusCode::TOO_MANY_REQUESTS };
    Ok(json(status, &health_json(&h), q.pretty()))
}

/// `GET /v1/operator/autopilot/state`.
pub(super) async fn state(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    q.check_dc(&ctx.config.datacenter)?;
    acl.require_scalar(Scalar::Operator, Need::Read)?;
    let h = ctx.consensus()?.autopilot_health().await?;
    Ok(json(StatusCode::OK, &state_json(&h), q.pretty()))
}

/// `POST /v1/operator/raft/transfer-leader[?id=]`: `{"Success": true}` once another server
/// leads.
pub(super) async fn transfer_leader(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    q.check_dc(&ctx.config.datacenter)?;
    acl.require_scalar(Scalar::Operator, Need::Write)?;
    let target = q.get("id").filter(|s| !s.is_empty()).map(str::to_string);
    ctx.consensus()?.transfer_leader(target).await?;
    Ok(json(StatusCode::OK, &json_value!({ "Success": true }), q.pretty()))
}

/// Service kinds counted under `ConnectServiceInstances` (Consul lists each, zero or not).
const CONNECT_KINDS: [&str; 6] =
    ["api-gateway", "connect-native", "connect-proxy", "ingress-gateway", "mesh-gateway", "terminating-gateway"];

/// The usage counts of one datacenter's catalog (`api.ServiceUsage`).
pub(super) fn usage_json(catalog: &crate::state::catalog::Catalog) -> Value {
    let mut names = std::collections::BTreeSet::new();
    let mut connect: BTreeMap<&str, u64> = CONNECT_KINDS.iter().map(|k| (*k, 0)).collect();
    let mut billable = 0u64;
    for s in catalog.services.values() {
        names.insert(s.service.as_str());
        if let Some(n) = connect.get_mut(s.kind.as_str()) {
            *n += 1;
        }
        // A typical service with `Connect.Native` counts as connect-native too.
        if s.kind.is_empty() && s.ext.connect_native() {
            *connect.entry("connect-native").or_default() += 1;
        }
        if s.kind.is_empty() && s.service != "consul" {
            billable += 1;
        }
    }
    let instances = catalog.services.len();
    json_value!({
        "Services": names.len(),
        "ServiceInstances": instances,
        "ConnectServiceInstances": connect,
        "BillableServiceInstances": billable,
    })
}

/// `GET /v1/operator/usage`.
pub(super) async fn usage(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Result<Response, Error> {
    let q = QueryParams::from_uri(&uri);
    q.check_dc(&ctx.config.datacenter)?;
    acl.require_scalar(Scalar::Operator, Need::Read)?;
    let consensus = ctx.consensus()?;
    let meta = consensus.read_barrier(q.consistency()?).await?;
    let (body, index) = consensus.state().read(|d| {
        let index = d.catalog.services_index.max(d.catalog.nodes_index);
        (json_value!({ "Usage": { ctx.config.datacenter.clone(): usage_json(&d.catalog) } }), index)
    });
    // Consul's answer embeds its QueryMeta; the partition and namespace breakdowns are
    // Enterprise-only and absent, as in Consul's community edition.
    let mut body = body;
    super::add_query_meta(&mut body, index, &meta, &acl);
    let mut resp = json(StatusCode::OK, &body, q.pretty());
    set_read_meta(resp.headers_mut(), index, &meta);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A typical service with `Connect.Native` counts under `connect-native` and stays billable;
    /// a proxy counts under its kind.
    #[test]
    fn usage_counts_connect_native_instances() {
        use crate::state::catalog::{Catalog, Node, RegisterRequest, ServiceInstance};
        use crate::state::ext_fields::ServiceExt;
        let mut catalog = Catalog::default();
        let node = Node { node: "n".into(), address: "10.0.0.1".into(), ..Node::default() };
        let native = ServiceExt { connect: Some(json_value!({"Native": true})), ..ServiceExt::default() };
        for svc in [
            ServiceInstance { id: "web1".into(), service: "web".into(), ext: native, ..Default::default() },
            ServiceInstance { id: "db1".into(), service: "db".into(), ..Default::default() },
            ServiceInstance {
                id: "p1".into(),
                service: "p".into(),
                kind: "connect-proxy".into(),
                ..Default::default()
            },
        ] {
            let req = RegisterRequest { node: node.clone(), service: Some(svc), ..RegisterRequest::default() };
            catalog.register(&req, 1).expect("register");
        }
        let u = usage_json(&catalog);
        assert_eq!(u["ConnectServiceInstances"]["connect-native"], 1);
        assert_eq!(u["ConnectServiceInstances"]["connect-proxy"], 1);
        assert_eq!(u["BillableServiceInstances"], 2);
    }

    #[test]
    fn a_put_body_reads_durations_as_strings_or_nanoseconds_and_absent_fields_as_zero() {
        let c = parse_config(
            br#"{"CleanupDeadServers": true, "LastContactThreshold": "300ms",
            "ServerStabilizationTime": 2000000000, "MaxTrailingLogs": 10, "MinQuorum": 3}"#,
        )
        .expect("valid");
        assert!(c.cleanup_dead_servers);
        assert_eq!((c.last_contact_threshold_ms, c.server_stabilization_time_ms), (300, 2000));
        assert_eq!((c.max_trailing_logs, c.min_quorum), (10, 3));
        let c = parse_config(b"{}").expect("valid");
        assert_eq!(c.last_contact_threshold_ms, 0);
        assert!(!c.cleanup_dead_servers);
        for bad in [&br#"{"MinQuorum": -1}"#[..], br#"{"LastContactThreshold": "soon"}"#, b"[1]", b"nope"] {
            assert!(matches!(parse_config(bad), Err(Error::BadRequest(_))), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_stored_configuration_reads_back_in_consuls_shape() {
        let v = config_json(&AutopilotConfig { create_index: 4, modify_index: 9, ..AutopilotConfig::default() });
        assert_eq!(v["LastContactThreshold"], "200ms");
        assert_eq!(v["ServerStabilizationTime"], "10s");
        assert_eq!((v["MaxTrailingLogs"].as_u64(), v["ModifyIndex"].as_u64()), (Some(250), Some(9)));
        assert_eq!(v["CleanupDeadServers"], true);
    }
}
