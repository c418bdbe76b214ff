//! `lb upgrade`: replaces the running daemon (found through `pid_file`) with a new process of
//! this binary and configuration, without dropping a request. The configuration is checked
//! first; the running process is only signalled once the new one waits for its listeners.
//! The hand-over itself is Pingora's (`-u`, SIGQUIT, `upgrade_sock`).

use crate::cli::Cli;
use crate::config::Config;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Why an upgrade did not happen (or did not finish).
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// No live process behind the pid file.
    #[error("no running lb found: {0} (start it with `lb -d -c FILE`)")]
    NotRunning(String),
    /// The new process could not be started or gave up before taking over.
    #[error("the new lb failed before taking over ({0}); the running lb (pid {1}) is untouched")]
    NewFailedEarly(String, i32),
    /// The new process failed after the old one was told to hand over.
    #[error("the new lb failed after the hand-over began ({0}); the old lb (pid {1}) is stopping")]
    NewFailedLate(String, i32),
}

fn alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    // A zombie (exited, not yet reaped by whoever adopted it) is not running.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat
        .rsplit(')')
        .next()
        .is_some_and(|rest| rest.trim_start().starts_with('Z'))
}

fn read_pid(pid_file: &str) -> Result<i32, UpgradeError> {
    let text = std::fs::read_to_string(pid_file)
        .map_err(|e| UpgradeError::NotRunning(format!("cannot read pid file {pid_file}: {e}")))?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| UpgradeError::NotRunning(format!("pid file {pid_file} holds {:?}", text.trim())))?;
    if alive(pid) {
        Ok(pid)
    } else {
        Err(UpgradeError::NotRunning(format!(
            "pid {pid} from {pid_file} is not running"
        )))
    }
}

/// Waits until `done` holds, the child exits (its status is returned) or `limit` passes.
fn wait_for(child: &mut Child, limit: Duration, done: impl Fn() -> bool) -> Result<bool, String> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if done() {
            return Ok(true);
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("it exited with {status}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(false)
}

/// Runs the upgrade for `config` (already validated) as described by `cli`; returns a summary.
pub fn run(cli: &Cli, config: &Config, limit: Duration) -> Result<String, UpgradeError> {
    let server = &config.server;
    let old = read_pid(&server.pid_file)?;
    let sock = Path::new(&server.upgrade_sock);
    let _ = std::fs::remove_file(sock);

    let exe = std::env::current_exe().map_err(|e| UpgradeError::NewFailedEarly(e.to_string(), old))?;
    let mut new = Command::new(exe)
        .args(cli.forward_args())
        .args(["--upgrade", "--daemon"])
        .spawn()
        .map_err(|e| UpgradeError::NewFailedEarly(format!("cannot start it: {e}"), old))?;

    // The new process listens on upgrade_sock once it is ready to receive the listeners.
    match wait_for(&mut new, limit, || sock.exists()) {
        Ok(true) => {}
        Ok(false) => {
            let _ = new.kill();
            return Err(UpgradeError::NewFailedEarly(
                format!("no {} after {limit:?}", sock.display()),
                old,
            ));
        }
        Err(why) => return Err(UpgradeError::NewFailedEarly(why, old)),
    }
    kill(Pid::from_raw(old), Signal::SIGQUIT)
        .map_err(|e| UpgradeError::NewFailedEarly(format!("cannot signal pid {old}: {e}"), old))?;

    // `lb -u -d` returns once the new daemon accepts on the listeners it took over.
    match wait_for(&mut new, limit, || false) {
        Err(status) if status.ends_with("exit status: 0") => {}
        Err(status) => return Err(UpgradeError::NewFailedLate(status, old)),
        Ok(_) => return Err(UpgradeError::NewFailedLate(format!("not ready after {limit:?}"), old)),
    }
    let new_pid = read_pid(&server.pid_file).map_or_else(|e| e.to_string(), |p| p.to_string());
    let drain = Duration::from_secs(server.grace_period_seconds + server.graceful_shutdown_timeout_seconds + 10);
    let end = Instant::now() + drain;
    while alive(old) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let old_state = if alive(old) { "still draining" } else { "exited" };
    Ok(format!("upgraded: new pid {new_pid} serves; old pid {old} {old_state}"))
}
