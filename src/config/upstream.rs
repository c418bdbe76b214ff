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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Default `round_robin`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Key source for `hash` and `consistent` (required by them, ignored by the others).
    #[serde(default)]
    pub hash_key: Option<HashKey>,
    /// The servers listed here. At least one, unless `discovery` finds them.
    #[serde(default)]
    pub backends: Vec<BackendConf>,
    /// Where more backends are found while lb runs, beside `backends`.
    #[serde(default)]
    pub discovery: Option<Discovery>,
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
    /// TLS to the backends. Default: plain TCP.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
    /// HTTP version spoken to the backends: `http1`, `http2` (over TLS by ALPN, over plain TCP
    /// with prior knowledge, h2c: for gRPC) or `auto` (TLS: HTTP/2 if the backend offers it).
    /// Default `http1`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Passive health: a backend failing this many requests in a row is ejected. Default: on,
    /// with the defaults of [`OutlierConf`].
    #[serde(default)]
    pub outlier_detection: OutlierConf,
    /// How many retries the pool allows, against its request rate, so retries cannot amplify an
    /// overload.
    #[serde(default)]
    pub retry_budget: RetryBudget,
}

/// A pool's discovery source (one of them).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    /// A file listing backends, watched for changes.
    #[serde(default)]
    pub file: Option<FileDiscovery>,
    /// A DNS name, resolved again and again.
    #[serde(default)]
    pub dns: Option<DnsDiscovery>,
}

/// DNS discovery: the A and AAAA records of `name` with `port`, or the SRV records of a name
/// that starts with `_` (`_http._tcp.web.internal`: their targets, ports and weights, lowest
/// priority first).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsDiscovery {
    /// The name to resolve (taken as fully qualified).
    pub name: String,
    /// The backends' port, for A/AAAA names (SRV records carry their own).
    #[serde(default)]
    pub port: Option<u16>,
    /// How often the name is resolved again at most; sooner when the records' TTL runs out
    /// first (not under 1 s). Default `5s`.
    #[serde(default = "default_dns_refresh")]
    pub refresh: Dur,
    /// The DNS server, `IP:port`. Default: the system's (`/etc/resolv.conf`).
    #[serde(default)]
    pub resolver: Option<Addr>,
}

fn default_dns_refresh() -> Dur {
    Dur(std::time::Duration::from_secs(5))
}

impl DnsDiscovery {
    /// Whether the name is an SRV name (starts with `_`).
    pub fn is_srv(&self) -> bool {
        self.name.starts_with('_')
    }
}

/// File discovery: a YAML file holding a list shaped like a pool's `backends:` (or a map with
/// that `backends:` key), re-read when it changes (an atomic rename included).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDiscovery {
    /// The file; relative paths are taken from lb's working directory.
    pub path: String,
}

/// The HTTP version spoken to a pool's backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1.
    #[default]
    Http1,
    /// HTTP/2 only (h2 by ALPN over TLS, h2c with prior knowledge over plain TCP).
    Http2,
    /// Over TLS, HTTP/2 when the backend offers it by ALPN, else HTTP/1.1; plain TCP: HTTP/1.1.
    Auto,
}

/// TLS to a pool's backends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// Server name sent (SNI) and verified. Default: the backend's IP address (its certificate
    /// must then name that IP).
    #[serde(default)]
    pub sni: Option<String>,
    /// Verify the backend's certificate (chain and name). Default `true`.
    #[serde(default = "yes")]
    pub verify: bool,
    /// PEM file of the CAs to trust for these backends instead of the system's. Default: the
    /// system store (or `server.ca_file`).
    #[serde(default)]
    pub ca_file: Option<String>,
}

fn yes() -> bool {
    true
}

/// Passive health (outlier detection): consecutive failed attempts on a backend (a failed
/// connect, a timeout, a broken response, a 500, 502, 503 or 504) eject it at once, even between
/// active checks, unless that would leave the pool without a backend.
/// With active checks it is marked unhealthy and returns when they pass (HAProxy's
/// `on-error mark-down`); without them it is out for `ejection_time` (nginx's `fail_timeout`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConf {
    /// Failures in a row that eject a backend; `0` turns passive health off. Default 5.
    pub consecutive_failures: u32,
    /// How long an ejected backend stays out when the pool has no active checks. Default `30s`.
    pub ejection_time: Dur,
    /// Never eject more than this share of the pool, in percent (rounded down). Default 50.
    pub max_ejected_percent: u32,
}

impl Default for OutlierConf {
    fn default() -> Self {
        OutlierConf {
            consecutive_failures: 5,
            ejection_time: Dur(std::time::Duration::from_secs(30)),
            max_ejected_percent: 50,
        }
    }
}

/// The retry budget (as Linkerd's and Envoy's): retries may add at most `ratio` of the pool's
/// recent requests, plus `min_per_second`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudget {
    /// Retries allowed per request over the last 10 s. Default `0.2`.
    pub ratio: f64,
    /// Retries allowed per second whatever the traffic. Default 10.
    pub min_per_second: u32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            ratio: 0.2,
            min_per_second: 10,
        }
    }
}

impl Upstream {
    /// A pool of `backends` with every other setting at its default.
    pub fn new(backends: Vec<BackendConf>) -> Self {
        Upstream {
            algorithm: Algorithm::default(),
            hash_key: None,
            backends,
            discovery: None,
            health_check: None,
            retries: DEFAULT_RETRIES,
            timeouts: Timeouts::default(),
            max_connections: None,
            queue_size: 0,
            queue_timeout: default_queue_timeout(),
            ewma_decay: default_ewma_decay(),
            sticky: StickyConf::default(),
            tls: None,
            protocol: Protocol::default(),
            outlier_detection: OutlierConf::default(),
            retry_budget: RetryBudget::default(),
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConf {
    /// `IP:port`, or `host:port`: the host name is resolved when the configuration is read (at
    /// start and at each reload), to its first address, IPv4 first. For a name with several
    /// addresses that change, use `discovery: {dns: ...}`.
    #[serde(deserialize_with = "super::types::resolved_addr")]
    pub address: Addr,
    /// Where the entry comes from: the configuration file, or a discovery source.
    #[serde(skip)]
    pub source: Source,
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// Idle time allowed on an upgraded connection (WebSocket...) in either direction, instead
    /// of `read`/`write` (HAProxy's `timeout tunnel`). Default `1h`.
    pub tunnel: Dur,
    /// Optional deadline for a whole attempt sequence, from the request's arrival: connect,
    /// read and write timeouts are shortened to what is left of it (then 504). Default: none.
    pub total: Option<Dur>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Dur(DEFAULT_CONNECT_TIMEOUT),
            read: Dur(DEFAULT_READ_TIMEOUT),
            write: Dur(DEFAULT_WRITE_TIMEOUT),
            idle: Dur(DEFAULT_IDLE_TIMEOUT),
            tunnel: Dur(std::time::Duration::from_secs(3600)),
            total: None,
        }
    }
}

/// Where a backend's membership comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The configuration file.
    #[default]
    Config,
    /// Registered through the admin API.
    Api,
    /// Found by file discovery.
    File,
    /// Found by DNS discovery.
    Dns,
}

impl Source {
    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            1 => Source::Api,
            2 => Source::File,
            3 => Source::Dns,
            _ => Source::Config,
        }
    }

    /// The name in the API: `config`, `api`, `file`, `dns`.
    pub fn name(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Api => "api",
            Source::File => "file",
            Source::Dns => "dns",
        }
    }
}
