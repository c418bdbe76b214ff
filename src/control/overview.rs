//! The overview at the top of the dashboard (`GET /api/v1/overview`): what the whole lb and
//! each pool did over the last minute of [`history`](crate::control::history) — responses per
//! second, the share of 5xx, p50 and p99 of the request duration from the pools' histograms —
//! and which pools need a look: pools with problems first, then busy ones, idle ones last.

use crate::control::history::{quantile_ms, round, Counts, Window, SLOTS};
use crate::request::member::AdminState;
use crate::request::pool::Pool;
use crate::request::route::Table;
use serde::Serialize;
use std::collections::BTreeMap;

/// The whole lb, then each pool.
#[derive(Debug, Serialize)]
pub struct Overview {
    /// The span the figures cover, in seconds: the last minute (less just after the start).
    pub window_s: f64,
    /// Responses sent to clients per second, all pools together.
    pub requests_per_s: f64,
    /// Share of those responses with a 5xx status (lb's own 502/503/504 included); `null`
    /// without responses.
    pub error_ratio: Option<f64>,
    /// Median request duration (arrival to end of response), in milliseconds; `null` without
    /// requests.
    pub p50_ms: Option<f64>,
    /// 99th percentile of the request duration, in milliseconds.
    pub p99_ms: Option<f64>,
    /// Every pool, those with problems first.
    pub pools: Vec<PoolSummary>,
}

/// How a pool is doing, in the order the overview lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A backend is down or ejected, the pool has none, or it refused or failed requests.
    Failing,
    /// Backends are drained or in maintenance.
    Reduced,
    /// All in, with traffic.
    Serving,
    /// All in, no traffic.
    Idle,
}

/// One pool in the overview.
#[derive(Debug, Serialize)]
pub struct PoolSummary {
    /// Its name.
    pub name: String,
    /// How it is doing.
    pub status: Status,
    /// What is wrong, in short phrases (`"1 down"`, `"3 refused"`...); empty when nothing.
    pub problems: Vec<String>,
    /// Responses per second.
    pub requests_per_s: f64,
    /// Share of 5xx responses; `null` without responses.
    pub error_ratio: Option<f64>,
    /// Median request duration, in milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile of the request duration, in milliseconds.
    pub p99_ms: Option<f64>,
    /// 503s without a backend over the window.
    pub refused: u64,
    /// Members.
    pub backends: usize,
    /// Members that take new requests now (healthy, not ejected, ready).
    pub up: usize,
}

/// A pool's members by condition.
#[derive(Debug, Default, PartialEq)]
struct Members {
    total: usize,
    up: usize,
    down: usize,
    ejected: usize,
    drain: usize,
    maint: usize,
}

impl Members {
    fn of(pool: &Pool) -> Members {
        let mut m = Members::default();
        for s in pool.states().all() {
            let (healthy, ejected, admin) = (s.healthy(), s.ejected(), s.admin());
            m.total += 1;
            m.down += usize::from(!healthy);
            m.ejected += usize::from(healthy && ejected);
            m.drain += usize::from(admin == AdminState::Drain);
            m.maint += usize::from(admin == AdminState::Maint);
            m.up += usize::from(healthy && !ejected && admin == AdminState::Ready);
        }
        m
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| round(part as f64 / whole as f64, 4))
}

fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        round(count as f64 / seconds, 2)
    } else {
        0.0
    }
}

fn quantile(counts: &Counts, q: f64) -> Option<f64> {
    quantile_ms(counts, q).map(|ms| round(ms, 3))
}

/// The status and problems of a pool with members `m` that did `w` over the window.
fn assess(m: &Members, w: &Window) -> (Status, Vec<String>) {
    let phrases = |list: &[(u64, &str)]| -> Vec<String> {
        list.iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect()
    };
    let mut problems = if m.total == 0 {
        vec!["no backend".to_string()]
    } else {
        Vec::new()
    };
    problems.extend(phrases(&[
        (m.down as u64, "down"),
        (m.ejected as u64, "ejected"),
        (w.refused, "refused"),
        (w.errors, "5xx"),
    ]));
    let reduced = phrases(&[(m.drain as u64, "draining"), (m.maint as u64, "in maintenance")]);
    let status = if !problems.is_empty() {
        Status::Failing
    } else if !reduced.is_empty() {
        Status::Reduced
    } else if w.responses > 0 {
        Status::Serving
    } else {
        Status::Idle
    };
    problems.extend(reduced);
    (status, problems)
}

fn summary(pool: &Pool, w: &Window) -> PoolSummary {
    let members = Members::of(pool);
    let (status, problems) = assess(&members, w);
    PoolSummary {
        name: pool.name.clone(),
        status,
        problems,
        requests_per_s: rate(w.responses, w.seconds),
        error_ratio: ratio(w.errors, w.responses),
        p50_ms: quantile(&w.counts, 0.5),
        p99_ms: quantile(&w.counts, 0.99),
        refused: w.refused,
        backends: members.total,
        up: members.up,
    }
}

/// The overview of the pools of `table`, whose last minutes are `windows`.
pub fn build(table: &Table, windows: &BTreeMap<String, Window>) -> Overview {
    let none = Window::default();
    let window = |name: &String| windows.get(name).unwrap_or(&none);
    let mut pools: Vec<PoolSummary> = table.pools.iter().map(|(name, p)| summary(p, window(name))).collect();
    pools.sort_by(|a, b| (a.status, &a.name).cmp(&(b.status, &b.name)));
    let mut all = Window::default();
    for name in table.pools.keys() {
        let w = window(name);
        all.seconds = all.seconds.max(w.seconds);
        all.responses += w.responses;
        all.errors += w.errors;
        for i in 0..SLOTS {
            all.counts[i] += w.counts[i];
        }
    }
    Overview {
        window_s: round(all.seconds, 1),
        requests_per_s: round(pools.iter().map(|p| p.requests_per_s).sum(), 2),
        error_ratio: ratio(all.errors, all.responses),
        p50_ms: quantile(&all.counts, 0.5),
        p99_ms: quantile(&all.counts, 0.99),
        pools,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Addr, BackendConf, Upstream};
    use std::sync::Arc;
    use std::time::Duration;

    fn pool(name: &str, port: u16) -> Arc<Pool> {
        let backend = BackendConf {
            address: Addr(([127, 0, 0, 1], port).into()),
            weight: 1,
            max_connections: None,
            source: Default::default(),
        };
        Arc::new(Pool::from_config(name, &Upstream::new(vec![backend])).unwrap())
    }

    fn window(responses: u64, errors: u64, refused: u64, fast: u64) -> Window {
        let mut counts = [0; SLOTS];
        // `fast` requests of at most 1 ms, the others up to 10 ms.
        for (i, slot) in counts.iter_mut().enumerate() {
            *slot = if i < 1 {
                0
            } else if i < 4 {
                fast
            } else {
                responses
            };
        }
        Window {
            seconds: 10.0,
            responses,
            errors,
            refused,
            counts,
        }
    }

    #[test]
    fn pools_with_problems_come_first_and_idle_ones_last() {
        let names = ["a-idle", "b-busy", "c-drained", "d-down", "e-refusing"];
        let mut table = Table::default();
        for (i, name) in names.iter().enumerate() {
            table.pools.insert(name.to_string(), pool(name, 9001 + i as u16));
        }
        let state = |name: &str| table.pools[name].states().all()[0].clone();
        state("c-drained").set_admin(AdminState::Drain);
        state("d-down").observe_check(false, |_| 1);
        let mut windows = BTreeMap::new();
        windows.insert("b-busy".to_string(), window(100, 0, 0, 50));
        windows.insert("c-drained".to_string(), window(20, 0, 0, 20));
        windows.insert("e-refusing".to_string(), window(10, 10, 10, 0));
        let o = build(&table, &windows);
        let order: Vec<_> = o.pools.iter().map(|p| (p.name.as_str(), p.status)).collect();
        assert_eq!(
            order,
            [
                ("d-down", Status::Failing),
                ("e-refusing", Status::Failing),
                ("c-drained", Status::Reduced),
                ("b-busy", Status::Serving),
                ("a-idle", Status::Idle),
            ]
        );
        assert_eq!(o.pools[0].problems, ["1 down"]);
        assert_eq!((o.pools[0].up, o.pools[0].backends), (0, 1));
        assert_eq!(o.pools[1].problems, ["10 refused", "10 5xx"]);
        assert_eq!(o.pools[2].problems, ["1 draining"]);
        assert_eq!(o.pools[3].requests_per_s, 10.0);
        assert_eq!(o.pools[4].error_ratio, None);
        assert_eq!((o.window_s, o.requests_per_s), (10.0, 13.0));
        assert_eq!(o.error_ratio, Some(round(10.0 / 130.0, 4)));
        // 70 of 130 requests took 0.5-1 ms, the others 5-10 ms: merged over the pools, the
        // median is among the first, the p99 among the others.
        assert_eq!((o.p50_ms, o.p99_ms), (Some(0.964), Some(9.892)));
    }

    #[test]
    fn an_ejected_backend_and_an_empty_pool_are_problems() {
        let mut table = Table::default();
        let web = pool("web", 9001);
        web.states().all()[0].eject(Duration::from_secs(60), false);
        table.pools.insert("web".into(), Arc::clone(&web));
        let empty = pool("empty", 9002);
        empty.set_members(&[]);
        table.pools.insert("empty".into(), empty);
        let o = build(&table, &BTreeMap::new());
        let problems: Vec<_> = o.pools.iter().map(|p| (p.name.as_str(), p.problems.clone())).collect();
        assert_eq!(
            problems,
            [
                ("empty", vec!["no backend".to_string()]),
                ("web", vec!["1 ejected".to_string()])
            ]
        );
        assert_eq!(
            (o.requests_per_s, o.error_ratio, o.p50_ms, o.window_s),
            (0.0, None, None, 0.0)
        );
    }
}
