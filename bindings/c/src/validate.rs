//! Option and registration validation by the SDK's rules: the same inputs are accepted or
//! refused, with the same messages, as in the Python and Node packages (the shared table
//! `bindings/sdk/tests/validation_cases.json` proves it in every suite).

use std::ffi::c_char;

use consul_sdk::{CheckType, Consistency, RegistrationSpec, Strategy};

use crate::error::{consul_error, consul_status, CError};
use crate::ffi;

/// Checks an option value by name as the library parses it: `kind` is `"consistency"`
/// (`default`, `stale`, `consistent`), `"strategy"` (`round_robin`, `random`, `weighted`,
/// `consistent_hash`, `nearest`) or `"check"` (`http`, `tcp`, `grpc`, `ttl`).
/// `CONSUL_E_INVALID_ARGUMENT` with the reason otherwise.
///
/// # Safety
/// `kind` and `value` are NUL-terminated; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_option_validate(
    kind: *const c_char,
    value: *const c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let kind = unsafe { ffi::str_arg(kind, "kind") }?;
        // SAFETY: forwarded contract.
        let value = unsafe { ffi::str_arg(value, "value") }?;
        match kind {
            "consistency" => value.parse::<Consistency>().map(|_| ())?,
            "strategy" => value.parse::<Strategy>().map(|_| ())?,
            "check" => value.parse::<CheckType>().map(|_| ())?,
            other => return Err(CError::invalid("kind", format!("unknown option kind {other:?}"))),
        }
        Ok(())
    })
}

/// Checks a registration in the bindings' neutral JSON shape (`{"name", "id", "address",
/// "port", "tags", "meta", "checks": [{"kind", "target", "ttl", "interval", "timeout",
/// "deregister_critical_after"}]}`, durations as seconds or Go duration strings) without
/// sending it; `consul_register_spec` registers one.
///
/// # Safety
/// `spec_json` is NUL-terminated; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_registration_spec_validate(
    spec_json: *const c_char,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let text = unsafe { ffi::str_arg(spec_json, "spec_json") }?;
        let v = ffi::parse_json(text, "spec_json")?;
        RegistrationSpec::from_json(&v)?.resolve()?;
        Ok(())
    })
}
