//! lb's log: env_logger's format and levels (`RUST_LOG`, `info` by default), with one filter of
//! its own. Pingora's accept loop logs every failed `accept()`, and while the process is out of
//! file descriptors that is one line a second per listener, for as long as it lasts: lb logs the
//! first failure of a run, counts every one (`lb_client_rejections_total{reason="accept_failed"}`)
//! and logs again only after a quiet minute.

use crate::request::front::hostile::{self, Reason};
use log::{Log, Metadata, Record};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A run of accept failures ends after this long without one.
const RUN_ENDS_AFTER: Duration = Duration::from_secs(60);

/// Where Pingora's accept loop logs from, and how its line starts.
const ACCEPT_TARGET: &str = "pingora_core::services::listening";
const ACCEPT_FAILED: &str = "Accept() failed";

/// Starts the log (once, at start-up).
pub fn init() {
    let inner = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .build();
    let level = inner.filter();
    let logger = Logger {
        inner,
        run: Mutex::new(Run::default()),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

/// The failures of the current run of accept failures.
#[derive(Default)]
struct Run {
    /// Failures in the run so far.
    failures: u64,
    /// The last one.
    last: Option<Instant>,
}

impl Run {
    /// Counts a failure at `now`: `Some(n)` when it starts a new run (`n` failures in the last
    /// one), `None` inside a run.
    fn failure(&mut self, now: Instant) -> Option<u64> {
        let new_run = self.last.is_none_or(|t| now.duration_since(t) >= RUN_ENDS_AFTER);
        self.last = Some(now);
        if new_run {
            return Some(std::mem::replace(&mut self.failures, 1));
        }
        self.failures += 1;
        None
    }
}

struct Logger {
    inner: env_logger::Logger,
    run: Mutex<Run>,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if record.target() == ACCEPT_TARGET && record.args().to_string().starts_with(ACCEPT_FAILED) {
            hostile::count(Reason::AcceptFailed);
            let Some(before) = self.run.lock().ok().and_then(|mut run| run.failure(Instant::now())) else {
                return;
            };
            let earlier = if before > 0 {
                format!("; {before} in the run before")
            } else {
                String::new()
            };
            let args = format_args!(
                "{} (lb tries again every second; each failure is counted in lb_client_rejections_total{{reason=\"accept_failed\"}}, and logged again after a minute without one{earlier})",
                record.args()
            );
            self.inner
                .log(&Record::builder().args(args).metadata(record.metadata().clone()).build());
            return;
        }
        self.inner.log(record)
    }

    fn flush(&self) {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_failures_is_told_once_until_a_quiet_minute() {
        let mut run = Run::default();
        let t = Instant::now();
        assert_eq!(run.failure(t), Some(0), "the first starts a run");
        for s in 1..100 {
            assert_eq!(run.failure(t + Duration::from_secs(s)), None);
        }
        assert_eq!(
            run.failure(t + Duration::from_secs(99 + 61)),
            Some(100),
            "a new run after a quiet minute"
        );
        assert_eq!(run.failure(t + Duration::from_secs(99 + 62)), None);
    }
}
