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

use bytes::{Buf, BufMut, Bytes, BytesMut};
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

    #[test]
    fn tags_round_trip_and_the_preamble_is_not_tls() {
        for s in [Service::Raft, Service::Forward, Service::Gossip, Service::Keyring, Service::Http, Service::Dns] {
            assert_eq!(Service::from_tag(s.tag()), Some(s));
        }
        assert_ne!(PREAMBLE[0], super::super::TLS_HANDSHAKE_RECORD);
    }
}
