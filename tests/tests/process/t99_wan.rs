//! The WAN pool among servers of several datacenters, with real processes: joins through
//! `-retry-join-wan` and `PUT /v1/agent/join/:addr?wan=1`, `members -wan`, the datacenter lists
//! (catalog and coordinates), failure and `force-leave -wan`, the keyring over both pools, and
//! a client agent refusing a WAN join.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use consul_tests::client::Api;
use consul_tests::process::{binary, stdout};
use consul_tests::{eventually, free_port};
use serde_json::Value;

/// Generous: a loaded 2-core CI machine runs several agents per test.
pub(super) const WAIT: Duration = Duration::from_secs(60);

/// One `-dev` server of datacenter `dc` (its WAN pool on a port of its own), killed on drop.
pub(super) struct Server {
    child: Option<Child>,
    pub(super) http: u16,
    pub(super) lan: u16,
    wan: u16,
    /// The DNS port (UDP and TCP).
    pub(super) dns: u16,
    pub(super) api: Api,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    pub(super) async fn start(node: &str, dc: &str, extra: &[String]) -> Server {
        Self::spawn(node, dc, &["-dev".to_string()], extra, None).await
    }

    /// A second server of `first`'s datacenter (not `-dev`: it joins `first`'s cluster).
    async fn join_lan(node: &str, dc: &str, first: &Server) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mode = [
            "-server".to_string(),
            format!("-data-dir={}", dir.path().display()),
            format!("-retry-join=127.0.0.1:{}", first.lan),
            "-retry-interval=200ms".to_string(),
        ];
        Self::spawn(node, dc, &mode, &[], Some(dir)).await
    }

    async fn spawn(node: &str, dc: &str, mode: &[String], extra: &[String], dir: Option<tempfile::TempDir>) -> Server {
        let (http, lan, wan, dns) = (free_port(), free_port(), free_port(), free_port());
        let child = Command::new(binary())
            .arg("agent")
            .args(mode)
            .args(["-client", "127.0.0.1", "-bind=127.0.0.1", "-node", node, "-datacenter", dc])
            .arg(format!("-http-port={http}"))
            .arg(format!("-server-port={}", free_port()))
            .arg(format!("-serf-lan-port={lan}"))
            .arg(format!("-serf-wan-port={wan}"))
            .arg(format!("-dns-port={dns}"))
            .args(["-log-level", "warn"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn server");
        let api = Api::new(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), http));
        let probe = api.clone();
        eventually(WAIT, &format!("{node}.{dc} has a leader"), || {
            let api = probe.clone();
            async move {
                let leader = api.get("/v1/status/leader").await.ok()?.json();
                leader.as_str().is_some_and(|s| !s.is_empty()).then_some(())
            }
        })
        .await;
        Server { child: Some(child), http, lan, wan, dns, api, _dir: dir }
    }

    pub(super) fn wan_addr(&self) -> String {
        format!("127.0.0.1:{}", self.wan)
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(binary())
            .args(args)
            .env("CONSUL_HTTP_ADDR", format!("127.0.0.1:{}", self.http))
            .env_remove("CONSUL_HTTP_TOKEN")
            .output()
            .expect("run cli")
    }

    pub(super) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub(super) async fn put(api: &Api, path: &str, body: Option<&str>) -> consul_tests::client::Resp {
    api.request(reqwest::Method::PUT, path, body.map(|b| b.as_bytes().to_vec())).await.expect("PUT")
}

/// WAN member name → status code, as `server` sees the pool.
async fn wan_members(api: &Api) -> Option<Vec<(String, u64)>> {
    let r = api.get("/v1/agent/members?wan=1").await.ok()?;
    let mut out: Vec<(String, u64)> = r
        .json()
        .as_array()?
        .iter()
        .map(|m| (m["Name"].as_str().unwrap_or_default().to_string(), m["Status"].as_u64().unwrap_or(0)))
        .collect();
    out.sort();
    Some(out)
}

pub(super) async fn wait_wan_members(api: &Api, want: &[(&str, u64)], what: &str) {
    let want: Vec<(String, u64)> = want.iter().map(|(n, s)| (n.to_string(), *s)).collect();
    eventually(WAIT, what, || {
        let (api, want) = (api.clone(), want.clone());
        async move { (wan_members(&api).await? == want).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_wan_pool_across_datacenters() {
    let s1 = Server::start("s1", "dc1", &[]).await;
    let s2 = Server::start("s2", "dc2", &[format!("-retry-join-wan={}", s1.wan_addr())]).await;
    // -retry-join-wan: both servers see both, named node.dc, with Consul's WAN tags.
    for s in [&s1, &s2] {
        wait_wan_members(&s.api, &[("s1.dc1", 1), ("s2.dc2", 1)], "both servers in the WAN pool").await;
    }
    let members = s1.api.get("/v1/agent/members?wan=1").await.expect("members").json();
    let s2_entry = members.as_array().expect("list").iter().find(|m| m["Name"] == "s2.dc2").expect("s2.dc2").clone();
    assert_eq!(s2_entry["Tags"]["dc"], "dc2", "{s2_entry}");
    assert_eq!(s2_entry["Tags"]["role"], "consul", "{s2_entry}");
    assert_eq!(s2_entry["Port"].as_u64(), Some(u64::from(s2.wan)), "{s2_entry}");
    // The LAN pool is untouched.
    let lan = s1.api.get("/v1/agent/members").await.expect("members").json();
    assert_eq!(lan.as_array().map(Vec::len), Some(1), "{lan}");

    // `members -wan` prints them.
    let out = s1.cli(&["members", "-wan"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("s1.dc1") && text.contains("s2.dc2") && text.contains("dc2"), "{text}");

    // Every datacenter the pool knows, local first.
    assert_eq!(s1.api.get("/v1/catalog/datacenters").await.expect("dcs").json(), serde_json::json!(["dc1", "dc2"]));
    assert_eq!(s2.api.get("/v1/catalog/datacenters").await.expect("dcs").json(), serde_json::json!(["dc2", "dc1"]));

    // WAN coordinates: one entry per datacenter, each with its server, once a probe measured it.
    eventually(WAIT, "WAN coordinates of both datacenters", || {
        let api = s1.api.clone();
        async move {
            let dcs = api.get("/v1/coordinate/datacenters").await.ok()?.json();
            let dcs = dcs.as_array()?.clone();
            let names: Vec<&str> = dcs.iter().filter_map(|d| d["Datacenter"].as_str()).collect();
            let nodes: Vec<&str> = dcs.iter().filter_map(|d| d["Coordinates"][0]["Node"].as_str()).collect();
            let areas = dcs.iter().all(|d| d["AreaID"] == "wan");
            (names == ["dc1", "dc2"] && nodes == ["s1", "s2"] && areas).then_some(())
        }
    })
    .await;

    // A second server of dc1 joins its LAN pool only; the flood join puts it in the WAN pool,
    // where dc2's server sees it.
    let s1b = Server::join_lan("s1b", "dc1", &s1).await;
    wait_wan_members(&s2.api, &[("s1.dc1", 1), ("s1b.dc1", 1), ("s2.dc2", 1)], "s1b.dc1 flood-joined").await;
    drop(s1b);
    wait_wan_members(&s1.api, &[("s1.dc1", 1), ("s1b.dc1", 4), ("s2.dc2", 1)], "s1b.dc1 failed").await;
    let r = put(&s1.api, "/v1/agent/force-leave/s1b.dc1?wan=1&prune=1", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    wait_wan_members(&s1.api, &[("s1.dc1", 1), ("s2.dc2", 1)], "s1b.dc1 pruned").await;

    // A third datacenter joins through the HTTP API.
    let mut s3 = Server::start("s3", "dc3", &[]).await;
    let r = put(&s3.api, &format!("/v1/agent/join/{}?wan=1", s1.wan_addr()), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    wait_wan_members(&s2.api, &[("s1.dc1", 1), ("s2.dc2", 1), ("s3.dc3", 1)], "s3.dc3 joined over HTTP").await;
    let dcs = s1.api.get("/v1/catalog/datacenters").await.expect("dcs").json();
    assert_eq!(dcs[0], "dc1", "{dcs}");
    assert_eq!(dcs.as_array().map(Vec::len), Some(3), "{dcs}");

    // Killed, its server becomes failed in the WAN pool; force-leave -wan makes it left.
    s3.kill9();
    wait_wan_members(&s1.api, &[("s1.dc1", 1), ("s2.dc2", 1), ("s3.dc3", 4)], "s3.dc3 failed").await;
    let out = s1.cli(&["force-leave", "-wan", "s3.dc3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_wan_members(&s1.api, &[("s1.dc1", 1), ("s2.dc2", 1), ("s3.dc3", 3)], "s3.dc3 left").await;
    eventually(WAIT, "a left datacenter is no longer listed", || {
        let api = s1.api.clone();
        async move {
            let dcs = api.get("/v1/catalog/datacenters").await.ok()?.json();
            (dcs == serde_json::json!(["dc1", "dc2"])).then_some(())
        }
    })
    .await;
    // An unknown WAN member is a 404, as for the LAN pool.
    let r = put(&s1.api, "/v1/agent/force-leave/nobody.dc9?wan=1", None).await;
    assert_eq!(r.status, 404, "{}", r.text());
}

/// A client agent (no WAN pool) joined to `server`'s LAN pool.
struct Client {
    child: Child,
    api: Api,
    _dir: tempfile::TempDir,
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_wan_client_agent_refuses_wan_join() {
    let s1 = Server::start("s1", "dc1", &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let http = free_port();
    let child = Command::new(binary())
        .args(["agent", "-server=false", "-node", "c1", "-bind=127.0.0.1", "-client=127.0.0.1"])
        .arg(format!("-data-dir={}", dir.path().display()))
        .arg(format!("-http-port={http}"))
        .arg(format!("-serf-lan-port={}", free_port()))
        .arg(format!("-dns-port={}", free_port()))
        .args(["-log-level", "error"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn client agent");
    let client = Client { child, api: Api::new(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), http)), _dir: dir };
    let api = client.api.clone();
    let r: consul_tests::client::Resp = eventually(WAIT, "the client agent answers", || {
        let api = api.clone();
        let path = format!("/v1/agent/join/{}?wan=1", s1.wan_addr());
        async move { api.request(reqwest::Method::PUT, &path, None).await.ok() }
    })
    .await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("Must be a server to join WAN cluster"), "{}", r.text());
    let members = client.api.get("/v1/agent/members?wan=1").await.expect("members");
    assert_eq!((members.status, members.json()), (200, Value::Array(vec![])));
    let r = put(&client.api, "/v1/agent/force-leave/s1.dc1?wan=1", None).await;
    assert_eq!(r.status, 500, "{}", r.text());
    // The server's WAN pool still holds only itself.
    assert_eq!(wan_members(&s1.api).await, Some(vec![("s1.dc1".to_string(), 1)]));
}

/// `/v1/operator/keyring` on a server lists the WAN pool and the LAN pool, and install, use and
/// remove change both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_wan_keyring_covers_both_pools() {
    const K1: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
    const K2: &str = "Aqv0QRj5WGQp+UD0D1Ad1OQ63oxtVpCDL05SDB4fBG4=";
    let key = format!("-encrypt={K1}");
    let s1 = Server::start("s1", "dc1", std::slice::from_ref(&key)).await;
    let s2 = Server::start("s2", "dc2", &[key.clone(), format!("-retry-join-wan={}", s1.wan_addr())]).await;
    wait_wan_members(&s1.api, &[("s1.dc1", 1), ("s2.dc2", 1)], "both servers in the WAN pool").await;

    let list = |api: Api| async move {
        let r = api.get("/v1/operator/keyring").await.expect("keyring");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    let pools = list(s1.api.clone()).await;
    let pools = pools.as_array().expect("list").clone();
    assert_eq!(pools.len(), 2, "{pools:?}");
    assert_eq!((pools[0]["WAN"].clone(), pools[0]["NumNodes"].clone()), (Value::Bool(true), 2.into()), "{pools:?}");
    assert_eq!((pools[1]["WAN"].clone(), pools[1]["NumNodes"].clone()), (Value::Bool(false), 1.into()), "{pools:?}");
    assert_eq!(pools[0]["Datacenter"], "dc1");
    assert_eq!(pools[0]["Keys"][K1], 2, "{pools:?}");
    // ?local-only: this server's own keys in each pool.
    let local = s1.api.get("/v1/operator/keyring?local-only=true").await.expect("local").json();
    assert_eq!(local[0]["NumNodes"], 1, "{local}");
    assert_eq!(local[1]["NumNodes"], 1, "{local}");

    // Install, use, remove: each applies to both pools.
    let body = format!(r#"{{"Key": "{K2}"}}"#);
    let r = s1.api.request(reqwest::Method::POST, "/v1/operator/keyring", Some(body.clone().into_bytes())).await;
    assert_eq!(r.expect("install").status, 200);
    let pools = list(s1.api.clone()).await;
    assert_eq!(pools[0]["Keys"][K2], 2, "{pools}");
    assert_eq!(pools[1]["Keys"][K2], 1, "{pools}");
    assert_eq!(put(&s1.api, "/v1/operator/keyring", Some(&body)).await.status, 200);
    let pools = list(s1.api.clone()).await;
    assert_eq!(pools[0]["PrimaryKeys"][K2], 2, "{pools}");
    assert_eq!(pools[1]["PrimaryKeys"][K2], 1, "{pools}");
    let old = format!(r#"{{"Key": "{K1}"}}"#);
    let r = s1.api.request(reqwest::Method::DELETE, "/v1/operator/keyring", Some(old.into_bytes())).await;
    assert_eq!(r.expect("remove").status, 200);
    // Both of s1's pools, and the WAN pool as s2 sees it, hold only the new key. (dc2's own LAN
    // pool is not reached: requests are not forwarded between datacenters yet.)
    let pools = list(s1.api.clone()).await;
    for p in pools.as_array().expect("list") {
        let keys: Vec<&String> = p["Keys"].as_object().expect("keys").keys().collect();
        assert_eq!(keys, [K2], "{pools}");
    }
    let pools = list(s2.api.clone()).await;
    assert_eq!(pools[0]["WAN"], true, "{pools}");
    let keys: Vec<&String> = pools[0]["Keys"].as_object().expect("keys").keys().collect();
    assert_eq!(keys, [K2], "{pools}");
    // The pool still works under the new key: s2 sees s1 alive.
    wait_wan_members(&s2.api, &[("s1.dc1", 1), ("s2.dc2", 1)], "WAN pool alive under the new key").await;
}
