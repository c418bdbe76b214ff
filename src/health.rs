//! Active HTTP health checks (Pingora's `HttpHealthCheck` configured from `health_check:`) and
//! the background service that loads every pool and runs its checks. Picking among healthy
//! backends is the selectors' job.

use crate::config::HealthCheckConf;
use crate::error::StartError;
use crate::upstream::Pool;
use async_trait::async_trait;
use log::error;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;
use pingora_error::{Error, ErrorType};
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck};
use pingora_load_balancing::Backend;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

/// A pool's HTTP check. Until `warming` is cleared (after the first round), one failure is
/// enough to eject: a starting process (or the new one of an upgrade) serves only backends that
/// answered, instead of trusting them for `unhealthy_threshold` rounds.
struct PoolCheck {
    http: HttpHealthCheck,
    warming: Arc<AtomicBool>,
}

#[async_trait]
impl HealthCheck for PoolCheck {
    async fn check(&self, target: &Backend) -> pingora_error::Result<()> {
        self.http.check(target).await
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        self.http.health_status_change(target, healthy).await
    }

    fn backend_summary(&self, target: &Backend) -> String {
        self.http.backend_summary(target)
    }

    fn health_threshold(&self, success: bool) -> usize {
        if self.warming.load(Ordering::Relaxed) {
            1
        } else {
            self.http.health_threshold(success)
        }
    }
}

/// The health check of pool `pool`, strict while `warming` is set. Pingora logs each
/// transition once, as `pool web backend 127.0.0.1:9001 becomes unhealthy, <reason>` (or
/// `becomes healthy`).
pub fn pool_check(
    pool: &str,
    conf: &HealthCheckConf,
    warming: Arc<AtomicBool>,
) -> Result<Box<dyn HealthCheck + Send + Sync>, StartError> {
    Ok(Box::new(PoolCheck {
        http: http_check(pool, conf)?,
        warming,
    }))
}

fn http_check(pool: &str, conf: &HealthCheckConf) -> Result<HttpHealthCheck, StartError> {
    let fail = |message: String| StartError::Pool {
        pool: pool.to_string(),
        message,
    };
    let mut check = HttpHealthCheck::new(&conf.host, false);
    let mut req =
        RequestHeader::build("GET", conf.path.as_bytes(), None).map_err(|e| fail(format!("health_check.path: {e}")))?;
    req.append_header("Host", conf.host.as_str())
        .map_err(|e| fail(format!("health_check.host: {e}")))?;
    req.append_header("User-Agent", "lb-health-check")
        .map_err(|e| fail(format!("health_check: {e}")))?;
    check.req = req;
    check.consecutive_success = conf.healthy_threshold as usize;
    check.consecutive_failure = conf.unhealthy_threshold as usize;
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
    let name = pool.to_string();
    check.set_backend_summary(move |b| format!("pool {name} backend {}", b.addr));
    Ok(check)
}

/// Loads every pool's backends, runs one round of health checks, declares itself ready (so the
/// proxy starts serving with a known view of health) and then checks each pool at its interval.
pub struct PoolService {
    pools: Vec<Arc<Pool>>,
}

impl PoolService {
    /// A service for `pools`.
    pub fn new(pools: Vec<Arc<Pool>>) -> Self {
        PoolService { pools }
    }
}

#[async_trait]
impl BackgroundService for PoolService {
    async fn start_with_ready_notifier(&self, mut shutdown: ShutdownWatch, ready: ServiceReadyNotifier) {
        for pool in &self.pools {
            if let Err(e) = pool.balancer().update().await {
                error!("pool {}: loading backends failed: {e}", pool.name);
            }
        }
        let mut first_round = JoinSet::new();
        for pool in self.checked() {
            first_round.spawn(async move { pool.balancer().backends().run_health_check(true).await });
        }
        while first_round.join_next().await.is_some() {}
        for pool in &self.pools {
            pool.warmed_up();
        }
        ready.notify_ready();

        let mut loops = JoinSet::new();
        for pool in self.checked() {
            let every = pool.health_interval.unwrap_or(Duration::from_secs(1));
            loops.spawn(check_forever(pool, every));
        }
        // Runs until shutdown; dropping `loops` then cancels the checks.
        let _ = shutdown.changed().await;
    }
}

impl PoolService {
    fn checked(&self) -> impl Iterator<Item = Arc<Pool>> + '_ {
        self.pools.iter().filter(|p| p.health_interval.is_some()).cloned()
    }
}

async fn check_forever(pool: Arc<Pool>, every: Duration) {
    let mut ticks = interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        pool.balancer().backends().run_health_check(true).await;
    }
}
