//! The pure rules of route changes: what a change of a route's split weights does to its
//! [`RouteChanges`], what weights the file plus its changes give, and how kept route changes
//! are reconciled with a (new) configuration. As for backends, a change keeps only what differs
//! from the file, and it outlives a reload that changes the file's weights (HAProxy keeps
//! runtime weights across reloads with its server state file too). No I/O: `runtime` applies
//! the result.

use super::Refusal;
use crate::config::{Config, Route};
use crate::control::state_file::RouteChanges;
use log::warn;
use std::collections::BTreeMap;

/// New weights for some sides of a route's split (`PATCH /api/v1/routes/{name}`), in the
/// order given: `(upstream, weight)`. Sides left out keep theirs.
pub type SplitWeights = Vec<(String, u32)>;

/// The route named `name` in `config`.
pub fn route_named<'a>(config: &'a Config, name: &str) -> Option<&'a Route> {
    config.routes.iter().find(|r| r.name.as_deref() == Some(name))
}

/// The split weights of `route` with `changes` applied, in the split's order (none without a
/// split).
pub fn split_weights(route: &Route, changes: Option<&RouteChanges>) -> Vec<u32> {
    let sides = route.split.iter().flatten();
    sides
        .map(|side| {
            changes
                .and_then(|c| c.split.get(&side.upstream))
                .copied()
                .unwrap_or(side.weight)
        })
        .collect()
}

/// Applies `weights` to `changes`, those of route `route` named `name`: checked whole (every
/// upstream is a side of the route's split, once; the weights do not all come to 0). On a
/// refusal `changes` may be half changed: the caller works on a copy.
pub fn set_split(
    changes: &mut RouteChanges,
    name: &str,
    route: &Route,
    weights: &[(String, u32)],
) -> Result<(), Refusal> {
    let Some(split) = &route.split else {
        let to = route.upstream.as_deref().unwrap_or("-");
        let msg = format!("route {name} has no split: it sends every request to upstream {to}");
        return Err(Refusal::new(400, msg));
    };
    for (i, (upstream, weight)) in weights.iter().enumerate() {
        if weights[..i].iter().any(|(u, _)| u == upstream) {
            return Err(Refusal::new(400, format!("split: upstream {upstream} is listed twice")));
        }
        let Some(side) = split.iter().find(|s| &s.upstream == upstream) else {
            let sides: Vec<&str> = split.iter().map(|s| s.upstream.as_str()).collect();
            let msg = format!(
                "split: route {name} splits between {}; {upstream:?} is not one of them",
                sides.join(", ")
            );
            return Err(Refusal::new(400, msg));
        };
        if side.weight == *weight {
            changes.split.remove(upstream);
        } else {
            changes.split.insert(upstream.clone(), *weight);
        }
    }
    if split_weights(route, Some(changes)).iter().all(|&w| w == 0) {
        return Err(Refusal::new(
            400,
            "split: the weights would add up to 0 and nothing would be served",
        ));
    }
    Ok(())
}

/// `kept` made to fit `config`: changes of routes that are gone (or have no split any more)
/// and of sides the split no longer has are dropped, and so are changes that would leave a
/// split weighing 0 under the new file. Each drop is logged.
pub fn reconcile(config: &Config, kept: &BTreeMap<String, RouteChanges>) -> BTreeMap<String, RouteChanges> {
    let mut out = BTreeMap::new();
    for (name, changes) in kept {
        let Some(route) = route_named(config, name).filter(|r| r.split.is_some()) else {
            warn!("route {name} no longer has a split in the configuration: its runtime weights are dropped");
            continue;
        };
        let sides = route.split.iter().flatten();
        let mut next = RouteChanges::default();
        for side in sides {
            match changes.split.get(&side.upstream) {
                Some(&w) if w != side.weight => {
                    next.split.insert(side.upstream.clone(), w);
                }
                _ => {}
            }
        }
        for upstream in changes
            .split
            .keys()
            .filter(|u| !route.upstreams().contains(&u.as_str()))
        {
            warn!("route {name}: {upstream} is no longer a side of its split: its runtime weight is dropped");
        }
        if split_weights(route, Some(&next)).iter().all(|&w| w == 0) {
            warn!("route {name}: its runtime weights would leave nothing served under the new file: dropped");
            continue;
        }
        if !next.split.is_empty() {
            out.insert(name.clone(), next);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(split: &str) -> Config {
        let yaml = format!(
            "listeners: [{{address: 127.0.0.1:1}}]
upstreams:
  api: {{backends: [{{address: 127.0.0.1:2}}]}}
  canary: {{backends: [{{address: 127.0.0.1:3}}]}}
  other: {{backends: [{{address: 127.0.0.1:4}}]}}
routes:
  - {{name: main, split: {split}}}
  - {{name: plain, path_prefix: /p, upstream: other}}
"
        );
        Config::parse_str(&yaml, "test.yaml").expect("config")
    }

    fn set(config: &Config, name: &str, weights: &[(&str, u32)]) -> Result<RouteChanges, Refusal> {
        let route = route_named(config, name).expect("route");
        let weights: SplitWeights = weights.iter().map(|(u, w)| (u.to_string(), *w)).collect();
        let mut changes = RouteChanges::default();
        set_split(&mut changes, name, route, &weights).map(|()| changes)
    }

    const FILE: &str = "[{upstream: api, weight: 80}, {upstream: canary, weight: 20}]";

    #[test]
    fn a_change_keeps_only_what_differs_from_the_file() {
        let c = config(FILE);
        let changes = set(&c, "main", &[("api", 80), ("canary", 5)]).unwrap();
        assert_eq!(changes.split, BTreeMap::from([("canary".to_string(), 5)]));
        let route = route_named(&c, "main").unwrap();
        assert_eq!(split_weights(route, Some(&changes)), [80, 5]);
        assert_eq!(split_weights(route, None), [80, 20]);
    }

    #[test]
    fn bad_changes_are_refused() {
        let c = config(FILE);
        let refusals = [
            set(&c, "main", &[("api", 0), ("canary", 0)]),
            set(&c, "main", &[("other", 1)]),
            set(&c, "main", &[("nowhere", 1)]),
            set(&c, "main", &[("api", 1), ("api", 2)]),
            set(&c, "plain", &[("other", 1)]),
        ];
        for (r, words) in
            refusals
                .iter()
                .zip(["add up to 0", "not one of them", "not one of them", "twice", "no split"])
        {
            let e = r.as_ref().expect_err("refused");
            assert_eq!(e.status, 400);
            assert!(e.message.contains(words), "{e:?}");
        }
        assert!(
            set(&c, "main", &[("api", 0)]).is_ok(),
            "one side at 0 is a change like another"
        );
    }

    #[test]
    fn runtime_weights_outlive_a_new_file_while_they_fit_it() {
        let kept = BTreeMap::from([(
            "main".to_string(),
            RouteChanges {
                split: BTreeMap::from([("api".to_string(), 95), ("canary".to_string(), 0)]),
            },
        )]);
        // The file's weights changed: the runtime ones still win.
        let c = config("[{upstream: api, weight: 50}, {upstream: canary, weight: 50}]");
        assert_eq!(reconcile(&c, &kept), kept);
        // A side gone: its weight goes; a weight now equal to the file's is no change.
        let c = config("[{upstream: api, weight: 95}, {upstream: other, weight: 5}]");
        assert!(reconcile(&c, &kept).is_empty());
        // Weighing 0 under the new file: dropped whole.
        let c = config("[{upstream: api, weight: 0}, {upstream: canary, weight: 1}]");
        let zero = BTreeMap::from([(
            "main".to_string(),
            RouteChanges {
                split: BTreeMap::from([("canary".to_string(), 0)]),
            },
        )]);
        assert!(reconcile(&c, &zero).is_empty());
        // No split any more.
        let c = config(FILE);
        let renamed = BTreeMap::from([("plain".to_string(), kept["main"].clone())]);
        assert!(reconcile(&c, &renamed).is_empty());
    }
}
