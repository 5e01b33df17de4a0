//! Naming what went wrong in a history that porcupine rejected, from the indexes the reads
//! reported: porcupine says *that* a key is not linearizable; these say which known story it is.

use std::collections::BTreeMap;

use super::history::{Kind, Op, Output};

/// The `modify=<n>` a recorded read carries in its metadata.
fn modify_index(op: &Op) -> Option<u64> {
    op.meta.split_whitespace().find_map(|w| w.strip_prefix("modify=")).and_then(|n| n.parse().ok())
}

fn at(ns: i64) -> String {
    format!("{:.3}ms", ns as f64 / 1e6)
}

/// Findings, per kind, with up to `examples` examples each:
/// - a value read at two different ModifyIndexes (a write applied twice);
/// - a CAS that answered `false` whose value was read later (applied anyway);
/// - a stale read: it began after another operation had finished that had seen (or written) a
///   newer ModifyIndex, yet returned an older one.
pub fn diagnose(ops: &[Op], examples: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        by_key.entry(&op.key).or_default().push(op);
    }
    for (key, ops) in by_key {
        // Every index each value was read at.
        let mut seen: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        let reads: Vec<(&Op, &str, u64)> = ops
            .iter()
            .filter_map(|op| match (&op.output, modify_index(op)) {
                (Some(Output::Read(v)), Some(mi)) if !v.is_empty() => Some((*op, v.as_str(), mi)),
                _ => None,
            })
            .collect();
        for (_, v, mi) in &reads {
            let e = seen.entry(v).or_default();
            if !e.contains(mi) {
                e.push(*mi);
            }
        }
        let dups: Vec<String> = seen
            .iter()
            .filter(|(_, idx)| idx.len() > 1)
            .map(|(v, idx)| format!("{key}: value {v:?} read at ModifyIndex {idx:?} (applied more than once)"))
            .collect();
        push(&mut out, "duplicate application", dups, examples);

        let cas_false: Vec<String> = ops
            .iter()
            .filter_map(|op| match (&op.kind, &op.output) {
                (Kind::Cas { value, .. }, Some(Output::Written(false))) => {
                    let idx = seen.get(value.as_str())?;
                    Some(format!(
                        "{key}: cas {value:?} ({}, {}..{}) answered false, yet read at ModifyIndex {idx:?}",
                        op.meta,
                        at(op.call_ns),
                        at(op.return_ns.unwrap_or(0))
                    ))
                }
                _ => None,
            })
            .collect();
        push(&mut out, "CAS answered false but applied", cas_false, examples);

        // Finished operations with the index they prove current: reads their own, acknowledged
        // writes the first index their value was read at.
        let mut done: Vec<(i64, u64, String)> = reads
            .iter()
            .map(|(op, v, mi)| {
                (
                    op.return_ns.unwrap_or(i64::MAX),
                    *mi,
                    format!("read {v:?} ({}) done at {}", op.meta, at(op.return_ns.unwrap_or(0))),
                )
            })
            .collect();
        for op in &ops {
            if let (Kind::Put { value } | Kind::Cas { value, .. }, Some(Output::Written(true)), Some(ret)) =
                (&op.kind, &op.output, op.return_ns)
            {
                if let Some(mi) = seen.get(value.as_str()).and_then(|i| i.iter().min()) {
                    done.push((
                        ret,
                        *mi,
                        format!("write {value:?} ({}) acknowledged at {}, index {mi}", op.meta, at(ret)),
                    ));
                }
            }
        }
        done.sort_by_key(|d| d.0);
        // Running maximum of the index proven current by the time each operation finished.
        let mut best: Vec<(i64, u64, usize)> = Vec::with_capacity(done.len());
        for (i, d) in done.iter().enumerate() {
            let prev = best.last().map(|b| (b.1, b.2)).unwrap_or((0, usize::MAX));
            best.push(if d.1 > prev.0 { (d.0, d.1, i) } else { (d.0, prev.0, prev.1) });
        }
        let stale: Vec<String> = reads
            .iter()
            .filter_map(|(op, v, mi)| {
                let n = best.partition_point(|b| b.0 < op.call_ns);
                let (_, newer, which) = *best.get(n.checked_sub(1)?)?;
                (newer > *mi).then(|| {
                    format!(
                        "{key}: read {v:?} at ModifyIndex {mi} ({}, {}..{}) after {}",
                        op.meta,
                        at(op.call_ns),
                        at(op.return_ns.unwrap_or(0)),
                        done[which].2
                    )
                })
            })
            .collect();
        push(&mut out, "stale read", stale, examples);
    }
    out
}

fn push(out: &mut Vec<String>, what: &str, found: Vec<String>, examples: usize) {
    if found.is_empty() {
        return;
    }
    out.push(format!("{what}: {} case(s)", found.len()));
    out.extend(found.into_iter().take(examples).map(|f| format!("  {f}")));
}
