//! `X-Forwarded-For` / `-Proto` / `-Host` on the request to the backend, as nginx's usual
//! `proxy_set_header` lines set them. The client's `Host` header itself is passed unchanged.

use http::header::HOST;
use http::HeaderValue;
use pingora_error::Result;
use pingora_http::RequestHeader;
use std::io::Write;
use std::net::IpAddr;

const XFF: &str = "x-forwarded-for";
const XFP: &str = "x-forwarded-proto";
const XFH: &str = "x-forwarded-host";

/// Appends the client to `X-Forwarded-For` (all earlier values kept, in one comma-separated
/// header) and sets `X-Forwarded-Proto` to `scheme` and `X-Forwarded-Host` to the `Host`.
pub fn set_headers(req: &mut RequestHeader, client: Option<IpAddr>, scheme: &'static str) -> Result<()> {
    if let Some(ip) = client {
        let value = xff_value(req, ip.to_canonical());
        req.insert_header(XFF, value)?;
    }
    req.insert_header(XFP, HeaderValue::from_static(scheme))?;
    if let Some(host) = req.headers.get(HOST).cloned() {
        req.insert_header(XFH, host)?;
    }
    Ok(())
}

/// The new `X-Forwarded-For`: earlier values, then `ip`. Without earlier values (the common
/// case) the address is written straight into the header value, with no string in between.
fn xff_value(req: &RequestHeader, ip: IpAddr) -> HeaderValue {
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{ip}");
    let len = cursor.position() as usize;
    let addr = &buf[..len];
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

    #[test]
    fn xff_is_appended_to_earlier_hops() {
        let mut r = req(&[("host", "a.com"), (XFF, "1.1.1.1"), (XFF, "2.2.2.2, 3.3.3.3")]);
        set_headers(&mut r, Some("10.0.0.9".parse().unwrap()), "http").unwrap();
        assert_eq!(r.headers.get(XFF).unwrap(), "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9");
        assert_eq!(r.headers.get_all(XFF).iter().count(), 1);
        assert_eq!(r.headers.get(XFP).unwrap(), "http");
        assert_eq!(r.headers.get(XFH).unwrap(), "a.com");
        assert_eq!(r.headers.get(HOST).unwrap(), "a.com");
    }

    #[test]
    fn first_hop_and_mapped_addresses() {
        let mut r = req(&[]);
        set_headers(&mut r, Some("::ffff:127.0.0.5".parse().unwrap()), "http").unwrap();
        assert_eq!(r.headers.get(XFF).unwrap(), "127.0.0.5");
        assert!(r.headers.get(XFH).is_none());
    }
}
