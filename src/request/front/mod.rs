//! lb's HTTP front: what happens on a client connection around Pingora's proxied requests. It
//! admits the connection (a cap per listener), reads a PROXY protocol header where configured,
//! tells HTTP/2 (by ALPN, or h2c by its preface) from HTTP/1, and for HTTP/1 owns the keep-alive
//! loop: it waits for each request with no buffer allocated while idle, reads and checks the
//! request head itself against a deadline (slow clients are cut off, malformed heads get their
//! 4xx before anything is forwarded), then hands exactly that request to Pingora's session and
//! takes the connection back for the next one. Routing, picking and proxying stay in `proxy`.
//!
//! - [`conn`]: the connection wrapper that hands one request at a time to Pingora.
//! - [`h2`]: the watch over HTTP/2 connections (control-frame floods, errors sent).
//! - [`hostile`]: counters of the clients cut off, by reason.
//! - [`head`]: strict parsing and checks of a request head (RFC 9112).
//! - [`chunked`]: where a chunked body ends, strictly.
//! - [`proxy_protocol`]: PROXY protocol v1/v2 headers.
//! - [`park`]: idle keep-alive connections, kept small.
//! - [`linger`]: lingering close, so an early answer reaches the client.
//! - [`listener`]: per-listener settings, the connection cap, PROXY before TLS.
//! - [`reject`]: the answers the front gives itself.

pub mod chunked;
pub mod conn;
pub mod h2;
pub mod head;
pub mod hostile;
pub mod linger;
pub mod listener;
pub mod park;
pub mod proxy_protocol;
mod reject;

use crate::request::access_log::AccessLog;
use crate::request::traffic::Traffic;
use async_trait::async_trait;
use conn::Conn;
use head::{Framing, Head, HeadError, Limits, TargetForm};
use hostile::Reason;
use listener::{ListenerRule, Slot};
use park::{Lot, Wait, Woken};
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use reject::Refusal;
pub(crate) use reject::TOO_LARGE;
pub use reject::{FrontStats, Path};
use std::future::Future;
use std::io;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::time::{timeout_at, Instant};

/// Once the server stops, how long an idle connection still waits for a request already on its
/// way (accepted just before the stop), before it closes.
const LATE_REQUEST_WINDOW: Duration = Duration::from_secs(1);

/// How long a keep-alive connection stays quiet before it is parked (see [`park`]).
const PARK_AFTER: Duration = Duration::from_secs(1);

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
    /// How a connection closes while the client may still be sending; `None`: at once.
    pub linger: Option<linger::Linger>,
    /// Time for a TLS handshake, the PROXY header before it included.
    pub handshake_timeout: Duration,
    /// HTTP/2 frames without requests or bodies a connection may send per second.
    pub h2_control_frames: u32,
}

/// lb's own handling of the common request (`proxy::direct`).
pub trait Direct: Send + Sync + 'static {
    /// Serves the request whose checked head starts `conn` (no body follows it), or declines
    /// it and gives `conn` back as it came.
    fn serve(&self, conn: Box<Conn>, shutdown: &ShutdownWatch) -> impl Future<Output = Served> + Send;
}

/// What became of a request offered to [`Direct::serve`].
pub enum Served {
    /// It was served; the connection, if it can take another request.
    Done(Option<Stream>),
    /// It was declined: the connection, the request unread.
    Declined(Box<Conn>),
}

/// Whether a request with `head` can be offered to [`Direct`], as far as its framing goes: no
/// body, no upgrade, no `100-continue`, origin form. What becomes of it is the proxy's
/// admission (which may still send it to Pingora's loop, for its pool).
fn direct_candidate(head: &Head) -> bool {
    !head.upgrade
        && !head.expect_continue
        && head.form == TargetForm::Origin
        && matches!(head.framing, Framing::None | Framing::Length(0))
}

/// The front, over the proxy application `A` (Pingora's `HttpProxy`) and lb's own request
/// loop `D`.
pub struct Front<A, D> {
    app: Arc<A>,
    /// lb's own request loop, when it is on.
    direct: Option<D>,
    /// The same proxy with h2c enabled, for listeners that accept it.
    h2c_app: Option<Arc<A>>,
    listeners: Vec<ListenerRule>,
    rules: ClientRules,
    traffic: Arc<Traffic>,
    stats: Arc<FrontStats>,
    access_log: Option<Arc<AccessLog>>,
    /// Where idle connections wait, once the first is parked (`None`: parking is unavailable).
    lot: OnceLock<Option<Arc<Lot>>>,
}

impl<A, D> Front<A, D> {
    /// A front for `listeners` before `app` (and `h2c_app` for h2c listeners), serving what it
    /// can with `direct`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        app: A,
        h2c_app: Option<A>,
        direct: Option<D>,
        listeners: Vec<ListenerRule>,
        rules: ClientRules,
        traffic: Arc<Traffic>,
        stats: Arc<FrontStats>,
        access_log: Option<Arc<AccessLog>>,
    ) -> Self {
        Front {
            app: Arc::new(app),
            direct,
            h2c_app: h2c_app.map(Arc::new),
            listeners,
            rules,
            traffic,
            stats,
            access_log,
            lot: OnceLock::new(),
        }
    }

    fn rule_of(&self, stream: &Stream) -> Option<&ListenerRule> {
        let digest = stream.get_socket_digest()?;
        let local = *digest.local_addr()?.as_inet()?;
        listener::find(&self.listeners, local)
    }
}

/// How waiting on an idle connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Woke {
    /// A request's first bytes arrived.
    Request,
    /// The client closed (or the wait ended with the server's stop).
    Gone,
    /// Nothing arrived in time.
    Quiet,
}

impl Woke {
    fn of<E>(got: Result<io::Result<usize>, E>) -> Self {
        match got {
            Ok(Ok(n)) if n > 0 => Woke::Request,
            Ok(_) => Woke::Gone,
            Err(_) => Woke::Quiet,
        }
    }
}

/// `fill` bounded by `limit`, on Pingora's coarse timer wheel (10 ms steps, a thread of its
/// own): arming it costs no system call, where a tokio timer armed for every request wakes the
/// runtime's driver (an eventfd write and one more `epoll_wait` per request).
async fn fill_within(conn: &mut Conn, limit: Duration) -> Woke {
    Woke::of(pingora_timeout::fast_timeout::fast_timeout(limit, conn.fill()).await)
}

/// How waiting for a request head ended without one.
enum NoHead {
    /// The client closed, or stayed idle past the keep-alive timeout: close quietly.
    Gone,
    /// The head is refused: answer and close.
    Refused(Refusal),
}

impl<A, D> Front<A, D>
where
    A: HttpServerApp + Send + Sync + 'static,
    D: Direct,
{
    /// Waits for the first byte of a request on an idle connection until `until`; once the
    /// server stops, a request already on its way still gets [`LATE_REQUEST_WINDOW`] to arrive.
    async fn wait_for_request(&self, conn: &mut Conn, until: Instant, shutdown: &ShutdownWatch) -> Woke {
        let mut stop = shutdown.clone();
        let stopping = async {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        };
        let woke = tokio::select! {
            woke = fill_within(conn, until.saturating_duration_since(Instant::now())) => Some(woke),
            () = stopping => None,
        };
        match woke {
            Some(woke) => woke,
            None => {
                let late = until.min(Instant::now() + LATE_REQUEST_WINDOW);
                match Woke::of(timeout_at(late, conn.fill()).await) {
                    Woke::Quiet => Woke::Gone,
                    woke => woke,
                }
            }
        }
    }

    /// Reads the request head on `conn`, whose first byte has arrived (or is held): the whole
    /// head within the header timeout (or by `first_deadline`, for a connection's first request).
    async fn next_head(&self, conn: &mut Conn, first_deadline: Option<Instant>) -> Result<Head, NoHead> {
        let mut deadline = first_deadline;
        loop {
            match head::parse(conn.held(), &self.rules.limits) {
                Ok(head) => return Ok(head),
                Err(HeadError::Reject(status, why)) => return Err(NoHead::Refused(Refusal::new(status, why))),
                Err(HeadError::Incomplete) => {}
            }
            // Most heads come whole: the clock is read only for one that does not.
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + self.rules.header_timeout);
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
            Framing::Length(n) if self.rules.max_body.is_some_and(|max| n > max) => {
                Err(Refusal::new(413, reject::TOO_LARGE))
            }
            Framing::Chunked => {
                let mut framer = chunked::Chunked::new();
                match framer.advance(&conn.held()[head.len..]) {
                    Err(_) => Err(Refusal::new(400, "malformed chunked body")),
                    Ok(_) if self.rules.max_body.is_some_and(|max| framer.declared() > max) => {
                        Err(Refusal::new(413, reject::TOO_LARGE))
                    }
                    Ok(_) => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Serves HTTP/1 requests on `conn` one after the other, `served` of them already; ends
    /// when the connection does, or when it has been quiet long enough to be parked. The
    /// requests' state ([`Front::serve_one`]'s future) lives in this task, not in a box of its
    /// own per request: moving it into one cost a copy of its ~10 KB per request. The task holds
    /// it until the connection is parked after [`PARK_AFTER`] of quiet.
    async fn serve_h1(
        &self,
        mut conn: Box<Conn>,
        mut first: Option<Instant>,
        mut served: usize,
        shutdown: &ShutdownWatch,
    ) -> Option<(Box<Conn>, Wait)> {
        conn.set_linger(self.rules.linger);
        while served < self.rules.keepalive_requests {
            if conn.held().is_empty() {
                let now = Instant::now();
                let until = first.unwrap_or(now + self.rules.keepalive_timeout);
                let park_at = now + PARK_AFTER;
                let parks = park_at < until && self.parks() && conn.parts_to_park().is_some();
                // A connection that will be parked waits briefly, and need not watch for the
                // server's stop here: the lot does (and cuts its wait short if the stop came).
                let woke = if parks {
                    fill_within(&mut conn, PARK_AFTER).await
                } else {
                    conn.shed();
                    self.wait_for_request(&mut conn, until, shutdown).await
                };
                match woke {
                    Woke::Request => {}
                    Woke::Quiet if parks => {
                        let first = first.is_some();
                        return Some((conn, Wait { until, first, served }));
                    }
                    Woke::Quiet | Woke::Gone => return None,
                }
            }
            served += 1;
            let last = served == self.rules.keepalive_requests;
            conn = self.serve_one(conn, first.take(), last, shutdown).await?;
        }
        None
    }

    /// Serves the request whose first bytes are held on `conn`; gives the connection back when
    /// it can carry another request.
    async fn serve_one(
        &self,
        mut conn: Box<Conn>,
        first_deadline: Option<Instant>,
        last: bool,
        shutdown: &ShutdownWatch,
    ) -> Option<Box<Conn>> {
        let head = match self.next_head(&mut conn, first_deadline).await {
            Ok(head) => head,
            Err(NoHead::Gone) => return None,
            Err(NoHead::Refused(refusal)) => {
                self.refuse(conn, refusal).await;
                return None;
            }
        };
        if let Err(refusal) = self.precheck(&conn, &head) {
            self.refuse(conn, refusal).await;
            return None;
        }
        conn.begin(head.len, &head.canonical, &head.framing);
        let direct = self.direct.as_ref().filter(|_| direct_candidate(&head));
        drop(head);
        // Said in the response by the proxy (the session resets keep-alive from the request).
        let last = last || *shutdown.borrow() || self.traffic.draining();
        conn.set_last(last);
        let conn = match direct {
            Some(direct) => match direct.serve(conn, shutdown).await {
                Served::Done(stream) => {
                    self.stats.proxied(Path::Lb);
                    return Self::after(stream?, last);
                }
                Served::Declined(conn) => conn,
            },
            None => conn,
        };
        self.stats.proxied(Path::Pingora);
        let mut session = ServerSession::new_http1(conn);
        session.set_read_timeout(Some(self.rules.body_timeout));
        let reused = self.app.process_new_http(session, shutdown).await?;
        let (stream, _settings) = reused.consume();
        Self::after(stream, last)
    }

    /// The connection after a request, if it takes another.
    fn after(stream: Stream, last: bool) -> Option<Box<Conn>> {
        let mut conn = stream.into_any().downcast::<Conn>().ok()?;
        if !conn.request_done() || last {
            return None;
        }
        conn.idle();
        Some(conn)
    }

    async fn refuse(&self, mut conn: Box<Conn>, refusal: Refusal) {
        self.stats.count(refusal.status);
        if let Some(log) = &self.access_log {
            reject::log(log, &conn, &refusal);
        }
        // A client too slow to send its head is cut off at once (as nginx does after
        // client_header_timeout); after any other refusal a body may follow the head, so the
        // close lingers (when `conn` is dropped) and the client reads the answer.
        if refusal.status == 408 {
            conn.set_linger(None);
        } else {
            conn.answered_early();
        }
        let _ = conn.write_all_now(&refusal.response()).await;
        pingora_core::protocols::Shutdown::shutdown(&mut *conn).await;
    }

    /// Reads a PROXY protocol header off `conn` before `deadline`; from a trusted peer (or when
    /// no peer is trusted in particular), its source becomes the client.
    async fn proxy_header(&self, conn: &mut Conn, deadline: Instant, rule: &ListenerRule) -> Option<()> {
        match timeout_at(deadline, proxy_protocol::read(conn)).await {
            Ok(Ok(proxied)) => {
                conn.consume(proxied.len);
                if let Some(source) = proxied.source.filter(|_| rule.trusts_proxy_header(conn)) {
                    conn.set_client(source);
                }
                Some(())
            }
            Ok(Err(proxy_protocol::ReadError::Invalid(why))) => {
                log::info!("connection closed: bad PROXY protocol header: {why}");
                None
            }
            // Closed, failed or silent past the deadline.
            _ => None,
        }
    }

    /// The TLS handshake of a connection on a TLS listener (its PROXY header first, where the
    /// listener expects one), within `clients.handshake_timeout`; `None` when it fails or stalls.
    async fn handshake(&self, stream: Stream, rule: &ListenerRule, acceptor: &Acceptor) -> Option<Stream> {
        let deadline = Instant::now() + self.rules.handshake_timeout;
        let peer = stream.get_socket_digest().and_then(|d| d.peer_addr().cloned());
        let Ok(mut l4) = stream.into_any().downcast::<L4Stream>() else {
            log::error!("a TLS listener's connection is not a TCP stream");
            return None;
        };
        let shake = async {
            if rule.proxy_protocol {
                listener::proxy_before_tls(&mut l4, rule.trusted())
                    .await
                    .map_err(|why| format!("bad PROXY protocol header: {why}"))?;
            }
            acceptor.tls_handshake(*l4).await.map_err(|e| e.to_string())
        };
        let failed = match timeout_at(deadline, shake).await {
            Ok(Ok(tls)) => return Some(Box::new(tls)),
            Ok(Err(why)) => (Reason::HandshakeFailed, why),
            Err(_) => (
                Reason::HandshakeTimeout,
                "no handshake within clients.handshake_timeout".into(),
            ),
        };
        hostile::count(failed.0);
        // Scanners and broken clients make these by the thousand: not an error of lb's.
        log::debug!(
            "TLS handshake with {} failed: {}",
            peer.map_or_else(|| "?".to_string(), |p| p.to_string()),
            failed.1
        );
        None
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

impl<A, D> Front<A, D>
where
    A: HttpServerApp + Send + Sync + 'static,
    D: Direct,
{
    /// Parks a quiet `conn` until its next request; the lot's task starts with the first. In
    /// the rare case the lot cannot be had, the idle connection is closed (and no other is
    /// parked: they wait as they are).
    fn park(self: &Arc<Self>, conn: Box<Conn>, wait: Wait, slot: Slot, shutdown: &ShutdownWatch) {
        if let Some(lot) = self.lot.get_or_init(|| self.open_lot(shutdown)) {
            if let Err((conn, _slot)) = lot.park(conn, wait, slot) {
                log::debug!("an idle connection closed, it could not be parked: {conn:?}");
            }
        }
    }

    /// Whether quiet connections are parked.
    fn parks(&self) -> bool {
        self.lot.get().is_none_or(Option::is_some)
    }

    fn open_lot(self: &Arc<Self>, shutdown: &ShutdownWatch) -> Option<Arc<Lot>> {
        let lot = match Lot::new() {
            Ok(lot) => Arc::new(lot),
            Err(e) => {
                log::warn!("idle connections will not be parked: {e}");
                return None;
            }
        };
        let front = Arc::clone(self);
        let running = Arc::clone(&lot);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let stop = shutdown.clone();
            running
                .run(stop, LATE_REQUEST_WINDOW, |woken: Woken| {
                    let Woken { conn, wait, slot } = woken;
                    let first = wait.first.then_some(wait.until);
                    let serving = Serving {
                        conn,
                        first,
                        served: wait.served,
                    };
                    serving.spawn(Arc::clone(&front), slot, shutdown.clone());
                })
                .await;
        });
        Some(lot)
    }
}

#[async_trait]
impl<A, D> ServerApp for Front<A, D>
where
    A: HttpServerApp + ServerApp + Send + Sync + 'static,
    D: Direct,
{
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let rule = self.rule_of(&stream);
        // Admitted before any work, the TLS handshake included: a flood of connections over the
        // cap costs an accept and a close each.
        let _slot = match rule.map_or(Some(Slot::unlimited()), ListenerRule::admit) {
            Some(slot) => slot,
            None => {
                self.stats.count(503);
                return listener::refuse_full(stream, rule.is_some_and(|r| r.tls)).await;
            }
        };
        let stream = match rule.and_then(|r| Some((r, r.acceptor()?))) {
            Some((rule, acceptor)) => self.handshake(stream, rule, acceptor).await?,
            None => stream,
        };
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            let watched = h2::H2Conn::new(stream, self.rules.h2_control_frames);
            return self.app.process_new(Box::new(watched), shutdown).await;
        }
        let first_deadline = Instant::now() + self.rules.header_timeout;
        let mut conn = Box::new(Conn::new(stream));
        if let Some(rule) = rule.filter(|r| r.proxy_protocol && !r.tls) {
            self.proxy_header(&mut conn, first_deadline, rule).await?;
        }
        if let (Some(h2c), true) = (&self.h2c_app, rule.is_some_and(|r| r.h2c)) {
            if self.is_h2c(&mut conn, first_deadline).await? {
                conn.pass_through();
                let watched = h2::H2Conn::new(conn, self.rules.h2_control_frames);
                return h2c.process_new(Box::new(watched), shutdown).await;
            }
        }
        // The connection continues in a task of its own: Pingora's task for it (several KiB,
        // with room for a TLS handshake) ends here.
        Serving {
            conn,
            first: Some(first_deadline),
            served: 0,
        }
        .spawn(Arc::clone(self), _slot, shutdown.clone());
        None
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
        if let Some(app) = &self.h2c_app {
            app.cleanup().await;
        }
    }
}

/// A connection being served, between two of its tasks.
struct Serving {
    conn: Box<Conn>,
    /// The first request's deadline, while it is awaited.
    first: Option<Instant>,
    /// Requests served so far.
    served: usize,
}

impl Serving {
    /// Serves the connection in a task of its own, until it ends or is parked.
    fn spawn<A, D>(self, front: Arc<Front<A, D>>, slot: Slot, shutdown: ShutdownWatch)
    where
        A: HttpServerApp + Send + Sync + 'static,
        D: Direct,
    {
        tokio::spawn(async move {
            let parking = front.serve_h1(self.conn, self.first, self.served, &shutdown).await;
            if let Some((conn, wait)) = parking {
                front.park(conn, wait, slot, &shutdown);
            }
        });
    }
}
