//! The `json` line: one object per line with the request's fields, written by hand (no
//! serializer on the request path). Strings are escaped as RFC 8259 asks; bytes from the
//! client that are not UTF-8 are written as `\u00XX` (their Latin-1 reading), so every line
//! parses as JSON whatever the client sent.

use super::text::{civil, push_2, push_3, push_hex128, push_secs, push_socket, push_u64};
use super::Entry;
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Appends the line of `e` (ending in `\n`) at `now`.
pub(super) fn line(out: &mut Vec<u8>, e: &Entry, now: SystemTime) {
    out.extend_from_slice(b"{\"time\":\"");
    iso_time(out, now);
    out.extend_from_slice(b"\",\"client\":");
    match e.client {
        // An IPv6 address without nginx's brackets: the field holds only the address.
        Some(ip) => {
            out.push(b'"');
            let ip = ip.to_canonical();
            match ip {
                std::net::IpAddr::V4(_) => super::text::push_ip(out, ip),
                std::net::IpAddr::V6(v6) => out.extend_from_slice(v6.to_string().as_bytes()),
            }
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    key(out, b"method");
    string(out, e.method.as_bytes());
    key(out, b"path");
    string(out, e.target);
    key(out, b"protocol");
    string(out, e.version.as_bytes());
    key(out, b"status");
    push_u64(out, e.status.into());
    key(out, b"bytes");
    push_u64(out, e.bytes as u64);
    key(out, b"referer");
    nullable(out, e.referer);
    key(out, b"user_agent");
    nullable(out, e.user_agent);
    lb_fields(out, e);
    out.extend_from_slice(b"}\n");
}

/// lb's fields: the id, the trace, where the request went and how long it took.
fn lb_fields(out: &mut Vec<u8>, e: &Entry) {
    key(out, b"request_id");
    nullable(out, e.request_id);
    key(out, b"trace_id");
    match e.trace_id {
        Some(id) => {
            out.push(b'"');
            push_hex128(out, id);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    key(out, b"route");
    nullable(out, e.route.map(str::as_bytes));
    key(out, b"pool");
    nullable(out, e.pool.map(str::as_bytes));
    key(out, b"upstream");
    match e.upstream {
        Some(addr) => {
            out.push(b'"');
            push_socket(out, addr);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    key(out, b"tries");
    push_u64(out, e.tries as u64);
    key(out, b"rt");
    push_secs(out, e.total);
    key(out, b"urt");
    match e.upstream_time {
        Some(t) => push_secs(out, t),
        None => out.extend_from_slice(b"null"),
    }
}

/// `,"name":`.
fn key(out: &mut Vec<u8>, name: &[u8]) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name);
    out.extend_from_slice(b"\":");
}

fn nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => string(out, b),
        None => out.extend_from_slice(b"null"),
    }
}

/// `bytes` as a JSON string: UTF-8 kept, `"`, `\` and control characters escaped, each byte
/// of a sequence that is not UTF-8 as `\u00XX`.
fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        escape_utf8(out, chunk.valid().as_bytes());
        for &b in chunk.invalid() {
            unicode_escape(out, b);
        }
    }
    out.push(b'"');
}

/// Valid UTF-8, escaped: runs that need nothing are copied whole.
fn escape_utf8(out: &mut Vec<u8>, text: &[u8]) {
    let mut start = 0;
    for (i, &b) in text.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..0x20 | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&text[start..i]);
        if escape.is_empty() {
            unicode_escape(out, b);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&text[start..]);
}

/// `\u00XX`.
fn unicode_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u00");
    out.push(HEX[usize::from(b >> 4)]);
    out.push(HEX[usize::from(b & 0xf)]);
}

thread_local! {
    /// The last second formatted, and its text: formatting a date once per second per thread.
    static ISO: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
}

/// `2026-11-21T05:18:12.629Z`: UTC with milliseconds, as lb's error log.
fn iso_time(out: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    ISO.with(|cell| {
        let mut cache = cell.borrow_mut();
        if cache.0 != secs {
            let mut text = Vec::with_capacity(19);
            let (year, month, day) = civil((secs / 86_400) as i64);
            let rem = secs % 86_400;
            push_u64(&mut text, year.max(0) as u64);
            text.push(b'-');
            push_2(&mut text, month);
            text.push(b'-');
            push_2(&mut text, day);
            text.push(b'T');
            for (i, part) in [rem / 3600, rem / 60 % 60, rem % 60].into_iter().enumerate() {
                if i > 0 {
                    text.push(b':');
                }
                push_2(&mut text, part);
            }
            let mut fixed = [b'0'; 19];
            let n = text.len().min(19);
            fixed[..n].copy_from_slice(&text[..n]);
            *cache = (secs, fixed);
        }
        out.extend_from_slice(&cache.1);
    });
    out.push(b'.');
    push_3(out, u64::from(since.subsec_millis()));
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parsed(e: &Entry) -> serde_json::Value {
        let mut out = Vec::new();
        line(&mut out, e, UNIX_EPOCH + Duration::from_millis(1_795_237_911_629));
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    #[test]
    fn a_line_is_an_object_with_every_field() {
        let entry = Entry {
            client: Some("::ffff:10.0.0.7".parse().unwrap()),
            method: "GET",
            target: b"/a?q=1",
            version: "HTTP/1.1",
            status: 200,
            bytes: 12,
            user_agent: Some(b"curl/8"),
            pool: Some("web"),
            upstream: Some("[::1]:9001".parse().unwrap()),
            tries: 2,
            total: Duration::from_millis(3),
            upstream_time: Some(Duration::from_millis(2)),
            route: Some("api"),
            request_id: Some(b"0190-ab"),
            trace_id: Some(0x4bf92f3577b34da6a3ce929d0e0e4736),
            ..Entry::default()
        };
        let v = parsed(&entry);
        let expected = serde_json::json!({
            "time": "2026-11-21T05:11:51.629Z", "client": "10.0.0.7", "method": "GET",
            "path": "/a?q=1", "protocol": "HTTP/1.1", "status": 200, "bytes": 12,
            "referer": null, "user_agent": "curl/8", "request_id": "0190-ab",
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "route": "api", "pool": "web",
            "upstream": "[::1]:9001", "tries": 2, "rt": 0.003, "urt": 0.002
        });
        assert_eq!(v, expected);
        let v = parsed(&Entry {
            client: Some("2001:db8::7".parse().unwrap()),
            ..Entry::default()
        });
        assert_eq!(v["client"], "2001:db8::7");
        assert_eq!(v["urt"], serde_json::Value::Null);
        assert_eq!(v["time"], "2026-11-21T05:11:51.629Z");
    }

    #[test]
    fn hostile_bytes_stay_one_parsable_line_and_utf8_is_kept() {
        let mut all: Vec<u8> = (0..=255).collect();
        all.extend_from_slice("é€😀".as_bytes());
        let entry = Entry {
            target: b"/\"}\\\n{\"x\":1}",
            user_agent: Some(&all),
            referer: Some(b"\xc3\x28 \xe2\x82 \xf0\x9f\x98"),
            request_id: Some(b"\x7f\x00"),
            ..Entry::default()
        };
        let v = parsed(&entry);
        assert_eq!(v["path"], "/\"}\\\n{\"x\":1}");
        assert_eq!(v["request_id"], "\u{7f}\u{0}");
        // Each byte that is not UTF-8 reads as the Latin-1 character of that number.
        let ua = v["user_agent"].as_str().unwrap();
        let expected: String = (0u8..=127)
            .map(char::from)
            .chain((128u8..=255).map(char::from))
            .chain("é€😀".chars())
            .collect();
        assert_eq!(ua, expected);
        assert_eq!(v["referer"], "\u{c3}( \u{e2}\u{82} \u{f0}\u{9f}\u{98}");
    }

    #[test]
    fn times_are_utc_with_milliseconds() {
        let mut out = Vec::new();
        iso_time(&mut out, UNIX_EPOCH + Duration::from_millis(951_782_400_007));
        iso_time(&mut out, UNIX_EPOCH);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2000-02-29T00:00:00.007Z1970-01-01T00:00:00.000Z"
        );
    }
}
