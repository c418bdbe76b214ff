//! The rules a request and its response pass on the way through, as pure functions of their
//! headers: the `Host` rule, the response's hop-by-hop fields (RFC 9110 §7.6.1, those named in
//! `Connection` too) and duplicated `Content-Length`s, the rate-limit key, and the `Location` of
//! the redirects lb answers itself.

use crate::config::RateKey;
use http::header::{CONNECTION, CONTENT_LENGTH, HOST};
use http::{HeaderName, StatusCode};
use pingora_http::{RequestHeader, ResponseHeader};
use std::net::{IpAddr, SocketAddr};

/// Hop-by-hop fields that never pass a proxy (RFC 9110 §7.6.1, RFC 9112 §9.6; `Keep-Alive` and
/// `Proxy-Connection` by convention). `Connection` itself is rewritten by the HTTP layer.
const HOP_BY_HOP: [HeaderName; 5] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("te"),
    HeaderName::from_static("trailer"),
    HeaderName::from_static("upgrade"),
];

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

/// The host a request is for: the URI's authority (absolute form, HTTP/2) or the `Host` header.
pub fn request_host(req: &RequestHeader) -> Option<&str> {
    req.uri
        .host()
        .or_else(|| req.headers.get(HOST).and_then(|v| v.to_str().ok()))
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

/// The rate-limit key of a request from `client`.
pub fn rate_key<'a>(key: &RateKey, req: &'a RequestHeader, client: Option<IpAddr>, buf: &'a mut [u8; 16]) -> &'a [u8] {
    match key {
        RateKey::SourceIp => match client.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => {
                buf[..4].copy_from_slice(&v4.octets());
                &buf[..4]
            }
            Some(IpAddr::V6(v6)) => {
                buf.copy_from_slice(&v6.octets());
                &buf[..]
            }
            None => b"",
        },
        RateKey::Header(name) => req.headers.get(name).map_or(b"", |v| v.as_bytes()),
    }
}

/// The path and query of `req`'s target.
fn path_and_query(req: &RequestHeader) -> &str {
    req.uri.path_and_query().map_or("/", |pq| pq.as_str())
}

/// `Location` of the HTTPS redirect of `req`: its host (port dropped) on `port` (left out for
/// 443), same path and query.
pub fn https_location(req: &RequestHeader, port: Option<u16>) -> Option<String> {
    let host = request_host(req)?;
    let name = match host.strip_prefix('[') {
        Some(v6) => format!("[{}]", v6.split(']').next()?),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h).to_string(),
    };
    let port = port.filter(|p| *p != 443).map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!("https://{name}{port}{}", path_and_query(req)))
}

/// `Location` of redirect mode: the same path and query on `backend`.
pub fn backend_location(req: &RequestHeader, backend: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{backend}{}", path_and_query(req))
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
    fn redirect_locations() {
        let mut req = RequestHeader::build("GET", b"/a/b?x=1", None).unwrap();
        req.append_header("host", "example.com:8080").unwrap();
        assert_eq!(
            https_location(&req, Some(8443)).unwrap(),
            "https://example.com:8443/a/b?x=1"
        );
        assert_eq!(https_location(&req, Some(443)).unwrap(), "https://example.com/a/b?x=1");
        let backend: SocketAddr = "10.0.0.7:9001".parse().unwrap();
        assert_eq!(backend_location(&req, backend, false), "http://10.0.0.7:9001/a/b?x=1");
    }
}
