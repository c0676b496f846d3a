//! The retry delay schedule: pure arithmetic, deterministic jitter.

use std::time::Duration;

/// Exponential backoff: `initial_ms * 2^retry`, capped at `max_ms`, then
/// scaled by a jitter factor in `[0.8, 1.2]` and capped at `max_ms` again, so
/// `max_ms` is a true bound on every delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) initial_ms: u64,
    pub(crate) max_ms: u64,
}

impl Backoff {
    /// Delay before retry number `retry` (0 for the retry after the first
    /// attempt). `seed` picks the jitter; the same seed gives the same
    /// schedule, and different seeds (different idempotency keys) spread
    /// retries of many notifications apart.
    pub(crate) fn delay(&self, retry: u32, seed: u64) -> Duration {
        let base = self.initial_ms.saturating_mul(1u64 << retry.min(32)).min(self.max_ms);
        let unit = (splitmix64(seed ^ u64::from(retry)) >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        let jittered = (base as f64 * (0.8 + 0.4 * unit)).round() as u64;
        Duration::from_millis(jittered.min(self.max_ms))
    }

    /// A server-requested delay (`Retry-After`), bounded by `max_ms`.
    pub(crate) fn bounded(&self, requested: Duration) -> Duration {
        requested.min(Duration::from_millis(self.max_ms))
    }
}

/// A stable 64-bit seed from bytes (FNV-1a).
pub(crate) fn seed_from(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
