//! `ContentHash` of `GET /v1/agent/service/:id` equals Consul's for the same registration, so
//! a client can carry `?hash=` between Consul and us (Go test `TestAPI_AgentService`).

use consul_tests::client::Api;
use consul_tests::inproc::Cluster;
use reqwest::Method;

/// (service ID, `PUT /v1/agent/service/register` body, the `ContentHash` Consul answered for
/// it). Recorded from Consul 1.16.0 (`consul agent -dev`, datacenter dc1) on 2026-12-07.
const VECTORS: &[(&str, &str, &str)] = &[
    (
        "foo",
        r#"{"Name":"foo","Tags":["bar","baz"],"Port":8000,"Checks":[{"TTL":"15s"},{"TTL":"30s"}]}"#,
        "3e352f348d44f7eb",
    ),
    ("min", r#"{"Name":"min"}"#, "aa5575db35dcab18"),
    (
        "web-1",
        r#"{"ID":"web-1","Name":"web","Tags":["v1","primary","v1"],"Port":8080,"Address":"10.0.0.5","Meta":{"version":"1.2","env":"prod"},"EnableTagOverride":true,"Weights":{"Passing":10,"Warning":3}}"#,
        "25d2965ff01be06d",
    ),
    (
        "tagged",
        r#"{"ID":"tagged","Name":"tagged","Port":80,"TaggedAddresses":{"lan":{"Address":"192.168.1.1","Port":80},"wan":{"Address":"1.2.3.4","Port":8443}}}"#,
        "62417a549d0c11cb",
    ),
    ("sock", r#"{"ID":"sock","Name":"sock","SocketPath":"/tmp/sock.sock","Tags":[],"Meta":{}}"#, "86b2e7a94431ffa7"),
    ("native", r#"{"ID":"native","Name":"native","Port":9191,"Connect":{"Native":true}}"#, "82b1b59d9cc68f40"),
    (
        "web-proxy",
        r#"{"ID":"web-proxy","Name":"web-proxy","Kind":"connect-proxy","Port":21000,"Proxy":{"DestinationServiceName":"web","DestinationServiceID":"web-1","LocalServiceAddress":"127.0.0.1","LocalServicePort":8080,"Config":{"protocol":"http","connect_timeout_ms":5000,"nested":{"a":[1,"x",true,null]},"flag":false},"Upstreams":[{"DestinationName":"db","LocalBindPort":9191,"Datacenter":"dc2","Config":{"limit":3}},{"DestinationType":"prepared_query","DestinationName":"q","LocalBindAddress":"127.0.0.2","LocalBindPort":9192,"MeshGateway":{"Mode":"local"}}],"MeshGateway":{"Mode":"remote"},"Expose":{"Checks":true,"Paths":[{"ListenerPort":21500,"Path":"/metrics","LocalPathPort":9102,"Protocol":"http"}]}}}"#,
        "6240deab249ab518",
    ),
    (
        "p2",
        r#"{"ID":"p2","Name":"p2","Kind":"connect-proxy","Port":21001,"Proxy":{"DestinationServiceName":"web"}}"#,
        "2c2449d59f255e8a",
    ),
    (
        "loc",
        r#"{"ID":"loc","Name":"loc","Port":1,"Locality":{"Region":"us-west-1","Zone":"a"},"Weights":{"Passing":5,"Warning":0}}"#,
        "cc081c5ee28d368b",
    ),
    (
        "mgw",
        r#"{"ID":"mgw","Name":"mgw","Kind":"mesh-gateway","Port":8443,"Address":"10.1.1.1","TaggedAddresses":{"lan":{"Address":"10.1.1.1","Port":8443}},"Proxy":{"Config":{"envoy_gateway_no_default_bind":true}}}"#,
        "ba904b7165a42940",
    ),
    (
        "tp",
        r#"{"ID":"tp","Name":"tp","Kind":"connect-proxy","Port":20000,"Proxy":{"DestinationServiceName":"web","Mode":"transparent","TransparentProxy":{"OutboundListenerPort":15001,"DialedDirectly":true},"AccessLogs":{"Enabled":true,"Type":"file","Path":"/tmp/a.log"},"LocalServiceSocketPath":"/tmp/x.sock","Upstreams":[{"DestinationName":"s","DestinationPeer":"peer1","LocalBindSocketPath":"/tmp/u.sock","LocalBindSocketMode":"0700"}]}}"#,
        "bada5cedb07a7f44",
    ),
    (
        "uni",
        r#"{"ID":"uni","Name":"uni","Tags":["ä","b"],"Meta":{"k":"värde","empty":""},"Port":65535,"Address":"::1"}"#,
        "b592c0b84143a3ea",
    ),
    // A proxy block on a typical service is not answered (nor hashed); `Connect` only when native.
    (
        "typ-proxy",
        r#"{"ID":"typ-proxy","Name":"typ","Proxy":{"DestinationServiceName":"x","Upstreams":[{"DestinationName":"a"}]},"Connect":{"Native":false}}"#,
        "a1ea01c01caa7c15",
    ),
    // A gateway registered without a proxy block answers an empty one.
    ("gw2", r#"{"ID":"gw2","Name":"gw2","Kind":"terminating-gateway","Port":9000}"#, "1d95311580df46a0"),
    ("sc", r#"{"ID":"sc","Name":"sc","Port":7000,"Connect":{"SidecarService":{}}}"#, "54e6b1ef18d2dc82"),
    // Go field names in any case, or snake_case, decode the same.
    (
        "snake",
        r#"{"ID":"snake","Name":"snake","Kind":"connect-proxy","Port":7001,"proxy":{"destination_service_name":"web","upstreams":[{"destination_name":"db","local_bind_port":1234}],"mesh_gateway":{"mode":"local"}}}"#,
        "f0be0284013e2e8c",
    ),
    ("lc", r#"{"ID":"lc","Name":"lc","Port":5,"connect":{"native":true}}"#, "40fdcb70190f7980"),
    // Weights given without Warning: Warning 0.
    ("w", r#"{"ID":"w","Name":"w","Weights":{"Passing":3}}"#, "ce85fe4bcb06df08"),
    (
        "eto",
        r#"{"ID":"eto","Name":"eto","enable_tag_override":true,"Tags":null,"Meta":null,"tagged_addresses":{"lan":{"address":"10.9.9.9","port":1}}}"#,
        "ea0b62888ff72401",
    ),
];

async fn register(api: &Api, body: &str) {
    let r =
        api.request(Method::PUT, "/v1/agent/service/register", Some(body.as_bytes().to_vec())).await.expect("request");
    assert_eq!(r.status, 200, "register {body}: {}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t74_agent_service_content_hash_equals_consuls() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    let mut wrong = Vec::new();
    for (id, body, want) in VECTORS {
        register(&api, body).await;
        let r = api.get(&format!("/v1/agent/service/{id}")).await.expect("get");
        assert_eq!(r.status, 200, "{id}: {}", r.text());
        let header = r.header("X-Consul-ContentHash");
        let v = r.json();
        assert_eq!(header.as_deref(), v["ContentHash"].as_str(), "{id}: header and body agree");
        if v["ContentHash"] != *want {
            wrong.push(format!("{id}: got {} want {want}: {v}", v["ContentHash"]));
        }
    }
    assert!(wrong.is_empty(), "hashes differ from Consul's:\n{}", wrong.join("\n"));
    c.shutdown().await;
}
