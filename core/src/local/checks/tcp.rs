//! TCP checks: a connect within the timeout, to any address the target resolves to, is passing.

use std::time::Duration;

use super::Outcome;
use crate::state::catalog::{CRITICAL, PASSING};

pub(super) async fn check(address: &str, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, super::dial::dial(address)).await {
        Ok(Ok(_)) => (PASSING, format!("TCP connect {address}: Success")),
        Ok(Err(e)) => (CRITICAL, e),
        Err(_) => (CRITICAL, format!("dial tcp {address}: i/o timeout after {timeout:?}")),
    }
}
