//! Randomized mixed schedules: every fault (kill -9 of a random server or the leader, fast
//! leader restart, SIGSTOP/SIGCONT, kill 2 of 3, rolling SIGTERM restarts), clients to random
//! servers or only to followers.
//!
//! Short mode (default, CI): 3 schedules of 10 s. Long mode:
//!
//! ```sh
//! FAULT_SCHEDULES=100 FAULT_SECS=20 CONSUL_RS_BIN=target/debug/consul-rs \
//!   cargo test -p consul-tests --test fault t30 -- --nocapture
//! ```
//!
//! Schedule `i` uses seed `FAULT_SEED + i` (`FAULT_SEED` defaults to a time-based seed, printed);
//! a failing schedule prints its seed, replayed with `FAULT_SEED=<seed> FAULT_SCHEDULES=1`.

use std::time::Duration;

use consul_tests::fault::{env_or, run_schedule, Schedule};

/// Runs `FAULT_SCHEDULES` (3) mixed schedules of `FAULT_SECS` (10) seconds each and prints
/// `fault: schedules=N ops=M faults=F violations=V`; fails if any schedule was not linearizable
/// or did not converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_schedules_are_linearizable() {
    let schedules = env_or("FAULT_SCHEDULES", 3);
    let secs = env_or("FAULT_SECS", 10);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let base = env_or("FAULT_SEED", now % 1_000_000);
    println!("fault: mixed schedules from seed {base} ({schedules} × {secs} s)");
    let (mut ops, mut faults, mut failures) = (0, 0, Vec::new());
    for i in 0..schedules {
        let report = run_schedule(&Schedule::mixed(base + i, Duration::from_secs(secs))).await;
        ops += report.ops;
        faults += report.faults;
        if !report.ok() {
            let text = report.failure();
            println!("{text}");
            failures.push(text);
        }
    }
    println!("fault: schedules={schedules} ops={ops} faults={faults} violations={}", failures.len());
    assert!(failures.is_empty(), "{} of {schedules} schedules failed:\n{}", failures.len(), failures.join("\n"));
}
