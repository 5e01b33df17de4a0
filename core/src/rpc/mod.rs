//! Agent-to-agent RPC: length-delimited postcard frames over TCP, multiplexed by request id.
//!
//! One connection per peer carries any number of concurrent requests; each request frame is
//! `(request id, service, body)` and each answer `(request id, reply)`. The transport knows
//! nothing of what it carries: every subsystem owns its message types and encodes them into the
//! body (Raft messages in `replication::raft`, forwarded requests in `replication::consensus`,
//! gossip in `membership::gossip`, proxied HTTP and DNS in `api`), and a [`Router`] hands each
//! body to the handler registered for its [`Service`]. The server side handles every request
//! in its own task so a slow forwarded write never delays a heartbeat.
//!
//! ### The transport seam
//! [`RpcClient`] is what every subsystem holds; it encodes and decodes, and hands the encoded
//! body to a [`Transport`]: [`TcpTransport`] in agents, [`memory::MemoryNetwork`] (in-memory,
//! with seeded drops, delays, partitions and crashed nodes) in the simulator and unit tests.
//! Both keep the delivery semantics documented on [`RpcError`].
//!
//! The bottom of the stack next to `state`: it calls nothing but the leaf modules.

pub mod memory;

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

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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
    /// The peer received the request but ran nothing for it: no handler for the service on that
    /// port, or a body its handler could not decode.
    #[error("{addr} refused the request: {reason}")]
    Refused {
        /// The peer.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

impl RpcError {
    /// Whether the peer certainly did not receive the request.
    pub fn not_delivered(&self) -> bool {
        matches!(self, RpcError::NotDelivered { .. } | RpcError::Codec(_) | RpcError::Refused { .. })
    }
}

/// Which subsystem a request is for. New services go at the end (the tag is on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Service {
    /// Raft AppendEntries, Vote, InstallSnapshot (server port).
    Raft,
    /// A request forwarded to the leader, or a client agent's write or node read (server port).
    Forward,
    /// Gossip push/pull and joins (serf_lan port).
    Gossip,
    /// Keyring operations fanned out over the pool (serf_lan port).
    Keyring,
    /// A client agent's HTTP request, served by a server's API (server port).
    Http,
    /// A client agent's DNS query, resolved by a server (server port).
    Dns,
}

/// A handler's answer: the encoded response, or why nothing ran.
pub type Reply = Result<Vec<u8>, String>;

/// Handles one request body of one service; returns the encoded response.
pub type Handler = Arc<dyn Fn(Vec<u8>) -> BoxFuture<'static, Reply> + Send + Sync>;

/// The handlers of one listening port, by service.
#[derive(Clone, Default)]
pub struct Router {
    handlers: HashMap<Service, Handler>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("services", &self.handlers.keys().collect::<Vec<_>>()).finish()
    }
}

impl Router {
    /// A router with no services.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `service` with `handle`, which takes the decoded request and returns the response
    /// to encode. A body that does not decode is refused without calling it.
    pub fn route<Req, Resp, F, Fut>(mut self, service: Service, handle: F) -> Self
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Resp> + Send + 'static,
    {
        let handle = Arc::new(handle);
        let handler: Handler = Arc::new(move |body: Vec<u8>| {
            let handle = handle.clone();
            Box::pin(async move {
                let req: Req =
                    postcard::from_bytes(&body).map_err(|e| format!("undecodable {service:?} request: {e}"))?;
                let resp = handle(req).await;
                postcard::to_allocvec(&resp).map_err(|e| format!("could not encode the {service:?} answer: {e}"))
            })
        });
        self.handlers.insert(service, handler);
        self
    }

    /// Runs the handler of `service` on `body` (a transport's server side).
    pub fn dispatch(&self, service: Service, body: Vec<u8>) -> BoxFuture<'static, Reply> {
        match self.handlers.get(&service) {
            Some(h) => h(body),
            None => Box::pin(async move { Err(format!("no {service:?} service on this port")) }),
        }
    }
}

type PendingMap = Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>;

#[derive(Debug)]
struct Connection {
    outbound: mpsc::UnboundedSender<Bytes>,
    pending: PendingMap,
    next_id: AtomicU64,
}

/// Carries one encoded request to a service on a peer and brings back its encoded answer.
///
/// ### To ensure correctness, an implementation must:
/// - answer [`RpcError::NotDelivered`] only when the peer certainly did not receive the request
///   (the caller may then send it again, even a write without a request id);
/// - answer [`RpcError::ConnectionLost`] or [`RpcError::Timeout`] whenever the peer may have
///   received it — whether or not it acted on it;
/// - answer [`RpcError::Refused`] when the peer received it and ran nothing (no handler, an
///   undecodable body);
/// - give up after `timeout` with [`RpcError::Timeout`];
/// - run the peer's handler independently of the caller: a caller that stops waiting (drops
///   the future) does not cancel work the peer already started, as with a real socket.
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Sends `body` to `service` at `addr`; the encoded answer.
    fn call_raw(
        &self,
        addr: SocketAddr,
        service: Service,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<u8>, RpcError>>;
}

/// The RPC client every subsystem holds: typed calls over a [`Transport`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RpcClient {
    transport: Arc<dyn Transport>,
}

impl RpcClient {
    /// A TCP client whose connections close when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        RpcClient::with_transport(Arc::new(TcpTransport::new(shutdown)))
    }

    /// A client over any transport (the in-memory network in simulations).
    pub fn with_transport(transport: Arc<dyn Transport>) -> Self {
        RpcClient { transport }
    }

    /// Sends `req` to `service` at `addr` and waits up to `timeout` for the answer.
    pub async fn call<Req, Resp>(
        &self,
        addr: SocketAddr,
        service: Service,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let body = postcard::to_allocvec(req).map_err(|e| RpcError::Codec(e.to_string()))?;
        let answer = self.call_raw(addr, service, body, timeout).await?;
        postcard::from_bytes(&answer).map_err(|e| RpcError::Codec(format!("{service:?} answer from {addr}: {e}")))
    }

    /// Sends an encoded body to `service` at `addr`; the encoded answer.
    pub async fn call_raw(
        &self,
        addr: SocketAddr,
        service: Service,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        self.transport.call_raw(addr, service, body, timeout).await
    }
}

/// Framed, multiplexed TCP: one connection per peer, any number of concurrent requests on it.
#[derive(Debug)]
pub struct TcpTransport {
    conns: Arc<Mutex<HashMap<SocketAddr, Arc<Connection>>>>,
    shutdown: CancellationToken,
}

impl TcpTransport {
    /// A transport whose connections close when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        TcpTransport { conns: Arc::default(), shutdown }
    }

    async fn send(
        &self,
        addr: SocketAddr,
        service: Service,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        let conn = self.connection(addr).await?;
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = postcard::to_allocvec(&(id, service, body)).map_err(|e| RpcError::Codec(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().insert(id, tx);
        if conn.outbound.send(Bytes::from(frame)).is_err() {
            conn.pending.lock().remove(&id);
            self.conns.lock().remove(&addr);
            return Err(RpcError::NotDelivered { addr, reason: "connection closed".into() });
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(resp))) => Ok(resp),
            Ok(Ok(Err(reason))) => Err(RpcError::Refused { addr, reason }),
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
                match postcard::from_bytes::<(u64, Reply)>(&frame) {
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

impl Transport for TcpTransport {
    fn call_raw(
        &self,
        addr: SocketAddr,
        service: Service,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<u8>, RpcError>> {
        Box::pin(self.send(addr, service, body, timeout))
    }
}

/// Accepts connections on `listener` until `shutdown`, answering each request through `router`.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let router = Arc::new(router);
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
        tokio::spawn(serve_connection(stream, peer, router.clone(), shutdown.clone()));
    }
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, router: Arc<Router>, shutdown: CancellationToken) {
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
        let (id, service, body) = match postcard::from_bytes::<(u64, Service, Vec<u8>)>(&frame) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "undecodable RPC request; closing connection");
                break;
            }
        };
        let reply = router.dispatch(service, body);
        let tx = tx.clone();
        tokio::spawn(async move {
            let resp = reply.await;
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
