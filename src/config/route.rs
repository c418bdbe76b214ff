//! A `routes:` entry: which requests it matches (`match:`, or the older top-level host and path
//! prefix), where they go (an upstream, or a weighted split between several), and what happens
//! on the way (access control, basic auth, rate limit, redirects, request and response rules,
//! compression, a mirror copy).

use super::rules::{MatchConf, RequestRules, ResponseRules};
use super::{Cidr, HashKey, Size};
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// Sends matching requests to an upstream. A route without conditions matches all.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// A name, unique among routes: in metrics, the access log and the admin API (routes the API
    /// changes need one). Default: none.
    #[serde(default)]
    pub name: Option<String>,
    /// `Host` to match (the older form of `match.host`).
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix to match (the older form of `match.path_prefix`).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// What a request must look like; every condition given must hold. Default: anything.
    #[serde(default, rename = "match")]
    pub matches: MatchConf,
    /// Name of the upstream that serves the match (or `split`).
    #[serde(default)]
    pub upstream: Option<String>,
    /// A weighted choice between upstreams, instead of `upstream`.
    #[serde(default)]
    pub split: Option<Vec<SplitConf>>,
    /// What keeps a client on one side of the split: `{cookie: NAME}` (an opaque cookie lb sets)
    /// or a hash key (`source_ip`, `{header: NAME}`, ...). Default: each request chosen anew.
    #[serde(default)]
    pub split_by: Option<SplitBy>,
    /// How the request changes before the backend sees it.
    #[serde(default)]
    pub request: RequestRules,
    /// How the response changes before the client sees it.
    #[serde(default)]
    pub response: ResponseRules,
    /// Compression of responses. Default: none.
    #[serde(default)]
    pub compress: Option<CompressConf>,
    /// Clients allowed by address; others get 403. Default: all.
    #[serde(default)]
    pub access: Option<AccessConf>,
    /// HTTP basic authentication against an htpasswd file; 401 without it. Default: none.
    #[serde(default)]
    pub basic_auth: Option<BasicAuthConf>,
    /// A copy of (some) requests sent to another upstream, its answer discarded. Default: none.
    #[serde(default)]
    pub mirror: Option<MirrorConf>,
    /// Requests per client allowed through; the rest get 429 with `Retry-After`. Default: none.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConf>,
    /// Requests that arrive over plain HTTP are answered with this redirect (301, 302, 303, 307
    /// or 308) to the same URL over HTTPS, on the first TLS listener's port. Default: none.
    #[serde(default, deserialize_with = "redirect_status")]
    pub https_redirect: Option<u16>,
    /// Redirect mode: instead of proxying, answer with this redirect (301, 302, 303, 307 or 308)
    /// whose `Location` is the same path on the backend the algorithm picked. Default: proxy.
    #[serde(default, deserialize_with = "redirect_status")]
    pub redirect: Option<u16>,
}

/// A route's rate limit: a token bucket per client key (GCRA).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConf {
    /// Average requests per second allowed per key (may be fractional, e.g. 0.5).
    pub requests_per_second: f64,
    /// Requests a key may send at once before the rate applies. Default: `requests_per_second`
    /// rounded up.
    #[serde(default)]
    pub burst: Option<u32>,
    /// What a key is: `source_ip` (the client, see `trusted_proxies`) or `{header: NAME}`.
    /// Default `source_ip`.
    #[serde(default)]
    pub key: RateKey,
}

impl RateLimitConf {
    /// The burst after resolving the default.
    pub fn burst(&self) -> u32 {
        self.burst
            .unwrap_or_else(|| self.requests_per_second.ceil().clamp(1.0, u32::MAX as f64) as u32)
    }
}

/// What a rate limit counts by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RateKey {
    /// The client's IP address.
    #[default]
    SourceIp,
    /// A request header's value (requests without it share one bucket).
    Header(http::HeaderName),
}

impl<'de> Deserialize<'de> for RateKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match HashKey::deserialize(d)? {
            HashKey::SourceIp => Ok(RateKey::SourceIp),
            HashKey::Header(name) => Ok(RateKey::Header(name)),
            other => Err(de::Error::custom(format!(
                "{other} cannot key a rate limit: use source_ip or {{header: NAME}}"
            ))),
        }
    }
}

fn redirect_status<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let code = u16::deserialize(d)?;
    if [301, 302, 303, 307, 308].contains(&code) {
        Ok(Some(code))
    } else {
        Err(de::Error::custom(format!(
            "{code} is not a redirect status (301, 302, 303, 307 or 308)"
        )))
    }
}

/// One side of a split.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConf {
    /// The upstream.
    pub upstream: String,
    /// Its share, relative to the others' (0 takes nothing). Default 1.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// What keeps a client on one side of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitBy {
    /// An opaque cookie of this name lb sets with the side chosen (Max-Age 1 day).
    Cookie(String),
    /// A hash of this part of the request (the same forms as a pool's `hash_key`).
    Key(HashKey),
}

impl serde::Serialize for SplitBy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SplitBy::Cookie(name) => s.collect_str(&format_args!("cookie:{name}")),
            SplitBy::Key(key) => key.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for SplitBy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match HashKey::deserialize(d)? {
            HashKey::Cookie(name) => Ok(SplitBy::Cookie(name)),
            key => Ok(SplitBy::Key(key)),
        }
    }
}

/// A compression algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// zstd (RFC 8878).
    Zstd,
    /// Brotli (RFC 7932).
    Br,
    /// gzip (RFC 1952).
    Gzip,
}

/// `compress:`: responses compressed for clients that accept it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressConf {
    /// The encodings lb offers, by preference when the client ranks them equally. Default
    /// `[zstd, br, gzip]`.
    #[serde(default = "default_encodings")]
    pub algorithms: Vec<Encoding>,
    /// Media types compressed (`text/*` for a whole family). Default: text, JSON, JavaScript,
    /// XML, SVG, wasm.
    #[serde(default = "default_types")]
    pub types: Vec<String>,
    /// Smaller bodies (by `Content-Length`) are left alone. Default `1KiB`.
    #[serde(default = "default_min_size")]
    pub min_size: Size,
    /// Compression level, 1 (fast) to 9 (small), mapped onto each algorithm's range. Default 5
    /// (nginx's `gzip_comp_level` is 1).
    #[serde(default = "default_level")]
    pub level: u32,
}

fn default_encodings() -> Vec<Encoding> {
    vec![Encoding::Zstd, Encoding::Br, Encoding::Gzip]
}

fn default_types() -> Vec<String> {
    [
        "text/*",
        "application/json",
        "application/javascript",
        "application/xml",
        "image/svg+xml",
        "application/wasm",
    ]
    .map(String::from)
    .to_vec()
}

fn default_min_size() -> Size {
    Size(1024)
}

fn default_level() -> u32 {
    5
}

/// `access:`: which client addresses may use the route (nginx's `allow`/`deny`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConf {
    /// Networks allowed; when given, any other client gets 403. Default: all.
    #[serde(default)]
    pub allow: Vec<Cidr>,
    /// Networks refused (403), even inside an allowed one. Default: none.
    #[serde(default)]
    pub deny: Vec<Cidr>,
}

/// `basic_auth:`: HTTP basic authentication (RFC 7617).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConf {
    /// The realm named in `WWW-Authenticate`.
    pub realm: String,
    /// An htpasswd file (`user:hash` lines; bcrypt `$2y$` hashes, as `htpasswd -B` writes),
    /// read at start and at each reload.
    pub users_file: String,
}

/// `mirror:`: a copy of requests to another upstream, its answer read and discarded.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConf {
    /// The upstream that gets the copies.
    pub upstream: String,
    /// The share of requests copied, e.g. `10%`. Default `100%`.
    #[serde(default = "all")]
    pub sample: Percent,
    /// Requests with larger bodies are not copied. Default `1MiB`.
    #[serde(default = "default_mirror_body")]
    pub max_body: Size,
}

fn all() -> Percent {
    Percent(100.0)
}

fn default_mirror_body() -> Size {
    Size(1 << 20)
}

/// A share, written `10%` or `0.5%` (or a bare number of percent), from 0 to 100.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percent(pub f64);

impl Percent {
    /// Parses `N%` or `N`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a share (write e.g. 10% or 0.5%)");
        let n: f64 = text.trim().trim_end_matches('%').trim().parse().map_err(|_| bad())?;
        if (0.0..=100.0).contains(&n) {
            Ok(Percent(n))
        } else {
            Err(format!("{text:?} is not a share from 0% to 100%"))
        }
    }

    /// As a fraction, 0 to 1.
    pub fn fraction(self) -> f64 {
        self.0 / 100.0
    }
}

impl serde::Serialize for Percent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}%", self.0))
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Percent::parse(&super::types::scalar_text(d)?).map_err(de::Error::custom)
    }
}

impl Route {
    /// The upstreams the route sends requests to (its upstream, or its split's).
    pub fn upstreams(&self) -> Vec<&str> {
        match (&self.upstream, &self.split) {
            (Some(u), _) => vec![u.as_str()],
            (None, Some(split)) => split.iter().map(|s| s.upstream.as_str()).collect(),
            (None, None) => Vec::new(),
        }
    }

    /// Its host condition, wherever written.
    pub fn host(&self) -> Option<&str> {
        self.matches.host.as_deref().or(self.host.as_deref())
    }

    /// Its path prefix condition, wherever written.
    pub fn path_prefix(&self) -> Option<&str> {
        self.matches.path_prefix.as_deref().or(self.path_prefix.as_deref())
    }
}
