//! Watches: one pull primitive over Consul's blocking queries.
//!
//! A background task long-polls with the last `X-Consul-Index`, resets the index to 0 when it
//! goes backwards (snapshot restore, server change), backs off exponentially on errors (servers
//! restarting or electing a leader are ridden out silently), never queries more often than
//! `min_interval`, and publishes only results that changed. Delivery coalesces: a slow reader
//! gets the latest result, never a backlog.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::{Error, ErrorCode, Result};
use crate::types::{
    Consistency, HealthCheck, HealthFilter, KvPair, Node, QueryMeta, QueryOptions, ServiceEntry, UserEvent,
};

/// What to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchSpec {
    /// One key.
    Key(String),
    /// Every key under a prefix.
    KeyPrefix(String),
    /// Instances of a service.
    Service {
        /// Service name.
        name: String,
        /// Only instances whose every check passes.
        passing_only: bool,
        /// Only instances with this tag.
        tag: Option<String>,
    },
    /// Checks of a service.
    Checks {
        /// Service name.
        service: String,
    },
    /// Service names and tags.
    Services,
    /// Nodes.
    Nodes,
    /// User events this agent has seen (only those named `name` if given).
    Events {
        /// Event name filter.
        name: Option<String>,
    },
    /// Any blocking endpoint, its answer kept as JSON ([`WatchValue::Raw`]): what the typed
    /// specs do not cover, and callers that must pass Consul's JSON on untouched (the CLI's
    /// `watch`). A 404 is [`WatchValue::Raw`]`(None)` (a key that does not exist).
    Raw {
        /// The escaped path (see [`crate::client::escape`]).
        path: String,
        /// Query pairs (`None`: a bare flag); `index`, `wait` and the consistency are added.
        query: Vec<(String, Option<String>)>,
        /// The endpoint's index is opaque (a hash, like `/v1/event/list`'s), so one that went
        /// "backwards" is blocked on as it is instead of restarting from 0.
        opaque_index: bool,
        /// A 404 is a result ([`WatchValue::Raw`]`(None)`: a key that does not exist yet)
        /// rather than an error.
        allow_missing: bool,
    },
}

/// How to watch.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Longest single blocking query (default 5 min).
    pub wait: Duration,
    /// Consistency mode of the queries.
    pub consistency: Consistency,
    /// Longest pause between retries after errors (default 30 s).
    pub max_backoff: Duration,
    /// Shortest time between two queries, so churn cannot turn the loop into a flood (100 ms).
    pub min_interval: Duration,
    /// Sort service and node results by estimated round-trip time from this node
    /// ([`QueryOptions::near`]); `None` keeps Consul's natural order.
    pub near: Option<String>,
    /// How long to wait after consecutive errors.
    pub backoff: Backoff,
    /// Retry every error, also those retrying cannot fix (400, 403, 404): for callers that
    /// report errors through [`WatchOptions::on_retry`] and keep going, like Consul's watch.
    pub retry_all_errors: bool,
    /// Told about each error that will be retried, with the pause before the retry.
    pub on_retry: Option<RetryHook>,
}

/// A callback for [`WatchOptions::on_retry`].
#[derive(Clone)]
pub struct RetryHook(pub Arc<RetryFn>);

/// The function inside a [`RetryHook`]: the error and the pause before the retry.
pub type RetryFn = dyn Fn(&Error, Duration) + Send + Sync;

impl std::fmt::Debug for RetryHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryHook")
    }
}

/// The pause after the n-th consecutive error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// 100 ms doubling up to [`WatchOptions::max_backoff`], with up to 25 % jitter: servers
    /// restarting or electing a leader are ridden out quickly (the bindings' default).
    Exponential,
    /// `base × n²` up to `max`, no jitter: Consul's watch plans (5 s, 20 s, 45 s, … 3 min).
    Quadratic {
        /// The first pause.
        base: Duration,
        /// The longest pause.
        max: Duration,
    },
}

impl Backoff {
    /// The pause after the `failures`-th consecutive error (`failures` ≥ 1).
    pub fn delay(&self, failures: u32, max_backoff: Duration) -> Duration {
        match *self {
            Backoff::Exponential => {
                let base = Duration::from_millis(100).saturating_mul(1u32 << failures.saturating_sub(1).min(20));
                let base = base.min(max_backoff);
                base + Duration::from_millis(rand::random::<u64>() % (base.as_millis() as u64 / 4 + 1))
            }
            Backoff::Quadratic { base, max } => base.saturating_mul(failures.saturating_mul(failures)).min(max),
        }
    }
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            wait: Duration::from_secs(300),
            consistency: Consistency::Default,
            max_backoff: Duration::from_secs(30),
            min_interval: Duration::from_millis(100),
            near: None,
            backoff: Backoff::Exponential,
            retry_all_errors: false,
            on_retry: None,
        }
    }
}

/// A watched result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchValue {
    /// [`WatchSpec::Key`].
    Kv(Option<KvPair>),
    /// [`WatchSpec::KeyPrefix`].
    KvList(Vec<KvPair>),
    /// [`WatchSpec::Service`].
    Service(Vec<ServiceEntry>),
    /// [`WatchSpec::Checks`].
    Checks(Vec<HealthCheck>),
    /// [`WatchSpec::Services`].
    Services(BTreeMap<String, Vec<String>>),
    /// [`WatchSpec::Nodes`].
    Nodes(Vec<Node>),
    /// [`WatchSpec::Events`]: the agent's recent events, oldest first.
    Events(Vec<UserEvent>),
    /// [`WatchSpec::Raw`]: the answer's JSON, `None` for an allowed 404.
    Raw(Option<serde_json::Value>),
}

/// One delivery: the result and the index it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// `X-Consul-Index` of the result.
    pub index: u64,
    /// The result.
    pub value: WatchValue,
}

#[derive(Debug, Clone)]
enum Slot {
    Empty,
    Event(u64, Arc<WatchEvent>),
    Failed(Error),
    Closed,
}

/// A running watch. Dropping it (or [`Watch::close`]) stops the background task.
#[derive(Debug)]
pub struct Watch {
    rx: Mutex<(watch::Receiver<Slot>, u64)>,
    cancel: CancellationToken,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn fetch(client: &Client, spec: &WatchSpec, q: &QueryOptions) -> Result<(QueryMeta, WatchValue)> {
    Ok(match spec {
        WatchSpec::Key(k) => {
            let (m, v) = client.kv_get(k, q).await?;
            (m, WatchValue::Kv(v))
        }
        WatchSpec::KeyPrefix(p) => {
            let (m, v) = client.kv_list(p, q).await?;
            (m, WatchValue::KvList(v))
        }
        WatchSpec::Service { name, passing_only, tag } => {
            let f = HealthFilter { passing: *passing_only, tag: tag.clone() };
            let (m, v) = client.health_service(name, &f, q).await?;
            (m, WatchValue::Service(v))
        }
        WatchSpec::Checks { service } => {
            let (m, v) = client.health_checks(service, q).await?;
            (m, WatchValue::Checks(v))
        }
        WatchSpec::Services => {
            let (m, v) = client.catalog_services(q).await?;
            (m, WatchValue::Services(v))
        }
        WatchSpec::Nodes => {
            let (m, v) = client.catalog_nodes(q).await?;
            (m, WatchValue::Nodes(v))
        }
        WatchSpec::Events { name } => {
            let (m, v) = client.event_list(name.as_deref(), q).await?;
            (m, WatchValue::Events(v))
        }
        WatchSpec::Raw { path, query, allow_missing, .. } => {
            let mut pairs: Vec<(&str, Option<&str>)> = query.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
            match q.consistency {
                Consistency::Default => {}
                Consistency::Stale => pairs.push(("stale", None)),
                Consistency::Consistent => pairs.push(("consistent", None)),
            }
            let index = q.index.filter(|i| *i > 0).map(|i| i.to_string());
            let wait = q.wait.map(|w| crate::options::duration::format_go_duration(w.max(Duration::from_millis(1))));
            if let (Some(i), Some(w)) = (&index, &wait) {
                pairs.push(("index", Some(i)));
                pairs.push(("wait", Some(w)));
            }
            let resp = client.call_blocking("GET", path, &pairs, q.wait.filter(|_| index.is_some())).await?;
            let meta = QueryMeta { index: resp.index().unwrap_or(0), ..QueryMeta::default() };
            if resp.status == 404 && *allow_missing {
                return Ok((meta, WatchValue::Raw(None)));
            }
            let resp = resp.error_for_status()?;
            (meta, WatchValue::Raw(Some(resp.json()?)))
        }
    })
}

/// Errors that retrying cannot fix end the watch; everything else is retried with backoff.
fn is_fatal(e: &Error) -> bool {
    matches!(e.code, ErrorCode::InvalidArgument | ErrorCode::PermissionDenied | ErrorCode::NotFound)
}

async fn run(client: Client, spec: WatchSpec, opts: WatchOptions, tx: watch::Sender<Slot>, cancel: CancellationToken) {
    let mut index = 0u64;
    let mut seq = 0u64;
    let mut last: Option<WatchValue> = None;
    let mut failures = 0u32;
    loop {
        let started = tokio::time::Instant::now();
        let q = QueryOptions {
            consistency: opts.consistency,
            index: Some(index),
            wait: Some(opts.wait),
            datacenter: None,
            near: opts.near.clone(),
            token: None,
        };
        let result = tokio::select! {
            r = fetch(&client, &spec, &q) => r,
            _ = cancel.cancelled() => break,
        };
        match result {
            Ok((meta, value)) => {
                failures = 0;
                // An index that went backwards means the server's state was replaced: start over.
                // Event lists are the exception: their index is a hash of the newest event.
                let opaque_index = matches!(spec, WatchSpec::Events { .. } | WatchSpec::Raw { opaque_index: true, .. });
                index = if meta.index < index && !opaque_index { 0 } else { meta.index };
                if last.as_ref() != Some(&value) {
                    seq += 1;
                    last = Some(value.clone());
                    let event = Arc::new(WatchEvent { index: meta.index, value });
                    if tx.send(Slot::Event(seq, event)).is_err() {
                        break;
                    }
                }
                let pause = opts.min_interval.saturating_sub(started.elapsed());
                if !pause.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = cancel.cancelled() => break,
                    }
                }
            }
            Err(e) if is_fatal(&e) && !opts.retry_all_errors => {
                let _ = tx.send(Slot::Failed(e));
                return;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = opts.backoff.delay(failures, opts.max_backoff);
                tracing::debug!(error = %e, ?delay, "watch query failed; retrying");
                if let Some(hook) = &opts.on_retry {
                    (hook.0)(&e, delay);
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => break,
                }
            }
        }
    }
    let _ = tx.send(Slot::Closed);
}

impl Watch {
    /// Starts watching on the current tokio runtime (the bindings start it on the SDK runtime).
    pub(crate) fn start(client: Client, spec: WatchSpec, opts: WatchOptions) -> Watch {
        let (tx, rx) = watch::channel(Slot::Empty);
        let cancel = CancellationToken::new();
        tokio::spawn(run(client, spec, opts, tx, cancel.clone()));
        Watch { rx: Mutex::new((rx, 0)), cancel }
    }

    /// The next result that differs from the last one returned; the first call returns the
    /// current result. `Ok(None)` once the watch is closed.
    pub async fn next(&self) -> Result<Option<WatchEvent>> {
        let mut guard = self.rx.lock().await;
        let (rx, seen) = &mut *guard;
        loop {
            let slot = rx.borrow_and_update().clone();
            match slot {
                Slot::Event(seq, ev) if seq > *seen => {
                    *seen = seq;
                    return Ok(Some((*ev).clone()));
                }
                Slot::Failed(e) => return Err(e),
                Slot::Closed => return Ok(None),
                Slot::Empty | Slot::Event(..) => {}
            }
            if self.cancel.is_cancelled() {
                return Ok(None);
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return Ok(None) },
                _ = self.cancel.cancelled() => return Ok(None),
            }
        }
    }

    /// [`Watch::next`] with a deadline: [`ErrorCode::Timeout`] if nothing new arrives in time.
    pub async fn next_timeout(&self, timeout: Duration) -> Result<Option<WatchEvent>> {
        tokio::time::timeout(timeout, self.next())
            .await
            .map_err(|_| Error::new(ErrorCode::Timeout, format!("no change within {timeout:?}")))?
    }

    /// Stops the watch; a pending or later [`Watch::next`] returns `Ok(None)`. Idempotent.
    pub fn close(&self) {
        self.cancel.cancel();
    }

    /// Whether [`Watch::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.cancel.is_cancelled()
    }
}
