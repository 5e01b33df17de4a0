//! Running SDK futures for Python: blocking with the GIL released (in signal-checked slices) or
//! as asyncio awaitables on the SDK runtime, and the interpreter-exit guard for runtime threads.
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use consul_sdk::{Error, ErrorCode};
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

use crate::error::*;

/// How often a blocking wait wakes to let Python handle signals (Ctrl-C).
pub(crate) const SIGNAL_SLICE: Duration = Duration::from_millis(50);

/// Set by the module's `atexit` hook: from then on no runtime thread attaches to Python. A
/// thread attaching while the interpreter finalizes is made to exit inside CPython (before
/// 3.13), which kills a Rust thread mid-unwind and crashes the process at exit. Process-wide
/// like the interpreter it guards.
pub(crate) static INTERPRETER_EXITING: AtomicBool = AtomicBool::new(false);
/// Runtime threads inside [`attach_unless_exiting`], which the exit hook waits for.
pub(crate) static ATTACHING: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` (which may attach to Python) on a runtime thread unless the interpreter is exiting;
/// `None` then, and `f` is dropped unrun.
pub(crate) fn attach_unless_exiting<R>(f: impl FnOnce() -> R) -> Option<R> {
    ATTACHING.fetch_add(1, Ordering::SeqCst);
    let out = if INTERPRETER_EXITING.load(Ordering::SeqCst) { None } else { Some(f()) };
    ATTACHING.fetch_sub(1, Ordering::SeqCst);
    out
}

/// The `atexit` hook (it runs before finalization, after `consul_rs`'s own hook has closed
/// watches and agents): stops runtime threads from attaching, then waits, detached, for those
/// already attaching, so none is left to attach during finalization.
#[pyfunction]
pub(crate) fn _before_exit(py: Python<'_>) {
    INTERPRETER_EXITING.store(true, Ordering::SeqCst);
    py.detach(|| {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while ATTACHING.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

pub(crate) fn sdk_runtime(py: Python<'_>) -> PyResult<Arc<tokio::runtime::Runtime>> {
    consul_sdk::runtime::runtime().map_err(|e| to_py_err(py, e))
}

/// Turns an SDK result into a Python object (runs with the GIL held).
pub(crate) type Convert<T> = Box<dyn FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send>;

/// The asyncio bridge's runtime: the SDK's per-process runtime (fork-aware, see
/// `consul_sdk::runtime`), so awaitables keep working in a forked child, and one runtime serves
/// sync and async calls alike.
pub(crate) struct SdkRuntime;

tokio::task_local! {
    static TASK_LOCALS: pyo3_async_runtimes::TaskLocals;
}

impl pyo3_async_runtimes::generic::Runtime for SdkRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match consul_sdk::runtime::runtime() {
            Ok(rt) => rt.spawn(fut),
            // Only if the SDK runtime cannot be built: fall back to the bridge's own.
            Err(_) => pyo3_async_runtimes::tokio::get_runtime().spawn(fut),
        }
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        // The bridge hands awaitables their results from here, attached to Python.
        let f = move || {
            let _ = attach_unless_exiting(f);
        };
        match consul_sdk::runtime::runtime() {
            Ok(rt) => rt.spawn_blocking(f),
            Err(_) => pyo3_async_runtimes::tokio::get_runtime().spawn_blocking(f),
        }
    }
}

impl pyo3_async_runtimes::generic::ContextExt for SdkRuntime {
    fn scope<F, R>(locals: pyo3_async_runtimes::TaskLocals, fut: F) -> std::pin::Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        Box::pin(TASK_LOCALS.scope(locals, fut))
    }

    fn get_task_locals() -> Option<pyo3_async_runtimes::TaskLocals> {
        TASK_LOCALS.try_with(|l| l.clone()).ok()
    }
}

/// Aborts a tokio task when dropped: an abandoned wait (Ctrl-C, asyncio cancellation) cancels
/// the request instead of leaving it running.
pub(crate) struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `fut` on the SDK runtime, blocking (GIL released, in signal-checked slices) or as an
/// awaitable, and converts its result.
pub(crate) fn go<T, F>(py: Python<'_>, is_async: bool, fut: F, convert: Convert<T>) -> PyResult<Py<PyAny>>
where
    T: Send + 'static,
    F: Future<Output = consul_sdk::Result<T>> + Send + 'static,
{
    let rt = sdk_runtime(py)?;
    if is_async {
        let handle = rt.spawn(fut);
        let guard = AbortOnDrop(handle.abort_handle());
        let aw = pyo3_async_runtimes::generic::future_into_py::<SdkRuntime, _, _>(py, async move {
            let _guard = guard;
            let out = handle.await;
            attach_unless_exiting(|| {
                Python::attach(|py| match out {
                    Ok(Ok(v)) => convert(py, v),
                    Ok(Err(e)) => Err(to_py_err(py, e)),
                    Err(j) => Err(to_py_err(py, Error::new(ErrorCode::Cancelled, format!("request ended: {j}")))),
                })
            })
            .unwrap_or_else(|| Err(pyo3::exceptions::PyRuntimeError::new_err("the interpreter is exiting")))
        })?;
        return Ok(aw.unbind());
    }
    let (tx, rx) = mpsc::sync_channel(1);
    let handle = rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    let _guard = AbortOnDrop(handle.abort_handle());
    let mut rx = rx;
    loop {
        let rx_ref = &mut rx;
        match py.detach(move || rx_ref.recv_timeout(SIGNAL_SLICE)) {
            Ok(Ok(v)) => return convert(py, v),
            Ok(Err(e)) => return Err(to_py_err(py, e)),
            Err(mpsc::RecvTimeoutError::Timeout) => py.check_signals()?,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(to_py_err(py, Error::new(ErrorCode::Internal, "the request task ended without an answer")))
            }
        }
    }
}

pub(crate) fn obj<'py, T: IntoPyObject<'py>>(py: Python<'py>, v: T) -> PyResult<Py<PyAny>> {
    v.into_py_any(py)
}

pub(crate) fn json_text<T: serde::Serialize>(py: Python<'_>, v: &T) -> PyResult<Py<PyAny>> {
    let s = serde_json::to_string(v).map_err(|e| to_py_err(py, Error::new(ErrorCode::Internal, e.to_string())))?;
    obj(py, s)
}

pub(crate) fn json_conv<T: serde::Serialize + Send + 'static>() -> Convert<T> {
    Box::new(|py, v| json_text(py, &v))
}

pub(crate) fn plain<T: for<'py> IntoPyObject<'py> + Send + 'static>() -> Convert<T> {
    Box::new(|py, v| obj(py, v))
}
