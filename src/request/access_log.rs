//! The access log: one line per request, nginx's `combined` format followed by lb's own fields
//! (`pool=`, `upstream=` the last backend tried, `tries=`, `rt=` total and `urt=` backend
//! seconds). Lines are formatted by the worker into a shared buffer and written by a background
//! service every 100 ms, so no request waits on the disk. What goes into a line is the proxy's
//! choice; this module only formats and writes.

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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often buffered lines reach the file.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Lines beyond this much unwritten data are dropped (and counted) rather than held in memory
/// while the disk is stuck.
const MAX_PENDING: usize = 16 << 20;

/// What one line says about a request.
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
}

/// An access log file with its pending lines.
pub struct AccessLog {
    path: PathBuf,
    pending: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    file: Mutex<Option<File>>,
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

impl AccessLog {
    /// A log appending to `path` (created if needed; checked by `preflight`).
    pub fn new(path: &Path) -> Arc<Self> {
        Arc::new(AccessLog {
            path: path.to_path_buf(),
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
            format_line(&mut line, entry, SystemTime::now());
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

fn format_line(out: &mut Vec<u8>, e: &Entry, now: SystemTime) {
    match e.client {
        Some(ip) => push_ip(out, ip.to_canonical()),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" - - [");
    clf_time(out, now);
    out.extend_from_slice(b"] \"");
    out.extend_from_slice(e.method.as_bytes());
    out.push(b' ');
    escaped(out, e.target);
    out.push(b' ');
    out.extend_from_slice(e.version.as_bytes());
    out.extend_from_slice(b"\" ");
    push_u64(out, e.status.into());
    out.push(b' ');
    push_u64(out, e.bytes as u64);
    out.extend_from_slice(b" \"");
    escaped(out, e.referer.unwrap_or(b"-"));
    out.extend_from_slice(b"\" \"");
    escaped(out, e.user_agent.unwrap_or(b"-"));
    out.extend_from_slice(b"\" pool=");
    out.extend_from_slice(e.pool.unwrap_or("-").as_bytes());
    out.extend_from_slice(b" upstream=");
    match e.upstream {
        Some(addr) => {
            push_ip(out, addr.ip());
            out.push(b':');
            push_u64(out, addr.port().into());
        }
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" tries=");
    push_u64(out, e.tries as u64);
    out.extend_from_slice(b" rt=");
    push_secs(out, e.total);
    out.extend_from_slice(b" urt=");
    match e.upstream_time {
        Some(t) => push_secs(out, t),
        None => out.push(b'-'),
    }
    out.push(b'\n');
}

// Hand-written number formatting: `write!` costs ~1k instructions a field, most of the line.

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Seconds with millisecond precision: `0.003`.
fn push_secs(out: &mut Vec<u8>, d: Duration) {
    let ms = d.as_millis() as u64;
    push_u64(out, ms / 1000);
    out.push(b'.');
    let frac = ms % 1000;
    out.extend_from_slice(&[
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_u64(out, octet.into());
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "[{v6}]");
        }
    }
}

/// Bytes from the client as nginx logs them: quotes, backslashes and non-printables as `\xHH`.
fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b);
        }
    }
}

thread_local! {
    /// The last second formatted, and its text: formatting a date once per second per thread.
    static CLF: RefCell<(u64, [u8; 26])> = const { RefCell::new((u64::MAX, [0; 26])) };
}

/// `21/Nov/2026:05:18:12 +0000`.
fn clf_time(out: &mut Vec<u8>, now: SystemTime) {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CLF.with(|cell| {
        let mut cache = cell.borrow_mut();
        if cache.0 != secs {
            let mut text = [0u8; 26];
            let _ = write!(&mut text[..], "{}", Utc(secs));
            *cache = (secs, text);
        }
        out.extend_from_slice(&cache.1);
    })
}

/// A UTC time in the common log format.
struct Utc(u64);

impl std::fmt::Display for Utc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let days = (self.0 / 86_400) as i64;
        let rem = self.0 % 86_400;
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let name = MONTHS[(month - 1) as usize];
        write!(
            f,
            "{day:02}/{name}/{year}:{:02}:{:02}:{:02} +0000",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_in_the_common_log_format() {
        assert_eq!(Utc(0).to_string(), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(Utc(1_795_237_911).to_string(), "21/Nov/2026:05:11:51 +0000");
        assert_eq!(Utc(951_782_400).to_string(), "29/Feb/2000:00:00:00 +0000");
    }

    #[test]
    fn numbers_addresses_and_seconds() {
        let mut out = Vec::new();
        push_u64(&mut out, 0);
        out.push(b' ');
        push_u64(&mut out, 18_446_744_073_709_551_615);
        out.push(b' ');
        push_secs(&mut out, Duration::from_micros(12_345_678));
        out.push(b' ');
        push_ip(&mut out, "10.200.3.4".parse().unwrap());
        out.push(b' ');
        push_ip(&mut out, "::1".parse().unwrap());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "0 18446744073709551615 12.345 10.200.3.4 [::1]"
        );
    }

    #[test]
    fn a_line_is_combined_format_plus_lb_fields() {
        let entry = Entry {
            client: Some("::ffff:10.0.0.7".parse().unwrap()),
            method: "GET",
            target: b"/a?q=\"x\"",
            version: "HTTP/1.1",
            status: 200,
            bytes: 12,
            referer: None,
            user_agent: Some(b"curl/8"),
            pool: Some("web"),
            upstream: Some("127.0.0.1:9001".parse().unwrap()),
            tries: 1,
            total: Duration::from_millis(3),
            upstream_time: Some(Duration::from_millis(2)),
        };
        let mut out = Vec::new();
        format_line(&mut out, &entry, UNIX_EPOCH + Duration::from_secs(1_795_237_911));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "10.0.0.7 - - [21/Nov/2026:05:11:51 +0000] \"GET /a?q=\\x22x\\x22 HTTP/1.1\" 200 12 \"-\" \"curl/8\" \
             pool=web upstream=127.0.0.1:9001 tries=1 rt=0.003 urt=0.002\n"
        );
    }
}
