//! `consul-rs watch`: Consul's watch command (reference §7.1, blocking queries §2.1).
//!
//! A blocking-query loop over one view (a key, a key prefix, the service list, the node list,
//! one service's health, checks, or user events). It fires once at start and then each time the result
//! changes, printing the result as JSON or running a handler with the JSON on its stdin.
//!
//! The loop is the SDK's [`consul_sdk::Watch`] over a raw endpoint (so Consul's JSON is printed
//! as the agent sent it), planned by [`consul_sdk::watch_plan`] with Consul's watch-plan rules
//! (blocking on the last index, backwards indexes reset, unchanged answers not fired, at most
//! one query per 100 ms, quadratic error backoff; user events delivered only once each) — the
//! same plans the agent's `watches` configuration block runs. The view's flags are checked by
//! the core's [`consul_core::agent::watches::WatchView::parse`], as that block's fields are.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{ArgAction, Args};
use consul_core::agent::watches::ViewParams;
use consul_sdk::watch_plan::{handler_input, render, run_script, Deliveries, WatchPlan as _};
use consul_sdk::{RetryHook, WatchOptions, WatchValue};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use crate::api::{sdk_err, Client, ClientFlags};

/// What is watched, validated (shared with the agent's `watches` block).
pub(crate) use consul_core::agent::watches::WatchView as Spec;

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

impl WatchArgs {
    /// Checks the flags against the type, as Consul does: required ones present, the ones that
    /// mean nothing for the type refused by name.
    pub(crate) fn spec(&self) -> Result<Spec> {
        let Some(t) = self.watch_type.as_deref().filter(|t| !t.is_empty()) else {
            bail!("Error! Watch type must be specified");
        };
        let params = ViewParams {
            key: self.key.clone(),
            prefix: self.prefix.clone(),
            service: self.service.clone(),
            tags: self.tags.clone(),
            passingonly: self.passingonly,
            state: self.state.clone(),
            name: self.name.clone(),
        };
        let extra = params.not_taken_by(t).map_err(|e| anyhow!("Error! {}", e.message))?;
        if !extra.is_empty() {
            let flags: Vec<String> = extra.iter().map(|n| format!("-{n}")).collect();
            bail!("Error! Watch type {t} does not take {}", flags.join(", "));
        }
        Spec::parse(t, &params).map_err(|e| anyhow!("Error! {}", e.message))
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
    spec.options(
        stale,
        RetryHook(Arc::new(|e, delay| eprintln!("Watch errored: {}; retrying in {delay:?}", e.message))),
    )
}

async fn watch_loop(client: &Client, spec: &Spec, stale: bool, sink: &mut impl Sink) -> Result<u8> {
    let watch = client.sdk().watch(spec.watch_spec(), watch_options(spec, stale));
    let mut deliveries = Deliveries::new();
    // The SDK delivers the first result and then only results that changed.
    while let Some(ev) = watch.next().await.map_err(sdk_err)? {
        let WatchValue::Raw(answer) = ev.value else { continue };
        if let Some(value) = deliveries.next(spec, answer) {
            sink.fire(ev.index, &value).await?;
        }
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
        run_script(&self.args, self.shell, index, &handler_input(value, self.events), false)
            .await
            .map(drop)
            .map_err(|e| anyhow!(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consul_sdk::watch_plan::{events_after, newest_event_id, pretty, RETRY_BASE, RETRY_MAX};
    use consul_sdk::{Backoff, Consistency, WatchSpec};
    use serde_json::json;
    use std::time::Duration;

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
