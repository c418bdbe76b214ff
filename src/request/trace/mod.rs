//! Tracing: a request's place in a W3C trace — continued from its `traceparent`, or started by
//! lb for a share of the requests that come without a sampled one — and, for a sampled request,
//! lb's own span, the parent of the backend's. The span is handed at the request's end to a
//! bounded queue that [`export`] empties in the background over OTLP/HTTP: a request never
//! waits on the receiver, and a full queue drops the span (counted). When lb does not record
//! the request, `traceparent` and `tracestate` go to the backend as they came.

pub mod context;
mod export;

pub use export::start;

use crate::request::pool::Pool;
use context::{TRACEPARENT, TRACESTATE};
use http::{HeaderMap, HeaderValue, Method};
use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// Spans waiting for export, at most (OpenTelemetry's batch processor's default).
pub const QUEUE: usize = 2048;

/// Spans exported; dropped because the queue was full; dropped because their export failed.
static COUNTS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// `(exported, dropped: queue full, dropped: export failed)` so far.
pub fn counts() -> (u64, u64, u64) {
    let [a, b, c] = &COUNTS;
    (
        a.load(Ordering::Relaxed),
        b.load(Ordering::Relaxed),
        c.load(Ordering::Relaxed),
    )
}

/// lb's span of a request: its id and when the request came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// lb's span id.
    pub id: u64,
    /// When the request came (the span's start).
    pub start: SystemTime,
}

/// A request's place in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace {
    /// The trace's id.
    pub trace_id: u128,
    /// The caller's span, from its `traceparent`.
    pub parent: Option<u64>,
    /// lb's own span, when lb records the request.
    pub span: Option<Span>,
}

/// The request path's side of tracing: sampling, the ids, the queue to the exporter.
#[derive(Debug)]
pub struct Tracer {
    sampler: Sampler,
    ids: RandomIdGenerator,
    queue: mpsc::Sender<Finished>,
}

impl Tracer {
    /// The trace of a request with `headers`: the caller's, recorded when its sampled flag is
    /// set (the parent decides, as W3C trace context and OpenTelemetry's parent-based sampler
    /// say); else a new one for the configured share of requests; else none.
    pub fn begin(&self, headers: &HeaderMap) -> Option<Trace> {
        if let Some(parent) = context::incoming(headers) {
            return Some(Trace {
                trace_id: parent.trace_id,
                parent: Some(parent.span_id),
                span: parent.sampled.then(|| self.span()),
            });
        }
        let trace_id = self.ids.new_trace_id();
        let sampled = self
            .sampler
            .should_sample(None, trace_id, "", &SpanKind::Server, &[], &[])
            .decision;
        (sampled == SamplingDecision::RecordAndSample).then(|| Trace {
            trace_id: u128::from_be_bytes(trace_id.to_bytes()),
            parent: None,
            span: Some(self.span()),
        })
    }

    fn span(&self) -> Span {
        Span {
            id: u64::from_be_bytes(self.ids.new_span_id().to_bytes()),
            start: SystemTime::now(),
        }
    }

    /// Queues the span of a finished request for export; a full queue drops it (counted).
    pub fn finish(&self, span: Finished) {
        if self.queue.try_send(span).is_err() {
            COUNTS[1].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The trace fields of the request to the backend: when lb records the request, its span is
/// the backend's parent (and `tracestate`, which belonged to no valid parent, goes when lb
/// started the trace); otherwise nothing changes.
pub fn edit_request(trace: Option<&Trace>, headers: &mut HeaderMap) {
    let Some((trace, span)) = trace.and_then(|t| Some((t, t.span?))) else {
        return;
    };
    headers.insert(TRACEPARENT, context::traceparent(trace.trace_id, span.id, true));
    if trace.parent.is_none() {
        headers.remove(TRACESTATE);
    }
}

/// What lb's span says about a finished request.
pub struct Finished {
    /// The trace and lb's span in it.
    pub trace_id: u128,
    /// The caller's span.
    pub parent: Option<u64>,
    /// lb's span.
    pub span: Span,
    /// When the response ended (or the request failed).
    pub end: SystemTime,
    /// The request's method.
    pub method: Method,
    /// Its path (without the query, which may hold secrets).
    pub path: String,
    /// The route's label (its name, `routes[N]` when it has none), if the request was routed.
    pub route: Option<Arc<str>>,
    /// The pool the request went to.
    pub pool: Option<Arc<Pool>>,
    /// The client (through trusted proxies).
    pub client: Option<IpAddr>,
    /// The last backend tried.
    pub upstream: Option<SocketAddr>,
    /// Attempts made.
    pub tries: usize,
    /// From the span's start to the last attempt's start.
    pub upstream_sent: Option<Duration>,
    /// From the last attempt's start to the backend's response head.
    pub upstream_time: Option<Duration>,
    /// The status sent to the client; 0 when none was.
    pub status: u16,
    /// The request's id.
    pub request_id: Option<HeaderValue>,
    /// How the request failed, if it did: the kind (Pingora's error type) and the whole story.
    pub error: Option<(&'static str, String)>,
}

/// A tracer over `queue`, starting traces for `share` (0 to 1) of the requests.
fn tracer(share: f64, queue: mpsc::Sender<Finished>) -> Tracer {
    Tracer {
        sampler: Sampler::TraceIdRatioBased(share),
        ids: RandomIdGenerator::default(),
        queue,
    }
}

#[cfg(test)]
mod tests;
