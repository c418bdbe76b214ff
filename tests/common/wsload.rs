//! WebSocket clients for churn tests: each sends a message every [`PERIOD`] on `/ws` (the demo
//! backend's echo) and expects it back, opens a new connection when lb closes its own, and
//! records every connection: when it opened and closed, and whether a message was lost with it.

use super::ws::{receive, try_connect, try_send};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Time between two messages of a client.
pub const PERIOD: Duration = Duration::from_millis(100);
/// An echo that takes longer than this is lost (the tunnel hangs).
const ECHO_LIMIT: Duration = Duration::from_secs(5);

/// One WebSocket connection, as it ended.
#[derive(Debug, Clone)]
pub struct WsConn {
    pub client: usize,
    /// The backend that answered the handshake (its `X-Backend`).
    pub backend: String,
    /// Since the load's start.
    pub opened: Duration,
    pub closed: Duration,
    /// Messages echoed on it.
    pub echoed: u64,
    /// Whether a message sent on it got no echo.
    pub lost: bool,
    /// Whether lb (not the client) ended it.
    pub by_lb: bool,
    pub how: String,
}

/// Counters of a WebSocket load.
pub struct WsLoad {
    pub echoed: AtomicU64,
    pub lost: AtomicU64,
    pub conns: Mutex<Vec<WsConn>>,
    pub errors: Mutex<Vec<String>>,
    pub stop: AtomicBool,
    start: Instant,
}

impl WsLoad {
    fn error(&self, what: String) {
        self.errors.lock().unwrap().push(what);
    }
}

/// Starts `clients` WebSocket clients against `addr`; times are kept relative to `start`.
pub fn start_ws_load(
    addr: SocketAddr,
    clients: usize,
    start: Instant,
) -> (Arc<WsLoad>, Vec<tokio::task::JoinHandle<()>>) {
    let load = Arc::new(WsLoad {
        echoed: AtomicU64::new(0),
        lost: AtomicU64::new(0),
        conns: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        start,
    });
    let tasks = (0..clients)
        .map(|id| tokio::spawn(client_loop(id, addr, Arc::clone(&load))))
        .collect();
    (load, tasks)
}

/// Connections one after the other until told to stop (bounded).
async fn client_loop(id: usize, addr: SocketAddr, load: Arc<WsLoad>) {
    for _ in 0..super::load::MAX_PER_STREAM {
        if load.stop.load(Ordering::Relaxed) {
            return;
        }
        match try_connect(addr, "/ws").await {
            Ok((conn, head)) if head.starts_with("HTTP/1.1 101") => {
                let backend = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("x-backend:")
                            .map(|v| v.trim().to_string())
                    })
                    .unwrap_or_default();
                let ended = session(id, backend, conn, &load).await;
                load.conns.lock().unwrap().push(ended);
            }
            Ok((_, head)) => load.error(format!("ws handshake: {}", head.lines().next().unwrap_or(""))),
            Err(e) => load.error(format!("ws connect: {e}")),
        }
    }
}

/// Messages on `conn` until lb closes it or the load stops.
async fn session(client: usize, backend: String, mut conn: TcpStream, load: &WsLoad) -> WsConn {
    let mut ended = WsConn {
        client,
        backend,
        opened: load.start.elapsed(),
        closed: Duration::ZERO,
        echoed: 0,
        lost: false,
        by_lb: true,
        how: String::new(),
    };
    ended.how = exchange(&mut conn, load, &mut ended).await;
    ended.closed = load.start.elapsed();
    ended
}

/// Runs the exchange until it ends; says how it ended.
async fn exchange(conn: &mut TcpStream, load: &WsLoad, ended: &mut WsConn) -> String {
    for seq in 0..super::load::MAX_PER_STREAM {
        if load.stop.load(Ordering::Relaxed) {
            ended.by_lb = false;
            return "the client stopped".into();
        }
        // Between messages, a read notices a close at once (nothing else may come).
        let mut byte = [0u8; 1];
        tokio::select! {
            () = tokio::time::sleep(PERIOD) => {}
            read = conn.read(&mut byte) => return match read {
                Ok(0) => "closed while idle".into(),
                Ok(_) => {
                    load.error("ws: a frame came unasked".into());
                    "unasked frame".into()
                }
                Err(e) => format!("reset while idle: {e}"),
            },
        }
        let text = format!("c{}-{seq}", ended.client);
        if let Err(e) = try_send(conn, &text).await {
            return format!("write failed: {e}");
        }
        match tokio::time::timeout(ECHO_LIMIT, receive(conn)).await {
            Ok(Ok((1, echo))) if echo == text => {
                ended.echoed += 1;
                load.echoed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(other)) => {
                load.error(format!("ws: sent {text:?}, got {other:?}"));
                return "wrong echo".into();
            }
            Ok(Err(e)) => {
                ended.lost = true;
                load.lost.fetch_add(1, Ordering::Relaxed);
                return format!("closed with a message unanswered: {e}");
            }
            Err(_) => {
                ended.lost = true;
                load.lost.fetch_add(1, Ordering::Relaxed);
                load.error(format!("ws: no echo of {text:?} within {ECHO_LIMIT:?}"));
                return "echo timed out".into();
            }
        }
    }
    ended.by_lb = false;
    "the message bound was reached".into()
}
