//! The built-in Connect CA: the leader bootstraps a root (with the configured cluster ID), every
//! agent serves the roots and issues SPIFFE leaf certificates that chain to them (a client agent
//! through a server, its key staying local), the CA configuration reads back what was set, a key
//! change rotates the root and wakes blocking leaf requests, and `connect.enabled = false`
//! answers as Consul does.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use consul_core::agent::Agent;
use consul_core::config::{AgentConfig, Ports};
use consul_core::gossip::GossipConfig;
use consul_tests::client::Api;
use consul_tests::eventually;
use reqwest::Method;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::{json, Value};

const CLUSTER: &str = "11111111-2222-3333-4444-555555555555";

fn api(a: &Agent) -> Api {
    Api::new(a.http_addr())
}

async fn get_json(api: &Api, path: &str) -> (Value, u64) {
    let r = api.get(path).await.expect("get");
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    (r.json(), r.index().unwrap_or(0))
}

/// Waits for the leader's CA bootstrap; the roots.
async fn roots(api: &Api, path: &str) -> Value {
    eventually(Duration::from_secs(10), "an active CA root", || async {
        let r = api.get(path).await.ok()?;
        let v: Value = serde_json::from_slice(&r.body).ok()?;
        (r.status == 200 && v["ActiveRootID"].as_str().is_some_and(|s| !s.is_empty())).then_some(v)
    })
    .await
}

/// Verifies `leaf_pem` as a server certificate for `name` against the roots' certificates.
fn chains_to(roots: &Value, leaf_pem: &str, name: &str) -> bool {
    let mut store = rustls::RootCertStore::empty();
    for r in roots["Roots"].as_array().expect("roots") {
        let der = CertificateDer::from_pem_slice(r["RootCert"].as_str().expect("pem").as_bytes()).expect("root der");
        store.add(der).expect("add root");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(store.into(), provider).build().expect("verifier");
    let leaf = CertificateDer::from_pem_slice(leaf_pem.as_bytes()).expect("leaf der");
    let name = ServerName::try_from(name.to_string()).expect("name");
    verifier.verify_server_cert(&leaf, &[], &name, &[], UnixTime::now()).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_roots_leaves_configuration_and_rotation() {
    let mut config = AgentConfig { node_name: "srv".into(), ..AgentConfig::dev_any_port() };
    config.connect.cluster_id = Some(CLUSTER.into());
    let server = Agent::start(config).await.expect("server");
    server.wait_for_leader(Duration::from_secs(10)).await.expect("leader");
    let s = api(&server);

    let list = roots(&s, "/v1/connect/ca/roots").await;
    assert_eq!(list["TrustDomain"], format!("{CLUSTER}.consul"));
    let roots_arr = list["Roots"].as_array().expect("roots");
    assert_eq!(roots_arr.len(), 1);
    let root = &roots_arr[0];
    assert_eq!(root["ID"], list["ActiveRootID"]);
    assert_eq!(root["Active"], true);
    assert_eq!(root["Name"], "Consul CA Primary Cert");
    assert_eq!((root["PrivateKeyType"].as_str(), root["PrivateKeyBits"].as_u64()), (Some("ec"), Some(256)));
    assert!(root.get("PrivateKey").is_none() && !root.to_string().contains("PRIVATE KEY"), "no key in the roots");
    let (agent_list, idx) = get_json(&s, "/v1/agent/connect/ca/roots").await;
    assert_eq!(agent_list, list);
    assert!(idx > 0);
    let pem = s.get("/v1/connect/ca/roots?pem=true").await.expect("pem");
    assert_eq!(pem.header("content-type").as_deref(), Some("application/pem-certificate-chain"));
    assert_eq!(pem.text().trim_end(), root["RootCert"].as_str().expect("test value").trim_end());
    assert_eq!(s.get("/v1/connect/ca/roots?pem=maybe").await.expect("bad pem").status, 400);

    // A leaf for a service: SPIFFE ID, the service's DNS name, chains to the root; kept.
    let (leaf, leaf_index) = get_json(&s, "/v1/agent/connect/ca/leaf/web").await;
    assert_eq!(leaf["Service"], "web");
    assert_eq!(leaf["ServiceURI"], format!("spiffe://{CLUSTER}.consul/ns/default/dc/dc1/svc/web"));
    assert!(leaf["PrivateKeyPEM"].as_str().expect("test value").contains("PRIVATE KEY"));
    assert!(chains_to(&list, leaf["CertPEM"].as_str().expect("test value"), "web.svc.default.11111111.consul"));
    assert_eq!(leaf["ModifyIndex"].as_u64(), Some(leaf_index));
    let (again, _) = get_json(&s, "/v1/agent/connect/ca/leaf/web").await;
    assert_eq!(again["SerialNumber"], leaf["SerialNumber"], "the agent keeps its leaf");

    // The configuration reads back Consul's TTLs; State stays read-only.
    let (cfg, _) = get_json(&s, "/v1/connect/ca/configuration").await;
    assert_eq!(cfg["Provider"], "consul");
    assert_eq!(cfg["Config"]["LeafCertTTL"], "72h0m0s");
    assert_eq!(cfg["Config"]["RootCertTTL"], "87600h0m0s");
    let put = |body: Value| {
        let s = s.clone();
        async move {
            s.request(Method::PUT, "/v1/connect/ca/configuration", Some(body.to_string().into_bytes()))
                .await
                .expect("put")
        }
    };
    let r = put(json!({"Provider": "vault", "Config": {}})).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = put(json!({"Provider": "consul", "Config": {"LeafCertTTL": "10m"}})).await;
    assert!(r.status == 400 && r.text().contains("LeafCertTTL"), "{}", r.text());
    let r = put(json!({"Provider": "consul", "Config": {}, "State": {"x": "y"}})).await;
    assert!(r.status == 400 && r.text().contains("read-only"), "{}", r.text());
    let r = put(json!({"Provider": "consul", "Config": {"PrivateKey": "-----BEGIN EC PRIVATE KEY-----"}})).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = put(json!({"Provider": "consul", "Config": {"LeafCertTTL": "24h", "test_state": {"foo": "bar"}}})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (cfg, _) = get_json(&s, "/v1/connect/ca/configuration").await;
    assert_eq!((cfg["Config"]["LeafCertTTL"].as_str(), cfg["State"]["foo"].as_str()), (Some("24h"), Some("bar")));
    let (same_roots, _) = get_json(&s, "/v1/connect/ca/roots").await;
    assert_eq!(same_roots["ActiveRootID"], list["ActiveRootID"], "TTL changes keep the root");

    // A blocking leaf request wakes when a key change rotates the root.
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move {
            s.get(&format!("/v1/agent/connect/ca/leaf/web?index={leaf_index}&wait=30s")).await.expect("blocking leaf")
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the leaf request blocks while nothing changes");
    let r = put(json!({"Provider": "consul", "Config": {"PrivateKeyType": "ec", "PrivateKeyBits": 384}})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let woken = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("woken").expect("join");
    assert_eq!(woken.status, 200);
    let new_leaf = woken.json();
    assert_ne!(new_leaf["SerialNumber"], leaf["SerialNumber"]);
    assert!(woken.index().expect("test value") > leaf_index);
    let (rotated, _) = get_json(&s, "/v1/connect/ca/roots").await;
    let arr = rotated["Roots"].as_array().expect("test value");
    assert_eq!(arr.len(), 2, "the old root stays trusted");
    assert_ne!(rotated["ActiveRootID"], list["ActiveRootID"]);
    let active = arr.iter().find(|r| r["Active"] == true).expect("test value");
    assert_eq!(active["PrivateKeyBits"], 384);
    assert!(chains_to(&rotated, new_leaf["CertPEM"].as_str().expect("test value"), "web.svc.default.11111111.consul"));
    let only_new = json!({"Roots": [active]});
    assert!(chains_to(&only_new, new_leaf["CertPEM"].as_str().expect("test value"), "web.svc.default.11111111.consul"));
    assert!(!chains_to(&only_new, leaf["CertPEM"].as_str().expect("test value"), "web.svc.default.11111111.consul"));

    // A client agent: roots through a server, a leaf signed by a server for its own key.
    let dir = tempfile::tempdir().expect("tempdir");
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let client = Agent::start(AgentConfig {
        node_name: "cli".into(),
        server: false,
        data_dir: Some(dir.path().to_path_buf()),
        bind_addr: lo,
        client_addr: lo,
        ports: Ports::any(),
        retry_join: vec![server.serf_addr().to_string()],
        retry_interval: Duration::from_millis(200),
        gossip_lan: GossipConfig::dev(),
        ..AgentConfig::default()
    })
    .await
    .expect("client");
    client.wait_for_leader(Duration::from_secs(20)).await.expect("the client reaches a leader");
    let c = api(&client);
    let (client_roots, _) = get_json(&c, "/v1/agent/connect/ca/roots").await;
    assert_eq!(client_roots["ActiveRootID"], rotated["ActiveRootID"]);
    let (client_leaf, _) = get_json(&c, "/v1/agent/connect/ca/leaf/db").await;
    assert_eq!(client_leaf["Service"], "db");
    assert!(chains_to(
        &rotated,
        client_leaf["CertPEM"].as_str().expect("test value"),
        "db.svc.default.11111111.consul"
    ));
    client.shutdown().await.expect("client shutdown");
    server.shutdown().await.expect("server shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_connect_disabled_answers_like_consul() {
    let mut config = AgentConfig::dev_any_port();
    config.connect.enabled = false;
    let server = Agent::start(config).await.expect("server");
    server.wait_for_leader(Duration::from_secs(10)).await.expect("leader");
    let s = api(&server);
    for path in ["/v1/connect/ca/roots", "/v1/agent/connect/ca/roots", "/v1/agent/connect/ca/leaf/web"] {
        let r = s.get(path).await.expect("get");
        assert_eq!(r.status, 500, "{path}");
        assert!(r.text().contains("Connect must be enabled in order to use this endpoint"), "{path}: {}", r.text());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!server.consensus().expect("server").state().read(|d| d.connect_ca.initialized()), "no CA is made");
    server.shutdown().await.expect("shutdown");
}
