//! Prometheus metrics with the `prometheus` crate: a registry holding the process collector
//! (CPU seconds, resident memory, open fds) and `lb`'s own collector, which reads the request
//! path's atomic counters and histograms of the pools in the live table when scraped (so
//! backends that come and go appear and disappear with them). Served at `/metrics` on the admin
//! listener and on the optional `metrics:` listener. The compression families are in
//! [`super::compress_metrics`].

use super::metric_samples::{self, counter, gauge, label_pairs};
use crate::request::front::{hostile, linger, FrontStats};
use crate::request::member::AdminState;
use crate::request::mirror;
use crate::request::pool::Pool;
use crate::request::route::{Routing, Table};
use crate::request::selection::load::BackendState;
use crate::request::stats::HistogramSnapshot;
use crate::request::traffic::Traffic;
use async_trait::async_trait;
use http::Response;
use log::error;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Histogram, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `(name, type, help, labels)` of every family `lb` exports.
const FAMILIES: &[(&str, MetricType, &str, &[&str])] = &[
    (
        "lb_requests_total",
        MetricType::COUNTER,
        "Responses sent to clients, by pool and status class.",
        &["pool", "code"],
    ),
    (
        "lb_request_duration_seconds",
        MetricType::HISTOGRAM,
        "Time from a request's arrival to the end of its response.",
        &["pool"],
    ),
    (
        "lb_upstream_response_seconds",
        MetricType::HISTOGRAM,
        "Time from sending to a backend to its response header.",
        &["pool"],
    ),
    (
        "lb_requests_inflight",
        MetricType::GAUGE,
        "Requests being served by this process.",
        &[],
    ),
    (
        "lb_retries_total",
        MetricType::COUNTER,
        "Attempts after the first (another backend, or a fresh connection).",
        &["pool"],
    ),
    (
        "lb_pool_queued",
        MetricType::GAUGE,
        "Requests waiting for a free backend slot.",
        &["pool"],
    ),
    (
        "lb_pool_refused_total",
        MetricType::COUNTER,
        "Requests answered 503 without a backend, by reason.",
        &["pool", "reason"],
    ),
    (
        "lb_backend_inflight",
        MetricType::GAUGE,
        "Requests in flight to the backend.",
        &["pool", "backend"],
    ),
    (
        "lb_backend_requests_total",
        MetricType::COUNTER,
        "Attempts sent to the backend, retries included.",
        &["pool", "backend"],
    ),
    (
        "lb_backend_failures_total",
        MetricType::COUNTER,
        "Attempts that failed: no connection, no or a broken response, or a 5xx.",
        &["pool", "backend"],
    ),
    (
        "lb_backend_up",
        MetricType::GAUGE,
        "1 when the backend passes its health checks (always without checks), else 0.",
        &["pool", "backend"],
    ),
    (
        "lb_backend_admin_state",
        MetricType::GAUGE,
        "1 for the backend's admin state (ready, drain, maint), 0 for the others.",
        &["pool", "backend", "state"],
    ),
    (
        "lb_backend_weight",
        MetricType::GAUGE,
        "The backend's weight.",
        &["pool", "backend"],
    ),
    (
        "lb_backend_latency_seconds",
        MetricType::GAUGE,
        "Decaying peak average of the backend's response time.",
        &["pool", "backend"],
    ),
    (
        "lb_health_checks_total",
        MetricType::COUNTER,
        "Active health checks, by result (pass, fail).",
        &["pool", "backend", "result"],
    ),
    (
        "lb_upgrades_total",
        MetricType::COUNTER,
        "Connections upgraded (101: WebSocket...), by pool.",
        &["pool"],
    ),
    (
        "lb_requests_refused_total",
        MetricType::COUNTER,
        "Requests and connections the front answered itself before routing (malformed, too large, too slow, listener full), by status.",
        &["code"],
    ),
    (
        "lb_backend_ejected",
        MetricType::GAUGE,
        "1 while passive health holds the backend out, else 0.",
        &["pool", "backend"],
    ),
    (
        "lb_discovery_updates_total",
        MetricType::COUNTER,
        "Backend sets read from the pool's discovery source and applied.",
        &["pool"],
    ),
    (
        "lb_discovery_errors_total",
        MetricType::COUNTER,
        "Discovery reads that failed or were refused (unreadable, invalid, empty): the last good set was kept.",
        &["pool"],
    ),
    (
        "lb_http1_requests_total",
        MetricType::COUNTER,
        "HTTP/1 requests by the loop that proxied them: lb's own (path=\"lb\"), or Pingora's HttpProxy (path=\"pingora\": request bodies, upgrades, absolute-form targets, TLS or HTTP/2 pools).",
        &["path"],
    ),
    (
        "lb_lingering_connections",
        MetricType::GAUGE,
        "Connections closing after an early answer, still reading what the client sends (lingering close).",
        &[],
    ),
    (
        "lb_lingering_closes_total",
        MetricType::COUNTER,
        "Lingering closes, by how they ended: the client closed (closed), a bound ran out (lingering_time, lingering_timeout or lingering_size: cut), or too many lingered already and the connection closed at once (refused).",
        &["end"],
    ),
    (
        "lb_client_rejections_total",
        MetricType::COUNTER,
        "Clients cut off for breaking a limit, by reason: a TLS handshake that stalled (tls_handshake_timeout) or failed, an HTTP/2 control-frame flood, a client that stopped reading (send_timeout), a body slower than clients.body_min_rate, accept() failures (out of file descriptors).",
        &["reason"],
    ),
    (
        "lb_http2_errors_total",
        MetricType::COUNTER,
        "HTTP/2 errors lb sent to clients, by frame (goaway: the connection, rst_stream: one stream) and error code (refused_stream past max_concurrent_streams, enhance_your_calm for rapid resets and CONTINUATION floods, compression_error for HPACK abuse...); graceful GOAWAYs and cancelled streams are not counted.",
        &["frame", "code"],
    ),
    (
        "lb_mirror_requests_total",
        MetricType::COUNTER,
        "Copies of requests sent to routes' mirror pools, by route and result: answered (any status, read to the end), failed (no connection, no usable backend, a broken exchange), timeout (past 10 s), dropped (256 copies already in flight for the route), too_large (a body over mirror.max_body).",
        &["route", "result"],
    ),
    (
        "lb_route_requests_total",
        MetricType::COUNTER,
        "Responses sent to clients, by route (its name; routes[N] for the unnamed route at place N of routes:, from 0; default when there are no routes) and status class.",
        &["route", "code"],
    ),
    (
        "lb_trace_spans_exported_total",
        MetricType::COUNTER,
        "Spans of sampled requests the OTLP receiver accepted.",
        &[],
    ),
    (
        "lb_trace_spans_dropped_total",
        MetricType::COUNTER,
        "Spans of sampled requests lost, by reason: the export queue was full (queue_full: the receiver is slow, down or hangs) or their export failed (export_failed).",
        &["reason"],
    ),
];

/// The metrics of the pools in `routing` and of the process.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// A registry over `routing`, `traffic` and the front's refusals, with the process collector.
    pub fn new(routing: Arc<Routing>, traffic: Arc<Traffic>, front: Arc<FrontStats>) -> Arc<Self> {
        let registry = Registry::new();
        let descs = FAMILIES
            .iter()
            .filter_map(|(name, _, help, labels)| metric_samples::desc(name, help, labels))
            .collect();
        let own = LbCollector {
            routing,
            traffic,
            front,
            descs,
        };
        for collector in [
            Box::new(own) as Box<dyn Collector>,
            Box::new(super::compress_metrics::CompressCollector::default()),
            Box::new(super::rollout_metrics::RolloutCollector::default()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            if let Err(e) = registry.register(collector) {
                error!("metrics: cannot register a collector: {e}");
            }
        }
        Arc::new(Metrics { registry })
    }

    /// The whole exposition, in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            error!("metrics: cannot encode: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The position of family `name` in [`FAMILIES`].
fn family(name: &str) -> Option<usize> {
    FAMILIES.iter().position(|f| f.0 == name)
}

struct LbCollector {
    routing: Arc<Routing>,
    traffic: Arc<Traffic>,
    front: Arc<FrontStats>,
    descs: Vec<Desc>,
}

impl Collector for LbCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let table = self.routing.load();
        let mut metrics: Vec<Vec<Metric>> = FAMILIES.iter().map(|_| Vec::new()).collect();
        metrics[3].push(gauge(&[], self.traffic.inflight() as f64));
        for (code, n) in self.front.counts() {
            metrics[16].push(counter(&[("code", &code.to_string())], n as f64));
        }
        for (path, n) in self.front.paths() {
            metrics[20].push(counter(&[("path", path)], n as f64));
        }
        let (lingering, closed, cut, refused) = linger::STATS.read();
        metrics[21].push(gauge(&[], lingering as f64));
        for (end, n) in [("closed", closed), ("cut", cut), ("refused", refused)] {
            metrics[22].push(counter(&[("end", end)], n as f64));
        }
        for (reason, n) in hostile::counts() {
            metrics[23].push(counter(&[("reason", reason)], n as f64));
        }
        for (frame, code, n) in hostile::h2_counts() {
            metrics[24].push(counter(&[("frame", frame), ("code", code)], n as f64));
        }
        if let Some(family) = family("lb_mirror_requests_total") {
            for (route, result, n) in mirror::counts() {
                metrics[family].push(counter(&[("route", &route), ("result", result)], n as f64));
            }
        }
        route_metrics(&table, &mut metrics);
        trace_metrics(&mut metrics);
        for pool in table.pools.values() {
            pool_metrics(pool, &mut metrics);
            for state in pool.states().all() {
                backend_metrics(&pool.name, &state, &mut metrics);
            }
        }
        FAMILIES
            .iter()
            .zip(metrics)
            .map(|((name, kind, help, _), metrics)| metric_samples::family(name, help, *kind, metrics))
            .collect()
    }
}

/// `lb_route_requests_total` of every route label once (routes that share counters show once).
fn route_metrics(table: &Table, out: &mut [Vec<Metric>]) {
    let Some(family) = family("lb_route_requests_total") else {
        return;
    };
    let mut seen = std::collections::HashSet::new();
    for target in table.router.targets() {
        let label = target.stats.label();
        if !seen.insert(label) {
            continue;
        }
        for (i, n) in target.stats.responses().iter().enumerate() {
            let code = format!("{}xx", i + 1);
            out[family].push(counter(&[("route", label), ("code", &code)], *n as f64));
        }
    }
}

/// `lb_trace_spans_exported_total` and `lb_trace_spans_dropped_total{reason}`.
fn trace_metrics(out: &mut [Vec<Metric>]) {
    let (exported, full, failed) = crate::request::trace::counts();
    if let Some(family) = family("lb_trace_spans_exported_total") {
        out[family].push(counter(&[], exported as f64));
    }
    if let Some(family) = family("lb_trace_spans_dropped_total") {
        for (reason, n) in [("queue_full", full), ("export_failed", failed)] {
            out[family].push(counter(&[("reason", reason)], n as f64));
        }
    }
}

fn pool_metrics(pool: &Pool, out: &mut [Vec<Metric>]) {
    let name = pool.name.as_str();
    let stats = pool.stats();
    for (i, n) in stats.responses().iter().enumerate() {
        let code = format!("{}xx", i + 1);
        out[0].push(counter(&[("pool", name), ("code", &code)], *n as f64));
    }
    out[1].push(histogram(&[("pool", name)], &stats.request_duration.snapshot()));
    out[2].push(histogram(&[("pool", name)], &stats.upstream_response.snapshot()));
    out[4].push(counter(&[("pool", name)], stats.retries() as f64));
    out[5].push(gauge(&[("pool", name)], pool.queued() as f64));
    for (reason, n) in stats.refusals() {
        out[6].push(counter(&[("pool", name), ("reason", reason)], n as f64));
    }
    out[15].push(counter(&[("pool", name)], stats.upgrades() as f64));
    if pool.discovers() {
        let (applied, failed) = stats.discoveries();
        out[18].push(counter(&[("pool", name)], applied as f64));
        out[19].push(counter(&[("pool", name)], failed as f64));
    }
}

fn backend_metrics(pool: &str, s: &BackendState, out: &mut [Vec<Metric>]) {
    let addr = s.addr.to_string();
    let labels = [("pool", pool), ("backend", addr.as_str())];
    out[7].push(gauge(&labels, s.inflight() as f64));
    out[8].push(counter(&labels, s.requests.load(Ordering::Relaxed) as f64));
    out[9].push(counter(&labels, s.failures.load(Ordering::Relaxed) as f64));
    out[10].push(gauge(&labels, f64::from(u8::from(s.healthy()))));
    for state in AdminState::ALL {
        let set = f64::from(u8::from(s.admin() == state));
        out[11].push(gauge(&[labels[0], labels[1], ("state", state.name())], set));
    }
    out[12].push(gauge(&labels, s.weight() as f64));
    out[13].push(gauge(&labels, s.latency.get() / 1e9));
    out[17].push(gauge(&labels, f64::from(u8::from(s.ejected()))));
    for (result, n) in [("pass", &s.checks[0]), ("fail", &s.checks[1])] {
        out[14].push(counter(
            &[labels[0], labels[1], ("result", result)],
            n.load(Ordering::Relaxed) as f64,
        ));
    }
}

fn histogram(labels: &[(&str, &str)], snap: &HistogramSnapshot) -> Metric {
    let mut h = Histogram::default();
    h.set_sample_count(snap.count);
    h.set_sample_sum(snap.sum);
    let buckets = snap
        .buckets
        .iter()
        .map(|&(bound, count)| {
            let mut b = Bucket::default();
            b.set_upper_bound(bound);
            b.set_cumulative_count(count);
            b
        })
        .collect();
    h.set_bucket(buckets);
    let mut m = Metric::from_label(label_pairs(labels));
    m.set_histogram(h);
    m
}

/// The `metrics:` listener: `/metrics` and nothing else, without a token (keep it off public
/// interfaces).
pub struct MetricsApp(pub Arc<Metrics>);

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (status, body) = if session.req_header().uri.path() == "/metrics" {
            (200, self.0.render())
        } else {
            (404, "see /metrics\n".to_string())
        };
        Response::builder()
            .status(status)
            .header("content-type", CONTENT_TYPE)
            .header("content-length", body.len())
            .body(body.into_bytes())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Addr, BackendConf, Upstream};

    #[test]
    fn families_render_in_the_text_format() {
        let conf = Upstream::new(vec![BackendConf {
            address: Addr("127.0.0.1:9".parse().unwrap()),
            weight: 2,
            max_connections: None,
            source: Default::default(),
        }]);
        let pool = Arc::new(Pool::from_config("web", &conf).unwrap());
        pool.stats().response(200);
        pool.stats()
            .request_duration
            .observe(std::time::Duration::from_millis(3));
        let mut table = Table::default();
        let named = crate::request::route::Target {
            name: Some("api".into()),
            stats: Arc::new(crate::request::stats::RouteStats::new("api".into())),
            ..crate::request::route::Target::to(Arc::clone(&pool))
        };
        named.stats.response(429);
        let unnamed = Arc::new(crate::request::route::Target::to(Arc::clone(&pool)));
        unnamed.stats.response(200);
        table.router.push(None, Some("/api/"), Arc::new(named));
        // Two rules with one set of counters show once.
        table.router.push(None, Some("/a/"), Arc::clone(&unnamed));
        table.router.push(None, None, unnamed);
        table.pools.insert("web".into(), pool);
        let metrics = Metrics::new(Arc::new(Routing::from_pointee(table)), Traffic::new(), Arc::default());
        let text = metrics.render();
        for line in [
            "# TYPE lb_requests_total counter",
            "lb_requests_total{pool=\"web\",code=\"2xx\"} 1",
            "lb_request_duration_seconds_bucket{pool=\"web\",le=\"0.005\"} 1",
            "lb_request_duration_seconds_count{pool=\"web\"} 1",
            "lb_backend_weight{pool=\"web\",backend=\"127.0.0.1:9\"} 2",
            "lb_backend_admin_state{pool=\"web\",backend=\"127.0.0.1:9\",state=\"ready\"} 1",
            "lb_requests_inflight 0",
            "process_resident_memory_bytes ",
            "lb_route_requests_total{route=\"api\",code=\"4xx\"} 1",
            "lb_route_requests_total{route=\"default\",code=\"2xx\"} 1",
            "lb_trace_spans_dropped_total{reason=\"queue_full\"} ",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        assert_eq!(
            text.matches("lb_route_requests_total{route=\"default\",code=\"2xx\"}")
                .count(),
            1
        );
    }
}
