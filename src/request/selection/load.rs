//! Live per-backend state: requests in flight (with an optional `max_connections` cap), a
//! peak-EWMA of response time, health, the admin state, and counters. It lives outside the selectors (which Pingora
//! rebuilds on membership changes) in a registry handed to them as their config, and a
//! [`Lease`] held by the request gives its slot back however the request ends.

use crate::clock::{mono_ms, mono_ns};
use crate::request::member::{AdminState, Member, Source};
use arc_swap::ArcSwap;
use fnv::FnvHashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

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
            stamp: AtomicU64::new(mono_ns()),
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
        self.decayed(mono_ns())
    }

    /// Adds a response time.
    pub fn observe(&self, rtt: Duration) {
        let now = mono_ns();
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

/// One backend's live state. What the control plane configures (weight, position, cap, admin
/// state, source) can change while it lives; counters, health and latency are kept across such
/// changes.
pub struct BackendState {
    /// The backend.
    pub addr: SocketAddr,
    weight: AtomicUsize,
    order: AtomicUsize,
    /// `usize::MAX` for no limit.
    max_connections: AtomicUsize,
    admin: AtomicU8,
    source: AtomicU8,
    healthy: AtomicBool,
    /// Consecutive check results that disagree with `healthy`.
    streak: AtomicU32,
    /// Failed attempts in a row (passive health).
    failing: AtomicU32,
    /// Ejected by passive health until this time (milliseconds of [`mono_ms`]).
    ejected_until: AtomicU64,
    inflight: AtomicUsize,
    /// Response-time average, for `least_time` and the dashboard.
    pub latency: PeakEwma,
    /// Requests sent to this backend (attempts, retries included).
    pub requests: AtomicU64,
    /// Attempts that failed to connect or to get a response.
    pub failures: AtomicU64,
    /// Health checks passed and failed.
    pub checks: [AtomicU64; 2],
    /// The pool's queue, woken whenever a slot frees up.
    freed: Arc<Notify>,
}

impl BackendState {
    /// State for `member` at position `order` in its pool.
    pub fn new(member: &Member, order: usize, decay: Duration, freed: Arc<Notify>) -> Self {
        let state = BackendState {
            addr: member.addr,
            weight: AtomicUsize::new(1),
            order: AtomicUsize::new(order),
            max_connections: AtomicUsize::new(usize::MAX),
            admin: AtomicU8::new(0),
            source: AtomicU8::new(0),
            healthy: AtomicBool::new(true),
            streak: AtomicU32::new(0),
            failing: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            inflight: AtomicUsize::new(0),
            latency: PeakEwma::new(decay),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            checks: Default::default(),
            freed,
        };
        state.configure(member, order);
        state
    }

    /// State for a backend the registry does not know (a selector built without one):
    /// unlimited, counted nowhere else.
    pub fn detached(addr: SocketAddr, weight: usize) -> Self {
        let member = Member::new(addr, weight.clamp(1, u32::MAX as usize) as u32);
        Self::new(&member, usize::MAX, Duration::from_secs(10), Arc::new(Notify::new()))
    }

    /// Applies `member`'s settings (the address stays).
    pub fn configure(&self, member: &Member, order: usize) {
        self.weight.store((member.weight as usize).max(1), Ordering::Relaxed);
        self.order.store(order, Ordering::Relaxed);
        let max = member.max_connections.unwrap_or(usize::MAX);
        self.max_connections.store(max, Ordering::Relaxed);
        self.set_admin(member.state);
        self.source.store(member.source as u8, Ordering::Relaxed);
    }

    /// Relative weight.
    pub fn weight(&self) -> usize {
        self.weight.load(Ordering::Relaxed)
    }

    /// Position in the pool: `first` fills backends in this order.
    pub fn order(&self) -> usize {
        self.order.load(Ordering::Relaxed)
    }

    /// Most requests in flight at once; `None` for no limit.
    pub fn max_connections(&self) -> Option<usize> {
        let max = self.max_connections.load(Ordering::Relaxed);
        (max != usize::MAX).then_some(max)
    }

    /// Ready, drain or maint.
    pub fn admin(&self) -> AdminState {
        AdminState::from_u8(self.admin.load(Ordering::Relaxed))
    }

    /// Sets the admin state.
    pub fn set_admin(&self, state: AdminState) {
        self.admin.store(state as u8, Ordering::Relaxed);
    }

    /// Where the backend comes from.
    pub fn source(&self) -> Source {
        Source::from_u8(self.source.load(Ordering::Relaxed))
    }

    /// Whether the last health checks passed (always true without checks).
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records a check result; `threshold(passed)` is how many results in a row flip the
    /// health. Returns the new health when it flipped.
    pub fn observe_check(&self, passed: bool, threshold: impl Fn(bool) -> u32) -> Option<bool> {
        self.checks[usize::from(!passed)].fetch_add(1, Ordering::Relaxed);
        if passed == self.healthy() {
            self.streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < threshold(passed).max(1) {
            return None;
        }
        self.streak.store(0, Ordering::Relaxed);
        self.healthy.store(passed, Ordering::Relaxed);
        Some(passed)
    }

    /// Counts a failed attempt: the number of failures in a row.
    pub fn attempt_failed(&self) -> u32 {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.failing.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts a successful attempt: the failures in a row start again.
    pub fn attempt_succeeded(&self) {
        if self.failing.load(Ordering::Relaxed) != 0 {
            self.failing.store(0, Ordering::Relaxed);
        }
    }

    /// Ejects the backend (passive health): when `recheck`, by marking it unhealthy, so that
    /// active checks must pass again before it returns; else for `cool_down`.
    pub fn eject(&self, cool_down: Duration, recheck: bool) {
        self.failing.store(0, Ordering::Relaxed);
        if recheck {
            self.streak.store(0, Ordering::Relaxed);
            self.healthy.store(false, Ordering::Relaxed);
        } else {
            let until = mono_ms() + cool_down.as_millis() as u64;
            self.ejected_until.store(until, Ordering::Relaxed);
        }
    }

    /// Whether passive health holds the backend out now.
    pub fn ejected(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && mono_ms() < until
    }

    /// Whether a new request may go here: healthy, not ejected, and ready (or drained, for a
    /// sticky client pinned to it: `pinned` says whether the request's cookie names this
    /// backend).
    pub fn usable(&self, pinned: impl FnOnce() -> bool) -> bool {
        self.healthy()
            && !self.ejected()
            && match self.admin() {
                AdminState::Ready => true,
                AdminState::Drain => pinned(),
                AdminState::Maint => false,
            }
    }

    /// Requests in flight now.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Takes a slot if one is free: the request holds the [`Lease`] until it ends.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Lease> {
        let max = self.max_connections.load(Ordering::Relaxed);
        self.inflight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < max).then_some(n + 1))
            .ok()?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        Some(Lease(Arc::clone(self)))
    }

    /// Load for `least_connections` and `power_of_two`: `(in flight + 1) / weight`.
    pub fn load(&self) -> f64 {
        (self.inflight() + 1) as f64 / self.weight() as f64
    }

    /// Cost for `least_time`: expected latency times the queue it would join, per weight.
    pub fn latency_cost(&self) -> f64 {
        self.latency.get() * (self.inflight() + 1) as f64 / self.weight() as f64
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

/// Every current member's state in a pool, by address. Selectors get it as their
/// configuration; the pool replaces the map (never the states of backends that stay) when its
/// membership changes.
#[derive(Default)]
pub struct States {
    pool: String,
    /// FNV rather than SipHash: the keys are backend addresses, looked up on every request.
    by_addr: ArcSwap<FnvHashMap<SocketAddr, Arc<BackendState>>>,
}

impl States {
    /// The registry of pool `pool`.
    pub fn new(pool: &str, states: impl IntoIterator<Item = Arc<BackendState>>) -> Self {
        States {
            pool: pool.to_string(),
            by_addr: ArcSwap::from_pointee(states.into_iter().map(|s| (s.addr, s)).collect()),
        }
    }

    /// The pool's name.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// The state of the backend at `addr`.
    pub fn get(&self, addr: &SocketAddr) -> Option<Arc<BackendState>> {
        self.by_addr.load().get(addr).cloned()
    }

    /// Runs `f` on the state of the backend at `addr`, without taking a reference count.
    pub fn with<R>(&self, addr: &SocketAddr, f: impl FnOnce(&Arc<BackendState>) -> R) -> Option<R> {
        self.by_addr.load().get(addr).map(f)
    }

    /// Every state, in the pool's order.
    pub fn all(&self) -> Vec<Arc<BackendState>> {
        let mut all: Vec<_> = self.by_addr.load().values().cloned().collect();
        all.sort_by_key(|s| s.order());
        all
    }

    /// Whether any member's state passes `f` (no copy of the map, stops at the first).
    pub fn any(&self, f: impl FnMut(&Arc<BackendState>) -> bool) -> bool {
        self.by_addr.load().values().any(f)
    }

    /// How many members the pool has.
    pub fn len(&self) -> usize {
        self.by_addr.load().len()
    }

    /// Whether the pool has no member.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the membership with `states`.
    pub fn replace(&self, states: impl IntoIterator<Item = Arc<BackendState>>) {
        self.by_addr
            .store(Arc::new(states.into_iter().map(|s| (s.addr, s)).collect()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(max: Option<usize>) -> Arc<BackendState> {
        let mut member = Member::new("127.0.0.1:1".parse().unwrap(), 1);
        member.max_connections = max;
        Arc::new(BackendState::new(
            &member,
            0,
            Duration::from_secs(1),
            Arc::new(Notify::new()),
        ))
    }

    #[test]
    fn health_flips_after_the_threshold_in_a_row() {
        let s = state(None);
        let t = |passed: bool| if passed { 2 } else { 3 };
        assert_eq!(s.observe_check(false, t), None);
        assert_eq!(s.observe_check(true, t), None, "a pass breaks the streak");
        assert_eq!(s.observe_check(false, t), None);
        assert_eq!(s.observe_check(false, t), None);
        assert_eq!(s.observe_check(false, t), Some(false));
        assert!(!s.healthy());
        assert_eq!(s.observe_check(true, t), None);
        assert_eq!(s.observe_check(true, t), Some(true));
        assert_eq!(s.checks[0].load(Ordering::Relaxed), 3);
        assert_eq!(s.checks[1].load(Ordering::Relaxed), 4);
    }

    #[test]
    fn drained_backends_take_only_pinned_clients_and_maint_nothing() {
        let s = state(None);
        assert!(s.usable(|| false));
        s.set_admin(AdminState::Drain);
        assert!(!s.usable(|| false) && s.usable(|| true));
        s.set_admin(AdminState::Maint);
        assert!(!s.usable(|| true));
        s.set_admin(AdminState::Ready);
        s.observe_check(false, |_| 1);
        assert!(!s.usable(|| true), "unhealthy");
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
