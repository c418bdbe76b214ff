//! How a pool protects itself and its backends: passive health (consecutive failed attempts
//! eject a backend for a cool-down, never more than a share of the pool) and the retry budget
//! (retries may add only a share of recent requests, so they cannot amplify an overload).

use crate::config::{OutlierConf, RetryBudget};
use crate::request::selection::load::{BackendState, States};
use log::warn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Seconds the retry budget looks back.
const WINDOW_SECS: u64 = 10;

/// Passive health settings of a pool.
pub struct Outliers {
    /// Failures in a row that eject; 0: off.
    threshold: u32,
    cool_down: Duration,
    max_ejected_percent: u32,
}

impl Outliers {
    /// The settings of `conf`.
    pub fn new(conf: &OutlierConf) -> Self {
        Outliers {
            threshold: conf.consecutive_failures,
            cool_down: conf.ejection_time.0,
            max_ejected_percent: conf.max_ejected_percent,
        }
    }

    /// Counts a failed attempt on `state` and ejects it when it has failed enough times in a
    /// row and the pool can spare it. `checked`: the pool has active checks; the backend is then
    /// marked unhealthy and returns when they pass (`healthy_threshold` in a row, as HAProxy's
    /// `on-error mark-down`); without them it is out for `ejection_time` (as nginx's
    /// `max_fails`/`fail_timeout`).
    pub fn failed(&self, pool: &str, states: &States, state: &BackendState, checked: bool) {
        let in_a_row = state.attempt_failed();
        let out = |s: &BackendState| s.ejected() || !s.healthy();
        if self.threshold == 0 || in_a_row < self.threshold || out(state) {
            return;
        }
        // Never more than the share, and never the last backend still in: with nowhere else to
        // go, a failing backend is better than a certain 503.
        let all = states.all();
        let ejected = all.iter().filter(|s| out(s)).count();
        let allowed = all.len() * self.max_ejected_percent as usize / 100;
        if ejected >= allowed || ejected + 1 >= all.len() {
            return;
        }
        state.eject(self.cool_down, checked);
        if checked {
            warn!(
                "pool {pool} backend {} becomes unhealthy, {in_a_row} failed attempts in a row (passive health)",
                state.addr
            );
        } else {
            warn!(
                "pool {pool} backend {} ejected for {:?} after {in_a_row} failed attempts in a row (passive health)",
                state.addr, self.cool_down
            );
        }
    }
}

/// Requests and retries per second over the last [`WINDOW_SECS`] seconds.
pub struct RetryWindow {
    ratio: f64,
    min_per_second: u64,
    epoch: Instant,
    /// Per slot: the second it counts, requests, retries.
    slots: [[AtomicU64; 3]; WINDOW_SECS as usize],
}

impl RetryWindow {
    /// A window for `budget`.
    pub fn new(budget: &RetryBudget) -> Self {
        RetryWindow {
            ratio: budget.ratio,
            min_per_second: budget.min_per_second as u64,
            epoch: Instant::now(),
            slots: Default::default(),
        }
    }

    fn slot(&self) -> &[AtomicU64; 3] {
        let sec = self.epoch.elapsed().as_secs() + 1;
        let slot = &self.slots[(sec % WINDOW_SECS) as usize];
        if slot[0].swap(sec, Ordering::Relaxed) != sec {
            slot[1].store(0, Ordering::Relaxed);
            slot[2].store(0, Ordering::Relaxed);
        }
        slot
    }

    /// Counts a request (its first attempt).
    pub fn request(&self) {
        self.slot()[1].fetch_add(1, Ordering::Relaxed);
    }

    /// Whether one more retry fits the budget; if so, it is counted.
    pub fn try_retry(&self) -> bool {
        let now = self.epoch.elapsed().as_secs() + 1;
        let (mut requests, mut retries) = (0, 0);
        for slot in &self.slots {
            if slot[0].load(Ordering::Relaxed) + WINDOW_SECS > now {
                requests += slot[1].load(Ordering::Relaxed);
                retries += slot[2].load(Ordering::Relaxed);
            }
        }
        let budget = self.min_per_second * WINDOW_SECS + (self.ratio * requests as f64) as u64;
        if retries >= budget {
            return false;
        }
        self.slot()[2].fetch_add(1, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::member::Member;
    use std::sync::Arc;
    use tokio::sync::Notify;

    fn states(n: u8) -> States {
        let all = (1..=n).map(|i| {
            let m = Member::new(format!("127.0.0.{i}:80").parse().unwrap(), 1);
            Arc::new(BackendState::new(
                &m,
                i as usize,
                Duration::from_secs(1),
                Arc::new(Notify::new()),
            ))
        });
        States::new("p", all.collect::<Vec<_>>())
    }

    #[test]
    fn consecutive_failures_eject_but_not_more_than_the_share() {
        let conf = OutlierConf {
            consecutive_failures: 3,
            ejection_time: crate::config::Dur(Duration::from_secs(30)),
            max_ejected_percent: 50,
        };
        let o = Outliers::new(&conf);
        let s = states(4);
        let all = s.all();
        o.failed("p", &s, &all[0], false);
        o.failed("p", &s, &all[0], false);
        all[0].attempt_succeeded();
        o.failed("p", &s, &all[0], false);
        assert!(!all[0].ejected(), "a success breaks the series");
        o.failed("p", &s, &all[0], false);
        o.failed("p", &s, &all[0], false);
        assert!(all[0].ejected(), "without active checks: out for the cool-down");
        all[0].eject(Duration::ZERO, false);
        for b in &all {
            for _ in 0..3 {
                o.failed("p", &s, b, true);
            }
        }
        let out: Vec<bool> = all.iter().map(|b| !b.healthy()).collect();
        assert_eq!(out.iter().filter(|e| **e).count(), 2, "{out:?}");
        assert!(!all[0].ejected(), "with active checks they decide when it returns");
        // The last backend in is never ejected, whatever the share.
        let o = Outliers::new(&OutlierConf {
            max_ejected_percent: 100,
            ..conf
        });
        let one = states(1);
        for _ in 0..10 {
            o.failed("p", &one, &one.all()[0], true);
        }
        assert!(one.all()[0].healthy());
    }

    #[test]
    fn retries_fit_a_share_of_requests_plus_a_floor() {
        let w = RetryWindow::new(&RetryBudget {
            ratio: 0.2,
            min_per_second: 1,
        });
        for _ in 0..100 {
            w.request();
        }
        // 10 (floor over the window) + 20% of 100.
        let allowed = (0..100).filter(|_| w.try_retry()).count();
        assert_eq!(allowed, 30);
    }
}
