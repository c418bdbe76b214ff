//! A route's guards: the checks a request passes before the route's pool sees it, each of which
//! may answer it instead (an HTTPS redirect, a rate limit, redirect mode). They run in order in
//! the proxy's admission, the one decision both request loops call; how an answer is written is
//! the proxy's. A new kind of answer is a new [`Guard`].

use crate::config::RateKey;
use crate::request::rate_limit::RateLimiter;
use crate::request::request_host;
use pingora_http::RequestHeader;
use std::net::IpAddr;

/// What a guard sees of a request.
pub struct Asked<'a> {
    /// The request head.
    pub req: &'a RequestHeader,
    /// Whether it came over TLS.
    pub tls: bool,
    /// The client (through trusted proxies).
    pub client: Option<IpAddr>,
    /// Now, in nanoseconds on lb's clock (rate limits).
    pub now_ns: u64,
}

/// An answer lb gives itself, without a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `status` with a one-line text body; `close`: the connection ends after it.
    Text {
        /// The status.
        status: u16,
        /// What the body says after the status.
        detail: &'static str,
        /// Whether the client connection closes after the answer.
        close: bool,
    },
    /// The final recipient's answer to OPTIONS or TRACE with `Max-Forwards: 0`.
    FinalRecipient,
    /// A redirect to `location`.
    Redirect {
        /// 301, 302, 307 or 308.
        status: u16,
        /// Where to.
        location: String,
    },
    /// 429 with `Retry-After: retry_after` seconds.
    TooMany {
        /// Seconds until a request would pass.
        retry_after: u64,
    },
    /// Redirect mode: the backend the route's pool picks, in `Location`.
    ToBackend {
        /// The redirect status.
        status: u16,
    },
    /// 401 with `WWW-Authenticate: challenge`.
    Unauthorized {
        /// The challenge (`Basic realm="..."`).
        challenge: std::sync::Arc<str>,
    },
}

/// A check a route makes before proxying.
pub trait Guard: Send + Sync {
    /// The answer to `asked` instead of proxying it, if any.
    fn check(&self, asked: &Asked<'_>) -> Option<Answer>;
    /// Forgets state that is no longer needed (called every few seconds).
    fn sweep(&self, _now_ns: u64) {}
}

/// `https_redirect`: plain-HTTP requests go to the same URL over HTTPS.
pub struct HttpsRedirect {
    /// The redirect status.
    pub status: u16,
    /// The port HTTPS is on (the first TLS listener's), when there is one.
    pub port: Option<u16>,
}

impl Guard for HttpsRedirect {
    fn check(&self, asked: &Asked<'_>) -> Option<Answer> {
        (!asked.tls).then(|| Answer::Redirect {
            status: self.status,
            location: https_location(asked.req, self.port).unwrap_or_else(|| "https:///".into()),
        })
    }
}

/// `rate_limit`: requests over the rate (per key) get 429.
pub struct RateLimit {
    /// Token buckets by key.
    pub limiter: RateLimiter,
    /// What a key is.
    pub key: RateKey,
}

impl Guard for RateLimit {
    fn check(&self, asked: &Asked<'_>) -> Option<Answer> {
        let mut buf = [0u8; 16];
        let key = rate_key(&self.key, asked.req, asked.client, &mut buf);
        let wait = self.limiter.check(key, asked.now_ns).err()?;
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Some(Answer::TooMany {
            retry_after: seconds.max(1),
        })
    }

    fn sweep(&self, now_ns: u64) {
        self.limiter.sweep(now_ns);
    }
}

/// `redirect`: every request is answered with the backend the pool picks.
pub struct RedirectMode {
    /// The redirect status.
    pub status: u16,
}

impl Guard for RedirectMode {
    fn check(&self, _asked: &Asked<'_>) -> Option<Answer> {
        Some(Answer::ToBackend { status: self.status })
    }
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
pub fn path_and_query(req: &RequestHeader) -> &str {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn get(host: &str) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/a/b?x=1", None).unwrap();
        req.append_header("host", host).unwrap();
        req
    }

    fn asked(req: &RequestHeader, tls: bool) -> Asked<'_> {
        Asked {
            req,
            tls,
            client: Some("192.0.2.7".parse().unwrap()),
            now_ns: 1_000_000_000,
        }
    }

    #[test]
    fn https_redirects_keep_the_path_and_drop_the_port() {
        let req = get("example.com:8080");
        assert_eq!(
            https_location(&req, Some(8443)).unwrap(),
            "https://example.com:8443/a/b?x=1"
        );
        assert_eq!(https_location(&req, Some(443)).unwrap(), "https://example.com/a/b?x=1");
        assert_eq!(https_location(&get("[::1]:80"), None).unwrap(), "https://[::1]/a/b?x=1");
        let guard = HttpsRedirect {
            status: 308,
            port: None,
        };
        assert!(guard.check(&asked(&req, true)).is_none(), "TLS requests pass");
        assert_eq!(
            guard.check(&asked(&req, false)),
            Some(Answer::Redirect {
                status: 308,
                location: "https://example.com/a/b?x=1".into()
            })
        );
    }

    #[test]
    fn a_rate_limit_answers_429_past_its_burst_with_the_seconds_to_wait() {
        let guard = RateLimit {
            limiter: RateLimiter::new(1.0, 2),
            key: RateKey::SourceIp,
        };
        let req = get("a");
        assert!(guard.check(&asked(&req, false)).is_none());
        assert!(guard.check(&asked(&req, false)).is_none());
        assert_eq!(
            guard.check(&asked(&req, false)),
            Some(Answer::TooMany { retry_after: 1 })
        );
    }

    #[test]
    fn source_ip_keys_are_the_address_bytes() {
        let req = get("a");
        let mut buf = [0u8; 16];
        let v4 = rate_key(&RateKey::SourceIp, &req, Some("10.1.2.3".parse().unwrap()), &mut buf);
        assert_eq!(v4, &[10, 1, 2, 3]);
        let mapped = "::ffff:10.1.2.3".parse().ok();
        assert_eq!(rate_key(&RateKey::SourceIp, &req, mapped, &mut buf), &[10, 1, 2, 3]);
        assert_eq!(rate_key(&RateKey::SourceIp, &req, None, &mut buf), b"");
    }
}
