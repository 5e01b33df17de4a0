//! The per-service answer cache: service questions (`web.service.consul SRV`, `A`, `AAAA`,
//! RFC 2782 names, tag filters) answered from records built once per catalog change.
//!
//! Building an answer from the catalog (look up every instance and its checks, health-filter,
//! format and parse target names) costs far more than sending it, and a service's answer
//! changes only when the service's catalog index (`service_indexes`) moves. That index moves on
//! every change to the service's instances, their checks, the node-level checks of their nodes
//! and the nodes themselves (address, metadata), so an entry stored with the index it was built
//! at is valid exactly while the index is unchanged. A query then only shuffles (every answer is
//! shuffled, as in Consul) and writes the records straight into the reply: target names are kept
//! in wire form (written whole in the SRV record, as RFC 2782 asks; the additional records that
//! belong to a target point to it), and each record's encoded size is known before it is written,
//! so the reply is cut to the UDP answer limit or the EDNS buffer without encoding twice.
//!
//! Everything cached is token-independent (the instances healthy under the agent's
//! `only_passing`); ACLs are applied per query. A token that may read the service and every node
//! behind the cached answers gets them all; any other token's query takes the general path
//! (`resolve`), which filters instance by instance. Which tokens passed that check is remembered
//! per entry by the identity of their resolved authorization, so the check is not repeated.
//!
//! Anything the fast path does not handle exactly as the general path would (names that need
//! hickory's decoder, `ANY`/`TXT`/`CNAME` questions, empty answers, CNAME-only answers, TXT
//! strings longer than 255 bytes) returns `None` and is answered by the general path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hickory_proto::rr::Name;
use parking_lot::Mutex;
use rand::Rng;

use super::resolve::{domains, find_service_name, hex_ip, labels_under, meta_txt, name, service_ttl, split_dc};
use super::DnsConfig;
use crate::acl::rules::{Need, Resource};
use crate::api::authz::Authz;
use crate::state::catalog::{service_entries, CRITICAL, WARNING};
use crate::state::StateData;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_TXT: u16 = 16;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
const CLASS_ANY: u16 = 255;
/// EDNS options hickory's decoder parses structurally (NSID, client subnet): a query carrying
/// one takes the general path, so a malformed one is refused exactly as before.
const PARSED_OPTIONS: [u16; 2] = [3, 8];
/// A name compression pointer can only reach the first 16 KiB of a message.
const MAX_POINTER: usize = 0x3FFF;
/// Fixed part of a resource record after its owner: type, class, TTL, RDLENGTH.
const RR_FIXED: usize = 10;
/// An OPT record with no options.
const OPT_LEN: usize = 11;
/// Tokens remembered per entry as able to read all of it.
const READERS_PER_ENTRY: usize = 8;
/// Default bounds: entries, and their estimated bytes.
const MAX_ENTRIES: usize = 1024;
const MAX_BYTES: usize = 16 << 20;

/// A query the fast path can look at: one IN (or ANY class) question whose name is plain
/// letters, digits, `-` and `_`, no answer or authority records, and at most an OPT record.
#[derive(Debug)]
pub(super) struct FastQuery<'p> {
    id: u16,
    recursion_desired: bool,
    /// The question section as received (name, type, class): echoed verbatim.
    question: &'p [u8],
    /// The question name in lower case, dotted, with the trailing dot.
    lower_name: String,
    qtype: u16,
    /// The client's EDNS payload size (the OPT record's class), if it sent one.
    pub(super) edns_payload: Option<u16>,
}

impl FastQuery<'_> {
    /// The query's message ID.
    pub(super) fn id(&self) -> u16 {
        self.id
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Reads `packet` as a [`FastQuery`], or `None` when it is anything else (which the general
/// path then decodes and answers or rejects).
pub(super) fn parse_fast(packet: &[u8]) -> Option<FastQuery<'_>> {
    let id = be16(packet, 0)?;
    let flags = *packet.get(2)?;
    // A response, or an opcode other than QUERY.
    if flags & 0x80 != 0 || (flags >> 3) & 0x0f != 0 {
        return None;
    }
    let counts = (be16(packet, 4)?, be16(packet, 6)?, be16(packet, 8)?, be16(packet, 10)?);
    if counts.0 != 1 || counts.1 != 0 || counts.2 != 0 || counts.3 > 1 {
        return None;
    }
    let mut pos = 12;
    let mut lower_name = String::with_capacity(64);
    loop {
        let len = usize::from(*packet.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        let label = packet.get(pos..pos + len).filter(|_| len <= 63)?;
        if !label.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_') {
            return None;
        }
        lower_name.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
        lower_name.push('.');
        pos += len;
        if pos - 12 > 255 {
            return None;
        }
    }
    if lower_name.is_empty() {
        return None;
    }
    let qtype = be16(packet, pos)?;
    let qclass = be16(packet, pos + 2)?;
    if qclass != CLASS_IN && qclass != CLASS_ANY {
        return None;
    }
    pos += 4;
    let question = &packet[12..pos];
    let mut edns_payload = None;
    if counts.3 == 1 {
        // The OPT record: root owner, type OPT, class = payload size, TTL = flags, options.
        if *packet.get(pos)? != 0 || be16(packet, pos + 1)? != TYPE_OPT {
            return None;
        }
        edns_payload = Some(be16(packet, pos + 3)?);
        let rdlen = usize::from(be16(packet, pos + 9)?);
        let mut opt = pos + 11;
        let end = opt + rdlen;
        while opt < end {
            let code = be16(packet, opt)?;
            let len = usize::from(be16(packet, opt + 2)?);
            if PARSED_OPTIONS.contains(&code) {
                return None;
            }
            opt += 4 + len;
        }
        if opt != end {
            return None;
        }
        pos = end;
    }
    if pos != packet.len() {
        return None;
    }
    let recursion_desired = flags & 0x01 != 0;
    Some(FastQuery { id, recursion_desired, question, lower_name, qtype, edns_payload })
}

/// What a service answer is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Srv,
    A,
    Aaaa,
}

/// A service question: the service as asked, the tag filter, the record kind, the domain.
#[derive(Debug)]
struct ServiceQuestion<'a> {
    service: &'a str,
    tag: Option<&'a str>,
    kind: Kind,
    /// The domain it was asked under, as configured, without the trailing dot.
    domain: String,
}

/// The service question `q` asks, as `resolve` reads names; `None` for every other name.
fn service_question<'a>(q: &'a FastQuery<'_>, config: &DnsConfig, datacenter: &str) -> Option<ServiceQuestion<'a>> {
    let (mut labels, domain) = labels_under(&q.lower_name, &domains(config))?;
    if let Some(dc) = split_dc(&mut labels) {
        if !dc.eq_ignore_ascii_case(datacenter) {
            return None;
        }
    }
    let (service, tag, qtype) = match labels.as_slice() {
        [svc, "service"] => (*svc, None, q.qtype),
        [svc, proto, "service"] | [svc, proto] if svc.starts_with('_') && proto.starts_with('_') => {
            let tag = &proto[1..];
            (&svc[1..], (!matches!(tag, "tcp" | "udp")).then_some(tag), TYPE_SRV)
        }
        [tag, svc, "service"] => (*svc, Some(*tag), q.qtype),
        _ => return None,
    };
    let kind = match qtype {
        TYPE_SRV => Kind::Srv,
        TYPE_A => Kind::A,
        TYPE_AAAA => Kind::Aaaa,
        _ => return None,
    };
    Some(ServiceQuestion { service, tag, kind, domain })
}

/// How big the reply may be, from the transport and the query.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReplyLimits {
    /// The client's EDNS payload size (at least 512), when it sent OPT: the reply carries OPT.
    pub(super) client_edns: Option<usize>,
    /// Largest reply in bytes.
    pub(super) max_bytes: usize,
    /// Most answers (0: no limit), the UDP answer limit.
    pub(super) max_answers: usize,
    /// Whether the reply goes over UDP (only UDP replies get TC).
    pub(super) udp: bool,
}

/// A built SRV target or address answer.
#[derive(Debug)]
struct CachedAnswer {
    /// SRV: priority, weight, port (6 bytes). A/AAAA: the address (4 or 16 bytes).
    fixed: Box<[u8]>,
    /// SRV only: the target name in wire form (root label included).
    target: Option<Box<[u8]>>,
    /// Additional records owned by the target (its address or CNAME, node-meta TXT).
    extras: Vec<Extra>,
}

#[derive(Debug)]
struct Extra {
    rtype: u16,
    rdata: Box<[u8]>,
}

/// The token-independent part of a service answer.
#[derive(Debug)]
struct Body {
    ttl: u32,
    /// Every node behind the answers (the general path's ACL check is per node).
    nodes: Vec<String>,
    answers: Vec<CachedAnswer>,
}

/// A cache entry: the body built at catalog index `index`, or `None` when this question's
/// answer is left to the general path (so the check is not redone until the index moves).
#[derive(Debug)]
struct Entry {
    index: u64,
    body: Option<Body>,
    bytes: usize,
    last_used: AtomicU64,
    /// Resolved authorizations seen to read the service's every answer.
    readers: Mutex<Vec<Arc<Authz>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    service: String,
    /// Lower case.
    tag: Option<String>,
    kind: Kind,
    domain: String,
    only_passing: bool,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Key, Arc<Entry>>,
    bytes: usize,
}

/// One agent's answer cache (lives in its DNS context), bounded in entries and bytes; the
/// least recently used entries go first.
#[derive(Debug)]
pub(super) struct AnswerCache {
    entries: Mutex<Entries>,
    clock: AtomicU64,
    max_entries: usize,
    max_bytes: usize,
}

impl Default for AnswerCache {
    fn default() -> Self {
        Self::with_limits(MAX_ENTRIES, MAX_BYTES)
    }
}

impl AnswerCache {
    /// A cache holding at most `max_entries` answers of at most `max_bytes` (estimated) in all.
    pub(super) fn with_limits(max_entries: usize, max_bytes: usize) -> Self {
        AnswerCache { entries: Mutex::default(), clock: AtomicU64::new(0), max_entries, max_bytes }
    }

    /// The encoded reply to `q` when it is a service question this cache answers; `None`: the
    /// general path must answer it.
    pub(super) fn answer(
        &self,
        data: &StateData,
        acl: &Arc<Authz>,
        config: &DnsConfig,
        datacenter: &str,
        q: &FastQuery<'_>,
        limits: ReplyLimits,
    ) -> Option<Vec<u8>> {
        let sq = service_question(q, config, datacenter)?;
        let service = find_service_name(&data.catalog.service_indexes, sq.service)?;
        if !acl.allows(Resource::Service, service, Need::Read) {
            return None;
        }
        let index = data.catalog.service_index(service);
        let key = Key {
            service: service.to_string(),
            tag: sq.tag.map(str::to_string),
            kind: sq.kind,
            domain: sq.domain,
            only_passing: config.only_passing,
        };
        let entry = self.entry(data, config, datacenter, key, index);
        let body = entry.body.as_ref()?;
        if !entry.readable_by(body, acl) {
            return None;
        }
        let mut answer_limit = limits.max_answers;
        if sq.kind != Kind::Srv && config.a_record_limit > 0 {
            answer_limit = match answer_limit {
                0 => config.a_record_limit,
                n => n.min(config.a_record_limit),
            };
        }
        Some(encode(q, body, config, limits, answer_limit))
    }

    /// The entry for `key` at catalog index `index`, built and stored if missing or stale.
    fn entry(&self, data: &StateData, config: &DnsConfig, datacenter: &str, key: Key, index: u64) -> Arc<Entry> {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = self.entries.lock().map.get(&key).filter(|e| e.index == index) {
            e.last_used.store(now, Ordering::Relaxed);
            return e.clone();
        }
        // Built outside the lock: the other receivers keep answering meanwhile.
        let body = build(data, config, datacenter, &key);
        let bytes = body.as_ref().map_or(0, Body::estimated_bytes) + key.service.len() + 128;
        let entry = Arc::new(Entry { index, body, bytes, last_used: AtomicU64::new(now), readers: Mutex::default() });
        if bytes <= self.max_bytes {
            self.insert(key, entry.clone());
        }
        entry
    }

    fn insert(&self, key: Key, entry: Arc<Entry>) {
        let mut entries = self.entries.lock();
        entries.bytes += entry.bytes;
        if let Some(old) = entries.map.insert(key, entry) {
            entries.bytes -= old.bytes;
        }
        while entries.map.len() > self.max_entries || entries.bytes > self.max_bytes {
            let Some(oldest) =
                entries.map.iter().min_by_key(|(_, e)| e.last_used.load(Ordering::Relaxed)).map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(old) = entries.map.remove(&oldest) {
                entries.bytes -= old.bytes;
            }
        }
    }

    /// Entries held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map.len()
    }
}

impl Entry {
    /// Whether `acl` may read every node behind `body`'s answers.
    fn readable_by(&self, body: &Body, acl: &Arc<Authz>) -> bool {
        if self.readers.lock().iter().any(|r| Arc::ptr_eq(r, acl)) {
            return true;
        }
        if !body.nodes.iter().all(|n| acl.allows(Resource::Node, n, Need::Read)) {
            return false;
        }
        let mut readers = self.readers.lock();
        if readers.len() >= READERS_PER_ENTRY {
            readers.remove(0);
        }
        readers.push(acl.clone());
        true
    }
}

impl Body {
    fn estimated_bytes(&self) -> usize {
        let answers: usize = self
            .answers
            .iter()
            .map(|a| {
                let extras: usize = a.extras.iter().map(|x| x.rdata.len() + 48).sum();
                a.fixed.len() + a.target.as_ref().map_or(0, |t| t.len()) + extras + 64
            })
            .sum();
        answers + self.nodes.iter().map(|n| n.len() + 24).sum::<usize>()
    }
}

/// `name` in wire form (uncompressed, root label included).
fn wire_name(name: &Name) -> Box<[u8]> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    out.into()
}

/// Builds the answer `key` asks for from the catalog, as `resolve`'s service answer would
/// before shuffling and limiting; `None` for what is left to the general path.
fn build(data: &StateData, config: &DnsConfig, datacenter: &str, key: &Key) -> Option<Body> {
    let domain = format!("{}.", key.domain);
    let healthy = |status: &str| status != CRITICAL && !(key.only_passing && status == WARNING);
    let picked = service_entries(data, &key.service).into_iter().filter(|(_, s, checks)| {
        key.tag.as_deref().is_none_or(|t| s.tags.iter().any(|st| st.eq_ignore_ascii_case(t)))
            && checks.iter().all(|c| healthy(&c.status))
    });
    let ttl = service_ttl(config, &key.service);
    let mut answers = Vec::new();
    let mut nodes: Vec<String> = Vec::new();
    let mut seen_ips = std::collections::HashSet::new();
    for (node, svc, checks) in picked {
        let address = if svc.address.is_empty() { node.address.as_str() } else { svc.address.as_str() };
        let ip = IpAddr::from_str(address).ok();
        let answer = match key.kind {
            Kind::Srv => {
                let warning = checks.iter().any(|c| c.status == WARNING);
                let weight = if warning { svc.weights.warning } else { svc.weights.passing }.clamp(0, 65535) as u16;
                let target = match ip {
                    _ if svc.address.is_empty() => format!("{}.node.{datacenter}.{domain}", node.node),
                    Some(ip) => format!("{}.addr.{datacenter}.{domain}", hex_ip(ip)),
                    None => format!("{address}."),
                };
                let Some(target_name) = name(&target) else { continue };
                let mut extras = Vec::with_capacity(2);
                match ip {
                    Some(IpAddr::V4(v4)) => extras.push(Extra { rtype: TYPE_A, rdata: v4.octets().into() }),
                    Some(IpAddr::V6(v6)) => extras.push(Extra { rtype: TYPE_AAAA, rdata: v6.octets().into() }),
                    None => {
                        if let Some(cname) = name(address) {
                            extras.push(Extra { rtype: TYPE_CNAME, rdata: wire_name(&cname) });
                        }
                    }
                }
                if config.node_meta_txt && svc.address.is_empty() && !node.meta.is_empty() {
                    let mut rdata = Vec::new();
                    for s in meta_txt(node) {
                        // Longer strings do not fit a character-string: the general path's
                        // encoder decides what happens to them.
                        let len = u8::try_from(s.len()).ok()?;
                        rdata.push(len);
                        rdata.extend_from_slice(s.as_bytes());
                    }
                    extras.push(Extra { rtype: TYPE_TXT, rdata: rdata.into() });
                }
                let mut fixed = Vec::with_capacity(6);
                fixed.extend_from_slice(&1u16.to_be_bytes());
                fixed.extend_from_slice(&weight.to_be_bytes());
                fixed.extend_from_slice(&svc.port.to_be_bytes());
                CachedAnswer { fixed: fixed.into(), target: Some(wire_name(&target_name)), extras }
            }
            Kind::A | Kind::Aaaa => {
                let fixed: Box<[u8]> = match (ip, key.kind) {
                    (Some(IpAddr::V4(v4)), Kind::A) => v4.octets().into(),
                    (Some(IpAddr::V6(v6)), Kind::Aaaa) => v6.octets().into(),
                    _ => continue,
                };
                // Several instances on one address give one record; every node behind it counts.
                if !nodes.contains(&node.node) {
                    nodes.push(node.node.clone());
                }
                if !seen_ips.insert(fixed.clone()) {
                    continue;
                }
                answers.push(CachedAnswer { fixed, target: None, extras: Vec::new() });
                continue;
            }
        };
        if !nodes.contains(&node.node) {
            nodes.push(node.node.clone());
        }
        answers.push(answer);
    }
    if answers.is_empty() {
        // Nothing healthy, or only hostnames for an address question (a CNAME answer).
        return None;
    }
    Some(Body { ttl, nodes, answers })
}

/// Writes the reply: header, the question as received, a shuffled prefix of `body`'s answers
/// that fits `limits` (each with its additional records), and OPT when the client sent one.
fn encode(q: &FastQuery<'_>, body: &Body, config: &DnsConfig, limits: ReplyLimits, answer_limit: usize) -> Vec<u8> {
    let opt_len = if limits.client_edns.is_some() { OPT_LEN } else { 0 };
    let mut buf = Vec::with_capacity(limits.max_bytes.min(4096));
    buf.extend_from_slice(&[0; 12]);
    buf.extend_from_slice(q.question);
    let mut extras = Vec::new();
    let (mut answered, mut extra_count) = (0u16, 0u16);
    let ttl = body.ttl.to_be_bytes();
    let mut order: Vec<u32> = (0..body.answers.len() as u32).collect();
    let mut rng = rand::thread_rng();
    let limit = if answer_limit == 0 { usize::MAX } else { answer_limit };
    let mut cut = false;
    for i in 0..order.len() {
        if i >= limit {
            cut = true;
            break;
        }
        // One Fisher–Yates step at a time: only what is sent gets shuffled.
        let j = rng.gen_range(i..order.len());
        order.swap(i, j);
        let a = &body.answers[order[i] as usize];
        let record_start = buf.len();
        let target_at = record_start + 2 + RR_FIXED + a.fixed.len();
        // The target, and its length as the owner of ADDITIONAL records (a pointer to it when
        // one can reach it).
        let target_len = a.target.as_ref().map_or(0, |t| t.len());
        let owner_len = if target_at <= MAX_POINTER { 2 } else { target_len };
        let record_len = 2 + RR_FIXED + a.fixed.len() + target_len;
        let extras_len: usize = a.extras.iter().map(|x| owner_len + RR_FIXED + x.rdata.len()).sum();
        if buf.len() + extras.len() + opt_len + record_len + extras_len > limits.max_bytes {
            cut = true;
            break;
        }
        // The answer: owner is the question name (offset 12).
        let rtype = match (&a.target, a.fixed.len()) {
            (Some(_), _) => TYPE_SRV,
            (None, 4) => TYPE_A,
            (None, _) => TYPE_AAAA,
        };
        buf.extend_from_slice(&[0xC0, 12]);
        buf.extend_from_slice(&rtype.to_be_bytes());
        buf.extend_from_slice(&CLASS_IN.to_be_bytes());
        buf.extend_from_slice(&ttl);
        buf.extend_from_slice(&((a.fixed.len() + target_len) as u16).to_be_bytes());
        buf.extend_from_slice(&a.fixed);
        if let Some(t) = &a.target {
            buf.extend_from_slice(t);
            for x in &a.extras {
                if target_at <= MAX_POINTER {
                    extras.extend_from_slice(&(0xC000 | target_at as u16).to_be_bytes());
                } else {
                    extras.extend_from_slice(t);
                }
                extras.extend_from_slice(&x.rtype.to_be_bytes());
                extras.extend_from_slice(&CLASS_IN.to_be_bytes());
                extras.extend_from_slice(&ttl);
                extras.extend_from_slice(&(x.rdata.len() as u16).to_be_bytes());
                extras.extend_from_slice(&x.rdata);
                extra_count += 1;
            }
        }
        debug_assert_eq!(buf.len() - record_start, record_len);
        answered += 1;
    }
    buf.extend_from_slice(&extras);
    if let Some(size) = limits.client_edns {
        let payload = size.min(4096) as u16;
        buf.extend_from_slice(&[0, 0, TYPE_OPT as u8]);
        buf.extend_from_slice(&payload.to_be_bytes());
        buf.extend_from_slice(&[0; 6]);
        extra_count += 1;
    }
    let truncated = cut && limits.udp && config.enable_truncate;
    // QR, opcode QUERY, AA, TC, RD; RA, rcode NOERROR.
    buf[0..2].copy_from_slice(&q.id.to_be_bytes());
    buf[2] = 0x80 | 0x04 | if truncated { 0x02 } else { 0 } | u8::from(q.recursion_desired);
    buf[3] = if config.recursors.is_empty() { 0 } else { 0x80 };
    buf[4..6].copy_from_slice(&1u16.to_be_bytes());
    buf[6..8].copy_from_slice(&answered.to_be_bytes());
    buf[10..12].copy_from_slice(&extra_count.to_be_bytes());
    buf
}

#[cfg(test)]
mod tests;
