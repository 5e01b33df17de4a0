//! A log-linear ("HDR-style") latency histogram.
//!
//! Values (nanoseconds) below `2^PRECISION_BITS` are stored exactly, one bucket each. Above
//! that, every power-of-two range `[2^m, 2^(m+1))` is split into `2^(PRECISION_BITS-1)` equal
//! buckets, so any recorded value is known to within a relative error of
//! `2^-(PRECISION_BITS-1)` (about 0.2 % with 10 bits) over the whole `u64` range, at a fixed
//! memory cost (28,672 counters) and O(1) recording.

/// Bits of precision: values `< 2^PRECISION_BITS` are exact.
const PRECISION_BITS: u32 = 10;
/// Number of exact buckets at the bottom of the range.
const LINEAR: u64 = 1 << PRECISION_BITS;
/// Buckets per power-of-two range above the linear part.
const HALF: u64 = 1 << (PRECISION_BITS - 1);
/// Total number of buckets needed to cover every `u64`.
const BUCKETS: usize = (LINEAR + (64 - PRECISION_BITS as u64) * HALF) as usize;

/// Latency histogram over `u64` values (the benchmark records nanoseconds).
#[derive(Clone, Debug)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub(crate) fn new() -> Self {
        Self { counts: vec![0; BUCKETS], total: 0, min: u64::MAX, max: 0, sum: 0 }
    }

    /// Bucket index holding `v`.
    fn index(v: u64) -> usize {
        if v < LINEAR {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros(); // >= PRECISION_BITS
        let shift = msb - (PRECISION_BITS - 1);
        let sub = (v >> shift) - HALF; // in [0, HALF)
        (LINEAR + u64::from(msb - PRECISION_BITS) * HALF + sub) as usize
    }

    /// Smallest and largest value (inclusive) that land in bucket `i`.
    fn bucket_range(i: usize) -> (u64, u64) {
        let i = i as u64;
        if i < LINEAR {
            return (i, i);
        }
        let j = i - LINEAR;
        let msb = PRECISION_BITS as u64 + j / HALF;
        let shift = msb - u64::from(PRECISION_BITS - 1);
        let lo = (HALF + j % HALF) << shift;
        (lo, lo + ((1u64 << shift) - 1))
    }

    /// Records one value.
    pub(crate) fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    /// Adds every value recorded in `other` to `self`.
    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += *b;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Number of recorded values.
    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    /// Smallest recorded value (0 when empty).
    pub(crate) fn min(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            self.min
        }
    }

    /// Largest recorded value (0 when empty).
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// Arithmetic mean of the recorded values (0 when empty).
    pub(crate) fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at quantile `q` (0.0–1.0): the smallest bucket upper bound such that at least
    /// `ceil(q * count)` values are at or below it, clamped to the recorded min/max. Like
    /// HdrHistogram this reports the *highest equivalent value* of the bucket, so percentiles
    /// never under-state latency by more than the bucket width. Returns 0 when empty.
    pub(crate) fn value_at_quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (_, hi) = Self::bucket_range(i);
                return hi.clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_range_agree_across_the_u64_range() {
        assert_eq!(Histogram::index(u64::MAX), BUCKETS - 1);
        let mut v = 0u64;
        while v < u64::MAX / 3 {
            let i = Histogram::index(v);
            let (lo, hi) = Histogram::bucket_range(i);
            assert!(lo <= v && v <= hi, "v={v} bucket={i} [{lo},{hi}]");
            // Bucket width is within the promised relative precision.
            if v >= LINEAR {
                assert!((hi - lo + 1) as f64 / lo as f64 <= 1.0 / HALF as f64 + 1e-12);
            }
            v = v * 3 / 2 + 1;
        }
        // Buckets are contiguous and increasing.
        for i in 1..BUCKETS {
            let (_, prev_hi) = Histogram::bucket_range(i - 1);
            let (lo, _) = Histogram::bucket_range(i);
            assert_eq!(prev_hi + 1, lo, "gap before bucket {i}");
        }
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        let h = Histogram::new();
        assert_eq!(h.count(), 0);
        assert_eq!(h.value_at_quantile(0.5), 0);
        assert_eq!(h.min(), 0);
        assert_eq!(h.max(), 0);
        assert_eq!(h.mean(), 0.0);
    }

    #[test]
    fn exact_percentiles_for_small_values() {
        let mut h = Histogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.value_at_quantile(0.0), 1);
        assert_eq!(h.value_at_quantile(0.5), 50);
        assert_eq!(h.value_at_quantile(0.9), 90);
        assert_eq!(h.value_at_quantile(0.99), 99);
        assert_eq!(h.value_at_quantile(1.0), 100);
        assert_eq!(h.min(), 1);
        assert_eq!(h.max(), 100);
        assert!((h.mean() - 50.5).abs() < 1e-9);
    }

    #[test]
    fn percentiles_of_large_values_are_within_precision() {
        // 1..=10_000 microseconds expressed in nanoseconds.
        let mut h = Histogram::new();
        for us in 1..=10_000u64 {
            h.record(us * 1_000);
        }
        let tolerance = 1.0 / HALF as f64;
        for (q, expected) in [(0.5, 5_000_000.0), (0.9, 9_000_000.0), (0.99, 9_900_000.0)] {
            let got = h.value_at_quantile(q) as f64;
            assert!(got >= expected, "q={q}: {got} under-states {expected}");
            assert!((got - expected) / expected <= tolerance, "q={q}: {got} vs {expected}");
        }
        assert_eq!(h.value_at_quantile(1.0), 10_000_000);
    }

    #[test]
    fn skewed_distribution_tail() {
        let mut h = Histogram::new();
        for _ in 0..990 {
            h.record(1_000_000); // 1 ms
        }
        for _ in 0..10 {
            h.record(50_000_000); // 50 ms
        }
        let p50 = h.value_at_quantile(0.5);
        assert!((1_000_000..=1_002_000).contains(&p50), "{p50}");
        let p99 = h.value_at_quantile(0.99);
        assert!((1_000_000..=1_002_000).contains(&p99), "{p99}");
        assert_eq!(h.value_at_quantile(0.991), 50_000_000);
        assert_eq!(h.max(), 50_000_000);
    }

    #[test]
    fn merge_equals_recording_into_one() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        let mut all = Histogram::new();
        for v in 0..5_000u64 {
            let x = v * v + 7;
            if v % 2 == 0 {
                a.record(x);
            } else {
                b.record(x);
            }
            all.record(x);
        }
        a.merge(&b);
        assert_eq!(a.count(), all.count());
        assert_eq!(a.min(), all.min());
        assert_eq!(a.max(), all.max());
        for q in [0.1, 0.5, 0.9, 0.99, 0.999] {
            assert_eq!(a.value_at_quantile(q), all.value_at_quantile(q));
        }
        // Merging an empty histogram changes nothing.
        a.merge(&Histogram::new());
        assert_eq!(a.min(), all.min());
        assert_eq!(a.count(), all.count());
    }
}
