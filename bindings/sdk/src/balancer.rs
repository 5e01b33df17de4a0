//! Adaptive client-side load balancing over a [`crate::Discovery`] set (issue #21, beyond
//! Consul): the application reports how each call went, and picks follow.
//!
//! - **Least latency**: power of two choices over an exponentially weighted moving average of
//!   reported latencies. The average of an instance that gets no traffic decays towards zero
//!   (half-life [`BalancerConfig::decay_half_life`]), so an instance that was slow and recovered
//!   is tried again and gets its traffic back once its reports say so. Instances with no reports
//!   score zero: new instances are tried at once.
//! - **Passive outlier ejection** (all strategies): an instance with
//!   [`BalancerConfig::consecutive_failures`] failed calls in a row, or an error rate over
//!   [`BalancerConfig::max_error_rate`] in [`BalancerConfig::error_window`] (with at least
//!   [`BalancerConfig::min_requests`] calls), is left out of picks for an ejection time that
//!   doubles with each repeat (up to [`BalancerConfig::max_ejection`]). Never more than
//!   [`BalancerConfig::max_ejected_share`] of the instances are out at once, and never all.
//!
//! Pure over time and randomness (both passed in), so its tests are deterministic.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::error::{Error, Result};
use crate::types::ServiceEntry;

/// Tuning of the balancer; the defaults suit request/response services.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancerConfig {
    /// Weight of a new latency sample in the moving average (0 < alpha ≤ 1).
    pub ewma_alpha: f64,
    /// An instance's average halves for every this long without reports, so it is tried again.
    pub decay_half_life: Duration,
    /// Failed calls in a row that eject an instance (0: never by count).
    pub consecutive_failures: u32,
    /// Error rate over `error_window` that ejects an instance (≥ 1.0: never by rate).
    pub max_error_rate: f64,
    /// The window the error rate is measured over.
    pub error_window: Duration,
    /// Calls in the window before the error rate counts.
    pub min_requests: u32,
    /// The first ejection's length; each repeat doubles it.
    pub base_ejection: Duration,
    /// The longest ejection.
    pub max_ejection: Duration,
    /// The largest share of instances ejected at once (0.0–1.0; at least one instance stays).
    pub max_ejected_share: f64,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        BalancerConfig {
            ewma_alpha: 0.3,
            decay_half_life: Duration::from_secs(5),
            consecutive_failures: 5,
            max_error_rate: 0.5,
            error_window: Duration::from_secs(10),
            min_requests: 10,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_share: 0.5,
        }
    }
}

impl BalancerConfig {
    /// Checks the values; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if self.ewma_alpha.is_nan() || self.ewma_alpha <= 0.0 || self.ewma_alpha > 1.0 {
            return Err(Error::invalid("ewma_alpha", "must be in (0, 1]"));
        }
        if self.decay_half_life.is_zero() {
            return Err(Error::invalid("decay_half_life", "must be greater than 0"));
        }
        if self.max_error_rate.is_nan() || self.max_error_rate <= 0.0 {
            return Err(Error::invalid("max_error_rate", "must be greater than 0 (1.0 or more: never by rate)"));
        }
        if self.error_window.is_zero() {
            return Err(Error::invalid("error_window", "must be greater than 0"));
        }
        if self.base_ejection.is_zero() || self.max_ejection < self.base_ejection {
            return Err(Error::invalid("base_ejection", "must be greater than 0 and at most max_ejection"));
        }
        if !(0.0..=1.0).contains(&self.max_ejected_share) {
            return Err(Error::invalid("max_ejected_share", "must be between 0.0 and 1.0"));
        }
        Ok(())
    }
}

/// Identifies an instance across set refreshes: its node and service ID.
pub type InstanceKey = (String, String);

/// The key of `e`.
pub fn instance_key(e: &ServiceEntry) -> InstanceKey {
    (e.node.node.clone(), e.service.id.clone())
}

/// What the balancer knows of one instance.
#[derive(Debug, Clone, Default)]
struct Stats {
    /// Moving average of reported latencies, in milliseconds, as of `updated`.
    ewma_ms: Option<f64>,
    updated: Option<Instant>,
    consecutive_failures: u32,
    /// Recent calls: (when, ok).
    recent: VecDeque<(Instant, bool)>,
    ejected_until: Option<Instant>,
    /// How many times it was ejected (the next ejection lasts base × 2^ejections).
    ejections: u32,
}

impl Stats {
    /// The average now: it halves every half-life without reports.
    fn score(&self, now: Instant, half_life: Duration) -> f64 {
        match (self.ewma_ms, self.updated) {
            (Some(ms), Some(at)) => {
                let idle = now.saturating_duration_since(at).as_secs_f64();
                ms * 0.5f64.powf(idle / half_life.as_secs_f64())
            }
            _ => 0.0,
        }
    }
}

/// The balancer state of one discovery.
#[derive(Debug, Default)]
pub struct Balancer {
    config: BalancerConfig,
    stats: HashMap<InstanceKey, Stats>,
}

impl Balancer {
    /// A balancer with `config` (validate it first).
    pub fn new(config: BalancerConfig) -> Balancer {
        Balancer { config, stats: HashMap::new() }
    }

    /// The configuration.
    pub fn config(&self) -> &BalancerConfig {
        &self.config
    }

    /// Records one call to `key`: how long it took and whether it succeeded. May eject it.
    /// `instances` is the current set's size (for the share cap).
    pub fn report(&mut self, key: InstanceKey, latency: Duration, ok: bool, now: Instant, instances: usize) {
        let Balancer { config: cfg, stats } = self;
        // Only a failure can eject, so only then is the ejected count (a scan of every instance)
        // needed: successful calls, the common case, skip it.
        let ejected_now =
            if ok { 0 } else { stats.values().filter(|s| s.ejected_until.is_some_and(|t| t > now)).count() };
        let s = stats.entry(key).or_default();
        let ms = latency.as_secs_f64() * 1000.0;
        let current = s.score(now, cfg.decay_half_life);
        s.ewma_ms = Some(match s.ewma_ms {
            None => ms,
            Some(_) => cfg.ewma_alpha * ms + (1.0 - cfg.ewma_alpha) * current,
        });
        s.updated = Some(now);
        s.consecutive_failures = if ok { 0 } else { s.consecutive_failures.saturating_add(1) };
        s.recent.push_back((now, ok));
        while s.recent.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) > cfg.error_window) {
            s.recent.pop_front();
        }
        if s.ejected_until.is_some_and(|t| t > now) || ok {
            return;
        }
        let by_count = cfg.consecutive_failures > 0 && s.consecutive_failures >= cfg.consecutive_failures;
        let failures = s.recent.iter().filter(|(_, ok)| !ok).count();
        let by_rate = cfg.max_error_rate < 1.0
            && s.recent.len() >= cfg.min_requests as usize
            && failures as f64 / s.recent.len() as f64 > cfg.max_error_rate;
        if !(by_count || by_rate) {
            return;
        }
        // The share cap: never more than the share, and never every instance.
        let cap = ((instances as f64 * cfg.max_ejected_share).floor() as usize).min(instances.saturating_sub(1));
        if ejected_now >= cap {
            return;
        }
        let factor = 1u32.checked_shl(s.ejections.min(16)).unwrap_or(u32::MAX);
        let length = cfg.base_ejection.saturating_mul(factor).min(cfg.max_ejection);
        s.ejected_until = Some(now + length);
        s.ejections = s.ejections.saturating_add(1);
        // A fresh start when it comes back: old failures do not eject it again at once.
        s.consecutive_failures = 0;
        s.recent.clear();
    }

    /// Whether `key` is ejected at `now`.
    pub fn is_ejected(&self, key: &InstanceKey, now: Instant) -> bool {
        self.stats.get(key).is_some_and(|s| s.ejected_until.is_some_and(|t| t > now))
    }

    /// The indexes of `list` that may be picked: all but the ejected (all, if every one is).
    pub fn eligible(&self, list: &[ServiceEntry], now: Instant) -> Vec<usize> {
        let ok: Vec<usize> = (0..list.len()).filter(|i| !self.is_ejected(&instance_key(&list[*i]), now)).collect();
        if ok.is_empty() {
            (0..list.len()).collect()
        } else {
            ok
        }
    }

    /// Least latency among `eligible` (indexes into `list`): two distinct candidates drawn with
    /// probability inversely proportional to their decayed average (plus 1 ms, so instances
    /// without reports are drawn first), and the lower of the two wins. Plain uniform power of
    /// two choices would hand a third of the picks to the slower two of three instances; the
    /// weighted draw keeps P2C's spread among similar instances while a clearly faster one
    /// gets most picks. `None` when `eligible` is empty.
    pub fn least_latency(
        &self,
        list: &[ServiceEntry],
        eligible: &[usize],
        now: Instant,
        rng: &mut impl Rng,
    ) -> Option<usize> {
        let scores: Vec<f64> = eligible
            .iter()
            .map(|i| {
                self.stats.get(&instance_key(&list[*i])).map_or(0.0, |s| s.score(now, self.config.decay_half_life))
            })
            .collect();
        let weights: Vec<f64> = scores.iter().map(|s| 1.0 / (s + 1.0)).collect();
        let draw = |rng: &mut dyn rand::RngCore, skip: Option<usize>| -> Option<usize> {
            let total: f64 = weights.iter().enumerate().filter(|(i, _)| Some(*i) != skip).map(|(_, w)| w).sum();
            if total <= 0.0 {
                return None;
            }
            let mut r = rng.gen_range(0.0..total);
            let mut last = None;
            for (i, w) in weights.iter().enumerate() {
                if Some(i) == skip {
                    continue;
                }
                last = Some(i);
                if r < *w {
                    return Some(i);
                }
                r -= w;
            }
            last
        };
        let a = draw(rng, None)?;
        let Some(b) = draw(rng, Some(a)) else { return Some(eligible[a]) };
        Some(if scores[b] < scores[a] { eligible[b] } else { eligible[a] })
    }

    /// Replaces the tuning; what was learnt is kept.
    pub fn set_config(&mut self, config: BalancerConfig) {
        self.config = config;
    }

    /// Forgets instances no longer in the set once the table holds more than twice the set
    /// (so churn does not grow it without bound, and a brief absence does not reset an instance).
    pub fn retain_if_grown(&mut self, list: &[ServiceEntry]) {
        if self.stats.len() <= 2 * list.len().max(8) {
            return;
        }
        let keep: std::collections::HashSet<InstanceKey> = list.iter().map(instance_key).collect();
        self.stats.retain(|k, _| keep.contains(k));
    }

    /// The decayed average latency of `key` in milliseconds, when it has reports.
    pub fn latency_ms(&self, key: &InstanceKey, now: Instant) -> Option<f64> {
        let s = self.stats.get(key)?;
        s.ewma_ms.map(|_| s.score(now, self.config.decay_half_life))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn set(n: usize) -> Vec<ServiceEntry> {
        (0..n)
            .map(|i| {
                let mut e = ServiceEntry::default();
                e.node.node = format!("n{i}");
                e.service.id = format!("web{i}");
                e
            })
            .collect()
    }

    /// Simulates `rounds` calls: each pick is reported with the instance's latency (ms) at that
    /// time; returns how many picks each instance got.
    fn run(
        b: &mut Balancer,
        list: &[ServiceEntry],
        clock: &mut Instant,
        rounds: usize,
        latency: impl Fn(usize) -> u64,
        rng: &mut rand::rngs::StdRng,
    ) -> Vec<usize> {
        let mut counts = vec![0; list.len()];
        for _ in 0..rounds {
            let eligible = b.eligible(list, *clock);
            let i = b.least_latency(list, &eligible, *clock, rng).expect("pick");
            counts[i] += 1;
            b.report(instance_key(&list[i]), Duration::from_millis(latency(i)), true, *clock, list.len());
            *clock += Duration::from_millis(10);
        }
        counts
    }

    #[test]
    fn least_latency_favours_the_fastest_and_follows_a_slowdown() {
        let list = set(3);
        let mut b = Balancer::new(BalancerConfig::default());
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut clock = Instant::now();
        // Warm-up, then measure: instance 0 is fastest.
        run(&mut b, &list, &mut clock, 300, |i| [5, 20, 40][i], &mut rng);
        let counts = run(&mut b, &list, &mut clock, 1000, |i| [5, 20, 40][i], &mut rng);
        assert!(counts[0] >= 800, "fastest got {counts:?}");
        // Instance 0 slows to 80 ms: within a few seconds (10 ms per call) instance 1 leads.
        let mut clock2 = clock;
        run(&mut b, &list, &mut clock2, 300, |i| [80, 20, 40][i], &mut rng);
        assert!(clock2 - clock <= Duration::from_secs(3));
        let counts = run(&mut b, &list, &mut clock2, 1000, |i| [80, 20, 40][i], &mut rng);
        assert!(counts[1] >= 700 && counts[1] > counts[0] * 3, "after the slowdown: {counts:?}");
        // It recovers: the decay gives it picks again, and its reports win its traffic back.
        run(&mut b, &list, &mut clock2, 600, |i| [5, 20, 40][i], &mut rng);
        let counts = run(&mut b, &list, &mut clock2, 1000, |i| [5, 20, 40][i], &mut rng);
        assert!(counts[0] >= 800, "after recovery: {counts:?}");
    }

    #[test]
    fn unreported_instances_are_tried_first() {
        let list = set(2);
        let mut b = Balancer::new(BalancerConfig::default());
        let now = Instant::now();
        b.report(instance_key(&list[0]), Duration::from_millis(1), true, now, 2);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..10 {
            assert_eq!(b.least_latency(&list, &[0, 1], now, &mut rng), Some(1));
        }
    }

    #[test]
    fn consecutive_failures_eject_for_a_time_that_grows_on_repeats() {
        let list = set(4);
        let cfg =
            BalancerConfig { consecutive_failures: 3, base_ejection: Duration::from_secs(10), ..Default::default() };
        let mut b = Balancer::new(cfg);
        let k = instance_key(&list[2]);
        let t0 = Instant::now();
        for s in 0..2 {
            b.report(k.clone(), Duration::from_millis(5), false, t0 + Duration::from_secs(s), 4);
        }
        assert!(!b.is_ejected(&k, t0 + Duration::from_secs(2)));
        b.report(k.clone(), Duration::from_millis(5), false, t0 + Duration::from_secs(2), 4);
        assert!(b.is_ejected(&k, t0 + Duration::from_secs(3)));
        assert_eq!(b.eligible(&list, t0 + Duration::from_secs(3)), vec![0, 1, 3]);
        // Back after 10 s...
        let t1 = t0 + Duration::from_secs(13);
        assert!(!b.is_ejected(&k, t1));
        // ...and out for 20 s on the next run of failures.
        for s in 0..3 {
            b.report(k.clone(), Duration::from_millis(5), false, t1 + Duration::from_secs(s), 4);
        }
        let t2 = t1 + Duration::from_secs(2);
        assert!(b.is_ejected(&k, t2 + Duration::from_secs(19)));
        assert!(!b.is_ejected(&k, t2 + Duration::from_secs(21)));
        // A success in between resets the count.
        let k0 = instance_key(&list[0]);
        for (i, ok) in [false, false, true, false, false].into_iter().enumerate() {
            b.report(k0.clone(), Duration::from_millis(5), ok, t0 + Duration::from_millis(i as u64), 4);
        }
        assert!(!b.is_ejected(&k0, t0 + Duration::from_millis(10)));
    }

    #[test]
    fn an_error_rate_over_the_window_ejects() {
        let list = set(2);
        let cfg =
            BalancerConfig { consecutive_failures: 0, max_error_rate: 0.3, min_requests: 10, ..Default::default() };
        let mut b = Balancer::new(cfg);
        let k = instance_key(&list[0]);
        let t0 = Instant::now();
        // Every other call fails: never 2 in a row, but 50 % > 30 % once 10 calls are in.
        for i in 0..9u64 {
            b.report(k.clone(), Duration::from_millis(5), i % 2 == 0, t0 + Duration::from_millis(i * 100), 2);
        }
        assert!(!b.is_ejected(&k, t0 + Duration::from_secs(1)), "too few calls yet");
        b.report(k.clone(), Duration::from_millis(5), false, t0 + Duration::from_millis(950), 2);
        assert!(b.is_ejected(&k, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn the_share_cap_keeps_instances_in_and_never_ejects_all() {
        let list = set(3);
        let cfg = BalancerConfig { consecutive_failures: 1, max_ejected_share: 0.5, ..Default::default() };
        let mut b = Balancer::new(cfg);
        let now = Instant::now();
        for e in &list {
            b.report(instance_key(e), Duration::from_millis(5), false, now, 3);
        }
        // floor(3 × 0.5) = 1 instance out at most.
        assert_eq!(list.iter().filter(|e| b.is_ejected(&instance_key(e), now)).count(), 1);
        // Share 1.0 still leaves one in.
        let mut b =
            Balancer::new(BalancerConfig { consecutive_failures: 1, max_ejected_share: 1.0, ..Default::default() });
        for e in &list {
            b.report(instance_key(e), Duration::from_millis(5), false, now, 3);
        }
        assert_eq!(list.iter().filter(|e| b.is_ejected(&instance_key(e), now)).count(), 2);
        assert_eq!(b.eligible(&list, now).len(), 1);
    }

    #[test]
    fn bad_configs_name_the_field() {
        for (cfg, field) in [
            (BalancerConfig { ewma_alpha: 0.0, ..Default::default() }, "ewma_alpha"),
            (BalancerConfig { max_ejected_share: 1.5, ..Default::default() }, "max_ejected_share"),
            (BalancerConfig { base_ejection: Duration::ZERO, ..Default::default() }, "base_ejection"),
            (BalancerConfig { max_error_rate: f64::NAN, ..Default::default() }, "max_error_rate"),
        ] {
            let e = cfg.validate().expect_err(field).to_string();
            assert!(e.contains(field), "{e}");
        }
        assert!(BalancerConfig::default().validate().is_ok());
    }
}
