//! The control plane: what changes the running pools and what reports on them.
//!
//! - [`runtime`]: the desired state (file plus runtime changes), applied as transactions to
//!   the pools; TTLs; in-place reloads.
//! - [`changes`]: the pure rules of registrations, updates, removals and reconciliation.
//! - [`service`]: the background work: restore at start, health checks, TTL expiry, discovery.
//! - [`discovery`]: pools whose backends come from a watched file or DNS ([`dns`]).
//! - [`state_file`]: runtime changes persisted atomically and restored at start.
//! - [`cluster`]: runtime changes shared by several instances through etcd.
//! - [`view`]: pools and backends as the API shows them.
//! - [`admin`]: the admin listener: JSON API, OpenAPI document, dashboard.
//! - [`metrics`]: Prometheus exposition (`/metrics`), with the `prometheus` crate.

pub mod admin;
pub mod changes;
pub mod cluster;
pub mod discovery;
pub mod dns;
pub mod metrics;
pub mod runtime;
pub mod service;
pub mod state_file;
pub mod view;
