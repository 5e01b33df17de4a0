use std::collections::BTreeSet;
use std::str::FromStr;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{RData, Record, RecordType};

use super::*;
use crate::acl::authorizer::{Authorizer, DefaultPolicy};
use crate::acl::rules::Rules;
use crate::api::dns::resolve;
use crate::state::catalog::{HealthCheck, Node, RegisterRequest, ServiceInstance, PASSING};

/// Registers instance `web-<node>` of `service` on `node` at `addr` with one check.
fn register(data: &mut StateData, index: u64, node: &str, addr: &str, service: &str, tags: &[&str], status: &str) {
    let id = format!("{service}-{node}");
    let req = RegisterRequest {
        node: Node {
            node: node.into(),
            address: addr.into(),
            meta: [("rack".to_string(), "r1".to_string())].into(),
            ..Node::default()
        },
        service: Some(ServiceInstance {
            id: id.clone(),
            service: service.into(),
            port: 8080,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..ServiceInstance::default()
        }),
        checks: vec![HealthCheck {
            check_id: format!("{id}-c"),
            service_id: id,
            status: status.into(),
            ..HealthCheck::default()
        }],
        ..RegisterRequest::default()
    };
    data.catalog.register(&req, index).expect("register");
}

/// `n` passing instances of `web` on nodes n000… at 10.0.0.1…; n000 carries tag `primary`.
fn state(n: usize) -> StateData {
    let mut data = StateData::default();
    for i in 0..n {
        let tags: &[&str] = if i == 0 { &["primary"] } else { &[] };
        register(
            &mut data,
            10 + i as u64,
            &format!("n{i:03}"),
            &format!("10.0.{}.{}", i / 250, i % 250 + 1),
            "web",
            tags,
            PASSING,
        );
    }
    data
}

fn packet(name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0x4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(hickory_proto::rr::Name::from_str(name).expect("name"), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().expect("encode")
}

fn limits(edns: Option<u16>, udp: bool, config: &DnsConfig) -> ReplyLimits {
    crate::api::dns::server::test_limits(edns, udp, config)
}

/// The cache's reply to `name`/`rtype`, decoded.
#[allow(clippy::too_many_arguments)]
fn ask(
    cache: &AnswerCache,
    data: &StateData,
    acl: &Arc<Authz>,
    config: &DnsConfig,
    name: &str,
    rtype: RecordType,
    edns: Option<u16>,
    udp: bool,
) -> Option<Message> {
    let bytes = packet(name, rtype, edns);
    let q = parse_fast(&bytes).expect("a fast query");
    let reply = cache.answer(data, acl, config, "dc1", &q, limits(edns, udp, config))?;
    let m = Message::from_vec(&reply).expect("the reply decodes");
    if let (Some(size), true) = (edns, udp) {
        assert!(reply.len() <= usize::from(size.max(512)), "{} bytes in a {size}-byte buffer", reply.len());
    } else if udp {
        assert!(reply.len() <= 512);
    }
    Some(m)
}

fn open() -> Arc<Authz> {
    Authz::disabled()
}

fn texts(records: &[Record]) -> BTreeSet<String> {
    records.iter().map(|r| r.to_string().to_ascii_lowercase()).collect()
}

fn in_order(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.to_string()).collect()
}

fn srv_ports(m: &Message) -> BTreeSet<u16> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(s.port),
            _ => None,
        })
        .collect()
}

fn a_ips(m: &Message) -> BTreeSet<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn parse_fast_takes_plain_queries_only() {
    let bytes = packet("Web.Service.Consul.", RecordType::SRV, Some(4096));
    let q = parse_fast(&bytes).expect("fast");
    assert_eq!(
        (q.id(), q.lower_name.as_str(), q.qtype, q.edns_payload),
        (0x4242, "web.service.consul.", 33, Some(4096))
    );
    assert!(q.recursion_desired);
    assert!(parse_fast(&packet("_web._tcp.service.consul.", RecordType::SRV, None)).is_some());
    // A cookie option is fine; NSID and client subnet are left to hickory's decoder.
    let mut with_cookie = packet("web.service.consul.", RecordType::SRV, Some(1232));
    let rdlen = with_cookie.len() - 2;
    with_cookie[rdlen..].copy_from_slice(&12u16.to_be_bytes());
    with_cookie.extend_from_slice(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(parse_fast(&with_cookie).is_some());
    let mut nsid = with_cookie.clone();
    nsid[rdlen + 3] = 3;
    assert!(parse_fast(&nsid).is_none());
    let mut overrun = with_cookie.clone();
    overrun[rdlen + 5] = 9;
    assert!(parse_fast(&overrun).is_none());
    let mut trailing = packet("web.service.consul.", RecordType::SRV, None);
    trailing.push(0);
    assert!(parse_fast(&trailing).is_none());
    let mut response = packet("web.service.consul.", RecordType::SRV, None);
    response[2] |= 0x80;
    assert!(parse_fast(&response).is_none());
    let mut notify = packet("web.service.consul.", RecordType::SRV, None);
    notify[2] |= 4 << 3;
    assert!(parse_fast(&notify).is_none());
    assert!(parse_fast(&packet("we\\.b.service.consul.", RecordType::SRV, None)).is_none());
    assert!(parse_fast(&packet(".", RecordType::NS, None)).is_none());
    for cut in 0..packet("web.service.consul.", RecordType::SRV, Some(512)).len() {
        assert!(parse_fast(&packet("web.service.consul.", RecordType::SRV, Some(512))[..cut]).is_none());
    }
}

#[test]
fn service_names_match_case_insensitively_by_range() {
    let names: std::collections::BTreeMap<String, u64> =
        ["Web", "api", "web", "webs", "wEb"].iter().map(|s| (s.to_string(), 1)).collect();
    assert_eq!(find_service_name(&names, "WEB"), Some("Web"), "the first spelling in byte order");
    assert_eq!(find_service_name(&names, "webs"), Some("webs"));
    assert_eq!(find_service_name(&names, "API"), Some("api"));
    assert_eq!(find_service_name(&names, "we"), None);
    assert_eq!(find_service_name(&names, "db-1_x"), None);
}

/// Over TCP nothing is cut: the fast reply holds exactly the general path's records.
#[test]
fn answers_match_the_general_path() {
    let mut data = state(12);
    register(&mut data, 100, "h1", "10.9.0.1", "db", &["v1"], WARNING);
    // An instance with its own address (an `.addr.` target) and one with a hostname.
    let mut req = RegisterRequest {
        node: Node { node: "h2".into(), address: "10.9.0.2".into(), ..Node::default() },
        service: Some(ServiceInstance {
            id: "db2".into(),
            service: "db".into(),
            port: 5432,
            address: "10.9.9.9".into(),
            tags: vec!["v1".into()],
            ..ServiceInstance::default()
        }),
        ..RegisterRequest::default()
    };
    data.catalog.register(&req, 101).expect("register");
    req.node.node = "h3".into();
    if let Some(s) = req.service.as_mut() {
        s.id = "db3".into();
        s.address = "db.example.com".into();
    }
    data.catalog.register(&req, 102).expect("register");
    let config = DnsConfig { alt_domain: Some("alt.".into()), ..DnsConfig::default() };
    let cache = AnswerCache::default();
    for (name, rtype) in [
        ("web.service.consul.", RecordType::SRV),
        ("WEB.service.dc1.consul.", RecordType::SRV),
        ("web.service.consul.", RecordType::A),
        ("primary.web.service.consul.", RecordType::SRV),
        ("_web._primary.service.consul.", RecordType::A),
        ("_web._tcp.service.dc1.consul.", RecordType::SRV),
        ("web.service.alt.", RecordType::SRV),
        ("db.service.consul.", RecordType::SRV),
        ("v1.db.service.consul.", RecordType::A),
    ] {
        let fast = ask(&cache, &data, &open(), &config, name, rtype, Some(4096), false)
            .unwrap_or_else(|| panic!("{name} {rtype}: no fast answer"));
        let general = resolve(&data, &open(), &config, "dc1", name, rtype, 0);
        assert_eq!(texts(&fast.answers), texts(&general.answers), "{name} {rtype}");
        let extras: Vec<Record> = general.additionals().cloned().collect();
        let fast_extras: Vec<Record> =
            fast.additionals.iter().filter(|r| r.record_type() != RecordType::OPT).cloned().collect();
        assert_eq!(texts(&fast_extras), texts(&extras), "{name} {rtype}");
        assert_eq!(fast.metadata.id, 0x4242);
        assert!(fast.metadata.authoritative && fast.metadata.recursion_desired && !fast.metadata.truncation);
        assert_eq!(fast.metadata.response_code, hickory_proto::op::ResponseCode::NoError);
        assert!(fast.queries[0].name.to_ascii().eq_ignore_ascii_case(name));
        assert_eq!(fast.edns.as_ref().map(|e| e.max_payload()), Some(4096));
    }
    // Left to the general path: other record types, other names, nothing healthy.
    for (name, rtype) in [
        ("web.service.consul.", RecordType::TXT),
        ("web.service.consul.", RecordType::ANY),
        ("n001.node.consul.", RecordType::A),
        ("web.service.dc2.consul.", RecordType::SRV),
        ("nope.service.consul.", RecordType::SRV),
        ("v2.db.service.consul.", RecordType::SRV),
        ("db.service.consul.", RecordType::AAAA),
    ] {
        assert!(ask(&cache, &data, &open(), &config, name, rtype, None, false).is_none(), "{name} {rtype}");
    }
}

#[test]
fn hits_reuse_the_entry_until_the_service_changes() {
    let mut data = state(5);
    let config = DnsConfig::default();
    let cache = AnswerCache::default();
    let key = |tag: Option<&str>| Key {
        service: "web".into(),
        tag: tag.map(str::to_string),
        kind: Kind::Srv,
        domain: "consul".into(),
        only_passing: false,
    };
    let first = cache.entry(&data, &config, "dc1", key(None), data.catalog.service_index("web"));
    let again = cache.entry(&data, &config, "dc1", key(None), data.catalog.service_index("web"));
    assert!(Arc::ptr_eq(&first, &again), "a hit");
    // Another service moving does not touch this one.
    register(&mut data, 50, "x1", "10.1.1.1", "other", &[], PASSING);
    let still = cache.entry(&data, &config, "dc1", key(None), data.catalog.service_index("web"));
    assert!(Arc::ptr_eq(&first, &still));
    // The service's own change does, and the new answer shows it.
    let mut req = RegisterRequest {
        node: Node { node: "n001".into(), address: "10.0.0.2".into(), ..Node::default() },
        service: Some(ServiceInstance {
            id: "web-n001".into(),
            service: "web".into(),
            port: 9999,
            ..ServiceInstance::default()
        }),
        ..RegisterRequest::default()
    };
    req.node.meta = [("rack".to_string(), "r1".to_string())].into();
    data.catalog.register(&req, 51).expect("register");
    let after = cache.entry(&data, &config, "dc1", key(None), data.catalog.service_index("web"));
    assert!(!Arc::ptr_eq(&first, &after));
    let m = ask(&cache, &data, &open(), &config, "web.service.consul.", RecordType::SRV, None, false).expect("answer");
    assert_eq!(srv_ports(&m), [8080, 9999].into());
}

#[test]
fn a_check_turning_critical_drops_the_instance() {
    let mut data = state(3);
    let config = DnsConfig::default();
    let cache = AnswerCache::default();
    let ask_a = |data: &StateData| {
        a_ips(&ask(&cache, data, &open(), &config, "web.service.consul.", RecordType::A, None, false).expect("answer"))
    };
    assert_eq!(ask_a(&data), ["10.0.0.1", "10.0.0.2", "10.0.0.3"].map(String::from).into());
    register(&mut data, 60, "n001", "10.0.0.2", "web", &[], CRITICAL);
    assert_eq!(ask_a(&data), ["10.0.0.1", "10.0.0.3"].map(String::from).into());
    // A node-level check counts for every instance on the node.
    let node_check = RegisterRequest {
        node: Node { node: "n002".into(), address: "10.0.0.3".into(), ..Node::default() },
        checks: vec![HealthCheck { check_id: "serfHealth".into(), status: CRITICAL.into(), ..HealthCheck::default() }],
        skip_node_update: true,
        ..RegisterRequest::default()
    };
    data.catalog.register(&node_check, 61).expect("register");
    assert_eq!(ask_a(&data), ["10.0.0.1"].map(String::from).into());
    // only_passing drops warning instances: a different key, not a stale hit.
    register(&mut data, 62, "n001", "10.0.0.2", "web", &[], WARNING);
    assert_eq!(ask_a(&data), ["10.0.0.1", "10.0.0.2"].map(String::from).into());
    let only = DnsConfig { only_passing: true, ..DnsConfig::default() };
    let m = ask(&cache, &data, &open(), &only, "web.service.consul.", RecordType::A, None, false).expect("answer");
    assert_eq!(a_ips(&m), ["10.0.0.1"].map(String::from).into());
}

#[test]
fn a_node_address_change_moves_the_answer() {
    let mut data = state(2);
    let config = DnsConfig::default();
    let cache = AnswerCache::default();
    let srv =
        ask(&cache, &data, &open(), &config, "web.service.consul.", RecordType::SRV, None, false).expect("answer");
    assert!(srv.additionals.iter().any(|r| r.to_string().contains("10.0.0.2")));
    let mut req = RegisterRequest {
        node: Node { node: "n001".into(), address: "10.7.7.7".into(), ..Node::default() },
        ..RegisterRequest::default()
    };
    req.node.meta = [("rack".to_string(), "r1".to_string())].into();
    data.catalog.register(&req, 70).expect("register");
    let a = ask(&cache, &data, &open(), &config, "web.service.consul.", RecordType::A, None, false).expect("answer");
    assert_eq!(a_ips(&a), ["10.0.0.1", "10.7.7.7"].map(String::from).into());
    let srv =
        ask(&cache, &data, &open(), &config, "web.service.consul.", RecordType::SRV, None, false).expect("answer");
    assert!(srv.additionals.iter().any(|r| r.to_string().contains("10.7.7.7")));
    assert!(!srv.additionals.iter().any(|r| r.to_string().contains("10.0.0.2")));
}

#[test]
fn tag_queries_are_cached_apart() {
    let data = state(4);
    let config = DnsConfig::default();
    let cache = AnswerCache::default();
    let all = ask(&cache, &data, &open(), &config, "web.service.consul.", RecordType::A, None, true).expect("answer");
    let tagged = ask(&cache, &data, &open(), &config, "PRIMARY.web.service.consul.", RecordType::A, None, false)
        .expect("answer");
    let rfc = ask(&cache, &data, &open(), &config, "_web._primary.service.consul.", RecordType::SRV, None, false)
        .expect("answer");
    assert_eq!(a_ips(&all).len(), 3, "the UDP answer limit");
    assert_eq!(a_ips(&tagged), ["10.0.0.1"].map(String::from).into());
    assert_eq!(rfc.answers.len(), 1);
    assert_eq!(cache.len(), 3, "untagged A, tagged A, tagged SRV");
    assert!(ask(&cache, &data, &open(), &config, "secondary.web.service.consul.", RecordType::A, None, false).is_none());
}

#[test]
fn the_cache_stays_within_its_bounds() {
    let mut data = state(3);
    for (i, svc) in ["a", "b", "c", "d"].iter().enumerate() {
        register(&mut data, 200 + i as u64, &format!("s{i}"), "10.2.0.1", svc, &[], PASSING);
    }
    let config = DnsConfig::default();
    let cache = AnswerCache::with_limits(2, 1 << 20);
    for svc in ["a", "b", "c", "d"] {
        ask(&cache, &data, &open(), &config, &format!("{svc}.service.consul."), RecordType::SRV, None, false)
            .expect("answer");
        assert!(cache.len() <= 2);
    }
    // The most recently used stay.
    let keys: BTreeSet<String> = cache.entries.lock().map.keys().map(|k| k.service.clone()).collect();
    assert_eq!(keys, ["c", "d"].map(String::from).into());
    // A byte bound: a big answer evicts the rest, and one over the bound is answered, not kept.
    let big = state(200);
    let small = AnswerCache::with_limits(100, 40_000);
    ask(&small, &big, &open(), &config, "primary.web.service.consul.", RecordType::SRV, None, false).expect("answer");
    ask(&small, &big, &open(), &config, "web.service.consul.", RecordType::A, None, false).expect("answer");
    assert!(small.entries.lock().bytes <= 40_000);
    let tiny = AnswerCache::with_limits(100, 2_000);
    ask(&tiny, &big, &open(), &config, "web.service.consul.", RecordType::SRV, Some(4096), true).expect("answer");
    assert_eq!(tiny.len(), 0);
    assert_eq!(tiny.entries.lock().bytes, 0);
}

#[test]
fn every_answer_is_shuffled_and_complete() {
    let data = state(20);
    let config = DnsConfig::default();
    let cache = AnswerCache::default();
    let mut orders = BTreeSet::new();
    let mut sets = BTreeSet::new();
    for _ in 0..20 {
        let m =
            ask(&cache, &data, &open(), &config, "web.service.consul.", RecordType::SRV, None, false).expect("answer");
        assert_eq!(m.answers.len(), 20);
        orders.insert(in_order(&m.answers));
        sets.insert(texts(&m.answers));
    }
    assert_eq!(sets.len(), 1, "the same records every time");
    assert!(orders.len() > 1, "in a different order");
    // UDP answers are a random 3 of the 20.
    let picks: BTreeSet<_> = (0..20)
        .map(|_| {
            let m = ask(&cache, &data, &open(), &config, "web.service.consul.", RecordType::SRV, None, true)
                .expect("answer");
            assert_eq!((m.answers.len(), m.additionals.len()), (3, 6), "3 SRV, their A and node-meta TXT");
            texts(&m.answers)
        })
        .collect();
    assert!(picks.len() > 1);
}

#[test]
fn acls_are_applied_per_query() {
    let data = state(3);
    let config = DnsConfig::default();
    let cache = AnswerCache::default();
    let token = |rules: &str| {
        Authz::new("t", Arc::new(Authorizer::new(Rules::parse(rules).expect("rules"), DefaultPolicy::Deny, false)))
    };
    let all = token(r#"service_prefix "" { policy = "read" } node_prefix "" { policy = "read" }"#);
    let some = token(
        r#"service_prefix "" { policy = "read" } node_prefix "n00" { policy = "read" } node "n001" { policy = "deny" }"#,
    );
    let none = token(r#"node_prefix "" { policy = "read" }"#);
    let q = |acl: &Arc<Authz>| ask(&cache, &data, acl, &config, "web.service.consul.", RecordType::A, None, false);
    assert_eq!(a_ips(&q(&all).expect("answer")).len(), 3);
    // Not for this token from the cache: the general path filters instance by instance.
    assert!(q(&some).is_none());
    assert!(q(&none).is_none());
    assert_eq!(
        ips_of(&resolve(&data, &some, &config, "dc1", "web.service.consul.", RecordType::A, 0)),
        ["10.0.0.1", "10.0.0.3"]
    );
    // The token that passed is remembered; the others still do not get the cached answer.
    assert!(q(&all).is_some());
    assert!(q(&some).is_none());
}

fn ips_of(a: &crate::api::dns::DnsAnswer) -> Vec<String> {
    let mut v: Vec<String> = a
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

#[test]
fn replies_fit_the_udp_limits() {
    let data = state(100);
    let cache = AnswerCache::default();
    let config = DnsConfig::default();
    // No EDNS: the UDP answer limit, no TC (enable_truncate is off).
    let m = ask(&cache, &data, &open(), &config, "web.service.consul.", RecordType::SRV, None, true).expect("answer");
    assert_eq!(m.answers.len(), 3);
    assert!(!m.metadata.truncation && m.edns.is_none());
    // EDNS: as many SRV records with their extras as fit in the buffer, at least as many as the
    // general path fits (the extras' owners are pointers here).
    let general = crate::api::dns::server::general_reply(
        &packet("web.service.consul.", RecordType::SRV, Some(4096)),
        &data,
        &config,
    );
    let general = Message::from_vec(&general).expect("decode");
    let m =
        ask(&cache, &data, &open(), &config, "web.service.consul.", RecordType::SRV, Some(4096), true).expect("answer");
    assert!(m.answers.len() >= general.answers.len(), "{} vs {}", m.answers.len(), general.answers.len());
    assert!(m.answers.len() > 40 && m.answers.len() < 100, "{}", m.answers.len());
    for srv in &m.answers {
        let RData::SRV(s) = &srv.data else { panic!("not SRV: {srv}") };
        assert!(m.additionals.iter().any(|x| x.name == s.target && x.record_type() == RecordType::A), "{srv}");
    }
    let small =
        ask(&cache, &data, &open(), &config, "web.service.consul.", RecordType::SRV, Some(700), true).expect("answer");
    assert!(small.answers.len() < m.answers.len());
    // TC when something was left out and enable_truncate is on; a_record_limit for A.
    let trunc = DnsConfig { enable_truncate: true, a_record_limit: 2, ..DnsConfig::default() };
    let m =
        ask(&cache, &data, &open(), &trunc, "web.service.consul.", RecordType::SRV, Some(1000), true).expect("answer");
    assert!(m.metadata.truncation);
    let m =
        ask(&cache, &data, &open(), &trunc, "web.service.consul.", RecordType::A, Some(4096), true).expect("answer");
    assert_eq!(m.answers.len(), 2);
    assert!(m.metadata.truncation);
    let m = ask(&cache, &data, &open(), &trunc, "web.service.consul.", RecordType::SRV, None, false).expect("answer");
    assert_eq!(m.answers.len(), 100, "TCP: everything");
    assert!(!m.metadata.truncation);
}

/// Past 16 KiB a pointer cannot reach a target: those additional records spell the owner out.
#[test]
fn big_tcp_answers_name_far_targets_in_full() {
    let data = state(400);
    let cache = AnswerCache::default();
    let config = DnsConfig::default();
    let m = ask(&cache, &data, &open(), &config, "web.service.consul.", RecordType::SRV, None, false).expect("answer");
    assert_eq!(m.answers.len(), 400);
    let owners: BTreeSet<String> =
        m.additionals.iter().filter(|r| r.record_type() == RecordType::A).map(|r| r.name.to_ascii()).collect();
    for srv in &m.answers {
        let RData::SRV(s) = &srv.data else { panic!("not SRV: {srv}") };
        assert!(owners.contains(&s.target.to_ascii()), "{srv}");
    }
}
