//! The once-a-second metrics collector: what no single event reports — runtime memory and task
//! counts, gossip traffic and member changes, Raft leader contact, session TTL timers and the
//! state store's table sizes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::membership::cluster::Cluster;
use crate::membership::gossip::engine::Counters;
use crate::membership::gossip::MemberStatus;
use crate::metrics::Metrics;
use crate::replication::consensus::Consensus;

/// How often the collector runs (go-metrics' runtime profile interval).
const PERIOD: Duration = Duration::from_secs(1);

/// What the previous pass saw, to report changes as counters.
#[derive(Debug, Default)]
struct Seen {
    counters: Counters,
    members: HashMap<String, MemberStatus>,
}

/// Records until `shutdown`.
pub(crate) async fn run(
    metrics: Arc<Metrics>,
    cluster: Arc<Cluster>,
    consensus: Option<Arc<Consensus>>,
    shutdown: CancellationToken,
) {
    if !metrics.enabled() {
        return;
    }
    let mut seen = Seen::default();
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        metrics.record_runtime();
        record_gossip(&metrics, &cluster, &mut seen);
        if let Some(c) = &consensus {
            c.record_metrics(&metrics);
        }
    }
}

/// `consul.memberlist.*` traffic (bytes since the last pass) and health score, and
/// `consul.serf.member.{join,left,failed}` for members whose status changed since then.
fn record_gossip(metrics: &Metrics, cluster: &Cluster, seen: &mut Seen) {
    let gossip = cluster.gossip();
    let now = gossip.counters();
    let delta = |new: u64, old: u64| new.saturating_sub(old) as f64;
    metrics.incr_counter("memberlist.udp.received", &[], delta(now.bytes_in, seen.counters.bytes_in));
    metrics.incr_counter("memberlist.udp.sent", &[], delta(now.bytes_out, seen.counters.bytes_out));
    metrics.incr_counter("memberlist.packets.received", &[], delta(now.packets_in, seen.counters.packets_in));
    metrics.incr_counter("memberlist.packets.sent", &[], delta(now.packets_out, seen.counters.packets_out));
    seen.counters = now;
    metrics.set_gauge("memberlist.health.score", &[], f64::from(gossip.local_health()));

    let members = cluster.members();
    let (mut servers, mut clients) = (0u32, 0u32);
    let mut current = HashMap::with_capacity(members.len());
    for m in members {
        if m.status == MemberStatus::Alive {
            if m.info.server {
                servers += 1;
            } else {
                clients += 1;
            }
        }
        let event = match (seen.members.get(&m.info.name), m.status) {
            (None | Some(MemberStatus::Left | MemberStatus::Failed), MemberStatus::Alive) => Some("serf.member.join"),
            (Some(MemberStatus::Alive | MemberStatus::Leaving), MemberStatus::Left) => Some("serf.member.left"),
            (Some(MemberStatus::Alive | MemberStatus::Leaving), MemberStatus::Failed) => Some("serf.member.failed"),
            _ => None,
        };
        if let Some(name) = event {
            metrics.incr_counter(name, &[], 1.0);
        }
        current.insert(m.info.name.clone(), m.status);
    }
    seen.members = current;
    metrics.set_gauge("members.servers", &[], f64::from(servers));
    metrics.set_gauge("members.clients", &[], f64::from(clients));
}
