//! Sidecar defaults, checks and port assignment. Expected values recorded from Consul 1.16.0
//! (`consul agent -dev`) on 2026-12-07.

use serde_json::{json, Value};

use super::*;
use crate::local::def::CheckKind;
use crate::local::parse_service_registration;
use crate::wire::connect::render_proxy;

fn def(v: Value) -> ServiceDefinition {
    parse_service_registration(&v).expect("valid registration")
}

fn sidecar(v: Value) -> ServiceDefinition {
    build(&def(v)).expect("builds").expect("asks for a sidecar")
}

/// `{"Name":"web","Port":8080,"Tags":["a"],"Meta":{"m":"1"},"Connect":{"SidecarService":{}}}`
/// gives Consul's `web-sidecar-proxy`, tags and meta inherited.
#[test]
fn empty_sidecar_takes_consuls_defaults() {
    let s = sidecar(json!({"Name":"web","Port":8080,"Tags":["a"],"Meta":{"m":"1"},"Connect":{"SidecarService":{}}}));
    let svc = &s.service;
    assert_eq!(
        (svc.id.as_str(), svc.service.as_str(), svc.kind.as_str()),
        ("web-sidecar-proxy", "web-sidecar-proxy", "connect-proxy")
    );
    assert_eq!(svc.tags, vec!["a".to_string()]);
    assert_eq!(svc.meta.get("m").map(String::as_str), Some("1"));
    assert_eq!(svc.address, "");
    assert_eq!(svc.port, 0, "assigned at registration");
    assert!(s.checks.is_empty(), "default checks are added at registration");
    assert_eq!(
        render_proxy(svc.ext.proxy.as_ref().expect("proxy"), true),
        json!({"DestinationServiceName": "web", "DestinationServiceID": "web", "LocalServiceAddress": "127.0.0.1",
               "LocalServicePort": 8080, "MeshGateway": {}, "Expose": {}})
    );
}

/// snake_case nested definition with its own port, tags and upstreams; the address is the
/// parent's.
#[test]
fn given_sidecar_fields_win_over_defaults() {
    let s = sidecar(json!({"Name":"api","ID":"api1","Port":8081,"Address":"10.0.0.5","connect":{"sidecar_service":{
        "port":22222,"tags":["x"],"proxy":{"upstreams":[{"destination_name":"db","local_bind_port":9000}]}}}}));
    let svc = &s.service;
    assert_eq!((svc.id.as_str(), svc.service.as_str(), svc.port), ("api1-sidecar-proxy", "api-sidecar-proxy", 22222));
    assert_eq!(svc.tags, vec!["x".to_string()]);
    assert_eq!(svc.address, "10.0.0.5");
    assert_eq!(
        render_proxy(svc.ext.proxy.as_ref().expect("proxy"), true),
        json!({"DestinationServiceName": "api", "DestinationServiceID": "api1", "LocalServiceAddress": "127.0.0.1",
               "LocalServicePort": 8081,
               "Upstreams": [{"DestinationType": "service", "DestinationName": "db", "LocalBindPort": 9000,
                              "MeshGateway": {}}],
               "MeshGateway": {}, "Expose": {}})
    );
}

#[test]
fn parent_keeps_only_native() {
    let mut d = def(json!({"Name":"web","Port":1,"Connect":{"SidecarService":{}}}));
    strip(&mut d.service);
    assert_eq!(d.service.ext.connect, None);
    let mut d = def(json!({"Name":"x5","Port":1,"Connect":{"Native":true,"SidecarService":{}}}));
    strip(&mut d.service);
    assert_eq!(d.service.ext.connect, Some(json!({"Native": true})));
    assert!(build(&def(json!({"Name":"plain","Port":1}))).expect("builds").is_none());
}

/// Consul's checks `service:<sidecar>:1` (TCP on the proxy, 10s) and `:2` (alias of the parent).
#[test]
fn default_checks_are_consuls() {
    let mut s = sidecar(json!({"Name":"cfgweb","Port":8080,"Connect":{"SidecarService":{}}}));
    s.service.port = 21000;
    let checks = default_checks(&s.service, "cfgweb").expect("checks");
    assert_eq!(checks.len(), 2);
    assert_eq!(checks[0].id, "service:cfgweb-sidecar-proxy:1");
    assert_eq!(checks[0].name, "Connect Sidecar Listening");
    assert_eq!(checks[0].kind, CheckKind::Tcp { address: "127.0.0.1:21000".into() });
    assert_eq!(checks[0].interval, std::time::Duration::from_secs(10));
    assert_eq!(checks[1].id, "service:cfgweb-sidecar-proxy:2");
    assert_eq!(checks[1].name, "Connect Sidecar Aliasing cfgweb");
    assert_eq!(checks[1].kind, CheckKind::Alias { service: "cfgweb".into(), node: String::new() });
    assert!(checks.iter().all(|c| c.service_id == "cfgweb-sidecar-proxy"));
    // The sidecar's own address when it has one.
    s.service.address = "10.0.0.5".into();
    assert_eq!(
        default_checks(&s.service, "cfgweb").expect("checks")[0].kind,
        CheckKind::Tcp { address: "10.0.0.5:21000".into() }
    );
}

/// The port, or the 400's message.
fn port_of<'a>(
    range: Option<SidecarPorts>,
    id: &str,
    others: impl Iterator<Item = &'a ServiceInstance>,
) -> Result<u16, String> {
    match assign_port(range, id, others) {
        Ok(p) => Ok(p),
        Err(Error::BadRequest(m)) => Err(m),
        Err(e) => panic!("expected a 400, got {e:?}"),
    }
}

fn svc(id: &str, port: u16) -> ServiceInstance {
    ServiceInstance { id: id.into(), port, ..Default::default() }
}

#[test]
fn ports_are_the_lowest_free_and_kept_on_update() {
    let range = Some(SidecarPorts { min: 21000, max: 21002 });
    let others = [svc("a-sidecar-proxy", 21000), svc("web", 8080), svc("b-sidecar-proxy", 21002)];
    assert_eq!(port_of(range, "c-sidecar-proxy", others.iter()), Ok(21001));
    assert_eq!(port_of(range, "b-sidecar-proxy", others.iter()), Ok(21002), "keeps its port");
    let full = [svc("a", 21000), svc("b", 21001), svc("c", 21002)];
    assert_eq!(
        port_of(range, "d-sidecar-proxy", full.iter()),
        Err("no port provided for sidecar_service and none left in the configured range [21000, 21002]".into())
    );
    assert_eq!(
        port_of(None, "d-sidecar-proxy", full.iter()),
        Err("no port provided for sidecar_service and auto-assignment disabled in config".into())
    );
}

#[test]
fn nested_definition_rules_match_consul() {
    let one = |e: &str| format!("Validation failed: 1 error occurred:\n\t* {e}\n\n");
    let msg = |v: Value| match parse_service_registration(&v) {
        Err(Error::BadRequest(m)) => m,
        other => panic!("expected a 400, got {other:?}"),
    };
    assert_eq!(
        msg(json!({"Name":"x9","Port":1,"Connect":{"SidecarService":{"ID":"foo"}}})),
        one("A SidecarService cannot specify an ID as this is managed by the agent")
    );
    assert_eq!(
        msg(json!({"Name":"x7","Port":1,"Connect":{"SidecarService":{"Connect":{"SidecarService":{}}}}})),
        one("A SidecarService cannot have a nested SidecarService")
    );
    assert_eq!(
        msg(
            json!({"Name":"x","Port":1,"Connect":{"SidecarService":{"Proxy":{"Upstreams":[{"DestinationName":"d"}]}}}})
        ),
        one("upstream local bind port or local socket path must be defined and nonzero")
    );
    // Accepted by Consul: a native service or a proxy with a sidecar.
    parse_service_registration(&json!({"Name":"x5","Port":1,"Connect":{"Native":true,"SidecarService":{}}}))
        .expect("ok");
    parse_service_registration(&json!({"Name":"x6","Kind":"connect-proxy","Port":1,
        "Proxy":{"DestinationServiceName":"w"},"Connect":{"SidecarService":{}}}))
    .expect("ok");
}
