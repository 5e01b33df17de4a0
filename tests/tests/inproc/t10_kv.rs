//! KV API semantics on a single server (Consul: api-docs/kv.mdx, agent/kvs_endpoint.go).

use base64::Engine;
use consul_tests::inproc::Cluster;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_kv_put_get_delete_and_shapes() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    api.put_ok("hello/world", "v1").await;
    let r = api.kv_get("hello/world", "").await.expect("get");
    assert_eq!(r.status, 200);
    assert_eq!(r.kv_value().as_deref(), Some(b"v1".as_ref()));
    let pair = &r.json()[0];
    let keys: Vec<&str> = pair.as_object().expect("object").keys().map(String::as_str).collect();
    for field in ["LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"] {
        assert!(keys.contains(&field), "KVPair lacks {field}: {pair}");
    }
    assert!(pair.get("Session").is_none(), "unlocked keys have no Session");
    let create = pair["CreateIndex"].as_u64().expect("CreateIndex");
    assert_eq!(r.index(), Some(pair["ModifyIndex"].as_u64().expect("ModifyIndex")));
    assert_eq!(r.header("X-Consul-KnownLeader").as_deref(), Some("true"));
    assert_eq!(r.header("X-Consul-Effective-Consistency").as_deref(), Some("leader"));

    // Overwrite keeps CreateIndex and moves ModifyIndex; flags are stored.
    let r = api.kv_put("hello/world", "v2", "?flags=42").await.expect("put");
    assert_eq!(r.text().trim(), "true");
    let pair = api.kv_get("hello/world", "").await.expect("get").json()[0].clone();
    assert_eq!(pair["CreateIndex"].as_u64(), Some(create));
    assert!(pair["ModifyIndex"].as_u64() > Some(create));
    assert_eq!(pair["Flags"].as_u64(), Some(42));

    // raw
    let r = api.kv_get("hello/world", "?raw").await.expect("raw");
    assert_eq!(r.body, b"v2");
    assert_eq!(r.header("X-Content-Type-Options").as_deref(), Some("nosniff"));

    // missing key: 404 with an index
    let r = api.kv_get("nope", "").await.expect("get");
    assert_eq!(r.status, 404);
    assert!(r.index().is_some_and(|i| i > 0));

    // delete
    let r = api.kv_delete("hello/world", "").await.expect("delete");
    assert_eq!(r.text().trim(), "true");
    assert_eq!(api.kv_get("hello/world", "").await.expect("get").status, 404);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_kv_recurse_keys_separator() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    for k in ["app/a", "app/b/c", "app/b/d", "other"] {
        api.put_ok(k, k.as_bytes().to_vec()).await;
    }
    let r = api.kv_get("app/", "?recurse").await.expect("recurse");
    let keys: Vec<String> =
        r.json().as_array().expect("array").iter().map(|p| p["Key"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(keys, ["app/a", "app/b/c", "app/b/d"]);
    let r = api.kv_get("app/", "?keys&separator=/").await.expect("keys");
    assert_eq!(r.json(), json!(["app/a", "app/b/"]));
    let r = api.kv_get("", "?keys").await.expect("keys");
    assert_eq!(r.json().as_array().map(Vec::len), Some(4));
    assert_eq!(api.kv_get("zzz/", "?keys").await.expect("keys").status, 404);
    assert_eq!(api.kv_get("zzz/", "?recurse").await.expect("recurse").status, 404);
    // recursive delete
    assert_eq!(api.kv_delete("app/b/", "?recurse").await.expect("delete").text().trim(), "true");
    let r = api.kv_get("app/", "?keys").await.expect("keys");
    assert_eq!(r.json(), json!(["app/a"]));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_kv_cas() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    // cas=0 creates only if absent
    assert_eq!(api.kv_put("c", "1", "?cas=0").await.expect("put").text().trim(), "true");
    assert_eq!(api.kv_put("c", "2", "?cas=0").await.expect("put").text().trim(), "false");
    let idx = api.kv_get("c", "").await.expect("get").json()[0]["ModifyIndex"].as_u64().expect("idx");
    assert_eq!(api.kv_put("c", "3", &format!("?cas={}", idx + 100)).await.expect("put").text().trim(), "false");
    assert_eq!(api.kv_put("c", "3", &format!("?cas={idx}")).await.expect("put").text().trim(), "true");
    assert_eq!(api.kv_get("c", "?raw").await.expect("get").body, b"3");
    // delete cas
    let idx = api.kv_get("c", "").await.expect("get").json()[0]["ModifyIndex"].as_u64().expect("idx");
    assert_eq!(api.kv_delete("c", "?cas=1").await.expect("del").text().trim(), "false");
    assert_eq!(api.kv_delete("c", &format!("?cas={idx}")).await.expect("del").text().trim(), "true");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t13_kv_bad_input_changes_nothing() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    let before = api.kv_get("", "?recurse").await.expect("get").index();
    let cases: Vec<(Method, &str, Option<Vec<u8>>, u16)> = vec![
        (Method::PUT, "/v1/kv/", Some(b"x".to_vec()), 400),
        (Method::PUT, "/v1/kv/a?flags=abc", Some(b"x".to_vec()), 400),
        (Method::PUT, "/v1/kv/a?cas=1&acquire=s", Some(b"x".to_vec()), 400),
        (Method::PUT, "/v1/kv/a?cas=-1", Some(b"x".to_vec()), 400),
        (Method::PUT, "/v1/kv/a%07b", Some(b"x".to_vec()), 400),
        (Method::PUT, "/v1/kv/big", Some(vec![b'x'; 512 * 1024 + 1]), 413),
        (Method::DELETE, "/v1/kv/", None, 400),
        (Method::DELETE, "/v1/kv/a?recurse&cas=3", None, 400),
        (Method::GET, "/v1/kv/a?index=notanumber", None, 400),
        (Method::GET, "/v1/kv/a?wait=forever", None, 400),
        (Method::GET, "/v1/kv/a?stale&consistent", None, 400),
        (Method::GET, "/v1/kv/a?dc=elsewhere", None, 500),
        (Method::POST, "/v1/kv/a", Some(b"x".to_vec()), 405),
        (Method::GET, "/v1/no/such/path", None, 404),
        (Method::PUT, "/v1/txn", Some(b"{not json".to_vec()), 400),
    ];
    for (method, path, body, want) in cases {
        let r = api.request(method.clone(), path, body).await.expect("request");
        assert_eq!(r.status, want, "{method} {path}: {}", r.text());
        assert!(!r.text().trim().is_empty(), "{method} {path}: error bodies name the problem");
        assert!(
            r.header("content-type").unwrap_or_default().starts_with("text/plain"),
            "{method} {path} is plain text"
        );
    }
    // A value of exactly the limit is accepted.
    api.put_ok("exact", vec![b'y'; 512 * 1024]).await;
    assert_eq!(api.kv_get("big", "").await.expect("get").status, 404);
    let after = api.kv_get("", "?recurse").await.expect("get").index();
    assert!(after > before);
    let keys = api.kv_get("", "?keys").await.expect("keys").json();
    assert_eq!(keys, json!(["exact"]), "only the valid write changed anything");
    c.shutdown().await;
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t14_txn_commit_and_rollback() {
    let c = Cluster::start(1).await;
    let api = c.api(0);
    let ops = json!([
        {"KV": {"Verb": "set", "Key": "t/a", "Value": b64("1")}},
        {"KV": {"Verb": "cas", "Key": "t/b", "Value": b64("2"), "Index": 0}},
        {"KV": {"Verb": "get", "Key": "t/a"}},
        {"KV": {"Verb": "check-not-exists", "Key": "t/zz"}},
    ]);
    let r = api.request(Method::PUT, "/v1/txn", Some(ops.to_string().into_bytes())).await.expect("txn");
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let results = body["Results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    assert!(results[0]["KV"]["Value"].is_null(), "set results carry no value");
    assert_eq!(results[2]["KV"]["Value"], json!(b64("1")));
    assert!(body["Errors"].is_null());

    // A failing op rolls everything back: 409 with per-op errors.
    let idx = api.kv_get("t/a", "").await.expect("get").json()[0]["ModifyIndex"].as_u64().expect("idx");
    let ops = json!([
        {"KV": {"Verb": "set", "Key": "t/c", "Value": b64("3")}},
        {"KV": {"Verb": "delete", "Key": "t/a"}},
        {"KV": {"Verb": "check-index", "Key": "t/b", "Index": 999999}},
    ]);
    let r = api.request(Method::PUT, "/v1/txn", Some(ops.to_string().into_bytes())).await.expect("txn");
    assert_eq!(r.status, 409, "{}", r.text());
    let errors = r.json()["Errors"].as_array().expect("errors").clone();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["OpIndex"], json!(2));
    assert!(errors[0]["What"].as_str().is_some_and(|w| !w.is_empty()));
    assert_eq!(api.kv_get("t/c", "").await.expect("get").status, 404);
    let again = api.kv_get("t/a", "").await.expect("get");
    assert_eq!(again.json()[0]["ModifyIndex"].as_u64(), Some(idx), "rolled-back txn changed nothing");

    // read-only txn and the op limit
    let ops = json!([{"KV": {"Verb": "get-tree", "Key": "t/"}}]);
    let r = api.request(Method::PUT, "/v1/txn?stale", Some(ops.to_string().into_bytes())).await.expect("txn");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["Results"].as_array().map(Vec::len), Some(2));
    let many: Vec<_> = (0..129).map(|i| json!({"KV": {"Verb": "set", "Key": format!("m/{i}")}})).collect();
    let r = api.request(Method::PUT, "/v1/txn", Some(serde_json::to_vec(&many).expect("json"))).await.expect("txn");
    assert_eq!(r.status, 413);
    let r = api
        .request(Method::PUT, "/v1/txn", Some(br#"[{"KV":{"Verb":"lock","Key":"l","Session":"nope"}}]"#.to_vec()))
        .await
        .expect("txn");
    assert_eq!(r.status, 409, "lock with an unknown session rolls back: {}", r.text());
    c.shutdown().await;
}
