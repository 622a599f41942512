//! A latency histogram with fixed buckets, updated lock-free from any task
//! or thread and read as a Prometheus histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: from a cached reply (well under
/// a millisecond) to a commit stuck behind a slow disk.
pub const BOUNDS_SECONDS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

const BUCKETS: usize = BOUNDS_SECONDS.len();

/// Observations so far, by bucket (not cumulative).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    /// Observations above the last bound.
    overflow: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        match BOUNDS_SECONDS.iter().position(|bound| seconds <= *bound) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The counts as they are now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0u64; BUCKETS];
        let mut running = 0u64;
        for (slot, bucket) in cumulative.iter_mut().zip(&self.buckets) {
            running += bucket.load(Ordering::Relaxed);
            *slot = running;
        }
        HistogramSnapshot {
            cumulative,
            count: running + self.overflow.load(Ordering::Relaxed),
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

/// A histogram read at one moment, in Prometheus' cumulative form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Observations at or below each of [`BOUNDS_SECONDS`].
    pub cumulative: [u64; BUCKETS],
    /// All observations (the `+Inf` bucket).
    pub count: u64,
    /// Their sum, in nanoseconds.
    pub sum_nanos: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_sum_is_exact() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let s = h.snapshot();
        assert_eq!(s.cumulative[0], 2, "a bound is inclusive");
        assert_eq!(s.cumulative[4], 2, "nothing in (0.5 ms, 2.5 ms]");
        assert_eq!(s.cumulative[5], 3);
        assert_eq!(s.cumulative[BUCKETS - 1], 3, "10 s is above every bound");
        assert_eq!(s.count, 4);
        assert_eq!(s.sum_nanos, 50_000 + 100_000 + 3_000_000 + 10_000_000_000);
    }
}
