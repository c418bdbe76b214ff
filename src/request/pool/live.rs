//! The part of a pool that outlives an in-place reload: its members' live state, the
//! membership Pingora's `Backends` discovers, the wait queue's counters and the pool's
//! statistics. The pool that uses it is rebuilt from each new configuration.

use crate::request::selection::load::States;
use crate::request::stats::PoolStats;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::Backend;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The membership Pingora's `Backends` discovers: whatever [`Pool::set_members`] last stored.
#[derive(Default)]
pub(super) struct Membership(pub(super) ArcSwap<BTreeSet<Backend>>);

pub(super) struct Discovery(pub(super) Arc<Membership>);

#[async_trait]
impl ServiceDiscovery for Discovery {
    async fn discover(&self) -> pingora_error::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        Ok((BTreeSet::clone(&self.0 .0.load()), HashMap::new()))
    }
}

/// What of a pool outlives an in-place reload (which rebuilds [`Pool`] from the new file): its
/// members' live state, its queue and its statistics.
pub struct PoolLive {
    pub(super) states: Arc<States>,
    pub(super) membership: Arc<Membership>,
    /// Requests waiting in the queue now.
    pub(super) waiting: AtomicUsize,
    /// Woken by every [`Lease`] given back.
    pub(super) freed: Arc<Notify>,
    /// Counters and histograms.
    pub stats: PoolStats,
    /// Serializes membership changes.
    pub(super) updating: Mutex<()>,
    /// Milliseconds since [`epoch`] at which the next health round is due.
    pub(super) next_check: AtomicU64,
    pub(super) checking: AtomicBool,
}

impl PoolLive {
    /// The live part of a new pool named `name`.
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(PoolLive {
            states: Arc::new(States::new(name, [])),
            membership: Arc::default(),
            waiting: AtomicUsize::new(0),
            freed: Arc::new(Notify::new()),
            stats: PoolStats::default(),
            updating: Mutex::new(()),
            next_check: AtomicU64::new(0),
            checking: AtomicBool::new(false),
        })
    }
}
