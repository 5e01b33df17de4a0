//! Fuzz targets: every parser that takes bytes from outside the agent, as a plain
//! `fn(&[u8])` that must never panic (nor hang, nor allocate absurdly) whatever the input.
//!
//! [`TARGETS`] lists them by name. Two harnesses drive the same functions:
//!
//! - `cargo test -p consul-core fuzzing` (CI, stable): replays every file under
//!   `fuzz/corpus/<name>/` and `fuzz/regressions/<name>/` through its target, then runs a
//!   bounded, seeded random-mutation pass per target (`FUZZ_SECONDS` per target, default 2;
//!   `FUZZ_SEED` to repeat a run).
//! - `scripts/fuzz.sh [name] [seconds]` (nightly, coverage-guided libFuzzer via `cargo fuzz`),
//!   see `fuzz/README.md`.
//!
//! Adding a target: write a `pub fn name(data: &[u8])` here, add `("name", name)` to
//! [`TARGETS`], and commit a few seeds under `fuzz/corpus/name/`.
//!
//! Not part of the supported API (hidden from the docs); the layers are reached through their
//! crate-internal decoding functions, so nothing here needs a running agent or a network.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::acl::authorizer::{Authorizer, DefaultPolicy};
use crate::acl::rules::{Need, Resource, Rules, Scalar};
use crate::api::dns::DnsConfig;
use crate::api::http::fuzz as http;
use crate::membership::gossip::driver::{KeyringOp, KeyringReply};
use crate::membership::gossip::engine::{Engine, GossipConfig, Outbox, SyncState};
use crate::membership::gossip::{Keyring, MemberInfo};
use crate::state::StateData;

/// A fuzz target: decodes `data` and must return normally for every input.
pub type Target = fn(&[u8]);

/// Every target, by name: the name is also its corpus directory (`fuzz/corpus/<name>/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("http_query", http_query),
    ("http_kv", http_kv),
    ("http_txn", http_txn),
    ("http_catalog", http_catalog),
    ("http_agent_service", http_agent_service),
    ("http_agent_check", http_agent_check),
    ("http_session", http_session),
    ("http_acl", http_acl),
    ("http_other", http_other),
    ("config_json", config_json),
    ("config_hcl", config_hcl),
    ("dns", dns),
    ("gossip_plain", gossip_plain),
    ("gossip_sealed", gossip_sealed),
    ("acl_rules", acl_rules),
    ("acl_selector", acl_selector),
    ("acl_jwt", acl_jwt),
    ("connect_csr", connect_csr),
    ("durations", durations),
    ("filter_expr", filter_expr),
    ("rpc_frames", rpc_frames),
    ("snapshot_archive", snapshot_archive),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

// ---- HTTP ----------------------------------------------------------------------------------

/// Query strings, as every endpoint family reads them (blocking reads, consistency, `dc`,
/// token, catalog filters, maintenance, event filters).
pub fn http_query(data: &[u8]) {
    http::query(data);
}

/// KV: `<key>?<query>`: key validation and the GET/PUT/DELETE parameters.
pub fn http_kv(data: &[u8]) {
    http::kv(data);
}

/// `PUT /v1/txn` bodies.
pub fn http_txn(data: &[u8]) {
    http::txn(data);
}

/// Catalog register (first byte anything but `d`) and deregister (`d`) bodies.
pub fn http_catalog(data: &[u8]) {
    http::catalog(data);
}

/// Agent service definitions (`PUT /v1/agent/service/register`).
pub fn http_agent_service(data: &[u8]) {
    http::agent_service(data);
}

/// Agent check definitions (`PUT /v1/agent/check/register`).
pub fn http_agent_check(data: &[u8]) {
    http::agent_check(data);
}

/// Session create bodies.
pub fn http_session(data: &[u8]) {
    http::session(data);
}

/// ACL token (`t`), policy (`p`), role (`r`) and auth method (else) bodies.
pub fn http_acl(data: &[u8]) {
    http::acl(data);
}

/// Coordinate (`c`), keyring (`k`), agent token (`t`) bodies and event fires (else).
pub fn http_other(data: &[u8]) {
    http::other(data);
}

// ---- configuration files -------------------------------------------------------------------

/// Walks a parsed configuration onto fresh settings, as the binary does for each file.
fn apply_config(value: &Value) {
    let mut settings = crate::config_file::Settings::new(false);
    if settings.apply_value(value, "fuzz.cfg").is_ok() {
        let _ = settings.finish();
    }
}

/// A JSON configuration file.
pub fn config_json(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        apply_config(&v);
    }
}

/// An HCL configuration file (parsed to JSON values by `hcl-rs`, as `server/src/config_file.rs`
/// does, then walked like JSON).
pub fn config_hcl(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(v) = hcl::from_str::<Value>(text) {
        apply_config(&v);
    }
}

// ---- DNS -----------------------------------------------------------------------------------

/// A small catalog to answer from: two nodes, services with tags, one critical check.
fn dns_state() -> StateData {
    let mut data = StateData::default();
    let bodies = [
        r#"{"Node":"n1","Address":"10.0.0.1","NodeMeta":{"rack":"r1"},"Service":{"ID":"web1","Service":"web","Tags":["primary","v1"],"Port":80}}"#,
        r#"{"Node":"n2","Address":"10.0.0.2","Service":{"ID":"web2","Service":"web","Port":81,"Address":"web.example.com"}}"#,
        r#"{"Node":"n2","Address":"10.0.0.2","Service":{"ID":"db","Service":"db","Port":5432,"Address":"::1"},"Check":{"CheckID":"db-c","ServiceID":"db","Status":"critical"}}"#,
    ];
    for (i, body) in bodies.iter().enumerate() {
        if let Ok(req) = crate::wire::catalog::parse_register(body.as_bytes(), "dc1") {
            let _ = data.catalog.register(&req, i as u64 + 1);
        }
    }
    data
}

/// A DNS query packet, answered over UDP and over TCP from a small catalog (everything short
/// of the sockets and the Raft read barrier). Every reply must decode again.
pub fn dns(data: &[u8]) {
    let state = dns_state();
    let config = DnsConfig { alt_domain: Some("alt.".into()), enable_truncate: true, ..DnsConfig::default() };
    for udp in [true, false] {
        if let Some(reply) = crate::api::dns::answer_offline(data, udp, &state, &config, "dc1") {
            // Whatever we send must be a well-formed message (a malformed reply is our bug).
            assert!(
                hickory_proto::op::Message::from_vec(&reply).is_ok(),
                "the reply to a query does not decode: {reply:?}"
            );
        }
    }
}

// ---- gossip --------------------------------------------------------------------------------

/// The gossip encryption key the sealed target and its seeds use.
pub const GOSSIP_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

/// Member `i` of the fuzzing pool (member 1 receives the fuzzed packets).
pub fn gossip_member(i: u8) -> MemberInfo {
    MemberInfo {
        node_id: uuid::Uuid::from_u128(u128::from(i) + 1),
        name: format!("n{i}"),
        datacenter: "dc1".into(),
        rpc_addr: std::net::SocketAddr::from(([127, 0, 0, i], 8300)),
        serf_addr: std::net::SocketAddr::from(([127, 0, 0, i], 8301)),
        http_addr: std::net::SocketAddr::from(([127, 0, 0, i], 8500)),
        server: true,
        bootstrap_expect: 0,
        raft_initialized: false,
        incarnation: 1,
        wan_addr: None,
    }
}

/// A keyring holding [`GOSSIP_KEY`] (`sealed`) or no key.
pub fn gossip_keyring(sealed: bool) -> Option<Arc<Keyring>> {
    let keys = if sealed { vec![GOSSIP_KEY.to_string()] } else { Vec::new() };
    Keyring::new(&keys, None, "").ok().map(Arc::new)
}

/// Feeds `data` to a fresh member 1 as a UDP packet and as a push/pull or keyring stream.
fn gossip_receive(ring: Arc<Keyring>, data: &[u8]) {
    let now = Instant::now();
    let mut engine = Engine::new(gossip_member(1), GossipConfig::lan(), ring, 1, now);
    let mut out = Outbox::default();
    let _ = engine.handle_packet(now, data, &mut out);
    if let Ok(plain) = engine.open_stream(data) {
        if let Ok(state) = postcard::from_bytes::<SyncState>(&plain) {
            engine.apply_sync(now, state, &mut out);
        }
        let _ = postcard::from_bytes::<KeyringOp>(&plain);
        let _ = postcard::from_bytes::<KeyringReply>(&plain);
    }
}

/// A plaintext gossip packet (or push/pull stream) arriving at a pool without encryption.
pub fn gossip_plain(data: &[u8]) {
    if let Some(ring) = gossip_keyring(false) {
        gossip_receive(ring, data);
    }
}

/// Gossip with encryption on: `data` as it arrives (the open/decrypt path, replays), and
/// `data` sealed with the pool's key (what an authentic member could send).
pub fn gossip_sealed(data: &[u8]) {
    let Some(ring) = gossip_keyring(true) else { return };
    gossip_receive(ring.clone(), data);
    if let Ok(sealed) = ring.seal(data) {
        gossip_receive(ring.clone(), &sealed);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::membership::gossip::keyring::decode_key(text);
    }
}

// ---- ACL grammars --------------------------------------------------------------------------

/// ACL rules (HCL or JSON). Whatever parses must print back to HCL that parses to the same
/// rules, and be usable by an authorizer.
pub fn acl_rules(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(rules) = Rules::parse(text) else { return };
    let printed = rules.to_hcl();
    match Rules::parse(&printed) {
        Ok(again) => assert_eq!(again, rules, "rules changed through to_hcl: {printed}"),
        Err(e) => panic!("to_hcl printed rules that do not parse ({e}): {printed}"),
    }
    let mut merged = Rules::default();
    merged.merge(&rules);
    let authz = Authorizer::new(merged, DefaultPolicy::Deny, true);
    for r in Resource::ALL {
        for name in ["", "web", "web/x", "a"] {
            for need in [Need::Read, Need::List, Need::Write] {
                let _ = authz.allows(r, name, need);
            }
        }
    }
    for s in Scalar::ALL {
        let _ = authz.allows_scalar(s, Need::Write);
    }
    let _ = authz.allows_key_write_prefix("web/");
    let _ = authz.allows_intention("web", Need::Write);
}

/// Binding-rule selectors and `${…}` bind-name templates (JWT login).
pub fn acl_selector(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (selector, template) = text.split_once('\n').unwrap_or((text, text));
    let mut vars = crate::wire::selector::Vars::default();
    vars.values.insert("name".into(), "web".into());
    vars.values.insert("team".into(), "eng".into());
    vars.lists.insert("groups".into(), vec!["a".into(), "b".into()]);
    if let Ok(s) = crate::wire::selector::Selector::parse(selector) {
        let _ = s.matches(&vars);
    }
    let _ = crate::wire::selector::interpolate(template, &vars);
}

/// A bearer token presented to `POST /v1/acl/login` (an unauthenticated endpoint), checked
/// against a JWT auth method.
pub fn acl_jwt(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let config = serde_json::json!({
        "JWTValidationPubKeys": [include_str!("api/testdata/jwt-test-rsa.pub")],
        "JWTSupportedAlgs": ["RS256", "ES256", "PS256"],
        "ClaimMappings": {"sub": "name", "/org/team": "team"},
        "ListClaimMappings": {"groups": "groups"},
    });
    if let Ok(cfg) = crate::api::jwt_auth::JwtConfig::parse(&config) {
        let _ = cfg.verify(token, 1_700_000_000);
    }
}

// ---- Connect CA ----------------------------------------------------------------------------

/// A certificate signing request sent to the internal sign endpoint
/// (`<service>\n<CSR PEM>`: the service comes from the URL path), signed by a fixed root.
pub fn connect_csr(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (service, csr) = text.split_once('\n').unwrap_or(("web", text));
    let _ = crate::tls::connect_ca::sign_leaf_request(
        include_str!("tls/testdata/fuzz-ca.pem"),
        include_str!("tls/testdata/fuzz-ca.key"),
        "11111111-2222-3333-4444-555555555555",
        "dc1",
        service,
        csr,
        std::time::Duration::from_secs(72 * 3600),
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
    );
}

// ---- `?filter=` expressions ----------------------------------------------------------------

/// `?filter=` expressions: the first byte picks an endpoint's schema, the rest is the
/// expression; a compiled filter is evaluated over a health-service entry and a node, as a
/// handler would over its items (whatever their shape, evaluation must not panic).
pub fn filter_expr(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else { return };
    let Ok(expr) = std::str::from_utf8(rest) else { return };
    let endpoints = crate::filter::ENDPOINTS;
    let (_, schema) = endpoints[usize::from(pick) % endpoints.len()];
    let Ok(filter) = crate::filter::Filter::compile(expr, schema) else { return };
    let items = [
        serde_json::json!({
            "Node": {"Node": "n1", "Address": "10.0.0.1", "Meta": {"rack": "r1", "env": ""}},
            "Service": {"ID": "web-1", "Service": "web", "Tags": ["v1", "primary"], "Port": 8080,
                        "Meta": {"version": "2"}, "Weights": {"Passing": 1, "Warning": 1}},
            "Checks": [{"CheckID": "serfHealth", "Status": "passing", "ServiceTags": []},
                       {"CheckID": "c2", "Status": "critical", "ServiceTags": ["v1"]}]
        }),
        serde_json::json!({"Node": "n2", "Address": "::1", "Meta": null, "TaggedAddresses": {}, "ID": 7}),
        Value::Null,
    ];
    for item in &items {
        let _ = filter.matches(item);
    }
}

// ---- agent-to-agent RPC --------------------------------------------------------------------

/// Bytes as a server RPC port reads them after the preamble: frames split by the port's
/// decoder (every service routed), and each body decoded as its service's request would be
/// (Raft messages and forwarded requests; the others are decoded by the gossip, DNS and HTTP
/// targets).
pub fn rpc_frames(data: &[u8]) {
    use tokio_util::codec::Decoder;
    let mut decoder = crate::rpc::wire::request_decoder(|_| true);
    let mut buf = bytes::BytesMut::from(data);
    // Bounded: each frame consumes at least its 13-byte header.
    while let Ok(Some(frame)) = decoder.decode(&mut buf) {
        match crate::rpc::Service::from_tag(frame.tag) {
            Some(crate::rpc::Service::Raft) => {
                let _ = postcard::from_bytes::<crate::replication::raft::RaftRequest>(&frame.body);
            }
            Some(crate::rpc::Service::Forward) => {
                let _ = postcard::from_bytes::<crate::replication::forward::ForwardRequest>(&frame.body);
            }
            _ => {}
        }
    }
}

// ---- snapshot archives ---------------------------------------------------------------------

/// `PUT /v1/snapshot` bodies, read as a restore reads its spooled upload (under limits small
/// enough that a run stays fast: 4 MiB of state, 50:1).
pub fn snapshot_archive(data: &[u8]) {
    let limits = crate::state::archive::RestoreLimits { max_state_bytes: 4 << 20, max_inflate_ratio: 50 };
    let _ = crate::state::archive::read_archive_from(data, data.len() as u64, &limits);
}

// ---- small grammars ------------------------------------------------------------------------

/// Go durations (`?wait`, TTLs, config) and RFC 3339 timestamps (token expiry).
pub fn durations(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(d) = crate::duration::parse_go_duration(text) {
        let printed = crate::duration::format_go_duration(d);
        assert!(crate::duration::parse_go_duration(&printed).is_ok(), "{printed:?} (from {text:?}) does not parse");
    }
    let _ = crate::wire::timestamp::parse_ms(text);
}

/// Seeds built by code rather than kept by hand: real DNS queries and gossip traffic between
/// two engines, as (target, file name, bytes). `write_seed_corpus` (an ignored test) writes
/// them under `fuzz/corpus/`; the CI replay also runs them directly.
pub fn generated_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    // A real snapshot archive of a small state.
    let mut state = StateData::default();
    for i in 0..20u64 {
        state.tombstones.insert(format!("deleted/{i}"), i);
    }
    if let Ok(bin) = postcard::to_allocvec(&state) {
        let meta = crate::state::archive::ArchiveMeta {
            id: "2-20-1".into(),
            index: 20,
            term: 2,
            version: crate::state::archive::ARCHIVE_VERSION,
            size: bin.len() as u64,
        };
        if let Ok(archive) = crate::state::archive::write_archive(&meta, &bin) {
            out.push(("snapshot_archive", "small-state".to_string(), archive));
        }
    }
    // RPC frames: a forwarded KV read and a malformed tail.
    let forward = crate::replication::forward::ForwardRequest::ResolveToken("secret".into());
    if let Some(frame) = postcard::to_allocvec(&forward)
        .ok()
        .and_then(|body| crate::rpc::wire::encode(crate::rpc::Service::Forward.tag(), 7, &body))
    {
        let mut two = frame.to_vec();
        two.extend_from_slice(&frame);
        out.push(("rpc_frames", "forward-twice".to_string(), two));
        let mut cut = frame.to_vec();
        cut.truncate(cut.len() - 1);
        out.push(("rpc_frames", "forward-cut".to_string(), cut));
    }
    for (name, rtype, edns) in [
        ("web.service.consul.", hickory_proto::rr::RecordType::A, None),
        ("web.service.consul.", hickory_proto::rr::RecordType::SRV, Some(1232)),
        ("primary.web.service.dc1.consul.", hickory_proto::rr::RecordType::A, None),
        ("_web._tcp.service.consul.", hickory_proto::rr::RecordType::SRV, None),
        ("n1.node.consul.", hickory_proto::rr::RecordType::ANY, None),
        ("n2.node.alt.", hickory_proto::rr::RecordType::TXT, None),
        ("db.service.consul.", hickory_proto::rr::RecordType::AAAA, Some(4096)),
        ("0a000001.addr.consul.", hickory_proto::rr::RecordType::A, None),
        ("consul.", hickory_proto::rr::RecordType::SOA, None),
        ("1.0.0.10.in-addr.arpa.", hickory_proto::rr::RecordType::PTR, None),
        (
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
            hickory_proto::rr::RecordType::PTR,
            None,
        ),
        ("example.com.", hickory_proto::rr::RecordType::A, None),
    ] {
        let Ok(qname) = name.parse::<hickory_proto::rr::Name>() else { continue };
        let mut m = hickory_proto::op::Message::query();
        m.metadata.id = 0x1234;
        m.metadata.recursion_desired = true;
        m.add_query(hickory_proto::op::Query::query(qname, rtype));
        if let Some(size) = edns {
            let mut e = hickory_proto::op::Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        if let Ok(bytes) = m.to_vec() {
            out.push(("dns", format!("{}-{rtype}", name.trim_end_matches('.')), bytes));
        }
    }
    if let Ok((_, csr)) = crate::tls::connect_ca::leaf_request() {
        out.push(("connect_csr", "rcgen-p256".into(), format!("web\n{csr}").into_bytes()));
    }
    for (target, sealed) in [("gossip_plain", false), ("gossip_sealed", true)] {
        for (name, bytes) in gossip_traffic(sealed) {
            out.push((target, name, bytes));
        }
    }
    out
}

/// Real traffic from member 2 to member 1: its join, probes and acks, a user event, a
/// push/pull state and keyring streams.
fn gossip_traffic(sealed: bool) -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let (Some(ring_a), Some(ring_b)) = (gossip_keyring(sealed), gossip_keyring(sealed)) else { return seeds };
    let now = Instant::now();
    let mut a = Engine::new(gossip_member(1), GossipConfig::lan(), ring_a, 1, now);
    let mut b = Engine::new(gossip_member(2), GossipConfig::lan(), ring_b, 2, now);
    let to_a = gossip_member(1).serf_addr;
    let mut out = Outbox::default();
    b.announce(now, gossip_member(1), &mut out);
    let ev = crate::membership::gossip::UserEvent {
        id: "11111111-2222-3333-4444-555555555555".into(),
        name: "deploy".into(),
        payload: b"v2".to_vec(),
        node_filter: String::new(),
        service_filter: "web".into(),
        tag_filter: String::new(),
        version: 1,
        ltime: 0,
    };
    for round in 0..4 {
        let mut back = Outbox::default();
        for (to, packet) in std::mem::take(&mut out.sends) {
            if to == to_a {
                seeds.push((format!("round{round}-{}", seeds.len()), packet.clone()));
                let _ = a.handle_packet(now, &packet, &mut back);
            }
        }
        for (_, packet) in back.sends {
            let _ = b.handle_packet(now, &packet, &mut out);
        }
        if round == 1 {
            let _ = b.fire_event(now, ev.clone(), &mut out);
        }
    }
    if let Ok(state) = postcard::to_stdvec(&b.sync_state()) {
        seeds.push(("pushpull".into(), b.seal_stream(&state)));
    }
    for (name, op) in [("keyring-list", KeyringOp::List), ("keyring-install", KeyringOp::Install(GOSSIP_KEY.into()))] {
        if let Ok(body) = postcard::to_stdvec(&op) {
            seeds.push((name.into(), b.seal_stream(&body)));
        }
    }
    let reply = KeyringReply { keys: vec![GOSSIP_KEY.into()], primary: Some(GOSSIP_KEY.into()), error: None };
    if let Ok(body) = postcard::to_stdvec(&reply) {
        seeds.push(("keyring-reply".into(), b.seal_stream(&body)));
    }
    let mut leave = Outbox::default();
    b.leave(now, &mut leave);
    for (to, packet) in leave.sends {
        if to == to_a {
            seeds.push((format!("leave-{}", seeds.len()), packet));
        }
    }
    seeds
}

#[cfg(test)]
mod tests;
