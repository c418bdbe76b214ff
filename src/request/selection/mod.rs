//! Balancing algorithms. Each is a Pingora `BackendSelection` inside a `LoadBalancer`, so health
//! checks, enablement and retries work the same for all; [`Balancer`] hides which one a pool uses.
//! Live per-request state (in-flight counts, latencies) does not belong here.

mod first;
mod least_conn;
pub mod load;
mod p2c;
mod round_robin;
mod sticky;

pub use first::First;
pub use least_conn::LeastConnections;
pub use p2c::{LeastTime, PowerOfTwo};
pub use round_robin::SmoothRoundRobin;
pub use sticky::{cookie_value, parse_cookie, sticky_id, Sticky};

use crate::config::Algorithm;
use async_trait::async_trait;
use load::{BackendState, States};
use pingora_load_balancing::selection::{BackendIter, BackendSelection, Consistent, FNVHash, Random};
use pingora_load_balancing::{Backend, Backends, LoadBalancer};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::sync::Arc;

/// A pool's load balancer, whatever its algorithm.
#[async_trait]
pub trait Balancer: Send + Sync {
    /// The first backend along the algorithm's order for `key` that `accept(backend, ready)`
    /// takes, looking at no more than `max_iterations` candidates.
    fn select(&self, key: &[u8], max_iterations: usize, accept: &dyn Fn(&Backend, bool) -> bool) -> Option<Backend>;

    /// Membership, health and enablement.
    fn backends(&self) -> &Backends;

    /// Runs discovery and rebuilds the selector when membership changed.
    async fn update(&self) -> pingora_error::Result<()>;
}

#[async_trait]
impl<S> Balancer for LoadBalancer<S>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    fn select(&self, key: &[u8], max_iterations: usize, accept: &dyn Fn(&Backend, bool) -> bool) -> Option<Backend> {
        self.select_with(key, max_iterations, accept)
    }

    fn backends(&self) -> &Backends {
        LoadBalancer::backends(self)
    }

    async fn update(&self) -> pingora_error::Result<()> {
        LoadBalancer::update(self).await
    }
}

/// Builds the balancer for `algorithm` over `backends`, with live state from `states`: the one
/// place an algorithm is chosen.
pub fn build(algorithm: Algorithm, backends: Backends, states: Arc<States>) -> Arc<dyn Balancer> {
    fn with<S>(backends: Backends, states: Arc<States>) -> Arc<dyn Balancer>
    where
        S: BackendSelection<Config = Arc<States>> + Send + Sync + 'static,
        S::Iter: BackendIter,
    {
        Arc::new(LoadBalancer::<S>::from_backends_with_config(backends, Some(states)))
    }
    match algorithm {
        Algorithm::RoundRobin => Arc::new(LoadBalancer::<SmoothRoundRobin>::from_backends(backends)),
        Algorithm::Random => Arc::new(LoadBalancer::<Random>::from_backends(backends)),
        Algorithm::Hash => Arc::new(LoadBalancer::<FNVHash>::from_backends(backends)),
        Algorithm::Consistent => Arc::new(LoadBalancer::<Consistent>::from_backends(backends)),
        Algorithm::LeastConnections => with::<LeastConnections>(backends, states),
        Algorithm::PowerOfTwo => with::<PowerOfTwo>(backends, states),
        Algorithm::LeastTime => with::<LeastTime>(backends, states),
        Algorithm::Sticky => with::<Sticky>(backends, states),
        Algorithm::First => with::<First>(backends, states),
    }
}

/// Each backend with its live state (a detached one if the registry lacks it).
fn entries(backends: &BTreeSet<Backend>, states: &States) -> Box<[(Backend, Arc<BackendState>)]> {
    backends
        .iter()
        .map(|b| {
            let known = b.addr.as_inet().and_then(|a| states.get(a));
            let state = known.unwrap_or_else(|| {
                let addr = b.addr.as_inet().copied().unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
                Arc::new(BackendState::detached(addr, b.weight))
            });
            (b.clone(), state)
        })
        .collect()
}

/// A uniformly random number below `n` (`n` > 0), from a per-thread xorshift generator.
fn random_below(n: usize) -> usize {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(std::hash::RandomState::new().hash_one(0u8) | 1);
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x % n.max(1) as u64) as usize
    })
}

/// How many candidates a pick may look at before giving up: enough for every algorithm here to
/// visit each backend at least once in the common case, bounded for large pools.
pub fn max_iterations(backends: usize) -> usize {
    16 + backends.saturating_mul(8)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::load::Lease;
    use super::*;
    use std::time::Duration;
    use tokio::sync::Notify;

    /// Backends 127.0.0.{1..} with (weight, requests already in flight); the leases keep them
    /// in flight.
    pub fn pool(spec: &[(usize, usize)]) -> (BTreeSet<Backend>, Arc<States>, Vec<Lease>) {
        let freed = Arc::new(Notify::new());
        let mut set = BTreeSet::new();
        let mut states = Vec::new();
        let mut leases = Vec::new();
        for (i, &(weight, inflight)) in spec.iter().enumerate() {
            let addr: std::net::SocketAddr = format!("127.0.0.{}:80", i + 1).parse().unwrap();
            set.insert(Backend::new_with_weight(&addr.to_string(), weight).unwrap());
            let member = crate::request::member::Member::new(addr, weight as u32);
            let state = Arc::new(BackendState::new(
                &member,
                i,
                Duration::from_secs(1),
                Arc::clone(&freed),
            ));
            leases.extend((0..inflight).map(|_| state.try_acquire().unwrap()));
            states.push(state);
        }
        (set, Arc::new(States::new("p", states)), leases)
    }

    /// The index (127.0.0.N → N-1) of the first candidate of `n` picks.
    pub fn picks<S>(selection: &Arc<S>, n: usize) -> Vec<usize>
    where
        S: BackendSelection,
        S::Iter: BackendIter,
    {
        (0..n)
            .map(|_| {
                let mut iter = selection.iter(b"");
                let b = iter.next().unwrap();
                let ip = b.addr.as_inet().unwrap().ip().to_string();
                ip.rsplit('.').next().unwrap().parse::<usize>().unwrap() - 1
            })
            .collect()
    }

    #[test]
    fn random_below_stays_in_range_and_spreads() {
        let mut seen = [0usize; 4];
        for _ in 0..4000 {
            seen[random_below(4)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }
}
