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
//! ### TLS
//! The server port speaks TLS when the agent's `tls` settings give it a certificate (see
//! [`crate::tls`]): a connection whose first byte starts a TLS handshake record is handed to
//! rustls, any other is plaintext framing — served, or with `verify_incoming` refused with a
//! reply that says why. Outgoing connections to servers use TLS with `verify_outgoing`. The
//! serf port stays plaintext, as in Consul (gossip has its own encryption).
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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::conn_limit::ConnLimiter;
use crate::tls::{AgentTls, Plaintext};

/// Largest frame accepted: a snapshot restore travels as one Raft entry.
const MAX_FRAME: usize = 256 * 1024 * 1024;
/// How long a TCP connect may take before the peer counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a new connection may take to show what it speaks and finish a TLS handshake
/// (Consul's default `limits.rpc_handshake_timeout`).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The first byte of a TLS handshake record (a ClientHello). Plaintext frames start with their
/// big-endian length, whose first byte is 0 below 16 MiB and never 0x16 within [`MAX_FRAME`].
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// How many requests of a refused plaintext connection are answered with the reason.
const REFUSALS_PER_CONNECTION: usize = 64;

/// A byte stream a connection runs over: plain TCP or TLS.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

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

/// Waiters by request id; `None` once the connection's reader has stopped, so a request
/// registered after that fails at once instead of waiting for an answer that cannot come.
type PendingMap = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Reply>>>>>;

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

    /// A TCP client for the server port: TLS when `tls` says `verify_outgoing`.
    pub fn with_tls(shutdown: CancellationToken, tls: Option<Arc<AgentTls>>) -> Self {
        RpcClient::with_transport(Arc::new(TcpTransport { tls, ..TcpTransport::new(shutdown) }))
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
    tls: Option<Arc<AgentTls>>,
}

impl TcpTransport {
    /// A plaintext transport whose connections close when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        TcpTransport { conns: Arc::default(), shutdown, tls: None }
    }

    /// Connects to `addr`, with a TLS handshake when configured; the stream and whether it is TLS.
    async fn dial(&self, addr: SocketAddr) -> Result<(Box<dyn Stream>, bool), RpcError> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| RpcError::NotDelivered { addr, reason: "connect timed out".into() })?
            .map_err(|e| RpcError::NotDelivered { addr, reason: e.to_string() })?;
        let _ = tcp.set_nodelay(true);
        let Some((connector, name)) = self.tls.as_ref().and_then(|t| t.rpc_connector()) else {
            return Ok((Box::new(tcp), false));
        };
        let refused = |reason: String| {
            tracing::warn!(%addr, %reason, "RPC TLS handshake failed");
            RpcError::NotDelivered { addr, reason }
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => Ok((Box::new(tls), true)),
            Ok(Err(e)) => Err(refused(format!("TLS handshake: {e}"))),
            Err(_) => Err(refused("TLS handshake timed out".into())),
        }
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
        match conn.pending.lock().as_mut() {
            Some(waiters) => waiters.insert(id, tx),
            None => {
                self.conns.lock().remove(&addr);
                return Err(RpcError::NotDelivered { addr, reason: "connection closed".into() });
            }
        };
        if conn.outbound.send(Bytes::from(frame)).is_err() {
            if let Some(w) = conn.pending.lock().as_mut() {
                w.remove(&id);
            }
            self.conns.lock().remove(&addr);
            return Err(RpcError::NotDelivered { addr, reason: "connection closed".into() });
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(resp))) => Ok(resp),
            Ok(Ok(Err(reason))) => Err(RpcError::Refused { addr, reason }),
            Ok(Err(_)) => Err(RpcError::ConnectionLost(addr)),
            Err(_) => {
                if let Some(w) = conn.pending.lock().as_mut() {
                    w.remove(&id);
                }
                Err(RpcError::Timeout(addr))
            }
        }
    }

    async fn connection(&self, addr: SocketAddr) -> Result<Arc<Connection>, RpcError> {
        if let Some(c) = self.conns.lock().get(&addr) {
            if !c.outbound.is_closed() && c.pending.lock().is_some() {
                return Ok(c.clone());
            }
        }
        let (stream, is_tls) = self.dial(addr).await?;
        let (read_half, write_half) = tokio::io::split(stream);
        let (outbound, outbound_rx) = mpsc::unbounded_channel::<Bytes>();
        let pending: PendingMap = Arc::new(Mutex::new(Some(HashMap::new())));
        let conn = Arc::new(Connection { outbound, pending: pending.clone(), next_id: AtomicU64::new(1) });
        // A racing caller may have connected meanwhile; keep theirs and drop ours.
        {
            let mut conns = self.conns.lock();
            if let Some(existing) = conns.get(&addr) {
                if !existing.outbound.is_closed() && existing.pending.lock().is_some() {
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
                let frame = match next {
                    Some(Ok(frame)) => frame,
                    // A peer that refuses our certificate says so with a TLS alert, which
                    // TLS 1.3 delivers only after the handshake looked complete here.
                    Some(Err(e)) if is_tls => {
                        tracing::warn!(%addr, error = %e, "RPC connection over TLS failed");
                        break;
                    }
                    _ => break,
                };
                match postcard::from_bytes::<(u64, Reply)>(&frame) {
                    Ok((id, resp)) => {
                        if let Some(tx) = pending.lock().as_mut().and_then(|w| w.remove(&id)) {
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
            pending.lock().take();
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

/// Accepts plaintext connections on `listener` until `shutdown`, answering each request
/// through `router`.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    serve_with_tls(listener, router, shutdown, None).await
}

/// [`serve`], with TLS as `tls` configures it (the server port).
pub async fn serve_with_tls(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    tls: Option<Arc<AgentTls>>,
) {
    serve_limited(listener, router, shutdown, tls, ConnLimiter::new(0)).await
}

/// [`serve_with_tls`], turning away a client IP that already holds `limiter`'s maximum of
/// connections (`limits.rpc_max_conns_per_client`): its new connection is closed at once.
pub async fn serve_limited(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    tls: Option<Arc<AgentTls>>,
    limiter: ConnLimiter,
) {
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
        let Some(permit) = limiter.try_acquire(peer.ip()) else {
            tracing::warn!(%peer, limit = limiter.max(), "RPC connection refused: too many from this client (limits.rpc_max_conns_per_client)");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (router, shutdown, tls) = (router.clone(), shutdown.clone(), tls.clone());
        tokio::spawn(async move {
            // Held until the connection is served to its end.
            let _permit = permit;
            let stream = match tls {
                None => Box::new(stream),
                Some(tls) => match accept(stream, peer, &tls).await {
                    Some(s) => s,
                    None => return,
                },
            };
            serve_connection(stream, peer, router, shutdown).await;
        });
    }
}

/// What a new connection on a TLS-configured port speaks: TLS (handshake done), or plaintext
/// when allowed. `None`: closed (the reason is logged, and a refused plaintext peer is told).
async fn accept(stream: TcpStream, peer: SocketAddr, tls: &AgentTls) -> Option<Box<dyn Stream>> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return None,
    }
    if first[0] == TLS_HANDSHAKE_RECORD {
        let Some(acceptor) = tls.rpc_acceptor() else {
            tracing::warn!(%peer, "TLS RPC connection refused: this agent has no certificate (cert_file, key_file)");
            return None;
        };
        return match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(s)) => Some(Box::new(s)),
            Ok(Err(e)) => {
                tracing::warn!(%peer, error = %e, "RPC TLS handshake failed; connection refused");
                None
            }
            Err(_) => {
                tracing::warn!(%peer, "RPC TLS handshake timed out; connection refused");
                None
            }
        };
    }
    match tls.rpc_plaintext() {
        Plaintext::Allowed => Some(Box::new(stream)),
        Plaintext::Refused => {
            tracing::warn!(%peer, "plaintext RPC connection refused: verify_incoming requires TLS with a certificate");
            refuse_plaintext(stream).await;
            None
        }
    }
}

/// Answers the requests of a refused plaintext connection with the reason, so the peer can say
/// why it failed instead of seeing a bare close: every request already queued on the connection
/// (several subsystems share it) and any sent within [`HANDSHAKE_TIMEOUT`], at most
/// [`REFUSALS_PER_CONNECTION`]; then the connection closes.
async fn refuse_plaintext(stream: TcpStream) {
    let (read_half, write_half) = stream.into_split();
    let mut frames = FramedRead::new(read_half, codec());
    let mut sink = FramedWrite::new(write_half, codec());
    let reply: Reply = Err("this server requires TLS (verify_incoming): set verify_outgoing and a certificate".into());
    for _ in 0..REFUSALS_PER_CONNECTION {
        let Ok(Some(Ok(frame))) = tokio::time::timeout(HANDSHAKE_TIMEOUT, frames.next()).await else { return };
        let Ok((id, _, _)) = postcard::from_bytes::<(u64, Service, Vec<u8>)>(&frame) else { return };
        let Ok(bytes) = postcard::to_allocvec(&(id, &reply)) else { return };
        if sink.send(Bytes::from(bytes)).await.is_err() {
            return;
        }
    }
}

async fn serve_connection(stream: Box<dyn Stream>, peer: SocketAddr, router: Arc<Router>, shutdown: CancellationToken) {
    let (read_half, write_half) = tokio::io::split(stream);
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
async fn write_frames<W: AsyncWrite + Unpin>(
    write_half: W,
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
