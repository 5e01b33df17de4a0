//! The CLI over HTTPS: certificates made by `consul-rs tls ca create` / `tls cert create`, an
//! HTTPS-only `consul-rs agent -dev` with `verify_incoming`, and `consul-rs kv put/get` and
//! `members` reaching it through Consul's environment variables (`CONSUL_HTTP_ADDR=https://…`,
//! `CONSUL_HTTP_SSL`, `CONSUL_CACERT`, `CONSUL_CAPATH`, `CONSUL_CLIENT_CERT`,
//! `CONSUL_CLIENT_KEY`, `CONSUL_TLS_SERVER_NAME`, `CONSUL_HTTP_SSL_VERIFY`) and through the
//! flags (`-ca-file`, `-ca-path`, `-client-cert`, `-client-key`, `-tls-server-name`), which beat
//! the variables. Without a client certificate, with a foreign CA, or with unusable files the
//! CLI fails with status 1 and says why.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use consul_tests::free_port;
use consul_tests::process::{binary, stdout};

/// Every variable Consul's client reads: each command starts from none of them.
const CLIENT_ENV: &[&str] = &[
    "CONSUL_HTTP_ADDR",
    "CONSUL_HTTP_TOKEN",
    "CONSUL_HTTP_TOKEN_FILE",
    "CONSUL_HTTP_SSL",
    "CONSUL_HTTP_SSL_VERIFY",
    "CONSUL_CACERT",
    "CONSUL_CAPATH",
    "CONSUL_CLIENT_CERT",
    "CONSUL_CLIENT_KEY",
    "CONSUL_TLS_SERVER_NAME",
];

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A `consul-rs` command in `dir` with exactly `env` of the client variables.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(binary());
    c.args(args).current_dir(dir).stdin(Stdio::null());
    for k in CLIENT_ENV {
        c.env_remove(k);
    }
    c.envs(env.iter().copied());
    c.output().expect("run consul-rs")
}

fn ok(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let o = run(dir, args, env);
    assert!(o.status.success(), "{args:?} {env:?}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

/// Runs a command that must fail with status 1; its stderr.
fn fails(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let o = run(dir, args, env);
    assert_eq!(o.status.code(), Some(1), "{args:?} {env:?}: {}{}", stdout(&o), stderr(&o));
    stderr(&o)
}

/// An HTTPS-only dev agent, killed on drop.
struct HttpsAgent {
    child: Child,
    https: u16,
}

impl Drop for HttpsAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The files `consul-rs tls` makes in `dir`: a CA, a server certificate (SANs
/// `server.dc1.consul`, `localhost`, 127.0.0.1) and a CLI certificate.
fn make_pki(dir: &Path) {
    ok(dir, &["tls", "ca", "create"], &[]);
    ok(dir, &["tls", "cert", "create", "-server"], &[]);
    ok(dir, &["tls", "cert", "create", "-cli"], &[]);
    for f in ["consul-agent-ca.pem", "dc1-server-consul-0.pem", "dc1-cli-consul-0.pem", "dc1-cli-consul-0-key.pem"] {
        assert!(dir.join(f).exists(), "{f} made");
    }
}

fn start_agent(dir: &Path) -> HttpsAgent {
    let https = free_port();
    let config = dir.join("agent.hcl");
    std::fs::write(
        &config,
        format!(
            r#"ports {{
  http  = -1
  https = {https}
}}
tls {{
  defaults {{
    ca_file         = "consul-agent-ca.pem"
    cert_file       = "dc1-server-consul-0.pem"
    key_file        = "dc1-server-consul-0-key.pem"
    verify_incoming = true
  }}
}}
"#
        ),
    )
    .expect("write config");
    let child = Command::new(binary())
        .args(["agent", "-dev", "-client=127.0.0.1", "-bind=127.0.0.1", "-log-level=warn", "-node=tls-node"])
        .arg(format!("-serf-lan-port={}", free_port()))
        .arg(format!("-server-port={}", free_port()))
        .arg(format!("-dns-port={}", free_port()))
        .arg(format!("-config-file={}", config.display()))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn consul-rs agent");
    HttpsAgent { child, https }
}

/// Waits until `members` answers over HTTPS with `env`.
fn wait_ready(dir: &Path, env: &[(&str, &str)]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = run(dir, &["kv", "get", "-recurse", "ready/"], env);
        if o.status.success() {
            return;
        }
        assert!(Instant::now() < deadline, "agent not ready over HTTPS: {}", stderr(&o));
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn path(dir: &Path, f: &str) -> String {
    dir.join(f).to_string_lossy().into_owned()
}

#[test]
fn cli_over_https_with_client_certificates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    make_pki(dir);
    let agent = start_agent(dir);
    let addr = format!("https://127.0.0.1:{}", agent.https);
    let (ca, cert, key) =
        (path(dir, "consul-agent-ca.pem"), path(dir, "dc1-cli-consul-0.pem"), path(dir, "dc1-cli-consul-0-key.pem"));

    // 1. The environment, as Consul's docs set it up.
    let env: Vec<(&str, &str)> = vec![
        ("CONSUL_HTTP_ADDR", &addr),
        ("CONSUL_CACERT", &ca),
        ("CONSUL_CLIENT_CERT", &cert),
        ("CONSUL_CLIENT_KEY", &key),
    ];
    wait_ready(dir, &env);
    assert_eq!(ok(dir, &["kv", "put", "tls/a", "hello"], &env).trim(), "Success! Data written to: tls/a");
    assert_eq!(ok(dir, &["kv", "get", "tls/a"], &env).trim(), "hello");
    let members = ok(dir, &["members"], &env);
    assert!(members.contains("tls-node") && members.contains("alive"), "{members}");

    // CONSUL_HTTP_SSL=true makes a bare host:port HTTPS; CONSUL_CAPATH is a directory of CAs;
    // CONSUL_TLS_SERVER_NAME is checked instead of the host (the certificate names
    // server.dc1.consul, not "127.0.0.2"'s host); CONSUL_HTTP_SSL_VERIFY=false needs no CA.
    let bare = format!("127.0.0.1:{}", agent.https);
    let ca_dir = dir.join("cas");
    std::fs::create_dir(&ca_dir).expect("mkdir");
    std::fs::copy(&ca, ca_dir.join("consul-agent-ca.pem")).expect("copy");
    let ca_dir = ca_dir.to_string_lossy().into_owned();
    let ssl: Vec<(&str, &str)> = vec![
        ("CONSUL_HTTP_ADDR", &bare),
        ("CONSUL_HTTP_SSL", "true"),
        ("CONSUL_CAPATH", &ca_dir),
        ("CONSUL_CLIENT_CERT", &cert),
        ("CONSUL_CLIENT_KEY", &key),
    ];
    assert_eq!(ok(dir, &["kv", "get", "tls/a"], &ssl).trim(), "hello");
    let mut named = env.clone();
    named.push(("CONSUL_TLS_SERVER_NAME", "server.dc1.consul"));
    assert_eq!(ok(dir, &["kv", "get", "tls/a"], &named).trim(), "hello");
    named.pop();
    named.push(("CONSUL_TLS_SERVER_NAME", "other.dc1.consul"));
    let e = fails(dir, &["kv", "get", "tls/a"], &named);
    assert!(e.contains("not valid for name \"other.dc1.consul\""), "{e}");
    let skip: Vec<(&str, &str)> = vec![
        ("CONSUL_HTTP_ADDR", &addr),
        ("CONSUL_HTTP_SSL_VERIFY", "false"),
        ("CONSUL_CLIENT_CERT", &cert),
        ("CONSUL_CLIENT_KEY", &key),
    ];
    assert_eq!(ok(dir, &["kv", "get", "tls/a"], &skip).trim(), "hello");

    // 2. The flags, with no environment at all.
    let flags = ["-http-addr", &addr, "-ca-file", &ca, "-client-cert", &cert, "-client-key", &key];
    let with = |cmd: &[&str], tail: &[&str]| -> Vec<String> {
        cmd.iter().chain(flags.iter()).chain(tail.iter()).map(|s| s.to_string()).collect()
    };
    let args = with(&["kv", "put"], &["tls/b", "world"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(ok(dir, &args, &[]).trim(), "Success! Data written to: tls/b");
    let args = with(&["kv", "get"], &["tls/b"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(ok(dir, &args, &[]).trim(), "world");
    let args = with(&["members"], &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(ok(dir, &args, &[]).contains("tls-node"));
    let localhost = format!("https://localhost:{}", agent.https);
    let args = [
        "kv",
        "get",
        "-http-addr",
        &localhost,
        "-ca-path",
        &ca_dir,
        "-client-cert",
        &cert,
        "-client-key",
        &key,
        "-tls-server-name=server.dc1.consul",
        "tls/b",
    ];
    assert_eq!(ok(dir, &args, &[]).trim(), "world");

    // Flags beat the environment: a wrong CA and no certificate in the environment, the right
    // ones on the command line.
    let other = tempfile::tempdir().expect("tempdir");
    ok(other.path(), &["tls", "ca", "create"], &[]);
    let wrong_ca = path(other.path(), "consul-agent-ca.pem");
    let bad_env: Vec<(&str, &str)> = vec![("CONSUL_HTTP_ADDR", "127.0.0.1:1"), ("CONSUL_CACERT", &wrong_ca)];
    let args = with(&["kv", "get"], &["tls/a"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(ok(dir, &args, &bad_env).trim(), "hello");

    // 3. Failures: status 1 and a message that says why.
    let no_cert: Vec<(&str, &str)> = vec![("CONSUL_HTTP_ADDR", &addr), ("CONSUL_CACERT", &ca)];
    let e = fails(dir, &["kv", "get", "tls/a"], &no_cert);
    assert!(e.contains("CertificateRequired") && e.contains("client certificate"), "{e}");
    let e = fails(dir, &["members"], &no_cert);
    assert!(e.starts_with("Error retrieving members: ") && e.contains("client certificate"), "{e}");

    let foreign: Vec<(&str, &str)> = vec![
        ("CONSUL_HTTP_ADDR", &addr),
        ("CONSUL_CACERT", &wrong_ca),
        ("CONSUL_CLIENT_CERT", &cert),
        ("CONSUL_CLIENT_KEY", &key),
    ];
    let e = fails(dir, &["kv", "get", "tls/a"], &foreign);
    assert!(e.contains("certificate signed by unknown authority"), "{e}");
    let e = fails(dir, &["kv", "put", "-ca-file", &wrong_ca, "tls/c", "x"], &env);
    assert!(e.contains("certificate signed by unknown authority"), "{e}");

    let missing = path(dir, "missing-ca.pem");
    let e = fails(dir, &["kv", "get", "-ca-file", &missing, "tls/a"], &env);
    assert_eq!(
        e.trim(),
        format!("Error connecting to Consul agent: Error loading CA File: open {missing}: no such file or directory")
    );
    let e = fails(dir, &["members", "-client-key="], &[("CONSUL_HTTP_ADDR", &addr), ("CONSUL_CLIENT_CERT", &cert)]);
    assert_eq!(e.trim(), "Error connecting to Consul agent: both client cert and client key must be provided");
    let e = fails(dir, &["kv", "get", "-client-key", &ca, "tls/a"], &env);
    assert!(e.starts_with("Error connecting to Consul agent: Error loading client key") && e.contains(&ca), "{e}");

    // Plain HTTP to the HTTPS port is refused, with a hint.
    let plain = format!("http://127.0.0.1:{}", agent.https);
    let e = fails(dir, &["kv", "get", "-http-addr", &plain, "tls/a"], &[]);
    assert!(e.contains("serving HTTPS"), "{e}");
    // ...and an address scheme Consul does not know is refused before any request.
    let e = fails(dir, &["kv", "get", "-http-addr", "ftp://127.0.0.1:1", "tls/a"], &[]);
    assert_eq!(e.trim(), "Error connecting to Consul agent: Unknown protocol scheme: ftp");
    drop(agent);
}

/// The TLS flags are client flags: every command with `-http-addr` takes them.
#[test]
fn every_client_command_takes_the_tls_flags() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = path(tmp.path(), "nope.pem");
    let ca_flag = format!("-ca-file={missing}");
    for cmd in [
        &["kv", "get", "k"][..],
        &["kv", "put", "k", "v"],
        &["members"],
        &["info"],
        &["catalog", "services"],
        &["operator", "raft", "list-peers"],
        &["acl", "token", "list"],
        &["snapshot", "save", "s.snap"],
        &["event", "-name=x"],
    ] {
        let mut args: Vec<&str> = cmd.to_vec();
        // Go's flag parsing stops at the first positional: the flag goes right after the
        // command words.
        let at = args.iter().position(|a| *a == "k" || *a == "s.snap" || a.starts_with('-')).unwrap_or(args.len());
        args.insert(at, &ca_flag);
        let e = fails(tmp.path(), &args, &[("CONSUL_HTTP_ADDR", "127.0.0.1:1")]);
        assert!(e.contains(&format!("Error loading CA File: open {missing}")), "{cmd:?}: {e}");
    }
}
