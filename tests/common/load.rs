//! Constant load for upgrade and runtime-change tests: keep-alive and new-connection streams
//! counting answers and errors, bounded per stream, stopped by a flag.

use super::client::{empty, request, Client};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counters of a load run.
#[derive(Default)]
pub struct Load {
    pub ok: AtomicU64,
    pub errors: Mutex<Vec<String>>,
    /// Backends that answered requests sent after `mark` was set.
    pub after_mark: Mutex<std::collections::BTreeSet<String>>,
    pub mark: AtomicBool,
    pub stop: AtomicBool,
}

impl Load {
    /// Counts one answer to a request sent when `marked` was the state of `mark`.
    fn record(&self, result: Result<super::Resp, super::client::Error>, what: &str, marked: bool) -> bool {
        match result {
            Ok(resp) if resp.status == 200 => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                if marked {
                    self.after_mark.lock().unwrap().insert(resp.backend());
                }
                resp.header("connection").eq_ignore_ascii_case("close")
            }
            Ok(resp) => {
                self.errors
                    .lock()
                    .unwrap()
                    .push(format!("{what}: status {}", resp.status));
                true
            }
            Err(e) => {
                self.errors.lock().unwrap().push(format!("{what}: {e}"));
                true
            }
        }
    }
}

/// A bound on each stream, far above what a test run reaches: streams end when told to stop.
pub const MAX_PER_STREAM: usize = 200_000;

/// A keep-alive stream: reuses its connection until the server says `Connection: close`.
pub async fn keep_alive_stream(addr: SocketAddr, load: Arc<Load>) {
    let mut client: Option<Client> = None;
    for _ in 0..MAX_PER_STREAM {
        if load.stop.load(Ordering::Relaxed) {
            return;
        }
        if client.is_none() {
            match Client::connect(addr).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    load.errors.lock().unwrap().push(format!("keep-alive connect: {e}"));
                    continue;
                }
            }
        }
        let marked = load.mark.load(Ordering::Relaxed);
        let result = client.as_mut().expect("connected").get("/").await;
        if load.record(result, "keep-alive", marked) {
            client = None;
        }
    }
}

/// A stream that opens a new connection for every request.
pub async fn new_connection_stream(addr: SocketAddr, load: Arc<Load>) {
    for _ in 0..MAX_PER_STREAM {
        if load.stop.load(Ordering::Relaxed) {
            return;
        }
        let mut req = request("GET", "/", empty());
        req.headers_mut().insert("connection", "close".parse().unwrap());
        let marked = load.mark.load(Ordering::Relaxed);
        let result = match Client::connect(addr).await {
            Ok(mut c) => c.send(req).await,
            Err(e) => Err(e),
        };
        load.record(result, "new-connection", marked);
    }
}

pub fn start_load(addr: SocketAddr, streams: usize) -> (Arc<Load>, Vec<tokio::task::JoinHandle<()>>) {
    let load = Arc::new(Load::default());
    let mut tasks = Vec::new();
    for i in 0..streams {
        let load = Arc::clone(&load);
        tasks.push(if i % 2 == 0 {
            tokio::spawn(keep_alive_stream(addr, load))
        } else {
            tokio::spawn(new_connection_stream(addr, load))
        });
    }
    (load, tasks)
}
