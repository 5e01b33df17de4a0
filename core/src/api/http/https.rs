//! The HTTPS listener (`ports.https`): the same router as plain HTTP, behind a rustls handshake
//! that takes the agent's current certificates (rotated by reload) for each new connection.
//! With `verify_incoming`, a client without a certificate signed by the CA is refused during
//! the handshake; plain HTTP sent to this port fails the handshake and gets no answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::conn_limit::{ConnLimiter, LogLimiter, REFUSAL_LOG_INTERVAL};
use crate::tls::AgentTls;

/// How long a client may take to finish the TLS handshake (Consul's default
/// `limits.https_handshake_timeout`).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `app` over TLS on `listener` until `shutdown`. A client IP already holding
/// `limiter`'s maximum of connections (`limits.http_max_conns_per_client`) is closed before
/// the handshake.
pub async fn serve_https(
    listener: TcpListener,
    app: Router,
    tls: Arc<AgentTls>,
    shutdown: CancellationToken,
    limiter: ConnLimiter,
    header_read_timeout: Duration,
) {
    // Refusals are logged at most once per interval: a flood of bad handshakes is not a log flood.
    let refusals = Arc::new(LogLimiter::new(REFUSAL_LOG_INTERVAL));
    let mut connections = super::serve::Connections::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "HTTPS accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Some(acceptor) = tls.https_acceptor() else { break };
        let Some(permit) = limiter.try_acquire(peer.ip()) else {
            refused(&refusals, peer, "too many connections from this client (limits.http_max_conns_per_client)");
            continue;
        };
        let (app, shutdown, refusals) = (app.clone(), shutdown.clone(), refusals.clone());
        connections.spawn(async move {
            // Held until the connection ends.
            let _permit = permit;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return refused(&refusals, peer, &e.to_string()),
                Err(_) => return refused(&refusals, peer, "handshake timed out"),
            };
            // HTTP/1.1 with the same limits as the plain listener.
            super::serve::serve_connection(stream, peer, app, header_read_timeout, shutdown).await;
        });
    }
    connections.drain().await;
}

fn refused(throttle: &LogLimiter, peer: SocketAddr, why: &str) {
    if let Some(held_back) = throttle.allow() {
        tracing::info!(%peer, reason = %why, more_refused_since_last_report = held_back, "HTTPS connection refused");
    }
}
