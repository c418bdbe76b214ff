//! `lb`: an HTTP load balancer and reverse proxy on Cloudflare's Pingora.
//!
//! Three floors, imports flowing downwards only (the control plane uses the request path's own
//! API; the request path never imports the control plane):
//!
//! - [`process`]: the process: server wiring, lifecycle, upgrade, supervisor, preflight, probe.
//! - [`control`]: the control plane: runtime state and its transactions, the admin API and
//!   dashboard, the state file, Prometheus metrics.
//! - [`request`]: the request path: proxy, routing, pools, selection, keys, health checks,
//!   access log, request statistics.
//!
//! Beside them: [`config`] (the YAML model and its validation), [`cli`] (the command line) and
//! [`error`] (start-up errors).

#![warn(missing_docs)]

pub mod cli;
pub(crate) mod clock;
pub mod config;
pub(crate) mod control;
pub(crate) mod error;
pub mod process;
pub mod request;
#[cfg(test)]
mod testing;
