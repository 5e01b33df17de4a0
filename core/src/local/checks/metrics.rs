//! Metrics checks: scrape a Prometheus text page (plain HTTP through the check's client, HTTPS
//! with the check's TLS settings) and judge it with [`crate::local::metric_rules`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{HttpClient, Outcome};
use crate::local::metric_rules::{evaluate, parse_exposition, MetricRule, RateHistory};
use crate::state::catalog::CRITICAL;

/// The most of a page read: exporters with many series reach a few MiB.
const MAX_PAGE: usize = 8 << 20;

/// The page's bytes, or why there are none (both name the URL).
async fn fetch(
    client: Option<&HttpClient>,
    url: &str,
    header: &BTreeMap<String, Vec<String>>,
    server_name: &str,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let (code, body) = match client {
        Some(HttpClient::Plain(c)) => {
            let mut req = c.get(url);
            for (k, v) in super::http::request_headers(header) {
                req = req.header(k, v);
            }
            let mut resp = req.send().await.map_err(|e| e.to_string())?;
            let code = resp.status().as_u16();
            let mut out = Vec::new();
            while out.len() < MAX_PAGE {
                match resp.chunk().await.map_err(|e| e.to_string())? {
                    Some(chunk) => out.extend_from_slice(&chunk[..chunk.len().min(MAX_PAGE - out.len())]),
                    None => break,
                }
            }
            (code, out)
        }
        Some(HttpClient::Tls(tls)) => {
            tokio::time::timeout(timeout, super::https::request(tls, url, "GET", header, "", server_name, MAX_PAGE))
                .await
                .map_err(|_| format!("timed out after {timeout:?}"))??
        }
        None => return Err("HTTP client could not be built".into()),
    };
    if !(200..300).contains(&code) {
        return Err(format!("HTTP status {code}"));
    }
    Ok(body)
}

/// One scrape judged against `rules`; `None` while no rule can judge yet (rates before their
/// second scrape), so the status stays as it is.
pub(super) async fn check(
    client: Option<&HttpClient>,
    url: &str,
    header: &BTreeMap<String, Vec<String>>,
    server_name: &str,
    timeout: Duration,
    rules: &[MetricRule],
    history: &mut RateHistory,
) -> Option<Outcome> {
    let page = match fetch(client, url, header, server_name, timeout).await {
        Ok(p) => p,
        Err(e) => return Some((CRITICAL, format!("Metrics GET {url}: {e}"))),
    };
    let samples = match parse_exposition(&String::from_utf8_lossy(&page)) {
        Ok(s) => s,
        Err(e) => return Some((CRITICAL, format!("Metrics GET {url}: {e}"))),
    };
    let verdict = evaluate(rules, &samples, Instant::now(), history);
    let status = verdict.status?;
    Some((status, format!("Metrics GET {url}:\n{}", verdict.output)))
}
