//! The request path: everything a proxied request touches, and nothing that manages it.
//!
//! - [`front`]: client connections around the proxy: admission, PROXY protocol, h2c, the
//!   HTTP/1 keep-alive loop with strict request heads, limits and timeouts.
//! - [`rate_limit`]: per-key token buckets (GCRA) for routes' rate limits.
//! - [`proxy`]: the `ProxyHttp` implementation (routing, peer choice, retries, headers, errors).
//! - [`route`]: the routing table (match conditions, first match wins), and the live table of
//!   pools the proxy reads.
//! - [`rules`]: a route's request and response rules (path rewrites, header edits, variables).
//! - [`compress`]: a route's response compression (negotiation, which responses, the
//!   streaming compressors, their counters).
//! - [`split`]: a route's weighted split between pools, and which side serves a request.
//! - [`guard`]: a route's checks before its pool (HTTPS redirect, rate limit, redirect mode).
//! - [`access`]: the guards of who may use a route (by address; basic auth).
//! - [`mirror`]: sampled copies of a route's requests to another pool, answers discarded.
//! - [`rollout`]: a running rollout on the request path: its split, its shadow's copies and
//!   comparisons, each side's figures.
//! - [`shadow_compare`]: a rollout shadow's comparison of the candidate's answer with the
//!   baseline's (status, headers, bodies as bytes or normalised JSON).
//! - [`pool`]: a running pool: membership, balancer, key source, slots and wait queue, peers.
//! - [`selection`]: balancing algorithms (Pingora `BackendSelection`s) and live backend state.
//! - [`member`]: a pool member as configured: weight, admin state, source, cap.
//! - [`key`]: extraction of hash keys (URI, path, source IP, header, cookie) from a request.
//! - [`health`]: a pool's active HTTP check and why a probe failed (`control::checks` runs them).
//! - [`stats`]: per-pool counters and histograms, counted with a few atomics.
//! - [`tls`]: certificates of TLS listeners, chosen by SNI, reloaded when their files change.
//! - [`access_log`]: one line per request (combined or JSON), written off the request path.
//! - [`trace`]: W3C trace context and lb's spans, exported over OTLP/HTTP in the background.
//! - [`traffic`]: requests in flight and whether client connections are being drained.

pub(crate) mod access;
pub(crate) mod access_log;
pub(crate) mod compress;
pub(crate) mod front;
pub(crate) mod guard;
pub(crate) mod health;
pub mod key;
pub(crate) mod member;
pub(crate) mod mirror;
pub mod pool;
pub(crate) mod proxy;
pub(crate) mod rate_limit;
pub mod rollout;
pub mod route;
pub(crate) mod rules;
pub(crate) mod selection;
pub mod shadow_compare;
pub mod split;
pub(crate) mod stats;
pub(crate) mod tls;
pub(crate) mod trace;
pub(crate) mod traffic;

use pingora_http::RequestHeader;

/// The host a request is for: the URI's authority (absolute form, HTTP/2) or the `Host` header
/// (what routes match and HTTPS redirects keep).
pub fn request_host(req: &RequestHeader) -> Option<&str> {
    req.uri
        .host()
        .or_else(|| req.headers.get(http::header::HOST).and_then(|v| v.to_str().ok()))
}
