//! Per-pool statistics counted on the request path: responses by status class, request and
//! upstream-response durations as histograms, retries and refusals; and per route, responses
//! by status class. Each count is one or two
//! relaxed atomic adds; turning them into Prometheus families is the control plane's job.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds (seconds) of the duration histograms: fine below 10 ms, where a load balancer's
/// own time lives, up to a minute (the default backend read timeout).
pub const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A lock-free histogram over [`BUCKETS`] (plus `+Inf`).
pub struct Histogram {
    /// Non-cumulative counts; the last one is `+Inf`.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

/// A histogram's content at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, cumulative count)` per bucket, `+Inf` excluded.
    pub buckets: Vec<(f64, u64)>,
    /// Observations in all.
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum: f64,
}

impl Histogram {
    /// Counts one observation.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = BUCKETS.iter().position(|&b| secs <= b).unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(BUCKETS.len());
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let count = cumulative + self.counts[BUCKETS.len()].load(Ordering::Relaxed);
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        HistogramSnapshot { buckets, count, sum }
    }
}

/// Names of the refusal reasons, by [`crate::request::pool::Refused`] index.
pub const REFUSALS: [&str; 3] = ["none_ready", "queue_full", "queue_timeout"];

/// One pool's statistics. They live as long as the pool's name: a reload keeps them.
#[derive(Default)]
pub struct PoolStats {
    /// Responses sent to clients by status class 1xx..5xx.
    responses: StatusClasses,
    /// From the request's arrival to the end of its response.
    pub request_duration: Histogram,
    /// From sending to a backend to its response header, per attempt that got one.
    pub upstream_response: Histogram,
    retries: AtomicU64,
    refused: [AtomicU64; 3],
    upgrades: AtomicU64,
    /// Discovery results applied, and discovery failures (the last good set kept).
    discovery: [AtomicU64; 2],
}

impl PoolStats {
    /// Counts a response with `status` sent to a client.
    pub fn response(&self, status: u16) {
        self.responses.count(status);
    }

    /// Responses so far, by class (index 0 is 1xx).
    pub fn responses(&self) -> [u64; 5] {
        self.responses.read()
    }

    /// Counts an attempt after the first.
    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Attempts after the first, so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Counts a connection upgraded (101: WebSocket...).
    pub fn upgraded(&self) {
        self.upgrades.fetch_add(1, Ordering::Relaxed);
    }

    /// Upgraded connections so far.
    pub fn upgrades(&self) -> u64 {
        self.upgrades.load(Ordering::Relaxed)
    }

    /// Counts a discovery result: applied (`ok`), or refused and the last good set kept.
    pub fn discovered(&self, ok: bool) {
        self.discovery[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// Discovery results so far: `(applied, failed)`.
    pub fn discoveries(&self) -> (u64, u64) {
        let [ok, failed] = &self.discovery;
        (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
    }

    /// Counts a 503 without a backend, `reason` indexing [`REFUSALS`].
    pub fn refused(&self, reason: usize) {
        if let Some(slot) = self.refused.get(reason) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// 503s without a backend so far, by reason.
    pub fn refusals(&self) -> [(&'static str, u64); 3] {
        std::array::from_fn(|i| (REFUSALS[i], self.refused[i].load(Ordering::Relaxed)))
    }
}

/// One route's responses to clients by status class 1xx..5xx (`lb_route_requests_total`),
/// under the route's label: its name, `routes[N]` for an unnamed route (its place in the file),
/// `default` for the route lb makes when there are none. A reload keeps the counters of a
/// label.
pub struct RouteStats {
    label: Arc<str>,
    responses: StatusClasses,
}

impl Default for RouteStats {
    fn default() -> Self {
        RouteStats::new("default".into())
    }
}

impl RouteStats {
    /// Counters at 0 under `label`.
    pub fn new(label: Arc<str>) -> Self {
        RouteStats {
            label,
            responses: Default::default(),
        }
    }

    /// The route's label in `lb_route_requests_total`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The label, shared.
    pub fn shared_label(&self) -> Arc<str> {
        Arc::clone(&self.label)
    }

    /// Counts a response with `status` sent to a client.
    pub fn response(&self, status: u16) {
        self.responses.count(status);
    }

    /// Responses so far, by class (index 0 is 1xx).
    pub fn responses(&self) -> [u64; 5] {
        self.responses.read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let c = PoolStats::default();
        for s in [200, 204, 301, 404, 503, 503, 99, 600] {
            c.response(s);
        }
        assert_eq!(c.responses(), [0, 2, 1, 1, 2]);
        let r = RouteStats::new("api".into());
        assert_eq!(r.label(), "api");
        for s in [200, 429, 0, 101, 600] {
            r.response(s);
        }
        assert_eq!(r.responses(), [1, 1, 0, 1, 0]);
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_an_overflow() {
        let h = Histogram::default();
        for ms in [0, 1, 3, 3, 70_000] {
            h.observe(Duration::from_millis(ms));
        }
        let snap = h.snapshot();
        assert_eq!(snap.count, 5);
        assert_eq!(snap.buckets[0], (0.0005, 1));
        assert_eq!(snap.buckets[1], (0.001, 2));
        assert_eq!(snap.buckets[3], (0.005, 4));
        assert_eq!(snap.buckets.last(), Some(&(60.0, 4)));
        assert!((snap.sum - 70.007).abs() < 1e-9, "{}", snap.sum);
    }
}

/// Responses by status class, 1xx to 5xx, counted with one atomic each.
#[derive(Debug, Default)]
struct StatusClasses([AtomicU64; 5]);

impl StatusClasses {
    /// Counts `status` in its class (none outside 100-599).
    fn count(&self, status: u16) {
        if let Some(slot) = (status / 100).checked_sub(1).and_then(|i| self.0.get(i as usize)) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts, index 0 for 1xx.
    fn read(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}
