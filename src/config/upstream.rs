//! The model of one upstream pool (`upstreams.NAME`): algorithm, backends, health check,
//! retries, timeouts, capacity and queue, sticky cookie, with their defaults. Loading and the
//! cross-field rules are the parent module's.

use super::{
    Addr, Algorithm, Dur, HashKey, StatusSet, DEFAULT_CONNECT_TIMEOUT, DEFAULT_EWMA_DECAY, DEFAULT_HEALTHY_THRESHOLD,
    DEFAULT_HEALTH_HOST, DEFAULT_HEALTH_INTERVAL, DEFAULT_HEALTH_PATH, DEFAULT_HEALTH_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_QUEUE_TIMEOUT, DEFAULT_READ_TIMEOUT, DEFAULT_RETRIES, DEFAULT_STICKY_COOKIE, DEFAULT_UNHEALTHY_THRESHOLD,
    DEFAULT_WRITE_TIMEOUT,
};
use serde::Deserialize;

/// A pool of backends and how to balance, check and retry them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Default `round_robin`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Key source for `hash` and `consistent` (required by them, ignored by the others).
    #[serde(default)]
    pub hash_key: Option<HashKey>,
    /// The servers. At least one.
    pub backends: Vec<BackendConf>,
    /// Active HTTP health checks. Default: none (every backend is always eligible).
    #[serde(default)]
    pub health_check: Option<HealthCheckConf>,
    /// Further attempts on other backends after a failed connect. Default 2.
    #[serde(default = "default_retries")]
    pub retries: usize,
    /// Timeouts towards the backends.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Most requests in flight per backend, for backends without their own. Default: no limit.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Requests that may wait for a free slot when every backend is at `max_connections`;
    /// beyond that, 503 at once. Default 0 (no queue).
    #[serde(default)]
    pub queue_size: usize,
    /// Longest wait in the queue before a 503. Default `5s`.
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout: Dur,
    /// `least_time`: how fast the response-time average forgets (its time constant).
    /// Default `10s`.
    #[serde(default = "default_ewma_decay")]
    pub ewma_decay: Dur,
    /// `sticky`: the cookie that pins a client.
    #[serde(default)]
    pub sticky: StickyConf,
}

impl Upstream {
    /// A pool of `backends` with every other setting at its default.
    pub fn new(backends: Vec<BackendConf>) -> Self {
        Upstream {
            algorithm: Algorithm::default(),
            hash_key: None,
            backends,
            health_check: None,
            retries: DEFAULT_RETRIES,
            timeouts: Timeouts::default(),
            max_connections: None,
            queue_size: 0,
            queue_timeout: default_queue_timeout(),
            ewma_decay: default_ewma_decay(),
            sticky: StickyConf::default(),
        }
    }

    /// A backend's `max_connections`: its own, else the pool's.
    pub fn max_connections_of(&self, backend: &BackendConf) -> Option<usize> {
        backend.max_connections.or(self.max_connections)
    }
}

fn default_retries() -> usize {
    DEFAULT_RETRIES
}

fn default_queue_timeout() -> Dur {
    Dur(DEFAULT_QUEUE_TIMEOUT)
}

fn default_ewma_decay() -> Dur {
    Dur(DEFAULT_EWMA_DECAY)
}

/// The `SameSite` attribute of the sticky cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SameSite {
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=None` (browsers then require `secure`).
    None,
}

/// The cookie of the `sticky` algorithm.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StickyConf {
    /// Cookie name. Default `lb_sticky`.
    pub cookie: String,
    /// `Max-Age`; without it the cookie lasts the browser session. Default: none.
    pub ttl: Option<Dur>,
    /// `Path`. Default `/`.
    pub path: String,
    /// Add `Secure`. Default `false`.
    pub secure: bool,
    /// Add `HttpOnly`. Default `true`.
    pub http_only: bool,
    /// `SameSite`. Default `lax`.
    pub same_site: Option<SameSite>,
}

impl Default for StickyConf {
    fn default() -> Self {
        StickyConf {
            cookie: DEFAULT_STICKY_COOKIE.to_string(),
            ttl: None,
            path: "/".to_string(),
            secure: false,
            http_only: true,
            same_site: Some(SameSite::Lax),
        }
    }
}

/// One backend server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConf {
    /// `IP:port`.
    pub address: Addr,
    /// Relative share of traffic, 1 to 256. Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Most requests in flight at once; overrides the pool's `max_connections`.
    #[serde(default)]
    pub max_connections: Option<usize>,
}

fn default_weight() -> u32 {
    1
}

/// Active health check of every backend of a pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConf {
    /// Path requested with `GET`. Default `/`.
    pub path: String,
    /// `Host` header sent. Default `localhost`.
    pub host: String,
    /// Time between checks. Default `2s`.
    pub interval: Dur,
    /// Connect and response timeout of one check. Default `1s`.
    pub timeout: Dur,
    /// Consecutive passes that bring an ejected backend back. Default 2.
    pub healthy_threshold: u32,
    /// Consecutive failures that eject a backend. Default 3.
    pub unhealthy_threshold: u32,
    /// Statuses that pass. Default `["2xx", "3xx"]`.
    pub expected_statuses: StatusSet,
}

impl Default for HealthCheckConf {
    fn default() -> Self {
        HealthCheckConf {
            path: DEFAULT_HEALTH_PATH.to_string(),
            host: DEFAULT_HEALTH_HOST.to_string(),
            interval: Dur(DEFAULT_HEALTH_INTERVAL),
            timeout: Dur(DEFAULT_HEALTH_TIMEOUT),
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
            expected_statuses: StatusSet::default(),
        }
    }
}

/// Timeouts towards a pool's backends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP connect. Default `5s`.
    pub connect: Dur,
    /// Each read of the response (not the whole response). Default `60s`.
    pub read: Dur,
    /// Each write of the request. Default `60s`.
    pub write: Dur,
    /// How long an unused pooled connection is kept. Default `60s`.
    pub idle: Dur,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Dur(DEFAULT_CONNECT_TIMEOUT),
            read: Dur(DEFAULT_READ_TIMEOUT),
            write: Dur(DEFAULT_WRITE_TIMEOUT),
            idle: Dur(DEFAULT_IDLE_TIMEOUT),
        }
    }
}
