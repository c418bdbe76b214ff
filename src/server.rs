//! Wiring: turns a validated `Config` into a Pingora server with the proxy service on every
//! listener and one background service for the pools, then runs it. No request logic here.

use crate::access_log::{AccessLog, AccessLogService};
use crate::config::Config;
use crate::error::StartError;
use crate::health::PoolService;
use crate::lifecycle::{remove_pid_file, survive_early_ready_signal, Draining, Lifecycle, LifecycleService};
use crate::metrics::Metrics;
use crate::proxy::Lb;
use crate::route::Router;
use crate::upstream::Pool;
use pingora_core::server::configuration::Opt;
use pingora_core::server::{RunArgs, Server};
use pingora_core::services::background::GenBackgroundService;
use pingora_core::services::listening::Service;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Builds every pool of `config`, by name.
pub fn build_pools(config: &Config) -> Result<BTreeMap<String, Arc<Pool>>, StartError> {
    config
        .upstreams
        .iter()
        .map(|(name, conf)| Ok((name.clone(), Arc::new(Pool::build(name, conf)?))))
        .collect()
}

/// The routing table of `config` over `pools`: its routes in order, or everything to the only pool.
pub fn build_router(config: &Config, pools: &BTreeMap<String, Arc<Pool>>) -> Router<Arc<Pool>> {
    let mut router = Router::new();
    for route in &config.routes {
        if let Some(pool) = pools.get(&route.upstream) {
            router.push(route.host.as_deref(), route.path_prefix.as_deref(), Arc::clone(pool));
        }
    }
    if config.routes.is_empty() {
        if let Some(pool) = pools.values().next() {
            router.push(None, None, Arc::clone(pool));
        }
    }
    router
}

/// Runs `lb` with `config` until it is told to stop. Returns only on a start-up error or after
/// a stop; the daemon's parent and early exits leave from inside.
pub fn run(config: Config, opt: Opt) -> Result<(), StartError> {
    // A waiting `lb -d` parent is told by this (pre-fork) pid once the listeners accept.
    let notify_pid = (config.server.daemon && config.server.daemon_wait_for_ready).then(std::process::id);
    if notify_pid.is_some() {
        survive_early_ready_signal();
    }
    let pools = build_pools(&config)?;
    let router = build_router(&config, &pools);
    let life = Lifecycle::new();

    let mut server = Server::new_with_opt_and_conf(opt, config.server.pingora_conf());
    let phases = server.watch_execution_phase();
    let pools_ready = server.add_service(one_thread(
        "lb pools",
        PoolService::new(pools.values().cloned().collect()),
    ));

    let access_log = config
        .access_log
        .as_ref()
        .map(|conf| AccessLog::new(Path::new(&conf.path)));
    if let Some(log) = &access_log {
        server.add_service(one_thread("lb access log", AccessLogService(Arc::clone(log))));
    }
    let lb = Lb::new(router, Arc::clone(&life), access_log);
    let app = Draining::new(pingora_proxy::http_proxy(&server.configuration, lb), Arc::clone(&life));
    let mut proxy = Service::new("lb proxy".to_string(), app);
    for listener in &config.listeners {
        proxy.add_tcp(&listener.address.to_string());
    }
    let proxy = server.add_service(proxy);
    // The listeners open only once every pool has loaded and run a first round of checks.
    proxy.add_dependency(&pools_ready);

    if let Some(metrics) = &config.metrics {
        let app = Metrics::new(pools.values().cloned().collect(), Arc::clone(&life));
        let mut service = Service::new("lb metrics".to_string(), app);
        service.threads = Some(1);
        service.add_tcp(&metrics.address.to_string());
        server.add_service(service);
    }

    let listeners = config.listeners.iter().map(|l| l.address.0).collect();
    let lifecycle = LifecycleService::new(life, listeners, notify_pid, &config.server.pid_file, phases);
    server
        .add_service(one_thread("lb lifecycle", lifecycle))
        .add_dependency(&proxy);

    server.bootstrap();
    server.run(RunArgs::default());
    crate::access_log::flush_all();
    remove_pid_file(&config.server.pid_file);
    Ok(())
}

fn one_thread<S>(name: &str, service: S) -> GenBackgroundService<S> {
    let mut service = GenBackgroundService::new(name.to_string(), Arc::new(service));
    service.threads = Some(1);
    service
}
