//! `consul-rs tls ca create` and `tls cert create` as a process, in temporary directories: file
//! names and modes, Consul's output and errors, and the certificates' contents (subject, SANs,
//! key usages, basic constraints), with `openssl verify` proving each leaf chains to its CA.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output};

use consul_tests::process::{binary, stdout};
use x509_parser::prelude::{FromDer as _, GeneralName, ParsedExtension, X509Certificate};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `consul-rs tls <args>` in `dir`.
fn tls(dir: &Path, args: &[&str]) -> Output {
    Command::new(binary()).arg("tls").args(args).current_dir(dir).output().expect("run consul-rs")
}

/// Runs it and insists on success.
fn tls_ok(dir: &Path, args: &[&str]) -> String {
    let o = tls(dir, args);
    assert!(o.status.success(), "tls {args:?}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

/// Runs it, insists on exit status 1, and returns stderr.
fn tls_err(dir: &Path, args: &[&str]) -> String {
    let o = tls(dir, args);
    assert_eq!(o.status.code(), Some(1), "tls {args:?}: {}{}", stdout(&o), stderr(&o));
    stderr(&o)
}

/// The DER of the first PEM block of a file.
fn pem_der(path: &Path) -> Vec<u8> {
    use base64::Engine as _;
    let text = std::fs::read_to_string(path).expect("read pem");
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).expect("base64")
}

/// What the tests look at in a certificate.
#[derive(Debug)]
struct CertFacts {
    subject: String,
    subject_raw: Vec<u8>,
    issuer_raw: Vec<u8>,
    is_ca: Option<bool>,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    server_auth: bool,
    client_auth: bool,
    has_eku: bool,
    ski: Vec<u8>,
    aki: Vec<u8>,
    permitted: Vec<String>,
}

fn facts(path: &Path) -> CertFacts {
    let der = pem_der(path);
    let (_, cert) = X509Certificate::from_der(&der).expect("x509");
    let mut f = CertFacts {
        subject: cert.subject().to_string(),
        subject_raw: cert.subject().as_raw().to_vec(),
        issuer_raw: cert.issuer().as_raw().to_vec(),
        is_ca: cert.basic_constraints().expect("bc").map(|b| b.value.ca),
        dns: Vec::new(),
        ips: Vec::new(),
        server_auth: false,
        client_auth: false,
        has_eku: false,
        ski: Vec::new(),
        aki: Vec::new(),
        permitted: Vec::new(),
    };
    for ext in cert.iter_extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => f.dns.push((*d).to_string()),
                        GeneralName::IPAddress(b) => f.ips.push(match b.len() {
                            4 => IpAddr::from(<[u8; 4]>::try_from(*b).expect("v4")),
                            _ => IpAddr::from(<[u8; 16]>::try_from(*b).expect("v6")),
                        }),
                        _ => {}
                    }
                }
            }
            ParsedExtension::ExtendedKeyUsage(e) => {
                f.has_eku = true;
                f.server_auth = e.server_auth;
                f.client_auth = e.client_auth;
            }
            ParsedExtension::SubjectKeyIdentifier(k) => f.ski = k.0.to_vec(),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                f.aki = a.key_identifier.as_ref().map(|k| k.0.to_vec()).unwrap_or_default();
            }
            ParsedExtension::NameConstraints(nc) => {
                for s in nc.permitted_subtrees.iter().flatten() {
                    if let GeneralName::DNSName(d) = s.base {
                        f.permitted.push(d.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    f
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// `openssl verify -CAfile ca leaf`, when openssl is installed (`None` otherwise).
fn openssl_verify(dir: &Path, ca: &str, leaf: &str) -> Option<bool> {
    let o = Command::new("openssl").args(["verify", "-CAfile", ca, leaf]).current_dir(dir).output().ok()?;
    Some(o.status.success())
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

#[test]
fn ca_and_certificates_as_consul_makes_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();

    // The CA.
    assert_eq!(tls_ok(d, &["ca", "create"]), "==> Saved consul-agent-ca.pem\n==> Saved consul-agent-ca-key.pem\n");
    let before = std::fs::read(d.join("consul-agent-ca-key.pem")).expect("key");
    assert_eq!(tls_err(d, &["ca", "create"]), "consul-agent-ca.pem already exists.\n");
    assert_eq!(std::fs::read(d.join("consul-agent-ca-key.pem")).expect("key"), before, "not overwritten");
    assert!(before.starts_with(b"-----BEGIN EC PRIVATE KEY-----\n"));
    let ca = facts(&d.join("consul-agent-ca.pem"));
    assert_eq!(ca.is_ca, Some(true));
    assert_eq!(ca.subject_raw, ca.issuer_raw, "self-signed");
    assert!(ca.subject.starts_with("C=US, ST=CA, L=San Francisco, "), "{}", ca.subject);
    assert!(ca.subject.contains(", O=HashiCorp Inc., CN=Consul Agent CA "), "{}", ca.subject);
    assert_eq!(ca.ski.len(), 32, "SHA-256 key identifier");
    assert_eq!(ca.aki, ca.ski);
    assert!(ca.permitted.is_empty());

    // Server, client and CLI certificates.
    let out = tls_ok(
        d,
        &[
            "cert",
            "create",
            "-server",
            "-node",
            "n1",
            "-additional-dnsname=extra.example",
            "-additional-ipaddress",
            "10.0.0.9",
        ],
    );
    assert!(out.starts_with("==> WARNING: Server Certificates grants authority to become a\n"), "{out}");
    assert!(out.ends_with(
        "==> Using consul-agent-ca.pem and consul-agent-ca-key.pem\n==> Saved dc1-server-consul-0.pem\n\
         ==> Saved dc1-server-consul-0-key.pem\n"
    ));
    let out = tls_ok(d, &["cert", "create", "-client"]);
    assert_eq!(
        out,
        "==> Using consul-agent-ca.pem and consul-agent-ca-key.pem\n==> Saved dc1-client-consul-0.pem\n\
         ==> Saved dc1-client-consul-0-key.pem\n"
    );
    tls_ok(d, &["cert", "create", "-cli"]);
    // The index moves to the first free number.
    assert!(tls_ok(d, &["cert", "create", "-server"]).contains("==> Saved dc1-server-consul-1.pem\n"));
    assert!(tls_ok(d, &["cert", "create", "-server", "-dc", "dc2"]).contains("==> Saved dc2-server-consul-0.pem\n"));

    let localhost: IpAddr = "127.0.0.1".parse().expect("ip");
    let server = facts(&d.join("dc1-server-consul-0.pem"));
    assert_eq!(server.subject, "CN=server.dc1.consul");
    assert_eq!(server.dns, strings(&["extra.example", "n1.server.dc1.consul", "server.dc1.consul", "localhost"]));
    assert_eq!(server.ips, vec!["10.0.0.9".parse::<IpAddr>().expect("ip"), localhost]);
    assert!(server.server_auth && server.client_auth);
    let client = facts(&d.join("dc1-client-consul-0.pem"));
    assert_eq!(client.subject, "CN=client.dc1.consul");
    assert_eq!(client.dns, strings(&["client.dc1.consul", "localhost"]));
    assert_eq!(client.ips, vec![localhost]);
    assert!(client.server_auth && client.client_auth);
    let cli = facts(&d.join("dc1-cli-consul-0.pem"));
    assert_eq!(cli.subject, "CN=cli.dc1.consul");
    assert_eq!(cli.dns, strings(&["cli.dc1.consul", "localhost"]));
    assert!(cli.ips.is_empty());
    assert!(!cli.has_eku, "Consul's CLI certificates carry no extended key usage");
    for leaf in [&server, &client, &cli] {
        assert_eq!(leaf.is_ca, Some(false));
        assert_eq!(leaf.issuer_raw, ca.subject_raw);
        assert_eq!(leaf.aki, ca.ski);
        assert_eq!(leaf.ski.len(), 32);
    }
    for leaf in
        ["dc1-server-consul-0.pem", "dc1-client-consul-0.pem", "dc1-cli-consul-0.pem", "dc2-server-consul-0.pem"]
    {
        if let Some(ok) = openssl_verify(d, "consul-agent-ca.pem", leaf) {
            assert!(ok, "{leaf} does not chain to the CA");
        }
    }
    #[cfg(unix)]
    for (file, want) in [
        ("consul-agent-ca-key.pem", 0o600),
        ("dc1-server-consul-0-key.pem", 0o600),
        ("dc1-client-consul-0-key.pem", 0o600),
        ("dc1-cli-consul-0-key.pem", 0o600),
    ] {
        assert_eq!(mode(&d.join(file)), want, "{file}");
    }
    #[cfg(unix)]
    for cert in ["consul-agent-ca.pem", "dc1-server-consul-0.pem"] {
        assert_eq!(mode(&d.join(cert)) & 0o600, 0o600, "{cert}: readable and writable by its owner");
        assert_eq!(mode(&d.join(cert)) & 0o111, 0, "{cert}: not executable");
    }
}

#[test]
fn name_constrained_ca_and_other_domains() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    tls_ok(
        d,
        &[
            "ca",
            "create",
            "-domain",
            "example",
            "-name-constraint",
            "-additional-name-constraint=ui.example.org",
            "-days=30",
        ],
    );
    assert_eq!(names(d), strings(&["example-agent-ca-key.pem", "example-agent-ca.pem"]));
    let ca = facts(&d.join("example-agent-ca.pem"));
    assert_eq!(ca.permitted, strings(&["ui.example.org", "example", "localhost"]));

    // -domain picks the CA files and the names.
    tls_ok(d, &["cert", "create", "-server", "-domain", "example", "-additional-dnsname", "ui.example.org"]);
    let server = facts(&d.join("dc1-server-example-0.pem"));
    assert_eq!(server.dns, strings(&["ui.example.org", "server.dc1.example", "localhost"]));
    if let Some(ok) = openssl_verify(d, "example-agent-ca.pem", "dc1-server-example-0.pem") {
        assert!(ok);
    }
    // A name outside the constraints is refused, and nothing is written.
    let err = tls_err(d, &["cert", "create", "-client", "-domain", "example", "-additional-dnsname", "x.other"]);
    assert_eq!(
        err,
        "x509: a root or intermediate certificate is not authorized to sign for this name: \
         DNS name \"x.other\" is not permitted by any constraint\n"
    );
    assert!(!d.join("dc1-client-example-0.pem").exists());
}

#[test]
fn errors_write_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    assert_eq!(
        tls_err(d, &["cert", "create", "-server"]),
        "Error reading CA: open consul-agent-ca.pem: no such file or directory\n"
    );
    assert!(names(d).is_empty());
    tls_ok(d, &["ca", "create"]);
    for (args, want) in [
        (&["cert", "create"][..], "Please provide either -server, -client, or -cli\n"),
        (&["cert", "create", "-server", "-cli"][..], "Please provide either -server, -client, or -cli\n"),
        (&["cert", "create", "-client", "-node", "n1"][..], "-node requires -server\n"),
        (
            &["cert", "create", "-client", "-ca", "missing.pem"][..],
            "Error reading CA: open missing.pem: no such file or directory\n",
        ),
        (
            &["cert", "create", "-client", "-key", "consul-agent-ca.pem"][..],
            "unknown PEM block type for signing key: CERTIFICATE\n",
        ),
    ] {
        assert_eq!(tls_err(d, args), want, "{args:?}");
    }
    let err = tls_err(d, &["cert", "create", "-client", "-days", "0"]);
    assert!(err.starts_with("x509: certificate has expired or is not yet valid: current time "), "{err}");
    let err = tls_err(d, &["cert", "create", "-client", "-additional-ipaddress", "not-an-ip"]);
    assert!(err.contains("\"not-an-ip\""), "{err}");
    // Usage errors exit 1 too.
    tls_err(d, &["cert", "create", "-client", "-days", "x"]);
    tls_err(d, &["cert", "create", "-bogus"]);
    assert_eq!(names(d), strings(&["consul-agent-ca-key.pem", "consul-agent-ca.pem"]));
}
