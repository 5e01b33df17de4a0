//! `/debug/pprof/*`: the process's profiles ([`crate::debug`]) at Go's `net/http/pprof` paths,
//! which `consul debug`, `go tool pprof http://…/debug/pprof/profile` and the Go client's
//! `Debug()` calls read. As in Consul: with neither `enable_debug` nor ACLs they answer 404;
//! with ACLs on they need `operator:read`, whatever `enable_debug` says.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::query::QueryParams;
use super::Ctx;
use crate::acl::rules::{Need, Scalar};
use crate::api::authz::RequestAcl;
use crate::debug::{cpu, threads, trace};
use crate::Error;

/// Go's default CPU profile length.
const DEFAULT_PROFILE_SECONDS: u64 = 30;
/// Go's default trace length.
const DEFAULT_TRACE_SECONDS: f64 = 1.0;
/// The longest profile or trace one request may ask for: a forgotten `seconds=86400` should
/// not hold the process's only CPU profiler for a day.
const MAX_SECONDS: f64 = 3600.0;

/// Go's Content-Type for pprof downloads.
const PPROF: &str = "application/octet-stream";

/// The profiles served, for the index page: name and what it holds.
const PROFILES: &[(&str, &str)] = &[
    ("profile", "CPU profile of the process; ?seconds=N (default 30)"),
    ("heap", "sampled live heap allocations (jemalloc), when the host program provides them"),
    ("goroutine", "the process's threads and where each waits (Rust has no goroutines); ?debug=1 for text"),
    ("trace", "the agent's TRACE-level events as a Chrome trace; ?seconds=N (default 1)"),
    ("cmdline", "the process's command line, NUL-separated"),
];

/// Whether this request may see profiles (Consul's `handlePProf` wrapper).
fn allowed(ctx: &Ctx, acl: &RequestAcl) -> Result<(), Error> {
    if !acl.enabled() {
        if ctx.config.enable_debug {
            return Ok(());
        }
        return Err(Error::NotFound("debug endpoints are disabled (enable_debug = false)".into()));
    }
    acl.require_scalar(Scalar::Operator, Need::Read)
}

/// `GET /debug/pprof/`: the list of profiles.
pub(super) async fn index(State(ctx): State<Ctx>, Extension(acl): Extension<Arc<RequestAcl>>) -> Response {
    if let Err(e) = allowed(&ctx, &acl) {
        return e.into_response();
    }
    let mut html = String::from("<html><head><title>/debug/pprof/</title></head><body>\n<p>Profiles:</p><ul>\n");
    for (name, what) in PROFILES {
        html.push_str(&format!("<li><a href=\"{name}\">{name}</a>: {what}</li>\n"));
    }
    html.push_str("</ul></body></html>\n");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// `GET /debug/pprof/:name`.
pub(super) async fn profile(
    State(ctx): State<Ctx>,
    Extension(acl): Extension<Arc<RequestAcl>>,
    Path(name): Path<String>,
    uri: Uri,
) -> Response {
    if let Err(e) = allowed(&ctx, &acl) {
        return e.into_response();
    }
    let q = QueryParams::from_uri(&uri);
    let result = match name.as_str() {
        "profile" => cpu_profile(&ctx, &q).await,
        "heap" | "allocs" => heap(&ctx).await,
        "goroutine" => goroutines(&q).await,
        "trace" => agent_trace(&ctx, &q).await,
        "cmdline" => Ok(cmdline()),
        _ => Err(Error::NotFound(format!("Unknown profile: {name}"))),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `seconds` as Go's handlers read it: missing, unparsable or not positive means the default.
fn seconds(q: &QueryParams, default: f64) -> Result<Duration, Error> {
    let s = q.get("seconds").and_then(|s| s.parse::<f64>().ok()).filter(|s| *s > 0.0 && s.is_finite());
    let s = s.unwrap_or(default);
    if s > MAX_SECONDS {
        return Err(Error::BadRequest(format!("seconds: {s} is longer than the {MAX_SECONDS} allowed")));
    }
    Ok(Duration::from_secs_f64(s))
}

/// A profile download, named as Go's handlers name it.
fn attachment(name: &str, content_type: &'static str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        body,
    )
        .into_response()
}

async fn cpu_profile(ctx: &Ctx, q: &QueryParams) -> Result<Response, Error> {
    // Go's handler reads whole seconds.
    let secs = seconds(q, DEFAULT_PROFILE_SECONDS as f64)?.as_secs().max(1);
    let stop = ctx.shutdown.clone();
    let taken = tokio::task::spawn_blocking(move || cpu::profile(Duration::from_secs(secs), &|| stop.is_cancelled()))
        .await
        .map_err(|e| Error::Upstream(format!("CPU profile: {e}")))?;
    Ok(attachment("profile", PPROF, taken.map_err(Error::Busy)?))
}

async fn heap(ctx: &Ctx) -> Result<Response, Error> {
    let Some(profiler) = ctx.heap_profiler.clone() else {
        return Err(Error::NotFound(
            "heap profiles need an allocator that samples allocations; the consul-rs binary has one, this \
             program embedding the agent does not"
                .into(),
        ));
    };
    let taken = tokio::task::spawn_blocking(move || profiler.take())
        .await
        .map_err(|e| Error::Upstream(format!("heap profile: {e}")))?;
    Ok(attachment("heap", PPROF, taken.map_err(Error::Upstream)?))
}

async fn goroutines(q: &QueryParams) -> Result<Response, Error> {
    let tasks = tokio::runtime::Handle::try_current().ok().map(|h| h.metrics().num_alive_tasks());
    // /proc reads are small but blocking file I/O.
    let list = tokio::task::spawn_blocking(threads::threads).await.unwrap_or_default();
    match q.get("debug").unwrap_or("0") {
        "0" | "" => Ok(attachment("goroutine", PPROF, threads::profile(&list, tasks))),
        "1" | "2" => {
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], threads::text(&list, tasks)).into_response())
        }
        other => Err(Error::BadRequest(format!("debug: {other:?} is not 0, 1 or 2"))),
    }
}

async fn agent_trace(ctx: &Ctx, q: &QueryParams) -> Result<Response, Error> {
    let duration = seconds(q, DEFAULT_TRACE_SECONDS)?;
    let doc = trace::record(&ctx.logs, duration, &ctx.config.node_name, ctx.shutdown.clone()).await;
    let body = serde_json::to_vec(&doc).map_err(|e| Error::Upstream(format!("trace: {e}")))?;
    Ok(attachment("trace", "application/json", body))
}

fn cmdline() -> Response {
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], args.join("\0")).into_response()
}
