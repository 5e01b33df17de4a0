#![allow(clippy::unwrap_used)]

use super::execute::{healthy, instances, resolve, tags_match, ResolveError};
use super::template::Compiled;
use super::*;
use crate::state::catalog::{HealthCheck, Node, RegisterRequest, ServiceInstance};
use crate::state::command::{Command, CommandResponse};
use crate::state::{deserialize_state, StateStore};

const ID1: &str = "11111111-2222-3333-4444-555555555555";
const ID2: &str = "aaaaaaaa-2222-3333-4444-555555555555";

fn query(id: &str, name: &str, service: &str) -> PreparedQuery {
    PreparedQuery {
        id: id.into(),
        name: name.into(),
        service: ServiceQuery { service: service.into(), ..Default::default() },
        ..Default::default()
    }
}

fn template(id: &str, name: &str, service: &str, regexp: &str) -> PreparedQuery {
    let mut q = query(id, name, service);
    q.template = QueryTemplate { kind: NAME_PREFIX_MATCH.into(), regexp: regexp.into(), remove_empty_tags: false };
    q
}

fn create(store: &StateStore, q: PreparedQuery, index: u64) -> CommandResponse {
    store.apply(&Command::PreparedQuery(PreparedQueryOp::Create(Box::new(q))), index)
}

fn failed(resp: CommandResponse) -> String {
    match resp {
        CommandResponse::Failed(e) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn validation_table() {
    let unnamed = query(ID1, "", "redis");
    assert_eq!(validate_definition(&unnamed).unwrap_err(), "Must be bound to a session");
    let mut redacted = query(ID1, "q", "redis");
    redacted.token = REDACTED_TOKEN.into();
    assert!(validate_definition(&redacted).unwrap_err().starts_with("Bad Token '<hidden>'"));
    assert_eq!(validate_definition(&query(ID1, "q", "")).unwrap_err(), "Must provide a Service name to query");
    let mut nearest = query(ID1, "q", "redis");
    nearest.service.failover.nearest_n = -1;
    assert_eq!(validate_definition(&nearest).unwrap_err(), "Bad NearestN '-1', must be >= 0");
    let mut ttl = query(ID1, "q", "redis");
    ttl.dns_ttl = "soon".into();
    assert!(validate_definition(&ttl).unwrap_err().starts_with("Bad DNS TTL 'soon'"));
    ttl.dns_ttl = "10s".into();
    assert!(validate_definition(&ttl).is_ok());
    // An unnamed template needs no session.
    assert!(validate_definition(&template(ID1, "", "redis", "")).is_ok());
}

#[test]
fn stateful_validation_refuses_and_changes_nothing() {
    let store = StateStore::new();
    assert_eq!(create(&store, query(ID1, "Web", "web"), 5), CommandResponse::Ok);
    // Names are unique without case.
    assert_eq!(failed(create(&store, query(ID2, "web", "web"), 6)), "name 'web' aliases an existing query name");
    // A name may not be another query's ID.
    assert_eq!(failed(create(&store, query(ID2, ID1, "web"), 7)), format!("name '{ID1}' aliases an existing query ID"));
    // The session must exist.
    let mut bound = query(ID2, "", "web");
    bound.session = "nope".into();
    assert_eq!(failed(create(&store, bound, 8)), "invalid session \"nope\"");
    // Templates compile.
    let bad_type =
        PreparedQuery { template: QueryTemplate { kind: "x".into(), ..Default::default() }, ..query(ID2, "t", "s") };
    assert_eq!(failed(create(&store, bad_type, 9)), "failed compiling template: Bad Template.Type 'x'");
    assert!(
        failed(create(&store, template(ID2, "t", "s", "("), 9)).starts_with("failed compiling template: Bad Regexp")
    );
    assert!(failed(create(&store, template(ID2, "t", "${nope}", ""), 9))
        .contains("Bad format '${nope}' in Service.Service"));
    assert!(failed(create(&store, query(ID2, "x", ""), 9)).starts_with("Invalid prepared query: Must provide"));
    // Updating a query that does not exist is refused.
    let update = Command::PreparedQuery(PreparedQueryOp::Update(Box::new(query(ID2, "x", "y"))));
    assert!(failed(store.apply(&update, 10)).starts_with("Cannot modify non-existent prepared query"));
    store.read(|d| {
        assert_eq!(d.prepared_queries.by_id.len(), 1);
        assert_eq!(d.prepared_queries.index, 5);
    });
    // Only one template may have the empty name.
    assert_eq!(create(&store, template(ID2, "", "s", ""), 11), CommandResponse::Ok);
    let third = "bbbbbbbb-2222-3333-4444-555555555555";
    assert_eq!(
        failed(create(&store, template(third, "", "s", ""), 12)),
        "a query template with an empty name already exists"
    );
}

#[test]
fn update_keeps_create_index_and_delete_removes() {
    let store = StateStore::new();
    create(&store, query(ID1, "a", "web"), 3);
    let update = Command::PreparedQuery(PreparedQueryOp::Update(Box::new(query(ID1, "b", "web"))));
    assert_eq!(store.apply(&update, 4), CommandResponse::Ok);
    store.read(|d| {
        let q = &d.prepared_queries.by_id[ID1];
        assert_eq!((q.create_index, q.modify_index, q.name.as_str()), (3, 4, "b"));
        assert!(d.prepared_queries.by_name("a").is_none());
        assert_eq!(d.prepared_queries.by_name("B").map(|q| q.id.as_str()), Some(ID1));
    });
    store.apply(&Command::PreparedQuery(PreparedQueryOp::Delete { id: ID1.into() }), 5);
    store.read(|d| assert!(d.prepared_queries.by_id.is_empty() && d.prepared_queries.index == 5));
}

#[test]
fn template_interpolation_and_regexp_matches() {
    let mut t = template(ID1, "geo-", "${match(1)}", r"^geo-(\w+)-(\w+)$");
    t.service.tags = Some(vec!["${match(2)}".into(), "${name.suffix}".into(), "${match(7)}".into(), "$${x}".into()]);
    t.service.near = "${agent.segment}".into();
    t.service.node_meta = Some([("k".to_string(), "${name.full}".to_string())].into());
    t.service.failover.datacenters = Some(vec!["${name.prefix}".into()]);
    let c = Compiled::compile(&t).expect("compiles");
    let q = c.render("geo-db-primary", "seg1").expect("renders");
    assert_eq!(q.service.service, "db");
    assert_eq!(q.service.tags, Some(vec!["primary".into(), "db-primary".into(), "".into(), "${x}".into()]));
    assert_eq!(q.service.near, "seg1");
    assert_eq!(q.service.node_meta.as_ref().map(|m| m["k"].as_str()), Some("geo-db-primary"));
    assert_eq!(q.service.failover.datacenters, Some(vec!["geo-".into()]));
    // No match: groups render empty; RemoveEmptyTags drops them.
    t.template.remove_empty_tags = true;
    let q = Compiled::compile(&t).expect("compiles").render("geo-x", "").expect("renders");
    assert_eq!(q.service.service, "");
    assert_eq!(q.service.tags, Some(vec!["x".into(), "${x}".into()]));
}

#[test]
fn resolve_by_id_name_and_longest_prefix() {
    let store = StateStore::new();
    create(&store, query(ID1, "static", "web"), 2);
    create(&store, template(ID2, "", "${name.full}", ""), 3);
    let longer = "cccccccc-2222-3333-4444-555555555555";
    create(&store, template(longer, "geo-", "geo:${name.suffix}", ""), 4);
    store.read(|d| {
        assert_eq!(resolve(d, ID1, "").map(|q| q.service.service), Ok("web".into()));
        assert_eq!(resolve(d, "STATIC", "").map(|q| q.service.service), Ok("web".into()));
        assert_eq!(resolve(d, "geo-db", "").map(|q| q.service.service), Ok("geo:db".into()));
        assert_eq!(resolve(d, "anything", "").map(|q| q.service.service), Ok("anything".into()));
        assert_eq!(resolve(d, ID2, ""), Err(ResolveError::TemplateById));
        assert_eq!(resolve(d, "", ""), Err(ResolveError::NotFound));
    });
    let empty = StateStore::new();
    empty.read(|d| assert_eq!(resolve(d, "x", ""), Err(ResolveError::NotFound)));
}

#[test]
fn tag_negation() {
    let tags = vec!["Primary".to_string(), "v1".to_string()];
    assert!(tags_match(&["primary".into()], &tags));
    assert!(tags_match(&["!v2".into(), "V1".into()], &tags));
    assert!(!tags_match(&["!v1".into()], &tags));
    assert!(!tags_match(&["v2".into()], &tags));
    assert!(tags_match(&[], &tags));
}

fn check(id: &str, status: &str) -> HealthCheck {
    HealthCheck { check_id: id.into(), status: status.into(), ..Default::default() }
}

#[test]
fn only_passing_and_ignored_checks() {
    let mut q = query(ID1, "q", "web");
    let (ok, warn, crit) = (check("a", "passing"), check("b", "warning"), check("c", "critical"));
    assert!(healthy(&q, &[&ok, &warn]));
    assert!(!healthy(&q, &[&ok, &crit]));
    q.service.only_passing = true;
    assert!(!healthy(&q, &[&ok, &warn]));
    q.service.ignore_check_ids = Some(vec!["b".into(), "c".into()]);
    assert!(healthy(&q, &[&ok, &warn, &crit]));
}

fn register(
    store: &StateStore,
    node: &str,
    meta: &[(&str, &str)],
    svc_meta: &[(&str, &str)],
    tags: &[&str],
    index: u64,
) {
    let req = RegisterRequest {
        node: Node {
            node: node.into(),
            address: "10.0.0.1".into(),
            meta: meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        },
        service: Some(ServiceInstance {
            node: node.into(),
            id: "web1".into(),
            service: "web".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            meta: svc_meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(store.apply(&Command::CatalogRegister(Box::new(req)), index), CommandResponse::Ok);
}

#[test]
fn node_and_service_meta_and_tags_select_instances() {
    let store = StateStore::new();
    register(&store, "n1", &[("rack", "a")], &[("v", "1")], &["primary"], 2);
    register(&store, "n2", &[("rack", "b")], &[("v", "2")], &["backup"], 3);
    let names = |q: &PreparedQuery| {
        store.read(|d| instances(d, q, false).iter().map(|(n, _, _)| n.node.clone()).collect::<Vec<_>>())
    };
    let mut q = query(ID1, "q", "web");
    assert_eq!(names(&q), ["n1", "n2"]);
    q.service.node_meta = Some([("rack".to_string(), "b".to_string())].into());
    assert_eq!(names(&q), ["n2"]);
    q.service.node_meta = None;
    q.service.service_meta = Some([("v".to_string(), "1".to_string())].into());
    assert_eq!(names(&q), ["n1"]);
    q.service.service_meta = None;
    q.service.tags = Some(vec!["!primary".into()]);
    assert_eq!(names(&q), ["n2"]);
    // Connect-capable instances: none are registered.
    assert!(store.read(|d| instances(d, &query(ID1, "q", "web"), true).is_empty()));
}

/// `?connect` (or `Service.Connect`) answers the service's connect proxies and its
/// Connect-native instances, not its plain ones.
#[test]
fn connect_queries_answer_proxies_and_native_instances() {
    let store = StateStore::new();
    let reg = |node: &str, id: &str, service: &str, kind: &str, index: u64| {
        let req = RegisterRequest {
            node: Node { node: node.into(), address: "10.0.0.1".into(), ..Default::default() },
            service: Some(ServiceInstance {
                node: node.into(),
                id: id.into(),
                service: service.into(),
                kind: kind.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(store.apply(&Command::CatalogRegister(Box::new(req)), index), CommandResponse::Ok);
    };
    reg("n1", "web1", "web", "", 2);
    reg("n2", "web-proxy1", "web-sidecar-proxy", "connect-proxy", 3);
    reg("n3", "web3", "web", "", 4);
    reg("n4", "db-proxy1", "db-sidecar-proxy", "connect-proxy", 5);
    let mut d = store.read(|d| d.clone());
    for s in d.catalog.services.values_mut() {
        match s.id.as_str() {
            "web-proxy1" => s.ext.proxy = Some(serde_json::json!({"DestinationServiceName": "web"})),
            "db-proxy1" => s.ext.proxy = Some(serde_json::json!({"DestinationServiceName": "db"})),
            "web3" => s.ext.connect = Some(serde_json::json!({"Native": true})),
            _ => {}
        }
    }
    let names = |q: &PreparedQuery, connect: bool| {
        let mut n: Vec<String> = instances(&d, q, connect).iter().map(|(n, _, _)| n.node.clone()).collect();
        n.sort();
        n
    };
    let mut q = query(ID1, "q", "web");
    assert_eq!(names(&q, false), ["n1", "n3"]);
    assert_eq!(names(&q, true), ["n2", "n3"]);
    q.service.connect = true;
    assert_eq!(names(&q, false), ["n2", "n3"]);
}

#[test]
fn sessions_take_their_queries_with_them() {
    let store = StateStore::new();
    register(&store, "n1", &[], &[], &[], 2);
    let session = crate::state::Session { id: "s1".into(), node: "n1".into(), ..Default::default() };
    assert_eq!(store.apply(&Command::SessionCreate(Box::new(session)), 3), CommandResponse::Ok);
    let mut bound = query(ID1, "", "web");
    bound.session = "s1".into();
    assert_eq!(create(&store, bound, 4), CommandResponse::Ok);
    store.apply(&Command::SessionDestroy { id: "s1".into(), now_ms: 0 }, 5);
    store.read(|d| assert!(d.prepared_queries.by_id.is_empty() && d.prepared_queries.index == 5));
}

#[test]
fn snapshot_round_trip_and_restore_through_the_envelope() {
    let store = StateStore::new();
    create(&store, query(ID1, "static", "web"), 2);
    create(&store, template(ID2, "geo-", "${name.suffix}", ""), 3);
    let bytes = store.serialize().expect("serialize");
    let back = deserialize_state(&bytes).expect("deserialize");
    assert_eq!(back.prepared_queries.by_id, store.read(|d| d.prepared_queries.by_id.clone()));
    // The lookups are rebuilt on load.
    assert_eq!(back.prepared_queries.template_for("geo-x").map(|q| q.id.as_str()), Some(ID2));
    // A restore into another store re-stamps the indexes.
    let other = StateStore::new();
    other.apply(&Command::Restore(Box::new(back)), 40);
    other.read(|d| {
        assert_eq!(d.prepared_queries.index, 40);
        assert_eq!(d.prepared_queries.by_id[ID1].modify_index, 40);
        assert_eq!(d.prepared_queries.by_id[ID1].create_index, 2);
        assert_eq!(resolve(d, "static", "").map(|q| q.id), Ok(ID1.to_string()));
    });
}
