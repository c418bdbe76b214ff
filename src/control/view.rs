//! Pools and backends as the admin API and the dashboard show them (the JSON contract of
//! `GET /api/v1/pools`): live state read from the pools, TTLs from the runtime changes.

use crate::clock::unix_ms;
use crate::control::state_file::Changes;
use crate::request::pool::Pool;
use crate::request::selection::load::BackendState;
use crate::request::stats::REFUSALS;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

/// One pool.
#[derive(Debug, Serialize)]
pub struct PoolView {
    /// Its name in the configuration.
    pub name: String,
    /// Its balancing algorithm.
    pub algorithm: &'static str,
    /// Its members, in the pool's order (the file's first, then registered ones).
    pub backends: Vec<BackendView>,
    /// Requests waiting for a free slot now.
    pub queued: usize,
    /// Responses sent by status class (`"2xx"`...).
    pub responses: BTreeMap<String, u64>,
    /// 503s without a backend, by reason.
    pub refused: BTreeMap<&'static str, u64>,
    /// Attempts after the first.
    pub retries: u64,
}

/// One backend.
#[derive(Debug, Serialize)]
pub struct BackendView {
    /// `IP:port`.
    pub address: String,
    /// Relative weight.
    pub weight: usize,
    /// `ready`, `drain` or `maint`.
    pub state: &'static str,
    /// Whether its health checks pass (true without checks).
    pub healthy: bool,
    /// `config` or `api`.
    pub source: &'static str,
    /// Requests in flight now.
    pub inflight: usize,
    /// Requests sent so far (attempts).
    pub requests: u64,
    /// Attempts that failed.
    pub failures: u64,
    /// Decaying average of response time, in milliseconds.
    pub latency_ms: f64,
    /// Seconds left before it is removed unless renewed; `null` without a TTL.
    pub ttl_remaining_s: Option<f64>,
    /// Most requests in flight at once; `null` for no limit.
    pub max_connections: Option<usize>,
}

fn backend_view(pool: &str, state: &BackendState, changes: &Changes) -> BackendView {
    let expires = changes
        .pools
        .get(pool)
        .and_then(|pc| pc.registered(state.addr))
        .and_then(|r| r.expires_at_ms);
    BackendView {
        address: state.addr.to_string(),
        weight: state.weight(),
        state: state.admin().name(),
        healthy: state.healthy(),
        source: state.source().name(),
        inflight: state.inflight(),
        requests: state.requests.load(Ordering::Relaxed),
        failures: state.failures.load(Ordering::Relaxed),
        latency_ms: (state.latency.get() / 1e4).round() / 100.0,
        ttl_remaining_s: expires.map(|t| t.saturating_sub(unix_ms()) as f64 / 1000.0),
        max_connections: state.max_connections(),
    }
}

/// Backend `addr` of `pool`, if it is a member.
pub fn backend(pool: &Pool, addr: SocketAddr, changes: &Changes) -> Option<BackendView> {
    pool.states().get(&addr).map(|s| backend_view(&pool.name, &s, changes))
}

/// `pool` with its members.
pub fn pool(pool: &Pool, changes: &Changes) -> PoolView {
    let stats = pool.stats();
    PoolView {
        name: pool.name.clone(),
        algorithm: pool.algorithm.name(),
        backends: pool
            .states()
            .all()
            .iter()
            .map(|s| backend_view(&pool.name, s, changes))
            .collect(),
        queued: pool.queued(),
        responses: (0..5).map(|i| (format!("{}xx", i + 1), stats.responses()[i])).collect(),
        refused: REFUSALS.iter().copied().zip(stats.refusals().map(|(_, n)| n)).collect(),
        retries: stats.retries(),
    }
}
