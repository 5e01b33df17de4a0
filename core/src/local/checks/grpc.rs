//! gRPC checks: `grpc.health.v1.Health/Check` over plaintext HTTP/2 (h2c, prior knowledge).
//!
//! The request is tiny and fixed, so it is written by hand rather than through a gRPC stack
//! (which would need protoc): the HTTP/2 preface, an empty SETTINGS frame, one HEADERS frame
//! encoded with HPACK literals (no Huffman, no dynamic table) and one DATA frame carrying the
//! length-prefixed protobuf `HealthCheckRequest{service}`. The reply is read frame by frame
//! (SETTINGS and PING acknowledged) until the DATA frame with `HealthCheckResponse{status}`;
//! `SERVING` (1) is passing, anything else — other statuses, RST_STREAM, GOAWAY, a trailers-only
//! error response, a timeout — is critical.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Outcome;
use crate::state::catalog::{CRITICAL, PASSING};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
/// HTTP/2's default `SETTINGS_MAX_FRAME_SIZE`: we never advertise a larger one, so a peer may
/// not send a larger frame (RFC 9113 §4.2).
const MAX_FRAME: usize = 16_384;
/// Largest gRPC message accepted. A `HealthCheckResponse` is two bytes; a server that announces
/// more is not answering a health check, and its message is not buffered.
const MAX_MESSAGE: usize = 4096;
/// Most frames read per call, so a server that streams frames that are not the answer (other
/// streams, unknown types, empty DATA) cannot keep the probe busy until its timeout.
const MAX_FRAMES: usize = 256;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

fn hpack_str(out: &mut Vec<u8>, s: &str) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// "Literal header field without indexing", name from the static table.
fn literal_indexed_name(out: &mut Vec<u8>, index: usize, value: &str) {
    hpack_int(out, 0, 4, index);
    hpack_str(out, value);
}

fn literal_new_name(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0);
    hpack_str(out, name);
    hpack_str(out, value);
}

/// The HEADERS block of the request.
pub(crate) fn request_headers(authority: &str) -> Vec<u8> {
    let mut h = vec![0x83, 0x86]; // :method POST, :scheme http (static table 3 and 6)
    literal_indexed_name(&mut h, 4, "/grpc.health.v1.Health/Check");
    literal_indexed_name(&mut h, 1, authority);
    literal_indexed_name(&mut h, 31, "application/grpc");
    literal_new_name(&mut h, "te", "trailers");
    h
}

/// A length-prefixed gRPC message holding `HealthCheckRequest{service}`.
pub(crate) fn request_message(service: &str) -> Vec<u8> {
    let mut pb = Vec::new();
    if !service.is_empty() {
        pb.push(0x0a); // field 1, length-delimited
        let mut len = service.len();
        while len >= 0x80 {
            pb.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        pb.push(len as u8);
        pb.extend_from_slice(service.as_bytes());
    }
    let mut msg = vec![0u8];
    msg.extend_from_slice(&(pb.len() as u32).to_be_bytes());
    msg.extend_from_slice(&pb);
    msg
}

/// The `status` (field 1, varint) of a `HealthCheckResponse`; 0 (UNKNOWN) when absent.
pub(crate) fn response_status(pb: &[u8]) -> Option<u64> {
    let mut i = 0;
    let mut status = 0;
    let varint = |i: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *pb.get(*i)?;
            *i += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    };
    while i < pb.len() {
        let key = varint(&mut i)?;
        match key & 7 {
            0 => {
                let v = varint(&mut i)?;
                if key >> 3 == 1 {
                    status = v;
                }
            }
            2 => {
                let len = varint(&mut i)? as usize;
                i = i.checked_add(len)?;
            }
            5 => i += 4,
            1 => i += 8,
            _ => return None,
        }
    }
    Some(status)
}

fn status_name(s: u64) -> &'static str {
    match s {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "unrecognised status",
    }
}

async fn call(address: &str, service: &str) -> Result<u64, String> {
    let mut conn = super::dial::dial(address).await?;
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out.extend(frame(HEADERS, END_HEADERS, 1, &request_headers(address)));
    out.extend(frame(DATA, END_STREAM, 1, &request_message(service)));
    conn.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    for _ in 0..MAX_FRAMES {
        let mut head = [0u8; 9];
        conn.read_exact(&mut head).await.map_err(|e| format!("reading response: {e}"))?;
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        if len > MAX_FRAME {
            return Err(format!("frame of {len} bytes exceeds HTTP/2's maximum frame size of {MAX_FRAME}"));
        }
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        conn.read_exact(&mut payload).await.map_err(|e| format!("reading response: {e}"))?;
        match kind {
            SETTINGS if flags & ACK == 0 => {
                conn.write_all(&frame(SETTINGS, ACK, 0, &[])).await.map_err(|e| e.to_string())?;
            }
            PING if flags & ACK == 0 => {
                conn.write_all(&frame(PING, ACK, 0, &payload)).await.map_err(|e| e.to_string())?;
            }
            GOAWAY => return Err("server sent GOAWAY".into()),
            RST_STREAM if stream == 1 => return Err("server reset the stream".into()),
            DATA if stream == 1 => {
                let data = if flags & PADDED != 0 {
                    let pad = usize::from(*payload.first().unwrap_or(&0));
                    payload.get(1..payload.len().saturating_sub(pad)).unwrap_or(&[]).to_vec()
                } else {
                    payload
                };
                body.extend_from_slice(&data);
                if body.len() >= 5 {
                    let n = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
                    if n > MAX_MESSAGE {
                        return Err(format!(
                            "response message of {n} bytes is too large for a HealthCheckResponse (limit {MAX_MESSAGE})"
                        ));
                    }
                    if body.len() >= 5 + n {
                        if body[0] != 0 {
                            return Err("compressed gRPC responses are not supported".into());
                        }
                        return response_status(&body[5..5 + n]).ok_or_else(|| "malformed HealthCheckResponse".into());
                    }
                }
            }
            HEADERS if stream == 1 && flags & END_STREAM != 0 => {
                return Err("the call failed (trailers-only response without a message)".into());
            }
            _ => {}
        }
    }
    Err(format!("no HealthCheckResponse within {MAX_FRAMES} frames"))
}

pub(super) async fn check(target: &str, timeout: Duration) -> Outcome {
    let (address, service) = target.split_once('/').unwrap_or((target, ""));
    match tokio::time::timeout(timeout, call(address, service)).await {
        Ok(Ok(1)) => (PASSING, format!("gRPC check {target}: success")),
        Ok(Ok(s)) => (CRITICAL, format!("gRPC check {target}: failed with status {}", status_name(s))),
        Ok(Err(e)) => (CRITICAL, format!("gRPC check {target}: {e}")),
        Err(_) => (CRITICAL, format!("gRPC check {target}: timed out after {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_request_and_decodes_response() {
        assert_eq!(request_message(""), vec![0, 0, 0, 0, 0]);
        assert_eq!(request_message("db"), vec![0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']);
        assert_eq!(response_status(&[0x08, 0x01]), Some(1));
        assert_eq!(response_status(&[]), Some(0));
        assert_eq!(response_status(&[0x08]), None);
        let mut big = Vec::new();
        hpack_int(&mut big, 0, 4, 31);
        assert_eq!(big, vec![0x0f, 0x10]);
    }

    /// A hostile "gRPC server" (the #25 probe): it announces a 4 GiB message and streams DATA
    /// frames for as long as anyone reads. The check fails on the announcement, without
    /// buffering, long before its timeout.
    #[tokio::test]
    async fn a_server_announcing_a_huge_message_is_refused_without_buffering() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut first = vec![0u8; 4096];
            let _ = conn.read(&mut first).await;
            let mut out = frame(SETTINGS, 0, 0, &[]);
            out.extend(frame(HEADERS, END_HEADERS, 1, &[0x88])); // :status 200
            let mut data = vec![0u8, 0xff, 0xff, 0xff, 0xff];
            data.resize(MAX_FRAME, 0);
            out.extend(frame(DATA, 0, 1, &data));
            let more = frame(DATA, 0, 1, &vec![0u8; MAX_FRAME]);
            if conn.write_all(&out).await.is_err() {
                return;
            }
            for _ in 0..10_000 {
                if conn.write_all(&more).await.is_err() {
                    return;
                }
            }
        });
        let started = std::time::Instant::now();
        let (status, output) = check(&addr.to_string(), Duration::from_secs(30)).await;
        assert_eq!(status, CRITICAL, "{output}");
        assert!(output.contains("too large"), "{output}");
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        server.abort();
    }

    /// Frames larger than HTTP/2 allows without our say-so are refused before they are read.
    #[tokio::test]
    async fn an_oversized_frame_is_refused_before_it_is_read() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut first = vec![0u8; 4096];
            let _ = conn.read(&mut first).await;
            // A DATA frame header claiming 16 MiB - 1, then nothing: the client must not wait.
            let _ = conn.write_all(&[0xff, 0xff, 0xff, DATA, 0, 0, 0, 0, 1]).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let (status, output) = check(&addr.to_string(), Duration::from_secs(20)).await;
        assert_eq!(status, CRITICAL, "{output}");
        assert!(output.contains("maximum frame size"), "{output}");
        server.abort();
    }
}
