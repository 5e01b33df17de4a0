//! Fault injection against real `consul-rs` processes, every history checked for
//! linearizability with porcupine (`tests/linearizability`, Go; see `consul_tests::fault`).
//!
//! - `t10_checker`: the checker flags planted violations and accepts valid histories.
//! - `t20_stories`: the two stories of issue #12, with fixed seeds.
//! - `t30_nemesis`: randomized mixed schedules; short by default (CI), long with
//!   `FAULT_SCHEDULES=100 FAULT_SECS=20`. `FAULT_SEED=<n>` replays a printed seed.
//!
//! The cluster tests take a shared lock, so they run one at a time even though the test harness
//! runs tests in parallel.

mod t10_checker;
mod t20_stories;
mod t30_nemesis;
