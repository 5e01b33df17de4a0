//! Watch definitions: the `watches` configuration block (Consul's watch plans), parsed and
//! checked here so a bad one refuses the agent's start with a message naming the watch (its
//! index) and the field. The core only carries them: the runner that queries the agent's HTTP
//! API and calls the handlers lives in the SDK (`consul_sdk::watch_plan`), shared by the
//! `consul-rs` binary and embedders, beside the `consul-rs watch` command's loop.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::duration::parse_go_duration;

/// What a watch observes, checked: the flags or fields its type needs are present, and none it
/// does not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchView {
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

/// The parameters a watch type may be given (the `consul watch` flags and the config fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewParams {
    /// `key`.
    pub key: Option<String>,
    /// `prefix`.
    pub prefix: Option<String>,
    /// `service`.
    pub service: Option<String>,
    /// `tag` (one or several).
    pub tags: Vec<String>,
    /// `passingonly`.
    pub passingonly: bool,
    /// `state`.
    pub state: Option<String>,
    /// `name`.
    pub name: Option<String>,
}

/// A view refused: the parameter at fault (empty for the type itself) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewError {
    /// The parameter (`key`, `state`, …); `type` for an unknown or missing type.
    pub field: &'static str,
    /// What is wrong, in Consul's words where it has them.
    pub message: String,
}

impl ViewParams {
    /// The parameters set here that watch type `t` does not take, in Consul's order; an error
    /// for an unknown type.
    pub fn not_taken_by(&self, t: &str) -> Result<Vec<&'static str>, ViewError> {
        let given: [(&'static str, bool); 7] = [
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
            other => return Err(ViewError { field: "type", message: format!("Unsupported watch type: {other}") }),
        };
        Ok(given.iter().filter(|(n, set)| *set && !allowed.contains(n)).map(|(n, _)| *n).collect())
    }
}

impl WatchView {
    /// Checks `params` against the watch type `t`, as Consul's watch parser does: the
    /// parameters the type needs present, the ones it does not take refused by name.
    pub fn parse(t: &str, p: &ViewParams) -> Result<WatchView, ViewError> {
        let err = |field: &'static str, message: String| ViewError { field, message };
        if t.is_empty() {
            return Err(err("type", "Watch type must be specified".into()));
        }
        if let Some(field) = p.not_taken_by(t)?.first() {
            return Err(err(field, format!("Watch type {t} does not take {field}")));
        }
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Ok(match t {
            "key" => {
                WatchView::Key(nonempty(&p.key).ok_or_else(|| err("key", "Must specify a single key to watch".into()))?)
            }
            // The empty prefix (every key) is allowed, but it must be given.
            "keyprefix" => WatchView::KeyPrefix(
                p.prefix.clone().ok_or_else(|| err("prefix", "Must specify a key prefix to watch".into()))?,
            ),
            "services" => WatchView::Services,
            "nodes" => WatchView::Nodes,
            "event" => WatchView::Events(nonempty(&p.name)),
            "service" => WatchView::Service {
                name: nonempty(&p.service)
                    .ok_or_else(|| err("service", "Must specify a single service to watch".into()))?,
                tags: p.tags.clone(),
                passing: p.passingonly,
            },
            _ => match (nonempty(&p.service), nonempty(&p.state)) {
                (Some(_), Some(_)) => return Err(err("state", "Cannot specify both service and state".into())),
                (Some(s), None) => WatchView::ChecksOfService(s),
                (None, state) => {
                    let state = state.unwrap_or_else(|| "any".to_string());
                    if !matches!(state.as_str(), "any" | "passing" | "warning" | "critical") {
                        return Err(err(
                            "state",
                            format!("Invalid state {state:?}: use any, passing, warning or critical"),
                        ));
                    }
                    WatchView::ChecksInState(state)
                }
            },
        })
    }
}

/// One watch of the `watches` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchDef {
    /// Its place in the configuration (`watches[i]`), for log lines.
    pub index: usize,
    /// What it observes.
    pub view: WatchView,
    /// `datacenter`: query this datacenter instead of the agent's.
    pub datacenter: Option<String>,
    /// `token`: the ACL token of its queries (else the agent's default token applies).
    pub token: Option<String>,
    /// `stale`: let any server answer.
    pub stale: bool,
    /// What runs on each change.
    pub handler: WatchHandler,
}

/// A watch's handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchHandler {
    /// `args` (run directly) or the deprecated `handler` string (run through `sh -c`): the
    /// result's JSON on stdin, `CONSUL_INDEX` in the environment.
    Script {
        /// The command and its arguments (one shell command line when `shell`).
        args: Vec<String>,
        /// Run through `sh -c` (the deprecated `handler` string).
        shell: bool,
    },
    /// `handler_type = "http"`: the JSON is sent as the body, with `X-Consul-Index`.
    Http(HttpHandler),
}

/// `http_handler_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpHandler {
    /// `path`: the URL called.
    pub path: String,
    /// `method` (default `POST`).
    pub method: String,
    /// `header`: extra request headers, each with one or several values.
    pub header: BTreeMap<String, Vec<String>>,
    /// `timeout` (default 10 s).
    pub timeout: Duration,
    /// `tls_skip_verify`: accept any certificate from an `https://` path.
    pub tls_skip_verify: bool,
}

/// Consul's default for `http_handler_config.timeout`.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A watch definition refused: the field at fault (dotted below the watch) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefError {
    /// The field, like `key` or `http_handler_config.timeout`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> DefError {
    DefError { field: field.to_string(), message: message.into() }
}

fn string(field: &str, v: &Value) -> Result<String, DefError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(bad(field, format!("expected a string, got {other}"))),
    }
}

fn boolean(field: &str, v: &Value) -> Result<bool, DefError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(bad(field, format!("expected a boolean, got {other}"))),
    }
}

/// A string or a list of strings.
fn strings(field: &str, v: &Value) -> Result<Vec<String>, DefError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items.iter().map(|i| string(field, i)).collect(),
        other => Err(bad(field, format!("expected a list of strings, got {other}"))),
    }
}

/// A block: an object, or (HCL repeating it) a one-element list of one.
fn block<'v>(field: &str, v: &'v Value) -> Result<&'v Map<String, Value>, DefError> {
    match v {
        Value::Object(m) => Ok(m),
        Value::Array(items) if items.len() == 1 => block(field, &items[0]),
        other => Err(bad(field, format!("expected a block, got {other}"))),
    }
}

impl WatchDef {
    /// Parses one entry of the `watches` list (`index` is its place, kept for log lines).
    pub fn from_value(index: usize, v: &Value) -> Result<WatchDef, DefError> {
        let Value::Object(m) = v else {
            return Err(bad("", format!("expected a block (object), got {v}")));
        };
        let mut t = String::new();
        let mut p = ViewParams::default();
        let (mut datacenter, mut token, mut stale) = (None, None, false);
        let (mut args, mut handler, mut handler_type, mut http) = (None, None, None, None);
        for (k, v) in m {
            match k.as_str() {
                "type" => t = string(k, v)?,
                "key" => p.key = Some(string(k, v)?),
                "prefix" => p.prefix = Some(string(k, v)?),
                "service" => p.service = Some(string(k, v)?),
                "tag" => p.tags = strings(k, v)?,
                "passingonly" => p.passingonly = boolean(k, v)?,
                "state" => p.state = Some(string(k, v)?),
                "name" => p.name = Some(string(k, v)?),
                "datacenter" => datacenter = Some(string(k, v)?).filter(|s| !s.is_empty()),
                "token" => token = Some(string(k, v)?).filter(|s| !s.is_empty()),
                "stale" => stale = boolean(k, v)?,
                "args" => args = Some(strings(k, v)?),
                "handler" => handler = Some(string(k, v)?),
                "handler_type" => handler_type = Some(string(k, v)?),
                "http_handler_config" => http = Some(HttpHandler::from_value(v)?),
                other => return Err(bad(other, "unknown field")),
            }
        }
        let view = WatchView::parse(&t, &p).map_err(|e| bad(e.field, e.message))?;
        let handler = match handler_type.as_deref().unwrap_or("script") {
            "script" => {
                if http.is_some() {
                    return Err(bad("http_handler_config", "only for handler_type \"http\""));
                }
                match (args, handler) {
                    (Some(_), Some(_)) => return Err(bad("handler", "Only one watch handler allowed: use args")),
                    (Some(a), None) if !a.is_empty() && !a[0].is_empty() => {
                        WatchHandler::Script { args: a, shell: false }
                    }
                    (Some(_), None) => return Err(bad("args", "must name a command")),
                    (None, Some(h)) if !h.trim().is_empty() => WatchHandler::Script { args: vec![h], shell: true },
                    (None, _) => return Err(bad("args", "Must define a watch handler (args)")),
                }
            }
            "http" => {
                if args.is_some() || handler.is_some() {
                    let f = if args.is_some() { "args" } else { "handler" };
                    return Err(bad(f, "not taken by handler_type \"http\" (use http_handler_config)"));
                }
                WatchHandler::Http(
                    http.ok_or_else(|| bad("http_handler_config", "required for handler_type \"http\""))?,
                )
            }
            other => return Err(bad("handler_type", format!("Handler type '{other}' not recognized"))),
        };
        Ok(WatchDef { index, view, datacenter, token, stale, handler })
    }
}

impl HttpHandler {
    fn from_value(v: &Value) -> Result<HttpHandler, DefError> {
        let f = |k: &str| format!("http_handler_config.{k}");
        let m = block("http_handler_config", v)?;
        let mut h = HttpHandler {
            path: String::new(),
            method: "POST".into(),
            header: BTreeMap::new(),
            timeout: DEFAULT_HTTP_TIMEOUT,
            tls_skip_verify: false,
        };
        for (k, v) in m {
            match k.as_str() {
                "path" => h.path = string(&f(k), v)?,
                "method" => {
                    let m = string(&f(k), v)?.to_ascii_uppercase();
                    if m.is_empty() || !m.chars().all(|c| c.is_ascii_alphabetic()) {
                        return Err(bad(&f(k), format!("{m:?} is not an HTTP method")));
                    }
                    h.method = m;
                }
                "header" => {
                    for (name, values) in block(&f(k), v)? {
                        h.header.insert(name.clone(), strings(&format!("{}.{name}", f(k)), values)?);
                    }
                }
                "timeout" => {
                    h.timeout = match v {
                        Value::String(s) => parse_go_duration(s).map_err(|e| bad(&f(k), e))?,
                        other => {
                            return Err(bad(&f(k), format!("expected a duration string like \"10s\", got {other}")))
                        }
                    }
                }
                "tls_skip_verify" => h.tls_skip_verify = boolean(&f(k), v)?,
                other => return Err(bad(&f(other), "unknown field")),
            }
        }
        if !(h.path.starts_with("http://") || h.path.starts_with("https://")) {
            return Err(bad(&f("path"), format!("{:?} must be an http:// or https:// URL", h.path)));
        }
        if h.timeout.is_zero() {
            h.timeout = DEFAULT_HTTP_TIMEOUT;
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn def(v: Value) -> Result<WatchDef, DefError> {
        WatchDef::from_value(0, &v)
    }

    #[test]
    fn definitions_per_handler() {
        let d = def(json!({"type": "key", "key": "a/b", "args": ["/bin/handler", "-x"], "token": "t"})).expect("ok");
        assert_eq!(d.view, WatchView::Key("a/b".into()));
        assert_eq!(d.token.as_deref(), Some("t"));
        assert_eq!(d.handler, WatchHandler::Script { args: vec!["/bin/handler".into(), "-x".into()], shell: false });
        let d = def(json!({"type": "nodes", "handler": "cat >> /tmp/x"})).expect("ok");
        assert_eq!(d.handler, WatchHandler::Script { args: vec!["cat >> /tmp/x".into()], shell: true });
        let d = def(json!({"type": "service", "service": "web", "tag": "v1", "passingonly": true,
            "handler_type": "http", "http_handler_config": {"path": "http://127.0.0.1:9/h", "method": "put",
            "header": {"x-a": ["1", "2"], "x-b": "3"}, "timeout": "3s", "tls_skip_verify": true}}))
        .expect("ok");
        assert_eq!(d.view, WatchView::Service { name: "web".into(), tags: vec!["v1".into()], passing: true });
        let WatchHandler::Http(h) = d.handler else { panic!("http") };
        assert_eq!(h.method, "PUT");
        assert_eq!(h.timeout, Duration::from_secs(3));
        assert_eq!(h.header["x-a"], vec!["1", "2"]);
        assert_eq!(h.header["x-b"], vec!["3"]);
        assert!(h.tls_skip_verify);
        let d = def(json!({"type": "checks", "state": "critical", "handler_type": "http",
            "http_handler_config": [{"path": "https://h/"}]}))
        .expect("an HCL block");
        let WatchHandler::Http(h) = d.handler else { panic!("http") };
        assert_eq!((h.method.as_str(), h.timeout), ("POST", DEFAULT_HTTP_TIMEOUT));
        assert_eq!(d.view, WatchView::ChecksInState("critical".into()));
        assert_eq!(def(json!({"type": "event", "args": ["x"]})).expect("ok").view, WatchView::Events(None));
    }

    #[test]
    fn bad_definitions_name_the_field() {
        for (v, field, needle) in [
            (json!({"args": ["x"]}), "type", "must be specified"),
            (json!({"type": "bogus", "args": ["x"]}), "type", "Unsupported watch type: bogus"),
            (json!({"type": "key", "args": ["x"]}), "key", "single key"),
            (json!({"type": "key", "key": "k"}), "args", "Must define a watch handler"),
            (json!({"type": "key", "key": "k", "args": ["x"], "handler": "y"}), "handler", "Only one"),
            (json!({"type": "key", "key": "k", "prefix": "p", "args": ["x"]}), "prefix", "does not take prefix"),
            (json!({"type": "checks", "state": "sad", "args": ["x"]}), "state", "sad"),
            (json!({"type": "nodes", "args": ["x"], "handler_type": "smoke"}), "handler_type", "not recognized"),
            (json!({"type": "nodes", "handler_type": "http"}), "http_handler_config", "required"),
            (
                json!({"type": "nodes", "handler_type": "http", "http_handler_config": {"path": "ftp://x"}}),
                "http_handler_config.path",
                "http://",
            ),
            (
                json!({"type": "nodes", "handler_type": "http", "http_handler_config": {"path": "http://x",
             "timeout": "soon"}}),
                "http_handler_config.timeout",
                "",
            ),
            (json!({"type": "nodes", "args": ["x"], "colour": "red"}), "colour", "unknown field"),
            (json!({"type": "nodes", "args": 5}), "args", "expected a list of strings"),
            (json!("nodes"), "", "expected a block"),
        ] {
            let e = def(v.clone()).expect_err(&v.to_string());
            assert_eq!(e.field, field, "{v}: {e:?}");
            assert!(e.message.contains(needle), "{v}: {e:?}");
        }
    }
}
