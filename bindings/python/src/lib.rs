//! `consul_rs._native`: the thin PyO3 layer under the `consul_rs` Python package.
//!
//! Every operation exists once and runs either blocking (`is_async=False`: the GIL is released
//! and the wait is sliced so Ctrl-C is noticed) or as an awaitable (`is_async=True`: a tokio task
//! on the SDK runtime, aborted when the Python task is cancelled). Errors are mapped to the
//! exception classes of `consul_rs.errors` in one place, [`to_py_err`]. Results are plain tuples
//! and JSON text; the Python package turns them into dataclasses.

mod agent;
mod client;
mod convert;
mod error;
mod handles;
mod runtime;

use pyo3::prelude::*;

use crate::agent::NativeAgent;
use crate::client::NativeClient;
use crate::convert::{parse_duration, validate_check, validate_option, validate_registration};
use crate::handles::{NativeDiscovery, NativeElection, NativeLock, NativeRegistration, NativeWatch};
use crate::runtime::_before_exit;

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Registered before `consul_rs` registers its own hook, so it runs after that one.
    m.py().import("atexit")?.call_method1("register", (wrap_pyfunction!(_before_exit, m)?,))?;
    m.add_class::<NativeClient>()?;
    m.add_class::<NativeWatch>()?;
    m.add_class::<NativeDiscovery>()?;
    m.add_class::<NativeLock>()?;
    m.add_class::<NativeRegistration>()?;
    m.add_class::<NativeAgent>()?;
    m.add_class::<NativeElection>()?;
    m.add_function(wrap_pyfunction!(parse_duration, m)?)?;
    m.add_function(wrap_pyfunction!(validate_check, m)?)?;
    m.add_function(wrap_pyfunction!(validate_registration, m)?)?;
    m.add_function(wrap_pyfunction!(validate_option, m)?)?;
    Ok(())
}
