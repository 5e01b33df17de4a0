//! A 3-server TLS cluster of real `consul-rs` processes, with certificates made by the
//! project's own `consul-rs tls` commands: HTTPS only, `verify_incoming` and `verify_outgoing`
//! everywhere, servers' names checked. A write through a follower, a certificate-less client
//! agent refused, a foreign-CA and an expired certificate refused (and the refusal logged on
//! the server), and certificate rotation by SIGHUP. Requests go through `curl` with the CLI
//! certificate, as an operator's script would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use consul_tests::free_port;
use consul_tests::process::{binary, stdout};
use serde_json::{json, Value};

/// Runs `consul-rs tls <args>` in `dir`, insisting on success.
fn tls(dir: &Path, args: &[&str]) {
    let o = Command::new(binary()).arg("tls").args(args).current_dir(dir).output().expect("run consul-rs tls");
    assert!(o.status.success(), "tls {args:?}: {}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
}

/// An agent process with its config file and log, killed on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn start(dir: &Path, name: &str, config: Value) -> Proc {
        let cfg = dir.join(format!("{name}.json"));
        std::fs::write(&cfg, config.to_string()).expect("write config");
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(binary())
            .args(["agent", &format!("-config-file={}", cfg.display())])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn consul-rs agent");
        Proc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn hup(&self) {
        let ok = Command::new("kill").args(["-HUP", &self.child.id().to_string()]).status().expect("kill");
        assert!(ok.success());
    }
}

/// `curl` over HTTPS with the CLI certificate (or none); status code and body.
fn curl(pki: &Path, url: &str, method: &str, body: Option<&str>, client_cert: bool) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}", "-X", method]);
    cmd.arg("--cacert").arg(pki.join("consul-agent-ca.pem"));
    if client_cert {
        cmd.arg("--cert").arg(pki.join("dc1-cli-consul-0.pem")).arg("--key").arg(pki.join("dc1-cli-consul-0-key.pem"));
    }
    if let Some(b) = body {
        cmd.args(["--data-binary", b]);
    }
    let o = cmd.arg(url).output().expect("run curl");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tls_block(pki: &Path, cert: &str) -> Value {
    json!({
        "defaults": {
            "ca_file": pki.join("consul-agent-ca.pem"),
            "cert_file": pki.join(format!("{cert}.pem")),
            "key_file": pki.join(format!("{cert}-key.pem")),
            "verify_incoming": true,
            "verify_outgoing": true
        },
        "internal_rpc": { "verify_server_hostname": true }
    })
}

/// A client agent joining `join` with `tls` (plain HTTP on its own port, for the test to ask).
fn client_agent(dir: &Path, name: &str, join: &str, tls: Option<Value>) -> (Proc, u16) {
    let http = free_port();
    let mut cfg = json!({
        "node_name": name, "datacenter": "dc1", "data_dir": dir.join(name),
        "bind_addr": "127.0.0.1", "client_addr": "127.0.0.1", "retry_join": [join],
        "ports": { "http": http, "dns": -1, "server": free_port(), "serf_lan": free_port() }
    });
    if let Some(t) = tls {
        cfg["tls"] = t;
    }
    (Proc::start(dir, name, cfg), http)
}

/// A KV read through a client agent's plain HTTP port (forwarded to the servers over RPC).
fn client_get(http: u16, key: &str) -> (u16, String) {
    plain_get(http, &format!("/v1/kv/{key}?raw"))
}

#[test]
fn a_tls_cluster_made_with_the_tls_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    std::fs::create_dir(&pki).expect("mkdir");
    tls(&pki, &["ca", "create"]);
    for _ in 0..3 {
        tls(&pki, &["cert", "create", "-server", "-dc", "dc1"]);
    }
    tls(&pki, &["cert", "create", "-client", "-dc", "dc1"]);
    tls(&pki, &["cert", "create", "-cli", "-dc", "dc1"]);

    // Three HTTPS-only servers.
    let https: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let rpc: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let serf: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let join = format!("127.0.0.1:{}", serf[0]);
    let servers: Vec<Proc> = (0..3)
        .map(|i| {
            Proc::start(
                dir.path(),
                &format!("s{i}"),
                json!({
                    "server": true, "bootstrap_expect": 3, "node_name": format!("s{i}"), "datacenter": "dc1",
                    "data_dir": dir.path().join(format!("s{i}")), "bind_addr": "127.0.0.1",
                    "client_addr": "127.0.0.1", "retry_join": [join],
                    "performance": { "raft_multiplier": 1 },
                    "ports": { "http": -1, "https": https[i], "dns": -1, "server": rpc[i], "serf_lan": serf[i] },
                    "tls": tls_block(&pki, &format!("dc1-server-consul-{i}"))
                }),
            )
        })
        .collect();
    let url = |i: usize, path: &str| format!("https://127.0.0.1:{}{path}", https[i]);
    let logs = || servers.iter().map(|s| s.log()).collect::<Vec<_>>().join("\n---\n");

    // Raft forms over mutual TLS.
    wait_for("three voters and a leader", Duration::from_secs(60), || {
        let (code, body) = curl(&pki, &url(0, "/v1/status/peers"), "GET", None, true);
        let peers: Value = serde_json::from_str(&body).ok()?;
        let leader = curl(&pki, &url(0, "/v1/status/leader"), "GET", None, true).1;
        (code == 200 && peers.as_array()?.len() == 3 && leader.len() > 2).then_some(())
    });

    // A write through a follower (forwarded to the leader over TLS), read from every server.
    let leader = curl(&pki, &url(0, "/v1/status/leader"), "GET", None, true).1;
    let follower = (0..3).find(|i| !leader.contains(&format!(":{}", rpc[*i]))).expect("a follower");
    let (code, body) = curl(&pki, &url(follower, "/v1/kv/tls/a"), "PUT", Some("forwarded"), true);
    assert_eq!((code, body.trim()), (200, "true"), "{}", logs());
    for i in 0..3 {
        let (code, body) = curl(&pki, &url(i, "/v1/kv/tls/a?raw&consistent"), "GET", None, true);
        assert_eq!((code, body.as_str()), (200, "forwarded"), "server {i}");
    }
    // HTTPS with verify_incoming: no client certificate, no answer.
    let (code, _) = curl(&pki, &url(0, "/v1/kv/tls/a?raw"), "GET", None, false);
    assert_eq!(code, 0, "a request without a client certificate must fail the handshake");

    // A client agent with no TLS joins the gossip pool but cannot use the servers.
    let (bare, bare_http) = client_agent(dir.path(), "bare", &join, None);
    let (code, body) = wait_for("the bare client to answer", Duration::from_secs(30), || {
        let r = client_get(bare_http, "tls/a");
        (r.0 != 0).then_some(r)
    });
    assert!(code >= 500 && body.contains("requires TLS"), "{code} {body}");
    drop(bare);

    // One with the client certificate reads through them.
    let (good, good_http) = client_agent(dir.path(), "good", &join, Some(tls_block(&pki, "dc1-client-consul-0")));
    let got = wait_for("the client with a certificate to read", Duration::from_secs(30), || {
        let r = client_get(good_http, "tls/a");
        (r.0 == 200).then_some(r.1)
    });
    assert_eq!(got, "forwarded");
    drop(good);

    // A certificate from another CA is refused, and the server logs why.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    tls(&other, &["ca", "create"]);
    tls(&other, &["cert", "create", "-client", "-dc", "dc1"]);
    let mut foreign = tls_block(&pki, "dc1-client-consul-0");
    foreign["defaults"]["cert_file"] = json!(other.join("dc1-client-consul-0.pem"));
    foreign["defaults"]["key_file"] = json!(other.join("dc1-client-consul-0-key.pem"));
    let (stranger, stranger_http) = client_agent(dir.path(), "stranger", &join, Some(foreign));
    let (code, body) = wait_for("the foreign client to answer", Duration::from_secs(30), || {
        let r = client_get(stranger_http, "tls/a");
        (r.0 != 0).then_some(r)
    });
    assert!(code >= 500, "a foreign certificate must be refused: {code} {body}");
    wait_for("the servers to log the refusal", Duration::from_secs(10), || {
        logs().contains("RPC TLS handshake failed").then_some(())
    });
    assert!(stranger.log().contains("TLS"), "the client logs it too: {}", stranger.log());
    drop(stranger);

    // An expired certificate (signed by the right CA) is refused until rotated by SIGHUP.
    let key = dir.path().join("expired-key.pem");
    let cert = dir.path().join("expired.pem");
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl").args(args).output().expect("openssl");
        assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let (k, c, csr) = (key.display().to_string(), cert.display().to_string(), dir.path().join("x.csr"));
    openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &k]);
    openssl(&["req", "-new", "-key", &k, "-subj", "/CN=client.dc1.consul", "-out", &csr.display().to_string()]);
    let ca = pki.join("consul-agent-ca.pem").display().to_string();
    let ca_key = pki.join("consul-agent-ca-key.pem").display().to_string();
    // An X.509 v3 certificate (extensions make it one), valid until a day before it was issued.
    let ext = dir.path().join("ext.cnf");
    std::fs::write(&ext, "subjectAltName=DNS:client.dc1.consul\nextendedKeyUsage=clientAuth,serverAuth\n")
        .expect("ext");
    let ext = ext.display().to_string();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr.display().to_string(),
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-days",
        "-1",
        "-extfile",
        &ext,
        "-out",
        &c,
    ]);
    let mut expired = tls_block(&pki, "dc1-client-consul-0");
    expired["defaults"]["cert_file"] = json!(cert);
    expired["defaults"]["key_file"] = json!(key);
    let (old, old_http) = client_agent(dir.path(), "old", &join, Some(expired));
    let (code, body) = wait_for("the expired client to answer", Duration::from_secs(30), || {
        let r = client_get(old_http, "tls/a");
        (r.0 != 0).then_some(r)
    });
    assert!(code >= 500, "an expired certificate must be refused: {code} {body}");
    std::fs::copy(pki.join("dc1-client-consul-0.pem"), &cert).expect("rotate cert");
    std::fs::copy(pki.join("dc1-client-consul-0-key.pem"), &key).expect("rotate key");
    old.hup();
    let got = wait_for("the rotated client to read", Duration::from_secs(30), || {
        let r = client_get(old_http, "tls/a");
        (r.0 == 200).then_some(r.1)
    });
    assert_eq!(got, "forwarded");
    assert!(old.log().contains("TLS certificates reloaded"), "{}", old.log());
    drop(old);
    drop(servers);
}

/// A plain-HTTP GET (the servers below keep their HTTP port plain; TLS guards the RPC port).
fn plain_get(http: u16, path_and_query: &str) -> (u16, String) {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{http}{path_and_query}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A single-server datacenter with mutual TLS and hostname verification on its RPC port, plain
/// HTTP for the test, WAN-joined to `wan_join` when given; its HTTP and serf_wan ports.
fn tls_datacenter(dir: &Path, pki: &Path, dc: &str, cert: &str, wan_join: Option<u16>) -> (Proc, u16, u16) {
    let (http, wan) = (free_port(), free_port());
    let mut cfg = json!({
        "server": true, "bootstrap": true, "node_name": format!("s-{dc}"), "datacenter": dc,
        "data_dir": dir.join(dc), "bind_addr": "127.0.0.1", "client_addr": "127.0.0.1",
        "performance": { "raft_multiplier": 1 },
        "ports": { "http": http, "dns": -1, "server": free_port(), "serf_lan": free_port(), "serf_wan": wan },
        "tls": tls_block(pki, cert)
    });
    if let Some(port) = wan_join {
        cfg["retry_join_wan"] = json!([format!("127.0.0.1:{port}")]);
        cfg["retry_interval_wan"] = json!("1s");
    }
    (Proc::start(dir, dc, cfg), http, wan)
}

/// `verify_server_hostname` across datacenters: a server forwarding `?dc=dc2` dials dc2's
/// servers over TLS and accepts only a certificate for `server.dc2.consul`; a datacenter whose
/// server shows another datacenter's certificate is refused with a TLS error.
#[test]
fn cross_datacenter_requests_verify_the_remote_datacenters_server_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    std::fs::create_dir(&pki).expect("mkdir");
    tls(&pki, &["ca", "create"]);
    tls(&pki, &["cert", "create", "-server", "-dc", "dc1"]);
    tls(&pki, &["cert", "create", "-server", "-dc", "dc2"]);
    tls(&pki, &["cert", "create", "-server", "-dc", "dc1"]);

    let (s1, http1, wan1) = tls_datacenter(dir.path(), &pki, "dc1", "dc1-server-consul-0", None);
    let (s2, http2, _) = tls_datacenter(dir.path(), &pki, "dc2", "dc2-server-consul-0", Some(wan1));
    // dc3's server shows a certificate made for dc1 (server.dc1.consul).
    let (s3, http3, _) = tls_datacenter(dir.path(), &pki, "dc3", "dc1-server-consul-1", Some(wan1));
    let logs = || [&s1, &s2, &s3].iter().map(|s| s.log()).collect::<Vec<_>>().join("\n---\n");

    wait_for("dc1 knows dc2 and dc3", Duration::from_secs(60), || {
        let (code, body) = plain_get(http1, "/v1/catalog/datacenters");
        let dcs: Vec<String> = serde_json::from_str(&body).ok()?;
        (code == 200 && dcs.len() == 3).then_some(())
    });
    for http in [http2, http3] {
        wait_for("a leader", Duration::from_secs(60), || {
            let (code, body) = plain_get(http, "/v1/status/leader");
            (code == 200 && body.len() > 2).then_some(())
        });
    }
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-X", "PUT", "--data-binary", "from dc2"])
        .arg(format!("http://127.0.0.1:{http2}/v1/kv/where"))
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "true", "{}", logs());

    let (code, body) = plain_get(http1, "/v1/kv/where?dc=dc2&raw");
    assert_eq!((code, body.as_str()), (200, "from dc2"), "{}", logs());

    let (code, body) = plain_get(http1, "/v1/kv/where?dc=dc3&raw");
    assert_eq!(code, 500, "a server with another datacenter's name must be refused: {body}");
    assert!(body.contains("dc3") && body.to_lowercase().contains("certificate"), "{body}");
}
