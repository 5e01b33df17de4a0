//! `/v1/operator/keyring` (`agent/operator_endpoint.go` `OperatorKeyringEndpoint`): list,
//! install, use and remove gossip encryption keys on every member of the pool at once.

use std::sync::Arc;

use axum::Extension;

use crate::acl::rules::{Need, Scalar};
use crate::api::authz::RequestAcl;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json as json_value, Value};

use super::query::QueryParams;
use super::{json, read_body, Ctx};
use crate::membership::gossip::driver::{KeyringOp, KeyringSummary};
use crate::membership::gossip::keyring::KeyringError;
use crate::Error;

/// Largest keyring request body (a key is 44 base64 characters).
const MAX_BODY: usize = 4096;

fn keyring_error(e: KeyringError) -> Error {
    match e {
        KeyringError::InvalidKey(_) | KeyringError::NotEnabled => Error::BadRequest(e.to_string()),
        other => Error::Rpc(other.to_string()),
    }
}

/// The `{"Key": "<base64>"}` body of an install, use or remove.
pub(super) fn parse_key_body(body: &[u8]) -> Result<String, Error> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("Request decode failed: {e}")))?;
    v.get("Key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .ok_or_else(|| Error::BadRequest("Request decode failed: missing \"Key\"".into()))
}

/// Every keyring verb.
pub(super) async fn keyring(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let q = QueryParams::from_uri(&uri);
    // A client agent asks a server, which answers for the WAN and LAN pools (Consul's
    // `KeyringOperation` RPC); only `?local-only` lists the client's own keys.
    let local_only = method == Method::GET && matches!(parse_local_only(q.get("local-only")), Ok(true));
    if matches!(ctx.backend, crate::replication::backend::Backend::Client(_)) && !local_only {
        return super::proxy::forward(State(ctx), method, uri, headers, body).await;
    }
    let result = async {
        q.check_dc(&ctx.config.datacenter)?;
        let need = if method == Method::GET { Need::Read } else { Need::Write };
        acl.require_scalar(Scalar::Keyring, need)?;
        let op = if method == Method::GET {
            KeyringOp::List
        } else {
            let body = read_body(body, &headers, MAX_BODY, "the keyring request limit").await?;
            let key = parse_key_body(&body)?;
            match method {
                Method::POST => KeyringOp::Install(key),
                Method::PUT => KeyringOp::Use(key),
                _ => KeyringOp::Remove(key),
            }
        };
        let list = op == KeyringOp::List;
        let local_only = list && parse_local_only(q.get("local-only"))?;
        // Servers answer for the WAN pool first, then the LAN pool, as Consul does.
        let mut pools = Vec::new();
        if let Some(wan) = ctx.cluster.wan() {
            pools.push((true, wan.gossip().clone()));
        }
        pools.push((false, ctx.cluster.gossip().clone()));
        let mut summaries = Vec::new();
        for (wan, gossip) in pools {
            let summary = match local_only {
                true => gossip.keyring_local().map_err(keyring_error)?,
                false => gossip.keyring_op(op.clone()).await.map_err(keyring_error)?,
            };
            summaries.push((wan, summary));
        }
        Ok::<_, Error>((list, summaries))
    }
    .await;
    match result {
        Err(e) => e.into_response(),
        Ok((true, summaries)) => {
            let body: Vec<Value> =
                summaries.iter().map(|(wan, s)| keyring_response(*wan, &ctx.config.datacenter, s)).collect();
            json(StatusCode::OK, &body, q.pretty())
        }
        Ok((false, summaries)) => match failure(&summaries) {
            None => StatusCode::OK.into_response(),
            Some(message) => Error::Rpc(message).into_response(),
        },
    }
}

/// `?local-only=<bool>` (Go's `strconv.ParseBool`; empty: off): list only this agent's keys.
pub(super) fn parse_local_only(v: Option<&str>) -> Result<bool, Error> {
    match v.unwrap_or("") {
        "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        other => Err(Error::BadRequest(format!(
            "Error parsing local-only: strconv.ParseBool: parsing {other:?}: invalid syntax"
        ))),
    }
}

/// One pool's entry of the list answer (Consul's `KeyringResponse`).
pub(super) fn keyring_response(wan: bool, datacenter: &str, s: &KeyringSummary) -> Value {
    json_value!({
        "WAN": wan,
        "Datacenter": datacenter,
        "Segment": "",
        "Keys": s.keys,
        "PrimaryKeys": s.primary_keys,
        "NumNodes": s.num_nodes,
        "Messages": s.messages,
    })
}

/// Why a change failed, over every pool's answers: `None` when every member of every pool
/// applied it.
pub(super) fn failure(summaries: &[(bool, KeyringSummary)]) -> Option<String> {
    let mut parts = Vec::new();
    for (wan, s) in summaries.iter().filter(|(_, s)| !s.messages.is_empty()) {
        let pool = if *wan { "WAN" } else { "LAN" };
        let detail: Vec<String> = s.messages.iter().map(|(n, m)| format!("{n}: {m}")).collect();
        parts.push(format!(
            "{pool}: {} of {} nodes reported failure: {}",
            s.messages.len(),
            s.num_nodes,
            detail.join("; ")
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(nodes: usize, keys: &[(&str, usize)], errors: &[(&str, &str)]) -> KeyringSummary {
        KeyringSummary {
            num_nodes: nodes,
            keys: keys.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            primary_keys: keys.iter().take(1).map(|(k, n)| (k.to_string(), *n)).collect(),
            messages: errors.iter().map(|(n, e)| (n.to_string(), e.to_string())).collect(),
        }
    }

    #[test]
    fn list_entries_carry_pool_datacenter_and_counts() {
        let wan = keyring_response(true, "dc1", &summary(2, &[("k1", 2), ("k2", 1)], &[]));
        assert_eq!(wan["WAN"], true);
        assert_eq!(wan["Datacenter"], "dc1");
        assert_eq!(wan["Segment"], "");
        assert_eq!(wan["Keys"]["k2"], 1);
        assert_eq!(wan["PrimaryKeys"]["k1"], 2);
        assert_eq!(wan["NumNodes"], 2);
        let lan = keyring_response(false, "dc1", &summary(3, &[("k1", 3)], &[]));
        assert_eq!(lan["WAN"], false);
        assert_eq!(lan["NumNodes"], 3);
    }

    #[test]
    fn local_only_parses_like_go() {
        assert!(!parse_local_only(None).expect("absent"));
        assert!(parse_local_only(Some("true")).expect("true"));
        assert!(!parse_local_only(Some("0")).expect("0"));
        assert!(parse_local_only(Some("yes")).is_err());
    }

    #[test]
    fn a_change_fails_when_any_pool_reports_a_failure() {
        let ok = [(true, summary(2, &[], &[])), (false, summary(3, &[], &[]))];
        assert_eq!(failure(&ok), None);
        let bad = [(true, summary(2, &[], &[("s2.dc2", "timeout")])), (false, summary(3, &[], &[]))];
        let m = failure(&bad).expect("a failure");
        assert!(m.contains("WAN") && m.contains("1 of 2") && m.contains("s2.dc2: timeout"), "{m}");
    }
}
