//! A token bucket per key (the PagerDuty routing key): `burst` events at
//! once, refilled at `per_minute` events a minute.
//!
//! Hand-written rather than a rate-limiting crate: it is a few lines, adds
//! no dependency, takes the time as an argument (so tests move it without
//! sleeping), and bounds its own memory (at most [`BUCKETS_MAX`] keys).
//! Throttling is per process and forgotten on restart, which is all a
//! throttle needs to be.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Most keys tracked at once; when full, buckets that refilled completely
/// (idle keys) are forgotten first.
pub(crate) const BUCKETS_MAX: usize = 10_000;

/// The buckets.
#[derive(Debug)]
pub(crate) struct Throttle {
    per_minute: u32,
    burst: u32,
    buckets: HashMap<String, Bucket>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Throttle {
    /// `per_minute == 0` turns throttling off.
    pub(crate) fn new(per_minute: u32, burst: u32) -> Throttle {
        Throttle { per_minute, burst, buckets: HashMap::new() }
    }

    fn rate_per_second(&self) -> f64 {
        f64::from(self.per_minute) / 60.0
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.rate_per_second()).min(f64::from(self.burst))
    }

    /// Takes one token for `key` at `now`, or says how long until one is
    /// there.
    pub(crate) fn take(&mut self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let full = Bucket { tokens: f64::from(self.burst), at: now };
        let tokens = match self.buckets.get(key) {
            Some(bucket) => self.refilled(*bucket, now),
            None => {
                self.make_room(now);
                full.tokens
            }
        };
        if tokens >= 1.0 {
            self.buckets.insert(key.to_owned(), Bucket { tokens: tokens - 1.0, at: now });
            Ok(())
        } else {
            self.buckets.insert(key.to_owned(), Bucket { tokens, at: now });
            Err(Duration::from_secs_f64((1.0 - tokens) / self.rate_per_second()))
        }
    }

    /// Keeps the map under [`BUCKETS_MAX`]: forgets full buckets, then any.
    fn make_room(&mut self, now: Instant) {
        if self.buckets.len() < BUCKETS_MAX {
            return;
        }
        let burst = f64::from(self.burst);
        let rate = self.rate_per_second();
        self.buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst);
        while self.buckets.len() >= BUCKETS_MAX {
            let Some(key) = self.buckets.keys().next().cloned() else { break };
            self.buckets.remove(&key);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_refills() {
        let mut t = Throttle::new(60, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.take("k", t0), Ok(()));
        }
        let wait = t.take("k", t0).unwrap_err();
        assert!(wait > Duration::from_millis(990) && wait <= Duration::from_secs(1), "{wait:?}");
        // Another key has its own bucket.
        assert_eq!(t.take("other", t0), Ok(()));
        // One second later, one event (60 a minute).
        assert_eq!(t.take("k", t0 + Duration::from_secs(1)), Ok(()));
        assert!(t.take("k", t0 + Duration::from_secs(1)).is_err());
        // Never more than the burst, however long it was idle.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(t.take("k", later), Ok(()));
        }
        assert!(t.take("k", later).is_err());
    }

    #[test]
    fn zero_per_minute_turns_it_off() {
        let mut t = Throttle::new(0, 0);
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(t.take("k", now), Ok(()));
        }
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn the_map_stays_bounded() {
        let mut t = Throttle::new(60, 1);
        let now = Instant::now();
        for i in 0..BUCKETS_MAX + 10 {
            assert_eq!(t.take(&format!("key-{i}"), now), Ok(()));
        }
        assert!(t.len() <= BUCKETS_MAX);
    }
}
