//! Routes in the runtime: each split route's choice of pool built from the file and set to its
//! weights (the file's with runtime changes), the routes as the API shows them, and a change of
//! a route's split weights as a transaction: checked whole, persisted (the state file fsynced,
//! or etcd with `cluster:`), then applied for the next request; refused with nothing changed.
//! The pure rules are `changes::routes`'.

use super::{Desired, Runtime};
use crate::config::{Config, Route};
use crate::control::changes::routes::{route_named, set_split, split_weights, SplitWeights};
use crate::control::changes::{Effect, Refusal};
use crate::control::route_view::{self, RouteView};
use crate::control::state_file::Changes;
use crate::request::pool::Pool;
use crate::request::route::Table;
use crate::request::split::Split;
use log::{error, info};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a change of a route did, as the API answers it.
#[derive(Debug, Serialize)]
pub struct RouteApplied {
    /// `changed`, or `unchanged` when the route already had these weights.
    pub result: &'static str,
    /// The route after the change.
    pub route: RouteView,
    /// Whether the change is kept (in the state file, written before this answer, or in etcd);
    /// false without either.
    pub persisted: bool,
}

/// The split of `route`, at `index` in the file, over `pools`, with the file's weights; `None`
/// without a split. A route without a name is known by its place (`routes[2]`) in its cookie ids.
pub(super) fn split_of(route: &Route, index: usize, pools: &BTreeMap<String, Arc<Pool>>) -> Option<Arc<Split>> {
    let sides = route.split.as_ref()?;
    let id = route.name.clone().unwrap_or_else(|| format!("routes[{index}]"));
    let sides = sides
        .iter()
        .filter_map(|s| Some((s.upstream.clone(), Arc::clone(pools.get(&s.upstream)?), s.weight)))
        .collect();
    Some(Arc::new(Split::new(&id, sides, route.split_by.clone())))
}

/// Sets every named split route of `table` to its weights under `config` and `changes`.
pub(super) fn set_all_splits(table: &Table, config: &Config, changes: &Changes) {
    for target in table.router.targets() {
        let (Some(split), Some(name)) = (&target.split, &target.name) else {
            continue;
        };
        if target.rollout.is_some() {
            // The rollout sets its split's weights.
            continue;
        }
        if let Some(route) = route_named(config, name) {
            set_weights(split, route, changes);
        }
    }
}

/// Sets `split`, route `route`'s, to its weights under `changes`, side by side by name.
fn set_weights(split: &Split, route: &Route, changes: &Changes) {
    let by_name = route.name.as_ref().and_then(|n| changes.routes.get(n));
    let weights = split_weights(route, by_name);
    let sides = route.split.iter().flatten();
    let of = |upstream: &str| {
        sides
            .clone()
            .zip(&weights)
            .find(|(s, _)| s.upstream == upstream)
            .map(|(_, w)| *w)
    };
    let live: Vec<u32> = split.sides().iter().map(|s| of(&s.upstream).unwrap_or(0)).collect();
    split.set_weights(&live);
}

/// `before → after` for each side whose weight changed (`api 80 → 95, canary 20 → 5`).
fn weight_changes(route: &Route, before: &[u32], after: &[u32]) -> String {
    let sides = route.split.iter().flatten();
    let parts: Vec<String> = sides
        .zip(before.iter().zip(after))
        .filter(|(_, (b, a))| b != a)
        .map(|(side, (b, a))| format!("{} {b} → {a}", side.upstream))
        .collect();
    parts.join(", ")
}

impl Runtime {
    /// Writes `changes`, the state after a change of route `name`, before it is applied and
    /// answered: to etcd with `cluster:`, else to the state file (and its directory) fsynced.
    /// `Ok(false)`: neither is configured; a 503 when the store cannot take it.
    async fn keep_route(&self, desired: &mut Desired, changes: &Changes, name: &str) -> Result<bool, Refusal> {
        let Some(etcd) = self.etcd().await else {
            return self.write_change(desired, changes, Effect::Changed);
        };
        let written = match etcd {
            Ok(etcd) => etcd.write_route(&desired.changes, changes, name).await,
            Err(e) => Err(e),
        };
        written.map(|()| true).map_err(|e| {
            let msg = format!("the shared state (etcd) is unreachable: {e}; nothing was changed");
            error!("{msg}");
            Refusal::new(503, msg)
        })
    }

    /// Every route, as the API shows it.
    pub async fn routes(&self) -> Vec<RouteView> {
        let desired = self.desired.lock().await;
        route_view::routes(&desired.config.routes, &desired.changes, &self.routing.load())
    }

    /// Route `name`, as the API shows it.
    pub async fn route(&self, name: &str) -> Option<RouteView> {
        let desired = self.desired.lock().await;
        let index = desired
            .config
            .routes
            .iter()
            .position(|r| r.name.as_deref() == Some(name))?;
        let route = &desired.config.routes[index];
        Some(route_view::view(index, route, &desired.changes, &self.routing.load()))
    }

    /// Sets the split weights of route `name` given in `weights` (the others keep theirs):
    /// checked, persisted, applied, or refused with nothing changed.
    pub async fn set_split(&self, name: &str, weights: SplitWeights) -> Result<RouteApplied, Refusal> {
        let mut desired = self.desired.lock().await;
        let Some(route) = route_named(&desired.config, name).cloned() else {
            return Err(Refusal::new(404, format!("no route named {name:?}")));
        };
        let mut changes = desired.changes.clone();
        let route_changes = changes.routes.entry(name.to_string()).or_default();
        set_split(route_changes, name, &route, &weights)?;
        if route_changes.split.is_empty() {
            changes.routes.remove(name);
        }
        let before = split_weights(&route, desired.changes.routes.get(name));
        let after = split_weights(&route, changes.routes.get(name));
        let persisted = self.keep_route(&mut desired, &changes, name).await?;
        let table = self.routing.load();
        set_all_splits(&table, &desired.config, &changes);
        desired.changes = changes;
        let result = if before == after { "unchanged" } else { "changed" };
        if before != after {
            let detail = format!(
                "split {} through the admin API",
                weight_changes(&route, &before, &after)
            );
            info!("route {name}: {detail}");
            self.events.record_route(name, detail);
        }
        let index = desired
            .config
            .routes
            .iter()
            .position(|r| r.name.as_deref() == Some(name))
            .unwrap_or(0);
        Ok(RouteApplied {
            result,
            route: route_view::view(index, &route, &desired.changes, &table),
            persisted,
        })
    }
}
