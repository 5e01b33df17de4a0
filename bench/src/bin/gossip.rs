//! Gossip benchmark: failure detection time, false positives, traffic per member and event
//! propagation for simulated pools of 100, 500 and 1,000 members — the production gossip engine
//! over the deterministic in-memory network of `consul_core::gossip::sim` — side by side with
//! what the memberlist/Serf model predicts for the same settings.
//!
//! `cargo run --release -p consul-rs-bench --bin consul-rs-gossip-bench -- --members 100,500,1000`

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use consul_core::gossip::sim::{epidemic_rounds, Sim, SimConfig};
use consul_core::gossip::{GossipConfig, MemberStatus};

#[derive(Debug, Parser)]
#[command(about = "Gossip failure detection and dissemination on simulated pools")]
struct Args {
    /// Pool sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000")]
    members: Vec<usize>,
    /// Trials per size (a crash and an event each); medians are reported.
    #[arg(long, default_value_t = 5)]
    trials: usize,
    /// Packet loss for the false-positive run (0.01 = 1 %).
    #[arg(long, default_value_t = 0.01)]
    loss: f64,
    /// Virtual seconds of the false-positive run.
    #[arg(long, default_value_t = 300)]
    soak_secs: u64,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn converge(sim: &mut Sim) -> Duration {
    sim.run_until_true(Duration::from_millis(100), Duration::from_secs(600), Sim::converged).unwrap_or(Duration::MAX)
}

struct Row {
    n: usize,
    detect_first: f64,
    detect_all: f64,
    model_detect: f64,
    event_all: f64,
    model_event: f64,
    bytes_per_member_s: f64,
    false_failures: usize,
    soak_member_hours: f64,
    wall: f64,
}

fn run_size(n: usize, a: &Args) -> Row {
    let started = Instant::now();
    let cfg = GossipConfig::lan();
    let (mut firsts, mut alls, mut events, mut rates) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for t in 0..a.trials {
        let seed = a.seed + t as u64 * 7919 + n as u64;
        let mut sim = Sim::new(SimConfig::lan(n, seed));
        converge(&mut sim);
        // Steady-state traffic over 30 virtual seconds with nothing happening.
        let (b0, _) = sim.traffic();
        sim.run_for(Duration::from_secs(30));
        let (b1, _) = sim.traffic();
        rates.push((b1 - b0) as f64 / n as f64 / 30.0);
        // An event from a random member: time until every member holds it.
        let id = sim.fire_event(t % n, "bench");
        let took = sim
            .run_until_true(Duration::from_millis(10), Duration::from_secs(60), |s| s.count_with_event(&id) == n)
            .unwrap_or(Duration::MAX);
        events.push(took.as_secs_f64());
        // A crash: first verdict, then everyone's.
        let victim = (t * 37 + 1) % n;
        let name = sim.name(victim).to_string();
        sim.crash(victim);
        let first = sim
            .run_until_true(Duration::from_millis(20), Duration::from_secs(120), |s| {
                s.count_seeing(&name, MemberStatus::Failed) > 0
            })
            .unwrap_or(Duration::MAX);
        let rest = sim
            .run_until_true(Duration::from_millis(20), Duration::from_secs(120), |s| {
                s.count_seeing(&name, MemberStatus::Failed) == s.live_others(victim)
            })
            .unwrap_or(Duration::MAX);
        firsts.push(first.as_secs_f64());
        alls.push((first + rest).as_secs_f64());
    }
    // False positives: lossy network plus two slow (not dead) members, nobody crashes.
    let mut soak = SimConfig::lan(n, a.seed ^ 0xfa15e);
    soak.loss = a.loss;
    let mut sim = Sim::new(soak);
    converge(&mut sim);
    sim.make_slow(1, Duration::from_millis(300));
    sim.make_slow(2, Duration::from_millis(300));
    let mut false_failures = 0;
    let mut flagged = vec![false; n];
    for _ in 0..a.soak_secs {
        sim.run_for(Duration::from_secs(1));
        for (i, f) in flagged.iter_mut().enumerate() {
            let now_failed = sim.count_seeing(sim.name(i), MemberStatus::Failed) > 0;
            if now_failed && !*f {
                false_failures += 1;
            }
            *f = now_failed;
        }
    }
    // The model: a member is probed by someone within about half a probe period on average,
    // then probe timeout, then the suspicion timeout, then the verdict spreads epidemically.
    let rounds = epidemic_rounds(n, cfg.gossip_nodes);
    let spread = cfg.gossip_interval.as_secs_f64() * rounds;
    let model_detect = cfg.probe_interval.as_secs_f64() / 2.0
        + cfg.probe_timeout.as_secs_f64()
        + cfg.suspicion_timeout(n).as_secs_f64();
    Row {
        n,
        detect_first: median(firsts),
        detect_all: median(alls),
        model_detect: model_detect + spread,
        event_all: median(events),
        model_event: spread,
        bytes_per_member_s: median(rates),
        false_failures,
        soak_member_hours: n as f64 * a.soak_secs as f64 / 3600.0,
        wall: started.elapsed().as_secs_f64(),
    }
}

fn main() -> Result<()> {
    let a = Args::parse();
    println!(
        "| members | detect: first verdict (s) | detect: all members (s) | model (s) | event to all (s) | model (s) | bytes/member/s | false failures ({}% loss, 2 slow) | sim wall (s) |",
        a.loss * 100.0
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &a.members {
        let r = run_size(n, &a);
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {} in {:.1} member-h | {:.1} |",
            r.n,
            r.detect_first,
            r.detect_all,
            r.model_detect,
            r.event_all,
            r.model_event,
            r.bytes_per_member_s,
            r.false_failures,
            r.soak_member_hours,
            r.wall
        );
    }
    Ok(())
}
