//! lb's HTTP front: what happens on a client connection around Pingora's proxied requests. It
//! admits the connection (a cap per listener), reads a PROXY protocol header where configured,
//! tells HTTP/2 (by ALPN, or h2c by its preface) from HTTP/1, and for HTTP/1 owns the keep-alive
//! loop: it waits for each request with no buffer allocated while idle, reads and checks the
//! request head itself against a deadline (slow clients are cut off, malformed heads get their
//! 4xx before anything is forwarded), then hands exactly that request to Pingora's session and
//! takes the connection back for the next one. Routing, picking and proxying stay in `proxy`.
//!
//! - [`conn`]: the connection wrapper that hands one request at a time to Pingora.
//! - [`head`]: strict parsing and checks of a request head (RFC 9112).
//! - [`chunked`]: where a chunked body ends, strictly.
//! - [`proxy_protocol`]: PROXY protocol v1/v2 headers.
//! - [`listener`]: per-listener settings, the connection cap, PROXY before TLS.
//! - [`reject`]: the answers the front gives itself.

pub mod chunked;
pub mod conn;
pub mod head;
pub mod listener;
pub mod proxy_protocol;
mod reject;

use crate::request::access_log::AccessLog;
use crate::request::traffic::Traffic;
use async_trait::async_trait;
use conn::Conn;
use head::{Framing, Head, HeadError, Limits};
use listener::{ListenerRule, Slot};
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
pub use reject::FrontStats;
use reject::Refusal;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{timeout_at, Instant};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Limits and timeouts of client connections, resolved from `clients:`.
#[derive(Debug, Clone)]
pub struct ClientRules {
    /// Time for a whole request head (from the connection for the first request).
    pub header_timeout: Duration,
    /// Idle time between requests.
    pub keepalive_timeout: Duration,
    /// Requests per connection.
    pub keepalive_requests: usize,
    /// Each read of a request body.
    pub body_timeout: Duration,
    /// Request line and head sizes.
    pub limits: Limits,
    /// Largest request body; `None` for no limit.
    pub max_body: Option<u64>,
}

/// The front, over the proxy application `A` (Pingora's `HttpProxy`).
pub struct Front<A> {
    app: Arc<A>,
    /// The same proxy with h2c enabled, for listeners that accept it.
    h2c_app: Option<Arc<A>>,
    listeners: Vec<ListenerRule>,
    rules: ClientRules,
    traffic: Arc<Traffic>,
    stats: Arc<FrontStats>,
    access_log: Option<Arc<AccessLog>>,
}

impl<A> Front<A> {
    /// A front for `listeners` before `app` (and `h2c_app` for h2c listeners).
    pub fn new(
        app: A,
        h2c_app: Option<A>,
        listeners: Vec<ListenerRule>,
        rules: ClientRules,
        traffic: Arc<Traffic>,
        stats: Arc<FrontStats>,
        access_log: Option<Arc<AccessLog>>,
    ) -> Self {
        Front {
            app: Arc::new(app),
            h2c_app: h2c_app.map(Arc::new),
            listeners,
            rules,
            traffic,
            stats,
            access_log,
        }
    }

    fn rule_of(&self, stream: &Stream) -> Option<&ListenerRule> {
        let digest = stream.get_socket_digest()?;
        let local = *digest.local_addr()?.as_inet()?;
        listener::find(&self.listeners, local)
    }
}

/// How waiting for a request head ended without one.
enum NoHead {
    /// The client closed, or stayed idle past the keep-alive timeout: close quietly.
    Gone,
    /// The head is refused: answer and close.
    Refused(Refusal),
}

impl<A> Front<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// Waits for the next request head on `conn`: its first byte within `idle` (or until
    /// `first_deadline`, for a connection's first request), the whole head within the header
    /// timeout from there.
    async fn next_head(&self, conn: &mut Conn, first_deadline: Option<Instant>) -> Result<Head, NoHead> {
        if conn.held().is_empty() {
            let until = first_deadline.unwrap_or_else(|| Instant::now() + self.rules.keepalive_timeout);
            match timeout_at(until, conn.fill()).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Err(NoHead::Gone),
            }
        }
        let deadline = first_deadline.unwrap_or_else(|| Instant::now() + self.rules.header_timeout);
        loop {
            match head::parse(conn.held(), &self.rules.limits) {
                Ok(head) => return Ok(head),
                Err(HeadError::Reject(status, why)) => return Err(NoHead::Refused(Refusal::new(status, why))),
                Err(HeadError::Incomplete) => {}
            }
            match timeout_at(deadline, conn.fill()).await {
                Err(_) => {
                    return Err(NoHead::Refused(Refusal::new(
                        408,
                        "the request head did not arrive in time",
                    )))
                }
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return Err(NoHead::Gone),
            }
        }
    }

    /// Checks what can be checked of `head` before it is forwarded: the body size limit, and the
    /// part of a chunked body already received.
    fn precheck(&self, conn: &Conn, head: &Head) -> Result<(), Refusal> {
        match head.framing {
            Framing::Length(n) if self.rules.max_body.is_some_and(|max| n > max) => Err(Refusal::new(
                413,
                "the request body is larger than clients.max_body_size",
            )),
            Framing::Chunked => {
                let mut framer = chunked::Chunked::new();
                match framer.advance(&conn.held()[head.len..]) {
                    Ok(_) => Ok(()),
                    Err(_) => Err(Refusal::new(400, "malformed chunked body")),
                }
            }
            _ => Ok(()),
        }
    }

    /// Serves HTTP/1 requests on `conn` one after the other until the connection ends.
    async fn serve_h1(&self, mut conn: Box<Conn>, first_deadline: Instant, shutdown: &ShutdownWatch) {
        let mut first = Some(first_deadline);
        for served in 1..=self.rules.keepalive_requests {
            let head = match self.next_head(&mut conn, first.take()).await {
                Ok(head) => head,
                Err(NoHead::Gone) => return,
                Err(NoHead::Refused(refusal)) => return self.refuse(conn, refusal).await,
            };
            if let Err(refusal) = self.precheck(&conn, &head) {
                return self.refuse(conn, refusal).await;
            }
            conn.begin(head.len, &head.canonical, &head.framing);
            // Said in the response by the proxy (the session resets keep-alive from the request).
            let last = served == self.rules.keepalive_requests || *shutdown.borrow() || self.traffic.draining();
            conn.set_last(last);
            let mut session = ServerSession::new_http1(conn);
            session.set_read_timeout(Some(self.rules.body_timeout));
            let Some(reused) = self.app.process_new_http(session, shutdown).await else {
                return;
            };
            let (stream, _settings) = reused.consume();
            conn = match stream.into_any().downcast::<Conn>() {
                Ok(conn) => conn,
                Err(_) => return,
            };
            if !conn.request_done() || last {
                return;
            }
            conn.idle();
        }
    }

    async fn refuse(&self, mut conn: Box<Conn>, refusal: Refusal) {
        self.stats.count(refusal.status);
        if let Some(log) = &self.access_log {
            reject::log(log, &conn, &refusal);
        }
        let _ = conn.write_all_now(&refusal.response()).await;
        pingora_core::protocols::Shutdown::shutdown(&mut *conn).await;
    }

    /// Reads a PROXY protocol header off `conn` before `deadline`; from a trusted peer (or when
    /// no peer is trusted in particular), its source becomes the client.
    async fn proxy_header(&self, conn: &mut Conn, deadline: Instant, rule: &ListenerRule) -> Option<()> {
        loop {
            match proxy_protocol::parse(conn.held()) {
                Ok(proxied) => {
                    conn.consume(proxied.len);
                    if let Some(source) = proxied.source.filter(|_| rule.trusts_proxy_header(conn)) {
                        conn.set_client(source);
                    }
                    return Some(());
                }
                Err(proxy_protocol::PpError::Incomplete) => {}
                Err(proxy_protocol::PpError::Invalid(why)) => {
                    log::info!("connection closed: bad PROXY protocol header: {why}");
                    return None;
                }
            }
            match timeout_at(deadline, conn.fill()).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// Whether `conn` starts with the HTTP/2 preface (h2c with prior knowledge); `None` when the
    /// client went away or stayed silent past `deadline`.
    async fn is_h2c(&self, conn: &mut Conn, deadline: Instant) -> Option<bool> {
        loop {
            let held = conn.held();
            let n = held.len().min(H2_PREFACE.len());
            if held[..n] != H2_PREFACE[..n] {
                return Some(false);
            }
            if n == H2_PREFACE.len() {
                return Some(true);
            }
            match timeout_at(deadline, conn.fill()).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }
}

#[async_trait]
impl<A> ServerApp for Front<A>
where
    A: HttpServerApp + ServerApp + Send + Sync + 'static,
{
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let rule = self.rule_of(&stream);
        let _slot = match rule.map_or(Some(Slot::unlimited()), ListenerRule::admit) {
            Some(slot) => slot,
            None => {
                self.stats.count(503);
                return listener::refuse_full(stream).await;
            }
        };
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return self.app.process_new(stream, shutdown).await;
        }
        let first_deadline = Instant::now() + self.rules.header_timeout;
        let mut conn = Box::new(Conn::new(stream));
        if let Some(rule) = rule.filter(|r| r.proxy_protocol && !r.tls) {
            self.proxy_header(&mut conn, first_deadline, rule).await?;
        }
        if let (Some(h2c), true) = (&self.h2c_app, rule.is_some_and(|r| r.h2c)) {
            if self.is_h2c(&mut conn, first_deadline).await? {
                conn.pass_through();
                return h2c.process_new(conn, shutdown).await;
            }
        }
        self.serve_h1(conn, first_deadline, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
        if let Some(app) = &self.h2c_app {
            app.cleanup().await;
        }
    }
}
