//! The `ProxyHttp` implementation: each hook is a few lines that hand off to routing, the pool,
//! the edge policies, the forwarding headers or the error responses. Pools and algorithms live
//! elsewhere; so does the client connection itself (`front`).

mod forwarded;
mod log;
mod policy;
mod respond;

use crate::config::{Algorithm, Cidr};
use crate::request::access_log::AccessLog;
use crate::request::front::conn;
use crate::request::pool::Pool;
use crate::request::route::{Routing, Target};
use crate::request::selection::load::Lease;
use crate::request::traffic::{InflightGuard, Traffic};
use async_trait::async_trait;
use bytes::Bytes;
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

/// Settings of the proxy that come from outside the pools.
#[derive(Debug, Clone, Default)]
pub struct Edge {
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<Cidr>,
    /// Largest request body; `None` for no limit.
    pub max_body: Option<u64>,
}

/// The load balancer: a live routing table over pools.
#[derive(Clone)]
pub struct Lb {
    routing: Arc<Routing>,
    traffic: Arc<Traffic>,
    access_log: Option<Arc<AccessLog>>,
    edge: Arc<Edge>,
}

impl Lb {
    /// A proxy routing with `routing`, counting its requests in `traffic`, logging to
    /// `access_log`, with the `edge` settings.
    pub fn new(routing: Arc<Routing>, traffic: Arc<Traffic>, access_log: Option<Arc<AccessLog>>, edge: Edge) -> Self {
        Lb {
            routing,
            traffic,
            access_log,
            edge: Arc::new(edge),
        }
    }
}

/// Per-request state.
#[derive(Default)]
pub struct Ctx {
    /// The route's target.
    target: Option<Arc<Target>>,
    /// The pool the request was routed to.
    pool: Option<Arc<Pool>>,
    /// The client (through trusted proxies).
    client: Option<IpAddr>,
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
    /// Request body bytes received so far.
    body_bytes: u64,
    /// Whether response writes were switched to go out at once.
    streaming: bool,
    /// Keeps the request counted as in flight until the context is dropped.
    _inflight: Option<InflightGuard>,
}

impl Ctx {
    /// Whether another attempt is allowed: within the pool's retries and its retry budget.
    fn may_retry(&self) -> bool {
        self.pool
            .as_ref()
            .is_some_and(|p| self.tried.len() <= p.retries && p.try_retry())
    }

    /// Counts the current attempt as failed: passive health and, for `least_time`, a slow one.
    fn attempt_failed(&self) {
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
}

fn peer_ip(session: &Session) -> Option<IpAddr> {
    session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip())
}

fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

impl Lb {
    /// Answers what is answered without a backend (HTTPS redirect, rate limit, body too large,
    /// redirect mode); true when it did.
    async fn answer_at_edge(&self, session: &mut Session, ctx: &mut Ctx, target: &Target) -> Result<bool> {
        let req = session.req_header();
        if let (Some(status), false) = (target.https_redirect, is_tls(session)) {
            let port = self.routing.load().https_port;
            let location = policy::https_location(req, port).unwrap_or_else(|| "https:///".into());
            respond::redirect(session, status, &location).await?;
            return Ok(true);
        }
        if let Some(limit) = &target.rate_limit {
            let mut buf = [0u8; 16];
            let key = policy::rate_key(&limit.key, req, ctx.client, &mut buf);
            if let Err(wait) = limit
                .limiter
                .check(key, crate::request::selection::load::now_ms() * 1_000_000)
            {
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                respond::too_many(session, seconds.max(1)).await?;
                return Ok(true);
            }
        }
        let declared = req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        if declared
            .zip(self.edge.max_body)
            .is_some_and(|(n, max): (u64, u64)| n > max)
        {
            session.as_downstream_mut().set_keepalive(None);
            respond::send(session, 413, "the request body is larger than clients.max_body_size").await?;
            return Ok(true);
        }
        if let Some(status) = target.redirect {
            return self.redirect_to_backend(session, ctx, &target.pool, status).await;
        }
        Ok(false)
    }

    /// Redirect mode: picks a backend as for proxying and sends the client there.
    async fn redirect_to_backend(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        pool: &Pool,
        status: u16,
    ) -> Result<bool> {
        let key = pool.key(session.req_header(), ctx.client);
        match pool.pick(key.as_bytes(), &[]).await {
            Ok(picked) => {
                let addr = picked.lease.state().addr;
                let location = policy::backend_location(session.req_header(), addr, pool.backend_tls());
                drop(picked);
                respond::redirect(session, status, &location).await?;
            }
            Err(refused) => respond::send(session, 503, &refused.to_string()).await?,
        }
        Ok(true)
    }
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
        // Tell the client to reconnect (to the new process when draining) rather than reuse
        // this connection, also when it reached clients.keepalive_requests.
        if self.traffic.draining() || conn::of(downstream).is_some_and(|c| c.is_last()) {
            downstream.set_keepalive(None);
        }
        let req = session.req_header();
        ctx.client = forwarded::real_client(req, peer_ip(session), &self.edge.trusted_proxies);
        if let Some(why) = policy::bad_host(req) {
            session.as_downstream_mut().set_keepalive(None);
            respond::send(session, 400, why).await?;
            return Ok(true);
        }
        if forwarded::max_forwards(req) == Some(0) {
            // The last hop answers itself (RFC 9110 §7.6.2).
            respond::final_recipient(session).await?;
            return Ok(true);
        }
        let target = self
            .routing
            .load()
            .router
            .find(policy::request_host(req), req.uri.path())
            .cloned();
        let Some(target) = target else {
            respond::send(session, 404, "no route matches this host and path").await?;
            return Ok(true);
        };
        ctx.pool = Some(Arc::clone(&target.pool));
        let answered = self.answer_at_edge(session, ctx, &target).await?;
        ctx.target = Some(target);
        Ok(answered)
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.body_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
        if self.edge.max_body.is_some_and(|max| ctx.body_bytes > max) && !session.as_downstream().was_upgraded() {
            session.as_downstream_mut().set_keepalive(None);
            return Err(Error::explain(
                ErrorType::HTTPStatus(413),
                "the request body is larger than clients.max_body_size",
            ));
        }
        Ok(())
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let pool = ctx
            .pool
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "request has no pool"))?;
        // A retry gives the previous backend's slot back before taking another.
        ctx.lease = None;
        ctx.upstream_time = None;
        if ctx.tried.is_empty() {
            pool.count_request();
        } else {
            pool.stats().retry();
        }
        let left = pool
            .total_timeout()
            .map(|t| t.saturating_sub(ctx.started.map(|s| s.elapsed()).unwrap_or_default()));
        if left.is_some_and(|l| l.is_zero()) {
            return Err(Error::explain(ErrorType::HTTPStatus(504), "timeouts.total ran out"));
        }
        let key = pool.key(session.req_header(), ctx.client);
        let picked = match pool.pick(key.as_bytes(), &ctx.tried).await {
            Ok(picked) => picked,
            Err(refused) => {
                let why = format!("pool {}: {refused}", pool.name);
                return Err(Error::explain(ErrorType::HTTPStatus(503), why));
            }
        };
        let upgrade = session.as_downstream().is_upgrade_req();
        let peer = pool
            .peer(&picked.backend, upgrade, left)
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
        let (Some(pool), Some(lease), Some(started)) = (&ctx.pool, &ctx.lease, ctx.attempt_started) else {
            return Ok(());
        };
        let took = started.elapsed();
        ctx.upstream_time = Some(took);
        pool.stats().upstream_response.observe(took);
        // What HAProxy's layer-7 observation counts as a failed answer (501 and 505 are about
        // the request).
        let failed = matches!(upstream_response.status.as_u16(), 500 | 502 | 503 | 504);
        if failed {
            pool.attempt_failed(lease.state());
        } else {
            pool.attempt_succeeded(lease.state());
        }
        // A quick 5xx is no sign of a good backend: for least_time it counts as a slow attempt.
        let slow = failed && pool.algorithm == Algorithm::LeastTime;
        lease
            .state()
            .latency
            .observe(if slow { took.max(FAILURE_PENALTY) } else { took });
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        policy::strip_hop_by_hop(upstream_response);
        policy::single_content_length(upstream_response)?;
        if upstream_response.status == http::StatusCode::SWITCHING_PROTOCOLS {
            if let Some(pool) = &ctx.pool {
                pool.stats().upgraded();
                let idle = Some(pool.tunnel_timeout());
                let downstream = session.as_downstream_mut();
                downstream.set_read_timeout(idle);
                downstream.set_write_timeout(idle);
            }
            if let Some(conn) = conn::of(session.as_downstream()) {
                conn.set_tunnel();
            }
        }
        if let (Some(pool), Some(lease)) = (&ctx.pool, &ctx.lease) {
            if let Some(cookie) = pool.sticky_cookie(session.req_header(), lease.state()) {
                upstream_response.append_header(http::header::SET_COOKIE, cookie)?;
            }
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        // More is coming: what there is goes to the client now, not when the body is complete.
        if !end_of_stream && !ctx.streaming {
            ctx.streaming = true;
            if let Some(conn) = conn::of(session.as_downstream()) {
                conn.set_flush_each(true);
            }
        }
        Ok(None)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let scheme = if is_tls(session) { "https" } else { "http" };
        forwarded::ensure_host(upstream_request, ctx.tried.last().and_then(|a| a.as_inet().copied()))?;
        forwarded::set_headers(upstream_request, peer_ip(session), scheme)?;
        forwarded::add_via(upstream_request)?;
        forwarded::decrement_max_forwards(upstream_request)
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
        // only after a reused connection failed), capped by the pool's retries and budget.
        let replayable = session.req_header().method.is_idempotent() && !session.as_ref().retry_buffer_truncated();
        if replayable && client_reused && ctx.may_retry() {
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
            log.record(&log::entry(session, ctx, e));
        }
    }

    /// Failures on the client's side (it went away, timed out, sent a bad body) are routine, and
    /// nginx logs them at `info`: one `info` line instead of Pingora's `error` line. Backend and
    /// internal failures keep Pingora's error line.
    fn suppress_error_log(&self, session: &Session, ctx: &Ctx, e: &Error) -> bool {
        if e.esource() != &ErrorSource::Downstream {
            return false;
        }
        ::log::info!("client side: {e}, {}", self.request_summary(session, ctx));
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
