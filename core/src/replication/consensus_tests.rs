//! Unit tests of [`Consensus`] over the seams: real Raft nodes on the in-memory network
//! ([`crate::rpc::memory::MemoryNetwork`]) with inline-commit log stores, on tokio's paused
//! clock, built by the simulator's [`SimCluster`].
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::replication::sim::SimCluster;
use crate::rpc::memory::LinkFaults;
use crate::state::command::{KvOp, KvVerb};

fn paused(test: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    rt.block_on(test);
}

async fn three_servers(seed: u64) -> (SimCluster, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let cluster = SimCluster::start(3, seed, &mut rng).await.unwrap();
    let leader = cluster.wait_leader(Duration::from_secs(10)).await.unwrap();
    // Everyone knows the leader before the test starts.
    for i in 0..3 {
        let c = cluster.consensus(i).unwrap();
        while c.leader().is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    (cluster, leader)
}

fn put(key: &str, value: &str) -> Command {
    Command::Kv(KvOp::new(KvVerb::Set, key).with_value(value.as_bytes().to_vec()))
}

fn kv(c: &Consensus, key: &str) -> Option<(String, u64)> {
    c.state().read(|d| d.kvs.get(key).map(|e| (String::from_utf8_lossy(&e.value).into_owned(), e.modify_index)))
}

/// How often the log holds a KV write of `value`, however wrapped (tracked, batched).
fn proposals_of(cluster: &SimCluster, server: usize, value: &str) -> usize {
    fn count(cmd: &Command, value: &str) -> usize {
        match cmd {
            Command::Kv(op) => usize::from(op.value.as_ref() == value.as_bytes()),
            Command::Tracked { cmd, .. } => count(cmd, value),
            Command::Batch(cmds) => cmds.iter().map(|c| count(c, value)).sum(),
            _ => 0,
        }
    }
    cluster
        .log_entries(server)
        .unwrap()
        .iter()
        .map(|e| match &e.payload {
            openraft::EntryPayload::Normal(cmd) => count(cmd, value),
            _ => 0,
        })
        .sum()
}

/// Issue 12, story 1: a follower forwards a write; the leader commits and applies it, then dies
/// before its answer reaches the follower (`ConnectionLost`: ambiguous). The follower retries
/// at the next leader with the same request id; the write is in the log twice and applied once,
/// and the client is answered with the first application's index.
#[test]
fn a_forwarded_write_whose_leader_dies_after_applying_it_is_applied_once() {
    paused(async {
        let (mut cluster, leader) = three_servers(11).await;
        let follower = (leader + 1) % 3;
        let slow = LinkFaults { delay: Duration::from_millis(200), ..LinkFaults::default() };
        cluster.net().set_link_faults(cluster.addr(leader), cluster.addr(follower), slow);

        let via = cluster.consensus(follower).unwrap();
        let write = tokio::spawn(async move { via.write(put("k", "v")).await });
        let on_leader = cluster.consensus(leader).unwrap();
        while kv(&on_leader, "k").is_none() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        cluster.crash(leader).await;

        let (index, resp) = write.await.unwrap().unwrap();
        assert_eq!(resp, CommandResponse::Bool(true));
        let survivor = (leader + 2) % 3;
        let c = cluster.consensus(survivor).unwrap();
        assert!(c.state().wait_applied(index + 1, Duration::from_secs(5)).await);
        assert_eq!(kv(&c, "k"), Some(("v".into(), index)), "applied once, at the acknowledged index");
        assert!(proposals_of(&cluster, survivor, "v") >= 2, "the retry reached the log (the test exercised it)");
    });
}

/// A default-mode read on a follower that lags the leader waits until it has applied the
/// leader's index: it returns the write acknowledged before it began, never the older state.
#[test]
fn a_followers_default_read_waits_for_the_leaders_index() {
    paused(async {
        let (cluster, leader) = three_servers(12).await;
        let follower = (leader + 1) % 3;
        let slow = LinkFaults { delay: Duration::from_millis(300), ..LinkFaults::default() };
        cluster.net().set_link_faults(cluster.addr(leader), cluster.addr(follower), slow);

        let (index, _) = cluster.consensus(leader).unwrap().write(put("k", "fresh")).await.unwrap();
        let f = cluster.consensus(follower).unwrap();
        assert_eq!(kv(&f, "k"), None, "the follower lags (the test exercises the wait)");
        f.read_barrier(Consistency::Default).await.unwrap();
        assert_eq!(kv(&f, "k"), Some(("fresh".into(), index)));
    });
}

/// The session reaper's TTL timers run on the injected (here virtual) clock: a 10 s TTL session
/// lapses after 2 × TTL of virtual time, with no wall-clock wait.
#[test]
fn a_lapsed_session_is_destroyed_on_virtual_time() {
    paused(async {
        let (cluster, leader) = three_servers(13).await;
        let c = cluster.consensus(leader).unwrap();
        let mut node = crate::state::catalog::RegisterRequest::default();
        node.node.node = "n1".into();
        node.node.address = "10.0.0.9".into();
        let (_, r) = c.write(Command::CatalogRegister(Box::new(node))).await.unwrap();
        assert_eq!(r, CommandResponse::Ok);
        let session =
            crate::state::Session { id: "s1".into(), node: "n1".into(), ttl: "10s".into(), ..Default::default() };
        let (_, r) = c.write(Command::SessionCreate(Box::new(session))).await.unwrap();
        assert_eq!(r, CommandResponse::Ok);
        let reaper = tokio::spawn(crate::replication::session_ttl::reap_sessions(c.clone(), CancellationToken::new()));
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert!(c.state().read(|d| d.sessions.contains_key("s1")), "not before 2 × TTL");
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(!c.state().read(|d| d.sessions.contains_key("s1")), "lapsed after 2 × TTL");
        reaper.abort();
    });
}

/// A follower forwards a write; the leader appends it and replicates it, but no follower's
/// acknowledgement reaches it, so it cannot commit and its proposal times out (the write's
/// outcome is now unknown: it is in a majority of logs). Once the network heals, the leader
/// commits it. Whatever the client was told must not be "No cluster leader" (which says that
/// nothing was applied): only success or "outcome unknown" are true answers.
#[test]
fn a_write_whose_commit_the_leader_cannot_confirm_is_never_answered_no_leader() {
    paused(async {
        let (cluster, leader) = three_servers(14).await;
        let (f, g) = ((leader + 1) % 3, (leader + 2) % 3);
        let l = cluster.consensus(leader).unwrap();
        let before = l.metrics().last_log_index;

        let via = cluster.consensus(f).unwrap();
        let write = tokio::spawn(async move { via.write(put("k", "w")).await });
        while l.metrics().last_log_index == before {
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        // The leader has appended it: from now on every answer to the leader is lost.
        cluster.net().cut(cluster.addr(f), cluster.addr(leader));
        cluster.net().cut(cluster.addr(g), cluster.addr(leader));

        let answer = write.await.unwrap();
        cluster.net().heal();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let applied = kv(&cluster.consensus(g).unwrap(), "k").is_some();
        match answer {
            Ok(_) => assert!(applied),
            Err(Error::OutcomeUnknown(_)) => {}
            Err(e) => assert!(!applied, "answered {e:?}, yet the write was applied"),
        }
    });
}

/// A command the state machine refuses is the caller's error (`Error::Apply`, with its own HTTP
/// status) whether it is answered the first time or replayed from the dedup window.
#[test]
fn a_refused_write_is_an_apply_error_first_time_and_replayed() {
    use crate::error::ApplyError;
    let refusal = || ApplyError::InvalidRegistration("no node".into());
    let first = settle_write(7, CommandResponse::Failed(refusal()));
    assert!(matches!(first, Err(Error::Apply(ref e)) if *e == refusal()), "{first:?}");
    let replayed = CommandResponse::Replayed { index: 5, response: Box::new(CommandResponse::Failed(refusal())) };
    let again = settle_write(9, replayed);
    assert!(matches!(again, Err(Error::Apply(ref e)) if *e == refusal()), "{again:?}");
    assert_eq!(Error::Apply(refusal()).http_status(), 400);
    let ok = settle_write(9, CommandResponse::Replayed { index: 5, response: Box::new(CommandResponse::Ok) });
    assert!(matches!(ok, Ok((5, CommandResponse::Ok))), "{ok:?}");
}
