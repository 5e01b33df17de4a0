//! Telemetry: one [`Metrics`] sink per agent (nothing process-global: agents sharing a process
//! keep separate metrics), fed by the HTTP API, Raft, RPC, DNS, gossip and a once-a-second
//! collector, and read three ways as Consul offers them:
//!
//! - [`inmem`]: 10-second intervals for `GET /v1/agent/metrics` (Consul's JSON shape);
//! - [`prometheus`]: cumulative series for `?format=prometheus` (with
//!   `telemetry.prometheus_retention_time` > 0);
//! - [`statsd`]: UDP lines to `telemetry.statsd_address` / `dogstatsd_addr`.
//!
//! Names are Consul's (`consul.raft.apply`, `consul.api.http`, …): the code records the part
//! after the prefix (`raft.apply`), the sink prepends `telemetry.metrics_prefix` ("consul") and,
//! for gauges, the host name (`consul.<host>.runtime.alloc_bytes`) as go-metrics does — only
//! when some sink besides the in-memory one is configured (statsd, DogStatsD, Prometheus) and
//! `disable_hostname` is off: Consul's `InitTelemetry` turns the host name off when the
//! in-memory sink is the only one, so a default agent reports `consul.runtime.alloc_bytes`; then `prefix_filter` decides whether the name is kept. Timers are in
//! milliseconds. A leaf module: it knows nothing of the rest of the engine.

pub mod filter;
pub mod inmem;
pub mod prometheus;
pub mod statsd;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use filter::PrefixFilter;

/// A series: its full dotted name and its labels (in the order recorded).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// Dotted name, prefix included (`consul.raft.apply`).
    pub name: String,
    /// (name, value) pairs.
    pub labels: Vec<(String, String)>,
}

/// `telemetry { … }`.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// `metrics_prefix` ("consul").
    pub metrics_prefix: String,
    /// `disable_hostname`: gauges' names leave out the host name.
    pub disable_hostname: bool,
    /// `prefix_filter` with `filter_default`.
    pub filter: PrefixFilter,
    /// `prometheus_retention_time`: zero refuses `?format=prometheus`, as Consul does.
    pub prometheus_retention: Duration,
    /// `statsd_address`.
    pub statsd_address: Option<SocketAddr>,
    /// `dogstatsd_addr`.
    pub dogstatsd_addr: Option<SocketAddr>,
    /// `dogstatsd_tags`.
    pub dogstatsd_tags: Vec<String>,
    /// `disable_metrics` (a consul-rs extension): record nothing (every endpoint answers
    /// empty); exists to measure what recording costs.
    pub disabled: bool,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            metrics_prefix: "consul".into(),
            disable_hostname: false,
            filter: PrefixFilter::default(),
            prometheus_retention: Duration::ZERO,
            statsd_address: None,
            dogstatsd_addr: None,
            dogstatsd_tags: Vec::new(),
            disabled: false,
        }
    }
}

/// The host name gauges carry (Go's `os.Hostname()`), read once per agent; empty when gauges
/// carry none (see the module doc).
fn gauge_host(settings: &TelemetrySettings) -> String {
    let external_sink = settings.statsd_address.is_some()
        || settings.dogstatsd_addr.is_some()
        || !settings.prometheus_retention.is_zero();
    if settings.disable_hostname || !external_sink {
        return String::new();
    }
    host_name()
}

/// The machine's host name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

#[derive(Debug, Default)]
struct Stores {
    intervals: inmem::Intervals,
    prometheus: prometheus::Registry,
}

/// A UDP destination and its queue.
#[derive(Debug)]
struct Sender {
    flavor: statsd::Flavor,
    queue: mpsc::Sender<String>,
}

/// One agent's metrics.
#[derive(Debug)]
pub struct Metrics {
    settings: TelemetrySettings,
    host: String,
    enabled: AtomicBool,
    stores: Mutex<Stores>,
    senders: Vec<Sender>,
}

impl Metrics {
    /// A sink; starts the statsd/DogStatsD senders (as tasks on the current runtime, ended by
    /// `shutdown`) when addresses are configured.
    pub fn start(settings: TelemetrySettings, shutdown: &CancellationToken) -> Arc<Self> {
        let mut senders = Vec::new();
        let targets = [
            (settings.statsd_address, statsd::Flavor::Statsd),
            (settings.dogstatsd_addr, statsd::Flavor::DogStatsd { tags: settings.dogstatsd_tags.clone() }),
        ];
        for (addr, flavor) in targets {
            if let Some(addr) = addr {
                let (tx, rx) = mpsc::channel(statsd::QUEUE);
                tokio::spawn(statsd::run(addr, rx, shutdown.clone()));
                senders.push(Sender { flavor, queue: tx });
            }
        }
        Arc::new(Metrics {
            enabled: AtomicBool::new(!settings.disabled),
            host: gauge_host(&settings),
            settings,
            stores: Mutex::default(),
            senders,
        })
    }

    /// A sink that sends nowhere (tests, tools).
    pub fn in_memory(settings: TelemetrySettings) -> Arc<Self> {
        Arc::new(Metrics {
            enabled: AtomicBool::new(!settings.disabled),
            host: gauge_host(&settings),
            settings,
            stores: Mutex::default(),
            senders: Vec::new(),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &TelemetrySettings {
        &self.settings
    }

    /// Whether anything is recorded (checked first on every hot path: one relaxed load).
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    fn key(&self, name: &str, labels: &[(&str, &str)], with_host: bool) -> Option<Key> {
        let prefix = &self.settings.metrics_prefix;
        let mut full = String::with_capacity(prefix.len() + self.host.len() + name.len() + 2);
        for part in [prefix.as_str(), if with_host { self.host.as_str() } else { "" }, name] {
            if !part.is_empty() {
                if !full.is_empty() {
                    full.push('.');
                }
                full.push_str(part);
            }
        }
        if !self.settings.filter.allows(&full) {
            return None;
        }
        Some(Key { name: full, labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() })
    }

    fn send(&self, key: &Key, kind: statsd::Kind, v: f64) {
        for s in &self.senders {
            // A full queue drops the line: metrics never hold the agent up.
            let _ = s.queue.try_send(statsd::line(&s.flavor, key, kind, v));
        }
    }

    /// Adds `v` to a counter (`name` without the prefix: `raft.apply`).
    pub fn incr_counter(&self, name: &str, labels: &[(&str, &str)], v: f64) {
        if !self.enabled() {
            return;
        }
        let Some(key) = self.key(name, labels, false) else { return };
        {
            let mut s = self.stores.lock();
            s.intervals.incr_counter(SystemTime::now(), &key, v);
            s.prometheus.incr_counter(Instant::now(), &key, v);
        }
        self.send(&key, statsd::Kind::Counter, v);
    }

    /// Sets a gauge (named with the host name when the settings call for it; see the module doc).
    pub fn set_gauge(&self, name: &str, labels: &[(&str, &str)], v: f64) {
        if !self.enabled() {
            return;
        }
        let Some(key) = self.key(name, labels, !self.host.is_empty()) else { return };
        {
            let mut s = self.stores.lock();
            s.intervals.set_gauge(SystemTime::now(), &key, v);
            s.prometheus.set_gauge(Instant::now(), &key, v);
        }
        self.send(&key, statsd::Kind::Gauge, v);
    }

    /// Records a timer sample of `elapsed`, in milliseconds.
    pub fn measure(&self, name: &str, labels: &[(&str, &str)], elapsed: Duration) {
        if !self.enabled() {
            return;
        }
        let Some(key) = self.key(name, labels, false) else { return };
        let ms = elapsed.as_secs_f64() * 1000.0;
        {
            let mut s = self.stores.lock();
            s.intervals.add_sample(SystemTime::now(), &key, ms);
            s.prometheus.observe(Instant::now(), &key, ms);
        }
        self.send(&key, statsd::Kind::Timer, ms);
    }

    /// Records the time since `start` (see [`Metrics::measure`]).
    pub fn measure_since(&self, name: &str, labels: &[(&str, &str)], start: Instant) {
        if self.enabled() {
            self.measure(name, labels, start.elapsed());
        }
    }

    /// The interval `GET /v1/agent/metrics` shows.
    pub fn summary(&self) -> inmem::Summary {
        self.stores.lock().intervals.summary(SystemTime::now())
    }

    /// The Prometheus text, or `None` when `prometheus_retention_time` is not positive.
    pub fn prometheus_text(&self) -> Option<String> {
        let retention = self.settings.prometheus_retention;
        if retention.is_zero() {
            return None;
        }
        Some(self.stores.lock().prometheus.render(Instant::now(), retention))
    }

    /// Records the runtime gauges: resident memory and the tokio runtime's live tasks (what
    /// Consul reports as `runtime.alloc_bytes`/`sys_bytes` and `runtime.num_goroutines`).
    pub fn record_runtime(&self) {
        if !self.enabled() {
            return;
        }
        if let Some((rss, size)) = process_memory() {
            self.set_gauge("runtime.alloc_bytes", &[], rss as f64);
            self.set_gauge("runtime.sys_bytes", &[], size as f64);
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            self.set_gauge("runtime.num_goroutines", &[], handle.metrics().num_alive_tasks() as f64);
        }
    }
}

/// (resident, virtual) bytes of this process, from `/proc/self/statm` (Linux only).
fn process_memory() -> Option<(u64, u64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut fields = statm.split_whitespace().map(|f| f.parse::<u64>().ok());
    let size = fields.next()??;
    let resident = fields.next()??;
    const PAGE: u64 = 4096;
    Some((resident * PAGE, size * PAGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_gauges_the_host() {
        let with_sink = TelemetrySettings { prometheus_retention: Duration::from_secs(60), ..Default::default() };
        let m = Metrics::in_memory(with_sink);
        m.incr_counter("raft.apply", &[], 1.0);
        m.set_gauge("runtime.num_goroutines", &[], 3.0);
        let s = m.summary();
        assert_eq!(s.counters[0].name, "consul.raft.apply");
        assert!(!m.host.is_empty());
        assert_eq!(s.gauges[0].name, format!("consul.{}.runtime.num_goroutines", m.host));

        // Only the in-memory sink: no host name, as Consul (what its API test looks for).
        let m = Metrics::in_memory(TelemetrySettings::default());
        m.set_gauge("runtime.alloc_bytes", &[], 3.0);
        assert_eq!(m.summary().gauges[0].name, "consul.runtime.alloc_bytes");

        let m = Metrics::in_memory(TelemetrySettings {
            metrics_prefix: "edge".into(),
            disable_hostname: true,
            ..Default::default()
        });
        m.set_gauge("runtime.num_goroutines", &[], 3.0);
        assert_eq!(m.summary().gauges[0].name, "edge.runtime.num_goroutines");
    }

    #[test]
    fn prefix_filter_and_disabled_record_nothing() {
        let filter = PrefixFilter::new(&["-consul.kvs".to_string()], true).expect("filter");
        let m = Metrics::in_memory(TelemetrySettings { filter, ..Default::default() });
        m.measure("kvs.apply", &[], Duration::from_millis(1));
        m.measure("txn.apply", &[], Duration::from_millis(1));
        let names: Vec<String> = m.summary().samples.into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["consul.txn.apply"]);

        let m = Metrics::in_memory(TelemetrySettings { disabled: true, ..Default::default() });
        m.incr_counter("raft.apply", &[], 1.0);
        assert!(m.summary().counters.is_empty());
    }

    #[test]
    fn prometheus_needs_a_retention() {
        let m = Metrics::in_memory(TelemetrySettings::default());
        assert!(m.prometheus_text().is_none());
        let m = Metrics::in_memory(TelemetrySettings {
            prometheus_retention: Duration::from_secs(60),
            ..Default::default()
        });
        m.measure("api.http", &[("method", "GET"), ("path", "v1_kv_")], Duration::from_millis(2));
        let text = m.prometheus_text().expect("enabled");
        assert!(text.contains("consul_api_http_count{method=\"GET\",path=\"v1_kv_\"} 1"), "{text}");
    }

    #[tokio::test]
    async fn runtime_gauges() {
        let m = Metrics::in_memory(TelemetrySettings { disable_hostname: true, ..Default::default() });
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { stop.cancelled().await }
        });
        m.record_runtime();
        stop.cancel();
        task.await.expect("task");
        let gauges = m.summary().gauges;
        let get = |n: &str| gauges.iter().find(|g| g.name == n).map(|g| g.value);
        assert!(get("consul.runtime.num_goroutines").is_some_and(|v| v >= 1.0), "{gauges:?}");
        assert!(get("consul.runtime.alloc_bytes").is_some_and(|v| v > 0.0), "{gauges:?}");
    }
}
