//! The SDK's client against an HTTPS-only embedded agent with `verify_incoming`: CA and client
//! certificate, a foreign CA, no client certificate, a server name, skipped verification, and
//! the embedded agent's own client.

use std::path::{Path, PathBuf};
use std::time::Duration;

use consul_core::tls::{TlsConfig, TlsLayer};
use consul_sdk::agent::{AgentConfig, Ports};
use consul_sdk::runtime::block_on;
use consul_sdk::{Client, ClientConfig, EmbeddedAgent, ErrorCode, PutOptions, QueryOptions};

/// A CA and the certificates it signs, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tmp");
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("CA");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write");
        Pki { dir, issuer: rcgen::Issuer::new(params, key) }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `(cert, key)` for `names`, usable by servers and clients (as Consul's server certs are).
    fn leaf(&self, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let (c, k) = (self.dir.path().join(format!("{name}.pem")), self.dir.path().join(format!("{name}-key.pem")));
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        (c, k)
    }
}

fn s(p: &Path) -> Option<String> {
    Some(p.to_string_lossy().into_owned())
}

/// An HTTPS-only dev agent requiring client certificates of `pki`.
fn https_agent(pki: &Pki) -> EmbeddedAgent {
    let (cert, key) = pki.leaf("server", &["server.dc1.consul", "localhost", "127.0.0.1"]);
    let mut config = AgentConfig::dev_any_port();
    config.ports = Ports { http: None, https: Some(0), ..Ports::any() };
    config.tls = TlsConfig {
        defaults: TlsLayer {
            ca_file: Some(pki.ca()),
            cert_file: Some(cert),
            key_file: Some(key),
            verify_incoming: Some(true),
            ..TlsLayer::default()
        },
        ..TlsConfig::default()
    };
    let agent = EmbeddedAgent::start(config).expect("start");
    agent.wait_for_leader(Duration::from_secs(10)).expect("leader");
    agent
}

/// A KV round trip, or the error of its first call.
fn round_trip(c: Client) -> consul_sdk::Result<String> {
    block_on(async move {
        c.kv_put("tls/k", "v", &PutOptions::default()).await?;
        let (_, pair) = c.kv_get("tls/k", &QueryOptions::default()).await?;
        Ok(String::from_utf8_lossy(&pair.and_then(|p| p.value).unwrap_or_default()).into_owned())
    })
    .expect("runtime")
}

#[test]
fn https_only_agent_with_client_certificates() {
    let pki = Pki::new();
    let mut agent = https_agent(&pki);
    let (cert, key) = pki.leaf("cli", &["cli.dc1.consul"]);
    let base = ClientConfig {
        address: format!("https://{}", agent.http_addr()),
        ca_file: s(&pki.ca()),
        client_cert: s(&cert),
        client_key: s(&key),
        timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    assert_eq!(round_trip(Client::new(base.clone()).expect("client")).expect("mutual TLS"), "v");

    // A bare host:port with `https` (CONSUL_HTTP_SSL) and the CA given as a directory.
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::copy(pki.ca(), dir.path().join("consul-agent-ca.pem")).expect("copy");
    let bare = ClientConfig {
        address: agent.http_addr().to_string(),
        https: Some(true),
        ca_file: None,
        ca_path: s(dir.path()),
        ..base.clone()
    };
    assert_eq!(round_trip(Client::new(bare).expect("client")).expect("ca_path"), "v");

    // The server name is what is verified: a name the certificate lacks fails, one it has
    // passes (with a port, which is dropped).
    let wrong = ClientConfig { tls_server_name: Some("other.dc1.consul".into()), ..base.clone() };
    let e = round_trip(Client::new(wrong).expect("client")).expect_err("wrong name");
    assert!(e.message.contains("certificate"), "{}", e.message);
    let named = ClientConfig { tls_server_name: Some("server.dc1.consul:8501".into()), ..base.clone() };
    assert_eq!(round_trip(Client::new(named).expect("client")).expect("server name"), "v");

    // Without a client certificate the agent refuses the connection.
    let anonymous = ClientConfig { client_cert: None, client_key: None, ..base.clone() };
    let e = round_trip(Client::new(anonymous).expect("client")).expect_err("no client cert");
    assert_eq!(e.code, ErrorCode::Connection, "{}", e.message);
    assert!(e.message.contains(&format!("https://{}", agent.http_addr())), "{}", e.message);
    assert!(e.message.contains("client certificate"), "{}", e.message);

    // Skipping verification needs no CA (the client certificate is still required).
    let skip = ClientConfig { ca_file: None, insecure_skip_verify: true, ..base.clone() };
    assert_eq!(round_trip(Client::new(skip).expect("client")).expect("skip verify"), "v");

    // Plain HTTP to the HTTPS port is no answer.
    let plain = ClientConfig { address: format!("http://{}", agent.http_addr()), https: Some(false), ..base };
    assert!(round_trip(Client::new(plain).expect("client")).is_err());

    // The embedded agent's own client speaks HTTPS with the agent's CA and certificate.
    assert_eq!(round_trip(agent.client().expect("own client")).expect("own client"), "v");
    assert_eq!(agent.members().expect("members").len(), 1);
    agent.shutdown().expect("shutdown");
}

#[test]
fn untrusted_ca_is_a_clear_error() {
    let pki = Pki::new();
    let mut agent = https_agent(&pki);
    let other = Pki::new();
    let (cert, key) = pki.leaf("cli", &["cli.dc1.consul"]);
    let c = Client::new(ClientConfig {
        address: format!("https://{}", agent.http_addr()),
        ca_file: s(&other.ca()),
        client_cert: s(&cert),
        client_key: s(&key),
        timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    })
    .expect("client");
    let e = round_trip(c).expect_err("foreign CA");
    assert_eq!(e.code, ErrorCode::Connection);
    assert!(e.message.contains("certificate signed by unknown authority"), "{}", e.message);

    // An unusable CA file is refused when the client is made, naming the file.
    let missing = pki.dir.path().join("nope.pem");
    let e = Client::new(ClientConfig {
        address: format!("https://{}", agent.http_addr()),
        ca_file: s(&missing),
        ..ClientConfig::default()
    })
    .expect_err("missing CA file");
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    assert_eq!(e.message, format!("Error loading CA File: open {}: no such file or directory", missing.display()));
    agent.shutdown().expect("shutdown");
}
