//! `summarize`: medians over repeated runs, as a markdown table comparing consul-rs with etcd.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result};

use crate::load::RunResult;

/// A row of the comparison table, in Consul terms.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RowKey {
    /// 0 = put, 1 = get (puts first).
    op_order: u8,
    /// 0 default, 1 stale, 2 consistent (gets only).
    mode_order: u8,
    clients: usize,
    value_size: usize,
}

/// Median of `v` (mean of the two middle values for an even count); `None` when empty.
pub(crate) fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    Some(if s.len() % 2 == 1 { s[mid] } else { (s[mid - 1] + s[mid]) / 2.0 })
}

fn mode_order(mode: &str) -> u8 {
    match mode {
        "stale" => 1,
        "consistent" => 2,
        _ => 0,
    }
}

/// The table rows one result contributes to. An etcd linearizable read is the counterpart of
/// both Consul's default and `consistent` reads; a serializable read of `stale`.
fn rows_for(r: &RunResult) -> Vec<RowKey> {
    let row = |op_order, mode_order| RowKey { op_order, mode_order, clients: r.clients, value_size: r.value_size };
    if r.op == "put" {
        return vec![row(0, 0)];
    }
    match (r.target.as_str(), r.read.as_deref()) {
        ("etcd", Some("serializable")) => vec![row(1, 1)],
        ("etcd", _) => vec![row(1, 0), row(1, 2)],
        _ => vec![row(1, mode_order(&r.mode))],
    }
}

fn row_label(k: &RowKey) -> (String, &'static str) {
    if k.op_order == 0 {
        return (format!("PUT, {} clients", k.clients), "—");
    }
    let (mode, etcd) = match k.mode_order {
        1 => ("stale", "serializable"),
        2 => ("consistent", "linearizable"),
        _ => ("default", "linearizable"),
    };
    (format!("GET {mode}, {} clients", k.clients), etcd)
}

/// Medians of one (row, target) group.
#[derive(Debug, Default, Clone)]
struct Group {
    throughput: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    errors: u64,
}

impl Group {
    fn runs(&self) -> usize {
        self.throughput.len()
    }
}

/// Parses JSON lines (blank lines and lines not starting with `{` are skipped).
pub(crate) fn parse_lines(text: &str) -> Result<Vec<RunResult>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with('{'))
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("line {}: not a result line", i + 1)))
        .collect()
}

fn fmt_ops(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "pending".into())
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{:.2}", v / 1000.0)).unwrap_or_else(|| "pending".into())
}

fn fmt_ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

fn fmt_range(v: &[f64]) -> String {
    let min = v.iter().copied().reduce(f64::min);
    let max = v.iter().copied().reduce(f64::max);
    match (min, max) {
        (Some(a), Some(b)) => format!("{a:.0}–{b:.0}"),
        _ => "—".into(),
    }
}

/// Renders the markdown table of medians over all results.
pub(crate) fn render(results: &[RunResult]) -> String {
    let mut groups: BTreeMap<RowKey, [Group; 2]> = BTreeMap::new();
    for r in results {
        let side = usize::from(r.target == "etcd");
        for key in rows_for(r) {
            let g = &mut groups.entry(key).or_default()[side];
            g.throughput.push(r.throughput_ops_s);
            g.p50.push(r.latency_us.p50);
            g.p99.push(r.latency_us.p99);
            g.errors += r.errors;
        }
    }
    let mut out = String::new();
    out += "| scenario | etcd read | consul-rs ops/s | etcd ops/s | ops/s ratio (consul-rs/etcd) \
            | consul-rs p50 ms | etcd p50 ms | consul-rs p99 ms | etcd p99 ms \
            | p99 ratio | runs (c/e) | errors (c/e) | ops/s min–max (c; e) |\n";
    out += "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
    for (key, [consul, etcd]) in &groups {
        let (label, etcd_read) = row_label(key);
        let (ct, et) = (median(&consul.throughput), median(&etcd.throughput));
        let (c99, e99) = (median(&consul.p99), median(&etcd.p99));
        let _ = writeln!(
            out,
            "| {label} | {etcd_read} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {}/{} | {}; {} |",
            fmt_ops(ct),
            fmt_ops(et),
            fmt_ratio(ct, et),
            fmt_ms(median(&consul.p50)),
            fmt_ms(median(&etcd.p50)),
            fmt_ms(c99),
            fmt_ms(e99),
            fmt_ratio(c99, e99),
            consul.runs(),
            etcd.runs(),
            consul.errors,
            etcd.errors,
            fmt_range(&consul.throughput),
            fmt_range(&etcd.throughput),
        );
    }
    let sizes: std::collections::BTreeSet<usize> = results.iter().map(|r| r.value_size).collect();
    let _ = writeln!(
        out,
        "\nMedians over repeats; {} result lines; value size(s) {:?} B. ops/s ratio > 1 means \
         consul-rs is faster; p99 ratio < 1 means consul-rs has the lower tail latency.",
        results.len(),
        sizes
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::LatencyUs;

    fn result(target: &str, op: &str, mode: &str, read: Option<&str>, clients: usize, tput: f64) -> RunResult {
        RunResult {
            target: target.into(),
            op: op.into(),
            mode: mode.into(),
            read: read.map(Into::into),
            clients,
            endpoints: vec![],
            value_size: 128,
            keys: 1000,
            warmup_s: 2.0,
            duration_s: 10.0,
            ops: (tput * 10.0) as u64,
            errors: 0,
            throughput_ops_s: tput,
            latency_us: LatencyUs { p50: 1000.0, p99: 2000.0, ..LatencyUs::default() },
            first_error: None,
            tag: None,
            started_unix: 0,
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn table_pairs_consul_modes_with_etcd_reads() {
        let rs = vec![
            result("consul", "put", "default", None, 16, 2000.0),
            result("etcd", "put", "default", None, 16, 1000.0),
            result("etcd", "put", "default", None, 16, 3000.0),
            result("etcd", "put", "default", None, 16, 1100.0),
            result("etcd", "get", "default", Some("linearizable"), 64, 500.0),
            result("etcd", "get", "stale", Some("serializable"), 64, 900.0),
            result("consul", "get", "consistent", Some("consistent"), 64, 1000.0),
        ];
        let t = render(&rs);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[2].starts_with("| PUT, 16 clients | — | 2000 | 1100 | 1.82× |"), "{}", lines[2]);
        assert!(lines[2].ends_with("| 1/3 | 0/0 | 2000–2000; 1000–3000 |"), "{}", lines[2]);
        assert!(lines[3].starts_with("| GET default, 64 clients | linearizable | pending | 500 | — |"), "{}", lines[3]);
        assert!(lines[4].starts_with("| GET stale, 64 clients | serializable | pending | 900 |"), "{}", lines[4]);
        assert!(
            lines[5].starts_with("| GET consistent, 64 clients | linearizable | 1000 | 500 | 2.00× |"),
            "{}",
            lines[5]
        );
    }

    #[test]
    fn parses_json_lines_round_trip() {
        let r = result("etcd", "get", "stale", Some("serializable"), 64, 123.4);
        let text = format!("\n# comment\n{}\n", serde_json::to_string(&r).expect("serialize"));
        let parsed = parse_lines(&text).expect("parse");
        assert_eq!(parsed, vec![r]);
        assert!(parse_lines("{not json").is_err());
    }
}
