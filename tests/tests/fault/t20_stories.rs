//! The stories of issue #12 (and one the long run found), each a fixed-seed schedule that must
//! be linearizable: with the bugs present they fail (and print the seed, the violating key and
//! porcupine's account).

use std::time::Duration;

use consul_tests::fault::{run_schedule, seed_or, Fault, NemesisConfig, Schedule, Target, WorkloadConfig};

/// Clients send only to followers, so every write is forwarded; the nemesis only kill -9s the
/// leader (about 4 times in 15 s), restarting it about 1 s later. A forwarded write whose
/// forward broke when the leader died must be applied once (or, answered as unknown, not at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_write_applied_once_when_leader_dies() {
    let schedule = Schedule {
        name: "story1-forwarded-write".into(),
        seed: seed_or(1201),
        duration: Duration::from_secs(15),
        workload: WorkloadConfig { target: Target::Followers, ..WorkloadConfig::default() },
        nemesis: NemesisConfig {
            faults: vec![Fault::KillLeader],
            gap_ms: (2200, 2800),
            kill_downtime_ms: (900, 1100),
            read_burst: None,
            ..NemesisConfig::mixed()
        },
        raft_multiplier: 1,
        check_timeout: Duration::from_secs(60),
    };
    let report = run_schedule(&schedule).await;
    assert!(report.faults >= 3, "the nemesis killed the leader only {} times", report.faults);
    assert!(report.ok(), "{}", report.failure());
}

/// The nemesis kills the leader and restarts it within 0.5 s (before a successor is elected),
/// repeatedly; right after each restart every server gets default-mode reads. None may answer
/// from state older than what the cluster acknowledged. Clients send to the leader, so writes
/// are rarely forwarded and this story is not masked by the first one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_read_after_fast_leader_restart() {
    let schedule = Schedule {
        name: "story2-fast-leader-restart".into(),
        seed: seed_or(1202),
        duration: Duration::from_secs(20),
        workload: WorkloadConfig { target: Target::Leader, ..WorkloadConfig::default() },
        nemesis: NemesisConfig {
            faults: vec![Fault::FastLeaderRestart],
            // About 10 restarts: the stale window after each is only milliseconds long.
            gap_ms: (1000, 1800),
            fast_restart_ms: (50, 400),
            read_burst: Some(Duration::from_millis(1500)),
            ..NemesisConfig::mixed()
        },
        raft_multiplier: 1,
        check_timeout: Duration::from_secs(60),
    };
    let report = run_schedule(&schedule).await;
    assert!(report.faults >= 3, "the nemesis restarted the leader only {} times", report.faults);
    assert!(report.ok(), "{}", report.failure());
}

/// The nemesis SIGSTOPs the leader for longer than an election timeout, repeatedly, while
/// clients keep sending to every server: requests to the stopped leader wait in its socket
/// queues and are served the moment it resumes, before it has heard of its successor. None may
/// answer from its own old state (seen in the long mixed run, seed 505036: openraft's "ms since
/// quorum ack" metric, read late, made a resumed leader's lease look fresh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_read_from_a_resumed_leader() {
    let schedule = Schedule {
        name: "story3-resumed-leader".into(),
        seed: seed_or(1203),
        duration: Duration::from_secs(20),
        workload: WorkloadConfig { target: Target::Random, ..WorkloadConfig::default() },
        nemesis: NemesisConfig {
            faults: vec![Fault::PauseLeader],
            gap_ms: (800, 1500),
            pause_ms: (1500, 3000),
            read_burst: None,
            ..NemesisConfig::mixed()
        },
        raft_multiplier: 1,
        check_timeout: Duration::from_secs(60),
    };
    let report = run_schedule(&schedule).await;
    assert!(report.faults >= 3, "the nemesis paused the leader only {} times", report.faults);
    assert!(report.ok(), "{}", report.failure());
}
