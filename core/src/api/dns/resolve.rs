//! Turning one DNS question into records, from the catalog.

use crate::acl::rules::{Need, Resource};
use crate::api::authz::Authz;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::seq::SliceRandom;

use super::reverse::{is_reverse_name, parse_reverse_name};
use super::DnsConfig;
use crate::state::catalog::{service_entries, HealthCheck, Node, ServiceInstance, CRITICAL, WARNING};
use crate::state::StateData;

/// What a question resolved to.
#[derive(Debug, Clone, Default)]
pub struct DnsAnswer {
    /// The name is unknown: NXDOMAIN.
    pub nx_domain: bool,
    /// Answer records.
    pub answers: Vec<Record>,
    /// Additional records per answer, parallel to `answers` (addresses of SRV targets,
    /// node-meta TXT), so trimming an answer trims its extras with it.
    pub extras: Vec<Vec<Record>>,
    /// Answers were left out because of the answer limit.
    pub limited: bool,
    /// Authority records (the SOA on empty and negative answers).
    pub authorities: Vec<Record>,
}

impl DnsAnswer {
    /// Every additional record.
    pub fn additionals(&self) -> impl Iterator<Item = &Record> {
        self.extras.iter().flatten()
    }
}

/// A question under one of our domains, split into the labels before the domain (lower case).
pub(super) fn labels_under<'a>(qname: &'a str, domains: &[&str]) -> Option<(Vec<&'a str>, String)> {
    for domain in domains {
        let domain = domain.trim_end_matches('.');
        let name = qname.trim_end_matches('.');
        if name == domain {
            return Some((Vec::new(), domain.to_string()));
        }
        if let Some(rest) = name.strip_suffix(domain).and_then(|r| r.strip_suffix('.')) {
            return Some((rest.split('.').collect(), domain.to_string()));
        }
    }
    None
}

/// Whether `qname` is under one of our domains.
pub(crate) fn in_our_domains(qname: &str, config: &DnsConfig) -> bool {
    let lower = qname.to_ascii_lowercase();
    labels_under(&lower, &domains(config)).is_some()
}

pub(super) fn domains(config: &DnsConfig) -> Vec<&str> {
    std::iter::once(config.domain.as_str()).chain(config.alt_domain.as_deref()).collect()
}

pub(super) fn name(s: &str) -> Option<Name> {
    let fq = if s.ends_with('.') { s.to_string() } else { format!("{s}.") };
    Name::from_str(&fq).ok()
}

pub(super) fn ttl_secs(d: Duration) -> u32 {
    d.as_secs().min(u64::from(u32::MAX)) as u32
}

/// `dns_config.service_ttl`: exact name, then the longest matching `prefix*`, then `*`.
pub(super) fn service_ttl(config: &DnsConfig, service: &str) -> u32 {
    if let Some(d) = config.service_ttl.get(service) {
        return ttl_secs(*d);
    }
    let best = config
        .service_ttl
        .iter()
        .filter_map(|(pat, d)| pat.strip_suffix('*').filter(|p| service.starts_with(p)).map(|p| (p.len(), *d)))
        .max_by_key(|(len, _)| *len);
    best.map(|(_, d)| ttl_secs(d)).unwrap_or(0)
}

/// The SOA for `domain`.
pub(crate) fn soa(config: &DnsConfig, domain: &str) -> Option<Record> {
    let (refresh, retry, expire, min_ttl) = config.soa;
    let serial =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1);
    let rdata = SOA::new(
        name(&format!("ns.{domain}"))?,
        name(&format!("hostmaster.{domain}"))?,
        serial,
        refresh as i32,
        retry as i32,
        expire as i32,
        min_ttl,
    );
    Some(Record::from_rdata(name(domain)?, 0, RData::SOA(rdata)))
}

pub(super) fn addr_record(owner: &Name, ttl: u32, ip: IpAddr, qtype: RecordType) -> Option<Record> {
    match (ip, qtype) {
        (IpAddr::V4(v4), RecordType::A | RecordType::ANY | RecordType::SRV) => {
            Some(Record::from_rdata(owner.clone(), ttl, RData::A(A(v4))))
        }
        (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY | RecordType::SRV) => {
            Some(Record::from_rdata(owner.clone(), ttl, RData::AAAA(AAAA(v6))))
        }
        _ => None,
    }
}

/// Node metadata as TXT strings (RFC 1464 `key=value`; `rfc1035-` keys give the bare value).
pub(super) fn meta_txt(node: &Node) -> Vec<String> {
    node.meta
        .iter()
        .map(|(k, v)| match k.strip_prefix("rfc1035-") {
            Some(_) => v.clone(),
            None => format!("{k}={v}"),
        })
        .collect()
}

pub(super) fn hex_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.octets().iter().map(|b| format!("{b:02x}")).collect(),
        IpAddr::V6(v6) => v6.octets().iter().map(|b| format!("{b:02x}")).collect(),
    }
}

fn parse_hex_ip(s: &str) -> Option<IpAddr> {
    let bytes: Option<Vec<u8>> =
        (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
    match bytes?.as_slice() {
        [a, b, c, d] => Some(IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d))),
        b if b.len() == 16 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(b);
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => None,
    }
}

/// Removes and returns an optional datacenter label (`…service.dc1`, `…service.dc1.dc`,
/// `_svc._tag.dc1`) from the end of `labels`.
pub(super) fn split_dc<'a>(labels: &mut Vec<&'a str>) -> Option<&'a str> {
    let n = labels.len();
    let is_kind = |l: &str| matches!(l, "service" | "connect" | "node" | "addr" | "query");
    if n >= 3 && labels[n - 1] == "dc" && is_kind(labels[n - 3]) {
        labels.pop();
        return labels.pop();
    }
    if n >= 2 && is_kind(labels[n - 2]) && !is_kind(labels[n - 1]) {
        return labels.pop();
    }
    if n == 3 && labels[0].starts_with('_') && labels[1].starts_with('_') && labels[2] != "service" {
        return labels.pop();
    }
    None
}

/// The datacenter a lookup name names, if any (reverse names and names outside our domains
/// name none).
pub(super) fn named_dc(qname: &str, config: &DnsConfig) -> Option<String> {
    if is_reverse_name(qname) {
        return None;
    }
    let lower = qname.to_ascii_lowercase();
    let (mut labels, _) = labels_under(&lower, &domains(config))?;
    split_dc(&mut labels).map(str::to_string)
}

/// Resolves one question against `data`. `qname` is the question name as asked.
/// `max_answers` (0 = no limit) caps the answers built (the UDP answer limit), so a big service
/// costs no more than the records that will be sent.
pub fn resolve(
    data: &StateData,
    acl: &Authz,
    config: &DnsConfig,
    datacenter: &str,
    qname: &str,
    qtype: RecordType,
    max_answers: usize,
) -> DnsAnswer {
    resolve_with(data, acl, None, config, datacenter, qname, qtype, max_answers)
}

/// What a prepared-query lookup needs besides the DNS token, as the HTTP `execute` has it: the
/// agent's ACL resolver (a query with a stored token runs as that token) and this agent's node
/// name (`Near: "_agent"`).
pub(super) struct QueryRunner<'a> {
    /// Resolves a query's stored token.
    pub(super) acl: &'a crate::api::authz::AclResolver,
    /// Now, unix ms (token expiry).
    pub(super) now_ms: u64,
    /// This agent's node name.
    pub(super) agent_node: &'a str,
}

/// [`resolve`], with what prepared-query lookups need to run as over HTTP (`None`: they run as
/// the DNS token and are not sorted by distance).
#[allow(clippy::too_many_arguments)]
pub(super) fn resolve_with(
    data: &StateData,
    acl: &Authz,
    runner: Option<&QueryRunner<'_>>,
    config: &DnsConfig,
    datacenter: &str,
    qname: &str,
    qtype: RecordType,
    max_answers: usize,
) -> DnsAnswer {
    if is_reverse_name(qname) {
        return ptr_answer(data, acl, config, datacenter, qname, qtype);
    }
    let lower = qname.to_ascii_lowercase();
    let doms = domains(config);
    let Some((labels, domain)) = labels_under(&lower, &doms) else {
        return DnsAnswer { nx_domain: true, ..Default::default() };
    };
    let domain = format!("{domain}.");
    let negative = |nx: bool| DnsAnswer {
        nx_domain: nx,
        authorities: soa(config, &domain).into_iter().collect(),
        ..Default::default()
    };
    let Some(owner) = name(qname) else { return negative(true) };

    let mut labels = labels;
    if let Some(dc) = split_dc(&mut labels) {
        if !dc.eq_ignore_ascii_case(datacenter) {
            return negative(true);
        }
    }

    // The service lookups differ only in what they ask for (service, tag, Connect) and the type.
    let service = |what: (&str, Option<&str>, bool), qtype: RecordType| {
        service_answer(data, acl, config, &domain, datacenter, &owner, what, qtype, max_answers, negative)
    };
    match labels.as_slice() {
        [node, "node"] => {
            node_answer(data, acl, config, &domain, &owner, node, qtype).unwrap_or_else(|| negative(true))
        }
        [hex, "addr"] => match parse_hex_ip(hex) {
            Some(ip) => {
                let mut a = DnsAnswer::default();
                a.answers.extend(addr_record(&owner, 0, ip, qtype));
                if a.answers.is_empty() {
                    a.authorities.extend(soa(config, &domain));
                }
                a
            }
            None => negative(true),
        },
        [svc, "service"] => service((svc, None, false), qtype),
        // Consul's `<service>.connect`: the instances that accept Connect traffic for it (its
        // proxies, and its Connect-native instances).
        [svc, "connect"] => service((svc, None, true), qtype),
        [svc, proto, "service"] | [svc, proto] if svc.starts_with('_') && proto.starts_with('_') => {
            let svc = &svc[1..];
            let tag = &proto[1..];
            // RFC 2782: `_tcp`/`_udp` as the protocol label means "no tag filter".
            let tag = if matches!(tag, "tcp" | "udp") { None } else { Some(tag) };
            service((svc, tag, false), RecordType::SRV)
        }
        [tag, svc, "service"] => service((svc, Some(tag), false), qtype),
        [query @ .., "query"] if !query.is_empty() => {
            let asked = super::query::Asked {
                domain: &domain,
                datacenter,
                owner: &owner,
                query: &query.join("."),
                qtype,
                max_answers,
            };
            super::query::answer(data, acl, runner, config, &asked).unwrap_or_else(|| negative(true))
        }
        [] => {
            // The domain apex: SOA (and nothing else).
            let mut a = DnsAnswer::default();
            if matches!(qtype, RecordType::SOA | RecordType::ANY) {
                a.answers.extend(soa(config, &domain));
            } else {
                a.authorities.extend(soa(config, &domain));
            }
            a
        }
        _ => negative(true),
    }
}

/// A reverse lookup (Consul's `handlePtr`): the first node (by name) whose `Address` is the IP,
/// as `<node>.node.<dc>.<domain>.`; failing that, the first service instance whose own
/// `Address` is the IP, as `<service>.service.<dc>.<domain>.`. Only what the DNS token may read
/// is considered. Answers always use the primary domain and TTL 0 (Consul hard-codes it). A
/// malformed name or an address nobody has is NXDOMAIN with our SOA.
fn ptr_answer(
    data: &StateData,
    acl: &Authz,
    config: &DnsConfig,
    datacenter: &str,
    qname: &str,
    qtype: RecordType,
) -> DnsAnswer {
    let domain = config.domain.as_str();
    let negative =
        || DnsAnswer { nx_domain: true, authorities: soa(config, domain).into_iter().collect(), ..Default::default() };
    let (Some(ip), Some(owner)) = (parse_reverse_name(qname), name(qname)) else { return negative() };
    let same_ip = |addr: &str| IpAddr::from_str(addr).is_ok_and(|a| a == ip);
    let node = data
        .catalog
        .nodes
        .values()
        .find(|n| same_ip(&n.address) && acl.allows(Resource::Node, &n.node, Need::Read))
        .map(|n| format!("{}.node.{datacenter}.{domain}", n.node));
    // Only instances with their own address count: one on its node's address is the node's.
    let target = node.or_else(|| {
        data.catalog
            .services
            .values()
            .find(|s| {
                same_ip(&s.address)
                    && acl.allows(Resource::Service, &s.service, Need::Read)
                    && acl.allows(Resource::Node, &s.node, Need::Read)
            })
            .map(|s| format!("{}.service.{datacenter}.{domain}", s.service))
    });
    let Some(target) = target.as_deref().and_then(name) else { return negative() };
    let mut a = DnsAnswer::default();
    a.answers.push(Record::from_rdata(owner, 0, RData::PTR(PTR(target))));
    if qtype == RecordType::SOA {
        a.answers.extend(soa(config, domain));
    }
    a
}

fn node_answer(
    data: &StateData,
    acl: &Authz,
    config: &DnsConfig,
    domain: &str,
    owner: &Name,
    node: &str,
    qtype: RecordType,
) -> Option<DnsAnswer> {
    // Only what the DNS token may read exists, as in Consul.
    let node = data
        .catalog
        .nodes
        .values()
        .find(|n| n.node.eq_ignore_ascii_case(node))
        .filter(|n| acl.allows(Resource::Node, &n.node, Need::Read))?;
    let ttl = ttl_secs(config.node_ttl);
    let mut a = DnsAnswer::default();
    match IpAddr::from_str(&node.address) {
        Ok(ip) => a.answers.extend(addr_record(owner, ttl, ip, qtype)),
        Err(_) if matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::ANY | RecordType::CNAME) => {
            if let Some(target) = name(&node.address) {
                a.answers.push(Record::from_rdata(owner.clone(), ttl, RData::CNAME(CNAME(target))));
            }
        }
        Err(_) => {}
    }
    if matches!(qtype, RecordType::TXT | RecordType::ANY) && !node.meta.is_empty() {
        a.answers.push(Record::from_rdata(owner.clone(), ttl, RData::TXT(TXT::new(meta_txt(node)))));
    }
    if a.answers.is_empty() {
        a.authorities.extend(soa(config, domain));
    }
    Some(a)
}

/// The registered service name `service` means (names match case-insensitively; with several
/// spellings registered, the first in byte order wins). Every ASCII-case variant of a name lies
/// between its upper-case and lower-case spellings in byte order, so a range scan finds it
/// without walking every service.
pub(super) fn find_service_name<'a, V>(
    names: &'a std::collections::BTreeMap<String, V>,
    service: &str,
) -> Option<&'a str> {
    let (low, high) = (service.to_ascii_uppercase(), service.to_ascii_lowercase());
    names
        .range::<str, _>((std::ops::Bound::Included(low.as_str()), std::ops::Bound::Included(high.as_str())))
        .map(|(k, _)| k.as_str())
        .find(|k| k.eq_ignore_ascii_case(service))
}

#[allow(clippy::too_many_arguments)]
fn service_answer(
    data: &StateData,
    acl: &Authz,
    config: &DnsConfig,
    domain: &str,
    datacenter: &str,
    owner: &Name,
    (service, tag, connect): (&str, Option<&str>, bool),
    qtype: RecordType,
    max_answers: usize,
    negative: impl Fn(bool) -> DnsAnswer,
) -> DnsAnswer {
    let name_match = find_service_name(&data.catalog.service_indexes, service).map(str::to_string);
    let service_name = name_match.unwrap_or_else(|| service.to_string());
    if !acl.allows(Resource::Service, &service_name, Need::Read) {
        return negative(true);
    }
    let mut entries = if connect {
        crate::state::prepared_query::execute::connect_entries(data, &service_name)
    } else {
        service_entries(data, &service_name)
    };
    entries.retain(|(n, s, _)| {
        acl.allows(Resource::Node, &n.node, Need::Read) && acl.allows(Resource::Service, &s.service, Need::Read)
    });
    if entries.is_empty() {
        return negative(true);
    }
    let healthy = |checks: &[&HealthCheck]| {
        !checks.iter().any(|c| c.status == CRITICAL || (config.only_passing && c.status == WARNING))
    };
    let mut picked: Vec<_> = entries
        .into_iter()
        .filter(|(_, s, _)| tag.is_none_or(|t| s.tags.iter().any(|st| st.eq_ignore_ascii_case(t))))
        .filter(|(_, _, checks)| healthy(checks))
        .collect();
    picked.shuffle(&mut rand::thread_rng());
    let ttl = service_ttl(config, &service_name);
    let mut limit = if max_answers == 0 { usize::MAX } else { max_answers };
    if config.a_record_limit > 0 && qtype != RecordType::SRV {
        limit = limit.min(config.a_record_limit);
    }
    instances_answer(config, picked, qtype, owner, ttl, limit, (datacenter, domain))
}

/// The records for `picked` (healthy, visible instances, already shuffled) under `owner`: SRV
/// with their targets' address (or CNAME) and node-meta TXT records, or A/AAAA answering each
/// address once; at most `limit` answers. Shared by service and prepared-query lookups.
#[allow(clippy::too_many_arguments)]
pub(super) fn instances_answer(
    config: &DnsConfig,
    picked: Vec<(&Node, &ServiceInstance, Vec<&HealthCheck>)>,
    qtype: RecordType,
    owner: &Name,
    ttl: u32,
    limit: usize,
    (datacenter, domain): (&str, &str),
) -> DnsAnswer {
    let mut a = DnsAnswer::default();
    // Several instances on one address give identical A records: answer each address once.
    let mut seen_ips = std::collections::HashSet::new();
    let mut cname = None;
    for (node, svc, checks) in picked {
        if a.answers.len() >= limit {
            a.limited = true;
            break;
        }
        let address = if svc.address.is_empty() { node.address.as_str() } else { svc.address.as_str() };
        let ip = IpAddr::from_str(address).ok();
        if qtype == RecordType::SRV {
            let warning = checks.iter().any(|c| c.status == WARNING);
            let weight = if warning { svc.weights.warning } else { svc.weights.passing }.clamp(0, 65535) as u16;
            let target = match ip {
                _ if svc.address.is_empty() => format!("{}.node.{datacenter}.{domain}", node.node),
                Some(ip) => format!("{}.addr.{datacenter}.{domain}", hex_ip(ip)),
                None => format!("{address}."),
            };
            let Some(target_name) = name(&target) else { continue };
            let mut extra = Vec::with_capacity(2);
            match ip {
                Some(ip) => extra.extend(addr_record(&target_name, ttl, ip, RecordType::SRV)),
                None => {
                    if let Some(cname) = name(address) {
                        extra.push(Record::from_rdata(target_name.clone(), ttl, RData::CNAME(CNAME(cname))));
                    }
                }
            }
            if config.node_meta_txt && svc.address.is_empty() && !node.meta.is_empty() {
                extra.push(Record::from_rdata(target_name.clone(), ttl, RData::TXT(TXT::new(meta_txt(node)))));
            }
            a.answers.push(Record::from_rdata(
                owner.clone(),
                ttl,
                RData::SRV(SRV::new(1, weight, svc.port, target_name)),
            ));
            a.extras.push(extra);
        } else {
            let wants_cname = matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::ANY | RecordType::CNAME);
            match ip {
                Some(ip) if seen_ips.insert(ip) => a.answers.extend(addr_record(owner, ttl, ip, qtype)),
                Some(_) => {}
                None if wants_cname && cname.is_none() => {
                    cname = name(address).map(|c| Record::from_rdata(owner.clone(), ttl, RData::CNAME(CNAME(c))));
                }
                None => {}
            }
        }
    }
    // A name with a CNAME may hold nothing else: answer the CNAME only when it was asked for,
    // or when no instance has an address.
    if qtype == RecordType::CNAME || a.answers.is_empty() {
        a.answers = cname.into_iter().collect();
    }
    if a.answers.is_empty() {
        a.authorities.extend(soa(config, domain));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::catalog::{Catalog, RegisterRequest, ServiceInstance, PASSING};

    fn state() -> StateData {
        let mut cat = Catalog::default();
        let reg = |node: &str, addr: &str, id: &str, tags: &[&str], status: &str, svc_addr: &str| RegisterRequest {
            node: Node {
                node: node.into(),
                address: addr.into(),
                meta: [("rack".to_string(), "r1".to_string())].into(),
                ..Node::default()
            },
            service: Some(ServiceInstance {
                id: id.into(),
                service: "web".into(),
                port: 80,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                address: svc_addr.into(),
                ..ServiceInstance::default()
            }),
            checks: vec![HealthCheck {
                check_id: format!("{id}-c"),
                service_id: id.into(),
                status: status.into(),
                ..HealthCheck::default()
            }],
            ..RegisterRequest::default()
        };
        cat.register(&reg("n1", "10.0.0.1", "web1", &["primary"], PASSING, ""), 2).expect("reg");
        cat.register(&reg("n2", "10.0.0.2", "web2", &[], WARNING, ""), 3).expect("reg");
        cat.register(&reg("n3", "10.0.0.3", "web3", &[], CRITICAL, ""), 4).expect("reg");
        cat.register(&reg("n4", "10.0.0.4", "web4", &[], PASSING, "web.example.com"), 5).expect("reg");
        StateData { catalog: cat, ..StateData::default() }
    }

    fn ips(a: &DnsAnswer) -> Vec<String> {
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
    fn service_a_records_skip_critical() {
        let cfg = DnsConfig::default();
        let a = resolve(&state(), &Authz::disabled(), &cfg, "dc1", "web.service.consul.", RecordType::A, 0);
        assert_eq!(ips(&a), ["10.0.0.1", "10.0.0.2"]);
        let only = DnsConfig { only_passing: true, ..DnsConfig::default() };
        assert_eq!(
            ips(&resolve(&state(), &Authz::disabled(), &only, "dc1", "WEB.service.dc1.consul.", RecordType::A, 0)),
            ["10.0.0.1"]
        );
        assert_eq!(
            ips(&resolve(&state(), &Authz::disabled(), &cfg, "dc1", "primary.web.service.consul.", RecordType::A, 0)),
            ["10.0.0.1"]
        );
    }

    #[test]
    fn srv_has_targets_and_additionals() {
        let a = resolve(
            &state(),
            &Authz::disabled(),
            &DnsConfig::default(),
            "dc1",
            "_web._tcp.service.consul.",
            RecordType::SRV,
            0,
        );
        assert_eq!(a.answers.len(), 3, "two healthy IP instances and the hostname one");
        assert!(a.additionals().any(|r| r.name.to_ascii() == "n1.node.dc1.consul."));
        let tagged = resolve(
            &state(),
            &Authz::disabled(),
            &DnsConfig::default(),
            "dc1",
            "_web._primary.service.consul.",
            RecordType::SRV,
            0,
        );
        assert_eq!(tagged.answers.len(), 1);
    }

    /// The datacenter a name asks for, in every form Consul accepts; none for reverse names,
    /// names outside our domains, or names without one.
    #[test]
    fn named_datacenters() {
        let cfg = DnsConfig::default();
        for (q, dc) in [
            ("web.service.dc2.consul.", Some("dc2")),
            ("WEB.service.DC2.consul.", Some("dc2")),
            ("primary.web.service.dc2.consul.", Some("dc2")),
            ("web.service.dc2.dc.consul.", Some("dc2")),
            ("n1.node.dc3.consul.", Some("dc3")),
            ("q.query.dc2.consul.", Some("dc2")),
            ("_web._tcp.service.dc2.consul.", Some("dc2")),
            ("web.service.consul.", None),
            ("n1.node.consul.", None),
            ("web.service.dc2.example.com.", None),
            ("1.0.0.127.in-addr.arpa.", None),
        ] {
            assert_eq!(named_dc(q, &cfg).as_deref(), dc, "{q}");
        }
    }

    #[test]
    fn nodes_addrs_and_negatives() {
        let cfg = DnsConfig::default();
        let st = state();
        assert_eq!(
            ips(&resolve(&st, &Authz::disabled(), &cfg, "dc1", "n2.node.consul.", RecordType::A, 0)),
            ["10.0.0.2"]
        );
        let txt = resolve(&st, &Authz::disabled(), &cfg, "dc1", "n2.node.consul.", RecordType::TXT, 0);
        assert_eq!(txt.answers.len(), 1);
        assert_eq!(
            ips(&resolve(&st, &Authz::disabled(), &cfg, "dc1", "0a000001.addr.dc1.consul.", RecordType::A, 0)),
            ["10.0.0.1"]
        );
        let nx = resolve(&st, &Authz::disabled(), &cfg, "dc1", "nope.service.consul.", RecordType::A, 0);
        assert!(nx.nx_domain && !nx.authorities.is_empty());
        let other_dc = resolve(&st, &Authz::disabled(), &cfg, "dc1", "web.service.dc2.consul.", RecordType::A, 0);
        assert!(other_dc.nx_domain);
        let cname = resolve(&st, &Authz::disabled(), &cfg, "dc1", "web.service.consul.", RecordType::CNAME, 0);
        assert_eq!(cname.answers.len(), 1);
    }

    fn ptr_target(a: &DnsAnswer) -> Option<String> {
        a.answers.iter().find_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.to_ascii()),
            _ => None,
        })
    }

    #[test]
    fn ptr_for_nodes_then_services() {
        let cfg = DnsConfig::default();
        let mut st = state();
        let q = |st: &StateData, n: &str| resolve(st, &Authz::disabled(), &cfg, "dc1", n, RecordType::PTR, 0);
        let node = q(&st, "2.0.0.10.in-addr.arpa.");
        assert_eq!(ptr_target(&node).as_deref(), Some("n2.node.dc1.consul."));
        assert_eq!(node.answers[0].ttl, 0, "PTR TTL is always 0, as in Consul");
        assert!(!node.nx_domain);
        st.catalog
            .register(
                &RegisterRequest {
                    node: Node { node: "n5".into(), address: "10.0.0.5".into(), ..Node::default() },
                    service: Some(ServiceInstance {
                        id: "db1".into(),
                        service: "db".into(),
                        address: "10.9.9.9".into(),
                        ..ServiceInstance::default()
                    }),
                    ..RegisterRequest::default()
                },
                9,
            )
            .expect("reg");
        assert_eq!(ptr_target(&q(&st, "9.9.9.10.in-addr.arpa.")).as_deref(), Some("db.service.dc1.consul."));
        let miss = q(&st, "9.9.9.9.in-addr.arpa.");
        assert!(miss.nx_domain && miss.answers.is_empty() && !miss.authorities.is_empty());
        let bad = q(&st, "x.9.9.9.in-addr.arpa.");
        assert!(bad.nx_domain && !bad.authorities.is_empty());
    }

    #[test]
    fn ptr_honours_acls() {
        let cfg = DnsConfig::default();
        use crate::acl::authorizer::{Authorizer, DefaultPolicy};
        let deny =
            Authz::new("anon", std::sync::Arc::new(Authorizer::new(Default::default(), DefaultPolicy::Deny, false)));
        let a = resolve(&state(), &deny, &cfg, "dc1", "1.0.0.10.in-addr.arpa.", RecordType::PTR, 0);
        assert!(a.nx_domain, "a node the token cannot read has no PTR");
    }

    #[test]
    fn ttls_by_pattern() {
        let mut cfg = DnsConfig::default();
        cfg.service_ttl.insert("*".into(), Duration::from_secs(5));
        cfg.service_ttl.insert("we*".into(), Duration::from_secs(30));
        assert_eq!(service_ttl(&cfg, "web"), 30);
        assert_eq!(service_ttl(&cfg, "db"), 5);
        cfg.service_ttl.insert("web".into(), Duration::from_secs(7));
        assert_eq!(service_ttl(&cfg, "web"), 7);
    }
}
