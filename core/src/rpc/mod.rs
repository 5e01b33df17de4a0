//! Server-to-server RPC: length-delimited postcard frames over TCP, multiplexed by request id.
//!
//! One connection per peer carries any number of concurrent requests; each frame is
//! `(request id, message)`. The server side handles every request in its own task so a slow
//! forwarded write never delays a heartbeat. The same framing serves the server RPC port (Raft
//! and forwarding) and the serf_lan port (joins), each with its own handler.

pub mod messages;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

pub use messages::{Request, Response};

/// Largest frame accepted: a snapshot restore travels as one Raft entry.
const MAX_FRAME: usize = 256 * 1024 * 1024;
/// How long a TCP connect may take before the peer counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME).new_codec()
}

/// Why an RPC failed.
///
/// The variants split on one question a caller must answer before retrying anything that
/// changes state: could the peer have received the request? [`RpcError::NotDelivered`] says no
/// (nothing left this process), so any request may be sent again; [`RpcError::ConnectionLost`]
/// and [`RpcError::Timeout`] say "maybe" — the peer may have acted on it — so only a request
/// that is safe to repeat (a read, or a write carrying its request id) may be retried.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The request never left this process: the connection could not be made, or was already
    /// closed when the request was queued.
    #[error("{addr} unreachable: {reason}")]
    NotDelivered {
        /// The peer.
        addr: SocketAddr,
        /// What happened.
        reason: String,
    },
    /// The connection broke after the request was queued for sending and before its answer
    /// came: the peer may or may not have received and acted on it.
    #[error("connection to {0} closed before it answered")]
    ConnectionLost(SocketAddr),
    /// No answer within the deadline (the peer may still act on the request).
    #[error("{0} timed out")]
    Timeout(SocketAddr),
    /// The message could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),
}

impl RpcError {
    /// Whether the peer certainly did not receive the request.
    pub fn not_delivered(&self) -> bool {
        matches!(self, RpcError::NotDelivered { .. } | RpcError::Codec(_))
    }
}

type PendingMap = Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>>;

#[derive(Debug)]
struct Connection {
    outbound: mpsc::UnboundedSender<Bytes>,
    pending: PendingMap,
    next_id: AtomicU64,
}

/// A pool of multiplexed connections to peers.
#[derive(Debug, Clone)]
pub struct RpcClient {
    conns: Arc<Mutex<HashMap<SocketAddr, Arc<Connection>>>>,
    shutdown: CancellationToken,
}

impl RpcClient {
    /// A client whose connections close when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        RpcClient { conns: Arc::default(), shutdown }
    }

    /// Sends `req` to `addr` and waits up to `timeout` for the answer.
    pub async fn call(&self, addr: SocketAddr, req: Request, timeout: Duration) -> Result<Response, RpcError> {
        let conn = self.connection(addr).await?;
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = postcard::to_allocvec(&(id, &req)).map_err(|e| RpcError::Codec(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().insert(id, tx);
        if conn.outbound.send(Bytes::from(frame)).is_err() {
            conn.pending.lock().remove(&id);
            self.conns.lock().remove(&addr);
            return Err(RpcError::NotDelivered { addr, reason: "connection closed".into() });
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(RpcError::ConnectionLost(addr)),
            Err(_) => {
                conn.pending.lock().remove(&id);
                Err(RpcError::Timeout(addr))
            }
        }
    }

    async fn connection(&self, addr: SocketAddr) -> Result<Arc<Connection>, RpcError> {
        if let Some(c) = self.conns.lock().get(&addr) {
            if !c.outbound.is_closed() {
                return Ok(c.clone());
            }
        }
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| RpcError::NotDelivered { addr, reason: "connect timed out".into() })?
            .map_err(|e| RpcError::NotDelivered { addr, reason: e.to_string() })?;
        let _ = stream.set_nodelay(true);
        let (read_half, write_half) = stream.into_split();
        let (outbound, outbound_rx) = mpsc::unbounded_channel::<Bytes>();
        let pending: PendingMap = Arc::default();
        let conn = Arc::new(Connection { outbound, pending: pending.clone(), next_id: AtomicU64::new(1) });
        // A racing caller may have connected meanwhile; keep theirs and drop ours.
        {
            let mut conns = self.conns.lock();
            if let Some(existing) = conns.get(&addr) {
                if !existing.outbound.is_closed() {
                    return Ok(existing.clone());
                }
            }
            conns.insert(addr, conn.clone());
        }
        let shutdown = self.shutdown.clone();
        tokio::spawn(write_frames(write_half, outbound_rx, shutdown.clone()));
        let conns = self.conns.clone();
        let conn_for_cleanup = conn.clone();
        tokio::spawn(async move {
            let mut frames = FramedRead::new(read_half, codec());
            loop {
                let next = tokio::select! {
                    f = frames.next() => f,
                    _ = shutdown.cancelled() => None,
                };
                let Some(Ok(frame)) = next else { break };
                match postcard::from_bytes::<(u64, Response)>(&frame) {
                    Ok((id, resp)) => {
                        if let Some(tx) = pending.lock().remove(&id) {
                            let _ = tx.send(resp);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%addr, error = %e, "undecodable RPC response; closing connection");
                        break;
                    }
                }
            }
            // Fail every waiter at once instead of letting them time out.
            pending.lock().clear();
            let mut conns = conns.lock();
            if conns.get(&addr).is_some_and(|c| Arc::ptr_eq(c, &conn_for_cleanup)) {
                conns.remove(&addr);
            }
        });
        Ok(conn)
    }
}

/// Handles one request; returns its response.
pub type Handler = Arc<dyn Fn(Request) -> BoxFuture<'static, Response> + Send + Sync>;

/// Accepts connections on `listener` until `shutdown`, answering each request with `handler`.
pub async fn serve(listener: TcpListener, handler: Handler, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(stream, peer, handler.clone(), shutdown.clone()));
    }
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, handler: Handler, shutdown: CancellationToken) {
    let (read_half, write_half) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let writer = tokio::spawn(write_frames(write_half, rx, shutdown.clone()));
    let mut frames = FramedRead::new(read_half, codec());
    loop {
        let next = tokio::select! {
            f = frames.next() => f,
            _ = shutdown.cancelled() => None,
        };
        let Some(Ok(frame)) = next else { break };
        let (id, req) = match postcard::from_bytes::<(u64, Request)>(&frame) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "undecodable RPC request; closing connection");
                break;
            }
        };
        let handler = handler.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let resp = handler(req).await;
            match postcard::to_allocvec(&(id, &resp)) {
                Ok(bytes) => {
                    let _ = tx.send(Bytes::from(bytes));
                }
                Err(e) => tracing::error!(error = %e, "could not encode RPC response"),
            }
        });
    }
    drop(tx);
    let _ = writer.await;
}

/// Writes queued frames, coalescing everything already queued into one flush.
async fn write_frames(
    write_half: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    shutdown: CancellationToken,
) {
    let mut sink = FramedWrite::new(write_half, codec());
    loop {
        let frame = tokio::select! {
            f = rx.recv() => f,
            _ = shutdown.cancelled() => None,
        };
        let Some(frame) = frame else { break };
        if sink.feed(frame).await.is_err() {
            break;
        }
        while let Ok(more) = rx.try_recv() {
            if sink.feed(more).await.is_err() {
                return;
            }
        }
        if SinkExt::<Bytes>::flush(&mut sink).await.is_err() {
            break;
        }
    }
}
