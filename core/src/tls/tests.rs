#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::testing::{Leaf, TestPki};
use super::*;

fn layer(pki: &TestPki, leaf: &Leaf) -> TlsLayer {
    TlsLayer {
        ca_file: Some(pki.ca_file.clone()),
        cert_file: Some(leaf.cert_file.clone()),
        key_file: Some(leaf.key_file.clone()),
        ..TlsLayer::default()
    }
}

/// Runs one handshake over an in-memory pipe; the client's or the server's error, if any.
async fn handshake(acceptor: TlsAcceptor, connector: TlsConnector, name: ServerName<'static>) -> Result<(), String> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move { acceptor.accept(a).await.map(|_| ()).map_err(|e| format!("server: {e}")) });
    // The client's stream stays open until the server is done (TLS 1.3 servers write tickets
    // after the client's last handshake message).
    let client = connector.connect(name, b).await.map_err(|e| format!("client: {e}"));
    let server = server.await.unwrap();
    client.map(drop).and(server)
}

fn server_agent(pki: &TestPki, leaf: &Leaf, verify_incoming: bool) -> Arc<AgentTls> {
    let cfg = TlsConfig {
        defaults: TlsLayer { verify_incoming: Some(verify_incoming), ..layer(pki, leaf) },
        ..TlsConfig::default()
    };
    AgentTls::load(&cfg, true, "dc1", "consul").unwrap().expect("TLS configured")
}

fn client_agent(pki_ca: &TestPki, leaf: Option<&Leaf>, verify_server_hostname: bool) -> Arc<AgentTls> {
    let mut l = TlsLayer { ca_file: Some(pki_ca.ca_file.clone()), verify_outgoing: Some(true), ..TlsLayer::default() };
    if let Some(leaf) = leaf {
        l.cert_file = Some(leaf.cert_file.clone());
        l.key_file = Some(leaf.key_file.clone());
    }
    l.verify_server_hostname = Some(verify_server_hostname);
    let cfg = TlsConfig { defaults: l, ..TlsConfig::default() };
    AgentTls::load(&cfg, false, "dc1", "consul").unwrap().expect("TLS configured")
}

async fn rpc_handshake(server: &AgentTls, client: &AgentTls) -> Result<(), String> {
    let (connector, name) = client.rpc_connector().expect("verify_outgoing");
    handshake(server.rpc_acceptor().expect("cert"), connector, name).await
}

#[tokio::test]
async fn nothing_configured_means_no_tls() {
    assert!(AgentTls::load(&TlsConfig::default(), false, "dc1", "consul").unwrap().is_none());
}

#[tokio::test]
async fn mutual_tls_with_hostname_verification() {
    let pki = TestPki::new("consul-agent");
    let server = pki.leaf("server", &["server.dc1.consul", "localhost"]);
    let client = pki.leaf("client", &["client.dc1.consul", "localhost"]);
    let s = server_agent(&pki, &server, true);
    assert_eq!(s.rpc_plaintext(), Plaintext::Refused);
    rpc_handshake(&s, &client_agent(&pki, Some(&client), true)).await.expect("valid certificates");

    let e = rpc_handshake(&s, &client_agent(&pki, None, true)).await.unwrap_err();
    assert!(e.contains("server:"), "a client without a certificate is refused by the server: {e}");

    // A client certificate cannot pose as a server when the name is checked...
    let impostor = server_agent(&pki, &client, true);
    let e = rpc_handshake(&impostor, &client_agent(&pki, Some(&client), true)).await.unwrap_err();
    assert!(e.contains("client:") && e.contains("not valid for name"), "{e}");
    // ...and can without the check (Consul's behaviour too).
    rpc_handshake(&impostor, &client_agent(&pki, Some(&client), false)).await.expect("chain only");
}

#[tokio::test]
async fn another_ca_and_expired_certificates_are_refused() {
    let pki = TestPki::new("consul-agent");
    let other = TestPki::new("other");
    let server = pki.leaf("server", &["server.dc1.consul"]);
    let s = server_agent(&pki, &server, true);

    let foreign = other.leaf("client", &["client.dc1.consul"]);
    let e = rpc_handshake(&s, &client_agent(&pki, Some(&foreign), false)).await.unwrap_err();
    assert!(e.contains("server:"), "a client signed by another CA: {e}");

    let expired = pki.expired_leaf("old", &["client.dc1.consul"]);
    let e = rpc_handshake(&s, &client_agent(&pki, Some(&expired), false)).await.unwrap_err();
    assert!(e.contains("server:"), "an expired client certificate: {e}");

    // The client side: a server signed by a CA the client does not trust.
    let client = pki.leaf("client", &["client.dc1.consul"]);
    let e = rpc_handshake(&s, &client_agent(&other, Some(&client), false)).await.unwrap_err();
    assert!(e.contains("client:"), "a server signed by an unknown CA: {e}");
}

#[tokio::test]
async fn https_without_verify_incoming_needs_no_client_certificate() {
    let pki = TestPki::new("consul-agent");
    let server = pki.leaf("server", &["server.dc1.consul", "localhost"]);
    let s = server_agent(&pki, &server, false);
    assert_eq!(s.rpc_plaintext(), Plaintext::Allowed);
    let c = client_agent(&pki, None, false);
    let (connector, _) = c.rpc_connector().unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    handshake(s.https_acceptor().expect("https on"), connector, name).await.expect("anonymous client");
}

#[tokio::test]
async fn reload_rotates_certificates_and_keeps_the_old_ones_on_error() {
    let pki = TestPki::new("consul-agent");
    let old_ca = TestPki::new("old");
    // The server starts with a certificate from a CA the client does not trust...
    let server = old_ca.leaf("server", &["server.dc1.consul"]);
    let cfg = TlsConfig {
        defaults: TlsLayer {
            ca_file: Some(pki.ca_file.clone()),
            cert_file: Some(server.cert_file.clone()),
            key_file: Some(server.key_file.clone()),
            ..TlsLayer::default()
        },
        ..TlsConfig::default()
    };
    let s = AgentTls::load(&cfg, true, "dc1", "consul").unwrap().unwrap();
    let c = client_agent(&pki, None, true);
    assert!(rpc_handshake(&s, &c).await.is_err());
    // ...then the files are replaced with one the client trusts, and the agent reloads.
    let fresh = pki.leaf("fresh", &["server.dc1.consul"]);
    std::fs::copy(&fresh.cert_file, &server.cert_file).unwrap();
    std::fs::copy(&fresh.key_file, &server.key_file).unwrap();
    s.reload().unwrap();
    rpc_handshake(&s, &c).await.expect("the rotated certificate");

    std::fs::write(&server.key_file, "not a key").unwrap();
    let e = s.reload().unwrap_err().to_string();
    assert!(e.contains(&server.key_file.display().to_string()), "names the file: {e}");
    rpc_handshake(&s, &c).await.expect("the previous configuration stays");
}

#[tokio::test]
async fn unusable_files_are_named() {
    let pki = TestPki::new("consul-agent");
    let leaf = pki.leaf("server", &["server.dc1.consul"]);
    let missing = pki.dir.path().join("missing.pem");
    let cfg = TlsConfig {
        defaults: TlsLayer { cert_file: Some(missing.clone()), ..layer(&pki, &leaf) },
        ..TlsConfig::default()
    };
    let e = AgentTls::load(&cfg, true, "dc1", "consul").unwrap_err().to_string();
    assert!(e.contains("missing.pem"), "{e}");
    let cfg = TlsConfig {
        defaults: TlsLayer { ca_file: Some(leaf.key_file.clone()), ..layer(&pki, &leaf) },
        https: TlsLayer { verify_incoming: Some(true), ..TlsLayer::default() },
        ..TlsConfig::default()
    };
    let e = AgentTls::load(&cfg, true, "dc1", "consul").unwrap_err().to_string();
    assert!(e.contains("server-key.pem") && e.contains("no PEM certificate"), "{e}");
}

#[tokio::test]
async fn cipher_suites_and_versions() {
    let pki = TestPki::new("consul-agent");
    let leaf = pki.leaf("server", &["server.dc1.consul"]);
    let cfg = TlsConfig {
        defaults: TlsLayer {
            cipher_suites: Some(vec!["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()]),
            min_version: Some(TlsVersion::Tls13),
            ..layer(&pki, &leaf)
        },
        ..TlsConfig::default()
    };
    assert!(AgentTls::load(&cfg, true, "dc1", "consul").is_ok());
    assert!(check_cipher_suite("TLS_RSA_WITH_AES_128_CBC_SHA").unwrap_err().contains("unsupported"));
}
