//! Lingering close, as nginx's `lingering_close`: when lb answers before it has read the whole
//! request (a 413 for a body too large, any 4xx of a bad head with a body behind it, a 429, a
//! 503 from a full queue, a backend's early answer), closing the socket at once with the client's
//! data still unread makes the kernel send a reset, and a reset that reaches the client before
//! it reads the answer destroys the answer. So the connection is handed to a task that sends
//! what is pending, closes lb's side of it (a FIN after the answer) and reads and discards what
//! the client still sends, until it closes, until nothing came for `lingering_timeout`, or until
//! `lingering_time` or `lingering_size` is used up; then it closes.
//!
//! Lingering holds a file descriptor and a small task, but no listener slot: at most
//! [`MAX_LINGERING`] connections linger at once (beyond, they close at once, counted).

use pingora_core::protocols::{Shutdown, Stream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

/// Most connections lingering at once.
pub const MAX_LINGERING: usize = 16_384;

/// The bounds of a lingering close (`clients.lingering_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linger {
    /// The whole lingering, at most (nginx's `lingering_time`).
    pub time: Duration,
    /// The longest wait for more data (nginx's `lingering_timeout`).
    pub timeout: Duration,
    /// The most bytes read and discarded.
    pub bytes: u64,
}

/// Lingering closes so far, and now.
#[derive(Debug, Default)]
pub struct LingerStats {
    now: AtomicUsize,
    /// Ended by the client's close (or a failed read).
    closed: AtomicU64,
    /// Ended by a bound (time, quiet, size) rather than by the client's close.
    cut: AtomicU64,
    /// Closed at once: too many were lingering.
    refused: AtomicU64,
}

impl LingerStats {
    /// `(lingering now, ended by the client, ended by a bound, closed at once for lack of room)`.
    pub fn read(&self) -> (usize, u64, u64, u64) {
        (
            self.now.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed),
            self.cut.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

/// The process's lingering closes (every listener's).
pub static STATS: LingerStats = LingerStats {
    now: AtomicUsize::new(0),
    closed: AtomicU64::new(0),
    cut: AtomicU64::new(0),
    refused: AtomicU64::new(0),
};

/// A place among the lingering connections, given back on drop.
struct Place;

impl Place {
    fn take() -> Option<Place> {
        let taken = STATS.now.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
            (n < MAX_LINGERING).then_some(n + 1)
        });
        match taken {
            Ok(_) => Some(Place),
            Err(_) => {
                STATS.refused.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        STATS.now.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Closes `stream` lingering within `linger`, after writing `pending` to it, in a task of its
/// own; without a runtime, or with too many lingering already, it closes at once.
pub fn close(stream: Stream, pending: Vec<u8>, linger: Linger) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let Some(place) = Place::take() else { return };
    runtime.spawn(async move {
        let _place = place;
        let end = if run(stream, pending, linger).await {
            &STATS.closed
        } else {
            &STATS.cut
        };
        end.fetch_add(1, Ordering::Relaxed);
    });
}

/// Lingers on `stream` in this task: whether the client closed (or failed) within the bounds.
pub async fn run(mut stream: Stream, pending: Vec<u8>, linger: Linger) -> bool {
    let end = Instant::now() + linger.time;
    if !pending.is_empty() && timeout_at(end, stream.write_all(&pending)).await.is_err() {
        return false;
    }
    if timeout_at(end, Shutdown::shutdown(&mut *stream)).await.is_err() {
        return false;
    }
    // nginx's lingering buffer is 4 KiB too: at most 64 MiB for all that may linger at once.
    let mut buf = vec![0u8; 4 << 10];
    let mut left = linger.bytes;
    loop {
        let quiet = (Instant::now() + linger.timeout).min(end);
        match timeout_at(quiet, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(n)) if (n as u64) < left => left -= n as u64,
            Ok(Ok(_)) | Err(_) => return false,
        }
    }
}
