//! Test harness: real `lb` and `lb-demo` processes on loopback ports, killed on drop; an HTTP
//! client that can bind a chosen 127.0.0.x source; polling with deadlines instead of sleeps.
#![allow(dead_code)]

pub mod admin;
pub mod certs;
pub mod client;
pub mod daemon;
pub mod etcd;
pub mod h2load;
pub mod h2raw;
pub mod hostile;
pub mod load;
pub mod mixed;
pub mod raw;
/// The random generator the unit tests use too (one file).
#[path = "../../src/testing/rng.rs"]
pub mod rng;
pub mod watch;
pub mod webdriver;
pub mod ws;
pub mod wsload;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[allow(unused_imports)]
pub use client::{get, Client, Resp};

/// The `lb` binary under test.
pub const LB: &str = env!("CARGO_BIN_EXE_lb");
/// The demo backend binary.
pub const DEMO: &str = env!("CARGO_BIN_EXE_lb-demo");

/// A generous deadline for anything that should happen "soon" on a busy machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The value of `sample` (a metric name with its labels, e.g. `lb_retries_total{pool="web"}`)
/// in a Prometheus exposition `text`.
pub fn metric_value(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; true if it held.
pub async fn eventually(limit: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Guard(pub Child);

impl Guard {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends signal `sig` (e.g. "TERM", "QUIT", "INT").
    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `sig` to process `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lb-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A loopback address for an admin listener, the same for every config written here.
    pub fn admin_addr(&self) -> SocketAddr {
        self.named_addr("admin")
    }

    /// A loopback address named `name` (`{name}` in a config), the same for every config
    /// written here.
    pub fn named_addr(&self, name: &str) -> SocketAddr {
        let file = self.path(&format!(".addr-{name}"));
        if let Some(addr) = std::fs::read_to_string(&file).ok().and_then(|t| t.trim().parse().ok()) {
            return addr;
        }
        let addr = free_addr();
        std::fs::write(&file, addr.to_string()).expect("write admin address");
        addr
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback address free right now, for a listener of lb, a demo backend, or a backend that
/// must be down.
///
/// Ports come from just below the kernel's ephemeral range, in turn from a per-process start:
/// a port released by "bind :0" could be handed out again to a client socket (say while a killed
/// backend waits for its restart), while ports below the range are never handed out by the kernel.
pub fn free_addr() -> SocketAddr {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let low: usize = range
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(32768);
    let (base, span) = (
        low.saturating_sub(12_000).max(1024),
        12_000.min(low.saturating_sub(1024)).max(1),
    );
    let start = (std::process::id() as usize * 7919) % span;
    for _ in 0..span {
        let port = base + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port as u16)) {
            return l.local_addr().expect("local addr");
        }
    }
    panic!("no free port below the ephemeral range");
}

/// A demo backend process.
pub struct Demo {
    pub name: String,
    pub addr: SocketAddr,
    proc: Option<Guard>,
    extra: Vec<String>,
}

impl Demo {
    /// Starts backend `name` on a free loopback port.
    pub fn start(name: &str) -> Demo {
        Self::start_with(name, &[])
    }

    /// Starts backend `name` with extra `lb-demo` flags (e.g. `--delay 5ms`), on a port from
    /// [`free_addr`] rather than the ephemeral range, so that a restart finds its port free.
    pub fn start_with(name: &str, extra: &[&str]) -> Demo {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for _ in 0..5 {
            if let Some((proc, addr)) = try_spawn_demo(name, free_addr(), &extra) {
                return Demo {
                    name: name.to_string(),
                    addr,
                    proc: Some(proc),
                    extra,
                };
            }
        }
        panic!("lb-demo {name} did not start");
    }

    /// Starts backend `name` on `addr` (any loopback address), or `None` if it cannot listen there.
    pub fn start_at(name: &str, addr: SocketAddr) -> Option<Demo> {
        let (proc, addr) = try_spawn_demo(name, addr, &[])?;
        Some(Demo {
            name: name.to_string(),
            addr,
            proc: Some(proc),
            extra: Vec::new(),
        })
    }

    /// Kills the process; its port stops answering.
    pub fn kill(&mut self) {
        self.proc = None;
    }

    /// Starts it again on the same address.
    pub fn restart(&mut self) {
        let end = Instant::now() + PATIENCE;
        loop {
            if let Some((proc, _)) = try_spawn_demo(&self.name, self.addr, &self.extra) {
                self.proc = Some(proc);
                return;
            }
            assert!(Instant::now() < end, "could not restart {} on {}", self.name, self.addr);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A counter from the backend's `/_demo/stats` (`inflight`, `connections`, ...).
    pub async fn stat(&self, field: &str) -> Option<u64> {
        let text = get(self.addr, "/_demo/stats").await.ok()?.text();
        let rest = text.split(&format!("\"{field}\":")).nth(1)?;
        rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    }

    /// `address: ...` YAML line content.
    pub fn yaml(&self) -> String {
        format!("{{address: \"{}\"}}", self.addr)
    }
}

fn try_spawn_demo(name: &str, addr: SocketAddr, extra: &[String]) -> Option<(Guard, SocketAddr)> {
    let child = Command::new(DEMO)
        .args(extra)
        .arg(format!("{name}={addr}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn lb-demo");
    let mut guard = Guard(child);
    let stdout = guard.0.stdout.take()?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).ok()?;
    let addr = line.trim().rsplit("http://").next()?.parse().ok()?;
    Some((guard, addr))
}

/// A running `lb` with its own config file, listener, pid file and log.
pub struct Lb {
    pub addr: SocketAddr,
    pub dir: TempDir,
    pub proc: Guard,
    /// The command line it was started with.
    pub args: Vec<String>,
    /// The environment changes it was started with (`None`: removed), kept by [`Lb::restart`].
    pub env: Vec<(String, Option<String>)>,
}

/// `lb` with `args`, `RUST_LOG=info` and the environment changes `env`, its log appended to `log`.
fn lb_command(args: &[String], env: &[(String, Option<String>)], log: std::fs::File) -> Command {
    let mut command = Command::new(LB);
    command.args(args).env("RUST_LOG", "info");
    for (name, value) in env {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command.stdout(Stdio::null()).stderr(log);
    command
}

impl Lb {
    /// Starts `lb -c` on `yaml`, where `{listen}` is replaced by a free loopback address and
    /// `{dir}` by the test's directory; adds a `server:` section with test-friendly settings when
    /// there is none. Returns once the listener accepts connections.
    pub fn start(yaml: &str) -> Lb {
        Self::start_args(yaml, &[])
    }

    /// As [`Lb::start`], with extra command-line flags.
    pub fn start_args(yaml: &str, args: &[&str]) -> Lb {
        Self::start_env(yaml, args, &[])
    }

    /// As [`Lb::start_args`], with environment variables set (`Some`) or removed (`None`).
    pub fn start_env(yaml: &str, args: &[&str], env: &[(&str, Option<&str>)]) -> Lb {
        for _ in 0..3 {
            if let Some(lb) = Self::try_start(yaml, args, env) {
                return lb;
            }
        }
        panic!("lb did not start");
    }

    fn try_start(yaml: &str, args: &[&str], env: &[(&str, Option<&str>)]) -> Option<Lb> {
        let dir = TempDir::new("lb");
        let addr = free_addr();
        let conf = write_config(&dir, yaml, addr);
        let mut all = vec!["-c".to_string(), conf.display().to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        Self::launch_env(dir, addr, &all, env)
    }

    /// Starts `lb` without a file: `--listen` on a free address plus `args` (e.g. `--backend`).
    pub fn start_quick(args: &[String]) -> Lb {
        for _ in 0..3 {
            let addr = free_addr();
            let mut all = vec!["--listen".to_string(), addr.to_string()];
            all.extend(args.iter().cloned());
            if let Some(lb) = Self::launch(TempDir::new("quick"), addr, &all) {
                return lb;
            }
        }
        panic!("lb did not start");
    }

    fn launch(dir: TempDir, addr: SocketAddr, args: &[String]) -> Option<Lb> {
        Self::launch_env(dir, addr, args, &[])
    }

    fn launch_env(dir: TempDir, addr: SocketAddr, args: &[String], env: &[(&str, Option<&str>)]) -> Option<Lb> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path("lb.log"))
            .expect("log file");
        let env: Vec<_> = env
            .iter()
            .map(|(name, value)| (name.to_string(), value.map(str::to_string)))
            .collect();
        let child = lb_command(args, &env, log).spawn().expect("spawn lb");
        let mut lb = Lb {
            addr,
            dir,
            proc: Guard(child),
            args: args.to_vec(),
            env,
        };
        match lb.wait_listening() {
            true => Some(lb),
            false if lb.log().contains("cannot listen") => None,
            false => panic!("lb did not start:\n{}", lb.log()),
        }
    }

    /// The admin listener's address (the `{admin}` of the config).
    pub fn admin(&self) -> SocketAddr {
        self.dir.admin_addr()
    }

    /// Stops it with SIGTERM and waits for its exit.
    pub fn stop(&mut self) -> ExitStatus {
        if let Ok(Some(status)) = self.proc.0.try_wait() {
            return status;
        }
        self.proc.signal("TERM");
        self.proc.wait_exit(PATIENCE).expect("lb did not stop")
    }

    /// Stops it and starts it again in the same directory with the same command line and
    /// environment (and so the same config file, addresses, state file and request loop); the
    /// log is appended to.
    pub fn restart(mut self) -> Lb {
        self.stop();
        let Lb {
            addr, dir, args, env, ..
        } = self;
        let end = Instant::now() + PATIENCE;
        let mut dir = Some(dir);
        loop {
            let current = dir.take().expect("dir");
            let log_path = current.path("lb.log");
            let before = std::fs::read_to_string(&log_path)
                .unwrap_or_default()
                .matches("lb ready")
                .count();
            let log = std::fs::OpenOptions::new().append(true).open(&log_path).expect("log");
            let child = lb_command(&args, &env, log).spawn().expect("spawn lb");
            let mut lb = Lb {
                addr,
                dir: current,
                proc: Guard(child),
                args: args.clone(),
                env: env.clone(),
            };
            if lb.wait_ready_again(before) {
                return lb;
            }
            assert!(Instant::now() < end, "lb did not start again:\n{}", lb.log());
            let Lb { dir: d, .. } = lb;
            dir = Some(d);
        }
    }

    fn wait_ready_again(&mut self, before: usize) -> bool {
        let end = Instant::now() + PATIENCE;
        while Instant::now() < end {
            if let Ok(Some(_)) = self.proc.0.try_wait() {
                return false;
            }
            if self.log().matches("lb ready").count() > before && TcpStream::connect(self.addr).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn wait_listening(&mut self) -> bool {
        let end = Instant::now() + PATIENCE;
        while Instant::now() < end {
            if let Ok(Some(_)) = self.proc.0.try_wait() {
                return false;
            }
            // "lb ready" too: a connection alone could reach another process that took the port.
            if TcpStream::connect(self.addr).is_ok() && self.log().contains("lb ready") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Everything `lb` logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("lb.log")).unwrap_or_default()
    }

    /// Peak resident memory of the process so far, in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.proc.pid(), "VmHWM:")
    }
}

/// Sends `n` GETs of `path` to `lb` over one connection, each answered 200, and counts the
/// answers per backend name.
pub async fn tally(lb: &Lb, path: &str, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut client = Client::connect(lb.addr).await.expect("connect to lb");
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        let resp = client.get(path).await.expect("request");
        assert_eq!(resp.status, 200, "{}", resp.text());
        *counts.entry(resp.backend()).or_insert(0) += 1;
    }
    counts
}

/// Writes the config for a test: placeholders filled, test server settings added.
pub fn write_config(dir: &TempDir, yaml: &str, listen: SocketAddr) -> PathBuf {
    let d = dir.0.display().to_string();
    let mut text = yaml.replace("{listen}", &listen.to_string()).replace("{dir}", &d);
    for name in ["admin", "tls", "other"] {
        let placeholder = format!("{{{name}}}");
        if text.contains(&placeholder) {
            text = text.replace(&placeholder, &dir.named_addr(name).to_string());
        }
    }
    if !text.contains("server:") {
        text.push_str(&format!(
            "\nserver: {{threads: 2, pid_file: {d}/lb.pid, upgrade_sock: {d}/upgrade.sock, \
             grace_period_seconds: 1, graceful_shutdown_timeout_seconds: 1}}\n"
        ));
    }
    let path = dir.path("lb.yaml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A field of /proc/PID/status in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// How long a command-line run of `lb` (`-t`, `-d`, `upgrade`, `probe`) may take before the
/// test fails and the process is killed.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Runs `lb` with `args` (at log level info) to completion, within [`RUN_LIMIT`]:
/// (exit status, stdout, stderr).
pub fn run_lb(args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Command::new(LB)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lb");
    let out = read_all(child.stdout.take());
    let err = read_all(child.stderr.take());
    let mut guard = Guard(child);
    let status = guard
        .wait_exit(RUN_LIMIT)
        .unwrap_or_else(|| panic!("lb {args:?} still running after {RUN_LIMIT:?}"));
    (status, out.join().unwrap_or_default(), err.join().unwrap_or_default())
}

/// Reads `pipe` to its end on a thread of its own.
fn read_all(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// The directory of the crate (for `conf/`).
pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Times of log lines containing `needle`, from env_logger's `[2026-11-21T05:11:51.937Z ...`.
pub fn log_times(log: &str, needle: &str) -> Vec<SystemTime> {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| parse_log_time(l.get(1..24)?))
        .collect()
}

/// `2026-11-21T05:11:51.937` (UTC) as a `SystemTime`.
fn parse_log_time(t: &str) -> Option<SystemTime> {
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    // Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let millis = (((days * 24 + hh) * 60 + mm) * 60 + ss) * 1000 + ms;
    Some(UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).ok()?))
}

/// Runs Prometheus' `promtool check metrics` (Debian's prometheus package) on `text`: its verdict
/// and what it said.
pub fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing: run scripts/setup (Debian package prometheus)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}
