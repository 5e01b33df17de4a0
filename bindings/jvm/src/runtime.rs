//! Running SDK futures for uniffi's Kotlin coroutines.
//!
//! uniffi polls an exported `async fn` from the JVM and needs no executor of its own, but the
//! SDK's futures need tokio (reqwest, timers). So every call is spawned as a task on the SDK's
//! per-process runtime (`consul_sdk::runtime`, fork-aware, shared with blocking calls), and the
//! exported future only awaits its `JoinHandle`, which works from any poller. A cancelled
//! coroutine drops that future, which aborts the task (no request left running), and a panic in
//! the task comes back as `INTERNAL` instead of crossing into the JVM.
use std::future::Future;

use consul_sdk::ErrorCode;

use crate::error::{err, FfiResult};

/// Aborts the task when dropped: a cancelled Kotlin coroutine cancels the request.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `fut` on the SDK runtime and awaits its answer.
pub(crate) async fn run<T, F>(fut: F) -> FfiResult<T>
where
    T: Send + 'static,
    F: Future<Output = FfiResult<T>> + Send + 'static,
{
    let rt = consul_sdk::runtime::runtime()?;
    let handle = rt.spawn(fut);
    let _abort = AbortOnDrop(handle.abort_handle());
    match handle.await {
        Ok(r) => r,
        Err(e) if e.is_panic() => Err(err(ErrorCode::Internal, format!("SDK task panicked: {}", panic_text(e)))),
        Err(_) => Err(err(ErrorCode::Cancelled, "the request was cancelled")),
    }
}

/// Runs `f` with the SDK runtime entered, for SDK constructors that spawn their background task
/// on the current runtime (watches, discovery, elections).
pub(crate) fn entered<T>(f: impl FnOnce() -> FfiResult<T>) -> FfiResult<T> {
    let rt = consul_sdk::runtime::runtime()?;
    let _guard = rt.enter();
    f()
}

/// The panic message of a failed task, for the `INTERNAL` error.
fn panic_text(e: tokio::task::JoinError) -> String {
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// Stops this process's SDK runtime (its two `consul-sdk` threads), waiting up to `timeout_ms`
/// for tasks to end; a later call starts a new one. For hosts that want no native thread left
/// (`ConsulRs.shutdown()` in Kotlin); open watches, discoveries and keep-alives stop with it.
#[uniffi::export]
pub fn shutdown_runtime(timeout_ms: u64) {
    consul_sdk::runtime::shutdown(std::time::Duration::from_millis(timeout_ms));
}

/// Panics inside the library, on the calling thread or (with `in_task`) in an SDK task: the
/// JVM suite's proof that a panic reaches Kotlin as an exception and never aborts the process.
/// Never called otherwise.
#[uniffi::export]
pub async fn diagnostic_panic(in_task: bool) -> FfiResult<()> {
    if in_task {
        run(async { panic!("diagnostic panic in an SDK task") }).await
    } else {
        panic!("diagnostic panic on the calling thread")
    }
}
