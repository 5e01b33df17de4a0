//! Status codes, the error object, and library-owned strings.
//!
//! [`consul_status`] mirrors [`consul_sdk::ErrorCode`] value for value (the SDK's numbers are
//! the ABI), plus two codes only C has: `CONSUL_E_NULL_ARG` and `CONSUL_E_PANIC`. The mapping
//! lives in one place, [`status_of`].

use std::ffi::{c_char, c_int, CString};

use consul_sdk::{Error, ErrorCode};

use crate::ffi::{self, Handle, Tagged};

/// The result of every fallible call.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum consul_status {
    /// Success.
    CONSUL_OK = 0,
    /// An argument is invalid (bad key, bad JSON, not UTF-8, unknown enum value, wrong handle
    /// type), or the agent answered HTTP 400.
    CONSUL_E_INVALID_ARGUMENT = 1,
    /// The addressed object does not exist (HTTP 404 where absence is an error).
    CONSUL_E_NOT_FOUND = 2,
    /// ACL refusal (HTTP 403).
    CONSUL_E_PERMISSION_DENIED = 3,
    /// A conflict: a transaction rolled back (HTTP 409), a lock held elsewhere.
    CONSUL_E_CONFLICT = 4,
    /// No answer in time (also: `consul_watch_next` found no event within its timeout).
    CONSUL_E_TIMEOUT = 5,
    /// The agent could not be reached.
    CONSUL_E_CONNECTION = 6,
    /// The cluster has no leader.
    CONSUL_E_NO_LEADER = 7,
    /// The agent answered with a server error (HTTP 5xx).
    CONSUL_E_UNAVAILABLE = 8,
    /// The operation was cancelled (a watch or discovery closed).
    CONSUL_E_CANCELLED = 9,
    /// The embedded agent is shut down.
    CONSUL_E_SHUTDOWN = 10,
    /// The handle belongs to the parent of a fork(); make a new one in the child.
    CONSUL_E_FORKED = 11,
    /// A blocking call was made from inside an async runtime, where it would deadlock.
    CONSUL_E_WOULD_DEADLOCK = 12,
    /// A bug or an unexpected answer.
    CONSUL_E_INTERNAL = 13,
    /// A request or value is over a size limit (HTTP 413).
    CONSUL_E_TOO_LARGE = 14,
    /// A required pointer argument was NULL.
    CONSUL_E_NULL_ARG = 98,
    /// The library panicked (a bug); the call had no effect that can be relied on.
    CONSUL_E_PANIC = 99,
}

/// The one mapping from SDK error codes to C status codes.
pub(crate) fn status_of(code: ErrorCode) -> consul_status {
    use consul_status::*;
    match code {
        ErrorCode::InvalidArgument => CONSUL_E_INVALID_ARGUMENT,
        ErrorCode::NotFound => CONSUL_E_NOT_FOUND,
        ErrorCode::PermissionDenied => CONSUL_E_PERMISSION_DENIED,
        ErrorCode::Conflict => CONSUL_E_CONFLICT,
        ErrorCode::Timeout => CONSUL_E_TIMEOUT,
        ErrorCode::Connection => CONSUL_E_CONNECTION,
        ErrorCode::NoLeader => CONSUL_E_NO_LEADER,
        ErrorCode::Unavailable => CONSUL_E_UNAVAILABLE,
        ErrorCode::Cancelled => CONSUL_E_CANCELLED,
        ErrorCode::Shutdown => CONSUL_E_SHUTDOWN,
        ErrorCode::Forked => CONSUL_E_FORKED,
        ErrorCode::WouldDeadlock => CONSUL_E_WOULD_DEADLOCK,
        ErrorCode::TooLarge => CONSUL_E_TOO_LARGE,
        _ => CONSUL_E_INTERNAL,
    }
}

/// An error inside the library, before it becomes a [`consul_error`].
#[derive(Debug, Clone)]
pub(crate) struct CError {
    pub(crate) status: consul_status,
    pub(crate) message: String,
    pub(crate) http_status: Option<u16>,
}

impl CError {
    pub(crate) fn new(status: consul_status, message: impl Into<String>) -> CError {
        CError { status, message: message.into(), http_status: None }
    }

    /// A required pointer was NULL; the message names the argument.
    pub(crate) fn null(arg: &str) -> CError {
        CError::new(consul_status::CONSUL_E_NULL_ARG, format!("{arg}: must not be NULL"))
    }

    /// An invalid argument; the message names it.
    pub(crate) fn invalid(arg: &str, why: impl std::fmt::Display) -> CError {
        CError::new(consul_status::CONSUL_E_INVALID_ARGUMENT, format!("{arg}: {why}"))
    }

    pub(crate) fn internal(why: impl std::fmt::Display) -> CError {
        CError::new(consul_status::CONSUL_E_INTERNAL, why.to_string())
    }
}

impl From<Error> for CError {
    fn from(e: Error) -> Self {
        CError { status: status_of(e.code), message: e.message, http_status: e.http_status }
    }
}

/// Shorthand for the library's internal results.
pub(crate) type CResult<T> = Result<T, CError>;

/// An error: a status code, a message naming what went wrong, and the HTTP status when an agent
/// answered. Immutable; may be read from any thread; free it with `consul_error_free`.
pub struct consul_error {
    _opaque: [u8; 0],
}

/// What a `consul_error` handle holds.
#[derive(Debug)]
pub(crate) struct ErrorInner {
    pub(crate) status: consul_status,
    pub(crate) message: CString,
    pub(crate) http_status: u16,
}

impl Handle for consul_error {
    type Target = ErrorInner;
    const MAGIC: u64 = 0xC0_5E_E7_70_0E_77_00_01;
    const NAME: &'static str = "consul_error";
}

impl ErrorInner {
    pub(crate) fn from_c(e: CError) -> ErrorInner {
        ErrorInner { status: e.status, message: ffi::cstring_lossy(e.message), http_status: e.http_status.unwrap_or(0) }
    }
}

/// Allocates a `consul_error` for C.
pub(crate) fn new_error(e: CError) -> *mut consul_error {
    ffi::into_handle::<consul_error>(ErrorInner::from_c(e))
}

/// A borrowed error for a callback: lives as long as the returned box.
pub(crate) fn error_on_stack(e: CError) -> Box<Tagged<ErrorInner>> {
    Box::new(Tagged::new::<consul_error>(ErrorInner::from_c(e)))
}

/// The status code of an error (`CONSUL_E_INVALID_ARGUMENT` for NULL or a non-error handle).
///
/// # Safety
/// `e` is NULL or a live `consul_error`.
#[no_mangle]
pub unsafe extern "C" fn consul_error_code(e: *const consul_error) -> consul_status {
    ffi::catch_or(consul_status::CONSUL_E_PANIC, || {
        // SAFETY: the caller passes NULL or a live handle.
        match unsafe { ffi::borrow::<consul_error>(e, "error") } {
            Ok(inner) => inner.status,
            Err(_) => consul_status::CONSUL_E_INVALID_ARGUMENT,
        }
    })
}

/// The error's message (UTF-8): borrowed, valid until `consul_error_free`. Never NULL: a NULL or
/// non-error handle gives a static description of that mistake.
///
/// # Safety
/// `e` is NULL or a live `consul_error`.
#[no_mangle]
pub unsafe extern "C" fn consul_error_message(e: *const consul_error) -> *const c_char {
    ffi::catch_or(c"(panic)".as_ptr(), || {
        // SAFETY: the caller passes NULL or a live handle.
        match unsafe { ffi::borrow::<consul_error>(e, "error") } {
            Ok(inner) => inner.message.as_ptr(),
            Err(_) => c"(not a consul_error)".as_ptr(),
        }
    })
}

/// The HTTP status the agent answered with, or 0 when the error did not come from an answer.
///
/// # Safety
/// `e` is NULL or a live `consul_error`.
#[no_mangle]
pub unsafe extern "C" fn consul_error_http_status(e: *const consul_error) -> c_int {
    ffi::catch_or(0, || {
        // SAFETY: the caller passes NULL or a live handle.
        unsafe { ffi::borrow::<consul_error>(e, "error") }.map(|i| c_int::from(i.http_status)).unwrap_or(0)
    })
}

/// Frees an error. NULL-safe.
///
/// # Safety
/// `e` is NULL or a live `consul_error`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn consul_error_free(e: *mut consul_error) {
    // SAFETY: the caller hands over NULL or a live handle.
    ffi::catch_or((), || drop(unsafe { ffi::take::<consul_error>(e) }))
}

/// The stable name of a status code (`"CONSUL_E_NOT_FOUND"`, …): a static string, never freed.
/// Takes an `int` so that any value is safe to pass; unknown values give `"CONSUL_E_UNKNOWN"`.
#[no_mangle]
pub extern "C" fn consul_status_str(status: c_int) -> *const c_char {
    let s: &'static std::ffi::CStr = match status {
        0 => c"CONSUL_OK",
        1 => c"CONSUL_E_INVALID_ARGUMENT",
        2 => c"CONSUL_E_NOT_FOUND",
        3 => c"CONSUL_E_PERMISSION_DENIED",
        4 => c"CONSUL_E_CONFLICT",
        5 => c"CONSUL_E_TIMEOUT",
        6 => c"CONSUL_E_CONNECTION",
        7 => c"CONSUL_E_NO_LEADER",
        8 => c"CONSUL_E_UNAVAILABLE",
        9 => c"CONSUL_E_CANCELLED",
        10 => c"CONSUL_E_SHUTDOWN",
        11 => c"CONSUL_E_FORKED",
        12 => c"CONSUL_E_WOULD_DEADLOCK",
        13 => c"CONSUL_E_INTERNAL",
        14 => c"CONSUL_E_TOO_LARGE",
        98 => c"CONSUL_E_NULL_ARG",
        99 => c"CONSUL_E_PANIC",
        _ => c"CONSUL_E_UNKNOWN",
    };
    s.as_ptr()
}

/// Frees a string the library returned through a `char **` out-parameter. NULL-safe.
///
/// # Safety
/// `s` is NULL or a string returned by this library, not freed before and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn consul_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    // SAFETY: every `char *` this library hands out comes from `CString::into_raw`.
    ffi::catch_or((), || drop(unsafe { CString::from_raw(s) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_numbers_are_the_sdk_codes() {
        for code in [
            ErrorCode::InvalidArgument,
            ErrorCode::NotFound,
            ErrorCode::PermissionDenied,
            ErrorCode::Conflict,
            ErrorCode::Timeout,
            ErrorCode::Connection,
            ErrorCode::NoLeader,
            ErrorCode::Unavailable,
            ErrorCode::Cancelled,
            ErrorCode::Shutdown,
            ErrorCode::Forked,
            ErrorCode::WouldDeadlock,
            ErrorCode::Internal,
            ErrorCode::TooLarge,
        ] {
            assert_eq!(status_of(code) as u32, code as u32, "{code}");
            // SAFETY: consul_status_str returns a static NUL-terminated string.
            let name = unsafe { std::ffi::CStr::from_ptr(consul_status_str(code as c_int)) };
            assert!(name.to_str().expect("utf-8").ends_with(code.as_str()), "{code}");
        }
    }
}
