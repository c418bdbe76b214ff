//! Sticky round robin: a new client is placed by smooth round robin, then a cookie naming its
//! backend (by an opaque id, not its address) brings it back there while that backend is
//! usable. The cookie is read and written by the proxy; this maps its value to a backend.

use super::load::States;
use super::round_robin::{SmoothIter, SmoothRoundRobin};
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::Backend;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

/// The cookie value that pins a client to `addr` in pool `pool`: 16 hex digits of a keyed
/// SipHash, the same in every process (so upgrades keep clients where they are).
pub fn cookie_value(pool: &str, addr: &SocketAddr) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ("lb-sticky", pool, addr).hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Round robin plus a map from cookie values to backends.
pub struct Sticky {
    rr: Arc<SmoothRoundRobin>,
    pinned: HashMap<String, Backend>,
}

impl BackendSelection for Sticky {
    type Iter = StickyIter;
    type Config = Arc<States>;

    fn build(backends: &BTreeSet<Backend>) -> Self {
        Self::build_with_config(backends, &Arc::default())
    }

    fn build_with_config(backends: &BTreeSet<Backend>, states: &Arc<States>) -> Self {
        let pinned = backends
            .iter()
            .filter_map(|b| Some((cookie_value(states.pool(), b.addr.as_inet()?), b.clone())))
            .collect();
        Sticky {
            rr: Arc::new(SmoothRoundRobin::build(backends)),
            pinned,
        }
    }

    /// `key` is the cookie's value ("" without a cookie).
    fn iter(self: &Arc<Self>, key: &[u8]) -> StickyIter {
        let pinned = std::str::from_utf8(key).ok().and_then(|k| self.pinned.get(k)).is_some();
        StickyIter {
            key: if pinned {
                String::from_utf8_lossy(key).into_owned()
            } else {
                String::new()
            },
            sticky: Arc::clone(self),
            rr: self.rr.iter(b""),
            gave_pinned: !pinned,
        }
    }
}

/// The pinned backend, if any, then round robin.
pub struct StickyIter {
    sticky: Arc<Sticky>,
    key: String,
    rr: SmoothIter,
    gave_pinned: bool,
}

impl BackendIter for StickyIter {
    fn next(&mut self) -> Option<&Backend> {
        if !self.gave_pinned {
            self.gave_pinned = true;
            return self.sticky.pinned.get(&self.key);
        }
        self.rr.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_values_are_stable_and_opaque() {
        let addr: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let v = cookie_value("web", &addr);
        assert_eq!(v, cookie_value("web", &addr));
        assert_ne!(v, cookie_value("api", &addr));
        assert_eq!(v.len(), 16);
        assert!(!v.contains("9001") && !v.contains("127"));
    }
}
