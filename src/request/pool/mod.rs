//! A running pool: its members and their live state, its balancer, where its selection key
//! comes from, its retry budget, its bounded wait queue and the connection options of its peers.
//! Membership changes only through [`Pool::set_members`] (the control plane's one way in);
//! routing to a pool and the request hooks are `proxy`'s; the algorithms are `selection`'s.

use crate::config::{Algorithm, HashKey, StickyConf, Upstream};
use crate::error::StartError;
use crate::request::health::Check;
use crate::request::key::{self, Key};
use crate::request::member::{AdminState, Member};
use crate::request::selection::load::{BackendState, Lease, States};
use crate::request::selection::{self, cookie_value, parse_cookie, sticky_id, Balancer};
use crate::request::stats::PoolStats;
use futures::FutureExt;
use log::error;
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use pingora_load_balancing::{Backend, Backends, Extensions};
use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod live;
mod peer;
mod resilience;

use crate::clock::mono_ms;
use live::Discovery;
pub use live::PoolLive;
pub use peer::load_ca;
use peer::PeerTemplate;
use resilience::{Outliers, RetryWindow};

/// Where a pool's selection key comes from.
enum KeySource {
    /// Not keyed.
    None,
    /// A hash key; requests without it are spread round-robin-like (as HAProxy does).
    Hash(HashKey),
    /// The sticky cookie; without it, plain round robin.
    Sticky(HashKey),
}

/// A backend picked for a request, with the slot the request holds on it.
pub struct Picked {
    /// The backend.
    pub backend: Backend,
    /// The slot; dropping it gives it back.
    pub lease: Lease,
}

/// Why a request got no backend (each is a 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[repr(usize)]
pub enum Refused {
    /// Every backend is down, ejected, drained or in maintenance ([`Pool::refusal`] says
    /// how many of each).
    #[error("no usable backend")]
    NoneReady = 0,
    /// Every backend is at `max_connections` and the queue is full.
    #[error("every backend is at max_connections and the queue is full")]
    QueueFull = 1,
    /// Waited `queue_timeout` for a slot.
    #[error("no backend slot freed up within queue_timeout")]
    QueueTimeout = 2,
}

enum Shortage {
    NoneReady,
    Full,
}

/// One upstream pool, shared by all requests routed to it.
pub struct Pool {
    /// The pool's name in the config.
    pub name: String,
    /// The balancing algorithm.
    pub algorithm: Algorithm,
    balancer: Arc<dyn Balancer>,
    live: Arc<PoolLive>,
    key: KeySource,
    /// Further attempts after a failed connect.
    pub retries: usize,
    peers: PeerTemplate,
    outliers: Outliers,
    retry_window: RetryWindow,
    spread: AtomicU64,
    health: Option<Check>,
    queue_size: usize,
    queue_timeout: Duration,
    sticky: Option<StickyConf>,
    /// The cap of members without their own.
    max_connections: Option<usize>,
    ewma_decay: Duration,
    /// Whether a discovery source adds backends.
    discovers: bool,
}

impl Pool {
    /// Whether a discovery source adds backends to the pool.
    pub fn discovers(&self) -> bool {
        self.discovers
    }

    /// Builds pool `name` from its config around `live` (new, or the one of the pool it
    /// replaces). It serves no backend until [`Pool::set_members`].
    pub fn build(name: &str, conf: &Upstream, live: Arc<PoolLive>) -> Result<Pool, StartError> {
        let backends = Backends::new(Box::new(Discovery(Arc::clone(&live.membership))));
        let health = conf
            .health_check
            .as_ref()
            .map(|hc| Check::build(name, hc))
            .transpose()?;
        let peers = PeerTemplate::new(name, conf).map_err(|message| StartError::Pool {
            pool: name.to_string(),
            message: format!("tls.ca_file: {message}"),
        })?;
        Ok(Pool {
            name: name.to_string(),
            algorithm: conf.algorithm,
            balancer: selection::build(conf.algorithm, backends, Arc::clone(&live.states)),
            live,
            key: key_source(conf),
            retries: conf.retries,
            peers,
            outliers: Outliers::new(&conf.outlier_detection),
            retry_window: RetryWindow::new(&conf.retry_budget),
            spread: AtomicU64::new(0),
            health,
            queue_size: conf.queue_size,
            queue_timeout: conf.queue_timeout.0,
            sticky: (conf.algorithm == Algorithm::Sticky).then(|| conf.sticky.clone()),
            discovers: conf.discovery.is_some(),
            max_connections: conf.max_connections,
            ewma_decay: conf.ewma_decay.0,
        })
    }

    /// Pool `name` with the members of its file, as at a start without runtime changes (the
    /// pools of the unit tests and of `benches/per_request.rs`).
    pub fn from_config(name: &str, conf: &Upstream) -> Result<Pool, StartError> {
        let pool = Pool::build(name, conf, PoolLive::new(name))?;
        pool.set_members(&config_members(conf));
        Ok(pool)
    }

    /// Makes `members` (in this order) the pool's membership, at once: backends that stay keep
    /// their live state (in flight, latency, health, counters) with the new settings; new ones
    /// start healthy; removed ones finish the requests they have. The next pick sees the change.
    pub fn set_members(&self, members: &[Member]) {
        let _serial = self.live.updating.lock().unwrap_or_else(|p| p.into_inner());
        let states = members.iter().enumerate().map(|(order, member)| {
            let state = self.live.states.get(&member.addr);
            if let Some(state) = &state {
                state.configure(member, order);
            }
            state.unwrap_or_else(|| {
                let freed = Arc::clone(&self.live.freed);
                Arc::new(BackendState::new(member, order, self.ewma_decay, freed))
            })
        });
        let next: Vec<Arc<BackendState>> = states.collect();
        // Until the balancer has the new membership it may still pick a member that leaves:
        // their states stay until then, so that such a pick finds its backend rather than
        // failing the request (503) in the switch.
        let leaving = self
            .live
            .states
            .all()
            .into_iter()
            .filter(|s| !next.iter().any(|n| n.addr == s.addr));
        self.live.states.replace(next.iter().cloned().chain(leaving));
        let set = members.iter().map(|m| backend(m.addr, m.weight as usize)).collect();
        self.live.membership.0.store(Arc::new(set));
        // Our discovery never waits nor fails, so the update completes in this poll.
        match self.balancer.update().now_or_never() {
            Some(Ok(())) => {}
            Some(Err(e)) => error!("pool {}: updating the balancer failed: {e}", self.name),
            None => error!("pool {}: the balancer update did not complete", self.name),
        }
        self.live.states.replace(next);
        // Wake queued requests: a new or readied backend may have room.
        self.live.freed.notify_waiters();
    }

    /// The part that outlives a reload.
    pub fn live(&self) -> &Arc<PoolLive> {
        &self.live
    }

    /// Counters and histograms.
    pub fn stats(&self) -> &PoolStats {
        &self.live.stats
    }

    /// The cap of members that have none of their own.
    pub fn default_max_connections(&self) -> Option<usize> {
        self.max_connections
    }

    /// The active health check, when the pool has one.
    pub fn health(&self) -> Option<&Check> {
        self.health.as_ref()
    }

    /// Whether a health round should start now: due (or `force`), and none running. If so, the
    /// caller runs it and then calls [`Pool::checked`]; the next one is due an interval later.
    pub fn begin_check(&self, force: bool) -> bool {
        let Some(check) = &self.health else { return false };
        let now = mono_ms();
        let due = force || now >= self.live.next_check.load(Ordering::Relaxed);
        if !due || self.live.checking.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.live
            .next_check
            .store(now + check.interval.as_millis() as u64, Ordering::Relaxed);
        true
    }

    /// A health round has ended.
    pub fn checked(&self) {
        self.live.checking.store(false, Ordering::Release);
    }

    /// The balancer.
    pub fn balancer(&self) -> &Arc<dyn Balancer> {
        &self.balancer
    }

    /// The members' live state.
    pub fn states(&self) -> &States {
        &self.live.states
    }

    /// Requests waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.live.waiting.load(Ordering::Relaxed)
    }

    /// The selection key of `req` from `client`.
    pub fn key<'a>(&self, req: &'a RequestHeader, client: Option<IpAddr>) -> Key<'a> {
        match &self.key {
            KeySource::None => Key::Bytes(b""),
            KeySource::Sticky(cookie) => key::extract(cookie, req, client).unwrap_or(Key::Bytes(b"")),
            KeySource::Hash(source) => key::extract(source, req, client)
                .unwrap_or_else(|| Key::inline(&self.spread.fetch_add(1, Ordering::Relaxed).to_le_bytes())),
        }
    }

    /// A usable backend with room for `key`, not in `tried` if possible; when every backend is
    /// at `max_connections`, waits in the queue (bounded in size and time).
    pub async fn pick(&self, key: &[u8], tried: &[SocketAddr]) -> Result<Picked, Refused> {
        let picked = self.pick_or_wait(key, tried).await;
        if let Err(refused) = &picked {
            self.live.stats.refused(*refused as usize);
        }
        picked
    }

    async fn pick_or_wait(&self, key: &[u8], tried: &[SocketAddr]) -> Result<Picked, Refused> {
        match self.try_pick(key, tried) {
            Ok(picked) => return Ok(picked),
            Err(Shortage::NoneReady) => return Err(Refused::NoneReady),
            Err(Shortage::Full) => {}
        }
        let _waiting = QueueSlot::take(&self.live.waiting, self.queue_size).ok_or(Refused::QueueFull)?;
        let deadline = tokio::time::Instant::now() + self.queue_timeout;
        loop {
            let freed = self.live.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.try_pick(key, tried) {
                Ok(picked) => return Ok(picked),
                Err(Shortage::NoneReady) => return Err(Refused::NoneReady),
                Err(Shortage::Full) => {}
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(Refused::QueueTimeout);
            }
        }
    }

    /// What `refused` means for this pool now, for the log: for [`Refused::NoneReady`], why
    /// no member is usable (`no usable backend: 2 unhealthy, 1 in maint`).
    pub fn refusal(&self, refused: Refused) -> String {
        if refused != Refused::NoneReady {
            return refused.to_string();
        }
        let states = self.live.states.all();
        if states.is_empty() {
            return format!("{refused}: the pool has no members");
        }
        // unhealthy, ejected (passive health), draining, in maint; an operator's state first.
        let mut counts = [0usize; 4];
        for s in &states {
            let slot = match s.admin() {
                AdminState::Maint => 3,
                AdminState::Drain => 2,
                AdminState::Ready if !s.healthy() => 0,
                AdminState::Ready if s.ejected() => 1,
                AdminState::Ready => continue,
            };
            counts[slot] += 1;
        }
        let words = ["unhealthy", "ejected", "draining", "in maint"];
        let parts: Vec<String> = counts
            .iter()
            .zip(words)
            .filter(|(n, _)| **n > 0)
            .map(|(n, word)| format!("{n} {word}"))
            .collect();
        format!("{refused}: {}", parts.join(", "))
    }

    /// [`Pool::pick`] without waiting: `None` when nothing is usable or free right now (the
    /// selection cost `benches/per_request.rs` measures, without a queue's future).
    pub fn pick_now(&self, key: &[u8], tried: &[SocketAddr]) -> Option<Picked> {
        self.try_pick(key, tried).ok()
    }

    fn try_pick(&self, key: &[u8], tried: &[SocketAddr]) -> Result<Picked, Shortage> {
        let pinned = match self.key {
            KeySource::Sticky(_) => parse_cookie(key),
            _ => None,
        };
        let untried = |b: &Backend| !tried.contains(&b.addr);
        if let Some(picked) = self.take_slot(key, pinned, &untried) {
            return Ok(picked);
        }
        // Every usable backend was tried: a reused connection may have failed where a new one
        // would not, so any of them will do.
        if !tried.is_empty() {
            if let Some(picked) = self.take_slot(key, pinned, &|_| true) {
                return Ok(picked);
            }
        }
        let iterations = selection::max_iterations(self.live.states.len());
        let usable = |b: &Backend, ready: bool| ready && self.usable(b, pinned);
        Err(match self.balancer.select(key, iterations, &usable) {
            Some(_) => Shortage::Full,
            None => Shortage::NoneReady,
        })
    }

    /// Whether some member may take a new request now (healthy, not ejected, ready), full or
    /// not: a split passes over a side without one.
    pub fn has_usable(&self) -> bool {
        self.live.states.any(|s| s.usable(|| false))
    }

    /// Whether `b` may take a new request whose sticky cookie names `pinned`.
    fn usable(&self, b: &Backend, pinned: Option<u64>) -> bool {
        let Some(addr) = b.addr.as_inet() else { return false };
        let pinned_here = || pinned.is_some_and(|id| id == sticky_id(&self.name, addr));
        self.live.states.with(addr, |s| s.usable(pinned_here)).unwrap_or(false)
    }

    /// The first backend along the algorithm's order that is usable, passes `wanted` and has a
    /// free slot, with that slot taken.
    fn take_slot(&self, key: &[u8], pinned: Option<u64>, wanted: &dyn Fn(&Backend) -> bool) -> Option<Picked> {
        let lease = RefCell::new(None);
        let accept = |b: &Backend, ready: bool| {
            ready && wanted(b) && self.usable(b, pinned) && self.lease(b).map(|l| lease.replace(Some(l))).is_some()
        };
        let iterations = selection::max_iterations(self.live.states.len());
        let backend = self.balancer.select(key, iterations, &accept)?;
        Some(Picked {
            backend,
            lease: lease.into_inner()?,
        })
    }

    fn lease(&self, backend: &Backend) -> Option<Lease> {
        self.live.states.with(backend.addr.as_inet()?, |s| s.try_acquire())?
    }

    /// The peer to connect to for `backend`, with this pool's timeouts and TLS; `upgrade`: the
    /// request asks for a protocol upgrade; `left`: what remains of the total deadline.
    pub fn peer(&self, backend: &Backend, upgrade: bool, left: Option<Duration>) -> Option<Box<HttpPeer>> {
        Some(self.peers.peer(*backend.addr.as_inet()?, upgrade, left))
    }

    /// The total deadline of a request's attempts, when the pool has one.
    pub fn total_timeout(&self) -> Option<Duration> {
        self.peers.total
    }

    /// The idle timeout of upgraded connections (WebSockets...).
    pub fn tunnel_timeout(&self) -> Duration {
        self.peers.tunnel()
    }

    /// Whether the backends are reached over plaintext HTTP/1.1.
    pub fn plain_http1(&self) -> bool {
        self.peers.plain_http1()
    }

    /// Whether the backends are reached over TLS.
    pub fn backend_tls(&self) -> bool {
        self.peers.tls()
    }

    /// Counts a failed attempt on `state` (passive health may eject it).
    pub fn attempt_failed(&self, state: &BackendState) {
        self.outliers
            .failed(&self.name, &self.live.states, state, self.health.is_some());
    }

    /// Counts a successful attempt on `state`.
    pub fn attempt_succeeded(&self, state: &BackendState) {
        state.attempt_succeeded();
    }

    /// Counts a new request for the retry budget.
    pub fn count_request(&self) {
        self.retry_window.request();
    }

    /// Whether the retry budget allows one more retry (counted if so).
    pub fn try_retry(&self) -> bool {
        self.retry_window.try_retry()
    }

    /// For `sticky`: the `Set-Cookie` value pinning the client to `state`'s backend, unless
    /// the request already carries exactly that.
    pub fn sticky_cookie(&self, req: &RequestHeader, state: &BackendState) -> Option<String> {
        let sticky = self.sticky.as_ref()?;
        let id = sticky_id(&self.name, &state.addr);
        let sent = parse_cookie(self.key(req, None).as_bytes());
        (sent != Some(id)).then(|| set_cookie(sticky, &cookie_value(id)))
    }
}

/// The members a pool's file lists, in order, ready.
pub fn config_members(conf: &Upstream) -> Vec<Member> {
    conf.backends
        .iter()
        .map(|b| Member {
            max_connections: conf.max_connections_of(b),
            source: b.source,
            ..Member::new(b.address.0, b.weight)
        })
        .collect()
}

/// The `Set-Cookie` header value for `value`.
fn set_cookie(sticky: &StickyConf, value: &str) -> String {
    let mut cookie = format!("{}={value}; Path={}", sticky.cookie, sticky.path);
    if let Some(ttl) = sticky.ttl {
        cookie.push_str(&format!("; Max-Age={}", ttl.0.as_secs()));
    }
    if let Some(same_site) = sticky.same_site {
        cookie.push_str(&format!("; SameSite={same_site:?}"));
    }
    if sticky.secure {
        cookie.push_str("; Secure");
    }
    if sticky.http_only {
        cookie.push_str("; HttpOnly");
    }
    cookie
}

/// A place in the queue, given back on drop.
struct QueueSlot<'a>(&'a AtomicUsize);

impl<'a> QueueSlot<'a> {
    fn take(waiting: &'a AtomicUsize, size: usize) -> Option<Self> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < size).then_some(n + 1))
            .ok()
            .map(|_| QueueSlot(waiting))
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The Pingora backend for `addr` (as the pools' membership holds it).
pub fn backend(addr: std::net::SocketAddr, weight: usize) -> Backend {
    Backend {
        addr: SocketAddr::Inet(addr),
        weight,
        ext: Extensions::new(),
    }
}

fn key_source(conf: &Upstream) -> KeySource {
    match (conf.algorithm, &conf.hash_key) {
        (Algorithm::Sticky, _) => KeySource::Sticky(HashKey::Cookie(conf.sticky.cookie.clone())),
        (a, Some(key)) if a.needs_key() => KeySource::Hash(key.clone()),
        _ => KeySource::None,
    }
}

#[cfg(test)]
mod tests;
