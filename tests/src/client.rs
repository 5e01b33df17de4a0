//! A minimal client for the Consul HTTP API, returning status, index and body so tests can
//! assert on exactly what a Consul client would see.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Resp {
    /// `X-Consul-Index`, if present.
    pub fn index(&self) -> Option<u64> {
        self.header("X-Consul-Index").and_then(|v| v.parse().ok())
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    /// The body as JSON (panics with the body text if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The decoded `Value` of the first KV pair of a `GET /v1/kv/...` answer.
    pub fn kv_value(&self) -> Option<Vec<u8>> {
        let v = self.json();
        let value = v.get(0)?.get("Value")?.as_str()?;
        base64::engine::general_purpose::STANDARD.decode(value).ok()
    }
}

/// A client bound to one agent's HTTP address.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// A client for the agent at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .tls_backend_preconfigured(consul_core::tls::plain_client_tls())
            .build()
            .expect("reqwest client");
        Api { base: format!("http://{addr}"), http }
    }

    /// The same agent, sending `X-Consul-Token: token` on every request (a `?token=` in a
    /// path still wins, as in Consul).
    pub fn with_token(&self, token: &str) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("X-Consul-Token", reqwest::header::HeaderValue::from_str(token).expect("token header"));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .default_headers(headers)
            .tls_backend_preconfigured(consul_core::tls::plain_client_tls())
            .build()
            .expect("reqwest client");
        Api { base: self.base.clone(), http }
    }

    /// Sends a request; `path` includes the query string.
    pub async fn request(&self, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> reqwest::Result<Resp> {
        self.request_with_headers(method, path, body, &[]).await
    }

    /// [`Api::request`] with extra headers (e.g. `X-Consul-Token`).
    pub async fn request_with_headers(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> reqwest::Result<Resp> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?.to_vec();
        Ok(Resp { status, headers, body })
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Result<Resp> {
        self.request(reqwest::Method::GET, path, None).await
    }

    /// `PUT /v1/kv/<key><query>` with `value`; returns the response.
    pub async fn kv_put(&self, key: &str, value: impl Into<Vec<u8>>, query: &str) -> reqwest::Result<Resp> {
        self.request(reqwest::Method::PUT, &format!("/v1/kv/{key}{query}"), Some(value.into())).await
    }

    /// `PUT /v1/kv/<key>` expecting `true`; panics otherwise.
    pub async fn put_ok(&self, key: &str, value: impl Into<Vec<u8>>) {
        let r = self.kv_put(key, value, "").await.expect("PUT failed");
        assert_eq!((r.status, r.text().trim()), (200, "true"), "PUT {key}");
    }

    /// `GET /v1/kv/<key><query>`.
    pub async fn kv_get(&self, key: &str, query: &str) -> reqwest::Result<Resp> {
        self.get(&format!("/v1/kv/{key}{query}")).await
    }

    /// `DELETE /v1/kv/<key><query>`.
    pub async fn kv_delete(&self, key: &str, query: &str) -> reqwest::Result<Resp> {
        self.request(reqwest::Method::DELETE, &format!("/v1/kv/{key}{query}"), None).await
    }
}
