//! The control plane's background service: at start it restores the state file into the pools
//! (after an upgrade's hand-over, so no change acknowledged by the old process is missed), runs
//! a first strict round of health checks and only then reports ready, so the listeners open on
//! a known view of the pools; afterwards it runs the health checks, expires TTLs and forgets
//! idle rate-limit state, follows discovery files, samples the pools' history every second, and
//! drives the rollouts (with `cluster:`, when this instance wins their election).

use crate::control::checks;
use crate::control::discovery::Discoverer;
use crate::control::history;
use crate::control::runtime::Runtime;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;
use std::sync::Arc;
use std::time::Duration;

/// How often TTLs are looked at.
const EXPIRE_EVERY: Duration = Duration::from_millis(100);

/// How often the rollouts' figures are judged.
const DRIVE_EVERY: Duration = Duration::from_millis(500);

/// The pools' background work.
pub struct PoolsService(pub Arc<Runtime>);

#[async_trait]
impl BackgroundService for PoolsService {
    async fn start_with_ready_notifier(&self, mut shutdown: ShutdownWatch, ready: ServiceReadyNotifier) {
        let runtime = &self.0;
        // Discovered backends first, so that runtime changes to them are restored too.
        let mut discovery = Discoverer::new(Arc::clone(runtime));
        discovery.scan(true).await;
        runtime.restore().await;
        let pools: Vec<_> = runtime.routing().load().pools.values().cloned().collect();
        checks::first_rounds(pools).await;
        ready.notify_ready();
        let checks = checks::run(Arc::clone(runtime.routing()));
        let ttls = async {
            for tick in 0u64.. {
                tokio::time::sleep(EXPIRE_EVERY).await;
                runtime.expire().await;
                if tick % 100 == 0 {
                    let now = crate::clock::mono_ns();
                    runtime.routing().load().sweep_guards(now);
                }
            }
        };
        let sampling = history::run(runtime.routing(), runtime.history(), runtime.events());
        let rollouts = async {
            loop {
                tokio::time::sleep(DRIVE_EVERY).await;
                runtime.drive_rollouts().await;
            }
        };
        tokio::select! {
            _ = checks => {}
            () = sampling => {}
            _ = ttls => {}
            () = discovery.run() => {}
            () = Arc::clone(runtime).follow_cluster() => {}
            () = rollouts => {}
            () = runtime.elect_rollout_driver() => {}
            _ = shutdown.changed() => {}
        }
    }
}
