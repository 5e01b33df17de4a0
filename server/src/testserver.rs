//! A tiny HTTP/1.1 server for unit tests of the client commands: it answers each request with the
//! next canned `(status, body)` and records what it received, so tests can check the method,
//! path, query and JSON body a command sends without a running agent.

use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// One request as received.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    /// `GET`, `PUT`, …
    pub(crate) method: String,
    /// Path and query, as sent.
    pub(crate) target: String,
    /// The body.
    pub(crate) body: Vec<u8>,
}

impl Recorded {
    /// The body as JSON (`null` when empty or not JSON).
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A running test server on 127.0.0.1.
pub(crate) struct TestServer {
    /// `127.0.0.1:port`.
    pub(crate) addr: String,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl TestServer {
    /// Starts a server answering requests with `answers` in order (then 404s), each with
    /// `X-Consul-Index: 1`.
    pub(crate) async fn start(answers: Vec<(u16, String)>) -> TestServer {
        Self::start_indexed(answers.into_iter().map(|(s, b)| (s, 1, b)).collect()).await
    }

    /// Like [`TestServer::start`], with the `X-Consul-Index` of each answer.
    pub(crate) async fn start_indexed(answers: Vec<(u16, u64, String)>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind test server");
        let addr = listener.local_addr().expect("addr").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            let mut answers = answers.into_iter();
            while let Ok((mut sock, _)) = listener.accept().await {
                // One request per connection keeps the parser trivial (`Connection: close`).
                let Some(req) = read_request(&mut sock).await else { continue };
                record.lock().await.push(req);
                let (status, index, body) = answers.next().unwrap_or((404, 1, "no more answers".into()));
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\
                     X-Consul-Index: {index}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            }
        });
        TestServer { addr, seen }
    }

    /// Everything received so far.
    pub(crate) async fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().await.clone()
    }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let len: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..].to_vec();
    Some(Recorded { method, target, body })
}
