//! Serving HTTP connections, plain and TLS alike, with the limits every door needs.
//!
//! `axum::serve` sets no timer, so hyper's header-read timeout never ran: a client could open a
//! connection, send half a request line and hold it (and its per-client slot) forever. Each
//! connection here is served by hyper's HTTP/1 server with a timer and
//! `limits.http_read_header_timeout`, which runs whenever the server waits for a request head:
//! a slow or stalled head (slowloris), and an idle keep-alive connection, are closed when it
//! passes. A request being answered (a blocking query waiting up to `max_query_time`) is not
//! affected.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::conn_limit::LimitedHttpListener;

/// How long a client may take to send a request's head, and how long a keep-alive connection
/// may wait idle for its next request (hyper's own default for the former). HTTP clients
/// (Go's, urllib3, reqwest) notice a closed idle connection and dial again.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one accepted connection until it ends, the header-read timeout closes it, or
/// `shutdown` (then requests in flight get a second to finish).
pub(crate) async fn serve_connection<S>(
    io: S,
    peer: SocketAddr,
    app: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        done = conn.as_mut() => if let Err(e) = done {
            tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
        },
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

/// The connections a listener serves, each its own task. When the listener stops they are
/// awaited (each finishes its request in flight within a second of `shutdown`), so an answer
/// already being written reaches its client before the agent's process exits; `PUT
/// /v1/agent/leave`'s own answer races the shutdown it starts.
pub(crate) struct Connections(tokio::task::JoinSet<()>);

impl Connections {
    /// How long a stopping listener waits for its connections.
    const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

    pub(crate) fn new() -> Self {
        Connections(tokio::task::JoinSet::new())
    }

    /// Serves one connection on its own task (reaping those already finished).
    pub(crate) fn spawn(&mut self, connection: impl std::future::Future<Output = ()> + Send + 'static) {
        while self.0.try_join_next().is_some() {}
        self.0.spawn(connection);
    }

    /// Waits for the connections to finish, for at most [`Self::DRAIN_TIMEOUT`]; the rest are
    /// aborted.
    pub(crate) async fn drain(mut self) {
        let all = async { while self.0.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(Self::DRAIN_TIMEOUT, all).await;
    }
}

/// Serves `app` on the plain HTTP listener until `shutdown`.
pub async fn serve_http(
    mut listener: LimitedHttpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) {
    use axum::serve::Listener;
    let mut connections = Connections::new();
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        connections.spawn(serve_connection(io, peer, app.clone(), header_read_timeout, shutdown.clone()));
    }
    connections.drain().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn_limit::ConnLimiter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn server(timeout: Duration) -> (SocketAddr, CancellationToken) {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let app = Router::new().route("/ok", axum::routing::get(|| async { "ok" }));
        let shutdown = CancellationToken::new();
        tokio::spawn(serve_http(LimitedHttpListener::new(tcp, ConnLimiter::new(0)), app, timeout, shutdown.clone()));
        (addr, shutdown)
    }

    /// Slowloris: a request head that never completes is closed after the timeout, and so is
    /// a keep-alive connection left idle; a complete request is answered.
    #[tokio::test]
    async fn stalled_heads_and_idle_connections_are_closed() {
        let (addr, shutdown) = server(Duration::from_millis(300)).await;
        let mut half = TcpStream::connect(addr).await.expect("connect");
        half.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.expect("write");
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        idle.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        let mut answer = [0u8; 1024];
        let n = idle.read(&mut answer).await.expect("read");
        assert!(answer[..n].starts_with(b"HTTP/1.1 200 OK"), "{}", String::from_utf8_lossy(&answer[..n]));
        for (what, conn) in [("half-sent head", &mut half), ("idle keep-alive", &mut idle)] {
            let mut rest = Vec::new();
            let closed = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest)).await;
            assert!(closed.is_ok(), "{what}: still open after the header-read timeout");
        }
        shutdown.cancel();
    }
}
