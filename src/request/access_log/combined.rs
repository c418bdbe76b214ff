//! The `combined` line: nginx's combined format followed by lb's own fields (`pool=`,
//! `upstream=` the last backend tried, `tries=`, `rt=` total and `urt=` backend seconds, then
//! `route=` and `request_id=`).

use super::text::{civil, push_secs, push_socket, push_u64};
use super::Entry;
use std::cell::RefCell;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Appends the line of `e` (ending in `\n`) at `now`.
pub(super) fn line(out: &mut Vec<u8>, e: &Entry, now: SystemTime) {
    match e.client {
        Some(ip) => super::text::push_ip(out, ip.to_canonical()),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" - - [");
    clf_time(out, now);
    out.extend_from_slice(b"] \"");
    out.extend_from_slice(e.method.as_bytes());
    out.push(b' ');
    escaped(out, e.target, false);
    out.push(b' ');
    out.extend_from_slice(e.version.as_bytes());
    out.extend_from_slice(b"\" ");
    push_u64(out, e.status.into());
    out.push(b' ');
    push_u64(out, e.bytes as u64);
    out.extend_from_slice(b" \"");
    escaped(out, e.referer.unwrap_or(b"-"), false);
    out.extend_from_slice(b"\" \"");
    escaped(out, e.user_agent.unwrap_or(b"-"), false);
    out.extend_from_slice(b"\"");
    lb_fields(out, e);
    out.push(b'\n');
}

/// ` pool=web upstream=127.0.0.1:9001 tries=1 rt=0.003 urt=0.002 route=api request_id=...`.
fn lb_fields(out: &mut Vec<u8>, e: &Entry) {
    out.extend_from_slice(b" pool=");
    out.extend_from_slice(e.pool.unwrap_or("-").as_bytes());
    out.extend_from_slice(b" upstream=");
    match e.upstream {
        Some(addr) => push_socket(out, addr),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" tries=");
    push_u64(out, e.tries as u64);
    out.extend_from_slice(b" rt=");
    push_secs(out, e.total);
    out.extend_from_slice(b" urt=");
    match e.upstream_time {
        Some(t) => push_secs(out, t),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" route=");
    out.extend_from_slice(e.route.unwrap_or("-").as_bytes());
    out.extend_from_slice(b" request_id=");
    // An id kept from a proxy is the client's bytes: escaped, spaces too (the field is unquoted).
    escaped(out, e.request_id.filter(|id| !id.is_empty()).unwrap_or(b"-"), true);
}

/// Bytes from the client as nginx logs them: quotes, backslashes and non-printables as `\xHH`;
/// `spaces` too in an unquoted field.
fn escaped(out: &mut Vec<u8>, bytes: &[u8], spaces: bool) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) || (spaces && b == b' ') {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b);
        }
    }
}

thread_local! {
    /// The last second formatted, and its text: formatting a date once per second per thread.
    static CLF: RefCell<(u64, [u8; 26])> = const { RefCell::new((u64::MAX, [0; 26])) };
}

/// `21/Nov/2026:05:18:12 +0000`.
fn clf_time(out: &mut Vec<u8>, now: SystemTime) {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CLF.with(|cell| {
        let mut cache = cell.borrow_mut();
        if cache.0 != secs {
            let mut text = [0u8; 26];
            let _ = write!(&mut text[..], "{}", Utc(secs));
            *cache = (secs, text);
        }
        out.extend_from_slice(&cache.1);
    })
}

/// A UTC time in the common log format.
struct Utc(u64);

impl std::fmt::Display for Utc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let (year, month, day) = civil((self.0 / 86_400) as i64);
        let rem = self.0 % 86_400;
        let name = MONTHS[(month - 1) as usize];
        write!(
            f,
            "{day:02}/{name}/{year}:{:02}:{:02}:{:02} +0000",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_in_the_common_log_format() {
        assert_eq!(Utc(0).to_string(), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(Utc(1_795_237_911).to_string(), "21/Nov/2026:05:11:51 +0000");
        assert_eq!(Utc(951_782_400).to_string(), "29/Feb/2000:00:00:00 +0000");
    }

    #[test]
    fn a_line_is_combined_format_plus_lb_fields() {
        let entry = Entry {
            client: Some("::ffff:10.0.0.7".parse().unwrap()),
            method: "GET",
            target: b"/a?q=\"x\"",
            version: "HTTP/1.1",
            status: 200,
            bytes: 12,
            user_agent: Some(b"curl/8"),
            pool: Some("web"),
            upstream: Some("127.0.0.1:9001".parse().unwrap()),
            tries: 1,
            total: Duration::from_millis(3),
            upstream_time: Some(Duration::from_millis(2)),
            route: Some("api"),
            request_id: Some(b"id 1\"\xff"),
            ..Entry::default()
        };
        let mut out = Vec::new();
        line(&mut out, &entry, UNIX_EPOCH + Duration::from_secs(1_795_237_911));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "10.0.0.7 - - [21/Nov/2026:05:11:51 +0000] \"GET /a?q=\\x22x\\x22 HTTP/1.1\" 200 12 \"-\" \"curl/8\" \
             pool=web upstream=127.0.0.1:9001 tries=1 rt=0.003 urt=0.002 route=api request_id=id\\x201\\x22\\xFF\n"
        );
    }

    #[test]
    fn missing_fields_are_dashes() {
        let mut out = Vec::new();
        line(&mut out, &Entry::default(), UNIX_EPOCH);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("pool=- upstream=- tries=0 rt=0.000 urt=- route=- request_id=-\n"),
            "{text}"
        );
    }
}
