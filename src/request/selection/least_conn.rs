//! Least connections: the backend with the fewest requests in flight per unit of weight. A full
//! scan (O(n)), starting at a rotating position so ties are shared, not always won by the first.

use super::entries;
use super::load::{BackendState, States};
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::Backend;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Weighted least connections over live in-flight counts.
pub struct LeastConnections {
    entries: Box<[(Backend, Arc<BackendState>)]>,
    start: AtomicUsize,
}

impl BackendSelection for LeastConnections {
    type Iter = LeastConnIter;
    type Config = Arc<States>;

    fn build(backends: &BTreeSet<Backend>) -> Self {
        Self::build_with_config(backends, &Arc::default())
    }

    fn build_with_config(backends: &BTreeSet<Backend>, states: &Arc<States>) -> Self {
        LeastConnections {
            entries: entries(backends, states),
            start: AtomicUsize::new(0),
        }
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> LeastConnIter {
        LeastConnIter {
            start: self.start.fetch_add(1, Ordering::Relaxed),
            lc: Arc::clone(self),
            first: None,
            more: Vec::new(),
        }
    }
}

/// Candidates from least to most loaded, computed one at a time (usually only the first).
pub struct LeastConnIter {
    lc: Arc<LeastConnections>,
    start: usize,
    /// The first candidate given, then the others: no allocation for the usual single pick.
    first: Option<usize>,
    more: Vec<usize>,
}

impl LeastConnIter {
    fn given(&self, i: usize) -> bool {
        self.first == Some(i) || self.more.contains(&i)
    }
}

impl BackendIter for LeastConnIter {
    fn next(&mut self) -> Option<&Backend> {
        let entries = &self.lc.entries;
        let n = entries.len();
        let mut best: Option<(usize, f64)> = None;
        for step in 0..n {
            let i = (self.start + step) % n;
            if self.given(i) {
                continue;
            }
            let load = entries[i].1.load();
            if best.is_none_or(|(_, b)| load < b) {
                best = Some((i, load));
            }
        }
        let (i, _) = best?;
        match self.first {
            None => self.first = Some(i),
            Some(_) => self.more.push(i),
        }
        Some(&entries[i].0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{picks, pool};
    use super::*;

    #[test]
    fn picks_the_least_loaded_per_weight() {
        let (set, states, leases) = pool(&[(1, 3), (2, 0), (1, 1)]);
        let lc = Arc::new(LeastConnections::build_with_config(&set, &states));
        // Loads (n+1)/w: 4, 0.5, 2: the weight-2 backend wins.
        assert_eq!(picks(&lc, 5), vec![1; 5]);
        drop(leases);
    }

    #[test]
    fn iteration_gives_every_backend_once_least_loaded_first() {
        let (set, states, _leases) = pool(&[(1, 2), (1, 0), (1, 1), (1, 3)]);
        let lc = Arc::new(LeastConnections::build_with_config(&set, &states));
        let mut iter = lc.iter(b"");
        let order: Vec<String> = std::iter::from_fn(|| iter.next().map(|b| b.addr.to_string())).collect();
        assert_eq!(order, ["127.0.0.2:80", "127.0.0.3:80", "127.0.0.1:80", "127.0.0.4:80"]);
    }

    #[test]
    fn ties_are_shared_in_turn() {
        let (set, states, _leases) = pool(&[(1, 0), (1, 0), (1, 0)]);
        let lc = Arc::new(LeastConnections::build_with_config(&set, &states));
        let mut got = picks(&lc, 6);
        got.sort();
        assert_eq!(got, [0, 0, 1, 1, 2, 2]);
    }
}
