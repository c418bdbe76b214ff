//! Watching lb while a test attacks it: a bystander client whose requests must keep being served
//! (its latencies and failures), lb's CPU time and memory from /proc, and its counters.

use super::client::Client;
use super::{eventually, get, metric_value, Lb, PATIENCE};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most requests a bystander sends (it stops sooner when told).
const MAX_REQUESTS: usize = 100_000;

/// A client sending `GET path` over keep-alive, one request every few milliseconds.
pub struct Bystander {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Vec<Duration>, Vec<String>)>,
}

/// What a bystander saw.
#[derive(Debug)]
pub struct Seen {
    pub requests: usize,
    pub failures: Vec<String>,
    pub p50: Duration,
    pub p99: Duration,
}

impl Bystander {
    /// Starts sending to `addr`.
    pub fn start(addr: SocketAddr, path: &'static str) -> Bystander {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let (mut took, mut failures) = (Vec::new(), Vec::new());
            let mut client: Option<Client> = None;
            for _ in 0..MAX_REQUESTS {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let start = Instant::now();
                if client.is_none() {
                    client = Client::connect(addr).await.ok();
                }
                let outcome = match client.as_mut() {
                    Some(c) => c.get(path).await.map(|r| r.status).map_err(|e| e.to_string()),
                    None => Err("connect failed".to_string()),
                };
                match outcome {
                    Ok(200) => took.push(start.elapsed()),
                    Ok(status) => failures.push(format!("status {status}")),
                    Err(e) => {
                        failures.push(e);
                        client = None;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (took, failures)
        });
        Bystander { stop, task }
    }

    /// Stops it and says what it saw.
    pub async fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let (mut took, failures) = self.task.await.expect("bystander");
        took.sort();
        let at = |q: f64| {
            took.get(((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1)))
                .copied()
        };
        Seen {
            requests: took.len() + failures.len(),
            p50: at(0.50).unwrap_or_default(),
            p99: at(0.99).unwrap_or_default(),
            failures,
        }
    }
}

/// CPU time (user + system) `pid` has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces), from the state on: utime and stime
    // are the 12th and 13th of them, in clock ticks.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    // USER_HZ, fixed at 100 in Linux's ABI.
    Duration::from_millis(ticks * 10)
}

/// lb's resources over a stretch of a test: CPU used and resident memory at its end.
pub struct Usage {
    pid: u32,
    cpu: Duration,
    started: Instant,
}

impl Usage {
    /// Starts measuring `pid`.
    pub fn start(pid: u32) -> Usage {
        Usage {
            pid,
            cpu: cpu_time(pid),
            started: Instant::now(),
        }
    }

    /// (CPU used since the start, wall time since the start, resident memory in KiB now).
    pub fn now(&self) -> (Duration, Duration, u64) {
        (
            cpu_time(self.pid).saturating_sub(self.cpu),
            self.started.elapsed(),
            super::proc_status_kib(self.pid, "VmRSS:"),
        )
    }
}

/// The value of `sample` in lb's metrics now (0 when absent).
pub async fn metric(lb: &Lb, sample: &str) -> f64 {
    let text = get(lb.admin(), "/metrics").await.map(|r| r.text()).unwrap_or_default();
    metric_value(&text, sample).unwrap_or(0.0)
}

/// Waits until `sample` is above `before`.
pub async fn counted(lb: &Lb, sample: &str, before: f64) {
    let grew = eventually(PATIENCE, async || metric(lb, sample).await > before).await;
    assert!(grew, "{sample} stayed at {before}");
}

/// An attack is repeated (a new connection each time) for this long, so that the bystander's
/// figures cover it.
pub const ATTACK_FOR: Duration = Duration::from_millis(1500);

/// Runs `attack` again and again for [`ATTACK_FOR`] (at least once, at most 200 times) while a
/// bystander uses the same listener; reports its p99 and lb's CPU and memory, and checks the
/// bystander was served and lb is quiet once the attack is over.
pub async fn watched<F: Future<Output = ()>>(lb: &Lb, class: &str, attack: impl FnMut() -> F) -> usize {
    watched_from(lb, lb.addr, class, attack).await
}

/// [`watched`] with the bystander's requests sent to `bystander` (`/others/` there).
pub async fn watched_from<F: Future<Output = ()>>(
    lb: &Lb,
    bystander: SocketAddr,
    class: &str,
    mut attack: impl FnMut() -> F,
) -> usize {
    let bystander = Bystander::start(bystander, "/others/");
    let usage = Usage::start(lb.proc.pid());
    let end = std::time::Instant::now() + ATTACK_FOR;
    let mut rounds = 0;
    while rounds == 0 || (std::time::Instant::now() < end && rounds < 200) {
        attack().await;
        rounds += 1;
    }
    let seen = bystander.finish().await;
    let (cpu, wall, rss) = usage.now();
    eprintln!(
        "{class} ({rounds} rounds): bystander {} requests, p50 {:?}, p99 {:?}, {} failed; lb CPU {cpu:?} in {wall:?}, RSS {} MiB",
        seen.requests,
        seen.p50,
        seen.p99,
        seen.failures.len(),
        rss / 1024
    );
    assert!(
        seen.failures.is_empty(),
        "{class}: the bystander failed: {:?}",
        seen.failures
    );
    assert!(seen.requests > 0, "{class}: the bystander sent nothing");
    assert!(
        seen.p99 < Duration::from_secs(5),
        "{class}: bystander p99 {:?}",
        seen.p99
    );
    assert!(rss < 256 * 1024, "{class}: RSS {rss} KiB");
    // Once the attacker is gone nothing keeps lb busy.
    let quiet = Usage::start(lb.proc.pid());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle_cpu, _, _) = quiet.now();
    assert!(
        idle_cpu < Duration::from_millis(300),
        "{class}: lb used {idle_cpu:?} of CPU idle"
    );
    rounds
}
