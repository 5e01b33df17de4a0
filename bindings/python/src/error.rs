//! The one mapping from SDK error codes to the exception classes of `consul_rs.errors`.

use consul_sdk::{Error, ErrorCode};
use pyo3::prelude::*;

/// The one mapping from SDK error codes to the exception classes of `consul_rs.errors`.
pub(crate) fn to_py_err(py: Python<'_>, e: Error) -> PyErr {
    let class = match e.code {
        ErrorCode::InvalidArgument => "InvalidArgumentError",
        ErrorCode::NotFound => "NotFoundError",
        // Consul answers an unknown or expired token with 403 "ACL not found": a subclass, so
        // `except PermissionDeniedError` still catches it.
        ErrorCode::PermissionDenied if consul_sdk::acl::is_acl_not_found(&e) => "ACLNotFoundError",
        ErrorCode::PermissionDenied => "PermissionDeniedError",
        ErrorCode::Conflict => "ConflictError",
        ErrorCode::Timeout => "ConsulTimeoutError",
        ErrorCode::Connection => "ConsulConnectionError",
        ErrorCode::NoLeader => "NoLeaderError",
        ErrorCode::Shutdown => "ShutdownError",
        ErrorCode::Forked => "ForkedError",
        ErrorCode::WouldDeadlock => "WouldDeadlockError",
        ErrorCode::TooLarge => "TooLargeError",
        _ => "ConsulError",
    };
    let made = py
        .import("consul_rs.errors")
        .and_then(|m| m.getattr(class))
        .and_then(|cls| cls.call1((e.message.clone(), e.code.as_str(), e.http_status)));
    match made {
        Ok(inst) => PyErr::from_value(inst),
        Err(import_failed) => import_failed,
    }
}
