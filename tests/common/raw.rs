//! Raw HTTP over TCP for the conformance tests: a client that writes exact bytes and reads what
//! comes back (with the time each piece arrived), and a scripted backend that answers every
//! connection with exact bytes and records what it received.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes received, with the time since sending of each read.
pub struct Answer {
    pub bytes: Vec<u8>,
    pub reads: Vec<(Duration, usize)>,
    /// Whether the server closed the connection.
    pub closed: bool,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The status of the first response (0 if none).
    pub fn status(&self) -> u16 {
        self.statuses().first().copied().unwrap_or(0)
    }

    /// The statuses of every response, in order (status lines at the start of a line).
    pub fn statuses(&self) -> Vec<u16> {
        let text = self.text();
        let mut out = Vec::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("HTTP/1.1 ") {
            let code = rest[at + 9..].get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            out.push(code);
            rest = &rest[at + 12..];
        }
        out
    }

    /// The value of header `name` in the first response.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next()?;
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Writes `request` to `addr` and reads until the server closes or `quiet` passes without a
/// byte (the whole read bounded by 30 s).
pub async fn send(addr: SocketAddr, request: &[u8], quiet: Duration) -> Answer {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(request).await.expect("write");
    read_all(&mut conn, quiet).await
}

/// Reads from `conn` until it closes or `quiet` passes without a byte.
pub async fn read_all(conn: &mut TcpStream, quiet: Duration) -> Answer {
    let started = Instant::now();
    let mut answer = Answer {
        bytes: Vec::new(),
        reads: Vec::new(),
        closed: false,
    };
    let mut buf = vec![0u8; 65536];
    while started.elapsed() < Duration::from_secs(30) {
        match tokio::time::timeout(quiet, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                answer.closed = true;
                break;
            }
            Ok(Ok(n)) => {
                answer.bytes.extend_from_slice(&buf[..n]);
                answer.reads.push((started.elapsed(), n));
            }
            Err(_) => break,
        }
    }
    answer
}

/// A backend that answers each connection with a script and records every request head.
pub struct RawBackend {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

/// What a scripted backend does on each connection once a request head arrived: writes each
/// part after its delay; `None` as the script means accept and never answer.
pub type Script = Option<Vec<(Duration, Vec<u8>)>>;

impl RawBackend {
    /// Starts a backend on a free loopback port that plays `script` to every connection.
    pub async fn start(script: Script) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&received);
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else { return };
                tokio::spawn(play(conn, script.clone(), Arc::clone(&seen)));
            }
        });
        RawBackend { addr, received, task }
    }

    /// Request heads received so far.
    pub fn requests(&self) -> Vec<String> {
        let got = self.received.lock().expect("lock");
        got.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect()
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn play(mut conn: TcpStream, script: Script, seen: Arc<Mutex<Vec<Vec<u8>>>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    seen.lock().expect("lock").push(head);
    let Some(parts) = script else {
        // Accept, read, never answer (until the other side gives up).
        let _ = conn.read(&mut buf).await;
        tokio::time::sleep(Duration::from_secs(120)).await;
        return;
    };
    for (delay, bytes) in parts {
        tokio::time::sleep(delay).await;
        if conn.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = conn.shutdown().await;
}
