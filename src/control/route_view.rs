//! Routes as the admin API and the dashboard show them (the JSON contract of
//! `GET /api/v1/routes`): what each matches in a line, where it leads, and for a split the
//! weights in force (the file's with runtime changes) beside the file's.

use crate::config::{Route, SplitBy};
use crate::control::changes::routes::split_weights;
use crate::control::state_file::Changes;
use crate::request::route::Table;
use serde::Serialize;

/// One route.
#[derive(Debug, Serialize)]
pub struct RouteView {
    /// Its place in the file's `routes:`, from 0 (first match wins).
    pub index: usize,
    /// Its name (`null` without one: it cannot be changed through the API).
    pub name: Option<String>,
    /// What it matches, in words (`host api.example.com, path /v1/*`; `any request`).
    #[serde(rename = "match")]
    pub matches: String,
    /// The upstream it sends to, without a split.
    pub upstream: Option<String>,
    /// Its sides, with a split.
    pub split: Option<Vec<SideView>>,
    /// What keeps a client on one side: `cookie:NAME`, `source_ip`, `header:NAME`, `uri`,
    /// `path`; `null`: each request is chosen anew.
    pub split_by: Option<String>,
}

/// One side of a split.
#[derive(Debug, Serialize)]
pub struct SideView {
    /// The upstream.
    pub upstream: String,
    /// Its weight now.
    pub weight: u32,
    /// Its weight in the file.
    pub config_weight: u32,
    /// Its share of new requests by weight, in percent (0 to 100).
    pub share: f64,
    /// Whether its pool has a usable backend now (a side without one is passed over).
    pub usable: bool,
}

/// Every route of `routes` under `changes`, live state from `table`.
pub fn routes(routes: &[Route], changes: &Changes, table: &Table) -> Vec<RouteView> {
    routes
        .iter()
        .enumerate()
        .map(|(index, route)| view(index, route, changes, table))
        .collect()
}

/// Route `route`, at `index` in the file.
pub fn view(index: usize, route: &Route, changes: &Changes, table: &Table) -> RouteView {
    let weights = split_weights(route, route.name.as_ref().and_then(|n| changes.routes.get(n)));
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    let split = route.split.as_ref().map(|sides| {
        sides
            .iter()
            .zip(&weights)
            .map(|(side, &weight)| SideView {
                upstream: side.upstream.clone(),
                weight,
                config_weight: side.weight,
                share: if total == 0 {
                    0.0
                } else {
                    (f64::from(weight) * 1000.0 / total as f64).round() / 10.0
                },
                usable: table.pools.get(&side.upstream).is_some_and(|p| p.has_usable()),
            })
            .collect()
    });
    RouteView {
        index,
        name: route.name.clone(),
        matches: summary(route),
        upstream: route.upstream.clone(),
        split,
        split_by: route.split_by.as_ref().map(|by| match by {
            SplitBy::Cookie(name) => format!("cookie:{name}"),
            SplitBy::Key(key) => key.to_string(),
        }),
    }
}

/// What `route` matches, in a line.
fn summary(route: &Route) -> String {
    let m = &route.matches;
    let mut parts = Vec::new();
    if let Some(host) = route.host() {
        parts.push(format!("host {host}"));
    }
    if let Some(prefix) = route.path_prefix() {
        parts.push(format!("path {prefix}*"));
    }
    if let Some(re) = &m.path_regex {
        parts.push(format!("path ~ {}", re.0.as_str()));
    }
    if let Some(methods) = &m.methods {
        let names: Vec<&str> = methods.iter().map(|m| m.0.as_str()).collect();
        parts.push(format!("methods {}", names.join(" ")));
    }
    for (name, _) in &m.headers.0 {
        parts.push(format!("header {}", name.0));
    }
    for (name, _) in &m.query.0 {
        parts.push(format!("query {name}"));
    }
    if parts.is_empty() {
        "any request".to_string()
    } else {
        parts.join(", ")
    }
}
