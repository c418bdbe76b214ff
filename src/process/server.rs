//! Wiring: turns a validated `Config` into a Pingora server with the proxy service on every
//! listener, the admin and metrics listeners, and the background services (pools, signals,
//! access log, span export, lifecycle), then runs it. No request logic here.

use crate::config::Config;
use crate::control::admin::{Admin, AdminApp};
use crate::control::metrics::{Metrics, MetricsApp};
use crate::control::runtime::{Loader, Runtime};
use crate::control::service::PoolsService;
use crate::error::StartError;
use crate::process::lifecycle::{remove_pid_file, survive_early_ready_signal, Lifecycle, LifecycleService};
use crate::process::listeners;
use crate::process::signals::ReloadOnHangup;
use crate::request::access_log::{AccessLog, AccessLogService};
use crate::request::front::FrontStats;
use crate::request::proxy::Lb;
use crate::request::tls::{self, CertStore};
use async_trait::async_trait;
use pingora_core::server::configuration::Opt;
use pingora_core::server::ShutdownWatch;
use pingora_core::server::{RunArgs, Server};
use pingora_core::services::background::BackgroundService;
use pingora_core::services::background::GenBackgroundService;
use pingora_core::services::listening::Service;
use std::path::Path;
use std::sync::Arc;

/// Runs `lb` with `config` (read again by `loader` on a reload) until it is told to stop.
/// Returns only on a start-up error or after a stop; the daemon's parent and early exits leave
/// from inside.
pub fn run(config: Config, loader: Loader, opt: Opt) -> Result<(), StartError> {
    super::signals::raise_open_files_limit();
    // A waiting `lb -d` parent is told by this (pre-fork) pid once the listeners accept.
    let notify_pid = (config.server.daemon && config.server.daemon_wait_for_ready).then(std::process::id);
    if notify_pid.is_some() {
        survive_early_ready_signal();
    }
    let state_file = config
        .admin
        .as_ref()
        .and_then(|a| a.state_file.as_deref())
        .map(Path::new);
    let runtime = Runtime::new(config.clone(), loader, state_file)?;
    let life = Lifecycle::new();
    let traffic = Arc::clone(&life.traffic);

    let mut server = Server::new_with_opt_and_conf(opt, config.server.pingora_conf());
    let phases = server.watch_execution_phase();
    let pools_ready = server.add_service(one_thread("lb pools", PoolsService(Arc::clone(&runtime))));
    server.add_service(one_thread("lb signals", ReloadOnHangup(Arc::clone(&runtime))));

    let access_log = config
        .access_log
        .as_ref()
        .map(|conf| AccessLog::new(Path::new(&conf.path), conf.format));
    if let Some(log) = &access_log {
        server.add_service(one_thread("lb access log", AccessLogService(Arc::clone(log))));
    }
    let mut edge = listeners::edge(&config);
    if let Some(conf) = &config.tracing {
        let (tracer, export) = crate::request::trace::start(conf).map_err(StartError::Tracing)?;
        edge.tracer = Some(tracer);
        server.add_service(one_thread("lb traces", export));
    }
    let lb = Lb::new(
        Arc::clone(runtime.routing()),
        Arc::clone(&traffic),
        access_log.clone(),
        edge,
    );
    let front_stats = Arc::new(FrontStats::default());
    let parts = listeners::Parts {
        lb,
        life: Arc::clone(&life),
        access_log,
        front_stats: Arc::clone(&front_stats),
    };
    let (proxy, cert_stores) = listeners::proxy_service(&config, &server.configuration, parts)?;
    let proxy = server.add_service(proxy);
    if !cert_stores.is_empty() {
        server.add_service(one_thread("lb certificates", WatchCertificates(cert_stores)));
    }
    // The listeners open only once every pool has loaded and run a first round of checks.
    proxy.add_dependency(&pools_ready);

    let metrics = Metrics::new(Arc::clone(runtime.routing()), Arc::clone(&traffic), front_stats);
    if let Some(conf) = &config.metrics {
        let mut service = Service::new("lb metrics".to_string(), MetricsApp(Arc::clone(&metrics)));
        service.threads = Some(1);
        service.add_tcp(&conf.address.to_string());
        server.add_service(service).add_dependency(&pools_ready);
    }
    if let Some(conf) = &config.admin {
        let admin = Admin {
            runtime: Arc::clone(&runtime),
            metrics,
            token: conf.token().ok().flatten(),
            traffic,
            linger: listeners::linger(&config),
        };
        let mut service = Service::new("lb admin".to_string(), AdminApp(Arc::new(admin)));
        service.threads = Some(1);
        service.add_tcp(&conf.address.to_string());
        server.add_service(service).add_dependency(&pools_ready);
    }

    let listeners = config
        .listeners
        .iter()
        .map(|l| (l.address.0, l.tls.is_some()))
        .collect();
    let others = config.admin.iter().map(|a| a.address.0);
    let others = others.chain(config.metrics.iter().map(|m| m.address.0)).collect();
    let lifecycle = LifecycleService::new(life, listeners, others, notify_pid, &config.server.pid_file, phases);
    server
        .add_service(one_thread("lb lifecycle", lifecycle))
        .add_dependency(&proxy);

    server.bootstrap();
    server.run(RunArgs::default());
    crate::request::access_log::flush_all();
    remove_pid_file(&config.server.pid_file);
    Ok(())
}

/// Reloads TLS certificates that changed on disk.
struct WatchCertificates(Vec<Arc<CertStore>>);

#[async_trait]
impl BackgroundService for WatchCertificates {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = tls::watch(self.0.clone()) => {}
            _ = shutdown.changed() => {}
        }
    }
}

fn one_thread<S>(name: &str, service: S) -> GenBackgroundService<S> {
    let mut service = GenBackgroundService::new(name.to_string(), Arc::new(service));
    service.threads = Some(1);
    service
}
