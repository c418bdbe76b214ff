//! The field section: each field line, and what the fields say together (see [`super`]).

use super::line::{is, is_token, list, trim_ows, valid_authority, Target, TCHAR, VALUE};
use super::{bad, too_large, Framing, HeadError, MAX_FIELDS};

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
pub(super) fn scan_fields<'a>(buf: &'a [u8], mut pos: usize, fields: &mut Fields<'a>) -> Result<usize, HeadError> {
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
pub(super) struct Fields<'a> {
    pub(super) minor: u8,
    pub(super) count: usize,
    pub(super) host: Option<&'a [u8]>,
    pub(super) content_length: Option<u64>,
    /// Whether any Transfer-Encoding field was seen.
    pub(super) te: bool,
    /// How many `chunked` codings were seen.
    pub(super) chunked: usize,
    /// Whether the last coding seen is `chunked`.
    pub(super) last_chunked: bool,
    /// Whether a coding other than `chunked` was seen.
    pub(super) other_coding: bool,
    pub(super) close: bool,
    pub(super) keep_alive: bool,
    pub(super) connection_upgrade: bool,
    pub(super) upgrade: bool,
    pub(super) expect_continue: bool,
}

impl<'a> Fields<'a> {
    pub(super) fn new(minor: u8) -> Self {
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
    pub(super) fn host_for(&self, target: &Target<'a>) -> Result<Option<&'a [u8]>, HeadError> {
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
    pub(super) fn framing(&self) -> Result<Framing, HeadError> {
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
