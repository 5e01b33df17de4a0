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
use crate::membership::gossip::driver::KeyringOp;
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
        let summary = ctx.cluster.gossip().keyring_op(op).await.map_err(keyring_error)?;
        Ok::<_, Error>((list, summary))
    }
    .await;
    match result {
        Err(e) => e.into_response(),
        Ok((true, s)) => {
            let body = json_value!([{
                "WAN": false,
                "Datacenter": ctx.config.datacenter,
                "Segment": "",
                "Keys": s.keys,
                "PrimaryKeys": s.primary_keys,
                "NumNodes": s.num_nodes,
                "Messages": s.messages,
            }]);
            json(StatusCode::OK, &body, q.pretty())
        }
        Ok((false, s)) if s.messages.is_empty() => StatusCode::OK.into_response(),
        Ok((false, s)) => {
            let detail: Vec<String> = s.messages.iter().map(|(n, m)| format!("{n}: {m}")).collect();
            Error::Rpc(format!("{} of {} nodes reported failure: {}", s.messages.len(), s.num_nodes, detail.join("; ")))
                .into_response()
        }
    }
}
