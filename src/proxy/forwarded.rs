//! `X-Forwarded-For` / `-Proto` / `-Host` on the request to the backend, as nginx's usual
//! `proxy_set_header` lines set them. The client's `Host` header itself is passed unchanged.

use http::header::HOST;
use http::HeaderValue;
use pingora_error::{ErrorType, OrErr, Result};
use pingora_http::RequestHeader;
use std::net::IpAddr;

const XFF: &str = "x-forwarded-for";
const XFP: &str = "x-forwarded-proto";
const XFH: &str = "x-forwarded-host";

/// Appends the client to `X-Forwarded-For` (all earlier values kept, in one comma-separated
/// header) and sets `X-Forwarded-Proto` to `scheme` and `X-Forwarded-Host` to the `Host`.
pub fn set_headers(req: &mut RequestHeader, client: Option<IpAddr>, scheme: &'static str) -> Result<()> {
    if let Some(ip) = client {
        let xff = appended_xff(req, ip.to_canonical());
        let value = HeaderValue::from_str(&xff).or_err(ErrorType::InvalidHTTPHeader, "X-Forwarded-For")?;
        req.insert_header(XFF, value)?;
    }
    req.insert_header(XFP, scheme)?;
    if let Some(host) = req.headers.get(HOST).cloned() {
        req.insert_header(XFH, host)?;
    }
    Ok(())
}

fn appended_xff(req: &RequestHeader, ip: IpAddr) -> String {
    let mut xff = String::new();
    for value in req.headers.get_all(XFF) {
        if let Ok(text) = value.to_str() {
            if !text.trim().is_empty() {
                xff.push_str(text.trim());
                xff.push_str(", ");
            }
        }
    }
    xff.push_str(&ip.to_string());
    xff
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
