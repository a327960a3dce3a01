//! Latency samples and their percentiles.

use std::time::Duration;

/// Percentiles of a set of latency samples.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LatencySummary {
    pub(crate) samples: usize,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
}

impl LatencySummary {
    pub(crate) fn from_samples(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self {
            samples: samples.len(),
            p50: percentile(&samples, 0.50),
            p99: percentile(&samples, 0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

/// The nearest-rank percentile of ascending `sorted` samples: the smallest sample that at
/// least `fraction` of the samples do not exceed. Zero when there are no samples.
pub(crate) fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (fraction.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Microseconds as a float with sub-microsecond precision.
pub(crate) fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros_list(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_micros).collect()
    }

    #[test]
    fn nearest_rank_percentiles_of_one_to_a_hundred() {
        let sorted = micros_list(1..=100);
        assert_eq!(percentile(&sorted, 0.50), Duration::from_micros(50));
        assert_eq!(percentile(&sorted, 0.99), Duration::from_micros(99));
        assert_eq!(percentile(&sorted, 1.0), Duration::from_micros(100));
        assert_eq!(percentile(&sorted, 0.0), Duration::from_micros(1));
    }

    #[test]
    fn p99_of_a_thousand_samples_sees_the_slow_tail() {
        let mut samples = micros_list(std::iter::repeat_n(10, 980));
        samples.extend(micros_list(std::iter::repeat_n(5_000, 20)));
        let summary = LatencySummary::from_samples(samples);
        assert_eq!(summary.p50, Duration::from_micros(10));
        assert_eq!(summary.p99, Duration::from_micros(5_000));
        assert_eq!(summary.samples, 1_000);
    }

    #[test]
    fn unsorted_input_is_sorted_first_and_empty_input_is_zero() {
        let summary = LatencySummary::from_samples(micros_list([30, 10, 20]));
        assert_eq!(summary.p50, Duration::from_micros(20));
        assert_eq!(summary.max, Duration::from_micros(30));
        assert_eq!(percentile(&[], 0.99), Duration::ZERO);
    }
}
