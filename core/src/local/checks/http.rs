//! HTTP checks: 2xx passing, 429 warning, anything else critical; the first 4 KiB of the body
//! become the output. Plain `http://` here; `https://` checks run in [`super::https`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::Outcome;
use crate::local::def::MAX_OUTPUT;
use crate::state::catalog::{CRITICAL, PASSING, WARNING};

/// A client for one check (timeout and redirect policy are per check).
pub(super) fn client(timeout: Duration, disable_redirects: bool) -> Option<reqwest::Client> {
    let redirect =
        if disable_redirects { reqwest::redirect::Policy::none() } else { reqwest::redirect::Policy::limited(10) };
    // No keep-alive, like Consul: hundreds of checks must not hold idle connections open.
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(redirect)
        .pool_max_idle_per_host(0)
        .tls_backend_preconfigured(crate::tls::plain_client_tls())
        .build()
        .ok()
}

/// The headers a check sends: the check's own, plus Consul's `User-Agent` and `Accept` unless
/// the check sets them.
pub(super) fn request_headers(header: &BTreeMap<String, Vec<String>>) -> Vec<(&str, &str)> {
    let has = |name: &str| header.keys().any(|k| k.eq_ignore_ascii_case(name));
    let mut out = Vec::new();
    if !has("User-Agent") {
        out.push(("User-Agent", "Consul Health Check"));
    }
    if !has("Accept") {
        out.push(("Accept", "text/plain, text/*, */*"));
    }
    for (k, values) in header {
        out.extend(values.iter().map(|v| (k.as_str(), v.as_str())));
    }
    out
}

pub(super) async fn check(
    client: &reqwest::Client,
    url: &str,
    method: &str,
    header: &BTreeMap<String, Vec<String>>,
    body: &str,
) -> Outcome {
    let m = match reqwest::Method::from_bytes(method.as_bytes()) {
        Ok(m) => m,
        Err(e) => return (CRITICAL, format!("invalid method {method:?}: {e}")),
    };
    let mut req = client.request(m, url);
    for (k, v) in request_headers(header) {
        req = req.header(k, v);
    }
    if !body.is_empty() {
        req = req.body(body.to_string());
    }
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return (CRITICAL, format!("HTTP {method} {url}: {e}")),
    };
    let code = resp.status();
    let mut out = Vec::new();
    while out.len() < MAX_OUTPUT {
        match resp.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk[..chunk.len().min(MAX_OUTPUT - out.len())]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&out);
    let output = format!("HTTP {method} {url}: {code} Output: {text}");
    let status = if code.is_success() {
        PASSING
    } else if code.as_u16() == 429 {
        WARNING
    } else {
        CRITICAL
    };
    (status, output)
}
