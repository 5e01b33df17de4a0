//! The one error type crossing the boundary: the SDK's [`consul_sdk::ErrorCode`] as its stable
//! string, mapped once on the Kotlin side to the `ConsulException` hierarchy.

/// An SDK failure as the JVM sees it.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum ConsulFfiError {
    /// Every failure: `code` is `ErrorCode::as_str` (`INVALID_ARGUMENT`, `NOT_FOUND`, …).
    /// (`detail`, not `message`: Kotlin exceptions already have a `message`.)
    #[error("{code}: {detail}")]
    Failure {
        /// The SDK error code's stable string.
        code: String,
        /// What went wrong, for people (the SDK's message, identical across bindings).
        detail: String,
        /// The agent's HTTP status, when one answered.
        http_status: Option<u16>,
    },
}

impl From<consul_sdk::Error> for ConsulFfiError {
    fn from(e: consul_sdk::Error) -> Self {
        ConsulFfiError::Failure { code: e.code.as_str().to_string(), detail: e.message, http_status: e.http_status }
    }
}

/// Shorthand for exported results.
pub(crate) type FfiResult<T> = Result<T, ConsulFfiError>;

/// An invalid-argument error naming `arg`, as the SDK words it.
pub(crate) fn invalid(arg: &str, why: impl std::fmt::Display) -> ConsulFfiError {
    consul_sdk::Error::invalid(arg, why).into()
}

/// An error of `code` with `message`.
pub(crate) fn err(code: consul_sdk::ErrorCode, message: impl Into<String>) -> ConsulFfiError {
    consul_sdk::Error::new(code, message).into()
}
