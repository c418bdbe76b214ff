//! `lb`: an HTTP load balancer and reverse proxy on Cloudflare's Pingora.
//!
//! - [`cli`]: command-line flags, quick-start pools and overrides on top of the file.
//! - [`config`]: the YAML model, loading with field-path errors, validation.
//! - [`server`]: wiring: Pingora server, listeners, pools, background services.
//! - [`proxy`]: the `ProxyHttp` implementation (routing, peer choice, retries, headers, errors).
//! - [`route`]: host / path-prefix routing table.
//! - [`upstream`]: a running pool: balancer, key source, slots and wait queue, retries, peers.
//! - [`selection`]: balancing algorithms (Pingora `BackendSelection`s) and live backend state.
//! - [`key`]: extraction of hash keys (URI, path, source IP, header, cookie) from a request.
//! - [`health`]: active HTTP health checks and the background service that runs them.
//! - [`metrics`]: the Prometheus endpoint and the counters it reads.
//! - [`access_log`]: one line per request, written off the request path.
//! - [`lifecycle`]: in-flight requests, draining, readiness, early exit, pid file.
//! - [`preflight`]: checks of the machine before start-up (ports, user, paths).
//! - [`upgrade`]: `lb upgrade`, the graceful replacement of a running daemon.
//! - [`probe`]: `lb probe`, a liveness check for containers.
//! - [`supervisor`]: PID 1 mode: runs lb as a child, upgrades it gracefully on SIGHUP.
//! - [`error`]: start-up errors.

#![warn(missing_docs)]

pub mod access_log;
pub mod cli;
pub mod config;
pub mod error;
pub mod health;
pub mod key;
pub mod lifecycle;
pub mod metrics;
pub mod preflight;
pub mod probe;
pub mod proxy;
pub mod route;
pub mod selection;
pub mod server;
pub mod supervisor;
pub mod upgrade;
pub mod upstream;
