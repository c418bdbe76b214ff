//! What lb tells about a proxied request besides its answer, the same on both loops: its trace
//! (begun when the request comes, continued to the backend, lb's span finished at the end) and
//! its route's count in `lb_route_requests_total`. The access log line is [`super::log`]'s.

use super::{Ctx, Lb};
use crate::request::trace::{self, Finished, Trace};
use pingora_core::protocols::http::ServerSession;
use pingora_error::Error;
use std::time::SystemTime;

impl Lb {
    /// The request's place in a trace: with `tracing:`, the tracer's decision; without, the
    /// trace it came with, read only for the access log.
    pub(super) fn begin_trace(&self, downstream: &ServerSession, ctx: &mut Ctx) {
        let headers = &downstream.req_header().headers;
        ctx.trace = match &self.edge.tracer {
            Some(tracer) => tracer.begin(headers),
            None if self.access_log.is_some() => trace::context::incoming(headers).map(|p| Trace {
                trace_id: p.trace_id,
                parent: Some(p.span_id),
                span: None,
            }),
            None => None,
        };
    }

    /// Counts the response for the route and hands lb's span, if it records one, to the
    /// exporter's queue.
    pub(super) fn observe_end(&self, downstream: &ServerSession, e: Option<&Error>, ctx: &Ctx) {
        let status = downstream.response_written().map(|r| r.status.as_u16());
        if let (Some(target), Some(status)) = (&ctx.target, status) {
            target.stats.response(status);
        }
        let (Some(tracer), Some(trace)) = (&self.edge.tracer, &ctx.trace) else {
            return;
        };
        let Some(span) = trace.span else { return };
        let req = downstream.req_header();
        let since_start = |at: std::time::Instant| ctx.started.map(|s| at.saturating_duration_since(s));
        tracer.finish(Finished {
            trace_id: trace.trace_id,
            parent: trace.parent,
            span,
            end: SystemTime::now(),
            method: req.method.clone(),
            path: req.uri.path().to_string(),
            route: ctx.target.as_ref().map(|t| t.stats.shared_label()),
            pool: ctx.pool.clone(),
            client: ctx.client,
            upstream: ctx.tried.last().and_then(|a| a.as_inet().copied()),
            tries: ctx.tried.len(),
            upstream_sent: ctx.attempt_started.and_then(since_start),
            upstream_time: ctx.upstream_time,
            status: status.unwrap_or_else(|| super::log::unanswered_status(e)),
            request_id: ctx.request_id.clone(),
            error: e.map(|e| (e.etype().as_str(), e.to_string())),
        });
    }
}
