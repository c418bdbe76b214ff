//! PID 1 in a container. A process cannot replace itself, and when PID 1 exits the container
//! stops, so `lb` started as PID 1 stays a small supervisor (as nginx's master process): it runs
//! the real `lb` as a child, forwards stop signals and SIGHUP (an in-place reload) to it, reaps
//! orphans, and on SIGUSR2 (nginx's binary-upgrade signal) performs a graceful upgrade to a new
//! child with the (re-read, checked) configuration. The server
//! itself knows nothing of this.

use crate::cli::Cli;
use log::{error, info, warn};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// Set in the environment of the children, so they serve instead of supervising.
pub const CHILD_ENV: &str = "LB_SUPERVISED";
/// How long a new child may take to wait on the upgrade socket.
const UPGRADE_LIMIT: Duration = Duration::from_secs(30);

/// Whether this process should supervise: it is PID 1 and not itself a supervised child.
pub fn wanted() -> bool {
    std::process::id() == 1 && std::env::var_os(CHILD_ENV).is_none()
}

struct Supervisor {
    exe: PathBuf,
    cli: Cli,
    current: Pid,
    /// Children handed over by an upgrade, finishing their requests.
    retiring: Vec<Pid>,
    /// Exit codes of reaped children not yet looked at.
    exited: HashMap<Pid, i32>,
}

fn spawn(exe: &Path, args: &[String]) -> std::io::Result<Pid> {
    let child = Command::new(exe).args(args).env(CHILD_ENV, "1").spawn()?;
    // Reaped through waitpid(-1) below, never through `Child`.
    Ok(Pid::from_raw(child.id() as i32))
}

fn exit_code(status: WaitStatus) -> Option<(Pid, i32)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid, code)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid, 128 + sig as i32)),
        _ => None,
    }
}

impl Supervisor {
    /// Collects every exited child (ours or orphans adopted by PID 1).
    fn reap(&mut self) {
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            match exit_code(status) {
                Some((pid, code)) => {
                    self.exited.insert(pid, code);
                }
                None => break,
            }
        }
        self.retiring.retain(|pid| !self.exited.contains_key(pid));
    }

    fn forward_current(&self, sig: Signal) {
        let _ = kill(self.current, sig);
    }

    fn forward(&self, sig: Signal) {
        for &pid in std::iter::once(&self.current).chain(&self.retiring) {
            let _ = kill(pid, sig);
        }
    }

    /// SIGUSR2: re-read and check the configuration, start a child that takes over the
    /// listeners, then tell the current one to hand them over.
    async fn upgrade(&mut self) -> Result<(), String> {
        let config = self.cli.config().map_err(|e| e.to_string())?;
        crate::process::preflight::check(&config, &self.cli.source(), false).map_err(|e| e.to_string())?;
        let sock = PathBuf::from(&config.server.upgrade_sock);
        let _ = std::fs::remove_file(&sock);
        let mut args = self.cli.forward_args();
        args.push("--upgrade".into());
        let new = spawn(&self.exe, &args).map_err(|e| format!("cannot start: {e}"))?;
        let deadline = tokio::time::Instant::now() + UPGRADE_LIMIT;
        while !sock.exists() {
            self.reap();
            if let Some(code) = self.exited.remove(&new) {
                return Err(format!("the new lb exited with {code}"));
            }
            if tokio::time::Instant::now() > deadline {
                let _ = kill(new, Signal::SIGKILL);
                return Err(format!("the new lb did not open {}", sock.display()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        kill(self.current, Signal::SIGQUIT).map_err(|e| e.to_string())?;
        info!("upgrade: pid {new} takes over from pid {}", self.current);
        self.retiring.push(self.current);
        self.current = new;
        Ok(())
    }
}

/// Supervises `lb` with the configuration `cli` describes; returns the exit code of the last
/// serving child.
pub fn run(cli: Cli) -> std::io::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(supervise(cli))
}

async fn supervise(cli: Cli) -> std::io::Result<i32> {
    let exe = std::env::current_exe()?;
    let current = spawn(&exe, &cli.forward_args())?;
    info!("supervising lb pid {current} as PID 1; SIGHUP reloads it in place, SIGUSR2 upgrades it gracefully");
    let mut sup = Supervisor {
        exe,
        cli,
        current,
        retiring: Vec::new(),
        exited: HashMap::new(),
    };
    let (mut hup, mut term) = (signal(SignalKind::hangup())?, signal(SignalKind::terminate())?);
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let (mut int, mut quit) = (signal(SignalKind::interrupt())?, signal(SignalKind::quit())?);
    let mut chld = signal(SignalKind::child())?;
    loop {
        tokio::select! {
            _ = hup.recv() => sup.forward_current(Signal::SIGHUP),
            _ = usr2.recv() => if let Err(e) = sup.upgrade().await {
                error!("upgrade refused, pid {} keeps serving: {e}", sup.current);
            },
            _ = term.recv() => sup.forward(Signal::SIGTERM),
            _ = quit.recv() => sup.forward(Signal::SIGTERM),
            _ = int.recv() => sup.forward(Signal::SIGINT),
            _ = chld.recv() => {}
        }
        sup.reap();
        if let Some(code) = sup.exited.remove(&sup.current) {
            sup.finish_retiring(&mut chld).await;
            return Ok(code);
        }
        // The rest are retired processes and orphans reaped as PID 1: nothing to keep.
        sup.exited.clear();
    }
}

impl Supervisor {
    /// The serving child is gone: give the draining ones their grace period, then leave.
    async fn finish_retiring(&mut self, chld: &mut tokio::signal::unix::Signal) {
        if self.retiring.is_empty() {
            return;
        }
        warn!(
            "the serving lb exited while {} older one(s) still drain",
            self.retiring.len()
        );
        let deadline = tokio::time::Instant::now() + UPGRADE_LIMIT;
        while !self.retiring.is_empty() && tokio::time::Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(200), chld.recv()).await;
            self.reap();
        }
    }
}
