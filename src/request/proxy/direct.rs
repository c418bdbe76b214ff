//! lb's own request loop ("the direct path"): the common request — no body, no upgrade, origin
//! form (the front's [`direct_candidate`](crate::request::front)), routed to a pool of plaintext
//! HTTP/1.1 backends — is served here instead of through Pingora's `HttpProxy`. It parses and
//! frames with Pingora's HTTP/1 sessions and applies the same semantics as the `ProxyHttp` hooks
//! (they share the methods in `proxy`: admission and lb's own answers, picking, the retry
//! decision, timeouts, headers, statuses, metrics, logging, the access log, sticky cookies), but
//! runs as one plain future inside the front's per-request future: no boxed future per hook, no
//! channel pair per request, and its own idle backend connections ([`super::upstreams`])
//! instead of Pingora's pool (a task per idle connection, a `getpeername` per reuse).
//!
//! A request whose pool needs Pingora's loop (TLS or HTTP/2 to the backends) is declined before
//! anything is counted: the request head goes back into the client connection, unconsumed, and
//! the front hands the request to `HttpProxy`.
//!
//! What Pingora's proxy does to a request and its response on the way, besides lb's hooks, is
//! done here the same way: the request goes up as HTTP/1.1 without its hop-by-hop fields
//! ([`policy::request_hop_by_hop`], which mirrors Pingora's standard request policy), a response
//! without framing goes to the client chunked, and informational responses pass.

use super::admit::{Admission, Loop};
use super::upstream_response::{framed_twice, FRAMED_TWICE};
use super::{forwarded, peer_ip, policy, respond, Attempt, Ctx, Lb};
use crate::request::front::conn::Conn;
use crate::request::front::head::Framing;
use crate::request::front::{Direct, Served};
use bytes::Bytes;
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
                        let e = e.into_up();
                        if self.try_again(downstream, &e, ctx, Attempt::Connect) {
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
                    if ctx.closes_upstream() {
                        upstream.shutdown().await;
                        return Ok(());
                    }
                    upstream.respect_keepalive();
                    if let (Some(stream), Some(addr)) = (upstream.reuse().await, addr) {
                        self.direct.upstreams.put(addr, stream, peer.options.idle_timeout);
                    }
                    return Ok(());
                }
                Err(Failed { e, answered }) => {
                    let e = e.more_context(format!("Peer: {peer}"));
                    if self.try_again(downstream, &e, ctx, Attempt::Exchange { reused, answered }) {
                        continue;
                    }
                    return Err(e);
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
        let req = self
            .upstream_head(downstream, ctx)
            .map_err(|e| Failed { e, answered: false })?;
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
                    if !header.status.is_informational() && framed_twice(&upstream.get_headers_raw_bytes()) {
                        ctx.distrust = Some(FRAMED_TWICE);
                    }
                    answered = true;
                    h1(downstream)?.write_response_header(header).await.map_err(down)?;
                    end
                }
                HttpTask::Body(data, end) => {
                    self.body_piece(downstream, data, end, ctx).await?;
                    end
                }
                HttpTask::Done => {
                    // The end of a compressed body, if it is one.
                    self.body_piece(downstream, None, true, ctx).await?;
                    true
                }
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
                self.response_done(downstream, ctx);
                return Ok(());
            }
        }
    }

    /// A piece of the response body to the client, through the step both loops share
    /// ([`Lb::body_out`]: streaming, compression).
    async fn body_piece(
        &self,
        downstream: &mut ServerSession,
        mut data: Option<Bytes>,
        end: bool,
        ctx: &mut Ctx,
    ) -> std::result::Result<(), Failed> {
        let down = |e: Box<Error>| Failed {
            e: e.into_down(),
            answered: true,
        };
        self.body_out(downstream, &mut data, end, ctx)
            .map_err(|e| Failed { e, answered: true })?;
        if let Some(data) = data.filter(|d| !d.is_empty()) {
            h1(downstream)?.write_body(&data).await.map_err(down)?;
        }
        Ok(())
    }

    /// The request head for the backend: the client's, as HTTP/1.1 without its hop-by-hop
    /// fields (a `Connection` that names protected fields is the client's error, a 400), with
    /// the forwarding headers.
    fn upstream_head(&self, downstream: &ServerSession, ctx: &mut Ctx) -> Result<Box<RequestHeader>> {
        let client = downstream.req_header();
        let hop = policy::request_hop_by_hop(client)
            .map_err(|why| Error::explain(ErrorType::InvalidHTTPHeader, why).into_down())?;
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = client.method.clone();
        parts.uri = client.uri.clone();
        parts.version = http::Version::HTTP_11;
        // The client's fields (in order) but the hop-by-hop ones, with room for those added.
        parts.headers = http::HeaderMap::with_capacity(client.headers.len() + forwarded::ADDED);
        for (name, value) in &client.headers {
            if !hop.contains(name) {
                parts.headers.append(name.clone(), value.clone());
            }
        }
        let req = self.upstream_request(downstream, parts, ctx).map_err(|e| e.into_in())?;
        Ok(Box::new(req))
    }

    /// The backend's response head as the client gets it (informational ones included).
    fn response_head(
        &self,
        downstream: &mut ServerSession,
        header: &mut ResponseHeader,
        end: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.upstream_response(header, ctx)?;
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
        let client = forwarded::real_client(
            downstream.req_header(),
            peer_ip(&downstream),
            &self.edge.trusted_proxies,
        );
        let admission = self.admit(&downstream, client, Loop::Lb);
        if matches!(admission, Admission::ToPingora) {
            return decline(downstream);
        }
        self.sweep_upstreams();
        if *shutdown.borrow() {
            downstream.set_keepalive(None);
        }
        self.prepare(&mut downstream);
        let mut ctx = self.new_ctx();
        ctx.client = client;
        self.identify(&downstream, &mut ctx);
        let served = match admission {
            Admission::Proxy(target) => {
                ctx.routed(target);
                self.proxy_direct(&mut downstream, &mut ctx).await
            }
            Admission::Answer { answer, target } => {
                if let Some(target) = target {
                    ctx.routed(target);
                }
                self.answer(&mut downstream, &mut ctx, answer).await
            }
            Admission::ToPingora => Ok(()),
        };
        match served {
            Ok(()) => {
                self.record(&downstream, None, &mut ctx);
                drop(ctx);
                let reusable = downstream.finish().await.ok().flatten();
                Served::Done(reusable.map(|r| r.into_parts().0))
            }
            Err(e) => {
                let code = respond::status_for(&e);
                if code > 0 {
                    respond::send_error(&mut downstream, code).await;
                }
                self.record(&downstream, Some(&e), &mut ctx);
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
