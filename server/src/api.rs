//! The CLI's client on the SDK: the flags every client command takes (where the agent is, which
//! token and datacenter to send) turned into a [`consul_sdk::Client`], whose raw
//! [`consul_sdk::Client::call`] serves the long tail of endpoints the SDK does not wrap. Consul's
//! error conventions (a non-2xx answer becomes `Unexpected response code: N (body)`) come from
//! the SDK's [`consul_sdk::RawResponse::error_for_status`]. HTTPS (CA, client certificate,
//! server name) is the SDK's too, from the same flags and environment variables as Consul's.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Args;

/// Flags every client command takes (`-http-addr`, `-token`, `-datacenter`, and the TLS ones
/// of Consul's `HTTPFlags`). Each falls back to its environment variable when not given (or
/// given empty), as in Consul.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ClientFlags {
    /// Address of the agent's HTTP API (`host:port`, `http://host:port` or `https://host:port`);
    /// default from CONSUL_HTTP_ADDR, else 127.0.0.1:8500. CONSUL_HTTP_SSL=true makes a bare
    /// `host:port` HTTPS.
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
    /// Path to a CA file to use for TLS when communicating with Consul; default from
    /// CONSUL_CACERT.
    #[arg(long = "ca-file", value_name = "PATH")]
    pub(crate) ca_file: Option<String>,
    /// Path to a directory of CA certificates to use for TLS when communicating with Consul;
    /// default from CONSUL_CAPATH.
    #[arg(long = "ca-path", value_name = "PATH")]
    pub(crate) ca_path: Option<String>,
    /// Path to a client cert file to use for TLS when 'verify_incoming' is enabled; default from
    /// CONSUL_CLIENT_CERT.
    #[arg(long = "client-cert", value_name = "PATH")]
    pub(crate) client_cert: Option<String>,
    /// Path to a client key file to use for TLS when 'verify_incoming' is enabled; default from
    /// CONSUL_CLIENT_KEY.
    #[arg(long = "client-key", value_name = "PATH")]
    pub(crate) client_key: Option<String>,
    /// The server name the agent's certificate must carry when connecting via TLS (instead of
    /// the address's host; the SNI stays the host); default from CONSUL_TLS_SERVER_NAME.
    #[arg(long = "tls-server-name", value_name = "NAME")]
    pub(crate) tls_server_name: Option<String>,
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
    /// Builds a client from the flags, falling back to the CONSUL_HTTP_* environment (the SDK
    /// reads it for every flag left unset: flags win, as in Consul). A failure (an unusable
    /// address, token file or TLS file) is worded as Consul's CLI words it:
    /// `Error connecting to Consul agent: …`.
    pub(crate) fn new(flags: &ClientFlags) -> Result<Client> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let addr = flags.http_addr.clone().filter(|a| !a.is_empty()).or_else(|| env("CONSUL_HTTP_ADDR"));
        let connecting = |e: anyhow::Error| anyhow!(Verbatim(format!("Error connecting to Consul agent: {e:#}")));
        let address = base_url(addr.as_deref().unwrap_or("127.0.0.1:8500")).map_err(connecting)?;
        warn_unparsable_bools(&env);
        // The SDK resolves -token-file, -token, CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_TOKEN (in that
        // order; see consul_sdk::resolve_token) and refuses an unreadable file by name; it also
        // falls back to CONSUL_HTTP_SSL, CONSUL_HTTP_SSL_VERIFY, CONSUL_CACERT, CONSUL_CAPATH,
        // CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY and CONSUL_TLS_SERVER_NAME for what is unset.
        let sdk = consul_sdk::Client::new(consul_sdk::ClientConfig {
            address,
            token: flags.token.clone(),
            token_file: flags.token_file.clone(),
            datacenter: flags.datacenter.clone(),
            // A CLI command waits as long as the agent takes (a snapshot of a large store, a
            // restore): no request timeout of its own, in effect.
            timeout: NO_TIMEOUT,
            ca_file: flags.ca_file.clone(),
            ca_path: flags.ca_path.clone(),
            client_cert: flags.client_cert.clone(),
            client_key: flags.client_key.clone(),
            tls_server_name: flags.tls_server_name.clone(),
            ..consul_sdk::ClientConfig::default()
        })
        .map_err(|e| connecting(sdk_err(e)))?;
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

/// Checks the address's scheme the way Consul's client does, leaving the rest to the SDK: a bare
/// `host:port` stays bare, so `CONSUL_HTTP_SSL` can still make it HTTPS.
pub(crate) fn base_url(addr: &str) -> Result<String> {
    let addr = addr.trim().trim_end_matches('/');
    if addr.is_empty() {
        bail!("the HTTP address is empty");
    }
    match addr.split_once("://") {
        None => Ok(addr.to_string()),
        Some(("http" | "https" | "unix", _)) => Ok(addr.to_string()),
        Some((scheme, _)) => bail!("Unknown protocol scheme: {scheme}"),
    }
}

/// Consul's client logs a warning for a `CONSUL_HTTP_SSL` or `CONSUL_HTTP_SSL_VERIFY` that is
/// not a boolean (and carries on without it); the CLI shows it on stderr, as Consul's does.
fn warn_unparsable_bools(env: &dyn Fn(&str) -> Option<String>) {
    for name in ["CONSUL_HTTP_SSL", "CONSUL_HTTP_SSL_VERIFY"] {
        if let Some(v) = env(name).filter(|v| consul_sdk::client::parse_go_bool(v).is_none()) {
            // hclog's quoting: the value is a quoted Go string inside a quoted field.
            let go = format!("strconv.ParseBool: parsing {v:?}: invalid syntax");
            eprintln!("[WARN]  consul-api: could not parse {name}: error={go:?}");
        }
    }
}

pub(crate) use consul_sdk::client::{escape, kv_path};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(base_url("127.0.0.1:8500").expect("ok"), "127.0.0.1:8500");
        assert_eq!(base_url("http://localhost:1234/").expect("ok"), "http://localhost:1234");
        assert_eq!(base_url("https://x:1").expect("ok"), "https://x:1");
        assert_eq!(base_url("unix:///tmp/s").expect("ok"), "unix:///tmp/s");
        assert_eq!(base_url("ftp://x").expect_err("scheme").to_string(), "Unknown protocol scheme: ftp");
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
