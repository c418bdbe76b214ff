//! lb's clocks, in one place: a monotonic clock counted from the process's first reading, for due
//! times, moving averages and rate limits (never goes back, means nothing outside the process),
//! and the wall clock, for times others read (the state file's TTLs, events, the admin API).

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Nanoseconds on the monotonic clock.
pub fn mono_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Milliseconds on the monotonic clock, 1 and up (so 0 can mean "never").
pub fn mono_ms() -> u64 {
    mono_ns() / 1_000_000 + 1
}

/// Milliseconds since the Unix epoch (0 on a clock set before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_agrees_with_itself_and_the_wall_clock_is_after_2020() {
        let (ns, ms) = (mono_ns(), mono_ms());
        assert!(ms >= 1 && ms >= ns / 1_000_000, "{ns} ns, {ms} ms");
        assert!(mono_ns() >= ns);
        assert!(unix_ms() > 1_577_836_800_000);
    }
}
