//! Random with two choices: sample two backends, send to the cheaper. O(1) per pick. With the
//! in-flight load as cost it is `power_of_two`; with the peak-EWMA latency times the queue it
//! would join it is `least_time` (as Linkerd and Finagle balance), which in pools of up to
//! [`EXACT_UP_TO`] backends takes the exact cheapest instead: two random choices of three leave
//! the best one out a third of the time, and a scan of a few is as cheap as two samples.

use super::load::{BackendState, States};
use super::{entries, random_below};
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::Backend;
use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::Arc;

/// Pools up to this size get the exact cheapest backend when [`Cost::EXACT_IN_SMALL_POOLS`].
pub const EXACT_UP_TO: usize = 16;

/// What "cheaper" means.
pub trait Cost: Send + Sync + 'static {
    /// Whether small pools are scanned for the exact cheapest instead of sampled.
    const EXACT_IN_SMALL_POOLS: bool;

    /// Lower is better.
    fn cost(state: &BackendState) -> f64;
}

/// In flight per weight.
pub struct InFlight;

impl Cost for InFlight {
    const EXACT_IN_SMALL_POOLS: bool = false;

    fn cost(state: &BackendState) -> f64 {
        state.load()
    }
}

/// Expected latency times queue length, per weight.
pub struct Latency;

impl Cost for Latency {
    const EXACT_IN_SMALL_POOLS: bool = true;

    fn cost(state: &BackendState) -> f64 {
        state.latency_cost()
    }
}

/// Two random choices, the cheaper wins.
pub struct P2c<C> {
    entries: Box<[(Backend, Arc<BackendState>)]>,
    cost: PhantomData<C>,
}

/// `power_of_two`.
pub type PowerOfTwo = P2c<InFlight>;
/// `least_time`.
pub type LeastTime = P2c<Latency>;

impl<C: Cost> BackendSelection for P2c<C> {
    type Iter = P2cIter<C>;
    type Config = Arc<States>;

    fn build(backends: &BTreeSet<Backend>) -> Self {
        Self::build_with_config(backends, &Arc::default())
    }

    fn build_with_config(backends: &BTreeSet<Backend>, states: &Arc<States>) -> Self {
        P2c {
            entries: entries(backends, states),
            cost: PhantomData,
        }
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> P2cIter<C> {
        let n = self.entries.len();
        let (first, second) = if n < 2 {
            (0, 0)
        } else if C::EXACT_IN_SMALL_POOLS && n <= EXACT_UP_TO {
            self.two_cheapest()
        } else {
            let a = random_below(n);
            let b = (a + 1 + random_below(n - 1)) % n;
            if self.cost_of(a) <= self.cost_of(b) {
                (a, b)
            } else {
                (b, a)
            }
        };
        P2cIter {
            p2c: Arc::clone(self),
            first,
            second,
            step: 0,
        }
    }
}

impl<C: Cost> P2c<C> {
    fn cost_of(&self, i: usize) -> f64 {
        self.entries.get(i).map_or(f64::MAX, |(_, s)| C::cost(s))
    }

    /// The cheapest and second cheapest, scanning from a random start so ties are shared.
    fn two_cheapest(&self) -> (usize, usize) {
        let n = self.entries.len();
        let start = random_below(n);
        let (mut best, mut second) = ((start, self.cost_of(start)), (usize::MAX, f64::MAX));
        for step in 1..n {
            let i = (start + step) % n;
            let cost = self.cost_of(i);
            if cost < best.1 {
                second = best;
                best = (i, cost);
            } else if cost < second.1 {
                second = (i, cost);
            }
        }
        (best.0, second.0)
    }
}

/// The better choice, the other one, then every backend from the first on (if both are
/// unusable: unhealthy, full or already tried).
pub struct P2cIter<C> {
    p2c: Arc<P2c<C>>,
    first: usize,
    second: usize,
    step: usize,
}

impl<C: Cost> BackendIter for P2cIter<C> {
    fn next(&mut self) -> Option<&Backend> {
        let n = self.p2c.entries.len();
        let step = self.step;
        self.step += 1;
        let i = match step {
            0 => self.first,
            1 => self.second,
            s if s < n + 2 => (self.first + s - 1) % n.max(1),
            _ => return None,
        };
        self.p2c.entries.get(i).map(|(b, _)| b)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{picks, pool};
    use super::*;

    #[test]
    fn the_cheaper_of_two_wins_so_the_busiest_of_three_never_does() {
        let (set, states, _leases) = pool(&[(1, 0), (1, 0), (1, 50)]);
        let p2c = Arc::new(PowerOfTwo::build_with_config(&set, &states));
        let got = picks(&p2c, 300);
        assert!(!got.contains(&2), "the loaded backend was picked");
        assert!(got.contains(&0) && got.contains(&1));
    }

    #[test]
    fn least_time_takes_the_exact_cheapest_in_a_small_pool() {
        let (set, states, _leases) = pool(&[(1, 0), (1, 0), (1, 0)]);
        for (state, ms) in states.all().iter().zip([40, 2, 9]) {
            state.latency.observe(std::time::Duration::from_millis(ms));
        }
        let lt = Arc::new(LeastTime::build_with_config(&set, &states));
        assert_eq!(picks(&lt, 50), vec![1; 50]);
    }

    #[test]
    fn every_backend_is_reachable_when_the_two_choices_are_not_usable() {
        let (set, states, _leases) = pool(&[(1, 0); 5]);
        let p2c = Arc::new(LeastTime::build_with_config(&set, &states));
        let mut iter = p2c.iter(b"");
        let mut seen = std::collections::BTreeSet::new();
        while let Some(b) = iter.next() {
            seen.insert(b.addr.to_string());
        }
        assert_eq!(seen.len(), 5);
    }
}
