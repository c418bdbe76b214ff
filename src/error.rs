//! Start-up errors: everything that stops `lb` before it serves. Request-path errors use Pingora's.

use crate::config::ConfigError;

/// Why `lb` could not start. Each variant prints as one line naming what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be set up.
    #[error("listeners[{index}].{message}")]
    Listener {
        /// Its position in `listeners`.
        index: usize,
        /// What is wrong (starting with the field).
        message: String,
    },
    /// The span exporter could not be set up.
    #[error("tracing.otlp: {0}")]
    Tracing(String),
    /// A pool could not be built.
    #[error("upstreams.{pool}: {message}")]
    Pool {
        /// The pool.
        pool: String,
        /// What is wrong.
        message: String,
    },
    /// A route could not be built (a file it reads changed since it was checked).
    #[error("routes[{index}].{message}")]
    Route {
        /// Its position in `routes`.
        index: usize,
        /// What is wrong (starting with the field).
        message: String,
    },
}
