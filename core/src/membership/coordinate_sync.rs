//! Publishing this agent's coordinate to the servers (Consul's `Agent.sendCoordinate`).
//!
//! Every period the agent writes its current coordinate through Raft. The period is
//! `sync_coordinate_interval_min`, stretched so that all agents together stay near
//! `sync_coordinate_rate_target` writes per second (`n / rate` seconds for `n` members), plus
//! a random stagger of up to one more period so agents started together spread out. Unlike
//! Consul, which sends every period, nothing is sent until the gossip layer has fed at least
//! one observation (the origin coordinate says nothing) or while the coordinate is unchanged
//! since the last successful send.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::coordinate::{Coordinate, CoordinateClient};
use crate::replication::backend::Backend;
use crate::state::command::Command;
use crate::state::coordinate::CoordinateUpdate;

/// How many members the datacenter has (the period scales with it).
pub type MemberCount = Arc<dyn Fn() -> usize + Send + Sync>;

/// Timing of the sync task.
#[derive(Debug, Clone, Copy)]
pub struct SyncTiming {
    /// Shortest period.
    pub interval_min: Duration,
    /// Datacenter-wide writes per second aimed for.
    pub rate_target: f64,
}

/// Consul's `lib.RateScaledInterval`: the period at which `n` senders together make `rate`
/// sends per second, but never less than `min`.
pub fn rate_scaled_interval(rate: f64, min: Duration, n: usize) -> Duration {
    if !(rate.is_finite() && rate > 0.0) {
        return min;
    }
    Duration::try_from_secs_f64(n as f64 / rate).unwrap_or(Duration::MAX).max(min)
}

/// What the sync task decides to send this round, if anything.
fn to_send(client: &CoordinateClient, last_sent: Option<&Coordinate>) -> Option<Coordinate> {
    if client.stats().updates == 0 {
        return None;
    }
    let now = client.get();
    (last_sent != Some(&now)).then_some(now)
}

/// Runs until `shutdown`: publishes `node`'s coordinate as described in the module docs.
/// `server` says whether this agent holds a replica it can check the write against.
pub async fn run(
    client: Arc<CoordinateClient>,
    backend: Backend,
    node: String,
    server: bool,
    members: MemberCount,
    timing: SyncTiming,
    shutdown: CancellationToken,
) {
    let mut last_sent: Option<Coordinate> = None;
    loop {
        let period = rate_scaled_interval(timing.rate_target, timing.interval_min, members());
        let stagger_ms = period.as_millis().min(u128::from(u64::MAX)) as u64;
        let stagger =
            Duration::from_millis(if stagger_ms > 0 { rand::thread_rng().gen_range(0..stagger_ms) } else { 0 });
        tokio::select! {
            _ = tokio::time::sleep(period + stagger) => {}
            _ = shutdown.cancelled() => return,
        }
        let Some(coord) = to_send(&client, last_sent.as_ref()) else {
            continue;
        };
        let update = CoordinateUpdate { node: node.clone(), segment: String::new(), coord };
        match backend.write(Command::CoordinateBatchUpdate(vec![update])).await {
            Ok((index, _)) => {
                // The write is dropped while the node is not in the catalog yet (before the
                // first anti-entropy run), and must then be sent again even though the
                // coordinate did not change. A server sees that in its replica; a client agent
                // asks a server whether its node is registered.
                let kept = match backend.consensus().filter(|_| server) {
                    Some(c) => {
                        let state = c.state();
                        state.wait_applied(index, Duration::from_secs(2)).await;
                        state.read(|d| d.coordinates.get(&node, "") == Some(&coord))
                    }
                    None => backend.read_node(&node).await.is_ok_and(|s| s.node.is_some()),
                };
                if kept {
                    last_sent = Some(coord);
                }
            }
            Err(e) => tracing::debug!(error = %e, "coordinate update failed; will retry"),
        }
    }
}

/// Gossip carries this node's coordinate in its packets and reports probe round trips here.
impl super::gossip::engine::RttObserver for CoordinateClient {
    fn local_coordinate(&self) -> Vec<u8> {
        postcard::to_stdvec(&self.get()).unwrap_or_default()
    }

    fn observe(&self, peer: &str, coordinate: &[u8], rtt: std::time::Duration) {
        // A coordinate that does not decode or is refused (NaN, wrong dimension, absurd RTT) is
        // dropped: a peer must not be able to poison ours.
        let Ok(remote) = postcard::from_bytes::<Coordinate>(coordinate) else { return };
        if let Err(e) = self.update(peer, &remote, rtt) {
            tracing::debug!(%peer, error = %e, "coordinate update refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinate::CoordinateConfig;

    #[test]
    fn interval_scales_with_cluster_size() {
        let min = Duration::from_secs(15);
        assert_eq!(rate_scaled_interval(64.0, min, 1), min);
        assert_eq!(rate_scaled_interval(64.0, min, 960), min);
        assert_eq!(rate_scaled_interval(64.0, min, 1920), Duration::from_secs(30));
        assert_eq!(rate_scaled_interval(0.0, min, 1_000_000), min);
        assert_eq!(rate_scaled_interval(f64::NAN, min, 10), min);
    }

    #[test]
    fn sends_only_observed_and_changed_coordinates() {
        let c = CoordinateClient::new();
        assert_eq!(to_send(&c, None), None, "nothing observed yet");
        let peer = Coordinate::new(&CoordinateConfig::default());
        c.update("p", &peer, Duration::from_millis(5)).expect("update");
        let first = to_send(&c, None).expect("observed");
        assert_eq!(to_send(&c, Some(&first)), None, "unchanged");
        c.update("p", &peer, Duration::from_millis(7)).expect("update");
        assert!(to_send(&c, Some(&first)).is_some(), "changed");
    }
}
