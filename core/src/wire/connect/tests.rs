//! Rendering of `Proxy`/`Connect` values (recorded from Consul 1.16.0 on 2026-12-07); whole
//! registrations are tested with the local agent's parser.

use serde_json::json;

use super::*;

/// An empty proxy renders as Consul fills it: `{"MeshGateway": {}, "Expose": {}}` on the
/// agent, plus `"Mode": ""` in the catalog.
#[test]
fn empty_proxy_gets_consuls_defaults() {
    let p = parse_proxy(&serde_json::Map::new()).expect("empty");
    assert_eq!(p.agent_json(), json!({"MeshGateway": {}, "Expose": {}}));
    assert_eq!(p.catalog_json(), json!({"Mode": "", "MeshGateway": {}, "Expose": {}}));
}

/// A value stored before decoding existed (kept as registered, snake_case) renders normalized;
/// one that cannot be decoded renders as stored.
#[test]
fn stored_values_from_before_render_normalized() {
    let old = json!({"destination_service_name": "web", "local_service_port": 8080});
    assert_eq!(
        render_proxy(&old, true),
        json!({"DestinationServiceName": "web", "LocalServicePort": 8080, "MeshGateway": {}, "Expose": {}})
    );
    let odd = json!({"LocalServicePort": "not a number"});
    assert_eq!(render_proxy(&odd, true), odd);
    assert_eq!(render_connect(&json!({"native": true})), Some(json!({"Native": true})));
    assert_eq!(render_connect(&json!({})), None);
}

#[test]
fn upstreams_default_to_service_and_a_sidecar_lends_its_mesh_gateway_mode() {
    let raw = serde_json::json!({
        "DestinationServiceName": "web", "MeshGateway": {"Mode": "remote"},
        "Upstreams": [
            {"DestinationName": "db"},
            {"DestinationName": "c", "MeshGateway": {"Mode": "local"}},
            {"DestinationType": "prepared_query", "DestinationName": "q"},
        ],
    });
    let mut p = parse_proxy(raw.as_object().expect("object")).expect("parse");
    agent_defaults(&mut p);
    merge_defaults(&mut p);
    let modes: Vec<(&str, &str)> =
        p.upstreams.iter().map(|u| (u.destination_type.as_str(), u.mesh_gateway.mode.as_str())).collect();
    assert_eq!(modes, [("service", "remote"), ("service", "local"), ("prepared_query", "")]);
    // Not a sidecar (names no destination): only the type default.
    let mut raw = raw;
    raw.as_object_mut().expect("object").remove("DestinationServiceName");
    let mut p = parse_proxy(raw.as_object().expect("object")).expect("parse");
    agent_defaults(&mut p);
    merge_defaults(&mut p);
    assert_eq!((p.upstreams[0].destination_type.as_str(), p.upstreams[0].mesh_gateway.mode.as_str()), ("service", ""));
}
