//! A message rate (`--rate 200/s`, `50/min`) and the pacing schedule that keeps to it:
//! a token bucket in its GCRA form (one theoretical arrival time), the clock passed in,
//! so it is pure and tested deterministically.
//!
//! The bucket holds what [`TOLERANCE`] of the rate is, plus one: at 100/s three
//! messages may go at once after an idle spell, then one every 10 ms; at 1/min one, then
//! one a minute. The tolerance also absorbs a timer that wakes late (tokio's has a 1 ms
//! granularity): permits are counted from the schedule, not from when they were taken,
//! so a late wake-up costs no rate.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How much lateness (and so how much burst) the schedule absorbs.
pub const TOLERANCE: Duration = Duration::from_millis(20);

/// A rate of messages: `count` per `per` (a second or a minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Per,
}

/// The unit of a [`Rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    Second,
    Minute,
}

impl Per {
    fn duration(self) -> Duration {
        match self {
            Per::Second => Duration::from_secs(1),
            Per::Minute => Duration::from_secs(60),
        }
    }
}

/// Why a rate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("a rate is N/s or N/min (e.g. 200/s, 30/min), not {0:?}")]
    Form(String),
    #[error("the count of a rate is a whole number from 1 to 1000000, not {0:?}")]
    Count(String),
}

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let (n, unit) = t.split_once('/').ok_or_else(|| RateError::Form(s.into()))?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Per::Second,
            "min" | "minute" => Per::Minute,
            _ => return Err(RateError::Form(s.into())),
        };
        let count = n
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|c| (1..=1_000_000).contains(c))
            .ok_or_else(|| RateError::Count(n.trim().into()))?;
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per {
            Per::Second => "s",
            Per::Minute => "min",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl Rate {
    /// The time between two messages at this rate.
    pub fn interval(&self) -> Duration {
        self.per.duration() / self.count
    }

    /// Messages per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.per.duration().as_secs_f64()
    }

    /// How many messages may be waiting for their turn, taken from the broker but not
    /// yet handled, to keep the schedule fed: what a second of the rate is, at least 1,
    /// at most `cap` (the configured prefetch).
    pub fn window(&self, cap: u16) -> u16 {
        let per_second = self.per_second().ceil() as u64;
        u16::try_from(per_second.clamp(1, u64::from(cap.max(1)))).unwrap_or(cap.max(1))
    }
}

/// The pacing schedule: when the next message may go. Times are durations since an
/// origin the caller picks (and keeps).
#[derive(Debug, Clone)]
pub struct Pacer {
    interval: Duration,
    tolerance: Duration,
    /// When the next permit is due on the schedule (the theoretical arrival time).
    due: Option<Duration>,
}

impl Pacer {
    pub fn new(rate: Rate) -> Self {
        Pacer {
            interval: rate.interval(),
            tolerance: TOLERANCE,
            due: None,
        }
    }

    /// When the next permit may be taken: `now` or later. Reserves nothing.
    pub fn ready_at(&self, now: Duration) -> Duration {
        match self.due {
            None => now,
            Some(due) => now.max(due.saturating_sub(self.tolerance)),
        }
    }

    /// Take a permit at `now` if one is ready (true), and schedule the next one.
    pub fn try_take(&mut self, now: Duration) -> bool {
        if self.ready_at(now) > now {
            return false;
        }
        // Counted from the schedule while it is kept (a late wake-up costs nothing);
        // after an idle spell from now (no credit saved up beyond the tolerance).
        let base = self.due.map_or(now, |due| due.max(now));
        self.due = Some(base + self.interval);
        true
    }

    /// Take the next permit whenever it is ready: returns when (at `now` or later).
    pub fn take(&mut self, now: Duration) -> Duration {
        let at = self.ready_at(now);
        let taken = self.try_take(at);
        debug_assert!(taken);
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rates_are_read_per_second_and_per_minute() {
        let r: Rate = "200/s".parse().unwrap();
        assert_eq!(r.interval(), ms(5));
        assert_eq!(r.to_string(), "200/s");
        let r: Rate = " 30/min ".parse().unwrap();
        assert_eq!(r.interval(), ms(2_000));
        assert_eq!(r.to_string(), "30/min");
        assert_eq!("7/sec".parse::<Rate>().unwrap().count, 7);
        for bad in [
            "",
            "200",
            "/s",
            "0/s",
            "-1/s",
            "1.5/s",
            "5/h",
            "5/",
            "x/s",
            "2000000/s",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} is refused");
        }
        assert!(matches!("0/s".parse::<Rate>(), Err(RateError::Count(_))));
        assert!(matches!("5/h".parse::<Rate>(), Err(RateError::Form(_))));
    }

    #[test]
    fn the_window_is_a_second_of_the_rate_within_the_prefetch() {
        assert_eq!("100/s".parse::<Rate>().unwrap().window(500), 100);
        assert_eq!("5000/s".parse::<Rate>().unwrap().window(500), 500);
        assert_eq!("1/min".parse::<Rate>().unwrap().window(500), 1);
        assert_eq!("90/min".parse::<Rate>().unwrap().window(500), 2);
        assert_eq!("100/s".parse::<Rate>().unwrap().window(0), 1);
    }

    /// Take `n` permits as fast as the schedule allows, waking `late` after each is
    /// ready; the times they were taken at.
    fn drive(rate: &str, n: usize, late: Duration) -> Vec<Duration> {
        let mut p = Pacer::new(rate.parse().unwrap());
        let mut now = ms(1_000);
        let mut out = Vec::new();
        while out.len() < n {
            let ready = p.ready_at(now);
            now = if ready > now { ready + late } else { now };
            assert!(p.try_take(now), "ready at {now:?}");
            out.push(now);
        }
        out
    }

    #[test]
    fn a_steady_drain_keeps_the_rate_exactly() {
        let t = drive("100/s", 301, Duration::ZERO);
        // Three at once (the tolerance is two intervals' worth), then one every 10 ms.
        assert_eq!(t[0], t[2]);
        for w in t[3..].windows(2) {
            assert_eq!(w[1] - w[0], ms(10));
        }
        let rate = 298.0 / (t[300] - t[2]).as_secs_f64();
        assert!((rate - 100.0).abs() / 100.0 < 0.001, "{rate}");
    }

    #[test]
    fn a_late_timer_costs_no_rate() {
        // Every wake-up 3 ms late: the schedule is kept from its own times.
        let t = drive("100/s", 301, ms(3));
        let rate = 298.0 / (t[300] - t[2]).as_secs_f64();
        assert!((rate - 100.0).abs() / 100.0 < 0.005, "{rate}");
        // ... and never faster than the rate over any second.
        for (i, at) in t.iter().enumerate() {
            let in_a_second = t[i..].iter().take_while(|x| **x < *at + ms(1_000)).count();
            assert!(
                in_a_second <= 100 + 3,
                "{in_a_second} within a second from {at:?}"
            );
        }
    }

    #[test]
    fn slow_rates_take_one_at_a_time() {
        let t = drive("1/min", 4, Duration::ZERO);
        // The second may go the tolerance early, then one a minute.
        assert_eq!(t[1] - t[0], ms(60_000) - TOLERANCE);
        assert_eq!(t[2] - t[1], ms(60_000));
        assert_eq!(t[3] - t[2], ms(60_000));
    }

    #[test]
    fn an_idle_spell_saves_up_no_more_than_the_tolerance() {
        let mut p = Pacer::new("100/s".parse().unwrap());
        assert!(p.try_take(ms(0)));
        // A minute idle: then at most three at once, not 6,000.
        let now = ms(60_000);
        assert!(p.try_take(now));
        assert!(p.try_take(now));
        assert!(p.try_take(now));
        assert!(!p.try_take(now));
        assert_eq!(p.ready_at(now), now + ms(10));
        assert_eq!(p.take(now), now + ms(10));
        assert_eq!(p.ready_at(now), now + ms(20));
        // A late taker still gets its turn from the schedule.
        assert!(p.try_take(now + ms(25)));
        assert_eq!(p.ready_at(now + ms(25)), now + ms(30));
    }

    #[test]
    fn high_rates_burst_only_what_the_tolerance_is() {
        let mut p = Pacer::new("10000/s".parse().unwrap());
        let at_once = (0..1_000).take_while(|_| p.try_take(ms(5))).count();
        // 20 ms of 10,000/s, plus one.
        assert_eq!(at_once, 201);
    }
}
