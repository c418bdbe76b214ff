//! Balancing algorithms. Each is a Pingora `BackendSelection` inside a `LoadBalancer`, so health
//! checks, enablement and retries work the same for all; [`Balancer`] hides which one a pool uses.
//! Live per-request state (in-flight counts, latencies) does not belong here.

mod round_robin;

pub use round_robin::SmoothRoundRobin;

use crate::config::Algorithm;
use async_trait::async_trait;
use pingora_load_balancing::selection::{BackendIter, BackendSelection, Consistent, FNVHash, Random};
use pingora_load_balancing::{Backend, Backends, LoadBalancer};
use std::sync::Arc;

/// A pool's load balancer, whatever its algorithm.
#[async_trait]
pub trait Balancer: Send + Sync {
    /// The first backend along the algorithm's order for `key` that `accept(backend, ready)`
    /// takes, looking at no more than `max_iterations` candidates.
    fn select(
        &self,
        key: &[u8],
        max_iterations: usize,
        accept: &dyn Fn(&Backend, bool) -> bool,
    ) -> Option<Backend>;

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
    fn select(
        &self,
        key: &[u8],
        max_iterations: usize,
        accept: &dyn Fn(&Backend, bool) -> bool,
    ) -> Option<Backend> {
        self.select_with(key, max_iterations, accept)
    }

    fn backends(&self) -> &Backends {
        LoadBalancer::backends(self)
    }

    async fn update(&self) -> pingora_error::Result<()> {
        LoadBalancer::update(self).await
    }
}

/// Builds the balancer for `algorithm` over `backends`: the one place an algorithm is chosen.
pub fn build(algorithm: Algorithm, backends: Backends) -> Arc<dyn Balancer> {
    match algorithm {
        Algorithm::RoundRobin => Arc::new(LoadBalancer::<SmoothRoundRobin>::from_backends(backends)),
        Algorithm::Random => Arc::new(LoadBalancer::<Random>::from_backends(backends)),
        Algorithm::Hash => Arc::new(LoadBalancer::<FNVHash>::from_backends(backends)),
        Algorithm::Consistent => Arc::new(LoadBalancer::<Consistent>::from_backends(backends)),
    }
}

/// How many candidates a pick may look at before giving up: enough for every algorithm here to
/// visit each backend at least once in the common case, bounded for large pools.
pub fn max_iterations(backends: usize) -> usize {
    16 + backends.saturating_mul(8)
}
