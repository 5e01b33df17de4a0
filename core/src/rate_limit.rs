//! Consul's `limits.rpc_rate` / `limits.rpc_max_burst`: a token bucket on the RPC requests a
//! client agent sends to the servers, so one busy (or compromised) agent cannot flood them.
//! A request past the rate is refused at once with 429, as Consul's `ErrRPCRateExceeded` is,
//! rather than queued: the caller decides whether to retry.

use std::time::Instant;

use parking_lot::Mutex;

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// `rate` requests a second with bursts of `burst`; `None` when `rate` is not a positive
    /// finite number (Consul's `-1`, or `0`: no limit).
    pub fn new(rate: f64, burst: u32) -> Option<RateLimiter> {
        if !(rate.is_finite() && rate > 0.0) {
            return None;
        }
        let burst = f64::from(burst.max(1));
        Some(RateLimiter { rate, burst, state: Mutex::new((burst, Instant::now())) })
    }

    /// Takes a token if one is there.
    pub fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock();
        let (tokens, last) = &mut *state;
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.rate;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The configured rate (requests a second).
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let l = RateLimiter::new(10.0, 5).expect("limited");
        let t0 = Instant::now();
        assert_eq!((0..20).filter(|_| l.allow_at(t0)).count(), 5, "a burst of 5, then nothing");
        assert!(!l.allow_at(t0 + Duration::from_millis(50)), "half a token is not a token");
        assert!(l.allow_at(t0 + Duration::from_millis(100)), "one token per 100 ms at 10/s");
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| l.allow_at(later)).count(), 5, "refills only up to the burst");
    }

    #[test]
    fn non_positive_or_infinite_rates_mean_no_limit() {
        for rate in [-1.0, 0.0, f64::INFINITY, f64::NAN] {
            assert!(RateLimiter::new(rate, 1000).is_none(), "{rate}");
        }
    }
}
