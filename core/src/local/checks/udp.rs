//! UDP checks (Consul's `CheckUDP`): send a datagram; a reply, or silence until the timeout, is
//! passing; an error coming back (ICMP port unreachable surfaces as `ConnectionRefused` on a
//! connected socket) is critical.

use std::time::Duration;

use tokio::net::UdpSocket;

use super::Outcome;
use crate::state::catalog::{CRITICAL, PASSING};

/// The outcome, and whether it was a round trip (a reply came back): only then is its latency
/// the service's, so latency thresholds apply.
pub(super) async fn check(address: &str, timeout: Duration) -> (Outcome, bool) {
    let fail = |e: &dyn std::fmt::Display| ((CRITICAL, format!("UDP check {address}: {e}")), false);
    let target = match tokio::net::lookup_host(address).await.map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        Ok(None) => return fail(&"no address found"),
        Err(e) => return fail(&e),
    };
    let local = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let sock = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    if let Err(e) = sock.connect(target).await {
        return fail(&e);
    }
    if let Err(e) = sock.send(b"consul-rs health check").await {
        return fail(&e);
    }
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(timeout, sock.recv(&mut buf)).await {
        Ok(Ok(n)) => ((PASSING, format!("UDP check {address}: received {n} bytes")), true),
        Ok(Err(e)) => fail(&e),
        Err(_) => ((PASSING, format!("UDP check {address}: no error within {timeout:?}")), false),
    }
}
