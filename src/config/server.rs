//! The `server:` section: Pingora's process settings with `lb`'s defaults, and the one place they
//! are mapped onto Pingora's `ServerConf`. Listeners and pools live in the parent module.

use pingora_core::server::configuration::ServerConf;
use serde::Deserialize;

/// Default pid file of the running `lb`.
pub const DEFAULT_PID_FILE: &str = "/tmp/lb.pid";
/// Default socket on which a new `lb -u` receives the listeners of the old one.
pub const DEFAULT_UPGRADE_SOCK: &str = "/tmp/lb_upgrade.sock";
/// Default seconds between SIGTERM/SIGQUIT and the forced stop: shorter than Docker's 10 s
/// stop timeout together with [`DEFAULT_SHUTDOWN_TIMEOUT_SECONDS`] (Pingora's default is 300 s).
pub const DEFAULT_GRACE_PERIOD_SECONDS: u64 = 5;
/// Default seconds the runtimes get to stop after the grace period.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECONDS: u64 = 3;
/// Default idle connections kept to all backends together.
pub const DEFAULT_KEEPALIVE_POOL_SIZE: usize = 128;
/// Default fail-safe cap on proxy attempts per request (Pingora's `max_retries`).
pub const DEFAULT_MAX_RETRIES: usize = 16;

/// Process-wide settings (`server:`). Every field is optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Worker threads of the proxy. Default: the number of CPU cores.
    pub threads: Option<usize>,
    /// Let idle worker threads steal work from busy ones. Default `true`.
    pub work_stealing: bool,
    /// Accept tasks per listening socket. Default 1.
    pub listener_tasks_per_fd: usize,
    /// Run in the background (same as `-d`). Default `false`.
    pub daemon: bool,
    /// With `daemon`, the parent returns only once the child is ready to serve. Default `true`.
    pub daemon_wait_for_ready: bool,
    /// Pid file written by a daemon. Default `/tmp/lb.pid`.
    pub pid_file: String,
    /// Unix socket used to hand listeners to a new process in a graceful upgrade.
    /// Default `/tmp/lb_upgrade.sock`.
    pub upgrade_sock: String,
    /// How many times (1 s apart) the old and new process try to meet on `upgrade_sock`. Default 5.
    pub upgrade_sock_retries: Option<usize>,
    /// Log file of a daemon (stderr otherwise). Default: none.
    pub error_log: Option<String>,
    /// User to switch to after start-up (daemon only). Default: none.
    pub user: Option<String>,
    /// Group to switch to after start-up (daemon only). Default: none.
    pub group: Option<String>,
    /// Working directory of a daemon. Default: unchanged.
    pub working_directory: Option<String>,
    /// Seconds in-flight requests get to finish after SIGTERM or SIGQUIT. Default 5.
    pub grace_period_seconds: u64,
    /// Seconds the worker runtimes get to stop after the grace period. Default 3.
    pub graceful_shutdown_timeout_seconds: u64,
    /// Idle connections kept to backends, all pools together. Default 128.
    pub upstream_keepalive_pool_size: usize,
    /// Fail-safe cap on attempts per request across all retry reasons. Default 16.
    pub max_retries: usize,
    /// CA bundle for TLS to backends. Default: the system store.
    pub ca_file: Option<String>,
    /// Local IPv4 addresses to connect to backends from. Default: any.
    pub client_bind_to_ipv4: Vec<String>,
    /// Local IPv6 addresses to connect to backends from. Default: any.
    pub client_bind_to_ipv6: Vec<String>,
    /// Blocking-pool threads per runtime. Default: Tokio's (512).
    pub max_blocking_threads: Option<usize>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            threads: None,
            work_stealing: true,
            listener_tasks_per_fd: 1,
            daemon: false,
            daemon_wait_for_ready: true,
            pid_file: DEFAULT_PID_FILE.to_string(),
            upgrade_sock: DEFAULT_UPGRADE_SOCK.to_string(),
            upgrade_sock_retries: None,
            error_log: None,
            user: None,
            group: None,
            working_directory: None,
            grace_period_seconds: DEFAULT_GRACE_PERIOD_SECONDS,
            graceful_shutdown_timeout_seconds: DEFAULT_SHUTDOWN_TIMEOUT_SECONDS,
            upstream_keepalive_pool_size: DEFAULT_KEEPALIVE_POOL_SIZE,
            max_retries: DEFAULT_MAX_RETRIES,
            ca_file: None,
            client_bind_to_ipv4: Vec::new(),
            client_bind_to_ipv6: Vec::new(),
            max_blocking_threads: None,
        }
    }
}

impl ServerSettings {
    /// Worker threads after resolving the default.
    pub fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Checks the values serde cannot: returns `(field, problem)`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            ("threads", self.threads.unwrap_or(1)),
            ("listener_tasks_per_fd", self.listener_tasks_per_fd),
            ("max_retries", self.max_retries),
            ("max_blocking_threads", self.max_blocking_threads.unwrap_or(1)),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err((field, "must be at least 1".into()));
            }
        }
        for (field, path) in [("pid_file", &self.pid_file), ("upgrade_sock", &self.upgrade_sock)] {
            if path.trim().is_empty() {
                return Err((field, "must not be empty".into()));
            }
        }
        Ok(())
    }

    /// The Pingora `ServerConf` for these settings: the only place they are mapped.
    pub fn pingora_conf(&self) -> ServerConf {
        ServerConf {
            version: 1,
            threads: self.threads(),
            work_stealing: self.work_stealing,
            listener_tasks_per_fd: self.listener_tasks_per_fd,
            daemon: self.daemon,
            daemon_wait_for_ready: self.daemon_wait_for_ready,
            pid_file: self.pid_file.clone(),
            upgrade_sock: self.upgrade_sock.clone(),
            upgrade_sock_connect_accept_max_retries: self.upgrade_sock_retries,
            error_log: self.error_log.clone(),
            user: self.user.clone(),
            group: self.group.clone(),
            working_directory: self.working_directory.as_ref().map(Into::into),
            grace_period_seconds: Some(self.grace_period_seconds),
            graceful_shutdown_timeout_seconds: Some(self.graceful_shutdown_timeout_seconds),
            upstream_keepalive_pool_size: self.upstream_keepalive_pool_size,
            max_retries: self.max_retries,
            ca_file: self.ca_file.clone(),
            client_bind_to_ipv4: self.client_bind_to_ipv4.clone(),
            client_bind_to_ipv6: self.client_bind_to_ipv6.clone(),
            max_blocking_threads: self.max_blocking_threads,
            ..ServerConf::default()
        }
    }
}
