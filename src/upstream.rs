//! A running pool: its balancer, its backends' live state, where its selection key comes from,
//! its retry budget, its bounded wait queue and the connection options of its peers. Routing to
//! a pool and the request hooks are `proxy`'s; the algorithms are `selection`'s.

use crate::config::{Algorithm, HashKey, StickyConf, Upstream};
use crate::error::StartError;
use crate::health;
use crate::key::{self, Key};
use crate::metrics::StatusCounts;
use crate::selection::load::{BackendState, Lease, States};
use crate::selection::{self, cookie_value, parse_cookie, sticky_id, Balancer};
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::upstreams::peer::{HttpPeer, PeerOptions};
use pingora_http::RequestHeader;
use pingora_load_balancing::discovery::Static;
use pingora_load_balancing::{Backend, Backends, Extensions};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Where a pool's selection key comes from.
enum KeySource {
    /// Not keyed.
    None,
    /// A hash key; requests without it are spread round-robin-like (as HAProxy does).
    Hash(HashKey),
    /// The sticky cookie; without it, plain round robin.
    Sticky(HashKey),
}

/// Requests waiting for a free slot.
struct Queue {
    size: usize,
    timeout: Duration,
    waiting: AtomicUsize,
    /// Woken by every [`Lease`] given back.
    freed: Arc<Notify>,
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
    /// Every backend is down or ejected.
    #[error("no healthy backend")]
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
    states: Arc<States>,
    key: KeySource,
    /// Further attempts after a failed connect.
    pub retries: usize,
    options: PeerOptions,
    max_iterations: usize,
    spread: AtomicU64,
    /// Time between health checks, when checks are on.
    pub health_interval: Option<Duration>,
    /// Set until the first round of health checks is done (see `health::pool_check`).
    warming: Arc<AtomicBool>,
    queue: Queue,
    sticky: Option<StickyConf>,
    /// 503s without a backend: none ready, queue full, queue timeout.
    refused: [AtomicU64; 3],
    /// Responses sent, by status class.
    pub responses: StatusCounts,
}

impl Pool {
    /// Builds pool `name` from its config. Its balancer is empty until its first `update()`.
    pub fn build(name: &str, conf: &Upstream) -> Result<Pool, StartError> {
        let freed = Arc::new(Notify::new());
        let states = Arc::new(States::new(name, backend_states(conf, &freed)));
        let set: BTreeSet<Backend> = conf
            .backends
            .iter()
            .map(|b| backend(b.address.0, b.weight as usize))
            .collect();
        let count = set.len();
        let mut backends = Backends::new(Static::new(set));
        let warming = Arc::new(AtomicBool::new(true));
        if let Some(hc) = &conf.health_check {
            backends.set_health_check(health::pool_check(name, hc, Arc::clone(&warming))?);
        }
        Ok(Pool {
            name: name.to_string(),
            algorithm: conf.algorithm,
            balancer: selection::build(conf.algorithm, backends, Arc::clone(&states)),
            states,
            key: key_source(conf),
            retries: conf.retries,
            options: peer_options(conf),
            max_iterations: selection::max_iterations(count),
            spread: AtomicU64::new(0),
            health_interval: conf.health_check.as_ref().map(|hc| hc.interval.0),
            warming,
            queue: Queue {
                size: conf.queue_size,
                timeout: conf.queue_timeout.0,
                waiting: AtomicUsize::new(0),
                freed,
            },
            sticky: (conf.algorithm == Algorithm::Sticky).then(|| conf.sticky.clone()),
            refused: Default::default(),
            responses: StatusCounts::default(),
        })
    }

    /// 503s without a backend so far, by reason.
    pub fn refusals(&self) -> [(&'static str, u64); 3] {
        let n = |i: usize| self.refused[i].load(Ordering::Relaxed);
        [("none_ready", n(0)), ("queue_full", n(1)), ("queue_timeout", n(2))]
    }

    /// The balancer, for the background service that updates and checks it.
    pub fn balancer(&self) -> &Arc<dyn Balancer> {
        &self.balancer
    }

    /// The backends' live state.
    pub fn states(&self) -> &States {
        &self.states
    }

    /// Requests waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.queue.waiting.load(Ordering::Relaxed)
    }

    /// Ends the strict first round: from now on the configured thresholds apply.
    pub fn warmed_up(&self) {
        self.warming.store(false, Ordering::Relaxed);
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

    /// A ready backend with room for `key`, not in `tried` if possible; when every backend is
    /// at `max_connections`, waits in the queue (bounded in size and time).
    pub async fn pick(&self, key: &[u8], tried: &[SocketAddr]) -> Result<Picked, Refused> {
        let picked = self.pick_or_wait(key, tried).await;
        if let Err(refused) = &picked {
            self.refused[*refused as usize].fetch_add(1, Ordering::Relaxed);
        }
        picked
    }

    async fn pick_or_wait(&self, key: &[u8], tried: &[SocketAddr]) -> Result<Picked, Refused> {
        match self.try_pick(key, tried) {
            Ok(picked) => return Ok(picked),
            Err(Shortage::NoneReady) => return Err(Refused::NoneReady),
            Err(Shortage::Full) => {}
        }
        let _waiting = QueueSlot::take(&self.queue).ok_or(Refused::QueueFull)?;
        let deadline = tokio::time::Instant::now() + self.queue.timeout;
        loop {
            let freed = self.queue.freed.notified();
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

    /// [`Pool::pick`] without waiting: `None` when nothing is ready or free right now.
    pub fn pick_now(&self, key: &[u8], tried: &[SocketAddr]) -> Option<Picked> {
        self.try_pick(key, tried).ok()
    }

    fn try_pick(&self, key: &[u8], tried: &[SocketAddr]) -> Result<Picked, Shortage> {
        let untried = |b: &Backend| !tried.contains(&b.addr);
        if let Some(picked) = self.take_slot(key, &untried) {
            return Ok(picked);
        }
        // Every ready backend was tried: a reused connection may have failed where a new one
        // would not, so any of them will do.
        if !tried.is_empty() {
            if let Some(picked) = self.take_slot(key, &|_| true) {
                return Ok(picked);
            }
        }
        let any_ready = self.balancer.select(key, self.max_iterations, &|_, ready| ready);
        Err(if any_ready.is_some() {
            Shortage::Full
        } else {
            Shortage::NoneReady
        })
    }

    /// The first backend along the algorithm's order that is ready, passes `wanted` and has a
    /// free slot, with that slot taken.
    fn take_slot(&self, key: &[u8], wanted: &dyn Fn(&Backend) -> bool) -> Option<Picked> {
        let lease = RefCell::new(None);
        let accept =
            |b: &Backend, ready: bool| ready && wanted(b) && self.lease(b).map(|l| lease.replace(Some(l))).is_some();
        let backend = self.balancer.select(key, self.max_iterations, &accept)?;
        Some(Picked {
            backend,
            lease: lease.into_inner()?,
        })
    }

    fn lease(&self, backend: &Backend) -> Option<Lease> {
        self.states.get(backend.addr.as_inet()?)?.try_acquire()
    }

    /// The peer to connect to for `backend`, with this pool's timeouts.
    pub fn peer(&self, backend: &Backend) -> Option<Box<HttpPeer>> {
        let addr = *backend.addr.as_inet()?;
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options = self.options.clone();
        Some(Box::new(peer))
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
    fn take(queue: &'a Queue) -> Option<Self> {
        queue
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < queue.size).then_some(n + 1)
            })
            .ok()
            .map(|_| QueueSlot(&queue.waiting))
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

fn backend_states(conf: &Upstream, freed: &Arc<Notify>) -> Vec<Arc<BackendState>> {
    conf.backends
        .iter()
        .enumerate()
        .map(|(order, b)| {
            let max = conf.max_connections_of(b);
            let weight = b.weight as usize;
            Arc::new(BackendState::new(
                b.address.0,
                weight,
                order,
                max,
                conf.ewma_decay.0,
                Arc::clone(freed),
            ))
        })
        .collect()
}

fn key_source(conf: &Upstream) -> KeySource {
    match (conf.algorithm, &conf.hash_key) {
        (Algorithm::Sticky, _) => KeySource::Sticky(HashKey::Cookie(conf.sticky.cookie.clone())),
        (a, Some(key)) if a.needs_key() => KeySource::Hash(key.clone()),
        _ => KeySource::None,
    }
}

fn peer_options(conf: &Upstream) -> PeerOptions {
    let t = &conf.timeouts;
    let mut options = PeerOptions::new();
    options.connection_timeout = Some(t.connect.0);
    options.read_timeout = Some(t.read.0);
    options.write_timeout = Some(t.write.0);
    options.idle_timeout = Some(t.idle.0);
    options
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendConf, Dur, SameSite};

    fn sticky_pool() -> Pool {
        let backends = (1..=3)
            .map(|i| BackendConf {
                address: crate::config::Addr(format!("127.0.0.{i}:80").parse().unwrap()),
                weight: 1,
                max_connections: None,
            })
            .collect();
        let mut conf = Upstream::new(backends);
        conf.algorithm = Algorithm::Sticky;
        let pool = Pool::build("web", &conf).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(pool.balancer().update()).unwrap();
        pool
    }

    fn request_with_cookie(cookie: Option<&str>) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        if let Some(c) = cookie {
            req.append_header("cookie", format!("lb_sticky={c}")).unwrap();
        }
        req
    }

    #[test]
    fn a_drained_sticky_backend_loses_its_clients_once() {
        let pool = sticky_pool();
        let first = pool
            .pick_now(pool.key(&request_with_cookie(None), None).as_bytes(), &[])
            .unwrap();
        let pinned = cookie_value(sticky_id("web", &first.lease.state().addr));
        drop(first);
        let req = request_with_cookie(Some(&pinned));
        for _ in 0..5 {
            let again = pool.pick_now(pool.key(&req, None).as_bytes(), &[]).unwrap();
            assert_eq!(cookie_value(sticky_id("web", &again.lease.state().addr)), pinned);
            assert!(
                pool.sticky_cookie(&req, again.lease.state()).is_none(),
                "no new cookie while pinned"
            );
        }
        // Drain it (what an admin drain does: Pingora's enablement flag).
        let drained = backend(first_addr(&pool, &pinned), 1);
        pool.balancer().backends().set_enable(&drained, false);
        let moved = pool.pick_now(pool.key(&req, None).as_bytes(), &[]).unwrap();
        let new_value = cookie_value(sticky_id("web", &moved.lease.state().addr));
        assert_ne!(new_value, pinned);
        let set = pool
            .sticky_cookie(&req, moved.lease.state())
            .expect("the cookie is updated");
        assert!(set.starts_with(&format!("lb_sticky={new_value};")), "{set}");
    }

    fn first_addr(pool: &Pool, value: &str) -> std::net::SocketAddr {
        pool.states()
            .all()
            .iter()
            .map(|s| s.addr)
            .find(|a| cookie_value(sticky_id("web", a)) == value)
            .unwrap()
    }

    #[test]
    fn set_cookie_carries_the_configured_attributes() {
        let mut sticky = StickyConf::default();
        assert_eq!(
            set_cookie(&sticky, "abc"),
            "lb_sticky=abc; Path=/; SameSite=Lax; HttpOnly"
        );
        sticky.ttl = Some(Dur(Duration::from_secs(3600)));
        sticky.secure = true;
        sticky.http_only = false;
        sticky.same_site = Some(SameSite::Strict);
        assert_eq!(
            set_cookie(&sticky, "abc"),
            "lb_sticky=abc; Path=/; Max-Age=3600; SameSite=Strict; Secure"
        );
    }
}
