//! The rules a request and its response pass on the way through, as pure functions of their
//! headers: the `Host` rule, the request's and the response's hop-by-hop fields (RFC 9110
//! §7.6.1, those named in `Connection` too), duplicated `Content-Length`s, and the `Location` of
//! redirect mode.

use http::header::{CONNECTION, CONTENT_LENGTH, HOST};
use http::{HeaderName, StatusCode};
use pingora_error::{Error, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};
use std::net::SocketAddr;

/// Hop-by-hop fields that never pass a proxy (RFC 9110 §7.6.1, RFC 9112 §9.6; `Keep-Alive` and
/// `Proxy-Connection` by convention).
const HOP_BY_HOP: [HeaderName; 6] = [
    CONNECTION,
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

/// Removes the response's hop-by-hop fields: `Connection`, the standard ones and every field
/// its `Connection` names (never the framing fields, whatever it names). The HTTP layer writes
/// its own `Connection` on a final response; a 1xx goes on without one. A `101` keeps `Upgrade`
/// and `Connection`, which make the switch.
pub fn strip_hop_by_hop(resp: &mut ResponseHeader) {
    if resp.status == StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    // Most responses carry none of them: one pass over the names says so.
    if !resp.headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
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

/// Makes several `Content-Length` values of one number one field with that number (RFC 9110
/// §8.6: "a single valid Content-Length field containing that decimal value"), also when they
/// write it differently (`5, 05`, which Pingora's parser lets through as 5). Values that are
/// not one number never get this far (Pingora refuses the response, a 502); should one, it is
/// refused here too.
pub fn single_content_length(resp: &mut ResponseHeader) -> pingora_error::Result<()> {
    let values: Vec<Option<u64>> = resp
        .headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|value| decimal(value.trim_ascii()))
        .collect();
    if values.len() < 2 {
        return Ok(());
    }
    match values[0] {
        Some(n) if values.iter().all(|v| *v == Some(n)) => resp.insert_header(CONTENT_LENGTH, n.to_string()),
        _ => Error::e_explain(ErrorType::InvalidHTTPHeader, "conflicting Content-Length values"),
    }
}

/// A `Content-Length` value (1*DIGIT) that fits in a u64.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Whether `resp` (a final response, to a `HEAD` request when `head`) has no body: RFC 9112
/// §6.3's bodiless statuses and methods, or a `Content-Length` of 0, however written (`00`:
/// Pingora frames by the number).
pub fn bodiless(head: bool, resp: &ResponseHeader) -> bool {
    head || matches!(resp.status.as_u16(), 204 | 304)
        || resp
            .headers
            .get(CONTENT_LENGTH)
            .is_some_and(|v| decimal(v.as_bytes()) == Some(0))
}

/// `Location` of redirect mode: the same path and query on `backend`.
pub fn backend_location(req: &RequestHeader, backend: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{backend}{}", crate::request::guard::path_and_query(req))
}

#[cfg(test)]
#[path = "policy_props.rs"]
mod props;

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

    /// Found by the property test: Pingora's parser takes `5, 05` as 5, and lb compared the
    /// values as bytes, so the client got `Content-Length: 5, 05` (or two fields).
    #[test]
    fn content_lengths_of_one_number_written_differently_become_one() {
        for fields in [
            &[("content-length", "5 ,05")][..],
            &[("content-length", "5"), ("content-length", "005")],
        ] {
            let mut r = resp(fields);
            single_content_length(&mut r).unwrap();
            let values: Vec<_> = r.headers.get_all("content-length").iter().collect();
            assert_eq!(values, ["5"], "{fields:?}");
        }
        let mut single = resp(&[("content-length", "05")]);
        single_content_length(&mut single).unwrap();
        assert_eq!(single.headers.get("content-length").unwrap(), "05");
        for conflicting in ["5, 6", "5, +5", "5, "] {
            assert!(single_content_length(&mut resp(&[("content-length", conflicting)])).is_err());
        }
    }

    /// Found by the property test: a 1xx (103 Early Hints) kept the backend's `Connection`,
    /// which the HTTP layer rewrites only on final responses.
    #[test]
    fn an_informational_response_goes_on_without_connection() {
        let mut hints = ResponseHeader::build(103, None).unwrap();
        hints.append_header("connection", "close, x-hop").unwrap();
        hints.append_header("x-hop", "1").unwrap();
        hints.append_header("link", "</a.css>; rel=preload").unwrap();
        strip_hop_by_hop(&mut hints);
        let names: Vec<&str> = hints.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["link"]);
    }

    /// Found by the property test: a zero length written `00` was not taken as no body, so on
    /// Pingora's loop an answer complete before the request body was read left the backend
    /// connection to be reused (hostile_backends.rs' early_answers).
    #[test]
    fn a_zero_length_however_written_is_no_body() {
        for zero in ["0", "00", "000"] {
            assert!(bodiless(false, &resp(&[("content-length", zero)])), "{zero}");
        }
        for some in ["1", "10", "01"] {
            assert!(!bodiless(false, &resp(&[("content-length", some)])), "{some}");
        }
        assert!(!bodiless(false, &resp(&[])));
        assert!(bodiless(true, &resp(&[("content-length", "5")])));
    }

    #[test]
    fn redirect_mode_locations() {
        let req = RequestHeader::build("GET", b"/a/b?x=1", None).unwrap();
        let backend: SocketAddr = "10.0.0.7:9001".parse().unwrap();
        assert_eq!(backend_location(&req, backend, false), "http://10.0.0.7:9001/a/b?x=1");
    }
}
