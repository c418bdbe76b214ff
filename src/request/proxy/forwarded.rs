//! What the backend is told about the request's way through: `X-Forwarded-For` / `-Proto` /
//! `-Host` as nginx's usual `proxy_set_header` lines set them, `Via` (RFC 9110 §7.6.3),
//! `Max-Forwards` decremented (§7.6.2); and who the client is when trusted proxies stand in
//! front (`X-Forwarded-For` read from the right, as nginx's `real_ip_recursive`). The client's
//! `Host` header itself is passed unchanged.
//!
//! The request to the backend is rebuilt without Pingora's header-case map ([`without_case`]),
//! as HAProxy does: field names go out in their canonical case (`Host`, `User-Agent`, ...) or
//! lower case, and the fields added here go straight into the header map, with no name parsed
//! again and no second map to keep in step.

use crate::config::Cidr;
use http::header::{HOST, MAX_FORWARDS, VIA};
use http::request::Parts;
use http::{HeaderName, HeaderValue};
use pingora_error::Result;
use pingora_http::RequestHeader;
use std::io::Write;
use std::net::IpAddr;

const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Fields the request to the backend may gain here (X-Forwarded-*, Via, Host).
pub const ADDED: usize = 5;

/// The parts of `req` without its header-case map, with room for the fields added here.
pub fn without_case(req: RequestHeader) -> Parts {
    let mut parts = Parts::from(req);
    parts.headers.reserve(ADDED);
    parts
}

/// Appends the client to `X-Forwarded-For` (all earlier values kept, in one comma-separated
/// header) and sets `X-Forwarded-Proto` to `scheme` and `X-Forwarded-Host` to the `Host`.
pub fn set_headers(req: &mut Parts, client: Option<IpAddr>, scheme: &'static str) -> Result<()> {
    if let Some(ip) = client {
        let value = xff_value(req, ip.to_canonical());
        req.headers.insert(XFF, value);
    }
    req.headers.insert(XFP, HeaderValue::from_static(scheme));
    if let Some(host) = req.headers.get(HOST).cloned() {
        req.headers.insert(XFH, host);
    }
    Ok(())
}

/// A `Host` for a request that has none (HTTP/1.0 may come without one; what lb forwards is
/// HTTP/1.1, which must carry it, RFC 9112 §3.2): the backend's address, as nginx's
/// `$proxy_host`.
pub fn ensure_host(req: &mut Parts, backend: Option<std::net::SocketAddr>) -> Result<()> {
    match (req.headers.get(HOST), backend) {
        (None, Some(addr)) => {
            if let Ok(value) = HeaderValue::from_str(&addr.to_string()) {
                req.headers.insert(HOST, value);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `Via: 1.1 lb` appended to earlier hops (a gateway MUST add it to forwarded requests).
pub fn add_via(req: &mut Parts) -> Result<()> {
    let earlier: Vec<&[u8]> = req.headers.get_all(VIA).iter().map(|v| v.as_bytes()).collect();
    let value = if earlier.is_empty() {
        HeaderValue::from_static("1.1 lb")
    } else {
        let mut joined = earlier.join(&b", "[..]);
        joined.extend_from_slice(b", 1.1 lb");
        HeaderValue::from_bytes(&joined).unwrap_or(HeaderValue::from_static("1.1 lb"))
    };
    req.headers.insert(VIA, value);
    Ok(())
}

/// `Max-Forwards` of an OPTIONS or TRACE request: `Some(n)` when present and valid.
pub fn max_forwards(req: &Parts) -> Option<u64> {
    let method = &req.method;
    if method != http::Method::OPTIONS && method != http::Method::TRACE {
        return None;
    }
    req.headers.get(MAX_FORWARDS)?.to_str().ok()?.trim().parse().ok()
}

/// Decrements `Max-Forwards` (RFC 9110 §7.6.2: every intermediary MUST).
pub fn decrement_max_forwards(req: &mut Parts) -> Result<()> {
    if let Some(n) = max_forwards(req).filter(|n| *n > 0) {
        req.headers.insert(MAX_FORWARDS, HeaderValue::from(n - 1));
    }
    Ok(())
}

/// The client of a request from `peer`: `peer` itself, unless it is a trusted proxy; then the
/// right-most address of `X-Forwarded-For` that is not a trusted proxy (or the left-most, when
/// all are).
pub fn real_client(req: &RequestHeader, peer: Option<IpAddr>, trusted: &[Cidr]) -> Option<IpAddr> {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer?;
    if trusted.is_empty() || !is_trusted(peer) {
        return Some(peer);
    }
    let mut chain: Vec<IpAddr> = Vec::new();
    for value in req.headers.get_all(XFF) {
        let Ok(text) = value.to_str() else { return Some(peer) };
        for part in text.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => chain.push(ip),
                Err(_) => return Some(peer),
            }
        }
    }
    let mut client = peer;
    for ip in chain.into_iter().rev() {
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    Some(client.to_canonical())
}

/// The new `X-Forwarded-For`: earlier values, then `ip`. Without earlier values (the common
/// case) the address is written straight into the header value, with no string in between.
fn xff_value(req: &Parts, ip: IpAddr) -> HeaderValue {
    let mut buf = [0u8; 64];
    let addr = ip_text(ip, &mut buf);
    let earlier: Vec<&[u8]> = req
        .headers
        .get_all(XFF)
        .iter()
        .map(|v| v.as_bytes().trim_ascii())
        .filter(|v| !v.is_empty())
        .collect();
    let value = if earlier.is_empty() {
        HeaderValue::from_bytes(addr)
    } else {
        let mut joined = earlier.join(&b", "[..]);
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(addr);
        HeaderValue::from_bytes(&joined)
    };
    // An address and values that were valid header values make a valid header value.
    value.unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// `ip` as text in `buf`: IPv4 written digit by digit (the common case, without the
/// formatting machinery), IPv6 through `Display`.
fn ip_text(ip: IpAddr, buf: &mut [u8; 64]) -> &[u8] {
    let len = match ip {
        IpAddr::V4(v4) => {
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    buf[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    buf[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                buf[len] = b'0' + octet % 10;
                len += 1;
            }
            len
        }
        IpAddr::V6(_) => {
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cursor, "{ip}");
            cursor.position() as usize
        }
    };
    &buf[..len]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    fn parts(headers: &[(&str, &str)]) -> Parts {
        without_case(req(headers))
    }

    #[test]
    fn xff_is_appended_to_earlier_hops() {
        let xff = "x-forwarded-for";
        let mut r = parts(&[("host", "a.com"), (xff, "1.1.1.1"), (xff, "2.2.2.2, 3.3.3.3")]);
        set_headers(&mut r, Some("10.0.0.9".parse().unwrap()), "http").unwrap();
        assert_eq!(r.headers.get(XFF).unwrap(), "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9");
        assert_eq!(r.headers.get_all(XFF).iter().count(), 1);
        assert_eq!(r.headers.get(XFP).unwrap(), "http");
        assert_eq!(r.headers.get(XFH).unwrap(), "a.com");
        assert_eq!(r.headers.get(HOST).unwrap(), "a.com");
    }

    #[test]
    fn trusted_proxies_let_forwarded_for_name_the_client() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let xff = "x-forwarded-for";
        let r = req(&[(xff, "203.0.113.9, 10.1.1.1"), (xff, "10.2.2.2")]);
        let peer = Some("10.9.9.9".parse().unwrap());
        assert_eq!(real_client(&r, peer, &trusted), Some("203.0.113.9".parse().unwrap()));
        // An untrusted peer is the client whatever it claims.
        let outsider = Some("198.51.100.7".parse().unwrap());
        assert_eq!(real_client(&r, outsider, &trusted), outsider);
        assert_eq!(real_client(&r, peer, &[]), peer);
        // A malformed chain is not believed.
        let bad = req(&[(xff, "203.0.113.9, junk")]);
        assert_eq!(real_client(&bad, peer, &trusted), peer);
    }

    #[test]
    fn via_and_max_forwards() {
        let mut r = parts(&[("via", "1.0 fred")]);
        add_via(&mut r).unwrap();
        assert_eq!(r.headers.get(VIA).unwrap(), "1.0 fred, 1.1 lb");
        let mut o = RequestHeader::build("OPTIONS", b"*", None).unwrap();
        o.append_header("max-forwards", "3").unwrap();
        let mut o = without_case(o);
        assert_eq!(max_forwards(&o), Some(3));
        decrement_max_forwards(&mut o).unwrap();
        assert_eq!(o.headers.get(MAX_FORWARDS).unwrap(), "2");
        assert_eq!(
            max_forwards(&req(&[("max-forwards", "0")])),
            None,
            "only OPTIONS and TRACE"
        );
    }

    #[test]
    fn addresses_as_text() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "127.0.0.1",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip, &mut [0; 64]), ip.to_string().as_bytes());
        }
    }

    #[test]
    fn first_hop_and_mapped_addresses() {
        let mut r = parts(&[]);
        set_headers(&mut r, Some("::ffff:127.0.0.5".parse().unwrap()), "http").unwrap();
        assert_eq!(r.headers.get(XFF).unwrap(), "127.0.0.5");
        assert!(r.headers.get(XFH).is_none());
    }
}
