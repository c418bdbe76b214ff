//! Active HTTP health checks: Pingora's `HttpHealthCheck` does each probe; which backends are
//! probed (a pool's current members, whatever their source), when, and how results become
//! health (consecutive thresholds, kept in each backend's live state so that weight changes
//! and reloads do not forget it) is decided here. Picking among healthy backends is the
//! selectors' job.

use crate::config::HealthCheckConf;
use crate::error::StartError;
use crate::request::pool::{backend, Pool};
use crate::request::route::Routing;
use log::{info, warn};
use pingora_error::{Error, ErrorType};
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck};
use std::sync::Arc;
use std::time::Duration;

/// How often the loop looks for pools whose round is due.
const TICK: Duration = Duration::from_millis(50);

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

    fn threshold(&self, passed: bool) -> u32 {
        if passed {
            self.healthy_threshold
        } else {
            self.unhealthy_threshold
        }
    }
}

/// Probes every current member of `pool` once, concurrently. With `strict` (the first round
/// after start-up or after a pool appears), one failure ejects: a starting process serves only
/// backends that answered instead of trusting them for `unhealthy_threshold` rounds. Each
/// transition is logged once, as `pool web backend 127.0.0.1:9001 becomes unhealthy, <reason>`
/// (see [`reason`]; or `becomes healthy`).
pub async fn round(pool: &Pool, strict: bool) {
    let Some(check) = pool.health() else { return };
    let probes = pool.states().all().into_iter().map(|state| async move {
        let target = backend(state.addr, state.weight());
        let result = check.http.check(&target).await;
        let threshold = |passed| if strict { 1 } else { check.threshold(passed) };
        match state.observe_check(result.is_ok(), threshold) {
            Some(true) => info!("pool {} backend {} becomes healthy", pool.name, state.addr),
            Some(false) => {
                let why = result.err().map(|e| reason(&e, check.timeout)).unwrap_or_default();
                warn!("pool {} backend {} becomes unhealthy, {why}", pool.name, state.addr);
            }
            None => {}
        }
    });
    futures::future::join_all(probes).await;
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

/// The first round of each of `pools`, strict, all at once.
pub async fn first_rounds(pools: impl IntoIterator<Item = Arc<Pool>>) {
    let rounds = pools
        .into_iter()
        .filter(|p| p.begin_check(true))
        .map(|pool| async move {
            round(&pool, true).await;
            pool.checked();
        });
    futures::future::join_all(rounds).await;
}

/// Runs each pool's rounds at its interval, following the routing table as it changes
/// (reloads add and remove pools; membership changes are seen at each round). Never returns.
pub async fn run(routing: Arc<Routing>) {
    loop {
        for pool in routing.load().pools.values() {
            if pool.begin_check(false) {
                let pool = Arc::clone(pool);
                tokio::spawn(async move {
                    round(&pool, false).await;
                    pool.checked();
                });
            }
        }
        tokio::time::sleep(TICK).await;
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
