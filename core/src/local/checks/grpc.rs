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
    loop {
        let mut head = [0u8; 9];
        conn.read_exact(&mut head).await.map_err(|e| format!("reading response: {e}"))?;
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        if len > 1 << 20 {
            return Err(format!("frame of {len} bytes is too large"));
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
}
