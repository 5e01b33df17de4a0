//! `/v1/snapshot` (`agent/snapshot_endpoint.go`): GET streams a consistent point-in-time
//! archive of the whole state; PUT restores one into the running cluster through Raft.
//!
//! A restore trusts nothing it is sent: the body is streamed to an unnamed temporary file (never
//! held in memory), refused at once when it does not start like gzip, and read back through
//! [`read_archive_from`], which checks every size before inflating and every checksum before
//! decoding. One restore runs at a time per agent; another gets 429.

use std::sync::Arc;

use axum::Extension;

use crate::api::authz::RequestAcl;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::query::QueryParams;
use super::{drain, set_read_meta, Ctx};
use crate::state::archive::{read_archive_from, write_archive, ArchiveMeta, ARCHIVE_VERSION};
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

/// The gzip magic: the first two bytes of every archive.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Admits one snapshot restore at a time on an agent (a restore holds a whole decoded state in
/// memory; two at once would double that, and they would overwrite each other anyway).
#[derive(Debug)]
pub struct RestoreGate(tokio::sync::Semaphore);

impl Default for RestoreGate {
    fn default() -> Self {
        RestoreGate(tokio::sync::Semaphore::new(1))
    }
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
        let consensus = ctx.consensus()?.clone();
        let Ok(_permit) = ctx.restores.0.try_acquire() else {
            drain(body).await;
            return Err(Error::Busy(
                "a snapshot restore is already in progress on this agent; retry when it ends".into(),
            ));
        };
        let limits = ctx.config.limits.snapshot_restore();
        // The upload may be as large as the state it inflates to (an incompressible archive).
        let max_upload = limits.max_state_bytes.saturating_add(1024 * 1024);
        let (file, len) = spool_body(body, &headers, max_upload, ctx.config.data_dir.as_deref()).await?;
        let (meta, state) = tokio::task::spawn_blocking(move || {
            let reader = std::io::BufReader::new(file);
            read_archive_from(reader, len, &limits)
        })
        .await
        .map_err(|e| Error::Storage(format!("snapshot restore task failed: {e}")))??;
        tracing::warn!(snapshot = %meta.id, index = meta.index, "restoring snapshot into the running cluster");
        let (index, _) = consensus.write(Command::Restore(Box::new(state))).await?;
        let mut resp = StatusCode::OK.into_response();
        resp.headers_mut().insert("X-Consul-Index", index.max(1).into());
        Ok::<_, Error>(resp)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Streams a request body of at most `max` bytes into an unnamed temporary file (under
/// `data_dir` when there is one, so a large upload lands on the agent's own disk rather than a
/// small tmpfs), rewound for reading, with its length. A body that does not start with the gzip
/// magic is refused after its first bytes; a larger one is a 413 naming the limit.
async fn spool_body(
    body: Body,
    headers: &HeaderMap,
    max: u64,
    dir: Option<&std::path::Path>,
) -> Result<(std::fs::File, u64), Error> {
    use http_body_util::BodyExt;
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};
    let too_large = |n: String| {
        Error::TooLarge(format!(
            "snapshot archive ({n} bytes) too large, max size: {max} bytes (limits.snapshot_max_size)"
        ))
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|len| *len > max) {
        drain(body).await;
        return Err(too_large(len.to_string()));
    }
    let file = match dir {
        Some(d) if d.is_dir() => tempfile::tempfile_in(d),
        _ => tempfile::tempfile(),
    }
    .map_err(|e| Error::Storage(format!("creating a temporary file for the snapshot: {e}")))?;
    // tokio's file runs its writes on the blocking pool, off the request's runtime thread.
    let spool_err = |e: std::io::Error| Error::Storage(format!("spooling the snapshot: {e}"));
    let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, tokio::fs::File::from_std(file));
    let mut body = body;
    let mut len: u64 = 0;
    let mut head: Vec<u8> = Vec::with_capacity(2);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::BadRequest(format!("failed to read request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        if head.len() < 2 {
            let missing = 2 - head.len();
            head.extend(data.iter().take(missing));
            if head.len() == 2 && head != GZIP_MAGIC {
                drain(body).await;
                return Err(Error::BadRequest("invalid snapshot archive: not a gzip stream".into()));
            }
        }
        len += data.len() as u64;
        if len > max {
            drain(body).await;
            return Err(too_large(format!("more than {max}")));
        }
        out.write_all(&data).await.map_err(spool_err)?;
    }
    if len < 2 {
        return Err(Error::BadRequest("invalid snapshot archive: empty or truncated body".into()));
    }
    out.flush().await.map_err(spool_err)?;
    let mut file = out.into_inner();
    file.rewind().await.map_err(spool_err)?;
    let file = file.into_std().await;
    Ok((file, len))
}
