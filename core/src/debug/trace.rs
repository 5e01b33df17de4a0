//! `/debug/pprof/trace`: where Go records its runtime's execution trace, consul-rs records the
//! agent's own trace: every event its subsystems log, at TRACE level, for the requested time,
//! as a Chrome trace-event file (`chrome://tracing`, Perfetto's UI) with one lane per module.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::logs::{LogHub, LogLevel, LogRecord};

/// Events kept at most, so a busy agent's trace stays a bounded download (a few tens of MB).
pub const MAX_EVENTS: usize = 200_000;

/// Records the hub's events for `duration` (or until `stop` fires) and returns the trace.
pub async fn record(hub: &LogHub, duration: Duration, node: &str, stop: tokio_util::sync::CancellationToken) -> Value {
    let mut monitor = hub.subscribe(LogLevel::Trace);
    let deadline = tokio::time::sleep(duration);
    tokio::pin!(deadline);
    let mut records = Vec::new();
    let mut truncated = false;
    loop {
        tokio::select! {
            r = monitor.recv() => match r {
                Some(r) if records.len() < MAX_EVENTS => records.push(r),
                Some(_) => truncated = true,
                None => break,
            },
            _ = &mut deadline => break,
            _ = stop.cancelled() => break,
        }
    }
    chrome_trace(records.iter().map(|r| r.as_ref()), node, duration, monitor.dropped(), truncated)
}

/// The Chrome trace-event document for `records`.
pub fn chrome_trace<'a>(
    records: impl Iterator<Item = &'a LogRecord>,
    node: &str,
    duration: Duration,
    dropped: u64,
    truncated: bool,
) -> Value {
    let mut lanes: BTreeMap<String, usize> = BTreeMap::new();
    let mut events =
        vec![json!({"name": "process_name", "ph": "M", "pid": 1, "args": {"name": format!("consul-rs {node}")}})];
    for r in records {
        let module = if r.module.is_empty() { "agent".to_string() } else { r.module.clone() };
        let next = lanes.len() + 1;
        let tid = *lanes.entry(module.clone()).or_insert(next);
        let mut args = serde_json::Map::new();
        args.insert("level".into(), json!(r.level.json_name()));
        for (k, v) in &r.fields {
            args.insert(k.clone(), json!(v));
        }
        events.push(json!({
            "name": r.message, "cat": module, "ph": "i", "s": "t",
            "ts": r.unix_micros, "pid": 1, "tid": tid, "args": args,
        }));
    }
    for (module, tid) in &lanes {
        events.push(json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": module}}));
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "node": node,
            "duration_seconds": duration.as_secs_f64(),
            "events_dropped": dropped,
            "truncated_at": if truncated { json!(MAX_EVENTS) } else { Value::Null },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_of(module: &str, message: &str) -> LogRecord {
        LogRecord {
            level: LogLevel::Debug,
            module: module.into(),
            message: message.into(),
            fields: vec![("key".into(), "v".into())],
            unix_micros: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn one_lane_per_module_and_fields_as_args() {
        let rs = [record_of("raft", "append"), record_of("http", "request"), record_of("raft", "commit")];
        let t = chrome_trace(rs.iter(), "n1", Duration::from_secs(1), 0, false);
        let events = t["traceEvents"].as_array().expect("events");
        let instants: Vec<_> = events.iter().filter(|e| e["ph"] == "i").collect();
        assert_eq!(instants.len(), 3);
        assert_eq!(instants[0]["tid"], instants[2]["tid"]);
        assert_ne!(instants[0]["tid"], instants[1]["tid"]);
        assert_eq!(instants[1]["args"]["key"], "v");
        assert_eq!(instants[0]["args"]["level"], "debug");
        let lanes: Vec<_> = events.iter().filter(|e| e["name"] == "thread_name").map(|e| &e["args"]["name"]).collect();
        assert_eq!(lanes, [&json!("http"), &json!("raft")]);
        assert_eq!(t["otherData"]["truncated_at"], Value::Null);
    }

    #[tokio::test]
    async fn records_what_the_hub_publishes_until_the_deadline() {
        let hub = LogHub::default();
        let publisher = {
            let hub = hub.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    hub.publish(record_of("raft", &format!("event {i}")));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let t = record(&hub, Duration::from_millis(400), "n1", Default::default()).await;
        publisher.await.expect("publisher");
        let n = t["traceEvents"].as_array().expect("events").iter().filter(|e| e["ph"] == "i").count();
        assert!(n >= 15, "{n} events of 20");
    }
}
