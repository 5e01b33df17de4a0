//! A small DNS client for tests, built on `hickory-proto`: one question over UDP or TCP.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Asks `server` for `name`/`rtype`. `edns` advertises that UDP payload size; `tcp` uses TCP.
pub async fn ask(server: SocketAddr, name: &str, rtype: RecordType, edns: Option<u16>, tcp: bool) -> Message {
    let mut msg = Message::query();
    msg.add_query(Query::query(Name::from_str(name).expect("name"), rtype));
    msg.metadata.recursion_desired = true;
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        msg.set_edns(e);
    }
    let bytes = msg.to_vec().expect("encode");
    let reply = if tcp { exchange_tcp(server, &bytes).await } else { exchange_udp(server, &bytes).await };
    Message::from_vec(&reply).expect("decode reply")
}

/// The addresses of the A records in `m`'s answer section, sorted.
pub fn a_records(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// Sends raw bytes over UDP and returns the raw reply.
pub async fn exchange_udp(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sock.send_to(bytes, server).await.expect("send");
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("DNS reply timed out")
        .expect("recv");
    buf.truncate(n);
    buf
}

async fn exchange_tcp(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(server).await.expect("connect");
    s.write_all(&(bytes.len() as u16).to_be_bytes()).await.expect("write");
    s.write_all(bytes).await.expect("write");
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.expect("read");
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.expect("read");
    buf
}
