//! Check runners: one tokio task per active check (no thread per check, so hundreds cost
//! little), each on its own timer with the first run spread randomly within the interval so
//! checks registered together do not fire together. A slow check only delays itself.
//!
//! Results go through Consul's thresholds (`SuccessBeforePassing`, `FailuresBeforeWarning`,
//! `FailuresBeforeCritical`, `agent/checks/check.go` `StatusHandler`) into the local state,
//! tagged with the registration's generation so a replaced check's old task cannot overwrite
//! the new one's status.

mod alias;
mod dial;
pub(crate) mod docker;
mod grpc;
mod http;
mod https;
mod metrics;
mod script;
mod tcp;
mod ttl;
mod udp;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::local::{CheckDefinition, CheckKind, LocalState};
use crate::replication::backend::Backend;
use crate::state::catalog::{CRITICAL, PASSING, WARNING};

/// What one probe found.
pub(crate) type Outcome = (&'static str, String);

#[derive(Debug)]
struct Handle {
    cancel: CancellationToken,
    ttl_reset: Option<Arc<Notify>>,
}

/// Shared by every check task.
#[derive(Debug, Clone)]
pub(crate) struct RunCtx {
    pub(crate) state: Arc<LocalState>,
    pub(crate) backend: Backend,
    pub(crate) node: String,
    /// The Docker engine socket Docker checks use, or why there is none.
    pub(crate) docker_socket: Result<std::path::PathBuf, String>,
}

/// Starts and stops check tasks.
#[derive(Debug)]
pub(crate) struct Runner {
    tasks: Mutex<HashMap<String, Handle>>,
    ctx: RunCtx,
    shutdown: CancellationToken,
}

impl Runner {
    /// A runner whose tasks all stop when `shutdown` is cancelled.
    pub(crate) fn new(
        state: Arc<LocalState>,
        backend: Backend,
        node: String,
        docker_socket: Result<std::path::PathBuf, String>,
        shutdown: CancellationToken,
    ) -> Self {
        Runner { tasks: Mutex::new(HashMap::new()), ctx: RunCtx { state, backend, node, docker_socket }, shutdown }
    }

    /// The Docker engine socket Docker checks use, or why there is none.
    pub(crate) fn docker_socket(&self) -> Result<&std::path::Path, &str> {
        self.ctx.docker_socket.as_deref().map_err(String::as_str)
    }

    /// Starts (or restarts) the task of `def`; checks without a runner just stop any old task.
    pub(crate) fn start(&self, def: CheckDefinition, generation: u64) {
        self.stop(&def.id);
        let cancel = self.shutdown.child_token();
        let ctx = self.ctx.clone();
        let id = def.id.clone();
        let ttl_reset = match &def.kind {
            CheckKind::Manual => return,
            CheckKind::Ttl { ttl } => {
                let reset = Arc::new(Notify::new());
                tokio::spawn(ttl::run(ctx, id.clone(), generation, *ttl, reset.clone(), cancel.clone()));
                Some(reset)
            }
            CheckKind::Alias { service, node } => {
                tokio::spawn(alias::run(ctx, id.clone(), generation, service.clone(), node.clone(), cancel.clone()));
                None
            }
            _ => {
                tokio::spawn(run_interval(ctx, def, generation, cancel.clone()));
                None
            }
        };
        self.tasks.lock().insert(id, Handle { cancel, ttl_reset });
    }

    /// Stops the task of check `id`, if any.
    pub(crate) fn stop(&self, id: &str) {
        if let Some(h) = self.tasks.lock().remove(id) {
            h.cancel.cancel();
        }
    }

    /// Restarts the TTL timer of check `id` (it just reported).
    pub(crate) fn reset_ttl(&self, id: &str) {
        if let Some(reset) = self.tasks.lock().get(id).and_then(|h| h.ttl_reset.clone()) {
            reset.notify_one();
        }
    }

    /// Number of running tasks.
    pub(crate) fn len(&self) -> usize {
        self.tasks.lock().len()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        for h in self.tasks.lock().values() {
            h.cancel.cancel();
        }
    }
}

/// Consul's `StatusHandler`: passing and warning results count as successes, critical ones as
/// failures; a status is reported only once its threshold is reached.
#[derive(Debug)]
pub(crate) struct Thresholds {
    success_before_passing: u32,
    failures_before_warning: u32,
    failures_before_critical: u32,
    successes: u32,
    failures: u32,
}

impl Thresholds {
    pub(crate) fn new(def: &CheckDefinition) -> Self {
        Thresholds {
            success_before_passing: def.success_before_passing,
            failures_before_warning: def.failures_before_warning,
            failures_before_critical: def.failures_before_critical,
            successes: 0,
            failures: 0,
        }
    }

    /// The status to report for a probe result, or `None` while a threshold is not reached.
    pub(crate) fn apply(&mut self, status: &'static str) -> Option<&'static str> {
        if status == PASSING || status == WARNING {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            (self.successes >= self.success_before_passing).then_some(status)
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.failures >= self.failures_before_critical {
                Some(CRITICAL)
            } else if self.failures >= self.failures_before_warning {
                Some(WARNING)
            } else {
                None
            }
        }
    }
}

/// The client an HTTP check keeps between runs.
enum HttpClient {
    /// Plain `http://`.
    Plain(reqwest::Client),
    /// `https://`, with the check's TLS settings.
    Tls(std::sync::Arc<rustls::ClientConfig>),
}

/// One probe's outcome, and whether its duration is a round trip to the service (what latency
/// thresholds judge): a UDP probe that heard nothing back only waited out its timeout.
async fn probe(
    def: &CheckDefinition,
    http_client: Option<&HttpClient>,
    docker_socket: &Result<std::path::PathBuf, String>,
    rates: &mut crate::local::metric_rules::RateHistory,
) -> Option<(Outcome, bool)> {
    let timeout = def.effective_timeout();
    let outcome = match &def.kind {
        CheckKind::Http { url, method, header, body, tls_server_name, .. } => match http_client {
            Some(HttpClient::Plain(client)) => http::check(client, url, method, header, body).await,
            Some(HttpClient::Tls(tls)) => https::check(tls, url, method, header, body, tls_server_name, timeout).await,
            None => (CRITICAL, "HTTP client could not be built".to_string()),
        },
        CheckKind::Tcp { address } => tcp::check(address, timeout).await,
        CheckKind::Udp { address } => return Some(udp::check(address, timeout).await),
        CheckKind::Metrics { url, header, tls_server_name, rules, .. } => {
            let outcome = metrics::check(http_client, url, header, tls_server_name, timeout, rules, rates).await?;
            return Some((outcome, false));
        }
        CheckKind::Grpc { target, .. } => grpc::check(target, timeout).await,
        CheckKind::Script { args } => script::check(args, timeout).await,
        CheckKind::Docker { container_id, args, .. } => match docker_socket {
            Ok(socket) => docker::check(socket, container_id, args, timeout).await,
            Err(why) => (CRITICAL, why.clone()),
        },
        CheckKind::Manual | CheckKind::Ttl { .. } | CheckKind::Alias { .. } => {
            (CRITICAL, "not an interval check".to_string())
        }
    };
    Some((outcome, true))
}

/// Holds a successful probe to the check's latency thresholds (`LatencyWarning`,
/// `LatencyCritical`): slower than a threshold, it reports that status, and the output says the
/// measured latency and the threshold crossed. Failed probes and checks without thresholds pass
/// through unchanged. The result then goes through [`Thresholds`] like any other, so with
/// `FailuresBeforeCritical` one slow probe does not flap the status.
pub(crate) fn apply_latency(def: &CheckDefinition, status: &'static str, output: String, took: Duration) -> Outcome {
    if status == CRITICAL {
        return (status, output);
    }
    let crossed = match (def.latency_critical, def.latency_warning) {
        (Some(c), _) if took > c => Some((CRITICAL, "critical", c)),
        (_, Some(w)) if took > w => Some((WARNING, "warning", w)),
        _ => None,
    };
    let Some((new_status, label, limit)) = crossed else { return (status, output) };
    let note = format!(
        ", latency {} > {label} {}",
        crate::duration::format_go_duration(round_ms(took)),
        crate::duration::format_go_duration(limit)
    );
    // HTTP outputs end with the response body (" Output: ..."): the verdict goes before it.
    let output = match output.find(" Output: ") {
        Some(at) => format!("{}{note}{}", &output[..at], &output[at..]),
        None => format!("{output}{note}"),
    };
    (new_status, output)
}

/// Latencies are reported to the millisecond (sub-millisecond ones to the microsecond).
fn round_ms(d: Duration) -> Duration {
    if d >= Duration::from_millis(1) {
        Duration::from_millis(d.as_millis() as u64)
    } else {
        Duration::from_micros(d.as_micros() as u64)
    }
}

/// Runs an interval check until cancelled.
async fn run_interval(ctx: RunCtx, def: CheckDefinition, generation: u64, cancel: CancellationToken) {
    let interval = def.interval.max(Duration::from_millis(10));
    let first = Duration::from_millis(rand::thread_rng().gen_range(0..interval.as_millis().max(1) as u64));
    let client = match &def.kind {
        CheckKind::Http { url, tls_skip_verify, .. } | CheckKind::Metrics { url, tls_skip_verify, .. }
            if url.to_ascii_lowercase().starts_with("https://") =>
        {
            https::tls_config(*tls_skip_verify).ok().map(HttpClient::Tls)
        }
        CheckKind::Http { disable_redirects, .. } => {
            http::client(def.effective_timeout(), *disable_redirects).map(HttpClient::Plain)
        }
        CheckKind::Metrics { .. } => http::client(def.effective_timeout(), false).map(HttpClient::Plain),
        _ => None,
    };
    let mut rates = crate::local::metric_rules::RateHistory::default();
    let mut thresholds = Thresholds::new(&def);
    tokio::select! {
        _ = tokio::time::sleep(first) => {}
        _ = cancel.cancelled() => return,
    }
    loop {
        let started = tokio::time::Instant::now();
        let result = tokio::select! {
            r = probe(&def, client.as_ref(), &ctx.docker_socket, &mut rates) => r,
            _ = cancel.cancelled() => return,
        };
        // `None`: the probe could not judge yet (a metrics rate before its second scrape).
        if let Some(((status, output), round_trip)) = result {
            let (status, output) = if round_trip {
                let took = started.elapsed();
                if def.latency_warning.is_some() || def.latency_critical.is_some() {
                    ctx.state.record_latency(&def.id, generation, round_ms(took));
                }
                apply_latency(&def, status, output, took)
            } else {
                (status, output)
            };
            if let Some(status) = thresholds.apply(status) {
                ctx.state.update_check(&def.id, Some(generation), status, output);
            } else {
                tracing::debug!(check = %def.id, status, "check result below its threshold; status kept");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(started + interval) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(sbp: u32, fbw: u32, fbc: u32) -> CheckDefinition {
        let mut d = CheckDefinition::manual("c", "c", "", "", CRITICAL);
        d.success_before_passing = sbp;
        d.failures_before_warning = fbw;
        d.failures_before_critical = fbc;
        d
    }

    #[test]
    fn latency_over_a_threshold_sets_the_status_and_says_why() {
        let mut d = def(0, 0, 0);
        d.latency_warning = Some(Duration::from_millis(150));
        d.latency_critical = Some(Duration::from_millis(300));
        let ok = || "HTTP GET http://127.0.0.1:1/: 200 OK Output: fine".to_string();
        let fast = apply_latency(&d, PASSING, ok(), Duration::from_millis(20));
        assert_eq!(fast, (PASSING, ok()));
        let slow = apply_latency(&d, PASSING, ok(), Duration::from_micros(212_400));
        assert_eq!(
            slow,
            (WARNING, "HTTP GET http://127.0.0.1:1/: 200 OK, latency 212ms > warning 150ms Output: fine".to_string())
        );
        let slower = apply_latency(&d, PASSING, "TCP connect 127.0.0.1:1: Success".into(), Duration::from_millis(400));
        assert_eq!(slower, (CRITICAL, "TCP connect 127.0.0.1:1: Success, latency 400ms > critical 300ms".to_string()));
        // A failed probe is critical whatever its latency; a 429 stays warning when fast.
        assert_eq!(apply_latency(&d, CRITICAL, "refused".into(), Duration::from_secs(1)), (CRITICAL, "refused".into()));
        assert_eq!(apply_latency(&d, WARNING, "429".into(), Duration::from_millis(1)), (WARNING, "429".into()));
        // Without thresholds nothing changes.
        assert_eq!(apply_latency(&def(0, 0, 0), PASSING, ok(), Duration::from_secs(9)), (PASSING, ok()));
        // Slow probes are failures for the thresholds: with FailuresBeforeCritical = 3 one slow
        // probe reports nothing new, the third in a row reports critical.
        let mut d3 = d.clone();
        d3.failures_before_warning = 3;
        d3.failures_before_critical = 3;
        let mut t = Thresholds::new(&d3);
        let slow = || apply_latency(&d3, PASSING, "ok".into(), Duration::from_millis(500)).0;
        assert_eq!(t.apply(slow()), None);
        assert_eq!(t.apply(slow()), None);
        assert_eq!(t.apply(slow()), Some(CRITICAL));
    }

    #[test]
    fn thresholds_follow_consul() {
        let mut t = Thresholds::new(&def(0, 0, 0));
        assert_eq!(t.apply(PASSING), Some(PASSING));
        assert_eq!(t.apply(CRITICAL), Some(CRITICAL));

        let mut t = Thresholds::new(&def(2, 1, 3));
        assert_eq!(t.apply(PASSING), None);
        assert_eq!(t.apply(PASSING), Some(PASSING));
        assert_eq!(t.apply(CRITICAL), Some(WARNING));
        assert_eq!(t.apply(CRITICAL), Some(WARNING));
        assert_eq!(t.apply(CRITICAL), Some(CRITICAL));
        // A success resets the failure count.
        assert_eq!(t.apply(PASSING), None);
        assert_eq!(t.apply(CRITICAL), Some(WARNING));
    }
}
