//! A short history of the pools, kept by the control plane so that the dashboard's charts are
//! full when it opens: every [`INTERVAL`], one sample of each pool (responses, 5xx, refusals,
//! p50/p99 of its request-duration histogram) and of each backend (requests, response time),
//! the last [`CAPACITY`] of them (15 minutes). It reads the pools through their own API, and
//! health changes it sees between two samples (ejections, readmissions) become events.
//!
//! Memory is bounded, and allocated when a series starts: per backend 900 × 8 B ≈ 7 KB; per
//! pool 900 × 20 B for its samples + 61 × 136 B for the histogram counts of the overview's
//! last minute ≈ 26 KB; 7 KB for the sample times. Pools and backends that leave are
//! forgotten at the next sample (a backend that comes back starts a new series). The JSON
//! answer is [`view`]'s.

use crate::control::events::{Events, Kind};
use crate::request::pool::Pool;
use crate::request::route::{Routing, Table};
use crate::request::selection::load::BackendState;
use crate::request::stats::BUCKETS;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::{Instant, MissedTickBehavior};

mod view;

/// Time between samples: the dashboard's refresh period, so past and live points have the same
/// resolution, and a one-second burst of errors is not averaged away.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Samples kept per series: 15 minutes at one a second.
pub const CAPACITY: usize = 900;
/// Samples the overview looks back over: the last minute.
pub const WINDOW: usize = 60;
/// Histogram slots: one per bound of [`BUCKETS`], then `+Inf`.
pub const SLOTS: usize = BUCKETS.len() + 1;

/// Cumulative histogram counts: `[i]` is the observations of at most `BUCKETS[i]` seconds, the
/// last slot all of them.
pub type Counts = [u64; SLOTS];

/// A ring of at most `capacity` items: pushing onto a full one drops the oldest.
pub struct Ring<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> Ring<T> {
    /// An empty ring, its memory allocated at once.
    pub fn new(capacity: usize) -> Self {
        Ring {
            items: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Adds `item` as the newest, dropping the oldest when full.
    pub fn push(&mut self, item: T) {
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    #[cfg(test)]
    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Item `i`, 0 being the oldest.
    pub fn get(&self, i: usize) -> Option<&T> {
        self.items.get(i)
    }

    /// The oldest item.
    pub fn first(&self) -> Option<&T> {
        self.items.front()
    }

    /// The newest item.
    pub fn last(&self) -> Option<&T> {
        self.items.back()
    }

    /// The newest `n` items (all of them if fewer), oldest first.
    pub fn tail(&self, n: usize) -> impl Iterator<Item = &T> {
        self.items.iter().skip(self.len().saturating_sub(n))
    }
}

/// One backend in one interval.
#[derive(Clone, Copy)]
struct BackendSample {
    requests: u32,
    /// Response-time average at the end of the interval; NaN when it served nothing in it.
    latency_ms: f32,
}

/// One pool in one interval.
#[derive(Clone, Copy)]
struct PoolSample {
    responses: u32,
    errors: u32,
    refused: u32,
    /// NaN without responses.
    p50_ms: f32,
    p99_ms: f32,
}

/// A backend's health as the sampler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Up,
    /// Unhealthy: its checks fail, or passive health marked it down until they pass.
    Down,
    /// Passive health holds it out for a cool-down.
    Ejected,
}

impl Health {
    fn of(state: &BackendState) -> Health {
        if !state.healthy() {
            Health::Down
        } else if state.ejected() {
            Health::Ejected
        } else {
            Health::Up
        }
    }
}

/// The event of a change of health from `before` (`None`: first seen) to `now`, if any.
fn health_event(before: Option<Health>, now: Health) -> Option<(Kind, &'static str)> {
    match (before, now) {
        (None | Some(Health::Up), Health::Down) => Some((
            Kind::Ejected,
            "down: fails its health checks, or failed attempts marked it down until they pass",
        )),
        (None | Some(Health::Up), Health::Ejected) => Some((
            Kind::Ejected,
            "ejected by passive health after failed attempts in a row, for its cool-down",
        )),
        (Some(Health::Down), Health::Up) => Some((Kind::Readmitted, "passes its health checks again")),
        (Some(Health::Ejected), Health::Up) => Some((Kind::Readmitted, "back after its cool-down")),
        _ => None,
    }
}

struct BackendSeries {
    /// The request counter at the last sample.
    requests: u64,
    health: Health,
    samples: Ring<BackendSample>,
}

/// A pool's counters at one moment.
struct PoolCounters {
    responses: u64,
    errors: u64,
    refused: u64,
    counts: Counts,
}

impl PoolCounters {
    fn of(pool: &Pool) -> PoolCounters {
        let stats = pool.stats();
        let responses = stats.responses();
        let snapshot = stats.request_duration.snapshot();
        let mut counts = [0; SLOTS];
        for (slot, (_, n)) in counts.iter_mut().zip(&snapshot.buckets) {
            *slot = *n;
        }
        counts[SLOTS - 1] = snapshot.count;
        PoolCounters {
            responses: responses.iter().sum(),
            errors: responses[4],
            refused: stats.refusals().iter().map(|(_, n)| n).sum(),
            counts,
        }
    }
}

struct PoolSeries {
    /// The counters at the last sample.
    last: PoolCounters,
    /// Histogram counts at the last [`WINDOW`] + 1 samples.
    counts: Ring<Counts>,
    samples: Ring<PoolSample>,
    backends: BTreeMap<SocketAddr, BackendSeries>,
}

/// `now - before`, as a count of one interval.
fn delta(now: u64, before: u64) -> u32 {
    u32::try_from(now.saturating_sub(before)).unwrap_or(u32::MAX)
}

/// `a - b`, slot by slot.
fn minus(a: &Counts, b: &Counts) -> Counts {
    std::array::from_fn(|i| a[i].saturating_sub(b[i]))
}

/// The `q` quantile (0 to 1), in milliseconds, of cumulative histogram `counts`, interpolated
/// in its bucket as Prometheus' `histogram_quantile` does (the first bucket starts at 0; one in
/// `+Inf` is the largest finite bound); `None` without observations.
pub fn quantile_ms(counts: &Counts, q: f64) -> Option<f64> {
    let total = counts[SLOTS - 1];
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let (mut below, mut lower) = (0, 0.0);
    for (&upper, &cumulative) in BUCKETS.iter().zip(counts) {
        if cumulative > below && cumulative as f64 >= rank {
            let share = (rank - below as f64) / (cumulative - below) as f64;
            return Some((lower + (upper - lower) * share.max(0.0)) * 1000.0);
        }
        (below, lower) = (cumulative, upper);
    }
    Some(BUCKETS[BUCKETS.len() - 1] * 1000.0)
}

/// `value` rounded to `digits` decimals.
pub(crate) fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

impl PoolSeries {
    fn start(name: &str, pool: &Pool, now_ms: u64, events: &Events) -> PoolSeries {
        let last = PoolCounters::of(pool);
        let mut counts = Ring::new(WINDOW + 1);
        counts.push(last.counts);
        let mut series = PoolSeries {
            last,
            counts,
            samples: Ring::new(CAPACITY),
            backends: BTreeMap::new(),
        };
        series.sample_backends(name, pool, now_ms, events);
        series
    }

    fn sample(&mut self, name: &str, pool: &Pool, now_ms: u64, events: &Events) {
        let now = PoolCounters::of(pool);
        let interval = minus(&now.counts, &self.last.counts);
        let quantile = |q| quantile_ms(&interval, q).map_or(f32::NAN, |ms| ms as f32);
        self.samples.push(PoolSample {
            responses: delta(now.responses, self.last.responses),
            errors: delta(now.errors, self.last.errors),
            refused: delta(now.refused, self.last.refused),
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
        });
        self.counts.push(now.counts);
        self.last = now;
        self.sample_backends(name, pool, now_ms, events);
    }

    /// Samples the backends that have a series, starts one for new ones, forgets those gone.
    fn sample_backends(&mut self, name: &str, pool: &Pool, now_ms: u64, events: &Events) {
        self.backends
            .retain(|addr, _| pool.states().with(addr, |_| ()).is_some());
        for state in pool.states().all() {
            let health = Health::of(&state);
            let requests = state.requests.load(Ordering::Relaxed);
            let before = match self.backends.get_mut(&state.addr) {
                Some(series) => {
                    let served = delta(requests, series.requests);
                    let latency_ms = state.latency.get() / 1e6;
                    series.samples.push(BackendSample {
                        requests: served,
                        latency_ms: if served > 0 { latency_ms as f32 } else { f32::NAN },
                    });
                    series.requests = requests;
                    Some(std::mem::replace(&mut series.health, health))
                }
                None => {
                    let samples = Ring::new(CAPACITY);
                    let series = BackendSeries {
                        requests,
                        health,
                        samples,
                    };
                    self.backends.insert(state.addr, series);
                    None
                }
            };
            if let Some((kind, detail)) = health_event(before, health) {
                events.record_at(now_ms, kind, Some(name), Some(state.addr), detail);
            }
        }
    }

    fn window(&self, times: &Ring<u64>) -> Window {
        let k = self.counts.len().saturating_sub(1);
        let (first, last) = (self.counts.first(), self.counts.last());
        let counts = first.zip(last).map_or([0; SLOTS], |(a, b)| minus(b, a));
        let span = times
            .last()
            .zip(times.get(times.len().saturating_sub(k + 1)))
            .map_or(0, |(end, start)| end.saturating_sub(*start));
        let samples = || self.samples.tail(k);
        Window {
            seconds: span as f64 / 1000.0,
            responses: samples().map(|s| u64::from(s.responses)).sum(),
            errors: samples().map(|s| u64::from(s.errors)).sum(),
            refused: samples().map(|s| u64::from(s.refused)).sum(),
            counts,
        }
    }
}

/// What a pool did over the last minute (or since it appeared, if later).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    /// The span covered, in seconds (0 before the second sample).
    pub seconds: f64,
    /// Responses sent to clients.
    pub responses: u64,
    /// Of them, 5xx (lb's own 502/503/504 included).
    pub errors: u64,
    /// 503s without a backend (none ready, queue full or timed out).
    pub refused: u64,
    /// Request-duration histogram counts over the span.
    pub counts: Counts,
}

struct Inner {
    /// When each sample was taken (ms since the Unix epoch); one more than the longest series,
    /// since a series' first interval starts at the sample before.
    times: Ring<u64>,
    pools: BTreeMap<String, PoolSeries>,
}

/// The pools' last 15 minutes.
pub struct History(Mutex<Inner>);

impl Default for History {
    fn default() -> Self {
        History(Mutex::new(Inner {
            times: Ring::new(CAPACITY + 1),
            pools: BTreeMap::new(),
        }))
    }
}

impl History {
    /// Samples every pool of `table` at `now_ms` (milliseconds since the Unix epoch); health
    /// changes since the last sample go to `events`.
    pub fn sample(&self, table: &Table, now_ms: u64, events: &Events) {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Inner { times, pools } = &mut *inner;
        times.push(now_ms);
        pools.retain(|name, _| table.pools.contains_key(name));
        for (name, pool) in &table.pools {
            match pools.get_mut(name) {
                Some(series) => series.sample(name, pool, now_ms, events),
                None => {
                    pools.insert(name.clone(), PoolSeries::start(name, pool, now_ms, events));
                }
            }
        }
    }

    /// Each pool's last minute.
    pub fn windows(&self) -> BTreeMap<String, Window> {
        let inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let times = &inner.times;
        inner
            .pools
            .iter()
            .map(|(name, p)| (name.clone(), p.window(times)))
            .collect()
    }
}

/// Milliseconds since the Unix epoch on a monotonic clock (the wall clock when it started, plus
/// the time elapsed since), so that intervals stay right when the wall clock is set.
struct Clock {
    unix_ms: u64,
    started: Instant,
}

impl Clock {
    fn new() -> Clock {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Clock {
            unix_ms,
            started: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.unix_ms + self.started.elapsed().as_millis() as u64
    }
}

/// Samples the pools of `routing` into `history` every [`INTERVAL`], for as long as the process
/// runs.
pub async fn run(routing: &Routing, history: &History, events: &Events) {
    let clock = Clock::new();
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        history.sample(&routing.load(), clock.now_ms(), events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Addr, BackendConf, Upstream};
    use crate::request::member::Member;
    use std::sync::Arc;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn pool(name: &str, ports: &[u16]) -> Arc<Pool> {
        let backends = ports
            .iter()
            .map(|&p| BackendConf {
                address: Addr(addr(p)),
                weight: 1,
                max_connections: None,
                source: Default::default(),
            })
            .collect();
        Arc::new(Pool::from_config(name, &Upstream::new(backends)).unwrap())
    }

    fn table(pools: &[&Arc<Pool>]) -> Table {
        let mut table = Table::default();
        for p in pools {
            table.pools.insert(p.name.clone(), Arc::clone(p));
        }
        table
    }

    /// `n` requests to backend `port` of `pool`, each taking `ms`, answered `status`.
    fn serve(pool: &Pool, port: u16, n: usize, ms: u64, status: u16) {
        let state = pool.states().get(&addr(port)).unwrap();
        for _ in 0..n {
            drop(state.try_acquire());
            state.latency.observe(Duration::from_millis(ms));
            pool.stats().response(status);
            pool.stats().request_duration.observe(Duration::from_millis(ms));
        }
    }

    #[test]
    fn a_ring_keeps_its_newest_items() {
        let mut ring = Ring::new(3);
        assert!(ring.is_empty() && ring.first().is_none());
        for i in 1..=5 {
            ring.push(i);
        }
        assert_eq!(
            (ring.len(), ring.first(), ring.last(), ring.get(1)),
            (3, Some(&3), Some(&5), Some(&4))
        );
        assert_eq!(ring.tail(2).copied().collect::<Vec<_>>(), [4, 5]);
        assert_eq!(ring.tail(9).copied().collect::<Vec<_>>(), [3, 4, 5]);
        assert!(ring.items.capacity() >= 3);
    }

    #[test]
    fn samples_become_rates_aligned_on_the_times() {
        let (web, events, history) = (pool("web", &[1, 2]), Events::default(), History::default());
        let t = table(&[&web]);
        history.sample(&t, 10_000, &events);
        serve(&web, 1, 10, 5, 200);
        serve(&web, 2, 2, 1, 503);
        history.sample(&t, 11_000, &events);
        serve(&web, 2, 3, 1, 200);
        history.sample(&t, 11_500, &events);
        let view = history.view(None);
        assert_eq!(view.times, [11_000, 11_500]);
        let p = &view.pools[0];
        assert_eq!(p.requests_per_s, [Some(12.0), Some(6.0)]);
        assert_eq!(p.errors_per_s, [Some(2.0), Some(0.0)]);
        let (a, b) = (&p.backends[0], &p.backends[1]);
        assert_eq!((a.address.as_str(), b.address.as_str()), ("127.0.0.1:1", "127.0.0.1:2"));
        assert_eq!(a.requests_per_s, [Some(10.0), Some(0.0)]);
        assert_eq!(b.requests_per_s, [Some(2.0), Some(6.0)]);
        assert_eq!(a.latency_ms[1], None, "a served nothing in the second interval");
        assert!(
            a.latency_ms[0].is_some_and(|ms| (4.9..=5.0).contains(&ms)),
            "{:?}",
            a.latency_ms
        );
        // 10 of 12 requests took 5 ms (bucket 2.5-5 ms), 2 took 1 ms (bucket 0.5-1 ms).
        assert_eq!((p.p50_ms[0], p.p99_ms[0]), (Some(3.5), Some(4.97)));
        assert_eq!(p.p50_ms[1], Some(0.75), "3 requests of 1 ms");

        // A backend that joins has no value before its second sample; `since` cuts the answer.
        let mut members: Vec<Member> = [1, 2, 3].iter().map(|&p| Member::new(addr(p), 1)).collect();
        web.set_members(&members);
        history.sample(&t, 12_500, &events);
        serve(&web, 3, 4, 2, 200);
        history.sample(&t, 13_500, &events);
        let view = history.view(Some(11_500));
        assert_eq!(view.times, [12_500, 13_500]);
        assert_eq!(view.pools[0].backends[2].requests_per_s, [None, Some(4.0)]);
        assert_eq!(history.view(None).pools[0].backends[2].requests_per_s.len(), 4);
        assert!(history.view(Some(13_500)).times.is_empty());
        // One that leaves is forgotten.
        members.remove(0);
        web.set_members(&members);
        history.sample(&t, 14_500, &events);
        let backends: Vec<_> = history.view(None).pools[0]
            .backends
            .iter()
            .map(|b| b.address.clone())
            .collect();
        assert_eq!(backends, ["127.0.0.1:2", "127.0.0.1:3"]);
    }

    #[test]
    fn memory_is_bounded_and_pools_that_leave_are_forgotten() {
        let (web, api, events, history) = (
            pool("web", &[1]),
            pool("api", &[2]),
            Events::default(),
            History::default(),
        );
        let both = table(&[&web, &api]);
        for i in 0..CAPACITY as u64 + 50 {
            serve(&web, 1, 1, 1, 200);
            history.sample(&both, 1_000 * (i + 1), &events);
        }
        let view = history.view(None);
        assert_eq!(view.times.len(), CAPACITY);
        assert_eq!(view.times[0], 1_000 * 51, "the oldest times were dropped");
        for p in &view.pools {
            assert_eq!(p.requests_per_s.len(), CAPACITY);
            assert_eq!(p.backends[0].requests_per_s.len(), CAPACITY);
        }
        {
            let inner = history.0.lock().unwrap();
            let web = &inner.pools["web"];
            assert_eq!(
                (inner.times.len(), web.samples.len(), web.counts.len()),
                (CAPACITY + 1, CAPACITY, WINDOW + 1)
            );
            assert_eq!(web.backends[&addr(1)].samples.len(), CAPACITY);
        }
        let windows = history.windows();
        assert_eq!(windows["web"].responses, WINDOW as u64);
        assert_eq!(windows["web"].seconds, WINDOW as f64);
        assert_eq!(windows["web"].counts[SLOTS - 1], WINDOW as u64);
        assert_eq!(windows["api"].responses, 0);
        history.sample(&table(&[&web]), 2_000_000, &events);
        assert_eq!(history.view(None).pools.len(), 1);
        assert!(!history.windows().contains_key("api"));
    }

    #[test]
    fn health_changes_between_samples_become_events() {
        let (web, events, history) = (pool("web", &[1, 2]), Events::default(), History::default());
        let t = table(&[&web]);
        let b = web.states().get(&addr(2)).unwrap();
        b.observe_check(false, |_| 1);
        history.sample(&t, 1_000, &events);
        history.sample(&t, 2_000, &events);
        let a = web.states().get(&addr(1)).unwrap();
        a.eject(Duration::from_secs(60), false);
        b.observe_check(true, |_| 1);
        history.sample(&t, 3_000, &events);
        history.sample(&t, 4_000, &events);
        let seen: Vec<_> = events
            .list()
            .into_iter()
            .rev()
            .map(|e| (e.at_ms, e.kind, e.backend.unwrap_or_default()))
            .collect();
        let (a, b) = ("127.0.0.1:1".to_string(), "127.0.0.1:2".to_string());
        assert_eq!(
            seen,
            [
                (1_000, Kind::Ejected, b.clone()),
                (3_000, Kind::Ejected, a),
                (3_000, Kind::Readmitted, b),
            ]
        );
        assert!(
            events.list()[1].detail.contains("passive health"),
            "{:?}",
            events.list()
        );
    }

    #[test]
    fn health_transitions() {
        use Health::*;
        assert_eq!(health_event(None, Up), None);
        assert_eq!(health_event(None, Down).map(|e| e.0), Some(Kind::Ejected));
        assert_eq!(health_event(Some(Up), Ejected).map(|e| e.0), Some(Kind::Ejected));
        assert_eq!(health_event(Some(Down), Up).map(|e| e.0), Some(Kind::Readmitted));
        assert_eq!(health_event(Some(Ejected), Up).map(|e| e.0), Some(Kind::Readmitted));
        assert_eq!(health_event(Some(Down), Ejected), None, "out either way");
        assert_eq!(health_event(Some(Up), Up), None);
    }

    #[test]
    fn quantiles_interpolate_in_their_bucket() {
        let mut counts = [0; SLOTS];
        assert_eq!(quantile_ms(&counts, 0.5), None);
        // 100 observations between 1 and 2.5 ms (bucket 2), 100 more beyond 60 s.
        for slot in counts.iter_mut().skip(2) {
            *slot = 100;
        }
        counts[SLOTS - 1] = 200;
        assert!((quantile_ms(&counts, 0.25).unwrap() - 1.75).abs() < 1e-9);
        assert!((quantile_ms(&counts, 0.5).unwrap() - 2.5).abs() < 1e-9);
        assert_eq!(quantile_ms(&counts, 0.99), Some(60_000.0), "+Inf: the largest bound");
        assert_eq!(round(1.23456, 2), 1.23);
    }
}
