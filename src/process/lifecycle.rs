//! The process's life around Pingora's: counting in-flight requests, draining client
//! connections once an upgrade or stop begins, announcing readiness (to a waiting `lb -d`
//! parent) only when the listeners accept, and leaving as soon as the last request is done.
//! Signals themselves are Pingora's; request handling is `proxy`'s.

use crate::request::traffic::Traffic;
use async_trait::async_trait;
use log::{info, warn};
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::{ExecutionPhase, ShutdownWatch};
use pingora_core::services::background::BackgroundService;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// How long the process must have no request in flight after a stop began before it exits.
const QUIET_BEFORE_EXIT: Duration = Duration::from_millis(200);
/// After the accept loops stop, how long connections accepted just before get for their first
/// request to arrive before Pingora drops every connection still waiting for one.
const LATE_REQUEST_WINDOW: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(20);
/// How long the listeners get to accept a probe connection before readiness is given up.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// State shared by the proxy wrapper and the lifecycle service.
#[derive(Default)]
pub struct Lifecycle {
    /// Requests in flight and the draining flag, shared with the proxy.
    pub traffic: Arc<Traffic>,
    /// Set once the proxy dropped its idle connections after the accept loops stopped.
    connections_closed: AtomicBool,
}

impl Lifecycle {
    /// A fresh state, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Lifecycle::default())
    }
}

/// The proxy application with a gentler end: Pingora aborts every connection still waiting for
/// a request as soon as the accept loops stop, including connections accepted a moment before
/// whose first request is still in transit, which a client sees as a reset. This waits
/// [`LATE_REQUEST_WINDOW`] first, so those requests are read and answered (with
/// `Connection: close`) — the piece that makes an upgrade under load lose nothing.
pub struct Draining<A> {
    inner: Arc<A>,
    life: Arc<Lifecycle>,
}

impl<A> Draining<A> {
    /// Wraps `app`, reporting the end to `life`.
    pub fn new(app: A, life: Arc<Lifecycle>) -> Self {
        Draining {
            inner: Arc::new(app),
            life,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Draining<A> {
    async fn process_new(self: &Arc<Self>, session: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        tokio::time::sleep(LATE_REQUEST_WINDOW).await;
        self.inner.cleanup().await;
        self.life.connections_closed.store(true, Ordering::Release);
    }
}

/// Removes `pid_file` (and its `.old` twin left by an upgrade) if it names this process.
pub fn remove_pid_file(pid_file: &str) {
    let me = std::process::id().to_string();
    for path in [PathBuf::from(pid_file), PathBuf::from(format!("{pid_file}.old"))] {
        let ours = std::fs::read_to_string(&path).is_ok_and(|text| text.trim() == me);
        if ours {
            let _ = std::fs::remove_file(&path);
        }
    }
}

extern "C" fn ignore_signal(_: nix::libc::c_int) {}

/// Makes SIGUSR1 harmless in this process until Pingora's `lb -d` parent listens for it: its
/// default action would kill the parent if the daemon got ready before the parent's handler
/// was registered. Called before the fork; the daemon then repeats the signal.
pub fn survive_early_ready_signal() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(SigHandler::Handler(ignore_signal), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handler does nothing, so it is async-signal-safe; this runs before any thread.
    if let Err(e) = unsafe { sigaction(Signal::SIGUSR1, &action) } {
        warn!("cannot install a SIGUSR1 handler: {e}");
    }
}

/// Tells the `lb -d` parent (pid `pid`) that this daemon is ready: SIGUSR1, repeated until the
/// parent has exited, since it may not be listening yet.
async fn notify_ready(pid: u32) {
    use nix::sys::signal::{kill, Signal};
    let target = nix::unistd::Pid::from_raw(pid as i32);
    let deadline = tokio::time::Instant::now() + READY_LIMIT;
    while tokio::time::Instant::now() < deadline {
        if kill(target, Signal::SIGUSR1).is_err() {
            return; // gone: it got the message and exited
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    warn!("the starting process (pid {pid}) did not exit after being told lb is ready");
}

/// The address to probe a listener on: wildcard addresses are reached through loopback.
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Whether a socket of this process listens on `addr`'s port (from `/proc/net/tcp{,6}`): how
/// TLS listeners are probed, since a probe connection without a handshake would be logged as a
/// failed one.
fn listening(addr: SocketAddr) -> bool {
    let port = format!(":{:04X} ", addr.port());
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table).is_ok_and(|text| {
            text.lines().skip(1).any(|line| {
                let mut fields = line.split_whitespace();
                let local = fields.nth(1).unwrap_or("");
                let state = fields.nth(1).unwrap_or("");
                format!("{local} ").ends_with(&port) && state == "0A"
            })
        })
    })
}

/// Waits until `addr` accepts connections (`tls`: until it listens), at most [`READY_LIMIT`].
async fn accepting(addr: SocketAddr, tls: bool) -> bool {
    let deadline = tokio::time::Instant::now() + READY_LIMIT;
    while tokio::time::Instant::now() < deadline {
        let up = if tls {
            listening(addr)
        } else {
            tokio::net::TcpStream::connect(probe_addr(addr)).await.is_ok()
        };
        if up {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    false
}

/// Background service: follows Pingora's phases, reports readiness, exits early when idle.
pub struct LifecycleService {
    life: Arc<Lifecycle>,
    /// The proxy's listeners, with whether they are TLS.
    listeners: Vec<(SocketAddr, bool)>,
    /// The admin and metrics listeners: ready means they accept too.
    others: Vec<SocketAddr>,
    /// The `lb -d` process waiting for SIGUSR1, if any.
    notify_pid: Option<u32>,
    pid_file: String,
    phases: Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

impl LifecycleService {
    /// A service for `life` serving on `listeners` (and `others`: admin, metrics); `phases`
    /// comes from `Server::watch_execution_phase`.
    pub fn new(
        life: Arc<Lifecycle>,
        listeners: Vec<(SocketAddr, bool)>,
        others: Vec<SocketAddr>,
        notify_pid: Option<u32>,
        pid_file: &str,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) -> Self {
        LifecycleService {
            life,
            listeners,
            others,
            notify_pid,
            pid_file: pid_file.to_string(),
            phases: Mutex::new(Some(phases)),
        }
    }

    async fn announce_ready(&self) {
        let all = self
            .listeners
            .iter()
            .copied()
            .chain(self.others.iter().map(|a| (*a, false)));
        for (addr, tls) in all {
            if !accepting(addr, tls).await {
                warn!("listener {addr} does not accept connections");
                return;
            }
        }
        let scheme = |tls: bool| if tls { "https" } else { "http" };
        let list: Vec<String> = self
            .listeners
            .iter()
            .map(|(a, tls)| format!("{}://{a}", scheme(*tls)))
            .collect();
        info!("lb ready (pid {}), serving on {}", std::process::id(), list.join(", "));
        if let Some(pid) = self.notify_pid {
            tokio::spawn(notify_ready(pid));
        }
    }

    /// After shutdown was broadcast: exit once the proxy has let go of its idle connections
    /// and nothing has been in flight for a short while, instead of sleeping out the whole grace
    /// period (which stays the upper bound).
    async fn exit_when_idle(&self) {
        let mut quiet = Duration::ZERO;
        while quiet < QUIET_BEFORE_EXIT {
            tokio::time::sleep(POLL).await;
            let idle = self.life.traffic.inflight() == 0 && self.life.connections_closed.load(Ordering::Acquire);
            quiet = if idle { quiet + POLL } else { Duration::ZERO };
        }
        info!("no request in flight, exiting");
        crate::request::access_log::flush_all();
        remove_pid_file(&self.pid_file);
        std::process::exit(0);
    }
}

fn follow_phases(life: Arc<Lifecycle>, mut phases: broadcast::Receiver<ExecutionPhase>) {
    tokio::spawn(async move {
        loop {
            match phases.recv().await {
                Ok(ExecutionPhase::GracefulUpgradeTransferringFds) => life
                    .traffic
                    .start_draining("graceful upgrade: listeners handed to the new process"),
                Ok(ExecutionPhase::GracefulTerminate) => life.traffic.start_draining("graceful stop"),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

#[async_trait]
impl BackgroundService for LifecycleService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        super::memory::restart_background_threads();
        if let Some(phases) = self.phases.lock().ok().and_then(|mut p| p.take()) {
            follow_phases(Arc::clone(&self.life), phases);
        }
        self.announce_ready().await;
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        self.life.traffic.start_draining("stopping");
        self.exit_when_idle().await;
    }
}

/// Whether `path`'s directory exists and can be written, for pid files and logs.
pub fn dir_writable(path: &Path) -> bool {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_probed_on_loopback() {
        assert_eq!(
            probe_addr("0.0.0.0:80".parse().unwrap()),
            "127.0.0.1:80".parse().unwrap()
        );
        assert_eq!(probe_addr("[::]:80".parse().unwrap()), "[::1]:80".parse().unwrap());
        assert_eq!(
            probe_addr("10.1.1.1:80".parse().unwrap()),
            "10.1.1.1:80".parse().unwrap()
        );
    }

    #[test]
    fn only_our_own_pid_file_is_removed() {
        let dir = std::env::temp_dir().join(format!("lb-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ours = dir.join("ours.pid");
        let theirs = dir.join("theirs.pid");
        std::fs::write(&ours, format!("{}\n", std::process::id())).unwrap();
        std::fs::write(&theirs, "1\n").unwrap();
        remove_pid_file(ours.to_str().unwrap());
        remove_pid_file(theirs.to_str().unwrap());
        assert!(!ours.exists() && theirs.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
