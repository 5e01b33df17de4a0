//! The RPC wire format: a connection preamble, then frames with a fixed header.
//!
//! ```text
//! connection start (inside TLS when TLS is used), client → server, then server → client:
//!     "CRPC" version:u8                                  5 bytes, PREAMBLE
//! every frame, both directions:
//!     len:u32 BE | tag:u8 | id:u64 BE | body (len bytes)  13-byte header
//! ```
//!
//! A request's tag is its [`Service`]; an answer's is [`TAG_OK`] (the body is the handler's
//! encoded response), [`TAG_ERR`] (the body is the UTF-8 reason nothing ran) or [`TAG_GOAWAY`]
//! (no body; `id` is the highest request id the server dispatched on this connection, and it
//! reads nothing more, so the client knows every later request was never processed).
//!
//! The preamble comes first so that a peer that does not speak this protocol costs a fixed
//! 5-byte stack buffer and no more; its first byte (`C`) differs from a TLS handshake record
//! (0x16), so a TLS-configured port still tells TLS from plaintext by the first byte. The tag
//! sits in the header so the limit of each service is checked before any body byte is read,
//! and the decoder never reserves room for a body: the read buffer grows only as bytes actually
//! arrive, so a claimed length costs nothing until it is sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::Decoder;

use super::Service;

/// The bytes that open every connection, in both directions: magic and protocol version.
pub(crate) const PREAMBLE: [u8; 5] = *b"CRPC\x01";
/// Length of the fixed frame header: length, tag, request id.
pub(crate) const HEADER_LEN: usize = 13;

/// Answer tag: the body is the handler's encoded response.
pub(crate) const TAG_OK: u8 = 0;
/// Answer tag: the body is why nothing ran (UTF-8).
pub(crate) const TAG_ERR: u8 = 1;
/// Answer tag: the server is closing the connection and processed no request after `id`.
pub(crate) const TAG_GOAWAY: u8 = 2;

const MIB: usize = 1024 * 1024;

/// Largest request of a service not routed on the listening port: enough for any request the
/// port could answer with "no such service", far below what the big services need.
pub(crate) const UNROUTED_REQUEST_MAX: usize = 64 * 1024;

/// Largest answer a client accepts. Answers come from a server this agent chose to call (and
/// authenticated, with TLS); the biggest is a `/v1/snapshot` archive proxied for a client agent.
pub(crate) const ANSWER_MAX: usize = 256 * MIB;

/// Largest body of an HTTP request a client agent forwards to a server (snapshot restores are
/// the big ones).
pub const FORWARDED_HTTP_BODY_MAX: usize = 64 * MIB;

/// Largest request body of `service`, by what the largest legitimate message of it can be:
///
/// - `Raft` and `Forward`: 256 MiB. A `/v1/snapshot` restore is one Raft entry
///   (`Command::Restore`): a follower forwards it to the leader (`Forward`), which replicates it
///   in an AppendEntries (`Raft`). InstallSnapshot needs far less: openraft sends snapshots in
///   4 MiB chunks (`snapshot_max_chunk_size`).
/// - `Http`: a client agent's forwarded request, body at most 64 MiB (the proxy's own limit)
///   plus 1 MiB for the URI and headers.
/// - `Gossip`: a sealed push/pull state; 20 MiB, memberlist's `maxPushStateBytes`.
/// - `Keyring` and `Dns`: a sealed key operation, a DNS message (≤ 64 KiB): 128 KiB.
pub fn request_max(service: Service) -> usize {
    match service {
        Service::Raft | Service::Forward => 256 * MIB,
        Service::Http => FORWARDED_HTTP_BODY_MAX + MIB,
        Service::Gossip => 20 * MIB,
        Service::Keyring | Service::Dns => 128 * 1024,
    }
}

impl Service {
    /// The service's tag on the wire.
    pub(crate) fn tag(self) -> u8 {
        match self {
            Service::Raft => 0,
            Service::Forward => 1,
            Service::Gossip => 2,
            Service::Keyring => 3,
            Service::Http => 4,
            Service::Dns => 5,
        }
    }

    /// The service a wire tag names.
    pub(crate) fn from_tag(tag: u8) -> Option<Service> {
        Some(match tag {
            0 => Service::Raft,
            1 => Service::Forward,
            2 => Service::Gossip,
            3 => Service::Keyring,
            4 => Service::Http,
            5 => Service::Dns,
            _ => return None,
        })
    }
}

/// Why a stream of frames was given up. The connection is closed on any of them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The header names a tag this side does not accept.
    #[error("unknown frame tag {0}")]
    UnknownTag(u8),
    /// The header announces more than the tag's limit; nothing was allocated for it.
    #[error("frame of {len} bytes with tag {tag} exceeds the limit of {max}")]
    TooLarge {
        /// The tag.
        tag: u8,
        /// The announced body length.
        len: usize,
        /// The limit for that tag.
        max: usize,
    },
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One decoded frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) tag: u8,
    pub(crate) id: u64,
    pub(crate) body: BytesMut,
}

/// Decodes frames, refusing from the header alone a tag without a limit or a length above it.
pub(crate) struct FrameDecoder<F> {
    max_for: F,
}

impl<F: Fn(u8) -> Option<usize>> FrameDecoder<F> {
    /// A decoder taking the limit of each tag from `max_for` (`None`: the tag is refused).
    pub(crate) fn new(max_for: F) -> Self {
        FrameDecoder { max_for }
    }
}

impl<F: Fn(u8) -> Option<usize>> Decoder for FrameDecoder<F> {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        let tag = src[4];
        let max = (self.max_for)(tag).ok_or(FrameError::UnknownTag(tag))?;
        if len > max {
            return Err(FrameError::TooLarge { tag, len, max });
        }
        // No `reserve(len)`: the buffer grows only with bytes that actually arrived.
        if src.len() - HEADER_LEN < len {
            return Ok(None);
        }
        let mut frame = src.split_to(HEADER_LEN + len);
        frame.advance(5);
        let id = frame.get_u64();
        Ok(Some(Frame { tag, id, body: frame }))
    }
}

/// The decoder of a server port: requests of the services `routed` (each to its
/// [`request_max`]), and of any other service up to [`UNROUTED_REQUEST_MAX`] (answered "no such
/// service").
pub(crate) fn request_decoder(routed: impl Fn(Service) -> bool) -> FrameDecoder<impl Fn(u8) -> Option<usize>> {
    FrameDecoder::new(move |tag| {
        let service = Service::from_tag(tag)?;
        Some(if routed(service) { request_max(service) } else { UNROUTED_REQUEST_MAX })
    })
}

/// The decoder of a client connection: answers up to [`ANSWER_MAX`].
pub(crate) fn answer_decoder() -> FrameDecoder<impl Fn(u8) -> Option<usize>> {
    FrameDecoder::new(|tag| match tag {
        TAG_OK | TAG_ERR => Some(ANSWER_MAX),
        TAG_GOAWAY => Some(0),
        _ => None,
    })
}

/// Frames above this size wait for room in their listener's [`FrameBudget`] before their body
/// is read; smaller ones (heartbeats, votes, gossip, most forwarded writes) never wait.
pub(crate) const LARGE_FRAME: usize = 1024 * 1024;
/// What one listener lets all its connections buffer of large frames at once: a 256 MiB
/// snapshot restore and then some. A connection that waits longer than the read timeout for
/// room is closed as stalled.
pub(crate) const FRAME_BUDGET: usize = 512 * MIB;
/// How much is read at once outside a large frame's body, which bounds what passes before a
/// large frame's header is seen.
const UNGATED_READ: usize = 64 * 1024;

/// A listener's budget of large-frame bytes being received, shared by its connections: the
/// bodies of frames above [`LARGE_FRAME`] are read only once the budget has room for them, so
/// however many connections announce (and send) big frames, the listener buffers about this
/// much of them at a time (a read that finishes one large body may carry on into the next
/// frame, so at most about twice). The room is taken for the whole announced body at once, so
/// frames never deadlock holding parts of it; the price is that a plaintext peer announcing
/// big frames and sending nothing can hold room until the read timeout closes it, delaying
/// other large frames (never memory) — TLS with `verify_incoming` keeps such peers out.
#[derive(Debug, Clone)]
pub(crate) struct FrameBudget {
    room: Arc<Semaphore>,
    total: usize,
}

impl FrameBudget {
    /// A budget of `total` bytes.
    pub(crate) fn new(total: usize) -> Self {
        FrameBudget { room: Arc::new(Semaphore::new(total)), total }
    }
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A connection's read half that follows the frame headers passing through it and holds back
/// the body of each large frame until its listener's [`FrameBudget`] has room; the room is
/// given back once the body has passed.
pub(crate) struct Gated<R> {
    inner: R,
    budget: FrameBudget,
    header: [u8; HEADER_LEN],
    header_len: usize,
    body_left: usize,
    /// A large frame whose body may not pass yet.
    waiting: Option<u32>,
    acquiring: Option<Acquire>,
    permit: Option<OwnedSemaphorePermit>,
}

impl<R> Gated<R> {
    pub(crate) fn new(inner: R, budget: FrameBudget) -> Self {
        Gated {
            inner,
            budget,
            header: [0; HEADER_LEN],
            header_len: 0,
            body_left: 0,
            waiting: None,
            acquiring: None,
            permit: None,
        }
    }

    /// Follows the frames through `bytes`, which just passed.
    fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.header_len < HEADER_LEN {
                let n = (HEADER_LEN - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == HEADER_LEN {
                    let h = &self.header;
                    self.body_left = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
                    if self.body_left > LARGE_FRAME {
                        // Never more than the whole budget, so the wait can end.
                        let room = self.body_left.min(self.budget.total);
                        self.waiting = Some(u32::try_from(room).unwrap_or(u32::MAX));
                    }
                }
            } else {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
            }
            if self.header_len == HEADER_LEN && self.body_left == 0 {
                // The frame passed: its room goes back to the budget, the next header starts.
                (self.header_len, self.waiting, self.acquiring, self.permit) = (0, None, None, None);
            }
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Gated<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(bytes) = this.waiting {
            let room = this.budget.room.clone();
            let acquiring = this.acquiring.get_or_insert_with(|| Box::pin(room.acquire_many_owned(bytes)));
            match acquiring.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(permit)) => this.permit = Some(permit),
                // Never closed; pass the body rather than wedge the connection.
                Poll::Ready(Err(_)) => {}
            }
            (this.waiting, this.acquiring) = (None, None);
        }
        let before = buf.filled().len();
        if this.permit.is_some() || buf.remaining() <= UNGATED_READ {
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            this.advance(&buf.filled()[before..]);
        } else {
            // Outside a permitted body, read at most UNGATED_READ, so a large frame's header is
            // seen before more than that of its body passes.
            let mut limited = ReadBuf::new(buf.initialize_unfilled_to(UNGATED_READ));
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut limited))?;
            let n = limited.filled().len();
            this.advance(limited.filled());
            buf.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

/// One frame, header and body, ready to write. `None` when the body does not fit the
/// header's 32-bit length.
pub(crate) fn encode(tag: u8, id: u64, body: &[u8]) -> Option<Bytes> {
    let len = u32::try_from(body.len()).ok()?;
    let mut out = BytesMut::with_capacity(HEADER_LEN + body.len());
    out.put_u32(len);
    out.put_u8(tag);
    out.put_u64(id);
    out.put_slice(body);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder() -> FrameDecoder<impl Fn(u8) -> Option<usize>> {
        request_decoder(|s| matches!(s, Service::Gossip | Service::Keyring))
    }

    #[test]
    fn frames_round_trip_across_partial_reads() {
        let mut d = decoder();
        let bytes = [
            encode(Service::Gossip.tag(), 7, b"hello").expect("fits a frame"),
            encode(3, 8, b"").expect("fits a frame"),
        ]
        .concat();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in bytes {
            buf.put_u8(b);
            while let Some(f) = d.decode(&mut buf).expect("decodes") {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                Frame { tag: 2, id: 7, body: BytesMut::from(&b"hello"[..]) },
                Frame { tag: 3, id: 8, body: BytesMut::new() }
            ]
        );
        assert!(buf.is_empty());
    }

    /// The probe of issue #25: a 256 MiB length prefix is refused from the header, and nothing
    /// is reserved for it.
    #[test]
    fn an_oversized_length_is_refused_before_allocation() {
        let mut d = decoder();
        let mut buf = BytesMut::with_capacity(64);
        buf.put_slice(&[0x0f, 0xff, 0xff, 0xff, Service::Gossip.tag()]);
        buf.put_u64(1);
        let err = d.decode(&mut buf).expect_err("fails");
        assert!(matches!(err, FrameError::TooLarge { len: 0x0fff_ffff, max, .. } if max == 20 * MIB), "{err}");
        assert!(buf.capacity() <= 64, "reserved {} bytes", buf.capacity());
    }

    #[test]
    fn a_frame_within_its_limit_reserves_nothing_until_its_bytes_arrive() {
        let mut d = decoder();
        let mut buf = BytesMut::with_capacity(64);
        buf.put_u32(10 * MIB as u32);
        buf.put_u8(Service::Gossip.tag());
        buf.put_u64(1);
        buf.put_slice(&[0; 20]);
        assert!(d.decode(&mut buf).expect("decodes").is_none());
        assert!(buf.capacity() <= 64, "reserved {} bytes", buf.capacity());
    }

    #[test]
    fn each_service_has_its_limit_and_unrouted_ones_a_small_one() {
        let mut d = decoder();
        // Keyring (routed): 128 KiB; Raft (not routed on this port): 64 KiB.
        for (tag, len, ok) in
            [(3u8, 128 * 1024, true), (3, 128 * 1024 + 1, false), (0, 64 * 1024, true), (0, 64 * 1024 + 1, false)]
        {
            let mut buf = BytesMut::new();
            buf.put_u32(len as u32);
            buf.put_u8(tag);
            buf.put_u64(1);
            assert_eq!(d.decode(&mut buf).is_ok(), ok, "tag {tag} len {len}");
        }
        let mut buf = BytesMut::from(&encode(42, 1, b"").expect("fits a frame")[..]);
        assert!(matches!(d.decode(&mut buf), Err(FrameError::UnknownTag(42))));
        let mut buf = BytesMut::from(&encode(TAG_GOAWAY, 1, b"x").expect("fits a frame")[..]);
        assert!(matches!(answer_decoder().decode(&mut buf), Err(FrameError::TooLarge { .. })));
    }

    /// Two connections each receiving a 2 MiB frame against a 2 MiB budget: the second body
    /// waits until the first has passed.
    #[tokio::test]
    async fn large_bodies_wait_for_room_in_the_listeners_budget() {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        use tokio_util::codec::FramedRead;

        let budget = FrameBudget::new(2 * MIB);
        let frame = encode(Service::Raft.tag(), 1, &vec![1u8; 2 * MIB]).expect("fits a frame");
        let (mut a_tx, a_rx) = tokio::io::duplex(4 * MIB);
        let (mut b_tx, b_rx) = tokio::io::duplex(4 * MIB);
        let all = |_: Service| true;
        let mut a = FramedRead::new(Gated::new(a_rx, budget.clone()), request_decoder(all));
        let mut b = FramedRead::new(Gated::new(b_rx, budget.clone()), request_decoder(all));
        a_tx.write_all(&frame[..MIB]).await.expect("write");
        let wait = std::time::Duration::from_millis(200);
        assert!(tokio::time::timeout(wait, a.next()).await.is_err(), "half a frame");
        b_tx.write_all(&frame).await.expect("write");
        assert!(tokio::time::timeout(wait, b.next()).await.is_err(), "b's body waits for a's room");
        a_tx.write_all(&frame[MIB..]).await.expect("write");
        let got = tokio::time::timeout(wait, a.next()).await.expect("a completes");
        assert_eq!(got.expect("a frame").expect("decodes").body.len(), 2 * MIB);
        let got = tokio::time::timeout(wait, b.next()).await.expect("b proceeds once a's room is back");
        assert_eq!(got.expect("a frame").expect("decodes").body.len(), 2 * MIB);
    }

    #[tokio::test]
    async fn small_frames_pass_the_gate_without_waiting() {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        use tokio_util::codec::FramedRead;

        // No room at all: frames up to LARGE_FRAME never ask for any.
        let budget = FrameBudget::new(0);
        let (mut tx, rx) = tokio::io::duplex(4 * MIB);
        let mut frames = FramedRead::new(Gated::new(rx, budget), request_decoder(|_| true));
        for (i, len) in [0, 10, LARGE_FRAME].into_iter().enumerate() {
            tx.write_all(&encode(Service::Forward.tag(), i as u64, &vec![0; len]).expect("fits")).await.expect("write");
        }
        for (i, len) in [0, 10, LARGE_FRAME].into_iter().enumerate() {
            let f = frames.next().await.expect("a frame").expect("decodes");
            assert_eq!((f.id, f.body.len()), (i as u64, len));
        }
    }

    #[test]
    fn tags_round_trip_and_the_preamble_is_not_tls() {
        for s in [Service::Raft, Service::Forward, Service::Gossip, Service::Keyring, Service::Http, Service::Dns] {
            assert_eq!(Service::from_tag(s.tag()), Some(s));
        }
        assert_ne!(PREAMBLE[0], super::super::TLS_HANDSHAKE_RECORD);
    }
}
