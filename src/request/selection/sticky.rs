//! Sticky round robin: a new client is placed by smooth round robin, then a cookie naming its
//! backend (by an opaque id, not its address) brings it back there while that backend is
//! usable. The cookie is read and written by the proxy; this maps its value to a backend.

use super::load::States;
use super::round_robin::{SmoothIter, SmoothRoundRobin};
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::Backend;
use std::collections::{BTreeSet, HashMap};
use std::hash::Hasher;
use std::net::SocketAddr;
use std::sync::Arc;

/// The id that pins a client to `addr` in pool `pool`: a 64-bit FNV-1a hash of both, the same
/// in every process and every build (so an upgrade keeps clients where they are).
pub fn sticky_id(pool: &str, addr: &SocketAddr) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(b"lb-sticky\0");
    h.write(pool.as_bytes());
    h.write(b"\0");
    match addr.ip() {
        std::net::IpAddr::V4(ip) => h.write(&ip.octets()),
        std::net::IpAddr::V6(ip) => h.write(&ip.octets()),
    }
    h.write(&addr.port().to_be_bytes());
    h.finish()
}

/// The cookie value for `id`: 16 lower-case hex digits.
pub fn cookie_value(id: u64) -> String {
    format!("{id:016x}")
}

/// The id in a cookie value, if it is one ([`cookie_value`]'s form).
pub fn parse_cookie(value: &[u8]) -> Option<u64> {
    let digits = std::str::from_utf8(value).ok()?;
    let hex = digits.len() == 16 && digits.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    hex.then(|| u64::from_str_radix(digits, 16).ok()).flatten()
}

/// Round robin plus a map from sticky ids to backends.
pub struct Sticky {
    rr: Arc<SmoothRoundRobin>,
    pinned: HashMap<u64, Backend>,
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
            .filter_map(|b| Some((sticky_id(states.pool(), b.addr.as_inet()?), b.clone())))
            .collect();
        Sticky {
            rr: Arc::new(SmoothRoundRobin::build(backends)),
            pinned,
        }
    }

    /// `key` is the cookie's value ("" without a cookie).
    fn iter(self: &Arc<Self>, key: &[u8]) -> StickyIter {
        StickyIter {
            sticky: Arc::clone(self),
            pinned: parse_cookie(key),
            rr: self.rr.iter(b""),
        }
    }
}

/// The pinned backend, if any, then round robin.
pub struct StickyIter {
    sticky: Arc<Sticky>,
    /// The cookie's id, until its backend has been offered.
    pinned: Option<u64>,
    rr: SmoothIter,
}

impl BackendIter for StickyIter {
    fn next(&mut self) -> Option<&Backend> {
        if let Some(backend) = self.pinned.take().and_then(|id| self.sticky.pinned.get(&id)) {
            return Some(backend);
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
        let v = cookie_value(sticky_id("web", &addr));
        assert_eq!(v, cookie_value(sticky_id("web", &addr)));
        assert_ne!(v, cookie_value(sticky_id("api", &addr)));
        assert_eq!(v.len(), 16);
        assert!(!v.contains("9001") && !v.contains("127"));
        // Fixed by the algorithm, not by the Rust version that built lb.
        assert_eq!(v, "b7134bb097876235");
    }

    #[test]
    fn only_cookie_shaped_values_parse() {
        assert_eq!(parse_cookie(cookie_value(42).as_bytes()), Some(42));
        for bad in [
            "",
            "2a",
            "+00000000000002a",
            "000000000000002A",
            "00000000000000zz",
            "0000000000000002a",
        ] {
            assert_eq!(parse_cookie(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
