//! Agent-to-agent RPC: framed requests over TCP, multiplexed by request id.
//!
//! One connection per peer carries any number of concurrent requests; each request frame is
//! `(request id, service, body)` and each answer `(request id, reply)` (the wire format, a
//! preamble and a fixed frame header, is described in `wire.rs`). The transport knows
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
//! ### Bounds on what a connection may cost
//! Both ports are open to anyone who can reach them, so a connection gets nothing until it
//! proves it speaks the protocol: a 5-byte preamble, read into a stack buffer within
//! `limits.rpc_handshake_timeout`. Each frame then carries its length and service in a fixed
//! header, checked against that service's limit ([`request_max`]) before any body byte is
//! read, and the body buffer grows only as bytes arrive; bodies over 1 MiB are read only when
//! the listener's 512 MiB budget for large frames has room. A frame that stalls is dropped with
//! its connection after [`ServeOptions::read_timeout`]; a connection with nothing running is
//! closed after [`ServeOptions::idle_timeout`] with a GoAway frame naming the last request it
//! processed, so the client re-sends the rest on a new connection and nothing runs twice; each
//! client IP holds at most `limits.rpc_max_conns_per_client` connections per port. Connections
//! closed for not following the protocol are logged as one WARN per listener per 10 s.
//!
//! ### TLS
//! The server port speaks TLS when the agent's `tls` settings give it a certificate (see
//! [`crate::tls`]): a connection whose first byte starts a TLS handshake record is handed to
//! rustls (and the preamble follows inside TLS), any other is plaintext framing — served, or
//! with `verify_incoming` refused with a reply that says why. Outgoing connections to servers
//! use TLS with `verify_outgoing`. The serf port stays plaintext, as in Consul (gossip has its
//! own encryption).
//!
//! The bottom of the stack next to `state`: it calls nothing but the leaf modules.

pub mod memory;
pub(crate) mod wire;

pub use wire::{request_max, FrameError, FORWARDED_HTTP_BODY_MAX};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{BytesCodec, FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::conn_limit::{ConnLimiter, LogLimiter, REFUSAL_LOG_INTERVAL};
use crate::tls::{AgentTls, Plaintext};

/// How long a TCP connect may take before the peer counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a new connection may take to show what it speaks, finish a TLS handshake and
/// exchange the preamble (Consul's default `limits.rpc_handshake_timeout`).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a server keeps a connection with no request running and no frame arriving. Above
/// Consul's client-side pool idle time (127 s); the client re-dials transparently anyway.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a frame that started arriving may go without a byte before the connection closes.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The first byte of a TLS handshake record (a ClientHello). A plaintext connection starts with
/// [`wire::PREAMBLE`], whose first byte is `C`.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// How many requests of a refused plaintext connection are answered with the reason.
const REFUSALS_PER_CONNECTION: usize = 64;

/// A byte stream a connection runs over: plain TCP or TLS.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

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

/// Which subsystem a request is for. Each has a fixed tag on the wire (see `wire.rs`).
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

    /// Whether `service` has a handler here.
    pub fn serves(&self, service: Service) -> bool {
        self.handlers.contains_key(&service)
    }

    /// Runs the handler of `service` on `body` (a transport's server side).
    pub fn dispatch(&self, service: Service, body: Vec<u8>) -> BoxFuture<'static, Reply> {
        match self.handlers.get(&service) {
            Some(h) => h(body),
            None => Box::pin(async move { Err(format!("no {service:?} service on this port")) }),
        }
    }
}

/// What a caller waiting on a request learns.
#[derive(Debug)]
enum Outcome {
    /// The peer's answer.
    Answer(Reply),
    /// The server closed the connection (idle) without processing the request: it may be sent
    /// again as if it had never left.
    NotProcessed,
}

/// Waiters by request id; `None` once the connection's reader has stopped, so a request
/// registered after that fails at once instead of waiting for an answer that cannot come.
type PendingMap = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Outcome>>>>>;

#[derive(Debug)]
struct Connection {
    /// Complete frames to write. Requests are queued under the `pending` lock in id order, so
    /// the server sees ids increasing, which its GoAway relies on.
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

    /// A TCP client for the server port of another datacenter's servers: TLS as
    /// [`RpcClient::with_tls`], verifying their certificates against that datacenter's name.
    pub fn with_tls_for_datacenter(shutdown: CancellationToken, tls: Arc<AgentTls>, datacenter: &str) -> Self {
        let transport =
            TcpTransport { tls: Some(tls), datacenter: Some(datacenter.to_string()), ..TcpTransport::new(shutdown) };
        RpcClient::with_transport(Arc::new(transport))
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
///
/// A connection the server closes as idle tells which requests it never processed (a GoAway
/// frame); those are sent once more on a new connection, so an idle close is invisible to
/// callers and never makes a write run twice.
#[derive(Debug)]
pub struct TcpTransport {
    conns: Arc<Mutex<HashMap<SocketAddr, Arc<Connection>>>>,
    shutdown: CancellationToken,
    tls: Option<Arc<AgentTls>>,
    /// The datacenter whose servers this transport dials, when not our own: their TLS
    /// certificates carry that datacenter's server name.
    datacenter: Option<String>,
}

impl TcpTransport {
    /// A plaintext transport whose connections close when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        TcpTransport { conns: Arc::default(), shutdown, tls: None, datacenter: None }
    }

    /// Connects to `addr`, with a TLS handshake when configured, and exchanges the preamble;
    /// the stream and whether it is TLS.
    async fn dial(&self, addr: SocketAddr) -> Result<(Box<dyn Stream>, bool), RpcError> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| RpcError::NotDelivered { addr, reason: "connect timed out".into() })?
            .map_err(|e| RpcError::NotDelivered { addr, reason: e.to_string() })?;
        let _ = tcp.set_nodelay(true);
        let connector = self.tls.as_ref().and_then(|t| match &self.datacenter {
            Some(dc) => t.rpc_connector_for(dc),
            None => t.rpc_connector(),
        });
        let (mut stream, is_tls): (Box<dyn Stream>, bool) = match connector {
            None => (Box::new(tcp), false),
            Some((connector, name)) => {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp)).await {
                    Ok(Ok(tls)) => (Box::new(tls), true),
                    Ok(Err(e)) => return Err(tls_refused(addr, format!("TLS handshake: {e}"))),
                    Err(_) => return Err(tls_refused(addr, "TLS handshake timed out".into())),
                }
            }
        };
        let exchange = async {
            stream.write_all(&wire::PREAMBLE).await?;
            stream.flush().await?;
            let mut answer = [0u8; wire::PREAMBLE.len()];
            stream.read_exact(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange).await {
            Ok(Ok(answer)) if answer == wire::PREAMBLE => Ok((stream, is_tls)),
            Ok(Ok(answer)) => Err(RpcError::NotDelivered {
                addr,
                reason: format!("not a consul-rs RPC port of this protocol version (preamble {answer:02x?})"),
            }),
            // A peer that refuses our certificate says so with a TLS alert, which TLS 1.3
            // delivers only after the handshake looked complete here.
            Ok(Err(e)) if is_tls => Err(tls_refused(addr, format!("TLS connection failed: {e}"))),
            Ok(Err(e)) => Err(RpcError::NotDelivered { addr, reason: format!("RPC preamble: {e}") }),
            Err(_) => Err(RpcError::NotDelivered { addr, reason: "RPC preamble timed out".into() }),
        }
    }

    async fn send(
        &self,
        addr: SocketAddr,
        service: Service,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        let max = wire::request_max(service);
        if body.len() > max {
            return Err(RpcError::Codec(format!(
                "{service:?} request of {} bytes exceeds the limit of {max}",
                body.len()
            )));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        // Twice at most: a connection found closed, or closed as idle before the server
        // processed the request, did not deliver it, so a fresh connection may carry it.
        for _ in 0..2 {
            if let Some(result) = self.send_once(addr, service, &body, deadline).await {
                return result;
            }
        }
        Err(RpcError::NotDelivered { addr, reason: "connection closed before the request was processed".into() })
    }

    /// One attempt; `None` when the request certainly was not processed and may be sent again.
    async fn send_once(
        &self,
        addr: SocketAddr,
        service: Service,
        body: &[u8],
        deadline: tokio::time::Instant,
    ) -> Option<Result<Vec<u8>, RpcError>> {
        let conn = match self.connection(addr).await {
            Ok(c) => c,
            Err(e) => return Some(Err(e)),
        };
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut pending = conn.pending.lock();
            let Some(waiters) = pending.as_mut() else {
                drop(pending);
                self.forget(addr, &conn);
                return None;
            };
            let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
            let Some(frame) = wire::encode(service.tag(), id, body) else {
                return Some(Err(RpcError::Codec("request too large for a frame".into())));
            };
            if conn.outbound.send(frame).is_err() {
                drop(pending);
                self.forget(addr, &conn);
                return None;
            }
            waiters.insert(id, tx);
            id
        };
        Some(match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Outcome::Answer(Ok(resp)))) => Ok(resp),
            Ok(Ok(Outcome::Answer(Err(reason)))) => Err(RpcError::Refused { addr, reason }),
            Ok(Ok(Outcome::NotProcessed)) => return None,
            Ok(Err(_)) => Err(RpcError::ConnectionLost(addr)),
            Err(_) => {
                if let Some(w) = conn.pending.lock().as_mut() {
                    w.remove(&id);
                }
                Err(RpcError::Timeout(addr))
            }
        })
    }

    /// Drops `conn` from the pool unless another connection replaced it already.
    fn forget(&self, addr: SocketAddr, conn: &Arc<Connection>) {
        let mut conns = self.conns.lock();
        if conns.get(&addr).is_some_and(|c| Arc::ptr_eq(c, conn)) {
            conns.remove(&addr);
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
        // Cancelled when the reader stops, so the writer lets go of the socket too.
        let closed = self.shutdown.child_token();
        tokio::spawn(write_frames(write_half, outbound_rx, closed.clone()));
        let conns = self.conns.clone();
        let conn_for_cleanup = conn.clone();
        tokio::spawn(async move {
            let mut frames = FramedRead::new(read_half, wire::answer_decoder());
            let mut go_away = None;
            loop {
                let next = tokio::select! {
                    f = frames.next() => f,
                    _ = closed.cancelled() => None,
                };
                let frame = match next {
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) => {
                        if is_tls {
                            tracing::warn!(%addr, error = %e, "RPC connection over TLS failed");
                        } else {
                            tracing::debug!(%addr, error = %e, "RPC connection failed");
                        }
                        break;
                    }
                    None => break,
                };
                let answer = match frame.tag {
                    wire::TAG_OK => Ok(Vec::from(frame.body)),
                    wire::TAG_ERR => Err(String::from_utf8_lossy(&frame.body).into_owned()),
                    _ => {
                        go_away = Some(frame.id);
                        break;
                    }
                };
                if let Some(tx) = pending.lock().as_mut().and_then(|w| w.remove(&frame.id)) {
                    let _ = tx.send(Outcome::Answer(answer));
                }
            }
            // Fail every waiter at once instead of letting them time out; those the server
            // says it never processed may be sent again.
            let waiters = pending.lock().take().unwrap_or_default();
            {
                let mut conns = conns.lock();
                if conns.get(&addr).is_some_and(|c| Arc::ptr_eq(c, &conn_for_cleanup)) {
                    conns.remove(&addr);
                }
            }
            closed.cancel();
            for (id, tx) in waiters {
                if go_away.is_some_and(|last| id > last) {
                    let _ = tx.send(Outcome::NotProcessed);
                }
            }
        });
        Ok(conn)
    }
}

fn tls_refused(addr: SocketAddr, reason: String) -> RpcError {
    tracing::warn!(%addr, %reason, "RPC TLS handshake failed");
    RpcError::NotDelivered { addr, reason }
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

/// How a listening port bounds what its connections may cost in memory, time and number.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The port's name in logs (`server RPC`, `serf_lan`).
    pub name: &'static str,
    /// TLS as the agent's `tls` settings configure it (the server port); `None`: plaintext.
    pub tls: Option<Arc<AgentTls>>,
    /// Open connections per client IP (`limits.rpc_max_conns_per_client`).
    pub limiter: ConnLimiter,
    /// How long a new connection may take for its TLS handshake and for its preamble, each
    /// (`limits.rpc_handshake_timeout`). Zero: no handshake deadline, as in Consul; a silent
    /// connection is then closed after `idle_timeout`.
    pub handshake_timeout: Duration,
    /// How long a connection may stay with no request running and no frame arriving; then the
    /// server closes it with a GoAway frame, which lets the client re-send what it just queued.
    pub idle_timeout: Duration,
    /// How long a frame that started arriving may go without a byte.
    pub read_timeout: Duration,
}

impl ServeOptions {
    /// Plaintext, no connection limit, default timeouts.
    pub fn new(name: &'static str) -> Self {
        ServeOptions {
            name,
            tls: None,
            limiter: ConnLimiter::new(0),
            handshake_timeout: HANDSHAKE_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            read_timeout: READ_TIMEOUT,
        }
    }

    fn handshake_wait(&self) -> Duration {
        if self.handshake_timeout.is_zero() {
            self.idle_timeout
        } else {
            self.handshake_timeout
        }
    }
}

/// One listening port: its handlers, its bounds, and its log limiters.
#[derive(Debug)]
struct Listener {
    router: Arc<Router>,
    opts: ServeOptions,
    /// Connections that do not speak the protocol (or stall, or send oversized frames).
    junk: LogLimiter,
    /// Connections past the per-client limit.
    over_limit: LogLimiter,
    /// Room for the large frames its connections are receiving.
    budget: wire::FrameBudget,
}

impl Listener {
    /// Logs a connection closed for not following the protocol: one WARN per period.
    fn junk(&self, peer: SocketAddr, reason: &str) {
        match self.junk.allow() {
            Some(suppressed) => tracing::warn!(
                listener = self.opts.name,
                %peer,
                %reason,
                suppressed,
                "RPC connection closed (further ones for the next {}s are logged at debug)",
                REFUSAL_LOG_INTERVAL.as_secs()
            ),
            None => tracing::debug!(listener = self.opts.name, %peer, %reason, "RPC connection closed"),
        }
    }
}

/// Accepts plaintext connections on `listener` until `shutdown`, answering each request
/// through `router`, with default bounds and no per-client limit.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    serve_with(listener, router, shutdown, ServeOptions::new("RPC")).await
}

/// Accepts connections on `listener` until `shutdown`, answering each request through
/// `router`, within `opts`: a client IP that already holds its maximum of connections has its
/// new one closed at once; a connection that does not open with the preamble within the
/// handshake timeout, announces a frame over its service's limit ([`request_max`]), stalls in
/// a frame or stays idle is closed.
pub async fn serve_with(listener: TcpListener, router: Router, shutdown: CancellationToken, opts: ServeOptions) {
    let l = Arc::new(Listener {
        router: Arc::new(router),
        opts,
        junk: LogLimiter::new(REFUSAL_LOG_INTERVAL),
        over_limit: LogLimiter::new(REFUSAL_LOG_INTERVAL),
        budget: wire::FrameBudget::new(wire::FRAME_BUDGET),
    });
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
        let Some(permit) = l.opts.limiter.try_acquire(peer.ip()) else {
            let limit = l.opts.limiter.max();
            match l.over_limit.allow() {
                Some(suppressed) => tracing::warn!(listener = l.opts.name, %peer, limit, suppressed,
                    "RPC connection refused: too many from this client (limits.rpc_max_conns_per_client)"),
                None => {
                    tracing::debug!(listener = l.opts.name, %peer, limit, "RPC connection refused: too many from this client")
                }
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (l, shutdown) = (l.clone(), shutdown.clone());
        tokio::spawn(async move {
            // Held until the connection is served to its end.
            let _permit = permit;
            let (stream, refuse): (Box<dyn Stream>, bool) = match &l.opts.tls {
                None => (Box::new(stream), false),
                Some(tls) => match accept(stream, peer, tls, &l).await {
                    Some(s) => s,
                    None => return,
                },
            };
            serve_connection(stream, peer, l, refuse, shutdown).await;
        });
    }
}

/// What a new connection on a TLS-configured port speaks: TLS (handshake done), or plaintext;
/// `true` when plaintext is to be refused (`verify_incoming`). `None`: closed, the reason logged.
async fn accept(stream: TcpStream, peer: SocketAddr, tls: &AgentTls, l: &Listener) -> Option<(Box<dyn Stream>, bool)> {
    let wait = l.opts.handshake_wait();
    let mut first = [0u8; 1];
    match tokio::time::timeout(wait, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        Ok(_) => return None,
        Err(_) => {
            l.junk(peer, "sent nothing within the handshake timeout");
            return None;
        }
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        return match tls.rpc_plaintext() {
            Plaintext::Allowed => Some((Box::new(stream), false)),
            Plaintext::Refused => {
                l.junk(peer, "plaintext RPC connection refused: verify_incoming requires TLS with a certificate");
                Some((Box::new(stream), true))
            }
        };
    }
    let Some(acceptor) = tls.rpc_acceptor() else {
        l.junk(peer, "TLS RPC connection refused: this agent has no certificate (cert_file, key_file)");
        return None;
    };
    match tokio::time::timeout(wait, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some((Box::new(s), false)),
        Ok(Err(e)) => {
            l.junk(peer, &format!("RPC TLS handshake failed: {e}"));
            None
        }
        Err(_) => {
            l.junk(peer, "RPC TLS handshake timed out");
            None
        }
    }
}

/// Bookkeeping of a served connection's running requests, for the idle timeout.
#[derive(Debug)]
struct Activity {
    running: usize,
    last_answer: tokio::time::Instant,
}

/// Serves one connection: the preamble first (into a fixed buffer, within the handshake
/// timeout), then frames until the peer closes, a bound is crossed, or `shutdown`.
async fn serve_connection(
    mut stream: Box<dyn Stream>,
    peer: SocketAddr,
    l: Arc<Listener>,
    refuse: bool,
    shutdown: CancellationToken,
) {
    let wait = l.opts.handshake_wait();
    let mut preamble = [0u8; wire::PREAMBLE.len()];
    match tokio::time::timeout(wait, stream.read_exact(&mut preamble)).await {
        Ok(Ok(_)) if preamble == wire::PREAMBLE => {}
        Ok(Ok(_)) => return l.junk(peer, &format!("not the consul-rs RPC preamble: {preamble:02x?}")),
        // Closed early (a port check, a scanner): not worth a WARN.
        Ok(Err(e)) => return tracing::debug!(listener = l.opts.name, %peer, error = %e, "closed before the preamble"),
        Err(_) => return l.junk(peer, "no preamble within the handshake timeout"),
    }
    let ack = async {
        stream.write_all(&wire::PREAMBLE).await?;
        stream.flush().await
    };
    if !matches!(tokio::time::timeout(wait, ack).await, Ok(Ok(()))) {
        return;
    }
    let (read_half, write_half) = tokio::io::split(stream);
    let router = l.router.clone();
    let gated = wire::Gated::new(read_half, l.budget.clone());
    let mut frames = FramedRead::new(gated, wire::request_decoder(move |s| router.serves(s)));
    if refuse {
        return refuse_requests(frames, write_half, wait).await;
    }
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let writer = tokio::spawn(write_frames(write_half, rx, shutdown.clone()));
    let (idle, read) = (l.opts.idle_timeout, l.opts.read_timeout);
    let activity = Arc::new(Mutex::new(Activity { running: 0, last_answer: tokio::time::Instant::now() }));
    let mut check =
        tokio::time::interval((idle.min(read) / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Progress: how many bytes of an unfinished frame are buffered, and since when.
    let (mut buffered, mut progress) = (0usize, tokio::time::Instant::now());
    let mut last_id = 0u64;
    let mut go_away = false;
    loop {
        tokio::select! {
            next = frames.next() => {
                let frame = match next {
                    Some(Ok(frame)) => frame,
                    Some(Err(wire::FrameError::Io(e))) => {
                        tracing::debug!(listener = l.opts.name, %peer, error = %e, "RPC connection failed");
                        break;
                    }
                    Some(Err(e)) => {
                        l.junk(peer, &e.to_string());
                        break;
                    }
                    None => break,
                };
                progress = tokio::time::Instant::now();
                // The decoder accepts only known service tags.
                let Some(service) = Service::from_tag(frame.tag) else { break };
                let id = frame.id;
                last_id = last_id.max(id);
                activity.lock().running += 1;
                let reply = l.router.dispatch(service, Vec::from(frame.body));
                let (tx, activity) = (tx.clone(), activity.clone());
                tokio::spawn(async move {
                    let bytes = match reply.await {
                        Ok(resp) => wire::encode(wire::TAG_OK, id, &resp),
                        Err(reason) => wire::encode(wire::TAG_ERR, id, reason.as_bytes()),
                    };
                    let bytes = bytes.or_else(|| {
                        tracing::error!(?service, "RPC answer too large for a frame");
                        wire::encode(wire::TAG_ERR, id, b"answer too large for a frame")
                    });
                    if let Some(bytes) = bytes {
                        let _ = tx.send(bytes);
                    }
                    let mut a = activity.lock();
                    a.running -= 1;
                    a.last_answer = tokio::time::Instant::now();
                });
            }
            _ = check.tick() => {
                let now = tokio::time::Instant::now();
                let held = frames.read_buffer().len();
                if held != buffered {
                    (buffered, progress) = (held, now);
                }
                if held > 0 {
                    if now.duration_since(progress) >= read {
                        l.junk(peer, &format!("a frame stalled for {read:?} ({held} bytes of it received)"));
                        break;
                    }
                } else {
                    let a = activity.lock();
                    if a.running == 0 && now.duration_since(progress.max(a.last_answer)) >= idle {
                        go_away = true;
                        break;
                    }
                }
            }
            _ = shutdown.cancelled() => break,
        }
    }
    // Reading stops here: no request after `last_id` is processed, which the GoAway tells the
    // client so it can send those again elsewhere.
    drop(frames);
    if go_away {
        tracing::debug!(listener = l.opts.name, %peer, "idle RPC connection closed");
        if let Some(bytes) = wire::encode(wire::TAG_GOAWAY, last_id, &[]) {
            let _ = tx.send(bytes);
        }
    }
    drop(tx);
    // Answers of requests still running go out before the connection closes.
    let _ = writer.await;
}

/// Answers the requests of a refused plaintext connection with the reason, so the peer can say
/// why it failed instead of seeing a bare close: every request already queued on the connection
/// (several subsystems share it) and any sent within the handshake timeout, at most
/// [`REFUSALS_PER_CONNECTION`]; then the connection closes.
async fn refuse_requests<R, W, D>(mut frames: FramedRead<R, D>, write_half: W, wait: Duration)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    D: tokio_util::codec::Decoder<Item = wire::Frame>,
{
    let mut sink = FramedWrite::new(write_half, BytesCodec::new());
    let reason = b"this server requires TLS (verify_incoming): set verify_outgoing and a certificate";
    for _ in 0..REFUSALS_PER_CONNECTION {
        let Ok(Some(Ok(frame))) = tokio::time::timeout(wait, frames.next()).await else { return };
        let Some(bytes) = wire::encode(wire::TAG_ERR, frame.id, reason) else { return };
        if sink.send(bytes).await.is_err() {
            return;
        }
    }
}

/// Writes queued frames (already encoded), coalescing everything already queued into one flush.
async fn write_frames<W: AsyncWrite + Unpin>(
    write_half: W,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    shutdown: CancellationToken,
) {
    let mut sink = FramedWrite::new(write_half, BytesCodec::new());
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A port serving `Gossip` (echo, counting calls) and `Keyring` (sleeps 600 ms, then echoes).
    async fn server(opts: ServeOptions) -> (SocketAddr, Arc<AtomicUsize>, CancellationToken) {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let router = Router::new()
            .route(Service::Gossip, move |v: Vec<u8>| {
                h.fetch_add(1, Ordering::SeqCst);
                std::future::ready(v)
            })
            .route(Service::Keyring, |v: Vec<u8>| async move {
                tokio::time::sleep(Duration::from_millis(600)).await;
                v
            });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        tokio::spawn(serve_with(listener, router, shutdown.clone(), opts));
        (addr, hits, shutdown)
    }

    fn short(name: &'static str) -> ServeOptions {
        ServeOptions {
            handshake_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(300),
            read_timeout: Duration::from_millis(300),
            ..ServeOptions::new(name)
        }
    }

    /// Whether the server closed `s` within `within` (reads, discarding, until the end).
    async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 256];
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

    async fn opened(addr: SocketAddr) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(&wire::PREAMBLE).await.expect("io");
        let mut ack = [0u8; 5];
        s.read_exact(&mut ack).await.expect("io");
        assert_eq!(ack, wire::PREAMBLE);
        s
    }

    /// The probe of issue #25: a bare 256 MiB length prefix is not the preamble, so the
    /// connection closes at once (it is never waited on, nothing is allocated for it).
    #[tokio::test]
    async fn a_stream_without_the_preamble_is_closed_at_once() {
        let (addr, _, _stop) = server(ServeOptions::new("test")).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(&[0x0f, 0xff, 0xff, 0xff, 0, 0, 0, 0]).await.expect("io");
        assert!(closed_within(&mut s, Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn a_frame_over_its_service_limit_is_refused_from_its_header() {
        let (addr, hits, _stop) = server(ServeOptions::new("test")).await;
        let mut s = opened(addr).await;
        let mut header = Vec::new();
        header.extend_from_slice(&(20 * 1024 * 1024 + 1u32).to_be_bytes());
        header.push(Service::Gossip.tag());
        header.extend_from_slice(&1u64.to_be_bytes());
        s.write_all(&header).await.expect("io");
        assert!(closed_within(&mut s, Duration::from_secs(1)).await);
        // A service this port does not route gets the small limit, not Raft's 256 MiB.
        let mut s = opened(addr).await;
        let mut header = Vec::new();
        header.extend_from_slice(&(1024 * 1024u32).to_be_bytes());
        header.push(Service::Raft.tag());
        header.extend_from_slice(&1u64.to_be_bytes());
        s.write_all(&header).await.expect("io");
        assert!(closed_within(&mut s, Duration::from_secs(1)).await);
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn silent_stalled_and_idle_connections_are_closed_after_their_timeouts() {
        let (addr, _, _stop) = server(short("test")).await;
        // Connected, nothing sent: the handshake timeout.
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        // A frame that starts and stops: the read timeout.
        let mut stalled = opened(addr).await;
        let mut partial = wire::encode(Service::Gossip.tag(), 1, &[7; 100]).expect("fits a frame").to_vec();
        partial.truncate(50);
        stalled.write_all(&partial).await.expect("io");
        // The preamble, then nothing: the idle timeout, announced by a GoAway naming request 0.
        let mut idle = opened(addr).await;
        let started = std::time::Instant::now();
        assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
        assert!(closed_within(&mut stalled, Duration::from_secs(3)).await);
        let mut go_away = [0u8; wire::HEADER_LEN];
        idle.read_exact(&mut go_away).await.expect("io");
        assert_eq!(go_away, *wire::encode(wire::TAG_GOAWAY, 0, &[]).expect("fits a frame"));
        assert!(closed_within(&mut idle, Duration::from_secs(3)).await);
        assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_connection_with_a_request_running_is_not_idle() {
        let (addr, _, stop) = server(short("test")).await;
        let client = RpcClient::new(stop.clone());
        // Keyring answers after 600 ms, twice the idle timeout.
        let answer: Vec<u8> =
            client.call(addr, Service::Keyring, &vec![1u8, 2], Duration::from_secs(5)).await.expect("io");
        assert_eq!(answer, vec![1, 2]);
    }

    /// The client re-dials transparently after an idle close, and the request runs once.
    #[tokio::test]
    async fn calls_after_an_idle_close_go_through_and_run_once() {
        let (addr, hits, stop) = server(short("test")).await;
        let client = RpcClient::new(stop.clone());
        for i in 0..3u8 {
            let answer: Vec<u8> =
                client.call(addr, Service::Gossip, &vec![i], Duration::from_secs(5)).await.expect("io");
            assert_eq!(answer, vec![i]);
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    /// A request the server never processed (sent as it closed the connection, after the
    /// GoAway's id) is sent again on a new connection: it runs once and the caller sees only
    /// the answer.
    #[tokio::test]
    async fn a_request_after_the_goaway_id_is_sent_again() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            // First connection: read the request, answer GoAway(0) as if it crossed the close.
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut p = [0u8; 5];
            s.read_exact(&mut p).await.expect("io");
            s.write_all(&wire::PREAMBLE).await.expect("io");
            let mut header = [0u8; wire::HEADER_LEN];
            s.read_exact(&mut header).await.expect("io");
            s.write_all(&wire::encode(wire::TAG_GOAWAY, 0, &[]).expect("fits a frame")).await.expect("io");
            drop(s);
            // Second connection: answer properly.
            let (s, _) = listener.accept().await.expect("accept");
            let router = Router::new().route(Service::Gossip, |v: Vec<u8>| std::future::ready(v));
            let l = Arc::new(Listener {
                router: Arc::new(router),
                opts: ServeOptions::new("test"),
                junk: LogLimiter::new(REFUSAL_LOG_INTERVAL),
                over_limit: LogLimiter::new(REFUSAL_LOG_INTERVAL),
                budget: wire::FrameBudget::new(wire::FRAME_BUDGET),
            });
            serve_connection(Box::new(s), addr, l, false, CancellationToken::new()).await;
        });
        let client = RpcClient::new(CancellationToken::new());
        let answer: Vec<u8> = client.call(addr, Service::Gossip, &vec![9u8], Duration::from_secs(5)).await.expect("io");
        assert_eq!(answer, vec![9]);
    }

    /// A lost connection after the request went out stays "maybe delivered".
    #[tokio::test]
    async fn a_connection_closed_without_goaway_is_connection_lost() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut p = [0u8; 5];
            s.read_exact(&mut p).await.expect("io");
            s.write_all(&wire::PREAMBLE).await.expect("io");
            let mut header = [0u8; wire::HEADER_LEN];
            s.read_exact(&mut header).await.expect("io");
        });
        let client = RpcClient::new(CancellationToken::new());
        let err = client
            .call::<_, Vec<u8>>(addr, Service::Gossip, &vec![9u8], Duration::from_secs(5))
            .await
            .expect_err("fails");
        assert!(matches!(err, RpcError::ConnectionLost(_)), "{err}");
    }

    #[tokio::test]
    async fn a_peer_that_does_not_answer_the_preamble_is_not_delivered() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await.expect("io");
        });
        let client = RpcClient::new(CancellationToken::new());
        let err = client
            .call::<_, Vec<u8>>(addr, Service::Gossip, &vec![9u8], Duration::from_secs(5))
            .await
            .expect_err("fails");
        assert!(err.not_delivered(), "{err}");
    }

    #[test]
    fn an_oversized_request_is_refused_before_it_is_sent() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let client = RpcClient::new(CancellationToken::new());
        let addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let err = rt
            .block_on(client.call_raw(addr, Service::Dns, vec![0; 200 * 1024], Duration::from_secs(1)))
            .expect_err("fails");
        assert!(matches!(err, RpcError::Codec(_)) && err.not_delivered(), "{err}");
    }

    #[test]
    fn junk_logs_are_limited_per_period_and_count_what_they_hold_back() {
        let l = LogLimiter::new(Duration::from_millis(100));
        assert_eq!(l.allow(), Some(0));
        assert_eq!((l.allow(), l.allow(), l.allow()), (None, None, None));
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(l.allow(), Some(3));
        assert_eq!(l.allow(), None);
    }
}
