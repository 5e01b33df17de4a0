//! # libconsul_rs — the consul-rs C library
//!
//! A stable C ABI over the [`consul_sdk`] facade: a Consul client (KV, transactions, catalog and
//! health queries, sessions, events), self-registration kept alive by TTL heartbeats, discovery
//! with local `pick` strategies, locks, watches (pulled with a timeout or a pollable file
//! descriptor, or pushed to a callback on a library-owned thread) and an embedded node. The header
//! `c/include/consul_rs.h` is generated from this crate by cbindgen (see `build.rs`).
//!
//! Shape (after rustls-ffi and Temporal's C bridge):
//! - every export runs inside [`ffi::boundary`]: panics are caught and become `CONSUL_E_PANIC`,
//!   errors become a [`consul_status`] plus an optional [`error::consul_error`] out-parameter;
//! - handles are `Box`es of a `#[repr(C)]` tagged wrapper ([`ffi::Tagged`]): the tag is checked on
//!   every use, so a handle of the wrong type (or an obviously freed one) is an
//!   `CONSUL_E_INVALID_ARGUMENT`, not a crash;
//! - blocking calls run on the SDK's per-process runtime through [`consul_sdk::runtime::block_on`];
//!   C callbacks run only on library-owned plain threads, never on a tokio worker, never with a
//!   library lock held.
//!
//! Nothing here installs signal handlers, exits the process or keeps global state beyond the
//! SDK runtime (which `consul_rs_shutdown` stops).

// The exported types carry their C names (`consul_client`, `consul_status`, …), so the header
// needs no renaming table.
#![allow(non_camel_case_types)]

pub mod agent;
pub mod client;
pub mod discovery;
pub mod election;
pub mod error;
mod ffi;
pub mod lock;
pub mod types;
pub mod validate;
pub mod watch;

use std::ffi::c_char;

pub use error::consul_status;

/// The ABI version: bumped on every incompatible change of the header (also the soname's
/// number, `libconsul_rs.so.0` until 1.0).
pub const CONSUL_RS_ABI_VERSION: u32 = 1;

/// The library version, `"MAJOR.MINOR.PATCH"`: a static string, never freed.
#[no_mangle]
pub extern "C" fn consul_rs_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The ABI version the library was built with; compare with `CONSUL_RS_ABI_VERSION` from the
/// header you compiled against.
#[no_mangle]
pub extern "C" fn consul_rs_abi_version() -> u32 {
    CONSUL_RS_ABI_VERSION
}

/// Stops the library's shared client runtime (its worker threads and connection pools), waiting
/// up to 5 s for in-flight work. Optional: call it at exit after freeing every handle, so leak
/// checkers such as valgrind see nothing left. Any later call starts a new runtime, so it is
/// harmless to call too early; handles still alive (watches, discoveries, locks, registrations)
/// stop working. Embedded agents have runtimes of their own, stopped by `consul_agent_shutdown`
/// or `consul_agent_free`. Thread-safe.
#[no_mangle]
pub extern "C" fn consul_rs_shutdown() {
    let _ = std::panic::catch_unwind(|| consul_sdk::runtime::shutdown(std::time::Duration::from_secs(5)));
}

/// Self-test of the panic boundary, for test suites: panics inside the library and returns
/// `CONSUL_E_PANIC` (with the panic message in `*err`) instead of unwinding into C. The panic
/// message is also printed to stderr by Rust's default panic hook.
///
/// # Safety
/// `err` is NULL or points to a writable `consul_error *`.
#[no_mangle]
pub unsafe extern "C" fn consul_rs_selftest_panic(err: *mut *mut error::consul_error) -> consul_status {
    ffi::boundary(err, || -> Result<(), error::CError> { panic!("consul_rs_selftest_panic: deliberate panic") })
}
