//! `GET /v1/agent/metrics?format=prometheus`: cumulative series in the Prometheus text format
//! (0.0.4), as go-metrics' Prometheus sink exposes them: dots and other forbidden characters in
//! names become `_`, counters are cumulative, timers are summaries (quantiles 0.5, 0.9 and 0.99
//! over the last 10 s, plus `_sum` and `_count`), and a series not updated for
//! `prometheus_retention_time` is dropped.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::Key;

/// The window a summary's quantiles cover (the Prometheus client's default MaxAge).
const QUANTILE_WINDOW: Duration = Duration::from_secs(10);
/// The most observations a summary keeps for its quantiles (a bound on memory under load).
const QUANTILE_SAMPLES: usize = 1024;
/// The quantiles reported.
const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

#[derive(Debug)]
enum Value {
    Gauge(f64),
    Counter(f64),
    Summary { count: u64, sum: f64, recent: VecDeque<(Instant, f64)> },
}

#[derive(Debug)]
struct Series {
    value: Value,
    updated: Instant,
}

/// Every series, cumulative since the agent started.
#[derive(Debug, Default)]
pub struct Registry {
    series: HashMap<Key, Series>,
}

impl Registry {
    /// Sets a gauge.
    pub fn set_gauge(&mut self, now: Instant, key: &Key, v: f64) {
        self.upsert(now, key, || Value::Gauge(v), |value| *value = Value::Gauge(v));
    }

    /// Adds to a counter.
    pub fn incr_counter(&mut self, now: Instant, key: &Key, v: f64) {
        self.upsert(
            now,
            key,
            || Value::Counter(v),
            |value| match value {
                Value::Counter(c) => *c += v,
                other => *other = Value::Counter(v),
            },
        );
    }

    /// Adds an observation to a summary.
    pub fn observe(&mut self, now: Instant, key: &Key, v: f64) {
        let fresh = || Value::Summary { count: 1, sum: v, recent: VecDeque::from([(now, v)]) };
        self.upsert(now, key, fresh, |value| match value {
            Value::Summary { count, sum, recent } => {
                *count += 1;
                *sum += v;
                if recent.len() >= QUANTILE_SAMPLES {
                    recent.pop_front();
                }
                recent.push_back((now, v));
            }
            other => *other = fresh(),
        });
    }

    fn upsert(&mut self, now: Instant, key: &Key, new: impl FnOnce() -> Value, update: impl FnOnce(&mut Value)) {
        match self.series.get_mut(key) {
            Some(s) => {
                update(&mut s.value);
                s.updated = now;
            }
            None => {
                self.series.insert(key.clone(), Series { value: new(), updated: now });
            }
        }
    }

    /// Drops series older than `retention` and renders the rest.
    pub fn render(&mut self, now: Instant, retention: Duration) -> String {
        self.series.retain(|_, s| now.saturating_duration_since(s.updated) <= retention);
        // Family name → (type, rendered sample lines), families sorted by name.
        let mut families: BTreeMap<String, (&'static str, Vec<String>)> = BTreeMap::new();
        let mut series: Vec<(&Key, &mut Series)> = self.series.iter_mut().collect();
        series.sort_by(|a, b| (&a.0.name, &a.0.labels).cmp(&(&b.0.name, &b.0.labels)));
        for (key, series) in series {
            let name = flatten(&key.name);
            let labels: Vec<(String, String)> = key.labels.iter().map(|(k, v)| (flatten(k), v.clone())).collect();
            let (kind, lines) = match &mut series.value {
                Value::Gauge(v) => ("gauge", vec![sample(&name, &labels, None, *v)]),
                Value::Counter(v) => ("counter", vec![sample(&name, &labels, None, *v)]),
                Value::Summary { count, sum, recent } => {
                    while recent.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) > QUANTILE_WINDOW) {
                        recent.pop_front();
                    }
                    let mut sorted: Vec<f64> = recent.iter().map(|(_, v)| *v).collect();
                    sorted.sort_by(f64::total_cmp);
                    let mut lines: Vec<String> =
                        QUANTILES.iter().map(|q| sample(&name, &labels, Some(*q), quantile(&sorted, *q))).collect();
                    lines.push(sample(&format!("{name}_sum"), &labels, None, *sum));
                    lines.push(sample(&format!("{name}_count"), &labels, None, *count as f64));
                    ("summary", lines)
                }
            };
            families.entry(name).or_insert((kind, Vec::new())).1.extend(lines);
        }
        let mut out = String::new();
        for (name, (kind, lines)) in families {
            let _ = writeln!(out, "# HELP {name} {name}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for line in lines {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }
}

/// The `q` quantile of sorted values (NaN when there are none, as the Prometheus client shows).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A name with every character outside `[a-zA-Z0-9_:]` replaced by `_`.
pub fn flatten(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == ':' { c } else { '_' }).collect()
}

fn sample(name: &str, labels: &[(String, String)], quantile: Option<f64>, v: f64) -> String {
    let mut line = name.to_string();
    if !labels.is_empty() || quantile.is_some() {
        line.push('{');
        let mut first = true;
        let mut push = |line: &mut String, k: &str, v: &str| {
            if !first {
                line.push(',');
            }
            first = false;
            let _ = write!(line, "{k}=\"{}\"", escape(v));
        };
        for (k, v) in labels {
            push(&mut line, k, v);
        }
        if let Some(q) = quantile {
            push(&mut line, "quantile", &q.to_string());
        }
        line.push('}');
    }
    line.push(' ');
    line.push_str(&number(v));
    line
}

/// A label value escaped for the text format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A sample value in the text format (`NaN`, `+Inf`, `-Inf` spelled as Prometheus reads them).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, labels: &[(&str, &str)]) -> Key {
        Key { name: name.into(), labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    #[test]
    fn renders_counters_gauges_and_summaries() {
        let mut r = Registry::default();
        let now = Instant::now();
        r.incr_counter(now, &key("consul.raft.apply", &[]), 1.0);
        r.incr_counter(now, &key("consul.raft.apply", &[]), 2.0);
        r.set_gauge(now, &key("consul.runtime.num_goroutines", &[]), 12.0);
        let http = key("consul.api.http", &[("method", "PUT"), ("path", "v1_kv_")]);
        for v in [1.0, 2.0, 3.0] {
            r.observe(now, &http, v);
        }
        let text = r.render(now, Duration::from_secs(60));
        assert!(text.contains("# TYPE consul_raft_apply counter\nconsul_raft_apply 3\n"), "{text}");
        assert!(text.contains("# TYPE consul_runtime_num_goroutines gauge\nconsul_runtime_num_goroutines 12\n"));
        assert!(text.contains("# TYPE consul_api_http summary\n"));
        assert!(text.contains("consul_api_http{method=\"PUT\",path=\"v1_kv_\",quantile=\"0.5\"} 2\n"), "{text}");
        assert!(text.contains("consul_api_http_sum{method=\"PUT\",path=\"v1_kv_\"} 6\n"));
        assert!(text.contains("consul_api_http_count{method=\"PUT\",path=\"v1_kv_\"} 3\n"));
    }

    #[test]
    fn retention_drops_stale_series() {
        let mut r = Registry::default();
        let then = Instant::now();
        r.incr_counter(then, &key("consul.old", &[]), 1.0);
        let later = then + Duration::from_secs(120);
        r.incr_counter(later, &key("consul.new", &[]), 1.0);
        let text = r.render(later, Duration::from_secs(60));
        assert!(!text.contains("consul_old") && text.contains("consul_new 1"), "{text}");
    }

    #[test]
    fn names_and_values_are_escaped() {
        assert_eq!(flatten("consul.serf.member.join-x y"), "consul_serf_member_join_x_y");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(number(f64::NAN), "NaN");
        assert!(quantile(&[], 0.5).is_nan());
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.99), 5.0);
    }
}
