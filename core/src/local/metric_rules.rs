//! Metrics checks (consul-rs's service-quality extension, issue #21): a check that scrapes a
//! Prometheus text endpoint and holds the service to rules such as
//! `{"Metric": "queue_depth", "Warning": "> 20", "Critical": "> 100"}`, or on a counter's rate:
//! `{"Metric": "http_errors_total", "Labels": {"code": "500"}, "Rate": "1m", "Critical": "> 1"}`.
//!
//! This module is the pure part: the rule model, its validation (errors name the rule and the
//! field), and the evaluation of one scrape against the rules with the rate history kept
//! between scrapes. The runner (`checks::metrics`) fetches the page.
//!
//! Semantics:
//! - A rule selects the samples named `Metric` whose labels include every pair of `Labels`;
//!   when several series match, their values are summed (one number per rule).
//! - With `Rate`, the value is the per-second increase over the last `Rate` of scrapes (counter
//!   resets are counted as a restart from zero), known from the second scrape on; until then the
//!   rule says "waiting" and does not move the status.
//! - `Critical` is tested before `Warning`; the check's status is the worst of its rules. A
//!   metric the page does not have is critical: the service no longer reports what it is held to.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::duration::{format_go_duration, parse_go_duration};
use crate::state::catalog::{CRITICAL, PASSING, WARNING};

/// A comparison operator of a rule's condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
}

impl CompareOp {
    fn symbol(self) -> &'static str {
        match self {
            CompareOp::Greater => ">",
            CompareOp::GreaterOrEqual => ">=",
            CompareOp::Less => "<",
            CompareOp::LessOrEqual => "<=",
            CompareOp::Equal => "==",
            CompareOp::NotEqual => "!=",
        }
    }
}

/// `"> 20"`: an operator and a finite threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    /// The operator.
    pub op: CompareOp,
    /// The threshold (finite: NaN and infinities are refused when parsed).
    pub threshold: f64,
}

// Thresholds are finite (checked in `Condition::parse`), so equality is reflexive.
impl Eq for Condition {}

impl Condition {
    /// Parses `"> 20"`, `">=0.5"`, `"== 1"`, `"!= 0"`, `"< 1e3"`.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let t = text.trim();
        let (op, rest) = [
            (">=", CompareOp::GreaterOrEqual),
            ("<=", CompareOp::LessOrEqual),
            ("==", CompareOp::Equal),
            ("!=", CompareOp::NotEqual),
            (">", CompareOp::Greater),
            ("<", CompareOp::Less),
        ]
        .iter()
        .find_map(|(sym, op)| t.strip_prefix(sym).map(|rest| (*op, rest)))
        .ok_or_else(|| format!("expected a comparison like \"> 20\" (operators > >= < <= == !=), got {text:?}"))?;
        let threshold: f64 =
            rest.trim().parse().map_err(|_| format!("expected a number after {:?}, got {text:?}", op.symbol()))?;
        if !threshold.is_finite() {
            return Err(format!("the threshold must be a finite number, got {text:?}"));
        }
        Ok(Condition { op, threshold })
    }

    /// Whether `value` meets the condition.
    pub fn holds(&self, value: f64) -> bool {
        match self.op {
            CompareOp::Greater => value > self.threshold,
            CompareOp::GreaterOrEqual => value >= self.threshold,
            CompareOp::Less => value < self.threshold,
            CompareOp::LessOrEqual => value <= self.threshold,
            CompareOp::Equal => value == self.threshold,
            CompareOp::NotEqual => value != self.threshold,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.symbol(), self.threshold)
    }
}

/// One rule of a metrics check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricRule {
    /// The sample name (`http_requests_total`, `queue_depth`, `latency_seconds_sum`).
    pub metric: String,
    /// Labels a sample must carry (a subset match).
    pub labels: BTreeMap<String, String>,
    /// Met: the check is at least `warning`.
    pub warning: Option<Condition>,
    /// Met: the check is `critical`.
    pub critical: Option<Condition>,
    /// Judge the per-second rate over this window instead of the value.
    pub rate: Option<Duration>,
}

impl MetricRule {
    /// The rule as the check's `Definition` shows it (the spelling it was registered with).
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("Metric".into(), json!(self.metric));
        if !self.labels.is_empty() {
            m.insert("Labels".into(), json!(self.labels));
        }
        if let Some(w) = &self.warning {
            m.insert("Warning".into(), json!(w.to_string()));
        }
        if let Some(c) = &self.critical {
            m.insert("Critical".into(), json!(c.to_string()));
        }
        if let Some(r) = self.rate {
            m.insert("Rate".into(), json!(format_go_duration(r)));
        }
        Value::Object(m)
    }

    fn selector(&self) -> String {
        if self.labels.is_empty() {
            return self.metric.clone();
        }
        let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        format!("{}{{{}}}", self.metric, labels.join(","))
    }
}

fn field<'a>(m: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v).filter(|v| !v.is_null())
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses and checks `Rules` (`interval`: the check's, which a `Rate` window must cover). Errors
/// name the rule and field: `Rules[1].Warning: expected a comparison like "> 20" ...`.
pub fn parse_rules(value: Option<&Value>, interval: Duration) -> Result<Vec<MetricRule>, String> {
    let Some(Value::Array(items)) = value else {
        return Err(
            "Rules: a Metrics check needs a list of rules, e.g. [{\"Metric\": \"up\", \"Critical\": \"== 0\"}]".into(),
        );
    };
    if items.is_empty() {
        return Err("Rules: a Metrics check needs at least one rule".into());
    }
    let mut rules = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = |f: &str| format!("Rules[{i}].{f}");
        let Value::Object(m) = item else { return Err(format!("Rules[{i}]: expected an object")) };
        for key in m.keys() {
            if !["metric", "labels", "warning", "critical", "rate"].contains(&key.to_ascii_lowercase().as_str()) {
                return Err(format!("Rules[{i}]: unknown field {key:?} (Metric, Labels, Warning, Critical, Rate)"));
            }
        }
        let metric = match field(m, "Metric") {
            Some(Value::String(s)) if valid_metric_name(s) => s.clone(),
            Some(Value::String(s)) => return Err(format!("{}: {s:?} is not a Prometheus metric name", at("Metric"))),
            _ => return Err(format!("{}: required (the sample name)", at("Metric"))),
        };
        let labels = match field(m, "Labels") {
            None => BTreeMap::new(),
            Some(Value::Object(l)) => l
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(format!("{}: label {k:?} must be a string", at("Labels"))),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(format!("{}: expected a map of label names to values", at("Labels"))),
        };
        let condition = |name: &str| -> Result<Option<Condition>, String> {
            match field(m, name) {
                None => Ok(None),
                Some(Value::String(s)) => Condition::parse(s).map(Some).map_err(|e| format!("{}: {e}", at(name))),
                Some(_) => Err(format!("{}: expected a comparison like \"> 20\"", at(name))),
            }
        };
        let warning = condition("Warning")?;
        let critical = condition("Critical")?;
        if warning.is_none() && critical.is_none() {
            return Err(format!("Rules[{i}]: give Warning, Critical or both"));
        }
        let rate = match field(m, "Rate") {
            None => None,
            Some(Value::String(s)) => {
                let d = parse_go_duration(s).map_err(|e| format!("{}: {e}", at("Rate")))?;
                if d < interval {
                    return Err(format!(
                        "{}: the window ({}) must be at least the check's Interval ({}): a rate needs two scrapes",
                        at("Rate"),
                        format_go_duration(d),
                        format_go_duration(interval)
                    ));
                }
                Some(d)
            }
            Some(_) => return Err(format!("{}: expected a duration like \"1m\"", at("Rate"))),
        };
        rules.push(MetricRule { metric, labels, warning, critical, rate });
    }
    Ok(rules)
}

/// One parsed sample of a scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Sample name (histogram and summary parts keep their suffixes: `_bucket`, `_sum`, `_count`).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// Parses Prometheus text exposition (version 0.0.4) with the `prometheus-parse` crate and
/// flattens it into samples, histograms and summaries into their `_bucket`/`quantile`, `_sum`
/// and `_count` series as the text carries them.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).map_err(|e| format!("not Prometheus text format: {e}"))?;
    let mut out = Vec::with_capacity(scrape.samples.len());
    for s in scrape.samples {
        let labels: BTreeMap<String, String> = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => out.push(Sample { name: s.metric, labels, value: v }),
            prometheus_parse::Value::Histogram(buckets) => {
                for b in buckets {
                    let mut l = labels.clone();
                    l.insert("le".into(), format_bound(b.less_than));
                    out.push(Sample { name: format!("{}_bucket", s.metric), labels: l, value: b.count });
                }
            }
            prometheus_parse::Value::Summary(quantiles) => {
                for q in quantiles {
                    let mut l = labels.clone();
                    l.insert("quantile".into(), format_bound(q.quantile));
                    out.push(Sample { name: s.metric.clone(), labels: l, value: q.count });
                }
            }
        }
    }
    Ok(out)
}

fn format_bound(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else {
        v.to_string()
    }
}

/// What a check remembers between scrapes: per rule, the recent (time, value) points of a rate.
#[derive(Debug, Default)]
pub struct RateHistory {
    points: Vec<VecDeque<(Instant, f64)>>,
}

/// What one scrape says against the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The check's status (`None`: no rule could judge yet, e.g. every rule is a rate waiting
    /// for its second scrape).
    pub status: Option<&'static str>,
    /// One line per rule naming the metric, its value and the rule.
    pub output: String,
}

/// Judges one scrape taken at `now`.
pub fn evaluate(rules: &[MetricRule], samples: &[Sample], now: Instant, history: &mut RateHistory) -> Verdict {
    history.points.resize_with(rules.len(), VecDeque::new);
    let mut worst: Option<&'static str> = None;
    let mut lines = Vec::with_capacity(rules.len());
    let rank = |s: &str| match s {
        CRITICAL => 2,
        WARNING => 1,
        _ => 0,
    };
    for (rule, points) in rules.iter().zip(history.points.iter_mut()) {
        let matching: Vec<f64> = samples
            .iter()
            .filter(|s| s.name == rule.metric && rule.labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| s.value)
            .collect();
        let selector = rule.selector();
        let status;
        if matching.is_empty() {
            status = CRITICAL;
            lines.push(format!("{selector}: not found in the scrape (critical)"));
        } else {
            let value: f64 = matching.iter().sum();
            let (judged, shown) = match rule.rate {
                None => (Some(value), format!("{selector} = {value}")),
                Some(window) => match rate(points, now, value, window) {
                    Some(r) => (Some(r), format!("rate({selector}[{}]) = {r:.3}/s", format_go_duration(window))),
                    None => {
                        (None, format!("rate({selector}[{}]): waiting for a second scrape", format_go_duration(window)))
                    }
                },
            };
            let Some(v) = judged else {
                lines.push(shown);
                continue;
            };
            status = match (&rule.critical, &rule.warning) {
                (Some(c), _) if c.holds(v) => {
                    lines.push(format!("{shown} (critical: {c})"));
                    CRITICAL
                }
                (_, Some(w)) if w.holds(v) => {
                    lines.push(format!("{shown} (warning: {w})"));
                    WARNING
                }
                _ => {
                    lines.push(format!("{shown} (ok)"));
                    PASSING
                }
            };
        }
        if worst.is_none_or(|w| rank(status) > rank(w)) {
            worst = Some(status);
        }
    }
    Verdict { status: worst, output: lines.join("\n") }
}

/// Adds the point and answers the per-second increase over `window` (counter resets count as a
/// restart from zero), or `None` with fewer than two points.
fn rate(points: &mut VecDeque<(Instant, f64)>, now: Instant, value: f64, window: Duration) -> Option<f64> {
    points.push_back((now, value));
    // Keep one point at or before the window's start as the baseline.
    while points.len() > 2 && points.get(1).is_some_and(|(t, _)| now.duration_since(*t) >= window) {
        points.pop_front();
    }
    let (first, _) = *points.front()?;
    if points.len() < 2 {
        return None;
    }
    let mut increase = 0.0;
    let mut prev = points.front()?.1;
    for (_, v) in points.iter().skip(1) {
        increase += if *v >= prev { v - prev } else { *v };
        prev = *v;
    }
    let secs = now.duration_since(first).as_secs_f64();
    (secs > 0.0).then(|| increase / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "\
# HELP queue_depth Jobs waiting.
# TYPE queue_depth gauge
queue_depth{queue=\"a\"} 25
queue_depth{queue=\"b\"} 5
# TYPE http_requests_total counter
http_requests_total{code=\"200\"} 1000
http_requests_total{code=\"500\"} 10
# TYPE latency_seconds histogram
latency_seconds_bucket{le=\"0.1\"} 90
latency_seconds_bucket{le=\"+Inf\"} 100
latency_seconds_sum 7.5
latency_seconds_count 100
";

    fn rules(v: Value) -> Vec<MetricRule> {
        parse_rules(Some(&v), Duration::from_secs(1)).expect("rules")
    }

    #[test]
    fn conditions_parse_and_hold() {
        for (text, v, holds) in [
            ("> 20", 21.0, true),
            (">20", 20.0, false),
            (">= 20", 20.0, true),
            ("< 1e3", 999.0, true),
            ("<=0.5", 0.6, false),
            ("== 1", 1.0, true),
            ("!= 0", 0.0, false),
        ] {
            assert_eq!(Condition::parse(text).expect(text).holds(v), holds, "{text} {v}");
        }
        for bad in ["20", "> x", "=> 3", "> NaN", "> inf", ""] {
            assert!(Condition::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Condition::parse(">=  2.5").expect("ok").to_string(), ">= 2.5");
    }

    #[test]
    fn bad_rules_name_the_rule_and_field() {
        let interval = Duration::from_secs(10);
        for (v, want) in [
            (json!(null), "Rules: a Metrics check needs a list"),
            (json!([]), "at least one rule"),
            (json!([{"Metric": "up"}]), "Rules[0]: give Warning, Critical or both"),
            (json!([{"Metric": "up", "Critical": "== 0"}, {"Metric": "9x", "Warning": "> 1"}]), "Rules[1].Metric"),
            (json!([{"Metric": "up", "Warning": "big"}]), "Rules[0].Warning: expected a comparison"),
            (
                json!([{"Metric": "up", "Critical": "> 1", "Rate": "5s"}]),
                "Rules[0].Rate: the window (5s) must be at least",
            ),
            (json!([{"Metric": "up", "Critical": "> 1", "Labels": {"a": 1}}]), "Rules[0].Labels: label \"a\""),
            (json!([{"Metric": "up", "Critical": "> 1", "Thresh": 1}]), "unknown field \"Thresh\""),
        ] {
            let e = parse_rules(Some(&v), interval).expect_err(&v.to_string());
            assert!(e.contains(want), "{v}: {e}");
        }
        // snake_case / lower-case keys (config files) are the same fields.
        let r = parse_rules(Some(&json!([{"metric": "up", "critical": "== 0", "rate": "1m"}])), interval).expect("ok");
        assert_eq!(r[0].rate, Some(Duration::from_secs(60)));
        assert_eq!(r[0].to_json(), json!({"Metric": "up", "Critical": "== 0", "Rate": "1m0s"}));
    }

    #[test]
    fn values_sum_matching_series_and_the_worst_rule_wins() {
        let samples = parse_exposition(PAGE).expect("page");
        let mut h = RateHistory::default();
        let now = Instant::now();
        let r = rules(json!([
            {"Metric": "queue_depth", "Warning": "> 20", "Critical": "> 100"},
            {"Metric": "queue_depth", "Labels": {"queue": "b"}, "Warning": "> 20"},
        ]));
        let v = evaluate(&r, &samples, now, &mut h);
        assert_eq!(v.status, Some(WARNING));
        assert_eq!(v.output, "queue_depth = 30 (warning: > 20)\nqueue_depth{queue=\"b\"} = 5 (ok)");
        // Histogram parts are addressable by their series names.
        let r = rules(json!([
            {"Metric": "latency_seconds_sum", "Critical": "> 5"},
            {"Metric": "latency_seconds_bucket", "Labels": {"le": "+Inf"}, "Warning": "< 1"},
            {"Metric": "latency_seconds_count", "Warning": "!= 100"},
        ]));
        let v = evaluate(&r, &samples, now, &mut h);
        assert_eq!(v.status, Some(CRITICAL), "{}", v.output);
        assert!(v.output.starts_with("latency_seconds_sum = 7.5 (critical: > 5)"), "{}", v.output);
        assert!(v.output.contains("latency_seconds_bucket{le=\"+Inf\"} = 100 (ok)"), "{}", v.output);
        assert!(v.output.contains("latency_seconds_count = 100 (ok)"), "{}", v.output);
        // A metric the page lacks is critical.
        let v = evaluate(&rules(json!([{"Metric": "gone", "Warning": "> 1"}])), &samples, now, &mut h);
        assert_eq!((v.status, v.output.as_str()), (Some(CRITICAL), "gone: not found in the scrape (critical)"));
    }

    #[test]
    fn rates_need_two_scrapes_handle_resets_and_slide() {
        let r = rules(json!([{"Metric": "errors_total", "Rate": "10s", "Warning": "> 1", "Critical": "> 5"}]));
        let page = |v: f64| vec![Sample { name: "errors_total".into(), labels: BTreeMap::new(), value: v }];
        let mut h = RateHistory::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let v = evaluate(&r, &page(100.0), at(0), &mut h);
        assert_eq!(v.status, None, "first scrape only records: {}", v.output);
        assert!(v.output.contains("waiting for a second scrape"));
        // +5 in 5 s: 1/s, not over 1.
        assert_eq!(evaluate(&r, &page(105.0), at(5), &mut h).status, Some(PASSING));
        // +15 more in 5 s: 20 over 10 s = 2/s.
        let v = evaluate(&r, &page(120.0), at(10), &mut h);
        assert_eq!(v.status, Some(WARNING), "{}", v.output);
        assert!(v.output.starts_with("rate(errors_total[10s]) = 2.000/s (warning: > 1)"), "{}", v.output);
        // A restart (counter back to 30) counts as +30: (15 + 30) over the last 10 s = 4.5/s...
        assert_eq!(evaluate(&r, &page(30.0), at(15), &mut h).status, Some(WARNING));
        // ...and the window slides: from t=10 (120) to t=20 (90): reset +30 then +60 = 9/s.
        let v = evaluate(&r, &page(90.0), at(20), &mut h);
        assert_eq!(v.status, Some(CRITICAL), "{}", v.output);
        // Quiet again: nothing added over the window.
        evaluate(&r, &page(90.0), at(25), &mut h);
        assert_eq!(evaluate(&r, &page(90.0), at(30), &mut h).status, Some(PASSING));
    }

    #[test]
    fn a_page_that_is_not_exposition_format_fails_every_rule() {
        // An HTML error page served with 200: no samples, so every rule is critical by name.
        let samples = parse_exposition("<html><body>502 Bad Gateway</body></html>\n").unwrap_or_default();
        let mut h = RateHistory::default();
        let v = evaluate(&rules(json!([{"Metric": "up", "Critical": "== 0"}])), &samples, Instant::now(), &mut h);
        assert_eq!((v.status, v.output.as_str()), (Some(CRITICAL), "up: not found in the scrape (critical)"));
    }
}
