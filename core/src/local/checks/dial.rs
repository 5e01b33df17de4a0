//! Connecting to a check's target by name, as Go's dialer does for Consul's TCP, gRPC and HTTPS
//! checks: every address the name resolves to is tried, IPv6 and IPv4 interleaved, a new
//! attempt starting 250 ms after the previous one (RFC 8305's "Happy Eyeballs") or at once when
//! it fails. So `localhost:8080` reaches a service listening on 127.0.0.1 only even where
//! `localhost` resolves to `::1` first, and one unreachable address does not use up the check's
//! whole timeout.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::net::TcpStream;

/// Delay before the next address is tried while the previous attempt is still pending.
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Resolves `target` (`host:port`, `[v6]:port`) and connects to the first address that answers.
pub(super) async fn dial(target: &str) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host(target).await.map_err(|e| format!("dial tcp {target}: lookup: {e}"))?.collect();
    if addrs.is_empty() {
        return Err(format!("dial tcp {target}: no addresses"));
    }
    race(interleave(addrs)).await.map_err(|e| format!("dial tcp {target}: {e}"))
}

/// Alternates address families, starting with the first address's (RFC 8305 §4).
fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let first_v6 = addrs[0].is_ipv6();
    let (mut same, mut other): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|a| a.is_ipv6() == first_v6);
    let mut out = Vec::with_capacity(same.len() + other.len());
    same.reverse();
    other.reverse();
    while let Some(a) = same.pop() {
        out.push(a);
        if let Some(b) = other.pop() {
            out.push(b);
        }
    }
    out.extend(other.into_iter().rev());
    out
}

/// Connects to the first of `addrs` that accepts, staggering attempts by [`ATTEMPT_DELAY`].
async fn race(addrs: Vec<SocketAddr>) -> io::Result<TcpStream> {
    let mut pending = addrs.into_iter();
    let mut attempts = FuturesUnordered::new();
    let mut errors: Vec<String> = Vec::new();
    let start = |addr: SocketAddr| async move { (addr, TcpStream::connect(addr).await) };
    if let Some(a) = pending.next() {
        attempts.push(start(a));
    }
    loop {
        let next_attempt = tokio::time::sleep(ATTEMPT_DELAY);
        tokio::select! {
            done = attempts.next() => match done {
                Some((_, Ok(stream))) => return Ok(stream),
                Some((addr, Err(e))) => {
                    errors.push(format!("{addr}: {e}"));
                    if let Some(a) = pending.next() {
                        attempts.push(start(a));
                    } else if attempts.is_empty() {
                        return Err(io::Error::new(io::ErrorKind::ConnectionRefused, errors.join("; ")));
                    }
                }
                None => return Err(io::Error::new(io::ErrorKind::ConnectionRefused, errors.join("; "))),
            },
            _ = next_attempt, if pending.len() > 0 => {
                if let Some(a) = pending.next() {
                    attempts.push(start(a));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn families_alternate_from_the_first() {
        let got = interleave(vec![addr("[::1]:1"), addr("[::2]:1"), addr("127.0.0.1:1"), addr("[::3]:1")]);
        assert_eq!(got, [addr("[::1]:1"), addr("127.0.0.1:1"), addr("[::2]:1"), addr("[::3]:1")]);
        let got = interleave(vec![addr("127.0.0.1:1"), addr("127.0.0.2:1")]);
        assert_eq!(got, [addr("127.0.0.1:1"), addr("127.0.0.2:1")]);
    }

    #[tokio::test]
    async fn a_refused_address_falls_through_to_one_that_listens() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // Nothing listens on 127.0.0.2 at this port (the listener is bound to 127.0.0.1 only).
        let refused = SocketAddr::new("127.0.0.2".parse().expect("ip"), port);
        let t = std::time::Instant::now();
        let stream = race(vec![refused, listener.local_addr().expect("addr")]).await.expect("the second answers");
        assert_eq!(stream.peer_addr().expect("peer").ip().to_string(), "127.0.0.1");
        assert!(t.elapsed() < ATTEMPT_DELAY, "a refusal moves on at once: {:?}", t.elapsed());
    }

    #[tokio::test]
    async fn every_failure_is_reported() {
        let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = free.local_addr().expect("addr").port();
        drop(free);
        let e = race(vec![addr(&format!("127.0.0.1:{port}")), addr(&format!("127.0.0.3:{port}"))])
            .await
            .expect_err("nothing listens");
        let msg = e.to_string();
        assert!(msg.contains(&format!("127.0.0.1:{port}")) && msg.contains(&format!("127.0.0.3:{port}")), "{msg}");
        let e = dial("localhost:notaport").await.expect_err("bad port");
        assert!(e.contains("localhost:notaport"), "{e}");
    }
}
