//! The `ProxyHttp` hooks Pingora's loop calls: each a few lines handing off to the semantics in
//! [`super`], which lb's own loop ([`super::direct`]) shares.

use super::admit::{Admission, Loop};
use super::{forwarded, hostile, mirror, peer_ip, policy, respond, Attempt, Ctx, Lb, Reason, BODY_TOO_SLOW};
use crate::request::front::TOO_LARGE;
use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::modules::http::HttpModules;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, ProxyWarnLogContext, Session};
use std::time::{Duration, Instant};

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
        self.prepare(session.as_downstream_mut());
        let req = session.req_header();
        ctx.client = forwarded::real_client(req, peer_ip(session.as_downstream()), &self.edge.trusted_proxies);
        self.identify(session.as_downstream(), ctx);
        match self.admit(session.as_downstream(), ctx.client, Loop::Pingora) {
            Admission::Proxy(target) => {
                ctx.routed(target);
                Ok(false)
            }
            Admission::Answer { answer, target } => {
                if let Some(target) = target {
                    ctx.routed(target);
                }
                self.answer(session.as_downstream_mut(), ctx, answer).await?;
                Ok(true)
            }
            Admission::ToPingora => Err(Error::explain(
                ErrorType::InternalError,
                "admission sent Pingora's loop to itself",
            )),
        }
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.body_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
        mirror::body(body.as_ref(), end_of_stream, ctx);
        if session.as_downstream().was_upgraded() {
            return Ok(());
        }
        if self.edge.max_body.is_some_and(|max| ctx.body_bytes > max) {
            session.as_downstream_mut().set_keepalive(None);
            return Err(Error::explain(ErrorType::HTTPStatus(413), TOO_LARGE));
        }
        if self.body_too_slow(session.req_header(), ctx) {
            hostile::count(Reason::BodyTooSlow);
            session.as_downstream_mut().set_keepalive(None);
            return Err(Error::explain(ErrorType::HTTPStatus(408), BODY_TOO_SLOW).into_down());
        }
        Ok(())
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let upgrade = session.as_downstream().is_upgrade_req();
        self.next_peer(session.req_header(), upgrade, ctx).await
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.upstream_response(upstream_response, ctx)
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora_core::protocols::Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Only a plaintext HTTP/1 connection carries one request at a time: ending the request
        // stream of an HTTP/2 (or possibly HTTP/2, by ALPN) connection would end its other
        // streams too.
        if ctx.pool.as_ref().is_some_and(|p| p.plain_http1()) {
            ctx.upstream_fd = Some(fd);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.edit_response(session.as_downstream_mut(), upstream_response, ctx)?;
        let head = session.req_header().method == http::Method::HEAD;
        if policy::bodiless(head, upstream_response) {
            self.pingora_response_done(session, ctx);
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        self.body_out(session.as_downstream(), body, end_of_stream, ctx)?;
        if end_of_stream {
            self.pingora_response_done(session, ctx);
        }
        Ok(None)
    }

    async fn response_trailer_filter(
        &self,
        session: &mut Session,
        _upstream_trailers: &mut http::HeaderMap,
        ctx: &mut Ctx,
    ) -> Result<Option<Bytes>> {
        self.body_end_before_trailers(session.as_downstream(), ctx)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
        let parts = forwarded::without_case(std::mem::replace(upstream_request, placeholder));
        *upstream_request = self.upstream_request(session.as_downstream(), parts, ctx)?;
        Ok(())
    }

    fn fail_to_connect(&self, session: &mut Session, _peer: &HttpPeer, ctx: &mut Ctx, mut e: Box<Error>) -> Box<Error> {
        if self.try_again(session.as_downstream(), &e, ctx, Attempt::Connect) {
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
        let mut e = e.more_context(format!("Peer: {peer}"));
        let answered = session.as_downstream().response_written().is_some();
        let attempt = Attempt::Exchange {
            reused: client_reused,
            answered,
        };
        let retry = self.try_again(session.as_downstream(), &e, ctx, attempt);
        if retry {
            e.retry.decide_reuse(client_reused);
        } else {
            e.set_retry(false);
        }
        e
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        self.record(session.as_downstream(), e, ctx);
    }

    /// lb logs a failed request itself, in [`Lb::record`], the same for both loops.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _e: &Error) -> bool {
        true
    }

    /// lb logs a retried attempt itself, in [`Lb::try_again`], the same for both loops.
    fn suppress_proxy_warn_log(&self, _: &Session, _: &Ctx, _: &Error, context: ProxyWarnLogContext) -> bool {
        context == ProxyWarnLogContext::UpstreamRetry
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> FailToProxy {
        let code = respond::status_for(e);
        if code > 0 {
            respond::send_error(session.as_downstream_mut(), code).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}
