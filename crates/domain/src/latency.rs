//! A fixed-size latency histogram: the same small array per tenant and per
//! time slot whatever the traffic, mergeable across time slots and across
//! servers.

/// Bucket `i` holds latencies up to `FIRST_BOUND_MS * √2^i`: from a quarter
/// of a millisecond to about four minutes in 40 buckets, each bound 41%
/// above the last. Percentiles interpolate within a bucket.
pub const BUCKETS: usize = 40;
const FIRST_BOUND_MS: f64 = 0.25;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Histogram {
    pub counts: [u32; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
        }
    }
}

fn upper_bound_ms(bucket: usize) -> f64 {
    FIRST_BOUND_MS * std::f64::consts::SQRT_2.powi(bucket as i32)
}

impl Histogram {
    pub fn record(&mut self, latency_ms: f64) {
        let bucket = if latency_ms <= FIRST_BOUND_MS {
            0
        } else {
            ((latency_ms / FIRST_BOUND_MS).log2() * 2.0).ceil() as usize
        };
        let bucket = bucket.min(BUCKETS - 1);
        self.counts[bucket] = self.counts[bucket].saturating_add(1);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine = mine.saturating_add(theirs);
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| u64::from(*c)).sum()
    }

    /// The latency below which a fraction `q` of the recorded ones fall,
    /// in milliseconds; 0 when nothing was recorded.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (bucket, count) in self.counts.iter().enumerate() {
            let count = u64::from(*count);
            if count == 0 {
                continue;
            }
            if (seen + count) as f64 >= rank {
                let lower = if bucket == 0 {
                    0.0
                } else {
                    upper_bound_ms(bucket - 1)
                };
                let upper = upper_bound_ms(bucket);
                let within = (rank - seen as f64) / count as f64;
                return lower + (upper - lower) * within;
            }
            seen += count;
        }
        upper_bound_ms(BUCKETS - 1)
    }

    /// From stored counts (the database keeps them as an array); missing
    /// or extra entries are ignored.
    pub fn from_counts(counts: &[i32]) -> Self {
        let mut histogram = Self::default();
        for (slot, count) in histogram.counts.iter_mut().zip(counts) {
            *slot = (*count).max(0) as u32;
        }
        histogram
    }

    pub fn to_counts(&self) -> Vec<i32> {
        self.counts
            .iter()
            .map(|c| i32::try_from(*c).unwrap_or(i32::MAX))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn quantiles_fall_within_a_bucket_of_the_true_value() {
        let mut h = Histogram::default();
        for ms in 1..=1000 {
            h.record(f64::from(ms));
        }
        let p50 = h.quantile_ms(0.5);
        let p99 = h.quantile_ms(0.99);
        assert!((353.0..=710.0).contains(&p50), "{p50}");
        assert!((700.0..=1415.0).contains(&p99), "{p99}");
        assert!(p50 < p99);
        assert_eq!(Histogram::default().quantile_ms(0.99), 0.0);
    }

    #[test]
    fn merged_histograms_count_both_and_round_trip_through_storage() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record(0.1);
        b.record(5.0);
        b.record(1e9);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(Histogram::from_counts(&a.to_counts()), a);
        assert!(
            a.quantile_ms(1.0) > 1000.0,
            "huge values land in the last bucket"
        );
    }
}
