//! Chapter 10's autoscaling rule for `--parallelism auto`: run enough workers that
//! processing time / parallelism stays below the interarrival time of items, and scale
//! down only while one worker fewer would still keep under 90% of it (the hysteresis
//! that keeps the count from flapping).

use std::time::Duration;

/// Bounds of the parallelism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: usize,
    pub max: usize,
}

/// The parallelism to run, from the current one and the measured mean interarrival and
/// processing times (`None` until measured: keep the current one).
pub fn decide(
    current: usize,
    interarrival: Option<Duration>,
    processing: Option<Duration>,
    bounds: Bounds,
) -> usize {
    let min = bounds.min.max(1);
    let max = bounds.max.max(min);
    let current = current.clamp(min, max);
    let (Some(interarrival), Some(processing)) = (interarrival, processing) else {
        return current;
    };
    let arrival = interarrival.as_secs_f64();
    let work = processing.as_secs_f64();
    if arrival <= 0.0 {
        return max;
    }
    // The least p with work / p < arrival.
    let needed = (work / arrival).floor() as usize + 1;
    if needed > current {
        return needed.min(max);
    }
    let mut p = current;
    while p > min && work / ((p - 1) as f64) < 0.9 * arrival {
        p -= 1;
    }
    p
}

/// A moving mean of durations (exponentially weighted).
#[derive(Debug, Clone, Copy, Default)]
pub struct Mean {
    value: Option<f64>,
}

impl Mean {
    /// Weight of the newest sample.
    const ALPHA: f64 = 0.3;

    /// Adds a sample.
    pub fn add(&mut self, sample: Duration) {
        let s = sample.as_secs_f64();
        self.value = Some(match self.value {
            Some(v) => v + Self::ALPHA * (s - v),
            None => s,
        });
    }

    /// The mean so far.
    pub fn get(&self) -> Option<Duration> {
        self.value.map(Duration::from_secs_f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bounds = Bounds { min: 1, max: 16 };

    fn s(secs: f64) -> Option<Duration> {
        Some(Duration::from_secs_f64(secs))
    }

    #[test]
    fn scales_up_to_keep_processing_under_interarrival() {
        // An item every second, each taking 4.5 s: 5 workers (4.5/5 = 0.9 < 1).
        assert_eq!(decide(1, s(1.0), s(4.5), B), 5);
        // Exactly 4 s of work per 1 s of arrivals needs 5 (4/4 is not below 1).
        assert_eq!(decide(2, s(1.0), s(4.0), B), 5);
        assert_eq!(decide(1, s(0.01), s(10.0), B), 16, "capped at max");
    }

    #[test]
    fn scales_down_only_below_ninety_percent() {
        // 5 workers, 4.5 s of work, items every second: 4 would give 1.125 > 0.9: stay.
        assert_eq!(decide(5, s(1.0), s(4.5), B), 5);
        // Arrivals slow to one every 3 s: 2 workers give 2.25 < 2.7, 1 gives 4.5: 2.
        assert_eq!(decide(5, s(3.0), s(4.5), B), 2);
        // Just under the line does not scale down: 4 workers give 0.95 s per item,
        // above 90% of a 1 s interarrival.
        assert_eq!(decide(5, s(1.0), s(3.8), B), 5);
        assert_eq!(decide(8, s(100.0), s(1.0), Bounds { min: 3, max: 16 }), 3);
    }

    #[test]
    fn unmeasured_keeps_the_current_count_within_bounds() {
        assert_eq!(decide(4, None, s(1.0), B), 4);
        assert_eq!(decide(40, s(1.0), None, B), 16);
        assert_eq!(decide(0, None, None, B), 1);
    }

    #[test]
    fn means_follow_samples() {
        let mut mean = Mean::default();
        assert_eq!(mean.get(), None);
        mean.add(Duration::from_secs(2));
        assert_eq!(mean.get(), Some(Duration::from_secs(2)));
        for _ in 0..50 {
            mean.add(Duration::from_secs(4));
        }
        let m = mean.get().unwrap().as_secs_f64();
        assert!((m - 4.0).abs() < 0.01, "{m}");
    }
}
