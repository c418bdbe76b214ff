//! The history as `GET /api/v1/history` answers it: the series cut to the intervals asked for,
//! aligned on one list of times, counts turned into rates, `null` where there is no value.

use super::{round, History, PoolSeries, Ring, INTERVAL};
use serde::Serialize;

/// The history of `GET /api/v1/history`: every array has one entry per time of `times`,
/// `null` where there is no value (a series that began later, an interval without requests).
#[derive(Debug, Serialize)]
pub struct HistoryView {
    /// Time between samples, in milliseconds.
    pub interval_ms: u64,
    /// The end of each interval, in milliseconds since the Unix epoch, oldest first.
    pub times: Vec<u64>,
    /// Every pool sampled.
    pub pools: Vec<PoolHistory>,
}

/// One pool's history.
#[derive(Debug, Serialize)]
pub struct PoolHistory {
    /// Its name.
    pub name: String,
    /// Responses sent to clients per second.
    pub requests_per_s: Vec<Option<f64>>,
    /// Of them, 5xx per second.
    pub errors_per_s: Vec<Option<f64>>,
    /// 503s without a backend per second.
    pub refused_per_s: Vec<Option<f64>>,
    /// Median request duration in the interval, in milliseconds.
    pub p50_ms: Vec<Option<f64>>,
    /// 99th percentile of the request duration in the interval, in milliseconds.
    pub p99_ms: Vec<Option<f64>>,
    /// Its backends.
    pub backends: Vec<BackendHistory>,
}

/// One backend's history.
#[derive(Debug, Serialize)]
pub struct BackendHistory {
    /// `IP:port`.
    pub address: String,
    /// Requests sent to it per second (attempts, retries included).
    pub requests_per_s: Vec<Option<f64>>,
    /// Its decaying average of response time, in milliseconds; `null` in an interval it served
    /// nothing in.
    pub latency_ms: Vec<Option<f64>>,
}

/// How series of a history are cut out for an answer: `total` intervals, of which the answer
/// holds the last `wanted`, each `seconds[i]` long.
struct Cut {
    total: usize,
    wanted: usize,
    seconds: Vec<f64>,
}

impl Cut {
    /// The last `wanted` entries of `values` (the last `values.len()` intervals), mapped by `f`.
    fn take<T: Copy>(&self, values: &Ring<T>, f: impl Fn(T, f64) -> Option<f64>) -> Vec<Option<f64>> {
        let start = self.total - values.len().min(self.total);
        (self.total - self.wanted..self.total)
            .map(|i| {
                let value = values.get(i.checked_sub(start)?)?;
                f(*value, self.seconds[i])
            })
            .collect()
    }
}

fn per_second(count: u32, seconds: f64) -> Option<f64> {
    Some(round(f64::from(count) / seconds, 2))
}

fn millis(ms: f32) -> Option<f64> {
    (!ms.is_nan()).then(|| round(f64::from(ms), 3))
}

impl History {
    /// The intervals that ended after `since` (ms since the Unix epoch; all of them without).
    pub fn view(&self, since: Option<u64>) -> HistoryView {
        let inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let times: Vec<u64> = (0..inner.times.len())
            .filter_map(|i| inner.times.get(i).copied())
            .collect();
        let ends = times.get(1..).unwrap_or_default();
        let seconds = times
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]).max(1) as f64 / 1000.0);
        let wanted = ends.iter().rev().take_while(|&&t| since.is_none_or(|s| t > s)).count();
        let cut = Cut {
            total: ends.len(),
            wanted,
            seconds: seconds.collect(),
        };
        HistoryView {
            interval_ms: INTERVAL.as_millis() as u64,
            times: ends[ends.len() - wanted..].to_vec(),
            pools: inner
                .pools
                .iter()
                .map(|(name, p)| pool_history(name, p, &cut))
                .collect(),
        }
    }
}

fn pool_history(name: &str, series: &PoolSeries, cut: &Cut) -> PoolHistory {
    let samples = &series.samples;
    PoolHistory {
        name: name.to_string(),
        requests_per_s: cut.take(samples, |s, secs| per_second(s.responses, secs)),
        errors_per_s: cut.take(samples, |s, secs| per_second(s.errors, secs)),
        refused_per_s: cut.take(samples, |s, secs| per_second(s.refused, secs)),
        p50_ms: cut.take(samples, |s, _| millis(s.p50_ms)),
        p99_ms: cut.take(samples, |s, _| millis(s.p99_ms)),
        backends: series
            .backends
            .iter()
            .map(|(addr, b)| BackendHistory {
                address: addr.to_string(),
                requests_per_s: cut.take(&b.samples, |s, secs| per_second(s.requests, secs)),
                latency_ms: cut.take(&b.samples, |s, _| millis(s.latency_ms)),
            })
            .collect(),
    }
}
