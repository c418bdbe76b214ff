//! Idle keep-alive connections to backends, for lb's own request loop ([`super::direct`]): a
//! list per backend address, used from its most recent end, with nothing running per idle
//! connection (Pingora's pool spawns a task with a lock and two channels for each, and asks the
//! kernel for the peer's address on every reuse). A connection is checked when it is taken, with
//! one non-blocking read: one the backend closed, or that has unasked-for bytes, is dropped, as
//! is one idle longer than the pool's `timeouts.idle`. Connections the backend closes while
//! nothing needs them are found at the next checkout or the next sweep.

use fnv::FnvHashMap;
use pingora_core::protocols::Stream;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, ReadBuf};

/// An idle connection.
struct Idle {
    stream: Stream,
    /// When it is closed if still idle.
    expires: Option<Instant>,
}

impl Idle {
    fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }
}

/// Idle connections by backend address, at most `cap` in all.
pub struct Upstreams {
    idle: Mutex<Lists>,
    cap: usize,
}

#[derive(Default)]
struct Lists {
    by_addr: FnvHashMap<SocketAddr, Vec<Idle>>,
    count: usize,
}

impl Upstreams {
    /// A pool keeping at most `cap` idle connections (0: none is kept).
    pub fn new(cap: usize) -> Self {
        Upstreams {
            idle: Mutex::new(Lists::default()),
            cap,
        }
    }

    /// An idle connection to `addr` that is still usable.
    pub fn take(&self, addr: SocketAddr) -> Option<Stream> {
        loop {
            let idle = {
                let mut lists = self.idle.lock().ok()?;
                let idle = lists.by_addr.get_mut(&addr)?.pop()?;
                lists.count -= 1;
                idle
            };
            if idle.expired(Instant::now()) {
                continue;
            }
            let mut stream = idle.stream;
            if usable(&mut stream) {
                return Some(stream);
            }
        }
    }

    /// Keeps `stream`, a connection to `addr` with nothing in flight, for a later request within
    /// `max_idle`; when the pool is full, the oldest connection of `addr` gives way (or `stream`
    /// is closed).
    pub fn put(&self, addr: SocketAddr, stream: Stream, max_idle: Option<Duration>) {
        if self.cap == 0 {
            return;
        }
        let dropped = {
            let Ok(mut lists) = self.idle.lock() else {
                return;
            };
            let lists = &mut *lists;
            let list = lists.by_addr.entry(addr).or_default();
            let dropped = if lists.count >= self.cap {
                if list.is_empty() {
                    return;
                }
                Some(list.remove(0))
            } else {
                lists.count += 1;
                None
            };
            list.push(Idle {
                stream,
                expires: max_idle.map(|max| Instant::now() + max),
            });
            dropped
        };
        drop(dropped);
    }

    /// Closes the connections idle past their time, or closed by their backend.
    pub fn sweep(&self) {
        let now = Instant::now();
        let stale: Vec<Idle> = {
            let Ok(mut lists) = self.idle.lock() else {
                return;
            };
            let lists = &mut *lists;
            let mut stale = Vec::new();
            for list in lists.by_addr.values_mut() {
                let mut i = 0;
                while i < list.len() {
                    if list[i].expired(now) || !usable(&mut list[i].stream) {
                        stale.push(list.remove(i));
                    } else {
                        i += 1;
                    }
                }
            }
            lists.count -= stale.len();
            lists.by_addr.retain(|_, list| !list.is_empty());
            stale
        };
        drop(stale);
    }
}

/// Whether an idle connection can carry a request: a non-blocking read finds nothing to read
/// (the backend neither closed it nor sent anything unasked).
fn usable(stream: &mut Stream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    matches!(Pin::new(stream).poll_read(&mut cx, &mut buf), Poll::Pending)
}
