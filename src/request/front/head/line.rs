//! The request line and its target, and the byte classes of RFC 9110 / RFC 3986 (see [`super`]).

use super::{bad, HeadError, TargetForm, MAX_EMPTY_LINES};
use std::net::Ipv6Addr;

// ---------------------------------------------------------------------------------------------------------
// Byte classes

/// `tchar` (RFC 9110 §5.6.2).
pub(super) const TCHAR: u8 = 1;
/// A byte allowed in a request-target: visible ASCII but `"` `#` `<` `>` `\` `^` `` ` `` `{` `|` `}`.
const TARGET: u8 = 2;
/// A byte allowed in a field value: VCHAR, obs-text, SP, HTAB.
pub(super) const VALUE: u8 = 4;
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
pub(super) fn is(b: u8, class: u8) -> bool {
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
pub(super) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// The non-empty elements of a comma-separated list (RFC 9110 §5.6.1), trimmed; empty ones are ignored.
pub(super) fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows).filter(|e| !e.is_empty())
}

// ---------------------------------------------------------------------------------------------------------
// Request line

/// A complete request line.
pub(super) struct RequestLine<'a> {
    /// Offset of the request line in `buf` (after any leading empty lines).
    pub(super) start: usize,
    pub(super) method: &'a [u8],
    pub(super) target: &'a [u8],
    pub(super) minor: u8,
    /// Offset just after the request line's CRLF.
    pub(super) next: usize,
}

/// Skips up to [`MAX_EMPTY_LINES`] CRLFs at the start of `buf`; returns where the request line starts.
pub(super) fn skip_empty_lines(buf: &[u8]) -> Result<usize, HeadError> {
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
pub(super) fn request_line(buf: &[u8], start: usize, max: usize) -> Result<RequestLine<'_>, HeadError> {
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
pub(super) struct Target<'a> {
    pub(super) form: TargetForm,
    /// The authority of an absolute-form target.
    pub(super) authority: Option<&'a [u8]>,
    /// Written before `rest` in the canonical request line: "", "/" or "*".
    pub(super) prefix: &'static [u8],
    /// The rest of the canonical target.
    pub(super) rest: &'a [u8],
}

/// Classifies `target` (bytes already checked) for `method`, enforcing which forms each method may use.
pub(super) fn classify<'a>(method: &[u8], target: &'a [u8]) -> Result<Target<'a>, HeadError> {
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
pub(super) fn valid_authority(a: &[u8], need_port: bool) -> bool {
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
