//! Active HTTP health checks: a pool's [`Check`] (Pingora's `HttpHealthCheck` does each probe,
//! with the pool's thresholds) and why a probe failed, in words. Which backends are probed and
//! when is `control::checks`'s (it runs the rounds over the routing table); how results become
//! health (consecutive thresholds) is each backend's live state's. Picking among healthy
//! backends is the selectors' job.

use crate::config::HealthCheckConf;
use crate::error::StartError;
use pingora_error::{Error, ErrorType};
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck};
use pingora_load_balancing::Backend;
use std::time::Duration;

/// A pool's HTTP check and its thresholds.
pub struct Check {
    http: HttpHealthCheck,
    /// Time between rounds.
    pub interval: Duration,
    /// Connect and response timeout of each probe.
    timeout: Duration,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

impl Check {
    /// The check of pool `pool` described by `conf`.
    pub fn build(pool: &str, conf: &HealthCheckConf) -> Result<Check, StartError> {
        let fail = |message: String| StartError::Pool {
            pool: pool.to_string(),
            message,
        };
        let mut check = HttpHealthCheck::new(&conf.host, false);
        let mut req = RequestHeader::build("GET", conf.path.as_bytes(), None)
            .map_err(|e| fail(format!("health_check.path: {e}")))?;
        req.append_header("Host", conf.host.as_str())
            .map_err(|e| fail(format!("health_check.host: {e}")))?;
        req.append_header("User-Agent", "lb-health-check")
            .map_err(|e| fail(format!("health_check: {e}")))?;
        check.req = req;
        check.peer_template.options.connection_timeout = Some(conf.timeout.0);
        check.peer_template.options.read_timeout = Some(conf.timeout.0);
        check.peer_template.options.write_timeout = Some(conf.timeout.0);
        let statuses = conf.expected_statuses.clone();
        check.validator = Some(Box::new(move |resp| {
            let code = resp.status.as_u16();
            if statuses.contains(code) {
                Ok(())
            } else {
                Error::e_explain(ErrorType::CustomCode("unexpected status", code), "health check")
            }
        }));
        Ok(Check {
            http: check,
            interval: conf.interval.0,
            timeout: conf.timeout.0,
            healthy_threshold: conf.healthy_threshold,
            unhealthy_threshold: conf.unhealthy_threshold,
        })
    }

    /// How many results in a row make a backend `passed` (healthy) or not.
    pub fn threshold(&self, passed: bool) -> u32 {
        if passed {
            self.healthy_threshold
        } else {
            self.unhealthy_threshold
        }
    }

    /// Probes `target` once: `Err(why)` in a few words (see [`reason`]) when it fails.
    pub async fn probe(&self, target: &Backend) -> Result<(), String> {
        self.http.check(target).await.map_err(|e| reason(&e, self.timeout))
    }
}

/// Why a probe failed, in a few words for the log: `connection refused`, `timeout after
/// 500ms`, `status 503`... rather than Pingora's error chain.
pub fn reason(e: &Error, timeout: Duration) -> String {
    let after = crate::config::Dur(timeout);
    match e.etype() {
        ErrorType::ConnectRefused => "connection refused".into(),
        ErrorType::ConnectNoRoute => "no route to the backend".into(),
        ErrorType::ConnectTimedout => format!("connect timeout after {after}"),
        ErrorType::ReadTimedout => format!("timeout after {after}: no response"),
        ErrorType::WriteTimedout => format!("timeout after {after}: the request could not be sent"),
        ErrorType::CustomCode(_, code) => format!("status {code}"),
        ErrorType::ConnectionClosed => "the backend closed the connection before a response".into(),
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error => "not a valid HTTP response".into(),
        ErrorType::TLSHandshakeFailure | ErrorType::TLSHandshakeTimedout | ErrorType::InvalidCert => {
            "TLS handshake failed".into()
        }
        _ => match root_io_error(e) {
            Some(io) => io_reason(io),
            None => e.etype().as_str().to_string(),
        },
    }
}

/// The operating system's error at the bottom of `e`'s causes, if there is one.
fn root_io_error(e: &Error) -> Option<&std::io::Error> {
    let mut cause: &(dyn std::error::Error + 'static) = e.cause.as_deref()?;
    loop {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cause = match cause.downcast_ref::<Error>() {
            Some(inner) => inner.cause.as_deref()?,
            None => cause.source()?,
        };
    }
}

fn io_reason(io: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match io.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::ConnectionReset => "connection reset".into(),
        ErrorKind::TimedOut => "timeout".into(),
        _ => io.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason_of(etype: ErrorType) -> String {
        reason(&Error::new(etype), Duration::from_millis(500))
    }

    #[test]
    fn probe_failures_read_as_a_few_words() {
        assert_eq!(reason_of(ErrorType::ConnectRefused), "connection refused");
        assert_eq!(reason_of(ErrorType::ConnectTimedout), "connect timeout after 500ms");
        assert_eq!(reason_of(ErrorType::ReadTimedout), "timeout after 500ms: no response");
        assert_eq!(reason_of(ErrorType::CustomCode("unexpected status", 503)), "status 503");
    }

    #[test]
    fn other_failures_name_the_system_error_beneath() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let e = Error::because(ErrorType::ConnectError, "Fail to connect", io);
        assert_eq!(reason(&e, Duration::from_secs(1)), "connection reset");
        assert_eq!(reason_of(ErrorType::InternalError), "InternalError");
    }
}
