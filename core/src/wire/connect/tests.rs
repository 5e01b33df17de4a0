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
