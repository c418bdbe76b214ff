//! Idle keep-alive connections, parked. While a connection waits for its next request it needs
//! nothing of what serves a request: not Pingora's connection object (its socket digest, timing
//! and buffers), not a task, not even tokio's registration. After a short quiet spell a
//! plaintext connection moves into the front's [`Lot`]: its socket (a duplicate descriptor;
//! Pingora's object is dropped) is watched by an epoll instance of the lot's own, and all that
//! stays in memory is a small [`Entry`]. One task per lot wakes the connections whose next
//! request arrives (they become a [`Conn`] again and are served in a task of their own), closes
//! those whose client went away, and, on a coarse clock, those idle past their keep-alive
//! deadline. TLS connections are not parked (their state is the session's).

use super::conn::{Addrs, Conn};
use super::listener::Slot;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest};
use pingora_core::server::ShutdownWatch;
use slab::Slab;
use std::io;
use std::net::TcpStream as StdTcp;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};

/// How often parked connections are checked against their deadlines.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// Events taken from the lot's epoll instance at a time.
const EVENTS: usize = 256;

/// What a parked connection is woken by: data, or the client closing.
fn interest() -> EpollFlags {
    EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLONESHOT
}

/// How a connection waits in the lot.
pub struct Wait {
    /// The end of its keep-alive wait (or of its first request's header time).
    pub until: Instant,
    /// No request has arrived on it yet: `until` also bounds the first request's head.
    pub first: bool,
    /// Requests served on it so far.
    pub served: usize,
}

/// A parked connection.
struct Entry {
    socket: StdTcp,
    addrs: Addrs,
    wait: Wait,
    slot: Slot,
    /// Tells this entry from earlier ones at the same index.
    tag: u32,
}

/// A parked connection whose next request has come.
pub struct Woken {
    /// The connection, as the front serves it.
    pub conn: Box<Conn>,
    /// How it waited.
    pub wait: Wait,
    /// Its place under its listener's connection cap.
    pub slot: Slot,
}

/// The epoll instance, as tokio watches it.
struct EpollFd(Epoll);

impl AsRawFd for EpollFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0 .0.as_raw_fd()
    }
}

/// The parked connections of one front.
pub struct Lot {
    epoll: AsyncFd<EpollFd>,
    entries: Mutex<Entries>,
    /// Wakes the lot's task when a connection arrives in an empty lot (its clock runs only
    /// while it holds some).
    arrived: Notify,
}

#[derive(Default)]
struct Entries {
    slab: Slab<Entry>,
    next_tag: u32,
    /// Once the server stops: the latest any wait may end.
    limit: Option<Instant>,
}

impl Entries {
    /// Takes the entry at `index` out; the slab's memory goes back once the lot is empty.
    fn remove(&mut self, index: usize) -> Entry {
        let entry = self.slab.remove(index);
        if self.slab.is_empty() && self.slab.capacity() > 64 {
            self.slab = Slab::new();
        }
        entry
    }
}

impl Lot {
    /// An empty lot; inside the runtime that serves the front.
    pub fn new() -> io::Result<Lot> {
        let epoll = EpollFd(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?);
        // SAFETY: the descriptor is the epoll instance's own, open for as long as it is.
        let epoll = unsafe { AsyncFd::register_with_interest(epoll, Interest::READABLE) }?;
        Ok(Lot {
            epoll,
            entries: Mutex::new(Entries::default()),
            arrived: Notify::new(),
        })
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Parks `conn`, which holds nothing (no request in progress, nothing read ahead); gives
    /// it back when it is not a plaintext TCP connection. A connection that cannot be parked
    /// for want of resources (descriptors) is closed, as an idle keep-alive connection may be.
    pub fn park(&self, conn: Box<Conn>, wait: Wait, slot: Slot) -> Result<(), (Box<Conn>, Slot)> {
        let Some((fd, addrs)) = conn.parts_to_park() else {
            return Err((conn, slot));
        };
        // SAFETY: the descriptor is the open socket of `conn`, alive for this borrow.
        let duplicate = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned();
        drop(conn);
        let socket = match duplicate {
            Ok(fd) => StdTcp::from(fd),
            Err(e) => {
                log::warn!("an idle keep-alive connection closed, it could not be parked: {e}");
                return Ok(());
            }
        };
        let mut entries = self.entries();
        let wait = Wait {
            until: entries.limit.map_or(wait.until, |limit| wait.until.min(limit)),
            ..wait
        };
        let was_empty = entries.slab.is_empty();
        let tag = entries.next_tag;
        entries.next_tag = tag.wrapping_add(1);
        let vacant = entries.slab.vacant_entry();
        let key = (u64::from(tag) << 32) | vacant.key() as u64;
        if let Err(e) = self.epoll.get_ref().0.add(&socket, EpollEvent::new(interest(), key)) {
            log::warn!("an idle keep-alive connection closed, it could not be parked: {e}");
            return Ok(());
        }
        vacant.insert(Entry {
            socket,
            addrs,
            wait,
            slot,
            tag,
        });
        drop(entries);
        if was_empty {
            self.arrived.notify_one();
        }
        Ok(())
    }

    /// Runs the lot: hands each connection whose request arrives to `resume`, closes the
    /// others when their clients go or their time is up. Once the server stops, parked
    /// connections get `late` more to bring a request already on its way.
    pub async fn run(&self, mut shutdown: ShutdownWatch, late: Duration, mut resume: impl FnMut(Woken)) {
        let mut clock = tokio::time::interval(SWEEP_EVERY);
        clock.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut events = vec![EpollEvent::empty(); EVENTS];
        let mut stopping = false;
        loop {
            let empty = self.entries().slab.is_empty();
            tokio::select! {
                ready = self.epoll.readable() => match ready {
                    Ok(mut guard) => {
                        self.take_ready(&mut events, &mut resume);
                        guard.clear_ready();
                    }
                    Err(e) => {
                        log::error!("parked connections can no longer be watched: {e}");
                        return;
                    }
                },
                _ = clock.tick(), if !empty => self.sweep(Instant::now()),
                () = self.arrived.notified(), if empty => {}
                _ = shutdown.changed(), if !stopping => {
                    stopping = true;
                    self.cut_short(Instant::now() + late);
                }
            }
        }
    }

    /// Takes every event the epoll instance holds.
    fn take_ready(&self, events: &mut [EpollEvent], resume: &mut impl FnMut(Woken)) {
        loop {
            let n = self.epoll.get_ref().0.wait(events, EpollTimeout::ZERO).unwrap_or(0);
            for event in &events[..n] {
                if let Some(woken) = self.wake(event.data()) {
                    resume(woken);
                }
            }
            if n < events.len() {
                return;
            }
        }
    }

    /// The connection parked under `key` had an event: a request to serve, or its end.
    fn wake(&self, key: u64) -> Option<Woken> {
        let index = (key & u64::from(u32::MAX)) as usize;
        let mut entries = self.entries();
        let entry = entries.slab.get(index).filter(|e| u64::from(e.tag) == key >> 32)?;
        match entry.socket.peek(&mut [0u8; 1]) {
            Ok(n) if n > 0 => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut again = EpollEvent::new(interest(), key);
                if self.epoll.get_ref().0.modify(&entry.socket, &mut again).is_ok() {
                    return None;
                }
                drop(entries.remove(index));
                return None;
            }
            _ => {
                drop(entries.remove(index));
                return None;
            }
        }
        let entry = entries.remove(index);
        drop(entries);
        let _ = self.epoll.get_ref().0.delete(&entry.socket);
        let conn = resume_conn(entry.socket, entry.addrs)?;
        Some(Woken {
            conn,
            wait: entry.wait,
            slot: entry.slot,
        })
    }

    /// Closes the connections idle past their deadline.
    fn sweep(&self, now: Instant) {
        let mut entries = self.entries();
        let expired: Vec<usize> = entries
            .slab
            .iter()
            .filter(|(_, e)| e.wait.until <= now)
            .map(|(index, _)| index)
            .collect();
        let closed: Vec<Entry> = expired.into_iter().map(|index| entries.remove(index)).collect();
        drop(entries);
        drop(closed);
    }

    /// Brings every deadline to `limit` at the latest.
    fn cut_short(&self, limit: Instant) {
        let mut entries = self.entries();
        entries.limit = Some(limit);
        for (_, entry) in entries.slab.iter_mut() {
            entry.wait.until = entry.wait.until.min(limit);
        }
    }
}

/// A woken connection's socket back in tokio's hands and under Pingora's stream.
fn resume_conn(socket: StdTcp, addrs: Addrs) -> Option<Box<Conn>> {
    let tcp = TcpStream::from_std(socket).ok()?;
    let mut stream = L4Stream::from(tcp);
    let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
    let _ = digest.peer_addr.set(addrs.peer.map(SocketAddr::Inet));
    let _ = digest.local_addr.set(addrs.local.map(SocketAddr::Inet));
    stream.set_socket_digest(digest);
    let mut conn = Box::new(Conn::new(Box::new(stream)));
    if let Some(client) = addrs.client {
        conn.set_client(client);
    }
    Some(conn)
}

#[cfg(test)]
#[path = "park_tests.rs"]
mod tests;
