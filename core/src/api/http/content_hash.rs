//! `ContentHash` of `GET /v1/agent/service/:id`, equal to Consul's: `hashstructure.Hash` (v1,
//! see [`crate::wire::go_hash`]) over the `api.AgentService` Consul answers with, before its
//! `ContentHash` is set, printed `%x`. Clients compare it with the hash they hold and pass it
//! back as `?hash=`, so it must match Consul's for a client that mixes agents.
//!
//! The Go types are in [`crate::wire::go_api_types`].

use serde_json::Value;

use crate::wire::go_api_types::AGENT_SERVICE;
use crate::wire::go_hash::{GoValue, Schema};

/// Consul's `ContentHash` of an agent service, from the `AgentService` JSON the endpoint
/// answers with (without `ContentHash`: Consul hashes before setting it, so a `ContentHash`
/// present in `service` is read as empty).
pub(super) fn agent_service_content_hash(service: &Value) -> String {
    let mut value = Schema::Struct(&AGENT_SERVICE).from_json(Some(service));
    if let GoValue::Struct { fields, .. } = &mut value {
        for f in fields.iter_mut().filter(|f| f.name == "ContentHash") {
            f.value = GoValue::String(String::new());
        }
    }
    format!("{:x}", value.hash())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `GET /v1/agent/service/:id` answers recorded from Consul 1.16.0 (dev agent, datacenter
    /// dc1) on 2026-12-07, each with the `ContentHash` Consul computed for it. Hashing Consul's
    /// own answer checks the algorithm and the Go types apart from how we store services.
    const CONSUL_ANSWERS: &[&str] = &[
        // The Go API test TestAPI_AgentService's service.
        r#"{"ID":"foo","Service":"foo","Tags":["bar","baz"],"Meta":{},"Port":8000,"Address":"",
            "Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,
            "ContentHash":"3e352f348d44f7eb","Datacenter":"dc1"}"#,
        r#"{"ID":"min","Service":"min","Tags":[],"Meta":{},"Port":0,"Address":"","Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,"ContentHash":"aa5575db35dcab18","Datacenter":"dc1"}"#,
        r#"{"ID":"web-1","Service":"web","Tags":["v1","primary","v1"],"Meta":{"env":"prod","version":"1.2"},"Port":8080,"Address":"10.0.0.5","TaggedAddresses":{"lan_ipv4":{"Address":"10.0.0.5","Port":8080},"wan_ipv4":{"Address":"10.0.0.5","Port":8080}},"Weights":{"Passing":10,"Warning":3},"EnableTagOverride":true,"ContentHash":"25d2965ff01be06d","Datacenter":"dc1"}"#,
        r#"{"ID":"tagged","Service":"tagged","Tags":[],"Meta":{},"Port":80,"Address":"","TaggedAddresses":{"lan":{"Address":"192.168.1.1","Port":80},"wan":{"Address":"1.2.3.4","Port":8443}},"Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,"ContentHash":"62417a549d0c11cb","Datacenter":"dc1"}"#,
        r#"{"ID":"sock","Service":"sock","Tags":[],"Meta":{},"Port":0,"Address":"","SocketPath":"/tmp/sock.sock","Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,"ContentHash":"86b2e7a94431ffa7","Datacenter":"dc1"}"#,
        r#"{"ID":"native","Service":"native","Tags":[],"Meta":{},"Port":9191,"Address":"","Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,"ContentHash":"82b1b59d9cc68f40","Connect":{"Native":true},"Datacenter":"dc1"}"#,
        r#"{"Kind":"connect-proxy","ID":"web-proxy","Service":"web-proxy","Tags":[],"Meta":{},"Port":21000,"Address":"","Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,"ContentHash":"6240deab249ab518","Proxy":{"DestinationServiceName":"web","DestinationServiceID":"web-1","LocalServiceAddress":"127.0.0.1","LocalServicePort":8080,"Config":{"connect_timeout_ms":5000,"flag":false,"nested":{"a":[1,"x",true,null]},"protocol":"http"},"Upstreams":[{"DestinationType":"service","DestinationName":"db","Datacenter":"dc2","LocalBindPort":9191,"Config":{"limit":3},"MeshGateway":{"Mode":"remote"}},{"DestinationType":"prepared_query","DestinationName":"q","LocalBindAddress":"127.0.0.2","LocalBindPort":9192,"MeshGateway":{"Mode":"local"}}],"MeshGateway":{"Mode":"remote"},"Expose":{"Checks":true,"Paths":[{"ListenerPort":21500,"Path":"/metrics","LocalPathPort":9102,"Protocol":"http","ParsedFromCheck":false}]}},"Datacenter":"dc1"}"#,
        r#"{"Kind":"connect-proxy","ID":"p2","Service":"p2","Tags":[],"Meta":{},"Port":21001,"Address":"","Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,"ContentHash":"2c2449d59f255e8a","Proxy":{"DestinationServiceName":"web","MeshGateway":{},"Expose":{}},"Datacenter":"dc1"}"#,
        r#"{"ID":"loc","Service":"loc","Tags":[],"Meta":{},"Port":1,"Address":"","Weights":{"Passing":5,"Warning":0},"EnableTagOverride":false,"ContentHash":"cc081c5ee28d368b","Datacenter":"dc1","Locality":{"Region":"us-west-1","Zone":"a"}}"#,
        r#"{"Kind":"mesh-gateway","ID":"mgw","Service":"mgw","Tags":[],"Meta":{},"Port":8443,"Address":"10.1.1.1","TaggedAddresses":{"lan":{"Address":"10.1.1.1","Port":8443},"lan_ipv4":{"Address":"10.1.1.1","Port":8443},"wan_ipv4":{"Address":"10.1.1.1","Port":8443}},"Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,"ContentHash":"ba904b7165a42940","Proxy":{"Config":{"envoy_gateway_no_default_bind":true},"MeshGateway":{},"Expose":{}},"Datacenter":"dc1"}"#,
        r#"{"Kind":"connect-proxy","ID":"tp","Service":"tp","Tags":[],"Meta":{},"Port":20000,"Address":"","Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,"ContentHash":"bada5cedb07a7f44","Proxy":{"DestinationServiceName":"web","LocalServiceSocketPath":"/tmp/x.sock","Mode":"transparent","TransparentProxy":{"OutboundListenerPort":15001,"DialedDirectly":true},"Upstreams":[{"DestinationType":"service","DestinationPeer":"peer1","DestinationName":"s","LocalBindSocketPath":"/tmp/u.sock","LocalBindSocketMode":"0700","MeshGateway":{}}],"MeshGateway":{},"Expose":{},"AccessLogs":{"Enabled":true,"Type":"file","Path":"/tmp/a.log"}},"Datacenter":"dc1"}"#,
        r#"{"ID":"uni","Service":"uni","Tags":["ä","b"],"Meta":{"empty":"","k":"värde"},"Port":65535,"Address":"::1","TaggedAddresses":{"lan_ipv6":{"Address":"::1","Port":65535},"wan_ipv6":{"Address":"::1","Port":65535}},"Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,"ContentHash":"b592c0b84143a3ea","Datacenter":"dc1"}"#,
        r#"{"Kind":"terminating-gateway","ID":"gw2","Service":"gw2","Tags":[],"Meta":{},"Port":9000,"Address":"","Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,"ContentHash":"1d95311580df46a0","Proxy":{"MeshGateway":{},"Expose":{}},"Datacenter":"dc1"}"#,
    ];

    #[test]
    fn consul_answers_hash_to_their_content_hash() {
        for answer in CONSUL_ANSWERS {
            let v: Value = serde_json::from_str(answer).expect("vector is JSON");
            let want = v["ContentHash"].as_str().expect("vector has ContentHash");
            assert_eq!(agent_service_content_hash(&v), want, "{answer}");
        }
    }
}
