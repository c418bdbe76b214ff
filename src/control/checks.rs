//! The health-check scheduler: runs each pool's rounds of active checks at its interval over the
//! live routing table (reloads add and remove pools; membership changes are seen at each round),
//! and the strict first rounds that start-up and reloads wait for. What a probe is and how its
//! results become health is the request side's ([`Check`](crate::request::health::Check), each backend's live state).

use crate::request::pool::{backend, Pool};
use crate::request::route::Routing;
use log::{info, warn};
use std::sync::Arc;
use std::time::Duration;

/// How often the loop looks for pools whose round is due.
const TICK: Duration = Duration::from_millis(50);

/// Probes every current member of `pool` once, concurrently. With `strict` (the first round
/// after start-up or after a pool appears), one failure ejects: a starting process serves only
/// backends that answered instead of trusting them for `unhealthy_threshold` rounds. Each
/// transition is logged once, as `pool web backend 127.0.0.1:9001 becomes unhealthy, <reason>`
/// (see [`reason`](crate::request::health::reason); or `becomes healthy`).
async fn round(pool: &Pool, strict: bool) {
    let Some(check) = pool.health() else { return };
    let probes = pool.states().all().into_iter().map(|state| async move {
        let target = backend(state.addr, state.weight());
        let result = check.probe(&target).await;
        let threshold = |passed| if strict { 1 } else { check.threshold(passed) };
        match state.observe_check(result.is_ok(), threshold) {
            Some(true) => info!("pool {} backend {} becomes healthy", pool.name, state.addr),
            Some(false) => {
                let why = result.err().unwrap_or_default();
                warn!("pool {} backend {} becomes unhealthy, {why}", pool.name, state.addr);
            }
            None => {}
        }
    });
    futures::future::join_all(probes).await;
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
