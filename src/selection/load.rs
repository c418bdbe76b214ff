//! Live per-backend state: requests in flight (with an optional `max_connections` cap), a
//! peak-EWMA of response time, and counters. It lives outside the selectors (which Pingora
//! rebuilds on membership changes) in a registry handed to them as their config, and a
//! [`Lease`] held by the request gives its slot back however the request ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Nanoseconds since the first call: a cheap shared clock for the EWMA.
fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A peak-sensitive moving average of response time (Finagle's and Linkerd's peak EWMA): a
/// slower sample is taken at once, faster ones pull the average down with weight
/// `1 - e^(-Δt/τ)`, and the average decays towards zero while nothing is observed, so a
/// backend that stopped receiving traffic is tried again.
pub struct PeakEwma {
    /// Average in nanoseconds, as f64 bits.
    value: AtomicU64,
    /// When `value` was last set.
    stamp: AtomicU64,
    /// τ in nanoseconds.
    decay_ns: f64,
}

/// What a backend with no sample yet is assumed to take.
const INITIAL_RTT: Duration = Duration::from_millis(1);

impl PeakEwma {
    /// An average decaying with time constant `decay`.
    pub fn new(decay: Duration) -> Self {
        PeakEwma {
            value: AtomicU64::new((INITIAL_RTT.as_nanos() as f64).to_bits()),
            stamp: AtomicU64::new(now_ns()),
            decay_ns: decay.as_nanos().max(1) as f64,
        }
    }

    fn decayed(&self, now: u64) -> f64 {
        let value = f64::from_bits(self.value.load(Ordering::Relaxed));
        let elapsed = now.saturating_sub(self.stamp.load(Ordering::Relaxed)) as f64;
        value * (-elapsed / self.decay_ns).exp()
    }

    /// The current average in nanoseconds.
    pub fn get(&self) -> f64 {
        self.decayed(now_ns())
    }

    /// Adds a response time.
    pub fn observe(&self, rtt: Duration) {
        let now = now_ns();
        let rtt = rtt.as_nanos() as f64;
        let current = f64::from_bits(self.value.load(Ordering::Relaxed));
        let elapsed = now.saturating_sub(self.stamp.load(Ordering::Relaxed)) as f64;
        let next = if rtt > current {
            rtt
        } else {
            let w = (-elapsed / self.decay_ns).exp();
            current * w + rtt * (1.0 - w)
        };
        self.value.store(next.to_bits(), Ordering::Relaxed);
        self.stamp.store(now, Ordering::Relaxed);
    }
}

/// One backend's live state.
pub struct BackendState {
    /// The backend.
    pub addr: SocketAddr,
    /// Relative weight (as configured).
    pub weight: usize,
    /// Position in the configuration's list: `first` fills backends in this order.
    pub order: usize,
    /// Most requests in flight at once; `None` for no limit.
    pub max_connections: Option<usize>,
    inflight: AtomicUsize,
    /// Response-time average, for `least_time`.
    pub latency: PeakEwma,
    /// Requests sent to this backend (attempts, retries included).
    pub requests: AtomicU64,
    /// Attempts that failed to connect or to get a response.
    pub failures: AtomicU64,
    /// The pool's queue, woken whenever a slot frees up.
    freed: Arc<Notify>,
}

impl BackendState {
    /// State for a backend at position `order`.
    pub fn new(
        addr: SocketAddr,
        weight: usize,
        order: usize,
        max_connections: Option<usize>,
        decay: Duration,
        freed: Arc<Notify>,
    ) -> Self {
        BackendState {
            addr,
            weight: weight.max(1),
            order,
            max_connections,
            inflight: AtomicUsize::new(0),
            latency: PeakEwma::new(decay),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            freed,
        }
    }

    /// State for a backend the registry does not know (never happens with static pools):
    /// unlimited, counted nowhere else.
    pub fn detached(addr: SocketAddr, weight: usize) -> Self {
        Self::new(
            addr,
            weight,
            usize::MAX,
            None,
            Duration::from_secs(10),
            Arc::new(Notify::new()),
        )
    }

    /// Requests in flight now.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Takes a slot if one is free: the request holds the [`Lease`] until it ends.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Lease> {
        let max = self.max_connections.unwrap_or(usize::MAX);
        self.inflight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < max).then_some(n + 1))
            .ok()?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        Some(Lease(Arc::clone(self)))
    }

    /// Load for `least_connections` and `power_of_two`: `(in flight + 1) / weight`.
    pub fn load(&self) -> f64 {
        (self.inflight() + 1) as f64 / self.weight as f64
    }

    /// Cost for `least_time`: expected latency times the queue it would join, per weight.
    pub fn latency_cost(&self) -> f64 {
        self.latency.get() * (self.inflight() + 1) as f64 / self.weight as f64
    }
}

/// A request's slot on a backend, given back on drop (end, error, retry elsewhere, abort).
pub struct Lease(Arc<BackendState>);

impl Lease {
    /// The backend the slot is on.
    pub fn state(&self) -> &Arc<BackendState> {
        &self.0
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_one();
    }
}

/// Every backend's state in a pool, by address. Selectors get it as their configuration.
#[derive(Default)]
pub struct States {
    pool: String,
    by_addr: HashMap<SocketAddr, Arc<BackendState>>,
}

impl States {
    /// The registry of pool `pool`.
    pub fn new(pool: &str, states: impl IntoIterator<Item = Arc<BackendState>>) -> Self {
        States {
            pool: pool.to_string(),
            by_addr: states.into_iter().map(|s| (s.addr, s)).collect(),
        }
    }

    /// The pool's name.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// The state of the backend at `addr`.
    pub fn get(&self, addr: &SocketAddr) -> Option<&Arc<BackendState>> {
        self.by_addr.get(addr)
    }

    /// Every state, in configuration order.
    pub fn all(&self) -> Vec<&Arc<BackendState>> {
        let mut all: Vec<_> = self.by_addr.values().collect();
        all.sort_by_key(|s| s.order);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(max: Option<usize>) -> Arc<BackendState> {
        let addr = "127.0.0.1:1".parse().unwrap();
        Arc::new(BackendState::new(
            addr,
            1,
            0,
            max,
            Duration::from_secs(1),
            Arc::new(Notify::new()),
        ))
    }

    #[test]
    fn leases_respect_max_connections_and_give_slots_back() {
        let s = state(Some(2));
        let (a, b) = (s.try_acquire().unwrap(), s.try_acquire().unwrap());
        assert!(s.try_acquire().is_none());
        assert_eq!(s.inflight(), 2);
        drop(a);
        assert_eq!(s.inflight(), 1);
        let c = s.try_acquire().unwrap();
        drop((b, c));
        assert_eq!((s.inflight(), s.requests.load(Ordering::Relaxed)), (0, 3));
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let e = PeakEwma::new(Duration::from_millis(50));
        e.observe(Duration::from_millis(200));
        assert!(e.get() > 150e6, "{}", e.get());
        std::thread::sleep(Duration::from_millis(200));
        assert!(e.get() < 10e6, "no decay: {}", e.get());
        e.observe(Duration::from_millis(5));
        assert!(e.get() < 20e6, "{}", e.get());
    }
}
