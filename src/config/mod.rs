//! The YAML file model (`server`, `listeners`, `upstreams`, `routes`, `admin`...), its loading with errors that
//! name the file and the field path, and validation. Turning it into running pools is `server`'s job.

mod admin;
mod clients;
pub mod htpasswd;
pub mod json_path;
mod listener;
mod observe;
mod rollout;
mod route;
mod route_check;
pub mod rules;
mod server;
mod types;
mod upstream;
mod validate;

pub use admin::AdminConf;
pub use clients::{ClientConf, Http2Conf};
pub use listener::{CertPair, Listener, TlsConf};
pub use observe::{KeepId, LogFormat, OtlpConf, RequestIdConf, TracingConf, DEFAULT_OTLP_TIMEOUT};
pub use rollout::{basis_points, BodyCompare, CompareConf, Gates, OnSuccess, RolloutConf, ShadowConf};
pub use route::{
    AccessConf, BasicAuthConf, CompressConf, Encoding, MirrorConf, Percent, RateKey, RateLimitConf, Route, SplitBy,
    SplitConf,
};
pub use server::ServerSettings;
pub use types::{Addr, Cidr, Dur, HashKey, Size, StatusSet};
pub use upstream::{
    BackendConf, Discovery, DnsDiscovery, FileDiscovery, HealthCheckConf, OutlierConf, Protocol, RetryBudget, SameSite,
    Source, StickyConf, Timeouts, Upstream, UpstreamTls,
};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Default retries on another backend after a failed connect.
pub const DEFAULT_RETRIES: usize = 2;
/// Largest backend weight (as HAProxy's 256).
pub const MAX_WEIGHT: u32 = 256;
/// Default connect timeout to a backend.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time to wait for each read from a backend (nginx's `proxy_read_timeout`).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time to wait for each write to a backend (nginx's `proxy_send_timeout`).
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default lifetime of an idle pooled connection to a backend.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default health-check path.
pub const DEFAULT_HEALTH_PATH: &str = "/";
/// Default `Host` header of health checks.
pub const DEFAULT_HEALTH_HOST: &str = "localhost";
/// Default time between health checks of one backend.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(2);
/// Default health-check timeout (connect and response each).
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// Default consecutive passes that readmit an ejected backend (HAProxy's `rise`).
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
/// Default consecutive failures that eject a backend (HAProxy's `fall`).
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
/// Default longest wait for a free slot.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time constant of `least_time`'s response-time average (Linkerd's).
pub const DEFAULT_EWMA_DECAY: Duration = Duration::from_secs(10);
/// Default name of the `sticky` cookie.
pub const DEFAULT_STICKY_COOKIE: &str = "lb_sticky";

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Process settings; see [`ServerSettings`].
    #[serde(default)]
    pub server: ServerSettings,
    /// Where clients connect. At least one.
    pub listeners: Vec<Listener>,
    /// Named backend pools. At least one; a name given twice is an error.
    #[serde(deserialize_with = "unique_keys")]
    pub upstreams: BTreeMap<String, Upstream>,
    /// Host / path-prefix rules, first match wins. May be left out when there is one upstream.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Prometheus metrics endpoint. Default: off.
    #[serde(default)]
    pub metrics: Option<MetricsConf>,
    /// Access log. Default: off.
    #[serde(default)]
    pub access_log: Option<AccessLogConf>,
    /// Admin listener: API, dashboard, metrics. Default: off.
    #[serde(default)]
    pub admin: Option<AdminConf>,
    /// Limits and timeouts of client connections.
    #[serde(default)]
    pub clients: ClientConf,
    /// Peers whose `X-Forwarded-For` (or PROXY protocol header) names the client: the client is
    /// the last address in the chain that is not one of these. Default: none (the client is the
    /// TCP peer, or the PROXY header's source).
    #[serde(default)]
    pub trusted_proxies: Vec<Cidr>,
    /// Runtime state shared by several instances through etcd. Default: none (the admin
    /// API's changes stay in this instance and its `admin.state_file`).
    #[serde(default)]
    pub cluster: Option<ClusterConf>,
    /// Request ids (`X-Request-Id`): generated, or kept from a trusted proxy.
    #[serde(default)]
    pub request_id: RequestIdConf,
    /// Spans of sampled requests, exported over OTLP/HTTP. Default: off (`traceparent` and
    /// `tracestate` still pass to the backends unchanged).
    #[serde(default)]
    pub tracing: Option<TracingConf>,
    /// Candidate pools rolled out behind named routes: shadowed, then shifted in steps with gates,
    /// promoted or rolled back. Default: none.
    #[serde(default)]
    pub rollouts: Vec<RolloutConf>,
}

/// A mapping of names that refuses a name given twice (serde's maps would keep the last one
/// without a word, and a pool defined twice would silently lose its first definition).
fn unique_keys<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping of names")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(name) = map.next_key::<String>()? {
                if out.contains_key(&name) {
                    return Err(serde::de::Error::custom(format!("{name:?} is defined twice")));
                }
                let value = map.next_value()?;
                out.insert(name, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique(std::marker::PhantomData))
}

/// Where instances share their runtime state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConf {
    /// An etcd v3 cluster.
    pub etcd: EtcdConf,
}

/// An etcd v3 cluster and the key prefix lb uses in it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConf {
    /// `http://IP:port` (or `IP:port`) of its members.
    pub endpoints: Vec<String>,
    /// Keys live under it. Default `/lb/`.
    #[serde(default = "default_etcd_prefix")]
    pub prefix: String,
}

fn default_etcd_prefix() -> String {
    "/lb/".to_string()
}

/// Where the access log goes, and how its lines look.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConf {
    /// File appended to (created if missing); `/dev/stdout` in a container.
    pub path: String,
    /// `combined` (nginx's, with lb's fields after it) or `json`. Default `combined`.
    #[serde(default)]
    pub format: LogFormat,
}

/// Where Prometheus scrapes `/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConf {
    /// `IP:port`, e.g. `127.0.0.1:9100` (keep it off the public interface).
    pub address: Addr,
}

/// A balancing algorithm. Weights are honoured by every algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Smooth weighted round robin (nginx's): `weighted_round_robin` is the same thing.
    #[default]
    #[serde(alias = "weighted_round_robin")]
    RoundRobin,
    /// Weighted random.
    Random,
    /// FNV hash of `hash_key` modulo the weighted backend list (nginx `hash`, HAProxy `balance`).
    Hash,
    /// Consistent hashing of `hash_key` on a Ketama ring: removing a backend moves only its keys.
    Consistent,
    /// Fewest requests in flight per weight (a full scan; ties shared in turn).
    #[serde(alias = "least_conn")]
    LeastConnections,
    /// Two random backends, the one with fewer requests in flight per weight wins.
    #[serde(alias = "p2c")]
    PowerOfTwo,
    /// Lowest expected latency: a decaying peak average of response time times the requests
    /// waiting on it, between two random choices.
    LeastTime,
    /// Round robin for a new client, then a cookie keeps it on its backend.
    Sticky,
    /// Fill backends in configured order up to their `max_connections` (HAProxy's `first`).
    First,
}

impl Algorithm {
    /// Every algorithm with its name in the file and on the command line.
    pub const ALL: &'static [(&'static str, Algorithm)] = &[
        ("round_robin", Algorithm::RoundRobin),
        ("weighted_round_robin", Algorithm::RoundRobin),
        ("random", Algorithm::Random),
        ("hash", Algorithm::Hash),
        ("consistent", Algorithm::Consistent),
        ("least_connections", Algorithm::LeastConnections),
        ("least_conn", Algorithm::LeastConnections),
        ("power_of_two", Algorithm::PowerOfTwo),
        ("p2c", Algorithm::PowerOfTwo),
        ("least_time", Algorithm::LeastTime),
        ("sticky", Algorithm::Sticky),
        ("first", Algorithm::First),
    ];

    /// Whether the algorithm picks by `hash_key`.
    pub fn needs_key(self) -> bool {
        matches!(self, Algorithm::Hash | Algorithm::Consistent)
    }

    /// The name used in the file.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, a)| *a == self).map_or("?", |(name, _)| name)
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, a)| *a)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|(n, _)| *n).collect();
                format!("unknown algorithm {s:?} (one of: {})", names.join(", "))
            })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A configuration that cannot be used: one line naming the file, the field and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// A field is missing, unknown or wrong.
    #[error("{file}: {}{message}", at(path))]
    Invalid {
        /// The file (or `command line`).
        file: String,
        /// Dotted field path, e.g. `upstreams.web.backends[2].address`; empty for the document.
        path: String,
        /// What is wrong.
        message: String,
    },
}

fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// The field path serde_path_to_error reports, without the parts it could not name: a syntax
/// error is found before any field, and is reported as `?` (the line and column say where).
fn known_path(path: &str) -> String {
    let mut path = path;
    while let Some(rest) = path.strip_suffix('?') {
        path = rest.strip_suffix('.').unwrap_or(rest);
    }
    if path == "." {
        String::new()
    } else {
        path.to_string()
    }
}

/// serde's message with the Rust type it expected in words (`expected u32` → `expected a whole
/// number`, `a sequence` → `a list`); the line and column stay.
fn plain_words(message: &str) -> String {
    let mut out = message.to_string();
    if let Some(at) = out.find("expected ") {
        let start = at + "expected ".len();
        let end = out[start..].find(" at line ").map_or(out.len(), |i| start + i);
        if let Some(words) = expectation(&out[start..end]) {
            out.replace_range(start..end, words);
        }
    }
    for (rust, words) in [
        ("invalid type: sequence", "invalid type: a list"),
        ("invalid type: map", "invalid type: a mapping"),
    ] {
        if let Some(rest) = out.strip_prefix(rust) {
            out = format!("{words}{rest}");
        }
    }
    out
}

/// What serde's name of an expected type means in a YAML file.
fn expectation(rust: &str) -> Option<&'static str> {
    Some(match rust {
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" | "u64" | "usize" => "a whole number (0 or more)",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a borrowed string" => "a string",
        "a sequence" => "a list",
        "a map" => "a mapping (key: value lines, or {key: value})",
        _ if rust.starts_with("struct ") => "a mapping (key: value lines, or {key: value})",
        _ => return None,
    })
}

/// serde_yaml starts some messages with its own (shorter) path; ours is the complete one.
fn without_path_prefix<'a>(message: &'a str, path: &str) -> &'a str {
    match message.split_once(": ") {
        Some((head, rest)) if !path.is_empty() && path.starts_with(head) => rest,
        _ => message,
    }
}

impl Config {
    /// Reads and parses `file` (without validating it: apply overrides, then [`Config::validate`]).
    pub fn parse_file(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.display().to_string(),
            source,
        })?;
        Config::parse_str(&text, &file.display().to_string())
    }

    /// Parses YAML text; `file` names it in errors.
    pub fn parse_str(text: &str, file: &str) -> Result<Config, ConfigError> {
        let invalid = |path: String, message: String| ConfigError::Invalid {
            file: file.to_string(),
            path,
            message,
        };
        if text.trim().is_empty() {
            return Err(invalid(String::new(), "the file is empty".into()));
        }
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = known_path(&e.path().to_string());
            let message = e.into_inner().to_string();
            let mut message = plain_words(without_path_prefix(&message, &path));
            if path.is_empty() && !message.contains(" at line ") {
                // The document itself is not a mapping (a scalar or a list): nothing names where.
                message = format!("the file must be a mapping of sections (listeners:, upstreams:...): {message}");
            }
            invalid(path, message)
        })
    }

    /// Parses and validates `file`.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let config = Config::parse_file(file)?;
        config.validate(&file.display().to_string())?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests;
