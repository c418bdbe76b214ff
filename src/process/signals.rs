//! SIGHUP, as nginx and HAProxy users expect it: re-read the configuration and apply pools and
//! routes in place (the admin API's reload, without the API). Pingora handles the other
//! signals (SIGTERM, SIGINT, SIGQUIT); SIGHUP is ignored from the start of `main` until this
//! service listens, so an early one cannot kill the process. Also the open files limit, raised
//! at start-up.

use crate::control::runtime::Runtime;
use async_trait::async_trait;
use log::{error, info, warn};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

/// Makes SIGHUP harmless until [`ReloadOnHangup`] listens (its default action ends the
/// process). Call first thing in `main`.
pub fn ignore_hangup_until_ready() {
    use nix::sys::signal::{signal as set, SigHandler, Signal};
    // SAFETY: SIG_IGN installs no handler code; called before any thread starts.
    if let Err(e) = unsafe { set(Signal::SIGHUP, SigHandler::SigIgn) } {
        warn!("cannot ignore SIGHUP: {e}");
    }
}

/// Reloads the configuration in place on each SIGHUP.
pub struct ReloadOnHangup(pub Arc<Runtime>);

#[async_trait]
impl BackgroundService for ReloadOnHangup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => return error!("cannot listen for SIGHUP (no in-place reload by signal): {e}"),
        };
        loop {
            tokio::select! {
                _ = hangups.recv() => {
                    info!("SIGHUP: reloading the configuration in place");
                    match self.0.reload().await {
                        Ok(report) if !report.needs_upgrade.is_empty() => warn!(
                            "changes to {} need `lb upgrade`",
                            report.needs_upgrade.join(", ")
                        ),
                        Ok(_) => {}
                        Err(e) => error!("reload refused, nothing changed: {e}"),
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Raises the soft limit on open files to the hard limit, as HAProxy does for its `maxconn`:
/// every client connection is a descriptor (two, with its backend connection), and the usual
/// soft limit of 1024 would cap lb far below its listeners' connection caps.
pub fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                log::warn!("open files stay limited to {soft}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => log::warn!("the open files limit cannot be read: {e}"),
    }
}
