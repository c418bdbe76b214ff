//! Prometheus metrics (`metrics: {address: ...}`, text format at `/metrics`): per backend in
//! flight, attempts, failures, health and latency; per pool queue, refusals and responses by
//! status class. Counting is a few relaxed atomics on the request path; everything else
//! happens when scraped.

use crate::lifecycle::Lifecycle;
use crate::upstream::{backend, Pool};
use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Responses per status class (1xx..5xx), counted by the proxy.
#[derive(Default)]
pub struct StatusCounts([AtomicU64; 5]);

impl StatusCounts {
    /// Counts a response with `status`.
    pub fn count(&self, status: u16) {
        if let Some(slot) = (status / 100).checked_sub(1).and_then(|i| self.0.get(i as usize)) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn get(&self, class: usize) -> u64 {
        self.0[class].load(Ordering::Relaxed)
    }
}

/// The `/metrics` endpoint.
pub struct Metrics {
    pools: Vec<Arc<Pool>>,
    life: Arc<Lifecycle>,
}

impl Metrics {
    /// Metrics of `pools` and the process's `life`.
    pub fn new(pools: Vec<Arc<Pool>>, life: Arc<Lifecycle>) -> Self {
        Metrics { pools, life }
    }

    /// The whole exposition, in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        family(&mut out, "lb_requests_inflight", "gauge", "Requests being served.");
        let _ = writeln!(out, "lb_requests_inflight {}", self.life.inflight());
        self.backend_families(&mut out);
        self.pool_families(&mut out);
        out
    }

    fn backend_families(&self, out: &mut String) {
        type Get = fn(&Pool, &crate::selection::load::BackendState) -> f64;
        let families: [(&str, &str, &str, Get); 5] = [
            (
                "lb_backend_inflight",
                "gauge",
                "Requests in flight to the backend.",
                |_, s| s.inflight() as f64,
            ),
            (
                "lb_backend_requests_total",
                "counter",
                "Attempts sent to the backend, retries included.",
                |_, s| s.requests.load(Ordering::Relaxed) as f64,
            ),
            (
                "lb_backend_failures_total",
                "counter",
                "Attempts that failed to connect or to get a response.",
                |_, s| s.failures.load(Ordering::Relaxed) as f64,
            ),
            (
                "lb_backend_healthy",
                "gauge",
                "1 when the backend is healthy and enabled, else 0.",
                |p, s| p.balancer().backends().ready(&backend(s.addr, s.weight)) as u8 as f64,
            ),
            (
                "lb_backend_latency_seconds",
                "gauge",
                "least_time's decaying peak average of response time.",
                |_, s| s.latency.get() / 1e9,
            ),
        ];
        for (name, kind, help, get) in families {
            family(out, name, kind, help);
            for pool in &self.pools {
                for state in pool.states().all() {
                    let value = get(pool, state);
                    let _ = writeln!(
                        out,
                        "{name}{{pool=\"{}\",backend=\"{}\"}} {value}",
                        pool.name, state.addr
                    );
                }
            }
        }
    }

    fn pool_families(&self, out: &mut String) {
        family(
            out,
            "lb_pool_queued",
            "gauge",
            "Requests waiting for a free backend slot.",
        );
        for pool in &self.pools {
            let _ = writeln!(out, "lb_pool_queued{{pool=\"{}\"}} {}", pool.name, pool.queued());
        }
        family(
            out,
            "lb_pool_refused_total",
            "counter",
            "Requests answered 503 without a backend, by reason.",
        );
        for pool in &self.pools {
            for (reason, n) in pool.refusals() {
                let _ = writeln!(
                    out,
                    "lb_pool_refused_total{{pool=\"{}\",reason=\"{reason}\"}} {n}",
                    pool.name
                );
            }
        }
        family(
            out,
            "lb_responses_total",
            "counter",
            "Responses sent to clients, by status class.",
        );
        for pool in &self.pools {
            for class in 0..5 {
                let n = pool.responses.get(class);
                let _ = writeln!(
                    out,
                    "lb_responses_total{{pool=\"{}\",code=\"{}xx\"}} {n}",
                    pool.name,
                    class + 1
                );
            }
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[async_trait]
impl ServeHttp for Metrics {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (status, body) = if session.req_header().uri.path() == "/metrics" {
            (200, self.render())
        } else {
            (404, "see /metrics\n".to_string())
        };
        Response::builder()
            .status(status)
            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .header("content-length", body.len())
            .body(body.into_bytes())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let c = StatusCounts::default();
        for s in [200, 204, 301, 404, 503, 503, 99, 600] {
            c.count(s);
        }
        assert_eq!((0..5).map(|i| c.get(i)).collect::<Vec<_>>(), [0, 2, 1, 1, 2]);
    }
}
