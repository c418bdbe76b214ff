//! A running pool: its balancer, where its hash key comes from, its retry budget and the
//! connection options of its peers. Routing to a pool and the request hooks are `proxy`'s.

use crate::config::{HashKey, Upstream};
use crate::error::StartError;
use crate::health;
use crate::key;
use crate::selection::{self, Balancer};
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::upstreams::peer::{HttpPeer, PeerOptions};
use pingora_http::RequestHeader;
use pingora_load_balancing::discovery::Static;
use pingora_load_balancing::{Backend, Backends, Extensions};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One upstream pool, shared by all requests routed to it.
pub struct Pool {
    /// The pool's name in the config.
    pub name: String,
    balancer: Arc<dyn Balancer>,
    hash_key: Option<HashKey>,
    /// Further attempts after a failed connect.
    pub retries: usize,
    options: PeerOptions,
    max_iterations: usize,
    /// Stands in for a missing hash key, spreading such requests like round robin (as HAProxy).
    spread: AtomicU64,
    /// Time between health checks, when checks are on.
    pub health_interval: Option<Duration>,
    /// Set until the first round of health checks is done (see `health::pool_check`).
    warming: Arc<AtomicBool>,
}

impl Pool {
    /// Builds pool `name` from its config. Its balancer is empty until its first `update()`.
    pub fn build(name: &str, conf: &Upstream) -> Result<Pool, StartError> {
        let set: BTreeSet<Backend> = conf
            .backends
            .iter()
            .map(|b| Backend {
                addr: SocketAddr::Inet(b.address.0),
                weight: b.weight as usize,
                ext: Extensions::new(),
            })
            .collect();
        let count = set.len();
        let mut backends = Backends::new(Static::new(set));
        let warming = Arc::new(AtomicBool::new(true));
        if let Some(hc) = &conf.health_check {
            backends.set_health_check(health::pool_check(name, hc, Arc::clone(&warming))?);
        }
        Ok(Pool {
            name: name.to_string(),
            balancer: selection::build(conf.algorithm, backends),
            hash_key: conf.algorithm.needs_key().then(|| conf.hash_key.clone()).flatten(),
            retries: conf.retries,
            options: peer_options(conf),
            max_iterations: selection::max_iterations(count),
            spread: AtomicU64::new(0),
            health_interval: conf.health_check.as_ref().map(|hc| hc.interval.0),
            warming,
        })
    }

    /// Ends the strict first round: from now on the configured thresholds apply.
    pub fn warmed_up(&self) {
        self.warming.store(false, Ordering::Relaxed);
    }

    /// The balancer, for the background service that updates and checks it.
    pub fn balancer(&self) -> &Arc<dyn Balancer> {
        &self.balancer
    }

    /// A ready backend for `req` that is not in `tried`; when every ready backend was tried,
    /// any ready one (a reused connection may have failed where a new one would not).
    pub fn select(&self, req: &RequestHeader, client: Option<IpAddr>, tried: &[SocketAddr]) -> Option<Backend> {
        let extracted = self.hash_key.as_ref().map(|source| key::extract(source, req, client));
        let spread;
        let key: &[u8] = match &extracted {
            None => b"",
            Some(Some(key)) => key.as_bytes(),
            Some(None) => {
                spread = self.spread.fetch_add(1, Ordering::Relaxed).to_le_bytes();
                &spread
            }
        };
        let untried = |b: &Backend, ready: bool| ready && !tried.contains(&b.addr);
        self.balancer
            .select(key, self.max_iterations, &untried)
            .or_else(|| {
                (!tried.is_empty())
                    .then(|| self.balancer.select(key, self.max_iterations, &|_, ready| ready))
                    .flatten()
            })
    }

    /// The peer to connect to for `backend`, with this pool's timeouts.
    pub fn peer(&self, backend: &Backend) -> Option<Box<HttpPeer>> {
        let addr = *backend.addr.as_inet()?;
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options = self.options.clone();
        Some(Box::new(peer))
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
