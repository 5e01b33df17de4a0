//! Test support for cross-crate tests: in-process clusters of [`consul_core::agent::Agent`]s,
//! real `consul-rs` processes, and a small HTTP client for the Consul API.
//!
//! Every cluster cleans up after itself: agents are shut down and temp dirs removed on drop,
//! child processes are killed.

pub mod client;
pub mod dns;
pub mod fault;
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

/// Picks a port free for both TCP and UDP on 127.0.0.1 (checked, then released, so it can be
/// passed to an agent that must keep the same port across restarts).
///
/// Ports come from below the kernel's ephemeral range (32768–60999 on Linux): outgoing
/// connections and `bind(0)` draw from that range, so a port taken from it could be grabbed by
/// some other connection while an agent is down between a kill and its restart. Within one test
/// process the ports are handed out in sequence from a random start, so never twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let start = std::process::id().wrapping_mul(7919).wrapping_add(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0),
        ) % SPAN;
        let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {LOW} and {}", LOW + SPAN)
}

/// Whether the peer closes `s` within `within` (everything it sends meanwhile is discarded).
pub async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 512];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}
