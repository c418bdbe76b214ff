//! What lb tells about each request beyond proxying it: its id (`request_id:`), the access log's
//! format (`access_log.format`) and its trace (`tracing:`), with their checks. Writing ids, log
//! lines and spans is the request path's job.

use super::rules::FieldName;
use super::validate::{problem, Problem};
use super::{Config, Dur, Percent};
use serde::Deserialize;
use std::time::Duration;

/// Where a request's id comes from when it arrives with one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepId {
    /// Kept when the TCP peer is in `trusted_proxies` (it set the id); replaced otherwise, so a
    /// client cannot choose the id the logs show.
    #[default]
    Trusted,
    /// Always kept.
    Always,
}

/// `request_id:`: every proxied request carries an id, sent to the backend, returned to the
/// client and written to the access log.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestIdConf {
    /// Whether requests get ids. Default `true`.
    pub enabled: bool,
    /// The header that carries it. Default `X-Request-Id`.
    pub header: FieldName,
    /// When an id that came with the request is kept. Default `trusted`.
    pub keep: KeepId,
}

impl Default for RequestIdConf {
    fn default() -> Self {
        RequestIdConf {
            enabled: true,
            header: FieldName(http::HeaderName::from_static("x-request-id")),
            keep: KeepId::Trusted,
        }
    }
}

/// How access log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// nginx's `combined` format followed by lb's `key=value` fields.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

/// Default time one export of spans may take.
pub const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_secs(10);

/// `tracing:`: lb records a span for a sampled request and exports it over OTLP/HTTP.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConf {
    /// Where spans go.
    pub otlp: OtlpConf,
    /// The share of requests lb starts a trace for when no sampled one came with the request (a
    /// `traceparent` whose sampled flag is set is followed whatever this says, as W3C trace
    /// context asks). Default `1%`.
    #[serde(default = "default_sample")]
    pub sample: Percent,
    /// `service.name` of lb's spans. Default `lb`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

/// An OTLP/HTTP receiver (a collector, or a tracing back end that takes OTLP).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConf {
    /// The whole URL spans are posted to, `/v1/traces` included, e.g.
    /// `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    /// Longest time one export may take, retries included. Default `10s`.
    #[serde(default = "default_otlp_timeout")]
    pub timeout: Dur,
}

fn default_sample() -> Percent {
    Percent(1.0)
}

fn default_service_name() -> String {
    "lb".to_string()
}

fn default_otlp_timeout() -> Dur {
    Dur(DEFAULT_OTLP_TIMEOUT)
}

impl Config {
    /// Checks `tracing:`: an `http://` or `https://` endpoint with a host, a timeout, a name.
    pub(super) fn check_tracing(&self) -> Result<(), Problem> {
        let Some(tracing) = &self.tracing else { return Ok(()) };
        check_endpoint(&tracing.otlp.endpoint).or_else(|msg| problem("tracing.otlp.endpoint", msg))?;
        if tracing.otlp.timeout.0.is_zero() {
            return problem("tracing.otlp.timeout", "must be more than 0s");
        }
        if tracing.service_name.trim().is_empty() {
            return problem("tracing.service_name", "is empty");
        }
        Ok(())
    }
}

/// Whether `endpoint` is a URL spans can be posted to.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let bad = |why: &str| format!("{endpoint:?} {why} (write e.g. http://127.0.0.1:4318/v1/traces)");
    let uri: http::Uri = endpoint.parse().map_err(|_| bad("is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("is not an http:// or https:// URL"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("names no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_endpoint;

    #[test]
    fn endpoints_are_http_urls() {
        for good in [
            "http://127.0.0.1:4318/v1/traces",
            "https://otel.example.com/v1/traces",
            "http://c",
        ] {
            assert_eq!(check_endpoint(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("127.0.0.1:4318", "not an http"),
            ("grpc://c:4317", "not an http"),
            ("http://", "not a URL"),
            ("/v1/traces", "not an http"),
            ("http://a b/", "not a URL"),
        ] {
            let err = check_endpoint(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
