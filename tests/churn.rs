//! Reload and upgrade churn through the real daemon: 20 in-place reloads (SIGHUP, `lb reload`,
//! `POST /api/v1/reload`) that rebuild the pools (a backend added, weights changed, a backend
//! removed), most of them while an `lb upgrade` drains the old process, and 2 upgrades, while
//! keep-alive and new-connection HTTP/1.1 loads, HTTP/2 streams over h2c and WebSocket clients
//! run. No HTTP request fails, HTTP/2 clients retry only what a GOAWAY said was not processed,
//! WebSockets are closed only by an old process at the end of its grace period (a tunnel
//! outlives its backend's removal by a reload), and every reload reaches the serving process.
//! What each kind of client saw is printed.

mod common;

use common::admin::Api;
use common::client::Client;
use common::daemon::{alive, read_pid, start_daemon, Daemon};
use common::mixed::Loads;
use common::wsload::WsLoad;
use common::{eventually, run_lb, signal, write_config, Demo, TempDir, PATIENCE};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The old process's grace period: how long WebSocket tunnels may stay on it after Pingora's
/// 5 s hand-over window.
const GRACE_S: u64 = 2;
/// Reloads before the first upgrade, and during each upgrade's drain.
const RELOADS: [usize; 3] = [7, 7, 6];

/// A pool of one configuration: (backend, weight).
type Pool<'a> = Vec<(&'a Demo, u32)>;

/// The pools of one configuration: `web` for HTTP requests, `live` for WebSockets (`/ws`).
struct Step<'a> {
    web: Pool<'a>,
    live: Pool<'a>,
}

/// Both pools as lb's admin API lists them: (address, weight) of `web`, then of `live`.
type Members = [BTreeSet<(String, u64)>; 2];

impl Step<'_> {
    fn yaml(&self) -> String {
        let list = |pool: &Pool| {
            let items: Vec<String> = pool
                .iter()
                .map(|(d, w)| format!("{{address: \"{}\", weight: {w}}}", d.addr))
                .collect();
            items.join(", ")
        };
        format!(
            "server: {{daemon: true, pid_file: {{dir}}/lb.pid, upgrade_sock: {{dir}}/upgrade.sock, \
             error_log: {{dir}}/error.log, threads: 2, grace_period_seconds: {GRACE_S}, \
             graceful_shutdown_timeout_seconds: 1}}
listeners: [{{address: \"{{listen}}\", h2c: true}}]
admin: {{address: \"{{admin}}\"}}
upstreams:
  web:
    backends: [{}]
    health_check: {{path: /healthz, interval: 500ms}}
  live:
    backends: [{}]
    health_check: {{path: /healthz, interval: 500ms}}
routes:
  - {{path_prefix: /ws, upstream: live}}
  - {{upstream: web}}
",
            list(&self.web),
            list(&self.live)
        )
    }

    fn members(&self) -> Members {
        let set = |pool: &Pool| pool.iter().map(|(d, w)| (d.addr.to_string(), u64::from(*w))).collect();
        [set(&self.web), set(&self.live)]
    }
}

/// The pools of the process that is serving (not draining), asked over one admin connection
/// whose `/readyz` said so; `None` when the connection reached a draining process.
async fn serving_members(admin: SocketAddr) -> Option<Members> {
    let mut client = Client::connect(admin).await.ok()?;
    if client.get("/readyz").await.ok()?.status != 200 {
        return None;
    }
    let mut both = [BTreeSet::new(), BTreeSet::new()];
    for (set, pool) in both.iter_mut().zip(["web", "live"]) {
        let resp = client.get(&format!("/api/v1/pools/{pool}")).await.ok()?;
        let json: serde_json::Value = serde_json::from_slice(&resp.body).ok()?;
        for b in json["backends"].as_array()? {
            set.insert((b["address"].as_str()?.to_string(), b["weight"].as_u64()?));
        }
    }
    Some(both)
}

/// The three ways to ask for a reload.
#[derive(Debug, Clone, Copy)]
enum Way {
    Hangup,
    Command,
    Api,
}

const WAYS: [Way; 3] = [Way::Hangup, Way::Command, Way::Api];

/// One `lb upgrade`: when it started and returned (since the test's start), the pids.
#[derive(Debug)]
struct Upgrade {
    began: Duration,
    returned: Duration,
    old: u32,
    new: u32,
}

/// An `lb upgrade` under way, its new process serving.
struct Pending {
    run: tokio::task::JoinHandle<(std::process::ExitStatus, String, String)>,
    began: Duration,
    old: u32,
    new: u32,
}

/// The daemon under churn and what was done to it.
struct Churn<'a> {
    steps: &'a [Step<'a>],
    dir: TempDir,
    listen: SocketAddr,
    conf: String,
    api: Api,
    start: Instant,
    /// Configurations applied (reloads and upgrades).
    n: usize,
    by_way: [usize; 3],
    /// `POST /api/v1/reload`s answered 503 by a process handing over (then retried).
    refused: usize,
    /// When reloads took c out of both pools.
    removals: Vec<Duration>,
    daemons: Vec<Daemon>,
    upgrades: Vec<Upgrade>,
}

impl<'a> Churn<'a> {
    /// Writes the next configuration; returns its step.
    fn next_step(&mut self) -> &'a Step<'a> {
        self.n += 1;
        let step = &self.steps[self.n % self.steps.len()];
        write_config(&self.dir, &step.yaml(), self.listen);
        step
    }

    fn reloads(&self) -> usize {
        self.by_way.iter().sum()
    }

    /// Reloads the next configuration (the ways in turn); returns once the serving process has
    /// its pools.
    async fn reload(&mut self) {
        let step = self.next_step();
        let i = self.reloads() % WAYS.len();
        match WAYS[i] {
            Way::Hangup => signal(read_pid(&self.dir.path("lb.pid")), "HUP"),
            Way::Command => {
                let conf = self.conf.clone();
                let (status, out, err) = tokio::task::spawn_blocking(move || run_lb(&["reload", "-c", &conf]))
                    .await
                    .unwrap();
                assert!(status.success() && out.contains("reloaded:"), "lb reload: {out}{err}");
            }
            Way::Api => self.post_reload().await,
        }
        self.by_way[i] += 1;
        let want = step.members();
        let applied = eventually(PATIENCE, async || {
            serving_members(self.api.addr).await == Some(want.clone())
        })
        .await;
        assert!(
            applied,
            "{:?}: the pools are {:?}, not {want:?}",
            WAYS[i],
            serving_members(self.api.addr).await
        );
        if self.n % self.steps.len() == 2 {
            self.removals.push(self.start.elapsed());
        }
    }

    /// `POST /api/v1/reload`, retried while a process handing over answers 503 (as it asks).
    async fn post_reload(&mut self) {
        for _ in 0..100 {
            match self.api.json("POST", "/api/v1/reload", None).await {
                (200, _) => return,
                (503, _) => self.refused += 1,
                (status, json) => panic!("POST /api/v1/reload: {status} {json}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("POST /api/v1/reload: 503 a hundred times");
    }

    /// Starts `lb upgrade` to the next configuration; returns once the new process serves (the
    /// old one drains).
    async fn begin_upgrade(&mut self) -> Pending {
        self.next_step();
        let old = read_pid(&self.dir.path("lb.pid"));
        let began = self.start.elapsed();
        let conf = self.conf.clone();
        let run = tokio::task::spawn_blocking(move || run_lb(&["upgrade", "-c", &conf]));
        let log = self.dir.path("error.log");
        let pid_file = self.dir.path("lb.pid");
        let ready = eventually(PATIENCE, async || {
            let pid = read_pid(&pid_file);
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            pid != old && pid != 0 && text.contains(&format!("lb ready (pid {pid})"))
        })
        .await;
        let new = read_pid(&pid_file);
        self.daemons.push(Daemon { pid: new });
        assert!(ready, "no new process serves after lb upgrade began");
        Pending { run, began, old, new }
    }

    /// Waits for `lb upgrade` to return: the old process has exited.
    async fn finish_upgrade(&mut self, pending: Pending) {
        let (status, out, err) = pending.run.await.unwrap();
        let returned = self.start.elapsed();
        assert!(status.success(), "lb upgrade: {out}{err}");
        assert!(out.contains(&format!("new pid {}", pending.new)), "{out}");
        let old = pending.old;
        assert!(
            eventually(PATIENCE, async || !alive(old)).await,
            "old pid {old} still runs"
        );
        self.upgrades.push(Upgrade {
            began: pending.began,
            returned,
            old,
            new: pending.new,
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_and_upgrades_under_load_fail_no_request() {
    let start = Instant::now();
    let (a, b, c) = (Demo::start("a"), Demo::start("b"), Demo::start("c"));
    // Each configuration changes both pools: weights change, c leaves both and comes back. The
    // first WebSockets all go to c, which the second reload removes under their open tunnels.
    let steps = [
        Step {
            web: vec![(&a, 1), (&b, 1), (&c, 1)],
            live: vec![(&c, 1)],
        },
        Step {
            web: vec![(&a, 3), (&b, 1), (&c, 2)],
            live: vec![(&c, 1), (&b, 1)],
        },
        Step {
            web: vec![(&a, 1), (&b, 2)],
            live: vec![(&a, 1)],
        },
        Step {
            web: vec![(&a, 1), (&b, 1)],
            live: vec![(&a, 1), (&b, 1)],
        },
    ];
    let dir = TempDir::new("churn");
    let listen = common::free_addr();
    let (first, conf) = start_daemon(&dir, &steps[0].yaml(), listen);
    let api = Api::new(dir.admin_addr());
    let mut churn = Churn {
        steps: &steps,
        dir,
        listen,
        conf,
        api,
        start,
        n: 0,
        by_way: [0; 3],
        refused: 0,
        removals: Vec::new(),
        daemons: vec![first],
        upgrades: Vec::new(),
    };
    let loads = Loads::start(listen, 3, (2, 4), 3, start);
    loads.progress(100, 6).await;

    for (round, reloads) in RELOADS.into_iter().enumerate() {
        let pending = match round {
            0 => None,
            _ => Some(churn.begin_upgrade().await),
        };
        for _ in 0..reloads {
            churn.reload().await;
            loads.progress(20, 3).await;
        }
        if let Some(pending) = pending {
            churn.finish_upgrade(pending).await;
        }
    }
    loads.progress(100, 6).await;
    let loads = loads.stop().await;
    let wall = start.elapsed();
    report(&loads, &churn, wall);

    let log = std::fs::read_to_string(churn.dir.path("error.log")).unwrap_or_default();
    assert_eq!(churn.reloads(), 20);
    assert_eq!(log.matches("configuration reloaded in place").count(), 20, "{log}");
    check_http(&loads, &log);
    check_websockets(&loads.ws, &churn.upgrades);
}

/// No HTTP/1 or HTTP/2 request failed (HTTP/2 retries of unprocessed streams allowed).
fn check_http(loads: &Loads, log: &str) {
    let tail = &log[log.len().saturating_sub(4000)..];
    for (kind, load) in [("keep-alive", &loads.keep_alive), ("new-connection", &loads.new_conn)] {
        let errors = load.errors.lock().unwrap().clone();
        assert!(errors.is_empty(), "{kind}: {} failed: {errors:?}\n{tail}", errors.len());
    }
    let errors = loads.h2.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "HTTP/2: {} failed: {errors:?}\n{tail}", errors.len());
}

/// WebSockets were closed only by an old process during its upgrade (the first ones, on c,
/// outlived c's removal from the pool), and none failed to connect or went unanswered.
fn check_websockets(ws: &WsLoad, upgrades: &[Upgrade]) {
    let errors = ws.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "WebSocket errors: {errors:?}");
    let conns = ws.conns.lock().unwrap().clone();
    let slack = Duration::from_secs(1);
    for conn in conns.iter().filter(|c| c.by_lb) {
        let during = upgrades
            .iter()
            .any(|u| conn.opened < u.returned && conn.closed >= u.began && conn.closed <= u.returned + slack);
        assert!(
            during,
            "a WebSocket closed outside an upgrade: {conn:?}, upgrades {upgrades:?}"
        );
    }
    let first: Vec<_> = conns.iter().filter(|c| c.opened < upgrades[0].began).collect();
    assert!(
        first.len() == 3 && first.iter().all(|c| c.backend == "c" && c.by_lb),
        "the first WebSockets were not all on c until the first upgrade: {first:?}"
    );
}

fn report(loads: &Loads, churn: &Churn, wall: Duration) {
    let [keep_alive, new_conn, h2, echoed] = loads.counts();
    let w = churn.by_way;
    eprintln!(
        "churn: {wall:.1?} wall; {} reloads (SIGHUP {}, lb reload {}, POST /api/v1/reload {}; {} POSTs answered 503 \
         by a process handing over, retried), {} upgrades; c removed by the reloads done at {:.1?}",
        churn.reloads(),
        w[0],
        w[1],
        w[2],
        churn.refused,
        churn.upgrades.len(),
        churn.removals
    );
    eprintln!(
        "  answered: keep-alive {keep_alive}, new-connection {new_conn}, HTTP/2 {h2} (retried: {} not sent after \
         GOAWAY, {} unprocessed streams), WebSocket echoes {echoed} ({} lost)",
        loads.h2.not_sent.load(Ordering::Relaxed),
        loads.h2.refused.load(Ordering::Relaxed),
        loads.ws.lost.load(Ordering::Relaxed)
    );
    for u in &churn.upgrades {
        report_upgrade(loads, u);
    }
}

/// What the HTTP/2 connections and WebSockets saw during upgrade `u`.
fn report_upgrade(loads: &Loads, u: &Upgrade) {
    eprintln!(
        "  upgrade pid {} -> {}: lb upgrade ran {:.1?}..{:.1?}",
        u.old, u.new, u.began, u.returned
    );
    // A WebSocket notices its close at once; `lb upgrade` polls for the old process's exit.
    loads.report_window(u.began, u.returned + Duration::from_secs(1));
}
