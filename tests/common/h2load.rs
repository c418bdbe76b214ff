//! HTTP/2 load for churn tests: streams over h2c connections (a real client, the `h2` crate)
//! that open a new connection when lb sends GOAWAY or closes. Every request ends as an answer,
//! a failure, or a retry that RFC 9113 §8.1.1 allows: a request not sent because the connection
//! was going away, or a stream a GOAWAY left unprocessed (above its last-stream-id, or reset
//! with REFUSED_STREAM).

use bytes::Bytes;
use h2::client::SendRequest;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request that takes longer than this failed (it hung).
const REQUEST_LIMIT: Duration = Duration::from_secs(15);

/// How one connection ended.
#[derive(Debug, Clone)]
pub struct H2Conn {
    /// Since the load's start.
    pub opened: Duration,
    /// When the client first saw the server's GOAWAY, since the load's start.
    pub goaway: Option<Duration>,
    pub closed: Duration,
    /// Requests answered on it.
    pub answered: u64,
    /// How the connection's driver ended ("clean" or the error).
    pub end: String,
}

/// Counters of an HTTP/2 load run.
pub struct H2Load {
    pub ok: AtomicU64,
    /// Requests not sent: the connection had received GOAWAY (retried on a new connection).
    pub not_sent: AtomicU64,
    /// Streams sent but left unprocessed by a GOAWAY or REFUSED_STREAM (retried).
    pub refused: AtomicU64,
    pub errors: Mutex<Vec<String>>,
    pub conns: Mutex<Vec<H2Conn>>,
    pub stop: AtomicBool,
    start: Instant,
}

/// What became of one attempt.
enum Attempt {
    Answered,
    /// Retried on a new connection: the connection is going away.
    Retry,
    /// Failed; `true` when the connection is unusable.
    Failed(String, bool),
}

impl H2Load {
    fn new(start: Instant) -> Self {
        H2Load {
            ok: AtomicU64::new(0),
            not_sent: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            errors: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            start,
        }
    }

    fn error(&self, what: String) {
        self.errors.lock().unwrap().push(what);
    }
}

/// Starts `conns` connection loops of `streams` concurrent streams each against `addr`; times
/// are kept relative to `start`.
pub fn start_h2_load(
    addr: SocketAddr,
    conns: usize,
    streams: usize,
    start: Instant,
) -> (Arc<H2Load>, Vec<tokio::task::JoinHandle<()>>) {
    let load = Arc::new(H2Load::new(start));
    let tasks = (0..conns)
        .map(|_| tokio::spawn(connection_loop(addr, streams, Arc::clone(&load))))
        .collect();
    (load, tasks)
}

/// One connection after the other until told to stop (bounded by the load module's bound).
async fn connection_loop(addr: SocketAddr, streams: usize, load: Arc<H2Load>) {
    for _ in 0..super::load::MAX_PER_STREAM {
        if load.stop.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = one_connection(addr, streams, &load).await {
            load.error(format!("h2 connect: {e}"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What the stream tasks of one connection share.
struct Shared {
    answered: AtomicU64,
    goaway: Mutex<Option<Duration>>,
}

/// Opens a connection and runs `streams` request loops on it until it goes away.
async fn one_connection(addr: SocketAddr, streams: usize, load: &Arc<H2Load>) -> Result<(), String> {
    let opened = load.start.elapsed();
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (sender, conn) = h2::client::handshake(tcp).await.map_err(|e| e.to_string())?;
    let driver = tokio::spawn(async move { conn.await.map_or_else(|e| e.to_string(), |()| "clean".into()) });
    let shared = Arc::new(Shared {
        answered: AtomicU64::new(0),
        goaway: Mutex::new(None),
    });
    let loops: Vec<_> = (0..streams)
        .map(|_| {
            let (sender, load, shared) = (sender.clone(), Arc::clone(load), Arc::clone(&shared));
            tokio::spawn(async move { stream_loop(sender, addr, &load, &shared).await })
        })
        .collect();
    drop(sender);
    for task in loops {
        let _ = task.await;
    }
    let end = tokio::time::timeout(REQUEST_LIMIT, driver)
        .await
        .map_or_else(|_| "still open".to_string(), |r| r.unwrap_or_default());
    let goaway = *shared.goaway.lock().unwrap();
    load.conns.lock().unwrap().push(H2Conn {
        opened,
        goaway,
        closed: load.start.elapsed(),
        answered: shared.answered.load(Ordering::Relaxed),
        end,
    });
    Ok(())
}

/// Requests one after the other on `sender` until the connection goes away or the load stops.
async fn stream_loop(mut sender: SendRequest<Bytes>, addr: SocketAddr, load: &H2Load, shared: &Shared) {
    while !load.stop.load(Ordering::Relaxed) {
        let attempt = tokio::time::timeout(REQUEST_LIMIT, attempt(&mut sender, addr, load))
            .await
            .unwrap_or_else(|_| Attempt::Failed(format!("no answer within {REQUEST_LIMIT:?}"), true));
        match attempt {
            Attempt::Answered => {
                load.ok.fetch_add(1, Ordering::Relaxed);
                shared.answered.fetch_add(1, Ordering::Relaxed);
            }
            Attempt::Retry => {
                shared.goaway.lock().unwrap().get_or_insert(load.start.elapsed());
                return;
            }
            Attempt::Failed(why, fatal) => {
                load.error(format!("h2 at {:?}: {why}", load.start.elapsed()));
                if fatal {
                    return;
                }
            }
        }
    }
}

/// Whether `e` says the request was not processed by the server, so a retry is safe: a GOAWAY
/// (graceful: h2 fails only the streams above its last-stream-id, and refuses new ones) or a
/// REFUSED_STREAM reset.
fn unprocessed(e: &h2::Error) -> bool {
    let graceful_goaway = e.is_go_away() && e.is_remote() && e.reason() == Some(h2::Reason::NO_ERROR);
    graceful_goaway || (e.is_reset() && e.reason() == Some(h2::Reason::REFUSED_STREAM))
}

/// One GET of `/` on `sender`, its body read whole.
async fn attempt(sender: &mut SendRequest<Bytes>, addr: SocketAddr, load: &H2Load) -> Attempt {
    let not_sent = |e: h2::Error| {
        if e.is_go_away() && e.is_remote() {
            load.not_sent.fetch_add(1, Ordering::Relaxed);
            Attempt::Retry
        } else {
            Attempt::Failed(format!("cannot send: {e}"), true)
        }
    };
    if let Err(e) = std::future::poll_fn(|cx| sender.poll_ready(cx)).await {
        return not_sent(e);
    }
    let req = http::Request::get(format!("http://{addr}/")).body(()).expect("request");
    let response = match sender.send_request(req, true) {
        Ok((response, _)) => response,
        Err(e) => return not_sent(e),
    };
    let resp = match response.await {
        Ok(resp) => resp,
        Err(e) if unprocessed(&e) => {
            load.refused.fetch_add(1, Ordering::Relaxed);
            return Attempt::Retry;
        }
        Err(e) => return Attempt::Failed(format!("no response: {e}"), true),
    };
    let status = resp.status();
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(chunk) => {
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            Err(e) => return Attempt::Failed(format!("body cut: {e}"), true),
        }
    }
    match status.as_u16() {
        200 => Attempt::Answered,
        other => Attempt::Failed(format!("status {other}"), false),
    }
}
