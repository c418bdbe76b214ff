//! The control plane: what changes the running pools and what reports on them.
//!
//! - [`runtime`]: the desired state (file plus runtime changes), applied as transactions to
//!   the pools; TTLs; in-place reloads.
//! - [`changes`]: the pure rules of registrations, updates, removals and reconciliation.
//! - [`service`]: the background work: restore at start, health checks, TTL expiry, discovery,
//!   history sampling.
//! - [`discovery`]: pools whose backends come from a watched file or DNS ([`dns`]).
//! - [`state_file`]: runtime changes persisted atomically and restored at start.
//! - [`cluster`]: runtime changes shared by several instances through etcd (and the election of
//!   the instance that drives the rollouts).
//! - [`rollout`]: verified rollouts: their persisted state and the pure decision of what comes
//!   next (the runtime drives them).
//! - [`view`]: pools and backends as the API shows them; [`route_view`]: routes and splits.
//! - [`history`]: the pools' and backends' last 15 minutes, sampled every second.
//! - [`overview`]: the last minute of the whole lb and of each pool, pools with problems first.
//! - [`events`]: the recent registrations, changes, removals, ejections, readmissions, reloads.
//! - [`admin`]: the admin listener: JSON API, OpenAPI document, dashboard.
//! - [`metrics`]: Prometheus exposition (`/metrics`), with the `prometheus` crate;
//!   [`compress_metrics`]: its compression families; `rollout_metrics`: its rollout families.

pub mod admin;
pub mod changes;
pub mod checks;
pub mod cluster;
pub mod compress_metrics;
pub mod discovery;
pub mod dns;
pub mod events;
pub mod history;
mod metric_samples;
pub mod metrics;
pub mod overview;
pub mod rollout;
mod rollout_metrics;
pub mod route_view;
pub mod runtime;
pub mod service;
pub mod state_file;
pub mod view;
