//! The SDK's tokio runtime for callers that have none (Python, C, synchronous Rust).
//!
//! One small multi-threaded runtime per process, made on first use. After `fork()` the child
//! cannot use the parent's runtime threads (they do not exist in the child), so the runtime is
//! keyed by process id: a child gets a fresh one and the parent's is leaked, never dropped
//! there (dropping it would try to join threads that are gone). Blocking entry points refuse to
//! run inside another tokio runtime, where they would deadlock it.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

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

/// Stops this process's SDK runtime, waiting up to `timeout` for its tasks to finish (watches,
/// discoveries and keep-alives still running are cancelled). A later SDK call makes a new
/// runtime. For hosts that want every thread and allocation gone before exit (the C library's
/// `consul_rs_shutdown`, leak checkers); never needed otherwise.
///
/// The runtime is shut down on a plain thread, so this is safe to call from anywhere; if another
/// thread is still inside a blocking SDK call, that thread drops the runtime when it returns.
pub fn shutdown(timeout: Duration) {
    let Some(cell) = RUNTIME.get() else { return };
    let taken = match cell.lock() {
        Ok(mut guard) => match guard.as_ref() {
            Some((owner, _)) if *owner == std::process::id() => guard.take(),
            // A forked child never touches the parent's runtime.
            _ => None,
        },
        Err(_) => None,
    };
    let Some((_, rt)) = taken else { return };
    if let Ok(rt) = Arc::try_unwrap(rt) {
        let stop = move || rt.shutdown_timeout(timeout);
        if tokio::runtime::Handle::try_current().is_ok() {
            // Inside some runtime: shutting down blocks, which is only allowed on a plain thread.
            if let Ok(h) = std::thread::Builder::new().name("consul-sdk-stop".into()).spawn(stop) {
                let _ = h.join();
            }
        } else {
            stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_then_a_new_runtime() {
        assert_eq!(block_on(async { 1 + 1 }).expect("first runtime"), 2);
        shutdown(Duration::from_secs(1));
        shutdown(Duration::from_secs(1)); // idempotent
        assert_eq!(block_on(async { 2 + 2 }).expect("a fresh runtime"), 4);
    }
}
