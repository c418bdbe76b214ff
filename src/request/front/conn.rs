//! A client connection as lb's HTTP/1 front hands it to Pingora: a [`Stream`] that delivers
//! exactly one request at a time (the checked head, then the body its framing allows) and holds
//! anything after it (pipelined requests) for the next round, so Pingora never sees more than
//! one request; and that combines small writes (a response head with its body: one write)
//! unless the proxy asked for every write to go out at once (a body that streams). Upgraded
//! connections (WebSocket, h2c) pass everything through.

use super::chunked::Chunked;
use super::head::Framing;
use super::linger::{self, Linger};
use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream, TimingDigest,
    UniqueID, UniqueIDType, ALPN,
};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection's addresses, to rebuild what Pingora knows of it (when it is parked and
/// resumed).
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    /// The TCP peer.
    pub peer: Option<SocketAddr>,
    /// The listener's address the client connected to.
    pub local: Option<SocketAddr>,
    /// The client as the PROXY protocol named it.
    pub client: Option<SocketAddr>,
}

impl super::proxy_protocol::Incoming for Conn {
    fn held(&self) -> &[u8] {
        Conn::held(self)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        Conn::fill(self).await
    }
}

/// Writes up to this size are combined in one buffer before they reach the socket.
const COMBINE: usize = 1460;
/// Bytes read ahead of the current request (pipelined requests) held at most; beyond it the
/// connection is not read until the current request is done.
const HOLD_MAX: usize = 64 << 10;
/// Read size from the socket.
const READ_CHUNK: usize = 16 << 10;
/// Buffer capacity kept between two requests on a connection (larger buffers are given back).
const KEEP_BETWEEN_REQUESTS: usize = 4 << 10;

/// What the HTTP layer may read.
enum Budget {
    /// Up to this many more bytes of the current request.
    Bytes(u64),
    /// The current request's chunked body, as far as it has been scanned; `scanned` bytes of
    /// `rbuf` (after the part already handed on) are known to belong to it.
    Chunked { framer: Chunked, scanned: usize },
    /// Everything (an upgraded connection, HTTP/2).
    Unlimited,
}

/// A client connection between lb's front and Pingora's HTTP/1 session.
pub struct Conn {
    inner: Stream,
    /// Bytes read from `inner`, not yet handed on.
    rbuf: BytesMut,
    budget: Budget,
    /// Pending small writes.
    wbuf: Vec<u8>,
    eof: bool,
    /// Every write goes out at once (set by the proxy while a response body streams).
    flush_each: AtomicBool,
    /// The connection was upgraded: no more framing.
    tunnel: AtomicBool,
    /// The current request is the connection's last (the response says `Connection: close`).
    last: AtomicBool,
    /// The client's address as the PROXY protocol gave it, instead of the TCP peer's.
    socket_digest: Option<Arc<SocketDigest>>,
    /// How the connection closes when the client may still be sending ([`linger`]); `None`:
    /// at once.
    linger: Option<Linger>,
    /// lb answered before it read the whole request (beyond what the framing says).
    answered_early: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("inner", &self.inner)
            .field("held", &self.rbuf.len())
            .finish()
    }
}

impl Conn {
    /// Wraps `inner`; nothing may be read until [`Conn::begin`] or [`Conn::pass_through`].
    pub fn new(inner: Stream) -> Self {
        Conn {
            inner,
            rbuf: BytesMut::new(),
            budget: Budget::Bytes(0),
            wbuf: Vec::new(),
            eof: false,
            flush_each: AtomicBool::new(false),
            tunnel: AtomicBool::new(false),
            last: AtomicBool::new(false),
            socket_digest: None,
            linger: None,
            answered_early: false,
        }
    }

    /// Closes lingering within `linger` when the client may still be sending (see [`linger`]).
    pub fn set_linger(&mut self, linger: Option<Linger>) {
        self.linger = linger.filter(|l| !l.time.is_zero());
    }

    /// lb answered before the request was read whole: the close lingers, whatever the framing.
    pub fn answered_early(&mut self) {
        self.answered_early = true;
    }

    /// Whether closing now could leave the client's data unread: a request not read whole
    /// (not a tunnel, whose end is the client's), or an early answer, and no EOF yet.
    fn may_have_unread(&self) -> bool {
        let partial = !matches!(self.budget, Budget::Unlimited) && !self.request_done();
        (partial || self.answered_early || !self.rbuf.is_empty()) && !self.eof
    }

    /// The bytes held (read from the client, not handed on).
    pub fn held(&self) -> &[u8] {
        &self.rbuf
    }

    /// Drops the first `n` held bytes (a PROXY header, a head being replaced).
    pub fn consume(&mut self, n: usize) {
        self.rbuf.advance(n.min(self.rbuf.len()));
    }

    /// Reads more from the client into the held bytes: the number read (0 at EOF).
    pub async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.eof {
            return Poll::Ready(Ok(0));
        }
        if self.rbuf.capacity() == 0 {
            // Idle: wait with a buffer on the stack, so a waiting connection holds none.
            let mut first = [0u8; 1024];
            let mut buf = ReadBuf::new(&mut first);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf))?;
            let n = buf.filled().len();
            self.eof = n == 0;
            if n > 0 {
                self.rbuf = BytesMut::with_capacity(n.max(2048));
                self.rbuf.extend_from_slice(buf.filled());
            }
            return Poll::Ready(Ok(n));
        }
        if self.rbuf.capacity() - self.rbuf.len() < 512 {
            // An empty buffer is reused from its start (no allocation); a partial request grows it.
            let more = if self.rbuf.is_empty() { 2048 } else { READ_CHUNK };
            self.rbuf.reserve(more);
        }
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.inner),
            cx,
            &mut self.rbuf
        ))?;
        self.eof = n == 0;
        Poll::Ready(Ok(n))
    }

    /// Starts a request: its checked `head` replaces the `raw_len` bytes it was parsed from,
    /// and `framing` says how much body follows.
    pub fn begin(&mut self, raw_len: usize, head: &[u8], framing: &Framing) {
        // Most heads arrive canonical already: then they stay where they are.
        if self.rbuf.get(..raw_len) != Some(head) {
            self.consume(raw_len);
            let mut next = BytesMut::with_capacity(head.len() + self.rbuf.len());
            next.extend_from_slice(head);
            next.extend_from_slice(&self.rbuf);
            self.rbuf = next;
        }
        let head = head.len() as u64;
        self.budget = match framing {
            Framing::None => Budget::Bytes(head),
            Framing::Length(n) => Budget::Bytes(head.saturating_add(*n)),
            Framing::Chunked => Budget::Chunked {
                framer: Chunked::new(),
                scanned: head as usize,
            },
        };
        self.flush_each.store(false, Ordering::Relaxed);
    }

    /// From now on everything passes through (HTTP/2, a tunnel).
    pub fn pass_through(&mut self) {
        self.budget = Budget::Unlimited;
    }

    /// Whether the current request was handed on whole (so the connection can take another).
    pub fn request_done(&self) -> bool {
        match &self.budget {
            Budget::Bytes(n) => *n == 0,
            Budget::Chunked { framer, scanned } => framer.is_done() && *scanned == 0,
            Budget::Unlimited => false,
        }
    }

    /// After a request: gives back buffer memory beyond what the next request usually needs
    /// (a connection that stays idle gives back the rest when it is parked, or [`Conn::shed`]s it).
    pub fn idle(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > KEEP_BETWEEN_REQUESTS {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > KEEP_BETWEEN_REQUESTS {
            self.wbuf = Vec::new();
        }
    }

    /// Before a long idle wait: gives back every buffer that holds nothing.
    pub fn shed(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.is_empty() {
            self.wbuf = Vec::new();
        }
    }

    /// What the [`Lot`](super::park::Lot) needs to park this connection, if it can be: a
    /// plaintext TCP connection with nothing held in either direction.
    pub fn parts_to_park(&self) -> Option<(RawFd, Addrs)> {
        let quiet = self.rbuf.is_empty() && self.wbuf.is_empty() && !self.eof;
        if !quiet || matches!(self.budget, Budget::Unlimited) || self.inner.get_ssl_digest().is_some() {
            return None;
        }
        let digest = self.inner.get_socket_digest()?;
        let local = *digest.local_addr()?.as_inet()?;
        let addrs = Addrs {
            peer: digest.peer_addr().and_then(|a| a.as_inet().copied()),
            local: Some(local),
            client: self
                .socket_digest
                .as_ref()
                .and_then(|d| d.peer_addr()?.as_inet().copied()),
        };
        Some((self.inner.id(), addrs))
    }

    /// Marks the current request as the connection's last.
    pub fn set_last(&self, last: bool) {
        self.last.store(last, Ordering::Relaxed);
    }

    /// Whether the current request is the connection's last.
    pub fn is_last(&self) -> bool {
        self.last.load(Ordering::Relaxed)
    }

    /// Makes every write go out at once (a streaming response body), or not.
    pub fn set_flush_each(&self, on: bool) {
        self.flush_each.store(on, Ordering::Relaxed);
    }

    /// The connection was upgraded (101): from now on no framing, and no write waits.
    pub fn set_tunnel(&self) {
        self.tunnel.store(true, Ordering::Relaxed);
        self.flush_each.store(true, Ordering::Relaxed);
    }

    /// Replaces the client address seen by everything above (the PROXY protocol's source).
    pub fn set_client(&mut self, addr: std::net::SocketAddr) {
        let digest = SocketDigest::from_raw_fd(self.inner.id());
        let _ = digest
            .peer_addr
            .set(Some(pingora_core::protocols::l4::socket::SocketAddr::Inet(addr)));
        self.socket_digest = Some(Arc::new(digest));
    }

    /// Writes `bytes` (an answer lb makes itself) and flushes.
    pub async fn write_all_now(&mut self, bytes: &[u8]) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.set_flush_each(true);
        self.write_all(bytes).await?;
        self.flush().await
    }

    /// How many held bytes the HTTP layer may read now (scanning a chunked body as needed).
    fn readable(&mut self) -> Result<usize, io::Error> {
        if self.tunnel.load(Ordering::Relaxed) {
            self.budget = Budget::Unlimited;
        }
        match &mut self.budget {
            Budget::Unlimited => Ok(self.rbuf.len()),
            Budget::Bytes(n) => Ok(self.rbuf.len().min(usize::try_from(*n).unwrap_or(usize::MAX))),
            Budget::Chunked { framer, scanned } => {
                if !framer.is_done() && *scanned < self.rbuf.len() {
                    let (used, _) = framer
                        .advance(&self.rbuf[*scanned..])
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunked body: {e:?}")))?;
                    *scanned += used;
                }
                Ok(*scanned)
            }
        }
    }

    fn handed_on(&mut self, n: usize) {
        self.rbuf.advance(n);
        match &mut self.budget {
            Budget::Bytes(left) => *left -= n as u64,
            Budget::Chunked { scanned, .. } => *scanned -= n,
            Budget::Unlimited => {}
        }
    }

    /// Writes out the pending small writes.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wbuf.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.wbuf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wbuf.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            let readable = this.readable()?;
            if readable > 0 {
                let n = readable.min(out.remaining());
                out.put_slice(&this.rbuf[..n]);
                this.handed_on(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            // Between requests (or past a body): read ahead to notice a client that goes away,
            // but hand nothing on; once enough is held, stop reading.
            let at_boundary = matches!(this.budget, Budget::Bytes(0))
                || matches!(&this.budget, Budget::Chunked { framer, .. } if framer.is_done());
            if at_boundary && this.rbuf.len() >= HOLD_MAX {
                return Poll::Pending;
            }
            ready!(this.poll_fill(cx))?;
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.flush_each.load(Ordering::Relaxed) {
            // One write for what is pending and `buf`, now.
            loop {
                if this.wbuf.is_empty() {
                    return Pin::new(&mut this.inner).poll_write(cx, buf);
                }
                let parts = [IoSlice::new(&this.wbuf), IoSlice::new(buf)];
                let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, &parts))?;
                let pending = this.wbuf.len();
                if n >= pending {
                    this.wbuf.clear();
                    return Poll::Ready(Ok(n - pending));
                }
                this.wbuf.drain(..n);
            }
        }
        if this.wbuf.len() + buf.len() > COMBINE {
            ready!(this.poll_drain(cx))?;
            if buf.len() > COMBINE {
                return Pin::new(&mut this.inner).poll_write(cx, buf);
            }
        }
        this.wbuf.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Conn {
    async fn shutdown(&mut self) {
        let _ = std::future::poll_fn(|cx| self.poll_drain(cx)).await;
        Shutdown::shutdown(&mut *self.inner).await
    }
}

impl UniqueID for Conn {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Conn {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Conn {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Conn {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for Conn {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.socket_digest.clone().or_else(|| self.inner.get_socket_digest())
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.socket_digest = Some(Arc::new(digest));
    }
}

#[async_trait]
impl Peek for Conn {
    /// Fills `buf` from the held bytes (reading more as needed) without consuming them: how
    /// Pingora looks for the h2c preface.
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        while self.rbuf.len() < buf.len() {
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        buf.copy_from_slice(&self.rbuf[..buf.len()]);
        Ok(true)
    }
}

impl Drop for Conn {
    /// A connection closed while the client may still be sending lingers (in a task of its
    /// own), so a reset does not destroy the answer in flight.
    fn drop(&mut self) {
        let Some(bounds) = self.linger else { return };
        if !self.may_have_unread() {
            return;
        }
        let inner = std::mem::replace(&mut self.inner, Box::new(io::Cursor::new(Vec::new())));
        linger::close(inner, std::mem::take(&mut self.wbuf), bounds);
    }
}

/// The front's connection under a proxied session, if the session runs on one.
pub fn of(session: &pingora_core::protocols::http::ServerSession) -> Option<&Conn> {
    session.stream()?.as_any().downcast_ref::<Conn>()
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
