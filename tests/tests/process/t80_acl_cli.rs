//! `consul-rs acl …` and the `-token` / `-token-file` / `CONSUL_HTTP_TOKEN*` plumbing of the
//! CLI, as one scenario run against two agents:
//!
//! - HashiCorp Consul 1.16 (`CONSUL_REF_BIN`, else `/opt/consul-ref/bin/consul`, as built by
//!   `build-consul-ref.sh`): the reference. Skipped, saying why, when the binary is absent.
//! - a `consul-rs agent -dev` with ACLs on.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use consul_tests::free_port;
use consul_tests::process::binary;

/// A running agent with `acl { enabled = true, default_policy = "deny",
/// tokens { initial_management = "root" } }`, killed on drop.
struct AclAgent {
    child: Child,
    http: u16,
    _dir: tempfile::TempDir,
}

impl Drop for AclAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ACL_HCL: &str = r#"acl { enabled = true, default_policy = "deny", tokens { initial_management = "root" } }"#;

impl AclAgent {
    /// HashiCorp Consul, every port free or disabled, loopback only.
    fn consul(bin: &PathBuf) -> AclAgent {
        let http = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new(bin)
            .args(["agent", "-dev", "-client=127.0.0.1", "-bind=127.0.0.1", "-dns-port=-1", "-grpc-port=-1"])
            .arg(format!("-http-port={http}"))
            .arg(format!("-serf-lan-port={}", free_port()))
            .arg(format!("-serf-wan-port={}", free_port()))
            .arg(format!("-server-port={}", free_port()))
            .args(["-hcl", "ports { grpc_tls = -1 }", "-hcl", ACL_HCL])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn consul");
        AclAgent { child, http, _dir: dir }.ready()
    }

    /// consul-rs, with the same acl block from a config file.
    fn consul_rs() -> AclAgent {
        let http = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("acl.json");
        std::fs::write(
            &cfg,
            r#"{"acl": {"enabled": true, "default_policy": "deny", "tokens": {"initial_management": "root"}}}"#,
        )
        .expect("write config");
        let child = Command::new(binary())
            .args(["agent", "-dev", "-client=127.0.0.1", "-bind=127.0.0.1", "-log-level=warn"])
            .arg(format!("-http-port={http}"))
            .arg(format!("-serf-lan-port={}", free_port()))
            .arg(format!("-server-port={}", free_port()))
            .arg(format!("-dns-port={}", free_port()))
            .arg(format!("-config-file={}", cfg.display()))
            .stdout(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn consul-rs");
        AclAgent { child, http, _dir: dir }.ready()
    }

    /// Waits until the agent answers the management token with a leader.
    fn ready(self) -> AclAgent {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.cli_env(&["acl", "token", "read", "-self", "-token", "root"], &[]);
            if out.status.success() {
                return self;
            }
            assert!(Instant::now() < deadline, "agent with ACLs not ready: {}", text(&out.stderr));
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `consul-rs ARGS` against this agent, without any token from the environment.
    fn cli(&self, args: &[&str]) -> Output {
        self.cli_env(args, &[])
    }

    fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .env("CONSUL_HTTP_ADDR", format!("127.0.0.1:{}", self.http))
            .env_remove("CONSUL_HTTP_TOKEN")
            .env_remove("CONSUL_HTTP_TOKEN_FILE")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run consul-rs")
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "exit {:?}: {}{}", out.status.code(), text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

fn failed(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stderr)
}

/// The scenario: policies, roles and tokens made and read with the CLI, a limited token refused
/// with Consul's 403 texts, tokens from -token-file and the environment.
fn scenario(a: &AclAgent) {
    // Anonymous: default deny.
    let err = failed(&a.cli(&["acl", "policy", "list"]));
    assert!(
        err.starts_with("Failed to retrieve the policy list: Unexpected response code: 403 (Permission denied"),
        "{err}"
    );

    let out = ok(&a.cli(&[
        "acl",
        "policy",
        "create",
        "-token=root",
        "-name=kv-read",
        "-description=read keys",
        "-rules",
        r#"key_prefix "" { policy = "read" }"#,
    ]));
    assert!(
        out.contains("Name:         kv-read\nDescription:  read keys\nDatacenters:  \nRules:\nkey_prefix"),
        "{out}"
    );

    let out = ok(&a.cli(&["acl", "role", "create", "-token", "root", "-name", "readers", "-policy-name", "kv-read"]));
    assert!(out.contains("Name:         readers\n"), "{out}");
    assert!(out.contains(" - kv-read\n"), "{out}");

    let out = ok(&a.cli(&[
        "acl",
        "token",
        "create",
        "-token=root",
        "-description=limited",
        "-role-name=readers",
        "-service-identity=web:dc1",
        "-node-identity=n1:dc1",
        "-format=json",
    ]));
    let tok: serde_json::Value = serde_json::from_str(&out).expect("token JSON");
    let accessor = tok["AccessorID"].as_str().expect("AccessorID").to_string();
    let secret = tok["SecretID"].as_str().expect("SecretID").to_string();
    assert_eq!(tok["Roles"][0]["Name"], "readers");
    assert_eq!(tok["ServiceIdentities"][0], serde_json::json!({"ServiceName": "web", "Datacenters": ["dc1"]}));

    // Read by a unique prefix, pretty.
    let out = ok(&a.cli(&["acl", "token", "read", "-token=root", &format!("-accessor-id={}", &accessor[..8])]));
    assert!(out.starts_with(&format!("AccessorID:       {accessor}\nSecretID:         {secret}\n")), "{out}");
    assert!(out.contains("Description:      limited\nLocal:            false\nCreate Time:      "), "{out}");
    assert!(out.contains("Service Identities:\n   web (Datacenters: dc1)\nNode Identities:\n   n1 (Datacenter: dc1)\n"));

    // -expanded: everything the token resolves to, layer by layer, with the agent's defaults.
    let out = ok(&a.cli(&["acl", "token", "read", "-token=root", "-expanded", &format!("-accessor-id={accessor}")]));
    assert!(out.starts_with(&format!("AccessorID:       {accessor}\nSecretID:         {secret}\n")), "{out}");
    assert!(
        out.contains("Service Identities:\n\tName: web (Datacenters: dc1)\n\t\tDescription: synthetic policy for service identity \"web\"\n\t\tRules:\n\t\t\tservice \"web\" {"),
        "{out}"
    );
    assert!(out.contains("Node Identities:\n\tName: n1 (Datacenter: dc1)\n"), "{out}");
    assert!(
        out.contains("Roles:\n\tRole Name: readers\n\t\tID: ")
            && out.contains("\t\tPolicies:\n\t\t\tPolicy Name: kv-read\n"),
        "{out}"
    );
    assert!(out.contains("\t\t\t\tRules:\n\t\t\t\t\tkey_prefix \"\" { policy = \"read\" }\n\n"), "{out}");
    assert!(out.contains("=== End of Authorizer Layer 0: Token ===\n"), "{out}");
    assert!(out.contains("Default Policy: deny\n") && out.contains("Down Policy: extend-cache\n"), "{out}");
    let err = failed(&a.cli(&["acl", "token", "read", "-token=root", "-expanded", "-self"]));
    assert!(err.contains("Cannot use both -expanded and -self"), "{err}");

    // The limited token reads but cannot write, with Consul's wording.
    let out = ok(&a.cli(&["acl", "token", "read", "-self", &format!("-token={secret}")]));
    assert!(out.contains(&accessor));
    let err = failed(&a.cli(&["kv", "put", &format!("-token={secret}"), "foo", "bar"]));
    assert!(err.contains("403 (Permission denied: token with AccessorID"), "{err}");
    assert!(err.contains("lacks permission 'key:write' on \"foo\""), "{err}");
    let err = failed(&a.cli(&["acl", "token", "create", &format!("-token={secret}"), "-policy-name=kv-read"]));
    assert!(err.starts_with("Failed to create new token: Unexpected response code: 403 (Permission denied"), "{err}");
    let err = failed(&a.cli(&["acl", "token", "read", "-self", "-token=not-a-token"]));
    // Consul 1.16 says "token does not exist: ACL not found".
    assert!(err.starts_with("Error reading token: Unexpected response code: 403 ("), "{err}");
    assert!(err.ends_with("ACL not found)\n"), "{err}");

    // Tokens from a file and from the environment.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    std::fs::write(&file, "root\n").expect("write token");
    let out = ok(&a.cli(&["acl", "policy", "list", &format!("-token-file={}", file.display())]));
    assert!(out.contains("kv-read:\n"), "{out}");
    assert!(out.contains("global-management:\n"), "{out}");
    let out = ok(&a.cli_env(&["acl", "role", "list"], &[("CONSUL_HTTP_TOKEN", "root")]));
    assert!(out.starts_with("readers:\n"), "{out}");
    let file_s = file.display().to_string();
    let out = ok(&a.cli_env(&["acl", "token", "list"], &[("CONSUL_HTTP_TOKEN_FILE", file_s.as_str())]));
    assert!(out.contains(&accessor));
    let err = failed(&a.cli(&["acl", "token", "list", "-token-file=/nonexistent/token"]));
    assert!(err.starts_with("Error connecting to Consul agent: Error loading token file /nonexistent/token"), "{err}");

    // Update, clone, delete.
    let out = ok(&a.cli(&["acl", "token", "update", "-token=root", "-accessor-id", &accessor, "-description=renamed"]));
    assert!(out.contains("Description:      renamed\n"), "{out}");
    let out = ok(&a.cli(&["acl", "token", "clone", "-token=root", "-accessor-id", &accessor, "-description=copy"]));
    assert!(out.contains("Description:      copy\n"), "{out}");
    let out = ok(&a.cli(&["acl", "token", "delete", "-token=root", "-accessor-id", &accessor]));
    assert_eq!(out, format!("Token \"{accessor}\" deleted successfully\n"));
    let out = ok(&a.cli(&["acl", "set-agent-token", "-token=root", "agent", "root"]));
    assert_eq!(out, "ACL token \"agent\" set successfully\n");
}

/// Where the reference binary is, if built.
fn consul_ref() -> Option<PathBuf> {
    let p = std::env::var_os("CONSUL_REF_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/consul-ref/bin/consul"));
    p.exists().then_some(p)
}

#[test]
fn t80_acl_cli_against_consul_1_16() {
    let Some(bin) = consul_ref() else {
        eprintln!(
            "skipped: HashiCorp Consul 1.16 not found (set CONSUL_REF_BIN or build /opt/consul-ref/bin/consul \
             with build-consul-ref.sh)"
        );
        return;
    };
    let agent = AclAgent::consul(&bin);
    scenario(&agent);
}

#[test]
fn t81_acl_cli_against_consul_rs() {
    let agent = AclAgent::consul_rs();
    scenario(&agent);
}
