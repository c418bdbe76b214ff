//! Compression counters: responses compressed and bytes into and out of the compressors, by route
//! and encoding. They live
//! for the process, keyed by route name, so that a reload (which rebuilds the routes) does not
//! reset them; routes without a name count together under the empty name.

use crate::config::Encoding;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The encodings in the counters' order.
pub const ENCODINGS: [Encoding; 3] = [Encoding::Zstd, Encoding::Br, Encoding::Gzip];

/// One route's counters, per encoding: responses compressed, bytes in (the body as the backend
/// sent it) and out (compressed).
#[derive(Debug, Default)]
pub struct Counters {
    responses: [AtomicU64; 3],
    bytes_in: [AtomicU64; 3],
    bytes_out: [AtomicU64; 3],
}

fn index(encoding: Encoding) -> usize {
    match encoding {
        Encoding::Zstd => 0,
        Encoding::Br => 1,
        Encoding::Gzip => 2,
    }
}

impl Counters {
    /// Counts a response compressed with `encoding`.
    pub fn started(&self, encoding: Encoding) {
        self.responses[index(encoding)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `input` bytes compressed into `output` bytes with `encoding`.
    pub fn add(&self, encoding: Encoding, input: usize, output: usize) {
        let i = index(encoding);
        self.bytes_in[i].fetch_add(input as u64, Ordering::Relaxed);
        self.bytes_out[i].fetch_add(output as u64, Ordering::Relaxed);
    }

    /// Responses, bytes in and bytes out so far with `encoding`.
    pub fn read(&self, encoding: Encoding) -> (u64, u64, u64) {
        let i = index(encoding);
        (
            self.responses[i].load(Ordering::Relaxed),
            self.bytes_in[i].load(Ordering::Relaxed),
            self.bytes_out[i].load(Ordering::Relaxed),
        )
    }
}

/// Every route's counters by name, in the order first seen.
static ROUTES: Mutex<Vec<(Arc<str>, Arc<Counters>)>> = Mutex::new(Vec::new());

/// The counters of route `name` (`""`: routes without a name), made on first use.
pub fn counters(name: &str) -> Arc<Counters> {
    let mut routes = ROUTES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, c)) = routes.iter().find(|(n, _)| &**n == name) {
        return Arc::clone(c);
    }
    let c = Arc::new(Counters::default());
    routes.push((Arc::from(name), Arc::clone(&c)));
    c
}

/// Every route's counters so far, for the metrics.
pub fn all() -> Vec<(Arc<str>, Arc<Counters>)> {
    ROUTES.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
