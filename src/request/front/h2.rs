//! HTTP/2 client connections as the front hands them to Pingora's HTTP/2 server: a [`Stream`]
//! that watches the frames going both ways without changing a byte. Inbound, the frames that
//! carry no request and no body count against a per-connection budget
//! (`clients.http2.max_control_frames`), and a client that floods is cut off; outbound, the
//! errors lb's HTTP/2 server sends (GOAWAY and RST_STREAM, by code) are counted. What the `h2`
//! server limits itself (streams, header lists, the HPACK table, rapid resets) is set in
//! [`options`].

use super::hostile::{self, ErrorFrame, Reason};
use crate::config::Http2Conf;
use async_trait::async_trait;
use pingora_core::protocols::http::v2::server::{default_h2_options, H2Options};
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream, TimingDigest,
    UniqueID, UniqueIDType, ALPN,
};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface's magic (RFC 9113 §3.4), before its first SETTINGS frame.
const PREFACE_LEN: usize = 24;
/// Length of a frame header (RFC 9113 §4.1).
const HEAD_LEN: usize = 9;
/// The budget holds this many seconds' worth of frames.
const BURST_SECONDS: i64 = 10;
/// Bytes lb sends that earn the client one more frame.
const CREDIT_BYTES: usize = 1024;

/// The `h2` server's settings for client connections, from `clients.http2` (Pingora's bounded
/// defaults first).
pub fn options(conf: &Http2Conf) -> H2Options {
    let mut options = default_h2_options();
    let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    options
        .max_concurrent_streams(conf.max_concurrent_streams)
        .max_header_list_size(clamp(conf.max_header_list_size.0))
        .header_table_size(clamp(conf.header_table_size.0))
        .max_pending_accept_reset_streams(conf.max_pending_resets)
        .max_local_error_reset_streams(Some(conf.max_error_resets));
    options
}

/// Frames a client may send without a request or a body: a token bucket refilled with time and
/// with what lb sends (a client reading a large response sends WINDOW_UPDATEs in proportion).
#[derive(Debug)]
struct Budget {
    /// Frames per second.
    rate: i64,
    /// Thousandths of a frame left.
    milli: i64,
    /// When it was last refilled, on [`crate::clock::mono_ns`].
    at_ns: u64,
    /// Bytes sent not yet turned into credit.
    sent: usize,
}

impl Budget {
    fn new(rate: u32, now_ns: u64) -> Self {
        let rate = i64::from(rate.max(1));
        Budget {
            rate,
            milli: rate * BURST_SECONDS * 1000,
            at_ns: now_ns,
            sent: 0,
        }
    }

    fn cap(&self) -> i64 {
        self.rate * BURST_SECONDS * 1000
    }

    /// Takes one frame at `now_ns`; false once the budget is spent.
    fn spend(&mut self, now_ns: u64) -> bool {
        let elapsed = i64::try_from(now_ns.saturating_sub(self.at_ns) / 1_000).unwrap_or(i64::MAX);
        self.at_ns = now_ns;
        // Microseconds × frames per second / 1000 = thousandths of a frame.
        let refill = elapsed.saturating_mul(self.rate) / 1000;
        self.milli = self.milli.saturating_add(refill).min(self.cap()) - 1000;
        self.milli >= 0
    }

    /// lb sent `n` bytes to the client.
    fn credit(&mut self, n: usize) {
        self.sent += n;
        if self.sent >= CREDIT_BYTES {
            let frames = i64::try_from(self.sent / CREDIT_BYTES).unwrap_or(i64::MAX);
            self.sent %= CREDIT_BYTES;
            self.milli = self.milli.saturating_add(frames.saturating_mul(1000)).min(self.cap());
        }
    }
}

/// A frame header's fields that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHead {
    len: u32,
    kind: u8,
    flags: u8,
}

impl FrameHead {
    fn parse(b: &[u8; HEAD_LEN]) -> Self {
        FrameHead {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
        }
    }

    /// Whether the frame carries no request and no body (RFC 9113 §6: DATA 0, HEADERS 1,
    /// CONTINUATION 9; END_STREAM 0x1, END_HEADERS 0x4).
    fn is_control(self) -> bool {
        match self.kind {
            0 | 1 => self.len == 0 && self.flags & 0x1 == 0,
            9 => self.len == 0 && self.flags & 0x4 == 0,
            _ => true,
        }
    }
}

/// Where a scan of frames stands.
#[derive(Debug)]
enum Scan {
    /// Inside the client's preface magic: this many bytes left.
    Preface(usize),
    /// Inside a frame header: the bytes so far.
    Head([u8; HEAD_LEN], usize),
    /// Inside a frame's payload.
    Payload {
        head: FrameHead,
        /// Payload bytes left.
        left: u32,
        /// The payload's first bytes (an error code is in the first 8).
        first: [u8; 8],
    },
}

impl Scan {
    /// Walks over `bytes`, calling `frame` with each frame header as it completes and `done`
    /// with each frame whose payload ended (with its first bytes).
    fn walk(
        &mut self,
        mut bytes: &[u8],
        mut frame: impl FnMut(FrameHead) -> bool,
        mut done: impl FnMut(FrameHead, &[u8; 8]),
    ) -> bool {
        while !bytes.is_empty() {
            match self {
                Scan::Preface(left) => {
                    let n = (*left).min(bytes.len());
                    bytes = &bytes[n..];
                    *left -= n;
                    if *left == 0 {
                        *self = Scan::Head([0; HEAD_LEN], 0);
                    }
                }
                Scan::Head(buf, got) => {
                    let n = (HEAD_LEN - *got).min(bytes.len());
                    buf[*got..*got + n].copy_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    *got += n;
                    if *got == HEAD_LEN {
                        let head = FrameHead::parse(buf);
                        if !frame(head) {
                            return false;
                        }
                        *self = Scan::Payload {
                            head,
                            left: head.len,
                            first: [0; 8],
                        };
                        self.end_payload(&mut done);
                    }
                }
                Scan::Payload { head, left, first } => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(bytes.len());
                    let at = (head.len - *left) as usize;
                    if at < first.len() {
                        let k = (first.len() - at).min(n);
                        first[at..at + k].copy_from_slice(&bytes[..k]);
                    }
                    bytes = &bytes[n..];
                    *left -= n as u32;
                    self.end_payload(&mut done);
                }
            }
        }
        true
    }

    /// Moves on to the next header if the current payload is over.
    fn end_payload(&mut self, done: &mut impl FnMut(FrameHead, &[u8; 8])) {
        if let Scan::Payload { head, left: 0, first } = self {
            done(*head, first);
            *self = Scan::Head([0; HEAD_LEN], 0);
        }
    }
}

/// What the client sends: frames counted against the budget.
#[derive(Debug)]
pub struct Inbound {
    scan: Scan,
    budget: Budget,
}

impl Inbound {
    /// A connection's inbound watch, allowing `max_control_frames` per second.
    pub fn new(max_control_frames: u32) -> Self {
        Inbound {
            scan: Scan::Preface(PREFACE_LEN),
            budget: Budget::new(max_control_frames, crate::clock::mono_ns()),
        }
    }

    /// Scans the client's next `bytes`; false once it floods.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        let budget = &mut self.budget;
        self.scan.walk(
            bytes,
            |head| !head.is_control() || budget.spend(crate::clock::mono_ns()),
            |_, _| {},
        )
    }
}

/// What lb sends: error frames counted.
#[derive(Debug)]
pub struct Outbound {
    scan: Scan,
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound {
            scan: Scan::Head([0; HEAD_LEN], 0),
        }
    }
}

impl Outbound {
    /// Scans lb's next `bytes` to the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.scan.walk(bytes, |_| true, count_error);
    }
}

/// Counts a GOAWAY (code after the last stream id) or RST_STREAM (code first) lb sent.
fn count_error(head: FrameHead, first: &[u8; 8]) {
    let code = |at: usize| u32::from_be_bytes([first[at], first[at + 1], first[at + 2], first[at + 3]]);
    match head.kind {
        7 if head.len >= 8 => hostile::h2_sent(ErrorFrame::GoAway, code(4)),
        3 if head.len >= 4 => hostile::h2_sent(ErrorFrame::RstStream, code(0)),
        _ => {}
    }
}

/// An HTTP/2 client connection under watch.
pub struct H2Conn {
    inner: Stream,
    inbound: Inbound,
    outbound: Outbound,
    flooded: bool,
}

impl std::fmt::Debug for H2Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Conn").field("inner", &self.inner).finish()
    }
}

impl H2Conn {
    /// Watches `inner`, allowing `max_control_frames` per second.
    pub fn new(inner: Stream, max_control_frames: u32) -> Self {
        H2Conn {
            inner,
            inbound: Inbound::new(max_control_frames),
            outbound: Outbound::default(),
            flooded: false,
        }
    }

    fn flood(&mut self) -> io::Error {
        if !std::mem::replace(&mut self.flooded, true) {
            hostile::count(Reason::ControlFlood);
            let peer = self.inner.get_socket_digest().and_then(|d| d.peer_addr().cloned());
            log::info!(
                "HTTP/2 client {} closed: more frames without requests than clients.http2.max_control_frames allows",
                peer.map_or_else(|| "?".to_string(), |p| p.to_string())
            );
        }
        io::Error::new(io::ErrorKind::InvalidData, "HTTP/2 control frame flood")
    }

    fn sent(&mut self, bufs: &[IoSlice<'_>], mut n: usize) {
        self.inbound.budget.credit(n);
        for buf in bufs {
            let k = n.min(buf.len());
            self.outbound.feed(&buf[..k]);
            n -= k;
            if n == 0 {
                break;
            }
        }
    }
}

impl AsyncRead for H2Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.flooded {
            return Poll::Ready(Err(this.flood()));
        }
        let before = out.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
        if !this.inbound.feed(&out.filled()[before..]) {
            return Poll::Ready(Err(this.flood()));
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.sent(&[IoSlice::new(buf)], n);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        this.sent(bufs, n);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for H2Conn {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.inner).await
    }
}

impl UniqueID for H2Conn {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for H2Conn {
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

impl GetTimingDigest for H2Conn {
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

impl GetProxyDigest for H2Conn {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for H2Conn {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for H2Conn {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
#[path = "h2_tests.rs"]
mod tests;
