//! The HTTP client the CLI commands share: where the agent is, which token and datacenter to
//! send, and Consul's error conventions (a non-2xx answer becomes an error carrying the status
//! and the agent's plain-text body).

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Args;
use reqwest::{Method, StatusCode};

/// Flags every client command takes (`-http-addr`, `-token`, `-datacenter`).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ClientFlags {
    /// Address of the agent's HTTP API (`host:port` or `http://host:port`); default from
    /// CONSUL_HTTP_ADDR, else 127.0.0.1:8500.
    #[arg(long = "http-addr", value_name = "ADDR")]
    pub(crate) http_addr: Option<String>,
    /// ACL token (X-Consul-Token); default from CONSUL_HTTP_TOKEN.
    #[arg(long)]
    pub(crate) token: Option<String>,
    /// File holding the ACL token; default from CONSUL_HTTP_TOKEN_FILE.
    #[arg(long = "token-file", value_name = "PATH")]
    pub(crate) token_file: Option<String>,
    /// Datacenter to query (sent as ?dc=); default: the agent's.
    #[arg(long)]
    pub(crate) datacenter: Option<String>,
}

/// A response that the caller inspects itself (status checked or not, see [`Client::send`]).
#[derive(Debug)]
pub(crate) struct Response {
    /// HTTP status.
    pub(crate) status: StatusCode,
    /// `X-Consul-Index`, when present and numeric.
    pub(crate) index: Option<u64>,
    /// The body.
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub(crate) fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("the agent returned invalid JSON")
    }
}

/// A connection to one agent.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    base: String,
    token: Option<String>,
    datacenter: Option<String>,
    inner: reqwest::Client,
}

impl Client {
    /// Builds a client from the flags, falling back to the CONSUL_HTTP_* environment.
    pub(crate) fn new(flags: &ClientFlags) -> Result<Client> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let addr = flags.http_addr.clone().or_else(|| env("CONSUL_HTTP_ADDR"));
        let base = base_url(addr.as_deref().unwrap_or("127.0.0.1:8500"))?;
        let token = match (&flags.token, &flags.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(path)) => Some(read_token_file(path)?),
            (None, None) => match env("CONSUL_HTTP_TOKEN") {
                Some(t) => Some(t),
                None => env("CONSUL_HTTP_TOKEN_FILE").map(|p| read_token_file(&p)).transpose()?,
            },
        };
        let inner = reqwest::Client::builder()
            // The agent is almost always local; an HTTP_PROXY meant for the outside world must
            // not capture it.
            .no_proxy()
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client { base, token, datacenter: flags.datacenter.clone(), inner })
    }

    /// Builds the full URL: `path` is already escaped; `query` pairs are escaped here, a `None`
    /// value gives a bare flag (`?recurse`). `dc` is appended when a datacenter was chosen.
    pub(crate) fn url(&self, path: &str, query: &[(&str, Option<String>)]) -> String {
        let mut url = format!("{}{}", self.base, path);
        let mut pairs: Vec<String> = query
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{}={}", escape(k, false), escape(v, false)),
                None => escape(k, false),
            })
            .collect();
        if let Some(dc) = &self.datacenter {
            pairs.push(format!("dc={}", escape(dc, false)));
        }
        if !pairs.is_empty() {
            url.push('?');
            url.push_str(&pairs.join("&"));
        }
        url
    }

    /// Sends a request and returns whatever came back, whatever the status.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, Option<String>)],
        body: Option<Vec<u8>>,
    ) -> Result<Response> {
        let url = self.url(path, query);
        let mut req = self.inner.request(method.clone(), &url);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow!("Error connecting to Consul agent at {}: {}", self.base, error_chain(&e)))?;
        let status = resp.status();
        let index = resp.headers().get("X-Consul-Index").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let body = resp
            .bytes()
            .await
            .map_err(|e| anyhow!("error reading the answer to {method} {url}: {}", error_chain(&e)))?
            .to_vec();
        Ok(Response { status, index, body })
    }

    /// Like [`Client::send`], but a non-2xx status is an error: `Unexpected response code: N (body)`,
    /// the wording of Consul's own client.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, Option<String>)],
        body: Option<Vec<u8>>,
    ) -> Result<Response> {
        let resp = self.send(method, path, query, body).await?;
        check(resp)
    }
}

/// Turns a non-2xx response into an error with the status code and the plain-text body.
pub(crate) fn check(resp: Response) -> Result<Response> {
    if resp.status.is_success() {
        return Ok(resp);
    }
    let text = String::from_utf8_lossy(&resp.body);
    let text = text.trim();
    if text.is_empty() {
        bail!("Unexpected response code: {}", resp.status.as_u16());
    }
    bail!("Unexpected response code: {} ({})", resp.status.as_u16(), text)
}

/// reqwest's top-level error says little ("error sending request"); the cause says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn read_token_file(path: &str) -> Result<String> {
    let t = std::fs::read_to_string(path).with_context(|| format!("cannot read token file {path}"))?;
    Ok(t.trim().to_string())
}

/// `host:port`, `http://host:port` → `http://host:port`. TLS and unix sockets are refused with a
/// clear message: this client speaks plain HTTP only.
pub(crate) fn base_url(addr: &str) -> Result<String> {
    let addr = addr.trim().trim_end_matches('/');
    if addr.is_empty() {
        bail!("the HTTP address is empty");
    }
    if let Some(rest) = addr.strip_prefix("http://") {
        return Ok(format!("http://{rest}"));
    }
    if addr.starts_with("https://") {
        bail!("{addr}: HTTPS is not supported by this client; use http://");
    }
    if addr.starts_with("unix://") {
        bail!("{addr}: unix sockets are not supported by this client");
    }
    if addr.contains("://") {
        bail!("{addr}: unsupported scheme");
    }
    Ok(format!("http://{addr}"))
}

/// Percent-escapes a URL component. `keep_slash` keeps `/` as is, for KV key paths.
pub(crate) fn escape(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/');
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The request path for a KV key: `/v1/kv/<escaped key>`.
pub(crate) fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", escape(key, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(base_url("127.0.0.1:8500").expect("ok"), "http://127.0.0.1:8500");
        assert_eq!(base_url("http://localhost:1234/").expect("ok"), "http://localhost:1234");
        assert!(base_url("https://x:1").is_err());
        assert!(base_url("unix:///tmp/s").is_err());
        assert!(base_url("").is_err());
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("a b/c?d", true), "a%20b/c%3Fd");
        assert_eq!(escape("a/b", false), "a%2Fb");
        assert_eq!(kv_path("app/é"), "/v1/kv/app/%C3%A9");
    }

    #[test]
    fn url_building() {
        let c = Client::new(&ClientFlags {
            http_addr: Some("127.0.0.1:1".into()),
            datacenter: Some("dc2".into()),
            ..ClientFlags::default()
        })
        .expect("client");
        assert_eq!(
            c.url("/v1/kv/a", &[("recurse", None), ("separator", Some("/".into()))]),
            "http://127.0.0.1:1/v1/kv/a?recurse&separator=%2F&dc=dc2"
        );
    }

    #[test]
    fn non_success_is_an_error_with_body() {
        let r =
            Response { status: StatusCode::INTERNAL_SERVER_ERROR, index: None, body: b"No cluster leader\n".to_vec() };
        let e = check(r).expect_err("500").to_string();
        assert_eq!(e, "Unexpected response code: 500 (No cluster leader)");
    }
}
