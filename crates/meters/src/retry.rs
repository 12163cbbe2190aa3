//! Retry and backoff for delivery failures (§2.12): exponential, capped, with up to 50 % jitter
//! on top, 11 retries (12 attempts) over about 68 minutes before jitter. Errors that cannot get
//! better by waiting fail at once.

use chrono::{DateTime, Duration, Utc};

use crate::status::Transition;

/// A source of jitter: numbers in `[0, 1)`. Production passes a random generator; tests pass a
/// fixed value. Any `FnMut() -> f64` closure is one.
pub trait Jitter {
    fn sample(&mut self) -> f64;
}

impl<F: FnMut() -> f64> Jitter for F {
    fn sample(&mut self) -> f64 {
        self()
    }
}

/// Always the same fraction (0 gives the bare exponential schedule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedJitter(pub f64);

impl Jitter for FixedJitter {
    fn sample(&mut self) -> f64 {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first backoff.
    pub base: Duration,
    /// No single backoff is longer (before jitter).
    pub cap: Duration,
    /// Jitter adds up to this share of the backoff, in percent.
    pub jitter_percent: u32,
}

impl Default for RetryPolicy {
    /// The predecessor's: 2 s · 2ⁿ capped at 1 h, plus 0–50 %, 11 retries.
    fn default() -> Self {
        Self {
            max_retries: 11,
            base: Duration::seconds(2),
            cap: Duration::hours(1),
            jitter_percent: 50,
        }
    }
}

/// What to do after a failed delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Park it and try again at `at` (the interaction stays PROCESSING).
    RetryAt { at: DateTime<Utc>, retry: u32 },
    /// Give up: the interaction FAILS.
    GiveUp,
}

impl RetryDecision {
    /// The status event this decision maps to.
    pub fn transition(self) -> Transition {
        match self {
            RetryDecision::RetryAt { .. } => Transition::DeliveryFailed { retryable: true },
            RetryDecision::GiveUp => Transition::DeliveryFailed { retryable: false },
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry number `retries_so_far + 1`, without jitter:
    /// `min(base · 2^retries_so_far, cap)`.
    pub fn backoff(&self, retries_so_far: u32) -> Duration {
        let factor = 1_i64
            .checked_shl(retries_so_far.min(62))
            .unwrap_or(i64::MAX);
        let millis = self.base.num_milliseconds().saturating_mul(factor);
        Duration::milliseconds(millis).min(self.cap)
    }

    /// The backoff plus `floor(sample · jitter_percent % · backoff)` milliseconds. Samples
    /// outside `[0, 1)` are clamped, so a faulty source can never stretch a delay further.
    pub fn delay(&self, retries_so_far: u32, jitter: &mut dyn Jitter) -> Duration {
        let backoff = self.backoff(retries_so_far);
        let sample = jitter.sample();
        let sample = if sample.is_finite() {
            sample.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let spread = backoff.num_milliseconds() as f64 * f64::from(self.jitter_percent) / 100.0;
        let extra = (sample * spread).floor() as i64;
        backoff + Duration::milliseconds(extra.min(spread as i64))
    }

    /// After the attempt that followed `retries_so_far` retries failed: retry later or give up.
    /// A non-retryable error (the meter is not registered, the token was rejected, the command
    /// is not supported) gives up at once.
    pub fn decide(
        &self,
        retries_so_far: u32,
        retryable: bool,
        now: DateTime<Utc>,
        jitter: &mut dyn Jitter,
    ) -> RetryDecision {
        if !retryable || retries_so_far >= self.max_retries {
            return RetryDecision::GiveUp;
        }
        RetryDecision::RetryAt {
            at: now + self.delay(retries_so_far, jitter),
            retry: retries_so_far + 1,
        }
    }

    /// The sum of every backoff before jitter: the longest a message waits in backoff before it
    /// fails for good (jitter adds at most `jitter_percent` more).
    pub fn total_backoff(&self) -> Duration {
        (0..self.max_retries)
            .map(|n| self.backoff(n))
            .fold(Duration::zero(), |a, b| a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn the_predecessors_schedule_two_seconds_doubling() {
        let p = RetryPolicy::default();
        let seconds: Vec<i64> = (0..11).map(|n| p.backoff(n).num_seconds()).collect();
        assert_eq!(seconds, [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]);
    }

    #[test]
    fn eleven_retries_take_about_68_minutes_before_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_retries, 11);
        assert_eq!(p.total_backoff(), Duration::seconds(4094));
        assert_eq!(p.total_backoff().num_minutes(), 68);
        // With the most jitter, at most half as long again.
        let mut max = FixedJitter(0.999_999);
        let total: Duration = (0..11)
            .map(|n| p.delay(n, &mut max))
            .fold(Duration::zero(), |a, b| a + b);
        assert!(total < Duration::seconds(4094 * 3 / 2));
        assert!(total > Duration::seconds(4094 * 3 / 2 - 11));
    }

    #[test]
    fn jitter_adds_up_to_half_and_is_deterministic_when_injected() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(3, &mut FixedJitter(0.0)), Duration::seconds(16));
        assert_eq!(p.delay(3, &mut FixedJitter(0.5)), Duration::seconds(20));
        assert_eq!(
            p.delay(0, &mut FixedJitter(0.25)),
            Duration::milliseconds(2250)
        );
        // floor() of the jitter share.
        assert_eq!(
            p.delay(0, &mut FixedJitter(0.0007)),
            Duration::milliseconds(2000)
        );
        // A closure is a jitter source too.
        let mut calls = 0;
        let mut source = || {
            calls += 1;
            0.5
        };
        assert_eq!(p.delay(1, &mut source), Duration::seconds(5));
        assert_eq!(calls, 1);
    }

    #[test]
    fn faulty_jitter_never_stretches_the_delay() {
        let p = RetryPolicy::default();
        for bad in [7.0, -3.0, f64::NAN, f64::INFINITY] {
            let d = p.delay(2, &mut FixedJitter(bad));
            assert!(
                d >= Duration::seconds(8) && d <= Duration::seconds(12),
                "{bad}: {d}"
            );
        }
    }

    #[test]
    fn the_cap_holds_for_long_schedules() {
        let p = RetryPolicy {
            max_retries: 40,
            ..RetryPolicy::default()
        };
        // The default schedule's last backoff (n = 10) stays under the cap...
        assert_eq!(p.backoff(10), Duration::seconds(2048));
        // ...the next one (2 · 2¹¹ = 4096 s) would exceed it.
        assert_eq!(p.backoff(11), Duration::hours(1));
        assert_eq!(p.backoff(39), Duration::hours(1));
        assert_eq!(p.backoff(200), Duration::hours(1));
    }

    #[test]
    fn retries_until_the_eleventh_then_gives_up() {
        let p = RetryPolicy::default();
        let mut j = FixedJitter(0.0);
        let mut at = now();
        for n in 0..11 {
            match p.decide(n, true, at, &mut j) {
                RetryDecision::RetryAt { at: next, retry } => {
                    assert_eq!(retry, n + 1);
                    assert_eq!(next - at, p.backoff(n));
                    at = next;
                }
                RetryDecision::GiveUp => panic!("gave up after {n} retries"),
            }
        }
        assert_eq!(at - now(), Duration::seconds(4094));
        assert_eq!(p.decide(11, true, at, &mut j), RetryDecision::GiveUp);
    }

    #[test]
    fn non_retryable_errors_fail_at_once() {
        let p = RetryPolicy::default();
        let d = p.decide(0, false, now(), &mut FixedJitter(0.0));
        assert_eq!(d, RetryDecision::GiveUp);
        assert_eq!(
            d.transition(),
            Transition::DeliveryFailed { retryable: false }
        );
        let d = p.decide(0, true, now(), &mut FixedJitter(0.0));
        assert_eq!(
            d.transition(),
            Transition::DeliveryFailed { retryable: true }
        );
    }
}
