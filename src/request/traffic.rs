//! The process's traffic as the request path sees it: requests in flight (counted by a guard
//! each request holds) and whether client connections are being drained (an upgrade or stop
//! began, so responses close their connection). Who starts draining is the process's business.

use log::info;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// In-flight requests and the draining flag, shared by the proxy and the process.
#[derive(Default)]
pub struct Traffic {
    inflight: AtomicUsize,
    draining: AtomicBool,
}

/// Counts one request as in flight until dropped (also on errors and client aborts).
pub struct InflightGuard(Arc<Traffic>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Release);
    }
}

impl Traffic {
    #[cfg(test)]
    /// A fresh state, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Traffic::default())
    }

    /// Marks a request in flight.
    pub fn enter(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        InflightGuard(Arc::clone(self))
    }

    /// Requests in flight now.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    /// Whether responses should close the client connection (an upgrade or stop has begun), so
    /// clients reconnect — to the new process — instead of reusing a connection about to close.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Starts draining (once; later calls do nothing), logging `why`.
    pub fn start_draining(&self, why: &str) {
        if !self.draining.swap(true, Ordering::Relaxed) {
            info!("{why}: closing client connections after their current request");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_requests_in_flight() {
        let traffic = Traffic::new();
        let a = traffic.enter();
        let b = traffic.enter();
        assert_eq!(traffic.inflight(), 2);
        drop(a);
        drop(b);
        assert_eq!(traffic.inflight(), 0);
        assert!(!traffic.draining());
        traffic.start_draining("test");
        assert!(traffic.draining());
    }
}
