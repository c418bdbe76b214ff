//! Wiring: turns a validated `Config` into a Pingora server with the proxy service on every
//! listener and one background service for the pools, then runs it. No request logic here.

use crate::config::Config;
use crate::error::StartError;
use crate::health::PoolService;
use crate::proxy::Lb;
use crate::route::Router;
use crate::upstream::Pool;
use log::info;
use pingora_core::server::configuration::Opt;
use pingora_core::server::Server;
use pingora_core::services::background::GenBackgroundService;
use std::collections::BTreeMap;
use std::net::SocketAddr;
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

/// Fails early, with the address, when a listener cannot be bound (in use, no permission):
/// Pingora would only find out inside a worker thread. Skipped when taking over sockets (`-u`).
fn check_listeners(config: &Config) -> Result<(), StartError> {
    for listener in &config.listeners {
        let addr = listener.address.0;
        probe_bind(addr).map_err(|source| StartError::Bind { addr, source })?;
    }
    Ok(())
}

fn probe_bind(addr: SocketAddr) -> std::io::Result<()> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)
}

/// Runs `lb` with `config` until it is told to stop. Returns only on a start-up error.
pub fn run(config: Config, opt: Opt) -> Result<(), StartError> {
    if !opt.upgrade {
        check_listeners(&config)?;
    }
    let pools = build_pools(&config)?;
    let router = build_router(&config, &pools);

    let mut server = Server::new_with_opt_and_conf(opt, config.server.pingora_conf());
    let mut pool_service = GenBackgroundService::new(
        "lb pools".to_string(),
        Arc::new(PoolService::new(pools.values().cloned().collect())),
    );
    pool_service.threads = Some(1);
    let pools_ready = server.add_service(pool_service);

    let mut proxy = pingora_proxy::http_proxy_service_with_name(&server.configuration, Lb::new(router), "lb proxy");
    for listener in &config.listeners {
        proxy.add_tcp(&listener.address.to_string());
        info!("listening on http://{}", listener.address);
    }
    let proxy = server.add_service(proxy);
    // The listeners open only once every pool has loaded and run a first round of checks.
    proxy.add_dependency(&pools_ready);

    server.bootstrap();
    server.run_forever()
}
