//! Client-side load balancing under a degraded instance (issue #21): a simulation of one
//! client calling a 3-instance service in which one instance has become 10× slower, comparing
//! round-robin, least-latency, and least-latency with outlier ejection by the p99 of the
//! latency the client observes.
//!
//! The balancer is the SDK's own (`consul_sdk::balancer::Balancer`), driven in virtual time, so
//! the figures measure the algorithms, not this machine: they are the same on every run with
//! the same seeds. The service model:
//! - healthy instances answer in 4 ms + an exponential tail of mean 6 ms (median ≈ 8 ms);
//! - the degraded instance's latencies are 10× that (median ≈ 80 ms);
//! - the client gives up on a call after `--timeout-ms` (default 150 ms): the call counts as
//!   failed (reported `ok = false`) and is retried once on a fresh pick; the client observes the
//!   time it waited plus the retry;
//! - calls start every 5 ms (a steady open loop; latency does not depend on load);
//! - a second scenario adds fast failures: the degraded instance's calls fail after 1 ms
//!   (`--error-rate`, default all of them), are reported `ok = false` and retried once; a call
//!   whose retry fails too is a failed call.
//!
//! Usage: `cargo run --release -p consul-rs-bench --bin consul-rs-balancer-sim [-- --calls N
//! --seeds S --timeout-ms T]`.

use std::time::{Duration, Instant};

use clap::Parser;
use consul_sdk::balancer::{instance_key, Balancer, BalancerConfig};
use consul_sdk::ServiceEntry;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Parser, Debug)]
#[command(about = "Simulated p99 of client-observed latency under round-robin vs least-latency (+ ejection)")]
struct Args {
    /// Calls per run (after a warm-up of 1,000).
    #[arg(long, default_value_t = 100_000)]
    calls: usize,
    /// Runs (seeds) per strategy; the table gives medians over them.
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// The client's per-call timeout in milliseconds.
    #[arg(long, default_value_t = 150.0)]
    timeout_ms: f64,
    /// The degraded instance's latency factor.
    #[arg(long, default_value_t = 10.0)]
    factor: f64,
    /// Share of the degraded instance's calls that fail fast (1 ms) in the second scenario:
    /// quick errors pull a latency-only balancer towards a broken instance.
    #[arg(long, default_value_t = 1.0)]
    error_rate: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Strategy {
    RoundRobin,
    LeastLatency,
    LeastLatencyEjection,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastLatency => "least_latency",
            Strategy::LeastLatencyEjection => "least_latency + ejection",
        }
    }
}

fn instances() -> Vec<ServiceEntry> {
    (0..3)
        .map(|i| {
            let mut e = ServiceEntry::default();
            e.node.node = format!("node{i}");
            e.service.id = format!("api{i}");
            e
        })
        .collect()
}

/// One call's service time on instance `i` (instance 2 is the degraded one).
fn service_ms(rng: &mut StdRng, i: usize, factor: f64) -> f64 {
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    let ms = 4.0 + -6.0 * u.ln();
    if i == 2 {
        ms * factor
    } else {
        ms
    }
}

struct Outcome {
    p50: f64,
    p99: f64,
    p999: f64,
    degraded_share: f64,
    /// Calls that failed even after their retry.
    failed_share: f64,
}

fn run(strategy: Strategy, seed: u64, args: &Args, error_rate: f64) -> Outcome {
    let list = instances();
    let config = match strategy {
        Strategy::LeastLatencyEjection => BalancerConfig::default(),
        // No ejection: only the latency average steers.
        _ => BalancerConfig { consecutive_failures: 0, max_error_rate: 1.0, ..BalancerConfig::default() },
    };
    let mut balancer = Balancer::new(config);
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Instant::now();
    let mut cursor = 0usize;
    let mut observed = Vec::with_capacity(args.calls);
    let mut degraded_picks = 0usize;
    let mut picks = 0usize;
    let mut failed_calls = 0usize;
    let warmup = 1000;
    for call in 0..warmup + args.calls {
        let now = start + Duration::from_millis(5 * call as u64);
        let mut waited = 0.0;
        let mut call_failed = false;
        // A first attempt and at most one retry after a timeout.
        for attempt in 0..2 {
            let at = now + Duration::from_secs_f64(waited / 1000.0);
            let i = match strategy {
                Strategy::RoundRobin => {
                    cursor += 1;
                    cursor % list.len()
                }
                _ => {
                    let eligible = balancer.eligible(&list, at);
                    balancer.least_latency(&list, &eligible, at, &mut rng).unwrap_or(0)
                }
            };
            if call >= warmup {
                picks += 1;
                degraded_picks += usize::from(i == 2);
            }
            let fails_fast = i == 2 && error_rate > 0.0 && rng.gen_bool(error_rate);
            let ms = if fails_fast { 1.0 } else { service_ms(&mut rng, i, args.factor) };
            let failed = fails_fast || ms > args.timeout_ms;
            let took = ms.min(args.timeout_ms);
            balancer.report(instance_key(&list[i]), Duration::from_secs_f64(took / 1000.0), !failed, at, list.len());
            waited += took;
            call_failed = failed;
            if !failed || attempt == 1 {
                break;
            }
        }
        if call >= warmup {
            observed.push(waited);
            failed_calls += usize::from(call_failed);
        }
    }
    observed.sort_by(f64::total_cmp);
    let q = |p: f64| observed[((observed.len() as f64 * p) as usize).min(observed.len() - 1)];
    Outcome {
        p50: q(0.50),
        p99: q(0.99),
        p999: q(0.999),
        degraded_share: degraded_picks as f64 / picks as f64,
        failed_share: failed_calls as f64 / args.calls as f64,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args = Args::parse();
    for (title, error_rate) in
        [("one instance 10x slower", 0.0), ("one instance 10x slower and failing fast", args.error_rate)]
    {
        println!(
            "\n{title} (factor {}, error rate {error_rate}); {} calls per run after 1,000 warm-up calls; timeout {} ms \
             with one retry; medians over {} seeds",
            args.factor, args.calls, args.timeout_ms, args.seeds
        );
        println!("| strategy | p50 (ms) | p99 (ms) | p99.9 (ms) | picks on the degraded instance | calls failed after a retry |");
        println!("|---|---:|---:|---:|---:|---:|");
        for strategy in [Strategy::RoundRobin, Strategy::LeastLatency, Strategy::LeastLatencyEjection] {
            let runs: Vec<Outcome> = (0..args.seeds).map(|s| run(strategy, 1000 + s, &args, error_rate)).collect();
            println!(
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} % | {:.2} % |",
                strategy.name(),
                median(runs.iter().map(|o| o.p50).collect()),
                median(runs.iter().map(|o| o.p99).collect()),
                median(runs.iter().map(|o| o.p999).collect()),
                100.0 * median(runs.iter().map(|o| o.degraded_share).collect()),
                100.0 * median(runs.iter().map(|o| o.failed_share).collect()),
            );
        }
    }
}
