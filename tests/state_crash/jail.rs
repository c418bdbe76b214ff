//! A state directory the test can make read-only under a running lb, as root and as another
//! user. chmod does not stop root, so as root lb runs in a mount namespace of its own where the
//! directory is a bind mount of itself, remounted read-only (`EROFS`, as a disk that fails and
//! goes read-only); as another user, the directory is chmod 0555 (`EACCES`).

use super::common::{Guard, LB};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How the directory is made read-only.
pub struct Jail {
    pub dir: PathBuf,
    /// Root: a read-only bind mount in lb's mount namespace; else chmod.
    pub as_root: bool,
}

impl Jail {
    pub fn new(dir: &Path) -> Jail {
        std::fs::create_dir_all(dir).expect("state directory");
        Jail {
            dir: dir.to_path_buf(),
            as_root: nix::unistd::Uid::effective().is_root(),
        }
    }

    /// Starts `lb -c conf`, its log appended to `log`; as root in its own mount namespace,
    /// where the directory is a mount of its own (the process is lb itself: `unshare` and the
    /// shell exec it).
    pub fn spawn_lb(&self, conf: &Path, log: &Path) -> Guard {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let mut command = if self.as_root {
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg(r#"mount --bind "$1" "$1" && exec "$2" -c "$3""#)
                .arg("sh")
                .args([self.dir.as_os_str(), Path::new(LB).as_os_str(), conf.as_os_str()]);
            c
        } else {
            let mut c = Command::new(LB);
            c.arg("-c").arg(conf);
            c
        };
        command.env("RUST_LOG", "info").stdout(Stdio::null()).stderr(log);
        Guard(command.spawn().expect("spawn lb"))
    }

    /// Makes the directory read-only (`true`) or writable again for lb, process `pid`.
    pub fn set_read_only(&self, pid: u32, read_only: bool) {
        let status = if self.as_root {
            let flags = if read_only {
                "remount,bind,ro"
            } else {
                "remount,bind,rw"
            };
            // --root: lb's root directory, not the namespace's; entering a mount namespace
            // moves the caller to the namespace's root, which in a chroot (CI's fresh root) is
            // the host's, where neither this mount nor the directory's path is.
            Command::new("nsenter")
                .args(["-t", &pid.to_string(), "-m", "--root", "mount", "-o", flags])
                .arg(&self.dir)
                .status()
        } else {
            let mode = if read_only { "0555" } else { "0755" };
            Command::new("chmod").arg(mode).arg(&self.dir).status()
        };
        assert!(status.expect("run mount or chmod").success(), "read-only {read_only}");
    }

    /// The OS error lb gets when it writes in the read-only directory.
    pub fn os_error(&self) -> &'static str {
        if self.as_root {
            "Read-only file system (os error 30)"
        } else {
            "Permission denied (os error 13)"
        }
    }
}

impl Drop for Jail {
    fn drop(&mut self) {
        // So that the temporary directory can be removed after a failed test.
        if !self.as_root {
            let _ = Command::new("chmod").arg("0755").arg(&self.dir).status();
        }
    }
}
