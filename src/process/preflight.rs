//! Checks of the machine before start-up, so a daemon fails in the foreground with a clear line
//! instead of deep inside Pingora: listeners (proxy, metrics, admin) free, user and group known,
//! log, pid and state-file paths writable. The file's own consistency is `config`'s job.

use crate::config::{Config, ConfigError};
use crate::process::lifecycle::dir_writable;
use std::net::SocketAddr;
use std::path::Path;

fn invalid(file: &str, path: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_string(),
        path: path.to_string(),
        message,
    }
}

/// Checks `config` (read from `file`) against this machine; `bind` also tries the listeners
/// (not when testing a config or taking over listeners in an upgrade).
pub fn check(config: &Config, file: &str, bind: bool) -> Result<(), ConfigError> {
    if bind {
        for (i, listener) in config.listeners.iter().enumerate() {
            let addr = listener.address.0;
            probe_bind(addr).map_err(|e| {
                invalid(
                    file,
                    &format!("listeners[{i}].address"),
                    format!("cannot listen on {addr}: {e}"),
                )
            })?;
        }
        if let Some(metrics) = &config.metrics {
            let addr = metrics.address.0;
            probe_bind(addr).map_err(|e| invalid(file, "metrics.address", format!("cannot listen on {addr}: {e}")))?;
        }
        if let Some(admin) = &config.admin {
            let addr = admin.address.0;
            probe_bind(addr).map_err(|e| invalid(file, "admin.address", format!("cannot listen on {addr}: {e}")))?;
        }
    }
    if let Some(state) = config.admin.as_ref().and_then(|a| a.state_file.as_deref()) {
        if !dir_writable(Path::new(state)) {
            let msg = format!("cannot write {state} (its directory is missing or read-only)");
            return Err(invalid(file, "admin.state_file", msg));
        }
    }
    check_tls_files(config, file)?;
    let server = &config.server;
    if let Some(user) = &server.user {
        if !matches!(nix::unistd::User::from_name(user), Ok(Some(_))) {
            let message = format!("no user named {user:?} on this machine");
            return Err(invalid(file, "server.user", message));
        }
    }
    if let Some(group) = &server.group {
        if !matches!(nix::unistd::Group::from_name(group), Ok(Some(_))) {
            let message = format!("no group named {group:?} on this machine");
            return Err(invalid(file, "server.group", message));
        }
    }
    if server.daemon {
        check_daemon_paths(config, file)?;
    }
    if let Some(log) = &config.access_log {
        crate::request::access_log::open(Path::new(&log.path))
            .map_err(|e| invalid(file, "access_log.path", format!("cannot open {}: {e}", log.path)))?;
    }
    Ok(())
}

/// Certificates and keys of TLS listeners, and CA bundles of TLS pools: readable, parsable,
/// matching.
fn check_tls_files(config: &Config, file: &str) -> Result<(), ConfigError> {
    for (i, listener) in config.listeners.iter().enumerate() {
        if let Some(tls) = &listener.tls {
            crate::request::tls::check(&tls.certificates).map_err(|(j, e)| {
                invalid(
                    file,
                    &format!("listeners[{i}].tls.certificates[{j}].{}", e.field),
                    e.message,
                )
            })?;
        }
    }
    for (name, upstream) in &config.upstreams {
        if let Some(ca) = upstream.tls.as_ref().and_then(|t| t.ca_file.as_ref()) {
            crate::request::pool::load_ca(ca)
                .map_err(|e| invalid(file, &format!("upstreams.{name}.tls.ca_file"), e))?;
        }
    }
    Ok(())
}

fn check_daemon_paths(config: &Config, file: &str) -> Result<(), ConfigError> {
    let server = &config.server;
    if let Some(log) = &server.error_log {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log)
            .map_err(|e| invalid(file, "server.error_log", format!("cannot open {log}: {e}")))?;
    }
    if !dir_writable(Path::new(&server.pid_file)) {
        let msg = format!(
            "cannot write {} (its directory is missing or read-only)",
            server.pid_file
        );
        return Err(invalid(file, "server.pid_file", msg));
    }
    Ok(())
}

/// Binds `addr` (with SO_REUSEADDR, as Pingora does) and lets it go again.
fn probe_bind(addr: SocketAddr) -> std::io::Result<()> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)
}
