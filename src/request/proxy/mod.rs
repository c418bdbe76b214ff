//! The proxy: the semantics of a proxied request, shared by Pingora's loop (the `ProxyHttp`
//! hooks in [`hooks`]) and lb's own ([`direct`]): admission, picking and retrying, the headers
//! both ways, passive health, the error answers, the log. Pools and algorithms live elsewhere;
//! so does the client connection itself (`front`).

mod admit;
mod ctx;
pub mod direct;
mod edits;
mod encode;
mod forwarded;
mod hooks;
mod log;
mod mirror;
mod observe;
mod policy;
mod respond;
mod upstream_response;
mod upstreams;

pub use ctx::Ctx;

use crate::config::Cidr;
use crate::request::access_log::AccessLog;
use crate::request::front::conn;
use crate::request::front::hostile::{self, Reason};
use crate::request::route::{Routing, Target};
use crate::request::traffic::Traffic;
use http::request::Parts;
use pingora_core::protocols::http::ServerSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a failed attempt (or a 5xx answer) counts as in `least_time`'s average, at least: a
/// backend that refuses connections or fails fast must not look fast.
const FAILURE_PENALTY: Duration = Duration::from_secs(1);

/// How long an unread request body is drained after the response so the client connection can
/// be kept (nginx's `lingering_timeout`); after that the connection is closed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What a 408 for a body that drips says.
const BODY_TOO_SLOW: &str = "the request body arrives slower than clients.body_min_rate";

/// Settings of the proxy that come from outside the pools.
#[derive(Debug, Clone, Default)]
pub struct Edge {
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<Cidr>,
    /// Largest request body; `None` for no limit.
    pub max_body: Option<u64>,
    /// Whether lb's own request loop serves the requests it can ([`direct`]).
    pub direct: bool,
    /// Idle backend connections kept by lb's own request loop, at most.
    pub upstream_keepalive: usize,
    /// The request id's header and when an incoming one is kept; `None`: no ids.
    pub request_id: Option<(http::HeaderName, crate::config::KeepId)>,
    /// Sampling and the span queue, with `tracing:`.
    pub tracer: Option<Arc<crate::request::trace::Tracer>>,
    /// Each write to the client, at most (`clients.send_timeout`); zero: no limit.
    pub send_timeout: Duration,
    /// Slowest request body in bytes per second beyond `body_timeout`; 0: no such limit.
    pub body_min_rate: u64,
    /// `clients.body_timeout`, the time a body has before `body_min_rate` counts.
    pub body_timeout: Duration,
}

/// The load balancer: a live routing table over pools.
#[derive(Clone)]
pub struct Lb {
    routing: Arc<Routing>,
    traffic: Arc<Traffic>,
    access_log: Option<Arc<AccessLog>>,
    edge: Arc<Edge>,
    direct: Arc<direct::DirectParts>,
}

impl Lb {
    /// A proxy routing with `routing`, counting its requests in `traffic`, logging to
    /// `access_log`, with the `edge` settings.
    pub fn new(routing: Arc<Routing>, traffic: Arc<Traffic>, access_log: Option<Arc<AccessLog>>, edge: Edge) -> Self {
        Lb {
            routing,
            traffic,
            access_log,
            direct: Arc::new(direct::DirectParts::new(edge.upstream_keepalive)),
            edge: Arc::new(edge),
        }
    }
}

impl Lb {
    /// Whether lb's own request loop serves the requests it can.
    pub fn direct_enabled(&self) -> bool {
        self.edge.direct
    }
}

/// How an attempt failed, for [`Lb::try_again`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// The connection to the backend could not be made.
    Connect,
    /// The exchange failed on a connection that was `reused` from the pool, after the response
    /// to the client began (`answered`) or before.
    Exchange { reused: bool, answered: bool },
}

impl Lb {
    /// [`Lb::response_done`] on Pingora's loop, which owns the backend connection: one that
    /// must not be kept gets its request stream ended, so that Pingora's next write of the
    /// request body fails and Pingora closes it instead of pooling it.
    fn pingora_response_done(&self, session: &mut Session, ctx: &mut Ctx) {
        self.response_done(session.as_downstream_mut(), ctx);
        if ctx.closes_upstream() {
            if let Some(fd) = ctx.upstream_fd.take() {
                end_request_stream(fd);
            }
        }
    }
}

/// Ends the request stream of Pingora's backend connection `fd` (its `FIN`): the backend learns
/// that no more of the request comes, and the next request body write fails, so that Pingora
/// closes the connection instead of pooling it. Pingora's loop owns the connection; its hooks
/// only see the socket.
fn end_request_stream(fd: std::os::unix::io::RawFd) {
    if let Err(e) = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Write) {
        ::log::debug!("could not end the request stream: {e}");
    }
}

fn peer_ip(downstream: &ServerSession) -> Option<IpAddr> {
    downstream.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip())
}

fn is_tls(downstream: &ServerSession) -> bool {
    downstream.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// The semantics of a proxied request, shared by Pingora's `ProxyHttp` path (the hooks below)
/// and lb's own request loop ([`direct`]): each takes the client's session, never the path's.
impl Lb {
    /// Sets up the client session for a request: an early response keeps the connection (as
    /// nginx), an unread body is drained for a while, and a draining server or the
    /// connection's last request says `Connection: close`.
    fn prepare(&self, downstream: &mut ServerSession) {
        downstream.set_close_on_response_before_downstream_finish(false);
        downstream.set_total_drain_timeout(Some(DRAIN_TIMEOUT));
        if !self.edge.send_timeout.is_zero() {
            downstream.set_write_timeout(Some(self.edge.send_timeout));
        }
        if self.traffic.draining() || conn::of(downstream).is_some_and(|c| c.is_last()) {
            downstream.set_keepalive(None);
        }
    }

    /// The route of `req`, if one matches.
    fn route(&self, req: &RequestHeader) -> Option<Arc<Target>> {
        self.routing.load().router.find(req).cloned()
    }

    /// Picks the backend of the next attempt and its peer; errors carry the status to answer.
    async fn next_peer(&self, req: &RequestHeader, upgrade: bool, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
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
        let key = pool.key(req, ctx.client);
        let picked = match pool.pick(key.as_bytes(), &ctx.tried).await {
            Ok(picked) => picked,
            Err(refused) => {
                let why = format!("pool {}: {}", pool.name, pool.refusal(refused));
                return Err(Error::explain(ErrorType::HTTPStatus(503), why));
            }
        };
        let peer = pool
            .peer(&picked.backend, upgrade, left)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "backend is not an IP address"))?;
        ctx.tried.push(picked.backend.addr);
        ctx.lease = Some(picked.lease);
        ctx.attempt_begins();
        ctx.attempt_started = Some(Instant::now());
        Ok(peer)
    }

    /// The request to the backend: the parts of the client's request (without Pingora's
    /// header-case map, see [`forwarded::without_case`]) with the forwarding headers.
    fn upstream_request(
        &self,
        downstream: &ServerSession,
        mut upstream_request: Parts,
        ctx: &mut Ctx,
    ) -> Result<RequestHeader> {
        let scheme = if is_tls(downstream) { "https" } else { "http" };
        let req = &mut upstream_request;
        forwarded::ensure_host(req, ctx.tried.last().and_then(|a| a.as_inet().copied()))?;
        forwarded::set_headers(req, peer_ip(downstream), scheme)?;
        forwarded::add_via(req)?;
        forwarded::decrement_max_forwards(req)?;
        self.edit_request(downstream, req, ctx)?;
        let head = RequestHeader::from(upstream_request);
        mirror::begin(&head, ctx);
        Ok(head)
    }

    /// Checks a response head from the backend ([`upstream_response::refusal`]: a broken one is
    /// the backend's error, a 502) and counts it: an informational one against the limit; a final
    /// one's time, a 5xx as a failed attempt (a success is counted when the response is whole,
    /// in [`Lb::record`]).
    fn upstream_response(&self, upstream_response: &ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        if let Some(why) = upstream_response::refusal(upstream_response, ctx.informational) {
            return Err(Error::explain(ErrorType::InvalidHTTPHeader, why).into_up());
        }
        let status = upstream_response.status.as_u16();
        if upstream_response.status.is_informational() && status != 101 {
            ctx.informational += 1;
            return Ok(());
        }
        mirror::capture_head(upstream_response, ctx);
        let (Some(pool), Some(lease), Some(started)) = (&ctx.pool, &ctx.lease, ctx.attempt_started) else {
            return Ok(());
        };
        let took = started.elapsed();
        ctx.upstream_time = Some(took);
        pool.stats().upstream_response.observe(took);
        // What HAProxy's layer-7 observation counts as a failed answer (501 and 505 are about
        // the request).
        if matches!(status, 500 | 502 | 503 | 504) {
            // A quick 5xx is no sign of a good backend: for least_time it counts as a slow
            // attempt (in `attempt_failed`).
            ctx.attempt_failed();
        } else {
            lease.state().latency.observe(took);
        }
        Ok(())
    }

    /// The response as the client gets it: no hop-by-hop fields, one `Content-Length`, the
    /// sticky and split cookies, the route's response rules, then its compression; a `101`
    /// switches the connection to a tunnel (and is a bad response to a request that asked for no
    /// upgrade).
    fn edit_response(
        &self,
        downstream: &mut ServerSession,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let switching = upstream_response.status == http::StatusCode::SWITCHING_PROTOCOLS;
        if switching && !downstream.is_upgrade_req() {
            // RFC 9110 §15.2.2: a server switches only to a protocol the client asked for.
            return Err(Error::explain(ErrorType::InvalidHTTPHeader, "101 to a request without Upgrade").into_up());
        }
        policy::strip_hop_by_hop(upstream_response);
        policy::single_content_length(upstream_response)?;
        if switching {
            if let Some(pool) = &ctx.pool {
                pool.stats().upgraded();
                let idle = Some(pool.tunnel_timeout());
                downstream.set_read_timeout(idle);
                downstream.set_write_timeout(idle);
            }
            if let Some(conn) = conn::of(downstream) {
                conn.set_tunnel();
            }
        }
        if let (Some(pool), Some(lease)) = (&ctx.pool, &ctx.lease) {
            if let Some(cookie) = pool.sticky_cookie(downstream.req_header(), lease.state()) {
                upstream_response.append_header(http::header::SET_COOKIE, cookie)?;
            }
        }
        if let Some(cookie) = &ctx.split_cookie {
            upstream_response.append_header(http::header::SET_COOKIE, cookie)?;
        }
        self.edit_response_rules(downstream, upstream_response, ctx)?;
        self.compress_head(downstream, upstream_response, ctx)
    }

    /// The backend's response is whole: if the client's request body is not all read by now, the
    /// backend answered without it (an early `413`, a `200` that ignores it), and the connection
    /// must not carry another request, since what it did not read would be taken for one. A
    /// backend that streams its answer while it reads (an echo) ends after the request does.
    fn response_done(&self, downstream: &mut ServerSession, ctx: &mut Ctx) {
        ctx.early = !downstream.is_body_done();
    }

    /// A response body that comes in more than one piece goes to the client as it comes.
    fn stream_body(&self, downstream: &ServerSession, end_of_stream: bool, ctx: &mut Ctx) {
        if !end_of_stream && !ctx.streaming {
            ctx.streaming = true;
            if let Some(conn) = conn::of(downstream) {
                conn.set_flush_each(true);
            }
        }
    }

    /// The one retry decision of both loops: whether the request gets another attempt after
    /// `e`. The failed attempt is counted first (passive health, `least_time`) when it was the
    /// backend's side that failed. A failed connect is tried again within the pool's retries and
    /// budget; a failure after the request went out only for an idempotent request whose body is
    /// still buffered, after a reused connection failed (Pingora's policy), and never once the
    /// response has started. A retry is logged at `warn`, as Pingora does.
    fn try_again(&self, downstream: &ServerSession, e: &Error, ctx: &mut Ctx, attempt: Attempt) -> bool {
        let upstream = e.esource() == &ErrorSource::Upstream;
        // A client that went away is not the backend's failure.
        if upstream || attempt == Attempt::Connect {
            ctx.attempt_failed();
        }
        let retry = match attempt {
            Attempt::Connect => ctx.may_retry(),
            Attempt::Exchange { reused, answered } => {
                let replayable = downstream.req_header().method.is_idempotent() && !downstream.retry_buffer_truncated();
                upstream && !answered && replayable && reused && ctx.may_retry()
            }
        };
        if retry {
            ::log::warn!(
                "Fail to proxy: {e}, tries: {}, retry: true, {}",
                ctx.tried.len(),
                downstream.request_summary()
            );
        }
        retry
    }

    /// Counts the finished request, logs its failure (if it failed) and writes its access log
    /// line: the end of every request on both loops. A failure is logged once, at `error`,
    /// naming the last backend tried; so is a response that went to the client whole but whose
    /// backend is distrusted (counted as that backend's failure).
    fn record(&self, downstream: &ServerSession, e: Option<&Error>, ctx: &mut Ctx) {
        let backend = ctx.tried.last().map_or_else(|| "-".to_string(), |a| a.to_string());
        match (e, ctx.distrust) {
            (Some(e), _) => {
                if !self.client_side(downstream, e) {
                    ::log::error!(
                        "Fail to proxy: {e}, status: {}, tries: {}, backend: {backend}, {}",
                        respond::status_for(e),
                        ctx.tried.len(),
                        downstream.request_summary()
                    );
                }
            }
            (None, Some(why)) => {
                ::log::error!(
                    "Distrusted response: {why}, connection closed, status: {}, tries: {}, backend: {backend}, {}",
                    downstream.response_written().map_or(0, |r| r.status.as_u16()),
                    ctx.tried.len(),
                    downstream.request_summary()
                );
                ctx.attempt_failed();
            }
            (None, None) => ctx.attempt_succeeded(),
        }
        if let Some(pool) = &ctx.pool {
            let status = downstream.response_written().map(|r| r.status.as_u16());
            if let Some(status) = status {
                pool.stats().response(status);
            }
            if let Some(started) = ctx.started {
                pool.stats().request_duration.observe(started.elapsed());
            }
            if let Some(live) = ctx.target.as_ref().and_then(|t| t.rollout.as_ref()) {
                let status = status.unwrap_or_else(|| e.map_or(0, respond::status_for));
                let took = ctx.started.map(|s| s.elapsed()).unwrap_or_default();
                live.record(&pool.name, status, took);
            }
        }
        mirror::finish(e.is_some(), ctx);
        self.observe_end(downstream, e, ctx);
        if let Some(log) = &self.access_log {
            log.record(&log::entry(downstream, ctx, e));
        }
    }

    /// Whether the request body so far (`ctx.body_bytes` since the request came) is slower
    /// than `clients.body_min_rate` allows: the whole body has `body_timeout` plus a second for
    /// every `body_min_rate` bytes (Apache's `mod_reqtimeout`). gRPC streams are long-lived by
    /// design and left alone.
    fn body_too_slow(&self, req: &RequestHeader, ctx: &Ctx) -> bool {
        let (rate, Some(started)) = (self.edge.body_min_rate, ctx.started) else {
            return false;
        };
        let grpc = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if rate == 0 || grpc {
            return false;
        }
        let earned = Duration::from_millis(ctx.body_bytes.saturating_mul(1000) / rate);
        started.elapsed() > self.edge.body_timeout.saturating_add(earned)
    }

    /// Whether `e` is logged at `info` (a failure on the client's side, as nginx) rather than
    /// as Pingora's error line; logs it if so.
    fn client_side(&self, downstream: &ServerSession, e: &Error) -> bool {
        if e.esource() != &ErrorSource::Downstream {
            return false;
        }
        if e.etype() == &ErrorType::WriteTimedout {
            hostile::count(Reason::SendTimeout);
        }
        ::log::info!("client side: {e}, {}", downstream.request_summary());
        true
    }
}
