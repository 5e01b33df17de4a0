//! The Vivaldi client: this node's coordinate, updated from measured round trips.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;

use super::{Coordinate, CoordinateConfig, CoordinateError, MAX_RTT, ZERO_THRESHOLD};

/// Counters about a [`CoordinateClient`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoordinateStats {
    /// Observations accepted by [`CoordinateClient::update`].
    pub updates: u64,
    /// Times the coordinate went invalid (overflow) and was reset to the origin.
    pub resets: u64,
}

#[derive(Debug)]
struct Inner {
    coord: Coordinate,
    origin: Coordinate,
    /// Ring buffer of `rtt - raw distance` for the adjustment term.
    adjustment_samples: Vec<f64>,
    adjustment_index: usize,
    /// Recent RTT samples (seconds) per peer, for the median filter.
    latency: HashMap<String, VecDeque<f64>>,
    stats: CoordinateStats,
}

/// One node's Vivaldi state (Consul's `serf/coordinate.Client`). Thread-safe: every method
/// takes `&self`, so the gossip layer, the HTTP API and the sync task can share an `Arc` of it.
#[derive(Debug)]
pub struct CoordinateClient {
    config: CoordinateConfig,
    inner: Mutex<Inner>,
}

impl Default for CoordinateClient {
    fn default() -> Self {
        Self::new()
    }
}

impl CoordinateClient {
    /// A client with Consul's default tuning, at the origin.
    pub fn new() -> Self {
        Self::build(CoordinateConfig::default())
    }

    /// A client with custom tuning; refuses a config that [`CoordinateConfig::validate`] refuses.
    pub fn with_config(config: CoordinateConfig) -> Result<Self, CoordinateError> {
        config.validate()?;
        Ok(Self::build(config))
    }

    fn build(config: CoordinateConfig) -> Self {
        let origin = Coordinate::new(&config);
        CoordinateClient {
            config,
            inner: Mutex::new(Inner {
                coord: origin,
                origin,
                adjustment_samples: vec![0.0; config.adjustment_window_size],
                adjustment_index: 0,
                latency: HashMap::new(),
                stats: CoordinateStats::default(),
            }),
        }
    }

    /// The tuning in use.
    pub fn config(&self) -> &CoordinateConfig {
        &self.config
    }

    /// This node's current coordinate.
    pub fn get(&self) -> Coordinate {
        self.inner.lock().coord
    }

    /// Counters: accepted updates and resets.
    pub fn stats(&self) -> CoordinateStats {
        self.inner.lock().stats
    }

    /// Estimated RTT from this node to a node at `other`.
    pub fn distance_to(&self, other: &Coordinate) -> Duration {
        super::distance(&self.get(), other)
    }

    /// Feeds one observation: `rtt` was measured to `peer_node`, whose coordinate is `peer`.
    /// Returns this node's new coordinate.
    ///
    /// Refuses (changing nothing) a peer coordinate that fails [`Coordinate::validate`] and an
    /// RTT above [`MAX_RTT`]. A zero RTT is accepted (it is clamped to a microsecond, as loopback
    /// probes can measure 0). The RTT passes through a per-peer median filter of the last
    /// `latency_filter_size` samples first, so one delayed probe does not yank the coordinate.
    pub fn update(&self, peer_node: &str, peer: &Coordinate, rtt: Duration) -> Result<Coordinate, CoordinateError> {
        peer.validate()?;
        if rtt > MAX_RTT {
            return Err(CoordinateError::RttOutOfRange { rtt, max: MAX_RTT });
        }
        let mut inner = self.inner.lock();
        let rtt_secs = self.latency_filter(&mut inner, peer_node, rtt.as_secs_f64());
        self.update_vivaldi(&mut inner, peer, rtt_secs);
        self.update_adjustment(&mut inner, peer, rtt_secs);
        self.update_gravity(&mut inner);
        if !inner.coord.is_valid() {
            // Only reachable through float overflow with extreme peer coordinates: start over
            // rather than publish garbage.
            inner.stats.resets += 1;
            inner.coord = inner.origin;
            inner.adjustment_samples.iter_mut().for_each(|s| *s = 0.0);
        }
        inner.stats.updates += 1;
        Ok(inner.coord)
    }

    /// Drops the latency samples kept for `peer_node` (it left the cluster).
    pub fn forget(&self, peer_node: &str) {
        self.inner.lock().latency.remove(peer_node);
    }

    /// Adds `rtt_secs` to the peer's sample window and returns the window's median.
    fn latency_filter(&self, inner: &mut Inner, peer_node: &str, rtt_secs: f64) -> f64 {
        let size = self.config.latency_filter_size;
        let samples = inner.latency.entry(peer_node.to_string()).or_insert_with(|| VecDeque::with_capacity(size));
        samples.push_back(rtt_secs);
        while samples.len() > size {
            samples.pop_front();
        }
        let mut sorted: Vec<f64> = samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    /// The Vivaldi step: compare the predicted distance with the measured RTT, update the error
    /// estimate (weighted by how confident each side is), and move along the line between the
    /// two nodes by a fraction of the disagreement.
    fn update_vivaldi(&self, inner: &mut Inner, peer: &Coordinate, rtt_secs: f64) {
        let c = &self.config;
        let rtt = rtt_secs.max(ZERO_THRESHOLD);
        let dist = super::distance_secs(&inner.coord, peer);
        let wrongness = (dist - rtt).abs() / rtt;
        let total_error = (inner.coord.error + peer.error).max(ZERO_THRESHOLD);
        let weight = inner.coord.error / total_error;
        let error = c.vivaldi_ce * weight * wrongness + inner.coord.error * (1.0 - c.vivaldi_ce * weight);
        inner.coord.error = error.min(c.vivaldi_error_max);
        let force = c.vivaldi_cc * weight * (rtt - dist);
        inner.coord = inner.coord.apply_force(c, force, peer);
    }

    /// Keeps a window of (measured − predicted) and sets the adjustment to half its mean: the
    /// distance between two nodes adds both adjustments, so together they correct the average
    /// error the Euclidean model leaves.
    fn update_adjustment(&self, inner: &mut Inner, peer: &Coordinate, rtt_secs: f64) {
        let window = self.config.adjustment_window_size;
        if window == 0 {
            return;
        }
        let sample = rtt_secs - inner.coord.raw_distance_secs(peer);
        let i = inner.adjustment_index;
        inner.adjustment_samples[i] = sample;
        inner.adjustment_index = (i + 1) % window;
        let sum: f64 = inner.adjustment_samples.iter().sum();
        inner.coord.adjustment = sum / (2.0 * window as f64);
    }

    /// A weak pull toward the origin, growing with the square of the distance from it, so the
    /// whole coordinate system does not drift away over time.
    fn update_gravity(&self, inner: &mut Inner) {
        let dist = super::distance_secs(&inner.origin, &inner.coord);
        let force = -(dist / self.config.gravity_rho).powi(2);
        let origin = inner.origin;
        inner.coord = inner.coord.apply_force(&self.config, force, &origin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinate::{distance, DIMENSIONALITY};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn ms(x: f64) -> Duration {
        Duration::from_secs_f64(x / 1000.0)
    }

    /// Runs `rounds` rounds in which every node measures the true RTT to one random other node
    /// (optionally with noise); returns the clients.
    fn simulate(truth: &[Vec<f64>], rounds: usize, noise_ms: f64, seed: u64) -> Vec<CoordinateClient> {
        let n = truth.len();
        let clients: Vec<CoordinateClient> = (0..n).map(|_| CoordinateClient::new()).collect();
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..rounds {
            for i in 0..n {
                let mut j = rng.gen_range(0..n - 1);
                if j >= i {
                    j += 1;
                }
                let jitter = if noise_ms > 0.0 { rng.gen_range(0.0..noise_ms) } else { 0.0 };
                let peer = clients[j].get();
                clients[i].update(&format!("node{j}"), &peer, ms(truth[i][j] + jitter)).expect("update");
            }
        }
        clients
    }

    /// Mean and worst relative error of the estimated distances against the truth.
    fn errors(truth: &[Vec<f64>], clients: &[CoordinateClient]) -> (f64, f64) {
        let n = truth.len();
        let (mut sum, mut worst, mut count) = (0.0, 0.0f64, 0.0);
        for i in 0..n {
            for j in (i + 1)..n {
                let est = distance(&clients[i].get(), &clients[j].get()).as_secs_f64() * 1000.0;
                let rel = (est - truth[i][j]).abs() / truth[i][j];
                sum += rel;
                worst = worst.max(rel);
                count += 1.0;
            }
        }
        (sum / count, worst)
    }

    #[test]
    fn converges_on_a_line() {
        // 10 nodes 10 ms apart on a line. (Over many seeds the mean error settles below 0.5 %
        // and the worst below 2.5 %; the bounds leave room.)
        let n = 10;
        let truth: Vec<Vec<f64>> =
            (0..n).map(|i| (0..n).map(|j| (i as f64 - j as f64).abs() * 10.0).collect()).collect();
        let clients = simulate(&truth, 1000, 0.0, 1);
        let (mean, worst) = errors(&truth, &clients);
        assert!(mean < 0.02, "mean relative error {mean}");
        assert!(worst < 0.1, "worst relative error {worst}");
        // The ends of the line are the farthest apart.
        let far = distance(&clients[0].get(), &clients[n - 1].get()).as_secs_f64() * 1000.0;
        assert!((far - 90.0).abs() < 9.0, "ends {far} ms apart, want about 90");
        for c in &clients {
            assert!(c.get().error < 0.5, "error estimate shrank: {}", c.get().error);
        }
    }

    #[test]
    fn converges_on_a_grid_with_noise() {
        // A 5x5 grid, 10 ms spacing, 1 ms access links, plus up to 1 ms of measurement noise
        // (typically 2.3 % mean and under 10 % worst error).
        let side = 5;
        let pos: Vec<(f64, f64)> =
            (0..side * side).map(|k| ((k % side) as f64 * 10.0, (k / side) as f64 * 10.0)).collect();
        let truth: Vec<Vec<f64>> = pos
            .iter()
            .map(|a| pos.iter().map(|b| ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt() + 1.0).collect())
            .collect();
        let clients = simulate(&truth, 600, 1.0, 7);
        let (mean, worst) = errors(&truth, &clients);
        assert!(mean < 0.06, "mean relative error {mean}");
        assert!(worst < 0.25, "worst relative error {worst}");
    }

    #[test]
    fn starts_at_the_origin_with_max_error() {
        let c = CoordinateClient::new();
        let coord = c.get();
        assert_eq!(coord.vec, [0.0; DIMENSIONALITY]);
        assert_eq!(coord.error, 1.5);
        assert_eq!(coord.height, 10.0e-6);
        assert_eq!(c.stats(), CoordinateStats::default());
    }

    #[test]
    fn bad_input_is_refused_and_changes_nothing() {
        let c = CoordinateClient::new();
        let peer = Coordinate::new(&CoordinateConfig::default());
        c.update("a", &peer, ms(5.0)).expect("good update");
        let before = c.get();
        let mut nan = peer;
        nan.vec[2] = f64::NAN;
        assert!(matches!(c.update("a", &nan, ms(5.0)), Err(CoordinateError::NotFinite { .. })));
        let mut inf = peer;
        inf.height = f64::INFINITY;
        assert!(c.update("a", &inf, ms(5.0)).is_err());
        let mut neg = peer;
        neg.error = -1.0;
        assert!(matches!(c.update("a", &neg, ms(5.0)), Err(CoordinateError::Negative { field: "Error", .. })));
        let e = c.update("a", &peer, Duration::from_secs(11)).expect_err("absurd rtt");
        assert!(matches!(e, CoordinateError::RttOutOfRange { .. }));
        assert!(e.to_string().contains("out of range"), "{e}");
        assert_eq!(c.get(), before);
        assert_eq!(c.stats().updates, 1);
        // Zero RTT is fine (loopback).
        c.update("a", &peer, Duration::ZERO).expect("zero rtt");
        assert!(c.get().is_valid());
    }

    #[test]
    fn extreme_but_finite_peers_never_produce_an_invalid_coordinate() {
        let c = CoordinateClient::new();
        let mut huge = Coordinate::new(&CoordinateConfig::default());
        huge.vec = [1e300; DIMENSIONALITY];
        huge.height = 1e300;
        huge.error = 1e-300;
        for rtt in [0.0, 1.0, 9999.0] {
            let out = c.update("huge", &huge, ms(rtt)).expect("accepted");
            assert!(out.is_valid(), "{out:?}");
        }
        assert!(c.stats().resets >= 1);
    }

    #[test]
    fn median_filter_rejects_one_outlier() {
        let c = CoordinateClient::new();
        let mut inner = c.inner.lock();
        assert_eq!(c.latency_filter(&mut inner, "p", 0.010), 0.010);
        assert_eq!(c.latency_filter(&mut inner, "p", 0.012), 0.012);
        assert_eq!(c.latency_filter(&mut inner, "p", 0.500), 0.012);
        assert_eq!(c.latency_filter(&mut inner, "p", 0.011), 0.012);
        assert_eq!(c.latency_filter(&mut inner, "p", 0.013), 0.013);
        // Other peers have their own window.
        assert_eq!(c.latency_filter(&mut inner, "q", 0.100), 0.100);
        drop(inner);
        c.forget("p");
        assert!(!c.inner.lock().latency.contains_key("p"));
    }

    #[test]
    fn shared_between_threads() {
        let c = std::sync::Arc::new(CoordinateClient::new());
        let peer = Coordinate::new(&CoordinateConfig::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for k in 0..100 {
                        let _ = c.update(&format!("p{t}"), &peer, ms(1.0 + k as f64 % 5.0));
                        let _ = c.get();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(c.stats().updates, 400);
        assert!(c.get().is_valid());
    }

    #[test]
    fn custom_config() {
        let bad = CoordinateConfig { gravity_rho: 0.0, ..CoordinateConfig::default() };
        assert!(CoordinateClient::with_config(bad).is_err());
        let no_adjust = CoordinateConfig { adjustment_window_size: 0, ..CoordinateConfig::default() };
        let c = CoordinateClient::with_config(no_adjust).expect("config");
        let peer = Coordinate::new(&CoordinateConfig::default());
        let out = c.update("p", &peer, ms(10.0)).expect("update");
        assert_eq!(out.adjustment, 0.0);
    }
}
