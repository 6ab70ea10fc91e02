//! Retry delay schedules: the delay before attempt `k` of a [`DelaySchedule`].
//!
//! Attempt `k` (1-based) waits `steps[k-1]` while `k <= steps.len()`. After that the last
//! step is multiplied by `backoff` once per further attempt and capped at `max`. The cap
//! never shortens an explicit step: the effective cap is `max(max, last step)`, so a
//! hand-built schedule that leaves `max` at zero simply repeats its last step.
//!
//! Pure arithmetic: saturating, never panics (no `Duration::from_secs_f64` on NaN or
//! huge values), no clock.

use std::time::Duration;

use crate::rules::DelaySchedule;

/// The longest delay dlqd will compute: 100 years. Keeps every float conversion finite.
pub const MAX_DELAY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The delay before attempt `attempt` (1-based; 0 is treated as 1).
pub fn delay(schedule: &DelaySchedule, attempt: u32) -> Duration {
    let Some(&last) = schedule.steps.last() else {
        return Duration::ZERO;
    };
    let k = attempt.max(1) as usize;
    if k <= schedule.steps.len() {
        return schedule.steps[k - 1].min(MAX_DELAY);
    }
    let cap = schedule.max.max(last).min(MAX_DELAY);
    let factor = schedule.backoff;
    if !(factor.is_finite() && factor > 1.0) {
        // 1 (no backoff), less than 1 or nonsense: the last step repeats.
        return last.min(cap);
    }
    // Past ~1100 doublings any factor > 1 overflows f64 anyway; clamp before the cast.
    let extra = (k - schedule.steps.len()).min(4096) as i32;
    let secs = last.as_secs_f64() * factor.powi(extra);
    if !secs.is_finite() || secs >= cap.as_secs_f64() {
        return cap;
    }
    // secs is finite, ≥ 0 and < cap ≤ MAX_DELAY: the conversion cannot panic.
    Duration::from_secs_f64(secs).min(cap)
}

/// The delays of attempts 1, 2, 3, ... as an iterator (endless).
pub fn schedule_iter(schedule: &DelaySchedule) -> impl Iterator<Item = Duration> + '_ {
    (1u32..).map(move |k| delay(schedule, k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(steps: &[u64], backoff: f64, max: u64) -> DelaySchedule {
        DelaySchedule {
            steps: steps.iter().map(|&x| Duration::from_secs(x)).collect(),
            backoff,
            max: Duration::from_secs(max),
        }
    }

    fn secs(sched: &DelaySchedule, n: usize) -> Vec<u64> {
        schedule_iter(sched).take(n).map(|d| d.as_secs()).collect()
    }

    #[test]
    fn single_delay_with_backoff_and_default_max() {
        // DELAY(1s) BACKOFF(2), MAXDELAY defaults to 10 × DELAY.
        assert_eq!(secs(&s(&[1], 2.0, 10), 6), [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn list_repeats_last_entry() {
        assert_eq!(
            secs(&s(&[1, 2, 3, 5, 8, 24], 1.0, 0), 8),
            [1, 2, 3, 5, 8, 24, 24, 24]
        );
    }

    #[test]
    fn list_with_backoff_continues_from_last() {
        assert_eq!(secs(&s(&[1, 5], 3.0, 100), 5), [1, 5, 15, 45, 100]);
    }

    #[test]
    fn no_delay() {
        assert_eq!(delay(&DelaySchedule::default(), 1), Duration::ZERO);
        assert_eq!(delay(&DelaySchedule::default(), 1000), Duration::ZERO);
        assert_eq!(delay(&s(&[], 2.0, 10), 3), Duration::ZERO);
    }

    #[test]
    fn attempt_zero_is_first() {
        assert_eq!(delay(&s(&[7, 9], 1.0, 0), 0), Duration::from_secs(7));
    }

    #[test]
    fn absurd_values_saturate_without_panic() {
        let huge = DelaySchedule {
            steps: vec![Duration::MAX],
            backoff: f64::MAX,
            max: Duration::MAX,
        };
        assert_eq!(delay(&huge, u32::MAX), MAX_DELAY);
        assert_eq!(delay(&huge, 1), MAX_DELAY);
        for b in [f64::NAN, f64::INFINITY, -3.0, 0.0, 0.5] {
            let sched = s(&[2], b, 50);
            assert_eq!(delay(&sched, 10), Duration::from_secs(2), "backoff {b}");
        }
        let big = s(&[1], 1e300, u64::MAX);
        assert_eq!(delay(&big, u32::MAX), MAX_DELAY);
        assert_eq!(
            delay(&s(&[1], 2.0, 3600), u32::MAX),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn sub_second_steps_keep_precision() {
        let sched = DelaySchedule {
            steps: vec![Duration::from_millis(250)],
            backoff: 2.0,
            max: Duration::from_secs(5),
        };
        let ms: Vec<u128> = schedule_iter(&sched)
            .take(6)
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 5000]);
    }
}
