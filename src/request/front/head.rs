//! Strict HTTP/1.x request-head parsing (RFC 9112 §2–§7, RFC 9110 §5, §7.2, §8.6): finds where a request
//! head ends in a client's bytes, refuses anything ambiguous, reports framing, persistence and host, and
//! rebuilds the head canonically for the proxy's HTTP parser; it reads no body (see `chunked`) and routes
//! nothing.
//!
//! `parse` is stateless: call it again on the whole buffer when more bytes arrive. It answers
//! `Incomplete` only while every byte seen so far can still begin a valid head within the limits, so a
//! slow client cannot hold a connection open with an invalid or oversized prefix.

use std::fmt;
use std::net::Ipv6Addr;

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
    /// Whether the head carries no field a proxy rewrites or answers besides `Host` and the
    /// framing fields: no hop-by-hop field (`Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`,
    /// `Proxy-Authorization`, `TE`, `Trailer`, `Upgrade`, `HTTP2-Settings`), no `Expect`, no
    /// `Max-Forwards`, and `Connection` with no option but `close` and `keep-alive`.
    pub plain: bool,
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
        plain: !fields.special,
        canonical: canonical(buf, &line, &target, end, fields.count),
        host: host.map(|host| range_in(buf, host)),
    })
}

/// Fields (besides those `Fields::add` looks at) that make a head not [`Head::plain`].
const SPECIAL: [&[u8]; 8] = [
    b"keep-alive",
    b"proxy-connection",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"http2-settings",
    b"max-forwards",
];

/// Whether field `name` is one of [`SPECIAL`].
fn is_special(name: &[u8]) -> bool {
    SPECIAL
        .iter()
        .any(|special| special.len() == name.len() && special.eq_ignore_ascii_case(name))
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
// Byte classes

/// `tchar` (RFC 9110 §5.6.2).
const TCHAR: u8 = 1;
/// A byte allowed in a request-target: visible ASCII but `"` `#` `<` `>` `\` `^` `` ` `` `{` `|` `}`.
const TARGET: u8 = 2;
/// A byte allowed in a field value: VCHAR, obs-text, SP, HTAB.
const VALUE: u8 = 4;
/// A byte allowed in a reg-name besides pct-encoded: unreserved and sub-delims (RFC 3986 §3.2.2).
const REG_NAME: u8 = 8;

/// The classes of every byte value.
static CLASSES: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = class_of(i as u8);
        i += 1;
    }
    table
}

const fn class_of(b: u8) -> u8 {
    let mut class = 0;
    if b.is_ascii_alphanumeric() || matches!(b, b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+') {
        class |= TCHAR;
    }
    if matches!(b, b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~') {
        class |= TCHAR;
    }
    if b.is_ascii_graphic() && !matches!(b, b'"' | b'#' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}') {
        class |= TARGET;
    }
    if b.is_ascii_graphic() || b >= 0x80 || b == b' ' || b == b'\t' {
        class |= VALUE;
    }
    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'') {
        class |= REG_NAME;
    }
    if matches!(b, b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=') {
        class |= REG_NAME;
    }
    class
}

/// Whether `b` is in `class`.
fn is(b: u8, class: u8) -> bool {
    CLASSES[usize::from(b)] & class != 0
}

/// Whether `bytes` is a token (1*tchar).
fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is(b, TCHAR))
}

/// Whether every `%` in `bytes` is followed by two hex digits; when `complete` is false, a `%` cut by the end
/// of `bytes` is accepted (more may come).
fn percent_ok(bytes: &[u8], complete: bool) -> bool {
    bytes.iter().enumerate().filter(|(_, &b)| b == b'%').all(|(i, _)| {
        let hex = |j: usize| bytes.get(j).map(u8::is_ascii_hexdigit);
        match (hex(i + 1), hex(i + 2)) {
            (Some(true), Some(true)) => true,
            (Some(true), None) | (None, None) => !complete,
            _ => false,
        }
    })
}

/// `bytes` without leading and trailing SP / HTAB.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// The non-empty elements of a comma-separated list (RFC 9110 §5.6.1), trimmed; empty ones are ignored.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows).filter(|e| !e.is_empty())
}

// ---------------------------------------------------------------------------------------------------------
// Request line

/// A complete request line.
struct RequestLine<'a> {
    /// Offset of the request line in `buf` (after any leading empty lines).
    start: usize,
    method: &'a [u8],
    target: &'a [u8],
    minor: u8,
    /// Offset just after the request line's CRLF.
    next: usize,
}

/// Skips up to [`MAX_EMPTY_LINES`] CRLFs at the start of `buf`; returns where the request line starts.
fn skip_empty_lines(buf: &[u8]) -> Result<usize, HeadError> {
    let mut pos = 0;
    let mut lines = 0;
    loop {
        match (buf.get(pos), buf.get(pos + 1)) {
            (Some(b'\r'), _) if lines == MAX_EMPTY_LINES => return Err(bad("too many empty lines before request")),
            (Some(b'\r'), Some(b'\n')) => {
                pos += 2;
                lines += 1;
            }
            (Some(b'\r'), None) => return Err(HeadError::Incomplete),
            (Some(b'\r'), Some(_)) => return Err(bad("bare CR")),
            (Some(b'\n'), _) => return Err(bad("bare LF")),
            _ => return Ok(pos),
        }
    }
}

/// Reads the request line starting at `start`, at most `max` bytes long without its CRLF.
fn request_line(buf: &[u8], start: usize, max: usize) -> Result<RequestLine<'_>, HeadError> {
    let limit = buf.len().min(start.saturating_add(max).saturating_add(1));
    let scan = buf.get(start..limit).unwrap_or_default();
    let Some(eol) = scan.iter().position(|&b| b == b'\r' || b == b'\n') else {
        split_line(scan, false)?;
        if buf.len() - start > max {
            return Err(HeadError::Reject(414, "request line too long"));
        }
        return Err(HeadError::Incomplete);
    };
    if scan[eol] == b'\n' {
        split_line(&scan[..eol], false)?;
        return Err(bad("bare LF"));
    }
    let (method, target, version) = split_line(&scan[..eol], true)?.ok_or(bad("invalid request line"))?;
    let minor = version_minor(version)?;
    match buf.get(start + eol + 1) {
        None => Err(HeadError::Incomplete),
        Some(b'\n') => Ok(RequestLine {
            start,
            method,
            target,
            minor,
            next: start + eol + 2,
        }),
        Some(_) => Err(bad("bare CR")),
    }
}

/// The method, target and version of a request line.
type Parts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// Splits a request line without its CRLF into its parts. With `complete` false, `line` is a prefix:
/// `Ok(None)` if it can still become valid.
fn split_line(line: &[u8], complete: bool) -> Result<Option<Parts<'_>>, HeadError> {
    let m = line.iter().position(|&b| !is(b, TCHAR)).unwrap_or(line.len());
    if m == line.len() {
        return if complete {
            Err(bad("request line without target"))
        } else {
            Ok(None)
        };
    }
    if m == 0 || line[m] != b' ' {
        return Err(bad("invalid method"));
    }
    let rest = &line[m + 1..];
    let t = rest.iter().position(|&b| !is(b, TARGET)).unwrap_or(rest.len());
    if t == rest.len() {
        if !percent_ok(rest, false) {
            return Err(bad("invalid percent-encoding in target"));
        }
        return if complete {
            Err(bad("missing HTTP version"))
        } else {
            Ok(None)
        };
    }
    if t == 0 || rest[t] != b' ' {
        return Err(bad("invalid request target"));
    }
    if !percent_ok(&rest[..t], true) {
        return Err(bad("invalid percent-encoding in target"));
    }
    let version = &rest[t + 1..];
    version_shape(version, complete)?;
    Ok(complete.then_some((&line[..m], &rest[..t], version)))
}

/// Checks that `v` is (a prefix of, unless `complete`) `HTTP/` DIGIT `.` DIGIT.
fn version_shape(v: &[u8], complete: bool) -> Result<(), HeadError> {
    let shape = |(i, &b): (usize, &u8)| match i {
        0..=4 => b"HTTP/".get(i) == Some(&b),
        5 | 7 => b.is_ascii_digit(),
        6 => b == b'.',
        _ => false,
    };
    if !v.iter().enumerate().all(shape) || (complete && v.len() != 8) {
        return Err(bad("invalid HTTP version"));
    }
    Ok(())
}

/// The minor version of a well-shaped version: 0, or 1 for any higher minor; 505 for a major other than 1.
fn version_minor(v: &[u8]) -> Result<u8, HeadError> {
    match (v.get(5), v.get(7)) {
        (Some(b'1'), Some(b'0')) => Ok(0),
        (Some(b'1'), Some(_)) => Ok(1),
        _ => Err(HeadError::Reject(505, "HTTP version not supported")),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Request target

/// A classified request-target and how to write it in origin-form.
struct Target<'a> {
    form: TargetForm,
    /// The authority of an absolute-form target.
    authority: Option<&'a [u8]>,
    /// Written before `rest` in the canonical request line: "", "/" or "*".
    prefix: &'static [u8],
    /// The rest of the canonical target.
    rest: &'a [u8],
}

/// Classifies `target` (bytes already checked) for `method`, enforcing which forms each method may use.
fn classify<'a>(method: &[u8], target: &'a [u8]) -> Result<Target<'a>, HeadError> {
    let kept = |form| {
        Ok(Target {
            form,
            authority: None,
            prefix: b"",
            rest: target,
        })
    };
    if method == b"CONNECT" {
        if !valid_authority(target, true) {
            return Err(bad("CONNECT needs an authority-form target"));
        }
        return kept(TargetForm::Authority);
    }
    match target {
        [b'/', ..] => kept(TargetForm::Origin),
        b"*" if method == b"OPTIONS" => kept(TargetForm::Asterisk),
        b"*" => Err(bad("asterisk-form target outside OPTIONS")),
        _ => absolute_form(method, target),
    }
}

/// Splits an absolute-form target (`http` or `https` scheme) into authority and origin-form target.
fn absolute_form<'a>(method: &[u8], target: &'a [u8]) -> Result<Target<'a>, HeadError> {
    let rest = strip_scheme(target).ok_or(bad("invalid request target"))?;
    let end = rest.iter().position(|&b| b == b'/' || b == b'?').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains(&b'@') {
        return Err(bad("userinfo in request target"));
    }
    if !valid_authority(authority, false) {
        return Err(bad("invalid authority in request target"));
    }
    let prefix: &'static [u8] = match path.first() {
        None if method == b"OPTIONS" => b"*",
        None | Some(b'?') => b"/",
        Some(_) => b"",
    };
    Ok(Target {
        form: TargetForm::Absolute,
        authority: Some(authority),
        prefix,
        rest: path,
    })
}

/// `target` after a case-insensitive `http://` or `https://`.
fn strip_scheme(target: &[u8]) -> Option<&[u8]> {
    [&b"http://"[..], &b"https://"[..]].iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme).then(|| &target[scheme.len()..])
    })
}

/// Whether `a` is `uri-host [":" port]` with a non-empty host (the port required when `need_port`).
fn valid_authority(a: &[u8], need_port: bool) -> bool {
    let (host, port) = match a.first() {
        Some(b'[') => match a.iter().position(|&b| b == b']') {
            Some(close) => a.split_at(close + 1),
            None => return false,
        },
        _ => a.split_at(a.iter().position(|&b| b == b':').unwrap_or(a.len())),
    };
    let port_ok = match port {
        [] => !need_port,
        [b':', digits @ ..] => valid_port(digits),
        _ => false,
    };
    port_ok && valid_host(host)
}

/// Whether `host` is an `[IPv6]` literal or a non-empty reg-name (which covers IPv4 addresses).
fn valid_host(host: &[u8]) -> bool {
    match host {
        [b'[', inner @ .., b']'] => std::str::from_utf8(inner).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok()),
        [] => false,
        _ => host.iter().all(|&b| is(b, REG_NAME) || b == b'%') && percent_ok(host, true),
    }
}

/// Whether `digits` is a port: 1 to 5 digits, at most 65535.
fn valid_port(digits: &[u8]) -> bool {
    (1..=5).contains(&digits.len())
        && digits.iter().all(u8::is_ascii_digit)
        && digits.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65535
}

// ---------------------------------------------------------------------------------------------------------
// Header fields

/// One line of the field section.
enum FieldLine<'a> {
    /// The final empty line; the head ends at this offset.
    End(usize),
    /// A field line; the next line starts at `next`.
    Field {
        name: &'a [u8],
        value: &'a [u8],
        next: usize,
    },
}

/// Reads the field line at `pos`; `Incomplete` if `buf` ends inside it.
fn field_line(buf: &[u8], pos: usize) -> Result<FieldLine<'_>, HeadError> {
    match buf.get(pos) {
        None => return Err(HeadError::Incomplete),
        Some(b'\r') => return end_of_line(buf, pos).map(|()| FieldLine::End(pos + 2)),
        Some(b' ' | b'\t') => return Err(bad("obs-fold or whitespace before a field line")),
        Some(b'\n') => return Err(bad("bare LF")),
        Some(_) => {}
    }
    let tail = buf.get(pos..).unwrap_or_default();
    let name_len = tail.iter().position(|&b| !is(b, TCHAR)).ok_or(HeadError::Incomplete)?;
    match tail[name_len] {
        b':' if name_len > 0 => {}
        b':' => return Err(bad("empty field name")),
        b' ' | b'\t' => return Err(bad("whitespace before colon")),
        _ => return Err(bad("invalid field name")),
    }
    let value = &tail[name_len + 1..];
    let value_len = value.iter().position(|&b| !is(b, VALUE)).ok_or(HeadError::Incomplete)?;
    match value[value_len] {
        b'\r' => {}
        b'\n' => return Err(bad("bare LF")),
        _ => return Err(bad("control character in field value")),
    }
    let cr = pos + name_len + 1 + value_len;
    end_of_line(buf, cr)?;
    Ok(FieldLine::Field {
        name: &tail[..name_len],
        value: trim_ows(&value[..value_len]),
        next: cr + 2,
    })
}

/// Checks that the CR at `cr` is followed by LF.
fn end_of_line(buf: &[u8], cr: usize) -> Result<(), HeadError> {
    match buf.get(cr + 1) {
        None => Err(HeadError::Incomplete),
        Some(b'\n') => Ok(()),
        Some(_) => Err(bad("bare CR")),
    }
}

/// Reads the field lines from `pos` to the final empty line, feeding them to `fields`; returns where the
/// head ends. `buf` is already cut at the head-size limit.
fn scan_fields<'a>(buf: &'a [u8], mut pos: usize, fields: &mut Fields<'a>) -> Result<usize, HeadError> {
    loop {
        if fields.count == MAX_FIELDS && buf.get(pos).is_some_and(|&b| b != b'\r') {
            return Err(too_large("too many header fields"));
        }
        match field_line(buf, pos)? {
            FieldLine::End(end) => return Ok(end),
            FieldLine::Field { name, value, next } => {
                fields.add(name, value)?;
                pos = next;
            }
        }
    }
}

/// What the header fields say, gathered in one pass without allocating.
struct Fields<'a> {
    minor: u8,
    count: usize,
    host: Option<&'a [u8]>,
    content_length: Option<u64>,
    /// Whether any Transfer-Encoding field was seen.
    te: bool,
    /// How many `chunked` codings were seen.
    chunked: usize,
    /// Whether the last coding seen is `chunked`.
    last_chunked: bool,
    /// Whether a coding other than `chunked` was seen.
    other_coding: bool,
    close: bool,
    keep_alive: bool,
    connection_upgrade: bool,
    upgrade: bool,
    expect_continue: bool,
    /// A field that makes the head not [`Head::plain`] was seen.
    special: bool,
}

impl<'a> Fields<'a> {
    fn new(minor: u8) -> Self {
        Fields {
            minor,
            count: 0,
            host: None,
            content_length: None,
            te: false,
            chunked: 0,
            last_chunked: false,
            other_coding: false,
            close: false,
            keep_alive: false,
            connection_upgrade: false,
            upgrade: false,
            expect_continue: false,
            special: false,
        }
    }

    /// Takes in one field (value trimmed).
    fn add(&mut self, name: &[u8], value: &'a [u8]) -> Result<(), HeadError> {
        self.count += 1;
        let named = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
        if named("host") {
            self.add_host(value)
        } else if named("content-length") {
            self.add_content_length(value)
        } else if named("transfer-encoding") {
            self.add_transfer_encoding(value)
        } else if named("connection") {
            self.add_connection(value)
        } else if named("upgrade") {
            self.special = true;
            self.add_upgrade(value)
        } else if named("expect") {
            self.special = true;
            self.add_expect(value)
        } else {
            self.special |= is_special(name);
            Ok(())
        }
    }

    fn add_host(&mut self, value: &'a [u8]) -> Result<(), HeadError> {
        if self.host.is_some() {
            return Err(bad("more than one Host"));
        }
        if !value.is_empty() && !valid_authority(value, false) {
            return Err(bad("invalid Host"));
        }
        self.host = Some(value);
        Ok(())
    }

    fn add_content_length(&mut self, value: &[u8]) -> Result<(), HeadError> {
        if self.content_length.is_some() {
            return Err(bad("more than one Content-Length"));
        }
        if self.te {
            return Err(bad("both Transfer-Encoding and Content-Length"));
        }
        self.content_length = Some(parse_length(value).ok_or(bad("invalid Content-Length"))?);
        Ok(())
    }

    fn add_transfer_encoding(&mut self, value: &[u8]) -> Result<(), HeadError> {
        if self.minor == 0 {
            return Err(bad("Transfer-Encoding in HTTP/1.0"));
        }
        if self.content_length.is_some() {
            return Err(bad("both Transfer-Encoding and Content-Length"));
        }
        self.te = true;
        for coding in list(value) {
            let name = trim_ows(coding.split(|&b| b == b';').next().unwrap_or_default());
            if !is_token(name) {
                return Err(bad("invalid transfer coding"));
            }
            let chunked = name.eq_ignore_ascii_case(b"chunked");
            if chunked && name.len() != coding.len() {
                return Err(bad("chunked with parameters"));
            }
            self.chunked += usize::from(chunked);
            self.other_coding |= !chunked;
            self.last_chunked = chunked;
        }
        Ok(())
    }

    fn add_connection(&mut self, value: &[u8]) -> Result<(), HeadError> {
        for option in list(value) {
            if !is_token(option) {
                return Err(bad("invalid Connection option"));
            }
            let close = option.eq_ignore_ascii_case(b"close");
            let keep_alive = option.eq_ignore_ascii_case(b"keep-alive");
            self.close |= close;
            self.keep_alive |= keep_alive;
            self.connection_upgrade |= option.eq_ignore_ascii_case(b"upgrade");
            self.special |= !close && !keep_alive;
        }
        Ok(())
    }

    fn add_upgrade(&mut self, value: &[u8]) -> Result<(), HeadError> {
        for protocol in list(value) {
            let mut parts = protocol.splitn(2, |&b| b == b'/');
            if !parts.all(is_token) {
                return Err(bad("invalid Upgrade protocol"));
            }
            self.upgrade = true;
        }
        Ok(())
    }

    fn add_expect(&mut self, value: &[u8]) -> Result<(), HeadError> {
        for expectation in list(value) {
            if !expectation.eq_ignore_ascii_case(b"100-continue") {
                return Err(HeadError::Reject(417, "unsupported expectation"));
            }
            self.expect_continue = true;
        }
        Ok(())
    }

    /// The host the request is for, checking Host's presence rules: an HTTP/1.1 request carries
    /// one Host field whatever its target's form (RFC 9112 §3.2, MUST 400); an absolute-form
    /// target then names the host instead (§3.2.2).
    fn host_for(&self, target: &Target<'a>) -> Result<Option<&'a [u8]>, HeadError> {
        if self.host.is_none() && self.minor == 1 {
            return Err(bad("missing Host"));
        }
        if let Some(authority) = target.authority {
            return Ok(Some(authority));
        }
        match (self.host, self.minor) {
            (None, 1) => Err(bad("missing Host")),
            (Some([]), 1) => Err(bad("empty Host")),
            (Some([]), _) | (None, _) => Ok(None),
            (Some(host), _) => Ok(Some(host)),
        }
    }

    /// The body's framing, checking the Transfer-Encoding rules.
    fn framing(&self) -> Result<Framing, HeadError> {
        if self.te {
            return match (self.last_chunked, self.chunked, self.other_coding) {
                (false, _, _) => Err(bad("Transfer-Encoding does not end with chunked")),
                (true, 2.., _) => Err(bad("chunked applied more than once")),
                (true, _, true) => Err(HeadError::Reject(501, "unsupported transfer coding")),
                (true, _, false) => Ok(Framing::Chunked),
            };
        }
        Ok(self.content_length.map_or(Framing::None, Framing::Length))
    }
}

/// A Content-Length value: 1*DIGIT fitting in a u64.
fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| {
        let digit = d.is_ascii_digit().then(|| u64::from(d - b'0'))?;
        n.checked_mul(10)?.checked_add(digit)
    })
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
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_request_line: 64,
        max_head: 400,
    };

    fn run(input: &str) -> Result<Head, HeadError> {
        parse(input.as_bytes(), &LIMITS)
    }

    fn ok(input: &str) -> Head {
        match run(input) {
            Ok(head) => head,
            Err(e) => panic!("{input:?}: {e}"),
        }
    }

    /// 200 for Ok, 0 for Incomplete, else the status.
    fn status(input: &[u8]) -> u16 {
        match parse(input, &LIMITS) {
            Ok(_) => 200,
            Err(HeadError::Incomplete) => 0,
            Err(HeadError::Reject(status, _)) => status,
        }
    }

    const GET: &str = "GET / HTTP/1.1\r\nHost: a\r\n";

    /// One row per rule: input, then 200 (Ok), 0 (Incomplete) or the status of the refusal.
    const ROWS: &[(&str, u16)] = &[
        // Framing of lines and leading empty lines.
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
        ("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
        ("\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
        ("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("\r\n\r\n\r\n\r\n\r", 400),
        ("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
        ("GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\n\rX", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\n\r", 0),
        ("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400),
        // Request line.
        ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
        (" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("get / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
        ("M-SEARCH! / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
        ("GET /\r\n\r\n", 400),
        ("GET\r\n\r\n", 400),
        ("\r\n\r\n\r\n\r\n", 0),
        ("GET / HTTP/1.0\r\n\r\n", 200),
        ("GET / HTTP/1.9\r\nHost: a\r\n\r\n", 200),
        ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        ("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
        ("GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
        ("GET / http/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET / HTTP/1\r\nHost: a\r\n\r\n", 400),
        ("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400),
        ("GET / HTTP/1.1x\r\n", 400),
        ("GET / HTTP/11\r\n", 400),
        ("GET / HTTP/1.x\r\n", 400),
        ("GET / HTTP/1.\r\n", 400),
        ("GET / HTTQ", 400),
        // Request target bytes.
        ("GET /a%20b?c=d&e HTTP/1.1\r\nHost: a\r\n\r\n", 200),
        ("GET /a[]=1 HTTP/1.1\r\nHost: a\r\n\r\n", 200),
        ("GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /%2 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /% HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /a<b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /a>b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /a\"b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /a\\b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /a^b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /a`b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /a{b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /a|b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /a}b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        // Target forms.
        ("GET http://a.example/x?y HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        ("GET http://a.example/x?y HTTP/1.1\r\n\r\n", 400),
        ("GET HTTPS://a.example HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        ("GET ftp://a.example/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET http:/a.example/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET http://u@a.example/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET http://a.example:99999/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET http://[::1]:8080/ HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        ("GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET a.example:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 200),
        ("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", 200),
        ("CONNECT [::1]:443 HTTP/1.1\r\nHost: a\r\n\r\n", 200),
        ("CONNECT a.example HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("CONNECT http://a.example/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        // Field lines.
        ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\tfolded\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\tb c\u{e9}\r\n\r\n", 200),
        ("GET / HTTP/1.1\r\nHost: a\r\nX:\r\n\r\n", 200),
        // Host.
        ("GET / HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost:\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a:\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a:x\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a:65535\r\n\r\n", 200),
        ("GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n", 200),
        ("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 200),
        ("GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: 10.0.0.1:8080\r\n\r\n", 200),
        ("GET / HTTP/1.1\r\nHost: a%2Eb\r\n\r\n", 200),
        ("GET / HTTP/1.1\r\nHost: a%2\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: caf\u{e9}\r\n\r\n", 400),
        ("GET / HTTP/1.0\r\n\r\n", 200),
        ("GET / HTTP/1.0\r\nHost:\r\n\r\n", 200),
        ("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("GET http://a/ HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        ("GET http://a/ HTTP/1.1\r\nHost:\r\n\r\n", 200),
        ("OPTIONS * HTTP/1.1\r\n\r\n", 400),
        ("CONNECT a:443 HTTP/1.1\r\n\r\n", 400),
        // Content-Length.
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", 200),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0005\r\n\r\n", 200),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
            200,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
            400,
        ),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,5\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", 400),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            400,
        ),
        // Transfer-Encoding.
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 200),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n", 200),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked ,\r\n\r\n",
            200,
        ),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            501,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding:\r\n\r\n",
            200,
        ),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\u{e9}\r\n\r\n",
            400,
        ),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
        // Connection, Upgrade, Expect.
        ("GET / HTTP/1.1\r\nHost: a\r\nConnection: close, Foo\r\n\r\n", 200),
        ("GET / HTTP/1.1\r\nHost: a\r\nConnection: clo se\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nConnection: a/b\r\n\r\n", 400),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket, h2c/1\r\nConnection: upgrade\r\n\r\n",
            200,
        ),
        ("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: web socket\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: a/b/c\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n", 200),
        ("GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417),
        ("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n", 417),
        // Partial input: incomplete, or already invalid.
        ("", 0),
        ("G", 0),
        ("GET / HTTP/1.1\r\nHost: a\r\n", 0),
        ("GET / HTTP/1.1\r\nHost", 0),
        ("GET / HTTP/1.1\r\nHost ", 400),
        ("GET / HTTP/1.1\r\nX: \x00", 400),
        ("GET / HTTP/1.1\r\n ", 400),
        ("GET /\x01", 400),
        ("GET /%zz", 400),
        ("GET /%2", 0),
        ("GE(", 400),
        ("GET / HTTP/2", 0),
        ("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n", 400),
        ("GET / HTTP/1.1\r\nExpect: x\r\n", 417),
    ];

    #[test]
    fn table() {
        for (input, want) in ROWS {
            assert_eq!(status(input.as_bytes()), *want, "{input:?}: {:?}", run(input));
        }
    }

    #[test]
    fn every_prefix_of_a_valid_head_is_incomplete() {
        for (input, want) in ROWS.iter().filter(|(_, want)| *want == 200) {
            let bytes = input.as_bytes();
            for cut in 0..bytes.len() {
                assert_eq!(
                    parse(&bytes[..cut], &LIMITS),
                    Err(HeadError::Incomplete),
                    "{input:?} cut at {cut}"
                );
            }
            assert_eq!(ok(input).len, bytes.len(), "{want} {input:?}");
        }
    }

    #[test]
    fn simple_get() {
        let input = "GET /a?b HTTP/1.1\r\nHost:  example.com:8080 \r\nAccept:*/*\r\n\r\n";
        let head = ok(input);
        assert_eq!(&input[head.method.clone()], "GET");
        assert_eq!(head.minor, 1);
        assert_eq!(head.form, TargetForm::Origin);
        assert_eq!(head.framing, Framing::None);
        assert!(!head.close && !head.upgrade && !head.expect_continue);
        assert_eq!(head.host.map(|h| &input[h]), Some("example.com:8080"));
        let canonical = "GET /a?b HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n\r\n";
        assert_eq!(String::from_utf8_lossy(&head.canonical), canonical);
    }

    #[test]
    fn pipelined_requests_take_only_the_first_head() {
        let first = "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        let input = format!("{first}abcGET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
        let head = ok(&input);
        assert_eq!(head.len, first.len());
        assert_eq!(head.framing, Framing::Length(3));
        let second = ok(&input[first.len() + 3..]);
        assert_eq!(second.len, input.len() - first.len() - 3);
    }

    #[test]
    fn leading_empty_lines_count_in_len_not_in_canonical() {
        let head = ok("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(head.len, 4 + GET.len() + 2);
        assert_eq!(head.canonical, format!("{GET}\r\n").into_bytes());
    }

    #[test]
    fn plain_heads_carry_nothing_a_proxy_rewrites() {
        let head = |fields: &str| ok(&format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n"));
        assert!(head("").plain);
        assert!(head("Connection: keep-alive, Close\r\nAccept: */*\r\n").plain);
        for field in [
            "TE: trailers",
            "Keep-Alive: timeout=5",
            "Max-Forwards: 1",
            "Connection: x-hop",
            "Upgrade: h2c\r\nConnection: upgrade",
            "Expect: 100-continue",
            "Proxy-Authorization: x",
            "Trailer: x",
            "HTTP2-Settings: x",
        ] {
            assert!(!head(&format!("{field}\r\n")).plain, "{field}");
        }
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_host_first() {
        let input = "GET http://b.example:81/p?q HTTP/1.1\r\nX: 1\r\nhOST: a\r\nY: 2\r\n\r\n";
        let head = ok(input);
        assert_eq!(head.form, TargetForm::Absolute);
        assert_eq!(head.host.map(|h| &input[h]), Some("b.example:81"));
        let canonical = "GET /p?q HTTP/1.1\r\nHost: b.example:81\r\nX: 1\r\nY: 2\r\n\r\n";
        assert_eq!(String::from_utf8_lossy(&head.canonical), canonical);
    }

    #[test]
    fn absolute_form_with_empty_path() {
        let cases = [
            (
                "GET http://a HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            ),
            (
                "GET http://a?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET /?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
            ),
            (
                "OPTIONS http://a HTTP/1.1\r\nHost: x\r\n\r\n",
                "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            ),
            (
                "OPTIONS http://a/ HTTP/1.1\r\nHost: x\r\n\r\n",
                "OPTIONS / HTTP/1.1\r\nHost: a\r\n\r\n",
            ),
            (
                "GET http://[::1]:8 HTTP/1.0\r\n\r\n",
                "GET / HTTP/1.0\r\nHost: [::1]:8\r\n\r\n",
            ),
        ];
        for (input, canonical) in cases {
            assert_eq!(String::from_utf8_lossy(&ok(input).canonical), canonical, "{input:?}");
        }
    }

    #[test]
    fn other_forms_are_kept() {
        let head = ok("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(head.form, TargetForm::Asterisk);
        assert!(head.canonical.starts_with(b"OPTIONS * HTTP/1.1\r\n"));
        let input = "CONNECT a.example:443 HTTP/1.1\r\nHost: h\r\n\r\n";
        let head = ok(input);
        assert_eq!(head.form, TargetForm::Authority);
        assert_eq!(head.host.map(|h| &input[h]), Some("h"));
        assert!(head.canonical.starts_with(b"CONNECT a.example:443 HTTP/1.1\r\n"));
    }

    #[test]
    fn versions() {
        let head = ok("GET / HTTP/1.7\r\nHost: a\r\n\r\n");
        assert_eq!(head.minor, 1);
        assert!(head.canonical.starts_with(b"GET / HTTP/1.1\r\n"));
        let head = ok("GET / HTTP/1.0\r\n\r\n");
        assert_eq!((head.minor, head.host, head.close), (0, None, true));
        assert!(head.canonical.starts_with(b"GET / HTTP/1.0\r\n"));
    }

    #[test]
    fn persistence() {
        let close = |input: &str| ok(input).close;
        assert!(!close("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(close("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n"));
        assert!(close("GET / HTTP/1.0\r\n\r\n"));
        assert!(!close("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(close("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"));
        assert!(close(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"
        ));
    }

    #[test]
    fn upgrade_needs_field_option_and_http11() {
        let upgrade = |input: &str| ok(input).upgrade;
        assert!(upgrade(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        ));
        assert!(!upgrade("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"));
        assert!(!upgrade("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n"));
        assert!(!upgrade(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: ,\r\n\r\n"
        ));
        assert!(!upgrade(
            "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        ));
    }

    #[test]
    fn expect_continue() {
        assert!(ok("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-CONTINUE\r\n\r\n").expect_continue);
        assert!(!ok("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
        assert!(!ok("POST / HTTP/1.1\r\nHost: a\r\nExpect:\r\n\r\n").expect_continue);
    }

    #[test]
    fn framing() {
        let framing = |input: &str| ok(input).framing;
        assert_eq!(
            framing("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0042\r\n\r\n"),
            Framing::Length(42)
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: Chunked\r\n\r\n"),
            Framing::Chunked
        );
        assert_eq!(framing("POST / HTTP/1.1\r\nHost: a\r\n\r\n"), Framing::None);
    }

    #[test]
    fn request_line_limit() {
        let limits = Limits {
            max_request_line: 16,
            max_head: 1000,
        };
        let exact = b"GET /23456 HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            parse(
                exact,
                &Limits {
                    max_request_line: 19,
                    ..limits
                }
            )
            .map(|h| h.len),
            Ok(exact.len())
        );
        assert_eq!(
            parse(
                exact,
                &Limits {
                    max_request_line: 18,
                    ..limits
                }
            ),
            Err(HeadError::Reject(414, "request line too long"))
        );
        // A long line without its CRLF yet is refused once it passes the limit, not before.
        assert_eq!(
            parse(b"GET /234567890123", &limits),
            Err(HeadError::Reject(414, "request line too long"))
        );
        assert_eq!(parse(b"GET /23456789012", &limits), Err(HeadError::Incomplete));
        // ... unless its prefix is already invalid.
        assert_eq!(
            parse(b"GET /\x00", &limits),
            Err(HeadError::Reject(400, "invalid request target"))
        );
    }

    #[test]
    fn head_limit() {
        let input = format!("{GET}X: 1\r\n\r\n");
        let exact = Limits {
            max_request_line: 100,
            max_head: input.len(),
        };
        assert_eq!(parse(input.as_bytes(), &exact).map(|h| h.len), Ok(input.len()));
        let short = Limits {
            max_head: input.len() - 1,
            ..exact
        };
        assert_eq!(
            parse(input.as_bytes(), &short),
            Err(HeadError::Reject(431, "request head too large"))
        );
        // Incomplete heads are refused as soon as they pass the limit.
        assert_eq!(
            parse(&input.as_bytes()[..input.len() - 1], &short),
            Err(HeadError::Incomplete)
        );
        let long = format!("{GET}X: {}", "y".repeat(input.len()));
        assert_eq!(
            parse(long.as_bytes(), &exact),
            Err(HeadError::Reject(431, "request head too large"))
        );
        // Leading empty lines do not count.
        let lead = format!("\r\n\r\n{input}");
        assert_eq!(parse(lead.as_bytes(), &exact).map(|h| h.len), Ok(lead.len()));
        // A head limit below the request line limit still holds.
        let tiny = Limits {
            max_request_line: 100,
            max_head: 8,
        };
        assert_eq!(
            parse(b"GET /aaaaaaaa", &tiny),
            Err(HeadError::Reject(431, "request head too large"))
        );
    }

    #[test]
    fn field_count_limit() {
        let fields = |n: usize| format!("{GET}{}\r\n", "X: 1\r\n".repeat(n));
        let big = Limits {
            max_request_line: 100,
            max_head: 10_000,
        };
        assert!(parse(fields(MAX_FIELDS - 1).as_bytes(), &big).is_ok());
        let too_many = fields(MAX_FIELDS);
        assert_eq!(
            parse(too_many.as_bytes(), &big),
            Err(HeadError::Reject(431, "too many header fields"))
        );
        // Refused as soon as the extra field starts.
        let started = format!("{GET}{}X", "X: 1\r\n".repeat(MAX_FIELDS - 1));
        assert_eq!(
            parse(started.as_bytes(), &big),
            Err(HeadError::Reject(431, "too many header fields"))
        );
    }

    #[test]
    fn obs_text_is_kept_in_values() {
        let head = parse(b"GET / HTTP/1.1\r\nHost: a\r\nX: \xff\x80 \r\n\r\n", &LIMITS);
        let head = head.map(|h| h.canonical);
        assert_eq!(
            head.as_deref(),
            Ok(&b"GET / HTTP/1.1\r\nHost: a\r\nX: \xff\x80\r\n\r\n"[..])
        );
    }

    #[test]
    fn errors_display() {
        assert_eq!(HeadError::Reject(400, "bare LF").to_string(), "400: bare LF");
        assert_eq!(HeadError::Incomplete.to_string(), "incomplete request head");
    }

    /// A tiny deterministic generator for the mutation tests.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    const INTERESTING: &[u8] = b"\r\n \t:,;/?%#*@[]\"\x00\x7f\x80\xff0aAzZ-";

    /// Changes, inserts, deletes or truncates a few bytes of `input`.
    fn mutate(rng: &mut XorShift, input: &mut Vec<u8>) {
        for _ in 0..=rng.below(3) {
            let at = rng.below(input.len() + 1);
            let byte = match rng.below(2) {
                0 => INTERESTING[rng.below(INTERESTING.len())],
                _ => rng.next() as u8,
            };
            match rng.below(4) {
                0 if at < input.len() => input[at] = byte,
                1 => input.insert(at, byte),
                2 if at < input.len() => {
                    input.remove(at);
                }
                _ => input.truncate(at),
            }
        }
    }

    #[test]
    fn mutations_never_panic_and_canonical_heads_reparse() {
        let seeds: Vec<&str> = ROWS.iter().filter(|(_, s)| *s == 200).map(|(i, _)| *i).collect();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let reparse = Limits {
            max_request_line: 1000,
            max_head: 10_000,
        };
        let mut accepted = 0;
        for _ in 0..100_000 {
            let mut input = seeds[rng.below(seeds.len())].as_bytes().to_vec();
            mutate(&mut rng, &mut input);
            let head = match parse(&input, &LIMITS) {
                Ok(head) => head,
                Err(HeadError::Incomplete) => continue,
                Err(refused) => {
                    // Refusals are final: more bytes never make a refused prefix acceptable.
                    input.extend_from_slice(b"\r\n\r\n");
                    assert!(
                        matches!(parse(&input, &LIMITS), Err(HeadError::Reject(..))),
                        "{input:?} {refused}"
                    );
                    continue;
                }
            };
            accepted += 1;
            assert!(head.len <= input.len());
            for cut in 0..head.len {
                assert_eq!(
                    parse(&input[..cut], &LIMITS),
                    Err(HeadError::Incomplete),
                    "{input:?} cut at {cut}"
                );
            }
            let again = parse(&head.canonical, &reparse).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(again.canonical, head.canonical, "{input:?}");
            let host_of = |h: &Head, buf: &[u8]| h.host.clone().map(|r| buf[r].to_vec());
            assert_eq!(
                (again.framing, host_of(&again, &head.canonical), again.minor),
                (head.framing, host_of(&head, &input), head.minor)
            );
            assert_eq!(
                (again.close, again.upgrade, again.expect_continue),
                (head.close, head.upgrade, head.expect_continue)
            );
        }
        assert!(accepted > 1000, "only {accepted} mutated heads accepted");
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(42);
        for _ in 0..20_000 {
            let len = rng.below(80);
            let input: Vec<u8> = (0..len).map(|_| INTERESTING[rng.below(INTERESTING.len())]).collect();
            let _ = parse(&input, &LIMITS);
            let _ = parse(
                &input,
                &Limits {
                    max_request_line: 0,
                    max_head: 0,
                },
            );
        }
    }
}
