//! Per-client request rate limiting with GCRA (the generic cell rate algorithm): one "theoretical arrival
//! time" per key, in sharded maps; which key a request has, which clock to read and what to answer to a
//! refused request are the caller's business.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Number of independently locked maps the keys are spread over.
const SHARDS: usize = 32;

/// Cap of `burst × interval`, ns (2^62, about 146 years), so every TAT stays within 2^62 ns of `now`.
const MAX_SPAN: u64 = 1 << 62;

/// A GCRA rate limiter keyed by client: `per_second` requests per second on average, bursts of `burst`.
///
/// Each key's state is one u64: its theoretical arrival time (TAT), the instant at which its full burst is
/// available again. A request at `now` passes when `TAT - now <= (burst - 1) × interval`, and then pushes the
/// TAT one interval further. So, starting fresh, exactly `burst` requests pass at the same instant, then one
/// more every interval (`1 / per_second`, rounded up to the nanosecond so the rate is never exceeded).
///
/// Times are compared modulo 2^64, so any clock origin works (even one near `u64::MAX`), provided each key is
/// checked or swept at least once every 146 years.
///
/// Keys are hashed with FNV-1a 64 (fixed and seedless, so behaviour is deterministic) and a key's state is
/// stored under its hash: two keys with the same hash share one budget. That is rare for honest keys, but
/// FNV is not collision-resistant, so a client that chooses its key bytes freely (a header value, say) could
/// craft a key sharing a victim's budget; key by something clients cannot choose (their IP address) where
/// that matters.
pub struct RateLimiter {
    /// Nanoseconds between two requests at the steady rate; 0 for no limit; at most `MAX_SPAN / burst`.
    interval: u64,
    /// How far ahead of `now` a key's TAT may be for a request to pass: `(burst - 1) × interval`, ns.
    tolerance: u64,
    /// Key hash → TAT (ns), spread by hash.
    shards: [Mutex<HashMap<u64, u64>>; SHARDS],
}

impl RateLimiter {
    /// `per_second` requests per second on average (> 0, may be fractional like 0.5), with bursts of up to
    /// `burst` requests (>= 1). Out-of-range values never panic: `burst` 0 counts as 1; `f64::INFINITY`
    /// means no limit; `burst × (1 / per_second)` is capped at 2^62 ns (146 years), so a `per_second` that is
    /// not a positive number (or is absurdly small) lets one burst through and then, in effect, nothing.
    pub fn new(per_second: f64, burst: u32) -> Self {
        let burst = u64::from(burst.max(1));
        let interval = interval_ns(per_second).min(MAX_SPAN / burst);
        RateLimiter {
            interval,
            tolerance: interval * (burst - 1),
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    /// Whether a request with `key` (e.g. the client IP's bytes or a header value) may pass at `now_ns`
    /// (nanoseconds on a monotonic clock owned by the caller); Err(wait) says when the next one would pass
    /// (for Retry-After, rounded up to whole seconds by the caller). A refused request costs nothing.
    pub fn check(&self, key: &[u8], now_ns: u64) -> Result<(), Duration> {
        if self.interval == 0 {
            return Ok(());
        }
        let hash = fnv1a(key);
        let mut shard = self.shard(hash);
        let ahead = shard.get(&hash).map_or(0, |&tat| ahead(tat, now_ns));
        if ahead > self.tolerance {
            return Err(Duration::from_nanos(ahead - self.tolerance));
        }
        // ahead + interval <= tolerance + interval <= MAX_SPAN: no overflow.
        shard.insert(hash, now_ns.wrapping_add(ahead + self.interval));
        Ok(())
    }

    /// Forgets keys whose state is back to "full burst available" at `now_ns` (call every few seconds), so
    /// memory stays bounded by the number of keys active within the last `burst / per_second` seconds.
    pub fn sweep(&self, now_ns: u64) {
        for shard in &self.shards {
            lock(shard).retain(|_, tat| ahead(*tat, now_ns) > 0);
        }
    }

    /// Number of keys held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    #[cfg(test)]
    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The locked shard of a key hash.
    fn shard(&self, hash: u64) -> MutexGuard<'_, HashMap<u64, u64>> {
        // Fold the high bits in: FNV's low bits alone mix less well.
        let index = ((hash ^ (hash >> 32)) % SHARDS as u64) as usize;
        lock(&self.shards[index])
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("interval_ns", &self.interval)
            .field("tolerance_ns", &self.tolerance)
            .field("keys", &self.len())
            .finish()
    }
}

/// Locks `shard`, recovering it if a thread panicked while holding it (the map stays consistent: every
/// update is a single insert or retain).
fn lock(shard: &Mutex<HashMap<u64, u64>>) -> MutexGuard<'_, HashMap<u64, u64>> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How far `tat` is ahead of `now`, 0 if it is behind; modulo 2^64, so a clock wrapping around is no
/// matter (TATs are never more than [`MAX_SPAN`] ahead).
fn ahead(tat: u64, now: u64) -> u64 {
    match tat.wrapping_sub(now) {
        d if d > u64::MAX / 2 => 0,
        d => d,
    }
}

/// Nanoseconds between requests at `per_second`, rounded up; `u64::MAX` for a rate that is not a positive
/// number, 0 for an infinite one.
fn interval_ns(per_second: f64) -> u64 {
    if per_second.is_nan() || per_second <= 0.0 {
        return u64::MAX;
    }
    // Float-to-int `as` saturates: tiny rates give u64::MAX, infinity gives 0.
    (1e9 / per_second).ceil() as u64
}

/// FNV-1a, 64 bits (the `fnv` crate's).
fn fnv1a(key: &[u8]) -> u64 {
    let mut hasher = fnv::FnvHasher::default();
    std::hash::Hasher::write(&mut hasher, key);
    std::hash::Hasher::finish(&hasher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const SECOND: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    /// How many of `n` requests with `key` at `now` pass.
    fn passes(limiter: &RateLimiter, key: &[u8], now: u64, n: usize) -> usize {
        (0..n).filter(|_| limiter.check(key, now).is_ok()).count()
    }

    #[test]
    fn exactly_burst_requests_pass_at_once() {
        for burst in [1, 2, 5, 100] {
            let limiter = RateLimiter::new(10.0, burst);
            assert_eq!(
                passes(&limiter, b"a", 7 * SECOND, 1000),
                burst as usize,
                "burst {burst}"
            );
            assert_eq!(limiter.check(b"a", 7 * SECOND), Err(Duration::from_millis(100)));
        }
    }

    #[test]
    fn one_more_every_interval_after_the_burst() {
        let limiter = RateLimiter::new(10.0, 3);
        assert_eq!(passes(&limiter, b"a", 0, 10), 3);
        for k in 1..=50 {
            let due = k * 100 * MS;
            assert_eq!(
                limiter.check(b"a", due - 1),
                Err(Duration::from_nanos(1)),
                "just before slot {k}"
            );
            assert_eq!(limiter.check(b"a", due), Ok(()), "slot {k}");
            assert_eq!(
                limiter.check(b"a", due),
                Err(Duration::from_millis(100)),
                "slot {k} taken"
            );
        }
    }

    #[test]
    fn steady_timeline() {
        // 25 requests per second offered for 10 s against 10/s with bursts of 4.
        let limiter = RateLimiter::new(10.0, 4);
        let passed = (0..250).filter(|i| limiter.check(b"a", i * 40 * MS).is_ok()).count();
        // The burst, then one per 100 ms for the 9.96 s after the first request.
        assert_eq!(passed, 4 + 99);
    }

    #[test]
    fn idle_time_refills_up_to_the_burst_only() {
        let limiter = RateLimiter::new(2.0, 3);
        assert_eq!(passes(&limiter, b"a", 0, 10), 3);
        assert_eq!(passes(&limiter, b"a", 1000 * SECOND, 10), 3);
        assert_eq!(passes(&limiter, b"a", 1000 * SECOND + SECOND, 10), 2);
    }

    #[test]
    fn keys_are_independent() {
        let limiter = RateLimiter::new(1.0, 2);
        assert_eq!(passes(&limiter, b"10.0.0.1", 0, 5), 2);
        assert_eq!(passes(&limiter, b"10.0.0.2", 0, 5), 2);
        assert_eq!(passes(&limiter, b"", 0, 5), 2);
        assert_eq!(limiter.len(), 3);
    }

    #[test]
    fn fractional_rate() {
        let limiter = RateLimiter::new(0.5, 1);
        assert_eq!(limiter.check(b"a", 0), Ok(()));
        assert_eq!(limiter.check(b"a", SECOND), Err(Duration::from_secs(1)));
        assert_eq!(limiter.check(b"a", 2 * SECOND - 1), Err(Duration::from_nanos(1)));
        assert_eq!(limiter.check(b"a", 2 * SECOND), Ok(()));
        // A rate that does not divide a second is rounded so it is never exceeded.
        let limiter = RateLimiter::new(3.0, 1);
        assert_eq!(limiter.check(b"a", 0), Ok(()));
        assert_eq!(limiter.check(b"a", 333_333_333), Err(Duration::from_nanos(1)));
        assert_eq!(limiter.check(b"a", 333_333_334), Ok(()));
    }

    #[test]
    fn sweep_forgets_only_refilled_keys() {
        let limiter = RateLimiter::new(10.0, 2);
        assert!(limiter.is_empty());
        assert_eq!(passes(&limiter, b"a", 0, 2), 2);
        assert_eq!(passes(&limiter, b"b", 150 * MS, 1), 1);
        limiter.sweep(199 * MS);
        assert_eq!(limiter.len(), 2);
        limiter.sweep(200 * MS);
        assert_eq!(limiter.len(), 1);
        limiter.sweep(250 * MS);
        assert_eq!(limiter.len(), 0);
        // A forgotten key starts afresh, exactly as if it had been kept.
        assert_eq!(passes(&limiter, b"a", 300 * MS, 5), 2);
    }

    #[test]
    fn out_of_range_parameters_never_panic() {
        for rate in [0.0, -1.0, f64::NAN, f64::NEG_INFINITY, 1e-300] {
            let limiter = RateLimiter::new(rate, 2);
            assert_eq!(passes(&limiter, b"a", 0, 5), 2, "rate {rate}");
            assert!(limiter.check(b"a", u64::MAX).is_err(), "rate {rate}");
        }
        let unlimited = RateLimiter::new(f64::INFINITY, 1);
        assert_eq!(passes(&unlimited, b"a", 0, 1000), 1000);
        assert!(unlimited.is_empty());
        let fast = RateLimiter::new(1e12, 1);
        assert_eq!(passes(&fast, b"a", 0, 5), 1);
        assert_eq!(fast.check(b"a", 1), Ok(()));
        let zero_burst = RateLimiter::new(1.0, 0);
        assert_eq!(passes(&zero_burst, b"a", 0, 5), 1);
        let huge_burst = RateLimiter::new(1e-9, u32::MAX);
        assert_eq!(passes(&huge_burst, b"a", u64::MAX, 3), 3);
    }

    #[test]
    fn extreme_clocks_never_panic() {
        let limiter = RateLimiter::new(1.0, 2);
        // A clock about to wrap around keeps exact counts across the wrap.
        let start = u64::MAX - SECOND / 2;
        assert_eq!(passes(&limiter, b"a", start, 5), 2);
        assert_eq!(limiter.check(b"a", start.wrapping_add(SECOND)), Ok(()));
        assert_eq!(
            limiter.check(b"a", start.wrapping_add(SECOND)),
            Err(Duration::from_secs(1))
        );
        limiter.sweep(start.wrapping_add(3 * SECOND - 1));
        assert_eq!(limiter.len(), 1);
        limiter.sweep(start.wrapping_add(3 * SECOND));
        assert!(limiter.is_empty());
        // A clock going backwards only delays the key.
        assert_eq!(passes(&limiter, b"b", 10 * SECOND, 1), 1);
        assert_eq!(limiter.check(b"b", 0), Err(Duration::from_secs(10)));
        assert_eq!(passes(&limiter, b"b", 0, 5), 0);
        limiter.sweep(0);
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn fnv1a_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn shared_across_threads_with_exact_counts() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RateLimiter>();
        let limiter = Arc::new(RateLimiter::new(1.0, 1000));
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let limiter = Arc::clone(&limiter);
                std::thread::spawn(move || {
                    let shared = passes(&limiter, b"shared", 0, 1000);
                    let own = passes(&limiter, &[t], 0, 1500);
                    (shared, own)
                })
            })
            .collect();
        let results: Vec<(usize, usize)> = threads.into_iter().map(|t| t.join().unwrap_or_default()).collect();
        assert_eq!(results.iter().map(|r| r.0).sum::<usize>(), 1000);
        assert!(results.iter().all(|r| r.1 == 1000), "{results:?}");
        assert_eq!(limiter.len(), 5);
    }

    #[test]
    fn a_poisoned_shard_still_works() {
        let limiter = Arc::new(RateLimiter::new(1.0, 1));
        let hash = fnv1a(b"a");
        let poisoner = Arc::clone(&limiter);
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.shard(hash);
            panic!("poison the shard");
        })
        .join();
        assert_eq!(limiter.check(b"a", 0), Ok(()));
        assert_eq!(limiter.check(b"a", 0), Err(Duration::from_secs(1)));
        assert_eq!(limiter.len(), 1);
        assert!(format!("{limiter:?}").contains("keys: 1"));
    }
}
