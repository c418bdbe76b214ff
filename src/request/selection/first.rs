//! Threshold ("first", HAProxy's `balance first`): backends in their configured order, each
//! filled up to its `max_connections` before the next gets anything, so spare servers stay idle
//! and can be scaled in. The cap itself is enforced by the pool when it takes a slot.

use super::entries;
use super::load::{BackendState, States};
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::Backend;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Backends in configuration order.
pub struct First {
    ordered: Box<[(Backend, Arc<BackendState>)]>,
}

impl BackendSelection for First {
    type Iter = FirstIter;
    type Config = Arc<States>;

    fn build(backends: &BTreeSet<Backend>) -> Self {
        Self::build_with_config(backends, &Arc::default())
    }

    fn build_with_config(backends: &BTreeSet<Backend>, states: &Arc<States>) -> Self {
        let mut ordered = entries(backends, states).into_vec();
        ordered.sort_by_key(|(_, s)| s.order());
        First {
            ordered: ordered.into_boxed_slice(),
        }
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> FirstIter {
        FirstIter {
            first: Arc::clone(self),
            next: 0,
        }
    }
}

/// Every backend, in order.
pub struct FirstIter {
    first: Arc<First>,
    next: usize,
}

impl BackendIter for FirstIter {
    fn next(&mut self) -> Option<&Backend> {
        let i = self.next;
        self.next += 1;
        self.first.ordered.get(i).map(|(b, _)| b)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::pool;
    use super::*;
    use std::time::Duration;

    #[test]
    fn candidates_come_in_configured_order_not_address_order() {
        let (set, states, _leases) = pool(&[(1, 0), (1, 0), (1, 0)]);
        // Reverse the configured order of the registry's states.
        let reordered = States::new(
            "p",
            states.all().iter().map(|s| {
                let freed = Arc::new(tokio::sync::Notify::new());
                let member = crate::request::member::Member::new(s.addr, 1);
                Arc::new(BackendState::new(&member, 2 - s.order(), Duration::from_secs(1), freed))
            }),
        );
        let first = Arc::new(First::build_with_config(&set, &Arc::new(reordered)));
        let mut iter = first.iter(b"");
        let order: Vec<String> = std::iter::from_fn(|| iter.next().map(|b| b.addr.to_string())).collect();
        assert_eq!(order, ["127.0.0.3:80", "127.0.0.2:80", "127.0.0.1:80"]);
    }
}
