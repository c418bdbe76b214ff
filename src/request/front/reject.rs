//! The answers the front gives itself, before anything is forwarded: a malformed, oversized or
//! too slow request head (400, 408, 413, 414, 417, 431, 501, 505), a full listener (503). Each is
//! a short `text/plain` body with `Connection: close`, logged and counted.

use super::conn::Conn;
use crate::request::access_log::{AccessLog, Entry};
use http::StatusCode;
use pingora_core::protocols::GetSocketDigest;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a 413 says, whichever layer finds the body too large (the front from the head, the
/// proxy from a declared length or the body as it comes).
pub(crate) const TOO_LARGE: &str = "the request body is larger than clients.max_body_size";

/// Statuses the front answers with, for the metrics.
pub const STATUSES: [u16; 10] = [400, 408, 413, 414, 417, 429, 431, 501, 503, 505];

/// Requests and connections the front refused, by status; HTTP/1 requests by the loop that
/// proxied them.
#[derive(Default)]
pub struct FrontStats {
    refused: [AtomicU64; STATUSES.len()],
    /// Requests proxied by lb's own loop, and handed to Pingora's `HttpProxy`.
    paths: [AtomicU64; 2],
}

/// Which loop proxied an HTTP/1 request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// lb's own (`proxy::direct`).
    Lb = 0,
    /// Pingora's `HttpProxy`.
    Pingora = 1,
}

impl FrontStats {
    /// Counts one HTTP/1 request proxied by `path`.
    pub fn proxied(&self, path: Path) {
        self.paths[path as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// HTTP/1 requests so far by lb's own loop and by Pingora's.
    pub fn paths(&self) -> [(&'static str, u64); 2] {
        let n = |path: Path| self.paths[path as usize].load(Ordering::Relaxed);
        [("lb", n(Path::Lb)), ("pingora", n(Path::Pingora))]
    }

    /// Counts one refusal with `status`.
    pub fn count(&self, status: u16) {
        if let Some(i) = STATUSES.iter().position(|s| *s == status) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Refusals so far, by status.
    pub fn counts(&self) -> Vec<(u16, u64)> {
        STATUSES
            .iter()
            .zip(&self.refused)
            .map(|(s, n)| (*s, n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// A refusal: status and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status sent.
    pub status: u16,
    /// Why, in the body and the log.
    pub why: &'static str,
}

impl Refusal {
    /// A refusal with `status` because of `why`.
    pub fn new(status: u16, why: &'static str) -> Self {
        Refusal { status, why }
    }

    /// The whole response.
    pub fn response(&self) -> Vec<u8> {
        let reason = StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        let body = format!("{} {reason}: {}\n", self.status, self.why);
        format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
            self.status,
            body.len()
        )
        .into_bytes()
    }
}

/// The request line of what `conn` holds, when it looks like one (for the log).
fn request_line(conn: &Conn) -> Option<(&str, &str, &str)> {
    let held = conn.held();
    let end = held.iter().take(2048).position(|&b| b == b'\r' || b == b'\n')?;
    let line = std::str::from_utf8(&held[..end]).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    (parts.next().is_none() && printable(method) && printable(target) && printable(version))
        .then_some((method, target, version))
}

/// Writes the access log line of a refused request.
pub fn log(log: &AccessLog, conn: &Conn, refusal: &Refusal) {
    let (method, target, version) = request_line(conn).unwrap_or(("-", "-", "-"));
    let client = conn
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet().map(|a| a.ip())));
    log.record(&Entry {
        client,
        method,
        target: target.as_bytes(),
        version,
        status: refusal.status,
        ..Entry::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_complete_and_close() {
        let text = String::from_utf8(Refusal::new(431, "too big").response()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{text}"
        );
        assert!(text.contains("Connection: close\r\n"));
        let body = "431 Request Header Fields Too Large: too big\n";
        assert!(text.ends_with(&format!("Connection: close\r\n\r\n{body}")), "{text}");
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())), "{text}");
    }

    #[test]
    fn stats_count_known_statuses() {
        let s = FrontStats::default();
        s.count(400);
        s.count(400);
        s.count(999);
        assert!(s.counts().contains(&(400, 2)));
    }
}
