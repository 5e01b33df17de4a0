//! Fault injection with linearizability checking: a 3-server cluster of real `consul-rs`
//! processes, concurrent clients recording every KV operation, a seeded nemesis killing,
//! pausing and restarting servers, and each key's history checked with
//! [porcupine](https://github.com/anishathalye/porcupine) (the checker etcd's robustness tests
//! use), built from the Go module in `tests/linearizability` (Go ≥ 1.18 must be installed).
//!
//! A schedule ([`run_schedule`]) starts a cluster, runs the workload and the nemesis for a
//! while, heals everything, records a final `?consistent` read of every key, checks that every
//! server converged to the same values, and checks the history. Every schedule prints its seed
//! first; `FAULT_SEED=<n>` replays the nemesis's choices. A failing schedule keeps its history
//! (`history.json`) and porcupine's visualization (`html/<key>.html`) in a directory it prints.
//!
//! The tests are in `tests/tests/fault`:
//!
//! ```sh
//! CONSUL_RS_BIN=target/debug/consul-rs cargo test -p consul-tests --test fault
//! # long mode: 100 mixed schedules of 20 s each
//! FAULT_SCHEDULES=100 FAULT_SECS=20 cargo test -p consul-tests --test fault t30 -- --nocapture
//! ```

pub mod checker;
pub mod diagnose;
pub mod history;
pub mod nemesis;
pub mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use checker::{check_history, check_history_with, CheckResult, Verdict};
pub use history::{History, Kind, Op, Output};
pub use nemesis::{Fault, Nemesis, NemesisConfig};
pub use workload::{key_name, KvClient, Read, ReadMode, Target, Workload, WorkloadConfig};

use crate::process::{ProcCluster, ProcOptions};

/// Held by every schedule, so fault tests in one binary run one at a time: on a 2-core machine
/// two clusters at once would turn CPU contention into timeouts and distort the schedules.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One schedule: how long, which clients, which faults, which seed.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Name for the output.
    pub name: String,
    /// Seed for the nemesis and the clients.
    pub seed: u64,
    /// How long the workload and the nemesis run.
    pub duration: Duration,
    /// The clients.
    pub workload: WorkloadConfig,
    /// The faults.
    pub nemesis: NemesisConfig,
    /// `performance.raft_multiplier` of the servers.
    pub raft_multiplier: u32,
    /// Per-key checker timeout.
    pub check_timeout: Duration,
}

impl Schedule {
    /// A mixed schedule: every fault, clients to random servers or (for odd seeds) followers only.
    pub fn mixed(seed: u64, duration: Duration) -> Self {
        let target = if seed % 2 == 1 { Target::Followers } else { Target::Random };
        Schedule {
            name: "mixed".into(),
            seed,
            duration,
            workload: WorkloadConfig { target, ..WorkloadConfig::default() },
            nemesis: NemesisConfig::mixed(),
            raft_multiplier: 1,
            check_timeout: Duration::from_secs(60),
        }
    }
}

/// What a schedule found.
#[derive(Debug)]
pub struct Report {
    /// The schedule's seed.
    pub seed: u64,
    /// Operations recorded.
    pub ops: usize,
    /// Faults injected.
    pub faults: usize,
    /// porcupine's verdict.
    pub verdict: Verdict,
    /// `Err` (what differs) if the servers did not converge to the same values.
    pub converged: Result<(), String>,
    /// The nemesis's log.
    pub log: Vec<String>,
    /// Where the history (and visualization) were kept, for a failing schedule.
    pub kept: Option<PathBuf>,
    /// The tail of each server's log, for a failing schedule.
    pub server_logs: Vec<String>,
    /// For a failing schedule: which known anomalies the reads show ([`diagnose::diagnose`]).
    pub diagnosis: Vec<String>,
}

impl Report {
    /// Linearizable and converged.
    pub fn ok(&self) -> bool {
        self.verdict.ok() && self.converged.is_ok()
    }

    /// A human-readable account of a failure: seed, what porcupine found, the nemesis log,
    /// where the history is, and the tail of every server's log.
    pub fn failure(&self) -> String {
        let mut s = format!(
            "fault: seed={} FAILED (replay: FAULT_SEED={} and the same test; for t30 also FAULT_SCHEDULES=1)\n",
            self.seed, self.seed
        );
        s += &format!("checker: {:?} over {} ops\n", self.verdict.result, self.verdict.ops);
        for k in &self.verdict.keys {
            if k.result != CheckResult::Ok {
                s += &format!("  key {} ({} ops): {:?}: {}\n", k.key, k.ops, k.result, k.detail);
                if let Some(h) = &k.html {
                    s += &format!("    visualization: {}\n", h.display());
                }
            }
        }
        if !self.diagnosis.is_empty() {
            s += "diagnosis (from the ModifyIndexes reads reported):\n";
            for d in &self.diagnosis {
                s += &format!("  {d}\n");
            }
        }
        if let Err(e) = &self.converged {
            s += &format!("convergence: {e}\n");
        }
        if let Some(dir) = &self.kept {
            s += &format!("history kept in {}\n", dir.display());
        }
        s += "nemesis:\n";
        for l in &self.log {
            s += &format!("  {l}\n");
        }
        for (i, tail) in self.server_logs.iter().enumerate() {
            s += &format!("--- server s{i} log (tail) ---\n{tail}\n");
        }
        s
    }
}

/// The seed to use: `FAULT_SEED` if set, else `default`.
pub fn seed_or(default: u64) -> u64 {
    std::env::var("FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// An unsigned integer from the environment, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Runs one schedule (holding [`SERIAL`]) and reports what it found.
pub async fn run_schedule(s: &Schedule) -> Report {
    let _serial = SERIAL.lock().await;
    // Build the checker before the cluster starts so its compile time does not count.
    checker::checker_binary();
    println!(
        "fault: schedule {} seed={} secs={} target={:?} faults={:?}",
        s.name,
        s.seed,
        s.duration.as_secs(),
        s.workload.target,
        s.nemesis.faults
    );
    let opts = ProcOptions { raft_multiplier: s.raft_multiplier, log_to_file: true, ..ProcOptions::default() };
    let mut cluster = ProcCluster::start_with(3, opts).await;
    let history = History::new();
    let keys = s.workload.keys;
    let burst_client = s.workload.clients;
    let final_client = burst_client + cluster.len();

    let workload = Workload::start(cluster.view(), history.clone(), s.workload.clone(), s.seed);
    let mut nemesis = Nemesis::new(&mut cluster, s.nemesis.clone(), s.seed, history.clone(), keys, burst_client);
    nemesis.run(Instant::now() + s.duration).await;
    workload.stop().await;
    nemesis.heal().await;
    let (log, faults) = (std::mem::take(&mut nemesis.log), nemesis.faults);
    drop(nemesis);
    cluster.wait_for_voters(cluster.len()).await;

    let finals = final_reads(&cluster, &history, keys, final_client).await;
    let converged = match finals {
        Ok(finals) => converge(&cluster, &finals).await,
        Err(e) => Err(e),
    };

    let dir = tempfile::Builder::new().prefix("consul-rs-fault-").tempdir().expect("tempdir");
    let path = dir.path().join("history.json");
    history.write(&path).expect("write history");
    let verdict = check_history_with(&path, s.check_timeout, Some(&dir.path().join("html")));
    let mut report = Report {
        seed: s.seed,
        ops: history.len(),
        faults,
        verdict,
        converged,
        log,
        kept: None,
        server_logs: Vec::new(),
        diagnosis: Vec::new(),
    };
    if !report.ok() {
        report.diagnosis = diagnose::diagnose(&history.ops(), 2);
        report.kept = Some(dir.keep());
        report.server_logs = (0..cluster.len()).map(|i| cluster.log_tail(i, 15)).collect();
    }
    // The nemesis log, always: what a passing schedule survived is worth seeing too.
    for l in &report.log {
        println!("fault:   {l}");
    }
    println!(
        "fault: schedule {} seed={} ops={} faults={} result={:?} converged={}",
        s.name,
        s.seed,
        report.ops,
        report.faults,
        report.verdict.result,
        report.converged.is_ok()
    );
    report
}

/// A `?consistent` read of every key through the leader, recorded as client `client`; the
/// value and ModifyIndex of each.
async fn final_reads(
    cluster: &ProcCluster,
    history: &History,
    keys: usize,
    client: usize,
) -> Result<BTreeMap<String, Read>, String> {
    let view = cluster.view();
    let kv = KvClient::new();
    let mut finals = BTreeMap::new();
    for k in 0..keys {
        let key = key_name(k);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let leader = view.leader_index().await.unwrap_or(0);
            let read =
                workload::recorded_read(&kv, history, client, leader, view.http[leader], &key, ReadMode::Consistent);
            if let Some(r) = read.await {
                finals.insert(key, r);
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("no final ?consistent read of {key} within 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(finals)
}

/// Waits (up to 20 s) until every server's `?stale` read of every key matches the final read
/// (value and ModifyIndex): all replicas applied the same writes at the same indexes.
async fn converge(cluster: &ProcCluster, finals: &BTreeMap<String, Read>) -> Result<(), String> {
    let view = cluster.view();
    let kv = KvClient::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut diffs = Vec::new();
        for (s, addr) in view.http.iter().enumerate() {
            for (key, want) in finals {
                match kv.read(*addr, key, "?stale").await {
                    Ok((got, _)) if &got == want => {}
                    Ok((got, _)) => diffs.push(format!("s{s} {key}: {got:?}, leader: {want:?}")),
                    Err(e) => diffs.push(format!("s{s} {key}: {e}")),
                }
            }
        }
        if diffs.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("servers differ after 20 s: {}", diffs.join("; ")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
