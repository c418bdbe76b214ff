//! The load-aware algorithms issue through the real binary: least connections, power of two
//! and least time keep a slow backend under 10% while round robin gives it a third; least time
//! follows a backend that turns slow and recovers; sticky cookies pin clients and move them
//! once when their backend goes; `first` fills in order; the wait queue absorbs a burst up to
//! its size and refuses the rest at once; in-flight counts return to 0; every algorithm is
//! selectable from the command line and the file.

mod common;

use common::client::{empty, request};
use common::{eventually, get, run_lb, Client, Demo, Lb, PATIENCE};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn pool(algorithm: &str, extra: &str, backends: &[&Demo]) -> String {
    let list: Vec<String> = backends.iter().map(|d| d.yaml()).collect();
    format!(
        "listeners: [{{address: \"{{listen}}\"}}]
metrics: {{address: \"{metrics}\"}}
upstreams:
  web:
    algorithm: {algorithm}
{extra}    backends: [{}]
",
        list.join(", "),
        metrics = common::free_addr()
    )
}

fn metrics_addr(lb: &Lb) -> SocketAddr {
    let conf = std::fs::read_to_string(lb.dir.path("lb.yaml")).unwrap();
    let line = conf.lines().find(|l| l.starts_with("metrics:")).unwrap();
    line.split('"').nth(1).unwrap().parse().unwrap()
}

/// Sum of every `name{...}` sample in lb's metrics.
async fn metric_sum(lb: &Lb, name: &str) -> f64 {
    let text = get(metrics_addr(lb), "/metrics").await.unwrap().text();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// (time since start, backend) of every answered request.
type Log = Arc<Mutex<Vec<(Duration, String)>>>;

/// `clients` keep-alive clients sending GET / until `run` after `start`; every 25th request of
/// each client is abandoned after 20 ms (the client goes away mid-request).
async fn drive(addr: SocketAddr, clients: usize, start: Instant, run: Duration) -> Log {
    let log: Log = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await.unwrap();
            for i in 0..5_000 {
                if start.elapsed() > run {
                    break;
                }
                if i % 25 == 24 {
                    let _ = tokio::time::timeout(Duration::from_millis(20), client.get("/")).await;
                    client = Client::connect(addr).await.unwrap();
                    continue;
                }
                let resp = client.get("/").await.expect("request failed");
                assert_eq!(resp.status, 200);
                log.lock().unwrap().push((start.elapsed(), resp.backend()));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    log
}

fn share(log: &Log, backend: &str, from: Duration, to: Duration) -> (f64, usize) {
    let log = log.lock().unwrap();
    let window: Vec<_> = log.iter().filter(|(t, _)| *t >= from && *t < to).collect();
    let hits = window.iter().filter(|(_, b)| b == backend).count();
    (hits as f64 / window.len().max(1) as f64, window.len())
}

async fn slow_backend_share(algorithm: &str) -> f64 {
    let fast1 = Demo::start_with("fast1", &["--delay", "5ms"]);
    let fast2 = Demo::start_with("fast2", &["--delay", "5ms"]);
    let slow = Demo::start_with("slow", &["--delay", "200ms"]);
    let lb = Lb::start(&pool(algorithm, "", &[&fast1, &fast2, &slow]));
    let log = drive(lb.addr, 32, Instant::now(), Duration::from_secs(3)).await;
    let (slow_share, total) = share(&log, "slow", Duration::ZERO, Duration::from_secs(60));
    assert!(total > 300, "only {total} requests");
    // Every lease and in-flight count is back to zero, aborted requests included.
    let settled = eventually(PATIENCE, async || {
        metric_sum(&lb, "lb_backend_inflight").await == 0.0 && metric_sum(&lb, "lb_requests_inflight").await == 0.0
    })
    .await;
    let metrics = get(metrics_addr(&lb), "/metrics").await.unwrap().text();
    assert!(settled, "in-flight counters did not return to 0:\n{metrics}");
    eprintln!("{algorithm}: slow backend got {:.1}% of {total}", slow_share * 100.0);
    slow_share
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn least_connections_avoids_the_slow_backend() {
    assert!(slow_backend_share("least_connections").await < 0.10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn power_of_two_avoids_the_slow_backend() {
    assert!(slow_backend_share("power_of_two").await < 0.10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn least_time_avoids_the_slow_backend() {
    assert!(slow_backend_share("least_time").await < 0.10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_robin_gives_the_slow_backend_a_third() {
    let s = slow_backend_share("round_robin").await;
    assert!((0.30..0.37).contains(&s), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn least_time_leaves_a_backend_that_turns_slow_and_returns_when_it_recovers() {
    let demos = ["a", "b", "c"].map(|n| Demo::start_with(n, &["--delay", "5ms"]));
    let refs: Vec<&Demo> = demos.iter().collect();
    let lb = Lb::start(&pool("least_time", "    ewma_decay: 1s\n", &refs));
    let c = demos[2].addr;
    let sec = Duration::from_secs;
    let start = Instant::now();
    // The load's schedule: c turns slow after 2 s and recovers 4 s later; the windows below
    // are measured from when each switch actually took effect.
    let switch = tokio::spawn(async move {
        tokio::time::sleep(sec(2)).await;
        get(c, "/_demo/delay/200").await.unwrap();
        let slow_at = start.elapsed();
        tokio::time::sleep(sec(4)).await;
        get(c, "/_demo/delay/5").await.unwrap();
        (slow_at, start.elapsed())
    });
    let log = drive(lb.addr, 16, start, sec(13)).await;
    let (slow_at, fast_at) = switch.await.unwrap();
    let (before, _) = share(&log, "c", Duration::ZERO, slow_at);
    let (slow, n_slow) = share(&log, "c", slow_at + Duration::from_millis(1500), fast_at);
    let (after, n_after) = share(&log, "c", fast_at + sec(4), sec(13));
    assert!(
        n_slow > 50 && n_after > 50,
        "too few requests in the windows: {n_slow}, {n_after}"
    );
    eprintln!("c's share: {before:.2} before, {slow:.3} of {n_slow} while slow, {after:.2} of {n_after} after");
    assert!(before > 0.2, "c had no fair share to begin with: {before}");
    assert!(slow < 0.10, "c kept {slow} of the traffic while slow");
    assert!(after > 0.15, "c did not get traffic back after recovering: {after}");
}

/// A browser-like client: one connection and a cookie jar for the sticky cookie.
struct Browser {
    client: Client,
    cookie: Option<String>,
}

impl Browser {
    /// One request: (backend, whether lb set a new cookie).
    async fn visit(&mut self) -> (String, bool) {
        let mut req = request("GET", "/", empty());
        if let Some(c) = &self.cookie {
            req.headers_mut()
                .insert("cookie", format!("theme=dark; {c}").parse().unwrap());
        }
        let resp = self.client.send(req).await.unwrap();
        let set = resp.header("set-cookie");
        if !set.is_empty() {
            self.cookie = set.split(';').next().map(str::to_string);
        }
        (resp.backend(), !set.is_empty())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sticky_pins_clients_and_moves_them_once_when_their_backend_goes() {
    let demos = [Demo::start("a"), Demo::start("b"), Demo::start("c")];
    let refs: Vec<&Demo> = demos.iter().collect();
    let extra = "    sticky: {cookie: SRV, ttl: 1h}\n    health_check: {path: /healthz, interval: 100ms, unhealthy_threshold: 1}\n";
    let lb = Lb::start(&pool("sticky", extra, &refs));
    let mut browsers = Vec::new();
    for _ in 0..50 {
        browsers.push(Browser {
            client: Client::connect(lb.addr).await.unwrap(),
            cookie: None,
        });
    }
    let mut home = Vec::new();
    for b in &mut browsers {
        let (first, set) = b.visit().await;
        assert!(set, "no cookie on the first answer");
        for _ in 1..20 {
            assert_eq!(b.visit().await, (first.clone(), false));
        }
        home.push(first);
    }
    let cookie = browsers[0].cookie.clone().unwrap();
    assert!(cookie.starts_with("SRV=") && cookie.len() == 4 + 16, "{cookie}");
    for d in &demos {
        assert!(
            !cookie.contains(&d.addr.port().to_string()) && !cookie.contains("127.0.0"),
            "{cookie}"
        );
    }

    // Take a's backend out: its clients move once, and stay; the others do not move.
    get(demos[0].addr, "/_demo/health/503").await.unwrap();
    let needle = format!("pool web backend {} becomes unhealthy", demos[0].addr);
    assert!(eventually(PATIENCE, async || lb.log().contains(&needle)).await);
    let mut moved = 0;
    for (b, first) in browsers.iter_mut().zip(&home) {
        let (now, set) = b.visit().await;
        if first == "a" {
            assert!(now != "a" && set, "a client of a was not moved with a new cookie");
            moved += 1;
        } else {
            assert_eq!((&now, set), (first, false));
        }
        for _ in 0..9 {
            assert_eq!(b.visit().await, (now.clone(), false));
        }
    }
    assert!(moved > 5, "only {moved} of 50 clients were on a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_fills_backends_in_configured_order() {
    let mut demos = vec![Demo::start("b1"), Demo::start("b2"), Demo::start("b3")];
    // Listed against address order, so the order can only come from the configuration.
    demos.sort_by_key(|d| std::cmp::Reverse(d.addr.port()));
    let refs: Vec<&Demo> = demos.iter().collect();
    let lb = Lb::start(&pool("first", "    max_connections: 4\n", &refs));
    let addr = lb.addr;
    // Long enough for all six to be seen in flight at once, even on a slow machine.
    let requests: Vec<_> = (0..6)
        .map(|_| tokio::spawn(async move { get(addr, "/delay/5000").await }))
        .collect();
    let filled = eventually(PATIENCE, async || {
        let mut counts = Vec::new();
        for d in &demos {
            counts.push(d.stat("inflight").await);
        }
        counts == [Some(4), Some(2), Some(0)]
    })
    .await;
    assert!(filled, "in flight per backend never became 4, 2, 0");
    for r in requests {
        assert_eq!(r.await.unwrap().unwrap().status, 200);
    }
}

/// Sends `n` concurrent slow requests; returns (status, seconds taken) of each.
async fn burst(lb: &Lb, n: usize, path: &str) -> Vec<(u16, f64)> {
    let addr = lb.addr;
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let path = path.to_string();
            tokio::spawn(async move {
                let start = Instant::now();
                let resp = get(addr, &path).await.unwrap();
                (resp.status, start.elapsed().as_secs_f64())
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(
            tokio::time::timeout(PATIENCE, t)
                .await
                .expect("a request hung")
                .unwrap(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queue_absorbs_a_burst_up_to_its_size_and_refuses_the_rest_at_once() {
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let big = Lb::start(&pool(
        "least_connections",
        "    max_connections: 4\n    queue_size: 16\n",
        &[&a, &b],
    ));
    let results = burst(&big, 16, "/delay/400").await;
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");

    let small = Lb::start(&pool(
        "least_connections",
        "    max_connections: 4\n    queue_size: 4\n",
        &[&a, &b],
    ));
    let results = burst(&small, 16, "/delay/400").await;
    let refused: Vec<_> = results.iter().filter(|(s, _)| *s == 503).collect();
    let served = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!((served, refused.len()), (12, 4), "{results:?}");
    // Refused at once: every 503 came back before any 400 ms request had finished.
    assert!(answered_before(&refused, &results, 200), "{results:?}");
    assert_eq!(metric_sum(&small, "lb_pool_refused_total").await, 4.0);

    let timed = Lb::start(&pool(
        "round_robin",
        "    max_connections: 4\n    queue_size: 16\n    queue_timeout: 200ms\n",
        &[&a, &b],
    ));
    let results = burst(&timed, 16, "/delay/1000").await;
    let late: Vec<_> = results.iter().filter(|(s, _)| *s == 503).collect();
    assert_eq!(late.len(), 8, "{results:?}");
    // After queue_timeout, not after waiting for a slot: before any 1 s request had finished.
    assert!(answered_before(&late, &results, 200), "{results:?}");
}

/// Whether every one of `these` came back before any result with `status`.
fn answered_before(these: &[&(u16, f64)], results: &[(u16, f64)], status: u16) -> bool {
    let first = results.iter().filter(|(s, _)| *s == status).map(|(_, t)| *t);
    let first = first.fold(f64::INFINITY, f64::min);
    these.iter().all(|(_, t)| *t < first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_is_selectable_on_the_command_line_and_in_the_file() {
    let a = Demo::start("a");
    let names = [
        "round_robin",
        "weighted_round_robin",
        "random",
        "hash",
        "consistent",
        "least_connections",
        "least_conn",
        "power_of_two",
        "p2c",
        "least_time",
        "sticky",
        "first",
    ];
    for name in names {
        let lb = Lb::start_quick(&[
            "--backend".into(),
            a.addr.to_string(),
            "--algorithm".into(),
            name.into(),
            "--hash-key".into(),
            "uri".into(),
            "--max-connections".into(),
            "8".into(),
        ]);
        let resp = get(lb.addr, "/").await.unwrap();
        assert_eq!((resp.status, resp.backend()), (200, "a".to_string()), "{name}");

        let dir = common::TempDir::new("alg");
        let yaml = pool(name, "    hash_key: uri\n    max_connections: 8\n", &[&a]);
        let conf = common::write_config(&dir, &yaml, common::free_addr());
        let (status, out, err) = run_lb(&["-t", "-c", conf.to_str().unwrap()]);
        assert!(status.success() && out.contains("is valid"), "{name}: {err}");
    }
    let (_, help, _) = run_lb(&["--help"]);
    for name in names.iter().filter(|n| !matches!(**n, "least_conn" | "p2c")) {
        assert!(help.contains(name), "--help does not mention {name}");
    }
}
