//! ACL objects are replicated state: a token created through the leader works through every
//! follower, and it, its policy and what it grants survive kill -9 of every server.

use std::time::Duration;

use consul_tests::eventually;
use consul_tests::process::{ProcCluster, ProcOptions};
use serde_json::json;

const ACL: &str = r#"{"enabled": true, "default_policy": "deny", "tokens": {"initial_management": "root-secret"}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t82_a_token_works_through_every_server_and_survives_kill9_of_all() {
    let mut c = ProcCluster::start_with(3, ProcOptions { acl_json: Some(ACL), ..ProcOptions::default() }).await;
    let leader = c.leader_index().await.expect("a leader");
    let root = c.api(leader).with_token("root-secret");
    eventually(Duration::from_secs(30), "the initial management token is usable", || {
        let root = root.clone();
        async move { root.get("/v1/acl/token/self").await.ok().filter(|r| r.status == 200).map(|_| ()) }
    })
    .await;
    let body = json!({"Name": "app-writer", "Rules": r#"key_prefix "app/" { policy = "write" }"#}).to_string();
    let r = root.request(reqwest::Method::PUT, "/v1/acl/policy", Some(body.into_bytes())).await.expect("policy");
    assert_eq!(r.status, 200, "{}", r.text());
    let body = json!({"Description": "app", "Policies": [{"Name": "app-writer"}]}).to_string();
    let r = root.request(reqwest::Method::PUT, "/v1/acl/token", Some(body.into_bytes())).await.expect("token");
    assert_eq!(r.status, 200, "{}", r.text());
    let secret = r.json()["SecretID"].as_str().expect("SecretID").to_string();

    // Through every server (followers forward the write, judge it by their own replica).
    let check_all = |c: &ProcCluster, round: &'static str| {
        let apis: Vec<_> = (0..c.len()).map(|i| (i, c.api(i).with_token(&secret), c.api(i))).collect();
        async move {
            for (i, app, anon) in apis {
                let key = format!("app/{round}/{i}");
                eventually(Duration::from_secs(30), &format!("{round}: server {i} accepts the token"), || {
                    let app = app.clone();
                    let key = key.clone();
                    async move {
                        let r = app.kv_put(&key, "v", "").await.ok()?;
                        (r.status == 200 && r.text().trim() == "true").then_some(())
                    }
                })
                .await;
                let r = app.kv_put("other/x", "v", "").await.expect("put");
                assert_eq!(r.status, 403, "{round}: server {i} refuses outside the grant: {}", r.text());
                assert!(r.text().contains("key:write"), "{}", r.text());
                let r = anon.kv_get(&key, "").await.expect("get");
                assert_eq!(r.status, 403, "{round}: anonymous reads nothing under default deny");
                let r = c_unknown(&anon).await;
                assert_eq!((r.status, r.text().trim().to_string()), (403, "ACL not found".to_string()));
            }
        }
    };
    check_all(&c, "before").await;

    for i in 0..c.len() {
        c.kill9(i);
    }
    for i in 0..c.len() {
        c.restart(i);
    }
    c.wait_for_voters(3).await;
    check_all(&c, "after").await;
    let r = c.api(0).with_token(&secret).kv_get("app/before/1", "?consistent").await.expect("get");
    assert_eq!(r.status, 200, "a write made before the crash is still readable with the token");
}

async fn c_unknown(anon: &consul_tests::client::Api) -> consul_tests::client::Resp {
    anon.with_token("7f6a1f0e-0000-4000-8000-000000000000").kv_get("app/x", "").await.expect("get")
}
