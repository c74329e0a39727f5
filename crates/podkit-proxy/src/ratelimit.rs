//! Rate limiting (chapter 5, "Expanding the Caching Layer"): a keyed GCRA limiter that
//! answers 429 with `Retry-After` over the limit, and `X-RateLimit-*` headers on every
//! response. Memory is bounded: a key whose allowance has fully refilled carries no state
//! and is dropped by the periodic sweep; beyond `max_keys` new keys are let through
//! untracked rather than refused.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

/// A rate such as `10/s` with a burst allowance, written `10/s,burst=20`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests per second on average.
    pub per_second: f64,
    /// Requests allowed at once after a quiet period.
    pub burst: u32,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Rate, String> {
        let (rate, options) = text.split_once(',').unwrap_or((text, ""));
        let (count, unit) = rate
            .split_once('/')
            .ok_or_else(|| format!("'{text}': expected N/s, N/m or N/h (e.g. 10/s,burst=20)"))?;
        let count: f64 = count
            .trim()
            .parse()
            .map_err(|_| format!("'{text}': '{count}' is not a number"))?;
        let seconds = match unit.trim() {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("'{text}': unknown unit '{other}' (s, m or h)")),
        };
        if count <= 0.0 {
            return Err(format!("'{text}': the rate must be more than 0"));
        }
        let per_second = count / seconds;
        let mut burst = per_second.ceil().max(1.0) as u32;
        for option in options.split(',').filter(|o| !o.trim().is_empty()) {
            match option.trim().split_once('=') {
                Some(("burst", value)) => {
                    burst =
                        value.parse().ok().filter(|b| *b > 0).ok_or_else(|| {
                            format!("'{text}': burst must be a whole number above 0")
                        })?;
                }
                _ => return Err(format!("'{text}': unknown option '{option}' (burst=N)")),
            }
        }
        Ok(Rate { per_second, burst })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s,burst={}", self.per_second, self.burst)
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// The burst: requests allowed at once.
    pub limit: u32,
    /// Requests still allowed right now.
    pub remaining: u32,
    /// Seconds until the full burst is available again.
    pub reset: u64,
    /// When refused: seconds until one request is allowed.
    pub retry_after: u64,
}

impl Decision {
    /// Adds `X-RateLimit-Limit`, `-Remaining`, `-Reset` (and `Retry-After` when refused).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(self.reset));
        if !self.allowed {
            headers.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(self.retry_after.max(1)),
            );
        }
    }
}

/// GCRA over one key's "theoretical arrival time" (pure).
pub fn gcra(rate: Rate, tat: f64, now: f64) -> (Decision, f64) {
    let interval = 1.0 / rate.per_second;
    let tolerance = interval * f64::from(rate.burst);
    let start = tat.max(now);
    let next = start + interval;
    if next - now > tolerance + 1e-9 {
        let wait = next - tolerance - now;
        let decision = Decision {
            allowed: false,
            limit: rate.burst,
            remaining: 0,
            reset: (start - now).ceil() as u64,
            retry_after: wait.ceil() as u64,
        };
        return (decision, tat);
    }
    let remaining = ((tolerance - (next - now)) / interval + 1e-9)
        .floor()
        .max(0.0) as u32;
    let decision = Decision {
        allowed: true,
        limit: rate.burst,
        remaining,
        reset: (next - now).ceil() as u64,
        retry_after: 0,
    };
    (decision, next)
}

/// A keyed limiter.
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    max_keys: usize,
    epoch: Instant,
    state: Mutex<HashMap<String, f64>>,
}

impl Limiter {
    /// A limiter at `rate` tracking at most `max_keys` keys.
    pub fn new(rate: Rate, max_keys: usize) -> Limiter {
        Limiter {
            rate,
            max_keys,
            epoch: Instant::now(),
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Decides on a request from `key` now.
    pub fn check(&self, key: &str) -> Decision {
        let now = self.epoch.elapsed().as_secs_f64();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let tat = state.get(key).copied().unwrap_or(now);
        let (decision, next) = gcra(self.rate, tat, now);
        if next != tat {
            if state.len() >= self.max_keys && !state.contains_key(key) {
                return decision;
            }
            state.insert(key.to_string(), next);
        }
        decision
    }

    /// Drops keys whose allowance has fully refilled; returns how many remain.
    pub fn sweep(&self) -> usize {
        let now = self.epoch.elapsed().as_secs_f64();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.retain(|_, tat| *tat > now);
        state.len()
    }

    /// Keys tracked.
    pub fn keys(&self) -> usize {
        self.state.lock().map(|s| s.len()).unwrap_or(0)
    }
}

/// How often idle keys are swept.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        let r: Rate = "10/s,burst=20".parse().unwrap();
        assert_eq!((r.per_second, r.burst), (10.0, 20));
        let r: Rate = "120/m".parse().unwrap();
        assert_eq!((r.per_second, r.burst), (2.0, 2));
        assert!("10".parse::<Rate>().is_err());
        assert!("10/d".parse::<Rate>().is_err());
        assert!("10/s,bust=2".parse::<Rate>().is_err());
        assert!("0/s".parse::<Rate>().is_err());
    }

    #[test]
    fn burst_then_steady_rate() {
        let rate = Rate {
            per_second: 10.0,
            burst: 5,
        };
        let mut tat = 0.0;
        let mut allowed = 0;
        // Twenty requests at once: the burst passes.
        for _ in 0..20 {
            let (d, next) = gcra(rate, tat, 0.0);
            tat = next;
            allowed += d.allowed as u32;
        }
        assert_eq!(allowed, 5);
        // Then one every 50 ms (twice the rate) for two seconds: about half pass.
        let mut allowed = 0;
        for i in 1..=40 {
            let (d, next) = gcra(rate, tat, i as f64 * 0.05);
            tat = next;
            allowed += d.allowed as u32;
        }
        assert!((19..=21).contains(&allowed), "{allowed}");
    }

    #[test]
    fn headers_count_down() {
        let rate = Rate {
            per_second: 1.0,
            burst: 3,
        };
        let (a, t) = gcra(rate, 0.0, 0.0);
        let (b, t) = gcra(rate, t, 0.0);
        let (c, t) = gcra(rate, t, 0.0);
        let (d, _) = gcra(rate, t, 0.0);
        assert_eq!([a.remaining, b.remaining, c.remaining], [2, 1, 0]);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, 1);
        assert_eq!(c.reset, 3);
    }

    #[test]
    fn idle_keys_are_swept_and_keys_are_capped() {
        let limiter = Limiter::new(
            Rate {
                per_second: 1000.0,
                burst: 1,
            },
            2,
        );
        limiter.check("a");
        limiter.check("b");
        limiter.check("c");
        assert_eq!(limiter.keys(), 2);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(limiter.sweep(), 0);
    }
}
