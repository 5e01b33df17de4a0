//! # consul-rs-jvm
//!
//! The JVM shell over the `consul-sdk` facade: uniffi proc-macros export a plain FFI surface
//! (records of strings, numbers and byte arrays; objects behind handles; one error type) that
//! uniffi's generator turns into Kotlin (`io.consulrs.ffi`), under the hand-written Kotlin API of
//! `jvm/src/main/kotlin/io/consulrs`. No logic lives here beyond argument conversion: the SDK
//! validates, talks to agents and runs background work.
//!
//! Safety at the boundary: uniffi catches a panic in every exported function and method and
//! raises it as an exception; SDK work runs as tasks on the SDK runtime (`runtime::spawn`), whose
//! panics come back as a `JoinError` and are reported as `INTERNAL`, never unwinding into the
//! JVM. The library calls no foreign callbacks of its own (watches and elections are pulled by
//! the Kotlin side), so the only Rust-to-JVM calls are uniffi's future wake-ups.

mod agent;
mod client;
mod convert;
mod error;
mod handles;
mod runtime;

pub use agent::{AgentOptions, FfiAgent};
pub use client::{ClientOptions, FfiClient, FfiTxnOp};
pub use convert::*;
pub use error::ConsulFfiError;
pub use handles::{live_handles, FfiDiscovery, FfiElection, FfiLock, FfiRegistration, FfiWatch, FfiWatchEvent};
pub use runtime::{diagnostic_panic, shutdown_runtime};

uniffi::setup_scaffolding!();
