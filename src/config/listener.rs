//! The `listeners:` entries and the `clients:` section: where clients connect (plain or TLS with
//! certificates chosen by SNI, HTTP/2 by ALPN or h2c, the PROXY protocol, a connection cap) and
//! the limits and timeouts every client connection gets. Serving them is `request::front`'s job.

use super::{Addr, Dur, Size};
use serde::Deserialize;
use std::time::Duration;

/// Default cap on open client connections per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
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

fn yes() -> bool {
    true
}

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

/// One listening address.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// `IP:port`, e.g. `0.0.0.0:8080`.
    pub address: Addr,
    /// TLS: certificates chosen by SNI, HTTP/2 and HTTP/1.1 by ALPN. Default: plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsConf>,
    /// Plain listeners: accept HTTP/2 with prior knowledge (h2c) beside HTTP/1.1. Default `false`.
    #[serde(default)]
    pub h2c: bool,
    /// Expect a PROXY protocol header (v1 or v2) before each connection's data, as sent by an L4
    /// load balancer (HAProxy, AWS NLB...). Default `false`.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Most client connections open at once; more are refused (503 on plain HTTP/1, closed
    /// otherwise). Default 10000.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Listener {
    /// A plain HTTP listener on `address` with the defaults.
    pub fn plain(address: Addr) -> Self {
        Listener {
            address,
            tls: None,
            h2c: false,
            proxy_protocol: false,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// TLS on a listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConf {
    /// Certificates with their keys (PEM files). The one whose names match the client's SNI is
    /// used; the first is the default. Files replaced on disk are picked up within seconds.
    pub certificates: Vec<CertPair>,
    /// Offer HTTP/2 by ALPN (`h2`, then `http/1.1`). Default `true`.
    #[serde(default = "yes")]
    pub http2: bool,
}

/// A certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertPair {
    /// PEM file: the certificate, then its intermediates.
    pub cert: String,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}

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
        Ok(())
    }
}
