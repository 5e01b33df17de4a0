//! HTTPS checks: the HTTP check over TLS (rustls on ring), with Consul's `TLSSkipVerify` and
//! `TLSServerName`. Each check builds its own TLS configuration — no process-wide crypto
//! provider is installed, so embedding programs keep theirs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use super::Outcome;
use crate::local::def::MAX_OUTPUT;
use crate::state::catalog::{CRITICAL, PASSING, WARNING};

/// The TLS client configuration of one check.
pub(super) fn tls_config(skip_verify: bool) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(crate::tls::verify::any_certificate(provider))
            .with_no_client_auth()
    } else {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// Runs one HTTPS check against `url`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn check(
    tls: &Arc<ClientConfig>,
    url: &str,
    method: &str,
    header: &BTreeMap<String, Vec<String>>,
    body: &str,
    server_name: &str,
    timeout: Duration,
) -> Outcome {
    match tokio::time::timeout(timeout, request(tls, url, method, header, body, server_name, MAX_OUTPUT)).await {
        Ok(Ok((code, out))) => {
            let text = String::from_utf8_lossy(&out);
            let output = format!("HTTP {method} {url}: {code} Output: {text}");
            let status = match code {
                200..=299 => PASSING,
                429 => WARNING,
                _ => CRITICAL,
            };
            (status, output)
        }
        Ok(Err(e)) => (CRITICAL, format!("HTTP {method} {url}: {e}")),
        Err(_) => (CRITICAL, format!("HTTP {method} {url}: timed out after {timeout:?}")),
    }
}

/// One request over TLS: the status code and up to `max_body` bytes of the body.
pub(super) async fn request(
    tls: &Arc<ClientConfig>,
    url: &str,
    method: &str,
    header: &BTreeMap<String, Vec<String>>,
    body: &str,
    server_name: &str,
    max_body: usize,
) -> Result<(u16, Vec<u8>), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
    let host = parsed.host_str().ok_or("URL has no host")?.trim_matches(|c| c == '[' || c == ']').to_string();
    let port = parsed.port().unwrap_or(443);
    let sni = if server_name.is_empty() { host.clone() } else { server_name.to_string() };
    let name = ServerName::try_from(sni.clone()).map_err(|e| format!("invalid TLS server name {sni:?}: {e}"))?;
    let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let tcp = super::dial::dial(&target).await?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let path = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };
    let mut req = hyper::Request::builder().method(method).uri(path);
    let host_header = match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    req = req.header("Host", host_header).header("Connection", "close");
    for (k, v) in super::http::request_headers(header) {
        req = req.header(k, v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).map_err(|e| format!("request: {e}"))?;
    let resp = sender.send_request(req).await.map_err(|e| format!("request: {e}"))?;
    let code = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while out.len() < max_body {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data[..data.len().min(max_body - out.len())]);
                }
            }
            _ => break,
        }
    }
    driver.abort();
    Ok((code, out))
}
