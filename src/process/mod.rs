//! The process: how `lb` starts, serves, upgrades and stops.
//!
//! - [`server`]: wiring: the Pingora server, listeners, background services.
//! - [`lifecycle`]: in-flight requests, draining, readiness, early exit, pid file.
//! - [`listeners`]: the proxy service: the front, TLS listeners, the HTTP/2 limits.
//! - [`logging`]: the log, with Pingora's accept failures told once per run.
//! - [`signals`]: SIGHUP, an in-place reload; the open files limit.
//! - [`memory`]: the allocator's background threads, restarted after a fork.
//! - [`preflight`]: checks of the machine before start-up (ports, user, paths).
//! - [`upgrade`]: `lb upgrade`, the graceful replacement of a running daemon.
//! - [`reload`]: `lb reload`, an in-place re-read of the configuration by the running lb.
//! - [`probe`]: `lb probe`, a liveness check for containers.
//! - [`supervisor`]: PID 1 mode: runs lb as a child, reloads or upgrades it on signals.

pub(crate) mod lifecycle;
pub(crate) mod listeners;
pub mod logging;
pub(crate) mod memory;
pub mod preflight;
pub mod probe;
pub mod reload;
pub mod server;
pub mod signals;
pub mod supervisor;
pub mod upgrade;

#[cfg(test)]
mod loops_tests;
#[cfg(test)]
mod stack_tests;
