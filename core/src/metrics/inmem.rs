//! The in-memory sink behind `GET /v1/agent/metrics`: fixed 10-second intervals, the last
//! minute of them kept, each aggregating what was recorded in it (go-metrics' in-memory sink,
//! which Consul serves).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::Key;

/// The interval length.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// How many intervals are kept (one minute, as Consul configures its sink).
const KEPT: usize = 6;

/// Count, sum, extremes and spread of one interval's values for one key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregate {
    count: u64,
    sum: f64,
    sum_sq: f64,
    min: f64,
    max: f64,
}

impl Aggregate {
    fn new(v: f64) -> Self {
        Aggregate { count: 1, sum: v, sum_sq: v * v, min: v, max: v }
    }

    fn ingest(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.sum_sq += v * v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// The sample standard deviation, as go-metrics computes it.
    fn stddev(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        let n = self.count as f64;
        let var = (self.sum_sq - self.sum * self.sum / n) / (n - 1.0);
        if var > 0.0 {
            var.sqrt()
        } else {
            0.0
        }
    }
}

/// One interval's data.
#[derive(Debug, Clone)]
struct Interval {
    start: SystemTime,
    gauges: HashMap<Key, f64>,
    counters: HashMap<Key, Aggregate>,
    samples: HashMap<Key, Aggregate>,
}

/// The kept intervals.
#[derive(Debug, Default)]
pub struct Intervals {
    kept: VecDeque<Interval>,
}

fn interval_start(now: SystemTime) -> SystemTime {
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    UNIX_EPOCH + Duration::from_secs(secs - secs % INTERVAL.as_secs())
}

impl Intervals {
    fn current(&mut self, now: SystemTime) -> &mut Interval {
        let start = interval_start(now);
        if self.kept.back().is_none_or(|i| i.start < start) {
            self.kept.push_back(Interval {
                start,
                gauges: HashMap::new(),
                counters: HashMap::new(),
                samples: HashMap::new(),
            });
            while self.kept.len() > KEPT {
                self.kept.pop_front();
            }
        }
        // A clock stepped backwards writes into the newest interval rather than reordering.
        let last = self.kept.len() - 1;
        &mut self.kept[last]
    }

    /// Sets a gauge in the current interval.
    pub fn set_gauge(&mut self, now: SystemTime, key: &Key, v: f64) {
        let i = self.current(now);
        match i.gauges.get_mut(key) {
            Some(g) => *g = v,
            None => {
                i.gauges.insert(key.clone(), v);
            }
        }
    }

    /// Adds to a counter in the current interval.
    pub fn incr_counter(&mut self, now: SystemTime, key: &Key, v: f64) {
        Self::ingest(&mut self.current(now).counters, key, v);
    }

    /// Adds a sample (a timer's milliseconds) in the current interval.
    pub fn add_sample(&mut self, now: SystemTime, key: &Key, v: f64) {
        Self::ingest(&mut self.current(now).samples, key, v);
    }

    fn ingest(map: &mut HashMap<Key, Aggregate>, key: &Key, v: f64) {
        match map.get_mut(key) {
            Some(a) => a.ingest(v),
            None => {
                map.insert(key.clone(), Aggregate::new(v));
            }
        }
    }

    /// What `/v1/agent/metrics` shows: the last finished interval when there is one, else the
    /// current one (go-metrics' `DisplayMetrics`).
    pub fn summary(&mut self, now: SystemTime) -> Summary {
        self.current(now);
        let n = self.kept.len();
        let interval = &self.kept[if n >= 2 { n - 2 } else { n - 1 }];
        let rate_denom = INTERVAL.as_secs_f64();
        let labels = |k: &Key| k.labels.iter().cloned().collect::<BTreeMap<String, String>>();
        let mut gauges: Vec<GaugeValue> = interval
            .gauges
            .iter()
            .map(|(k, v)| GaugeValue { name: k.name.clone(), value: *v, labels: labels(k) })
            .collect();
        gauges.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        let sampled = |map: &HashMap<Key, Aggregate>| {
            let mut v: Vec<SampledValue> = map
                .iter()
                .map(|(k, a)| SampledValue {
                    name: k.name.clone(),
                    count: a.count,
                    rate: a.sum / rate_denom,
                    sum: a.sum,
                    min: a.min,
                    max: a.max,
                    mean: a.mean(),
                    stddev: a.stddev(),
                    labels: labels(k),
                })
                .collect();
            v.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
            v
        };
        Summary {
            timestamp: go_time_utc(interval.start),
            gauges,
            points: Vec::new(),
            counters: sampled(&interval.counters),
            samples: sampled(&interval.samples),
        }
    }
}

/// Go's `time.Time.String()` of a UTC time on whole seconds: `2006-01-02 15:04:05 +0000 UTC`.
pub fn go_time_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `GET /v1/agent/metrics` (go-metrics' `MetricsSummary`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Summary {
    /// The interval's start.
    pub timestamp: String,
    /// Gauges set in the interval (last value).
    pub gauges: Vec<GaugeValue>,
    /// Points (never recorded by consul-rs; always empty, as mostly in Consul).
    pub points: Vec<PointValue>,
    /// Counters incremented in the interval.
    pub counters: Vec<SampledValue>,
    /// Timers' samples in the interval (milliseconds).
    pub samples: Vec<SampledValue>,
}

/// A gauge in [`Summary`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GaugeValue {
    /// The dotted name.
    pub name: String,
    /// The last value set.
    pub value: f64,
    /// Label name → value.
    pub labels: BTreeMap<String, String>,
}

/// A point series in [`Summary`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PointValue {
    /// The dotted name.
    pub name: String,
    /// The values.
    pub points: Vec<f64>,
}

/// A counter's or a timer's aggregate in [`Summary`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SampledValue {
    /// The dotted name.
    pub name: String,
    /// Values recorded.
    pub count: u64,
    /// Sum per second of the interval.
    pub rate: f64,
    /// Sum of the values.
    pub sum: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation.
    pub stddev: f64,
    /// Label name → value.
    pub labels: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        Key { name: name.into(), labels: vec![] }
    }

    #[test]
    fn aggregates_within_an_interval() {
        let mut i = Intervals::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for v in [1.0, 2.0, 3.0, 4.0] {
            i.add_sample(t0, &key("consul.kvs.apply"), v);
        }
        i.incr_counter(t0, &key("consul.raft.apply"), 1.0);
        i.incr_counter(t0, &key("consul.raft.apply"), 2.0);
        i.set_gauge(t0, &key("consul.h.runtime.num_goroutines"), 5.0);
        i.set_gauge(t0, &key("consul.h.runtime.num_goroutines"), 7.0);
        let s = i.summary(t0);
        assert_eq!(s.timestamp, "2027-01-15 08:00:00 +0000 UTC");
        let sample = &s.samples[0];
        assert_eq!((sample.count, sample.sum, sample.min, sample.max, sample.mean), (4, 10.0, 1.0, 4.0, 2.5));
        assert!((sample.stddev - 1.290_994).abs() < 1e-5, "{}", sample.stddev);
        assert!((sample.rate - 1.0).abs() < 1e-9, "sum per second of 10 s");
        assert_eq!((s.counters[0].count, s.counters[0].sum), (2, 3.0));
        assert_eq!(s.gauges[0].value, 7.0);
        let json = serde_json::to_value(&s).expect("json");
        for field in ["Timestamp", "Gauges", "Points", "Counters", "Samples"] {
            assert!(json.get(field).is_some(), "{field} in {json}");
        }
        let fields: Vec<&String> = json["Samples"][0].as_object().expect("object").keys().collect();
        assert_eq!(fields, ["Count", "Labels", "Max", "Mean", "Min", "Name", "Rate", "Stddev", "Sum"]);
    }

    #[test]
    fn shows_the_last_finished_interval_and_keeps_a_minute() {
        let mut i = Intervals::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        i.incr_counter(t0, &key("a"), 1.0);
        i.incr_counter(t0 + Duration::from_secs(10), &key("b"), 1.0);
        let s = i.summary(t0 + Duration::from_secs(12));
        assert_eq!(s.counters.len(), 1);
        assert_eq!(s.counters[0].name, "a", "the finished interval, not the current one");
        let s = i.summary(t0 + Duration::from_secs(25));
        assert_eq!(s.counters[0].name, "b");
        i.summary(t0 + Duration::from_secs(200));
        assert!(i.kept.len() <= KEPT);
    }

    #[test]
    fn go_time_format() {
        assert_eq!(go_time_utc(UNIX_EPOCH), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(go_time_utc(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29 00:00:00 +0000 UTC");
    }
}
