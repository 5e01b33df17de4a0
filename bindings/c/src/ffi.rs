//! The FFI boundary: panic catching, argument conversion, out-parameters and handle ownership.
//!
//! Handles: C sees an opaque `struct consul_x *`; behind it is a `Box<Tagged<Inner>>` whose first
//! field is a per-type tag (the rustls-ffi "castable" idea, with a runtime check). `borrow`
//! checks the tag before use, so a handle of another type, or one whose memory was already
//! released by `take` (the tag is wiped first), is reported as an invalid argument instead of
//! being misread. A pointer to memory that is not ours at all can still not be detected: that
//! stays undefined behaviour, as in any C library.

use std::ffi::{c_char, CStr, CString};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{consul_error, consul_status, new_error, CError, CResult};

/// A C-visible handle type: an opaque marker struct tied to the Rust value behind it.
pub(crate) trait Handle {
    /// What the handle owns.
    type Target;
    /// The tag stored in front of the value.
    const MAGIC: u64;
    /// The C type name, for error messages.
    const NAME: &'static str;
}

/// The tag written over a handle just before it is freed.
const DEAD: u64 = 0xDEAD_C0DE_DEAD_C0DE;

/// The heap layout of every handle: the tag first (`repr(C)` keeps it at offset 0 for every
/// `T`, so any of our handles can be checked through any handle type).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Tagged<T> {
    magic: u64,
    pub(crate) value: T,
}

impl<T> Tagged<T> {
    pub(crate) fn new<H: Handle<Target = T>>(value: T) -> Tagged<T> {
        Tagged { magic: H::MAGIC, value }
    }

    /// This tagged value as a borrowed C handle pointer.
    pub(crate) fn as_handle<H: Handle<Target = T>>(&self) -> *const H {
        (self as *const Tagged<T>).cast()
    }
}

/// Moves `value` to the heap and returns it as a C handle.
pub(crate) fn into_handle<H: Handle>(value: H::Target) -> *mut H {
    Box::into_raw(Box::new(Tagged::new::<H>(value))).cast()
}

/// Borrows the value behind a handle, checking NULL and the type tag.
///
/// # Safety
/// `p` is NULL or points to at least 8 readable, 8-aligned bytes (any live handle of this
/// library qualifies); when the tag matches, `p` is a live `H` that outlives `'a`.
pub(crate) unsafe fn borrow<'a, H: Handle>(p: *const H, arg: &str) -> CResult<&'a H::Target> {
    if p.is_null() {
        return Err(CError::null(arg));
    }
    // SAFETY: per the contract the first 8 bytes are readable; reading a u64 needs no validity.
    let magic = unsafe { std::ptr::read(p.cast::<u64>()) };
    if magic != H::MAGIC {
        let why = if magic == DEAD { "was already freed" } else { "is not of this type (or was freed)" };
        return Err(CError::invalid(arg, format!("this pointer {why}: expected a {}", H::NAME)));
    }
    // SAFETY: the tag matches, so `p` came from `into_handle::<H>` and is still alive.
    Ok(unsafe { &(*p.cast::<Tagged<H::Target>>()).value })
}

/// Takes ownership of a handle back from C (for `*_free`); `None` for NULL or a foreign tag
/// (which is then left alone rather than freed with the wrong layout).
///
/// # Safety
/// As for [`borrow`]; after this call C must not use `p` again.
pub(crate) unsafe fn take<H: Handle>(p: *mut H) -> Option<Box<Tagged<H::Target>>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: see `borrow`.
    let magic = unsafe { std::ptr::read(p.cast::<u64>()) };
    if magic != H::MAGIC {
        return None;
    }
    // SAFETY: the tag matches: `p` is a `Box<Tagged<H::Target>>` from `into_handle::<H>`.
    let mut boxed = unsafe { Box::from_raw(p.cast::<Tagged<H::Target>>()) };
    boxed.magic = DEAD;
    Some(boxed)
}

/// Runs an export's body: catches panics, turns errors into a status and an optional
/// `consul_error`.
pub(crate) fn boundary<F>(err: *mut *mut consul_error, f: F) -> consul_status
where
    F: FnOnce() -> CResult<()>,
{
    let failed = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return consul_status::CONSUL_OK,
        Ok(Err(e)) => e,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            CError::new(consul_status::CONSUL_E_PANIC, format!("the library panicked (a bug): {what}"))
        }
    };
    let status = failed.status;
    if !err.is_null() {
        // Building the error object must not unwind into C either.
        if let Ok(e) = catch_unwind(AssertUnwindSafe(|| new_error(failed))) {
            // SAFETY: `err` is non-NULL and, per every export's contract, writable.
            unsafe { *err = e };
        }
    }
    status
}

/// Runs an infallible export's body, answering `fallback` if it panics.
pub(crate) fn catch_or<T, F: FnOnce() -> T>(fallback: T, f: F) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// A required string argument.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that stays valid during the call.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, arg: &str) -> CResult<&'a str> {
    if p.is_null() {
        return Err(CError::null(arg));
    }
    // SAFETY: non-NULL and NUL-terminated per the contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|e| CError::invalid(arg, format!("not valid UTF-8 ({e})")))
}

/// An optional string argument (NULL = absent).
///
/// # Safety
/// As for [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char, arg: &str) -> CResult<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { str_arg(p, arg) }.map(Some)
    }
}

/// A byte buffer argument: `(NULL, 0)` is the empty buffer.
///
/// # Safety
/// `p` is NULL or points to `len` readable bytes.
pub(crate) unsafe fn bytes_arg<'a>(p: *const u8, len: usize, arg: &str) -> CResult<&'a [u8]> {
    if p.is_null() {
        return if len == 0 { Ok(&[]) } else { Err(CError::null(arg)) };
    }
    if len > isize::MAX as usize {
        return Err(CError::invalid(arg, "length is too large"));
    }
    // SAFETY: non-NULL and `len` readable bytes per the contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Checks that a required out-pointer is not NULL.
pub(crate) fn need_out<T>(p: *mut T, arg: &str) -> CResult<()> {
    if p.is_null() {
        Err(CError::null(arg))
    } else {
        Ok(())
    }
}

/// Writes an out-parameter (checked non-NULL before by [`need_out`]).
///
/// # Safety
/// `p` is a writable pointer to a `T`.
pub(crate) unsafe fn write_out<T>(p: *mut T, value: T) {
    // SAFETY: per the contract.
    unsafe { p.write(value) }
}

/// Writes an optional out-parameter (NULL = the caller doesn't want it).
///
/// # Safety
/// `p` is NULL or a writable pointer to a `T`.
pub(crate) unsafe fn write_opt<T>(p: *mut T, value: T) {
    if !p.is_null() {
        // SAFETY: non-NULL and writable per the contract.
        unsafe { p.write(value) }
    }
}

/// A C string from Rust text; an interior NUL (which C cannot represent) ends the string there.
pub(crate) fn cstring_lossy(s: impl Into<Vec<u8>>) -> CString {
    let mut bytes: Vec<u8> = s.into();
    if let Some(nul) = bytes.iter().position(|b| *b == 0) {
        bytes.truncate(nul);
    }
    CString::new(bytes).unwrap_or_default()
}

/// A string handed to C, freed by `consul_string_free`.
pub(crate) fn out_string(s: impl Into<Vec<u8>>) -> *mut c_char {
    cstring_lossy(s).into_raw()
}

/// JSON text of a value for C.
pub(crate) fn json_string<T: serde::Serialize + ?Sized>(v: &T) -> CResult<*mut c_char> {
    serde_json::to_string(v).map(out_string).map_err(CError::internal)
}

/// Runs a future on the SDK runtime and waits for it (the calling C thread blocks).
pub(crate) fn run<T, F>(fut: F) -> CResult<T>
where
    T: Send + 'static,
    F: Future<Output = consul_sdk::Result<T>> + Send + 'static,
{
    Ok(consul_sdk::runtime::block_on(fut)??)
}

/// Parses JSON text from C.
pub(crate) fn parse_json(text: &str, arg: &str) -> CResult<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| CError::invalid(arg, format!("invalid JSON: {e}")))
}

/// A NUL-terminated JSON object argument, parsed; anything else is `CONSUL_E_INVALID_ARGUMENT`
/// naming `arg`.
///
/// # Safety
/// `p` is NULL or NUL-terminated.
pub(crate) unsafe fn json_object_arg(
    p: *const c_char,
    arg: &str,
) -> CResult<serde_json::Map<String, serde_json::Value>> {
    // SAFETY: forwarded contract.
    let text = unsafe { str_arg(p, arg) }?;
    match parse_json(text, arg)? {
        serde_json::Value::Object(o) => Ok(o),
        _ => Err(CError::invalid(arg, "expected an object")),
    }
}

/// A timeout argument in milliseconds: negative = none (wait forever).
pub(crate) fn timeout_ms(ms: i32) -> Option<std::time::Duration> {
    u64::try_from(ms).ok().map(std::time::Duration::from_millis)
}
