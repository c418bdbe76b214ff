//! The access log: one line per request, in nginx's `combined` format followed by lb's own
//! fields ([`combined`]) or as one JSON object ([`json`]). Lines are formatted by the worker
//! into a shared buffer and written by a background service every 100 ms, so no request waits
//! on the disk. What goes into a line is the proxy's choice; this module only formats and
//! writes.

mod combined;
mod json;
mod text;

use crate::config::LogFormat;
use async_trait::async_trait;
use log::warn;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// How often buffered lines reach the file.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Lines beyond this much unwritten data are dropped (and counted) rather than held in memory
/// while the disk is stuck.
const MAX_PENDING: usize = 16 << 20;

/// What one line says about a request.
#[derive(Default)]
pub struct Entry<'a> {
    /// The client's address.
    pub client: Option<IpAddr>,
    /// The request method, e.g. `GET`.
    pub method: &'a str,
    /// The request target (path and query), e.g. `/a?b`.
    pub target: &'a [u8],
    /// The protocol version, e.g. `HTTP/1.1`.
    pub version: &'a str,
    /// Status sent to the client (0 when none was).
    pub status: u16,
    /// Body bytes sent to the client.
    pub bytes: usize,
    /// `Referer` header.
    pub referer: Option<&'a [u8]>,
    /// `User-Agent` header.
    pub user_agent: Option<&'a [u8]>,
    /// The pool, if the request was routed.
    pub pool: Option<&'a str>,
    /// The last backend tried.
    pub upstream: Option<std::net::SocketAddr>,
    /// Attempts made.
    pub tries: usize,
    /// Time from the request to the end of the response.
    pub total: Duration,
    /// Time from sending to the backend to its response header.
    pub upstream_time: Option<Duration>,
    /// The route's label (its name, `routes[N]` when it has none), if the request was routed.
    pub route: Option<&'a str>,
    /// The request's id (`X-Request-Id`).
    pub request_id: Option<&'a [u8]>,
    /// The request's trace id (W3C trace context), when lb knows one.
    pub trace_id: Option<u128>,
}

/// An access log file with its pending lines.
pub struct AccessLog {
    path: PathBuf,
    format: LogFormat,
    pending: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    file: Mutex<Option<File>>,
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

impl AccessLog {
    /// A log appending lines in `format` to `path` (created if needed; checked by `preflight`).
    pub fn new(path: &Path, format: LogFormat) -> Arc<Self> {
        Arc::new(AccessLog {
            path: path.to_path_buf(),
            format,
            pending: Mutex::new(Vec::with_capacity(64 << 10)),
            dropped: AtomicU64::new(0),
            file: Mutex::new(None),
        })
    }

    /// Formats `entry` and queues the line.
    pub fn record(&self, entry: &Entry) {
        SCRATCH.with(|scratch| {
            let mut line = scratch.borrow_mut();
            line.clear();
            match self.format {
                LogFormat::Combined => combined::line(&mut line, entry, SystemTime::now()),
                LogFormat::Json => json::line(&mut line, entry, SystemTime::now()),
            }
            let Ok(mut pending) = self.pending.lock() else { return };
            if pending.len() + line.len() > MAX_PENDING {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                pending.extend_from_slice(&line);
            }
        });
    }

    /// Writes everything queued so far.
    pub fn flush(&self) {
        let batch = match self.pending.lock() {
            Ok(mut pending) if !pending.is_empty() => std::mem::replace(&mut *pending, Vec::with_capacity(64 << 10)),
            _ => return,
        };
        let Ok(mut file) = self.file.lock() else { return };
        if file.is_none() {
            match open(&self.path) {
                Ok(f) => *file = Some(f),
                Err(e) => return warn!("access log {}: {e}", self.path.display()),
            }
        }
        if let Some(f) = file.as_mut() {
            if let Err(e) = f.write_all(&batch) {
                warn!("access log {}: {e}", self.path.display());
            }
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            warn!(
                "access log {}: {dropped} lines dropped (the disk did not keep up)",
                self.path.display()
            );
        }
    }
}

/// Opens the log for appending. `/dev/stdout` and `/dev/stderr` use the descriptors the process
/// already has: an unprivileged process cannot reopen them when they are pipes owned by root, as
/// in a container.
pub fn open(path: &Path) -> std::io::Result<File> {
    use std::os::fd::AsFd;
    match path.to_str() {
        Some("/dev/stdout") => Ok(File::from(std::io::stdout().as_fd().try_clone_to_owned()?)),
        Some("/dev/stderr") => Ok(File::from(std::io::stderr().as_fd().try_clone_to_owned()?)),
        _ => OpenOptions::new().create(true).append(true).open(path),
    }
}

/// Writes every log's pending lines: registered so an exit can flush them first.
pub fn flush_all() {
    if let Some(logs) = REGISTRY.get() {
        if let Ok(logs) = logs.lock() {
            logs.iter().for_each(|log| log.flush());
        }
    }
}

static REGISTRY: OnceLock<Mutex<Vec<Arc<AccessLog>>>> = OnceLock::new();

/// Background service writing `log` every [`FLUSH_EVERY`], and once more at shutdown.
pub struct AccessLogService(pub Arc<AccessLog>);

#[async_trait]
impl BackgroundService for AccessLogService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if let Ok(mut logs) = REGISTRY.get_or_init(Mutex::default).lock() {
            logs.push(Arc::clone(&self.0));
        }
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => self.0.flush(),
                _ = shutdown.changed() => break,
            }
        }
        self.0.flush();
    }
}
