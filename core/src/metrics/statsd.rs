//! `telemetry.statsd_address` and `telemetry.dogstatsd_addr`: every metric sent as statsd lines
//! over UDP, batched into packets of at most 1432 bytes and flushed every 100 ms (go-metrics'
//! statsd sink); DogStatsD lines carry labels and `dogstatsd_tags` as `|#tag:value` tags.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Key;

/// The largest packet sent (fits a 1500-byte MTU with headers, as go-metrics' statsd sink).
const MAX_PACKET: usize = 1432;
/// How long a line may wait for others to share its packet.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Lines queued for the sender beyond which new ones are dropped (a stalled sender never slows
/// the agent down).
pub const QUEUE: usize = 4096;

/// The kind of a statsd line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `|c`.
    Counter,
    /// `|g`.
    Gauge,
    /// `|ms`.
    Timer,
}

impl Kind {
    fn suffix(self) -> &'static str {
        match self {
            Kind::Counter => "c",
            Kind::Gauge => "g",
            Kind::Timer => "ms",
        }
    }
}

/// Where lines go and how they are spelled.
#[derive(Debug, Clone, PartialEq)]
pub enum Flavor {
    /// Plain statsd: labels' values are appended to the name (`consul.api.http.GET.v1_kv_`).
    Statsd,
    /// DogStatsD: labels and these extra tags become `|#name:value,…`.
    DogStatsd {
        /// `dogstatsd_tags`.
        tags: Vec<String>,
    },
}

/// One line (without its newline).
pub fn line(flavor: &Flavor, key: &Key, kind: Kind, v: f64) -> String {
    let clean = |s: &str| s.replace([':', ' ', '|', '\n'], "_");
    match flavor {
        Flavor::Statsd => {
            let mut name = clean(&key.name);
            for (_, value) in &key.labels {
                name.push('.');
                name.push_str(&clean(value));
            }
            format!("{name}:{v}|{}", kind.suffix())
        }
        Flavor::DogStatsd { tags } => {
            let mut out = format!("{}:{v}|{}", clean(&key.name), kind.suffix());
            let all: Vec<String> = key
                .labels
                .iter()
                .map(|(k, v)| format!("{}:{}", clean(k), v.replace([',', '|', '\n', ' '], "_")))
                .chain(tags.iter().cloned())
                .collect();
            if !all.is_empty() {
                out.push_str("|#");
                out.push_str(&all.join(","));
            }
            out
        }
    }
}

/// Sends queued lines to `target` until `shutdown`; a send error (nobody listening) is ignored,
/// as UDP metrics are best effort.
pub async fn run(target: SocketAddr, mut lines: mpsc::Receiver<String>, shutdown: CancellationToken) {
    let bind: SocketAddr =
        if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = match tokio::net::UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%target, error = %e, "statsd: cannot open a UDP socket; metrics are not sent");
            return;
        }
    };
    let mut packet = String::with_capacity(MAX_PACKET);
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break };
                if !packet.is_empty() && packet.len() + line.len() + 1 > MAX_PACKET {
                    let _ = socket.send_to(packet.as_bytes(), target).await;
                    packet.clear();
                }
                packet.push_str(&line);
                packet.push('\n');
            }
            _ = tick.tick() => {
                if !packet.is_empty() {
                    let _ = socket.send_to(packet.as_bytes(), target).await;
                    packet.clear();
                }
            }
            _ = shutdown.cancelled() => break,
        }
    }
    if !packet.is_empty() {
        let _ = socket.send_to(packet.as_bytes(), target).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, labels: &[(&str, &str)]) -> Key {
        Key { name: name.into(), labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    #[test]
    fn statsd_lines() {
        assert_eq!(line(&Flavor::Statsd, &key("consul.raft.apply", &[]), Kind::Counter, 1.0), "consul.raft.apply:1|c");
        assert_eq!(
            line(&Flavor::Statsd, &key("consul.h.runtime.x", &[]), Kind::Gauge, 2.5),
            "consul.h.runtime.x:2.5|g"
        );
        let http = key("consul.api.http", &[("method", "PUT"), ("path", "v1_kv_")]);
        assert_eq!(line(&Flavor::Statsd, &http, Kind::Timer, 0.25), "consul.api.http.PUT.v1_kv_:0.25|ms");
    }

    #[test]
    fn dogstatsd_lines_carry_tags() {
        let flavor = Flavor::DogStatsd { tags: vec!["env:test".into()] };
        let http = key("consul.api.http", &[("method", "PUT"), ("path", "v1_kv_")]);
        assert_eq!(line(&flavor, &http, Kind::Timer, 3.0), "consul.api.http:3|ms|#method:PUT,path:v1_kv_,env:test");
        let plain = Flavor::DogStatsd { tags: vec![] };
        assert_eq!(line(&plain, &key("consul.raft.apply", &[]), Kind::Counter, 1.0), "consul.raft.apply:1|c");
    }

    #[tokio::test]
    async fn lines_arrive_batched_over_udp() {
        let listener = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let target = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::channel(QUEUE);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(target, rx, shutdown.clone()));
        tx.send("a:1|c".into()).await.expect("send");
        tx.send("b:2|g".into()).await.expect("send");
        let mut buf = [0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(30), listener.recv(&mut buf))
            .await
            .expect("a packet")
            .expect("recv");
        let text = std::str::from_utf8(&buf[..n]).expect("utf-8");
        assert!(text.starts_with("a:1|c\n"), "{text}");
        shutdown.cancel();
        task.await.expect("sender ends");
    }
}
