//! Passive ejection (pure): a backend that fails in live traffic is taken out of rotation
//! for a while, twice as long each time it fails again right after coming back.

use std::time::{Duration, Instant};

use crate::config::Eject;

/// How one request to a backend ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response below 500.
    Success,
    /// A 5xx response.
    ServerError,
    /// No response: connection refused or reset, or a timeout.
    Failure,
}

/// The passive-health state of one backend.
#[derive(Debug, Clone, Default)]
pub struct EjectState {
    consecutive_errors: u32,
    consecutive_5xx: u32,
    ejected_until: Option<Instant>,
    /// Ejections since the last success; each doubles the next ejection time.
    ejections_in_a_row: u32,
}

impl EjectState {
    /// Records an outcome at `now`; returns the ejection time if this ejects the backend.
    pub fn record(&mut self, outcome: Outcome, now: Instant, policy: &Eject) -> Option<Duration> {
        match outcome {
            Outcome::Success => {
                self.consecutive_errors = 0;
                self.consecutive_5xx = 0;
                self.ejections_in_a_row = 0;
                return None;
            }
            Outcome::ServerError => {
                self.consecutive_5xx += 1;
                self.consecutive_errors = 0;
            }
            Outcome::Failure => {
                self.consecutive_errors += 1;
            }
        }
        let trips = |count: u32, limit: u32| limit > 0 && count >= limit;
        if self.is_ejected(now)
            || !(trips(self.consecutive_errors, policy.consecutive_errors)
                || trips(self.consecutive_5xx, policy.consecutive_5xx))
        {
            return None;
        }
        let factor = 1u32 << self.ejections_in_a_row.min(16);
        let time = policy
            .base_time
            .get()
            .saturating_mul(factor)
            .min(policy.max_time.get().max(policy.base_time.get()));
        self.ejections_in_a_row += 1;
        self.consecutive_errors = 0;
        self.consecutive_5xx = 0;
        self.ejected_until = Some(now + time);
        Some(time)
    }

    /// Whether the backend is out of rotation at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podkit_core::HumanDuration;

    fn policy() -> Eject {
        Eject {
            consecutive_errors: 3,
            consecutive_5xx: 5,
            base_time: HumanDuration(Duration::from_secs(10)),
            max_time: HumanDuration(Duration::from_secs(25)),
        }
    }

    #[test]
    fn consecutive_failures_eject_and_time_passes() {
        let mut s = EjectState::default();
        let t0 = Instant::now();
        assert_eq!(s.record(Outcome::Failure, t0, &policy()), None);
        assert_eq!(s.record(Outcome::Failure, t0, &policy()), None);
        assert_eq!(
            s.record(Outcome::Failure, t0, &policy()),
            Some(Duration::from_secs(10))
        );
        assert!(s.is_ejected(t0 + Duration::from_secs(9)));
        assert!(!s.is_ejected(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn a_success_resets_the_count() {
        let mut s = EjectState::default();
        let t0 = Instant::now();
        s.record(Outcome::Failure, t0, &policy());
        s.record(Outcome::Failure, t0, &policy());
        s.record(Outcome::Success, t0, &policy());
        assert_eq!(s.record(Outcome::Failure, t0, &policy()), None);
        assert!(!s.is_ejected(t0));
    }

    #[test]
    fn bursts_of_5xx_eject() {
        let mut s = EjectState::default();
        let t0 = Instant::now();
        for _ in 0..4 {
            assert_eq!(s.record(Outcome::ServerError, t0, &policy()), None);
        }
        assert!(s.record(Outcome::ServerError, t0, &policy()).is_some());
    }

    #[test]
    fn repeated_ejections_back_off_up_to_the_max() {
        let mut s = EjectState::default();
        let mut now = Instant::now();
        let mut times = Vec::new();
        for _ in 0..3 {
            for _ in 0..3 {
                if let Some(t) = s.record(Outcome::Failure, now, &policy()) {
                    times.push(t);
                    now += t;
                }
            }
        }
        assert_eq!(
            times,
            vec![
                Duration::from_secs(10),
                Duration::from_secs(20),
                Duration::from_secs(25)
            ]
        );
    }
}
