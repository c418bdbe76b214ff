//! `lb`: an HTTP load balancer and reverse proxy on Cloudflare's Pingora.
//!
//! - [`config`]: the YAML model, loading with field-path errors, validation.
//! - [`error`]: start-up errors.

pub mod config;
pub mod error;
