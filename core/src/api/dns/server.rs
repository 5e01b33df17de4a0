//! DNS over UDP and TCP: packet handling, truncation, EDNS0, recursion.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::answer_cache::{parse_fast, AnswerCache, FastQuery, ReplyLimits};
use super::resolve::{in_our_domains, resolve, resolve_with, DnsAnswer, QueryRunner};
use super::reverse::is_reverse_name;
use super::DnsConfig;
use crate::replication::backend::Backend;
use crate::replication::consensus::Consistency;
use crate::rpc::Service;

/// Largest plain-DNS UDP answer (RFC 1035).
const UDP_PLAIN_MAX: usize = 512;
/// How long a client agent waits for a server to resolve a query it forwarded.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer we build over TCP (the 2-byte length prefix limit).
const TCP_MAX: usize = 65535;
/// Recursive lookups in flight at once; more are answered SERVFAIL instead of queueing.
const MAX_RECURSIONS: usize = 64;

/// What the DNS server needs.
#[derive(Debug)]
pub struct DnsContext {
    /// Catalog reads (stale by default) and read barriers on servers; forwarding on clients.
    pub backend: Backend,
    /// `dns_config` and friends.
    pub config: DnsConfig,
    /// This agent's datacenter.
    pub datacenter: String,
    /// Stops the listeners.
    pub shutdown: CancellationToken,
    /// Resolves the DNS token.
    pub acl: std::sync::Arc<crate::api::authz::AclResolver>,
    recursions: Semaphore,
    /// Service answers built once per catalog change (see `answer_cache`).
    answers: AnswerCache,
    /// The agent's metrics and its node name (`consul.dns.domain_query`'s `node` label).
    metrics: Option<(std::sync::Arc<crate::metrics::Metrics>, String)>,
    /// This agent's node name.
    node_name: String,
    /// The other datacenters (servers): `<name>.<kind>.<dc>` lookups for another datacenter
    /// go to a server there, and prepared queries fail over.
    pub(super) datacenters: Option<Arc<crate::api::remote_dc::Datacenters>>,
}

impl DnsContext {
    /// A context for one agent.
    pub fn new(
        backend: Backend,
        config: DnsConfig,
        datacenter: String,
        shutdown: CancellationToken,
        acl: std::sync::Arc<crate::api::authz::AclResolver>,
    ) -> Self {
        DnsContext {
            backend,
            config,
            datacenter,
            shutdown,
            acl,
            recursions: Semaphore::new(MAX_RECURSIONS),
            answers: AnswerCache::default(),
            metrics: None,
            node_name: String::new(),
            datacenters: None,
        }
    }

    /// Where lookups for other datacenters go (servers).
    pub fn with_datacenters(mut self, datacenters: Arc<crate::api::remote_dc::Datacenters>) -> Self {
        self.datacenters = Some(datacenters);
        self
    }

    /// This agent's node name (prepared queries' `Near: "_agent"`).
    pub fn with_node_name(mut self, node: &str) -> Self {
        self.node_name = node.to_string();
        self
    }

    /// Times every query into `metrics` as `consul.dns.domain_query` (label `node`).
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::metrics::Metrics>, node: &str) -> Self {
        self.metrics = Some((metrics, node.to_string()));
        self
    }

    fn is_client(&self) -> bool {
        matches!(self.backend, Backend::Client(_))
    }
}

/// A DNS query a client agent hands to a server (the [`Service::Dns`] RPC service).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ForwardedQuery {
    /// The query as received.
    pub packet: Vec<u8>,
    /// Whether it came over UDP (answer size limits).
    pub udp: bool,
    /// The client agent's DNS token (else its default token) when it has ACLs on: the server
    /// answers what that token may read. `None`: the server's own DNS token.
    pub token: Option<String>,
}

/// The token DNS answers are filtered by: the agent's DNS token, else its default token.
fn dns_token(ctx: &DnsContext) -> Option<String> {
    let tokens = ctx.acl.agent_tokens();
    tokens.dns.or(tokens.default)
}

/// Answers a query a client agent forwarded (`None`: drop it).
pub async fn answer_forwarded(ctx: &DnsContext, q: ForwardedQuery) -> Option<Vec<u8>> {
    let (packet, udp) = (&q.packet[..], q.udp);
    match handle(ctx, packet, udp, Some(q.token)).await {
        Handled::Reply(b) => Some(b),
        // The client recurses itself; a forwarded query is always for our domains.
        Handled::Recurse | Handled::Drop => None,
    }
}

/// The outcome of handling one packet.
enum Handled {
    /// Send these bytes.
    Reply(Vec<u8>),
    /// Not ours: forward the packet to the recursors.
    Recurse,
    /// Say nothing (the packet was not a query, or not even a header).
    Drop,
}

fn error_reply(id: u16, op: OpCode, code: ResponseCode) -> Handled {
    let mut m = Message::error_msg(id, op, code);
    m.metadata.message_type = MessageType::Response;
    m.to_vec().map(Handled::Reply).unwrap_or(Handled::Drop)
}

/// Encodes `resp` with `answers` (each with its extra records) in at most `max` bytes, dropping
/// answers from the end — together with their extras — until it fits. Returns the bytes and
/// whether answers were dropped.
fn encode_within(mut resp: Message, answers: Vec<(Record, Vec<Record>)>, max: usize) -> Option<(Vec<u8>, bool)> {
    let total = answers.len();
    let encode = |keep: usize, resp: &mut Message| -> Option<Vec<u8>> {
        resp.answers = answers[..keep].iter().map(|(r, _)| r.clone()).collect();
        resp.additionals = answers[..keep].iter().flat_map(|(_, x)| x.iter().cloned()).collect();
        resp.to_vec().ok()
    };
    let mut keep = total;
    let mut bytes = encode(keep, &mut resp)?;
    if bytes.len() > max && keep > 0 {
        // Jump close to the size that fits, then step down.
        keep = (keep * max / bytes.len()).min(keep - 1);
        bytes = encode(keep, &mut resp)?;
    }
    while bytes.len() > max && keep > 0 {
        keep -= 1;
        bytes = encode(keep, &mut resp)?;
    }
    if bytes.len() > max {
        resp.authorities.clear();
        bytes = resp.to_vec().ok()?;
    }
    Some((bytes, keep < total))
}

/// Decodes a packet and checks it is one question for our domains: the request and its
/// question name, or what to do instead.
fn parse_query(packet: &[u8], config: &DnsConfig) -> Result<(Message, String), Handled> {
    let req = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) if packet.len() >= 2 => {
            return Err(error_reply(u16::from_be_bytes([packet[0], packet[1]]), OpCode::Query, ResponseCode::FormErr));
        }
        Err(_) => return Err(Handled::Drop),
    };
    let id = req.metadata.id;
    if req.metadata.message_type != MessageType::Query {
        return Err(Handled::Drop);
    }
    if req.metadata.op_code != OpCode::Query {
        return Err(error_reply(id, req.metadata.op_code, ResponseCode::NotImp));
    }
    let [query] = req.queries.as_slice() else {
        return Err(error_reply(id, OpCode::Query, ResponseCode::FormErr));
    };
    if !matches!(query.query_class, DNSClass::IN | DNSClass::ANY) {
        return Err(error_reply(id, OpCode::Query, ResponseCode::NotImp));
    }
    let qname = query.name.to_ascii();
    // Reverse names (PTR) are answered from the catalog whatever the configured domains.
    if !is_reverse_name(&qname) && !in_our_domains(&qname, config) {
        return Err(if config.recursors.is_empty() {
            error_reply(id, OpCode::Query, ResponseCode::Refused)
        } else {
            Handled::Recurse
        });
    }
    Ok((req, qname))
}

/// The client's EDNS payload size, if any; the largest answer to build; and the answer
/// count limit to resolve with (0: none).
fn size_limits(req: &Message, udp: bool, config: &DnsConfig) -> (Option<usize>, usize, usize) {
    payload_limits(req.edns.as_ref().map(|e| e.max_payload()), udp, config)
}

/// [`size_limits`] from the client's EDNS payload size (`None`: no OPT record).
fn payload_limits(client_payload: Option<u16>, udp: bool, config: &DnsConfig) -> (Option<usize>, usize, usize) {
    let client_edns = client_payload.map(|p| usize::from(p).max(UDP_PLAIN_MAX));
    let (max, limit) = match (udp, client_edns) {
        (false, _) => (TCP_MAX, 0),
        (true, Some(size)) => (size, 0),
        (true, None) => (UDP_PLAIN_MAX, config.udp_answer_limit),
    };
    (client_edns, max, limit)
}

/// Answers one packet. `forwarded` is `Some` for a query a client agent forwarded, holding the
/// token that overrides the agent's DNS token.
async fn handle(ctx: &DnsContext, packet: &[u8], udp: bool, forwarded: Option<Option<String>>) -> Handled {
    let start = std::time::Instant::now();
    // A query a client agent forwarded is timed there, not again here.
    let local = forwarded.is_none();
    let handled = handle_query(ctx, packet, udp, forwarded).await;
    if let (true, Some((m, node))) = (local, &ctx.metrics) {
        m.measure_since("dns.domain_query", &[("node", node)], start);
    }
    handled
}

async fn handle_query(ctx: &DnsContext, packet: &[u8], udp: bool, forwarded: Option<Option<String>>) -> Handled {
    let from_client = forwarded.is_some();
    let token = forwarded.flatten();
    if let Some(handled) = answer_from_cache(ctx, packet, udp, token.as_deref()).await {
        return handled;
    }
    let (req, qname) = match parse_query(packet, &ctx.config) {
        Ok(x) => x,
        Err(h) => return h,
    };
    let id = req.metadata.id;
    // DNS reads are stale by default (`allow_stale`); past `max_stale` behind the leader, or with
    // stale reads off, read through the leader like a default-mode HTTP query.
    let consensus = match &ctx.backend {
        Backend::Server(c) => c,
        // A client agent has no catalog: a server resolves the query.
        Backend::Client(remote) => {
            let q = ForwardedQuery {
                packet: packet.to_vec(),
                udp,
                token: ctx.acl.enabled().then(|| dns_token(ctx)).flatten(),
            };
            let answer = match postcard::to_allocvec(&q) {
                Ok(body) => remote.call_raw(Service::Dns, body, FORWARD_TIMEOUT, false, true).await,
                Err(e) => Err(crate::Error::Rpc(e.to_string())),
            };
            return match answer.ok().and_then(|b| postcard::from_bytes::<Option<Vec<u8>>>(&b).ok()) {
                Some(Some(bytes)) => Handled::Reply(bytes),
                Some(None) => Handled::Drop,
                None => error_reply(id, OpCode::Query, ResponseCode::ServFail),
            };
        }
    };
    if let Some(dc) = remote_dc(ctx, &qname) {
        return forward_to_dc(ctx, packet, udp, token, id, &dc).await;
    }
    let mode = if ctx.config.allow_stale { Consistency::MaxStale(ctx.config.max_stale) } else { Consistency::Default };
    if consensus.read_barrier(mode).await.is_err() {
        return error_reply(id, OpCode::Query, ResponseCode::ServFail);
    }
    let (_, _, limit) = size_limits(&req, udp, &ctx.config);
    let Some(query) = req.queries.first() else { return error_reply(id, OpCode::Query, ResponseCode::FormErr) };
    // Answered as the agent's DNS token (else its default token, else anonymous) may read.
    let secret = token.or_else(|| dns_token(ctx));
    let now = crate::replication::session_ttl::now_ms();
    let runner = QueryRunner { acl: &ctx.acl, now_ms: now, agent_node: &ctx.node_name };
    let mut answer = consensus.state().read(|d| match ctx.acl.resolve(secret.as_deref(), &d.acl, now) {
        Ok(acl) => resolve_with(d, &acl, Some(&runner), &ctx.config, &ctx.datacenter, &qname, query.query_type, limit),
        // A configured token that no longer exists reads nothing.
        Err(_) => DnsAnswer { nx_domain: true, ..Default::default() },
    });
    // A prepared query with nothing here fails over to other datacenters.
    if answer.nx_domain && ctx.datacenters.as_ref().is_some_and(|d| d.can_forward()) {
        let pq = super::query::query_name(&qname, &ctx.config, &ctx.datacenter).and_then(|(name, _)| {
            consensus.state().read(|d| crate::state::prepared_query::execute::resolve(d, &name, "").ok())
        });
        if pq.is_some() {
            let failed_over =
                super::query::failover_answer(ctx, pq, &qname, query.query_type, limit, secret.as_deref()).await;
            if let Some(a) = failed_over {
                answer = a;
            }
        }
    }
    // Like Consul, a reverse name nobody here has goes to the recursors when there are any
    // (a query a client agent forwarded is answered as is: the server has no say in its recursors).
    if is_reverse_name(&qname) && answer.nx_domain && !ctx.config.recursors.is_empty() && !from_client {
        return Handled::Recurse;
    }
    reply(&req, answer, udp, &ctx.config)
}

/// The other datacenter a lookup name names (`….service.dc2.consul`, `….service.dc2.dc.consul`),
/// when this server can reach it; `None` for this datacenter or an unknown one (NXDOMAIN here,
/// as Consul answers it).
fn remote_dc(ctx: &DnsContext, qname: &str) -> Option<String> {
    let datacenters = ctx.datacenters.as_ref()?;
    let dc = super::resolve::named_dc(qname, &ctx.config)?;
    if !datacenters.is_remote(&dc) {
        return None;
    }
    datacenters.known(&dc)
}

/// Has a server of `dc` answer the packet (as a client agent's server does), with the token
/// the answer is filtered by. SERVFAIL when no server there answers.
async fn forward_to_dc(
    ctx: &DnsContext,
    packet: &[u8],
    udp: bool,
    token: Option<String>,
    id: u16,
    dc: &str,
) -> Handled {
    let Some(datacenters) = &ctx.datacenters else { return error_reply(id, OpCode::Query, ResponseCode::ServFail) };
    let q = ForwardedQuery {
        packet: packet.to_vec(),
        udp,
        token: ctx.acl.enabled().then(|| token.or_else(|| dns_token(ctx))).flatten(),
    };
    let answer = match postcard::to_allocvec(&q) {
        Ok(body) => datacenters.call(dc, Service::Dns, body, FORWARD_TIMEOUT, true).await,
        Err(e) => Err(crate::Error::Rpc(e.to_string())),
    };
    match answer {
        Ok(b) => match postcard::from_bytes::<Option<Vec<u8>>>(&b) {
            Ok(Some(bytes)) => Handled::Reply(bytes),
            Ok(None) => Handled::Drop,
            Err(_) => error_reply(id, OpCode::Query, ResponseCode::ServFail),
        },
        Err(e) => {
            tracing::debug!(datacenter = dc, error = %e, "DNS lookup for another datacenter failed");
            error_reply(id, OpCode::Query, ResponseCode::ServFail)
        }
    }
}

/// The fast path for service questions on a server: the reply written from the answer cache
/// without decoding the packet into a `Message` or building records. `None`: the general path
/// answers (any other question, a client agent, an answer the cache leaves to it).
async fn answer_from_cache(ctx: &DnsContext, packet: &[u8], udp: bool, token: Option<&str>) -> Option<Handled> {
    let Backend::Server(consensus) = &ctx.backend else { return None };
    let q = parse_fast(packet)?;
    let mode = if ctx.config.allow_stale { Consistency::MaxStale(ctx.config.max_stale) } else { Consistency::Default };
    if consensus.read_barrier(mode).await.is_err() {
        return Some(error_reply(q.id(), OpCode::Query, ResponseCode::ServFail));
    }
    // With ACLs off the token is never looked at: skip copying the agent's tokens.
    let secret = if ctx.acl.enabled() { token.map(str::to_string).or_else(|| dns_token(ctx)) } else { None };
    let now = crate::replication::session_ttl::now_ms();
    consensus
        .state()
        .read(|d| {
            let acl = ctx.acl.resolve(secret.as_deref(), &d.acl, now).ok()?;
            ctx.answers.answer(d, &acl, &ctx.config, &ctx.datacenter, &q, fast_limits(&q, udp, &ctx.config))
        })
        .map(Handled::Reply)
}

fn fast_limits(q: &FastQuery<'_>, udp: bool, config: &DnsConfig) -> ReplyLimits {
    let (client_edns, max_bytes, max_answers) = payload_limits(q.edns_payload, udp, config);
    ReplyLimits { client_edns, max_bytes, max_answers, udp }
}

/// Encodes the reply to `req` carrying `answer`, within the size the transport allows.
fn reply(req: &Message, answer: DnsAnswer, udp: bool, config: &DnsConfig) -> Handled {
    let id = req.metadata.id;
    let (client_edns, max, _) = size_limits(req, udp, config);
    let mut resp = Message::response(id, OpCode::Query);
    resp.metadata.authoritative = true;
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = !config.recursors.is_empty();
    resp.metadata.response_code = if answer.nx_domain { ResponseCode::NXDomain } else { ResponseCode::NoError };
    resp.queries = req.queries.clone();
    resp.authorities = answer.authorities;
    if let Some(size) = client_edns {
        let mut edns = Edns::new();
        edns.set_max_payload(size.min(4096) as u16);
        resp.set_edns(edns);
    }
    let mut extras = answer.extras.into_iter();
    let answers: Vec<(Record, Vec<Record>)> =
        answer.answers.into_iter().map(|r| (r, extras.next().unwrap_or_default())).collect();
    let limited = answer.limited;
    match encode_within(resp, answers, max) {
        Some((mut bytes, cut)) if (cut || limited) && udp && config.enable_truncate => {
            // Set TC in the encoded header (byte 2, bit 0x02): the flag does not change the size.
            if let Some(flags) = bytes.get_mut(2) {
                *flags |= 0x02;
            }
            Handled::Reply(bytes)
        }
        Some((bytes, _)) => Handled::Reply(bytes),
        None => error_reply(id, OpCode::Query, ResponseCode::ServFail),
    }
}

/// The whole answering path short of the network and the Raft read barrier: decode `packet`,
/// resolve it against `data` with ACLs off, encode the reply (`None`: no reply, or recurse).
pub(crate) fn answer_offline(
    packet: &[u8],
    udp: bool,
    data: &crate::state::StateData,
    config: &DnsConfig,
    datacenter: &str,
) -> Option<Vec<u8>> {
    let acl = crate::api::authz::Authz::disabled();
    if let Some(q) = parse_fast(packet) {
        let cache = AnswerCache::default();
        if let Some(reply) = cache.answer(data, &acl, config, datacenter, &q, fast_limits(&q, udp, config)) {
            return Some(reply);
        }
    }
    let handled = match parse_query(packet, config) {
        Err(h) => h,
        Ok((req, qname)) => {
            let (_, _, limit) = size_limits(&req, udp, config);
            let qtype = req.queries.first()?.query_type;
            let answer = resolve(data, &acl, config, datacenter, &qname, qtype, limit);
            reply(&req, answer, udp, config)
        }
    };
    match handled {
        Handled::Reply(b) => Some(b),
        Handled::Recurse | Handled::Drop => None,
    }
}

/// The reply limits for a query with EDNS payload `edns` (tests of the answer cache).
#[cfg(test)]
pub(super) fn test_limits(edns: Option<u16>, udp: bool, config: &DnsConfig) -> ReplyLimits {
    let (client_edns, max_bytes, max_answers) = payload_limits(edns, udp, config);
    ReplyLimits { client_edns, max_bytes, max_answers, udp }
}

/// The general path's UDP reply to `packet` with ACLs off (tests compare the cache with it).
#[cfg(test)]
pub(super) fn general_reply(packet: &[u8], data: &crate::state::StateData, config: &DnsConfig) -> Vec<u8> {
    let Ok((req, qname)) = parse_query(packet, config) else { panic!("not a query for our domains") };
    let (_, _, limit) = size_limits(&req, true, config);
    let acl = crate::api::authz::Authz::disabled();
    let answer = resolve(data, &acl, config, "dc1", &qname, req.queries[0].query_type, limit);
    match reply(&req, answer, true, config) {
        Handled::Reply(b) => b,
        _ => panic!("no reply"),
    }
}

/// Forwards `packet` to each recursor in turn; the first answer wins.
async fn recurse(ctx: &DnsContext, packet: &[u8]) -> Vec<u8> {
    let id = if packet.len() >= 2 { u16::from_be_bytes([packet[0], packet[1]]) } else { 0 };
    let servfail = || match error_reply(id, OpCode::Query, ResponseCode::ServFail) {
        Handled::Reply(b) => b,
        _ => Vec::new(),
    };
    let Ok(_permit) = ctx.recursions.try_acquire() else { return servfail() };
    for upstream in &ctx.config.recursors {
        let bind: SocketAddr = if upstream.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().unwrap_or(*upstream);
        let Ok(sock) = UdpSocket::bind(bind).await else { continue };
        if sock.send_to(packet, upstream).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok((n, from))) = tokio::time::timeout(ctx.config.recursor_timeout, sock.recv_from(&mut buf)).await {
            if from == *upstream {
                buf.truncate(n);
                return buf;
            }
        }
    }
    servfail()
}

/// Serves DNS over UDP on `socket` until shutdown. Catalog lookups are answered inline by two
/// receiver tasks (they only read memory, so a fixed number of tasks bounds DNS to a share of
/// the CPU and a query flood cannot starve the HTTP API); recursive lookups run in their own
/// tasks.
pub async fn serve_udp(socket: UdpSocket, ctx: Arc<DnsContext>) {
    let socket = Arc::new(socket);
    // Two receivers share the socket so both cores can answer under load; catalog lookups are
    // short reads, and tokio interleaves these tasks with the HTTP API's, so DNS cannot starve it.
    let second = tokio::spawn(udp_worker(socket.clone(), ctx.clone()));
    udp_worker(socket, ctx).await;
    let _ = second.await;
}

async fn udp_worker(socket: Arc<UdpSocket>, ctx: Arc<DnsContext>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = ctx.shutdown.cancelled() => return,
        };
        let Ok((len, peer)) = received else { continue };
        let packet = &buf[..len];
        if ctx.is_client() {
            // Forwarded queries wait on a server round trip: never hold a receiver for that.
            let (socket, ctx, packet) = (socket.clone(), ctx.clone(), packet.to_vec());
            tokio::spawn(async move {
                let reply = match handle(&ctx, &packet, true, None).await {
                    Handled::Reply(b) => b,
                    Handled::Recurse => recurse(&ctx, &packet).await,
                    Handled::Drop => return,
                };
                if !reply.is_empty() {
                    let _ = socket.send_to(&reply, peer).await;
                }
            });
            continue;
        }
        match handle(&ctx, packet, true, None).await {
            Handled::Reply(bytes) => {
                let _ = socket.send_to(&bytes, peer).await;
            }
            Handled::Recurse => {
                let (socket, ctx, packet) = (socket.clone(), ctx.clone(), packet.to_vec());
                tokio::spawn(async move {
                    let reply = recurse(&ctx, &packet).await;
                    if !reply.is_empty() {
                        let _ = socket.send_to(&reply, peer).await;
                    }
                });
            }
            Handled::Drop => {}
        }
    }
}

/// Serves DNS over TCP (RFC 7766 framing: a 2-byte length before each message) until shutdown.
pub async fn serve_tcp(listener: TcpListener, ctx: Arc<DnsContext>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = ctx.shutdown.cancelled() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        tokio::spawn(serve_tcp_conn(stream, ctx.clone()));
    }
}

async fn serve_tcp_conn(mut stream: TcpStream, ctx: Arc<DnsContext>) {
    let idle = Duration::from_secs(10);
    loop {
        let mut len = [0u8; 2];
        let read = tokio::select! {
            r = tokio::time::timeout(idle, stream.read_exact(&mut len)) => r,
            _ = ctx.shutdown.cancelled() => return,
        };
        if !matches!(read, Ok(Ok(_))) {
            return;
        }
        let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if !matches!(tokio::time::timeout(idle, stream.read_exact(&mut packet)).await, Ok(Ok(_))) {
            return;
        }
        let reply = match handle(&ctx, &packet, false, None).await {
            Handled::Reply(b) => b,
            Handled::Recurse => recurse(&ctx, &packet).await,
            Handled::Drop => return,
        };
        let Ok(n) = u16::try_from(reply.len()) else { return };
        if stream.write_all(&n.to_be_bytes()).await.is_err() || stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}
