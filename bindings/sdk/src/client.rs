//! A client for any Consul-compatible agent's HTTP API (consul-rs or HashiCorp's).
//!
//! Every method is `async` and runs on whatever tokio runtime polls it; the bindings poll them on
//! the facade's runtime ([`crate::runtime`]). `Client` is cheap to clone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::error::{Error, ErrorCode, Result};
use crate::tls;
use crate::types::{
    AgentMember, AgentService, CheckKind, Consistency, EventFilter, HealthCheck, HealthFilter, KvPair, KvPairWire,
    Locality, Node, PutOptions, QueryMeta, QueryOptions, ServiceEntry, ServiceRegistration, UserEvent, UserEventWire,
};
use crate::watch::{Watch, WatchOptions, WatchSpec};

/// Where and how to reach an agent.
///
/// Every option left unset (`None`, an empty string, `false`) falls back to the environment
/// variable Consul's own client reads, when the client is made ([`Client::new`]): explicit
/// options beat the environment, as `-ca-file` beats `CONSUL_CACERT` in Consul's CLI.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL (`http://host:port`, `https://host:port`), bare `host:port`, or an agent's Unix
    /// socket (`unix:///path`, plain HTTP) (default `CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`).
    pub address: String,
    /// Whether a bare `host:port` address is reached over HTTPS: Consul's `Scheme`, default
    /// `CONSUL_HTTP_SSL`. An `https://` address always is; once HTTPS is asked for here, an
    /// `http://` address is reached over HTTPS too (Consul never falls back to plain HTTP).
    pub https: Option<bool>,
    /// ACL token sent as `X-Consul-Token` on every request (watches, locks, discovery and
    /// elections included). See [`resolve_token`] for the precedence over `token_file` and the
    /// `CONSUL_HTTP_TOKEN` / `CONSUL_HTTP_TOKEN_FILE` environment.
    pub token: Option<String>,
    /// A file holding the ACL token (read once, when the client is made; whitespace trimmed).
    pub token_file: Option<String>,
    /// Datacenter for every request (default: the agent's).
    pub datacenter: Option<String>,
    /// Timeout of a non-blocking request; blocking queries get their wait on top.
    pub timeout: Duration,
    /// PEM file of the CAs that sign the agent's certificate (default `CONSUL_CACERT`; else
    /// `ca_path`; else the system's CAs). Beats `ca_path` when both are set, as in Consul.
    pub ca_file: Option<String>,
    /// Directory of PEM CA files, read recursively (default `CONSUL_CAPATH`).
    pub ca_path: Option<String>,
    /// PEM client certificate, for agents with `verify_incoming` (default
    /// `CONSUL_CLIENT_CERT`). Needs `client_key`.
    pub client_cert: Option<String>,
    /// PEM private key of `client_cert` (default `CONSUL_CLIENT_KEY`).
    pub client_key: Option<String>,
    /// The name the agent's certificate must carry, when the address's host is not it (default
    /// `CONSUL_TLS_SERVER_NAME`; a `:port` is dropped). Only verification uses it: the TLS
    /// SNI still names the address's host.
    pub tls_server_name: Option<String>,
    /// Accept any certificate from the agent (default: `CONSUL_HTTP_SSL_VERIFY=false`). For
    /// tests only: anyone between the client and the agent can read and change the traffic.
    pub insecure_skip_verify: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            address: std::env::var("CONSUL_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8500".into()),
            // The environment's token and TLS settings are resolved in `Client::new`, after the
            // explicit options, so an explicit `token_file` still beats `CONSUL_HTTP_TOKEN`.
            https: None,
            token: None,
            token_file: None,
            datacenter: None,
            timeout: Duration::from_secs(10),
            ca_file: None,
            ca_path: None,
            client_cert: None,
            client_key: None,
            tls_server_name: None,
            insecure_skip_verify: false,
        }
    }
}

#[derive(Debug)]
struct Inner {
    /// What request URLs start with (`http://localhost` for a Unix socket).
    base: String,
    /// The agent's address as given (`unix:///path` for a Unix socket), for messages.
    address: String,
    token: Option<String>,
    datacenter: Option<String>,
    timeout: Duration,
    http: reqwest::Client,
    /// The TLS settings of an `https://` client, for [`Client::transport_error`]'s probe.
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// A Consul HTTP API client.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// A response: status, metadata and body.
struct Answer {
    status: StatusCode,
    meta: QueryMeta,
    body: Bytes,
}

impl Answer {
    fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::new(ErrorCode::Internal, format!("unexpected answer from the agent: {e}")))
    }
}

/// An agent's answer to [`Client::call`], whatever its status.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers (names lower-case, values that are not text left out).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

fn response_headers(resp: &reqwest::Response) -> Vec<(String, String)> {
    resp.headers().iter().filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string()))).collect()
}

/// An answer read as it arrives ([`Client::call_streaming`]).
#[derive(Debug)]
pub struct StreamingResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers (names lower-case, values that are not text left out).
    pub headers: Vec<(String, String)>,
    resp: reqwest::Response,
}

impl StreamingResponse {
    /// The next piece of the body as the agent sent it; `None` once the agent ended it.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        Ok(self.resp.chunk().await?)
    }
}

impl RawResponse {
    /// A header's value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// `X-Consul-Index`, when present and numeric.
    pub fn index(&self) -> Option<u64> {
        self.header("X-Consul-Index").and_then(|v| v.parse().ok())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::new(ErrorCode::Internal, format!("the agent returned invalid JSON: {e}")))
    }

    /// `Ok(self)` for a 2xx answer; otherwise an error with Consul's own client wording,
    /// `Unexpected response code: N (body)`, and the code the status maps to.
    pub fn error_for_status(self) -> Result<RawResponse> {
        if self.is_success() {
            return Ok(self);
        }
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        let mut err = Error::from_http(self.status, text);
        err.message = if text.is_empty() {
            format!("Unexpected response code: {}", self.status)
        } else {
            format!("Unexpected response code: {} ({text})", self.status)
        };
        Err(err)
    }
}

/// Percent-escapes a URL component (RFC 3986 unreserved characters stay). `keep_slash` keeps
/// `/` as is, for KV key paths.
pub fn escape(s: &str, keep_slash: bool) -> String {
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
pub fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", escape(key, true))
}

fn header_u64(h: &reqwest::header::HeaderMap, name: &str) -> u64 {
    h.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn url_path(s: &str) -> String {
    // Keys may hold any character but a leading '/'; escape what URLs would misread, keep '/'.
    s.split('/')
        .map(|seg| form_urlencoded::byte_serialize(seg.as_bytes()).collect::<String>().replace('+', "%20"))
        .collect::<Vec<_>>()
        .join("/")
}

fn decode_pair(w: KvPairWire) -> Result<KvPair> {
    let value = match w.value {
        None => None,
        Some(v) => Some(Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .map_err(|e| Error::new(ErrorCode::Internal, format!("bad base64 in KV answer: {e}")))?,
        )),
    };
    Ok(KvPair {
        key: w.key,
        value,
        flags: w.flags,
        create_index: w.create_index,
        modify_index: w.modify_index,
        lock_index: w.lock_index,
        session: w.session.filter(|s| !s.is_empty()),
    })
}

fn decode_event(w: UserEventWire) -> Result<UserEvent> {
    let payload = match w.payload {
        None => None,
        Some(p) => Some(Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| Error::new(ErrorCode::Internal, format!("bad base64 in event payload: {e}")))?,
        )),
    };
    Ok(UserEvent {
        id: w.id,
        name: w.name,
        payload: payload.filter(|p| !p.is_empty()),
        node_filter: w.node_filter,
        service_filter: w.service_filter,
        tag_filter: w.tag_filter,
        version: w.version,
        ltime: w.ltime,
    })
}

/// Durations as the HTTP API takes them, formatted by the core's one Go-duration formatter. A
/// zero is sent as 1 ms: Consul reads `0s` waits and intervals as "use the default".
fn go_duration(d: Duration) -> String {
    crate::options::duration::format_go_duration(d.max(Duration::from_millis(1)))
}

/// The token a client sends, from its options and the environment (`env` looks a variable up;
/// empty values count as unset):
///
/// 1. `token_file` given explicitly, 2. `token` given explicitly, 3. `CONSUL_HTTP_TOKEN_FILE`,
/// 4. `CONSUL_HTTP_TOKEN`.
///
/// Within one level the file wins, as in Consul (`-token-file` is used "instead of" `-token`, and
/// `CONSUL_HTTP_TOKEN_FILE` instead of `CONSUL_HTTP_TOKEN`); a file that holds only whitespace
/// falls through to the next source, as Consul's client does. Unlike Consul, an explicit option
/// always beats the environment (Consul lets `CONSUL_HTTP_TOKEN_FILE` override an explicit
/// `-token`, which surprises). An unreadable file is an [`ErrorCode::InvalidArgument`] error
/// naming it.
pub fn resolve_token(
    token: Option<&str>,
    token_file: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>> {
    let read = |path: &str| -> Result<Option<String>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorCode::InvalidArgument,
                format!("Error loading token file {path} : open {path}: {}", go_io_error(&e)),
            )
        })?;
        Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty()))
    };
    if let Some(path) = token_file.filter(|p| !p.is_empty()) {
        if let Some(t) = read(path)? {
            return Ok(Some(t));
        }
    }
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        return Ok(Some(t.to_string()));
    }
    if let Some(path) = env("CONSUL_HTTP_TOKEN_FILE").filter(|p| !p.is_empty()) {
        if let Some(t) = read(&path)? {
            return Ok(Some(t));
        }
    }
    Ok(env("CONSUL_HTTP_TOKEN").filter(|t| !t.is_empty()))
}

/// An I/O error as Go prints it: the OS's text in lower case, without Rust's ` (os error N)`.
pub(crate) fn go_io_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

/// Refuses a token that cannot be an HTTP header value (a newline would split the request).
fn check_token(t: &str) -> Result<()> {
    if t.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(Error::invalid("token", "must not contain control characters"));
    }
    Ok(())
}

/// The base URL for `address`, and whether it is HTTPS, by Consul's rules: `https://` always
/// is; `http://` and a bare `host:port` are when `https` (Consul's scheme, from
/// `CONSUL_HTTP_SSL`) says so; any other scheme is refused.
fn base_url(address: &str, https: bool) -> Result<(String, bool)> {
    // A socket path is taken as is (a trailing '/' is not a path's to lose).
    if let Some(path) = address.trim().strip_prefix("unix://") {
        if path.is_empty() {
            return Err(Error::invalid("address", format!("{}: no socket path", address.trim())));
        }
        return Ok((format!("unix://{path}"), false));
    }
    let address = address.trim().trim_end_matches('/');
    if address.is_empty() {
        return Err(Error::invalid("address", "must not be empty"));
    }
    let default = if https { "https" } else { "http" };
    let (scheme, rest) = match address.split_once("://") {
        None => (default, address),
        Some(("http", rest)) => (default, rest),
        Some(("https", rest)) => ("https", rest),
        Some((other, _)) => return Err(Error::invalid("address", format!("Unknown protocol scheme: {other}"))),
    };
    let base = format!("{scheme}://{rest}");
    reqwest::Url::parse(&base).map_err(|e| Error::invalid("address", format!("{base:?}: {e}")))?;
    Ok((base, scheme == "https"))
}

/// A boolean environment variable as Go's `strconv.ParseBool` reads it (`1`, `t`, `true`,
/// `TRUE`, `0`, `f`, `false`, …); unset or empty: `None`. A value it cannot read is logged, as
/// Consul's client does, and counts as `invalid`. (Consul reads an unreadable
/// `CONSUL_HTTP_SSL_VERIFY` as "do not verify"; we keep verifying: a typo must not turn
/// certificate checks off.)
fn env_bool(env: impl Fn(&str) -> Option<String>, name: &str, invalid: bool) -> Option<bool> {
    let v = env(name).filter(|v| !v.is_empty())?;
    match parse_go_bool(&v) {
        Some(b) => Some(b),
        None => {
            tracing::warn!(variable = name, value = %v, "could not parse {name}: not a boolean");
            Some(invalid)
        }
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

impl Client {
    /// A client for `config`, with the environment filling what it leaves unset (see
    /// [`ClientConfig`]). Fails, as [`ErrorCode::InvalidArgument`], on an unusable address, an
    /// unreadable token file, a token that cannot be sent as a header, or TLS files that cannot
    /// be used (the message names the file).
    pub fn new(config: ClientConfig) -> Result<Client> {
        Self::with_env(config, |k| std::env::var(k).ok())
    }

    /// [`Client::new`] with `env` in place of the process environment.
    pub(crate) fn with_env(config: ClientConfig, env: impl Fn(&str) -> Option<String>) -> Result<Client> {
        let token = resolve_token(config.token.as_deref(), config.token_file.as_deref(), &env)?;
        if let Some(t) = &token {
            check_token(t)?;
        }
        let env_set = |k: &str| env(k).filter(|v| !v.is_empty());
        let given = |v: Option<String>, k: &str| v.filter(|v| !v.is_empty()).or_else(|| env_set(k));
        let https = config.https.or_else(|| env_bool(&env, "CONSUL_HTTP_SSL", false)).unwrap_or(false);
        let (base, https) = base_url(&config.address, https)?;
        let tls = tls::TlsOptions {
            ca_file: given(config.ca_file, "CONSUL_CACERT"),
            ca_path: given(config.ca_path, "CONSUL_CAPATH"),
            client_cert: given(config.client_cert, "CONSUL_CLIENT_CERT"),
            client_key: given(config.client_key, "CONSUL_CLIENT_KEY"),
            server_name: given(config.tls_server_name, "CONSUL_TLS_SERVER_NAME"),
            insecure_skip_verify: config.insecure_skip_verify
                || env_bool(&env, "CONSUL_HTTP_SSL_VERIFY", true) == Some(false),
        };
        let tls = tls::client_config(&tls, https).map_err(|e| Error::new(ErrorCode::InvalidArgument, e.to_string()))?;
        // An agent's Unix socket: every request goes to it, with `localhost` as the URL's host
        // (Consul's client does the same); the address shown stays `unix:///path`.
        let (base, address, socket) = match base.strip_prefix("unix://") {
            Some(path) => ("http://localhost".to_string(), base.clone(), Some(std::path::PathBuf::from(path))),
            None => (base.clone(), base, None),
        };
        let mut builder = reqwest::Client::builder();
        if let Some(path) = socket {
            builder = builder.unix_socket(path);
        }
        let http = builder
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(60))
            // reqwest would otherwise look for a process-wide rustls provider (and panic without
            // one): the SDK never installs one, so embedding programs keep theirs.
            .tls_backend_preconfigured(tls.clone())
            .build()
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
        let tls = https.then(|| Arc::new(tls));
        Ok(Client {
            inner: Arc::new(Inner {
                base,
                address,
                token,
                datacenter: config.datacenter,
                timeout: config.timeout,
                http,
                tls,
            }),
        })
    }

    /// The agent's base URL.
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// The ACL token this client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.inner.token.as_deref()
    }

    /// The same client (same agent, datacenter, timeout and connection pool) sending `token`
    /// instead (`None`: no token): the per-call override for every method, watches and locks
    /// included.
    pub fn with_token(&self, token: Option<&str>) -> Result<Client> {
        let token = token.filter(|t| !t.is_empty()).map(str::to_string);
        if let Some(t) = &token {
            check_token(t)?;
        }
        Ok(Client {
            inner: Arc::new(Inner {
                base: self.inner.base.clone(),
                address: self.inner.address.clone(),
                token,
                datacenter: self.inner.datacenter.clone(),
                timeout: self.inner.timeout,
                http: self.inner.http.clone(),
                tls: self.inner.tls.clone(),
            }),
        })
    }

    /// A transport failure as an [`Error`]. On HTTPS, when its causes do not say why, the TLS
    /// probe's finding is added: an agent's refusal of the client certificate can reach the
    /// connection before the request does, and then only the probe sees it (see
    /// [`tls::refusal_reason`]).
    async fn transport_error(&self, e: reqwest::Error) -> Error {
        let said_why = crate::error::tls_cause_words(&e).is_some();
        let mut err = Error::from(e);
        if let (false, ErrorCode::Connection, Some(config)) = (said_why, err.code, &self.inner.tls) {
            if let Some(why) = tls::refusal_reason(&self.inner.base, config.clone(), Duration::from_secs(1)).await {
                err.message = format!("{}: {why}", err.message);
            }
        }
        err
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        mut params: Vec<(String, String)>,
        q: Option<&QueryOptions>,
        body: Option<Vec<u8>>,
    ) -> Result<Answer> {
        let mut timeout = self.inner.timeout;
        if let Some(q) = q {
            match q.consistency {
                Consistency::Default => {}
                Consistency::Stale => params.push(("stale".into(), String::new())),
                Consistency::Consistent => params.push(("consistent".into(), String::new())),
            }
            if let Some(index) = q.index.filter(|i| *i > 0) {
                params.push(("index".into(), index.to_string()));
                let wait = q.wait.unwrap_or(Duration::from_secs(300));
                params.push(("wait".into(), go_duration(wait)));
                // The server may hold the request for wait + wait/16.
                timeout += wait + wait / 16;
            }
            if let Some(dc) = &q.datacenter {
                params.push(("dc".into(), dc.clone()));
            }
            if let Some(near) = q.near.as_ref().filter(|n| !n.is_empty()) {
                params.push(("near".into(), near.clone()));
            }
        }
        if let Some(dc) = &self.inner.datacenter {
            if !params.iter().any(|(k, _)| k == "dc") {
                params.push(("dc".into(), dc.clone()));
            }
        }
        let mut url = format!("{}{}", self.inner.base, path);
        if !params.is_empty() {
            let query: Vec<String> = params
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        k.clone()
                    } else {
                        format!("{k}={}", form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>())
                    }
                })
                .collect();
            url.push('?');
            url.push_str(&query.join("&"));
        }
        let mut req = self.inner.http.request(method, url).timeout(timeout);
        // A per-call token (QueryOptions.token) beats the client's.
        let token = q.and_then(|q| q.token.as_deref()).filter(|t| !t.is_empty()).or(self.inner.token.as_deref());
        if let Some(t) = token {
            check_token(t)?;
            req = req.header("X-Consul-Token", t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Err(self.transport_error(e).await),
        };
        let status = resp.status();
        let h = resp.headers();
        let meta = QueryMeta {
            index: header_u64(h, "X-Consul-Index"),
            known_leader: h.get("X-Consul-KnownLeader").and_then(|v| v.to_str().ok()) == Some("true"),
            last_contact_ms: header_u64(h, "X-Consul-LastContact"),
        };
        let body = resp.bytes().await?;
        Ok(Answer { status, meta, body })
    }

    /// Fails unless the answer is 2xx.
    fn ok(a: Answer) -> Result<Answer> {
        if a.status.is_success() {
            Ok(a)
        } else {
            Err(Error::from_http(a.status.as_u16(), &String::from_utf8_lossy(&a.body)))
        }
    }

    /// Like [`Client::ok`], but a 404 is "nothing there".
    fn ok_or_missing(a: Answer) -> Result<Option<Answer>> {
        if a.status == StatusCode::NOT_FOUND {
            Ok(None)
        } else {
            Self::ok(a).map(Some)
        }
    }

    /// Sends any request to the agent and returns its answer whatever the status: the long tail
    /// of endpoints this client does not wrap (the `consul-rs` CLI is built on it).
    ///
    /// `path` is already escaped (see [`escape`]); `query` pairs are escaped here, a `None` value
    /// gives a bare flag (`?recurse`). The client's datacenter is added as `dc` unless `query`
    /// has one, its token as `X-Consul-Token`. A transport failure is an
    /// [`ErrorCode::Connection`] (or [`ErrorCode::Timeout`]) error whose message says which agent
    /// could not be reached and why, with the whole cause chain.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, Option<&str>)],
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse> {
        self.call_inner(method, path, query, body, None).await
    }

    /// [`Client::call`] for a blocking query: the request may take `wait` (+ 1/16, the server's
    /// jitter) on top of the client's timeout.
    pub(crate) async fn call_blocking(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, Option<&str>)],
        wait: Option<Duration>,
    ) -> Result<RawResponse> {
        self.call_inner(method, path, query, None, wait).await
    }

    async fn call_inner(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, Option<&str>)],
        body: Option<Vec<u8>>,
        wait: Option<Duration>,
    ) -> Result<RawResponse> {
        let timeout = self.inner.timeout + wait.map(|w| w + w / 16).unwrap_or_default();
        let (resp, method, url) = self.send_raw(method, path, query, body, timeout).await?;
        let status = resp.status().as_u16();
        let headers = response_headers(&resp);
        let body = resp.bytes().await.map_err(|e| {
            let mut err = Error::from(e);
            err.message = format!("error reading the answer to {method} {url}: {}", err.message);
            err
        })?;
        Ok(RawResponse { status, headers, body })
    }

    /// Sends a request whose answer is a stream (`/v1/agent/monitor`): the body is read chunk
    /// by chunk as the agent sends it, with no deadline (the stream ends when the agent ends
    /// it or the [`StreamingResponse`] is dropped).
    pub async fn call_streaming(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, Option<&str>)],
    ) -> Result<StreamingResponse> {
        // Long enough never to fire, short enough not to overflow a clock.
        let (resp, _, _) = self.send_raw(method, path, query, None, Duration::from_secs(365 * 24 * 3600)).await?;
        Ok(StreamingResponse { status: resp.status().as_u16(), headers: response_headers(&resp), resp })
    }

    async fn send_raw(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, Option<&str>)],
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(reqwest::Response, Method, String)> {
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| Error::invalid("method", e))?;
        let mut pairs: Vec<String> = query
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{}={}", escape(k, false), escape(v, false)),
                None => escape(k, false),
            })
            .collect();
        if let Some(dc) = &self.inner.datacenter {
            if !query.iter().any(|(k, _)| *k == "dc") {
                pairs.push(format!("dc={}", escape(dc, false)));
            }
        }
        let mut url = format!("{}{}", self.inner.base, path);
        if !pairs.is_empty() {
            url.push('?');
            url.push_str(&pairs.join("&"));
        }
        let mut req = self.inner.http.request(method.clone(), &url).timeout(timeout);
        if let Some(t) = &self.inner.token {
            req = req.header("X-Consul-Token", t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                // The message has the whole cause chain (see `Error::from`).
                let mut err = self.transport_error(e).await;
                err.message = format!("Error connecting to Consul agent at {}: {}", self.inner.address, err.message);
                return Err(err);
            }
        };
        Ok((resp, method, url))
    }

    // ---- KV ----

    /// Reads one key (`None` if absent).
    pub async fn kv_get(&self, key: &str, q: &QueryOptions) -> Result<(QueryMeta, Option<KvPair>)> {
        check_key(key)?;
        let a = self.request(Method::GET, &format!("/v1/kv/{}", url_path(key)), vec![], Some(q), None).await?;
        let meta = a.meta;
        match Self::ok_or_missing(a)? {
            None => Ok((meta, None)),
            Some(a) => {
                let mut pairs: Vec<KvPairWire> = a.json()?;
                Ok((meta, pairs.pop().map(decode_pair).transpose()?))
            }
        }
    }

    /// Reads every key under `prefix`.
    pub async fn kv_list(&self, prefix: &str, q: &QueryOptions) -> Result<(QueryMeta, Vec<KvPair>)> {
        let params = vec![("recurse".to_string(), String::new())];
        let a = self.request(Method::GET, &format!("/v1/kv/{}", url_path(prefix)), params, Some(q), None).await?;
        let meta = a.meta;
        match Self::ok_or_missing(a)? {
            None => Ok((meta, Vec::new())),
            Some(a) => {
                let pairs: Vec<KvPairWire> = a.json()?;
                Ok((meta, pairs.into_iter().map(decode_pair).collect::<Result<_>>()?))
            }
        }
    }

    /// Lists key names under `prefix`, folded at `separator`.
    pub async fn kv_keys(
        &self,
        prefix: &str,
        separator: Option<&str>,
        q: &QueryOptions,
    ) -> Result<(QueryMeta, Vec<String>)> {
        let mut params = vec![("keys".to_string(), String::new())];
        if let Some(sep) = separator {
            params.push(("separator".into(), sep.into()));
        }
        let a = self.request(Method::GET, &format!("/v1/kv/{}", url_path(prefix)), params, Some(q), None).await?;
        let meta = a.meta;
        match Self::ok_or_missing(a)? {
            None => Ok((meta, Vec::new())),
            Some(a) => Ok((meta, a.json()?)),
        }
    }

    /// Writes a key; `false` when a CAS or lock condition failed.
    pub async fn kv_put(&self, key: &str, value: impl Into<Bytes>, o: &PutOptions) -> Result<bool> {
        check_key(key)?;
        let given = [o.cas.is_some(), o.acquire.is_some(), o.release.is_some()].iter().filter(|b| **b).count();
        if given > 1 {
            return Err(Error::invalid("cas/acquire/release", "only one may be given"));
        }
        let mut params = Vec::new();
        if let Some(c) = o.cas {
            params.push(("cas".into(), c.to_string()));
        }
        if let Some(f) = o.flags {
            params.push(("flags".into(), f.to_string()));
        }
        if let Some(s) = &o.acquire {
            params.push(("acquire".into(), s.clone()));
        }
        if let Some(s) = &o.release {
            params.push(("release".into(), s.clone()));
        }
        let value: Bytes = value.into();
        let a =
            self.request(Method::PUT, &format!("/v1/kv/{}", url_path(key)), params, None, Some(value.to_vec())).await?;
        Self::ok(a)?.json()
    }

    /// Deletes a key (or, with `recurse`, every key under the prefix); `false` when a CAS failed.
    pub async fn kv_delete(&self, key: &str, recurse: bool, cas: Option<u64>) -> Result<bool> {
        if !recurse {
            check_key(key)?;
        }
        let mut params = Vec::new();
        if recurse {
            params.push(("recurse".into(), String::new()));
        }
        if let Some(c) = cas {
            params.push(("cas".into(), c.to_string()));
        }
        let a = self.request(Method::DELETE, &format!("/v1/kv/{}", url_path(key)), params, None, None).await?;
        Self::ok(a)?.json()
    }

    /// Runs a transaction (`/v1/txn`, Consul's JSON operation list); returns the answer's JSON.
    /// A rolled-back transaction is an [`ErrorCode::Conflict`] error carrying the per-op errors.
    pub async fn txn(&self, ops: &Value) -> Result<Value> {
        let body = serde_json::to_vec(ops).map_err(|e| Error::invalid("ops", e))?;
        let a = self.request(Method::PUT, "/v1/txn", vec![], None, Some(body)).await?;
        Self::ok(a)?.json()
    }

    // ---- status ----

    /// The leader's server address (`""` if none).
    pub async fn status_leader(&self) -> Result<String> {
        Self::ok(self.request(Method::GET, "/v1/status/leader", vec![], None, None).await?)?.json()
    }

    /// The voting servers' addresses.
    pub async fn status_peers(&self) -> Result<Vec<String>> {
        Self::ok(self.request(Method::GET, "/v1/status/peers", vec![], None, None).await?)?.json()
    }

    // ---- catalog and health ----

    /// Service names with their tags.
    pub async fn catalog_services(&self, q: &QueryOptions) -> Result<(QueryMeta, BTreeMap<String, Vec<String>>)> {
        let a = Self::ok(self.request(Method::GET, "/v1/catalog/services", vec![], Some(q), None).await?)?;
        Ok((a.meta, a.json()?))
    }

    /// Nodes.
    pub async fn catalog_nodes(&self, q: &QueryOptions) -> Result<(QueryMeta, Vec<Node>)> {
        let a = Self::ok(self.request(Method::GET, "/v1/catalog/nodes", vec![], Some(q), None).await?)?;
        Ok((a.meta, a.json()?))
    }

    /// The `Locality` of node `name` (`None` when the node is unknown or has none). Reads
    /// `/v1/catalog/nodes` filtered to that node, not `/v1/catalog/node/:name`, whose answer
    /// lists every service of the node.
    pub async fn node_locality(&self, name: &str) -> Result<Option<Locality>> {
        check_name("node", name)?;
        let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
        let params = vec![("filter".to_string(), format!("Node == \"{quoted}\""))];
        let a = Self::ok(self.request(Method::GET, "/v1/catalog/nodes", params, None, None).await?)?;
        let nodes: Vec<Node> = a.json()?;
        Ok(nodes.into_iter().find(|n| n.node == name).and_then(|n| n.locality))
    }

    /// Instances of `name` with their nodes and checks.
    pub async fn health_service(
        &self,
        name: &str,
        f: &HealthFilter,
        q: &QueryOptions,
    ) -> Result<(QueryMeta, Vec<ServiceEntry>)> {
        check_name("name", name)?;
        let mut params = Vec::new();
        if f.passing {
            params.push(("passing".into(), String::new()));
        }
        if let Some(t) = &f.tag {
            params.push(("tag".into(), t.clone()));
        }
        let a = Self::ok(
            self.request(Method::GET, &format!("/v1/health/service/{}", url_path(name)), params, Some(q), None).await?,
        )?;
        Ok((a.meta, a.json()?))
    }

    /// Checks of service `name`.
    pub async fn health_checks(&self, name: &str, q: &QueryOptions) -> Result<(QueryMeta, Vec<HealthCheck>)> {
        check_name("name", name)?;
        let a = Self::ok(
            self.request(Method::GET, &format!("/v1/health/checks/{}", url_path(name)), vec![], Some(q), None).await?,
        )?;
        Ok((a.meta, a.json()?))
    }

    /// Checks in `state` (`any`, `passing`, `warning`, `critical`).
    pub async fn health_state(&self, state: &str, q: &QueryOptions) -> Result<(QueryMeta, Vec<HealthCheck>)> {
        if !matches!(state, "any" | "passing" | "warning" | "critical") {
            return Err(Error::invalid("state", "use any, passing, warning or critical"));
        }
        let a =
            Self::ok(self.request(Method::GET, &format!("/v1/health/state/{state}"), vec![], Some(q), None).await?)?;
        Ok((a.meta, a.json()?))
    }

    /// Registers a node, and optionally a service and checks, directly in the catalog.
    pub async fn catalog_register(&self, registration: &Value) -> Result<()> {
        let body = serde_json::to_vec(registration).map_err(|e| Error::invalid("registration", e))?;
        Self::ok(self.request(Method::PUT, "/v1/catalog/register", vec![], None, Some(body)).await?).map(|_| ())
    }

    // ---- prepared queries ----

    /// Creates a prepared query (`POST /v1/query`, Consul's `PreparedQuery` JSON); returns its ID.
    pub async fn query_create(&self, definition: &Value) -> Result<String> {
        let body = serde_json::to_vec(definition).map_err(|e| Error::invalid("definition", e))?;
        let v: Value = Self::ok(self.request(Method::POST, "/v1/query", vec![], None, Some(body)).await?)?.json()?;
        v.get("ID").and_then(Value::as_str).map(str::to_string).ok_or_else(|| Error::invalid("answer", "no ID"))
    }

    /// Every prepared query the token may see.
    pub async fn query_list(&self, q: &QueryOptions) -> Result<(QueryMeta, Vec<Value>)> {
        let a = Self::ok(self.request(Method::GET, "/v1/query", vec![], Some(q), None).await?)?;
        Ok((a.meta, a.json()?))
    }

    /// One prepared query by ID (`None` when it does not exist).
    pub async fn query_get(&self, id: &str, q: &QueryOptions) -> Result<(QueryMeta, Option<Value>)> {
        check_name("id", id)?;
        let a = self.request(Method::GET, &format!("/v1/query/{}", url_path(id)), vec![], Some(q), None).await?;
        if a.status == StatusCode::NOT_FOUND {
            return Ok((a.meta, None));
        }
        let a = Self::ok(a)?;
        let list: Vec<Value> = a.json()?;
        Ok((a.meta, list.into_iter().next()))
    }

    /// Replaces prepared query `id`'s definition.
    pub async fn query_update(&self, id: &str, definition: &Value) -> Result<()> {
        check_name("id", id)?;
        let body = serde_json::to_vec(definition).map_err(|e| Error::invalid("definition", e))?;
        let path = format!("/v1/query/{}", url_path(id));
        Self::ok(self.request(Method::PUT, &path, vec![], None, Some(body)).await?).map(|_| ())
    }

    /// Deletes prepared query `id`.
    pub async fn query_delete(&self, id: &str) -> Result<()> {
        check_name("id", id)?;
        let path = format!("/v1/query/{}", url_path(id));
        Self::ok(self.request(Method::DELETE, &path, vec![], None, None).await?).map(|_| ())
    }

    /// Executes the prepared query with this ID or name (`PreparedQueryExecuteResponse` JSON);
    /// `limit` 0 means all, `near` sorts by distance from a node (`_agent`: this agent).
    pub async fn query_execute(&self, id_or_name: &str, limit: u32, near: Option<&str>) -> Result<Value> {
        check_name("id_or_name", id_or_name)?;
        let mut params = Vec::new();
        if limit > 0 {
            params.push(("limit".to_string(), limit.to_string()));
        }
        if let Some(n) = near {
            params.push(("near".to_string(), n.to_string()));
        }
        let path = format!("/v1/query/{}/execute", url_path(id_or_name));
        Self::ok(self.request(Method::GET, &path, params, None, None).await?)?.json()
    }

    // ---- agent ----

    /// `/v1/agent/self`.
    pub async fn agent_self(&self) -> Result<Value> {
        Self::ok(self.request(Method::GET, "/v1/agent/self", vec![], None, None).await?)?.json()
    }

    /// The services registered on this agent, by instance ID (`/v1/agent/services`).
    pub async fn agent_services(&self) -> Result<BTreeMap<String, AgentService>> {
        Self::ok(self.request(Method::GET, "/v1/agent/services", vec![], None, None).await?)?.json()
    }

    /// The checks registered on this agent, by check ID (`/v1/agent/checks`).
    pub async fn agent_checks(&self) -> Result<BTreeMap<String, HealthCheck>> {
        Self::ok(self.request(Method::GET, "/v1/agent/checks", vec![], None, None).await?)?.json()
    }

    /// Registers a service (with its checks) on the agent.
    pub async fn service_register(&self, reg: &ServiceRegistration) -> Result<()> {
        let body = registration_json(reg)?;
        let a = self
            .request(Method::PUT, "/v1/agent/service/register", vec![], None, Some(body.to_string().into_bytes()))
            .await?;
        Self::ok(a).map(|_| ())
    }

    /// Registers a service from Consul's own registration JSON (the body of
    /// `/v1/agent/service/register`, `Check`/`Checks` included) as-is.
    pub async fn service_register_json(&self, registration: &Value) -> Result<()> {
        if !registration.is_object() {
            return Err(Error::invalid("registration", "must be a JSON object"));
        }
        let body = serde_json::to_vec(registration).map_err(|e| Error::invalid("registration", e))?;
        Self::ok(self.request(Method::PUT, "/v1/agent/service/register", vec![], None, Some(body)).await?).map(|_| ())
    }

    /// Deregisters a service from the agent.
    pub async fn service_deregister(&self, service_id: &str) -> Result<()> {
        check_name("service_id", service_id)?;
        let path = format!("/v1/agent/service/deregister/{}", url_path(service_id));
        Self::ok(self.request(Method::PUT, &path, vec![], None, None).await?).map(|_| ())
    }

    /// Reports a TTL check's status (`pass`, `warn` or `fail`) with a note.
    pub async fn check_update_ttl(&self, check_id: &str, status: &str, note: Option<&str>) -> Result<()> {
        check_name("check_id", check_id)?;
        if !matches!(status, "pass" | "warn" | "fail") {
            return Err(Error::invalid("status", "use pass, warn or fail"));
        }
        let params = note.map(|n| vec![("note".to_string(), n.to_string())]).unwrap_or_default();
        let path = format!("/v1/agent/check/{status}/{}", url_path(check_id));
        Self::ok(self.request(Method::PUT, &path, params, None, None).await?).map(|_| ())
    }

    /// Members of the agent's LAN gossip pool (WAN with `wan`).
    pub async fn agent_members(&self, wan: bool) -> Result<Vec<AgentMember>> {
        let params = if wan { vec![("wan".to_string(), "1".to_string())] } else { vec![] };
        Self::ok(self.request(Method::GET, "/v1/agent/members", params, None, None).await?)?.json()
    }

    /// Asks the agent to join the gossip pool of the agent at `address` (`host` or `host:port`).
    pub async fn agent_join(&self, address: &str, wan: bool) -> Result<()> {
        check_name("address", address)?;
        let params = if wan { vec![("wan".to_string(), "1".to_string())] } else { vec![] };
        let path = format!("/v1/agent/join/{}", url_path(address));
        Self::ok(self.request(Method::PUT, &path, params, None, None).await?).map(|_| ())
    }

    /// Asks the agent to leave its pool gracefully and shut down.
    pub async fn agent_leave(&self) -> Result<()> {
        Self::ok(self.request(Method::PUT, "/v1/agent/leave", vec![], None, None).await?).map(|_| ())
    }

    /// Marks a failed member as left (`prune`: forget it entirely).
    pub async fn agent_force_leave(&self, node: &str, prune: bool) -> Result<()> {
        check_name("node", node)?;
        let params = if prune { vec![("prune".to_string(), "1".to_string())] } else { vec![] };
        let path = format!("/v1/agent/force-leave/{}", url_path(node));
        Self::ok(self.request(Method::PUT, &path, params, None, None).await?).map(|_| ())
    }

    // ---- network coordinates ----

    /// Whether the servers hold a LAN network coordinate for `node`
    /// (`/v1/coordinate/node/:node`), with the coordinate table's index, which changes whenever
    /// any node's coordinate does. `false` when there is none yet (404) or coordinates are
    /// disabled (401): that is when `near` sorting leaves results in their natural order.
    pub async fn coordinate_exists(&self, node: &str, q: &QueryOptions) -> Result<(QueryMeta, bool)> {
        check_name("node", node)?;
        let path = format!("/v1/coordinate/node/{}", url_path(node));
        let a = self.request(Method::GET, &path, vec![], Some(q), None).await?;
        if a.status == StatusCode::NOT_FOUND || a.status == StatusCode::UNAUTHORIZED {
            return Ok((a.meta, false));
        }
        let a = Self::ok(a)?;
        let entries: Option<Vec<Value>> = a.json()?;
        Ok((a.meta, entries.is_some_and(|e| !e.is_empty())))
    }

    // ---- events ----

    /// Fires a user event (payload at most 512 bytes); returns it with its ID.
    pub async fn event_fire(&self, name: &str, payload: impl Into<Bytes>, filter: &EventFilter) -> Result<UserEvent> {
        check_name("name", name)?;
        let payload: Bytes = payload.into();
        let mut params = Vec::new();
        for (k, v) in [("node", &filter.node), ("service", &filter.service), ("tag", &filter.tag)] {
            if let Some(v) = v {
                params.push((k.to_string(), v.clone()));
            }
        }
        let path = format!("/v1/event/fire/{}", url_path(name));
        let a = self.request(Method::PUT, &path, params, None, Some(payload.to_vec())).await?;
        decode_event(Self::ok(a)?.json()?)
    }

    /// The agent's recent user events, oldest first (only those named `name` if given). The
    /// index of an event list is a hash of the newest event, not a Raft index.
    pub async fn event_list(&self, name: Option<&str>, q: &QueryOptions) -> Result<(QueryMeta, Vec<UserEvent>)> {
        let params = name.map(|n| vec![("name".to_string(), n.to_string())]).unwrap_or_default();
        let a = Self::ok(self.request(Method::GET, "/v1/event/list", params, Some(q), None).await?)?;
        let wire: Option<Vec<UserEventWire>> = a.json()?;
        let events = wire.unwrap_or_default().into_iter().map(decode_event).collect::<Result<Vec<_>>>()?;
        Ok((a.meta, events))
    }

    // ---- sessions ----

    /// Creates a session (`/v1/session/create`); returns its ID.
    pub async fn session_create(&self, body: &Value) -> Result<String> {
        let a =
            self.request(Method::PUT, "/v1/session/create", vec![], None, Some(body.to_string().into_bytes())).await?;
        let v: Value = Self::ok(a)?.json()?;
        v.get("ID")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Error::new(ErrorCode::Internal, "session create answered without an ID"))
    }

    /// Destroys a session.
    pub async fn session_destroy(&self, id: &str) -> Result<()> {
        check_name("id", id)?;
        Self::ok(self.request(Method::PUT, &format!("/v1/session/destroy/{}", url_path(id)), vec![], None, None).await?)
            .map(|_| ())
    }

    /// Renews a TTL session; [`ErrorCode::NotFound`] once it is gone.
    pub async fn session_renew(&self, id: &str) -> Result<()> {
        check_name("id", id)?;
        Self::ok(self.request(Method::PUT, &format!("/v1/session/renew/{}", url_path(id)), vec![], None, None).await?)
            .map(|_| ())
    }

    /// Starts a watch: a pull stream of results of `spec`, as a blocking-query loop.
    pub fn watch(&self, spec: WatchSpec, opts: WatchOptions) -> Watch {
        Watch::start(self.clone(), spec, opts)
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("key", "must not be empty"));
    }
    if key.starts_with('/') {
        return Err(Error::invalid("key", "must not begin with '/'"));
    }
    Ok(())
}

fn check_name(what: &str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid(what, "must not be empty"));
    }
    Ok(())
}

pub(crate) fn registration_json(reg: &ServiceRegistration) -> Result<Value> {
    reg.validate()?;
    let checks: Vec<Value> = reg
        .checks
        .iter()
        .map(|c| {
            let mut v = match &c.kind {
                CheckKind::Http { url } => json!({ "HTTP": url }),
                CheckKind::Tcp { address } => json!({ "TCP": address }),
                CheckKind::Grpc { target } => json!({ "GRPC": target }),
                CheckKind::Ttl { ttl } => json!({ "TTL": go_duration(*ttl) }),
            };
            let obj = v.as_object_mut().ok_or_else(|| Error::new(ErrorCode::Internal, "check JSON"))?;
            if let Some(i) = c.interval {
                obj.insert("Interval".into(), json!(go_duration(i)));
            } else if !matches!(c.kind, CheckKind::Ttl { .. }) {
                obj.insert("Interval".into(), json!("10s"));
            }
            if let Some(t) = c.timeout {
                obj.insert("Timeout".into(), json!(go_duration(t)));
            }
            if let Some(d) = c.deregister_critical_after {
                obj.insert("DeregisterCriticalServiceAfter".into(), json!(go_duration(d)));
            }
            Ok(v)
        })
        .collect::<Result<_>>()?;
    let mut v = json!({ "Name": reg.name, "Tags": reg.tags, "Meta": reg.meta, "Checks": checks });
    if let Some(obj) = v.as_object_mut() {
        if let Some(id) = &reg.id {
            obj.insert("ID".into(), json!(id));
        }
        if let Some(a) = &reg.address {
            obj.insert("Address".into(), json!(a));
        }
        if let Some(p) = reg.port {
            obj.insert("Port".into(), json!(p));
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_arguments() {
        assert!(Client::new(ClientConfig { address: "".into(), ..ClientConfig::default() }).is_err());
        let c =
            Client::new(ClientConfig { address: "127.0.0.1:8500".into(), ..ClientConfig::default() }).expect("client");
        assert_eq!(c.address(), "http://127.0.0.1:8500");
        assert!(check_key("/lead").is_err());
        assert_eq!(url_path("a b/c?d"), "a%20b/c%3Fd");
    }

    #[test]
    fn registration_shape() {
        let reg = ServiceRegistration {
            name: "web".into(),
            port: Some(8080),
            checks: vec![crate::types::CheckDefinition {
                kind: CheckKind::Ttl { ttl: Duration::from_secs(10) },
                interval: None,
                timeout: None,
                deregister_critical_after: None,
            }],
            ..ServiceRegistration::default()
        };
        let v = registration_json(&reg).expect("json");
        assert_eq!(v["Name"], "web");
        assert_eq!(v["Checks"][0]["TTL"], "10s");
        assert!(registration_json(&ServiceRegistration::default()).is_err());
    }
}

#[cfg(test)]
mod token_tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, String)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn token_precedence() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write");
            p.to_string_lossy().into_owned()
        };
        let explicit_file = f("explicit", "from-file\n");
        let env_file = f("env", "  env-file  ");
        let blank = f("blank", " \n");
        let all = [("CONSUL_HTTP_TOKEN", "env-token".to_string()), ("CONSUL_HTTP_TOKEN_FILE", env_file.clone())];
        let r = |t: Option<&str>, tf: Option<&str>, e: &[(&str, String)]| resolve_token(t, tf, env(e)).expect("ok");
        assert_eq!(r(Some("opt"), Some(&explicit_file), &all).as_deref(), Some("from-file"));
        assert_eq!(r(Some("opt"), None, &all).as_deref(), Some("opt"));
        assert_eq!(r(Some("opt"), Some(&blank), &all).as_deref(), Some("opt"));
        assert_eq!(r(None, None, &all).as_deref(), Some("env-file"));
        assert_eq!(r(None, None, &all[..1]).as_deref(), Some("env-token"));
        assert_eq!(r(Some(""), None, &[]), None);
        let e = resolve_token(None, Some("/nonexistent/token"), env(&[])).expect_err("missing file");
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert_eq!(
            e.message,
            "Error loading token file /nonexistent/token : open /nonexistent/token: no such file or directory"
        );
        let e =
            resolve_token(None, None, env(&[("CONSUL_HTTP_TOKEN_FILE", "/nonexistent/t".into())])).expect_err("env");
        assert!(e.message.contains("/nonexistent/t"));
    }

    #[test]
    fn token_header_and_override() {
        let base = ClientConfig { address: "127.0.0.1:1".into(), token: Some("a".into()), ..ClientConfig::default() };
        let c = Client::new(base.clone()).expect("client");
        assert_eq!(c.token(), Some("a"));
        assert_eq!(c.with_token(Some("b")).expect("b").token(), Some("b"));
        assert_eq!(c.with_token(None).expect("none").token(), None);
        assert!(c.with_token(Some("x\ny")).is_err());
        assert!(Client::new(ClientConfig { token: Some("bad\r\n".into()), ..base }).is_err());
    }
}

#[cfg(test)]
mod https_tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    fn config(address: &str) -> ClientConfig {
        ClientConfig { address: address.into(), ..ClientConfig::default() }
    }

    /// reqwest is built with rustls and no crypto provider: a client builder not handed a
    /// configuration panics. Every client the SDK makes, HTTP or HTTPS, must build without any
    /// environment and without a process-wide provider — and must not install one.
    #[test]
    fn clients_build_without_env_or_a_process_wide_provider() {
        for address in ["127.0.0.1:8500", "http://127.0.0.1:8500", "https://127.0.0.1:8501", "https://localhost"] {
            let c = Client::with_env(config(address), |_| None).expect("client");
            assert!(c.address().starts_with("http"), "{}", c.address());
        }
        let skip = ClientConfig { insecure_skip_verify: true, ..config("https://127.0.0.1:8501") };
        Client::with_env(skip, |_| None).expect("skip-verify client");
        let named = ClientConfig { tls_server_name: Some("server.dc1.consul".into()), ..config("https://[::1]:8501") };
        // Verifying a name needs CAs: the system's here, and a machine may have none.
        if let Err(e) = Client::with_env(named, |_| None) {
            assert!(e.message.contains("no CA certificates"), "{}", e.message);
        }
        Client::new(ClientConfig::default()).expect("from the process environment");
        assert!(rustls::crypto::CryptoProvider::get_default().is_none(), "no provider installed process-wide");
    }

    #[test]
    fn scheme_follows_consul() {
        let base = |address: &str, e: &[(&str, &str)]| {
            Client::with_env(config(address), env(e)).map(|c| c.address().to_string())
        };
        let ssl = [("CONSUL_HTTP_SSL", "true")];
        assert_eq!(base("127.0.0.1:8500", &[]).expect("http"), "http://127.0.0.1:8500");
        assert_eq!(base("https://127.0.0.1:8501/", &[]).expect("https"), "https://127.0.0.1:8501");
        assert_eq!(base("127.0.0.1:8501", &ssl).expect("ssl"), "https://127.0.0.1:8501");
        // Once TLS is asked for, an http:// address does not turn it off (Consul's rule).
        assert_eq!(base("http://127.0.0.1:8501", &ssl).expect("ssl"), "https://127.0.0.1:8501");
        assert_eq!(base("127.0.0.1:8500", &[("CONSUL_HTTP_SSL", "0")]).expect("off"), "http://127.0.0.1:8500");
        assert_eq!(base("127.0.0.1:8500", &[("CONSUL_HTTP_SSL", "yes")]).expect("unparsable"), "http://127.0.0.1:8500");
        let explicit = ClientConfig { https: Some(false), ..config("127.0.0.1:8500") };
        assert_eq!(Client::with_env(explicit, env(&ssl)).expect("explicit").address(), "http://127.0.0.1:8500");
        let e = base("ftp://x:1", &[]).expect_err("scheme");
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::InvalidArgument, "address: Unknown protocol scheme: ftp"));
        assert_eq!(base("unix:///tmp/consul.sock", &[]).expect("unix"), "unix:///tmp/consul.sock");
        assert_eq!(base("unix:///tmp/consul.sock", &ssl).expect("unix"), "unix:///tmp/consul.sock");
        assert!(base("unix://", &[]).expect_err("no path").message.contains("no socket path"));
        assert_eq!(parse_go_bool("T"), Some(true));
        assert_eq!(parse_go_bool("False"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
    }

    #[test]
    fn tls_options_fall_back_to_the_environment() {
        // Errors show which file was used: an explicit option beats its variable, and the
        // variable is read when the option is unset or empty.
        let e = |cfg: ClientConfig, vars: &[(&str, &str)]| Client::with_env(cfg, env(vars)).expect_err("bad").message;
        let vars = [
            ("CONSUL_CACERT", "/env/ca.pem"),
            ("CONSUL_CAPATH", "/env/ca.d"),
            ("CONSUL_CLIENT_CERT", "/env/cert.pem"),
            ("CONSUL_CLIENT_KEY", "/env/key.pem"),
        ];
        let https = config("https://127.0.0.1:8501");
        assert!(e(https.clone(), &vars).contains("/env/cert.pem"), "cert before CA, as Consul loads them");
        let explicit = ClientConfig {
            client_cert: Some("/opt/cert.pem".into()),
            client_key: Some("/opt/key.pem".into()),
            ..https.clone()
        };
        assert!(e(explicit, &vars).contains("/opt/cert.pem"));
        assert!(e(https.clone(), &vars[..2]).contains("/env/ca.pem"));
        let empty = ClientConfig { ca_file: Some(String::new()), ..https.clone() };
        assert!(e(empty, &vars[..2]).contains("/env/ca.pem"), "an empty option counts as unset");
        assert!(e(https.clone(), &vars[1..2]).contains("/env/ca.d"));
        let half = e(https.clone(), &vars[3..]);
        assert_eq!(half, "both client cert and client key must be provided");
        let named = e(https.clone(), &[("CONSUL_TLS_SERVER_NAME", "bad name")]);
        assert!(named.contains("bad name"), "{named}");
        // CONSUL_HTTP_SSL_VERIFY=false skips verification: no CA is needed even with a server
        // name that the (empty) system store could never vouch for.
        let skip = [("CONSUL_HTTP_SSL_VERIFY", "false"), ("CONSUL_TLS_SERVER_NAME", "server.dc1.consul")];
        Client::with_env(https, env(&skip)).expect("skip verify");
    }
}
