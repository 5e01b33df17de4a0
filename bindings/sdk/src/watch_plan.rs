//! Consul's watch plans: what `consul watch` and the agent's `watches` configuration block run.
//!
//! A plan is a [`WatchView`] (checked by the core, which also parses the `watches` block) turned
//! into a blocking-query loop over the SDK's [`crate::Watch`] with Consul's watch-plan rules:
//! - the next query blocks on the `X-Consul-Index` of the last answer, with `wait=5m`;
//! - an index that goes backwards (snapshot restore, reaped tombstones) resets to 0;
//! - an answer with the same index, or with the same data as last time, does not fire;
//! - queries start at most once per 100 ms, so a churning key cannot spin the loop;
//! - errors back off quadratically (5 s, 20 s, 45 s, … up to 3 min), and every error is
//!   reported and retried.
//!
//! User events differ: their index is a hash of the newest event's ID, not a counter, so any new
//! index means new events (none is "backwards"), and each run gets only the events that arrived
//! since the last one (all of the agent's recent events at start).
//!
//! [`ConfigWatches`] runs the `watches` of an agent's configuration against that agent, with
//! script or HTTP handlers; the `consul-rs` binary and [`crate::EmbeddedAgent`] both start it.

use std::sync::Arc;
use std::time::Duration;

pub use consul_core::agent::watches::{HttpHandler, WatchDef, WatchHandler, WatchView};
use serde::Serialize as _;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

use crate::client::{escape, kv_path, Client};
use crate::types::Consistency;
use crate::watch::{Backoff, RetryHook, WatchOptions, WatchSpec, WatchValue};

/// Minimum time between the starts of two queries.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// First retry delay after an error; the n-th consecutive error waits n² times this.
pub const RETRY_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(180);
/// The blocking wait sent with each query.
pub const WAIT: Duration = Duration::from_secs(300);

/// A view's queries and results.
pub trait WatchPlan {
    /// The endpoint and its query (without `index`, `wait`, `stale`).
    fn request(&self) -> (String, Vec<(&'static str, Option<String>)>);
    /// The SDK watch spec: the endpoint as it is, a missing key or prefix as "nothing".
    fn watch_spec(&self) -> WatchSpec;
    /// Turns a delivered answer into the watched value: a missing key is `Null` (nothing to
    /// print), a missing prefix an empty list, a key's one-entry list that entry.
    fn value(&self, answer: Option<Value>) -> Value;
    /// The watch options of Consul's watch-plan rules; `on_retry` hears about each error.
    fn options(&self, stale: bool, on_retry: RetryHook) -> WatchOptions;
}

impl WatchPlan for WatchView {
    fn request(&self) -> (String, Vec<(&'static str, Option<String>)>) {
        match self {
            WatchView::Key(k) => (kv_path(k), vec![]),
            WatchView::KeyPrefix(p) => (kv_path(p), vec![("recurse", None)]),
            WatchView::Services => ("/v1/catalog/services".into(), vec![]),
            WatchView::Nodes => ("/v1/catalog/nodes".into(), vec![]),
            WatchView::Service { name, tags, passing } => {
                let mut q: Vec<(&'static str, Option<String>)> =
                    tags.iter().map(|t| ("tag", Some(t.clone()))).collect();
                if *passing {
                    q.push(("passing", None));
                }
                (format!("/v1/health/service/{}", escape(name, false)), q)
            }
            WatchView::ChecksInState(s) => (format!("/v1/health/state/{}", escape(s, false)), vec![]),
            WatchView::ChecksOfService(s) => (format!("/v1/health/checks/{}", escape(s, false)), vec![]),
            WatchView::Events(name) => {
                ("/v1/event/list".into(), name.iter().map(|n| ("name", Some(n.clone()))).collect())
            }
        }
    }

    fn watch_spec(&self) -> WatchSpec {
        let (path, query) = self.request();
        WatchSpec::Raw {
            path,
            query: query.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            opaque_index: matches!(self, WatchView::Events(_)),
            allow_missing: matches!(self, WatchView::Key(_) | WatchView::KeyPrefix(_)),
        }
    }

    fn value(&self, answer: Option<Value>) -> Value {
        match (self, answer) {
            (WatchView::Key(_), Some(v)) => v.as_array().and_then(|a| a.first()).cloned().unwrap_or(Value::Null),
            (WatchView::KeyPrefix(_), None) => Value::Array(vec![]),
            (_, v) => v.unwrap_or(Value::Null),
        }
    }

    fn options(&self, stale: bool, on_retry: RetryHook) -> WatchOptions {
        // Events live on each agent, not in the replicated state: there is nothing to read stale.
        let stale = stale && !matches!(self, WatchView::Events(_));
        WatchOptions {
            wait: WAIT,
            consistency: if stale { Consistency::Stale } else { Consistency::Default },
            min_interval: MIN_INTERVAL,
            backoff: Backoff::Quadratic { base: RETRY_BASE, max: RETRY_MAX },
            retry_all_errors: true,
            on_retry: Some(on_retry),
            ..WatchOptions::default()
        }
    }
}

/// Consul's watch output: indented with four spaces, like Go's `json.MarshalIndent`.
pub fn pretty(v: &Value) -> String {
    let mut buf = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut buf, serde_json::ser::PrettyFormatter::with_indent(b"    "));
    // Serialising a `Value` into memory cannot fail.
    let _ = v.serialize(&mut ser);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The ID of the newest event in an event list (the last one: the agent lists oldest first).
pub fn newest_event_id(list: &Value) -> Option<String> {
    list.as_array()?.last()?.get("ID")?.as_str().map(str::to_string)
}

/// The events of `list` that came after the one with ID `seen`, as Consul's event watch prunes
/// them. All of them when nothing was seen yet, or when the seen event is no longer listed (more
/// than the agent's buffer of events arrived since).
pub fn events_after(list: &Value, seen: Option<&str>) -> Vec<Value> {
    let events = list.as_array().cloned().unwrap_or_default();
    let Some(seen) = seen else { return events };
    match events.iter().position(|e| e.get("ID").and_then(Value::as_str) == Some(seen)) {
        Some(i) => events[i + 1..].to_vec(),
        None => events,
    }
}

/// Turns the delivered results of one view into what a handler gets: every result, except for
/// event views, whose runs get only the events that arrived since the last run (and nothing
/// fires when none did, after the first).
#[derive(Debug, Default)]
pub struct Deliveries {
    /// The ID of the newest user event already delivered (event views only).
    seen_event: Option<String>,
    first: bool,
}

impl Deliveries {
    /// Ready for the first result.
    pub fn new() -> Deliveries {
        Deliveries { seen_event: None, first: true }
    }

    /// The value to hand on for one delivered answer, or `None` when nothing should fire.
    pub fn next(&mut self, view: &WatchView, answer: Option<Value>) -> Option<Value> {
        let value = view.value(answer);
        let first = std::mem::replace(&mut self.first, false);
        if let WatchView::Events(_) = view {
            // Each run gets only the events that arrived since the last one.
            let fresh = events_after(&value, self.seen_event.as_deref());
            if let Some(id) = newest_event_id(&value) {
                self.seen_event = Some(id);
            }
            return (first || !fresh.is_empty()).then_some(Value::Array(fresh));
        }
        Some(value)
    }
}

/// A user event with its fields in the order Consul's watch prints them (`api.UserEvent`);
/// a `Value` would sort them by name.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OrderedEvent {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    payload: Option<String>,
    node_filter: String,
    service_filter: String,
    tag_filter: String,
    version: u64,
    #[serde(rename = "LTime")]
    ltime: u64,
}

/// The JSON text of a result: indented for the terminal, compact (one line) for a handler's
/// input. Event lists keep Consul's field order; anything else falls back to the `Value`.
pub fn render(value: &Value, events: bool, indented: bool) -> String {
    if events {
        if let Ok(list) = serde_json::from_value::<Vec<OrderedEvent>>(value.clone()) {
            let text = if indented {
                let mut buf = Vec::new();
                let mut ser = serde_json::Serializer::with_formatter(
                    &mut buf,
                    serde_json::ser::PrettyFormatter::with_indent(b"    "),
                );
                list.serialize(&mut ser).map(|()| String::from_utf8_lossy(&buf).into_owned())
            } else {
                serde_json::to_string(&list)
            };
            if let Ok(t) = text {
                return t;
            }
        }
    }
    if indented {
        pretty(value)
    } else {
        value.to_string()
    }
}

/// A handler's input for a result: its compact JSON and a newline; empty for a missing key.
pub fn handler_input(value: &Value, events: bool) -> Vec<u8> {
    if value.is_null() {
        Vec::new()
    } else {
        format!("{}\n", render(value, events, false)).into_bytes()
    }
}

/// Runs a script handler: `args` directly, or joined through `sh -c` when `shell`, with `input`
/// on stdin and `CONSUL_INDEX` set. `capture` collects its output (returned) instead of letting
/// it write to this process's stdout and stderr. A non-zero exit is an error.
pub async fn run_script(
    args: &[String],
    shell: bool,
    index: u64,
    input: &[u8],
    capture: bool,
) -> std::result::Result<String, String> {
    let Some(program) = args.first() else { return Err("no handler command".into()) };
    let mut cmd = if shell {
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c").arg(args.join(" "));
        c
    } else {
        let mut c = tokio::process::Command::new(program);
        c.args(&args[1..]);
        c
    };
    cmd.env("CONSUL_INDEX", index.to_string())
        .stdin(std::process::Stdio::piped())
        // A stopped watch must not leave its handler behind.
        .kill_on_drop(true);
    if capture {
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(|e| format!("Error starting handler: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A handler that does not read its input is fine: ignore a closed pipe.
        let _ = stdin.write_all(input).await;
        drop(stdin);
    }
    let out = child.wait_with_output().await.map_err(|e| format!("Error executing handler: {e}"))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!("Error executing handler: {}: {}", out.status, text.trim()));
    }
    Ok(text)
}

/// Calls an HTTP handler: `input` as the body, `X-Consul-Index` and the configured headers, within
/// the configured timeout. Anything but a 2xx answer is an error.
pub async fn call_http(
    http: &reqwest::Client,
    h: &HttpHandler,
    index: u64,
    input: Vec<u8>,
) -> std::result::Result<(), String> {
    let method = reqwest::Method::from_bytes(h.method.as_bytes()).map_err(|e| format!("method {}: {e}", h.method))?;
    let mut req = http
        .request(method, &h.path)
        .timeout(h.timeout)
        .header("Content-Type", "application/json")
        .header("X-Consul-Index", index.to_string())
        .body(input);
    for (name, values) in &h.header {
        for v in values {
            req = req.header(name.as_str(), v.as_str());
        }
    }
    let resp = req.send().await.map_err(|e| format!("Failed to invoke http handler {}: {e}", h.path))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("http handler {} answered {status}", h.path));
    }
    Ok(())
}

/// The `watches` of an agent's configuration, running against that agent. Dropping it, or
/// [`ConfigWatches::stop`], stops every plan (and kills a handler still running).
#[derive(Debug)]
pub struct ConfigWatches {
    cancel: CancellationToken,
}

impl ConfigWatches {
    /// Starts one plan per definition on the current tokio runtime, querying the agent through
    /// `client` (each plan with its own `token` and `datacenter` when set). A plan whose handler
    /// fails logs it and keeps watching, as Consul's do.
    pub fn start(client: &Client, defs: &[WatchDef]) -> ConfigWatches {
        let cancel = CancellationToken::new();
        for def in defs {
            let client = match &def.token {
                Some(t) => match client.with_token(Some(t)) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(watch = def.index, error = %e, "watch not started");
                        continue;
                    }
                },
                None => client.clone(),
            };
            let def = def.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = run_plan(client, def) => {}
                }
            });
        }
        ConfigWatches { cancel }
    }

    /// Stops every plan.
    pub fn stop(&self) {
        self.cancel.cancel();
    }
}

impl Drop for ConfigWatches {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The client an HTTP handler is called with.
fn handler_client(h: &HttpHandler) -> std::result::Result<reqwest::Client, String> {
    let tls = crate::tls::client_config(
        &crate::tls::TlsOptions { insecure_skip_verify: h.tls_skip_verify, ..Default::default() },
        h.path.starts_with("https://"),
    )
    .map_err(|e| e.to_string())?;
    reqwest::Client::builder().no_proxy().tls_backend_preconfigured(tls).build().map_err(|e| e.to_string())
}

async fn run_plan(client: Client, def: WatchDef) {
    let i = def.index;
    let http = match &def.handler {
        WatchHandler::Http(h) => match handler_client(h) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(watch = i, error = %e, "watch not started: cannot make its HTTP client");
                return;
            }
        },
        WatchHandler::Script { .. } => None,
    };
    let mut spec = def.view.watch_spec();
    if let (Some(dc), WatchSpec::Raw { query, .. }) = (&def.datacenter, &mut spec) {
        query.push(("dc".into(), Some(dc.clone())));
    }
    let hook = RetryHook(Arc::new(move |e, delay| {
        tracing::warn!(watch = i, error = %e.message, retry_in = ?delay, "watch errored; retrying");
    }));
    let watch = client.watch(spec, def.view.options(def.stale, hook));
    let events = matches!(def.view, WatchView::Events(_));
    let mut deliveries = Deliveries::new();
    loop {
        let ev = match watch.next().await {
            Ok(Some(ev)) => ev,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(watch = i, error = %e, "watch stopped");
                return;
            }
        };
        let WatchValue::Raw(answer) = ev.value else { continue };
        let Some(value) = deliveries.next(&def.view, answer) else { continue };
        let input = handler_input(&value, events);
        let result = match (&def.handler, &http) {
            (WatchHandler::Script { args, shell }, _) => {
                run_script(args, *shell, ev.index, &input, true).await.map(|out| {
                    if !out.trim().is_empty() {
                        tracing::info!(watch = i, output = %out.trim_end(), "watch handler output");
                    }
                })
            }
            (WatchHandler::Http(h), Some(http)) => call_http(http, h, ev.index, input).await,
            (WatchHandler::Http(_), None) => Ok(()),
        };
        if let Err(e) = result {
            tracing::error!(watch = i, error = %e, "watch handler failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(id: &str) -> Value {
        json!({"ID": id, "Name": "deploy", "Payload": null, "NodeFilter": "", "ServiceFilter": "",
               "TagFilter": "", "Version": 1, "LTime": 0})
    }

    #[test]
    fn event_deliveries_carry_only_new_events() {
        let view = WatchView::Events(None);
        let mut d = Deliveries::new();
        assert_eq!(d.next(&view, Some(json!([]))), Some(json!([])), "the first result always fires");
        assert_eq!(d.next(&view, Some(json!([event("a")]))), Some(json!([event("a")])));
        assert_eq!(d.next(&view, Some(json!([event("a")]))), None);
        assert_eq!(d.next(&view, Some(json!([event("a"), event("b")]))), Some(json!([event("b")])));
        let mut k = Deliveries::new();
        assert_eq!(k.next(&WatchView::Key("k".into()), None), Some(Value::Null));
        assert_eq!(handler_input(&Value::Null, false), Vec::<u8>::new());
        assert_eq!(handler_input(&json!({"a": 1}), false), b"{\"a\":1}\n".to_vec());
    }

    #[tokio::test]
    async fn scripts_get_index_and_input() {
        let out = run_script(&["cat; echo \"$CONSUL_INDEX\"".into()], true, 7, b"in\n", true).await.expect("runs");
        assert_eq!(out, "in\n7\n");
        let out = run_script(&["echo".into(), "a b".into()], false, 1, b"", true).await.expect("runs");
        assert_eq!(out, "a b\n");
        let e = run_script(&["exit 3".into()], true, 1, b"", true).await.expect_err("fails");
        assert!(e.contains("Error executing handler"), "{e}");
    }
}
