//! Smooth weighted round robin: weights 2:1 give `a b a`, 1:2:3 give `c b a c b c`, so a heavy
//! backend never receives its whole share in a burst. One cycle's order is computed when the pool
//! is built (each backend's k-th turn is due at `(k + 1/2) / weight`, Webster's method, as nginx's
//! smooth round robin spreads turns), so a pick is one atomic increment. When the backend whose
//! turn it is cannot take the request (down, drained, full), its turn goes to the others in
//! proportion to their weights, as nginx's skips do: each backend has its own counter walking the
//! cycle without it, which is a smooth cycle of the others.

use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::Backend;
use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeSet, BinaryHeap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Round robin over backends in proportion to their weights, interleaved.
pub struct SmoothRoundRobin {
    backends: Box<[Backend]>,
    /// One cycle: each backend index appears `weight / gcd` times, spread out.
    cycle: Box<[u32]>,
    next: AtomicUsize,
    /// Per backend: where the walk of the cycle without it stands, for its skipped turns.
    skipped: Box<[AtomicUsize]>,
}

impl BackendSelection for SmoothRoundRobin {
    type Iter = SmoothIter;
    type Config = ();

    fn build(backends: &BTreeSet<Backend>) -> Self {
        let backends: Box<[Backend]> = backends.iter().cloned().collect();
        let weights: Vec<u64> = backends.iter().map(|b| b.weight.max(1) as u64).collect();
        SmoothRoundRobin {
            cycle: smooth_cycle(&weights),
            skipped: backends.iter().map(|_| AtomicUsize::new(0)).collect(),
            backends,
            next: AtomicUsize::new(0),
        }
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> SmoothIter {
        SmoothIter {
            start: self.next.fetch_add(1, Ordering::Relaxed),
            step: 0,
            rr: Arc::clone(self),
        }
    }
}

impl SmoothRoundRobin {
    /// The position of the next turn of anyone but `skipped` in the cycle, taken from
    /// `skipped`'s own walk.
    fn instead_of(&self, skipped: usize) -> usize {
        let len = self.cycle.len();
        let Some(walk) = self.skipped.get(skipped) else {
            return 0;
        };
        for _ in 0..len {
            let at = walk.fetch_add(1, Ordering::Relaxed) % len;
            if self.cycle[at] as usize != skipped {
                return at;
            }
        }
        0
    }
}

/// Candidates for one pick: the backend whose turn it is; if refused, the next turn of the
/// others (by the refused one's own walk, so its share is spread by weight); then the cycle on
/// from there; then every backend once in address order (so each is reached).
pub struct SmoothIter {
    rr: Arc<SmoothRoundRobin>,
    start: usize,
    step: usize,
}

impl BackendIter for SmoothIter {
    fn next(&mut self) -> Option<&Backend> {
        let (cycle, n) = (&self.rr.cycle, self.rr.backends.len());
        if n == 0 {
            return None;
        }
        let in_cycle = cycle.len().min(2 * n);
        let step = self.step;
        self.step += 1;
        let first = cycle[self.start % cycle.len()] as usize;
        if step == 1 && n > 1 {
            // The first was refused: continue along the cycle from the others' next turn.
            self.start = self.rr.instead_of(first);
        }
        let index = match step {
            0 => first,
            s if s < in_cycle => cycle[(self.start + s - 1) % cycle.len()] as usize,
            s if s < in_cycle + n => (first + 1 + s - in_cycle) % n,
            _ => return None,
        };
        self.rr.backends.get(index)
    }
}

/// A slot in the schedule: backend `index` has had `picks` turns; its next turn is due at
/// `(picks + 1/2) / weight`.
#[derive(PartialEq, Eq)]
struct Slot {
    picks: u64,
    weight: u64,
    index: u32,
}

impl Ord for Slot {
    /// Reversed, so the max-heap pops the earliest turn (ties: lowest index).
    fn cmp(&self, other: &Self) -> CmpOrdering {
        let mine = (2 * self.picks + 1) * other.weight;
        let theirs = (2 * other.picks + 1) * self.weight;
        theirs.cmp(&mine).then(other.index.cmp(&self.index))
    }
}

impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// One cycle of the smooth order: backend `i` appears `weights[i] / g` times, `g` the weights' gcd.
fn smooth_cycle(weights: &[u64]) -> Box<[u32]> {
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let total: u64 = weights.iter().map(|w| w / g).sum();
    let mut heap: BinaryHeap<Slot> = (0..weights.len())
        .map(|i| Slot {
            picks: 0,
            weight: weights[i] / g,
            index: i as u32,
        })
        .collect();
    let mut cycle = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let Some(mut slot) = heap.pop() else { break };
        cycle.push(slot.index);
        slot.picks += 1;
        heap.push(slot);
    }
    cycle.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(weights: &[usize]) -> BTreeSet<Backend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Backend::new_with_weight(&format!("127.0.0.{}:80", i + 1), *w).unwrap())
            .collect()
    }

    fn first_picks(rr: &Arc<SmoothRoundRobin>, n: usize) -> Vec<String> {
        (0..n).map(|_| rr.iter(b"").next().unwrap().addr.to_string()).collect()
    }

    #[test]
    fn equal_weights_rotate_in_order() {
        let rr = Arc::new(SmoothRoundRobin::build(&backends(&[1, 1, 1])));
        let picks = first_picks(&rr, 6);
        assert_eq!(picks[..3], picks[3..]);
        assert_eq!(picks.iter().collect::<BTreeSet<_>>().len(), 3);
    }

    #[test]
    fn weights_are_exact_per_cycle_and_interleaved() {
        assert_eq!(&*smooth_cycle(&[2, 1]), &[0, 1, 0]);
        assert_eq!(&*smooth_cycle(&[1, 2, 3]), &[2, 1, 0, 2, 1, 2]);
        let cycle = smooth_cycle(&[2, 4, 6]);
        let count = |i| cycle.iter().filter(|&&c| c == i).count();
        assert_eq!((cycle.len(), count(0), count(1), count(2)), (6, 1, 2, 3));
    }

    #[test]
    fn iteration_reaches_every_backend_once_the_cycle_is_exhausted() {
        let rr = Arc::new(SmoothRoundRobin::build(&backends(&[200, 1, 1, 1])));
        let mut iter = rr.iter(b"");
        let mut seen = BTreeSet::new();
        while let Some(b) = iter.next() {
            seen.insert(b.addr.to_string());
        }
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn a_refused_backends_turns_go_to_the_others_by_weight() {
        // Weights 1:1:3 with the heavy one refused: a and b share its turns evenly.
        let rr = Arc::new(SmoothRoundRobin::build(&backends(&[1, 1, 3])));
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..100 {
            let mut iter = rr.iter(b"");
            let mut pick = iter.next().unwrap().addr.to_string();
            if pick == "127.0.0.3:80" {
                pick = iter.next().unwrap().addr.to_string();
            }
            *seen.entry(pick).or_insert(0) += 1;
        }
        assert_eq!(seen.values().copied().collect::<Vec<_>>(), [50, 50], "{seen:?}");
        // Weights 1:2:2 with the first refused: 2:2 between the others.
        let rr = Arc::new(SmoothRoundRobin::build(&backends(&[1, 2, 2])));
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..50 {
            let mut iter = rr.iter(b"");
            let mut pick = iter.next().unwrap().addr.to_string();
            if pick == "127.0.0.1:80" {
                pick = iter.next().unwrap().addr.to_string();
            }
            *seen.entry(pick).or_insert(0) += 1;
        }
        assert_eq!(seen.values().copied().collect::<Vec<_>>(), [25, 25], "{seen:?}");
    }

    #[test]
    fn empty_pool_yields_nothing() {
        let rr = Arc::new(SmoothRoundRobin::build(&BTreeSet::new()));
        assert!(rr.iter(b"").next().is_none());
    }
}
