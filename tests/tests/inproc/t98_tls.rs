//! TLS: servers replicating and forwarding over mutual TLS with hostname verification, client
//! agents with and without certificates, an expired and a foreign certificate refused, rotation
//! by reload, and an HTTPS-only agent with `verify_incoming`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use consul_core::agent::Agent;
use consul_core::config::{AgentConfig, Ports};
use consul_core::gossip::GossipConfig;
use consul_core::tls::{TlsConfig, TlsLayer};
use consul_tests::client::Api;
use consul_tests::inproc::{Cluster, Options};
use consul_tests::{eventually, free_port};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA and the certificates it signs, as PEM files in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
    ca_file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

#[derive(Clone)]
struct Leaf {
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("CA");
        let ca_file = dir.path().join(format!("{name}-agent-ca.pem"));
        std::fs::write(&ca_file, cert.pem()).expect("write CA");
        Pki { dir, ca_file, issuer: Issuer::new(params, key) }
    }

    /// A certificate for `names` (and 127.0.0.1), valid from `from_h` to `to_h` hours from now.
    fn leaf_valid(&self, file: &str, names: &[&str], from_h: i64, to_h: i64) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::hours(from_h);
        params.not_after = now + time::Duration::hours(to_h);
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let leaf = Leaf {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}-key.pem")),
        };
        std::fs::write(&leaf.cert, cert.pem()).expect("write cert");
        std::fs::write(&leaf.key, key.serialize_pem()).expect("write key");
        leaf
    }

    fn leaf(&self, file: &str, names: &[&str]) -> Leaf {
        self.leaf_valid(file, names, -1, 24)
    }
}

/// Consul's recommended production setting: every connection mutual TLS, servers' names checked.
fn strict(ca: &Path, leaf: &Leaf) -> TlsConfig {
    TlsConfig {
        defaults: TlsLayer {
            ca_file: Some(ca.to_path_buf()),
            cert_file: Some(leaf.cert.clone()),
            key_file: Some(leaf.key.clone()),
            verify_incoming: Some(true),
            verify_outgoing: Some(true),
            ..TlsLayer::default()
        },
        internal_rpc: TlsLayer { verify_server_hostname: Some(true), ..TlsLayer::default() },
        ..TlsConfig::default()
    }
}

fn client_config(name: &str, join: SocketAddr, dir: &Path, tls: TlsConfig) -> AgentConfig {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    AgentConfig {
        node_name: name.into(),
        server: false,
        data_dir: Some(dir.to_path_buf()),
        bind_addr: lo,
        client_addr: lo,
        ports: Ports::any(),
        retry_join: vec![join.to_string()],
        retry_interval: Duration::from_millis(200),
        gossip_lan: GossipConfig::dev(),
        tls,
        ..AgentConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_and_clients_speak_mutual_tls() {
    let pki = Pki::new("consul");
    let server = pki.leaf("dc1-server-consul-0", &["server.dc1.consul", "localhost"]);
    let opts = Options { tls: Some(strict(&pki.ca_file, &server)), ..Options::default() };
    let c = Cluster::start_with(3, opts).await;

    // Raft formed over TLS; a write sent to a follower is forwarded to the leader over TLS.
    let follower = c.followers().await[0];
    c.api(follower).put_ok("tls/a", "1").await;
    let leader = c.leader().await;
    let r = c.api(leader).kv_get("tls/a", "?consistent&raw").await.expect("read");
    assert_eq!((r.status, r.text()), (200, "1".to_string()));
    let join = c.agent(0).serf_addr();

    // A client agent without TLS: gossip is plaintext (it joins the pool), but the servers
    // refuse its plaintext RPC, so nothing is read or written through them.
    let dir = tempfile::tempdir().expect("tempdir");
    let bare = Agent::start(client_config("bare", join, dir.path(), TlsConfig::default())).await.expect("start");
    let api = Api::new(bare.http_addr());
    eventually(Duration::from_secs(20), "the client joins the pool", || async {
        let n = api.get("/v1/agent/members").await.ok()?.json().as_array()?.len();
        (n == 4).then_some(())
    })
    .await;
    let r = api.kv_get("tls/a", "?raw").await.expect("answered");
    assert!(r.status >= 500, "a certificate-less client must not read through the servers: {} {}", r.status, r.text());
    assert!(r.text().contains("requires TLS"), "says why: {}", r.text());
    bare.shutdown().await.expect("shutdown");

    // A client agent with a client certificate of the same CA works...
    let client = pki.leaf("dc1-client-consul-0", &["client.dc1.consul", "localhost"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let good =
        Agent::start(client_config("good", join, dir.path(), strict(&pki.ca_file, &client))).await.expect("start");
    good.wait_for_leader(Duration::from_secs(20)).await.expect("reaches a leader over TLS");
    let r = Api::new(good.http_addr()).kv_get("tls/a", "?raw").await.expect("read");
    assert_eq!((r.status, r.text()), (200, "1".to_string()));
    good.shutdown().await.expect("shutdown");

    // ...one with an expired certificate does not, until its files are rotated and reloaded.
    let expired = pki.leaf_valid("dc1-client-consul-1", &["client.dc1.consul"], -48, -1);
    let dir = tempfile::tempdir().expect("tempdir");
    let old =
        Agent::start(client_config("old", join, dir.path(), strict(&pki.ca_file, &expired))).await.expect("start");
    let api = Api::new(old.http_addr());
    let r = api.kv_get("tls/a", "?raw").await.expect("answered");
    assert!(r.status >= 500, "an expired certificate must be refused: {} {}", r.status, r.text());
    let fresh = pki.leaf("fresh", &["client.dc1.consul"]);
    std::fs::copy(&fresh.cert, &expired.cert).expect("rotate cert");
    std::fs::copy(&fresh.key, &expired.key).expect("rotate key");
    let r = api.request(reqwest::Method::PUT, "/v1/agent/reload", None).await.expect("reload");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = api.kv_get("tls/a", "?raw").await.expect("read");
    assert_eq!((r.status, r.text()), (200, "1".to_string()), "the rotated certificate is used");
    old.shutdown().await.expect("shutdown");

    // A client certificate of another CA is refused too.
    let other = Pki::new("other");
    let foreign = other.leaf("foreign", &["client.dc1.consul"]);
    let mut tls = strict(&pki.ca_file, &foreign);
    tls.defaults.ca_file = Some(pki.ca_file.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let stranger = Agent::start(client_config("stranger", join, dir.path(), tls)).await.expect("start");
    let r = Api::new(stranger.http_addr()).kv_get("tls/a", "?raw").await.expect("answered");
    assert!(r.status >= 500, "another CA's certificate must be refused: {} {}", r.status, r.text());
    stranger.shutdown().await.expect("shutdown");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_cannot_pose_as_a_server() {
    // Every agent holds a certificate of the same CA, but the servers' names are checked: a
    // server presenting a client certificate cannot take part in Raft.
    let pki = Pki::new("consul");
    let server = pki.leaf("dc1-server-consul-0", &["server.dc1.consul"]);
    let c = Cluster::start_with(1, Options { tls: Some(strict(&pki.ca_file, &server)), ..Options::default() }).await;
    c.api(0).put_ok("k", "v").await;
    let client_cert = pki.leaf("dc1-client-consul-0", &["client.dc1.consul"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let impostor = Agent::start(AgentConfig {
        server: true,
        tls: strict(&pki.ca_file, &client_cert),
        ..client_config("impostor", c.agent(0).serf_addr(), dir.path(), TlsConfig::default())
    })
    .await
    .expect("start");
    // The leader adds it as a learner and replicates to it: the TLS connection from the leader
    // fails the name check, so it never catches up and is never promoted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let peers = c.api(0).get("/v1/status/peers").await.expect("peers").json();
    assert_eq!(peers.as_array().map(Vec::len), Some(1), "the impostor is not a voter: {peers}");
    let r = Api::new(impostor.http_addr()).kv_get("k", "?raw").await.expect("answered");
    assert_ne!((r.status, r.text()), (200, "v".to_string()), "it holds none of the data");
    impostor.shutdown().await.expect("shutdown");
    c.shutdown().await;
}

/// One HTTPS/1.1 request over rustls; the status code and body, or the error.
async fn https_get(addr: SocketAddr, path: &str, ca: &Path, client: Option<&Leaf>) -> Result<(u16, String), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
        roots.add(c.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match client {
        Some(l) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&l.cert)
                    .map_err(|e| e.to_string())?
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?,
                PrivateKeyDer::from_pem_file(&l.key).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut tls =
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| e.to_string())?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(format!("no HTTP answer: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_only_agent_requires_client_certificates() {
    let pki = Pki::new("consul");
    let server = pki.leaf("dc1-server-consul-0", &["server.dc1.consul", "localhost"]);
    let client = pki.leaf("dc1-cli-consul-0", &["cli.client.dc1.consul", "localhost"]);
    let mut config = AgentConfig::dev();
    config.ports = Ports { http: None, https: Some(free_port()), ..Ports::any() };
    config.tls = strict(&pki.ca_file, &server);
    let agent = Agent::start(config).await.expect("an HTTPS-only agent starts");
    agent.wait_for_leader(Duration::from_secs(20)).await.expect("leader");
    let addr = agent.https_addr().expect("HTTPS on");
    assert_eq!(agent.http_addr(), addr, "with HTTP off, the API address is the HTTPS one");

    let (status, body) = https_get(addr, "/v1/status/leader", &pki.ca_file, Some(&client)).await.expect("mutual TLS");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(':'), "a leader address: {body}");

    let e = https_get(addr, "/v1/status/leader", &pki.ca_file, None).await.expect_err("no client certificate");
    assert!(!e.is_empty());

    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"), "plain HTTP was answered: {buf:?}");

    agent.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn half_configured_tls_refuses_to_start() {
    let pki = Pki::new("consul");
    let server = pki.leaf("s", &["server.dc1.consul"]);
    let mut config = AgentConfig::dev();
    config.ports = Ports::any();
    config.tls.defaults = TlsLayer { verify_incoming: Some(true), ..TlsLayer::default() };
    let e = Agent::start(config.clone()).await.expect_err("verify_incoming without a CA").to_string();
    assert!(e.contains("verify_incoming needs a CA"), "{e}");
    config.tls.defaults = TlsLayer {
        ca_file: Some(pki.ca_file.clone()),
        cert_file: Some(server.cert.clone()),
        key_file: Some(pki.dir.path().join("missing-key.pem")),
        ..TlsLayer::default()
    };
    let e = Agent::start(config).await.expect_err("a missing key file").to_string();
    assert!(e.contains("missing-key.pem"), "names the file: {e}");
}
