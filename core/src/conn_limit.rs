//! Per-client connection limits: Consul's `limits.http_max_conns_per_client` (HTTP and HTTPS
//! listeners) and `limits.rpc_max_conns_per_client` (the server RPC and serf_lan TCP ports).
//!
//! A [`ConnLimiter`] counts the open connections of each client IP; a connection past the
//! limit is turned away at accept (plain HTTP first gets Consul's `429 Too Many Requests`), so
//! one client cannot exhaust the agent's sockets. The count drops when the connection's
//! [`ConnPermit`] (carried by the stream, see [`Limited`]) is dropped, however the connection
//! ends. Each listener has its own limiter: the limits are per listener kind, as in Consul.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Counts open connections per client IP against a maximum (0: no limit).
#[derive(Debug, Clone)]
pub struct ConnLimiter {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ConnLimiter {
    /// A limiter allowing `max` simultaneous connections per client IP; 0 allows any number.
    pub fn new(max: usize) -> Self {
        ConnLimiter { max, open: Arc::default() }
    }

    /// The configured maximum (0: none).
    pub fn max(&self) -> usize {
        self.max
    }

    /// A permit for one more connection from `ip`, or `None` when `ip` already holds `max`.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<ConnPermit> {
        if self.max == 0 {
            return Some(ConnPermit { limiter: None, ip });
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ConnPermit { limiter: Some(self.clone()), ip })
    }

    /// Connections `ip` holds now.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).get(&ip).copied().unwrap_or(0)
    }

    fn release(&self, ip: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                // Forget idle clients, so the map stays as small as the set of connected ones.
                open.remove(&ip);
            }
        }
    }
}

/// One counted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnPermit {
    limiter: Option<ConnLimiter>,
    ip: IpAddr,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let Some(l) = &self.limiter {
            l.release(self.ip);
        }
    }
}

/// A stream that holds its connection's [`ConnPermit`] for as long as it lives.
#[derive(Debug)]
pub struct Limited<S> {
    inner: S,
    _permit: ConnPermit,
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Lets one log line through per period and counts the ones held back, so a peer hammering a
/// listener with junk or refused connections cannot flood the log. Each listener owns its own
/// (several agents can share a process, so nothing is global).
#[derive(Debug)]
pub struct LogLimiter {
    every: Duration,
    state: Mutex<(Option<std::time::Instant>, u64)>,
}

impl LogLimiter {
    /// At most one line per `every`.
    pub fn new(every: Duration) -> Self {
        LogLimiter { every, state: Mutex::new((None, 0)) }
    }

    /// Whether this event may be logged as a WARN; if so, how many were held back since the
    /// last one.
    pub fn allow(&self) -> Option<u64> {
        let now = std::time::Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.0 {
            Some(last) if now.duration_since(last) < self.every => {
                s.1 += 1;
                None
            }
            _ => {
                s.0 = Some(now);
                Some(std::mem::take(&mut s.1))
            }
        }
    }
}

/// How often a listener may log a refused connection.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What a plain-HTTP client past the limit reads before the connection closes (Consul's
/// answer, from go-connlimit).
const TOO_MANY: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: 52\r\n\
Connection: close\r\n\r\nYour IP is issuing too many concurrent connections.\n";

/// The plain HTTP listener with `limits.http_max_conns_per_client` applied: an
/// [`axum::serve::Listener`] whose connections carry their permit; a client past the limit is
/// answered 429 and closed without reaching the router.
#[derive(Debug)]
pub struct LimitedHttpListener {
    inner: TcpListener,
    limiter: ConnLimiter,
    refusals: LogLimiter,
}

impl LimitedHttpListener {
    /// Wraps `inner`, counting connections with `limiter`.
    pub fn new(inner: TcpListener, limiter: ConnLimiter) -> Self {
        LimitedHttpListener { inner, limiter, refusals: LogLimiter::new(REFUSAL_LOG_INTERVAL) }
    }
}

impl axum::serve::Listener for LimitedHttpListener {
    type Io = Limited<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = match self.inner.accept().await {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::debug!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self.limiter.try_acquire(peer.ip()) {
                Some(permit) => return (Limited { inner: stream, _permit: permit }, peer),
                None => {
                    if let Some(held_back) = self.refusals.allow() {
                        tracing::warn!(%peer, limit = self.limiter.max(), more_refused_since_last_report = held_back,
                            "HTTP connection refused: too many from this client (limits.http_max_conns_per_client)");
                    }
                    tokio::spawn(async move {
                        let mut stream = stream;
                        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(TOO_MANY)).await;
                        let _ = stream.shutdown().await;
                    });
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_ip_and_frees_on_drop() {
        let l = ConnLimiter::new(2);
        let (a, b): (IpAddr, IpAddr) =
            ("127.0.0.1".parse().expect("test value"), "127.0.0.2".parse().expect("test value"));
        let p1 = l.try_acquire(a).expect("first");
        let p2 = l.try_acquire(a).expect("second");
        assert!(l.try_acquire(a).is_none(), "third from the same IP");
        let other = l.try_acquire(b).expect("another IP has its own count");
        assert_eq!(l.open_from(a), 2);
        drop(p1);
        assert_eq!(l.open_from(a), 1);
        let p3 = l.try_acquire(a).expect("a freed slot is reusable");
        drop((p2, p3, other));
        assert_eq!(l.open_from(a), 0);
        assert!(l.open.lock().expect("test value").is_empty(), "idle clients are forgotten");
    }

    #[test]
    fn zero_means_no_limit() {
        let l = ConnLimiter::new(0);
        let ip: IpAddr = "127.0.0.1".parse().expect("test value");
        let permits: Vec<_> = (0..10_000).map(|_| l.try_acquire(ip).expect("unlimited")).collect();
        assert_eq!(permits.len(), 10_000);
        assert_eq!(l.open_from(ip), 0, "nothing is counted without a limit");
    }

    #[tokio::test]
    async fn http_listener_answers_429_past_the_limit() {
        use tokio::io::AsyncReadExt;
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("test value");
        let addr = tcp.local_addr().expect("test value");
        let mut listener = LimitedHttpListener::new(tcp, ConnLimiter::new(1));
        let first = TcpStream::connect(addr).await.expect("test value");
        let (held, _) = axum::serve::Listener::accept(&mut listener).await;
        let mut second = TcpStream::connect(addr).await.expect("test value");
        // The listener turns the second away while looking for the next admitted connection.
        let accept_next = tokio::spawn(async move {
            let (io, peer) = axum::serve::Listener::accept(&mut listener).await;
            (io, peer, listener)
        });
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), second.read_to_string(&mut answer))
            .await
            .expect("test value")
            .expect("test value");
        assert!(answer.starts_with("HTTP/1.1 429 Too Many Requests\r\n"), "{answer}");
        // Once the first connection (and its permit) is gone, a new one is admitted.
        drop((first, held));
        let _third = TcpStream::connect(addr).await.expect("test value");
        let (_io, peer, _l) =
            tokio::time::timeout(Duration::from_secs(5), accept_next).await.expect("test value").expect("test value");
        assert_eq!(peer.ip(), addr.ip());
    }
}
