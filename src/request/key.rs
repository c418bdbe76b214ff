//! Hash keys taken from a request: URI, path, source IP, a header or a cookie, borrowed from the
//! request without copying. Which key a pool uses is configuration; hashing is the selector's job.

use crate::config::HashKey;
use http::header::COOKIE;
use pingora_http::RequestHeader;
use std::net::IpAddr;

/// A key's bytes: borrowed from the request, or up to 16 bytes held inline (an IP address).
pub enum Key<'a> {
    /// Bytes of the request.
    Bytes(&'a [u8]),
    /// Short bytes of our own, `.0[..len]`.
    Inline([u8; 16], usize),
}

impl Key<'_> {
    /// The bytes to hash.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Bytes(b) => b,
            Key::Inline(buf, len) => &buf[..*len],
        }
    }

    /// A key of `bytes` (at most 16 are kept).
    pub fn inline(bytes: &[u8]) -> Key<'static> {
        let mut buf = [0u8; 16];
        let len = bytes.len().min(16);
        buf[..len].copy_from_slice(&bytes[..len]);
        Key::Inline(buf, len)
    }
}

/// The key `source` names in `req` from client `client`, or `None` when the request lacks it.
pub fn extract<'a>(source: &HashKey, req: &'a RequestHeader, client: Option<IpAddr>) -> Option<Key<'a>> {
    match source {
        HashKey::Uri => Some(Key::Bytes(uri_bytes(req))),
        HashKey::Path => Some(Key::Bytes(req.uri.path().as_bytes())),
        HashKey::SourceIp => client.map(ip_key),
        HashKey::Header(name) => req.headers.get(name).map(|v| Key::Bytes(v.as_bytes())),
        HashKey::Cookie(name) => cookie(req, name).map(Key::Bytes),
    }
}

fn uri_bytes(req: &RequestHeader) -> &[u8] {
    req.uri
        .path_and_query()
        .map_or(b"/".as_slice(), |pq| pq.as_str().as_bytes())
}

fn ip_key(ip: IpAddr) -> Key<'static> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => Key::inline(&v4.octets()),
        IpAddr::V6(v6) => Key::inline(&v6.octets()),
    }
}

/// The value of cookie `name` across all `Cookie` headers (`a=1; b=2`).
fn cookie<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a [u8]> {
    req.headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let rest = pair.strip_prefix(name.as_bytes())?;
            rest.strip_prefix(b"=")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    fn key(source: HashKey, req: &RequestHeader) -> Option<Vec<u8>> {
        let client = Some("10.1.2.3".parse().unwrap());
        extract(&source, req, client).map(|k| k.as_bytes().to_vec())
    }

    #[test]
    fn uri_and_path() {
        let r = req("/a/b?x=1", &[]);
        assert_eq!(key(HashKey::Uri, &r).unwrap(), b"/a/b?x=1");
        assert_eq!(key(HashKey::Path, &r).unwrap(), b"/a/b");
    }

    #[test]
    fn source_ip_is_the_address_bytes() {
        assert_eq!(key(HashKey::SourceIp, &req("/", &[])).unwrap(), [10, 1, 2, 3]);
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(ip_key(mapped).as_bytes(), [10, 1, 2, 3]);
    }

    #[test]
    fn header_takes_the_first_value() {
        let r = req("/", &[("x-user", "alice"), ("x-user", "bob")]);
        assert_eq!(
            key(HashKey::Header(http::HeaderName::from_static("x-user")), &r).unwrap(),
            b"alice"
        );
        assert!(key(HashKey::Header(http::HeaderName::from_static("x-other")), &r).is_none());
    }

    #[test]
    fn cookie_is_found_in_any_cookie_header() {
        let r = req("/", &[("cookie", "a=1; sidx=9"), ("cookie", "sid=abc; b=2")]);
        assert_eq!(key(HashKey::Cookie("sid".into()), &r).unwrap(), b"abc");
        assert_eq!(key(HashKey::Cookie("a".into()), &r).unwrap(), b"1");
        assert!(key(HashKey::Cookie("c".into()), &r).is_none());
    }
}
