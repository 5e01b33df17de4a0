//! The CLI's client on the SDK: the flags every client command takes (where the agent is, which
//! token and datacenter to send) turned into a [`consul_sdk::Client`], whose raw
//! [`consul_sdk::Client::call`] serves the long tail of endpoints the SDK does not wrap. Consul's
//! error conventions (a non-2xx answer becomes `Unexpected response code: N (body)`) come from
//! the SDK's [`consul_sdk::RawResponse::error_for_status`].

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Args;

/// Flags every client command takes (`-http-addr`, `-token`, `-datacenter`).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ClientFlags {
    /// Address of the agent's HTTP API (`host:port` or `http://host:port`); default from
    /// CONSUL_HTTP_ADDR, else 127.0.0.1:8500.
    #[arg(long = "http-addr", value_name = "ADDR")]
    pub(crate) http_addr: Option<String>,
    /// ACL token (sent as X-Consul-Token); default from CONSUL_HTTP_TOKEN.
    #[arg(long)]
    pub(crate) token: Option<String>,
    /// File holding the ACL token, used instead of -token; default from CONSUL_HTTP_TOKEN_FILE
    /// (which is used instead of CONSUL_HTTP_TOKEN).
    #[arg(long = "token-file", value_name = "PATH")]
    pub(crate) token_file: Option<String>,
    /// Datacenter to query (sent as ?dc=); default: the agent's.
    #[arg(long)]
    pub(crate) datacenter: Option<String>,
}

/// An answer the caller inspects itself (status checked or not, see [`Client::send`]).
#[derive(Debug)]
pub(crate) struct Response {
    /// HTTP status.
    pub(crate) status: u16,
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

/// The SDK's client, with the CLI's query shape (owned values) and its errors as `anyhow`
/// messages: the SDK does the HTTP, the escaping, the token and datacenter, and words the
/// errors like Consul's own client.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    sdk: consul_sdk::Client,
}

/// An error the CLI prints exactly as worded, without the `Error: ` prefix (Consul's
/// `Failed to create new token: …`, `Must specify the -accessor-id parameter`).
#[derive(Debug)]
pub(crate) struct Verbatim(pub(crate) String);

impl std::fmt::Display for Verbatim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Verbatim {}

/// An SDK error as the CLI prints it: the message alone, without the code.
pub(crate) fn sdk_err(e: consul_sdk::Error) -> anyhow::Error {
    anyhow!(e.message)
}

impl Client {
    /// Builds a client from the flags, falling back to the CONSUL_HTTP_* environment.
    pub(crate) fn new(flags: &ClientFlags) -> Result<Client> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let addr = flags.http_addr.clone().or_else(|| env("CONSUL_HTTP_ADDR"));
        let base = base_url(addr.as_deref().unwrap_or("127.0.0.1:8500"))?;
        // The SDK resolves -token-file, -token, CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_TOKEN (in that
        // order; see consul_sdk::resolve_token) and refuses an unreadable file by name.
        let sdk = consul_sdk::Client::new(consul_sdk::ClientConfig {
            address: base,
            token: flags.token.clone(),
            token_file: flags.token_file.clone(),
            datacenter: flags.datacenter.clone(),
            // A CLI command waits as long as the agent takes (a snapshot of a large store, a
            // restore): no request timeout of its own, in effect.
            timeout: NO_TIMEOUT,
        })
        .map_err(sdk_err)?;
        Ok(Client { sdk })
    }

    /// The SDK client underneath, for the commands built on its typed API (watch, lock).
    pub(crate) fn sdk(&self) -> &consul_sdk::Client {
        &self.sdk
    }

    /// Sends a request and returns whatever came back, whatever the status. `query` pairs are
    /// escaped by the SDK; a `None` value gives a bare flag (`?recurse`).
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, Option<String>)],
        body: Option<Vec<u8>>,
    ) -> Result<Response> {
        let query: Vec<(&str, Option<&str>)> = query.iter().map(|(k, v)| (*k, v.as_deref())).collect();
        let resp = self.sdk.call(method, path, &query, body).await.map_err(sdk_err)?;
        Ok(Response { status: resp.status, index: resp.index(), body: resp.body.to_vec() })
    }

    /// Like [`Client::send`], but a non-2xx status is an error: `Unexpected response code: N (body)`,
    /// the wording of Consul's own client.
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, Option<String>)],
        body: Option<Vec<u8>>,
    ) -> Result<Response> {
        let resp = self.send(method, path, query, body).await?;
        check(resp)
    }
}

/// Long enough to never fire for a CLI command, short enough that adding it to "now" cannot
/// overflow a clock.
const NO_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Turns a non-2xx response into an error with the status code and the plain-text body.
pub(crate) fn check(resp: Response) -> Result<Response> {
    let Response { status, index, body } = resp;
    let raw = consul_sdk::RawResponse { status, headers: Vec::new(), body: body.into() };
    let raw = raw.error_for_status().map_err(sdk_err)?;
    Ok(Response { status, index, body: raw.body.to_vec() })
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

pub(crate) use consul_sdk::client::{escape, kv_path};

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
    fn non_success_is_an_error_with_body() {
        let r = Response { status: 500, index: None, body: b"No cluster leader\n".to_vec() };
        let e = check(r).expect_err("500").to_string();
        assert_eq!(e, "Unexpected response code: 500 (No cluster leader)");
    }
}
