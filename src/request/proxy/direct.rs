//! lb's own request loop ("the direct path"): the common request — no body, a plain head (see
//! [`Head::plain`](crate::request::front::head::Head::plain)), routed to a pool of plaintext
//! HTTP/1.1 backends with no answer of lb's own on the way (no redirect, no rate limit) — is
//! proxied here instead of through Pingora's `HttpProxy`. It parses and frames with Pingora's
//! HTTP/1 sessions and applies the same semantics as the `ProxyHttp` hooks (they share the
//! methods in `proxy`: routing, picking, retries, timeouts, headers, statuses, metrics, the
//! access log, sticky cookies), but runs as one plain future inside the front's per-request
//! future: no boxed future per hook, no channel pair per request, and its own idle backend
//! connections ([`super::upstreams`]) instead of Pingora's pool (a task per idle connection, a
//! `getpeername` per reuse).
//!
//! Anything else is declined before it is answered: the request head goes back into the client
//! connection, unconsumed, and the front hands the request to `HttpProxy`.
//!
//! What Pingora's proxy does to a request and its response on the way, besides lb's hooks, is
//! done here the same way for the requests taken: the request goes up as HTTP/1.1 without its
//! `Connection` field (a plain head has nothing else Pingora's sanitizing removes), a response
//! without framing goes to the client chunked, and informational responses pass.

use super::{is_tls, peer_ip, respond, Ctx, Lb};
use crate::request::front::conn::Conn;
use crate::request::front::head::Framing;
use crate::request::front::{Direct, Served};
use crate::request::route::Target;
use pingora_core::connectors::TransportConnector;
use pingora_core::protocols::http::v1::client::HttpSession as Upstream;
use pingora_core::protocols::http::v1::server::HttpSession as SessionV1;
use pingora_core::protocols::http::{HttpTask, ServerSession};
use pingora_core::server::ShutdownWatch;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::ProxyHttp;
use std::sync::Arc;
use std::time::Duration;

/// How often idle backend connections are looked over (closed by their backend, or past
/// `timeouts.idle`).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// How an attempt on a backend failed.
struct Failed {
    e: Box<Error>,
    /// Whether part of the response went to the client already (no other attempt can follow).
    answered: bool,
}

impl Failed {
    fn up(e: Box<Error>) -> Self {
        Failed {
            e: e.into_up(),
            answered: false,
        }
    }
}

impl Lb {
    /// The route of the request on `downstream` if the direct path serves it.
    fn direct_target(&self, downstream: &ServerSession) -> Option<Arc<Target>> {
        let target = self.route(downstream.req_header())?;
        let edge_answer = target.redirect.is_some()
            || target.rate_limit.is_some()
            || (target.https_redirect.is_some() && !is_tls(downstream));
        (!edge_answer && target.pool.plain_http1()).then_some(target)
    }

    /// Starts the sweep of idle backend connections, once.
    fn sweep_upstreams(&self) {
        self.direct.sweeper.get_or_init(|| {
            let upstreams = Arc::clone(&self.direct.upstreams);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(SWEEP_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    upstreams.sweep();
                }
            });
        });
    }

    /// Proxies the request on `downstream`, retrying as the pool allows.
    async fn proxy_direct(&self, downstream: &mut ServerSession, ctx: &mut Ctx) -> Result<()> {
        loop {
            let peer = self.next_peer(downstream.req_header(), false, ctx).await?;
            let addr = peer._address.as_inet().copied();
            let pooled = addr.and_then(|a| self.direct.upstreams.take(a));
            let reused = pooled.is_some();
            let stream = match pooled {
                Some(stream) => stream,
                None => match self.direct.connector.new_stream(&*peer).await {
                    Ok(stream) => stream,
                    Err(e) => {
                        // As `fail_to_connect`: a connect failure may go to another backend.
                        let e = e.into_up();
                        ctx.attempt_failed();
                        if ctx.may_retry() {
                            continue;
                        }
                        return Err(e);
                    }
                },
            };
            let mut upstream = Upstream::new_with_options(stream, &*peer);
            upstream.read_timeout = peer.options.read_timeout;
            upstream.write_timeout = peer.options.write_timeout;
            match self.exchange(downstream, &mut upstream, ctx).await {
                Ok(()) => {
                    upstream.respect_keepalive();
                    if let (Some(stream), Some(addr)) = (upstream.reuse().await, addr) {
                        self.direct.upstreams.put(addr, stream, peer.options.idle_timeout);
                    }
                    return Ok(());
                }
                Err(Failed { e, answered }) => {
                    let retry = self.retry_after(downstream, &e, ctx, reused);
                    if retry && !answered && e.esource() == &pingora_error::ErrorSource::Upstream {
                        continue;
                    }
                    return Err(e.more_context(format!("Peer: {peer}")));
                }
            }
        }
    }

    /// One attempt: the request to the backend, its response to the client.
    async fn exchange(
        &self,
        downstream: &mut ServerSession,
        upstream: &mut Upstream,
        ctx: &mut Ctx,
    ) -> std::result::Result<(), Failed> {
        let req = self.upstream_head(downstream, ctx).map_err(|e| Failed {
            e: e.into_in(),
            answered: false,
        })?;
        upstream.write_request_header(req).await.map_err(Failed::up)?;
        upstream.finish_body().await.map_err(Failed::up)?;
        let mut answered = false;
        loop {
            // While the backend is awaited, a client that goes away ends the request (as in
            // Pingora's proxy): its connection holds back anything it sends meanwhile.
            let task = tokio::select! {
                biased;
                task = upstream.read_response_task() => task.map_err(|e| Failed {
                    e: e.into_up(),
                    answered,
                })?,
                gone = h1(downstream)?.read_body_or_idle(true) => {
                    let e = gone.err().unwrap_or_else(|| Error::explain(ErrorType::ConnectionClosed, "client closed"));
                    return Err(Failed { e: e.into_down(), answered });
                }
            };
            let down = |e: Box<Error>| Failed {
                e: e.into_down(),
                answered: true,
            };
            let end = match task {
                HttpTask::Header(mut header, end) => {
                    self.response_head(downstream, &mut header, end, ctx)
                        .map_err(|e| Failed { e, answered })?;
                    answered = true;
                    h1(downstream)?.write_response_header(header).await.map_err(down)?;
                    end
                }
                HttpTask::Body(data, end) => {
                    self.stream_body(downstream, end, ctx);
                    if let Some(data) = data.filter(|d| !d.is_empty()) {
                        h1(downstream)?.write_body(&data).await.map_err(down)?;
                    }
                    end
                }
                HttpTask::Done => true,
                HttpTask::Failed(e) => return Err(Failed { e, answered }),
                HttpTask::UpgradedBody(..) | HttpTask::Trailer(_) => {
                    return Err(Failed {
                        e: Error::explain(ErrorType::InvalidHTTPHeader, "unexpected response task").into_up(),
                        answered,
                    })
                }
            };
            if end {
                h1(downstream)?.finish_body().await.map_err(down)?;
                return Ok(());
            }
        }
    }

    /// The request head for the backend: the client's, as HTTP/1.1 without `Connection`, with
    /// the forwarding headers.
    fn upstream_head(&self, downstream: &ServerSession, ctx: &Ctx) -> Result<Box<RequestHeader>> {
        let client = downstream.req_header();
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = client.method.clone();
        parts.uri = client.uri.clone();
        parts.version = http::Version::HTTP_11;
        // The client's fields (in order) but `Connection`, with room for those added.
        parts.headers = http::HeaderMap::with_capacity(client.headers.len() + super::forwarded::ADDED);
        for (name, value) in &client.headers {
            if name != http::header::CONNECTION {
                parts.headers.append(name.clone(), value.clone());
            }
        }
        Ok(Box::new(self.upstream_request(downstream, parts, ctx)?))
    }

    /// The backend's response head as the client gets it (informational ones included).
    fn response_head(
        &self,
        downstream: &mut ServerSession,
        header: &mut ResponseHeader,
        end: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.observe_upstream_response(header, ctx);
        // A response that ends when the backend closes goes on chunked, so the client
        // connection can stay (as Pingora's proxy does).
        let no_body =
            downstream.req_header().method == http::Method::HEAD || matches!(header.status.as_u16(), 204 | 304);
        let framed = header.headers.contains_key(http::header::TRANSFER_ENCODING)
            || header.headers.contains_key(http::header::CONTENT_LENGTH);
        if !no_body && !header.status.is_informational() && !framed && !end {
            header.set_version(http::Version::HTTP_11);
            header.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        self.edit_response(downstream, header, ctx)
    }
}

/// The HTTP/1 session under `downstream` (the direct path serves nothing else).
fn h1(downstream: &mut ServerSession) -> std::result::Result<&mut SessionV1, Failed> {
    match downstream {
        ServerSession::H1(h1) => Ok(h1),
        _ => Err(Failed::up(Error::explain(
            ErrorType::InternalError,
            "not an HTTP/1 session",
        ))),
    }
}

/// Gives the request on `downstream` back to the front, its head unread again.
fn decline(downstream: ServerSession) -> Served {
    let ServerSession::H1(h1) = downstream else {
        return Served::Done(None);
    };
    let head = h1.get_headers_raw_bytes();
    match h1.into_inner().into_any().downcast::<Conn>() {
        Ok(mut conn) => {
            conn.begin(0, &head, &Framing::None);
            Served::Declined(conn)
        }
        Err(_) => Served::Done(None),
    }
}

impl Direct for Lb {
    async fn serve(&self, conn: Box<Conn>, shutdown: &ShutdownWatch) -> Served {
        let mut downstream = ServerSession::new_http1(conn);
        match downstream.read_request().await {
            Ok(true) => {}
            Ok(false) => return Served::Done(None),
            Err(e) => {
                // What `HttpProxy` does with a head Pingora cannot take (lb's front checked it
                // already, so this is not expected).
                if matches!(e.etype(), ErrorType::InvalidHTTPHeader) {
                    let _ = downstream.respond_error(400).await;
                }
                downstream.shutdown().await;
                return Served::Done(None);
            }
        }
        let Some(target) = self.direct_target(&downstream) else {
            return decline(downstream);
        };
        self.sweep_upstreams();
        if *shutdown.borrow() {
            downstream.set_keepalive(None);
        }
        self.prepare(&mut downstream);
        let mut ctx = self.new_ctx();
        ctx.client = super::forwarded::real_client(
            downstream.req_header(),
            peer_ip(&downstream),
            &self.edge.trusted_proxies,
        );
        ctx.pool = Some(Arc::clone(&target.pool));
        ctx.target = Some(target);
        match self.proxy_direct(&mut downstream, &mut ctx).await {
            Ok(()) => {
                self.record(&downstream, None, &ctx);
                drop(ctx);
                let reusable = downstream.finish().await.ok().flatten();
                Served::Done(reusable.map(|r| r.into_parts().0))
            }
            Err(e) => {
                let code = respond::status_for(&e);
                if code > 0 {
                    respond::send_error(&mut downstream, code).await;
                }
                if !self.client_side(&downstream, &e) {
                    log::error!("Fail to proxy: {e}, status: {code}, {}", downstream.request_summary());
                }
                self.record(&downstream, Some(&e), &ctx);
                Served::Done(None)
            }
        }
    }
}

/// The direct path's own parts of [`Lb`].
pub struct DirectParts {
    connector: TransportConnector,
    upstreams: Arc<super::upstreams::Upstreams>,
    sweeper: std::sync::OnceLock<()>,
}

impl DirectParts {
    /// The direct path's parts, keeping up to `keepalive` idle backend connections.
    pub fn new(keepalive: usize) -> Self {
        DirectParts {
            connector: TransportConnector::new(None),
            upstreams: Arc::new(super::upstreams::Upstreams::new(keepalive)),
            sweeper: std::sync::OnceLock::new(),
        }
    }
}
