//! Strict HTTP/1.x request-head parsing (RFC 9112 §2–§7, RFC 9110 §5, §7.2, §8.6): finds where a request
//! head ends in a client's bytes, refuses anything ambiguous, reports framing, persistence and host, and
//! rebuilds the head canonically for the proxy's HTTP parser; it reads no body (see `chunked`) and routes
//! nothing.
//!
//! `parse` is stateless: call it again on the whole buffer when more bytes arrive. It answers
//! `Incomplete` only while every byte seen so far can still begin a valid head within the limits, so a
//! slow client cannot hold a connection open with an invalid or oversized prefix.

mod fields;
mod line;

use fields::{scan_fields, Fields};
use line::{classify, request_line, skip_empty_lines, trim_ows, RequestLine, Target};
pub(crate) use line::{is_tchar, is_token};
use std::fmt;

/// Most header fields a head may carry; one more is refused with 431.
pub const MAX_FIELDS: usize = 100;

/// Most empty lines (CRLF) skipped before a request line (RFC 9112 §2.2); one more is refused with 400.
pub const MAX_EMPTY_LINES: usize = 4;

/// Size limits of a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line in bytes, its CRLF excluded; a longer one is refused with 414. Default 8192.
    pub max_request_line: usize,
    /// Longest head in bytes, from the request line to the final empty line included (leading empty lines
    /// excluded); a longer one is refused with 431. Default 65536.
    pub max_head: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8192,
            max_head: 65536,
        }
    }
}

/// Why a head is not (yet) accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// More bytes are needed (the head is not complete yet, and no limit is exceeded so far).
    Incomplete,
    /// The request is refused: status (400, 414, 417, 431, 501, 505) and a short reason for the log.
    Reject(u16, &'static str),
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Incomplete => f.write_str("incomplete request head"),
            HeadError::Reject(status, reason) => write!(f, "{status}: {reason}"),
        }
    }
}

impl std::error::Error for HeadError {}

/// The form of a request-target (RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`.
    Origin,
    /// `http://authority/path?query` (scheme `http` or `https`).
    Absolute,
    /// `host:port`, with CONNECT only.
    Authority,
    /// `*`, with OPTIONS only.
    Asterisk,
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// A body of exactly this many bytes (Content-Length).
    Length(u64),
    /// A chunked body (Transfer-Encoding ending in `chunked`).
    Chunked,
}

/// A complete, valid request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Bytes of `buf` taken by the head, leading empty lines and the final empty line included.
    pub len: usize,
    /// Where the method (a token, case kept) is in the buffer parsed.
    pub method: std::ops::Range<usize>,
    /// The HTTP minor version: 0, or 1 for HTTP/1.1 and any higher HTTP/1.x.
    pub minor: u8,
    /// The form of the request-target as received.
    pub form: TargetForm,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection closes after this exchange: `Connection: close`, or HTTP/1.0 without
    /// `Connection: keep-alive`.
    pub close: bool,
    /// Whether the request asks for a protocol upgrade: HTTP/1.1, an `Upgrade` field naming a protocol, and
    /// `upgrade` among the Connection options.
    pub upgrade: bool,
    /// Whether an HTTP/1.1 request carries `Expect: 100-continue`.
    pub expect_continue: bool,
    /// The head as the proxy forwards it to its HTTP parser: request line rebuilt as
    /// `method SP origin-form-target SP HTTP/1.<minor>` CRLF (absolute-form turned into origin-form: path,
    /// or "/" when empty, plus query; `*` for OPTIONS with an empty path and no query; asterisk and
    /// authority forms kept), then every header line as received (name and trimmed value, joined by
    /// ": "), except that for an absolute-form request the Host field(s) are replaced by one
    /// `Host: <authority of the target>`, placed first; then CRLF.
    pub canonical: Vec<u8>,
    /// Where the Host the request is for is in the buffer parsed (authority of an absolute-form
    /// target, else the Host field; `None` for HTTP/1.0 without Host or with an empty one), as
    /// received.
    pub host: Option<std::ops::Range<usize>>,
}

/// Parses and validates the request head at the start of `buf`, which may hold more bytes after it (body,
/// pipelined requests).
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Head, HeadError> {
    let start = skip_empty_lines(buf)?;
    let head_limit = start.saturating_add(limits.max_head);
    let over = |e: HeadError| match e {
        HeadError::Incomplete if buf.len() > head_limit => too_large("request head too large"),
        e => e,
    };
    let line = request_line(buf, start, limits.max_request_line).map_err(over)?;
    let target = classify(line.method, line.target)?;
    let window = &buf[..buf.len().min(head_limit)];
    let mut fields = Fields::new(line.minor);
    let end = scan_fields(window, line.next, &mut fields).map_err(over)?;
    let host = fields.host_for(&target)?;
    let framing = fields.framing()?;
    Ok(Head {
        len: end,
        method: range_in(buf, line.method),
        minor: line.minor,
        form: target.form,
        framing,
        close: fields.close || (line.minor == 0 && !fields.keep_alive),
        upgrade: line.minor == 1 && fields.upgrade && fields.connection_upgrade,
        expect_continue: line.minor == 1 && fields.expect_continue,
        canonical: canonical(buf, &line, &target, end, fields.count),
        host: host.map(|host| range_in(buf, host)),
    })
}

/// A 400 with `reason`.
fn bad(reason: &'static str) -> HeadError {
    HeadError::Reject(400, reason)
}

/// A 431 with `reason`.
fn too_large(reason: &'static str) -> HeadError {
    HeadError::Reject(431, reason)
}

/// Where `part` (a slice of `buf`) is in `buf`.
fn range_in(buf: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    debug_assert!(buf.as_ptr_range().start <= part.as_ptr() && part.as_ptr_range().end <= buf.as_ptr_range().end);
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    start..start + part.len()
}

// ---------------------------------------------------------------------------------------------------------
// Canonical head

/// Builds [`Head::canonical`] from a validated head ending at `end` with `count` fields, in one allocation.
fn canonical(buf: &[u8], line: &RequestLine<'_>, target: &Target<'_>, end: usize, count: usize) -> Vec<u8> {
    let host_len = target.authority.map_or(0, |a| a.len() + 8);
    // Never shorter than needed: the origin-form target is never longer than the received one plus one
    // byte, and each field line grows by at most one byte (the space after the colon).
    let mut out = Vec::with_capacity(end - line.start + host_len + count + 1);
    out.extend_from_slice(line.method);
    out.push(b' ');
    out.extend_from_slice(target.prefix);
    out.extend_from_slice(target.rest);
    out.extend_from_slice(b" HTTP/1.");
    out.push(b'0' + line.minor);
    out.extend_from_slice(b"\r\n");
    if let Some(authority) = target.authority {
        push_field(&mut out, b"Host", authority);
    }
    let block = buf.get(line.next..end.saturating_sub(2)).unwrap_or_default();
    for (name, value) in ValidFields(block) {
        if target.authority.is_none() || !name.eq_ignore_ascii_case(b"host") {
            push_field(&mut out, name, value);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Appends `name: value` CRLF.
fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The (name, trimmed value) pairs of an already validated field section without its final empty line.
struct ValidFields<'a>(&'a [u8]);

impl<'a> Iterator for ValidFields<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let cr = self.0.iter().position(|&b| b == b'\r')?;
        let line = &self.0[..cr];
        self.0 = self.0.get(cr + 2..).unwrap_or_default();
        let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
        let (name, value) = line.split_at(colon);
        Some((name, trim_ows(value.get(1..).unwrap_or_default())))
    }
}

#[cfg(test)]
mod tests;
