//! Cross-field rules serde cannot check: every route names an existing upstream, weights are in
//! range, pools are not empty, hash algorithms have a key. The first problem is reported.

use super::{
    Algorithm, Config, ConfigError, HealthCheckConf, Listener, SameSite, StickyConf, Timeouts, Upstream, MAX_WEIGHT,
};
use std::collections::HashSet;

pub(super) type Problem = (String, String);

pub(super) fn problem(path: impl Into<String>, message: impl Into<String>) -> Result<(), Problem> {
    Err((path.into(), message.into()))
}

impl Config {
    /// Checks the rules across fields; `file` names the file in the error.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        self.check().map_err(|(path, message)| ConfigError::Invalid {
            file: file.to_string(),
            path,
            message,
        })
    }

    fn check(&self) -> Result<(), Problem> {
        self.server
            .check()
            .or_else(|(field, msg)| problem(format!("server.{field}"), msg))?;
        self.check_listeners()?;
        self.clients
            .check()
            .or_else(|(field, msg)| problem(format!("clients.{field}"), msg))?;
        if self.upstreams.is_empty() {
            return problem("upstreams", "define at least one upstream");
        }
        for (name, upstream) in &self.upstreams {
            check_upstream(name, upstream, self.server.max_retries)?;
        }
        if let Some(cluster) = &self.cluster {
            let etcd = &cluster.etcd;
            if etcd.endpoints.is_empty() {
                return problem("cluster.etcd.endpoints", "list at least one endpoint (http://IP:port)");
            }
            if let Some((i, _)) = etcd.endpoints.iter().enumerate().find(|(_, e)| e.trim().is_empty()) {
                return problem(format!("cluster.etcd.endpoints[{i}]"), "is empty");
            }
            if !etcd.prefix.starts_with('/') {
                return problem("cluster.etcd.prefix", format!("{:?} must start with /", etcd.prefix));
            }
        }
        self.check_tracing()?;
        self.check_routes()?;
        self.check_rollouts()
    }

    fn check_listeners(&self) -> Result<(), Problem> {
        if self.listeners.is_empty() {
            return problem("listeners", "define at least one listener");
        }
        let mut seen = HashSet::new();
        for (i, listener) in self.listeners.iter().enumerate() {
            if !seen.insert(listener.address) {
                let msg = format!("{} is listed twice", listener.address);
                return problem(format!("listeners[{i}].address"), msg);
            }
            check_listener(&format!("listeners[{i}]"), listener)?;
        }
        if let Some(metrics) = &self.metrics {
            if seen.contains(&metrics.address) {
                return problem("metrics.address", format!("{} is also a listener", metrics.address));
            }
            seen.insert(metrics.address);
        }
        if let Some(admin) = &self.admin {
            if seen.contains(&admin.address) {
                let msg = format!("{} is also a listener or the metrics address", admin.address);
                return problem("admin.address", msg);
            }
            admin
                .check()
                .or_else(|(field, msg)| problem(format!("admin.{field}"), msg))?;
        }
        Ok(())
    }

    fn check_routes(&self) -> Result<(), Problem> {
        if self.routes.is_empty() && self.upstreams.len() > 1 {
            return problem(
                "routes",
                "with more than one upstream, routes must say which requests go where",
            );
        }
        let mut names = HashSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let path = format!("routes[{i}]");
            self.check_route(&path, route)?;
            if let Some(name) = &route.name {
                if !names.insert(name) {
                    return problem(format!("{path}.name"), format!("{name:?} names another route too"));
                }
            }
        }
        Ok(())
    }
}

fn check_listener(path: &str, listener: &Listener) -> Result<(), Problem> {
    if listener.max_connections == 0 {
        return problem(format!("{path}.max_connections"), "must be at least 1");
    }
    let Some(tls) = &listener.tls else { return Ok(()) };
    if listener.h2c {
        let msg = "h2c is HTTP/2 over plain TCP; a TLS listener offers HTTP/2 by ALPN (tls.http2)";
        return problem(format!("{path}.h2c"), msg);
    }
    if tls.certificates.is_empty() {
        return problem(format!("{path}.tls.certificates"), "give at least one {cert, key}");
    }
    for (i, pair) in tls.certificates.iter().enumerate() {
        for (field, file) in [("cert", &pair.cert), ("key", &pair.key)] {
            if file.trim().is_empty() {
                return problem(format!("{path}.tls.certificates[{i}].{field}"), "must not be empty");
            }
        }
    }
    Ok(())
}

fn check_upstream(name: &str, upstream: &Upstream, max_retries: usize) -> Result<(), Problem> {
    let path = format!("upstreams.{name}");
    let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !name_ok {
        return problem(&path, format!("{name:?} is not a valid name (letters, digits, - _ .)"));
    }
    check_backends(&path, upstream)?;
    if upstream.algorithm.needs_key() && upstream.hash_key.is_none() {
        let msg = format!(
            "algorithm {} needs a key: uri, path, source_ip, {{header: NAME}} or {{cookie: NAME}}",
            upstream.algorithm
        );
        return problem(format!("{path}.hash_key"), msg);
    }
    check_capacity(&path, upstream)?;
    if upstream.algorithm == Algorithm::Sticky {
        check_sticky(&format!("{path}.sticky"), &upstream.sticky)?;
    }
    if upstream.ewma_decay.0.is_zero() {
        return problem(format!("{path}.ewma_decay"), "must be longer than 0");
    }
    if upstream.retries >= max_retries {
        let msg = format!("must be below server.max_retries ({max_retries})");
        return problem(format!("{path}.retries"), msg);
    }
    if let Some(hc) = &upstream.health_check {
        check_health(&format!("{path}.health_check"), hc)?;
    }
    check_resilience(&path, upstream)?;
    check_timeouts(&format!("{path}.timeouts"), &upstream.timeouts)
}

fn check_capacity(path: &str, upstream: &Upstream) -> Result<(), Problem> {
    if upstream.max_connections == Some(0) {
        return problem(
            format!("{path}.max_connections"),
            "must be at least 1 (leave it out for no limit)",
        );
    }
    for (i, backend) in upstream.backends.iter().enumerate() {
        if backend.max_connections == Some(0) {
            let msg = "must be at least 1 (leave it out for no limit)";
            return problem(format!("{path}.backends[{i}].max_connections"), msg);
        }
    }
    let capped = upstream
        .backends
        .iter()
        .all(|b| upstream.max_connections_of(b).is_some());
    if upstream.algorithm == Algorithm::First && !capped {
        let msg =
            "algorithm first fills each backend up to its max_connections: set it on the pool or on every backend";
        return problem(format!("{path}.max_connections"), msg);
    }
    if upstream.queue_timeout.0.is_zero() {
        return problem(format!("{path}.queue_timeout"), "must be longer than 0");
    }
    Ok(())
}

fn check_sticky(path: &str, sticky: &StickyConf) -> Result<(), Problem> {
    let token_ok = !sticky.cookie.is_empty()
        && sticky
            .cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token_ok {
        return problem(
            format!("{path}.cookie"),
            format!("{:?} is not a valid cookie name", sticky.cookie),
        );
    }
    if !sticky.path.starts_with('/') || sticky.path.bytes().any(|b| b <= b' ' || b == b';' || b == 0x7f) {
        return problem(
            format!("{path}.path"),
            format!("{:?} must start with / and have no spaces or ;", sticky.path),
        );
    }
    if sticky.same_site == Some(SameSite::None) && !sticky.secure {
        return problem(
            format!("{path}.same_site"),
            "same_site: none needs secure: true (browsers reject it otherwise)",
        );
    }
    Ok(())
}

fn check_backends(path: &str, upstream: &Upstream) -> Result<(), Problem> {
    match &upstream.discovery {
        None if upstream.backends.is_empty() => {
            return problem(
                format!("{path}.backends"),
                "a pool needs at least one backend (or a discovery source)",
            );
        }
        Some(d) if d.file.is_some() == d.dns.is_some() => {
            return problem(
                format!("{path}.discovery"),
                "name one source: file: {path: FILE} or dns: {name: NAME, port: PORT}",
            );
        }
        Some(d) if d.file.as_ref().is_some_and(|f| f.path.trim().is_empty()) => {
            return problem(format!("{path}.discovery.file.path"), "is empty");
        }
        Some(d) if d.dns.as_ref().is_some_and(|n| !valid_dns_name(&n.name)) => {
            return problem(format!("{path}.discovery.dns.name"), "is not a valid DNS name");
        }
        Some(d) if d.dns.as_ref().is_some_and(|n| !n.is_srv() && n.port.is_none()) => {
            return problem(
                format!("{path}.discovery.dns.port"),
                "is needed for A/AAAA records (only SRV names, starting with _, carry ports)",
            );
        }
        Some(d)
            if d.dns
                .as_ref()
                .is_some_and(|n| n.refresh.0 < std::time::Duration::from_secs(1)) =>
        {
            return problem(format!("{path}.discovery.dns.refresh"), "must be at least 1s");
        }
        _ => {}
    }
    let mut seen = HashSet::new();
    for (i, backend) in upstream.backends.iter().enumerate() {
        let here = format!("{path}.backends[{i}]");
        if !(1..=MAX_WEIGHT).contains(&backend.weight) {
            let msg = format!(
                "{} is out of range: weights go from 1 to {MAX_WEIGHT} (remove a backend to stop its traffic)",
                backend.weight
            );
            return problem(format!("{here}.weight"), msg);
        }
        if !seen.insert(backend.address) {
            let msg = format!("{} is listed twice in this pool", backend.address);
            return problem(format!("{here}.address"), msg);
        }
    }
    Ok(())
}

fn check_health(path: &str, hc: &HealthCheckConf) -> Result<(), Problem> {
    if !hc.path.starts_with('/') || hc.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return problem(
            format!("{path}.path"),
            format!("{:?} must start with / and have no spaces", hc.path),
        );
    }
    if hc.host.is_empty() || http::HeaderValue::from_str(&hc.host).is_err() {
        return problem(
            format!("{path}.host"),
            format!("{:?} is not a valid Host header", hc.host),
        );
    }
    for (field, value) in [("interval", hc.interval), ("timeout", hc.timeout)] {
        if value.0.is_zero() {
            return problem(format!("{path}.{field}"), "must be longer than 0");
        }
    }
    for (field, value) in [
        ("healthy_threshold", hc.healthy_threshold),
        ("unhealthy_threshold", hc.unhealthy_threshold),
    ] {
        if value == 0 {
            return problem(format!("{path}.{field}"), "must be at least 1");
        }
    }
    Ok(())
}

fn check_resilience(path: &str, upstream: &Upstream) -> Result<(), Problem> {
    let o = &upstream.outlier_detection;
    if o.consecutive_failures > 0 && o.ejection_time.0.is_zero() {
        return problem(
            format!("{path}.outlier_detection.ejection_time"),
            "must be longer than 0",
        );
    }
    if o.max_ejected_percent > 100 {
        return problem(
            format!("{path}.outlier_detection.max_ejected_percent"),
            "must be at most 100",
        );
    }
    let r = &upstream.retry_budget;
    if !(r.ratio.is_finite() && r.ratio >= 0.0) {
        return problem(format!("{path}.retry_budget.ratio"), "must be 0 or more");
    }
    if let Some(tls) = &upstream.tls {
        if tls
            .sni
            .as_deref()
            .is_some_and(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            return problem(format!("{path}.tls.sni"), "must be a host name");
        }
    }
    Ok(())
}

fn check_timeouts(path: &str, t: &Timeouts) -> Result<(), Problem> {
    let total = t.total.unwrap_or(super::Dur(std::time::Duration::from_secs(1)));
    for (field, value) in [
        ("connect", t.connect),
        ("read", t.read),
        ("write", t.write),
        ("idle", t.idle),
        ("tunnel", t.tunnel),
        ("total", total),
    ] {
        if value.0.is_zero() {
            return problem(format!("{path}.{field}"), "must be longer than 0");
        }
    }
    Ok(())
}

/// Whether `name` is a DNS name: dot-separated labels of letters, digits, `-` and `_`, each 1 to
/// 63 bytes, 253 at most in all (a trailing dot allowed).
fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}
