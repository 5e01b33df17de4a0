//! Test support for cross-crate tests: in-process clusters of [`consul_core::agent::Agent`]s,
//! real `consul-rs` processes, and a small HTTP client for the Consul API.
//!
//! Every cluster cleans up after itself: agents are shut down and temp dirs removed on drop,
//! child processes are killed.

pub mod client;
pub mod dns;
pub mod inproc;
pub mod process;

use std::time::{Duration, Instant};

/// Polls `f` every 25 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Installs a tracing subscriber writing to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    if std::env::var("RUST_LOG").is_ok() {
        // Several tests in one binary each try; only the first succeeds, which is fine.
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    }
}

/// Reserves a free TCP port on 127.0.0.1 (bound then released, so it can be passed to an agent
/// that must keep the same port across restarts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}
