//! What a backend's response head must be before lb forwards it, for both request loops: a
//! status in 100–599, a head of at most [`MAX_HEAD`] bytes and [`MAX_FIELDS`] fields, and at
//! most [`MAX_INFORMATIONAL`] informational responses before the final one; anything else is a
//! broken response (502). Also the one framing signal lb distrusts without refusing it: a head
//! with both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.1: the coding wins, and the
//! connection is closed after the response). Pure functions of the head; the proxy counts,
//! logs and closes.

use pingora_http::ResponseHeader;

/// Informational (1xx, but `101`) responses accepted before the final one of a request; one more
/// is a broken response. A `100 Continue` and a few `103 Early Hints` are what real exchanges
/// send; `102 Processing` heartbeats a minute apart for over an hour fit. CPython's
/// `http.client` and Ruby's `net-http` bound the same count at 100.
pub const MAX_INFORMATIONAL: u32 = 100;

/// Largest response head lb forwards, in bytes (status line and field lines, counted as lb
/// would write them). Envoy's default is 60 KiB; nginx's `proxy_buffer_size` one page (4 or
/// 8 KiB); Pingora reads at most about 1 MiB in any case.
pub const MAX_HEAD: usize = 64 << 10;

/// Most fields in a response head (the same bound as on requests, HAProxy's
/// `tune.http.maxhdr` 101 less the start line; Pingora refuses more than 256 in any case).
pub const MAX_FIELDS: usize = 100;

/// Why `resp`, the backend's response head after `informational` informational ones in the
/// same request, is refused, if it is.
pub fn refusal(resp: &ResponseHeader, informational: u32) -> Option<&'static str> {
    let status = resp.status.as_u16();
    if !(100..=599).contains(&status) {
        // RFC 9110 §15: a status outside 100–599 is invalid.
        return Some("a status outside 100-599");
    }
    if resp.status.is_informational() && status != 101 && informational >= MAX_INFORMATIONAL {
        return Some("too many informational responses");
    }
    if resp.headers.len() > MAX_FIELDS {
        return Some("too many fields in the response head");
    }
    if head_size(resp) > MAX_HEAD {
        return Some("the response head is too large");
    }
    None
}

/// The size of `resp` on the wire as lb writes it: `HTTP/1.1 NNN reason\r\n`, each field as
/// `name: value\r\n`, and the blank line.
fn head_size(resp: &ResponseHeader) -> usize {
    let reason = resp.get_reason_phrase().map_or(0, str::len);
    let fields: usize = resp.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    13 + reason + 2 + fields + 2
}

/// What a response with both framings is, in the log.
pub const FRAMED_TWICE: &str = "Content-Length with Transfer-Encoding (RFC 9112 6.1)";

/// Whether the raw response head `raw` carries both `Content-Length` and `Transfer-Encoding`
/// (Pingora drops the length and reads the coding; the sender is not to be trusted with the
/// connection after that).
pub fn framed_twice(raw: &[u8]) -> bool {
    // A field line's name runs to its colon (Pingora lets whitespace stand before it in a
    // response); a folded line starts with whitespace and names nothing.
    let names = || {
        raw.split(|b| *b == b'\n')
            .skip(1)
            .filter(|line| !line.first().is_some_and(u8::is_ascii_whitespace))
            .filter_map(|line| line.split(|b| *b == b':').next().filter(|n| n.len() < line.len()))
            .map(<[u8]>::trim_ascii_end)
    };
    let named = |name: &[u8]| names().any(|n| n.eq_ignore_ascii_case(name));
    named(b"content-length") && named(b"transfer-encoding")
}

#[cfg(test)]
#[path = "upstream_response_props.rs"]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, fields: &[(&str, String)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in fields {
            r.append_header(k.to_string(), v.as_str()).unwrap();
        }
        r
    }

    #[test]
    fn statuses_outside_the_range_are_refused() {
        assert!(refusal(&resp(200, &[]), 0).is_none());
        assert!(refusal(&resp(599, &[]), 0).is_none());
        assert!(refusal(&resp(600, &[]), 0).is_some());
        assert!(refusal(&resp(999, &[]), 0).is_some());
    }

    #[test]
    fn informational_responses_are_counted_but_101_is_final() {
        assert!(refusal(&resp(103, &[]), MAX_INFORMATIONAL - 1).is_none());
        assert!(refusal(&resp(103, &[]), MAX_INFORMATIONAL).is_some());
        assert!(refusal(&resp(101, &[]), MAX_INFORMATIONAL).is_none());
        assert!(refusal(&resp(200, &[]), MAX_INFORMATIONAL).is_none());
    }

    #[test]
    fn heads_are_bounded_in_size_and_fields() {
        let near = resp(200, &[("x-big", "a".repeat(MAX_HEAD - 100))]);
        assert!(refusal(&near, 0).is_none());
        let over = resp(200, &[("x-big", "a".repeat(MAX_HEAD))]);
        assert!(refusal(&over, 0).is_some());
        let fields: Vec<(String, String)> = (0..=MAX_FIELDS).map(|i| (format!("x-{i}"), "1".into())).collect();
        let fields: Vec<(&str, String)> = fields.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        assert!(refusal(&resp(200, &fields), 0).is_some());
        assert!(refusal(&resp(200, &fields[1..]), 0).is_none());
    }

    #[test]
    fn both_framings_are_seen_in_any_case() {
        assert!(framed_twice(
            b"HTTP/1.1 200 OK\r\ncontent-LENGTH: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(!framed_twice(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"));
        assert!(!framed_twice(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Transfer-Encoding: a\r\n\r\n"
        ));
        assert!(!framed_twice(
            b"HTTP/1.1 200 OK\r\nX: content-length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(!framed_twice(
            b"HTTP/1.1 200 OK\r\nX: a\r\n content-length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(framed_twice(
            b"HTTP/1.1 200 OK\r\nContent-Length : 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }
}
