//! A request's state while it is proxied (`Ctx`): its route and pool, the client, the backends
//! tried and the slot held on the current one, timings, and the current attempt's standing in
//! passive health, counted once whichever way it ends.

use super::FAILURE_PENALTY;
use crate::config::Algorithm;
use crate::request::compress::Encoder;
use crate::request::pool::Pool;
use crate::request::route::Routed;
use crate::request::route::Target;
use crate::request::selection::load::Lease;
use crate::request::traffic::InflightGuard;
use pingora_core::protocols::l4::socket::SocketAddr;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Per-request state.
#[derive(Default)]
pub struct Ctx {
    /// The route's target.
    pub(super) target: Option<Arc<Target>>,
    /// The pool the request was routed to (with a split, the side chosen).
    pub(super) pool: Option<Arc<Pool>>,
    /// The split cookie the response sets, if the route's split chose a side anew.
    pub(super) split_cookie: Option<String>,
    /// The client (through trusted proxies).
    pub(super) client: Option<IpAddr>,
    /// Backends tried so far, in order.
    pub(super) tried: Vec<SocketAddr>,
    /// The slot held on the current attempt's backend; replaced on a retry, dropped at the end.
    pub(super) lease: Option<Lease>,
    /// When the current attempt started.
    pub(super) attempt_started: Option<Instant>,
    /// When the request arrived.
    pub(super) started: Option<Instant>,
    /// From the current attempt's start to the backend's response header.
    pub(super) upstream_time: Option<Duration>,
    /// Request body bytes received so far.
    pub(super) body_bytes: u64,
    /// Informational responses the current attempt got so far.
    pub(super) informational: u32,
    /// Whether the current attempt was counted in passive health already.
    pub(super) counted: bool,
    /// Why the current attempt's backend connection is not trusted with another request although
    /// its response went to the client (counted as the backend's failure, logged).
    pub(super) distrust: Option<&'static str>,
    /// Whether the backend gave its final answer before the client's request body was all read:
    /// what it did not read must not be taken for the next request, so the connection is closed.
    pub(super) early: bool,
    /// The current attempt's backend socket on Pingora's loop (from `connected_to_upstream`).
    pub(super) upstream_fd: Option<std::os::unix::io::RawFd>,
    /// The request's id (`X-Request-Id`), once given.
    pub(super) request_id: Option<http::HeaderValue>,
    /// The request's trace, when it has one (see [`super::observe`]).
    pub(super) trace: Option<crate::request::trace::Trace>,
    /// Whether response writes were switched to go out at once.
    pub(super) streaming: bool,
    /// The mirror's copy: sent (or given up) already, or waiting for the body.
    pub(super) mirror: super::mirror::Copy,
    /// The rollout's copy to the candidate in the shadow phase: sent already, or waiting.
    pub(super) shadow: super::mirror::Copy,
    /// The baseline's answer as it passes, when the shadow compares this request.
    pub(super) capture: Option<super::mirror::Capture>,
    /// The response body's compressor, when the route compresses this response.
    pub(super) encoder: Option<Encoder>,
    /// Keeps the request counted as in flight until the context is dropped.
    pub(super) _inflight: Option<InflightGuard>,
}

impl Ctx {
    /// The request goes to (or was answered on) the route and pool of `routed`.
    pub(super) fn routed(&mut self, routed: Routed) {
        self.pool = Some(routed.pool);
        self.split_cookie = routed.set_cookie;
        self.target = Some(routed.target);
    }

    /// Whether another attempt is allowed: within the pool's retries and its retry budget.
    pub(super) fn may_retry(&self) -> bool {
        self.pool
            .as_ref()
            .is_some_and(|p| self.tried.len() <= p.retries && p.try_retry())
    }

    /// A new attempt starts: nothing of the previous one's response carries over.
    pub(super) fn attempt_begins(&mut self) {
        self.informational = 0;
        self.counted = false;
        self.distrust = None;
        self.early = false;
        self.upstream_fd = None;
    }

    /// Whether the current attempt's backend connection must be closed after its response rather
    /// than kept for another request: the same rule on both loops.
    pub(super) fn closes_upstream(&self) -> bool {
        self.distrust.is_some() || self.early
    }

    /// Counts the current attempt as failed, once: passive health and, for `least_time`, a slow
    /// one.
    pub(super) fn attempt_failed(&mut self) {
        if std::mem::replace(&mut self.counted, true) {
            return;
        }
        let (Some(lease), Some(pool)) = (&self.lease, &self.pool) else {
            return;
        };
        let state = lease.state();
        pool.attempt_failed(state);
        if pool.algorithm == Algorithm::LeastTime {
            let took = self.attempt_started.map(|t| t.elapsed()).unwrap_or_default();
            state.latency.observe(took.max(FAILURE_PENALTY));
        }
    }

    /// Counts the current attempt as a success, unless it was counted already: at the end of a
    /// whole response, so that a response cut short or distrusted after a good head still
    /// counts as a failure in a row.
    pub(super) fn attempt_succeeded(&mut self) {
        if std::mem::replace(&mut self.counted, true) {
            return;
        }
        if let (Some(lease), Some(pool)) = (&self.lease, &self.pool) {
            pool.attempt_succeeded(lease.state());
        }
    }
}
