//! Service and check definitions in config files of a real `consul-rs` process, reloaded with
//! `PUT /v1/agent/reload` and SIGHUP (Consul: docs/services/configuration/services-configuration-reference.mdx,
//! api-docs/agent/index.mdx "Reload Agent").

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use consul_tests::client::Api;
use consul_tests::{eventually, free_port, process::binary};
use serde_json::Value;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent_cmd(config: &Path, http: u16) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(["agent", "-dev", "-client", "127.0.0.1", "-bind=127.0.0.1"])
        .arg(format!("-http-port={http}"))
        .arg(format!("-server-port={}", free_port()))
        .arg(format!("-serf-lan-port={}", free_port()))
        .arg(format!("-dns-port={}", free_port()))
        .arg(format!("-config-file={}", config.display()))
        .args(["-log-level", "warn"])
        .stdin(Stdio::null());
    cmd
}

async fn service_ids(api: &Api) -> Option<Vec<String>> {
    let v: Value = api.get("/v1/agent/services").await.ok()?.json();
    let mut ids: Vec<String> = v.as_object()?.keys().cloned().collect();
    ids.sort();
    Some(ids)
}

async fn wait_ids(api: &Api, want: &[&str]) {
    eventually(Duration::from_secs(30), &format!("services {want:?}"), || async {
        (service_ids(api).await? == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_config_file_services_reload_by_endpoint_and_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("svc.hcl");
    std::fs::write(
        &config,
        "service {\n  name = \"web\"\n  port = 80\n  check {\n    ttl = \"1h\"\n    status = \"passing\"\n  }\n}\n",
    )
    .expect("write");
    let http = free_port();
    let child = agent_cmd(&config, http).stdout(Stdio::null()).spawn().expect("spawn");
    let proc = Proc(child);
    let api = Api::new(format!("127.0.0.1:{http}").parse().expect("addr"));
    wait_ids(&api, &["web"]).await;
    eventually(Duration::from_secs(30), "web passing in the catalog", || async {
        let v = api.get("/v1/health/service/web?passing").await.ok()?.json();
        (v.as_array()?.len() == 1).then_some(())
    })
    .await;

    // An API registration survives reloads; config entries are replaced.
    let r = api
        .request(reqwest::Method::PUT, "/v1/agent/service/register", Some(br#"{"Name": "manual"}"#.to_vec()))
        .await
        .expect("register");
    assert_eq!(r.status, 200);
    std::fs::write(&config, "services = [{ name = \"api\" }, { name = \"db\", port = 5432 }]\n").expect("write");
    let r = api.request(reqwest::Method::PUT, "/v1/agent/reload", None).await.expect("reload");
    assert_eq!(r.status, 200, "{}", r.text());
    wait_ids(&api, &["api", "db", "manual"]).await;

    // A broken file is refused and changes nothing.
    std::fs::write(&config, "service {\n  port = 1\n}\n").expect("write");
    let r = api.request(reqwest::Method::PUT, "/v1/agent/reload", None).await.expect("reload");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("service"), "{}", r.text());
    assert_eq!(service_ids(&api).await.expect("ids"), ["api", "db", "manual"]);

    // SIGHUP reloads too, and the agent keeps running.
    std::fs::write(&config, "service {\n  name = \"hup\"\n}\n").expect("write");
    let status = Command::new("kill").args(["-HUP", &proc.0.id().to_string()]).status().expect("kill -HUP");
    assert!(status.success());
    wait_ids(&api, &["hup", "manual"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t31_script_check_in_config_needs_enable_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("c.json");
    std::fs::write(&config, r#"{"check": {"name": "s", "args": ["/bin/true"], "interval": "10s"}}"#).expect("write");
    let out = agent_cmd(&config, free_port()).stdout(Stdio::piped()).stderr(Stdio::piped()).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("enable_local_script_checks"), "{err}");
    // With the flag, the same file starts.
    let http = free_port();
    let child =
        agent_cmd(&config, http).arg("-enable-local-script-checks").stdout(Stdio::null()).spawn().expect("spawn");
    let _proc = Proc(child);
    let api = Api::new(format!("127.0.0.1:{http}").parse().expect("addr"));
    eventually(Duration::from_secs(30), "script check passing", || async {
        let v = api.get("/v1/agent/checks").await.ok()?.json();
        (v["s"]["Status"] == "passing").then_some(())
    })
    .await;
}
