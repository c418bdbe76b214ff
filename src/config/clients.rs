//! The `clients:` section: the limits and timeouts every client connection gets, HTTP/1 and
//! HTTP/2, with nginx's and HAProxy's defaults where they have one. Enforcing them is
//! `request::front`'s job.

use super::{Dur, Size};
use serde::Deserialize;
use std::time::Duration;

/// Default time a client has to send a whole request head (nginx's `client_header_timeout`).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// Default idle time between requests on a keep-alive connection (nginx's `keepalive_timeout`).
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// Default time for each read of a request body (nginx's `client_body_timeout`).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default longest request line (nginx's `large_client_header_buffers` buffer size); beyond: 414.
pub const DEFAULT_MAX_REQUEST_LINE: u64 = 8 << 10;
/// Default longest request head, request line included (nginx's 4 × 8 KiB); beyond: 431.
pub const DEFAULT_MAX_HEADER_SIZE: u64 = 32 << 10;
/// Default largest request body (nginx's `client_max_body_size`); beyond: 413.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 1 << 20;
/// Default requests served over one connection (nginx's `keepalive_requests`).
pub const DEFAULT_KEEPALIVE_REQUESTS: usize = 1000;
/// Default longest lingering close (nginx's `lingering_time`).
pub const DEFAULT_LINGERING_TIME: Duration = Duration::from_secs(30);
/// Default longest wait for more data while lingering (nginx's `lingering_timeout`).
pub const DEFAULT_LINGERING_TIMEOUT: Duration = Duration::from_secs(5);
/// Default most bytes read and discarded while lingering.
pub const DEFAULT_LINGERING_SIZE: u64 = 64 << 20;

/// Default time for a TLS handshake, from the connection (and its PROXY header) to the end of
/// the handshake; nginx's `ssl_handshake_timeout` is 60s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time for each write to a client that does not read (nginx's `send_timeout`).
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Default slowest request body, in bytes per second beyond `body_timeout` (Apache's
/// `mod_reqtimeout` `MinRate=500`).
pub const DEFAULT_BODY_MIN_RATE: u64 = 500;

/// Limits and timeouts of client connections (`clients:`), with nginx's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConf {
    /// Time to receive a whole request head, from its first byte (from the connection for the
    /// first request): slow clients are cut off (408 in the access log). Default `60s`.
    pub header_timeout: Dur,
    /// Idle time allowed between requests on a keep-alive connection. Default `75s`.
    pub keepalive_timeout: Dur,
    /// Requests served over one connection before it is closed. Default 1000.
    pub keepalive_requests: usize,
    /// Time for each read of a request body (then 408). Default `60s`.
    pub body_timeout: Dur,
    /// Longest request line (then 414). Default `8KiB`.
    pub max_request_line: Size,
    /// Longest request head, request line and header fields together (then 431). Default
    /// `32KiB`.
    pub max_header_size: Size,
    /// Largest request body (then 413); `0` for no limit. Default `1MiB`.
    pub max_body_size: Size,
    /// When lb answers before it has read the whole request (413, 4xx, 429, 503...), how long
    /// it keeps reading and discarding what the client still sends before it closes, so a reset
    /// does not destroy the answer (nginx's `lingering_time`); `0s` closes at once. Default
    /// `30s`.
    pub lingering_time: Dur,
    /// While lingering, the longest wait for more data (nginx's `lingering_timeout`). Default
    /// `5s`.
    pub lingering_timeout: Dur,
    /// While lingering, the most bytes read and discarded. Default `64MiB`.
    pub lingering_size: Size,
    /// Time for a TLS handshake, PROXY header included; a handshake that stalls is cut off.
    /// Default `10s` (nginx's `ssl_handshake_timeout` is 60s).
    pub handshake_timeout: Dur,
    /// Time for each write to a client that stopped reading (an HTTP/1 socket that stays full,
    /// an HTTP/2 stream whose window never opens): then the request ends and its backend
    /// connection is released. Default `60s` (nginx's `send_timeout`).
    pub send_timeout: Dur,
    /// Slowest request body, in bytes per second: the whole body must arrive within
    /// `body_timeout` plus one second for every `body_min_rate` bytes received (Apache's
    /// `mod_reqtimeout`), so a body that drips cannot hold a connection for days; `0` for no
    /// such limit. Default `500`.
    pub body_min_rate: Size,
    /// HTTP/2 connections' limits.
    pub http2: Http2Conf,
}

impl Default for ClientConf {
    fn default() -> Self {
        ClientConf {
            header_timeout: Dur(DEFAULT_HEADER_TIMEOUT),
            keepalive_timeout: Dur(DEFAULT_KEEPALIVE_TIMEOUT),
            keepalive_requests: DEFAULT_KEEPALIVE_REQUESTS,
            body_timeout: Dur(DEFAULT_BODY_TIMEOUT),
            max_request_line: Size(DEFAULT_MAX_REQUEST_LINE),
            max_header_size: Size(DEFAULT_MAX_HEADER_SIZE),
            max_body_size: Size(DEFAULT_MAX_BODY_SIZE),
            lingering_time: Dur(DEFAULT_LINGERING_TIME),
            lingering_timeout: Dur(DEFAULT_LINGERING_TIMEOUT),
            lingering_size: Size(DEFAULT_LINGERING_SIZE),
            handshake_timeout: Dur(DEFAULT_HANDSHAKE_TIMEOUT),
            send_timeout: Dur(DEFAULT_SEND_TIMEOUT),
            body_min_rate: Size(DEFAULT_BODY_MIN_RATE),
            http2: Http2Conf::default(),
        }
    }
}

impl ClientConf {
    /// Checks what serde cannot: `Err((field, problem))`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (field, d) in [
            ("header_timeout", self.header_timeout),
            ("keepalive_timeout", self.keepalive_timeout),
            ("body_timeout", self.body_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("send_timeout", self.send_timeout),
        ] {
            if d.0.is_zero() {
                return Err((field, "must be longer than 0".into()));
            }
        }
        if self.lingering_timeout.0.is_zero() && !self.lingering_time.0.is_zero() {
            return Err((
                "lingering_timeout",
                "must be longer than 0 (turn lingering off with lingering_time: 0s)".into(),
            ));
        }
        if self.keepalive_requests == 0 {
            return Err(("keepalive_requests", "must be at least 1".into()));
        }
        if self.max_request_line.0 < 64 {
            return Err(("max_request_line", "must be at least 64B".into()));
        }
        if self.max_header_size.0 < self.max_request_line.0 {
            return Err(("max_header_size", "must be at least max_request_line".into()));
        }
        self.http2.check()
    }
}

/// Default most streams open at once on one HTTP/2 connection (HAProxy's
/// `tune.h2.max-concurrent-streams`; nginx's `http2_max_concurrent_streams` is 128).
pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Default largest decoded header list of an HTTP/2 request (nginx's 4 × 8 KiB, as HTTP/1).
pub const DEFAULT_H2_MAX_HEADER_LIST_SIZE: u64 = 32 << 10;
/// Default size of the HPACK table lb keeps for a client (HAProxy's `tune.h2.header-table-size`).
pub const DEFAULT_H2_HEADER_TABLE_SIZE: u64 = 4 << 10;
/// Default streams a client may reset before lb takes them up (the rapid-reset attack), at once.
pub const DEFAULT_H2_MAX_PENDING_RESETS: usize = 20;
/// Default streams lb may have to reset because the client broke the protocol on them.
pub const DEFAULT_H2_MAX_ERROR_RESETS: usize = 100;
/// Default frames that carry no request and no body, per second (HAProxy's glitches).
pub const DEFAULT_H2_MAX_CONTROL_FRAMES: u32 = 200;

/// Limits of HTTP/2 client connections (`clients.http2:`), each refused as HAProxy's `tune.h2.*`
/// and nginx's `http2_*` do; every refusal is counted (`lb_http2_errors_total`,
/// `lb_client_rejections_total`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http2Conf {
    /// Streams open at once on one connection (`SETTINGS_MAX_CONCURRENT_STREAMS`); more are
    /// refused (`RST_STREAM REFUSED_STREAM`). Default 100.
    pub max_concurrent_streams: u32,
    /// Largest decoded header list of a request (`SETTINGS_MAX_HEADER_LIST_SIZE`, 32 bytes
    /// counted per field as RFC 9113 does); beyond, 431. Default `32KiB`.
    pub max_header_list_size: Size,
    /// The HPACK table lb keeps for a client's headers (`SETTINGS_HEADER_TABLE_SIZE`); a client
    /// that tries to grow it further breaks the connection (`COMPRESSION_ERROR`). Default `4KiB`.
    pub header_table_size: Size,
    /// Streams the client resets before lb took them up (rapid reset, CVE-2023-44487), waiting at
    /// once; beyond, the connection ends with `GOAWAY ENHANCE_YOUR_CALM`. Default 20.
    pub max_pending_resets: usize,
    /// Streams lb resets because the client broke the protocol on them, per connection; beyond,
    /// `GOAWAY ENHANCE_YOUR_CALM`. Default 100.
    pub max_error_resets: usize,
    /// Frames that carry no request and no body (SETTINGS, PING, PRIORITY, RST_STREAM,
    /// WINDOW_UPDATE, empty DATA, HEADERS or CONTINUATION, unknown types) a connection may send
    /// per second on average, with a burst of ten seconds' worth and one more WINDOW_UPDATE per
    /// KiB lb sends it; beyond, the connection is closed (SETTINGS, PING and WINDOW_UPDATE floods,
    /// HAProxy's "glitches"). Default 200.
    pub max_control_frames: u32,
}

impl Default for Http2Conf {
    fn default() -> Self {
        Http2Conf {
            max_concurrent_streams: DEFAULT_H2_MAX_CONCURRENT_STREAMS,
            max_header_list_size: Size(DEFAULT_H2_MAX_HEADER_LIST_SIZE),
            header_table_size: Size(DEFAULT_H2_HEADER_TABLE_SIZE),
            max_pending_resets: DEFAULT_H2_MAX_PENDING_RESETS,
            max_error_resets: DEFAULT_H2_MAX_ERROR_RESETS,
            max_control_frames: DEFAULT_H2_MAX_CONTROL_FRAMES,
        }
    }
}

impl Http2Conf {
    /// Checks the ranges HTTP/2 allows: `Err((field, problem))`.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=(i32::MAX as u32)).contains(&self.max_concurrent_streams) {
            return Err(("http2.max_concurrent_streams", "must be from 1 to 2147483647".into()));
        }
        if !(1 << 10..=16 << 20).contains(&self.max_header_list_size.0) {
            return Err(("http2.max_header_list_size", "must be from 1KiB to 16MiB".into()));
        }
        if self.header_table_size.0 > 1 << 20 {
            return Err(("http2.header_table_size", "must be at most 1MiB".into()));
        }
        if self.max_pending_resets == 0 {
            return Err(("http2.max_pending_resets", "must be at least 1".into()));
        }
        if self.max_control_frames == 0 {
            return Err(("http2.max_control_frames", "must be at least 1".into()));
        }
        Ok(())
    }
}
