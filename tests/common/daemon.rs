//! Daemons started by a test (`lb -d`), killed on drop if still alive.

use super::{run_lb, signal, write_config, TempDir};
use std::net::SocketAddr;

/// A daemon started by a test: killed on drop if still alive.
pub struct Daemon {
    pub pid: u32,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if alive(self.pid) {
            signal(self.pid, "KILL");
        }
    }
}

/// Whether `pid` runs (a zombie does not count).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

pub fn read_pid(path: &std::path::Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Starts `lb -d` and returns once `lb -d` itself returned.
pub fn start_daemon(dir: &TempDir, yaml: &str, listen: SocketAddr) -> (Daemon, String) {
    let conf = write_config(dir, yaml, listen);
    let (status, _, err) = run_lb(&["-d", "-c", conf.to_str().unwrap()]);
    let log = std::fs::read_to_string(dir.path("error.log")).unwrap_or_default();
    assert!(status.success(), "lb -d failed: {err}\n{log}");
    let pid = read_pid(&dir.path("lb.pid"));
    assert!(pid > 0 && alive(pid), "pid file names no live process:\n{log}");
    (Daemon { pid }, conf.display().to_string())
}
