//! The rules a request and its response pass on the way through, as pure functions of their
//! headers: the `Host` rule, the request's and the response's hop-by-hop fields (RFC 9110
//! §7.6.1, those named in `Connection` too), duplicated `Content-Length`s, and the `Location` of
//! redirect mode.

use http::header::{CONNECTION, CONTENT_LENGTH, HOST};
use http::{HeaderName, StatusCode};
use pingora_http::{RequestHeader, ResponseHeader};
use std::net::SocketAddr;

/// Hop-by-hop fields that never pass a proxy (RFC 9110 §7.6.1, RFC 9112 §9.6; `Keep-Alive` and
/// `Proxy-Connection` by convention). `Connection` itself is rewritten by the HTTP layer.
const HOP_BY_HOP: [HeaderName; 5] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("te"),
    HeaderName::from_static("trailer"),
    HeaderName::from_static("upgrade"),
];

/// A request's hop-by-hop fields, which never go to the backend (the standard list of Pingora's
/// request policy: RFC 9110 §7.6.1, the framing fields, the proxy and upgrade fields).
const REQUEST_HOP_BY_HOP: [HeaderName; 10] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// `Connection` options a request may give, at most (fewer than this; Pingora's and Envoy's
/// bound, so that the list costs little to read).
const MAX_NOMINATIONS: usize = 10;

/// The fields of `req` that do not go to the backend: its hop-by-hop fields and every field its
/// `Connection` names. A `Connection` that names `Host` or a forwarding field, a pseudo-header,
/// something that is not a token, or ten options or more is refused (a 400), as Pingora's
/// standard request policy does: the one sanitizer of requests lb's own loop sends (Pingora's
/// loop applies Pingora's, which this mirrors; the differential test compares them).
pub fn request_hop_by_hop(req: &RequestHeader) -> Result<Vec<HeaderName>, &'static str> {
    let mut drop: Vec<HeaderName> = REQUEST_HOP_BY_HOP
        .iter()
        .filter(|name| req.headers.contains_key(*name))
        .cloned()
        .collect();
    let tokens = req
        .headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty());
    for (i, token) in tokens.enumerate() {
        if i + 1 >= MAX_NOMINATIONS {
            return Err("too many Connection header nominations");
        }
        if token.starts_with(b":") || !crate::request::front::head::is_token(token) {
            return Err("invalid token nominated by the Connection header");
        }
        let name = HeaderName::from_bytes(token).map_err(|_| "invalid token nominated by the Connection header")?;
        if matches!(
            name.as_str(),
            "host" | "x-forwarded-for" | "x-forwarded-host" | "x-forwarded-proto"
        ) {
            return Err("protected header cannot be nominated by the Connection header");
        }
        if req.headers.contains_key(&name) && !drop.contains(&name) {
            drop.push(name);
        }
    }
    Ok(drop)
}

/// Why the request's `Host` is unacceptable, if it is (RFC 9112 §3.2: an HTTP/1.1 request
/// carries exactly one).
pub fn bad_host(req: &RequestHeader) -> Option<&'static str> {
    let mut hosts = req.headers.get_all(HOST).iter();
    let missing = hosts.next().is_none();
    if hosts.next().is_some() {
        return Some("more than one Host header");
    }
    (missing && req.version == http::Version::HTTP_11).then_some("HTTP/1.1 request without a Host header")
}

/// Removes the response's hop-by-hop fields: the standard ones and every field its
/// `Connection` names (never the framing fields, whatever it names). A `101` keeps `Upgrade`
/// and `Connection`, which make the switch.
pub fn strip_hop_by_hop(resp: &mut ResponseHeader) {
    if resp.status == StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    // Most responses carry none of them: one pass over the names says so.
    let hop = |name: &HeaderName| name == CONNECTION || HOP_BY_HOP.contains(name);
    if !resp.headers.keys().any(hop) {
        return;
    }
    let named: Vec<HeaderName> = resp
        .headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|token| HeaderName::from_bytes(token.trim_ascii()).ok())
        .filter(|n| !matches!(n.as_str(), "content-length" | "transfer-encoding" | "connection"))
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        if resp.headers.contains_key(name) {
            resp.remove_header(name);
        }
    }
}

/// Makes several identical `Content-Length` values one (RFC 9110 §8.6 lets a recipient do so);
/// conflicting values never get this far (the response is refused with 502).
pub fn single_content_length(resp: &mut ResponseHeader) -> pingora_error::Result<()> {
    let values: Vec<&[u8]> = resp
        .headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    if values.len() > 1 && values.windows(2).all(|w| w[0] == w[1]) {
        let value = String::from_utf8_lossy(values[0]).into_owned();
        resp.insert_header(CONTENT_LENGTH, value)?;
    }
    Ok(())
}

/// Whether `resp` (a final response, to a `HEAD` request when `head`) has no body: RFC 9112
/// §6.3's bodiless statuses and methods, or a `Content-Length` of 0.
pub fn bodiless(head: bool, resp: &ResponseHeader) -> bool {
    head || matches!(resp.status.as_u16(), 204 | 304)
        || resp.headers.get(CONTENT_LENGTH).is_some_and(|v| v.as_bytes() == b"0")
}

/// `Location` of redirect mode: the same path and query on `backend`.
pub fn backend_location(req: &RequestHeader, backend: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{backend}{}", crate::request::guard::path_and_query(req))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_go() {
        let mut r = resp(&[
            ("connection", "X-Secret, close, Content-Length"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("upgrade", "h2c"),
            ("trailer", "x"),
            ("content-length", "3"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut r);
        for gone in ["x-secret", "keep-alive", "upgrade", "trailer"] {
            assert!(r.headers.get(gone).is_none(), "{gone}");
        }
        assert!(r.headers.get("content-length").is_some() && r.headers.get("x-kept").is_some());
        let mut switching = ResponseHeader::build(101, None).unwrap();
        switching.append_header("upgrade", "websocket").unwrap();
        strip_hop_by_hop(&mut switching);
        assert!(switching.headers.get("upgrade").is_some());
    }

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn a_requests_hop_by_hop_fields_and_those_connection_names_do_not_go_up() {
        let r = req(&[
            ("host", "a"),
            ("connection", "X-Hop, keep-alive"),
            ("x-hop", "1"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic eA=="),
            ("x-kept", "yes"),
        ]);
        let names: Vec<String> = request_hop_by_hop(&r).unwrap().iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["connection", "proxy-authorization", "te", "x-hop"]);
        assert!(request_hop_by_hop(&req(&[("host", "a")])).unwrap().is_empty());
    }

    #[test]
    fn a_connection_that_names_protected_fields_or_too_much_is_refused() {
        for value in [
            "host",
            "X-Forwarded-For",
            ":authority",
            "\"x\"",
            "a, b, c, d, e, f, g, h, i, j",
        ] {
            assert!(request_hop_by_hop(&req(&[("connection", value)])).is_err(), "{value}");
        }
        assert!(request_hop_by_hop(&req(&[("connection", "a, b, c, d, e, f, g, h, i")])).is_ok());
    }

    #[test]
    fn identical_content_lengths_become_one() {
        let mut r = resp(&[("content-length", "5"), ("content-length", "5")]);
        single_content_length(&mut r).unwrap();
        assert_eq!(r.headers.get_all("content-length").iter().count(), 1);
        let mut listed = resp(&[("content-length", "5, 5")]);
        single_content_length(&mut listed).unwrap();
        assert_eq!(listed.headers.get("content-length").unwrap(), "5");
    }

    #[test]
    fn redirect_mode_locations() {
        let req = RequestHeader::build("GET", b"/a/b?x=1", None).unwrap();
        let backend: SocketAddr = "10.0.0.7:9001".parse().unwrap();
        assert_eq!(backend_location(&req, backend, false), "http://10.0.0.7:9001/a/b?x=1");
    }
}
