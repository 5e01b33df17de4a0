//! Recording a history of KV operations in the format the porcupine checker reads.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

/// What an operation did to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `PUT /v1/kv/<k>` of a unique value.
    Put {
        /// The value written.
        value: String,
    },
    /// `PUT /v1/kv/<k>?cas=<idx>`, where `idx` came from a read that saw `expected`.
    Cas {
        /// The value the ModifyIndex was read with ("" = the key was absent, `cas=0`).
        expected: String,
        /// The value written.
        value: String,
    },
    /// `GET /v1/kv/<k>` (default or `?consistent`).
    Get,
}

/// What the client learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A write answered `true`/`false`.
    Written(bool),
    /// A read returned this value ("" = 404, absent).
    Read(String),
}

/// One client operation. `return_ns: None` (with no output) means the outcome is unknown: a
/// write that timed out, lost its connection or got a 5xx may or may not have been applied.
#[derive(Debug, Clone)]
pub struct Op {
    /// Client id (small, zero-based: porcupine's visualization draws one row per client).
    pub client: usize,
    /// The key.
    pub key: String,
    /// What was asked.
    pub kind: Kind,
    /// What came back (`None` when unknown).
    pub output: Option<Output>,
    /// When the request was sent, ns since the history's start.
    pub call_ns: i64,
    /// When the answer arrived, ns since the history's start (`None` when unknown).
    pub return_ns: Option<i64>,
    /// Free text for reports (server, consistency mode, index).
    pub meta: String,
}

impl Op {
    /// The JSON object the checker reads.
    pub fn to_json(&self) -> Value {
        let (kind, input) = match &self.kind {
            Kind::Put { value } => ("put", json!({ "value": value })),
            Kind::Cas { expected, value } => ("cas", json!({ "expected": expected, "value": value })),
            Kind::Get => ("get", json!({})),
        };
        let output = match &self.output {
            Some(Output::Written(ok)) => json!({ "ok": ok }),
            Some(Output::Read(v)) => json!({ "value": v }),
            None => Value::Null,
        };
        json!({
            "client": self.client,
            "key": self.key,
            "kind": kind,
            "input": input,
            "output": output,
            "call_ns": self.call_ns,
            "return_ns": self.return_ns,
            "meta": self.meta,
        })
    }
}

/// A shared, append-only history with a common monotonic clock.
#[derive(Debug, Clone)]
pub struct History {
    start: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    /// An empty history whose clock starts now.
    pub fn new() -> Self {
        History { start: Instant::now(), ops: Arc::new(Mutex::new(Vec::new())) }
    }

    /// Nanoseconds since the history started (monotonic, so call/return order is real-time order).
    pub fn now_ns(&self) -> i64 {
        self.start.elapsed().as_nanos() as i64
    }

    /// Appends an operation.
    pub fn record(&self, op: Op) {
        self.ops.lock().expect("history lock").push(op);
    }

    /// A copy of the operations so far.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().expect("history lock").clone()
    }

    /// Number of operations so far.
    pub fn len(&self) -> usize {
        self.ops.lock().expect("history lock").len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes `{"ops": [...]}` to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        write_ops(&self.ops(), path)
    }
}

/// Writes operations as the checker's input file.
pub fn write_ops(ops: &[Op], path: &Path) -> std::io::Result<()> {
    let doc = json!({ "ops": ops.iter().map(Op::to_json).collect::<Vec<_>>() });
    std::fs::write(path, serde_json::to_vec(&doc).expect("serialize history"))
}
