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

/// Whether `b` is a `tchar` (RFC 9110 §5.6.2).
pub(crate) fn is_tchar(b: u8) -> bool {
    is(b, TCHAR)
}

/// Whether `bytes` is a token (1*tchar).
pub(crate) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
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
            self.add_upgrade(value)
        } else if named("expect") {
            self.add_expect(value)
        } else {
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
#[path = "head_tests.rs"]
mod tests;
