//! `ContentHash` of `GET /v1/agent/service/:id`, equal to Consul's: `hashstructure.Hash` (v1,
//! see [`crate::wire::go_hash`]) over the `api.AgentService` Consul answers with, before its
//! `ContentHash` is set, printed `%x`. Clients compare it with the hash they hold and pass it
//! back as `?hash=`, so it must match Consul's for a client that mixes agents.
//!
//! The Go types below are `api.AgentService` and what it nests, field for field at
//! consul/api v1.22.0 (Consul 1.16.0): field order does not matter to the hash (fields XOR),
//! but every field counts, including those our JSON omits when zero.

use serde_json::Value;

use crate::wire::go_hash::{FieldSchema as F, HashTag, Schema, StructSchema};

/// `api.AgentWeights`.
static AGENT_WEIGHTS: StructSchema =
    StructSchema { name: "AgentWeights", fields: &[F::new("Passing", Schema::Int), F::new("Warning", Schema::Int)] };

/// `api.ServiceAddress`.
static SERVICE_ADDRESS: StructSchema =
    StructSchema { name: "ServiceAddress", fields: &[F::new("Address", Schema::String), F::new("Port", Schema::Int)] };

/// `api.MeshGatewayConfig`.
static MESH_GATEWAY_CONFIG: StructSchema =
    StructSchema { name: "MeshGatewayConfig", fields: &[F::new("Mode", Schema::String)] };

/// `api.TransparentProxyConfig`.
static TRANSPARENT_PROXY_CONFIG: StructSchema = StructSchema {
    name: "TransparentProxyConfig",
    fields: &[F::new("OutboundListenerPort", Schema::Int), F::new("DialedDirectly", Schema::Bool)],
};

/// `api.ExposePath`.
static EXPOSE_PATH: StructSchema = StructSchema {
    name: "ExposePath",
    fields: &[
        F::new("ListenerPort", Schema::Int),
        F::new("Path", Schema::String),
        F::new("LocalPathPort", Schema::Int),
        F::new("Protocol", Schema::String),
        F::new("ParsedFromCheck", Schema::Bool),
    ],
};

/// `api.ExposeConfig`.
static EXPOSE_CONFIG: StructSchema = StructSchema {
    name: "ExposeConfig",
    fields: &[F::new("Checks", Schema::Bool), F::new("Paths", Schema::Slice(&Schema::Struct(&EXPOSE_PATH)))],
};

/// `api.AccessLogsConfig`.
static ACCESS_LOGS_CONFIG: StructSchema = StructSchema {
    name: "AccessLogsConfig",
    fields: &[
        F::new("Enabled", Schema::Bool),
        F::new("DisableListenerLogs", Schema::Bool),
        F::new("Type", Schema::String),
        F::new("Path", Schema::String),
        F::new("JSONFormat", Schema::String),
        F::new("TextFormat", Schema::String),
    ],
};

/// `api.EnvoyExtension` (Consul's `ToAPI` never copies a proxy's extensions into the answer,
/// so this is always an empty list there; modelled for completeness).
static ENVOY_EXTENSION: StructSchema = StructSchema {
    name: "EnvoyExtension",
    fields: &[
        F::new("Name", Schema::String),
        F::new("Required", Schema::Bool),
        F::new("Arguments", Schema::StringMap(&Schema::Any)),
        F::new("ConsulVersion", Schema::String),
        F::new("EnvoyVersion", Schema::String),
    ],
};

/// `api.Upstream`.
static UPSTREAM: StructSchema = StructSchema {
    name: "Upstream",
    fields: &[
        F::new("DestinationType", Schema::String),
        F::new("DestinationPartition", Schema::String),
        F::new("DestinationNamespace", Schema::String),
        F::new("DestinationPeer", Schema::String),
        F::new("DestinationName", Schema::String),
        F::new("Datacenter", Schema::String),
        F::new("LocalBindAddress", Schema::String),
        F::new("LocalBindPort", Schema::Int),
        F::new("LocalBindSocketPath", Schema::String),
        F::new("LocalBindSocketMode", Schema::String),
        F::new("Config", Schema::StringMap(&Schema::Any)),
        F::new("MeshGateway", Schema::Struct(&MESH_GATEWAY_CONFIG)),
        F::new("CentrallyConfigured", Schema::Bool),
    ],
};

/// `api.AgentServiceConnectProxyConfig`.
static PROXY_CONFIG: StructSchema = StructSchema {
    name: "AgentServiceConnectProxyConfig",
    fields: &[
        F::new("EnvoyExtensions", Schema::Slice(&Schema::Struct(&ENVOY_EXTENSION))),
        F::new("DestinationServiceName", Schema::String),
        F::new("DestinationServiceID", Schema::String),
        F::new("LocalServiceAddress", Schema::String),
        F::new("LocalServicePort", Schema::Int),
        F::new("LocalServiceSocketPath", Schema::String),
        F::new("Mode", Schema::String),
        F::new("TransparentProxy", Schema::Ptr(&Schema::Struct(&TRANSPARENT_PROXY_CONFIG))),
        F::new("Config", Schema::StringMap(&Schema::Any)),
        F::new("Upstreams", Schema::Slice(&Schema::Struct(&UPSTREAM))),
        F::new("MeshGateway", Schema::Struct(&MESH_GATEWAY_CONFIG)),
        F::new("Expose", Schema::Struct(&EXPOSE_CONFIG)),
        F::new("AccessLogs", Schema::Ptr(&Schema::Struct(&ACCESS_LOGS_CONFIG))),
    ],
};

/// `api.AgentServiceConnect`. `SidecarService` (a `*AgentServiceRegistration`) is never set in
/// an answer (Consul fills only `Native`), so it is modelled as the nil pointer it always is.
static AGENT_SERVICE_CONNECT: StructSchema = StructSchema {
    name: "AgentServiceConnect",
    fields: &[F::new("Native", Schema::Bool), F::new("SidecarService", Schema::Ptr(&Schema::Any))],
};

/// `api.Locality` (ignored by the hash, kept so the model is the whole struct).
static LOCALITY: StructSchema =
    StructSchema { name: "Locality", fields: &[F::new("Region", Schema::String), F::new("Zone", Schema::String)] };

/// `api.AgentService`.
static AGENT_SERVICE: StructSchema = StructSchema {
    name: "AgentService",
    fields: &[
        F::new("Kind", Schema::String),
        F::new("ID", Schema::String),
        F::new("Service", Schema::String),
        F::new("Tags", Schema::Slice(&Schema::String)),
        F::new("Meta", Schema::StringMap(&Schema::String)),
        F::new("Port", Schema::Int),
        F::new("Address", Schema::String),
        F::new("SocketPath", Schema::String),
        F::new("TaggedAddresses", Schema::StringMap(&Schema::Struct(&SERVICE_ADDRESS))),
        F::new("Weights", Schema::Struct(&AGENT_WEIGHTS)),
        F::new("EnableTagOverride", Schema::Bool),
        F::new("CreateIndex", Schema::Uint64),
        F::new("ModifyIndex", Schema::Uint64),
        F::new("ContentHash", Schema::String),
        F::new("Proxy", Schema::Ptr(&Schema::Struct(&PROXY_CONFIG))),
        F::new("Connect", Schema::Ptr(&Schema::Struct(&AGENT_SERVICE_CONNECT))),
        F::new("PeerName", Schema::String),
        F::tagged("Namespace", Schema::String, HashTag::Ignore),
        F::tagged("Partition", Schema::String, HashTag::Ignore),
        F::tagged("Datacenter", Schema::String, HashTag::Ignore),
        F::tagged("Locality", Schema::Ptr(&Schema::Struct(&LOCALITY)), HashTag::Ignore),
    ],
};

/// Consul's `ContentHash` of an agent service, from the `AgentService` JSON the endpoint
/// answers with (without `ContentHash`: Consul hashes before setting it, so a `ContentHash`
/// present in `service` is read as empty).
pub(super) fn agent_service_content_hash(service: &Value) -> String {
    let mut value = Schema::Struct(&AGENT_SERVICE).from_json(Some(service));
    if let crate::wire::go_hash::GoValue::Struct { fields, .. } = &mut value {
        for f in fields.iter_mut().filter(|f| f.name == "ContentHash") {
            f.value = crate::wire::go_hash::GoValue::String(String::new());
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
