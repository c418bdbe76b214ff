//! A `routes:` entry: which requests it matches (host, path prefix), where they go (an
//! upstream), and what happens on the way (rate limit, HTTPS redirect, redirect mode).

use super::HashKey;
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// Sends matching requests to an upstream. A route without `host` and `path_prefix` matches all.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// `Host` to match, case-insensitive, port ignored; `*.example.com` matches subdomains.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix to match, e.g. `/api/` (plain string prefix, as nginx `location` and Envoy).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Name of the upstream that serves the match.
    pub upstream: String,
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
