//! `consul-rs watch`: Consul's watch command (reference §7.1, blocking queries §2.1).
//!
//! A blocking-query loop over one view (a key, a key prefix, the service list, the node list,
//! one service's health, checks, or user events). It fires once at start and then each time the result
//! changes, printing the result as JSON or running a handler with the JSON on its stdin.
//!
//! The loop is the SDK's [`consul_sdk::Watch`] over a raw endpoint (so Consul's JSON is printed
//! as the agent sent it), configured with Consul's watch-plan rules:
//! - the next query blocks on the `X-Consul-Index` of the last answer, with `wait=5m`;
//! - an index that goes backwards (snapshot restore, reaped tombstones) resets to 0;
//! - an answer with the same index, or with the same data as last time, does not fire;
//! - queries start at most once per 100 ms, so a churning key cannot spin the loop;
//! - errors back off quadratically (5 s, 20 s, 45 s, … up to 3 min), like Consul's watch plans,
//!   and every error is reported and retried.
//!
//! User events (`-type=event`) differ: their index is a hash of the newest event's ID, not a
//! counter, so any new index means new events (none is "backwards"), and each run gets only the
//! events that arrived since the last one (all of the agent's recent events at start).

use std::time::Duration;

use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{ArgAction, Args};
use consul_sdk::{Backoff, Consistency, RetryHook, WatchOptions, WatchSpec, WatchValue};
use serde::Serialize as _;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use crate::api::{escape, kv_path, sdk_err, Client, ClientFlags};

/// Minimum time between the starts of two queries.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// First retry delay after an error; the n-th consecutive error waits n² times this.
const RETRY_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(180);
/// The blocking wait sent with each query.
const WAIT: Duration = Duration::from_secs(300);

/// `watch` flags.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// What to watch: key, keyprefix, services, nodes, service, checks or event.
    #[arg(long = "type", value_name = "TYPE")]
    watch_type: Option<String>,
    /// The key (type key).
    #[arg(long)]
    key: Option<String>,
    /// The key prefix (type keyprefix).
    #[arg(long)]
    prefix: Option<String>,
    /// The service (type service; for checks, that service's checks).
    #[arg(long)]
    service: Option<String>,
    /// Only instances with this tag (type service); repeatable, all must match.
    #[arg(long = "tag", value_name = "TAG", action = ArgAction::Append)]
    tags: Vec<String>,
    /// Only instances whose checks all pass (type service).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    passingonly: bool,
    /// Only checks in this state: any, passing, warning, critical (type checks).
    #[arg(long)]
    state: Option<String>,
    /// Only user events with this name (type event).
    #[arg(long)]
    name: Option<String>,
    /// Let any server answer, even if it is behind the leader.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    stale: bool,
    /// Run the handler through `sh -c` (default); `-shell=false` runs it directly.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    shell: bool,
    /// The handler command; without one, results are printed.
    handler: Vec<String>,
}

/// What is watched, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Spec {
    /// One KV entry: a `KVPair`, or nothing while the key does not exist.
    Key(String),
    /// Entries under a prefix: `[KVPair]`.
    KeyPrefix(String),
    /// `{name: [tags]}`.
    Services,
    /// `[Node]`.
    Nodes,
    /// `[ServiceEntry]` of one service.
    Service {
        /// Service name.
        name: String,
        /// Required tags.
        tags: Vec<String>,
        /// `?passing`.
        passing: bool,
    },
    /// `[HealthCheck]` in a state.
    ChecksInState(String),
    /// `[HealthCheck]` of a service.
    ChecksOfService(String),
    /// `[UserEvent]`, all or those with a name: the agent's recent events at start, then only
    /// the ones that arrived since the last run.
    Events(Option<String>),
}

impl WatchArgs {
    /// Checks the flags against the type, as Consul does: required ones present, the ones that
    /// mean nothing for the type refused by name.
    pub(crate) fn spec(&self) -> Result<Spec> {
        let Some(t) = self.watch_type.as_deref().filter(|t| !t.is_empty()) else {
            bail!("Error! Watch type must be specified");
        };
        let given: Vec<(&str, bool)> = vec![
            ("key", self.key.is_some()),
            ("prefix", self.prefix.is_some()),
            ("service", self.service.is_some()),
            ("tag", !self.tags.is_empty()),
            ("passingonly", self.passingonly),
            ("state", self.state.is_some()),
            ("name", self.name.is_some()),
        ];
        let allowed: &[&str] = match t {
            "key" => &["key"],
            "keyprefix" => &["prefix"],
            "services" | "nodes" => &[],
            "service" => &["service", "tag", "passingonly"],
            "checks" => &["service", "state"],
            "event" => &["name"],
            other => bail!("Error! Unsupported watch type: {other}"),
        };
        let extra: Vec<String> =
            given.iter().filter(|(n, set)| *set && !allowed.contains(n)).map(|(n, _)| format!("-{n}")).collect();
        if !extra.is_empty() {
            bail!("Error! Watch type {t} does not take {}", extra.join(", "));
        }
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Ok(match t {
            "key" => {
                Spec::Key(nonempty(&self.key).ok_or_else(|| anyhow!("Error! Must specify a single key to watch"))?)
            }
            "keyprefix" => {
                // The empty prefix (every key) is allowed, but the flag must be given.
                Spec::KeyPrefix(
                    self.prefix.clone().ok_or_else(|| anyhow!("Error! Must specify a key prefix to watch"))?,
                )
            }
            "services" => Spec::Services,
            "nodes" => Spec::Nodes,
            "event" => Spec::Events(nonempty(&self.name)),
            "service" => Spec::Service {
                name: nonempty(&self.service)
                    .ok_or_else(|| anyhow!("Error! Must specify a single service to watch"))?,
                tags: self.tags.clone(),
                passing: self.passingonly,
            },
            _ => match (nonempty(&self.service), nonempty(&self.state)) {
                (Some(_), Some(_)) => bail!("Error! Cannot specify both -service and -state"),
                (Some(s), None) => Spec::ChecksOfService(s),
                (None, state) => {
                    let state = state.unwrap_or_else(|| "any".to_string());
                    if !matches!(state.as_str(), "any" | "passing" | "warning" | "critical") {
                        bail!("Error! Invalid -state {state:?}: use any, passing, warning or critical");
                    }
                    Spec::ChecksInState(state)
                }
            },
        })
    }
}

impl Spec {
    /// The endpoint and its query (without `index`, `wait`, `stale`).
    pub(crate) fn request(&self) -> (String, Vec<(&'static str, Option<String>)>) {
        match self {
            Spec::Key(k) => (kv_path(k), vec![]),
            Spec::KeyPrefix(p) => (kv_path(p), vec![("recurse", None)]),
            Spec::Services => ("/v1/catalog/services".into(), vec![]),
            Spec::Nodes => ("/v1/catalog/nodes".into(), vec![]),
            Spec::Service { name, tags, passing } => {
                let mut q: Vec<(&'static str, Option<String>)> =
                    tags.iter().map(|t| ("tag", Some(t.clone()))).collect();
                if *passing {
                    q.push(("passing", None));
                }
                (format!("/v1/health/service/{}", escape(name, false)), q)
            }
            Spec::ChecksInState(s) => (format!("/v1/health/state/{}", escape(s, false)), vec![]),
            Spec::ChecksOfService(s) => (format!("/v1/health/checks/{}", escape(s, false)), vec![]),
            Spec::Events(name) => ("/v1/event/list".into(), name.iter().map(|n| ("name", Some(n.clone()))).collect()),
        }
    }

    /// The SDK watch spec: the endpoint as it is, a missing key or prefix as "nothing".
    pub(crate) fn watch_spec(&self) -> WatchSpec {
        let (path, query) = self.request();
        WatchSpec::Raw {
            path,
            query: query.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            opaque_index: matches!(self, Spec::Events(_)),
            allow_missing: matches!(self, Spec::Key(_) | Spec::KeyPrefix(_)),
        }
    }

    /// Turns a delivered answer into the watched value: a missing key is `Null` (nothing to
    /// print), a missing prefix an empty list, a key's one-entry list that entry.
    pub(crate) fn value(&self, answer: Option<Value>) -> Value {
        match (self, answer) {
            (Spec::Key(_), Some(v)) => v.as_array().and_then(|a| a.first()).cloned().unwrap_or(Value::Null),
            (Spec::KeyPrefix(_), None) => Value::Array(vec![]),
            (_, v) => v.unwrap_or(Value::Null),
        }
    }
}

/// Consul's watch output: indented with four spaces, like Go's `json.MarshalIndent`.
pub(crate) fn pretty(v: &Value) -> String {
    let mut buf = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut buf, serde_json::ser::PrettyFormatter::with_indent(b"    "));
    // Serialising a `Value` into memory cannot fail.
    let _ = v.serialize(&mut ser);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The ID of the newest event in an event list (the last one: the agent lists oldest first).
pub(crate) fn newest_event_id(list: &Value) -> Option<String> {
    list.as_array()?.last()?.get("ID")?.as_str().map(str::to_string)
}

/// The events of `list` that came after the one with ID `seen`, as Consul's event watch prunes
/// them. All of them when nothing was seen yet, or when the seen event is no longer listed (more
/// than the agent's buffer of events arrived since).
pub(crate) fn events_after(list: &Value, seen: Option<&str>) -> Vec<Value> {
    let events = list.as_array().cloned().unwrap_or_default();
    let Some(seen) = seen else { return events };
    match events.iter().position(|e| e.get("ID").and_then(Value::as_str) == Some(seen)) {
        Some(i) => events[i + 1..].to_vec(),
        None => events,
    }
}

/// Runs `watch` until a signal (exit 0) or a handler failure (exit 1).
pub(crate) async fn run(a: WatchArgs) -> Result<u8> {
    let spec = a.spec()?;
    let client = Client::new(&a.client)?;
    // Fail fast when there is no agent, rather than retrying forever.
    client.call("GET", "/v1/agent/self", &[], None).await.map_err(|e| anyhow!("Error querying Consul agent: {e:#}"))?;
    let events = matches!(spec, Spec::Events(_));
    let mut handler = Handler { args: a.handler.clone(), shell: a.shell, events };
    tokio::select! {
        r = watch_loop(&client, &spec, a.stale, &mut handler) => r,
        r = shutdown_signal() => r.map(|()| 0),
    }
}

async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// Receives each new result; an error ends the watch.
trait Sink {
    /// Called at start and on every change, with the answer's index.
    async fn fire(&mut self, index: u64, value: &Value) -> Result<()>;
}

/// The SDK watch options for Consul's watch-plan rules; errors are printed and retried.
fn watch_options(spec: &Spec, stale: bool) -> WatchOptions {
    // Events live on each agent, not in the replicated state: there is nothing to read stale.
    let stale = stale && !matches!(spec, Spec::Events(_));
    WatchOptions {
        wait: WAIT,
        consistency: if stale { Consistency::Stale } else { Consistency::Default },
        min_interval: MIN_INTERVAL,
        backoff: Backoff::Quadratic { base: RETRY_BASE, max: RETRY_MAX },
        retry_all_errors: true,
        on_retry: Some(RetryHook(Arc::new(|e, delay| {
            eprintln!("Watch errored: {}; retrying in {delay:?}", e.message)
        }))),
        ..WatchOptions::default()
    }
}

async fn watch_loop(client: &Client, spec: &Spec, stale: bool, sink: &mut impl Sink) -> Result<u8> {
    let watch = client.sdk().watch(spec.watch_spec(), watch_options(spec, stale));
    // The ID of the newest user event already delivered (event watches only).
    let mut seen_event: Option<String> = None;
    let mut first = true;
    // The SDK delivers the first result and then only results that changed.
    while let Some(ev) = watch.next().await.map_err(sdk_err)? {
        let WatchValue::Raw(answer) = ev.value else { continue };
        let value = spec.value(answer);
        if let Spec::Events(_) = spec {
            // Each run gets only the events that arrived since the last one.
            let fresh = events_after(&value, seen_event.as_deref());
            if let Some(id) = newest_event_id(&value) {
                seen_event = Some(id);
            }
            if first || !fresh.is_empty() {
                sink.fire(ev.index, &Value::Array(fresh)).await?;
            }
        } else {
            sink.fire(ev.index, &value).await?;
        }
        first = false;
    }
    Ok(0)
}

/// What to do with each new result.
struct Handler {
    args: Vec<String>,
    shell: bool,
    /// The results are user event lists, printed with Consul's field order.
    events: bool,
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
/// stdin. Event lists keep Consul's field order; anything else falls back to the `Value`.
pub(crate) fn render(value: &Value, events: bool, indented: bool) -> String {
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

impl Sink for Handler {
    async fn fire(&mut self, index: u64, value: &Value) -> Result<()> {
        if self.args.is_empty() {
            if !value.is_null() {
                let mut out = tokio::io::stdout();
                out.write_all(format!("{}\n", render(value, self.events, true)).as_bytes()).await?;
                out.flush().await?;
            }
            return Ok(());
        }
        let mut cmd = if self.shell {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c").arg(self.args.join(" "));
            c
        } else {
            let mut c = tokio::process::Command::new(&self.args[0]);
            c.args(&self.args[1..]);
            c
        };
        cmd.env("CONSUL_INDEX", index.to_string())
            .stdin(std::process::Stdio::piped())
            // A watch stopped by a signal must not leave its handler behind.
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| anyhow!("Error starting handler: {e}"))?;
        // A missing key is passed as empty input.
        let input =
            if value.is_null() { Vec::new() } else { format!("{}\n", render(value, self.events, false)).into_bytes() };
        if let Some(mut stdin) = child.stdin.take() {
            // A handler that does not read its input is fine: ignore a closed pipe.
            let _ = stdin.write_all(&input).await;
            drop(stdin);
        }
        let status = child.wait().await.map_err(|e| anyhow!("Error executing handler: {e}"))?;
        if !status.success() {
            bail!("Error executing handler: {status}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(line: &str) -> WatchArgs {
        match crate::tests::parse(&format!("watch {line}")) {
            Ok(crate::Cli { command: crate::Command::Watch(a) }) => *a,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn specs_from_flags() {
        assert_eq!(args("-type=key -key a/b").spec().expect("ok"), Spec::Key("a/b".into()));
        assert_eq!(args("-type keyprefix -prefix=").spec().expect("ok"), Spec::KeyPrefix(String::new()));
        assert_eq!(args("-type=services").spec().expect("ok"), Spec::Services);
        assert_eq!(args("-type=nodes -stale").spec().expect("ok"), Spec::Nodes);
        assert_eq!(
            args("-type=service -service web -tag a -tag=b -passingonly").spec().expect("ok"),
            Spec::Service { name: "web".into(), tags: vec!["a".into(), "b".into()], passing: true }
        );
        assert_eq!(args("-type=checks").spec().expect("ok"), Spec::ChecksInState("any".into()));
        assert_eq!(args("-type=checks -state critical").spec().expect("ok"), Spec::ChecksInState("critical".into()));
        assert_eq!(args("-type=checks -service=db").spec().expect("ok"), Spec::ChecksOfService("db".into()));
        assert_eq!(args("-type=event").spec().expect("ok"), Spec::Events(None));
        assert_eq!(args("-type=event -name deploy").spec().expect("ok"), Spec::Events(Some("deploy".into())));
        assert!(args("-type=event -key=k").spec().is_err(), "event watches take only -name");
        assert!(args("-type=key -key=k -name=n").spec().is_err(), "-name is for event watches");
    }

    fn event(id: &str) -> Value {
        json!({"ID": id, "Name": "deploy", "Payload": null, "NodeFilter": "", "ServiceFilter": "",
               "TagFilter": "", "Version": 1, "LTime": 0})
    }

    #[test]
    fn events_after_the_last_seen_one() {
        let list = json!([event("a"), event("b"), event("c")]);
        assert_eq!(events_after(&list, None).len(), 3);
        assert_eq!(events_after(&list, Some("b")), vec![event("c")]);
        assert!(events_after(&list, Some("c")).is_empty());
        assert_eq!(events_after(&list, Some("evicted")).len(), 3, "an unknown last event: all are new");
        assert_eq!(newest_event_id(&list).as_deref(), Some("c"));
        assert_eq!(newest_event_id(&json!([])), None);
        assert_eq!(
            Spec::Events(Some("a b".into())).request(),
            ("/v1/event/list".to_string(), vec![("name", Some("a b".to_string()))])
        );
    }

    /// Event indexes are hashes: a "smaller" one is blocked on as it is, not reset to 0; each
    /// run gets only the events that arrived since the last; a timeout (same index) fires
    /// nothing; `-stale` is not sent.
    #[tokio::test]
    async fn event_loop_delivers_new_events_whatever_the_index() {
        let list = |ids: &[&str]| Value::Array(ids.iter().map(|i| event(i)).collect()).to_string();
        let answers = vec![
            (200, 1, list(&[])),
            (200, 900, list(&["a"])),
            (200, 900, list(&["a"])),
            (200, 5, list(&["a", "b", "c"])),
            (200, 700, list(&["a", "b", "c", "d"])),
        ];
        let server = crate::testserver::TestServer::start_indexed(answers).await;
        let client = Client::new(&ClientFlags { http_addr: Some(server.addr.clone()), ..ClientFlags::default() })
            .expect("client");
        let mut sink = Collect { seen: Vec::new(), stop_after: 4 };
        let spec = Spec::Events(Some("deploy".into()));
        let e = watch_loop(&client, &spec, true, &mut sink).await.expect_err("stopped by the sink");
        assert_eq!(e.to_string(), "enough");
        assert_eq!(
            sink.seen,
            vec![
                (1, json!([])),
                (900, json!([event("a")])),
                (5, json!([event("b"), event("c")])),
                (700, json!([event("d")])),
            ]
        );
        let targets: Vec<String> = server.requests().await.into_iter().map(|r| r.target).take(5).collect();
        assert_eq!(
            targets,
            vec![
                "/v1/event/list?name=deploy",
                "/v1/event/list?name=deploy&index=1&wait=5m0s",
                "/v1/event/list?name=deploy&index=900&wait=5m0s",
                "/v1/event/list?name=deploy&index=900&wait=5m0s",
                "/v1/event/list?name=deploy&index=5&wait=5m0s",
            ]
        );
    }

    #[test]
    fn bad_specs_are_refused() {
        for (line, needle) in [
            ("", "type must be specified"),
            ("-type=bogus", "Unsupported watch type"),
            ("-type=key", "key"),
            ("-type=service", "service"),
            ("-type=key -key=a -service=b", "-service"),
            ("-type=nodes -passingonly", "-passingonly"),
            ("-type=checks -service=a -state=any", "both"),
            ("-type=checks -state=sad", "sad"),
        ] {
            let e = args(line).spec().expect_err(line);
            assert!(format!("{e:#}").contains(needle), "{line}: {e:#}");
        }
    }

    #[test]
    fn handler_words_follow_flags() {
        let a = args("-type=nodes -shell=false cat -n");
        assert_eq!(a.handler, vec!["cat", "-n"]);
        assert!(!a.shell);
        assert!(args("-type=nodes").shell);
    }

    #[test]
    fn requests_per_type() {
        assert_eq!(Spec::Key("a b".into()).request(), ("/v1/kv/a%20b".to_string(), vec![]));
        assert_eq!(Spec::KeyPrefix("app/".into()).request(), ("/v1/kv/app/".to_string(), vec![("recurse", None)]));
        let (p, q) = Spec::Service { name: "web".into(), tags: vec!["v1".into()], passing: true }.request();
        assert_eq!(p, "/v1/health/service/web");
        assert_eq!(q, vec![("tag", Some("v1".into())), ("passing", None)]);
        assert_eq!(Spec::ChecksInState("any".into()).request().0, "/v1/health/state/any");
        assert_eq!(Spec::ChecksOfService("db".into()).request().0, "/v1/health/checks/db");
    }

    #[test]
    fn results_per_type() {
        let key = Spec::Key("k".into());
        assert_eq!(key.value(None), Value::Null);
        assert_eq!(key.value(Some(json!([{"Key": "k"}]))), json!({"Key": "k"}));
        let prefix = Spec::KeyPrefix("p".into());
        assert_eq!(prefix.value(None), json!([]));
        assert!(matches!(key.watch_spec(), WatchSpec::Raw { allow_missing: true, opaque_index: false, .. }));
        assert!(matches!(Spec::Nodes.watch_spec(), WatchSpec::Raw { allow_missing: false, .. }));
        assert!(matches!(Spec::Events(None).watch_spec(), WatchSpec::Raw { opaque_index: true, .. }));
    }

    #[test]
    fn retry_rules() {
        let b = Backoff::Quadratic { base: RETRY_BASE, max: RETRY_MAX };
        assert_eq!(b.delay(1, RETRY_MAX), Duration::from_secs(5));
        assert_eq!(b.delay(2, RETRY_MAX), Duration::from_secs(20));
        assert_eq!(b.delay(100, RETRY_MAX), RETRY_MAX);
        let o = watch_options(&Spec::Events(None), true);
        assert_eq!(o.consistency, Consistency::Default, "events are never read stale");
    }

    /// Collects results; stops the loop (with an error) once it has `stop_after`.
    struct Collect {
        seen: Vec<(u64, Value)>,
        stop_after: usize,
    }

    impl Sink for Collect {
        async fn fire(&mut self, index: u64, value: &Value) -> Result<()> {
            self.seen.push((index, value.clone()));
            if self.seen.len() >= self.stop_after {
                bail!("enough");
            }
            Ok(())
        }
    }

    /// The loop against canned answers: fires at start, not on a timeout (same index) nor on
    /// an unchanged result, resets a backwards index to 0, blocks with `index` and `wait=5m0s`,
    /// and starts at most one query per 100 ms.
    #[tokio::test]
    async fn loop_fires_on_change_only_and_resets_backwards_index() {
        let answers = vec![
            (200, 5, r#"[{"Node":"a"}]"#.to_string()),
            (200, 5, r#"[{"Node":"a"}]"#.to_string()),
            (200, 6, r#"[{"Node":"a"}]"#.to_string()),
            (200, 7, r#"[{"Node":"b"}]"#.to_string()),
            (200, 3, r#"[{"Node":"b"}]"#.to_string()),
            (200, 8, r#"[{"Node":"c"}]"#.to_string()),
        ];
        let server = crate::testserver::TestServer::start_indexed(answers).await;
        let client = Client::new(&ClientFlags { http_addr: Some(server.addr.clone()), ..ClientFlags::default() })
            .expect("client");
        let mut sink = Collect { seen: Vec::new(), stop_after: 3 };
        let started = std::time::Instant::now();
        let e = watch_loop(&client, &Spec::Nodes, true, &mut sink).await.expect_err("stopped by the sink");
        assert_eq!(e.to_string(), "enough");
        assert!(started.elapsed() >= Duration::from_millis(500), "six queries take at least 5 x 100 ms");
        assert_eq!(
            sink.seen,
            vec![(5, json!([{"Node": "a"}])), (7, json!([{"Node": "b"}])), (8, json!([{"Node": "c"}]))]
        );
        // The SDK's watch task may have sent the next query already: compare the first six.
        let targets: Vec<String> = server.requests().await.into_iter().map(|r| r.target).take(6).collect();
        assert_eq!(
            targets,
            vec![
                "/v1/catalog/nodes?stale",
                "/v1/catalog/nodes?stale&index=5&wait=5m0s",
                "/v1/catalog/nodes?stale&index=5&wait=5m0s",
                "/v1/catalog/nodes?stale&index=6&wait=5m0s",
                "/v1/catalog/nodes?stale&index=7&wait=5m0s",
                "/v1/catalog/nodes?stale",
            ]
        );
    }

    /// The handler gets CONSUL_INDEX and the compact JSON on stdin (empty for a missing key);
    /// a failing handler is an error.
    #[tokio::test]
    async fn handler_runs_with_index_and_stdin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("out");
        let script = format!("echo \"$CONSUL_INDEX\" >> '{0}'; cat >> '{0}'", f.display());
        let mut direct = Handler { args: vec!["sh".into(), "-c".into(), script.clone()], shell: false, events: false };
        direct.fire(42, &json!({"Key": "k"})).await.expect("runs");
        let mut shell = Handler { args: vec![script], shell: true, events: false };
        shell.fire(43, &Value::Null).await.expect("runs");
        assert_eq!(std::fs::read_to_string(&f).expect("written"), "42\n{\"Key\":\"k\"}\n43\n");
        let mut failing = Handler { args: vec!["exit 3".into()], shell: true, events: false };
        let e = failing.fire(1, &json!([])).await.expect_err("exit 3");
        assert!(e.to_string().contains("Error executing handler"), "{e}");
    }

    #[test]
    fn events_print_in_consuls_field_order() {
        let list = json!([event("a")]);
        assert_eq!(
            render(&list, true, false),
            r#"[{"ID":"a","Name":"deploy","Payload":null,"NodeFilter":"","ServiceFilter":"","TagFilter":"","Version":1,"LTime":0}]"#
        );
        let text = render(&list, true, true);
        assert!(text.starts_with("[\n    {\n        \"ID\": \"a\",\n        \"Name\": \"deploy\","), "{text}");
        assert_eq!(render(&json!([]), true, true), "[]");
        // Not an event list after all: printed as it came.
        assert_eq!(render(&json!([{"x": 1}]), true, false), r#"[{"x":1}]"#);
        assert_eq!(render(&json!({"b": 1, "a": 2}), false, false), r#"{"a":2,"b":1}"#);
    }

    #[test]
    fn output_is_indented_with_four_spaces() {
        assert_eq!(pretty(&json!({"a": [1]})), "{\n    \"a\": [\n        1\n    ]\n}");
        assert_eq!(pretty(&json!([])), "[]");
    }
}
