//! The agent's log lines as data: a per-agent [`LogHub`] that `/v1/agent/monitor` subscribes
//! to, the [`LogLayer`] a host program installs in its `tracing` subscriber to feed a hub, the
//! level names Consul accepts, Consul's (hclog's) text and JSON line formats, and
//! [`file::LogFile`], the rotating `log_file` writer.
//!
//! No process-global state: the host program owns the subscriber and the hub, and hands the hub
//! to the agent through its configuration (`AgentConfig::log_hub`). A hub receives every
//! event of the subscriber its layer is installed in; in a process that runs one agent (the
//! `consul-rs` binary) that is exactly the agent's log. Several agents embedded in one process
//! share one subscriber and so see each other's lines on their monitors.

pub mod file;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::sync::broadcast;
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};

/// How many records a slow monitor may fall behind before it loses some (Consul's monitor
/// buffer is 512 lines too).
const MONITOR_BUFFER: usize = 512;

/// A log level as Consul names them (`trace`, `debug`, `info`, `warn`, `err`/`error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// The least verbose: errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Consul's default.
    Info,
    /// Debug lines.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// Parses a level as Consul's `logging.ValidateLogLevel` accepts it (any case).
    pub fn parse(s: &str) -> Option<LogLevel> {
        match s.to_ascii_uppercase().as_str() {
            "TRACE" => Some(LogLevel::Trace),
            "DEBUG" => Some(LogLevel::Debug),
            "INFO" => Some(LogLevel::Info),
            "WARN" => Some(LogLevel::Warn),
            "ERR" | "ERROR" => Some(LogLevel::Error),
            _ => None,
        }
    }

    /// The `tracing` level.
    pub fn tracing(self) -> Level {
        match self {
            LogLevel::Trace => Level::TRACE,
            LogLevel::Debug => Level::DEBUG,
            LogLevel::Info => Level::INFO,
            LogLevel::Warn => Level::WARN,
            LogLevel::Error => Level::ERROR,
        }
    }

    fn from_tracing(l: &Level) -> LogLevel {
        match *l {
            Level::TRACE => LogLevel::Trace,
            Level::DEBUG => LogLevel::Debug,
            Level::INFO => LogLevel::Info,
            Level::WARN => LogLevel::Warn,
            _ => LogLevel::Error,
        }
    }

    /// hclog's bracketed level, padded to one width (`[INFO] `).
    fn bracket(self) -> &'static str {
        match self {
            LogLevel::Trace => "[TRACE]",
            LogLevel::Debug => "[DEBUG]",
            LogLevel::Info => "[INFO] ",
            LogLevel::Warn => "[WARN] ",
            LogLevel::Error => "[ERROR]",
        }
    }

    /// hclog's JSON `@level`.
    pub fn json_name(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// One log event, formatted per monitor (text or JSON) when sent.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// The event's level.
    pub level: LogLevel,
    /// hclog's module name: the `tracing` target without the crate, dotted
    /// (`replication.raft`).
    pub module: String,
    /// The message.
    pub message: String,
    /// The other fields, in the order they were recorded.
    pub fields: Vec<(String, String)>,
    /// When the event happened, microseconds since the Unix epoch.
    pub unix_micros: u64,
}

impl LogRecord {
    /// hclog's text line: `2024-01-02T03:04:05.123Z [INFO]  module: message: key=value`.
    pub fn text_line(&self) -> String {
        let mut out = format!("{} {} ", timestamp(self.unix_micros, 3), self.level.bracket());
        if !self.module.is_empty() {
            out.push_str(&self.module);
            out.push_str(": ");
        }
        out.push_str(&self.message);
        if !self.fields.is_empty() {
            out.push(':');
            for (k, v) in &self.fields {
                if v.is_empty() || v.contains([' ', '"', '=']) {
                    let _ = write!(out, " {k}={v:?}");
                } else {
                    let _ = write!(out, " {k}={v}");
                }
            }
        }
        out.push('\n');
        out
    }

    /// hclog's JSON line: `{"@level":"info","@message":…,"@module":…,"@timestamp":…, fields}`.
    pub fn json_line(&self) -> String {
        let mut m = Map::new();
        m.insert("@level".into(), Value::from(self.level.json_name()));
        m.insert("@message".into(), Value::from(self.message.clone()));
        if !self.module.is_empty() {
            m.insert("@module".into(), Value::from(self.module.clone()));
        }
        m.insert("@timestamp".into(), Value::from(timestamp(self.unix_micros, 6)));
        for (k, v) in &self.fields {
            m.entry(k.clone()).or_insert_with(|| Value::from(v.clone()));
        }
        let mut line = Value::Object(m).to_string();
        line.push('\n');
        line
    }
}

/// RFC 3339 in UTC with `digits` fraction digits (hclog: milliseconds in text, microseconds in
/// JSON).
fn timestamp(unix_micros: u64, digits: usize) -> String {
    let secs = unix_micros / 1_000_000;
    let base = crate::wire::timestamp::format_secs(secs as i64);
    let frac = format!("{:06}", unix_micros % 1_000_000);
    format!("{}.{}Z", base.trim_end_matches('Z'), &frac[..digits.min(6)])
}

/// The monitors open on one agent: where log records go, and the most verbose level one of
/// them wants (the [`LogLayer`]'s filter follows it).
#[derive(Clone)]
pub struct LogHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    tx: broadcast::Sender<Arc<LogRecord>>,
    /// Open monitors per level (index: `LogLevel as usize`).
    open: Mutex<[usize; 5]>,
    /// The most verbose open monitor's level as a `LevelFilter` code (0 = none open).
    max: AtomicU64,
}

impl std::fmt::Debug for LogHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogHub").field("monitors", &self.monitors()).finish()
    }
}

impl Default for LogHub {
    fn default() -> Self {
        LogHub::new()
    }
}

fn level_code(l: Option<LogLevel>) -> u64 {
    l.map_or(0, |l| l as u64 + 1)
}

fn code_filter(code: u64) -> LevelFilter {
    match code {
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        5 => LevelFilter::TRACE,
        _ => LevelFilter::OFF,
    }
}

impl LogHub {
    /// A hub with no monitor open.
    pub fn new() -> LogHub {
        let (tx, _) = broadcast::channel(MONITOR_BUFFER);
        LogHub { inner: Arc::new(HubInner { tx, open: Mutex::new([0; 5]), max: AtomicU64::new(0) }) }
    }

    /// How many monitors are open.
    pub fn monitors(&self) -> usize {
        self.inner.open.lock().iter().sum()
    }

    /// The most verbose level an open monitor wants (`OFF` when none is open).
    pub fn max_level(&self) -> LevelFilter {
        code_filter(self.inner.max.load(Ordering::Relaxed))
    }

    /// Opens a monitor that receives records at `level` and less verbose. Events more verbose
    /// than the host's own log level reach it too: the layer's filter follows the monitors.
    pub fn subscribe(&self, level: LogLevel) -> Monitor {
        let rx = self.inner.tx.subscribe();
        self.change(level, true);
        Monitor { hub: self.clone(), rx, level, dropped: 0 }
    }

    fn change(&self, level: LogLevel, open: bool) {
        let max = {
            let mut counts = self.inner.open.lock();
            let slot = &mut counts[level as usize];
            *slot = if open { *slot + 1 } else { slot.saturating_sub(1) };
            let top = [LogLevel::Trace, LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error]
                .into_iter()
                .find(|l| counts[*l as usize] > 0);
            level_code(top)
        };
        if self.inner.max.swap(max, Ordering::Relaxed) != max {
            // Callsites cached as uninteresting (or the global max level) must be re-evaluated
            // with the new level; this is tracing's own, not ours.
            tracing::callsite::rebuild_interest_cache();
        }
    }

    /// Sends a record to every open monitor; never blocks (a monitor that falls more than
    /// [`MONITOR_BUFFER`] records behind loses the oldest and counts them).
    pub fn publish(&self, record: LogRecord) {
        if self.inner.tx.receiver_count() > 0 {
            let _ = self.inner.tx.send(Arc::new(record));
        }
    }
}

/// One open monitor; closing it (drop) lowers the hub's level again if it was the most verbose.
#[derive(Debug)]
pub struct Monitor {
    hub: LogHub,
    rx: broadcast::Receiver<Arc<LogRecord>>,
    level: LogLevel,
    dropped: u64,
}

impl Monitor {
    /// The next record at this monitor's level; `None` once the hub is gone.
    pub async fn recv(&mut self) -> Option<Arc<LogRecord>> {
        loop {
            match self.rx.recv().await {
                Ok(r) if r.level <= self.level => return Some(r),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => self.dropped += n,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Records lost because this monitor fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.hub.change(self.level, false);
    }
}

/// A `tracing_subscriber` layer (with its own per-layer filter) that turns events into
/// [`LogRecord`]s for a [`LogHub`]. Install it beside the host's own output layer, whose filter
/// must be a per-layer filter too (a global filter would hide debug lines from a debug monitor
/// when the host logs at `warn`).
pub fn layer<S>(hub: LogHub) -> tracing_subscriber::filter::Filtered<LogLayer, HubFilter, S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    LogLayer { hub: hub.clone() }.with_filter(HubFilter { hub })
}

/// Feeds a [`LogHub`]; see [`layer`].
#[derive(Debug)]
pub struct LogLayer {
    hub: LogHub,
}

/// Lets through the events an open monitor wants, nothing when none is open.
#[derive(Debug)]
pub struct HubFilter {
    hub: LogHub,
}

impl<S: Subscriber> Filter<S> for HubFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        meta.is_event() && *meta.level() <= self.hub.max_level()
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        // Never cached as "never": a monitor may open at any time.
        if meta.is_event() {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.hub.max_level())
    }
}

impl<S: Subscriber> Layer<S> for LogLayer {
    fn on_event(&self, event: &Event<'_>, _cx: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = FieldCollector::default();
        event.record(&mut fields);
        let unix_micros = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        self.hub.publish(LogRecord {
            level: LogLevel::from_tracing(meta.level()),
            module: module_name(meta.target()),
            message: fields.message,
            fields: fields.fields,
            unix_micros,
        });
    }
}

/// `consul_core::replication::raft` → `replication.raft`; other crates keep their name
/// (`openraft::core` → `openraft.core`).
fn module_name(target: &str) -> String {
    let own = ["consul_core", "consul_rs"];
    let rest = match target.split_once("::") {
        Some((krate, rest)) if own.contains(&krate) => rest,
        None if own.contains(&target) => "",
        _ => target,
    };
    rest.replace("::", ".")
}

#[derive(Default)]
struct FieldCollector {
    message: String,
    fields: Vec<(String, String)>,
}

impl tracing::field::Visit for FieldCollector {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields.push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields.push((field.name().to_string(), text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn levels_parse_as_consul_accepts_them() {
        assert_eq!(LogLevel::parse("INFO"), Some(LogLevel::Info));
        assert_eq!(LogLevel::parse("trace"), Some(LogLevel::Trace));
        assert_eq!(LogLevel::parse("Debug"), Some(LogLevel::Debug));
        assert_eq!(LogLevel::parse("warn"), Some(LogLevel::Warn));
        assert_eq!(LogLevel::parse("err"), Some(LogLevel::Error));
        assert_eq!(LogLevel::parse("ERROR"), Some(LogLevel::Error));
        assert_eq!(LogLevel::parse("bogus"), None);
        assert_eq!(LogLevel::parse(""), None);
        assert!(LogLevel::Trace > LogLevel::Debug && LogLevel::Warn > LogLevel::Error);
    }

    fn record() -> LogRecord {
        LogRecord {
            level: LogLevel::Info,
            module: "agent".into(),
            message: "Synced node info".into(),
            fields: vec![("node".into(), "n1".into()), ("why".into(), "two words".into())],
            unix_micros: 1_700_000_000_123_456,
        }
    }

    #[test]
    fn text_lines_look_like_hclog() {
        assert_eq!(
            record().text_line(),
            "2023-11-14T22:13:20.123Z [INFO]  agent: Synced node info: node=n1 why=\"two words\"\n"
        );
    }

    #[test]
    fn json_lines_carry_hclog_keys() {
        let line = record().json_line();
        assert!(line.ends_with('\n'));
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["@level"], "info");
        assert_eq!(v["@message"], "Synced node info");
        assert_eq!(v["@module"], "agent");
        assert_eq!(v["@timestamp"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(v["node"], "n1");
    }

    #[test]
    fn module_names_drop_the_crate() {
        assert_eq!(module_name("consul_core::replication::raft"), "replication.raft");
        assert_eq!(module_name("consul_rs"), "");
        assert_eq!(module_name("agent"), "agent");
        assert_eq!(module_name("openraft::core::tick"), "openraft.core.tick");
    }

    #[tokio::test]
    async fn a_monitor_sees_only_its_level_and_closing_lowers_the_hub_level() {
        let hub = LogHub::new();
        let subscriber = tracing_subscriber::registry().with(layer(hub.clone()));
        let _guard = tracing::subscriber::set_default(subscriber);
        assert_eq!(hub.max_level(), LevelFilter::OFF);
        tracing::info!("before any monitor");
        let mut info = hub.subscribe(LogLevel::Info);
        let mut debug = hub.subscribe(LogLevel::Debug);
        assert_eq!(hub.max_level(), LevelFilter::DEBUG);
        tracing::debug!(k = 1, "fine detail");
        tracing::info!("the news");
        let r = debug.recv().await.expect("debug line");
        assert_eq!((r.level, r.message.as_str()), (LogLevel::Debug, "fine detail"));
        assert_eq!(r.fields, vec![("k".to_string(), "1".to_string())]);
        assert_eq!(debug.recv().await.expect("info line").message, "the news");
        assert_eq!(info.recv().await.expect("info line").message, "the news");
        drop(debug);
        assert_eq!(hub.max_level(), LevelFilter::INFO);
        assert_eq!(hub.monitors(), 1);
        drop(info);
        assert_eq!(hub.max_level(), LevelFilter::OFF);
    }

    #[tokio::test]
    async fn a_slow_monitor_loses_old_lines_without_blocking_the_logger() {
        let hub = LogHub::new();
        let subscriber = tracing_subscriber::registry().with(layer(hub.clone()));
        let _guard = tracing::subscriber::set_default(subscriber);
        let mut m = hub.subscribe(LogLevel::Info);
        for i in 0..(MONITOR_BUFFER + 10) {
            tracing::info!(i, "line");
        }
        let first = m.recv().await.expect("line");
        assert_eq!(m.dropped(), 10);
        assert_eq!(first.fields[0].1, "10");
    }
}
