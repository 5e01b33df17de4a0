//! `<name-or-id>.query[.<dc>].<domain>`: answering from a prepared query (Consul's
//! `preparedQueryLookup`).
//!
//! The query is resolved (templates rendered for the asked name) and executed like
//! `/v1/query/:id/execute`; its instances become A/AAAA or SRV records as a service lookup's
//! do, shuffled on every reply and cut to the answer limits. The TTL is the query's `DNS.TTL`,
//! else `dns_config.service_ttl` for the queried service, else 0. Instances are those the DNS
//! token may read (the query's stored `Token` is applied by the HTTP execute only). No distance
//! sort: Consul's DNS sorts only on the query's `Near`, and the catalog's coordinates are not
//! consulted here. With no instance here, the query fails over to other datacenters as
//! `/execute` does, and the records name the datacenter that answered.

use hickory_proto::rr::{Name, RecordType};
use rand::seq::SliceRandom;

use super::resolve::{domains, labels_under, service_ttl, split_dc, ttl_secs, DnsAnswer, QueryRunner};
use super::DnsConfig;
use crate::acl::rules::{Need, Resource};
use crate::api::authz::Authz;
use crate::state::prepared_query::execute::{self, Entry};
use crate::state::prepared_query::PreparedQuery;
use crate::state::StateData;

/// Where the answer goes and what it may hold.
pub(super) struct Asked<'a> {
    /// The zone (`consul.`).
    pub domain: &'a str,
    /// This datacenter.
    pub datacenter: &'a str,
    /// The question's name, as asked.
    pub owner: &'a Name,
    /// The query's ID or name (lower case, dots kept).
    pub query: &'a str,
    /// The question type.
    pub qtype: RecordType,
    /// The answer limit for the transport (0: none).
    pub max_answers: usize,
}

/// The answer for a prepared query lookup; `None` when the query does not exist or answers
/// with no instance (NXDOMAIN, as Consul). With a `runner`, a query that stores a token runs as
/// that token and its `Near` orders the instances, as `/execute` does.
pub(super) fn answer(
    data: &StateData,
    acl: &Authz,
    runner: Option<&QueryRunner<'_>>,
    config: &DnsConfig,
    asked: &Asked<'_>,
) -> Option<DnsAnswer> {
    let pq = execute::resolve(data, asked.query, "").ok()?;
    let query_acl = match runner {
        Some(r) if !pq.token.is_empty() && r.acl.enabled() => {
            Some(r.acl.resolve(Some(&pq.token), &data.acl, r.now_ms).ok()?)
        }
        _ => None,
    };
    let acl: &Authz = query_acl.as_deref().unwrap_or(acl);
    let mut picked: Vec<_> = execute::instances(data, &pq, false)
        .into_iter()
        .filter(|(n, s, _)| {
            acl.allows(Resource::Node, &n.node, Need::Read) && acl.allows(Resource::Service, &s.service, Need::Read)
        })
        .collect();
    if picked.is_empty() {
        return None;
    }
    picked.shuffle(&mut rand::thread_rng());
    // Nearest first (a stable sort: instances at one distance stay shuffled).
    if let Some(r) = runner {
        let near = match pq.service.near.as_str() {
            "" => None,
            "_agent" => Some(r.agent_node),
            node => Some(node),
        };
        crate::api::http::sort_near(data, near, &mut picked, |(n, _, _)| &n.node);
    }
    Some(records(config, &pq, picked, asked))
}

/// The records of a query's instances: TTL from the query's `DNS.TTL` (else the service's),
/// the answer limits of the transport and `a_record_limit`.
fn records(config: &DnsConfig, pq: &PreparedQuery, picked: Vec<Entry<'_>>, asked: &Asked<'_>) -> DnsAnswer {
    let ttl = match crate::duration::parse_go_duration(&pq.dns_ttl) {
        Ok(d) if !pq.dns_ttl.is_empty() => ttl_secs(d),
        _ => service_ttl(config, &pq.service.service),
    };
    let mut limit = if asked.max_answers == 0 { usize::MAX } else { asked.max_answers };
    if config.a_record_limit > 0 && asked.qtype != RecordType::SRV {
        limit = limit.min(config.a_record_limit);
    }
    super::resolve::instances_answer(
        config,
        picked,
        asked.qtype,
        asked.owner,
        ttl,
        limit,
        (asked.datacenter, asked.domain),
    )
}

/// The prepared query a lookup name asks for (`<query>.query[.<this dc>].<domain>`), with the
/// domain it was asked under; `None` for any other name.
pub(super) fn query_name(qname: &str, config: &DnsConfig, datacenter: &str) -> Option<(String, String)> {
    let lower = qname.to_ascii_lowercase();
    let (mut labels, domain) = labels_under(&lower, &domains(config))?;
    if let Some(dc) = split_dc(&mut labels) {
        if !dc.eq_ignore_ascii_case(datacenter) {
            return None;
        }
    }
    match labels.as_slice() {
        [query @ .., "query"] if !query.is_empty() => Some((query.join("."), format!("{domain}."))),
        _ => None,
    }
}

/// A prepared-query lookup that found no instance here, failed over as `/execute` does
/// (`Failover.NearestN`, `Failover.Datacenters`): the records of the first datacenter with
/// instances, named under that datacenter. `None`: no failover, or nothing anywhere.
pub(super) async fn failover_answer(
    ctx: &super::DnsContext,
    data_pq: Option<PreparedQuery>,
    qname: &str,
    qtype: RecordType,
    max_answers: usize,
    token: Option<&str>,
) -> Option<DnsAnswer> {
    let pq = data_pq?;
    let datacenters = ctx.datacenters.as_ref()?;
    let (_, domain) = query_name(qname, &ctx.config, &ctx.datacenter)?;
    let owner = super::resolve::name(qname)?;
    let (found, _) = crate::api::http::prepared_query_failover(datacenters, &pq, 0, false, token).await;
    let found = found.filter(|f| !f.nodes.is_empty())?;
    let mut picked: Vec<Entry<'_>> = found.nodes.iter().map(|(n, s, c)| (n, s, c.iter().collect())).collect();
    picked.shuffle(&mut rand::thread_rng());
    let asked = Asked { domain: &domain, datacenter: &found.datacenter, owner: &owner, query: "", qtype, max_answers };
    Some(records(&ctx.config, &pq, picked, &asked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::catalog::{HealthCheck, Node, RegisterRequest, ServiceInstance, CRITICAL, PASSING};
    use crate::state::command::Command;
    use crate::state::prepared_query::{
        PreparedQuery, PreparedQueryOp, QueryTemplate, ServiceQuery, NAME_PREFIX_MATCH,
    };
    use crate::state::StateStore;
    use hickory_proto::rr::RData;

    fn store() -> StateStore {
        let store = StateStore::new();
        for (i, (node, status)) in [("n1", PASSING), ("n2", CRITICAL), ("n3", PASSING)].into_iter().enumerate() {
            let req = RegisterRequest {
                node: Node { node: node.into(), address: format!("10.0.0.{}", i + 1), ..Default::default() },
                service: Some(ServiceInstance {
                    id: "db1".into(),
                    service: "db".into(),
                    port: 5432,
                    ..Default::default()
                }),
                checks: vec![HealthCheck {
                    check_id: "c".into(),
                    service_id: "db1".into(),
                    status: status.into(),
                    ..Default::default()
                }],
                ..Default::default()
            };
            store.apply(&Command::CatalogRegister(Box::new(req)), 2 + i as u64);
        }
        let q = PreparedQuery {
            id: "11111111-2222-3333-4444-555555555555".into(),
            name: "db-".into(),
            template: QueryTemplate { kind: NAME_PREFIX_MATCH.into(), ..Default::default() },
            service: ServiceQuery { service: "${name.suffix}".into(), ..Default::default() },
            dns_ttl: "30s".into(),
            ..Default::default()
        };
        store.apply(&Command::PreparedQuery(PreparedQueryOp::Create(Box::new(q))), 9);
        store
    }

    /// With a runner (the DNS server's), a query's `Near` orders its answers: `_agent` is the
    /// serving agent, a name is that node; without one they stay shuffled.
    /// The query a name asks for, in this datacenter only, with the domain it was asked under.
    #[test]
    fn query_names() {
        let cfg = DnsConfig::default();
        let got = |q: &str| query_name(q, &cfg, "dc1");
        assert_eq!(got("webq.query.consul."), Some(("webq".into(), "consul.".into())));
        assert_eq!(got("a.b.query.DC1.consul."), Some(("a.b".into(), "consul.".into())));
        assert_eq!(got("webq.query.dc1.dc.consul."), Some(("webq".into(), "consul.".into())));
        assert_eq!(got("webq.query.dc2.consul."), None);
        assert_eq!(got("web.service.consul."), None);
        assert_eq!(got("query.consul."), None);
    }

    #[test]
    fn near_orders_answers_from_the_agent_or_the_named_node() {
        use crate::coordinate::{Coordinate, CoordinateConfig};
        let store = store();
        for (id, name, near) in [("a", "near-agent", "_agent"), ("b", "near-n3", "n3")] {
            let q = PreparedQuery {
                id: format!("{id}1111111-2222-3333-4444-555555555555"),
                name: name.into(),
                service: ServiceQuery { service: "db".into(), near: near.into(), ..Default::default() },
                ..Default::default()
            };
            store.apply(&Command::PreparedQuery(PreparedQueryOp::Create(Box::new(q))), 20);
        }
        let mut d = store.read(|d| d.clone());
        // n1 sits at 0, n3 at 50 ms; the agent's node "me" is at 45 ms (next to n3).
        for (node, x) in [("n1", 0.0), ("n3", 0.050), ("me", 0.045)] {
            let mut c = Coordinate::new(&CoordinateConfig::default());
            c.vec[0] = x;
            d.coordinates.entries.insert((node.to_string(), String::new()), c);
        }
        let resolver = crate::api::authz::AclResolver::new(Default::default(), "dc1", "me");
        let runner = QueryRunner { acl: &resolver, now_ms: 0, agent_node: "me" };
        let (config, acl) = (DnsConfig::default(), Authz::disabled());
        let ips = |qname: &str| -> Vec<String> {
            let a = crate::api::dns::resolve::resolve_with(
                &d,
                &acl,
                Some(&runner),
                &config,
                "dc1",
                qname,
                RecordType::A,
                0,
            );
            a.answers.iter().map(|r| r.data.to_string()).collect()
        };
        for _ in 0..10 {
            assert_eq!(ips("near-agent.query.consul."), ["10.0.0.3", "10.0.0.1"]);
            assert_eq!(ips("near-n3.query.consul."), ["10.0.0.3", "10.0.0.1"]);
        }
    }

    #[test]
    fn query_lookups_answer_healthy_instances_with_the_query_ttl() {
        let store = store();
        let config = DnsConfig::default();
        let acl = Authz::disabled();
        store.read(|d| {
            let a = crate::api::dns::resolve(d, &acl, &config, "dc1", "db-db.query.consul.", RecordType::A, 0);
            let mut ips: Vec<String> = a.answers.iter().map(|r| r.data.to_string()).collect();
            ips.sort();
            assert_eq!(ips, ["10.0.0.1", "10.0.0.3"]);
            assert!(a.answers.iter().all(|r| r.ttl == 30));
            let srv = crate::api::dns::resolve(d, &acl, &config, "dc1", "db-db.query.dc1.consul.", RecordType::SRV, 1);
            assert_eq!((srv.answers.len(), srv.limited), (1, true));
            assert!(matches!(&srv.answers[0].data, RData::SRV(s) if s.port == 5432));
            // Unknown query, and a query answering nothing: NXDOMAIN.
            for q in ["nothing.query.consul.", "db-web.query.consul.", "db-db.query.dc2.consul."] {
                assert!(crate::api::dns::resolve(d, &acl, &config, "dc1", q, RecordType::A, 0).nx_domain, "{q}");
            }
        });
    }
}
