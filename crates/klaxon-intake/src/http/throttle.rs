//! A token bucket per key (the PagerDuty routing key): `burst` events at
//! once, refilled at `per_minute` events a minute.
//!
//! The buckets are governor's keyed rate limiter, the same crate the gRPC
//! servers limit principals with (`klaxon_auth::RateLimit`). The clock is a
//! parameter, so tests move time without sleeping. Memory is bounded: at
//! most [`BUCKETS_MAX`] keys are tracked; when full, keys whose bucket
//! refilled completely (idle keys) are forgotten first, then all of them.
//! Throttling is per process and forgotten on restart, which is all a
//! throttle needs to be.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// Most keys tracked at once.
pub(crate) const BUCKETS_MAX: usize = 10_000;

type Limiter<C> = RateLimiter<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The buckets.
pub(crate) struct Throttle<C: Clock = DefaultClock> {
    /// `None` when throttling is off.
    quota: Option<Quota>,
    limiter: Limiter<C>,
    clock: C,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle").field("quota", &self.quota).field("keys", &self.limiter.len()).finish()
    }
}

impl Throttle {
    /// `per_minute == 0` turns throttling off.
    pub(crate) fn new(per_minute: u32, burst: u32) -> Throttle {
        Throttle::with_clock(per_minute, burst, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Throttle<C> {
    /// A throttle reading time from `clock`.
    pub(crate) fn with_clock(per_minute: u32, burst: u32, clock: C) -> Throttle<C> {
        let quota = NonZeroU32::new(per_minute)
            .map(|rate| Quota::per_minute(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN)));
        let limiter = Self::limiter(quota, &clock);
        Throttle { quota, limiter, clock }
    }

    fn limiter(quota: Option<Quota>, clock: &C) -> Limiter<C> {
        // Off: a quota that is never reached, and no key is ever kept.
        let quota = quota.unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX));
        RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone())
    }

    /// Takes one token for `key`, or says how long until one is there.
    pub(crate) fn take(&mut self, key: &str) -> Result<(), Duration> {
        if self.quota.is_none() {
            return Ok(());
        }
        self.make_room();
        self.limiter.check_key(&key.to_owned()).map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Keeps the limiter under [`BUCKETS_MAX`] keys.
    fn make_room(&mut self) {
        if self.limiter.len() < BUCKETS_MAX {
            return;
        }
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        if self.limiter.len() >= BUCKETS_MAX {
            self.limiter = Self::limiter(self.quota, &self.clock);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_refills() {
        let clock = FakeRelativeClock::default();
        let mut t = Throttle::with_clock(60, 3, clock.clone());
        for _ in 0..3 {
            assert_eq!(t.take("k"), Ok(()));
        }
        let wait = t.take("k").unwrap_err();
        assert!(wait > Duration::from_millis(990) && wait <= Duration::from_secs(1), "{wait:?}");
        // Another key has its own bucket.
        assert_eq!(t.take("other"), Ok(()));
        // One second later, one event (60 a minute).
        clock.advance(Duration::from_secs(1));
        assert_eq!(t.take("k"), Ok(()));
        assert!(t.take("k").is_err());
        // Never more than the burst, however long it was idle.
        clock.advance(Duration::from_secs(3600));
        for _ in 0..3 {
            assert_eq!(t.take("k"), Ok(()));
        }
        assert!(t.take("k").is_err());
    }

    #[test]
    fn zero_per_minute_turns_it_off() {
        let mut t = Throttle::with_clock(0, 0, FakeRelativeClock::default());
        for _ in 0..1000 {
            assert_eq!(t.take("k"), Ok(()));
        }
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn the_map_stays_bounded() {
        let mut t = Throttle::with_clock(60, 1, FakeRelativeClock::default());
        for i in 0..BUCKETS_MAX + 10 {
            assert_eq!(t.take(&format!("key-{i}")), Ok(()));
        }
        assert!(t.len() <= BUCKETS_MAX);
    }
}
