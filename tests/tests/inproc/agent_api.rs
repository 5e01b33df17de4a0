//! HTTP helpers the agent and ACL tests share: PUT with a JSON body, GET expecting 200, waiting
//! for a GET whose JSON satisfies a predicate, and checking an answer or a refusal.

use std::time::Duration;

use consul_tests::client::{Api, Resp};
use consul_tests::eventually;
use reqwest::Method;
use serde_json::Value;

/// `PUT path` with an optional JSON body.
pub(crate) async fn put(api: &Api, path: &str, body: Option<Value>) -> Resp {
    api.request(Method::PUT, path, body.map(|b| b.to_string().into_bytes())).await.expect("request")
}

/// `PUT path`, which must answer 200.
pub(crate) async fn put_ok(api: &Api, path: &str, body: Option<Value>) {
    let r = put(api, path, body).await;
    assert_eq!(r.status, 200, "PUT {path}: {}", r.text());
}

/// `GET path`, which must answer 200 with JSON.
pub(crate) async fn get_json(api: &Api, path: &str) -> Value {
    let r = api.get(path).await.expect("get");
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.json()
}

/// Waits (30 s at most) until `GET path` returns JSON for which `f` holds.
pub(crate) async fn wait_json(api: &Api, path: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(30), what, || {
        let api = api.clone();
        let path = path.to_string();
        let f = &f;
        async move {
            let r = api.get(&path).await.ok()?;
            let v: Value = serde_json::from_slice(&r.body).ok()?;
            f(&v).then_some(v)
        }
    })
    .await
}

/// The JSON of a 200 answer (anything else fails the test with the answer's text).
pub(crate) fn ok(r: &Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Asserts a refusal: `status`, with `text` in the message.
pub(crate) fn refused(r: &Resp, status: u16, text: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert!(r.text().contains(text), "expected {text:?} in {:?}", r.text());
}

/// The length of a JSON array (0 for anything else).
pub(crate) fn len(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}
