//! The SDK's one error type. Every binding maps [`ErrorCode`] exactly once: to an exception class
//! in Python, to `err.code` in Node, to a status code in C.

use std::fmt;

/// What kind of failure happened. The numeric values are the C ABI's status codes: stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The caller passed something invalid (HTTP 400 or a local check).
    InvalidArgument = 1,
    /// The addressed object does not exist (HTTP 404 where absence is an error).
    NotFound = 2,
    /// ACL refusal: HTTP 403 (`Permission denied: …`, `ACL not found`) or 401 (`ACL support
    /// disabled`). The message keeps the agent's text.
    PermissionDenied = 3,
    /// A conflict: transaction rolled back (HTTP 409), lock held elsewhere.
    Conflict = 4,
    /// No answer in time.
    Timeout = 5,
    /// Could not reach the agent.
    Connection = 6,
    /// The cluster has no leader (Consul's "No cluster leader").
    NoLeader = 7,
    /// The agent answered with a server error (HTTP 5xx).
    Unavailable = 8,
    /// The operation was cancelled (a watch closed, a task cancelled).
    Cancelled = 9,
    /// The embedded agent or the client is shut down.
    Shutdown = 10,
    /// Used in a process forked after the object was made.
    Forked = 11,
    /// A blocking call was made from inside an async runtime, where it would deadlock.
    WouldDeadlock = 12,
    /// A bug or an unexpected answer.
    Internal = 13,
    /// A request or value is over a size limit (HTTP 413).
    TooLarge = 14,
}

impl ErrorCode {
    /// The stable string form (`"NOT_FOUND"`, …), used as Node's `err.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::Connection => "CONNECTION",
            ErrorCode::NoLeader => "NO_LEADER",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Cancelled => "CANCELLED",
            ErrorCode::Shutdown => "SHUTDOWN",
            ErrorCode::Forked => "FORKED",
            ErrorCode::WouldDeadlock => "WOULD_DEADLOCK",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::TooLarge => "TOO_LARGE",
        }
    }

    /// The code for an HTTP error status from an agent, given its body.
    pub fn from_http(status: u16, body: &str) -> ErrorCode {
        match status {
            400 => ErrorCode::InvalidArgument,
            401 | 403 => ErrorCode::PermissionDenied,
            404 => ErrorCode::NotFound,
            409 => ErrorCode::Conflict,
            413 => ErrorCode::TooLarge,
            429 | 503 => ErrorCode::Unavailable,
            500 if body.contains("No cluster leader") => ErrorCode::NoLeader,
            s if s >= 500 => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An SDK error: a code, a message naming what went wrong, and the HTTP status when an agent
/// answered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    /// The kind of failure.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// The HTTP status, when the agent answered.
    pub http_status: Option<u16>,
}

impl Error {
    /// A new error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error { code, message: message.into(), http_status: None }
    }

    /// An invalid-argument error naming the argument.
    pub fn invalid(arg: &str, why: impl fmt::Display) -> Self {
        Error::new(ErrorCode::InvalidArgument, format!("{arg}: {why}"))
    }

    /// An error from an agent's HTTP answer.
    pub fn from_http(status: u16, body: &str) -> Self {
        let text = body.trim();
        Error {
            code: ErrorCode::from_http(status, text),
            message: if text.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {text}") },
            http_status: Some(status),
        }
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        let code = if e.is_timeout() {
            ErrorCode::Timeout
        } else if e.is_connect() || e.is_request() {
            ErrorCode::Connection
        } else if e.is_decode() {
            ErrorCode::Internal
        } else {
            ErrorCode::Connection
        };
        let mut message = transport_message(&e);
        // A TLS listener answers a plain HTTP request with a TLS alert, which hyper reads as a
        // garbled status line.
        if e.url().is_some_and(|u| u.scheme() == "http") && message.contains("invalid HTTP version") {
            message.push_str(" (is the agent serving HTTPS there? use https:// or CONSUL_HTTP_SSL=true)");
        }
        Error::new(code, message)
    }
}

/// A transport error's text: reqwest's top-level message says little ("error sending request
/// for url (…)"), so the causes follow it, and a TLS failure gets Go's plain words for it
/// (`x509: certificate signed by unknown authority`), which is what Consul users search for.
pub(crate) fn transport_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    let mut tls = None;
    while let Some(c) = cur {
        text.push_str(": ");
        text.push_str(&c.to_string());
        if let Some(r) = find_rustls(c) {
            tls = tls_words(r);
        }
        cur = c.source();
    }
    match tls {
        Some(words) => format!("{text} ({words})"),
        None => text,
    }
}

/// A TLS failure somewhere in `e`'s causes, as rustls words it and in a Consul user's words
/// (`received fatal alert: CertificateRequired (the agent wants a client certificate…)`).
pub(crate) fn tls_cause_words(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(r) = find_rustls(c) {
            return Some(match tls_words(r) {
                Some(words) => format!("{r} ({words})"),
                None => r.to_string(),
            });
        }
        cur = c.source();
    }
    None
}

/// rustls' error, which reaches us wrapped in io::Errors (twice, for a failed handshake), whose
/// `source()` skips the wrapped error.
fn find_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    let inner: &(dyn std::error::Error + 'static) = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    find_rustls(inner)
}

/// What a rustls failure means for someone configuring a Consul client.
fn tls_words(e: &rustls::Error) -> Option<String> {
    use rustls::{AlertDescription as A, CertificateError as C};
    let words = match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "x509: certificate signed by unknown authority: check the CA file (-ca-file, CONSUL_CACERT)".to_string()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "x509: the agent's certificate is not valid for the name connected to: use an address it names, or \
             set the server name (-tls-server-name, CONSUL_TLS_SERVER_NAME)"
                .to_string()
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "x509: the agent's certificate has expired".to_string()
        }
        rustls::Error::AlertReceived(A::CertificateRequired | A::BadCertificate | A::HandshakeFailure) => {
            "the agent wants a client certificate it trusts: set the client cert and key (-client-cert, \
             -client-key, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY)"
                .to_string()
        }
        rustls::Error::AlertReceived(A::UnknownCA) => {
            "the agent does not trust the client certificate's CA".to_string()
        }
        _ => return None,
    };
    Some(words)
}

impl From<consul_core::Error> for Error {
    fn from(e: consul_core::Error) -> Self {
        let status = e.http_status();
        let mut err = Error::from_http(status, &e.to_string());
        if matches!(e, consul_core::Error::ShuttingDown) {
            err.code = ErrorCode::Shutdown;
        }
        if matches!(e, consul_core::Error::Bind { .. } | consul_core::Error::Config(_)) {
            err.code = ErrorCode::InvalidArgument;
        }
        err.http_status = None;
        err
    }
}

/// Shorthand.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_mapping() {
        assert_eq!(Error::from_http(404, "").code, ErrorCode::NotFound);
        assert_eq!(Error::from_http(500, "No cluster leader").code, ErrorCode::NoLeader);
        assert_eq!(Error::from_http(500, "rpc error").code, ErrorCode::Unavailable);
        assert_eq!(Error::from_http(409, "").code, ErrorCode::Conflict);
        assert_eq!(Error::from_http(401, "ACL support disabled").code, ErrorCode::PermissionDenied);
        let e = Error::from_http(
            403,
            "Permission denied: token with AccessorID 'a' lacks permission 'key:write' on \"foo\"",
        );
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        assert!(e.message.contains("lacks permission 'key:write' on \"foo\""), "{}", e.message);
        assert_eq!(ErrorCode::NoLeader.as_str(), "NO_LEADER");
        assert_eq!(ErrorCode::TooLarge as u32, 14);
    }
}
