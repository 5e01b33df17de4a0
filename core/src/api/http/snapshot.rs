//! `/v1/snapshot` (`agent/snapshot_endpoint.go`): GET streams a consistent point-in-time
//! archive of the whole state; PUT restores one into the running cluster through Raft.

use std::sync::Arc;

use axum::Extension;

use crate::api::authz::RequestAcl;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::query::QueryParams;
use super::{read_body, set_read_meta, Ctx};
use crate::state::archive::{read_archive, write_archive, ArchiveMeta, ARCHIVE_VERSION, MAX_ARCHIVE_BYTES};
use crate::state::command::Command;
use crate::Error;

/// `GET /v1/snapshot`.
pub(super) async fn snapshot_save(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
) -> Response {
    let q = QueryParams::from_uri(&uri);
    let result = async {
        q.check_dc(&ctx.config.datacenter)?;
        // A snapshot holds every secret (ACL tokens included): management only, as in Consul.
        acl.authz().require_management()?;
        let meta = ctx.consensus()?.read_barrier(q.consistency()?).await?;
        // One read lock: the index and the bytes describe the same instant.
        let (index, state_bin) = ctx.consensus()?.state().read(|d| (d.last_index, postcard::to_allocvec(d)));
        let state_bin = state_bin.map_err(|e| Error::Storage(format!("serialising state: {e}")))?;
        let term = ctx.consensus()?.metrics().current_term;
        let archive_meta = ArchiveMeta {
            id: format!(
                "{term}-{index}-{}",
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
            ),
            index,
            term,
            version: ARCHIVE_VERSION,
            size: state_bin.len() as u64,
        };
        let archive = write_archive(&archive_meta, &state_bin)?;
        let mut resp = (StatusCode::OK, Body::from(archive)).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-gzip"));
        set_read_meta(resp.headers_mut(), index, &meta);
        Ok::<_, Error>(resp)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `PUT /v1/snapshot`.
pub(super) async fn snapshot_restore(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let q = QueryParams::from_uri(&uri);
    let result = async {
        q.check_dc(&ctx.config.datacenter)?;
        acl.authz().require_management()?;
        let bytes = read_body(body, &headers, MAX_ARCHIVE_BYTES as usize, "the snapshot size limit").await?;
        let (meta, state) = read_archive(&bytes)?;
        tracing::warn!(snapshot = %meta.id, index = meta.index, "restoring snapshot into the running cluster");
        let (index, _) = ctx.consensus()?.write(Command::Restore(Box::new(state))).await?;
        let mut resp = StatusCode::OK.into_response();
        resp.headers_mut().insert("X-Consul-Index", index.max(1).into());
        Ok::<_, Error>(resp)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
