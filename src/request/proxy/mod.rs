//! The `ProxyHttp` implementation: each hook is a few lines that hand off to routing, the pool,
//! the forwarding headers or the error responses. Pools and algorithms live elsewhere.

mod forwarded;
mod respond;

use crate::config::Algorithm;
use crate::request::access_log::{AccessLog, Entry};
use crate::request::pool::Pool;
use crate::request::route::Routing;
use crate::request::selection::load::Lease;
use crate::request::traffic::{InflightGuard, Traffic};
use async_trait::async_trait;
use log::info;
use pingora_core::modules::http::HttpModules;
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a failed attempt (or a 5xx answer) counts as in `least_time`'s average, at least: a
/// backend that refuses connections or fails fast must not look fast.
const FAILURE_PENALTY: Duration = Duration::from_secs(1);

/// How long an unread request body is drained after the response so the client connection can
/// be kept (nginx's `lingering_timeout`); after that the connection is closed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The load balancer: a live routing table over pools.
pub struct Lb {
    routing: Arc<Routing>,
    traffic: Arc<Traffic>,
    access_log: Option<Arc<AccessLog>>,
}

impl Lb {
    /// A proxy routing with `routing`, counting its requests in `traffic`, logging to
    /// `access_log`.
    pub fn new(routing: Arc<Routing>, traffic: Arc<Traffic>, access_log: Option<Arc<AccessLog>>) -> Self {
        Lb {
            routing,
            traffic,
            access_log,
        }
    }
}

/// Per-request state.
#[derive(Default)]
pub struct Ctx {
    /// The pool the request was routed to.
    pool: Option<Arc<Pool>>,
    /// Backends tried so far, in order.
    tried: Vec<SocketAddr>,
    /// The slot held on the current attempt's backend; replaced on a retry, dropped at the end.
    lease: Option<Lease>,
    /// When the current attempt started.
    attempt_started: Option<Instant>,
    /// When the request arrived.
    started: Option<Instant>,
    /// From the current attempt's start to the backend's response header.
    upstream_time: Option<Duration>,
    /// Keeps the request counted as in flight until the context is dropped.
    _inflight: Option<InflightGuard>,
}

impl Ctx {
    /// Whether the pool's retry budget allows another attempt.
    fn may_retry(&self) -> bool {
        self.pool.as_ref().is_some_and(|p| self.tried.len() <= p.retries)
    }

    /// Counts the current attempt as failed (and, for `least_time`, as slow).
    fn attempt_failed(&self) {
        let Some(lease) = &self.lease else { return };
        let state = lease.state();
        state.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.pool.as_ref().is_some_and(|p| p.algorithm == Algorithm::LeastTime) {
            let took = self.attempt_started.map(|t| t.elapsed()).unwrap_or_default();
            state.latency.observe(took.max(FAILURE_PENALTY));
        }
    }
}

fn client_ip(session: &Session) -> Option<IpAddr> {
    session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip())
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_09 => "HTTP/0.9",
        _ => "HTTP/1.1",
    }
}

/// Whether `e` means the client closed or reset its connection before the response was complete.
fn client_gone(e: &Error) -> bool {
    use ErrorType::*;
    e.esource() == &ErrorSource::Downstream && matches!(e.etype(), ReadError | WriteError | ConnectionClosed)
}

/// The status the access log shows for a request that got no response: nginx's 499 when the
/// client went away, 0 otherwise.
fn unanswered_status(e: Option<&Error>) -> u16 {
    if e.is_some_and(client_gone) {
        499
    } else {
        0
    }
}

/// What the access log says about the request in `session` (`e`: how it failed, if it did).
fn access_entry<'a>(session: &'a Session, ctx: &'a Ctx, e: Option<&Error>) -> Entry<'a> {
    let req = session.req_header();
    let header = |name| req.headers.get(name).map(|v: &http::HeaderValue| v.as_bytes());
    Entry {
        client: client_ip(session),
        method: req.method.as_str(),
        target: req
            .uri
            .path_and_query()
            .map_or(b"/".as_slice(), |pq| pq.as_str().as_bytes()),
        version: version(req.version),
        status: session
            .response_written()
            .map_or_else(|| unanswered_status(e), |r| r.status.as_u16()),
        bytes: session.as_downstream().body_bytes_sent(),
        referer: header(http::header::REFERER),
        user_agent: header(http::header::USER_AGENT),
        pool: ctx.pool.as_ref().map(|p| p.name.as_str()),
        upstream: ctx.tried.last().and_then(|a| a.as_inet().copied()),
        tries: ctx.tried.len(),
        total: ctx.started.map(|t| t.elapsed()).unwrap_or_default(),
        upstream_time: ctx.upstream_time,
    }
}

/// Why the request's `Host` is unacceptable, if it is (RFC 9112 §3.2: an HTTP/1.1 request
/// carries exactly one; nginx checks the same).
fn bad_host(req: &RequestHeader) -> Option<&'static str> {
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    let missing = hosts.next().is_none();
    if hosts.next().is_some() {
        return Some("more than one Host header");
    }
    (missing && req.version == http::Version::HTTP_11).then_some("HTTP/1.1 request without a Host header")
}

/// The host a request is for: the URI's authority (absolute form, HTTP/2) or the `Host` header.
fn request_host(req: &RequestHeader) -> Option<&str> {
    req.uri
        .host()
        .or_else(|| req.headers.get(http::header::HOST).and_then(|v| v.to_str().ok()))
}

#[async_trait]
impl ProxyHttp for Lb {
    type CTX = Ctx;

    /// No downstream modules: Pingora would add a disabled compression module whose per-request
    /// set-up and filter calls cost ~1k instructions for nothing.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        Ctx {
            _inflight: Some(self.traffic.enter()),
            started: Some(Instant::now()),
            ..Ctx::default()
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // Keep the client connection when a response starts before the request body has been
        // read (an echoing or early-answering backend), as nginx does; Pingora would close it.
        let downstream = session.as_downstream_mut();
        downstream.set_close_on_response_before_downstream_finish(false);
        downstream.set_total_drain_timeout(Some(DRAIN_TIMEOUT));
        if self.traffic.draining() {
            // Tell the client to reconnect (to the new process) rather than reuse this one.
            downstream.set_keepalive(None);
        }
        let req = session.req_header();
        if let Some(why) = bad_host(req) {
            session.as_downstream_mut().set_keepalive(None);
            respond::send(session, 400, why).await?;
            return Ok(true);
        }
        ctx.pool = self
            .routing
            .load()
            .router
            .find(request_host(req), req.uri.path())
            .cloned();
        if ctx.pool.is_some() {
            return Ok(false);
        }
        respond::send(session, 404, "no route matches this host and path").await?;
        Ok(true)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let pool = ctx
            .pool
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "request has no pool"))?;
        // A retry gives the previous backend's slot back before taking another.
        ctx.lease = None;
        if !ctx.tried.is_empty() {
            pool.stats().retry();
        }
        ctx.upstream_time = None;
        let client = client_ip(session);
        let key = pool.key(session.req_header(), client);
        let picked = match pool.pick(key.as_bytes(), &ctx.tried).await {
            Ok(picked) => picked,
            Err(refused) => {
                let why = format!("pool {}: {refused}", pool.name);
                return Err(Error::explain(ErrorType::HTTPStatus(503), why));
            }
        };
        let peer = pool
            .peer(&picked.backend)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "backend is not an IP address"))?;
        ctx.tried.push(picked.backend.addr);
        ctx.lease = Some(picked.lease);
        ctx.attempt_started = Some(Instant::now());
        Ok(peer)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(pool), Some(lease), Some(started)) = (&ctx.pool, &ctx.lease, ctx.attempt_started) {
            let took = started.elapsed();
            ctx.upstream_time = Some(took);
            pool.stats().upstream_response.observe(took);
            // A quick 5xx is no sign of a good backend: for least_time it counts as a failed
            // attempt.
            let failed = upstream_response.status.is_server_error() && pool.algorithm == Algorithm::LeastTime;
            lease
                .state()
                .latency
                .observe(if failed { took.max(FAILURE_PENALTY) } else { took });
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(pool), Some(lease)) = (&ctx.pool, &ctx.lease) {
            if let Some(cookie) = pool.sticky_cookie(session.req_header(), lease.state()) {
                upstream_response.append_header(http::header::SET_COOKIE, cookie)?;
            }
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut Ctx,
    ) -> Result<()> {
        forwarded::set_headers(upstream_request, client_ip(session), "http")
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.attempt_failed();
        if ctx.may_retry() {
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        // A client that went away is not the backend's failure.
        if e.esource() == &ErrorSource::Upstream {
            ctx.attempt_failed();
        }
        let mut e = e.more_context(format!("Peer: {peer}"));
        // Pingora's policy (retry only idempotent requests whose body is still buffered, and
        // only after a reused connection failed), capped by the pool's retry budget.
        let replayable = session.req_header().method.is_idempotent() && !session.as_ref().retry_buffer_truncated();
        if replayable && ctx.may_retry() {
            e.retry.decide_reuse(client_reused);
        } else {
            e.set_retry(false);
        }
        e
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        if let Some(pool) = &ctx.pool {
            if let Some(resp) = session.response_written() {
                pool.stats().response(resp.status.as_u16());
            }
            if let Some(started) = ctx.started {
                pool.stats().request_duration.observe(started.elapsed());
            }
        }
        if let Some(log) = &self.access_log {
            log.record(&access_entry(session, ctx, e));
        }
    }

    /// Failures on the client's side (it went away, timed out, sent a bad body) are routine, and
    /// nginx logs them at `info`: one `info` line instead of Pingora's `error` line. Backend and
    /// internal failures keep Pingora's error line.
    fn suppress_error_log(&self, session: &Session, ctx: &Ctx, e: &Error) -> bool {
        if e.esource() != &ErrorSource::Downstream {
            return false;
        }
        info!("client side: {e}, {}", self.request_summary(session, ctx));
        true
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> FailToProxy {
        let code = respond::status_for(e);
        if code > 0 {
            respond::send_error(session, code).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}
