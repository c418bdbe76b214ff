//! A hostile backend for `tests/hostile_backends.rs`: the first request of each connection gets
//! the next misbehaviour of a list, and a later request on the same connection (lb reusing a
//! connection it should have closed) gets a plain `200` and is counted; it counts connections,
//! request heads and the connections that ended (lb closed them, or the script did).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the backend does with the first request of a connection (it never reads a request body:
/// body bytes are read and thrown away while it waits for another head).
#[derive(Clone, Debug)]
pub enum Act {
    /// Writes the bytes and keeps the connection open for more requests.
    Send(Vec<u8>),
    /// Writes `unit` `times` times, then `tail`, and keeps the connection open.
    Flood { unit: Vec<u8>, times: usize, tail: Vec<u8> },
    /// Writes the bytes, then closes its side (FIN).
    SendClose(Vec<u8>),
    /// Writes the bytes, waits a little (so they go out alone), then resets the connection (RST).
    SendReset(Vec<u8>),
    /// Writes the bytes, then reads nothing for `Act::DEAF` (lb's writes of a large request body
    /// block), then reads on.
    SendDeaf(Vec<u8>),
    /// Never answers.
    Silent,
}

impl Act {
    /// How long [`Act::SendDeaf`] reads nothing.
    pub const DEAF: Duration = Duration::from_secs(3);
}

/// Counters of a hostile backend.
#[derive(Default)]
pub struct Counts {
    connections: AtomicUsize,
    requests: AtomicUsize,
    reused: AtomicUsize,
    ended: AtomicUsize,
}

/// A hostile backend on a loopback port.
pub struct Hostile {
    pub addr: SocketAddr,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl Hostile {
    /// Starts a backend whose n-th connection gets `acts[n % acts.len()]`.
    pub async fn start(acts: Vec<Act>) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let counts = Arc::new(Counts::default());
        let seen = Arc::clone(&counts);
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else { return };
                let n = seen.connections.fetch_add(1, Ordering::SeqCst);
                let act = acts[n % acts.len()].clone();
                tokio::spawn(serve(conn, act, Arc::clone(&seen)));
            }
        });
        Hostile { addr, counts, task }
    }

    /// Connections accepted.
    pub fn connections(&self) -> usize {
        self.counts.connections.load(Ordering::SeqCst)
    }

    /// Request heads received, on all connections.
    pub fn requests(&self) -> usize {
        self.counts.requests.load(Ordering::SeqCst)
    }

    /// Request heads that came on a connection that had carried a request already.
    pub fn reused(&self) -> usize {
        self.counts.reused.load(Ordering::SeqCst)
    }

    /// Connections that ended (closed or reset by either side).
    pub fn ended(&self) -> usize {
        self.counts.ended.load(Ordering::SeqCst)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// At most this much of a body is kept while a head is looked for.
const KEEP: usize = 64 << 10;

async fn serve(mut conn: TcpStream, act: Act, counts: Arc<Counts>) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    let mut heads = 0;
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            heads += 1;
            counts.requests.fetch_add(1, Ordering::SeqCst);
            let going = if heads == 1 {
                play(&mut conn, &act).await
            } else {
                counts.reused.fetch_add(1, Ordering::SeqCst);
                let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nreused";
                conn.write_all(ok).await.is_ok()
            };
            if !going {
                counts.ended.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
        if buf.len() > KEEP {
            buf.drain(..buf.len() - 3);
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                counts.ended.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Plays `act`; false when the connection is over.
async fn play(conn: &mut TcpStream, act: &Act) -> bool {
    match act {
        Act::Send(bytes) => conn.write_all(bytes).await.is_ok(),
        Act::Flood { unit, times, tail } => {
            let batch: Vec<u8> = unit.repeat(64);
            let mut left = *times;
            while left > 0 {
                let n = left.min(64);
                if conn.write_all(&batch[..n * unit.len()]).await.is_err() {
                    return false;
                }
                left -= n;
            }
            conn.write_all(tail).await.is_ok()
        }
        Act::SendClose(bytes) => {
            let _ = conn.write_all(bytes).await;
            let _ = conn.shutdown().await;
            // Reading on shows when lb closes its side.
            true
        }
        Act::SendReset(bytes) => {
            let _ = conn.write_all(bytes).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = conn.set_zero_linger();
            false
        }
        Act::SendDeaf(bytes) => {
            let going = conn.write_all(bytes).await.is_ok();
            tokio::time::sleep(Act::DEAF).await;
            going
        }
        Act::Silent => true,
    }
}
