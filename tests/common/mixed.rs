//! Every kind of client at once, for churn tests: keep-alive and new-connection HTTP/1.1
//! streams, HTTP/2 streams over h2c and WebSocket clients, started and stopped together.

use super::h2load::{start_h2_load, H2Load};
use super::load::{keep_alive_stream, new_connection_stream, Load};
use super::wsload::{start_ws_load, WsLoad};
use super::{eventually, PATIENCE};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every load of a run, with their tasks.
pub struct Loads {
    pub keep_alive: Arc<Load>,
    pub new_conn: Arc<Load>,
    pub h2: Arc<H2Load>,
    pub ws: Arc<WsLoad>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Loads {
    /// Starts `h1` keep-alive and `h1` new-connection streams, `h2_conns` HTTP/2 connections
    /// of `h2_streams` streams and `ws` WebSocket clients against `addr`; times are kept
    /// relative to `start`.
    pub fn start(
        addr: SocketAddr,
        h1: usize,
        (h2_conns, h2_streams): (usize, usize),
        ws: usize,
        start: Instant,
    ) -> Loads {
        let (keep_alive, new_conn) = (Arc::new(Load::default()), Arc::new(Load::default()));
        let mut tasks = Vec::new();
        for _ in 0..h1 {
            tasks.push(tokio::spawn(keep_alive_stream(addr, Arc::clone(&keep_alive))));
            tasks.push(tokio::spawn(new_connection_stream(addr, Arc::clone(&new_conn))));
        }
        let (h2, h2_tasks) = start_h2_load(addr, h2_conns, h2_streams, start);
        let (ws, ws_tasks) = start_ws_load(addr, ws, start);
        tasks.extend(h2_tasks.into_iter().chain(ws_tasks));
        Loads {
            keep_alive,
            new_conn,
            h2,
            ws,
            tasks,
        }
    }

    /// Answers so far: keep-alive, new-connection, HTTP/2, WebSocket echoes.
    pub fn counts(&self) -> [u64; 4] {
        [
            self.keep_alive.ok.load(Ordering::Relaxed),
            self.new_conn.ok.load(Ordering::Relaxed),
            self.h2.ok.load(Ordering::Relaxed),
            self.ws.echoed.load(Ordering::Relaxed),
        ]
    }

    /// Waits until each HTTP load got `each` more answers and the WebSockets `ws` more echoes.
    pub async fn progress(&self, each: u64, ws: u64) {
        let before = self.counts();
        let moved = eventually(PATIENCE, async || {
            let now = self.counts();
            (0..3).all(|i| now[i] >= before[i] + each) && now[3] >= before[3] + ws
        })
        .await;
        assert!(moved, "a load stalled: {before:?} then {:?}", self.counts());
    }

    /// Stops every load and waits for its tasks (a hung client fails the test).
    pub async fn stop(mut self) -> Loads {
        self.keep_alive.stop.store(true, Ordering::Relaxed);
        self.new_conn.stop.store(true, Ordering::Relaxed);
        self.h2.stop.store(true, Ordering::Relaxed);
        self.ws.stop.store(true, Ordering::Relaxed);
        for task in std::mem::take(&mut self.tasks) {
            let ended = tokio::time::timeout(PATIENCE, task).await;
            assert!(ended.is_ok_and(|r| r.is_ok()), "a client hung or panicked");
        }
        self
    }

    /// Prints the GOAWAYs HTTP/2 connections saw and the WebSockets lb closed between `from`
    /// and `to` (since the load's start).
    pub fn report_window(&self, from: Duration, to: Duration) {
        for c in self.h2.conns.lock().unwrap().iter() {
            if let Some(goaway) = c.goaway.filter(|g| (from..=to).contains(g)) {
                eprintln!(
                    "    HTTP/2 connection opened {:.1?}: GOAWAY at {goaway:.1?} (+{:.1?}), closed {:.1?} ({}), {} answered",
                    c.opened,
                    goaway - from,
                    c.closed,
                    c.end,
                    c.answered
                );
            }
        }
        for c in self.ws.conns.lock().unwrap().iter() {
            if c.by_lb && (from..=to).contains(&c.closed) {
                eprintln!(
                    "    WebSocket {} to {} opened {:.1?}: closed by lb {:.1?} (+{:.1?}), {} echoed, {} ({})",
                    c.client,
                    c.backend,
                    c.opened,
                    c.closed,
                    c.closed - from,
                    c.echoed,
                    if c.lost { "1 message lost" } else { "nothing lost" },
                    c.how
                );
            }
        }
    }
}
