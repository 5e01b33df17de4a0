//! The DNS interface (Consul: docs/services/discovery/dns-*.mdx, agent/dns.go), queried with a
//! Rust resolver over UDP and TCP.

use std::net::SocketAddr;
use std::time::Duration;

use consul_core::config::DnsConfig;
use consul_tests::dns::{ask, exchange_udp};
use consul_tests::inproc::{Cluster, Options};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use reqwest::Method;
use serde_json::json;

async fn register(api: &consul_tests::client::Api, node: &str, addr: &str, id: &str, tags: &[&str], status: &str) {
    let body = json!({
        "Node": node, "Address": addr, "NodeMeta": {"rack": "r1"},
        "Service": {"ID": id, "Service": "web", "Tags": tags, "Port": 8080},
        "Check": {"CheckID": format!("{id}-c"), "Status": status, "ServiceID": id},
    });
    let r =
        api.request(Method::PUT, "/v1/catalog/register", Some(body.to_string().into_bytes())).await.expect("register");
    assert_eq!(r.status, 200, "{}", r.text());
}

fn a_ips(m: &Message) -> Vec<String> {
    consul_tests::dns::a_records(m)
}

fn dns(c: &Cluster, i: usize) -> SocketAddr {
    c.agent(i).dns_addr().expect("dns enabled")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t95_service_node_and_addr_lookups() {
    let c = Cluster::start(3).await;
    let api = c.api(0);
    register(&api, "n1", "10.1.0.1", "web1", &["primary"], "passing").await;
    register(&api, "n2", "10.1.0.2", "web2", &[], "warning").await;
    register(&api, "n3", "10.1.0.3", "web3", &[], "critical").await;
    // Stale reads from a follower converge on the write.
    let follower = c.followers().await[0];
    let server = dns(&c, follower);
    let m = consul_tests::eventually(Duration::from_secs(5), "follower sees the catalog", || async move {
        let m = ask(server, "web.service.consul.", RecordType::A, None, false).await;
        (a_ips(&m).len() == 2).then_some(m)
    })
    .await;
    assert!(m.metadata.authoritative);
    assert_eq!(a_ips(&m), ["10.1.0.1", "10.1.0.2"], "critical instance left out, warning kept");
    assert_eq!(a_ips(&ask(server, "primary.web.service.consul.", RecordType::A, None, false).await), ["10.1.0.1"]);
    assert_eq!(a_ips(&ask(server, "web.service.dc1.consul.", RecordType::A, None, false).await).len(), 2);

    let srv = ask(server, "_web._tcp.service.consul.", RecordType::SRV, None, false).await;
    assert_eq!(srv.answers.len(), 2);
    for r in &srv.answers {
        let RData::SRV(s) = &r.data else { panic!("not SRV: {r}") };
        assert_eq!(s.port, 8080);
        assert!(s.target.to_ascii().ends_with(".node.dc1.consul."));
    }
    assert!(srv.additionals.iter().any(|r| matches!(r.data, RData::A(_))), "SRV targets' addresses in ADDITIONAL");
    assert_eq!(ask(server, "web.service.consul.", RecordType::SRV, None, false).await.answers.len(), 2);

    let node = ask(server, "n2.node.consul.", RecordType::A, None, false).await;
    assert_eq!(a_ips(&node), ["10.1.0.2"]);
    let txt = ask(server, "n2.node.consul.", RecordType::TXT, None, false).await;
    assert!(matches!(&txt.answers[0].data, RData::TXT(t) if t.to_string().contains("rack=r1")));
    assert_eq!(a_ips(&ask(server, "0a010003.addr.dc1.consul.", RecordType::A, None, false).await), ["10.1.0.3"]);

    // Unknown: NXDOMAIN with an SOA. Known but nothing healthy: NOERROR, empty.
    let nx = ask(server, "nothing.service.consul.", RecordType::A, None, false).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(matches!(nx.authorities.first().map(|r| &r.data), Some(RData::SOA(_))));
    register(&api, "n1", "10.1.0.1", "web1", &["primary"], "critical").await;
    let empty = consul_tests::eventually(Duration::from_secs(5), "check flip visible", || async move {
        let m = ask(server, "primary.web.service.consul.", RecordType::A, None, false).await;
        m.answers.is_empty().then_some(m)
    })
    .await;
    assert_eq!(empty.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        ask(server, "web.service.dc2.consul.", RecordType::A, None, false).await.metadata.response_code,
        ResponseCode::NXDomain
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_truncation_edns_tcp_and_shuffle() {
    let dns_config = DnsConfig { enable_truncate: true, ..DnsConfig::default() };
    let c = Cluster::start_with(1, Options { dns: dns_config, ..Options::default() }).await;
    let api = c.api(0);
    for i in 0..40 {
        register(&api, &format!("node{i:02}"), &format!("10.2.0.{}", i + 1), &format!("web{i}"), &[], "passing").await;
    }
    let server = dns(&c, 0);
    let udp = ask(server, "web.service.consul.", RecordType::A, None, false).await;
    assert_eq!(udp.answers.len(), 3, "udp_answer_limit without EDNS");
    assert!(udp.metadata.truncation, "enable_truncate sets TC when answers were cut");
    let edns = ask(server, "web.service.consul.", RecordType::A, Some(4096), false).await;
    assert_eq!(edns.answers.len(), 40, "EDNS0 buffer fits them all");
    let tcp = ask(server, "web.service.consul.", RecordType::SRV, None, true).await;
    assert_eq!(tcp.answers.len(), 40, "TCP is not truncated");
    let a_count = |m: &Message| m.additionals.iter().filter(|r| matches!(r.data, RData::A(_))).count();
    assert_eq!(a_count(&tcp), 40, "every SRV target's address in ADDITIONAL");
    assert_eq!(tcp.additionals.len(), 80, "and its node-meta TXT");
    // Trimmed answers keep the addresses of the SRV records that stay (Consul's syncExtra).
    let srv3 = ask(server, "web.service.consul.", RecordType::SRV, None, false).await;
    assert_eq!((srv3.answers.len(), a_count(&srv3)), (3, 3));
    let srv_edns = ask(server, "web.service.consul.", RecordType::SRV, Some(1232), false).await;
    assert!(srv_edns.answers.len() > 3 && srv_edns.answers.len() < 40, "EDNS buffer of 1232 bytes fits some");
    assert_eq!(a_count(&srv_edns), srv_edns.answers.len());
    let srv_udp = exchange_udp(server, &{
        let mut m = Message::query();
        m.add_query(hickory_proto::op::Query::query("web.service.consul.".parse().expect("name"), RecordType::SRV));
        m.to_vec().expect("encode")
    })
    .await;
    assert!(srv_udp.len() <= 512, "plain UDP answers fit 512 bytes");
    // Shuffled: the first answer is not always the same.
    let mut firsts = std::collections::HashSet::new();
    for _ in 0..20 {
        let m = ask(server, "web.service.consul.", RecordType::A, Some(4096), false).await;
        firsts.insert(a_ips(&m).first().cloned().unwrap_or_default());
        firsts.insert(m.answers.first().map(|r| r.to_string()).unwrap_or_default());
    }
    assert!(firsts.len() > 2, "answers are shuffled");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t97_bad_packets_other_domains_and_recursors() {
    // An upstream DNS server on loopback that answers every A question with 192.0.2.53.
    let upstream = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let upstream_addr = upstream.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = upstream.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
            let mut r = Message::response(q.metadata.id, hickory_proto::op::OpCode::Query);
            r.queries = q.queries.clone();
            if let Some(question) = q.queries.first() {
                r.answers.push(hickory_proto::rr::Record::from_rdata(
                    question.name.clone(),
                    60,
                    RData::A(hickory_proto::rr::rdata::A("192.0.2.53".parse().expect("ip"))),
                ));
            }
            let _ = upstream.send_to(&r.to_vec().expect("encode"), peer).await;
        }
    });
    let with_recursor = DnsConfig {
        recursors: vec![upstream_addr],
        service_ttl: [("*".to_string(), Duration::from_secs(5))].into(),
        node_ttl: Duration::from_secs(9),
        ..DnsConfig::default()
    };
    let c = Cluster::start_with(1, Options { dns: with_recursor, ..Options::default() }).await;
    let server = dns(&c, 0);
    register(&c.api(0), "n1", "10.3.0.1", "web1", &[], "passing").await;
    let fwd = ask(server, "example.org.", RecordType::A, None, false).await;
    assert_eq!(a_ips(&fwd), ["192.0.2.53"], "forwarded to the recursor");
    let svc = ask(server, "web.service.consul.", RecordType::A, None, false).await;
    assert_eq!(svc.answers[0].ttl, 5, "service_ttl");
    assert_eq!(ask(server, "n1.node.consul.", RecordType::A, None, false).await.answers[0].ttl, 9, "node_ttl");
    // Garbage gets FORMERR, other opcodes NOTIMP, other classes NOTIMP; the server stays up.
    let formerr = Message::from_vec(&exchange_udp(server, &[0x12, 0x34, 0xff, 0x00, 0x00]).await).expect("reply");
    assert_eq!((formerr.metadata.id, formerr.metadata.response_code), (0x1234, ResponseCode::FormErr));
    let mut notify = Message::query();
    notify.metadata.op_code = hickory_proto::op::OpCode::Notify;
    notify.add_query(hickory_proto::op::Query::query("web.service.consul.".parse().expect("name"), RecordType::A));
    let r = Message::from_vec(&exchange_udp(server, &notify.to_vec().expect("encode")).await).expect("reply");
    assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
    let mut chaos = Message::query();
    let mut q = hickory_proto::op::Query::query("web.service.consul.".parse().expect("name"), RecordType::A);
    q.set_query_class(hickory_proto::rr::DNSClass::CH);
    chaos.add_query(q);
    let r = Message::from_vec(&exchange_udp(server, &chaos.to_vec().expect("encode")).await).expect("reply");
    assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
    assert_eq!(a_ips(&ask(server, "web.service.consul.", RecordType::A, None, false).await), ["10.3.0.1"]);
    c.shutdown().await;

    // Without recursors, other domains are refused.
    let c = Cluster::start(1).await;
    let refused = ask(dns(&c, 0), "example.org.", RecordType::A, None, false).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t98_aaaa_any_cname_alt_domain_and_disabled() {
    let cfg = DnsConfig { alt_domain: Some("example.internal.".into()), ..DnsConfig::default() };
    let c = Cluster::start_with(1, Options { dns: cfg, ..Options::default() }).await;
    let api = c.api(0);
    register(&api, "v6", "2001:db8::7", "web-v6", &[], "passing").await;
    let body = json!({
        "Node": "h1", "Address": "10.4.0.1",
        "Service": {"ID": "api1", "Service": "api", "Port": 443, "Address": "api.example.com"},
    });
    let r =
        api.request(Method::PUT, "/v1/catalog/register", Some(body.to_string().into_bytes())).await.expect("register");
    assert_eq!(r.status, 200);
    let server = dns(&c, 0);
    let aaaa = ask(server, "web.service.consul.", RecordType::AAAA, None, false).await;
    assert!(matches!(&aaaa.answers[0].data, RData::AAAA(a) if a.0.to_string() == "2001:db8::7"));
    assert!(ask(server, "web.service.consul.", RecordType::A, None, false).await.answers.is_empty());
    let any = ask(server, "v6.node.consul.", RecordType::ANY, None, false).await;
    assert!(any.answers.iter().any(|r| matches!(r.data, RData::AAAA(_))));
    let cname = ask(server, "api.service.consul.", RecordType::A, None, false).await;
    assert!(matches!(&cname.answers[0].data, RData::CNAME(n) if n.0.to_ascii() == "api.example.com."));
    let alt = ask(server, "web.service.example.internal.", RecordType::AAAA, None, false).await;
    assert_eq!(alt.answers.len(), 1, "alt_domain answers like the primary domain");
    assert!(alt.answers[0].name.to_ascii().ends_with("example.internal."), "the answer echoes the domain asked");
    c.shutdown().await;

    let off = consul_core::agent::Agent::start(consul_core::config::AgentConfig {
        dns: DnsConfig { enabled: false, ..DnsConfig::default() },
        ..consul_core::config::AgentConfig::dev_any_port()
    })
    .await
    .expect("start");
    assert!(off.dns_addr().is_none(), "ports.dns = -1 disables DNS");
    off.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_query_flood_does_not_starve_the_http_api() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    for i in 0..20 {
        register(&api, &format!("f{i}"), &format!("10.6.0.{}", i + 1), &format!("web{i}"), &[], "passing").await;
    }
    let server = dns(&c, 0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Eight senders fire queries without waiting for answers (bounded: 3 s or 200k packets).
    let mut flooders = Vec::new();
    for _ in 0..8 {
        let stop = stop.clone();
        flooders.push(tokio::spawn(async move {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            let mut m = Message::query();
            m.add_query(hickory_proto::op::Query::query("web.service.consul.".parse().expect("name"), RecordType::SRV));
            let packet = m.to_vec().expect("encode");
            let started = std::time::Instant::now();
            let mut sent = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(3)
                && sent < 25_000
            {
                let _ = sock.send_to(&packet, server).await;
                sent += 1;
                if sent % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    // Meanwhile the HTTP API keeps answering reads and writes.
    for i in 0..10 {
        let r = tokio::time::timeout(Duration::from_secs(5), api.kv_put(&format!("flood/{i}"), "v", "")).await;
        assert!(matches!(r, Ok(Ok(ref resp)) if resp.status == 200), "HTTP write {i} during the flood: {r:?}");
        let r = tokio::time::timeout(Duration::from_secs(5), api.get("/v1/health/service/web")).await;
        assert!(matches!(r, Ok(Ok(ref resp)) if resp.status == 200), "HTTP read {i} during the flood");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flooders {
        f.await.expect("flooder");
    }
    // And DNS still answers afterwards.
    assert!(!ask(server, "web.service.consul.", RecordType::A, None, false).await.answers.is_empty());
    c.shutdown().await;
}

fn ptr_target(m: &Message) -> Option<String> {
    m.answers.iter().find_map(|r| match &r.data {
        RData::PTR(p) => Some(p.0.to_ascii()),
        _ => None,
    })
}

/// Reverse lookups (Consul's `handlePtr`): a node's address answers with the node, a service's
/// own address with the service, in the agent's datacenter and the primary domain, TTL 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t95_ptr_for_nodes_services_and_ipv6() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    register(&api, "n1", "10.1.0.1", "web1", &[], "passing").await;
    let body = json!({
        "Node": "n6", "Address": "2001:db8::6",
        "Service": {"ID": "db1", "Service": "db", "Address": "10.7.7.7", "Port": 5432},
    });
    let r = api.request(Method::PUT, "/v1/catalog/register", Some(body.to_string().into_bytes())).await.expect("reg");
    assert_eq!(r.status, 200, "{}", r.text());
    let server = dns(&c, 0);

    let node = ask(server, "1.0.1.10.in-addr.arpa.", RecordType::PTR, None, false).await;
    assert_eq!(node.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ptr_target(&node).as_deref(), Some("n1.node.dc1.consul."));
    assert_eq!(node.answers[0].ttl, 0);

    let svc = ask(server, "7.7.7.10.in-addr.arpa.", RecordType::PTR, None, false).await;
    assert_eq!(ptr_target(&svc).as_deref(), Some("db.service.dc1.consul."));

    let v6 = "6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    let node6 = ask(server, v6, RecordType::PTR, None, true).await;
    assert_eq!(ptr_target(&node6).as_deref(), Some("n6.node.dc1.consul."), "over TCP too");

    let miss = ask(server, "9.9.9.9.in-addr.arpa.", RecordType::PTR, None, false).await;
    assert_eq!(miss.metadata.response_code, ResponseCode::NXDomain);
    assert!(miss.answers.is_empty() && !miss.authorities.is_empty(), "NXDOMAIN with an SOA");

    for bad in ["300.0.1.10.in-addr.arpa.", "0.1.10.in-addr.arpa.", "x.0.ip6.arpa.", "in-addr.arpa."] {
        let m = ask(server, bad, RecordType::PTR, None, false).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{bad}");
    }
}
