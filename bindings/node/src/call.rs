//! How native work reaches JavaScript: every asynchronous method takes a trailing callback
//! `(err, value)`, runs its future on the SDK runtime ([`consul_sdk::runtime`]) and answers
//! through a threadsafe function, so the callback always runs on the JS thread.
//!
//! Why callbacks and not napi's `async fn`: napi's promises hold a strong threadsafe function, so
//! a pending promise always keeps Node alive. A watch's pending `next()` must not (an `unref()`'d
//! watch lets the process exit, as an unref'd server does), so [`spawn_weak`] answers through a
//! weak one; everything else uses [`spawn`], which keeps the loop alive while the call is in
//! flight, like any pending request. `index.js` wraps these callbacks in promises and decides
//! what keeps the process alive with ordinary ref-able timers. It also avoids a second tokio
//! runtime: napi's would sit beside the SDK's.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use napi::bindgen_prelude::{FnArgs, Function};
use napi::threadsafe_function::{ThreadsafeCallContext, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use consul_sdk::{Error, ErrorCode};

/// A failure as it crosses into JavaScript; `index.js` turns it into a `ConsulError`.
#[napi(object)]
pub struct NativeError {
    /// The SDK error code (`"NOT_FOUND"`, ...).
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// The agent's HTTP status, when one answered.
    pub http_status: Option<u32>,
}

impl From<Error> for NativeError {
    fn from(e: Error) -> Self {
        NativeError { code: e.code.as_str().to_string(), message: e.message, http_status: e.http_status.map(u32::from) }
    }
}

/// The JS callback of an asynchronous native method: `(err, value) => void`.
pub type Callback<'a> = Function<'a, (), ()>;

/// Errors thrown by synchronous native methods: `err.code` is the SDK code string.
pub type Result<T> = napi::Result<T, String>;

/// A synchronous error carrying the SDK code as `err.code`.
pub fn js_err(e: Error) -> napi::Error<String> {
    napi::Error::new(e.code.as_str().to_string(), e.message)
}

/// napi's own failures (creating a threadsafe function, ...) as synchronous errors.
pub fn napi_err(e: napi::Error) -> napi::Error<String> {
    napi::Error::new(ErrorCode::Internal.as_str().to_string(), format!("{}: {}", e.status.as_ref(), e.reason))
}

fn panic_error(payload: Box<dyn std::any::Any + Send>) -> Error {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    Error::new(ErrorCode::Internal, format!("internal error (panic): {what}"))
}

type Reply<T> = FnArgs<(Option<NativeError>, Option<T>)>;

fn reply<T>(ctx: ThreadsafeCallContext<consul_sdk::Result<T>>) -> napi::Result<Reply<T>> {
    Ok(match ctx.value {
        Ok(v) => FnArgs::from((None, Some(v))),
        Err(e) => FnArgs::from((Some(NativeError::from(e)), None)),
    })
}

macro_rules! tsfn {
    ($cb:expr, $weak:literal, $t:ty) => {
        $cb.build_threadsafe_function::<consul_sdk::Result<$t>>()
            .weak::<$weak>()
            .callee_handled::<false>()
            .build_callback(reply::<$t>)
            .map_err(napi_err)?
    };
}

fn run_guarded<T, F>(fut: F) -> impl Future<Output = consul_sdk::Result<T>> + Send
where
    F: Future<Output = consul_sdk::Result<T>> + Send,
{
    AssertUnwindSafe(fut).catch_unwind().map(|r| r.unwrap_or_else(|p| Err(panic_error(p))))
}

fn sdk_runtime() -> Result<std::sync::Arc<tokio::runtime::Runtime>> {
    consul_sdk::runtime::runtime().map_err(js_err)
}

/// Runs `fut` on the SDK runtime and answers `cb`; the call keeps Node alive while in flight.
pub fn spawn<T, F>(cb: Callback<'_>, fut: F) -> Result<()>
where
    T: napi::bindgen_prelude::ToNapiValue + Send + 'static,
    F: Future<Output = consul_sdk::Result<T>> + Send + 'static,
{
    let tsfn = tsfn!(cb, false, T);
    sdk_runtime()?.spawn(async move {
        let out = run_guarded(fut).await;
        // Closing (the environment is going away) is the only failure, and then nobody waits.
        let _ = tsfn.call(out, ThreadsafeFunctionCallMode::NonBlocking);
    });
    Ok(())
}

/// Like [`spawn`], but the pending call does not keep Node alive (watch and lock-loss waits,
/// whose keep-alive `index.js` governs with ref-able handles).
pub fn spawn_weak<T, F>(cb: Callback<'_>, fut: F) -> Result<()>
where
    T: napi::bindgen_prelude::ToNapiValue + Send + 'static,
    F: Future<Output = consul_sdk::Result<T>> + Send + 'static,
{
    let tsfn = tsfn!(cb, true, T);
    sdk_runtime()?.spawn(async move {
        let out = run_guarded(fut).await;
        let _ = tsfn.call(out, ThreadsafeFunctionCallMode::NonBlocking);
    });
    Ok(())
}

/// Runs blocking work (starting or stopping an embedded agent, which drives its own runtime) on
/// a plain thread and answers `cb`.
pub fn spawn_blocking<T, F>(cb: Callback<'_>, f: F) -> Result<()>
where
    T: napi::bindgen_prelude::ToNapiValue + Send + 'static,
    F: FnOnce() -> consul_sdk::Result<T> + Send + 'static,
{
    let tsfn = tsfn!(cb, false, T);
    std::thread::Builder::new()
        .name("consul-rs-node".into())
        .spawn(move || {
            let out = std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(panic_error(p)));
            let _ = tsfn.call(out, ThreadsafeFunctionCallMode::NonBlocking);
        })
        .map_err(|e| {
            napi::Error::new(ErrorCode::Internal.as_str().to_string(), format!("cannot start a thread: {e}"))
        })?;
    Ok(())
}
