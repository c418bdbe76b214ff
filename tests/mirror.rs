//! Request mirroring through the real binary: the shadow pool gets the sampled copies with the
//! method, path, headers and body the route's backend got; a shadow pool that hangs or is down
//! changes neither the status nor the latency of the client's requests, and only shows in
//! `lb_mirror_requests_total{route,result}`. Run on both request loops by scripts/test.

mod common;

use common::client::{full, request};
use common::{eventually, metric_value, Client, Lb, PATIENCE};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a recording backend does with each request.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Answers 200 at once, keeps the connection.
    Answer,
    /// Reads the request and never answers.
    Hang,
}

/// Requests a backend got: (head, body).
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A backend that records each request (head, body).
struct Recorder {
    addr: SocketAddr,
    seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start(mode: Mode) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, mode, Arc::clone(&record)));
            }
        });
        Recorder { addr, seen, task }
    }

    fn requests(&self) -> Vec<(String, Vec<u8>)> {
        self.seen.lock().expect("lock").clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads requests with a Content-Length body (or none) off `conn`, records them, answers.
async fn serve(mut conn: TcpStream, mode: Mode, seen: Seen) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_string())
            })
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < end + length {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[end..end + length].to_vec();
        buf.drain(..end + length);
        seen.lock().expect("lock").push((head, body));
        if mode == Mode::Hang {
            tokio::time::sleep(Duration::from_secs(120)).await;
            return;
        }
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        if conn.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// The fields of a request head as (lowercase name, value), without the framing and hop-by-hop
/// ones (the copy is framed by its own length, on its own connection).
fn fields(head: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .filter(|(n, _)| !["connection", "content-length", "transfer-encoding", "keep-alive"].contains(&n.as_str()))
        .collect();
    out.sort();
    out
}

fn lb_with(primary: SocketAddr, shadow: SocketAddr, sample: &str) -> Lb {
    Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\"}}
upstreams:
  web: {{backends: [{{address: \"{primary}\"}}]}}
  shadow: {{backends: [{{address: \"{shadow}\"}}]}}
routes:
  - name: plain
    match: {{path_prefix: /plain/}}
    upstream: web
  - name: copied
    match: {{path_prefix: /}}
    upstream: web
    request: {{set_headers: {{X-Route: copied}}}}
    mirror: {{upstream: shadow, sample: {sample}, max_body: 4KiB}}
"
    ))
}

async fn mirrored(lb: &Lb, result: &str) -> u64 {
    let text = common::get(lb.admin(), "/metrics")
        .await
        .map(|r| r.text())
        .unwrap_or_default();
    let sample = format!("lb_mirror_requests_total{{route=\"copied\",result=\"{result}\"}}");
    metric_value(&text, &sample).map_or(0, |n| n as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadow_gets_what_the_backend_got() {
    let primary = Recorder::start(Mode::Answer).await;
    let shadow = Recorder::start(Mode::Answer).await;
    let lb = lb_with(primary.addr, shadow.addr, "100%");
    let mut client = Client::connect(lb.addr).await.expect("connect");
    let mut get = request("GET", "/items/7?x=1", common::client::empty());
    get.headers_mut().insert("x-custom", "a".parse().expect("value"));
    assert_eq!(client.send(get).await.expect("get").status, 200);
    let mut post = request("POST", "/items", full(vec![b'x'; 3000]));
    post.headers_mut()
        .insert("content-type", "application/json".parse().expect("value"));
    assert_eq!(client.send(post).await.expect("post").status, 200);
    // Over max_body (4 KiB): served, not copied.
    let big = request("PUT", "/items/8", full(vec![b'y'; 5000]));
    assert_eq!(client.send(big).await.expect("put").status, 200);
    assert!(
        eventually(PATIENCE, async || shadow.requests().len() >= 2
            && mirrored(&lb, "too_large").await == 1)
        .await,
        "{:?}",
        shadow.requests()
    );
    assert!(eventually(PATIENCE, async || mirrored(&lb, "answered").await == 2).await);
    let (sent, copies) = (primary.requests(), shadow.requests());
    assert_eq!(sent.len(), 3);
    assert_eq!(copies.len(), 2, "{copies:?}");
    // Copies go out on their own tasks and connections: they may arrive in any order.
    let mut copies = copies;
    copies.sort_by_key(|(head, _)| !head.starts_with("GET "));
    for (copy_head, copy_body) in &copies {
        let line = copy_head.lines().next();
        let (head, body) = sent
            .iter()
            .find(|(head, _)| head.lines().next() == line)
            .unwrap_or_else(|| panic!("a copy of a request the backend did not get: {copy_head}"));
        assert_eq!(fields(head), fields(copy_head), "{head}\n{copy_head}");
        assert_eq!(body, copy_body);
    }
    assert!(
        copies[0].0.starts_with("GET /items/7?x=1 HTTP/1.1\r\n"),
        "{}",
        copies[0].0
    );
    assert!(copies[0].0.to_ascii_lowercase().contains("x-route: copied\r\n"));
    assert_eq!(copies[1].1.len(), 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_copies_its_share() {
    let primary = Recorder::start(Mode::Answer).await;
    let shadow = Recorder::start(Mode::Answer).await;
    let lb = lb_with(primary.addr, shadow.addr, "25%");
    let mut client = Client::connect(lb.addr).await.expect("connect");
    for _ in 0..800 {
        assert_eq!(client.get("/s").await.expect("get").status, 200);
    }
    assert!(
        eventually(PATIENCE, async || mirrored(&lb, "answered").await
            == shadow.requests().len() as u64)
        .await
    );
    // 25% of 800 is 200; a binomial's standard deviation here is about 12: ±60 is five of them.
    let copies = shadow.requests().len();
    assert!((140..=260).contains(&copies), "{copies} of 800 copied at 25%");
}

/// p99 of `latencies`.
fn p99(mut latencies: Vec<Duration>) -> Duration {
    latencies.sort();
    latencies[latencies.len() * 99 / 100]
}

/// Requests alternate between a route without a mirror and the mirrored one, 600 each: all are
/// answered 200, and the p99s are within 10% (plus 1 ms for a busy machine's noise at loopback
/// latencies near a millisecond) in one of three rounds: a delay the mirror caused would show
/// in each, a neighbour's burst of CPU in one.
/// Returns how many requests went to the mirrored route.
async fn unaffected(lb: &Lb) -> u64 {
    let mut figures = Vec::new();
    for rounds in 1..=3 {
        let (plain, copied) = round(lb).await;
        figures.push((plain, copied));
        if copied <= plain.mul_f64(1.1) + Duration::from_millis(1) {
            return 600 * rounds;
        }
    }
    panic!("p99 with the mirror and without, per round: {figures:?}");
}

/// One round of [`unaffected`]: (p99 without the mirror, p99 with it).
async fn round(lb: &Lb) -> (Duration, Duration) {
    let mut client = Client::connect(lb.addr).await.expect("connect");
    let (mut plain, mut copied) = (Vec::new(), Vec::new());
    for i in 0..1200 {
        let path = if i % 2 == 0 { "/plain/x" } else { "/copied/x" };
        let started = Instant::now();
        let resp = client.get(path).await.expect("request");
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
        if i >= 100 {
            let took = started.elapsed();
            if i % 2 == 0 {
                plain.push(took)
            } else {
                copied.push(took)
            }
        }
    }
    (p99(plain), p99(copied))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_that_hangs_changes_nothing_for_clients() {
    let primary = Recorder::start(Mode::Answer).await;
    let shadow = Recorder::start(Mode::Hang).await;
    let lb = lb_with(primary.addr, shadow.addr, "100%");
    let copies = unaffected(&lb).await;
    // 256 copies at a time wait on the shadow until they time out (10 s), the others are
    // dropped.
    let ended = async || mirrored(&lb, "timeout").await + mirrored(&lb, "dropped").await == copies;
    assert!(eventually(PATIENCE, ended).await);
    let timeouts = mirrored(&lb, "timeout").await;
    assert!(timeouts >= 256, "{timeouts} timed out");
    assert_eq!(mirrored(&lb, "answered").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_that_is_down_changes_nothing_for_clients() {
    let primary = Recorder::start(Mode::Answer).await;
    // A port nobody listens on.
    let down = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let lb = lb_with(primary.addr, down, "100%");
    let copies = unaffected(&lb).await;
    assert!(
        eventually(PATIENCE, async || mirrored(&lb, "failed").await == copies).await,
        "{}",
        mirrored(&lb, "failed").await
    );
}
