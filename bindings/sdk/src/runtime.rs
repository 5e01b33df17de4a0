//! The SDK's tokio runtime for callers that have none (Python, C, synchronous Rust).
//!
//! One small multi-threaded runtime per process, made on first use. After `fork()` the child
//! cannot use the parent's runtime threads (they do not exist in the child), so the runtime is
//! keyed by process id: a child gets a fresh one and the parent's is leaked, never dropped
//! there (dropping it would try to join threads that are gone). Blocking entry points refuse to
//! run inside another tokio runtime, where they would deadlock it.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, ErrorCode, Result};

/// The runtime and the process id it belongs to.
type Owned = Option<(u32, Arc<tokio::runtime::Runtime>)>;

static RUNTIME: OnceLock<Mutex<Owned>> = OnceLock::new();

/// The runtime for this process, made on first use.
pub fn runtime() -> Result<Arc<tokio::runtime::Runtime>> {
    let cell = RUNTIME.get_or_init(|| Mutex::new(None));
    let mut guard = cell.lock().map_err(|_| Error::new(ErrorCode::Internal, "SDK runtime lock poisoned"))?;
    let pid = std::process::id();
    if let Some((owner, rt)) = guard.as_ref() {
        if *owner == pid {
            return Ok(rt.clone());
        }
        // Forked child: keep the parent's runtime alive forever rather than dropping it here.
        if let Some((_, old)) = guard.take() {
            std::mem::forget(old);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("consul-sdk")
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorCode::Internal, format!("cannot start the SDK runtime: {e}")))?;
    let rt = Arc::new(rt);
    *guard = Some((pid, rt.clone()));
    Ok(rt)
}

/// Runs `f` to completion on the SDK runtime from synchronous code.
pub fn block_on<F>(f: F) -> Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::new(
            ErrorCode::WouldDeadlock,
            "a blocking SDK call was made inside an async runtime; use the async API there",
        ));
    }
    let rt = runtime()?;
    rt.block_on(async move { tokio::spawn(f).await })
        .map_err(|e| Error::new(ErrorCode::Internal, format!("SDK task failed: {e}")))
}
